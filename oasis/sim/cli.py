"""``oasis sim SCENARIO.toml [--seed N] [--json] [--plots DIR]`` and quick flags."""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import runner
from .scenario import QUIC_MODELS, Scenario, from_dict, load


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", help="scenario TOML file (default: built-in quick one)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plots", default=None, help="write PNG plots into this directory")
    p.add_argument("--peers", type=int, default=None)
    p.add_argument("--duration", type=float, default=None, help="stream seconds")
    p.add_argument("--churn", type=float, default=None, help="departures per minute, share of swarm")
    p.add_argument("--flash", type=float, default=None, help="flash crowd: all join within N s")
    p.add_argument("--hostile", type=float, default=None,
                   help="share of the viewers that are adversaries (0 = the honest run)")
    p.add_argument("--nat", default=None,
                   help="share of the viewers behind a NAT (the scenario's [nat] nat_share), or "
                        "'published': per access kind, as measured (fixed 0.90, cellular 0.92)")
    p.add_argument("--playout", type=float, default=None,
                   help="playout delay, s (the scenario's [protocol] playout_delay; node default 0.5)")
    p.add_argument("--chunk-ms", type=int, default=None,
                   help="chunk duration, ms (the scenario's [stream] chunk_ms; node default 33)")
    p.add_argument("--quic", default=None, choices=QUIC_MODELS,
                   help="each link's congestion control (the scenario's [network] quic): the node's "
                        "own, as aioquic runs it (default), or qh3's CUBIC, the default stack's")
    p.add_argument("--baselines", default=None, help="comma list (default all; 'none')")
    p.add_argument("--no-timing", action="store_true", help="omit wall-clock fields")
    p.add_argument("--progress", action="store_true",
                   help="print progress to stderr every 10 simulated seconds: peers, the offload "
                        "since the last line, events, wall, CPU, memory (default when stderr is a terminal)")
    p.add_argument("--progress-every", type=float, default=None, metavar="S",
                   help="progress every S simulated seconds instead of 10 (implies --progress; "
                        "a 100,000-peer run takes minutes of wall per simulated second)")


def scenario_from(args: argparse.Namespace) -> Scenario:
    s = load(args.scenario) if args.scenario else Scenario()
    d = s.to_json()
    if args.peers is not None:
        d["peers"] = args.peers
    if args.duration is not None:
        # a flash crowd that would go on joining after a shorter run ends is scaled with the
        # duration (and said so): the same crowd, compressed, rather than viewers who never play
        was, d["duration_s"] = float(d["duration_s"]), args.duration
        if (d.get("join_pattern") == "flash" and args.flash is None
                and d["flash_start_s"] + d["flash_window_s"] > args.duration):
            k = args.duration / was
            d["flash_start_s"] = round(d["flash_start_s"] * k, 3)
            d["flash_window_s"] = round(d["flash_window_s"] * k, 3)
            print(f"oasis sim: --duration {args.duration:g} (the scenario's {was:g} s): the flash "
                  f"crowd joins in {d['flash_start_s']:g}..."
                  f"{d['flash_start_s'] + d['flash_window_s']:g} s", file=sys.stderr)
    if args.churn is not None:
        d["churn_per_min"] = args.churn
    if args.flash is not None:
        d["join_pattern"], d["flash_window_s"] = "flash", args.flash
    if args.hostile is not None:
        d["hostile"] = args.hostile
    if args.nat is not None:
        if args.nat == "published":
            from .netmodel import PUBLISHED_NAT_SHARE
            d["nat_by_access"] = dict(PUBLISHED_NAT_SHARE)
        else:
            try:
                d["nat_share"], d["nat_by_access"] = float(args.nat), {}
            except ValueError:
                raise ValueError(f"--nat {args.nat!r}: a share in [0, 1] or 'published'") from None
    if args.playout is not None:
        if not 0.05 <= args.playout <= 60:
            raise ValueError("--playout must be between 0.05 and 60 s")
        d["protocol"] = {**d.get("protocol", {}), "playout_delay": args.playout}
    if args.chunk_ms is not None:
        d["chunk_ms"] = args.chunk_ms
    if args.quic is not None:
        d["quic"] = args.quic
    if args.baselines is not None:
        d["baselines"] = [] if args.baselines == "none" else args.baselines.split(",")
    return from_dict(d)


