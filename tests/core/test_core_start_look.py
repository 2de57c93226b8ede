"""``start_look``: a newcomer's first parents are looked at again soon after their ACK.

A newcomer subscribes every substream at the first STATUS that claims chunks, so all of
them go to the neighbour whose link came up first, however deep it is; the neighbours
whose links come up a moment later are not considered until the periodic look after
``switch_dwell`` (counted from the ACK: the look at 4 s with the defaults)."""

from __future__ import annotations

import random

from newcomer import K, newcomer_subscribes

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId, sign_chunk


def _newcomer(start_look: float) -> tuple[dict[bytes, list[tuple[float, int]]], bytes, bytes]:
    """The SUBSCRIBEs the scripted newcomer (``first_wait`` off) sends per peer (time, mask)
    over 5 s of timers."""
    sent, deep, near = newcomer_subscribes(5.0, first_wait=0.0, start_look=start_look)
    # every substream from the first neighbour heard, at once
    assert [s for s in sent if s[0] == 0.0] == [(0.0, deep, (1 << K) - 1)]
    asked: dict[bytes, list[tuple[float, int]]] = {}
    for t, peer, mask in sent:
        asked.setdefault(peer, []).append((t, mask))
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
