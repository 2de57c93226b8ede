"""CANCEL (docs/oftp.md §9.4) from a stranger, as an attacker would send it (tried
2026-12-03, ``bench/atk5_cancel_flood.py``): CANCELs for requests another peer sent, for
seqs nobody asked, and REQUEST-then-CANCEL churn. Real Swarm cores on the test network
(swarmnet, virtual time); nothing broke -- this pins what holds."""

from __future__ import annotations

import random

from test_core_swarm import build

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity


def _stranger(seed: int) -> bytes:
    return Identity.from_private_bytes(random.Random(seed).randbytes(32)).public


def test_a_cancel_drops_only_the_senders_own_requests_and_answers() -> None:
    """An attacker's CANCELs for the seqs an honest peer asked (held, or its answer queued
    behind the upload cap) drop nothing of the honest peer's: only counted late; the honest
    peer is answered both."""
    net = build(8, seed=7)
    net.tick(20)
    relay = net.viewers[2]
    node = net.nodes[relay]
    honest, attacker = _stranger(11), _stranger(12)
    node.add_peer(honest, net.now)
    node.add_peer(attacker, net.now)
    node.upload.tokens = -1e9  # out of tokens: the answer waits in the queue
    queued_seq = node.log.latest - 1
    held_seq = node.log.latest + 1  # not made yet: held
    since = len(net.log[relay])
    for seq in (queued_seq, held_seq):
        node.on_message(honest, wire.Request(stream=net.sid.key, seq=seq), net.now)
    queued, held = len(node.upload), node.held.count
    assert queued >= 1 and held == 1
    for seq in (queued_seq, held_seq, 2**64 - 1, 0):  # the honest peer's, and nobody's
        node.on_message(attacker, wire.Cancel(stream=net.sid.key, seq=seq), net.now)
    assert (len(node.upload), node.held.count) == (queued, held)
    c = node.counters
    assert (c.cancels_held, c.cancels_queued, c.cancels_late) == (0, 0, 4)
    node.upload.tokens = node.upload.depth
    net._pump(relay)
    net.tick(5)
    pushed = {a.chunk.seq for _, a in net.log[relay][since:] if isinstance(a, sw.Push) and a.peer == honest}
    assert {queued_seq, held_seq} <= pushed


def test_request_then_cancel_churn_spends_the_pull_budget() -> None:
    """REQUEST then CANCEL at once, over and over: the budget each REQUEST spent is not
    given back, so the churn is refused (and struck) like a plain REQUEST flood, and a
    CANCEL never makes room for more."""
    net = build(8, seed=8)
    net.tick(20)
    relay = net.viewers[2]
    node = net.nodes[relay]
    attacker = _stranger(13)
    node.add_peer(attacker, net.now)
    node.upload.tokens = -1e9
    top = node.log.latest
    chunk = node.log.get(top)
    assert chunk is not None
    size = len(chunk.payload)
    budget = node.config.request_burst * node.config.request_share * node.pulls.stream_rate()
    n = int(budget / size) * 2 + 50  # twice what the budget pays for (no time passes)
    c = node.counters
    served0, refused0, queued0 = c.requests_served, c.requests_refused, c.cancels_queued
    for i in range(n):
        seq = top - (i % 20)
        node.on_message(attacker, wire.Request(stream=net.sid.key, seq=seq), net.now)
        node.on_message(attacker, wire.Cancel(stream=net.sid.key, seq=seq), net.now)
    served = c.requests_served - served0
    assert c.requests_refused - refused0 > 0 and c.cancels_queued - queued0 == served
    assert served * size <= budget + size  # the CANCELs gave nothing back
