"""Hole punching between each pair of NAT kinds, real nodes in the namespace testbed.

For every unordered pair of kinds (public, eim = a home router, cgn = a carrier-grade
NAT, symmetric) and every trial: a testbed of a public broadcaster, a public viewer (a
second observer, so NATed viewers learn their mapping) and two viewers A and B of the
two kinds, in two countries. A and B are strangers behind their NATs; the broadcaster and
the public viewer introduce them (docs/oftp.md §15). After ``--duration`` s it reads each
node's ``/stats?detail=1``: did A and B link, and how long from the INTRO to the link
(the punch's connect time, as the node that asked measured it; when both asked, from the
earlier INTRO).

Prints one JSON object: per pair the trials, successes, success rate and connect time
p50 / p95 (ms). Needs root (network namespaces), like ``bench/testbed.py``.

    python bench/punch_matrix.py --trials 3 --duration 15

``--keep failed`` (or ``all``) keeps a trial's directory -- every node's log, with its
hole punching and dials traced (``OASIS_TRACE_PUNCH``), and its ``/stats?detail=1`` as
``<node>.stats.json`` -- when A and B did not link (or always); the JSON names them.
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
RERUNS = 2  #: a trial whose run failed (a node exited early) is run again, this many times at most


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


async def trial(a: str, b: str, seed: int, duration: float,
                keep: str = "none") -> tuple[bool, float | None, str | None, int] | None:
    """One trial: (linked, connect time in ms or None, the kept directory or None, A's and
    B's punched dials that failed: ``nat_punch_failed``; linked with failures = on a retry).
    None: the run itself failed (a node process exited early), which says nothing of the
    punch; the caller runs the trial again."""
    bed = Testbed(topology(a, b, seed), prefix=f"pm{os.getpid()}-", duration=duration,
                  chunk_ms=100, delay_scale=1.0, progress=Quiet(), trace=keep != "none")
    linked, ms, r, failed = False, None, None, 0
    try:
        bed.build()
        try:
            r = await bed.run()
        except RuntimeError as exc:  # a node died (killed from outside, say): no punch result
            print(f"  run failed: {exc}", file=sys.stderr)
            return None
        d = r["nat_detail"]
        pa, pb = d["A"]["peer"], d["B"]["peer"]
        linked = pb in d["A"].get("neighbours", []) or pa in d["B"].get("neighbours", [])
        # each side's first punch to the other: from its INTRO to the link. Both sides may
        # have asked; the link then counts from the earlier INTRO (the larger time): the
        # later INTRO's time says only how soon after it the other side's punch linked
        # (0.6-1.1 ms seen when this took the smaller)
        times = []
        for who, other in (("A", pb), ("B", pa)):
            mine = [t for peer, t in d[who].get("punch_connect_ms", []) if peer == other]
            if mine:
                times.append(mine[0])
        ms = max(times) if times else None
        for who in ("A", "B"):
            try:
                c = json.loads(Path(bed.root, f"{who}.stats.json").read_text())["counters"]
                failed += int(c.get("nat_punch_failed", 0))
            except (OSError, ValueError, KeyError):
                pass
    finally:
        kept = keep == "all" or (keep == "failed" and not linked)
        bed.keep = kept  # kept on purpose (the testbed's --keep), not as a run that failed
        problems = bed.close()
        if problems:
            print(f"  clean-up: {problems}", file=sys.stderr)
    return linked, ms, (bed.root if kept else None), failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--keep", choices=("none", "failed", "all"), default="none",
                    help="keep the trials' logs (punches traced) and per-node /stats?detail=1: "
                    "of trials that did not link, or of all")
    ap.add_argument("--pairs", default=None,
                    help="only these pairs, e.g. eim-cgn,cgn-cgn (default: every pair of --kinds)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("punch_matrix: needs root (network namespaces)", file=sys.stderr)
        return 2
    kinds = args.kinds.split(",")
    out: dict[str, dict[str, object]] = {}
    t0 = time.monotonic()
    pairs = list(itertools.combinations_with_replacement(kinds, 2))
    if args.pairs:
        want = {tuple(p.split("-", 1)) for p in args.pairs.split(",")}
        pairs = [(a, b) for a, b in pairs if (a, b) in want or (b, a) in want]
    load = [round(os.getloadavg()[0], 2)]
    for a, b in pairs:
        ok, times, kept, retried, errored, ran = 0, [], [], 0, 0, 0
        for t in range(args.trials):
            print(f"{a} <-> {b}, trial {t + 1}/{args.trials} (load {os.getloadavg()[0]:.2f})",
                  file=sys.stderr)
            load.append(round(os.getloadavg()[0], 2))
            for _ in range(1 + RERUNS):
                got = asyncio.run(trial(a, b, 100 + t, args.duration, args.keep))
                if got is not None:
                    break
                errored += 1
            if got is None:
                continue
            linked, ms, root, failed = got
            print(f"  linked {linked}, {ms} ms, punched dials failed {failed}"
                  + (f", kept in {root}" if root else ""), file=sys.stderr)
            ran += 1
            ok += linked
            retried += linked and failed > 0
            if linked and ms is not None:
                times.append(ms)
            if root:
                kept.append(root)
        out[f"{a}-{b}"] = {"trials": ran, "linked": ok, "success": round(ok / max(ran, 1), 3),
                           "runs_failed": errored,
                           "connect_ms_p50": pct(times, 0.5), "connect_ms_p95": pct(times, 0.95),
                           "connect_ms": times, "linked_on_a_retry": retried,
                           **({"kept": kept} if kept else {})}
    load.append(round(os.getloadavg()[0], 2))
    print(json.dumps({"pairs": out, "duration_s": args.duration, "wall_s": round(time.monotonic() - t0, 1),
                      "load_1m_min": min(load), "load_1m_max": max(load)}, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
