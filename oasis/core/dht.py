"""A Kademlia DHT over OFTP that finds a stream's peers without a tracker, sans-I/O.

Theory of operation
-------------------
Every node has a 256-bit id hashed from its Ed25519 key (``dhtrecord.node_id``) and a
routing table of k-buckets over the XOR metric (``dhttable``). A stream's *provider
records* -- "P carries stream S at these addresses until T", signed by P -- are stored
at the ``k`` nodes whose ids are nearest ``stream_key(S)``; a viewer finds them with an
iterative lookup (``dhtlookup``: ``alpha`` requests in flight on each of ``paths``
disjoint paths). Publishers re-announce before their records expire; storers keep
records only until they expire. The broadcaster's own record may carry the stream's
signed descriptor, so a stream link (stream id + a few bootstrap addresses) is enough.

Messages ride on authenticated OFTP links (docs/oftp.md § 17): the executor tells the
DHT which key a message came from (the link's proven key) and from which address (the
one observed on the link). Nothing is believed that was not signed or observed:

* ids are computed from keys, never read; a contact enters the table only when it
  answered us or asked us something over a link that authenticated its key, with the
  address seen on that link; an answer from another key than the one asked is refused;
* answers are checked: every contact a NODES/PROVIDERS answer names must be nearer
  the target than the answerer (an honest node names only such, § 17.3) and name a
  unicast IP literal, else the answer is counted and the answerer scored; records must
  be for the key asked, carry their provider's valid signature and an expiry within
  ``max_record_ttl``; scores past ``ban_score`` ban the key (table, answers, requests);
* a stored record is the publisher's own (``ADD_PROVIDER`` from the provider key, over
  a link from the host every one of the record's addresses names), so nobody can make
  the DHT hand out a third party's address; a lookup dials at most ``lookup_per_prefix``
  nodes of one /24 (/48) whatever keys answers name there; and every table and queue is
  capped, with counters (:class:`DhtCounters`);
* a storer keeps the broadcaster's stream record (and descriptor) in a place of its own
  under the stream key, which others' records cannot fill in advance, and under a full key
  lets a record from a less crowded /16 (/32) take a crowded block's place (``dhtstore``).

Node-facing API (events in, actions out; ``now`` = wall-clock seconds, as the swarm's)
-----------------------------------------------------------------------------------
Commands: :meth:`Dht.bootstrap` (addresses from a stream link or a tracker; then a
self-lookup), :meth:`Dht.find_providers` (returns a lookup id), :meth:`Dht.find_node`,
:meth:`Dht.provide` / :meth:`Dht.stop_providing` (publish and keep re-announcing).

Events: :meth:`Dht.on_message` for every DHT message (``wire.DHT_MESSAGES``) received
on an authenticated link, with the link's peer key and observed address;
:meth:`Dht.send_failed` when a ``Send`` could not be delivered (the dial failed or
reached another key); :meth:`Dht.handle_timer` at :meth:`Dht.get_timer`.

Actions (:meth:`Dht.actions`): :class:`Send` -- deliver ``message`` to ``peer`` over the
link to it, or dial ``host:port`` **pinning** ``peer``'s key first (``peer`` None only
for bootstrap addresses, which are dialled unpinned); :class:`LookupDone` -- a lookup
ended (``lookup`` = the id a command returned; ``kind`` ``join``, ``nodes``,
``providers``, ``publish`` or ``refresh``), with the nodes and verified records found.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import wire
from .descriptor import DescriptorError, descriptor_from_json, verify_descriptor
from .dhtdefs import DhtAction, DhtConfig, DhtCounters, LookupDone, Send
from .dhtlookup import Lookup
from .dhtrecord import (
    Address,
    ProviderRecord,
    RecordError,
    Verify,
    canonical_host,
    check_record,
    node_id,
    sign_record,
    stream_key,
)
from .dhtstore import RecordStore
from .dhttable import Contact, RoutingTable
from .dialplan import ban_active
from .identity import Identity
from .identity import verify as ed25519_verify
from .stream import StreamId

__all__ = ["Dht", "DhtAction", "DhtConfig", "DhtCounters", "LookupDone", "Send"]

_PING, _FIND, _GETP, _BOOT = 0, 1, 2, 3


@dataclass(slots=True)
class _Pending:
    peer: bytes | None
    host: str
    port: int
    kind: int
    target: int
    lookup: int  #: lookup id, -1 for none
    sent: float
    deadline: float
    new_contact: bool  #: no RTT measured for this peer yet


@dataclass(slots=True)
class _Active:
    lookup: Lookup
    purpose: str
    target: bytes
    record: ProviderRecord | None = None  #: publish: what to store at the nodes found
    descriptor: bytes = b""


@dataclass(slots=True)
class _Provided:
    sid: StreamId
    addrs: tuple[Address, ...]
    descriptor: bytes
    due: float
    record: ProviderRecord | None = None  #: the latest we signed (answered for ourselves)


class Dht:
    """One node's DHT. See the module docstring for what the executor feeds and does."""

    def __init__(self, key: bytes, *, identity: Identity | None = None,
                 config: DhtConfig | None = None, rng: random.Random | None = None,
                 now: float = 0.0, verify: Verify = ed25519_verify) -> None:
        self.key = key
        self.id = node_id(key)
        self.identity = identity  #: signs our records (provide); None: never provides
        self.config = cfg = config or DhtConfig()
        self.rng = rng or random.Random()
        self.verify = verify
        self.counters = DhtCounters()
        self.table = RoutingTable(key, k=cfg.k, replacements=cfg.replacements,
                                  per_bucket_prefix=cfg.per_bucket_prefix,
                                  per_table_prefix=cfg.per_table_prefix,
                                  ping_after=cfg.ping_after, max_fails=cfg.max_fails)
        self._actions: list[DhtAction] = []
        self._pending: dict[int, _Pending] = {}
        self._expired: dict[int, _Pending] = {}  #: recently timed-out requests (late answers)
        self._timers: list[tuple[float, int]] = []  #: (deadline, qid), lazily cleaned
        self._qid = self.rng.getrandbits(32)
        self._lookups: dict[int, _Active] = {}
        self._lid = 0
        self._booting = 0
        self._boot_seeds: list[tuple[bytes, int, str, int]] = []
        self._boot_refs: dict[bytes, bytes] = {}  #: bootstrap seed -> the key that named it
        #: per referrer: (referrals that failed minus those that answered, decayed; when)
        self._referrals: dict[bytes, tuple[float, float]] = {}
        self._distrusts: dict[bytes, int] = {}  #: referrer -> times it was distrusted
        #: provider -> (the node whose answer gave us its record, charged yet): a third
        #: party's record charges its answerer for the dial's outcome (:meth:`provider_dialled`)
        self._record_refs: dict[bytes, tuple[bytes, bool]] = {}
        #: providers whose records came from an answerer now distrusted: the executor
        #: withdraws them from its dial candidates (:meth:`take_withdrawn`)
        self._withdrawn: list[bytes] = []
        #: keys no contact of ours that a lookup asked in vain, until when not asked again
        self._dead: dict[bytes, float] = {}
        self._boot_lid = -1
        self._srtt_new = cfg.initial_rtt  #: first-contact estimator (includes a dial)
        self._var_new = cfg.initial_rtt / 4
        self._rate: dict[bytes, tuple[float, float]] = {}
        self._scores: dict[bytes, tuple[float, float]] = {}
        self.bans: dict[bytes, float] = {}
        self.store = RecordStore(cfg, self.counters, verify)
        self._provided: dict[bytes, _Provided] = {}
        self._seq = 0
        self._sweep_at = now + cfg.sweep_interval
        self._refresh_at = now + cfg.refresh_interval * (0.5 + self.rng.random())
        self._last_lookup = -cfg.refresh_interval  #: when we last started a lookup of our own

    # ---- commands ----------------------------------------------------------------
    def bootstrap(self, addrs: Iterable[tuple[str, int] | tuple[str, int, bytes]],
                  now: float) -> int:
        """Ask each address for nodes near our id, then look ourselves up (``join``)."""
        self._boot_lid = self._lid = self._lid + 1
        for host, port, *rest in addrs:
            peer = rest[0] if rest else None
            if canonical_host(host) is None or not 0 < port < 65536 or peer == self.key:
                continue
            if self._request(peer, host, port, _BOOT, self.id, -1, now,
                             wire.DhtFindNode(qid=0, target=self.id.to_bytes(32, "big"))):
                self._booting += 1
        if not self._booting:
            self._join(now)
        return self._boot_lid

    def find_node(self, target: bytes, now: float) -> int:
        return self._start("nodes", target, now)

    def find_providers(self, sid: StreamId, now: float,
                       via: Sequence[tuple[str, int, bytes]] = ()) -> int:
        """Look for ``sid``'s providers: a ``LookupDone(kind="providers")`` follows. ``via``:
        (host, port, key) of peers to ask too, whatever the table holds (a short link's
        bootstrap peers: a node that had joined the DHT before never asked them, and its
        watch of a short link found no descriptor; found 2026-12-06 from outside)."""
        extra = [(k, node_id(k), h, p) for h, p, k in via
                 if canonical_host(h) is not None and 0 < p < 65536 and k != self.key]
        return self._start("providers", stream_key(sid), now, extra=extra or None)

    def provide(self, sid: StreamId, addrs: Sequence[Address], now: float, *,
                descriptor: bytes = b"") -> None:
        """Announce that we carry ``sid`` at ``addrs``, now and every ``republish``
        seconds. ``descriptor``: the stream's signed descriptor JSON (broadcaster only)."""
        if self.identity is None:
            raise ValueError("a DHT without an identity cannot sign records")
        self._provided[stream_key(sid)] = _Provided(sid, tuple(addrs), descriptor, now)
        self._publish_due(now)

    def mark_fresh(self, now: float) -> None:
        """The table was filled by other means as of ``now`` (a saved snapshot; the
        simulator's oracle): no refresh lookup is due before ``refresh_interval``."""
        self._last_lookup = now

    def stop_providing(self, sid: StreamId) -> None:
        self._provided.pop(stream_key(sid), None)

    # ---- events ------------------------------------------------------------------
    def on_message(self, peer: bytes, host: str, port: int, msg: wire.Message,
                   now: float) -> None:
        """A DHT message from ``peer`` (the link's authenticated key) at ``host:port``."""
        if peer == self.key:
            return
        if self._banned(peer, now):
            self.counters.from_banned += 1
            return
        if isinstance(msg, (wire.DhtNodesMsg, wire.DhtProviders, wire.DhtPong)):
            self._on_answer(peer, host, port, msg, now)
        elif isinstance(msg, (wire.DhtPing, wire.DhtFindNode, wire.DhtGetProviders,
                              wire.DhtAddProvider)):
            self._on_request(peer, host, port, msg, now)
        self._pump(now)

    def send_failed(self, peer: bytes | None, host: str, port: int, now: float) -> None:
        """A ``Send`` to ``peer`` (``host:port``) was not delivered: fail its requests now."""
        for qid, p in list(self._pending.items()):
            if p.peer == peer and (peer is not None or (p.host, p.port) == (host, port)):
                self.counters.send_failures += 1
                self._expire(qid, p, now)
        self._pump(now)

    def get_timer(self) -> float | None:
        t = min(self._sweep_at, self._refresh_at)
        while self._timers and self._timers[0][1] not in self._pending:
            heapq.heappop(self._timers)
        if self._timers:
            t = min(t, self._timers[0][0])
        for a in self._lookups.values():
            t = min(t, a.lookup.deadline)
        for p in self._provided.values():
            t = min(t, p.due)
        return t

    def handle_timer(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, qid = heapq.heappop(self._timers)
            p = self._pending.get(qid)
            if p is not None and p.deadline <= now:
                self.counters.timeouts += 1
                self._expire(qid, p, now)
        for lid, a in list(self._lookups.items()):
            if a.lookup.deadline <= now:
                self.counters.lookups_timed_out += 1
                self._finish(lid, a, now)
        if self._sweep_at <= now:
            self._sweep_at = now + self.config.sweep_interval
            self.store.sweep(now)
        if self._refresh_at <= now:  # jittered: nodes started together do not refresh together
            interval = self.config.refresh_interval
            self._refresh_at = now + interval * (0.5 + self.rng.random())
            if len(self.table) and now - self._last_lookup >= interval:  # else fresh enough
                self._start("refresh", self.rng.randbytes(32), now)
        self._publish_due(now)
        self._pump(now)

    def actions(self) -> list[DhtAction]:
        out, self._actions = self._actions, []
        return out

    # ---- queries -----------------------------------------------------------------
    def providers_of(self, key: bytes, now: float) -> list[ProviderRecord]:
        """Records we hold under ``key`` (as a storer), unexpired."""
        return self.store.get(key, now)

    @property
    def records(self) -> int:
        return self.store.records

    def pending(self) -> int:
        return len(self._pending)

    # ---- requests we answer ------------------------------------------------------
    def _on_request(self, peer: bytes, host: str, port: int, msg: wire.Message,
                    now: float) -> None:
        cfg, c = self.config, self.counters
        c.requests_in += 1
        tokens, t = self._rate.pop(peer, (cfg.request_burst, now))
        tokens = min(cfg.request_burst, tokens + (now - t) * cfg.request_rate)
        if tokens < 1.0:
            self._rate[peer] = (tokens, now)
            c.requests_over_budget += 1
            self._offence(peer, 0.25, now)
            return
        self._rate[peer] = (tokens - 1.0, now)
        if len(self._rate) > cfg.max_rate_buckets:
            del self._rate[next(iter(self._rate))]
        self._seen(peer, host, port, now)
        if isinstance(msg, wire.DhtPing):
            self._reply(peer, host, port, wire.DhtPong(qid=msg.qid))
        elif isinstance(msg, wire.DhtFindNode):
            nodes = self._nodes_for(int.from_bytes(msg.target, "big"), peer)
            self._reply(peer, host, port, wire.DhtNodesMsg(qid=msg.qid, nodes=nodes))
        elif isinstance(msg, wire.DhtGetProviders):
            recs = self.providers_of(msg.key, now)
            mine = self._provided.get(msg.key)
            descriptor = self.store.descriptor(msg.key)
            if mine is not None and mine.record is not None and mine.record.expires_ms > now * 1000:
                # we carry it: our own record too (and, the broadcaster, its descriptor), so
                # a node that bootstraps at us finds the stream even before any storer has it
                recs = [mine.record, *(r for r in recs if r.provider != self.key)]
                if mine.record.is_stream_record and mine.descriptor:
                    descriptor = mine.descriptor
            if len(recs) > cfg.answer_records:
                own = [r for r in recs if r.is_stream_record]
                rest = [r for r in recs if not r.is_stream_record]
                recs = own + self.rng.sample(rest, cfg.answer_records - len(own))
            nodes = self._nodes_for(int.from_bytes(msg.key, "big"), peer)
            self._reply(peer, host, port, wire.DhtProviders(
                qid=msg.qid, records=[r.raw for r in recs], nodes=nodes,
                descriptor=descriptor))
        elif isinstance(msg, wire.DhtAddProvider):
            score = self.store.add(peer, host, msg, now)
            if score:
                self._offence(peer, score, now)

    def _nodes_for(self, target: int, asker: bytes) -> list[wire.DhtNode]:
        near = self.table.closest(target, self.config.k, closer_than=self.id ^ target,
                                  exclude=asker)
        return [wire.DhtNode(key=c.key, host=c.host, port=c.port) for c in near]

    def _reply(self, peer: bytes, host: str, port: int, msg: wire.Message) -> None:
        self._actions.append(Send(peer, host, port, msg))

    # ---- answers to our requests -------------------------------------------------
    def _on_answer(self, peer: bytes, host: str, port: int, msg: wire.Message,
                   now: float) -> None:
        c = self.counters
        qid: int = msg.qid  # type: ignore[attr-defined]
        p = self._pending.get(qid)
        late = p is None and qid in self._expired and self._expired[qid].peer == peer
        if late:  # an honest node that was slow: used if still useful, not scored
            p = self._expired.pop(qid)
            c.answers_late += 1
        if p is None or not (p.peer == peer or (p.peer is None and (p.host, p.port) == (host, port))):
            c.answers_unsolicited += 1
            self._offence(peer, 1.0, now)
            return
        if not late:
            del self._pending[qid]
        c.answers_in += 1
        rtt = now - p.sent
        if p.new_contact:
            self._var_new += (abs(self._srtt_new - rtt) - self._var_new) / 4
            self._srtt_new += (rtt - self._srtt_new) / 8
        self._seen(peer, host, port, now, rtt)
        self._dead.pop(peer, None)
        if isinstance(msg, wire.DhtPong):
            return
        nodes: list[wire.DhtNode] = msg.nodes  # type: ignore[attr-defined]
        entries = self._check_entries(peer, p.target, nodes, now)
        if p.kind == _BOOT:
            if late:
                return
            self._boot_seeds.extend(entries)
            for e in entries:
                self._boot_refs.setdefault(e[0], peer)
            self._booting -= 1
            if self._booting == 0:
                self._join(now)
            return
        a = self._lookups.get(p.lookup)
        if isinstance(msg, wire.DhtProviders) and a is not None:
            self._take_records(peer, a, msg, now)
        if a is not None:
            asked, ref = a.lookup.answered(peer, entries, now)
            if asked and ref is not None:
                self._referral(ref, -1.0, now)

    def _check_entries(self, peer: bytes, target: int, nodes: list[wire.DhtNode],
                       now: float) -> list[tuple[bytes, int, str, int]]:
        c = self.counters
        limit = node_id(peer) ^ target
        out: list[tuple[bytes, int, str, int]] = []
        seen: set[bytes] = set()
        bad = 0
        for n in nodes:
            if n.key == self.key:
                continue
            nid = node_id(n.key)
            if n.key in seen:
                c.entries_duplicate += 1
                bad += 1
            elif nid ^ target >= limit:
                c.entries_not_closer += 1
                bad += 1
            elif canonical_host(n.host) is None:
                c.entries_bad_address += 1
                bad += 1
            elif self._dead.get(n.key, 0.0) > now:
                c.entries_failed_recently += 1  # asked in vain lately: not again, not charged
            elif not self._banned(n.key, now):
                out.append((n.key, nid, n.host, n.port))
            seen.add(n.key)
        if bad:
            self._offence(peer, 1.0, now)
        if out and self._distrusted(peer, now):
            # its referrals kept failing (made-up keys at addresses of its choosing): an
            # answer costs us nothing to read, but we no longer dial what it names
            c.entries_referrer_failed += len(out)
            return []
        return out

    def _take_records(self, peer: bytes, a: _Active, msg: wire.DhtProviders, now: float) -> None:
        cfg, c = self.config, self.counters
        found = False
        distrusted = self._distrusted(peer, now)
        for raw in msg.records:
            try:
                rec = check_record(raw, now, self.verify, max_ttl=cfg.max_record_ttl,
                                   skew=cfg.clock_skew)
            except RecordError as exc:
                if exc.code in ("expired", "too_long"):
                    c.records_expired += 1
                else:
                    c.records_rejected += 1
                    self._offence(peer, 1.0, now)
                continue
            if rec.key != a.target:
                c.records_rejected += 1
                self._offence(peer, 1.0, now)
                continue
            # A record is signed by its provider, but any key signs: an answerer's own made-up
            # providers at a victim's addresses drew the victim's dials (found 2026-12-03: 20
            # records a lookup, x40 the answers' bytes). A third party's record (not the
            # answerer's own, not the broadcaster's stream record) charges the answerer for
            # the dial's outcome, like a referral; a distrusted answerer's are not taken.
            third = rec.provider != peer and not rec.is_stream_record
            if third and distrusted:
                c.records_referrer_failed += 1
                continue
            if third:
                self._record_refs.pop(rec.provider, None)
                self._record_refs[rec.provider] = (peer, False)
                if len(self._record_refs) > cfg.max_scores:
                    del self._record_refs[next(iter(self._record_refs))]
            old = a.lookup.providers.get(rec.provider)
            if old is None or rec.seq > old.seq:
                a.lookup.providers[rec.provider] = rec
            found = True
        if msg.descriptor and found and msg.descriptor != a.lookup.descriptor:
            recs = list(a.lookup.providers.values())
            sid = recs[0].stream
            try:
                d = descriptor_from_json(msg.descriptor)
                good = verify_descriptor(d, sid)
            except DescriptorError:
                good = False
            if not good:
                c.descriptors_rejected += 1
                self._offence(peer, 1.0, now)
            elif not a.lookup.descriptor or d.issued_at_ms > descriptor_from_json(a.lookup.descriptor).issued_at_ms:
                # the newest wins (§14.5), not the first: an old descriptor, genuinely signed
                # (any old link or storer has one), answered first by a hostile peer made a
                # newcomer play with the stream's old parameters for its whole session
                a.lookup.descriptor = msg.descriptor
            else:
                c.descriptors_stale += 1
        if found:
            a.lookup.found(peer, now)

    # ---- lookups -----------------------------------------------------------------
    def _join(self, now: float) -> None:
        seeds, self._boot_seeds = self._boot_seeds, []
        refs, self._boot_refs = self._boot_refs, {}
        self._start("join", self.id.to_bytes(32, "big"), now, lid=self._boot_lid, extra=seeds,
                    referrers=refs)

    def _start(self, purpose: str, target: bytes, now: float, *, lid: int | None = None,
               extra: list[tuple[bytes, int, str, int]] | None = None,
               record: ProviderRecord | None = None, descriptor: bytes = b"",
               referrers: dict[bytes, bytes] | None = None) -> int:
        cfg = self.config
        if lid is None:
            self._lid += 1
            lid = self._lid
        kind = "providers" if purpose == "providers" else "nodes"
        if len(self._lookups) >= cfg.max_lookups:
            self.counters.lookups_refused += 1
            self._actions.append(LookupDone(lid, purpose, target, False, ()))
            return lid
        self.counters.lookups_started += 1
        if purpose != "refresh":
            self._last_lookup = now
        t = int.from_bytes(target, "big")
        lk = Lookup(lid, kind, t, now, k=cfg.k, alpha=cfg.alpha, paths=cfg.paths,
                    max_candidates=cfg.max_candidates, max_queries=cfg.max_queries,
                    max_hops=cfg.max_hops, want=cfg.want_providers,
                    deadline=now + cfg.lookup_time, per_prefix=cfg.lookup_per_prefix)
        seeds = [(c.key, c.nid, c.host, c.port)
                 for c in self.table.closest(t, cfg.k * lk_paths(cfg))]
        if extra:
            have = {s[0] for s in seeds}
            seeds += [e for e in extra if e[0] not in have]
            seeds.sort(key=lambda s: s[1] ^ t)
        lk.seed(seeds, referrers)
        self._lookups[lid] = _Active(lk, purpose, target, record, descriptor)
        self._pump(now)
        return lid

    def _pump(self, now: float) -> None:
        for lid, a in list(self._lookups.items()):
            lk = a.lookup
            room = self.config.max_pending - len(self._pending)
            for cand in lk.next_queries(room):
                if lk.kind == "providers":
                    msg: wire.Message = wire.DhtGetProviders(qid=0, key=a.target)
                    kind = _GETP
                else:
                    msg = wire.DhtFindNode(qid=0, target=a.target)
                    kind = _FIND
                if not self._request(cand.key, cand.host, cand.port, kind, lk.target, lid,
                                     now, msg):
                    lk.failed(cand.key)  # our own limit (pending full): nobody's fault
            if lk.done:  # answers still awaited are dropped when they come
                self._finish(lid, a, now)

    def _finish(self, lid: int, a: _Active, now: float) -> None:
        del self._lookups[lid]
        lk = a.lookup
        lk.done = True
        self.counters.entries_same_network += lk.refused_prefix
        near = tuple((c.key, c.host, c.port) for c in lk.closest_answered())
        provs = tuple(lk.providers.values())
        ok = bool(provs) if lk.kind == "providers" else bool(near)
        first = None if lk.first_found is None else lk.first_found - lk.started
        self._actions.append(LookupDone(lid, a.purpose, a.target, ok, near, provs,
                                        lk.descriptor, lk.hops(), now - lk.started, first,
                                        lk.queries, lk.answers))
        if a.purpose == "publish" and a.record is not None:
            for key, host, port in near:
                self._actions.append(Send(key, host, port, wire.DhtAddProvider(
                    record=a.record.raw, descriptor=a.descriptor)))

    def _publish_due(self, now: float) -> None:
        for skey, p in self._provided.items():
            if p.due > now or self.identity is None:  # provide() refuses without identity
                continue
            p.due = now + self.config.republish
            self._seq = max(self._seq + 1, int(now * 1000))
            expires = int((now + self.config.record_ttl) * 1000)
            rec = sign_record(self.identity, p.sid, self._seq, expires, p.addrs)
            p.record = rec
            self.counters.publishes += 1
            desc = p.descriptor if rec.is_stream_record else b""
            self._start("publish", skey, now, record=rec, descriptor=desc)

    # ---- requests we send --------------------------------------------------------
    def _request(self, peer: bytes | None, host: str, port: int, kind: int, target: int,
                 lookup: int, now: float, msg: wire.Message) -> bool:
        cfg = self.config
        if len(self._pending) >= cfg.max_pending:
            self.counters.pending_full += 1
            return False
        c = self.table.get(peer) if peer is not None else None
        if c is not None and c.srtt > 0.0:
            wait, new = c.srtt + 4 * c.rttvar, False
        else:
            wait, new = self._srtt_new + 4 * self._var_new, True
        wait = min(cfg.rtt_cap, max(cfg.rtt_floor, wait))
        self._qid = qid = (self._qid + 1) & 0xFFFF_FFFF
        while qid in self._pending:
            self._qid = qid = (qid + 1) & 0xFFFF_FFFF
        self._pending[qid] = _Pending(peer, host, port, kind, target, lookup, now, now + wait, new)
        heapq.heappush(self._timers, (now + wait, qid))
        self.counters.requests_out += 1
        self._actions.append(Send(peer, host, port, _with_qid(msg, qid)))
        return True

    def _expire(self, qid: int, p: _Pending, now: float) -> None:
        del self._pending[qid]
        if p.peer is not None:
            self._expired[qid] = p
            if len(self._expired) > self.config.max_pending:
                del self._expired[next(iter(self._expired))]
        if p.peer is not None:
            self.table.failed(p.peer)
        if p.kind == _BOOT:
            self._booting -= 1
            if self._booting == 0:
                self._join(now)
            return
        a = self._lookups.get(p.lookup)
        if a is not None and p.peer is not None:
            awaited, ref = a.lookup.failed(p.peer)
            if awaited and ref is not None:
                self._referral(ref, 1.0, now)
            if awaited and self.table.get(p.peer) is None:
                # a node we never reached, named by someone: not asked again for a while,
                # whoever names it (an honest table keeps departed nodes for a time)
                self._dead.pop(p.peer, None)
                self._dead[p.peer] = now + self.config.dead_hold
                if len(self._dead) > self.config.max_scores:
                    del self._dead[next(iter(self._dead))]

    def _seen(self, peer: bytes, host: str, port: int, now: float,
              rtt: float | None = None) -> None:
        head = self.table.seen(peer, host, port, now, rtt)
        if head is not None:
            self._ping(head, now)

    def _ping(self, c: Contact, now: float) -> None:
        if not self._request(c.key, c.host, c.port, _PING, 0, -1, now, wire.DhtPing(qid=0)):
            self.table.failed(c.key)

    # ---- referrals -----------------------------------------------------------------
    def provider_dialled(self, provider: bytes, ok: bool, now: float) -> None:
        """The node dialled ``provider`` (a record a lookup gave): its link authenticated
        (``ok``) or not. Charges or credits the node whose answer carried the record."""
        entry = self._record_refs.get(provider)
        if entry is None:
            return
        ref, charged = entry
        if ok:
            del self._record_refs[provider]
            self._referral(ref, -1.0, now)
        elif not charged:  # once per record (the policy retries an address after a backoff)
            self._record_refs[provider] = (ref, True)
            self._referral(ref, 1.0, now)

    def take_withdrawn(self) -> list[bytes]:
        """Providers whose records came from an answerer we now distrust: not to be dialled
        (again). The executor drains this after each event."""
        out, self._withdrawn = self._withdrawn, []
        return out

    def _referral_score(self, peer: bytes, now: float) -> float:
        score, t = self._referrals.get(peer, (0.0, now))
        return max(0.0, score - (now - t) * self.config.referral_decay)

    def _distrusted(self, peer: bytes, now: float) -> bool:
        return peer in self._referrals and \
            self._referral_score(peer, now) >= self.config.referral_failures

    def _referral(self, peer: bytes, delta: float, now: float) -> None:
        """A node ``peer`` named answered (``delta`` -1) or failed (+1). Kademlia dials
        what answers name, unverified: a liar's 20 made-up keys at 20 networks of a victim
        drew 20 dials (~12 kB each, ×100 its answer's bytes) per lookup, every lookup
        (found 2026-12-03). Once its referrals have failed ``referral_failures`` times more
        than they answered (decaying), what it names is no longer dialled, in running
        lookups and later ones, until the failures age out. Not an offence: an honest
        node's table can hold a few departed contacts."""
        cfg = self.config
        before = self._referral_score(peer, now)
        score = max(0.0, before + delta)
        self._referrals.pop(peer, None)
        if score > 0.0:
            self._referrals[peer] = (score, now)
            if len(self._referrals) > cfg.max_scores:
                del self._referrals[next(iter(self._referrals))]
        if before < cfg.referral_failures <= score:
            self.counters.referrers_distrusted += 1
            # distrusted again: held longer each time (1, 3, 7, then 15 minutes more), so a
            # liar that waits out its distrust gets its handful of dials ever less often
            times = self._distrusts.pop(peer, 0)
            self._distrusts[peer] = times + 1
            if len(self._distrusts) > cfg.max_scores:
                del self._distrusts[next(iter(self._distrusts))]
            score += cfg.referral_failures * (2 ** min(times, 4) - 1)
            self._referrals[peer] = (score, now)
            for a in self._lookups.values():
                self.counters.entries_referrer_failed += a.lookup.drop_referred(peer)
            gone = [p for p, (r, _) in self._record_refs.items() if r == peer]
            for p in gone:
                del self._record_refs[p]
            self._withdrawn.extend(gone)
            del self._withdrawn[:-cfg.max_scores]

    # ---- scores, bans, upkeep ----------------------------------------------------
    def _banned(self, peer: bytes, now: float) -> bool:
        return ban_active(self.bans, peer, now)

    def _offence(self, peer: bytes, weight: float, now: float) -> None:
        cfg = self.config
        score, t = self._scores.pop(peer, (0.0, now))
        score = max(0.0, score - (now - t) * cfg.score_decay) + weight
        if score < cfg.ban_score:
            self._scores[peer] = (score, now)
            if len(self._scores) > cfg.max_scores:
                del self._scores[next(iter(self._scores))]
            return
        self.counters.peers_banned += 1
        if len(self.bans) >= cfg.max_bans:
            del self.bans[min(self.bans, key=self.bans.__getitem__)]
        self.bans[peer] = now + cfg.ban_seconds
        self.table.remove(peer)
        self.table.forget_replacement(peer)


def lk_paths(cfg: DhtConfig) -> int:
    return max(1, cfg.paths)


def _with_qid(msg: wire.Message, qid: int) -> wire.Message:
    if isinstance(msg, wire.DhtFindNode):
        return wire.DhtFindNode(qid=qid, target=msg.target)
    if isinstance(msg, wire.DhtGetProviders):
        return wire.DhtGetProviders(qid=qid, key=msg.key)
    return wire.DhtPing(qid=qid)
