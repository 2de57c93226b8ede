"""``relay_early_children`` (2 by default; 1: every relay): a late relay's early origin fetch
(``relay_origin_early``) only on a substream where it feeds at least that many children.

For one child the early fetch costs the origin what the child's own fallback would, and the
child may still get the relay's push, or a repair, in time; for two or more it saves fetches.
"""

from __future__ import annotations

import random

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId, sign_chunk

K = 4


def _relay(children: int, need: int) -> sw.Swarm:
    """A relay whose parent pushes every chunk 0.33 s after its time (its children's copy
    would come after their own fallback at 0.38 s) and ``children`` children on substream 0."""
    rng = random.Random(7)
    bid = Identity.from_private_bytes(rng.randbytes(32))
    sid = StreamId(bid.public, "t")
    me, par = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(2))
    kids = [Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(children)]
    tb, t1 = peer_tag(bid.public), b"\x01" * 8
    node = sw.Swarm(sid, me, sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5,
                                            relay_early_children=need), rng=random.Random(1), now=0.0)
    node.add_peer(par, 0.0, rtt=0.02)
    for kid in kids:
        node.add_peer(kid, 0.0, rtt=0.02)
    node.on_message(par, wire.Status(stream=sid.key, latest=10, have=0, keyframe=0, slots=8,
                                     paths=[[tb, t1, peer_tag(par)]] * K, lags=[300] * K), 0.0)
    node.on_message(par, wire.SubscribeAck(stream=sid.key, accepted=(1 << K) - 1, rejected=0), 0.05)
    for seq in range(40):
        t = 1.0 + seq * 0.1
        node.on_chunk(par, sign_chunk(bid, sid, seq, int(t * 1e6), seq == 0, b"x"), t + 0.33)
    for kid in kids:
        node.on_message(kid, wire.Subscribe(stream=sid.key, mask=1, substreams=K), 5.0)
    node.actions()
    assert node.delay.late[0]
    assert sum(1 for st in node.peers.values() if st.children_mask & 1) == children
    return node


def _fetched_early(node: sw.Swarm, seq: int) -> bool:
    """The repair round of ``seq`` (substream 0) finds nobody to ask: did it ask the origin?"""
    t = 1.0 + seq * 0.1
    node.handle_timer(t + node.delay.cap + 0.001)
    return any(isinstance(a, sw.FetchOrigin) and a.seq == seq for a in node.actions())


def test_one_child_gets_no_early_fetch_two_do() -> None:
    gap = 40  # substream 0
    one = _relay(1, 2)
    assert not _fetched_early(one, gap)
    assert one.counters.origin_early == 0
    # the one child's own fallback is unchanged; ours comes at the origin time as a leaf's
    one.handle_timer(1.0 + gap * 0.1 + one.delay.origin_at + 0.001)
    assert [a for a in one.actions() if isinstance(a, sw.FetchOrigin) and a.seq == gap]
    two = _relay(2, 2)
    assert _fetched_early(two, gap)
    assert two.counters.origin_early == 1


def test_at_one_every_relay_fetches_early_and_the_default_is_two() -> None:
    node = _relay(1, 1)
    assert _fetched_early(node, 40)
    assert node.counters.origin_early == 1
    assert sw.SwarmConfig().relay_early_children == 2
