"""Every rejection path of RewardsPool.settle, with balances checked to the unit."""

from __future__ import annotations

import os

from oasis.ledger import eip712
from oasis.ledger.receipts import Receipt, sign_receipt
from oasis.ledger.tickets import Ticket, sign_ticket

from .world import ALLOWANCE, DEPOSIT, EPOCH


def _settle(world, relay, entries):
    before = world.chain.token_balance(relay.address)
    pool_before = world.pool_balance()
    res = world.chain.settle(relay.key, world.stream, world.epoch, entries)
    gained = world.chain.token_balance(relay.address) - before
    assert gained == res.amount == pool_before - world.pool_balance()
    return res, gained


def test_valid_receipts_pay_exactly(world):
    relay = world.relay()
    entries, total = [], 0
    for n in (1, 999_999, 1_234_567):
        vk, t = world.viewer()
        entries.append(world.entry(t, world.receipt(vk, t, relay, n)))
        total += world.pay(n)
    res, gained = _settle(world, relay, entries)
    assert res.rejected == [] and len(res.paid) == 3
    assert gained == total
    assert world.pool_balance() == DEPOSIT - total


def test_replay_is_rejected(world):
    relay = world.relay()
    vk, t = world.viewer()
    e = world.entry(t, world.receipt(vk, t, relay, 1_000_000))
    _, first = _settle(world, relay, [e])
    assert first == world.pay(1_000_000)
    res, again = _settle(world, relay, [e])
    assert again == 0 and res.rejected == [(0, "replay")]
    # the same receipt twice in one batch pays once
    vk2, t2 = world.viewer()
    e2 = world.entry(t2, world.receipt(vk2, t2, relay, 700))
    res, gained = _settle(world, relay, [e2, e2])
    assert gained == world.pay(700) and res.rejected == [(1, "replay")]


def test_cumulative_pays_only_the_delta(world):
    relay = world.relay()
    vk, t = world.viewer()
    _settle(world, relay, [world.entry(t, world.receipt(vk, t, relay, 1_000_000))])
    _, gained = _settle(world, relay, [world.entry(t, world.receipt(vk, t, relay, 1_500_000))])
    assert gained == world.pay(500_000)
    assert world.chain.relay_paid(relay.address, world.stream, world.epoch, t.index) == 1_500_000


def test_forged_signatures_are_rejected(world):
    relay = world.relay()
    vk, t = world.viewer()
    # receipt signed by a stranger who holds no ticket
    forged_r = world.receipt(os.urandom(32), t, relay, 1000)
    # ticket signed by someone who is not the broadcaster
    fake = sign_ticket(os.urandom(32), world.domain, Ticket(**{**t.__dict__, "signature": b""}))
    # ticket with its allowance edited after signing
    edited = Ticket(**{**t.__dict__, "allowance": t.allowance * 10})
    # receipt addressed to another relay, submitted by this one
    other = world.receipt(vk, t, os.urandom(20), 1000)
    entries = [
        world.entry(t, forged_r),
        world.entry(fake, world.receipt(vk, t, relay, 1000)),
        world.entry(edited, world.receipt(vk, t, relay, 1000)),
        world.entry(t, other),
    ]
    res, gained = _settle(world, relay, entries)
    assert gained == 0
    assert res.rejected == [(i, "no-ticket") for i in range(4)]


def test_malleable_high_s_is_rejected(world):
    relay = world.relay()
    vk, t = world.viewer()
    r = world.receipt(vk, t, relay, 1000)
    twin_r = Receipt(**{**r.__dict__, "signature": eip712.high_s_twin(r.signature)})
    twin_t = Ticket(**{**t.__dict__, "signature": eip712.high_s_twin(t.signature)})
    res, gained = _settle(world, relay, [world.entry(t, twin_r), world.entry(twin_t, r)])
    assert gained == 0 and res.rejected == [(0, "malleable"), (1, "malleable")]
    # the low-s originals still pay once
    _, gained = _settle(world, relay, [world.entry(t, r)])
    assert gained == world.pay(1000)


