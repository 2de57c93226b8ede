"""``origin_adapt``: an origin farther than the fixed fallback margin is asked early
enough for its answer to arrive (docs/oftp.md §9.5)."""

from __future__ import annotations

from swarmnet import fed_by_broadcaster

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk

FETCH_S = 0.3  #: what an origin fetch takes here: more than the 0.12 s margin allows


def _node(adapt: bool) -> tuple[sw.Swarm, StreamId, Identity]:
    """Playout 0.5 s, 100 ms chunks; the broadcaster pushes every substream 50 ms after a
    chunk's time. Eight chunks it never pushed came from the origin 0.3 s after they were
    asked (the first at the fixed fallback, 0.12 s before the deadline: after it)."""
    cfg = sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5,
                         origin_adapt=adapt)
    node, sid, bid = fed_by_broadcaster(cfg)
    for seq in range(40):
        t = 1.0 + seq * 0.1
        node.handle_timer(t + 0.05)
        node.on_chunk(bid.public, sign_chunk(bid, sid, seq, int(t * 1e6), seq == 0, b"x"), t + 0.05)
    node.actions()
    for seq in range(40, 48):
        t = 1.0 + seq * 0.1
        asked = _asked_at(node, seq, t)
        assert asked is not None
        node.on_origin(seq, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"o"), asked + FETCH_S)
    node.actions()
    assert node.repair.origin_samples == 8
    return node, sid, bid


def _asked_at(node: sw.Swarm, seq: int, t: float, step: float = 0.005) -> float | None:
    """When the node asks the origin for ``seq`` (made at ``t``), stepping its timer."""
    now = t
    while now < t + 0.6:
        node.handle_timer(now)
        if [a for a in node.actions() if isinstance(a, sw.FetchOrigin) and a.seq == seq]:
            return now
        now += step
    return None


def test_a_far_origin_is_asked_early_enough_to_answer() -> None:
    node, sid, bid = _node(adapt=True)
    r = node.repair
    fetch = r.origin_srtt + 2 * r.origin_dev + 0.02
    assert fetch > node.config.origin_margin
    seq = 50  # never pushed
    t = 1.0 + seq * 0.1
    deadline = t + node.config.playout_delay
    asked = _asked_at(node, seq, t)
    assert asked is not None
    assert asked <= deadline - fetch + 0.005 < deadline - node.config.origin_margin
    assert asked >= t  # never before the chunk exists
    node.on_origin(seq, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"o"), asked + FETCH_S)
    assert [a for a in node.actions() if isinstance(a, sw.Deliver) and a.chunk.seq == seq]
    assert asked + FETCH_S <= deadline
    assert node.counters.origin_adapted >= 1


def test_without_origin_adapt_the_fixed_fallback_asks_too_late() -> None:
    node, _, _ = _node(adapt=False)
    seq = 50
    t = 1.0 + seq * 0.1
    asked = _asked_at(node, seq, t)
    assert asked is not None and asked >= t + 0.5 - node.config.origin_margin - 0.005
    assert asked + FETCH_S > t + 0.5  # its answer comes after the deadline
    assert node.counters.origin_adapted == 0


def test_a_chunk_whose_push_usually_comes_later_is_not_fetched_early() -> None:
    """A parent whose pushes come 0.3 s after a chunk's time (a deep tree): asked at
    ``deadline - fetch`` every chunk would come twice; the fixed fallback stays."""
    node, sid, bid = _node(adapt=True)
    for seq in range(48, 120):
        t = 1.0 + seq * 0.1
        node.handle_timer(t + 0.3)
        node.on_chunk(bid.public, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"x"), t + 0.3)
    node.actions()
    before = node.counters.origin_adapted
    seq = 125
    t = 1.0 + seq * 0.1
    asked = _asked_at(node, seq, t)
    assert asked is not None and asked >= t + 0.5 - node.config.origin_margin - 0.005
    assert node.counters.origin_adapted == before


def test_the_time_an_edge_held_a_fetch_is_not_learnt_as_fetch_time() -> None:
    """A CDN edge that held a request until its feed brought the chunk says how long
    (``held``): the fetch time learnt is the rest. Learnt whole, an early request's wait made
    the fallback ask earlier still, and wait longer (docs/oftp.md §10)."""
    node, sid, bid = _node(adapt=True)
    before = node.repair.origin_srtt
    assert abs(before - FETCH_S) < 0.05  # eight fetches of 0.3 s each, nothing held
    for seq in range(48, 64):
        t = 1.0 + seq * 0.1
        node.repair.origin_sent[seq] = t  # asked at the chunk's time (as FetchOrigin records it)
        # each took 0.35 s, 0.3 s of it held at the edge: 0.05 s of fetching
        node.on_origin(seq, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"o"), t + 0.35, 0.3)
    node.actions()
    assert node.repair.origin_samples == 24
    assert node.repair.origin_srtt < 0.1, node.repair.origin_srtt
    # a hold longer than the whole fetch took was not this request's: a shared cache in front
    # of the edge replays the header of the answer it keeps. Ignored: the fetch time learnt
    # is the whole 0.5 s (a hit from a cache far away), not 0
    low = node.repair.origin_srtt
    for seq in range(64, 80):
        t = 1.0 + seq * 0.1
        node.repair.origin_sent[seq] = t
        node.on_origin(seq, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"o"), t + 0.5, 0.6)
    assert node.repair.origin_samples == 40
    assert node.repair.origin_srtt > low + 0.3, (low, node.repair.origin_srtt)
