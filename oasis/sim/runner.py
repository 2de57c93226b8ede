"""One simulation run: Oasis and the baselines on the same viewers and network."""

from __future__ import annotations

import resource
import time
from typing import Any

from . import population
from .baselines import RUNNERS
from .netmodel import World
from .oasis_run import run_oasis, stderr_progress
from .scenario import Scenario


def resource_index(s: Scenario, viewers: list[population.Viewer]) -> float:
    """The swarm's resource index (issue 9): the mean over every viewer of the run of what it
    offers to relay -- ``upload_share`` of its sampled uplink, at most ``upload_max_x`` times
    the bitrate (its cap, as the simulated node is configured) or, where that is the node's
    default and ``upload_probe_x`` is larger, at most that many (what its uplink probe may
    reach) -- divided by the bitrate. Below 1 the viewers cannot carry the stream between
    them, whatever the tree."""
    if not viewers:
        return 0.0
    rate = s.bitrate_kbps
    most = max(s.upload_max_x, s.upload_probe_x) * rate
    offered = (min(v.net.up_bps * 8 / 1000 * s.upload_share, most) for v in viewers)
    return sum(offered) / len(viewers) / rate


def run(s: Scenario, seed: int | None = None, *, plots: str | None = None,
        timing: bool = True, progress: bool = False,
        progress_every_s: float = 10.0) -> dict[str, Any]:
    seed = s.seed if seed is None else seed
    world = World()
    t0 = time.perf_counter()
    bnet, viewers = population.build(s, world, seed)
    res, sim = run_oasis(s, world, bnet, viewers, seed,
                         progress=stderr_progress(s.name) if progress else None,
                         progress_every_s=progress_every_s)
    baselines: dict[str, Any] = {}
    objs: dict[str, Any] = {}
    for name in s.baselines:
        baselines[name], objs[name] = RUNNERS[name](s, world, bnet, viewers, seed)
    out: dict[str, Any] = {"scenario": s.name, "seed": seed, "peers": s.peers,
                           "resource_index": round(resource_index(s, viewers), 3),
                           "oasis": res, "baselines": baselines}
    if plots:
        from .plots import write_plots
        out["plots"] = write_plots(plots, sim, objs, s)
    if not timing:  # byte-identical output for the same seed: drop wall-clock fields
        res.pop("wall_s", None)
        for b in baselines.values():
            b.pop("wall_s", None)
    else:
        out["wall_s"] = round(time.perf_counter() - t0, 2)
        out["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out
