"""``want_bound``: a verified chunk's signed time bounds the chunks before it. A chunk the
clock expected later than it was made (a broadcaster's burst after a stall: the clock
extrapolates at the nominal pace) is asked of the origin in time for its real deadline."""

from __future__ import annotations

import pytest
from swarmnet import fed_by_broadcaster

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.stream import sign_chunk

BURST_T = 5.3  #: chunks 40-46 were all made then (the broadcaster stalled 0.4 s, then caught up)
LOST = 45


def _run(bound: bool) -> tuple[sw.Swarm, float | None]:
    """Playout 0.5 s, 100 ms chunks from one parent (the broadcaster). Chunks 0-39 come
    50 ms after their time; 40-46 are made at once at 5.3 after a stall, and come at
    5.35-5.4 (40-44) and 5.5 (46); 45 never does. The stall taught the clock a longer
    interval (0.4 s from 39 to 40; a burst's steps of 0 teach it nothing), so it expects
    45 at ~5.46, due ~5.96; it was made at 5.3, due 5.8, as 46's signed time shows at
    5.5. Returns the node and when it asked the origin for 45 (None: not by 6.0)."""
    cfg = sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5,
                         want_bound=bound)
    node, sid, bid = fed_by_broadcaster(cfg)

    def chunk(seq: int, t: float) -> wire.ChunkMsg:
        return sign_chunk(bid, sid, seq, int(t * 1e6), seq % 10 == 0, b"x")

    for seq in range(40):
        t = 1.0 + seq * 0.1
        node.handle_timer(t + 0.05)
        node.on_chunk(bid.public, chunk(seq, t), t + 0.05)
    node.actions()
    arrivals = {40: 5.35, 41: 5.36, 42: 5.37, 43: 5.38, 44: 5.4, 46: 5.5}
    asked = None
    now = 5.0
    while now < BURST_T + 0.5 + 0.2 and asked is None:
        for seq, at in list(arrivals.items()):
            if at <= now:
                node.on_chunk(bid.public, chunk(seq, BURST_T), now)
                del arrivals[seq]
        node.handle_timer(now)
        if [a for a in node.actions() if isinstance(a, sw.FetchOrigin) and a.seq == LOST]:
            asked = now
        now = round(now + 0.005, 3)
    return node, asked


def test_a_newer_chunk_moves_up_a_want_the_clock_put_late() -> None:
    node, asked = _run(bound=True)
    deadline = BURST_T + node.config.playout_delay  # 45 was made by 46's time
    assert asked is not None
    assert asked <= deadline - node.config.origin_margin + 0.005
    assert node.counters.wants_moved_up >= 1
    # (moved up to the bound, not before it)
    w = node.repair.wants.get(LOST)
    assert w is None or w.deadline == pytest.approx(deadline)


def test_without_the_bound_the_origin_is_asked_after_the_real_fallback() -> None:
    node, asked = _run(bound=False)
    deadline = BURST_T + node.config.playout_delay
    assert asked is None or asked > deadline - node.config.origin_margin + 0.05
    assert node.counters.wants_moved_up == 0
