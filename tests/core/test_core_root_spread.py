"""The broadcaster feeds each child one substream (``root_spread``): its slots make as
many relays one hop deep as it has slots (docs/oftp.md §9.2)."""

from __future__ import annotations

import random

import pytest

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
        if not isinstance(a, sw.Send) or not isinstance(a.message, kind):
            continue
        msg = a.message
        if isinstance(msg, wire.SubscribeAck):
            out[a.peer] = out.get(a.peer, 0) | msg.accepted
        elif isinstance(msg, wire.Subscribe):
            out[a.peer] = out.get(a.peer, 0) | msg.mask
    return out


def test_the_broadcaster_feeds_each_child_one_substream_with_root_spread() -> None:
    b, *kids = _keys(10, 23)
    sid = StreamId(b, "t")
    # 0.8 * 3000 * 4 / 1500: 6 slots for 8 neighbours. root_spread without root_strict (the
    # rule before it): a child of the broadcaster never asks it for another substream
    cfg = sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=3000, substreams=4, root_strict=False,
                         root_giveback=False)
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
    plain = sw.Swarm(sid, b, sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=3000, substreams=4, root_spread=False),
                     is_source=True, rng=random.Random(1), now=0.0)
    for k in kids[:8]:
        plain.add_peer(k, 0.0, rtt=0.02)
    plain.actions()
    plain.on_message(kids[0], wire.Subscribe(stream=sid.key, mask=0b1111, substreams=4), 0.1)
    assert _sent(plain, wire.SubscribeAck)[kids[0]] == 0b1111


def test_a_broadcaster_with_slots_to_spare_feeds_a_lone_viewer_every_substream() -> None:
    """Without ``root_strict``, slots beyond one per neighbour that is no child yet go to
    second substreams at a child's first SUBSCRIBE: a viewer alone with the broadcaster is
    pushed all of them, not left to pull three. (With it, the default, the lone viewer
    asks again for them: the next test.)"""
    b, lone, other = _keys(3, 29)
    sid = StreamId(b, "t")
    src = sw.Swarm(sid, b, sw.SwarmConfig(chunk_ms=100, upload_kbps=3000, substreams=4, root_strict=False),
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


def _exchange(a: sw.Swarm, a_key: bytes, b: sw.Swarm, b_key: bytes, t: float) -> None:
    """Deliver ``a``'s control messages (but STATUS) to ``b``, and ``b``'s answers to ``a``."""
    for x in a.actions():
        if isinstance(x, sw.Send) and not isinstance(x.message, wire.Status):
            b.on_message(a_key, x.message, t)
    for x in b.actions():
        if isinstance(x, sw.Send) and not isinstance(x.message, wire.Status):
            a.on_message(b_key, x.message, t + 0.01)


def test_root_strict_gives_one_substream_first_and_the_rest_only_to_a_child_with_no_other_candidate() -> None:
    """``root_strict``: a child's first SUBSCRIBE gets one substream from the broadcaster;
    the bits it refused are no refusal for the child, who asks the broadcaster again at
    once where no other neighbour is a candidate (a lone viewer ends with all four), and
    does not where another neighbour is."""
    b, lone, kid, relay = _keys(4, 31)
    sid = StreamId(b, "t")
    cfg = sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=3000, substreams=4, root_strict=True)
    full = [[peer_tag(b)]] * 4
    src = sw.Swarm(sid, b, cfg, is_source=True, rng=random.Random(1), now=0.0)
    node = sw.Swarm(sid, lone, cfg, rng=random.Random(1), now=0.0)
    src.add_peer(lone, 0.0, rtt=0.02)
    node.add_peer(b, 0.0, rtt=0.02)
    src.actions()
    node.on_message(b, _status(sid.key, full, [0] * 4), 0.0)
    subs = _sent(node, wire.Subscribe)
    assert subs == {b: 0b1111}
    src.on_message(lone, wire.Subscribe(stream=sid.key, mask=0b1111, substreams=4), 0.01)
    acks = [a.message for a in src.actions()
            if isinstance(a, sw.Send) and isinstance(a.message, wire.SubscribeAck)]
    assert len(acks) == 1 and bin(acks[0].accepted).count("1") == 1  # strictly one at first
    node.on_message(b, acks[0], 0.02)
    _exchange(node, lone, src, b, 0.03)  # asked again at once: no other candidate
    assert node.tree.parents == [b] * 4 and src.peers[lone].children_mask == 0b1111

    # a child with another candidate for the other substreams does not ask for them
    src.add_peer(kid, 0.1, rtt=0.02)
    src.actions()
    child = sw.Swarm(sid, kid, cfg, rng=random.Random(2), now=0.1)
    child.add_peer(b, 0.1, rtt=0.02)
    child.add_peer(relay, 0.1, rtt=0.02)
    child.on_message(b, _status(sid.key, full, [0] * 4), 0.1)
    assert _sent(child, wire.Subscribe) == {b: 0b1111}
    child.on_message(relay, _status(sid.key, [[peer_tag(b), peer_tag(relay)]] * 4, [60] * 4), 0.1)
    child.on_message(b, wire.SubscribeAck(stream=sid.key, accepted=0b0010, rejected=0b1101), 0.12)
    assert _sent(child, wire.Subscribe) == {relay: 0b1101}

    # without root_strict (the rule before) the lone viewer's first SUBSCRIBE already gets
    # all four (the broadcaster's slots exceed its neighbours without one)
    plain = sw.Swarm(sid, b, sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=3000, substreams=4, root_strict=False),
                     is_source=True, rng=random.Random(1), now=0.0)
    plain.add_peer(lone, 0.0, rtt=0.02)
    plain.actions()
    plain.on_message(lone, wire.Subscribe(stream=sid.key, mask=0b1111, substreams=4), 0.01)
    assert _sent(plain, wire.SubscribeAck)[lone] == 0b1111


