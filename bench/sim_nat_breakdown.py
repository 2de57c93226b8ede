"""What the NATs cost in one simulation: prints JSON.

Runs ``oasis sim SCENARIO --peers N --duration S --playout P --seed K --nat SHARE
--baselines none`` in this process and wraps the simulator's interpreted executor
(``oasis.sim.execute``'s table for ``OasisSim``: ``Deliver``), as
``bench/sim_origin_breakdown.py`` does, so the run is the CLI's (same figures). It reports,
per NAT kind of the viewer (public / eim / symmetric):

* viewers, deliveries after the join, the origin's share of them, and the share of all
  origin deliveries;
* origin deliveries with no parent on the substream, and by the parent's kind;
* how long after its join a viewer's swarm first sent to a neighbour and its first chunk pushed by
  a peer (p50 / p90 / p99), and the share that never had one;
* the trees at the end: depth per kind, and the children each kind of parent carries, by
  the child's kind (are public peers' slots spent on NATed children an EIM peer could take);
* neighbours per kind at the end, the punch counters and a few swarm counters (parent switches,
  ``leaf_yield``'s moves, a relay's early fetches) summed per kind.
* where the missed chunks are (``missed_by``: viewers, due, missed before the first frame and
  while playing, per NAT kind, access, start path, startup, first neighbour, join in the ramp or
  later, and the viewer's state at its first origin start), the worst 25 viewers, and the chunks
  started viewers gave up after their join (``skips_after_join``).

    python bench/sim_nat_breakdown.py scenarios/mobile-churn-10k.toml --seed 1 --nat 0.7 \\
        [--set key=value ...] [--nat-set key=value ...]

``--set`` overrides a ``[protocol]`` key; ``--nat-set`` a :class:`oasis.core.nat.NatConfig`
field and ``--policy-set`` a :class:`oasis.core.peer.PolicyConfig` field for every node (a
variant to measure before it becomes a default; the simulator sets ``target_neighbours`` and
``max_neighbours`` itself, from the scenario: ``--scenario-set max_neighbours=28``).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import json
import tomllib
from typing import Any

import numpy as np

from oasis.core import dialplan, peer
from oasis.core import nat as natmod
from oasis.core import swarm as sw
from oasis.sim import cli, execute, oasis_run, population
from oasis.sim.netmodel import World

peer_config = peer.PolicyConfig
KINDS = {1: "public", 2: "eim", 3: "symmetric"}


def _pct(values: list[float]) -> list[float]:
    if not values:
        return []
    return [round(float(x), 3) for x in np.percentile(values, [50, 90, 99])]


def _toml(kv: str) -> tuple[str, Any]:
    k, v = kv.split("=", 1)
    return k, tomllib.loads(f"x = {v}")["x"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--peers", default="1000")
    ap.add_argument("--duration", default="40")
    ap.add_argument("--playout", default="0.5")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--nat", default="0.7")
    ap.add_argument("--set", action="append", default=[], help="a [protocol] key=value (TOML value)")
    ap.add_argument("--nat-set", action="append", default=[], help="a NatConfig key=value (TOML value)")
    ap.add_argument("--policy-set", action="append", default=[], help="a PolicyConfig key=value (TOML value)")
    ap.add_argument("--scenario-set", action="append", default=[],
                    help="a Scenario field key=value (TOML value), e.g. max_neighbours=28")
    ap.add_argument("--trace-start", action="store_true",
                    help="trace each viewer's dials until its first link (reads only)")
    ap.add_argument("--trace-deep", type=int, default=0,
                    help="trace the episodes at this depth or deeper (0: off)")
    a = ap.parse_args()
    TRACE = a.trace_deep > 0
    DEEP = a.trace_deep
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    s = cli.scenario_from(p.parse_args([a.scenario, "--peers", a.peers, "--duration", a.duration,
                                        "--playout", a.playout, "--seed", a.seed, "--nat", a.nat,
                                        "--baselines", "none"]))
    scen = dict(_toml(kv) for kv in a.scenario_set)
    if scen:
        s = dataclasses.replace(s, **scen)
    over = dict(_toml(kv) for kv in a.set)
    if over:
        s = dataclasses.replace(s, protocol={**s.protocol, **over})
    nat_over = dict(_toml(kv) for kv in a.nat_set)
    if nat_over:  # every PeerPolicy builds its NatConfig() from oasis.core.peer's name
        peer.NatConfig = functools.partial(natmod.NatConfig, **nat_over)  # type: ignore[misc,assignment]
    pol_over = dict(_toml(kv) for kv in a.policy_set)
    if pol_over:  # the simulator builds pp.PolicyConfig(...) per node
        peer.PolicyConfig = functools.partial(peer_config, **pol_over)  # type: ignore[misc,assignment]
    k = s.swarm_config().substreams
    table = execute._table(oasis_run.OasisSim)
    deliver = table[sw.Deliver]
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    origin_parent: collections.Counter[str] = collections.Counter()
    first_push: dict[int, float] = {}
    #: origin deliveries by (viewer kind, why: a relay's early fetch / the viewer's own late
    #: fallback / not asked by a fetch we saw, depth of the viewer on that substream)
    origin_why: collections.Counter[str] = collections.Counter()
    origin_depth: collections.Counter[str] = collections.Counter()
    asked_at: dict[tuple[int, int], float] = {}

    # ``--trace-deep``: the deep episodes (a viewer's substream at depth >= DEEP, seen at each
    # delivery on it): when they start, after what, how long they last, the ancestors' kinds,
    # and whether a shallower neighbour with a free slot was at hand (reads only; no RNG)
    deep_since: dict[tuple[int, int], float] = {}
    seen: dict[tuple[int, int], bytes | None] = {}
    episodes: collections.Counter[str] = collections.Counter()
    ep_dur: dict[str, list[float]] = collections.defaultdict(list)
    ep_of: dict[tuple[int, int], str] = {}
    deep_origin: collections.Counter[str] = collections.Counter()

    by_tag: dict[bytes, Any] = {}

    def _kind_of(net: Any, tag: bytes) -> str:
        if tag not in by_tag:  # (paths hold tags, not keys; newcomers join all along)
            for n_ in net.every:
                by_tag[n_.swarm.tree.tag] = n_
            by_tag.setdefault(tag, None)
        n = by_tag.get(tag)
        if n is None or n.is_source:
            return "B"
        return {2: "E", 3: "S"}.get(n.net.nat, "P")

    def _run_bucket(t: float) -> str:
        return "ramp<10s" if t < 10 else ("10-20s" if t < 20 else ("20-30s" if t < 30 else "30-40s"))

    def _trace(net: Any, node: Any, j: int, origin: bool) -> None:
        tr = node.swarm.tree
        par = tr.parents[j]
        d = len(tr.paths[j]) - 1 if par is not None else -1
        key = (node.idx, j)
        now = net.now
        prev = seen.get(key, b"?")
        seen[key] = par
        kind = KINDS.get(node.net.nat, "public")
        if d >= DEEP:
            if key not in deep_since:
                deep_since[key] = now
                if prev == b"?":
                    cause = "first_parent"
                elif prev is None:
                    cause = "after_none"
                elif prev != par:
                    old = net.by_key.get(prev) if prev else None
                    cause = "parent_left" if old is None or not old.alive else "own_switch"
                else:
                    cause = "ancestor_moved"
                anc = tr.paths[j][1:-1]
                kinds = [_kind_of(net, a) for a in anc]
                shallow_free = shallow_any = 0
                for st in node.swarm.peers.values():
                    msg = st.status
                    if msg is None or j >= len(msg.paths) or not msg.paths[j] or tr.tag in msg.paths[j]:
                        continue
                    if len(msg.paths[j]) - 1 <= d - 2:  # through it we would be at least a level up
                        shallow_any += 1
                        if msg.slots > 0:
                            shallow_free += 1
                tag = f"{kind}:{cause}"
                ep_of[key] = tag
                episodes[f"start:{tag}"] += 1
                episodes[f"start_at:{kind}:{_run_bucket(now - oasis_run.T0)}"] += 1
                episodes[f"since_join:{kind}:{'<5s' if now - node.rec.joined_at < 5 else '>=5s'}"] += 1
                episodes[f"anc_nat:{kind}:{sum(1 for x in kinds if x in 'ES')}of{len(kinds)}"] += 1
                episodes[f"anc_sym:{kind}:{sum(1 for x in kinds if x == 'S')}"] += 1
                episodes[f"depth1:{kinds[0] if kinds else '-'}"] += 1
                episodes[f"shallower_free:{kind}:{min(shallow_free, 3)}"] += 1
                episodes[f"shallower_any:{kind}:{min(shallow_any, 3)}"] += 1
                episodes[f"neighbours:{kind}:{min(len(node.swarm.peers) // 5 * 5, 25)}"] += 1
                episodes[f"relay:{kind}:{'yes' if any(st.children_mask >> j & 1 for st in node.swarm.peers.values()) else 'no'}"] += 1
            if origin:
                since = now - deep_since[key]
                deep_origin[f"run:{_run_bucket(now - oasis_run.T0)}"] += 1
                deep_origin[f"in_episode:{'<1s' if since < 1 else ('1-2s' if since < 2 else ('2-5s' if since < 5 else '>=5s'))}"] += 1
                deep_origin[f"cause:{ep_of.get(key, '?')}"] += 1
        elif key in deep_since:
            ep_dur[ep_of.pop(key, "?")].append(now - deep_since.pop(key))

    def on_deliver(net: Any, node: Any, act: sw.Deliver) -> Any:
        rec = node.rec
        c = act.chunk
        if TRACE and rec is not None and not node.mode:
            _trace(net, node, c.seq % k, act.source == sw.SOURCE_ORIGIN and c.time_us / 1e6 >= rec.joined_at)
        if rec is not None and not node.mode and c.time_us / 1e6 >= rec.joined_at:
            kind = KINDS.get(node.net.nat, "public")
            cnt = by_kind[kind]
            cnt["deliveries"] += 1
            if act.source == sw.SOURCE_ORIGIN:
                cnt["origin"] += 1
                tr = node.swarm.tree
                j = c.seq % k
                par = tr.parents[j]
                at = asked_at.get((node.idx, c.seq))
                why = "other" if at is None else ("early" if at < fallback_at else "late")
                kids = sum(1 for st in node.swarm.peers.values() if st.children_mask >> j & 1)
                origin_why[f"{kind}:{why}:{'relay' if kids else 'leaf'}"] += 1
                origin_depth[f"{kind}:{min(len(tr.paths[j]) - 1, 7) if par is not None else 'none'}"] += 1
                if par is None:
                    origin_parent[f"{kind}<-none"] += 1
                else:
                    pn = net.by_key.get(par)
                    pk = "source" if pn is None or pn.is_source else KINDS.get(pn.net.nat, "public")
                    origin_parent[f"{kind}<-{pk}"] += 1
            elif node.idx not in first_push:
                first_push[node.idx] = act.at - rec.joined_at
        unstarted = rec is not None and rec.started_at is None
        out_ = deliver(net, node, act)
        if unstarted and rec.started_at is not None:
            start_src[node.idx] = act.source
        return out_

    start_src: dict[int, str] = {}
    table[sw.Deliver] = on_deliver
    # first neighbour: the first control message its swarm sends (to a peer it added)
    first_nb: dict[int, float] = {}
    send = table[sw.Send]

    def on_send(net: Any, node: Any, act: sw.Send) -> Any:
        if node.idx not in first_nb and node.rec is not None:
            first_nb[node.idx] = net.now - node.rec.joined_at
        return send(net, node, act)

    table[sw.Send] = on_send
    # origin fetches asked before the viewer's own fallback: a relay's early fetch
    fetch = table[sw.FetchOrigin]
    early: collections.Counter[str] = collections.Counter()
    fallback_at = s.swarm_config().playout_delay - s.swarm_config().origin_margin - 0.02

    origin_start_state: collections.Counter[str] = collections.Counter()

    #: node idx -> its state at its first origin start: (s since join, swarm peers, peers
    #: started, policy neighbours, dials under way, peers whose STATUS claims a chunk)
    first_start: dict[int, tuple[float, int, int, int, int, int]] = {}

    def on_fetch(net: Any, node: Any, act: sw.FetchOrigin) -> Any:
        if act.seq == sw.ORIGIN_LATEST and node.rec is not None and node.idx not in first_start:
            swm_ = node.swarm
            peers_ = list(swm_.peers.values())
            first_start[node.idx] = (
                net.now - node.rec.joined_at, len(peers_),
                sum(1 for st in peers_ if (o := net.by_key.get(st.key)) is not None
                    and o.swarm.start_seq is not None),
                node.policy.neighbour_count(), len(node.policy.dials.dialling),
                sum(1 for st in peers_ if st.status is not None and st.status.latest > 0))
        if a.trace_start and act.seq == sw.ORIGIN_LATEST and node.rec is not None \
                and node.swarm.counters.origin_starts == 1:
            # a viewer's first origin start: what it had then
            swm = node.swarm
            kind = KINDS.get(node.net.nat, "public")
            peers = list(swm.peers.values())
            claim = sum(1 for st in peers if st.status is not None and st.status.latest > 0)
            started = 0
            for st in peers:
                other = net.by_key.get(st.key)
                if other is not None and other.swarm.start_seq is not None:
                    started += 1
            o = origin_start_state
            o[f"{kind}:viewers"] += 1
            o[f"{kind}:swarm_peers:{min(len(peers), 4)}"] += 1
            o[f"{kind}:peers_claiming:{min(claim, 3)}"] += 1
            o[f"{kind}:peers_started:{min(started, 3)}"] += 1
            o[f"{kind}:policy_neighbours:{min(node.policy.neighbour_count(), 4)}"] += 1
            o[f"{kind}:probes_in_flight:{min(len(swm.claims.probes), 3)}"] += 1
            o[f"{kind}:dialling:{min(len(node.policy.dials.dialling), 8)}"] += 1
            o[f"{kind}:hinted:{int(swm.tree.hinted)}"] += 1
            o[f"{kind}:since_join_0.1s:{int((net.now - node.rec.joined_at) * 10)}"] += 1
        if node.rec is not None and 0 <= act.seq < len(net.produced_t):
            kind = KINDS.get(node.net.nat, "public")
            asked_at.setdefault((node.idx, act.seq), net.now - net.produced_t[act.seq])
            early[kind + ("_early" if net.now - net.produced_t[act.seq] < fallback_at else "_late")] += 1
        return fetch(net, node, act)

    table[sw.FetchOrigin] = on_fetch
    #: chunks given up after the join by a started viewer, by (kind, access, origin asked
    #: for it: no / early / late, parent on the substream: none / some, s since the first frame)
    skips: collections.Counter[str] = collections.Counter()
    skip_ = table[sw.Skip]

    def on_skip(net: Any, node: Any, act: sw.Skip) -> Any:
        rec = node.rec
        if rec is not None and not node.mode and 0 <= act.seq < len(net.produced_t) \
                and net.produced_t[act.seq] >= rec.joined_at:
            kind = KINDS.get(node.net.nat, "public")
            at = asked_at.get((node.idx, act.seq))
            asked = "no" if at is None else ("early" if at < fallback_at else "late")
            par = node.swarm.tree.parents[act.seq % k] is not None
            since = net.now - rec.started_at if rec.started_at is not None else -1.0
            sb = "unstarted" if since < 0 else ("<2s" if since < 2 else ">=2s")
            skips[f"{kind}:{node.net.access}"] += 1
            skips[f"asked:{asked}"] += 1
            skips[f"parent:{'yes' if par else 'none'}"] += 1
            skips[f"since_frame:{sb}"] += 1
            skips[f"since_join:{_since(net.now - rec.joined_at)}"] += 1
        return skip_(net, node, act)

    def _since(x: float) -> str:
        return "<2s" if x < 2 else ("2-5s" if x < 5 else ">=5s")

    table[sw.Skip] = on_skip
    # ``--trace-start``: per policy (by its key), its dials until its first link, and the first
    # link's time and direction (wraps the pure-Python policy's class: reads only)
    dial_log: dict[bytes, dict[str, Any]] = {}
    if a.trace_start:
        orig_plan = dialplan.DialPlan.plan
        orig_link_up = peer.PeerPolicy.link_up
        orig_failed = peer.PeerPolicy.dial_failed

        def plan_(self: Any, now: float, *args: Any, **kw: Any) -> Any:
            out = orig_plan(self, now, *args, **kw)
            e = dial_log.setdefault(self.self_key, {"first_at": now, "dials": [], "failed": 0, "link": None})
            if e["link"] is None:
                e["dials"].extend(now - e["first_at"] for _ in out)
            return out

        def link_up_(self: Any, link: Any, peer_: bytes, *, dialled: bool, now: float, **kw: Any) -> Any:
            e = dial_log.get(self.self_key)
            if e is not None and e["link"] is None:
                e["link"] = (now - e["first_at"], dialled)
            return orig_link_up(self, link, peer_, dialled=dialled, now=now, **kw)

        def failed_(self: Any, peer_: bytes, now: float) -> Any:
            e = dial_log.get(self.self_key)
            if e is not None and e["link"] is None:
                e["failed"] += 1
            return orig_failed(self, peer_, now)

        dialplan.DialPlan.plan = plan_  # type: ignore[method-assign]
        peer.PeerPolicy.link_up = link_up_  # type: ignore[method-assign]
        peer.PeerPolicy.dial_failed = failed_  # type: ignore[method-assign]
    world = World()
    bnet, viewers = population.build(s, world, int(a.seed))
    res, sim = oasis_run.run_oasis(s, world, bnet, viewers, int(a.seed))
    total_origin = sum(c["origin"] for c in by_kind.values())
    viewers_by_kind: dict[str, list[Any]] = collections.defaultdict(list)
    for node in sim.every:
        if node.mode or node.is_source or node.rec is None:
            continue
        viewers_by_kind[KINDS.get(node.net.nat, "public")].append(node)
    per_kind: dict[str, Any] = {}
    for kind, nodes in sorted(viewers_by_kind.items()):
        c = by_kind[kind]
        fp = [first_push[n.idx] for n in nodes if n.idx in first_push]
        fn = [first_nb[n.idx] for n in nodes if n.idx in first_nb]
        alive = [n for n in nodes if n.alive]
        depth: collections.Counter[int] = collections.Counter()
        for n in alive:
            t = n.swarm.tree
            for j in range(k):
                depth[len(t.paths[j]) - 1 if t.parents[j] is not None else -1] += 1
        nd = sum(depth.values()) or 1
        ctr: collections.Counter[str] = collections.Counter()
        for n in nodes:
            for f, v in dataclasses.asdict(n.policy.nat.counters).items():
                ctr[f] += v
        up = [(n.swarm.upload.counters.released_bytes,
               n.swarm.upload.rate * (min(n.died, sim.now) - n.born)) for n in nodes]
        sc: collections.Counter[str] = collections.Counter()
        for n in nodes:
            c_ = n.swarm.counters
            sc["parent_switches"] += c_.parent_switches
            sc["leaf_yields"] += c_.leaf_yields
            sc["deep_looks"] += c_.deep_looks
            sc["origin_early"] += c_.origin_early
            sc["origin_starts"] += c_.origin_starts
            sc["viewers_origin_started"] += int(c_.origin_starts > 0)
        per_kind[kind] = {
            "swarm_counters": dict(sc),
            "upload_used": round(sum(u[0] for u in up) / max(sum(u[1] for u in up), 1.0), 3),
            "fetches_early_late": [early[kind + "_early"], early[kind + "_late"]],
            "viewers": len(nodes),
            "deliveries": c["deliveries"],
            "origin_share": round(c["origin"] / max(c["deliveries"], 1), 4),
            "share_of_all_origin": round(c["origin"] / max(total_origin, 1), 4),
            "first_neighbour_s_p50_p90_p99": _pct(fn),
            "first_push_s_p50_p90_p99": _pct(fp),
            "never_pushed": round(1 - len(fp) / max(len(nodes), 1), 4),
            "depth_at_end": {str(d): round(v / nd, 3) for d, v in sorted(depth.items())},
            "neighbours_at_end_mean": round(float(np.mean([n.policy.neighbour_count() for n in alive]))
                                            if alive else 0.0, 2),
            "learnt": dict(collections.Counter(n.policy.mapping.kind.name.lower() for n in nodes)),
            "counters": {f: v for f, v in ctr.items() if v and f.startswith(("punch", "intro"))},
        }
    # continuity from the join per kind: the chunks due (made after the join, deadline passed
    # while the viewer was there, as records.summarize counts them) that were missed, split
    # at the viewer's first frame (before it: its start; after: playing), and startup p50/p90
    produced = np.array(sim.produced_t)
    end_t = sim.now - 1.0
    pd = s.swarm_config().playout_delay
    missed: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    #: group -> value -> [viewers, due, missed before the first frame, missed playing]
    attrib: dict[str, dict[str, list[int]]] = collections.defaultdict(
        lambda: collections.defaultdict(lambda: [0, 0, 0, 0]))
    worst: list[tuple[Any, ...]] = []

    def r_access(node: Any) -> str:
        return str(node.net.access)
    starts: dict[str, list[float]] = collections.defaultdict(list)
    for node in sim.every:
        if node.mode or node.is_source or node.rec is None:
            continue
        r = node.rec
        kind = KINDS.get(node.net.nat, "public")
        lo = int(np.searchsorted(produced, r.joined_at, side="left"))
        hi = int(np.searchsorted(produced, min(end_t, r.left_at) - pd, side="right"))
        if hi <= lo:
            continue
        mid = hi if r.started_at is None else int(np.searchsorted(produced, r.started_at, side="left"))
        mid = min(max(mid, lo), hi)
        if r.started_at is not None:
            starts[kind].append(r.started_at - r.joined_at)
        got = np.frombuffer(r.on_time, dtype=np.int32) if len(r.on_time) else np.zeros(0, np.int32)
        ok_pre = int(np.count_nonzero((got >= lo) & (got < mid)))
        ok_post = int(np.count_nonzero((got >= mid) & (got < hi)))
        m = missed[kind]
        m["due"] += hi - lo
        m["missed_before_frame"] += (mid - lo) - ok_pre
        m["missed_playing"] += (hi - mid) - ok_post
        m["viewers_missing_start"] += int((mid - lo) - ok_pre > 0)
        miss_pre, miss_post = (mid - lo) - ok_pre, (hi - mid) - ok_post
        fs = first_start.get(node.idx)
        su = None if r.started_at is None else r.started_at - r.joined_at
        src = start_src.get(node.idx, "?")
        path = "never_started" if su is None else (
            f"{src}" if fs is None else f"{src}_after_origin_ask" + ("_retried" if node.swarm.counters.origin_starts > 1 else ""))
        sub = "never" if su is None else ("<0.5" if su < 0.5 else "0.5-0.8" if su < 0.8 else
                                          "0.8-1.0" if su < 1.0 else "1.0-1.2" if su < 1.2 else
                                          "1.2-2" if su < 2 else ">=2")
        fnb = first_nb.get(node.idx)
        fnbb = "never" if fnb is None else ("<0.3" if fnb < 0.3 else "0.3-0.6" if fnb < 0.6 else
                                             "0.6-1.0" if fnb < 1.0 else ">=1.0")
        groups = {
            "kind": kind, "access": r_access(node), "kind_access": f"{kind}:{r_access(node)}",
            "start_path": path, "startup_s": sub, "first_neighbour_s": fnbb,
            "joined": "ramp<10s" if r.joined_at - oasis_run.T0 < 10 else "later",
            "at_origin_start_swarm_peers": "-" if fs is None else str(min(fs[1], 3)),
            "at_origin_start_peers_started": "-" if fs is None else str(min(fs[2], 3)),
            "at_origin_start_neighbours": "-" if fs is None else str(min(fs[3], 3)),
            "at_origin_start_claiming": "-" if fs is None else str(min(fs[5], 3)),
            "at_origin_start_dialling": "-" if fs is None else str(min(fs[4] // 4 * 4, 12)),
            "first_neighbour_s x start_path": f"{fnbb} x {path}",
            "first_neighbour_s x startup_s": f"{fnbb} x {sub}",
            "kind x start_path": f"{kind} x {path}",
            "missed_n": "0" if miss_pre + miss_post == 0 else ("1-10" if miss_pre + miss_post <= 10 else
                        "11-20" if miss_pre + miss_post <= 20 else "21-40" if miss_pre + miss_post <= 40 else ">40"),
        }
        for g, v in groups.items():
            row = attrib[g][v]
            row[0] += 1
            row[1] += hi - lo
            row[2] += miss_pre
            row[3] += miss_post
        worst.append((miss_pre + miss_post, node.idx, kind, r_access(node), round(r.joined_at - oasis_run.T0, 2),
                      None if su is None else round(su, 3), miss_pre, miss_post, path,
                      None if fnb is None else round(fnb, 3), fs and [round(fs[0], 3), *fs[1:]],
                      node.swarm.counters.origin_starts))
    continuity_by_kind = {
        kind: {**dict(m), "continuity": round(1 - (m["missed_before_frame"] + m["missed_playing"]) / max(m["due"], 1), 5),
               "startup_s_p50_p90_p99": _pct(starts[kind])}
        for kind, m in sorted(missed.items())}
    # children by (parent kind, child kind) at the end, per substream slot
    slots: collections.Counter[str] = collections.Counter()
    parents_of_kind: collections.Counter[str] = collections.Counter()
    for node in sim.every:
        if node.mode or not node.alive:
            continue
        pk = "source" if node.is_source else KINDS.get(node.net.nat, "public")
        parents_of_kind[pk] += 1
        for key, st in node.swarm.peers.items():
            m = st.children_mask
            if not m:
                continue
            ch = sim.by_key.get(key)
            ck = KINDS.get(ch.net.nat, "public") if ch is not None else "?"
            slots[f"{pk}->{ck}"] += bin(m).count("1")
    out = {
        "scenario": s.name, "seed": int(a.seed), "nat": a.nat, "overrides": over,
        "nat_overrides": dict(_toml(kv) for kv in a.nat_set),
        "policy_overrides": dict(_toml(kv) for kv in a.policy_set),
        "scenario_overrides": scen,
        "result": {key: v for key, v in res.items() if not isinstance(v, (dict, list)) or key in ("latency_ms", "startup_ms", "policy")},
        "nat_result": res.get("nat"),
        "origin_deliveries": total_origin,
        "per_kind": per_kind,
        "origin_by_parent": {kk: round(v / max(total_origin, 1), 4) for kk, v in sorted(origin_parent.items())},
        "child_slots_at_end": dict(sorted(slots.items())),
        "origin_by_kind_why": dict(sorted(origin_why.items())),
        "origin_by_kind_depth": dict(sorted(origin_depth.items())),
        "alive_by_kind_at_end": dict(parents_of_kind),
        "continuity_by_kind": continuity_by_kind,
        # where the misses are: per group, [viewers, due, missed before frame, missed playing]
        "missed_by": {g: dict(sorted((v, list(row)) for v, row in d.items())) for g, d in sorted(attrib.items())},
        "worst_viewers": [list(w) for w in sorted(worst, reverse=True)[:25]],
        "skips_after_join": dict(sorted(skips.items())),
    }
    if TRACE:
        for key, t0 in deep_since.items():  # still deep at the end (cut by the run's end)
            ep_dur[ep_of.get(key, "?") + ":open"].append(sim.now - t0)
        out["deep_trace"] = {
            "depth": DEEP,
            "episodes": dict(sorted(episodes.items())),
            "duration_s_n_p50_p90_p99_sum": {kk: [len(v)] + _pct(v) + [round(float(sum(v)), 1)]
                                             for kk, v in sorted(ep_dur.items())},
            "origin_deliveries_deep": dict(sorted(deep_origin.items())),
        }
    if a.trace_start:
        st_: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        first_link: dict[str, list[float]] = collections.defaultdict(list)
        for node in sim.every:
            if node.mode or node.is_source or node.rec is None:
                continue
            kind = KINDS.get(node.net.nat, "public")
            e = dial_log.get(node.key)
            c = st_[kind]
            c["viewers"] += 1
            if e is None:
                c["never_planned"] += 1
                continue
            first_round = sum(1 for t in e["dials"] if t == 0.0)
            c["first_round_dials"] += first_round
            later = sum(1 for t in e["dials"] if t > 0.0)
            c["dials_before_link"] += len(e["dials"])
            c["failed_before_link"] += e["failed"]
            if e["link"] is None:
                c["no_link"] += 1
                continue
            at, dialled = e["link"]
            first_link[kind].append(at)
            c["first_link_dialled" if dialled else "first_link_inbound"] += 1
            c["first_link_after_0.6s"] += int(at > 0.6)
            c["later_dials_if_late"] += later if at > 0.6 else 0
        out["start_trace"] = {k: {**dict(v), "first_link_s_p50_p90_p99": _pct(first_link[k])}
                              for k, v in sorted(st_.items())}
        out["origin_start_state"] = dict(sorted(origin_start_state.items()))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
