"""A lean discrete-event driver of the DHT core (``oasis.core.dht``) on the world model.

The swarm simulator (``oasis_run``) carries media; a DHT-only run at 100,000 nodes needs
none of that, so this driver runs just the real :class:`~oasis.core.dht.Dht` objects:

* nodes are placed in countries and access kinds by ``netmodel`` (``World``,
  ``sample_peer``); a message takes ``one_way_s`` between the two peers, and the first
  message to a peer without a link takes 3 round trips more (``rtt_s``: QUIC Retry, the
  QUIC handshake, then HELLO/AUTH; our dialler must be authenticated before it sends).
  Each node keeps its 64 most recently used links (LRU). CPU time, bandwidth and loss are
  not modelled: DHT messages are small.
* every message is encoded and decoded by ``oasis.core.wire`` on the way;
* a ``Send`` is delivered to the node *at that address*; if its key is not the one the
  sender pinned, the sender gets ``send_failed`` after the handshake's round trips (the
  WRONG_PEER close); a dead address swallows it (the request times out);
* churn: nodes leave silently (no goodbye), new ones join by bootstrapping from a few live
  nodes' addresses and a self-lookup, as a stream link would have them do;
* adversaries (``adversarial``) join and keep their tables like everyone, answer PING, and
  answer every FIND_NODE / GET_PROVIDERS with the live adversaries nearest the target that
  are nearer than themselves (they obey the answer rule so they are not scored) and never
  any record: they collude to eclipse the stream keys.

Only providers hold a real Ed25519 identity (they sign records); the others' keys are
random 32-byte strings (nothing verifies them here: links are modelled, not run), which
keeps a 100,000-node run's set-up short. Signatures are checked for real, memoised per
record (``MemoVerify``), as ``oasis_run.MemoVerifier`` does for chunks.
"""

from __future__ import annotations

import heapq
import random
import time
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from oasis.core import dht as dh
from oasis.core import wire
from oasis.core.dhtrecord import node_id, stream_key
from oasis.core.identity import Identity, verify
from oasis.core.stream import StreamId

from .netmodel import PeerNet, World, one_way_s, rtt_s, sample_peer
from .scenario import DEFAULT_MIX

T0 = 1_800_000_000.0  #: virtual wall clock at the start (the DHT's ``now`` is wall-clock)
LINK_SETUP_RTTS = 3.0
MAX_LINKS = 64
_DELIVER, _TIMER, _FAILED, _CALL = 0, 1, 2, 3


class MemoVerify:
    """Ed25519 verification memoised by (key, signature, data): every storer and reader of
    one record checks the same bytes."""

    def __init__(self) -> None:
        self.memo: dict[tuple[bytes, bytes], bool] = {}

    def __call__(self, key: bytes, sig: bytes, data: bytes) -> bool:
        k = (key + sig, data)
        ok = self.memo.get(k)
        if ok is None:
            ok = self.memo[k] = verify(key, sig, data)
        return ok


@dataclass(slots=True)
class SimDhtNode:
    idx: int
    key: bytes
    host: str
    net: PeerNet
    dht: dh.Dht
    adversary: bool = False
    alive: bool = True
    timer_at: float = float("inf")
    links: OrderedDict[int, None] = field(default_factory=OrderedDict)


