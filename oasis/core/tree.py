"""The push trees of one stream at one node: parents, children, loop freedom.

Theory of operation
-------------------
The stream is split into ``K`` substreams (chunk ``seq`` belongs to substream
``seq % K``). For each substream a node picks one *parent* among its neighbours
and sends SUBSCRIBE; the parent then pushes every chunk of that substream the
moment it has verified it. So each substream is a tree rooted at the
broadcaster, and a chunk travels one one-way delay per hop, with no request
round trip. A node accepts children while its upload cap has room (each
subscribed substream costs ``bitrate / K``; only ``slot_headroom`` of the cap is
booked). The broadcaster feeds each child one substream (``root_spread``; with
``root_strict`` a second only to a child that has no other candidate for it, while its
slots exceed one per neighbour that is no child yet, and with ``root_giveback`` handed
back once another parent is a candidate and the broadcaster is full), so each relay one
hop deep spends its upload on one substream's tree.

**Loop freedom.** STATUS carries, per substream, the path of 8-byte peer tags
from the broadcaster to the sender. A node never picks a parent whose path
contains itself, drops a parent whose path comes to contain it, and refuses a
SUBSCRIBE from a peer on its own (exact) path.

**Fastest path, not fewest hops.** STATUS also carries, per substream, the
sender's smoothed delay from a chunk's time to its arrival there
(:mod:`oasis.core.delay`). A node prefers the parent through which chunks would
arrive first (that delay plus half the RTT the transport measured to it, plus a
penalty per relay), and once per status interval swaps a parent for one
``SWITCH_GAIN`` faster (at most once per ``switch_dwell``). A swap is make
before break: the old parent stays subscribed (``standby``) until the new one
pushes, and takes over again at once if the new one is dropped first (a peer
that claims the best path and withholds starves no one).

**A parent that lost its feed** (its STATUS shows path ``j`` empty) is kept for
up to ``subscribe_timeout`` while it finds another, so a departure high in a
tree does not make its whole subtree drop and re-select in a cascade. Dropped so
before it served us (``FLAP_SERVED`` rounds of chunks), it is not picked again for
``j`` for :func:`flap_backoff` (``parents_flapping``): a liar that takes us, pushes
one chunk and says it lost its feed would otherwise hold the substream 2 s at a time
with nothing counted against it, again at every periodic look.

**A parent that withholds** (accepts SUBSCRIBE, then pushes nothing, or stops)
is dropped for that substream at once: when ``withhold_run`` consecutive chunks
of substream ``j`` made since we subscribed arrived from elsewhere first (a
repair, the origin) while the parent said it was fed, and it pushed none of
them, not even late (any push from it, a duplicate included, resets the run).
The repair timer already waited the parent's learnt delay (lag + 4 dev) for
each, so a slow parent still pushing, or a starved one relaying what it
repairs, is never counted; and a chunk that came before the parent's usual
push time (lag + margin, at most the origin time), or, from a parent that has
not pushed yet, one made in its first ``FRESH_GRACE`` s that came before the
origin time, is no evidence (a short playout delay, a fresh QUIC link). The
parent is not picked again for ``j`` for ``withhold_backoff`` seconds (longer
per strike). It earns a strike only if
the next STATUS it sends claims the first withheld chunk (``latest``/``have``)
on the same path ``j`` as when it withheld (an honest parent starved by its own
withholding parent switches, so its path changes); at ``withhold_limit``
strikes it is dropped (``DropPeer``, TOO_MANY_ERRORS).

:class:`PushTree` shares the swarm's peer table, action list, counters and
random generator (it is a part of :class:`oasis.core.swarm.Swarm`, not a
separate actor); ``status_dirty``/``children_dirty`` tell the swarm which
STATUS to send.
"""

from __future__ import annotations

import random

from . import wire
from .chunklog import ChunkLog, status_holds
from .delay import DelayEstimator
from .swarmdefs import (
    INF,
    DropPeer,
    PeerState,
    Send,
    SwarmAction,
    SwarmConfig,
    SwarmCounters,
)
from .wire import ErrorCode

HOP_GUESS = 0.1  #: assumed delay per hop when a peer's lag or RTT is not known (s)
SWITCH_GAIN = 0.03  #: swap a parent only for an expected arrival this much earlier (s)
#: the default ``SwarmConfig.switch_dwell``: no swap within this long of the substream's last
#: parent change (s)
SWITCH_DWELL = 2.0
#: ``deep_look``: the dwell of a deep substream when ``start_look`` is 0 (s)
DEEP_DWELL = 0.5
#: ``depth_weight``: the depth a parent may put us at free of charge (the mode of the trees at
#: 1,000 viewers, 70 % behind NATs)
DEPTH_FREE = 4
#: a new parent's first pushes may be late (a fresh QUIC link paces them over an RTT or more):
#: chunks made this long after we subscribed count against it only after the origin time (s)
FRESH_GRACE = 1.0
#: a fed parent that pushed us nothing for this long while its STATUS ran ahead has lost
#: our subscription: asked again (s; the subscribe timeout plus a fresh link's grace)
SILENT_PARENT = 3.0
#: ``parent_measured``: pushes from a parent before our smoothed delay is taken as its own
#: (gain 1/8: 24 samples leave 4 % of the previous parent's)
MEASURED_PUSHES = 24
#: the longest a parent dropped for a feed lost before it served us waits before it may be
#: picked again for that substream (s; the back-off grows per such drop, ``flap_backoff``)
FLAP_BACKOFF_MAX = 120.0
#: rounds of every substream a parent must have pushed us (chunks newer than what we held
#: when we took it) before a lost feed is no longer held against it
FLAP_SERVED = 8
#: ``parent_overclaim``: a parent's pushes may come this much later than its STATUS predicts
#: (a STATUS up to ``status_interval`` old, its queue behind its other children) before the
#: excess counts against it as a candidate (s)
OVERCLAIM_FREE = 0.05


