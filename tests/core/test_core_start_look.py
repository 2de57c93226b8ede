"""``start_look``: a newcomer's first parents are looked at again soon after their ACK.

A newcomer subscribes every substream at the first STATUS that claims chunks, so all of
them go to the neighbour whose link came up first, however deep it is; the neighbours
whose links come up a moment later are not considered until the periodic look after
``switch_dwell`` (counted from the ACK: the look at 4 s with the defaults)."""

from __future__ import annotations

import random

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId, sign_chunk

K = 4


def _status(sid_key: bytes, path: list[bytes], lag: int) -> wire.Status:
    return wire.Status(stream=sid_key, latest=40, have=0, keyframe=40, slots=8,
                       paths=[path] * K, lags=[lag] * K)


def _newcomer(start_look: float) -> tuple[dict[bytes, list[tuple[float, int]]], bytes, bytes]:
    """A newcomer hears a deep neighbour first (300 ms lag) and a shallow one 0.15 s later
    (40 ms). Returns the SUBSCRIBEs it sent per peer (time, mask) over 5 s of timers."""
    rng = random.Random(21)
    b, deep, near, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(4))
    sid = StreamId(b, "t")
    cfg = sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, substreams=K, start_look=start_look)
    node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=0.0)
    tb = peer_tag(b)
    asked: dict[bytes, list[tuple[float, int]]] = {}

    def drain(now: float) -> None:
        for a in node.actions():
            if isinstance(a, sw.Send) and isinstance(a.message, wire.Subscribe):
                asked.setdefault(a.peer, []).append((now, a.message.mask))
                # each neighbour accepts at once, a round trip (0.1 s) later
                acks.append((now + 0.1, a.peer, a.message.mask))

    acks: list[tuple[float, bytes, int]] = []
    node.add_peer(deep, 0.0, rtt=0.05)
    node.on_message(deep, _status(sid.key, [tb, peer_tag(b)[:4] + b"\x01" * 4, peer_tag(deep)], 300), 0.0)
    drain(0.0)
    assert asked == {deep: [(0.0, (1 << K) - 1)]}  # every substream from the first one heard
    events: list[tuple[float, bytes | None]] = [(0.15, near)]
    now = 0.0
    while now < 5.0:
        t = node.get_timer()
        assert t is not None
        nxt = min([t] + [a[0] for a in acks] + [e[0] for e in events])
        now = max(now, nxt)
        for a in [a for a in acks if a[0] <= now]:
            acks.remove(a)
            node.on_message(a[1], wire.SubscribeAck(stream=sid.key, accepted=a[2], rejected=0), now)
        for e in [e for e in events if e[0] <= now]:
            events.remove(e)
            node.add_peer(near, now, rtt=0.02)
            node.on_message(near, _status(sid.key, [tb, peer_tag(near)], 40), now)
        node.handle_timer(now)
        drain(now)
    return asked, deep, near


def test_start_look_reconsiders_the_first_parent_soon() -> None:
    """With ``start_look`` = 0.5 (the default) the shallow neighbour is asked at the early look, 0.5 s after
    the deep one's ACK (0.1 s), instead of at the periodic look at 4 s."""
    assert sw.SwarmConfig(first_wait=0.0).start_look == 0.5
    asked, deep, near = _newcomer(0.5)
    assert near in asked
    t, mask = asked[near][0]
    assert abs(t - 0.6) < 1e-9, asked[near]
    assert mask  # at least one substream moves (the rest follow at later looks)


def test_without_start_look_the_first_parent_stays_four_seconds() -> None:
    """Off (0; the default before 2026-12-03): the 2 s dwell from the ACK at 0.1 s blocks the look at 2 s; the
    shallow neighbour is first asked at the look at 4 s."""
    asked, deep, near = _newcomer(0.0)
    assert near in asked
    assert asked[near][0][0] == 4.0, asked[near]


def _requests_to_full_neighbour(start_repair: float) -> list[int]:
    """A started viewer whose parent (three relays deep) pushes every chunk 350 ms after its
    time (a late substream) and withholds seq 20; a neighbour one hop deep, 50 ms behind the
    broadcaster, has no free push slot. Returns the seqs it asked of that neighbour."""
    rng = random.Random(23)
    bid = Identity.from_private_bytes(rng.randbytes(32))
    deep, full, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(3))
    sid = StreamId(bid.public, "t")
    cfg = sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, substreams=1, start_repair=start_repair)
    node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=0.0)
    tb = peer_tag(bid.public)
    node.add_peer(deep, 0.0, rtt=0.02)
    node.on_message(deep, wire.Status(stream=sid.key, latest=1, have=0, keyframe=0, slots=8,
                                      paths=[[tb, b"\x01" * 8, b"\x02" * 8, peer_tag(deep)]],
                                      lags=[300]), 0.0)
    node.on_message(deep, wire.SubscribeAck(stream=sid.key, accepted=1, rejected=0), 0.02)
    node.add_peer(full, 0.0, rtt=0.02)
    node.on_message(full, wire.Status(stream=sid.key, latest=1, have=0, keyframe=0, slots=0,
                                      paths=[[tb, peer_tag(full)]], lags=[50]), 0.0)
    asked: list[int] = []
    now = 0.02
    for seq in range(30):
        arrive = 0.1 * seq + 0.35
        while (due := node.get_timer()) is not None and due < arrive:
            now = max(now, due)
            node.handle_timer(now)
            asked += [a.message.seq for a in node.actions() if isinstance(a, sw.Send)
                      and a.peer == full and isinstance(a.message, wire.Request)]
        now = arrive
        if seq != 20:
            chunk = sign_chunk(bid, sid, seq, int(round(seq * 0.1e6)), seq % 30 == 0, b"x" * 500)
            node.on_chunk(deep, chunk, now)
        asked += [a.message.seq for a in node.actions() if isinstance(a, sw.Send)
                  and a.peer == full and isinstance(a.message, wire.Request)]
    assert node.delay.late[0]
    return asked


def test_start_repair_asks_a_full_neighbour_in_the_first_seconds() -> None:
    """With ``start_repair`` the withheld chunk is asked of the full, shallow neighbour (its
    lag says it has it before the origin fallback); off (the default), a full neighbour is
    never asked on a late substream and the origin carries it."""
    assert 20 in _requests_to_full_neighbour(10.0)
    assert 20 not in _requests_to_full_neighbour(0.0)  # (seq 0: the start probe)
    # ... and only in the first seconds after the first frame
    assert 20 not in _requests_to_full_neighbour(1.0)
