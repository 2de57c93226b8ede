"""Attacks on the pool itself, mounted on the real contracts on the embedded EVM:
stream squatting, absurd prices, deposits nobody can take back, one domain for
every embedded chain."""

from __future__ import annotations

import os

import pytest

from oasis.ledger import eip712
from oasis.ledger.chain import REFUND_DELAY, ChainError, EmbeddedChain, stream_id
from oasis.ledger.devnet import fund, open_funded_stream
from oasis.ledger.receipt_store import ReceiptStore
from oasis.ledger.receipts import sign_receipt
from oasis.ledger.settlement import RelayLedger
from oasis.ledger.tickets import Ticket, TicketIssuer, sign_ticket

from .world import ALLOWANCE, DEPOSIT, EPOCH, PRICE


def test_a_squatter_cannot_open_or_drain_the_broadcasters_stream(chain, world):
    """Attack (stream squatting): the stream id used to be predictable and anyone could
    open it; a restarted broadcaster then deposited into the squatter's stream and the
    squatter's own tickets drained it. Now the id is keccak(opener, key)."""
    squatter = os.urandom(32)
    fund(chain, chain.faucet_key, eip712.address_of_key(squatter))
    key = os.urandom(32)
    victim = os.urandom(32)
    victim_id = stream_id(eip712.address_of_key(victim), key)
    # The squatter opens "the same stream" first: with the key, and with the id itself.
    got = {chain.open_stream(squatter, key, PRICE, EPOCH), chain.open_stream(squatter, victim_id, PRICE, EPOCH)}
    assert victim_id not in got
    assert int(chain.stream_info(victim_id)["broadcaster"], 16) == 0
    # The broadcaster (re)starts: opens and funds its own stream, untouched by the squatter.
    sid = open_funded_stream(chain, chain.faucet_key, victim, key, DEPOSIT, PRICE, EPOCH)
    assert sid == victim_id
    info = chain.stream_info(sid)
    assert bytes.fromhex(info["broadcaster"][2:]) == eip712.address_of_key(victim)
    assert info["balance"] == DEPOSIT
    # The squatter signs itself a ticket for the victim's stream and settles a receipt: no-ticket.
    vk = os.urandom(32)
    t = sign_ticket(squatter, world.domain, Ticket(eip712.address_of_key(vk), sid, 0, ALLOWANCE,
                                                    world.now - 3 * EPOCH, world.now + 3600))
    r = sign_receipt(vk, world.domain, relay=eip712.address_of_key(squatter), stream=sid,
                     epoch=world.epoch, index=0, received=ALLOWANCE)
    res = chain.settle(squatter, sid, world.epoch, [world.entry(t, r)])
    assert res.amount == 0 and res.rejected == [(0, "no-ticket")]
    assert chain.stream_info(sid)["balance"] == DEPOSIT
    # Deposits into a stream nobody opened are refused.
    with pytest.raises(ChainError):
        chain.deposit(chain.faucet_key, os.urandom(32), 1)


def test_absurd_terms_are_refused_at_open(chain):
    """Attack: price_per_mb = 2**255 made every payment overflow and revert the whole
    batch; an epoch length of 0 divided by zero off chain. The pool refuses both."""
    key = os.urandom(32)
    fund(chain, chain.faucet_key, eip712.address_of_key(key))
    for price, epoch in ((2**255, EPOCH), (10**24 + 1, EPOCH), (PRICE, 0), (PRICE, 86_401)):
        with pytest.raises(ChainError):
            chain.open_stream(key, os.urandom(32), price, epoch)
    assert chain.open_stream(key, os.urandom(32), 10**24, 86_400)  # the bounds themselves are fine


