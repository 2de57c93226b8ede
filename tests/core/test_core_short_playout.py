"""A short playout delay (0.5 s, the node's default) must not tear the push trees
apart: a slow parent is not taken for a withholder (oasis.core.delay, .tree)."""

from __future__ import annotations

import random

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId, sign_chunk

K = 4


def _fed_node(cfg: sw.SwarmConfig, seed: int) -> tuple[sw.Swarm, StreamId, Identity]:
    rng = random.Random(seed)
    bid = Identity.from_private_bytes(rng.randbytes(32))
    sid = StreamId(bid.public, "t")
    me = Identity.from_private_bytes(rng.randbytes(32)).public
    node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=0.0)
    node.add_peer(bid.public, 0.0, rtt=0.02)
    tb = peer_tag(bid.public)
    node.on_message(bid.public, wire.Status(stream=sid.key, latest=10, have=0, keyframe=10, slots=8,
                                            paths=[[tb]] * K, lags=[0] * K), 0.0)
    node.on_message(bid.public, wire.SubscribeAck(stream=sid.key, accepted=(1 << K) - 1, rejected=0),
                    0.05)
    node.actions()
    assert all(p == bid.public for p in node.parents)
    return node, sid, bid


def test_a_slow_parent_is_not_taken_for_a_withholder_one_that_stops_is() -> None:
    node, sid, bid = _fed_node(sw.SwarmConfig(upload_kbps=6000, playout_delay=0.5, withhold_run=2), 9)
    parent = bid.public
    # the parent pushed chunk 0 of substream 0 0.28 s after its time: its usual delay
    node.on_chunk(parent, sign_chunk(bid, sid, 0, 1_000_000, True, b"a"), 1.28)
    assert node.tree.parent_pushed_any[0]
    # chunks 4 and 8 came from the origin before the parent's usual push: no evidence
    for seq in (4, 8):
        t = 1.0 + seq * 0.1
        node.on_origin(seq, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"b"), t + 0.2)
    assert node.tree.miss_run[0] == 0 and node.parents[0] == parent
    # after its usual push time they count: two in a row and it is dropped as parent
    for seq in (12, 16):
        t = 1.0 + seq * 0.1
        node.on_origin(seq, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"c"), t + 0.32)
    assert node.parents[0] is None and node.counters.parents_withholding == 1


def test_a_parent_that_never_pushed_gets_no_benefit_of_the_doubt() -> None:
    """It pushed nothing since we subscribed: a lag learnt through an earlier parent does
    not excuse it; chunks the origin had to give us count (a repair before the origin
    time does not: a fresh QUIC link paces its first chunks over an RTT or more)."""
    node, sid, bid = _fed_node(sw.SwarmConfig(upload_kbps=6000, playout_delay=0.5, withhold_run=2), 10)
    node.delay.sample(0, 0.28, True)  # a lag learnt from an earlier parent on substream 0
    # the start: a keyframe of substream 1, pushed by the parent
    node.on_chunk(bid.public, sign_chunk(bid, sid, 1, 1_100_000, True, b"k"), 1.15)
    assert node.start_seq == 1 and not node.tree.parent_pushed_any[0]
    for seq in (4, 8):
        t = 1.0 + seq * 0.1
        node.on_origin(seq, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"b"), t + 0.31)
    assert node.parents[0] is None and node.counters.parents_withholding == 1


def test_no_repair_round_when_the_parent_push_usually_comes_later() -> None:
    """Playout 0.5 s: the origin is asked 0.3 s after a chunk's time and a repair at most
    0.15 s after it. A parent whose pushes come ~0.25 s after the chunk's time is beaten
    by every repair: each request fetches a chunk already on its way (a duplicate, and
    upload taken from the relays that carry the trees). At 1,000 simulated peers x 40 s
    this rule alone moved the offload from 0.14 to 0.35."""
    from oasis.core.delay import DelayEstimator

    d = DelayEstimator(K, repair_after=0.15, playout_delay=0.5, origin_margin=0.2)
    for _ in range(20):
        d.sample(0, 0.25, True)
        d.sample(1, 0.06, True)
    assert d.repair[0] > 0.5 - 0.2  # never before the origin fallback
    assert d.repair[1] == 0.15  # a fast parent: repaired after repair_after, as before
    assert abs(d.usual_push(0) - 0.28) < 1e-9 and abs(d.usual_push(1) - 0.09) < 1e-9
    d.update(0, False)  # no parent: repaired after repair_after
    assert d.repair[0] == 0.15
