"""A viewer's first second (docs/oftp.md §9.5). A late start (``start_grace``, off by
default; these tests set it): a viewer
whose first frame comes long after its join starts at a keyframe made before it; the chunks
between that keyframe and the first frame whose deadline had already passed are still wanted
for ``start_grace`` after the first frame instead of given up at once (a hole right after
the first frame, which a player shows as a jump and a broken picture until the next
keyframe)."""

from __future__ import annotations

import dataclasses
import random

import pytest
from swarmnet import SwarmNet

from oasis.core import swarm as sw

CFG = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, use_origin=False)


def _run(net: SwarmNet, until: float) -> None:
    """Run to ``until``, the broadcaster making a chunk every 0.1 s (on the grid of the
    first one, a keyframe every 10)."""
    while True:
        nxt = 1000.0 + 0.1 * net.next_seq
        if nxt > until + 1e-9:
            net.run_until(until)
            return
        net.run_until(nxt)
        net.produce(net.next_seq % 10 == 0)


def _viewer(grace: float, wait: float) -> tuple[SwarmNet, bytes, float, float]:
    """The viewer's swarm exists from just after keyframe 20 (made at 1002.0; its join at
    1002.05) but meets its first peer, the broadcaster, ``wait`` s later (its JOIN asks for
    a start): its start is the broadcaster's latest keyframe, 20, made before the join.
    Returns the net, the viewer, its join and its first frame's time."""
    cfg = dataclasses.replace(CFG, start_grace=grace)
    net = SwarmNet(1, seed=5, delay=0.02, config=cfg, origin=False)
    _run(net, 1002.05)
    v = net.viewers[0]
    joined = net.now
    node = sw.Swarm(net.sid, v, cfg, rng=random.Random(v), now=joined)
    net.nodes[v], net.delivered[v], net.skipped[v] = node, {}, []
    net._pump(v)
    _run(net, joined + wait)  # chunks made meanwhile; the viewer has no peer
    node.add_peer(net.bid.public, net.now, rtt=2 * net.delay, asked=True)
    net.source.add_peer(v, net.now, rtt=2 * net.delay, start=True)
    net._pump(net.bid.public)
    net._pump(v)
    _run(net, 1006.0)
    assert node.start_seq == 20, node.start_seq
    first = net.delivered[v][20][0]
    return net, v, joined, first


def test_the_chunks_due_before_a_late_first_frame_still_come() -> None:
    net, v, joined, first = _viewer(0.25, 0.8)
    node = net.nodes[v]
    assert first - joined > 0.8  # a late start: 21, 22, ... (made 1002.1, ...) were due by then
    due = [s for s, t in net.produced.items() if joined <= t and t + CFG.playout_delay < first]
    assert due[0] == 21 and len(due) >= 3, due
    # no hole from the start keyframe to the first frame, each in the grace
    assert all(s in net.delivered[v] for s in range(20, 29)), sorted(net.delivered[v])
    assert not set(due) & set(net.skipped[v]), net.skipped[v]
    assert all(net.delivered[v][s][0] <= first + 0.25 for s in due)
    # wanted at the start with a deadline sooner than the grace: given the grace
    graced = [s for s, t in net.produced.items() if joined <= t and t + CFG.playout_delay < first + 0.25]
    assert node.counters.start_graced == len(graced) > len(due)


def test_without_the_grace_they_were_a_hole_after_the_first_frame() -> None:
    net, v, joined, first = _viewer(0.0, 0.8)
    due = {s for s, t in net.produced.items() if joined <= t and t + CFG.playout_delay < first}
    # those due before the first frame, and any due before the backfill could come (1 RTT)
    near = {s for s, t in net.produced.items() if joined <= t and t + CFG.playout_delay < first + 0.04}
    assert due <= set(net.skipped[v]), net.skipped[v]
    assert all(net.produced[s] >= first for s in set(net.skipped[v]) - near), net.skipped[v]
    assert net.nodes[v].counters.start_graced == 0


@pytest.mark.parametrize("wait", [0.0, 0.2])
def test_a_timely_start_is_unchanged(wait: float) -> None:
    """A viewer that meets the broadcaster within ``playout_delay - start_grace`` of its
    join needs no grace: the run is the same with it and without it."""
    net, v, joined, first = _viewer(0.25, wait)
    assert first - joined < CFG.playout_delay - 0.25
    assert net.nodes[v].counters.start_graced == 0
    net0, v0, _, first0 = _viewer(0.0, wait)
    assert first0 == first
    assert net0.delivered[v0] == net.delivered[v] and net0.skipped[v0] == net.skipped[v]