class DhtSim:
    PORT = 4433

    def __init__(self, *, seed: int = 1, config: dh.DhtConfig | None = None,
                 adversarial: float = 0.0, mix: dict[str, float] | None = None) -> None:
        self.rng = random.Random(f"dht/{seed}")
        self.seed = seed
        self.world = World()
        self.rtt = self.world.rtt_ms
        self.config = config or dh.DhtConfig()
        self.adversarial = adversarial
        self.mix = mix or dict(DEFAULT_MIX)
        self.verify = MemoVerify()
        self.nodes: list[SimDhtNode] = []
        self.by_key: dict[bytes, int] = {}
        self.by_host: dict[str, int] = {}
        self.live: list[int] = []  #: live node indices (swap-remove)
        self._live_pos: dict[int, int] = {}
        self.adv_ids: list[tuple[int, int]] = []  #: sorted (node id, idx) of live adversaries
        self.heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self.now = T0
        self.events = 0
        self.messages = 0
        self.done: list[tuple[int, dh.LookupDone]] = []  #: (node idx, result)
        self.on_done: Callable[[SimDhtNode, dh.LookupDone], None] | None = None

    # ---- population ------------------------------------------------------------
    def _host(self) -> str:
        while True:
            h = (f"{self.rng.randint(11, 126)}.{self.rng.randint(0, 255)}."
                 f"{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}")
            if h not in self.by_host:
                return h

    def add_node(self, *, identity: Identity | None = None, adversary: bool = False) -> SimDhtNode:
        idx = len(self.nodes)
        key = identity.public if identity is not None else self.rng.randbytes(32)
        d = dh.Dht(key, identity=identity, config=self.config,
                   rng=random.Random(f"dht/{self.seed}/{idx}"), now=self.now, verify=self.verify)
        n = SimDhtNode(idx, key, self._host(), sample_peer(self.world, self.rng, self.mix), d,
                       adversary)
        self.nodes.append(n)
        self.by_key[key] = idx
        self.by_host[n.host] = idx
        self._live_pos[idx] = len(self.live)
        self.live.append(idx)
        if adversary:
            insort(self.adv_ids, (node_id(key), idx))
        return n

    def join(self, n: SimDhtNode, boot: int = 3) -> None:
        """Bootstrap ``n`` from ``boot`` random live nodes (a stream link's addresses)."""
        others = [i for i in self.rng.sample(self.live, min(len(self.live), boot + 1))
                  if i != n.idx][:boot]
        n.dht.bootstrap([(self.nodes[i].host, self.PORT) for i in others], self.now)
        self.run(n)

    def prefill(self, idxs: list[int]) -> int:
        """Oracle tables for ``idxs`` (a shortcut for very large runs, instead of their
        joins): each node's bucket ``b`` gets up to ``k`` contacts drawn at random among
        the nodes of ``idxs`` whose ids share exactly ``b`` leading bits with its own --
        what a long-running table holds -- through ``RoutingTable.seen`` (so the diversity
        limits apply), and no refresh lookup is due for ``refresh_interval`` (the oracle
        stands for the join's lookup). Returns the contacts added."""
        ids = sorted((node_id(self.nodes[i].key), i) for i in idxs)
        nids = [x for x, _ in ids]
        k = self.config.k
        added = 0
        for i in idxs:
            n = self.nodes[i]
            me = node_id(n.key)
            table = n.dht.table
            for b in range(256):
                shift = 255 - b
                lo = ((me >> shift) ^ 1) << shift
                first, last = bisect_left(nids, lo), bisect_left(nids, lo + (1 << shift))
                if first == last:
                    if b > 24:
                        break
                    continue
                picks = range(first, last)
                if last - first > 2 * k:
                    picks = self.rng.sample(picks, 2 * k)  # type: ignore[assignment]
                for j in picks:
                    m = self.nodes[ids[j][1]]
                    table.seen(m.key, m.host, self.PORT, self.now)
            n.dht.mark_fresh(self.now)  # the oracle stands for its join (a lookup)
            added += len(table)
        return added

    def leave(self, n: SimDhtNode) -> None:
        if not n.alive:
            return
        n.alive = False
        pos = self._live_pos.pop(n.idx)
        last = self.live.pop()
        if last != n.idx:
            self.live[pos] = last
            self._live_pos[last] = pos
        if n.adversary:
            i = bisect_left(self.adv_ids, (node_id(n.key), n.idx))
            del self.adv_ids[i]

    def random_live(self, honest: bool = True) -> SimDhtNode:
        while True:
            n = self.nodes[self.rng.choice(self.live)]
            if not (honest and n.adversary):
                return n

    # ---- engine ----------------------------------------------------------------
    def at(self, t: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (t, self._seq, kind, payload))

    def call_at(self, t: float, fn: Callable[[], None]) -> None:
        self.at(t, _CALL, fn)

    def run_until(self, stop: float) -> None:
        heap = self.heap
        nodes = self.nodes
        while heap and heap[0][0] <= stop:
            t, _, kind, payload = heapq.heappop(heap)
            self.now = t
            self.events += 1
            if kind == _DELIVER:
                src, dst, data = payload
                n = nodes[dst]
                if n.alive:
                    self._deliver(nodes[src], n, wire.decode_control(data))
            elif kind == _TIMER:
                n = nodes[payload]
                if n.alive and n.timer_at == t:
                    n.timer_at = float("inf")
                    n.dht.handle_timer(t)
                    self.run(n)
            elif kind == _FAILED:
                src, peer, host = payload
                n = nodes[src]
                if n.alive:
                    n.dht.send_failed(peer, host, self.PORT, t)
                    self.run(n)
            else:
                payload()
        self.now = max(self.now, stop)

    def _deliver(self, src: SimDhtNode, dst: SimDhtNode, msg: wire.Message) -> None:
        if dst.adversary and isinstance(msg, (wire.DhtFindNode, wire.DhtGetProviders)):
            target = msg.target if isinstance(msg, wire.DhtFindNode) else msg.key
            nodes = self._sybils(dst, int.from_bytes(target, "big"), src.key)
            reply: wire.Message
            if isinstance(msg, wire.DhtFindNode):
                reply = wire.DhtNodesMsg(qid=msg.qid, nodes=nodes)
            else:
                reply = wire.DhtProviders(qid=msg.qid, records=[], descriptor=b"", nodes=nodes)
            self._send(dst, dh.Send(src.key, src.host, self.PORT, reply))
            return
        dst.dht.on_message(src.key, src.host, self.PORT, msg, self.now)
        self.run(dst)

    def _sybils(self, n: SimDhtNode, target: int, asker: bytes) -> list[wire.DhtNode]:
        ids = self.adv_ids
        i = bisect_left(ids, (target, -1))
        limit = node_id(n.key) ^ target
        near = sorted((nid ^ target, j) for nid, j in ids[max(0, i - 48):i + 48])
        out = []
        for dist, j in near:
            if dist >= limit:
                break
            m = self.nodes[j]
            if m.key != asker:
                out.append(wire.DhtNode(key=m.key, host=m.host, port=self.PORT))
                if len(out) >= self.config.k:
                    break
        return out

    def run(self, n: SimDhtNode) -> None:
        """Execute ``n``'s DHT actions and arm its timer."""
        for a in n.dht.actions():
            if isinstance(a, dh.Send):
                self._send(n, a)
            else:
                self.done.append((n.idx, a))
                if self.on_done is not None:
                    self.on_done(n, a)
        t = n.dht.get_timer()
        if t is not None and t < n.timer_at:
            n.timer_at = t
            self.at(t, _TIMER, n.idx)

    def _send(self, src: SimDhtNode, a: dh.Send) -> None:
        self.messages += 1
        j = self.by_host.get(a.host)
        if j is None:
            return
        dst = self.nodes[j]
        if not dst.alive:
            return  # a dead address: the request times out
        rtt = rtt_s(self.rtt, src.net, dst.net)
        if j in src.links:
            src.links.move_to_end(j)
            delay = one_way_s(self.rtt, src.net, dst.net)
        else:
            if a.peer is not None and a.peer != dst.key:  # WRONG_PEER after the handshake
                self.at(self.now + 2 * rtt, _FAILED, (src.idx, a.peer, a.host))
                return
            delay = LINK_SETUP_RTTS * rtt + one_way_s(self.rtt, src.net, dst.net)
            for x, y in ((src, j), (dst, src.idx)):
                x.links[y] = None
                if len(x.links) > MAX_LINKS:
                    x.links.popitem(last=False)
        self.at(self.now + delay, _DELIVER, (src.idx, j, wire.encode(a.message)))


