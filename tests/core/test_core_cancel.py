"""CANCEL (docs/oftp.md §9.4): a chunk that arrives while other peers still have our
REQUEST for it is cancelled there, so a held request or a queued answer does not send
a duplicate. Real Swarm cores on the test network (swarmnet, virtual time)."""

from __future__ import annotations

import random

from test_core_swarm import RecNet, assert_complete, build

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity


def _stranger(seed: int) -> bytes:
    return Identity.from_private_bytes(random.Random(seed).randbytes(32)).public


def _pushes_to(net: RecNet, node: bytes, peer: bytes, seq: int, since: int) -> list[sw.Push]:
    return [a for _, a in net.log[node][since:]
            if isinstance(a, sw.Push) and a.peer == peer and a.chunk.seq == seq]


def test_a_cancelled_held_request_is_not_answered() -> None:
    """Two peers ask a relay for the next chunk before it exists: both requests are
    held. One cancels (it got the chunk elsewhere): when the chunk comes, only the
    other is answered, and the cancel is counted."""
    net = build(8, seed=5)
    net.tick(20)
    relay = net.viewers[3]
    node = net.nodes[relay]
    keeps, cancels = _stranger(1), _stranger(2)
    node.add_peer(keeps, net.now)
    node.add_peer(cancels, net.now)
    seq = node.log.latest + 1  # not made yet: held
    since = len(net.log[relay])
    for k in (keeps, cancels):
        node.on_message(k, wire.Request(stream=net.sid.key, seq=seq), net.now)
    assert node.held.count == 2
    node.on_message(cancels, wire.Cancel(stream=net.sid.key, seq=seq), net.now)
    assert node.held.count == 1 and node.counters.cancels_held == 1
    net._pump(relay)
    net.tick(5)
    assert seq in node.log
    assert _pushes_to(net, relay, keeps, seq, since), "the request not cancelled is answered"
    assert not _pushes_to(net, relay, cancels, seq, since), "a cancelled request was answered"
    # a CANCEL for nothing held or queued only counts
    node.on_message(cancels, wire.Cancel(stream=net.sid.key, seq=seq + 1000), net.now)
    assert node.counters.cancels_late == 1


def test_a_cancelled_answer_still_queued_is_not_sent() -> None:
    """A relay at its upload cap queues answers; a CANCEL takes the queued one out."""
    net = build(8, seed=6)
    net.tick(20)
    relay = net.viewers[2]
    node = net.nodes[relay]
    asker = _stranger(3)
    node.add_peer(asker, net.now)
    node.upload.tokens = -1e9  # out of tokens: every send waits in the queue
    seq = node.log.latest - 1
    since = len(net.log[relay])
    node.on_message(asker, wire.Request(stream=net.sid.key, seq=seq), net.now)
    queued = len(node.upload)
    assert queued >= 1
    node.on_message(asker, wire.Cancel(stream=net.sid.key, seq=seq), net.now)
    assert node.counters.cancels_queued == 1 and len(node.upload) == queued - 1
    node.upload.tokens = node.upload.depth
    net._pump(relay)
    net.tick(5)
    assert not _pushes_to(net, relay, asker, seq, since)


def _lossy(net: RecNet, rate: float, seed: int) -> None:
    """Drop a share of pushes between viewers: their children repair from neighbours."""
    rng = random.Random(seed)
    src = net.bid.public

    def keep(key: bytes, a: object) -> bool:
        return not (isinstance(a, sw.Push) and key != src and rng.random() < rate)
    net.keep = keep


def test_a_viewer_cancels_only_requests_it_sent_and_only_once_it_holds_the_chunk() -> None:
    """With pushes lost, viewers repair from several neighbours. Every CANCEL a viewer
    sends goes to a peer it had sent a REQUEST for that chunk, after the chunk came;
    playback stays whole. (What the cancels save is measured in the simulator:
    tests/sim/test_sim_cancel.py.)"""
    net = build(14, seed=9, config=sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, cancel_requests=True))
    _lossy(net, 0.15, 9)
    net.tick(200)  # 20 s
    assert sum(net.nodes[v].counters.cancels_sent for v in net.viewers) > 0, \
        "no request was outstanding when a chunk came: the test says nothing"
    for v in net.viewers:
        requested: set[tuple[bytes, int]] = set()
        held_at = {s: a.at for s, a in net.delivers(v).items()}
        for t, a in net.log[v]:
            if not isinstance(a, sw.Send):
                continue
            if isinstance(a.message, wire.Request):
                requested.add((a.peer, a.message.seq))
            elif isinstance(a.message, wire.Cancel):
                seq = a.message.seq
                assert (a.peer, seq) in requested, "CANCEL to a peer never asked"
                assert seq in held_at and held_at[seq] <= t, "CANCEL before the chunk came"
        assert_complete(net, v, net.now, {"p2p", "broadcaster", "origin"})
