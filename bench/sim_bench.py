"""Simulator benchmarks.

    nice -n 19 .venv/bin/python bench/sim_bench.py scale --peers 10000 --duration 120
    nice -n 19 .venv/bin/python bench/sim_bench.py fidelity

``scale`` runs Oasis alone (no baselines) and prints wall time, events and max
RSS. ``fidelity`` runs the simulator side of the fidelity check: 20 viewers,
each behind a user-space delay of 20-60 ms (one-way, drawn per viewer), no
other network limits; the real-process side (a UDP delay proxy per viewer on
loopback) is not implemented yet (see docs/simulation.md).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time

from oasis.sim import population
from oasis.sim.netmodel import PeerNet, World
from oasis.sim.oasis_run import run_oasis
from oasis.sim.scenario import Scenario, load


def scale(args: argparse.Namespace) -> dict:
    s = load(args.scenario) if args.scenario else Scenario()
    d = s.to_json()
    d.update(peers=args.peers, duration_s=args.duration, baselines=[])
    from oasis.sim.scenario import from_dict
    s = from_dict(d)
    w = World()
    t0 = time.perf_counter()
    bnet, viewers = population.build(s, w, args.seed)
    res, _ = run_oasis(s, w, bnet, viewers, args.seed)
    return {"peers": s.peers, "duration_s": s.duration_s, "wall_s": round(time.perf_counter() - t0, 1),
            "events": res["events"], "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "continuity": res["continuity"], "offload_ratio": res["offload_ratio"],
            "latency_ms": res["latency_ms"]}


def fidelity_population(seed: int, n: int = 20, lo_ms: float = 20, hi_ms: float = 60):
    w = World()
    de = w.index("DE")
    w.rtt_ms[de][de] = 0.0  # only the emulated delays
    rng = random.Random(f"fidelity/{seed}")
    fast = 1e9 / 8

    def net(delay_ms: float) -> PeerNet:
        return PeerNet(de, "broadband", fast, fast, delay_ms / 1000, 0.0)

    bnet = net(0.0)
    viewers = [population.Viewer(i, rng.randbytes(32), net(rng.uniform(lo_ms, hi_ms)), rng.random() * 2)
               for i in range(n)]
    return w, bnet, viewers


def fidelity(args: argparse.Namespace) -> dict:
    s = Scenario(name="fidelity-20", peers=20, duration_s=args.duration, baselines=[],
                 protocol={"playout_delay": 0.5}, upload_max_x=4.0, upload_share=1.0)
    w, bnet, viewers = fidelity_population(args.seed)
    res, _ = run_oasis(s, w, bnet, viewers, args.seed)
    return {"side": "sim", "latency_ms": res["latency_ms"], "offload_ratio": res["offload_ratio"],
            "continuity": res["continuity"], "real_processes": "not implemented (see docs)"}


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sc = sub.add_parser("scale")
    sc.add_argument("--scenario", default=None)
    sc.add_argument("--peers", type=int, default=10000)
    sc.add_argument("--duration", type=float, default=120)
    sc.add_argument("--seed", type=int, default=1)
    fi = sub.add_parser("fidelity")
    fi.add_argument("--duration", type=float, default=30)
    fi.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(json.dumps(scale(args) if args.cmd == "scale" else fidelity(args)))


if __name__ == "__main__":
    main()