# ---- the benchmark scenario ----------------------------------------------------

def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_scenario(n: int, *, seed: int = 1, adversarial: float = 0.0, churn_per_min: float = 0.0,
                 join_s: float | None = None, streams: int = 20, providers: int = 10,
                 lookups: int = 500, node_lookups: int = 100, measure_s: float = 120.0,
                 settle_s: float = 60.0, config: dh.DhtConfig | None = None, prefill: int = 0,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Grow a network of ``n`` nodes by real joins, publish ``streams`` x ``providers``
    records, then run ``lookups`` provider lookups (and ``node_lookups`` FIND_NODE of
    random ids) from random honest nodes over ``measure_s`` seconds, with churn.
    ``prefill``: the first this many nodes get oracle tables (:meth:`DhtSim.prefill`)
    instead of joining; the rest join for real."""
    wall0 = time.monotonic()
    cpu0 = time.process_time()
    sim = DhtSim(seed=seed, config=config, adversarial=adversarial)
    rng = random.Random(f"dht-scenario/{seed}")
    join_s = join_s if join_s is not None else max(60.0, n / 20)
    n_adv = int(n * adversarial)
    adv_slots = set(rng.sample(range(8, n), n_adv)) if n_adv else set()
    joins: list[dh.LookupDone] = []

    def joined(_: SimDhtNode, d: dh.LookupDone) -> None:
        if d.kind == "join":
            joins.append(d)
    sim.on_done = joined
    # seeds: 8 nodes that know each other (or the prefilled population), then the rest
    # arrive uniformly over join_s
    first = max(8, prefill)
    if prefill:
        for i in range(first):
            sim.add_node(adversary=i in adv_slots)
        sim.prefill(list(range(first)))
        if progress:
            progress(f"prefilled {first} tables wall={time.monotonic() - wall0:.0f}s")
    else:
        for i in range(8):
            sim.join(sim.add_node()) if i else sim.add_node()
    def arrive(adversary: bool) -> Callable[[], None]:
        return lambda: sim.join(sim.add_node(adversary=adversary))

    for i in range(first, n):
        sim.call_at(T0 + join_s * (i - first) / max(1, n - first), arrive(i in adv_slots))
    step = max(1.0, join_s / 10)
    t = T0
    while t < T0 + join_s:
        t += step
        sim.run_until(t)
        if progress:
            progress(f"join t={t - T0:.0f}s nodes={len(sim.live)} events={sim.events} "
                     f"wall={time.monotonic() - wall0:.0f}s")
    sim.run_until(T0 + join_s + 30)
    join_wall = time.monotonic() - wall0

    # streams and their honest providers (nodes that joined like the rest)
    def publish(node: SimDhtNode, sid: StreamId) -> Callable[[], None]:
        def go() -> None:
            if node.alive:
                node.dht.provide(sid, [(node.host, DhtSim.PORT)], sim.now)
                sim.run(node)
        return go

    sids: list[StreamId] = []
    prov_keys: dict[bytes, set[bytes]] = {}
    for s in range(streams):
        owner = Identity.from_private_bytes(rng.randbytes(32))
        sid = StreamId(owner.public, f"s{s}")
        sids.append(sid)
        prov_keys[stream_key(sid)] = set()
        for _ in range(providers):
            ident = Identity.from_private_bytes(rng.randbytes(32))
            node = sim.add_node(identity=ident)
            sim.join(node)
            prov_keys[stream_key(sid)].add(ident.public)
            sim.call_at(sim.now + 15 + rng.random() * 15, publish(node, sid))
    t_measure = sim.now + settle_s
    # churn: every second, the share leaving and as many joining
    churn_start = sim.now
    if churn_per_min > 0:
        def churn_tick() -> None:
            want = churn_per_min / 60 * len(sim.live)
            k = int(want) + (1 if rng.random() < want - int(want) else 0)
            for _ in range(k):
                sim.leave(sim.nodes[rng.choice(sim.live)])
                sim.join(sim.add_node(adversary=rng.random() < adversarial))
            if sim.now < t_measure + measure_s:
                sim.call_at(sim.now + 1.0, churn_tick)
        sim.call_at(sim.now + 1.0, churn_tick)
    results: list[tuple[str, dh.LookupDone, float]] = []  #: (what, result, live-provider share)

    def done(node: SimDhtNode, d: dh.LookupDone) -> None:
        if d.kind == "join":
            joins.append(d)
        elif d.kind in ("providers", "nodes") and node.idx in mine:
            live = sum(1 for r in d.providers
                       if r.provider in sim.by_key and sim.nodes[sim.by_key[r.provider]].alive)
            results.append((d.kind, d, live))
    mine: set[int] = set()
    sim.on_done = done
    for q in range(lookups + node_lookups):
        when = t_measure + measure_s * q / (lookups + node_lookups)

        def start(q: int = q) -> None:
            node = sim.random_live()
            mine.add(node.idx)
            if q % (lookups + node_lookups) < lookups:
                node.dht.find_providers(sids[rng.randrange(len(sids))], sim.now)
            else:
                node.dht.find_node(rng.randbytes(32), sim.now)
            sim.run(node)
        sim.call_at(when, start)
    last = t_measure
    while last < t_measure + measure_s + 30:
        last += 30
        sim.run_until(last)
        if progress:
            progress(f"measure t={last - T0:.0f}s results={len(results)} events={sim.events} "
                     f"wall={time.monotonic() - wall0:.0f}s")

    prov = [(d, live) for kind, d, live in results if kind == "providers"]
    nodes_ = [d for kind, d, _ in results if kind == "nodes"]
    ok = [d for d, _ in prov if d.ok]
    tables = [len(sim.nodes[i].dht.table) for i in sim.live if not sim.nodes[i].adversary]
    honest_prov = [d for d, _ in prov
                   if any(r.provider in prov_keys[d.target] for r in d.providers)]
    totals: dict[str, int] = {}
    for i in sim.live:
        for k, v in vars(sim.nodes[i].dht.counters).items():
            totals[k] = totals.get(k, 0) + v
    return {
        "n": n, "seed": seed, "adversarial": adversarial, "churn_per_min": churn_per_min,
        "config": {"k": sim.config.k, "alpha": sim.config.alpha, "paths": sim.config.paths},
        "streams": streams, "providers_per_stream": providers, "join_s": join_s,
        "providers": {
            "lookups": len(prov),
            "success": round(len(ok) / len(prov), 4) if prov else None,
            "success_honest_provider": round(len(honest_prov) / len(prov), 4) if prov else None,
            "success_live_provider": round(sum(1 for _, live in prov if live) / len(prov), 4)
            if prov else None,
            "hops_p50": pct([d.hops for d in ok], 0.5), "hops_p95": pct([d.hops for d in ok], 0.95),
            "first_record_s_p50": _r(pct([d.first_found or 0.0 for d in ok], 0.5)),
            "first_record_s_p95": _r(pct([d.first_found or 0.0 for d in ok], 0.95)),
            "time_s_p50": _r(pct([d.elapsed for d, _ in prov], 0.5)),
            "time_s_p95": _r(pct([d.elapsed for d, _ in prov], 0.95)),
            "messages_per_lookup": _r(sum(d.queries + d.answers for d, _ in prov) / len(prov))
            if prov else None,
        },
        "find_node": {
            "lookups": len(nodes_),
            "success": round(sum(1 for d in nodes_ if d.ok) / len(nodes_), 4) if nodes_ else None,
            "hops_p50": pct([d.hops for d in nodes_], 0.5),
            "hops_p95": pct([d.hops for d in nodes_], 0.95),
            "time_s_p50": _r(pct([d.elapsed for d in nodes_], 0.5)),
            "time_s_p95": _r(pct([d.elapsed for d in nodes_], 0.95)),
            "messages_per_lookup": _r(sum(d.queries + d.answers for d in nodes_) / len(nodes_))
            if nodes_ else None,
        },
        "joins": {"count": len(joins), "ok": round(sum(1 for d in joins if d.ok) / len(joins), 4)
                  if joins else None,
                  "time_s_p50": _r(pct([d.elapsed for d in joins], 0.5)),
                  "messages_p50": pct([d.queries + d.answers for d in joins], 0.5)},
        "table": {"mean": _r(sum(tables) / len(tables)) if tables else None,
                  "p5": pct([float(x) for x in tables], 0.05),
                  "p50": pct([float(x) for x in tables], 0.5)},
        "counters": {k: v for k, v in totals.items() if v},
        "live_nodes": len(sim.live), "nodes_created": len(sim.nodes),
        "churn_s": round(sim.now - churn_start, 1) if churn_per_min else 0,
        "events": sim.events, "messages": sim.messages,
        "prefilled": max(8, prefill) if prefill else 0,
        "wall_s": {"join": round(join_wall, 1), "total": round(time.monotonic() - wall0, 1)},
        "cpu_s": round(time.process_time() - cpu0, 1),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