def test_home_penalty_asks_a_relay_for_the_substream_where_it_is_shallow() -> None:
    """``home_penalty``: of two relays equally fast on substream 0, the child asks the one
    for which 0 is its fastest substream (its home), not the one that is deep on 0 and
    shallow on another; with no penalty it could ask either."""
    b, me, home, away = _keys(4, 37)
    sid = StreamId(b, "t")
    for hp, want in ((0.05, home), (0.0, None)):
        cfg = sw.SwarmConfig(chunk_ms=100, upload_kbps=3000, substreams=4, home_penalty=hp)
        node = sw.Swarm(sid, me, cfg, rng=random.Random(3), now=0.0)
        node.add_peer(home, 0.0, rtt=0.02)
        node.add_peer(away, 0.0, rtt=0.02)
        two = [peer_tag(b), peer_tag(home)]
        # ``home`` is fastest on 0 (100 ms, one relay) and later on the others; ``away``
        # reaches us as fast on 0 (70 ms, two relays), but is fastest on 1 (20 ms, its home):
        # on 0 it would spend a slot deep in a tree
        node.on_message(home, _status(sid.key, [two, two + [b"x" * 8], two + [b"x" * 8], two + [b"x" * 8]],
                                      [100, 190, 190, 190]), 0.0)
        node.on_message(away, _status(sid.key, [[peer_tag(b), b"y" * 8, peer_tag(away)], [peer_tag(b), peer_tag(away)],
                                                [peer_tag(b), b"y" * 8, peer_tag(away)],
                                                [peer_tag(b), b"y" * 8, peer_tag(away)]], [70, 20, 190, 190]), 0.0)
        scores = {st.key: s for s, st in node.tree.candidates(0, 0.0)}
        if want is None:
            assert abs(scores[home] - scores[away]) < 0.006  # equally fast: a coin toss (U(0, 5 ms))
        else:
            assert scores[home] < scores[away]
            assert node.tree.parent_score(node.peers[away], 0) - node.tree.expected_arrival(node.peers[away], 0) \
                == pytest.approx(0.05)


