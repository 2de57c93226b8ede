"""Benchmark: the simulator's fidelity check (docs/simulation.md, "Fidelity check").

    nice -n 10 .venv/bin/python bench/fidelity.py --viewers 20 --duration 30 --runs 3

Per run: the same swarm (N viewers, 1.5 Mbit/s, the node's chunks, upload caps
4x/2x, an egress delay of 20-60 ms per process drawn from the seed) as real
``oasis`` processes on loopback (``--link-delay-ms``, no proof of relay; the viewers
forked from the demo's launcher ``--spacing`` s apart, each as if on a device of its
own, or ``--fresh`` interpreters whose imports share the cores with the joins) and in
the simulator (same delays, same join times), and prints one JSON object:
{"real": {p50_ms, p95_ms, offload, continuity}, "sim": {...}, "diff": real - sim,
"sim_median", "diff_median", "host_wait_ms", "sim_host", "diff_host"}. ``sim`` is the
simulator as every scenario runs it (each node pays its measured per-message CPU and
aioquic's pacing, ``oasis/sim/oasis_run.py`` CPU_*/QUIC_*); ``sim_median`` the median
of 5 swarm seeds (one simulated tree moves by +-20 % with timing); ``sim_host`` adds the
run-queue wait the real processes had on this machine (``/proc/<pid>/schedstat``, mean
per timeslice after the last join): 21 processes sharing 2 cores wait for a core on
every datagram, which no deployed node does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from oasis.node.quicstack import stack_name
from oasis.sim.fidelity import JOIN_SPACING_S, fidelity


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--duration", type=float, default=30, help="seconds after the last viewer joined")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=1, help="runs with seeds seed, seed+1, ...")
    ap.add_argument("--real-only", action="store_true",
                    help="the real processes only, no simulation (e.g. to read their start)")
    ap.add_argument("--spacing", type=float, default=JOIN_SPACING_S, metavar="S",
                    help="viewers forked from the demo's launcher S seconds apart (0: all at "
                         f"once; default {JOIN_SPACING_S})")
    ap.add_argument("--fresh", action="store_true",
                    help="viewers as fresh interpreters joining as their imports finish "
                         "(before 2026-12-04: 20 imports on 2 cores slow every join)")
    args = ap.parse_args()
    for k in range(args.runs):
        t0 = time.monotonic()
        load0 = round(os.getloadavg()[0], 2)
        cpu0 = os.times()
        out = asyncio.run(fidelity(args.viewers, args.duration, args.seed + k,
                                   simulate=not args.real_only,
                                   spacing_s=None if args.fresh else args.spacing))
        cpu1 = os.times()
        cpu = (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system)
        wall = time.monotonic() - t0
        out["bench"] = {"wall_s": round(wall, 1), "cpu_s_processes": round(cpu, 1),
                        "load_avg_before": load0,
                        "quic": stack_name(),
                        "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
