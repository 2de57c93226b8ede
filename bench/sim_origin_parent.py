"""Whose origin deliveries repeat their parent's: prints JSON.

Runs ``oasis sim SCENARIO --peers 1000 --duration 40 --playout 0.5 --seed K --baselines none``
in this process and wraps the simulator's executor table (``Deliver`` and ``FetchOrigin``) as
``bench/sim_origin_breakdown.py`` does (the run is unchanged: the CLI's figures). For every
origin fetch that delivered the chunk (the origin's answer came before any peer's copy), its
kind (``relay_early``: asked before 0.35 s after the chunk's time, a relay's early fetch or
cover; ``fallback``: the viewer's own) and what its parent on the substream had then: the
chunk already (``parent_had_it``: its push to us was under way; also whether it still sat in
the parent's upload queue, and the two access kinds), the chunk only later (``parent_later``:
from which source), never, or no parent.

    python bench/sim_origin_parent.py scenarios/stress-mobile.toml --seed 1 [--set relay_cover=true]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import tomllib
from typing import Any

import numpy as np

from oasis.core import swarm as sw
from oasis.sim import cli, execute, oasis_run, population
from oasis.sim.netmodel import World


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--set", action="append", default=[], help="a [protocol] key=value (TOML value)")
    a = ap.parse_args()
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    s = cli.scenario_from(p.parse_args([a.scenario, "--peers", "1000", "--duration", "40", "--playout", "0.5",
                                        "--seed", a.seed, "--baselines", "none"]))
    over = {kv.split("=", 1)[0]: tomllib.loads(f"x = {kv.split('=', 1)[1]}")["x"] for kv in a.set}
    if over:
        s = dataclasses.replace(s, protocol={**s.protocol, **over})
    k = s.swarm_config().substreams
    table = execute._table(oasis_run.OasisSim)
    deliver, fetch = table[sw.Deliver], table[sw.FetchOrigin]
    #: (node idx, seq) -> (s after the chunk's time it was delivered, source)
    got: dict[tuple[int, int], tuple[float, str]] = {}
    #: (node idx, seq, s after the chunk's time, the parent's idx or None)
    fetches: list[tuple[int, int, float, int | None]] = []
    #: (node idx, seq) -> (where the parent's copy was: queued / left / not a child, access kinds)
    at_parent: dict[tuple[int, int], tuple[str, str]] = {}

    def on_fetch(net: Any, node: Any, act: sw.FetchOrigin) -> Any:
        if 0 <= act.seq < len(net.produced_t) and node.rec is not None and not node.mode:
            j = act.seq % k
            par = node.swarm.tree.parents[j]
            pn = net.by_key.get(par) if par is not None else None
            if pn is not None and act.seq in pn.swarm.log:
                st = pn.swarm.peers.get(node.key)
                if (node.key, act.seq) in pn.swarm.upload._queued:
                    where = "queued_at_parent"
                elif st is not None and st.children_mask >> j & 1:
                    where = "left_parent"
                else:
                    where = "not_a_child_at_parent"
                at_parent[(node.idx, act.seq)] = (where, f"{pn.net.access}>{node.net.access}")
            fetches.append((node.idx, act.seq, net.now - net.produced_t[act.seq],
                            pn.idx if pn is not None else None))
        return fetch(net, node, act)

    def on_deliver(net: Any, node: Any, act: sw.Deliver) -> Any:
        c = act.chunk
        if 0 <= c.seq < len(net.produced_t):
            got[(node.idx, c.seq)] = (act.at - net.produced_t[c.seq], act.source)
        return deliver(net, node, act)

    table[sw.Deliver], table[sw.FetchOrigin] = on_deliver, on_fetch
    world = World()
    bnet, viewers = population.build(s, world, int(a.seed))
    res, _sim = oasis_run.run_oasis(s, world, bnet, viewers, int(a.seed))
    cat: collections.Counter[str] = collections.Counter()
    where: collections.Counter[str] = collections.Counter()
    access: collections.Counter[str] = collections.Counter()
    ahead: list[float] = []
    for idx, seq, age, pidx in fetches:
        g = got.get((idx, seq))
        if g is None or g[1] != sw.SOURCE_ORIGIN:
            continue  # a peer's copy came first (or nothing): this fetch delivered nothing
        kind = "relay_early" if age < 0.35 else "fallback"
        if pidx is None:
            cat[f"{kind}:no_parent"] += 1
            continue
        pg = got.get((pidx, seq))
        if pg is None:
            cat[f"{kind}:parent_never"] += 1
        elif pg[0] <= age:
            cat[f"{kind}:parent_had_it({pg[1]})"] += 1
            ahead.append(age - pg[0])
            w, acc = at_parent.get((idx, seq), ("?", "?"))
            where[f"{kind}:{w}"] += 1
            access[f"{kind}:{acc}"] += 1
        else:
            cat[f"{kind}:parent_later({pg[1]})"] += 1
    n = max(sum(cat.values()), 1)
    print(json.dumps({
        "scenario": s.name, "seed": int(a.seed), "overrides": over,
        "offload": res["offload_ratio"], "continuity": res["continuity"], "latency_ms": res["latency_ms"],
        "origin_requests": res["origin_requests"], "origin_deliveries_by_fetch": sum(cat.values()),
        "categories": {key: [v, round(v / n, 4)] for key, v in cat.most_common()},
        "parent_had_it_s_before_p10_p50_p90": [round(float(x), 3) for x in np.percentile(ahead or [0.0],
                                                                                         [10, 50, 90])],
        "parent_had_it_where": dict(where.most_common()),
        "parent_had_it_access": dict(access.most_common(12)),
    }))


if __name__ == "__main__":
    main()