#: a run's memory, fitted on measured peak RSS (docs/simulation.md): ~120 KiB a peer once
#: joined (100,000 peers at simulated 6 s: 6.5 GiB), then ~2.5 KB a peer each simulated
#: second at 33 ms chunks (records, per-chunk state: 10,000 x 120 s peaked at 3.5-4.25 GiB)
MEMORY_BASE = 150 * 2**20
MEMORY_PEER = 120 * 2**10
MEMORY_PEER_S_AT_33MS = 2_500
#: refuse a run estimated past this many times the memory available (a warning past 1x):
#: 1,000,000 peers were taken: past 4 GiB within 0.05 s of stream, ~115 GiB estimated (found 2026-12-06)
MEMORY_REFUSE = 2.0


def memory_estimate(s: Scenario) -> float:
    """Bytes a run of scenario ``s`` is expected to peak at (the fit above; baselines run one
    after the other and take less)."""
    peers = s.peers * (1 + s.churn_per_min * s.duration_s / 60)
    return MEMORY_BASE + peers * MEMORY_PEER + s.peers * s.duration_s * MEMORY_PEER_S_AT_33MS * 33 / s.chunk_ms


def memory_available() -> float | None:
    """``MemAvailable`` + ``SwapFree`` from /proc/meminfo, bytes (None where unreadable)."""
    try:
        with open("/proc/meminfo") as f:
            fields = {k: int(v.split()[0]) * 1024 for k, v in (ln.split(":", 1) for ln in f if ":" in ln)}
        return float(fields["MemAvailable"] + fields.get("SwapFree", 0))
    except (OSError, KeyError, ValueError):
        return None


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        s = scenario_from(args)
        if args.plots:  # made now: a directory that cannot be made threw the whole run away
            if Path(args.plots).exists() and not Path(args.plots).is_dir():
                raise ValueError(f"--plots {args.plots}: exists and is not a directory")
            try:
                os.makedirs(args.plots, exist_ok=True)
            except OSError as exc:
                raise ValueError(f"--plots {args.plots}: cannot make the directory ({exc.strerror or exc})") from None
        if args.progress_every is not None and not args.progress_every > 0:
            raise ValueError("--progress-every must be > 0 simulated seconds")
        need, have = memory_estimate(s), memory_available()
        if have is not None and need > MEMORY_REFUSE * have:
            raise ValueError(f"this run would need about {need / 2**30:.1f} GiB and this machine has "
                             f"{have / 2**30:.1f} GiB available: fewer --peers or a shorter --duration "
                             "(docs/simulation.md, Speed)")
        if have is not None and need > have:
            print(f"oasis sim: warning: this run may need about {need / 2**30:.1f} GiB; "
                  f"{have / 2**30:.1f} GiB are available", file=sys.stderr)
    except (ValueError, TypeError, OSError) as exc:
        # before the run, not after it: a wrong key or baseline must not cost a long run
        print(f"oasis sim: error: {exc}", file=sys.stderr)
        return 2
    try:
        out = runner.run(s, args.seed, plots=args.plots, timing=not args.no_timing,
                         progress=args.progress or args.progress_every is not None or sys.stderr.isatty(),
                         progress_every_s=args.progress_every or 10.0)
    except KeyboardInterrupt:  # Ctrl-C: a run has no partial result to print; no traceback
        print("\noasis sim: interrupted; nothing to report (a run's figures come at its end)", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    rows = [("oasis", out["oasis"]), *out["baselines"].items()]
    print(f"scenario {out['scenario']}  seed {out['seed']}  peers {out['peers']}  "
          f"resource index {out['resource_index']}")
    print(f"{'system':14} {'p50 ms':>9} {'p95 ms':>9} {'continuity':>10} {'offload':>8} "
          f"{'stretch p50':>11} {'startup p50':>11}")
    for name, r in rows:
        print(f"{name:14} {r['latency_ms']['p50']:>9} {r['latency_ms']['p95']:>9} "
              f"{r['continuity']:>10} {r['offload_ratio']:>8} {r['latency_stretch']['p50']:>11} "
              f"{r['startup_ms']['p50']:>11}")
    if "wall_s" in out:
        print(f"wall {out['wall_s']} s, max RSS {out['max_rss_mib']} MiB", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="oasis sim")
    add_arguments(p)
    return run(p.parse_args(argv))