class PushTree:
    """Parent choice and child admission for every substream (see the module docstring)."""

    def __init__(self, tag: bytes, skey: bytes, config: SwarmConfig, *, is_source: bool,
                 peers: dict[bytes, PeerState], log: ChunkLog, delay: DelayEstimator,
                 counters: SwarmCounters, actions: list[SwarmAction], rng: random.Random) -> None:
        self.tag = tag
        self.skey = skey
        self.config = config
        self.is_source = is_source
        self.peers = peers  #: the swarm's peer table (shared, never rebound)
        self.log = log
        self.delay = delay
        self.counters = counters
        self.actions = actions  #: the swarm's action list (shared, never rebound)
        self.rng = rng
        k = config.substreams
        #: per substream: when a parent that missed ``withhold_run`` chunks in a row is judged
        #: withholding, unless it pushes one of the substream first (INF: not suspected)
        self.suspect_at = [INF] * k
        self.parents: list[bytes | None] = [None] * k
        self.paths: list[list[bytes]] = [[tag] if is_source else [] for _ in range(k)]
        self.status_dirty = True  #: a feed gained/lost or we became full: STATUS to all
        self.children_dirty = 0  #: substreams whose path changed: tell their children
        #: peers with a pending SUBSCRIBE (a dict: ordered, deterministic)
        self.peer_timers: dict[bytes, None] = {}
        self.changed_at = [-INF] * k  #: when each substream last changed parent
        self.unfed_since = [INF] * k  #: when our parent said it lost its feed (INF: fed)
        #: the stream is known to have chunks: look for parents (the swarm sets it)
        self.hinted = is_source
        #: per substream: consecutive chunks made since we subscribed that came from
        #: elsewhere first, none pushed by the parent; and the first of them
        self.miss_run = [0] * k
        self.miss_first = [-1] * k
        #: per substream: the current parent pushed at least one chunk since we subscribed
        self.parent_pushed_any = [False] * k
        #: per substream: pushes from the current parent since it became parent (how much of
        #: the smoothed delay is its own, ``parent_measured``)
        self.pushes = [0] * k
        #: per substream: when the parent last pushed (or we subscribed), and the highest seq
        #: we held then: a parent whose STATUS runs ahead of that while it stays silent has
        #: lost us (:meth:`on_parent_status`)
        self.pushed_at = [-INF] * k
        self.pushed_seq = [-1] * k
        #: per substream: the highest seq we held when the current parent became parent (a
        #: parent that pushed nothing newer than ``FLAP_SERVED`` rounds past it has not
        #: served us yet: :meth:`_flapped`)
        self.taken_seq = [-1] * k
        #: per substream: the previous parent, still subscribed, while the new one has
        #: not pushed yet (make before break); ``None``: no such
        self.standby: list[bytes | None] = [None] * k
        #: per substream: its parent is the first it had (``start_look``: looked at again
        #: ``start_look`` after its ACK, with that as its dwell)
        self.first_parent = [False] * k
        #: ``start_look``: when the next early look is due (INF: none; the swarm's timer)
        self.look_at = INF
        #: ``first_wait``: when we first looked for parents with the stream hinted (INF: not
        #: yet); no SUBSCRIBE before ``first_wait`` after it while no substream ever had a parent
        self.hinted_at = INF
        #: the upload cap the slots are counted on (kbit/s; 0: none): ``upload_kbps``, or
        #: where the uplink probe runs, what it has reached (:class:`oasis.core.uplink.UplinkProbe`)
        self.cap_kbps = config.upload_kbps

    def total_slots(self) -> int:
        cfg = self.config
        cap = self.cap_kbps
        if cap <= 0:
            return cfg.max_children_uncapped
        # Cost of a substream: the measured rate once known, never less than nominal.
        # Only ``slot_headroom`` of the cap is booked: a fully booked relay queues every
        # chunk behind its other copies (seen in the simulator), and repairs need room.
        kbps = max(cfg.bitrate_kbps, self.log.rate_bps * 8 / 1000)
        slots = int(cfg.slot_headroom * cap * cfg.substreams / max(kbps, 1))
        if self.is_source and slots < cfg.substreams:
            # The broadcaster seeds each substream once, headroom or not, as far as its cap
            # goes: at 1.2x the bitrate the headroom left it 3 slots of 4, one substream
            # had no tree and every viewer fetched it from the origin (offload 0.83, 6
            # viewers; found 2026-12-06). Its copies are the stream's only source.
            slots = max(slots, min(cfg.substreams, int(cap * cfg.substreams / max(kbps, 1))))
        return slots

    def free_slots(self) -> int:
        return max(0, min(0xFFFF, self.free_slots_signed()))

    def free_slots_signed(self) -> int:
        """Slots left (negative: children past the cap, after the uplink probe cut it)."""
        used = sum(bin(st.children_mask).count("1") for st in self.peers.values())
        return self.total_slots() - used

    def shed_by(self, st: PeerState, mask: int, now: float) -> None:
        """Our parent (or standby) ``st`` ended our substreams in ``mask`` (UNSUBSCRIBE from
        a parent: its uplink carries fewer children now). Not a fault: that parent is not
        asked again for ``reject_backoff`` and another is picked at once."""
        mask &= st.parent_mask & ((1 << self.config.substreams) - 1)
        for j in _bits(mask):
            st.parent_mask &= ~(1 << j)
            st.rejected_until[j] = now + self.config.reject_backoff
            self.counters.parents_shed += 1
            if self.standby[j] == st.key:
                self.standby[j] = None
            elif self.parents[j] == st.key:
                self.lose_parent(j)
        if mask:
            self.select_parents(now)

    def expected_arrival(self, st: PeerState, j: int) -> float:
        """How long after a chunk's time it would reach us through ``st`` on
        substream ``j``: the delay it advertises plus half our RTT to it (a hop
        guess for what is unknown). Chunks should take the fastest path, not the
        one with the fewest hops: one intercontinental hop costs more than three
        local ones."""
        msg = st.status
        if msg is None or j >= len(msg.paths) or not msg.paths[j]:
            return INF
        relays = len(msg.paths[j]) - 1
        lag = msg.lags[j] if j < len(msg.lags) else wire.LAG_UNKNOWN
        est = lag / 1000 if lag != wire.LAG_UNKNOWN else relays * HOP_GUESS
        return est + (st.rtt / 2 if st.rtt >= 0 else HOP_GUESS) + self.config.hop_penalty * relays

    def parent_score(self, st: PeerState, j: int) -> float:
        """:meth:`expected_arrival` plus, with ``home_penalty``, how much later chunks reach
        ``st`` on ``j`` than on the substream where it is fastest (its *home*), at most
        ``home_penalty``: a relay is asked for the substream where it is shallow, so its
        slots go to one tree, where it is interior, and it is a leaf in the others
        (SplitStream's shape, chosen by the children, not fixed). Where it is the only
        candidate it is still asked (a lone viewer, a small swarm)."""
        est = self.expected_arrival(st, j)
        if self.config.parent_overclaim and st.overclaim > OVERCLAIM_FREE:
            est += st.overclaim - OVERCLAIM_FREE
        hp = self.config.home_penalty
        msg = st.status
        if hp <= 0 or msg is None or st.is_broadcaster or est == INF:
            return est
        own = best = INF
        lags = msg.lags
        for k, path in enumerate(msg.paths):
            if not path:
                continue
            lag = lags[k] if k < len(lags) else wire.LAG_UNKNOWN
            at = lag / 1000 if lag != wire.LAG_UNKNOWN else (len(path) - 1) * HOP_GUESS
            if at < best:
                best = at
            if k == j:
                own = at
        gap = own - best
        return est + (gap if gap < hp else hp)

    def judge_doubt(self, st: PeerState, msg: wire.Status) -> None:
        """``one_hop_doubt``: ``st``'s STATUS ``msg`` claims a one-hop path (the broadcaster,
        then ``st``) at zero lag on at least ``one_hop_doubt`` substreams: ``st`` is doubted
        until a STATUS that does not (a withholder's or a liar's advertisement of the best
        parent there is; an honest relay one hop deep is fed one substream by the broadcaster,
        ``root_spread``, and sends a lag of at least 1 ms, even where a hop takes less: loopback, a
        LAN; :meth:`oasis.core.delay.DelayEstimator.status_lags`). Never the broadcaster."""
        need = self.config.one_hop_doubt
        if need <= 0 or st.is_broadcaster:
            st.doubted = False
            return
        tag = st.tag
        lags = msg.lags
        n = 0
        for j, path in enumerate(msg.paths):
            if len(path) == 2 and path[1] == tag and j < len(lags) and lags[j] == 0:
                n += 1
        st.doubted = n >= need
        if st.doubted:
            self.counters.statuses_one_hop_doubted += 1

    def candidates(self, j: int, now: float) -> list[tuple[float, PeerState]]:
        """The candidate parents for ``j``, best (lowest score) first. The broadcaster where it
        keeps its slots for others (``root_min_slots``, ``root_strict``), and then the doubted
        neighbours (``one_hop_doubt``), are candidates only where no other neighbour is."""
        out = []
        last_resort: PeerState | None = None
        weak_root = False
        doubted: list[tuple[float, PeerState]] = []
        for st in self.peers.values():
            msg = st.status
            if msg is None or j >= len(msg.paths) or not msg.paths[j]:
                continue
            path = msg.paths[j]
            if self.tag in path or len(path) > self.config.max_depth:
                continue
            if msg.slots <= 0 and not (st.children_mask or st.parent_mask & (1 << j)):
                continue
            if st.rejected_until.get(j, 0.0) > now:
                continue
            if st.is_broadcaster and self.config.root_min_slots > 0 and not st.parent_mask >> j & 1 \
                    and self.total_slots() < self.config.root_min_slots:
                # ``root_min_slots``: we can feed few children; the broadcaster's slot goes to
                # a viewer that can feed more (its subtree is a level shallower), unless no
                # other neighbour is a candidate
                last_resort = st
                weak_root = True
                continue
            if st.is_broadcaster and self.config.root_spread and st.parent_mask & ~(1 << j):
                # it feeds each child one substream (``root_spread``); with ``root_strict``
                # a second one only to a child with no other candidate (a lone viewer)
                if self.config.root_strict:
                    last_resort = st
                continue
            # spread substreams over parents: another feed from the same peer shares its upload
            others = bin(st.parent_mask & ~(1 << j)).count("1")
            score = self.parent_score(st, j) + 0.01 * others + self.rng.random() * 0.005
            if self.config.slot_weight > 0 and not st.parent_mask >> j & 1 and not st.is_broadcaster:
                # ``slot_weight``: a parent nearly full queues our pushes behind its other
                # children's; one with room is worth a little depth
                score += self.config.slot_weight / (msg.slots if msg.slots > 1 else 1)
            if self.config.depth_weight > 0 and len(path) > DEPTH_FREE:
                # ``depth_weight``: through it we would sit len(path) deep
                score += self.config.depth_weight * (len(path) - DEPTH_FREE)
            if st.doubted:
                doubted.append((score, st))  # (``one_hop_doubt``) a last resort
                continue
            out.append((score, st))
        if not out and last_resort is not None:
            out.append((self.parent_score(last_resort, j), last_resort))
        elif weak_root:
            self.counters.root_left_to_stronger += 1
        if doubted:
            if not out:
                out = doubted
            else:
                # passed over if it would have won (our doubted parent on j: counted when
                # :meth:`select_parents` replaces it)
                best = min(score for score, _ in out)
                for score, st in doubted:
                    if score < best and not st.parent_mask >> j & 1:
                        self.counters.parents_doubt_passed += 1
                        break
        out.sort(key=lambda x: x[0])
        return out

    def select_parents(self, now: float, improve: bool = False) -> None:
        """Subscribe where a substream has no parent; with ``improve`` also look for a
        parent through which chunks would arrive ``SWITCH_GAIN`` earlier (done once per
        status interval, not per input, and at most once per ``switch_dwell`` per substream)."""
        if self.is_source or not self.hinted:
            return
        if not improve and all(p is not None for p in self.parents):
            return
        if self.config.first_wait > 0 and self._first_wait(now):
            return
        pending = 0
        for st in self.peers.values():
            pending |= st.pending_mask
        asks: dict[bytes, int] = {}
        keep = self._root_kept() if improve and self.config.root_giveback else -1
        doubt = improve and self.config.one_hop_doubt > 0
        if improve:
            self.look_at = INF  # (re-armed below for first parents not due yet)
        for j in range(self.config.substreams):
            if pending & (1 << j):
                continue
            if self.parents[j] is not None and not improve:
                continue
            current = self.parents[j]
            dwell = self.config.switch_dwell
            if self.first_parent[j] and improve:
                # ``start_look``: a substream's first parent is looked at early, once
                dwell = self.config.start_look
                if now >= self.changed_at[j] + dwell:
                    self.first_parent[j] = False
                elif self.changed_at[j] + dwell < self.look_at:
                    self.look_at = self.changed_at[j] + dwell
            if improve and current is not None and self.config.deep_look > 0 \
                    and len(self.paths[j]) - 1 >= self.config.deep_look:
                # ``deep_look``: a deep substream is looked at again soon
                # (every ``short`` while it stays deep: its new neighbours' STATUSes come in
                # between the periodic looks)
                short = self.config.start_look if self.config.start_look > 0 else DEEP_DWELL
                if short < dwell:
                    dwell = short
                at = self.changed_at[j] + dwell
                if at <= now:
                    at = now + dwell
                if at < self.look_at:
                    self.look_at = at
            # (``one_hop_doubt``: a doubted parent is left at the first look that finds an
            # undoubted candidate, whatever the dwell)
            cur = self.peers.get(current) if current is not None and doubt else None
            doubted = cur is not None and cur.doubted
            if current is not None and now < self.changed_at[j] + dwell and not doubted:
                continue
            cands = self.candidates(j, now)
            if not cands:
                continue
            best_score, best = cands[0]
            if doubted and not best.doubted:
                self.counters.parents_doubt_passed += 1
                asks[best.key] = asks.get(best.key, 0) | (1 << j)
                continue
            if doubted and now < self.changed_at[j] + dwell:
                continue  # (no undoubted candidate: the dwell holds)
            if current is not None:
                cur = self.peers.get(current)
                cur_est = self.parent_score(cur, j) if cur is not None else INF
                if self.config.parent_measured and self.pushes[j] >= MEASURED_PUSHES and self.delay.known[j]:
                    # what we measure through it (its queue, its losses to us) when worse
                    # than what it advertises (``parent_measured``); the candidates rank it
                    # by what it advertises, so the best other one is the challenger
                    meas = self.delay.lag[j] + self.config.hop_penalty * (len(self.paths[j]) - 2)
                    if meas > cur_est:
                        cur_est = meas
                        for score, st in cands:
                            if st.key != current:
                                best_score, best = score, st
                                break
                if self.config.leaf_yield > 0 and cur is not None and not self._feeds(j):
                    # ``leaf_yield``: a leaf in time does not climb; it leaves a full parent
                    # for another that keeps it in time (:meth:`_yield_to`)
                    if cur_est <= self.delay.origin_at - self.config.leaf_yield:
                        to = self._yield_to(cur, cands)
                        if to is None:
                            continue
                        self.counters.leaf_yields += 1
                        best = to
                        asks[best.key] = asks.get(best.key, 0) | (1 << j)
                        continue
                if best.key == current:
                    continue
                extra = keep >= 0 and j != keep and cur is not None and cur.is_broadcaster
                if best_score > cur_est - SWITCH_GAIN and not extra:
                    continue
            asks[best.key] = asks.get(best.key, 0) | (1 << j)
        for key, mask in asks.items():
            st = self.peers[key]
            st.pending_mask |= mask
            st.pending_since = now
            self.peer_timers[key] = None
            self.actions.append(Send(key, wire.Subscribe(stream=self.skey, mask=mask,
                                                          substreams=self.config.substreams)))

    def _first_wait(self, now: float) -> bool:
        """``first_wait``: a newcomer (no substream ever had a parent) waits ``first_wait``
        after it first looked for parents before it subscribes, so the neighbours whose STATUS
        comes a moment after the first one's are candidates too; the swarm's timer
        (``look_at``) looks again when the wait is over. True: wait."""
        if self.hinted_at == INF:
            if any(c != -INF for c in self.changed_at):
                return False  # (had a parent: no newcomer)
            self.hinted_at = now
        end = self.hinted_at + self.config.first_wait
        if now >= end or any(c != -INF for c in self.changed_at):
            return False
        if end < self.look_at:
            self.look_at = end
        return True

    def _feeds(self, j: int) -> bool:
        """We have a child on substream ``j``."""
        bit = 1 << j
        for st in self.peers.values():
            if st.children_mask & bit:
                return True
        return False

    def _yield_to(self, cur: PeerState, cands: list[tuple[float, PeerState]]) -> PeerState | None:
        """``leaf_yield``: the candidate a leaf in time leaves its parent ``cur`` for: only if
        ``cur`` is full (its STATUS shows no free slot), the best other candidate with free
        slots whose expected arrival keeps us in time; else none (we stay)."""
        msg = cur.status
        if msg is None or msg.slots > 0:
            return None
        budget = self.delay.origin_at - self.config.leaf_yield
        for score, st in cands:
            if score > budget:
                return None  # (sorted: none further keeps us in time)
            other = st.status
            if st is not cur and other is not None and other.slots > 0:
                return st
        return None

    def _root_kept(self) -> int:
        """``root_giveback``: when the broadcaster feeds us more than one substream (it
        gave us the others when no other neighbour was a candidate, ``root_strict``) and its
        STATUS says it has no free slot, the one we keep from it: where we have most
        children, else the lowest; -1: none to give back. The others move to another parent
        once one is a candidate, so its slots go to more relays one hop deep (while it has
        slots to spare nobody waits for ours: a small swarm keeps its shallow trees)."""
        keep = -1
        most = -1
        for st in self.peers.values():
            if not st.is_broadcaster or bin(st.parent_mask).count("1") < 2 \
                    or st.status is None or st.status.slots > 0:
                continue  # (a broadcaster with free slots: nobody waits for ours)
            for j in _bits(st.parent_mask):
                if self.parents[j] != st.key:
                    continue
                kids = 0
                for other in self.peers.values():
                    if other.children_mask >> j & 1:
                        kids += 1
                if kids > most:
                    keep, most = j, kids
        return keep

    def on_subscribe(self, st: PeerState, msg: wire.Subscribe, now: float) -> None:
        k = self.config.substreams
        if msg.substreams != k:
            self.actions.append(Send(st.key, wire.SubscribeAck(stream=self.skey, accepted=0, rejected=msg.mask)))
            return
        accepted = rejected = 0
        free = self.free_slots()
        mask = msg.mask & ((1 << k) - 1)
        if self.is_source and self.config.root_spread:
            mask = self._one_substream(st, mask)
        for j in _bits(msg.mask & ((1 << k) - 1)):
            fed = self.is_source or self.parents[j] is not None
            if not mask >> j & 1:
                rejected |= 1 << j  # a second substream for a child of the broadcaster
            elif st.children_mask & (1 << j):
                accepted |= 1 << j
            elif fed and free > 0 and st.tag not in self.paths[j]:
                accepted |= 1 << j
                free -= 1
            else:
                rejected |= 1 << j
        st.children_mask |= accepted
        self.actions.append(Send(st.key, wire.SubscribeAck(stream=self.skey, accepted=accepted,
                                                            rejected=rejected)))
        if accepted and free == 0:
            self.status_dirty = True  # full: say so before others ask in vain

    def _one_substream(self, st: PeerState, mask: int) -> int:
        """``root_spread`` at the broadcaster: of the substreams in ``mask``, those
        ``st`` may have: the one it already has, else (it has none) the one we feed
        fewest children; none if it already has another."""
        mine = st.children_mask & mask
        new = mask & ~st.children_mask
        if not new:
            return mine
        if self.config.root_strict and not st.children_mask:
            # strictly one at a child's first SUBSCRIBE: the one we feed fewest
            fed = [0] * self.config.substreams
            for other in self.peers.values():
                for j in _bits(other.children_mask):
                    fed[j] += 1
            best = -1
            for j in _bits(new):
                if best < 0 or fed[j] < fed[best]:
                    best = j
            return 1 << best
        # slots beyond one for each neighbour that is no child yet (a small swarm's viewers,
        # one that is alone: every substream) go to second substreams, fewest fed first
        counts = [0] * self.config.substreams
        waiting = 0
        for other in self.peers.values():
            if not other.children_mask and other is not st:
                waiting += 1
            for j in _bits(other.children_mask):
                counts[j] += 1
        spare = self.free_slots() - waiting
        if not st.children_mask:
            spare = spare if spare > 1 else 1  # its first substream
        out = mine
        for _ in range(len(_bits(new))):
            if spare <= 0:
                break
            best = -1
            for j in _bits(new & ~out):
                if best < 0 or counts[j] < counts[best]:
                    best = j
            out |= 1 << best
            spare -= 1
        return out

    def on_subscribe_ack(self, st: PeerState, msg: wire.SubscribeAck, now: float) -> None:
        mask = msg.accepted & st.pending_mask
        # Accepted where we no longer ask (the SUBSCRIBE timed out on a busy peer and we
        # went elsewhere): the peer now counts us as its child, pushes to us and books
        # its slots for as long as the link lives. Tell it at once.
        unwanted = msg.accepted & ~st.pending_mask & ~st.parent_mask & ((1 << self.config.substreams) - 1)
        if unwanted:
            self.counters.acks_unwanted += 1
            self.actions.append(Send(st.key, wire.Unsubscribe(stream=self.skey, mask=unwanted)))
        st.pending_mask &= ~(msg.accepted | msg.rejected)
        spread = st.is_broadcaster and self.config.root_strict and msg.accepted
        for j in _bits(msg.rejected):
            if not spread:  # (the broadcaster's one-per-child rule is no refusal: asked again
                # at once where no other neighbour is a candidate, ``root_strict``)
                st.rejected_until[j] = now + self.config.reject_backoff
        for j in _bits(mask):
            old = self.parents[j]
            if self.standby[j] == st.key:
                self.standby[j] = None  # back to the standby: it stays subscribed
            if old is not None and old != st.key:
                self.counters.parent_switches += 1  # a switch made (asking is not one)
                if self.parent_pushed_any[j] and old in self.peers:
                    # make before break: the old parent keeps pushing until the new one
                    # has pushed (a parent that claims the best path and withholds then
                    # starves neither us nor our subtree, :meth:`lose_parent`)
                    self._unsubscribe_standby(j)
                    self.standby[j] = old
                else:
                    self._unsubscribe(old, j)
            self.parents[j] = st.key
            self.suspect_at[j] = INF
            self.first_parent[j] = False
            if old is None and self.config.start_look > 0 and self.changed_at[j] == -INF:
                # the substream's very first parent: looked at again soon (``start_look``)
                self.first_parent[j] = True
                if now + self.config.start_look < self.look_at:
                    self.look_at = now + self.config.start_look
            self.unfed_since[j] = INF
            self.miss_run[j] = 0
            self.parent_pushed_any[j] = False
            self.pushes[j] = 0
            self.changed_at[j] = now
            self.pushed_at[j] = now
            self.pushed_seq[j] = self.log.latest
            self.taken_seq[j] = self.log.latest
            if self.config.fresh_parent_lag:
                self.delay.fresh[j] = self._claimed_delay(st, j)
            self.delay.update(j, self.parents[j] is not None)
            st.parent_mask |= 1 << j
            path = st.status.paths[j] if st.status and j < len(st.status.paths) else []
            self.paths[j] = list(path) + [self.tag]
            if old is None:
                self.status_dirty = True  # a feed gained: neighbours may be looking for one
            else:
                self.path_changed(j)
        if msg.rejected:
            self.select_parents(now)

    @staticmethod
    def _claimed_delay(st: PeerState, j: int) -> float:
        """``fresh_parent_lag``: when ``st``'s STATUS says its pushes of ``j`` reach us (its
        advertised lag + half the RTT; s), -1 if it does not say."""
        msg = st.status
        if msg is None or j >= len(msg.lags) or msg.lags[j] == wire.LAG_UNKNOWN:
            return -1.0
        return msg.lags[j] / 1000 + (st.rtt / 2 if st.rtt >= 0 else HOP_GUESS)

    def path_changed(self, j: int) -> None:
        """Our path on substream ``j`` changed but we still have a feed: our children
        on ``j`` hear it within ``STATUS_MIN_GAP`` (their paths, and their loop checks,
        stay exact down the tree); other neighbours with the periodic STATUS. A
        change high in a tree thus costs one STATUS per descendant, not one per
        descendant's neighbour. (A neighbour ranking us on a stale path cannot make
        a loop: we refuse a SUBSCRIBE from a peer on our own, exact, path.)"""
        self.children_dirty |= 1 << j

    def _unsubscribe(self, key: bytes | None, j: int) -> None:
        st = self.peers.get(key) if key is not None else None
        if st is not None and st.parent_mask & (1 << j):
            st.parent_mask &= ~(1 << j)
            self.actions.append(Send(st.key, wire.Unsubscribe(stream=self.skey, mask=1 << j)))

    def _unsubscribe_standby(self, j: int) -> None:
        sb, self.standby[j] = self.standby[j], None
        self._unsubscribe(sb, j)

    def lose_parent(self, j: int) -> None:
        """Our parent on ``j`` is gone (left, lost its feed, withheld): back to the
        standby parent if we still have one with a feed, else none."""
        sb, self.standby[j] = self.standby[j], None
        self.suspect_at[j] = INF
        self.delay.fresh[j] = -1.0  # (``fresh_parent_lag``: the next parent sets its own)
        st = self.peers.get(sb) if sb is not None else None
        msg = st.status if st is not None else None
        if st is not None and msg is not None and st.parent_mask & (1 << j) and j < len(msg.paths) \
                and msg.paths[j] and self.tag not in msg.paths[j]:
            self.parents[j] = st.key
            self.unfed_since[j] = INF
            self.miss_run[j] = 0
            self.parent_pushed_any[j] = True  # it was pushing to us all along
            self.pushes[j] = 0
            self.pushed_seq[j] = max(self.pushed_seq[j], self.log.latest)
            self.taken_seq[j] = -1  # it was pushing to us all along
            self.delay.update(j, True)
            self.paths[j] = list(msg.paths[j]) + [self.tag]
            self.path_changed(j)
            return
        self._unsubscribe(sb, j)
        self.parents[j] = None
        self.unfed_since[j] = INF
        self.miss_run[j] = 0
        self.parent_pushed_any[j] = False
        self.pushes[j] = 0
        self.delay.update(j, self.parents[j] is not None)
        self.paths[j] = []
        self.status_dirty = True

    def on_parent_status(self, st: PeerState, msg: wire.Status, now: float) -> None:
        """A STATUS from ``st``: follow its paths on the substreams it feeds us."""
        silent = False
        for j in _bits(st.parent_mask):
            path = msg.paths[j] if j < len(msg.paths) else []
            if self.parents[j] != st.key:  # our standby parent on j
                if not path or self.tag in path:
                    self._unsubscribe_standby(j)
                continue
            if path and now - self.pushed_at[j] > SILENT_PARENT \
                    and msg.latest > self.pushed_seq[j] + 2 * self.config.substreams:
                # Fed, ahead of us by two rounds of every substream, and nothing pushed for
                # SILENT_PARENT: it does not count us as a child (our SUBSCRIBE's effect was
                # lost: a link it closed and we kept, a restart). Not a strike: ask again.
                self.counters.parents_silent += 1
                self.lose_parent(j)
                self._unsubscribe(st.key, j)
                if st.silences:
                    # silent again: not a lost message but a parent that does not push (a
                    # withholder whose victims get nothing from elsewhere): not re-picked
                    st.rejected_until[j] = now + self.config.withhold_backoff * st.silences
                st.silences += 1
                silent = True
                continue
            if path:
                self.unfed_since[j] = INF
            elif self.unfed_since[j] == INF:
                # Our parent lost its own feed: it is finding another, which normally
                # takes a round trip. Keep it (and our path, so our subtree does not
                # cascade) for up to subscribe_timeout; repairs cover the gap.
                self.unfed_since[j] = now
                continue
            elif now < self.unfed_since[j] + self.config.subscribe_timeout:
                continue
            if not path or self.tag in path:
                # (a parent that took us and then lost its feed for subscribe_timeout before
                # it served us: backed off, :meth:`_flapped`; a loop is dropped at once and
                # costs us nothing: no back-off)
                flapped = not path and \
                    self.pushed_seq[j] < self.taken_seq[j] + FLAP_SERVED * self.config.substreams
                self.lose_parent(j)
                self._unsubscribe(st.key, j)
                if flapped:
                    self._flapped(st, j, now)
            else:
                new_path = list(path) + [self.tag]
                if new_path != self.paths[j]:
                    deep = self.config.deep_look
                    if deep > 0 and len(new_path) - 1 >= deep > len(self.paths[j]) - 1:
                        # ``deep_look``: an ancestor moved and we are deep now: look soon
                        short = self.config.start_look if self.config.start_look > 0 else DEEP_DWELL
                        if now + short < self.look_at:
                            self.look_at = now + short
                        self.counters.deep_looks += 1
                    self.paths[j] = new_path
                    self.path_changed(j)
        if silent:
            self.select_parents(now)

    def _flapped(self, st: PeerState, j: int, now: float) -> None:
        """``st`` was dropped as our parent on ``j`` for a feed lost past
        ``subscribe_timeout`` before it had pushed us ``FLAP_SERVED`` rounds of chunks newer
        than what we held when we took it: no strike (an honest parent can lose its feed),
        but not picked again for ``j`` for :func:`flap_backoff` of its drops so far. Without
        it a liar that advertises the best path, pushes one chunk (so we let the previous
        parent go) and then says it lost its feed (kept ``subscribe_timeout``, nothing
        counted against it: no pushes for 2 s, our subtree's included) was taken again at
        our next periodic look, for ever (``bench/atk7_parent_flap.py``). A parent that had
        served us is not counted (backing off honest relays starved for a while cost more
        than it saved), nor one whose path came to run through us (dropped at once, it
        costs nothing; backing it off made the liar's other lies cost more:
        docs/benchmarks.md, h-atk7)."""
        st.flaps += 1
        self.counters.parents_flapping += 1
        if not self.config.flap_backoff:
            return
        until = now + flap_backoff(self.config, st.flaps)
        if st.rejected_until.get(j, 0.0) < until:
            st.rejected_until[j] = until

    # ---- withholding parents -------------------------------------------------
    def parent_pushed(self, j: int, seq: int, now: float, delay: float = -1.0) -> None:
        """Our parent on ``j`` pushed chunk ``seq`` of it (new or a duplicate), ``delay`` s
        after the chunk's time: it serves, and the standby parent (if any) is released."""
        if self.config.parent_overclaim and delay >= 0:
            self._overclaim(j, delay)
        self.miss_run[j] = 0
        if self.suspect_at[j] != INF:
            self.suspect_at[j] = INF  # (``withhold_confirm``) its pushes were on their way
            self.counters.withhold_cleared += 1
        if self.delay.fresh[j] >= 0:
            self.delay.fresh[j] = -1.0  # (``fresh_parent_lag``) it pushes: its record rules
            self.delay.update(j, True)
        self.parent_pushed_any[j] = True
        self.pushes[j] += 1
        self.pushed_at[j] = now
        if seq > self.pushed_seq[j]:
            self.pushed_seq[j] = seq
        if self.standby[j] is not None:
            self._unsubscribe_standby(j)

    def _overclaim(self, j: int, delay: float) -> None:
        """``parent_overclaim``: one sample of how much later our parent's push on ``j``
        came than its STATUS predicted (its advertised lag + half our RTT to it)."""
        parent = self.parents[j]
        st = self.peers.get(parent) if parent is not None else None
        msg = st.status if st is not None else None
        if st is None or msg is None or st.is_broadcaster or st.rtt < 0 or j >= len(msg.lags) \
                or msg.lags[j] == wire.LAG_UNKNOWN:
            return
        excess = delay - msg.lags[j] / 1000 - st.rtt / 2
        st.overclaim += (excess - st.overclaim) / 8

    def got_elsewhere(self, j: int, seq: int, chunk_time: float, now: float) -> None:
        """A new chunk ``seq`` of substream ``j`` came from someone other than our
        parent (a repair, the origin) before the parent pushed it."""
        parent = self.parents[j]
        if parent is None or chunk_time < self.changed_at[j] or self.unfed_since[j] != INF:
            return  # made before we subscribed, or the parent told us it is starved
        # No evidence before the parent's usual push time (it has pushed to us: its pushes
        # usually come later than this, a slow parent), nor, for chunks made in its first
        # FRESH_GRACE seconds, before the origin fallback (on a fresh QUIC link the first
        # chunks are paced over an RTT or more). With a short playout delay repairs and
        # the origin often beat a deep tree's push: at 0.5 s the old rule took honest
        # parents for withholders. One that never pushes gets no more than that grace.
        if self.parent_pushed_any[j]:
            late = self.delay.usual_push(j)
        elif chunk_time < self.changed_at[j] + FRESH_GRACE:
            late = self.delay.origin_at
        else:
            late = 0.0
        if now - chunk_time < late:
            return
        if self.miss_run[j] == 0:
            self.miss_first[j] = seq
        self.miss_run[j] += 1
        if self.miss_run[j] < self.config.withhold_run:
            return
        st = self.peers.get(parent)
        confirm = self.config.withhold_confirm
        if confirm > 0:
            # (``withhold_confirm``) judged once it has had an RTT and ``confirm`` more to
            # push anything of ``j``: a loss on the link holds back the chunks behind it
            if self.suspect_at[j] == INF:
                rtt = st.rtt if st is not None and st.rtt > 0 else 0.0
                self.suspect_at[j] = now + confirm + rtt
            return
        self._withheld(j, now)

    def _withheld(self, j: int, now: float) -> None:
        """Our parent on ``j`` pushed none of ``withhold_run`` chunks in a row: dropped
        for ``j``, backed off, and judged by its next STATUS (a strike if it claims them)."""
        parent = self.parents[j]
        self.suspect_at[j] = INF
        if parent is None:
            return
        st = self.peers.get(parent)
        first = self.miss_first[j]
        self.counters.parents_withholding += 1
        self.lose_parent(j)
        self.actions.append(Send(parent, wire.Unsubscribe(stream=self.skey, mask=1 << j)))
        if st is None:
            return
        st.parent_mask &= ~(1 << j)
        st.rejected_until[j] = now + self.config.withhold_backoff * (1 + st.withholds)
        # Judged by its next STATUS: it must claim the chunk on the same path. A parent
        # starved by its own (withholding) parent switches, so its path changes.
        st.withheld_seq = first
        msg = st.status
        st.withheld_path = list(msg.paths[j]) if msg is not None and j < len(msg.paths) else []
        self.select_parents(now)

    @staticmethod
    def _claims(msg: wire.Status, j: int, seq: int) -> bool:
        """``msg`` says its sender is fed on ``j`` and holds ``seq``."""
        return j < len(msg.paths) and bool(msg.paths[j]) and status_holds(msg, seq)

    def judge_withheld(self, st: PeerState, msg: wire.Status) -> None:
        """The STATUS after a withheld run: a strike if it claims the first chunk it
        withheld (one STATUS judges; a starved parent's does not claim it)."""
        seq, st.withheld_seq = st.withheld_seq, -1
        j = seq % self.config.substreams
        if not self._claims(msg, j, seq) or msg.paths[j] != st.withheld_path:
            return
        st.withholds += 1
        self.counters.withhold_strikes += 1
        if st.withholds == self.config.withhold_limit:
            self.counters.withholders_dropped += 1
            self.actions.append(DropPeer(st.key, ErrorCode.TOO_MANY_ERRORS,
                                          f"withholding: {st.withholds} substreams subscribed and "
                                          f"not pushed; last from seq {seq}"))

    def remove_peer(self, key: bytes, now: float) -> None:
        """``key`` left (already out of the peer table): find other parents."""
        for j in range(self.config.substreams):
            if self.standby[j] == key:
                self.standby[j] = None
            if self.parents[j] == key:
                self.lose_parent(j)
        self.select_parents(now)

    def next_timeout(self, t: float) -> float:
        """The earliest SUBSCRIBE timeout or withholding verdict, if before ``t``."""
        for d in self.suspect_at:
            if d < t:
                t = d
        if self.peer_timers:
            timeout = self.config.subscribe_timeout
            for key in list(self.peer_timers):
                st = self.peers.get(key)
                if st is None or not st.pending_mask:
                    del self.peer_timers[key]
                    continue
                if st.pending_since + timeout < t:
                    t = st.pending_since + timeout
        return t

    def check_timeouts(self, now: float) -> None:
        """An unanswered SUBSCRIBE counts as rejected after ``subscribe_timeout``; a
        suspected parent that pushed nothing of its substream since is withholding."""
        cfg = self.config
        for j, d in enumerate(self.suspect_at):
            if d <= now:
                self._withheld(j, now)
        for key in list(self.peer_timers):
            st = self.peers.get(key)
            if st is None:
                continue
            if st.pending_mask and now >= st.pending_since + cfg.subscribe_timeout:
                for j in _bits(st.pending_mask):
                    st.rejected_until[j] = now + cfg.reject_backoff
                st.pending_mask = 0
                self.select_parents(now)

    def status_paths(self) -> list[list[bytes]]:
        """STATUS ``paths``: ours where we have a feed, ``[]`` elsewhere."""
        return [p if (self.is_source or self.parents[j] is not None) else []
                for j, p in enumerate(self.paths)]


def flap_backoff(config: SwarmConfig, flaps: int) -> float:
    """How long a parent dropped for the ``flaps``-th time for a feed lost before it served
    us is not picked again for that substream: ``reject_backoff`` the first time (an honest
    parent can lose its feed), then ``withhold_backoff`` per earlier drop (20 s, 40 s, ...),
    at most ``FLAP_BACKOFF_MAX``: what a silent parent gets the second time."""
    if flaps <= 1:
        return config.reject_backoff
    return min(config.withhold_backoff * (flaps - 1), FLAP_BACKOFF_MAX)


def _bits(mask: int) -> list[int]:
    return [j for j in range(mask.bit_length()) if mask >> j & 1]
