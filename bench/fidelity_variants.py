"""The simulated side of a fidelity run again, with SwarmConfig fields changed: which
switch moves the figures of the real-process swarm's topology?

    .venv/bin/python bench/fidelity.py --seed 1 > fid1.json
    .venv/bin/python bench/fidelity_variants.py fid1.json \\
        --variant headroom08 slot_headroom=0.8 --variant margin015 origin_margin=0.15

Reads one JSON line of ``bench/fidelity.py`` (its delays and measured joins), and prints one
JSON object: per variant (``defaults`` first) the median of 5 swarm seeds of p50 / p95 ms,
offload and continuity, as ``fidelity.py``'s ``sim_median``. A value is parsed as JSON
(``true``, ``0.8``), else taken as a string.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oasis.sim import fidelity as f  # noqa: E402
from oasis.sim.oasis_run import OasisSim  # noqa: E402
from oasis.sim.scenario import Scenario  # noqa: E402

RUNS = 5


def run(delays: list[float], joins: list[float], duration: float, proto: dict[str, Any],
        seed: int) -> dict[str, Any]:
    """``oasis.sim.fidelity.run_sim`` with ``proto`` added to the scenario's [protocol]."""
    s = Scenario(name="fidelity", peers=len(joins), duration_s=duration, baselines=[],
                 bitrate_kbps=f.BITRATE_KBPS, chunk_ms=f.CHUNK_MS, gop_chunks=f.GOP_CHUNKS,
                 broadcaster_upload_kbps=f.BROADCASTER_UPLOAD_X * f.BITRATE_KBPS,
                 protocol={"playout_delay": f.PLAYOUT_DELAY, **proto},
                 upload_max_x=f.VIEWER_UPLOAD_X, upload_share=1.0)
    w, bnet, viewers = f.sim_population(delays, joins, seed)
    sim = OasisSim(s, w, bnet, viewers, seed)
    sim.edge_rtt_ms = 0.0  # as run_sim: the origin is the broadcaster's, on loopback
    return f.figures(sim.run())


def value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("fidelity_json", help="one line printed by bench/fidelity.py")
    ap.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "FIELD=VALUE"),
                    help="a name and the SwarmConfig fields it sets")
    args = ap.parse_args()
    d = json.loads(Path(args.fidelity_json).read_text().strip().splitlines()[-1])
    variants: dict[str, dict[str, Any]] = {"defaults": {}}
    for name, *fields in args.variant:
        proto = {}
        for kv in fields:
            k, sep, v = kv.partition("=")
            if not sep:
                ap.error(f"--variant {name}: {kv!r} is not FIELD=VALUE")
            proto[k] = value(v)
        variants[name] = proto
    out: dict[str, Any] = {"fidelity_seed": d["seed"], "real": {k: d["real"][k] for k in
                                                                ("p50_ms", "p95_ms", "offload")}}
    for name, proto in variants.items():
        rs = [run(d["link_delays_ms"], d["joins_s"], d["duration_s"], proto, d["seed"] * 1000 + i)
              for i in range(RUNS)]
        out[name] = {"set": proto} | {k: sorted(r[k] for r in rs)[RUNS // 2]
                                      for k in ("p50_ms", "p95_ms", "offload", "continuity")}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
