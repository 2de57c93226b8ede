"""Where the origin's deliveries go in one simulation: prints JSON.

Runs ``oasis sim SCENARIO --peers N --duration S --playout P --seed K --baselines none`` in
this process and wraps the simulator's interpreted executor (``oasis.sim.execute``'s table
for ``OasisSim``: ``Deliver`` and ``FetchOrigin``), so every delivery is seen with the
node's state at that moment; the run itself is unchanged (the same figures as the CLI).
For each origin delivery after the viewer's join: whether its substream was late, when the
fetch was asked (s after the chunk's time: the repair cap is a relay's early fetch, the
fallback a viewer's own), the viewer's smoothed lag and children on the substream, its age,
its depth; for the fetches a viewer makes in its first 4 s, its state then
(``newcomers_first_4s``: since its first frame, its parents on the substream and in all, how
far the parent is behind the best neighbour on paper, requests made, lag, depth); and the push trees at the end (per depth: viewer-substreams, children on that
substream and on the others) and the broadcaster's children.

    python bench/sim_origin_breakdown.py scenarios/mobile-churn-10k.toml --seed 2 \\
        [--nat 0.7] [--set root_strict=false ...]
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
from oasis.sim.netmodel import World, link_s


def _shares(values: list[Any]) -> dict[str, float]:
    c = collections.Counter(values)
    n = max(len(values), 1)
    return {str(k): round(v / n, 4) for k, v in sorted(c.items(), key=lambda x: str(x[0]))}


def _gap(swarm: Any, j: int) -> float:
    """How much later (s) chunks of ``j`` reach us through our parent than through the best
    neighbour on paper (expected arrival; no rng drawn: the run is unchanged); -1: no parent."""
    tree = swarm.tree
    cur = swarm.peers.get(tree.parents[j]) if tree.parents[j] is not None else None
    if cur is None:
        return -1.0
    best = min((tree.expected_arrival(st, j) for st in swarm.peers.values()
                if st.status is not None and j < len(st.status.paths) and st.status.paths[j]
                and tree.tag not in st.status.paths[j] and (st.status.slots > 0 or st is cur)),
               default=float("inf"))
    mine = tree.expected_arrival(cur, j)
    return mine - best if best < float("inf") and mine < float("inf") else -1.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--peers", default="1000")
    ap.add_argument("--duration", default="40")
    ap.add_argument("--playout", default="0.5")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--nat", default=None, help="the share of viewers behind NATs (the CLI's --nat)")
    ap.add_argument("--set", action="append", default=[], help="a [protocol] key=value (TOML value)")
    a = ap.parse_args()
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    s = cli.scenario_from(p.parse_args([a.scenario, "--peers", a.peers, "--duration", a.duration,
                                        "--playout", a.playout, "--seed", a.seed, "--baselines", "none",
                                        *(["--nat", a.nat] if a.nat is not None else [])]))
    over = {kv.split("=", 1)[0]: tomllib.loads(f"x = {kv.split('=', 1)[1]}")["x"] for kv in a.set}
    if over:
        s = dataclasses.replace(s, protocol={**s.protocol, **over})
    k = s.swarm_config().substreams
    rows: list[tuple[Any, ...]] = []
    p2p_depth: collections.Counter[int] = collections.Counter()
    asked: dict[tuple[int, int], float] = {}
    #: (node, seq) -> the newcomer's state when it asked the origin (``--newcomers``)
    state: dict[tuple[int, int], tuple[Any, ...]] = {}
    table = execute._table(oasis_run.OasisSim)
    deliver, fetch = table[sw.Deliver], table[sw.FetchOrigin]

    def on_fetch(net: Any, node: Any, act: sw.FetchOrigin) -> Any:
        if 0 <= act.seq < len(net.produced_t):
            asked[(node.idx, act.seq)] = net.now - net.produced_t[act.seq]
            rec = node.rec
            if rec is not None and net.now - rec.joined_at < 4.0:
                j = act.seq % k
                swarm = node.swarm
                tree = swarm.tree
                want = swarm.repair.wants.get(act.seq)
                parent = tree.parents[j]
                state[(node.idx, act.seq)] = (
                    net.now - swarm.repair.started_at,  # since our first frame
                    parent is not None,
                    bool(tree.parent_pushed_any[j]) if parent is not None else False,
                    net.now - tree.changed_at[j] if parent is not None else -1.0,
                    len(want.asked) if want is not None else -1,
                    sum(1 for st in swarm.peers.values() if st.pending_mask >> j & 1),
                    len(swarm.peers),
                    sum(1 for x in tree.parents if x is not None),
                    swarm.delay.lag[j] if swarm.delay.known[j] else -1.0,
                    net.produced_t[act.seq] - rec.joined_at,  # chunk made this long after the join
                    len(tree.paths[j]) - 1 if parent is not None else 0,
                    node.idx,
                    len({x for x in tree.parents if x is not None}),
                    _gap(swarm, j),
                )
        return fetch(net, node, act)

    def on_deliver(net: Any, node: Any, act: sw.Deliver) -> Any:
        rec = node.rec
        c = act.chunk
        if rec is not None and not node.mode and c.time_us / 1e6 >= rec.joined_at:
            j = c.seq % k
            tree = node.swarm.tree
            depth = len(tree.paths[j]) - 1 if tree.parents[j] is not None else 0
            if act.source == sw.SOURCE_ORIGIN:
                d = node.swarm.delay
                kids = sum(1 for st in node.swarm.peers.values() if st.children_mask >> j & 1)
                rows.append((depth, tree.parents[j] is not None, bool(d.late[j]),
                             d.lag[j] if d.known[j] else -1.0, kids, asked.get((node.idx, c.seq), -1.0),
                             act.at - rec.joined_at, act.at - tree.changed_at[j], node.net.access,
                             state.get((node.idx, c.seq))))
            else:
                p2p_depth[depth] += 1
        return deliver(net, node, act)

    table[sw.Deliver], table[sw.FetchOrigin] = on_deliver, on_fetch
    world = World()
    bnet, viewers = population.build(s, world, int(a.seed))
    res, sim = oasis_run.run_oasis(s, world, bnet, viewers, int(a.seed))
    n = len(rows)
    lags = np.array([r[3] for r in rows if r[3] >= 0]) if rows else np.zeros(1)
    early = [r for r in rows if 0 <= r[5] < sim.cfg.playout_delay - sim.cfg.origin_margin - 0.02]
    trees: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    for node in sim.nodes.values():
        if node.is_source or not node.alive or node.mode:
            continue
        t = node.swarm.tree
        for j in range(k):
            if t.parents[j] is None:
                continue
            on = sum(1 for st in node.swarm.peers.values() if st.children_mask >> j & 1)
            off = sum(bin(st.children_mask & ~(1 << j)).count("1") for st in node.swarm.peers.values())
            trees[len(t.paths[j]) - 1].append((on, off))
    src = sim.source.swarm
    # the broadcaster's first hop: its children and its other neighbours (RTT, access, region),
    # and the viewers' one-way delay from the broadcaster (how far the viewers are from it)
    bnode = sim.source
    first_hop: dict[str, list[Any]] = {"children": [], "others": []}
    for st in src.peers.values():
        other = sim.by_key.get(st.key)
        if other is None:
            continue
        first_hop["children" if st.children_mask else "others"].append(
            (link_s(sim.rtt, bnode.net, other.net)[1] * 1000, other.net.access,
             world.region[other.net.country]))
    viewers_rtt = [link_s(sim.rtt, bnode.net, n.net)[1] * 1000 for n in sim.nodes.values()
                   if not n.is_source and n.alive and not n.mode]
    depth_access: dict[int, list[str]] = collections.defaultdict(list)
    for node in sim.nodes.values():
        if node.is_source or not node.alive or node.mode:
            continue
        t = node.swarm.tree
        for j in range(k):
            if t.parents[j] is not None:
                depth_access[len(t.paths[j]) - 1].append(node.net.access)
    out = {
        "scenario": s.name, "seed": int(a.seed), "overrides": over,
        "result": {key: v for key, v in res.items() if not isinstance(v, (dict, list)) or key == "latency_ms"},
        "origin_deliveries": n, "p2p_deliveries": sum(p2p_depth.values()),
        "late": round(sum(r[2] for r in rows) / max(n, 1), 4),
        "no_parent": round(sum(not r[1] for r in rows) / max(n, 1), 4),
        "fetched_at_s": _shares([round(r[5], 2) for r in rows]),
        "early_by_relays": round(len(early) / max(n, 1), 4),
        "early_relay_lag_p50_s": round(float(np.median([r[3] for r in early])) if early else -1.0, 4),
        "early_relay_children_mean": round(float(np.mean([r[4] for r in early])) if early else 0.0, 3),
        "lag_p10_p50_p90_s": [round(float(x), 4) for x in np.percentile(lags, [10, 50, 90])],
        "viewer_age_s": _shares([min(int(r[6] // 2) * 2, 20) for r in rows]),
        "parent_under_1s": round(sum(r[7] < 1 for r in rows) / max(n, 1), 4),
        "depth": _shares([r[0] for r in rows]),
        "access": _shares([r[8] for r in rows]),
        "p2p_depth": {str(d): v for d, v in sorted(p2p_depth.items())},
        "trees_at_end": {str(d): {"viewer_substreams": len(v),
                                  "children_on_j": round(float(np.mean([x[0] for x in v])), 2),
                                  "children_on_others": round(float(np.mean([x[1] for x in v])), 2)}
                         for d, v in sorted(trees.items())},
        "broadcaster_first_hop": {
            kind: {"n": len(v),
                   "rtt_ms_p10_p50_p90": [round(float(x), 1) for x in np.percentile([r[0] for r in v] or [0.0],
                                                                                     [10, 50, 90])],
                   "access": _shares([r[1] for r in v]), "region": _shares([r[2] for r in v])}
            for kind, v in first_hop.items()},
        "viewers_rtt_to_broadcaster_ms_p10_p50_p90": [round(float(x), 1) for x in np.percentile(
            viewers_rtt or [0.0], [10, 50, 90])],
        "access_by_depth_at_end": {str(d): _shares(v) for d, v in sorted(depth_access.items())},
        "broadcaster_children_by_substreams": dict(collections.Counter(
            bin(st.children_mask).count("1") for st in src.peers.values())),
    }
    new = [r[9] for r in rows if r[9] is not None]
    if new:
        out["newcomers_first_4s"] = {
            "origin_deliveries": len(new),
            "viewers": len({x[11] for x in new}),
            "since_first_frame_s": _shares([min(int(x[0] * 2) / 2, 4.0) if x[0] < 1e9 else "before" for x in new]),
            "has_parent": round(sum(x[1] for x in new) / len(new), 4),
            "parent_pushed_any": round(sum(x[2] for x in new) / len(new), 4),
            "parent_age_s": _shares([min(int(x[3] * 2) / 2, 4.0) for x in new if x[1]]),
            "requests_made": _shares([min(x[4], 3) for x in new]),
            "pending_subscribe_on_j": round(sum(x[5] > 0 for x in new) / len(new), 4),
            "neighbours": _shares([min(x[6] // 4 * 4, 20) for x in new]),
            "parents_held": _shares([x[7] for x in new]),
            "lag_known": round(sum(x[8] >= 0 for x in new) / len(new), 4),
            "lag_s_p10_p50_p90": [round(float(v), 3) for v in np.percentile(
                [x[8] for x in new if x[8] >= 0] or [0.0], [10, 50, 90])],
            "chunk_made_after_join_s": _shares([min(int(x[9] * 2) / 2, 4.0) for x in new]),
            "depth": _shares([x[10] for x in new]),
            "distinct_parents": _shares([x[12] for x in new]),
            "parent_vs_best_on_paper_s": _shares([min(round(x[13] * 10) / 10, 0.5) for x in new if x[13] >= 0]),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
