"""A peer that LEAVEs and JOINs again (or closes its link and dials again) comes back with
its accounts, not fresh ones (docs/oftp.md §9.4, §14.1; found 2026-12-03 by an outside
attacker, ``bench/atk6_join_churn.py``: LEAVE + JOIN every 0.5 s refilled a flooder's pull
budget and wiped its strikes, and each link drew 4.2x the stream rate from a broadcaster and
was never cut off, against 1.1x and a ban without the churn). The real ``Swarm`` core in
virtual time (``tests/core/swarmnet.py``)."""

from __future__ import annotations

import random

from test_core_swarm import assert_complete, build

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.wire import ChunkMsg, ErrorCode

SMALL = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, bitrate_kbps=100)


def _stranger(seed: int) -> bytes:
    return Identity.from_private_bytes(random.Random(seed).randbytes(32)).public


def test_leave_and_join_again_keeps_the_pull_budget_and_the_strikes() -> None:
    net = build(10, seed=31, config=SMALL)
    net.tick(20)
    victim = net.viewers[0]
    node = net.nodes[victim]
    mallory = _stranger(1)
    node.add_peer(mallory, net.now)
    start, sent_before = net.now, len(net.log[victim])
    asked = 0
    for _ in range(30):  # 3 s: every 100 ms, REQUEST the window twice, then LEAVE and JOIN
        if mallory not in node.peers and (victim, mallory, ErrorCode.TOO_MANY_ERRORS) in net.dropped:
            break
        lo = max(0, node.log.latest - 40)
        for _twice in range(2):
            for seq in range(lo, node.log.latest + 5):
                node.on_message(mallory, wire.Request(stream=net.sid.key, seq=seq), net.now)
                asked += 1
        net._pump(victim)
        if mallory in node.peers:
            node.on_message(mallory, wire.Leave(stream=net.sid.key), net.now)
            node.add_peer(mallory, net.now)  # the policy's JOIN
        net.tick()
    pushed = sum(len(a.chunk.payload) for _, a in net.log[victim][sent_before:]
                 if isinstance(a, sw.Push) and a.peer == mallory)
    rate = node.stream_rate()
    budget = node.config.request_burst * rate + node.config.request_share * rate * (net.now - start)
    assert asked > 200
    assert 0 < pushed <= budget, (pushed, budget)  # was: a full budget at every JOIN
    c = node.counters
    assert c.peers_rejoined >= 1
    assert c.flooders_dropped == 1  # was: never (its strikes went with each LEAVE)
    assert (victim, mallory, ErrorCode.TOO_MANY_ERRORS) in net.dropped
    net.tick(20)
    for v in net.viewers:
        assert_complete(net, v, net.now, {"p2p", "broadcaster", "origin"})


def test_bad_chunks_and_a_withholders_back_off_outlive_a_leave() -> None:
    net = build(4, seed=37)
    net.tick(5)
    node = net.nodes[net.viewers[3]]
    forger = next(k for k in node.peers if k != net.bid.public)
    for i, seq in enumerate(sorted(node.log.chunks)[-3:]):
        real = node.log.get(seq)
        assert real is not None
        forged = ChunkMsg(stream=real.stream, seq=seq, time_us=real.time_us, flags=real.flags,
                          signature=real.signature, payload=b"evil" + real.payload[4:])
        node.on_chunk(forger, forged, net.now)
        if i < 2:  # two bad chunks, then out and in again
            node.on_message(forger, wire.Leave(stream=net.sid.key), net.now)
            node.add_peer(forger, net.now)
    net._pump(net.viewers[3])
    assert (net.viewers[3], forger, ErrorCode.BAD_CHUNK) in net.dropped  # was: 1 of 3 each time
    # a parent's back-off for a substream (a withholder's 20 s) is kept across a rejoin
    other = next(k for k in node.peers if k != net.bid.public)
    node.peers[other].rejected_until[1] = net.now + 20.0
    node.remove_peer(other, net.now)
    node.add_peer(other, net.now)
    assert node.peers[other].rejected_until.get(1) == net.now + 20.0
    assert node.counters.peers_rejoined == 3


def test_the_memory_of_departed_peers_is_bounded() -> None:
    net = build(2, seed=5)
    node = net.nodes[net.viewers[0]]
    for i in range(sw.DEPARTED_MAX + 50):
        k = _stranger(1000 + i)
        node.add_peer(k, net.now)
        node.remove_peer(k, net.now)
    assert len(node._departed) == sw.DEPARTED_MAX
    node.add_peer(_stranger(1000), net.now)  # the oldest was forgotten: a fresh account
    assert node.counters.peers_rejoined == 0
