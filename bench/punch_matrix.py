"""Hole punching between each pair of NAT kinds, real nodes in the namespace testbed.

For every unordered pair of kinds (public, eim = a home router, cgn = a carrier-grade
NAT, symmetric) and every trial: a testbed of a public broadcaster, a public viewer (a
second observer, so NATed viewers learn their mapping) and two viewers A and B of the
two kinds, in two countries. A and B are strangers behind their NATs; the broadcaster and
the public viewer introduce them (docs/oftp.md §15). After ``--duration`` s it reads each
node's ``/stats?detail=1``: did A and B link, and how long from the INTRO to the link
(the punch's connect time, as the node that asked measured it).

Prints one JSON object: per pair the trials, successes, success rate and connect time
p50 / p95 (ms). Needs root (network namespaces), like ``bench/testbed.py``.

    python bench/punch_matrix.py --trials 3 --duration 15
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oasis.testbed.runner import Testbed  # noqa: E402
from oasis.testbed.topology import NodeSpec, Topology  # noqa: E402

KINDS = ("public", "eim", "cgn", "symmetric")


class Quiet:
    def status(self, text: str) -> None:
        print(f"  {text}", file=sys.stderr)

    def tick(self, elapsed: float, total: float, _stats: object) -> None:
        pass


def topology(a: str, b: str, seed: int) -> Topology:
    def n(name: str, role: str, cc: str, nat: str) -> NodeSpec:
        return NodeSpec(name, role, cc, "broadband", 50_000, 50_000, 0.0, 4.5, nat)
    return Topology(seed=seed, bitrate_kbps=500, nodes=(
        n("b", "broadcaster", "DE", "public"), n("o", "viewer", "FR", "public"),
        n("A", "viewer", "DE", a), n("B", "viewer", "US", b)))


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1)


async def trial(a: str, b: str, seed: int, duration: float) -> tuple[bool, float | None]:
    bed = Testbed(topology(a, b, seed), prefix=f"pm{os.getpid()}-", duration=duration,
                  chunk_ms=100, delay_scale=1.0, progress=Quiet())
    try:
        bed.build()
        r = await bed.run()
    finally:
        problems = bed.close()
        if problems:
            print(f"  clean-up: {problems}", file=sys.stderr)
    d = r["nat_detail"]
    pa, pb = d["A"]["peer"], d["B"]["peer"]
    linked = pb in d["A"].get("neighbours", []) or pa in d["B"].get("neighbours", [])
    times = [ms for who, other in (("A", pb), ("B", pa))
             for peer, ms in d[who].get("punch_connect_ms", []) if peer == other]
    return linked, (min(times) if times else None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--kinds", default=",".join(KINDS))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("punch_matrix: needs root (network namespaces)", file=sys.stderr)
        return 2
    kinds = args.kinds.split(",")
    out: dict[str, dict[str, object]] = {}
    t0 = time.monotonic()
    for a, b in itertools.combinations_with_replacement(kinds, 2):
        ok, times = 0, []
        for t in range(args.trials):
            print(f"{a} <-> {b}, trial {t + 1}/{args.trials}", file=sys.stderr)
            linked, ms = asyncio.run(trial(a, b, 100 + t, args.duration))
            ok += linked
            if linked and ms is not None:
                times.append(ms)
        out[f"{a}-{b}"] = {"trials": args.trials, "linked": ok, "success": round(ok / args.trials, 3),
                           "connect_ms_p50": pct(times, 0.5), "connect_ms_p95": pct(times, 0.95),
                           "connect_ms": times}
    print(json.dumps({"pairs": out, "duration_s": args.duration, "wall_s": round(time.monotonic() - t0, 1)},
                     sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