def test_root_giveback_moves_the_broadcasters_extra_substreams_once_another_parent_is_a_candidate() -> None:
    """``root_giveback``: a viewer that got every substream from the broadcaster (it had no
    other candidate) keeps one, the one where it has children, and moves the others to a
    relay once one is a candidate and the broadcaster is full (after the switch dwell),
    though the relay is slower."""
    b, me, relay, kid = _keys(4, 41)
    sid = StreamId(b, "t")
    for giveback in (True, False):
        cfg = sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=3000, substreams=4, root_strict=True,
                             root_giveback=giveback)
        node = sw.Swarm(sid, me, cfg, rng=random.Random(4), now=0.0)
        node.add_peer(b, 0.0, rtt=0.02)
        node.on_message(b, _status(sid.key, [[peer_tag(b)]] * 4, [0] * 4), 0.0)
        assert _sent(node, wire.Subscribe) == {b: 0b1111}
        node.on_message(b, wire.SubscribeAck(stream=sid.key, accepted=0b1111, rejected=0), 0.05)
        # while the broadcaster has free slots nobody waits for ours: nothing moves
        node.actions()
        node.tree.select_parents(6.0, improve=True)
        assert not _sent(node, wire.Subscribe)
        node.on_message(b, wire.Status(stream=sid.key, latest=40, have=0, keyframe=40, slots=0,
                                       paths=[[peer_tag(b)]] * 4, lags=[0] * 4), 0.06)  # full now
        node.add_peer(kid, 0.1, rtt=0.02)
        node.on_message(kid, wire.Subscribe(stream=sid.key, mask=0b0100, substreams=4), 0.1)
        node.add_peer(relay, 0.1, rtt=0.02)
        node.on_message(relay, _status(sid.key, [[peer_tag(b), peer_tag(relay)]] * 4, [80] * 4), 0.1)
        node.actions()
        node.tree.select_parents(6.0, improve=True)  # past the switch dwell
        assert _sent(node, wire.Subscribe) == ({relay: 0b1011} if giveback else {})


def test_a_broadcaster_with_a_tight_cap_still_seeds_every_substream() -> None:
    """At 1.2x the bitrate the slot headroom (0.8) left the broadcaster 3 slots for 4
    substreams: one substream had no tree and every viewer took it from the origin (real
    processes, 6 viewers: offload 0.83; now 0.998). Its first copy of each substream is not
    held back; a relay's headroom is unchanged, and a cap under the bitrate seeds what it can."""
    b, lone, other = _keys(3, 37)
    sid = StreamId(b, "t")
    cfg = sw.SwarmConfig(first_wait=0.0, chunk_ms=100, bitrate_kbps=1500, upload_kbps=1800, substreams=4)
    src = sw.Swarm(sid, b, cfg, is_source=True, rng=random.Random(1), now=0.0)
    assert src.tree.total_slots() == 4
    src.add_peer(lone, 0.0, rtt=0.02)
    src.actions()
    got = 0
    for t in (0.1, 0.2, 0.3, 0.4):  # (root_strict: one at a time, asked again at once)
        src.on_message(lone, wire.Subscribe(stream=sid.key, mask=0b1111 & ~got, substreams=4), t)
        got |= _sent(src, wire.SubscribeAck).get(lone, 0)
    assert got == 0b1111  # every substream leaves the broadcaster
    src.add_peer(other, 0.5, rtt=0.02)
    src.actions()
    src.on_message(other, wire.Subscribe(stream=sid.key, mask=0b1111, substreams=4), 0.6)
    assert _sent(src, wire.SubscribeAck)[other] == 0  # and no more than that
    relay = sw.Swarm(sid, lone, cfg, rng=random.Random(1), now=0.0)
    assert relay.tree.total_slots() == 3  # int(0.8 * 1800 * 4 / 1500)
    under = sw.Swarm(sid, b, sw.SwarmConfig(bitrate_kbps=1500, upload_kbps=1200, substreams=4),
                     is_source=True, rng=random.Random(1), now=0.0)
    assert under.tree.total_slots() == 3  # int(1200 * 4 / 1500)
