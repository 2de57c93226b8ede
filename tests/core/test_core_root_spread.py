"""The broadcaster feeds each child one substream (``root_spread``): its slots make as
many relays one hop deep as it has slots (docs/oftp.md §9.2)."""

from __future__ import annotations

import random

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId


def _keys(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(n)]


def _status(skey: bytes, paths: list[list[bytes]], lags: list[int]) -> wire.Status:
    return wire.Status(stream=skey, latest=40, have=0, keyframe=40, slots=8, paths=paths, lags=lags)


def _sent(node: sw.Swarm, kind: type) -> dict[bytes, int]:
    """Masks of the SUBSCRIBE sent / SUBSCRIBE_ACK accepted, per peer."""
    out: dict[bytes, int] = {}
    for a in node.actions():
        if isinstance(a, sw.Send) and isinstance(a.message, kind):
            m = a.message.accepted if isinstance(a.message, wire.SubscribeAck) else a.message.mask
            out[a.peer] = out.get(a.peer, 0) | m
    return out


def test_the_broadcaster_feeds_each_child_one_substream_with_root_spread() -> None:
    b, *kids = _keys(10, 23)
    sid = StreamId(b, "t")
    # 0.8 * 3000 * 4 / 1500: 6 slots for 8 neighbours
    cfg = sw.SwarmConfig(chunk_ms=100, upload_kbps=3000, substreams=4)  # root_spread: the default
    src = sw.Swarm(sid, b, cfg, is_source=True, rng=random.Random(1), now=0.0)
    for k in kids[:8]:
        src.add_peer(k, 0.0, rtt=0.02)
    src.actions()
    got = []
    for k in kids[:4]:  # each asks for every substream; each gets one, a different one
        src.on_message(k, wire.Subscribe(stream=sid.key, mask=0b1111, substreams=4), 0.1)
        got.append(_sent(src, wire.SubscribeAck)[k])
    assert sorted(got) == [0b0001, 0b0010, 0b0100, 0b1000]
    # a second substream for a child is refused while neighbours have none; its own is kept
    src.on_message(kids[0], wire.Subscribe(stream=sid.key, mask=0b1111, substreams=4), 0.2)
    assert _sent(src, wire.SubscribeAck)[kids[0]] == got[0]
    # the child does not ask it for another one (it ranks the other candidates)
    me = kids[8]
    node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=0.0)
    node.add_peer(b, 0.0, rtt=0.02)
    node.on_message(b, _status(sid.key, [[peer_tag(b)]] * 4, [0] * 4), 0.0)
    assert _sent(node, wire.Subscribe) == {b: 0b1111}
    node.on_message(b, wire.SubscribeAck(stream=sid.key, accepted=0b0100, rejected=0b1011), 0.05)
    node.actions()
    node.tree.select_parents(5.0, improve=True)  # the rejections' back-off is over
    assert not _sent(node, wire.Subscribe)
    # without root_spread every substream comes from the broadcaster
    plain = sw.Swarm(sid, b, sw.SwarmConfig(chunk_ms=100, upload_kbps=3000, substreams=4, root_spread=False),
                     is_source=True, rng=random.Random(1), now=0.0)
    for k in kids[:8]:
        plain.add_peer(k, 0.0, rtt=0.02)
    plain.actions()
    plain.on_message(kids[0], wire.Subscribe(stream=sid.key, mask=0b1111, substreams=4), 0.1)
    assert _sent(plain, wire.SubscribeAck)[kids[0]] == 0b1111


def test_a_broadcaster_with_slots_to_spare_feeds_a_lone_viewer_every_substream() -> None:
    """Slots beyond one per neighbour that is no child yet go to second substreams: a
    viewer alone with the broadcaster is pushed all of them, not left to pull three."""
    b, lone, other = _keys(3, 29)
    sid = StreamId(b, "t")
    src = sw.Swarm(sid, b, sw.SwarmConfig(chunk_ms=100, upload_kbps=3000, substreams=4),
                   is_source=True, rng=random.Random(1), now=0.0)
    src.add_peer(lone, 0.0, rtt=0.02)
    src.actions()
    src.on_message(lone, wire.Subscribe(stream=sid.key, mask=0b1111, substreams=4), 0.1)
    assert _sent(src, wire.SubscribeAck)[lone] == 0b1111
    # a second viewer still finds a slot (6 - 4), and gets a substream it asks for
    src.add_peer(other, 0.2, rtt=0.02)
    src.actions()
    src.on_message(other, wire.Subscribe(stream=sid.key, mask=0b0011, substreams=4), 0.3)
    assert _sent(src, wire.SubscribeAck)[other] == 0b0011
