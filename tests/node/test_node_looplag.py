"""A node's event-loop lag (oasis.node.looplag, ``/stats`` ``loop_lag_ms``): a loop held by
other work shows as lateness, and a node reports it from its start."""

from __future__ import annotations

import asyncio
import time

from procs import until

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.node.http import node_stats, prometheus
from oasis.node.looplag import LoopLag
from oasis.node.node import Node


async def test_a_loop_held_by_other_work_shows_as_lag() -> None:
    lag = LoopLag(asyncio.get_running_loop(), every=0.01, keep=50)
    assert lag.figures() is None
    lag.start()
    try:
        await until(lambda: len(lag.samples) >= 5, 10, what="the first samples")
        held = time.monotonic() + 0.2
        while time.monotonic() < held:  # the loop held 0.2 s, as by a frame encoded in line
            pass
        await until(lambda: bool(lag.samples) and max(lag.samples) >= 0.15, 10, what="the hold sampled")
        f = lag.figures()
        assert f is not None and f["max"] >= 150 and f["p50"] <= f["p95"] <= f["max"]
        await until(lambda: len(lag.samples) == 50, 10, what="a full window")  # (bounded: keep)
    finally:
        lag.stop()
    assert lag._timer is None


async def test_a_nodes_stats_give_its_loop_lag_from_its_start() -> None:
    node = Node(Identity.generate(), sw.SwarmConfig(), target_neighbours=0)
    assert node_stats(node)["loop_lag_ms"] is None
    assert "oasis_loop_lag_seconds" not in prometheus(node)  # (no sample yet: no figure)
    await node.start()
    try:
        await until(lambda: node_stats(node)["loop_lag_ms"] is not None, 10, what="a sample")
        f = node_stats(node)["loop_lag_ms"]
        assert f["n"] >= 1 and 0 <= f["p50"] <= f["max"]
        # ... and its /metrics, in seconds, one gauge per figure
        text = prometheus(node)
        got = {stat: float(line.rsplit(" ", 1)[1]) for stat in ("p50", "p95", "max")
               for line in text.splitlines() if line.startswith(f'oasis_loop_lag_seconds{{stat="{stat}"}}')}
        assert set(got) == {"p50", "p95", "max"} and 0 <= got["p50"] <= got["p95"] <= got["max"] < 10
    finally:
        await node.close()
    assert node.loop_lag._timer is None
