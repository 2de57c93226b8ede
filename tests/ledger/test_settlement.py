"""Relay-side ingestion and epoch settlement, including restarts and crashes."""

from __future__ import annotations

import os

import pytest

from oasis.ledger import eip712
from oasis.ledger.receipt_store import ReceiptStore
from oasis.ledger.receipts import Receipt
from oasis.ledger.settlement import RelayLedger
from oasis.ledger.tickets import Ticket, TicketError, sign_ticket

from .world import ALLOWANCE, EPOCH


def _reopen(world, relay):
    path = relay.store.db.execute("PRAGMA database_list").fetchone()[2]
    relay.store.close()
    return RelayLedger(ReceiptStore(path), relay.key, world.domain, world.chain, clock=lambda: world.now)


def test_relay_checks_every_receipt_on_arrival(world):
    relay = world.relay()
    vk, t = world.viewer()
    assert relay.accept_receipt(world.receipt(vk, t, relay, 10).encode()).reason == "no-ticket"
    relay.accept_ticket(t.encode())
    r = world.receipt(vk, t, relay, 1000)
    assert relay.accept_receipt(r.encode()).accepted
    assert relay.accept_receipt(world.receipt(vk, t, relay, 999).encode()).reason == "stale"
    twin = Receipt(**{**r.__dict__, "signature": eip712.high_s_twin(r.signature)})
    assert relay.accept_receipt(twin.encode()).reason == "bad-signature"
    assert relay.accept_receipt(world.receipt(vk, t, os.urandom(20), 5000).encode()).reason == "wrong-relay"
    assert relay.accept_receipt(b"junk").reason == "malformed"
    assert relay.accept_receipt(world.receipt(os.urandom(32), t, relay, 5000).encode()).reason == "no-ticket"
    future = world.receipt(vk, t, relay, 5000, epoch=world.epoch + 5)
    assert relay.accept_receipt(future.encode()).reason == "future-epoch"
    old = world.receipt(vk, t, relay, 5000, epoch=world.epoch - 10)
    assert relay.accept_receipt(old.encode()).reason == "ticket-window"
    with pytest.raises(TicketError):
        relay.accept_ticket(sign_ticket(os.urandom(32), world.domain,
                                        Ticket(**{**t.__dict__, "signature": b""})).encode())
    assert relay.store.latest(t.viewer, world.stream, world.epoch) == 1000


def test_restart_mid_epoch_settles_once(world):
    relay = world.relay()
    viewers = [world.viewer() for _ in range(5)]
    for vk, t in viewers:
        relay.accept_ticket(t.encode())
        relay.accept_receipt(world.receipt(vk, t, relay, 100_000).encode())
    world.epoch += 1  # the running epoch: nothing is due yet
    world.now = world.epoch * EPOCH + 5
    for vk, t in viewers:
        relay.accept_receipt(world.receipt(vk, t, relay, 200_000).encode())
    first = relay.settle_due()  # settles the finished epoch, not the running one
    assert [len(r.paid) for r in first] == [5]
    relay = _reopen(world, relay)  # restart mid-epoch
    for vk, t in viewers[:3]:
        assert relay.accept_receipt(world.receipt(vk, t, relay, 300_000).encode()).accepted
    world.now += EPOCH  # epoch over
    results = relay.settle_due()
    expected = 5 * world.pay(100_000) + 3 * world.pay(300_000) + 2 * world.pay(200_000)
    assert world.chain.token_balance(relay.address) == expected
    relay = _reopen(world, relay)
    assert relay.settle_due() == []
    assert world.chain.token_balance(relay.address) == expected
    assert len(results) == 1 and relay.stats()["settle_txs"] == 2  # one per (stream, epoch)


def test_crash_between_send_and_mark_pays_once(world):
    relay = world.relay()
    vk, t = world.viewer()
    relay.accept_ticket(t.encode())
    relay.accept_receipt(world.receipt(vk, t, relay, 400_000).encode())

    def crash(*a, **k):
        raise KeyboardInterrupt("power cut")

    relay._apply = crash  # the tx is mined, the store is not updated
    with pytest.raises(KeyboardInterrupt):
        relay.settle_due()
    relay = _reopen(world, relay)
    assert len(relay.store.pending_settlements()) == 1
    assert relay.settle_due() == []  # recovered from the chain, nothing resent
    assert relay.store.pending_settlements() == []
    assert world.chain.token_balance(relay.address) == world.pay(400_000)
    assert relay.stats()["tokens_paid"] == world.pay(400_000)


def test_store_behind_chain_costs_gas_not_tokens(world):
    relay = world.relay()
    vk, t = world.viewer()
    relay.accept_ticket(t.encode())
    relay.accept_receipt(world.receipt(vk, t, relay, ALLOWANCE // 2).encode())
    relay.settle_due()
    # lose the settlement marks entirely (e.g. restored an old backup)
    relay.store.db.execute("UPDATE receipts SET settled=0")
    res = relay.settle_due()
    assert [x.rejected for x in res] == [[(0, "replay")]]
    assert world.chain.token_balance(relay.address) == world.pay(ALLOWANCE // 2)


def test_batches_are_split_and_sorted(world):
    relay = world.relay()
    relay.max_batch = 4
    for _ in range(10):
        vk, t = world.viewer()
        relay.accept_ticket(t.encode())
        relay.accept_receipt(world.receipt(vk, t, relay, 1000).encode())
    res = relay.settle_due()
    assert [len(r.paid) for r in res] == [4, 4, 2]
    assert world.chain.token_balance(relay.address) == 10 * world.pay(1000)
    st = relay.stats()
    assert st["receipts"] == 10 and st["settle_txs"] == 3 and st["gas_per_receipt"] > 0


def test_viewer_meter_feeds_a_relay_end_to_end(world):
    from oasis.ledger.receipts import ViewerMeter

    relay = world.relay()
    vk, t = world.viewer()
    relay.accept_ticket(t.encode())
    meter = ViewerMeter(vk, world.domain, t, EPOCH)
    start = world.epoch * EPOCH
    for i in range(6):
        meter.on_bytes(relay.address, 100_000, start + i * 5)
        for r in meter.due(start + i * 5):
            assert relay.accept_receipt(r.encode()).accepted
    assert meter.due(start + 30) == []  # nothing new
    relay.settle_due()
    assert world.chain.token_balance(relay.address) == world.pay(600_000)
