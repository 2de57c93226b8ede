"""DHT lookup hops and time at 10,000 and 100,000 peers (issue 10), printed as JSON.

Each node runs the real ``oasis.core.dht.Dht`` driven by ``oasis.sim.dht_run`` on the
simulator's world model (country-pair RTTs, access last miles). Tables are built by
real joins (bootstrap from 3 live nodes + self-lookup), then ``--streams`` streams get
``--providers`` honest providers each, and random honest nodes look them up.

    python bench/dht_lookup.py --nodes 10000 --scenario honest churn eclipse
    python bench/dht_lookup.py --nodes 100000 --scenario honest --lookups 300

Scenarios: ``honest``; ``churn`` (``--churn`` per minute leave silently, as many join);
``eclipse`` (``--adversarial`` of the nodes answer only with each other, never a record).
Reports wall time and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oasis.core.dht import DhtConfig  # noqa: E402
from oasis.sim.dht_run import run_scenario  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[10_000])
    ap.add_argument("--scenario", nargs="+", default=["honest"],
                    choices=["honest", "churn", "eclipse", "eclipse1"])
    ap.add_argument("--lookups", type=int, default=500)
    ap.add_argument("--node-lookups", type=int, default=100)
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--providers", type=int, default=10)
    ap.add_argument("--churn", type=float, default=0.10, help="share of nodes replaced per minute")
    ap.add_argument("--adversarial", type=float, default=0.20)
    ap.add_argument("--join-s", type=float, default=None, help="join phase length (default n/20 s)")
    ap.add_argument("--measure-s", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--paths", type=int, default=None, help="disjoint paths (default: DhtConfig)")
    ap.add_argument("--prefill", type=int, default=0,
                    help="nodes given oracle tables instead of joining (very large runs)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    out = []
    for n in args.nodes:
        for sc in args.scenario:
            cfg = DhtConfig()
            if args.paths is not None:
                cfg.paths = args.paths
            if sc == "eclipse1":  # the same attack against single-path lookups
                cfg.paths = 1
            t0 = time.monotonic()
            res = run_scenario(
                n, seed=args.seed, config=cfg,
                adversarial=args.adversarial if sc.startswith("eclipse") else 0.0,
                churn_per_min=args.churn if sc == "churn" else 0.0,
                join_s=args.join_s, streams=args.streams, providers=args.providers,
                lookups=args.lookups, node_lookups=args.node_lookups, measure_s=args.measure_s,
                prefill=args.prefill,
                progress=None if args.quiet else lambda s: print(s, file=sys.stderr, flush=True))
            res["scenario"] = sc
            res["wall_s"]["run"] = round(time.monotonic() - t0, 1)
            res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            res["python"] = platform.python_version()
            out.append(res)
            print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