def test_sponsors_take_back_what_is_left_after_close_and_delay(chain, world, tmp_path):
    """A sponsor's unused deposit was locked forever. Now: the owner closes the stream,
    relays may still settle epochs that started before the close for REFUND_DELAY
    seconds, then settlement stops and every depositor withdraws its pro-rata share."""
    sponsor = os.urandom(32)
    fund(chain, chain.faucet_key, eip712.address_of_key(sponsor))
    chain.mint(chain.faucet_key, eip712.address_of_key(sponsor), DEPOSIT)
    chain.deposit(sponsor, world.stream, DEPOSIT)  # now half the pool is the sponsor's
    relay = world.relay()
    vk, t = world.viewer()
    relay.accept_ticket(t.encode())
    # Nobody but the owner closes it; nobody withdraws before it is closed.
    with pytest.raises(ChainError):
        chain.close_stream(sponsor, world.stream)
    with pytest.raises(ChainError):
        chain.withdraw(sponsor, world.stream)
    chain.close_stream(world.broadcaster, world.stream)
    with pytest.raises(ChainError):  # closed: no more deposits
        chain.deposit(sponsor, world.stream, 1)
    # A relay still settles an epoch that ran before the close.
    assert relay.accept_receipt(world.receipt(vk, t, relay, 1_000_000).encode()).accepted
    relay.settle_due()
    assert chain.token_balance(relay.address) == world.pay(1_000_000)
    with pytest.raises(ChainError):  # too early to take money back
        chain.withdraw(sponsor, world.stream)
    chain.tester.time_travel(chain.timestamp() + REFUND_DELAY + 1)
    # After the delay the pool is frozen: a late settle pays nothing (every entry is
    # rejected as "closed"; the batch does not revert) ...
    late = world.receipt(vk, t, relay, 2_000_000)
    res = chain.settle(relay.key, world.stream, world.epoch, [world.entry(t, late)])
    assert res.amount == 0 and res.rejected == [(0, "closed")]
    # ... and the two depositors split what is left, by what each put in.
    left = world.pool_balance()
    assert left == 2 * DEPOSIT - world.pay(1_000_000)
    got_s = chain.withdraw(sponsor, world.stream)
    got_b = chain.withdraw(world.broadcaster, world.stream)
    assert got_s == got_b == left // 2
    assert chain.token_balance(eip712.address_of_key(sponsor)) == left // 2
    with pytest.raises(ChainError):  # once only
        chain.withdraw(sponsor, world.stream)
    with pytest.raises(ChainError):  # a stranger has nothing to withdraw
        chain.withdraw(relay.key, world.stream)


def test_each_embedded_chain_has_its_own_signing_domain(chain, world, tmp_path):
    """Attack: every embedded chain had the same chain id and pool address, so a
    viewer's receipts for one node's chain were valid on every other's. Now each chain
    directory gets its own chain id: the domain differs and so do the signatures."""
    other = EmbeddedChain(tmp_path / "other-chain")
    assert other.deployment.chain_id != chain.deployment.chain_id
    assert other.deployment.domain() != chain.deployment.domain()
    # The contract's DOMAIN_SEPARATOR is built from the chain id the EVM reports.
    for c in (chain, other):
        assert bytes(c.pool.functions.DOMAIN_SEPARATOR().call()) == c.deployment.domain().separator
    # A ticket and receipt made for `world.chain` are refused by a relay of the other chain.
    bkey = world.broadcaster
    sid = open_funded_stream(other, other.faucet_key, bkey, world.key, DEPOSIT, PRICE, EPOCH)
    assert sid == world.stream  # same broadcaster and key: same id, but another domain
    vk, t = world.viewer()
    key = os.urandom(32)
    fund(other, other.faucet_key, eip712.address_of_key(key))
    relay = RelayLedger(ReceiptStore(tmp_path / "o.db"), key, other.deployment.domain(), other,
                        clock=lambda: world.now)
    with pytest.raises(ValueError):
        relay.accept_ticket(t.encode())
    honest = TicketIssuer(bkey, other.deployment.domain(), sid, ALLOWANCE, 3600, {})
    t2 = honest.issue(t.viewer, world.now - 2 * EPOCH)
    relay.accept_ticket(t2.encode())
    r = world.receipt(vk, t2, relay, 1000)  # signed under world.chain's domain
    assert relay.accept_receipt(r.encode()).reason == "no-ticket"


def test_importing_the_ledger_keeps_the_recursion_limit(tmp_path):
    """py_ecc (imported by eth_account) raises the recursion limit to 100,000 at import,
    which turns a runaway recursion into a C-stack crash; the ledger puts it back."""
    import subprocess
    import sys

    code = ("import sys; before = sys.getrecursionlimit(); import oasis.node.rewards;"
            "from oasis.ledger.chain import EmbeddedChain; EmbeddedChain(sys.argv[1]);"
            "print(before, sys.getrecursionlimit())")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c")], capture_output=True,
                         text=True, check=True, timeout=120)
    before, after = out.stdout.split()
    assert before == after
