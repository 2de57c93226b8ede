"""Attack/fault: entries the pool refused because it was empty used to be marked
settled and never resent, so a sponsor's top-up paid nobody. They now stay pending
with a backoff, a retry limit and counters (real contracts, embedded EVM)."""

from __future__ import annotations

import os

from oasis.ledger import eip712
from oasis.ledger.devnet import open_funded_stream
from oasis.ledger.receipt_store import MAX_ATTEMPTS, RETRY_MAX_S
from oasis.ledger.receipts import sign_receipt
from oasis.ledger.tickets import TicketIssuer

from .world import ALLOWANCE, EPOCH, PRICE


def _small_stream(world, deposit):
    sid = open_funded_stream(world.chain, world.faucet, world.broadcaster, os.urandom(32), deposit, PRICE, EPOCH)
    issuer = TicketIssuer(world.broadcaster, world.domain, sid, ALLOWANCE, 3600, {})
    return sid, issuer


def _viewer_receipt(world, relay, sid, issuer, n):
    k = os.urandom(32)
    t = issuer.issue(eip712.address_of_key(k), world.now - 2 * EPOCH)
    relay.accept_ticket(t.encode())
    r = sign_receipt(k, world.domain, relay=relay.address, stream=sid, epoch=world.epoch, index=t.index, received=n)
    assert relay.accept_receipt(r.encode()).accepted


def test_unfunded_entries_are_resubmitted_after_a_top_up(world):
    relay = world.relay()
    sid, issuer = _small_stream(world, world.pay(1000))
    for _ in range(2):
        _viewer_receipt(world, relay, sid, issuer, 1000)
    [res] = relay.settle_due()
    assert res.amount == world.pay(1000) and res.rejected == [(1, "unfunded")]
    assert relay.counters["settle_entries_retry"] == 1
    assert relay.stats()["settle_retry_pending"] == 1
    assert len(relay.store.unsettled()) == 1  # kept, not marked settled
    assert relay.settle_due() == []  # backing off: no transaction, no gas
    # A sponsor tops the pool up; once the backoff has passed the entry is paid.
    world.chain.mint(world.faucet, eip712.address_of_key(world.broadcaster), world.pay(5000))
    world.chain.deposit(world.broadcaster, sid, world.pay(5000))
    world.now += int(RETRY_MAX_S)
    [res] = relay.settle_due()
    assert res.amount == world.pay(1000) and res.rejected == []
    assert world.chain.token_balance(relay.address) == 2 * world.pay(1000)
    assert relay.store.unsettled() == [] and relay.store.retry_count() == 0


def test_retries_stop_after_the_limit(world):
    """A pool that stays empty: the relay reads its balance before sending, so it sends
    no transaction at all (no gas), backs off, and gives up after MAX_ATTEMPTS."""
    relay = world.relay()
    sid, issuer = _small_stream(world, 0)
    _viewer_receipt(world, relay, sid, issuer, 1000)
    sent = 0
    eth = world.chain.eth_balance(relay.address)
    for _ in range(MAX_ATTEMPTS + 3):
        sent += len(relay.settle_due())
        world.now += int(RETRY_MAX_S) + 1
    assert sent == 0 and world.chain.eth_balance(relay.address) == eth
    assert relay.counters["settle_batches_unfunded"] == MAX_ATTEMPTS
    assert relay.counters["settle_batches_given_up"] == 1
    assert relay.store.unsettled() == [] and relay.store.retry_count() == 0


def test_an_empty_pool_topped_up_in_time_is_paid(world):
    relay = world.relay()
    sid, issuer = _small_stream(world, 0)
    _viewer_receipt(world, relay, sid, issuer, 1000)
    assert relay.settle_due() == []  # empty pool: held back, no tx
    world.chain.mint(world.faucet, eip712.address_of_key(world.broadcaster), world.pay(5000))
    world.chain.deposit(world.broadcaster, sid, world.pay(5000))
    assert relay.settle_due() == []  # still backing off
    world.now += int(RETRY_MAX_S)
    [res] = relay.settle_due()
    assert res.amount == world.pay(1000)
    assert relay.store.batch_counts() == {}
