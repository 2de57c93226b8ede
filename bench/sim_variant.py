"""One simulation with ``[protocol]`` overrides: prints one JSON line of its key figures.

The same run as ``oasis sim SCENARIO --seed N --baselines none`` (with ``--short``: ``--peers
1000 --duration 40 --playout 0.5``, issue 9's comparison runs), with ``--set key=value`` (a
TOML value) replacing ``SwarmConfig`` fields the way a ``[protocol]`` table in a scenario copy
would, so a variant needs no scenario file. The load average before and after is printed
beside the figures (the simulator is deterministic per seed; the load moves only the wall).

    python bench/sim_variant.py scenarios/mobile-churn-10k.toml --short --seed 2 \\
        --set origin_margin=0.10 [--chunk-ms 20] [--nat 0.7] [--quic qh3] [--tag name] [--policy-set start_room=8] \\
        [--scenario-set upload_probe_x=0]

``--policy-set`` replaces a :class:`oasis.core.peer.PolicyConfig` field for every node (as
``bench/sim_nat_breakdown.py`` does); ``--scenario-set`` a scenario key (``upload_probe_x=0``:
the viewers keep their caps, no uplink probe).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import tomllib

from oasis.core import peer
from oasis.sim import cli, runner, scenario


def _load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--short", action="store_true", help="--peers 1000 --duration 40 --playout 0.5")
    ap.add_argument("--chunk-ms", default=None)
    ap.add_argument("--set", action="append", default=[], help="a [protocol] key=value (TOML value)")
    ap.add_argument("--policy-set", action="append", default=[], help="a PolicyConfig key=value (TOML value)")
    ap.add_argument("--scenario-set", action="append", default=[],
                    help="a scenario key=value (TOML value), e.g. upload_probe_x=0 (no uplink probe)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--nat", default=None, help="share of peers behind NATs (as `oasis sim --nat`)")
    ap.add_argument("--quic", default=None, choices=("oasis", "qh3"),
                    help="the links' congestion control (as `oasis sim --quic`)")
    ap.add_argument("--edge-hold", type=float, default=None,
                    help="s the CDN edge holds a fetch for a chunk it will have (default the "
                    "simulator's, as `oasis edge --hold`; 0: 404 at once)")
    a = ap.parse_args()
    if a.edge_hold is not None:
        from oasis.sim import oasis_run
        oasis_run.CDN_EDGE_HOLD_S = a.edge_hold  # read by each OasisSim it builds
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    argv = [a.scenario, "--seed", a.seed, "--baselines", "none"]
    if a.chunk_ms:
        argv += ["--chunk-ms", a.chunk_ms]
    if a.short:
        argv += ["--peers", "1000", "--duration", "40", "--playout", "0.5"]
    if a.nat is not None:
        argv += ["--nat", a.nat]
    if a.quic is not None:
        argv += ["--quic", a.quic]
    s = cli.scenario_from(p.parse_args(argv))
    over = {kv.split("=", 1)[0]: tomllib.loads(f"x = {kv.split('=', 1)[1]}")["x"] for kv in a.set}
    if over:
        s = dataclasses.replace(s, protocol={**s.protocol, **over})
    scen = {kv.split("=", 1)[0]: tomllib.loads(f"x = {kv.split('=', 1)[1]}")["x"] for kv in a.scenario_set}
    if scen:  # checked as a scenario file's keys are
        s = scenario.from_dict({**dataclasses.asdict(s), **scen})
    pol = {kv.split("=", 1)[0]: tomllib.loads(f"x = {kv.split('=', 1)[1]}")["x"] for kv in a.policy_set}
    if pol:  # the simulator builds pp.PolicyConfig(...) per node
        peer.PolicyConfig = functools.partial(peer.PolicyConfig, **pol)  # type: ignore[misc,assignment]
    load0 = _load()
    out = runner.run(s, int(a.seed), plots=None, timing=True, progress=False)
    o = out["oasis"]
    print(json.dumps({"tag": a.tag, "scenario": os.path.basename(a.scenario), "seed": a.seed,
                      "chunk_ms": a.chunk_ms, "quic": s.quic, "set": a.set,
                      "policy_set": a.policy_set, "scenario_set": a.scenario_set,
                      "offload": o["offload_ratio"],
                      "continuity": o["continuity"], "p50": o["latency_ms"]["p50"],
                      "p95": o["latency_ms"]["p95"], "stretch50": o["latency_stretch"]["p50"],
                      "startup_ms": o.get("startup_ms"),
                      "resource_index": out.get("resource_index"),
                      "origin_requests": o.get("origin_requests"),
                      "origin_404": o.get("origin_404"), "edge_holds": o.get("edge_holds"),
                      "edge_hold": a.edge_hold,
                      "near_swaps": o.get("policy", {}).get("links_replaced_nearer"),
                      "pushes_reset": o.get("pushes_reset"), "uplink": o.get("uplink"),
                      "wall_s": out.get("wall_s"),
                      "load": [load0, _load()]}), flush=True)


if __name__ == "__main__":
    main()
