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
import sys
import time
from typing import Any

from oasis.sim import fidelity as fid
from oasis.sim import population
from oasis.sim.netmodel import World
from oasis.sim.oasis_run import OasisSim
from oasis.sim.scenario import Scenario, load


def scale(args: argparse.Namespace) -> dict:
    s = load(args.scenario) if args.scenario else Scenario()
    d = s.to_json()
    d.update(peers=args.peers, duration_s=args.duration, baselines=[])
    if args.chunk_ms is not None:
        d["chunk_ms"] = args.chunk_ms
    from oasis.sim.scenario import from_dict
    s = from_dict(d)
    w = World()
    t0 = time.perf_counter()
    c0 = time.process_time()
    bnet, viewers = population.build(s, w, args.seed)
    prog = cpu_progress(s.name)
    sim = OasisSim(s, w, bnet, viewers, args.seed)  # what run_oasis does, with the report step
    sim.progress = prog
    sim.progress_every_s = args.progress_every
    if args.profile:  # cProfile of the run (meaningful with OASIS_PURE_PYTHON=1)
        import cProfile
        import pstats
        pr = cProfile.Profile()
        res = pr.runcall(sim.run)
        pr.dump_stats(args.profile)
        pstats.Stats(pr).sort_stats("tottime").print_stats(35)
    else:
        res = sim.run()
    if args.out:  # the whole result, as `oasis sim --json` gives it under "oasis"
        with open(args.out, "w") as f:
            json.dump(res, f, sort_keys=True, default=str)
    return {"peers": s.peers, "duration_s": s.duration_s, "chunk_ms": s.chunk_ms,
            "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1),
            "events": res["events"], "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "continuity": res["continuity"], "offload_ratio": res["offload_ratio"],
            "latency_ms": res["latency_ms"], "startup_ms": res.get("startup_ms")}


def cpu_progress(label: str) -> Any:
    """One stderr line per report: simulated time, peers, events, wall, CPU time, max RSS
    (CPU time: the machine is shared, wall time alone says little)."""
    t0, c0 = time.perf_counter(), time.process_time()

    def report(sim_s: float, duration_s: float, events: int, peers: int) -> None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"[{label}] sim {sim_s:6.1f}/{duration_s:.0f} s  peers {peers:>7}  events {events:>11,}  "
              f"wall {time.perf_counter() - t0:7.1f} s  cpu {time.process_time() - c0:7.1f} s  "
              f"max RSS {rss:7.0f} MiB", file=sys.stderr, flush=True)
    return report


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
    sc.add_argument("--chunk-ms", type=int, default=None)
    sc.add_argument("--progress-every", type=float, default=10.0, help="simulated seconds between reports")
    sc.add_argument("--out", default=None, help="write the run's whole result (JSON) here")
    sc.add_argument("--profile", default=None, help="write cProfile stats here, print the top")
    fi = sub.add_parser("fidelity")
    fi.add_argument("--duration", type=float, default=30)
    fi.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(json.dumps(scale(args) if args.cmd == "scale" else fidelity(args)))


if __name__ == "__main__":
    main()