def test_over_allowance_is_capped(world):
    relay = world.relay()
    vk, t = world.viewer()
    # one relay is paid at most its share (4/5) of a viewer's allowance per epoch
    _, gained = _settle(world, relay, [world.entry(t, world.receipt(vk, t, relay, ALLOWANCE * 7))])
    assert gained == world.pay(ALLOWANCE * 4 // 5)
    res, gained = _settle(world, relay, [world.entry(t, world.receipt(vk, t, relay, ALLOWANCE * 8))])
    assert gained == 0 and res.rejected == [(0, "relay-cap")]


def test_expired_and_not_yet_valid_tickets(world):
    relay = world.relay()
    vk = os.urandom(32)
    viewer = eip712.address_of_key(vk)
    idx = world.issuer.index_of(viewer)
    start = world.epoch * EPOCH
    expired = sign_ticket(world.broadcaster, world.domain,
                          Ticket(viewer, world.stream, idx, ALLOWANCE, start - 100, start))
    future = sign_ticket(world.broadcaster, world.domain,
                         Ticket(viewer, world.stream, idx, ALLOWANCE, start + EPOCH, start + 10 * EPOCH))
    entries = [world.entry(tk, world.receipt(vk, tk, relay, 1000)) for tk in (expired, future)]
    res, gained = _settle(world, relay, entries)
    assert gained == 0 and res.rejected == [(0, "window"), (1, "window")]


def test_unknown_viewer_without_ticket(world):
    relay = world.relay()
    vk, t = world.viewer()
    stranger = os.urandom(32)
    # stranger signs a receipt and presents someone else's ticket
    r = sign_receipt(stranger, world.domain, relay=relay.address, stream=world.stream,
                     epoch=world.epoch, index=t.index, received=1000)
    res, gained = _settle(world, relay, [world.entry(t, r)])
    assert gained == 0 and res.rejected == [(0, "no-ticket")]


def test_unfunded_pool_pays_nothing_more(world, chain):
    relay = world.relay()
    # a second stream with a tiny deposit
    from oasis.ledger.devnet import open_funded_stream

    small = open_funded_stream(chain, chain.faucet_key, world.broadcaster, os.urandom(32), world.pay(1500),
                               3_000_000_000_007, EPOCH)
    vk, t = world.viewer()
    t = sign_ticket(world.broadcaster, world.domain, Ticket(**{**t.__dict__, "stream": small, "signature": b""}))
    entries = []
    for n in (1000, 1000):
        k = os.urandom(32)
        tk = sign_ticket(world.broadcaster, world.domain,
                         Ticket(eip712.address_of_key(k), small, len(entries), ALLOWANCE, t.not_before, t.expiry))
        r = sign_receipt(k, world.domain, relay=relay.address, stream=small, epoch=world.epoch,
                         index=tk.index, received=n)
        entries.append(world.entry(tk, r))
    before = chain.token_balance(relay.address)
    res = chain.settle(relay.key, small, world.epoch, entries)
    assert chain.token_balance(relay.address) - before == world.pay(1000)
    assert res.rejected == [(1, "unfunded")]
    assert chain.stream_info(small)["balance"] == world.pay(1500) - world.pay(1000)


def test_events_record_every_payment(world):
    relay = world.relay()
    entries = []
    for n in (10_000, 20_000):
        vk, t = world.viewer()
        entries.append(world.entry(t, world.receipt(vk, t, relay, n)))
    res = world.chain.settle(relay.key, world.stream, world.epoch, entries)
    paid = [e for e in world.chain.events("Paid") if e["tx"] == res.tx_hash]
    assert [(e["bytes_paid"], e["amount"]) for e in paid] == [(n, world.pay(n)) for n in (10_000, 20_000)]
    settled = [e for e in world.chain.events("Settled") if e["tx"] == res.tx_hash]
    assert settled[0]["amount"] == res.amount == sum(world.pay(n) for n in (10_000, 20_000))
    assert settled[0]["relay"] == world.chain.w3.to_checksum_address(relay.address)
