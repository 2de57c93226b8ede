"""The simulator's fidelity check: one small swarm, simulated and run as real processes.

Both sides use the same link model, the one a node's ``--link-delay-ms`` implements:
every node (broadcaster included) has an egress delay ``e`` drawn from the seed
(uniform 20-60 ms, rounded to 0.1 ms); everything it sends over OFTP reaches the
other end ``e`` later, so the one-way delay a -> b is ``e_a`` and the RTT of a
link is ``e_a + e_b``. HTTP (tracker announces, origin fetches) is not delayed.
Nothing else limits the network: no loss, links of 1 Gbit/s, the CDN edge is
the broadcaster's own origin (edge RTT 0). Same stream (1.5 Mbit/s, 100 ms
chunks, a keyframe every 10 chunks as the test source's 1 s GOP), same upload
caps (viewers 4x, broadcaster 2x the bitrate), same playout delay (0.5 s), same
neighbour rules. The real side is ``oasis demo --no-rewards`` with one delay per
process; the simulator replays its viewers' measured join times, so that both
sides judge the same chunks. Figures: ``oasis.core.metrics.summarize`` on both.
"""

from __future__ import annotations

import argparse
import random
from typing import Any

from . import population
from .netmodel import PeerNet, World
from .oasis_run import OasisSim
from .scenario import Scenario

BITRATE_KBPS = 1500
CHUNK_MS = 100
GOP_CHUNKS = 10  #: the test source encodes a keyframe every second
PLAYOUT_DELAY = 0.5
VIEWER_UPLOAD_X = 4  #: oasis demo's defaults
BROADCASTER_UPLOAD_X = 2
LINK_FAST = 1e9 / 8  #: bytes/s: nothing but the emulated delays limits the network


def link_delays_ms(seed: int, viewers: int, lo_ms: float = 20, hi_ms: float = 60) -> list[float]:
    """One egress delay per process: index 0 is the broadcaster, then the viewers."""
    rng = random.Random(f"fidelity/{seed}")
    return [round(rng.uniform(lo_ms, hi_ms), 1) for _ in range(viewers + 1)]


def sim_population(delays_ms: list[float], joins_s: list[float],
                   seed: int) -> tuple[World, PeerNet, list[population.Viewer]]:
    w = World()
    de = w.index("DE")
    w.rtt_ms[de][de] = 0.0  # only the emulated delays

    def net(delay_ms: float) -> PeerNet:
        return PeerNet(de, "broadband", LINK_FAST, LINK_FAST, 0.0, 0.0, egress_s=delay_ms / 1000)

    keys = random.Random(f"fidelity-keys/{seed}")
    viewers = [population.Viewer(i, keys.randbytes(32), net(d), j)
               for i, (d, j) in enumerate(zip(delays_ms[1:], joins_s, strict=True))]
    return w, net(delays_ms[0]), viewers


def run_sim(delays_ms: list[float], joins_s: list[float], duration_s: float,
            seed: int) -> dict[str, Any]:
    """Simulate the swarm: viewer i joins ``joins_s[i]`` s after the first chunk."""
    s = Scenario(name="fidelity", peers=len(joins_s), duration_s=duration_s, baselines=[],
                 bitrate_kbps=BITRATE_KBPS, chunk_ms=CHUNK_MS, gop_chunks=GOP_CHUNKS,
                 broadcaster_upload_kbps=BROADCASTER_UPLOAD_X * BITRATE_KBPS,
                 protocol={"playout_delay": PLAYOUT_DELAY}, upload_max_x=VIEWER_UPLOAD_X,
                 upload_share=1.0)
    w, bnet, viewers = sim_population(delays_ms, joins_s, seed)
    sim = OasisSim(s, w, bnet, viewers, seed)
    sim.edge_rtt_ms = 0.0  # the origin is the broadcaster's, on loopback
    return figures(sim.run())


def figures(res: dict[str, Any]) -> dict[str, Any]:
    lat = res["latency_ms"]
    return {"p50_ms": lat["p50"], "p95_ms": lat["p95"], "offload": res["offload_ratio"],
            "continuity": res["continuity"]}


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


async def run_real(delays_ms: list[float], duration_s: float) -> dict[str, Any]:
    """``oasis demo --no-rewards`` with one ``--link-delay-ms`` per process.

    Returns the demo's summary plus ``joins_s`` (each viewer's join, seconds
    after the first chunk) and ``sim_duration_s`` (chunks the demo judged).
    """
    from oasis.demo import demo

    args = argparse.Namespace(
        viewers=len(delays_ms) - 1, duration=duration_s, bitrate=BITRATE_KBPS, chunk_ms=CHUNK_MS,
        upload_kbps=VIEWER_UPLOAD_X * BITRATE_KBPS,
        broadcaster_upload_kbps=BROADCASTER_UPLOAD_X * BITRATE_KBPS, source="test", json=True,
        keep=False, rewards=False, epoch=10, link_delays_ms=delays_ms)
    res = await demo(args, _Quiet())
    if len(res.get("per_viewer", [])) != args.viewers:
        raise RuntimeError(f"only {len(res.get('per_viewer', []))} of {args.viewers} viewers reported")
    t0 = res["first_chunk_at"]
    res["joins_s"] = [pv["joined_at"] - t0 for pv in sorted(res["per_viewer"], key=lambda p: p["viewer"])]
    # the demo judges chunks produced until judged_at - playout delay; the
    # simulator judges every chunk it produced
    res["sim_duration_s"] = res["judged_at"] - PLAYOUT_DELAY - t0
    return res


def compare(real: dict[str, Any], sim: dict[str, Any]) -> dict[str, Any]:
    """Differences real - sim (ms for latencies; absolute for ratios), and relative ones."""
    out: dict[str, Any] = {}
    for k in ("p50_ms", "p95_ms", "offload", "continuity"):
        out[k] = round(real[k] - sim[k], 5 if k in ("offload", "continuity") else 1)
    for k in ("p50_ms", "p95_ms"):
        out[k.replace("_ms", "_rel")] = round((real[k] - sim[k]) / sim[k], 3) if sim[k] else None
    return out


async def fidelity(viewers: int, duration_s: float, seed: int) -> dict[str, Any]:
    delays = link_delays_ms(seed, viewers)
    res = await run_real(delays, duration_s)
    real = figures(res)
    real["errors"] = res["errors"]
    real["error_detail"] = res["error_detail"]
    real["viewers_started"] = res["viewers_started"]
    sim = run_sim(delays, res["joins_s"], res["sim_duration_s"], seed)
    return {"viewers": viewers, "seed": seed, "duration_s": duration_s,
            "link_delays_ms": delays, "real": real, "sim": sim, "diff": compare(real, sim),
            # what the simulator replays (run_sim(delays, joins_s, sim_duration_s, seed))
            "joins_s": [round(j, 4) for j in res["joins_s"]],
            "sim_duration_s": round(res["sim_duration_s"], 4)}
