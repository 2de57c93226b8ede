"""``push_relays_first`` (off by default): a relay pushes a chunk of substream ``j`` first to
the children that relay ``j`` further (a neighbour's STATUS path on ``j`` runs through us and
then that child), then to the others.

A relay's pushes leave one after another on its uplink, so the child served last waits for the
others' copies; served last, a child that relays makes its whole subtree wait. Off, the
children are served in the order they became neighbours, as before.
"""

from __future__ import annotations

import random

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId, sign_chunk


def _relay(on: bool) -> tuple[sw.Swarm, bytes, list[bytes], bytes, StreamId, Identity]:
    """A relay fed substream 0 (of one) by ``par``, with children a, b, c on it (in that
    order) and a neighbour ``g`` that is not its child."""
    rng = random.Random(11)
    bid = Identity.from_private_bytes(rng.randbytes(32))
    sid = StreamId(bid.public, "t")
    me, par, a, b, c, g = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(6))
    tb = peer_tag(bid.public)
    node = sw.Swarm(sid, me, sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, substreams=1,
                                            playout_delay=1.0, push_relays_first=on),
                    rng=random.Random(1), now=0.0)
    for key in (par, a, b, c, g):
        node.add_peer(key, 0.0, rtt=0.02)
    node.on_message(par, wire.Status(stream=sid.key, latest=1, have=0, keyframe=0, slots=8,
                                     paths=[[tb, peer_tag(par)]], lags=[50]), 0.0)
    node.on_message(par, wire.SubscribeAck(stream=sid.key, accepted=1, rejected=0), 0.05)
    node.on_chunk(par, sign_chunk(bid, sid, 0, int(0.1 * 1e6), True, b"x" * 200), 0.15)
    for kid in (a, b, c):
        node.on_message(kid, wire.Subscribe(stream=sid.key, mask=1, substreams=1), 0.2)
    node.actions()
    return node, par, [a, b, c], g, sid, bid


def _order(node: sw.Swarm, par: bytes, sid: StreamId, bid: Identity, seq: int, t: float) -> list[bytes]:
    """Who gets chunk ``seq`` pushed, in the order the pushes leave."""
    node.on_chunk(par, sign_chunk(bid, sid, seq, int((t - 0.05) * 1e6), False, b"x" * 200), t)
    return [x.peer for x in node.actions() if isinstance(x, sw.Push) and x.chunk.seq == seq]


def _grandchild(node: sw.Swarm, g: bytes, via: bytes, sid: StreamId, bid: Identity, now: float) -> None:
    """``g`` says (STATUS) it is fed substream 0 by ``via``, our child."""
    path = [peer_tag(bid.public), b"\x01" * 8, node.tag, peer_tag(via), peer_tag(g)]
    node.on_message(g, wire.Status(stream=sid.key, latest=1, have=0, keyframe=0, slots=4,
                                   paths=[path], lags=[200]), now)


def test_a_child_that_relays_is_pushed_first() -> None:
    node, par, (a, b, c), g, sid, bid = _relay(True)
    assert _order(node, par, sid, bid, 1, 0.3) == [a, b, c]  # nobody known to relay: as before
    _grandchild(node, g, c, sid, bid, 0.31)
    assert _order(node, par, sid, bid, 2, 0.4) == [c, a, b]
    assert node.counters.pushes_relay_first == 1
    # each child still gets the chunk once
    assert _order(node, par, sid, bid, 3, 0.5) == [c, a, b]
    assert node.counters.pushes_relay_first == 2


def test_off_the_order_is_unchanged_and_a_claim_through_a_non_child_moves_nothing() -> None:
    node, par, (a, b, c), g, sid, bid = _relay(False)
    _grandchild(node, g, c, sid, bid, 0.31)
    assert _order(node, par, sid, bid, 2, 0.4) == [a, b, c]
    assert node.counters.pushes_relay_first == 0
    assert not sw.SwarmConfig().push_relays_first
    on, par, (a, b, c), g, sid, bid = _relay(True)
    _grandchild(on, g, par, sid, bid, 0.31)  # a path through our parent, not a child of ours
    assert _order(on, par, sid, bid, 2, 0.4) == [a, b, c]
    assert on.counters.pushes_relay_first == 0
