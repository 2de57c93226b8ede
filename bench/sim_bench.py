"""Simulator benchmarks.

    nice -n 19 .venv/bin/python bench/sim_bench.py scale --peers 10000 --duration 120
    nice -n 19 .venv/bin/python bench/sim_bench.py fidelity

``scale`` runs Oasis alone (no baselines) and prints wall time, events and max
RSS. ``fidelity`` runs the simulator side of the fidelity check alone: 20
viewers joining within 2 s, every node with an egress delay of 20-60 ms drawn
from the seed (the model of ``--link-delay-ms``, see ``oasis/sim/fidelity.py``);
``bench/fidelity.py`` runs it against real processes (see docs/simulation.md).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time

from oasis.sim import fidelity as fid
from oasis.sim import population
from oasis.sim.netmodel import World
from oasis.sim.oasis_run import run_oasis, stderr_progress
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
    res, _ = run_oasis(s, w, bnet, viewers, args.seed, progress=stderr_progress(s.name))
    return {"peers": s.peers, "duration_s": s.duration_s, "wall_s": round(time.perf_counter() - t0, 1),
            "events": res["events"], "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "continuity": res["continuity"], "offload_ratio": res["offload_ratio"],
            "latency_ms": res["latency_ms"]}


def fidelity(args: argparse.Namespace) -> dict:
    """Simulator side only; ``bench/fidelity.py`` runs both sides with the real join times."""
    delays = fid.link_delays_ms(args.seed, 20)
    joins = [random.Random(f"fidelity-joins/{args.seed}").random() * 2 for _ in range(20)]
    t0 = time.perf_counter()
    res = fid.run_sim(delays, joins, args.duration, args.seed)
    return {"side": "sim", **res, "wall_s": round(time.perf_counter() - t0, 2),
            "real_processes": "bench/fidelity.py"}


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
