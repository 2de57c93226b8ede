"""One hostile-scenario simulation, with overrides, and where its honest viewers' tail comes from.

The same run as ``oasis sim SCENARIO --peers N --duration S --seed K --baselines none`` (the
scenario's own playout unless ``--playout``), with ``--hostile`` (a share; 0 = the honest
twin), ``--mix mode[,mode...]`` (only these adversary modes, equal weights) and ``--set
key=value`` (``SwarmConfig`` fields, as a ``[protocol]`` table would). It wraps the simulator's
interpreted ``Deliver`` executor (``oasis.sim.execute``'s table for ``OasisSim``), so the run
itself is unchanged, and prints one JSON line: the honest viewers' figures, then every
delivery after a viewer's join classed by how it came (the broadcaster, the origin, a push from
the substream's parent, any other peer's answer, each split honest / hostile sender), and the
tail (chunks later than ``--tail-ms``, default the run's own p95) by its *root*: the first step
up the chain of pushes that was not a push (a repair or origin copy at an ancestor, or a
hostile relay on the way).

    python bench/sim_hostile_variant.py scenarios/hostile-10k.toml --peers 1000 --duration 60 \\
        --seed 1 [--hostile 0] [--mix withhold] [--set key=value ...]
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
from oasis.core import wire
from oasis.sim import adversary as adv
from oasis.sim import cli, execute, oasis_run, population
from oasis.sim.netmodel import World


def _load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(xs), q)) * 1000, 1) if xs else -1.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--peers", default="1000")
    ap.add_argument("--duration", default="60")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--hostile", default=None)
    ap.add_argument("--mix", default=None, help="comma list of adversary modes (equal weights)")
    ap.add_argument("--playout", default=None)
    ap.add_argument("--sink-late", type=float, default=None,
                    help="a repair sink answers this long (s) after the asker's deadline (default: never)")
    ap.add_argument("--tail-ms", type=float, default=None)
    ap.add_argument("--set", action="append", default=[], help="a [protocol] key=value (TOML value)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--trace", action="store_true",
                    help="class every delivery and trace the tail to its root (slower, more memory)")
    a = ap.parse_args()
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    argv = [a.scenario, "--peers", a.peers, "--duration", a.duration, "--seed", a.seed,
            "--baselines", "none"]
    if a.hostile is not None:
        argv += ["--hostile", a.hostile]
    if a.playout is not None:
        argv += ["--playout", a.playout]
    s = cli.scenario_from(p.parse_args(argv))
    over = {kv.split("=", 1)[0]: tomllib.loads(f"x = {kv.split('=', 1)[1]}")["x"] for kv in a.set}
    if over:
        s = dataclasses.replace(s, protocol={**s.protocol, **over})
    if a.mix:
        s = dataclasses.replace(s, hostile_mix=dict.fromkeys(a.mix.split(","), 1.0))
    if a.sink_late is not None:
        s = dataclasses.replace(s, hostile_sink_late=a.sink_late)
    k = s.swarm_config().substreams
    # (node idx, seq) -> (class, sender idx or -1, at)
    got: dict[tuple[int, int], tuple[str, int, float]] = {}
    honest_lat: list[tuple[int, int, float, str]] = []
    tmade: dict[int, float] = {}
    table = execute._table(oasis_run.OasisSim)
    deliver = table[sw.Deliver]

    def on_deliver(net: Any, node: Any, act: sw.Deliver) -> Any:
        c = act.chunk
        j = c.seq % k
        if act.source == sw.SOURCE_ORIGIN:
            cls, who = "origin", -1
        elif act.source == sw.SOURCE_BROADCASTER:
            cls, who = "bcast", -1
        elif act.source == sw.SOURCE_SELF:
            cls, who = "self", -1
        else:
            sender = net.by_key.get(act.peer)
            who = sender.idx if sender is not None else -2
            if sender is not None and sender.is_source:
                cls = "bcast"
            else:
                kind = "push" if act.peer == node.swarm.tree.parents[j] else "other"
                cls = f"{kind}_{adv.NAMES[sender.mode] if sender is not None and sender.mode else 'honest'}"
        got[(node.idx, c.seq)] = (cls, who, act.at)
        if not node.mode:
            parent_of(net, node, j)  # (notes a change of parent when it is first seen)
        tmade[c.seq] = c.time_us / 1e6
        rec = node.rec
        if rec is not None and not node.mode and c.time_us / 1e6 >= rec.joined_at:
            honest_lat.append((node.idx, c.seq, act.at - c.time_us / 1e6, cls))
        return deliver(net, node, act)

    send = table[sw.Send]
    # (node idx, seq) -> [first REQUEST at, parent class then, previous parent's class, s since the
    # parent changed, first asked's class, REQUESTs sent]
    asks: dict[tuple[int, int], list[Any]] = {}
    # (node idx, substream) -> (parent key, class, since, previous class)
    parent_seen: dict[tuple[int, int], tuple[Any, str, float, str]] = {}

    def who_cls(net: Any, key: Any) -> str:
        if key is None:
            return "none"
        o = net.by_key.get(key)
        if o is None:
            return "gone"
        if o.is_source:
            return "bcast"
        return adv.NAMES[o.mode] if o.mode else "honest"

    def parent_of(net: Any, node: Any, j: int) -> tuple[str, float, str]:
        key = node.swarm.tree.parents[j]
        prev = parent_seen.get((node.idx, j))
        if prev is None or prev[0] != key:
            prev = (key, who_cls(net, key), net.now, prev[1] if prev is not None else "start")
            parent_seen[(node.idx, j)] = prev
        return prev[1], net.now - prev[2], prev[3]

    def on_send(net: Any, node: Any, act: sw.Send) -> Any:
        m = act.message
        if type(m) is wire.Request and not node.mode and not node.is_source:
            r = asks.get((node.idx, m.seq))
            if r is None:
                pc, since, prevc = parent_of(net, node, m.seq % k)
                asks[(node.idx, m.seq)] = [net.now, pc, prevc, since, who_cls(net, act.peer), 1,
                                           net.now - node.swarm.repair.started_at]
            else:
                r[5] += 1
        return send(net, node, act)

    if a.trace:
        table[sw.Deliver] = on_deliver
        table[sw.Send] = on_send
    world = World()
    bnet, viewers = population.build(s, world, int(a.seed))
    load0 = _load()
    res, sim = oasis_run.run_oasis(s, world, bnet, viewers, int(a.seed))
    lat_all = [x[2] for x in honest_lat]
    tail_s = a.tail_ms / 1000 if a.tail_ms else (float(np.percentile(np.array(lat_all), 95)) if lat_all else 0.0)
    by_cls: dict[str, list[float]] = collections.defaultdict(list)
    for _, _, lat, cls in honest_lat:
        by_cls[cls].append(lat)
    n_all = max(len(honest_lat), 1)

    root_at: dict[tuple[int, int], int] = {}

    def root(idx: int, seq: int) -> tuple[str, int]:
        """The first step up the chain of pushes that was not an honest push; its depth."""
        depth = 0
        first = idx
        while True:
            g = got.get((idx, seq))
            if g is None:
                return "unknown", depth
            cls, who, _ = g
            if cls != "push_honest" or who < 0:
                root_at[(first, seq)] = idx
                return cls, depth
            idx = who
            depth += 1
            if depth > 30:
                return "loop", depth

    tail_root: collections.Counter[str] = collections.Counter()
    tail_depth: collections.Counter[int] = collections.Counter()
    tail_direct: collections.Counter[str] = collections.Counter()
    tail = [x for x in honest_lat if x[2] >= tail_s]
    for idx, seq, _, cls in tail:
        tail_direct[cls] += 1
        r, d = root(idx, seq)
        tail_root[r] += 1
        tail_depth[min(d, 8)] += 1
    nt = max(len(tail), 1)
    # The tail's repairs and origin copies (at the viewer or at the ancestor where its chain of
    # pushes began): why a repair was needed (the parent on that substream at the first REQUEST),
    # how long after the chunk's time it was asked, whom first, how many REQUESTs
    causes: collections.Counter[str] = collections.Counter()
    first_asked: collections.Counter[str] = collections.Counter()
    ask_delay: list[float] = []
    n_req: list[int] = []
    since_ch: list[float] = []
    n_rep = 0
    at_start = 0  # first REQUEST within 1 s of the node's start (its first frame)
    answered_by: collections.Counter[str] = collections.Counter()
    for idx, seq, _, _c in tail:
        ridx = root_at.get((idx, seq))
        if ridx is None:
            continue
        rcls = got[(ridx, seq)][0]
        if not (rcls.startswith("other_") or rcls == "origin"):
            continue
        n_rep += 1
        answered_by[rcls] += 1
        r = asks.get((ridx, seq))
        if r is None:
            causes[f"{rcls}: no REQUEST"] += 1
            continue
        at, pc, prevc, since, fa, nr, after_start = r
        ask_delay.append(at - tmade.get(seq, at))
        if after_start < 1.0:
            at_start += 1
        cause = f"parent {pc}" + (f" (new, {prevc} before)" if since < 2.0 else "")
        causes[cause] += 1
        first_asked[fa] += 1
        n_req.append(nr)
        since_ch.append(since)
    nr_ = max(n_rep, 1)
    repair_trace = {
        "tail_repairs": n_rep, "share_of_tail": round(n_rep / nt, 4),
        "cause": {c: round(v / nr_, 4) for c, v in causes.most_common()},
        "by": {c: round(v / nr_, 4) for c, v in answered_by.most_common()},
        "asked_within_1s_of_start": round(at_start / nr_, 4),
        "first_asked": {c: round(v / nr_, 4) for c, v in first_asked.most_common()},
        "first_request_after_ms": {"p50": _pct(ask_delay, 50), "p95": _pct(ask_delay, 95)},
        "requests": {"mean": round(float(np.mean(n_req)), 2) if n_req else 0,
                     "p95": float(np.percentile(np.array(n_req), 95)) if n_req else 0},
    }
    o = res
    # ``repair_guard``: what the honest nodes judged, and of whom (pairs honest node -> peer)
    guard_keys = ("requests_sent", "repair_misses_judged", "repair_sinks_distrusted",
                  "repairs_unanswered", "skipped", "origin_fetches", "requests_paired",
                  "statuses_one_hop_doubted", "parents_doubt_passed")
    honest_nodes = [n for n in sim.every if not n.mode and not n.is_source]
    judged = {kk: sum(getattr(n.swarm.counters, kk) for n in honest_nodes) for kk in guard_keys}
    pairs: collections.Counter[str] = collections.Counter()
    for n in honest_nodes:
        records = [(kk, st.distrusts) for kk, st in n.swarm.peers.items()]
        records += [(kk, acc.distrusts) for kk, acc in n.swarm._departed.items()]
        for kk, st in n.swarm.peers.items():  # (``one_hop_doubt``) whom it doubts at the end
            if st.doubted:
                other = sim.by_key.get(kk)
                pairs["hostile_doubted_at_end" if other is not None and other.mode else "honest_doubted_at_end"] += 1
        for kk, times in records:
            if times:
                other = sim.by_key.get(kk)
                who = "hostile" if other is not None and other.mode else "honest"
                pairs[f"{who}_distrusted"] += 1
                pairs[f"{who}_distrusts"] += times
    out = {
        "tag": a.tag, "scenario": s.name, "seed": int(a.seed), "peers": int(a.peers),
        "duration": float(a.duration), "hostile": s.hostile, "mix": a.mix, "set": a.set,
        "playout": s.swarm_config().playout_delay,
        "offload": o["offload_ratio"], "continuity": o["continuity"],
        "p50": o["latency_ms"]["p50"], "p95": o["latency_ms"]["p95"],
        "startup_p95": o["startup_ms"].get("p95"), "duplicate_ratio": o.get("duplicate_ratio"),
        "origin_requests": o.get("origin_requests"), "wall_s": o.get("wall_s"),
        "tail_ms": round(tail_s * 1000, 1),
        "by_class": {c: {"share": round(len(v) / n_all, 4), "p50": _pct(v, 50), "p95": _pct(v, 95)}
                     for c, v in sorted(by_cls.items())},
        "tail_direct": {c: round(v / nt, 4) for c, v in sorted(tail_direct.items())},
        "tail_root": {c: round(v / nt, 4) for c, v in sorted(tail_root.items())},
        "tail_root_depth": {str(d): round(v / nt, 4) for d, v in sorted(tail_depth.items())},
        "hostile_summary": {kk: o["hostile"][kk] for kk in ("modes", "banned_by_honest",
                                                            "idle_closed_by_honest",
                                                            "honest_banned_honest")}
        if "hostile" in o else None,
        "guard": judged | dict(pairs)
        | ({kk: o["hostile"]["sent"].get(kk, 0) for kk in ("requests_sunk", "answers_late")}
           if "hostile" in o else {}),
        "repair_trace": repair_trace if a.trace else None,
        "load": [load0, _load()],
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
