"""The swarm of one live stream, as seen by one node — sans-I/O.

Theory of operation
-------------------
**Push trees.** The stream is split into ``K`` substreams (chunk ``seq`` belongs
to substream ``seq % K``). For each substream a node picks one *parent* among
its neighbours and sends SUBSCRIBE; the parent then pushes every chunk of that
substream the moment it has verified it. So each substream is a tree rooted at
the broadcaster, and a chunk travels one one-way delay per hop, with no
request round trip. A node accepts children while its upload cap has room
(each subscribed substream costs ``bitrate / K``).

**Loop freedom.** STATUS carries, per substream, the path of 8-byte peer tags
from the broadcaster to the sender. A node never picks a parent whose path
contains itself, and drops a parent whose path comes to contain it.

**Fastest path, not fewest hops.** STATUS also carries, per substream, the
sender's smoothed delay from a chunk's time to its arrival there. A node
prefers the parent through which chunks would arrive first (that delay plus
half the RTT the transport measured to it), and once per status interval swaps
a parent for one ``SWITCH_GAIN`` faster (at most once per ``SWITCH_DWELL``).

**Repair.** The chunk log tells which chunks must exist by now. A chunk that
has not arrived ``repair_after`` seconds after its estimated completion is
REQUESTed from another neighbour that has a feed of its substream; requests
are *held* by the receiver until it has the chunk or the deadline passes
(then MISSING), so a repair costs one extra one-way delay, not a poll loop.

**Origin fallback.** ``origin_margin`` seconds before a chunk's playback
deadline, if peers have not delivered it, the node emits ``FetchOrigin`` (the
adapter does HTTP GET on the origin/CDN). At the deadline a chunk still absent
is given up (``Skip``): late chunks are dropped, never queued.
A viewer that has not started ``origin_start_after`` seconds after its join
(no peer reached it with a fresh keyframe) emits ``FetchOrigin(ORIGIN_LATEST)``:
the origin's latest keyframe starts it, and the fallback above then carries it
until peers do.

**Upload.** Pushes and answers go through :class:`UploadScheduler`, a token
bucket at the node's upload cap that serves newest chunks first and drops
whatever is past its deadline.

**Withholding parents.** A parent that pushes none of ``withhold_run``
consecutive chunks of its substream (they came from repairs or the origin
first) and then nothing of it for ``withhold_confirm`` + the RTT (a loss holds
back a run's chunks that long) is dropped for it and not picked again for a
while; strikes when its STATUS claimed them, dropped past ``withhold_limit``
(:mod:`.tree`).

**Strangers.** Every peer is hostile until its bytes verify. STATUS claims are
hints: the start is a verified, fresh keyframe and the chunk clock learns only
from verified chunks, so a claim above it is a lie (:mod:`.claims`). REQUESTs
are rationed per peer and held requests capped (:mod:`.pull`). A copy of a
held chunk that is not byte-identical is verified like a new one. Every cap has
a counter in :class:`SwarmCounters`; a peer past a limit is dropped (``DropPeer``).

**Parts.** :mod:`.tree` (push trees), :mod:`.delay` (push delay, repair timer),
:mod:`.repair` (wants, repair requests, origin fallback, skips), :mod:`.claims`
(start probes, claim checks), :mod:`.serve` and :mod:`.pull` (answers to
REQUEST, request budget, held requests), :mod:`.swarmdefs` (config, actions,
per-peer state, counters; re-exported here). This module wires them: inputs,
STATUS, the start and the timers.

Nothing here reads a clock or touches a socket: inputs carry ``now``, outputs
are actions drained with :meth:`Swarm.actions`, and :meth:`Swarm.get_timer`
says when to call :meth:`Swarm.handle_timer` next.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from . import wire
from .chunklog import ChunkLog
from .claims import ClaimCheck, claims_chunks
from .delay import REPAIR_MARGIN, DelayEstimator
from .identity import peer_tag
from .repair import RepairPicker
from .serve import PullServer
from .stream import FLAG_RUN_START, StreamId, is_end, is_keyframe, verify_chunk
from .swarmdefs import (
    DEFAULT_CHUNK_MS,
    ECHO_KEPT,
    INF,
    LATEST_FRESH,
    ORIGIN_LATEST,
    ORIGIN_OVERTIME,
    SOURCE_BROADCASTER,
    SOURCE_ORIGIN,
    SOURCE_P2P,
    SOURCE_SELF,
    U64_MAX,
    Deliver,
    DropPeer,
    FetchOrigin,
    PeerAccounts,
    PeerState,
    Push,
    Send,
    Skip,
    SwarmAction,
    SwarmConfig,
    SwarmCounters,
)
from .tree import HOP_GUESS, SILENT_PARENT, SWITCH_DWELL, SWITCH_GAIN, PushTree
from .uplink import UplinkProbe
from .upload import UploadScheduler
from .wire import ErrorCode

#: the swarm's public names (the parts' definitions are re-exported from here)
__all__ = [
    "DEFAULT_CHUNK_MS", "HOP_GUESS", "INF", "LATEST_FRESH", "ORIGIN_LATEST", "ORIGIN_OVERTIME", "REPAIR_MARGIN", "SOURCE_BROADCASTER", "SOURCE_ORIGIN", "SOURCE_P2P",
    "SILENT_PARENT", "SOURCE_SELF", "STATUS_MIN_GAP", "SWITCH_DWELL", "SWITCH_GAIN", "U64_MAX", "Deliver",
    "DropPeer", "FetchOrigin", "PeerState", "Push", "Send", "Skip", "Swarm", "SwarmAction",
    "SwarmConfig", "SwarmCounters",
]

STATUS_MIN_GAP = 0.05  #: at most one STATUS per 50 ms on tree changes
#: an end marker older than this (its signed time, s) ends nothing: an earlier run's, replayed
#: to a newcomer of the restarted stream before its first chunk (it is relayed all the same)
END_MAX_AGE = 30.0
#: an end marker is sent to each neighbour with at least this long to go (s)
END_SEND = 5.0
#: accounts of departed peers kept for their return (``Swarm.remove_peer``), oldest forgotten
DEPARTED_MAX = 1024

class Swarm:
    """One node's view of one stream's swarm. See the module docstring."""

    def __init__(self, sid: StreamId, self_key: bytes, config: SwarmConfig, *,
                 is_source: bool = False, rng: random.Random | None = None,
                 now: float = 0.0,
                 verify: Callable[[StreamId, wire.ChunkMsg], bool] = verify_chunk) -> None:
        self.sid = sid
        self.skey = sid.key
        self.self_key = self_key
        self.tag = peer_tag(self_key)
        self.config = config
        self.is_source = is_source
        #: chunk verifier; the simulator passes a memoising one (same answer, less CPU)
        self.verify = verify
        self.rng = rng or random.Random()
        self.log = ChunkLog(window=config.window_chunks, chunk_interval=config.chunk_ms / 1000)
        self.peers: dict[bytes, PeerState] = {}
        #: the accounts of peers that left (LEAVE, a closed link), given back if they join
        #: again: a fresh PeerState came with a full pull budget and no strikes, lies or
        #: back-offs, so LEAVE + JOIN every 0.5 s drew 4x the stream rate per link and
        #: was never cut off (bench/atk6_join_churn.py); insertion-ordered, oldest forgotten
        #: (a record, not the PeerState: its last STATUS and masks are not kept)
        self._departed: dict[bytes, PeerAccounts] = {}
        self.counters = SwarmCounters()
        self.joined_at = now
        self.start_seq: int | None = 0 if is_source else None
        k = config.substreams
        self.upload = UploadScheduler(config.upload_kbps, now)
        #: ``upload_max_kbps``: the upload cap probed against the children's hop delay
        #: (None: ``upload_kbps``, fixed)
        self.uplink: UplinkProbe | None = None
        if 0 < config.upload_kbps < config.upload_max_kbps:
            self.uplink = UplinkProbe(config.upload_kbps, config.upload_max_kbps, config.bitrate_kbps,
                                      interval=config.probe_interval, quiet=config.probe_quiet,
                                      busy=config.probe_busy, now=now,
                                      floor_kbps=min(max(0, config.upload_min_kbps), config.upload_kbps))
        self._actions: list[SwarmAction] = []
        #: per substream: the push delay learnt from our parent, and the repair timer
        self.delay = DelayEstimator(k, config.repair_after, config.playout_delay,
                                    config.origin_margin)
        self.tree = PushTree(self.tag, self.skey, config, is_source=is_source, peers=self.peers,
                             log=self.log, delay=self.delay, counters=self.counters,
                             actions=self._actions, rng=self.rng)
        #: the tree's lists (the same objects, never rebound): parent key / path per substream
        self.parents: list[bytes | None] = self.tree.parents
        self.paths: list[list[bytes]] = self.tree.paths
        self._next_status = now
        self._last_status = now - STATUS_MIN_GAP
        #: the chunks we lack and their timers: repair requests, origin, skip
        self.repair = RepairPicker(self.skey, config, log=self.log, delay=self.delay,
                                   tree=self.tree, peers=self.peers, counters=self.counters,
                                   actions=self._actions, rng=self.rng, joined_at=now)
        #: claims are hints: start probes, plausibility against the signed clock, lies
        self.claims = ClaimCheck(self.skey, config, log=self.log, peers=self.peers,
                                 counters=self.counters, actions=self._actions)
        #: answers to REQUESTs: pull budgets, held requests (capped, on a deadline heap)
        self.pulls = PullServer(self.skey, config, log=self.log, upload=self.upload,
                                peers=self.peers, claims=self.claims, repair=self.repair,
                                counters=self.counters, actions=self._actions)
        self.held = self.pulls.held
        #: not started by then: ask the origin for the latest keyframe (INF: never)
        self.origin_start_at = now + config.origin_start_after if (config.use_origin and not is_source) else INF
        #: ``origin_start_lonely``: with no neighbour by then, the origin start comes forward
        lonely = config.origin_start_lonely
        self.lonely_start_at = now + lonely if (0 < lonely and now + lonely < self.origin_start_at) else INF

    # ---- inputs ----------------------------------------------------------
    def add_peer(self, key: bytes, now: float, *, is_broadcaster: bool = False,
                 rtt: float = -1.0, start: bool = False, asked: bool = False) -> None:
        """A neighbour joined the stream; ``rtt`` is the transport's RTT estimate (s)
        when it has one (QUIC measures it during the handshake). ``start``: its JOIN
        asked for a start (our latest keyframe follows our STATUS); ``asked``: ours
        asked it for one (§9.1)."""
        if key in self.peers or key == self.self_key:
            return
        st = PeerState(key, peer_tag(key), is_broadcaster=is_broadcaster
                       or key == self.sid.broadcaster, rtt=rtt)
        old = self._departed.pop(key, None)
        if old is not None:  # back again: its accounts, not fresh ones
            old.give_back(st)
            self.counters.peers_rejoined += 1
        self.peers[key] = st
        self._send_status(key)
        if start:
            self.pulls.on_start(st, now)
        if asked and self.start_seq is None:
            self.claims.expect_start(st, now)

    def set_rtt(self, key: bytes, rtt: float) -> None:
        """The transport's current smoothed RTT to ``key`` (s); used to pick parents."""
        st = self.peers.get(key)
        if st is not None and rtt >= 0:
            st.rtt = rtt

    def in_tree(self, key: bytes) -> bool:
        """Does ``key`` carry this stream's trees with us: our parent on a substream (or the
        standby parent of a swap), a subscription to it under way, or our child? (The peer
        policy keeps such a neighbour: ``PolicyConfig.near_swap``.)"""
        st = self.peers.get(key)
        if st is None:
            return False
        return bool(st.parent_mask | st.children_mask | st.pending_mask) or key in self.tree.standby

    def remove_peer(self, key: bytes, now: float) -> None:
        st = self.peers.pop(key, None)
        if st is None:
            return
        departed = self._departed
        if len(departed) >= DEPARTED_MAX:
            del departed[next(iter(departed))]
        if st.sink_asked:
            self.repair.sink_left(st, now)  # (``repair_guard``: its record, if it comes back)
        departed[key] = PeerAccounts.of(st)
        self.held.forget(key)
        self.claims.forget(key)
        self.tree.remove_peer(key, now)

    def publish(self, chunk: wire.ChunkMsg, now: float) -> None:
        """Broadcaster: a freshly signed chunk enters the swarm."""
        self._accept(chunk, None, SOURCE_SELF, now)

    def on_chunk(self, peer: bytes, chunk: wire.ChunkMsg, now: float) -> None:
        st = self.peers.get(peer)
        if st is None:
            return
        held = self.log.get(chunk.seq)
        if held is not None:
            # A copy of a chunk we hold is a duplicate only if it is the same bytes;
            # anything else is verified like a new chunk, so a forger is cut off.
            if held is not chunk and held != chunk:
                if not self.verify(self.sid, chunk):
                    self._bad_chunk(st)
                    return
                self.counters.duplicates_mismatched += 1
            if st.sink_asked:
                self.repair.sink_answer(st, chunk.seq, now)  # (``repair_guard``: an answer?)
            self.counters.duplicates += 1
            self.counters.duplicate_bytes += len(chunk.payload)
            j = chunk.seq % self.config.substreams
            if peer == self.parents[j]:
                tree = self.tree
                if tree.miss_run[j] > 0 and chunk.seq >= tree.miss_first[j] and st.asked_back \
                        and chunk.seq in st.asked_back:
                    # one of the pushes it is suspected of withholding, which it had from us:
                    # no push (a withholder that pulled those very chunks from its child and
                    # echoed them back cleared the suspicion each time)
                    self.counters.parent_echoes += 1
                    return
                # a repair beat the parent's push: still what the tree takes, if it came in
                # time to play, or it is one of the pushes whose absence made us suspect the
                # parent (a loss held them back: ``withhold_confirm``). Any other copy past its
                # deadline serves nobody: a parent that pushed only stale copies of what we
                # held reset every count of missed pushes and taught the delay model its
                # pushes come late (attack audit, 2026-12-07)
                if now > self.repair.deadline_of(chunk.seq) and (
                        tree.miss_run[j] == 0 or chunk.seq < tree.miss_first[j]):
                    self.counters.parent_stale_copies += 1
                    return
                took = now - self.log.time_of(chunk.seq)
                self.delay.sample(j, took, True)
                self.tree.parent_pushed(j, chunk.seq, now, took)
            return
        log = self.log
        if log.latest >= 0 and chunk.seq < log.low:
            # below the window: dropped before its signature costs a check (an earlier
            # run's chunks replayed, a relay far behind), counted (they went unseen: found
            # 2026-12-06 from outside)
            self.counters.chunks_too_old += 1
            return
        if not self.verify(self.sid, chunk):
            self._bad_chunk(st)
            return
        if st.sink_asked:
            self.repair.sink_answer(st, chunk.seq, now)  # (``repair_guard``: an answer?)
        st.given += 1
        source = SOURCE_BROADCASTER if st.is_broadcaster else SOURCE_P2P
        self._accept(chunk, peer, source, now)

    def _unsolicited(self, peer: bytes, j: int, now: float) -> None:
        """A new chunk of substream ``j`` from ``peer``, not asked for: a push. If we are
        not subscribed to it on ``j`` (nor waiting for its answer), the two sides disagree
        (an answer lost with a closed duplicate link, a peer that restarted): it books its
        slots for us and pushes for ever. Tell it which substreams we do not take from it."""
        st = self.peers.get(peer)
        if st is None or (st.parent_mask | st.pending_mask) >> j & 1:
            return
        self.counters.pushes_unsolicited += 1
        if now < st.stray_told_at + 1.0:
            return
        st.stray_told_at = now
        mask = ((1 << self.config.substreams) - 1) & ~(st.parent_mask | st.pending_mask)
        self._actions.append(Send(peer, wire.Unsubscribe(stream=self.skey, mask=mask)))

    def _bad_chunk(self, st: PeerState) -> None:
        self.counters.bad_chunks += 1
        st.bad_chunks += 1
        if st.bad_chunks >= self.config.bad_chunk_limit:
            self._actions.append(DropPeer(st.key, ErrorCode.BAD_CHUNK,
                                          f"{st.bad_chunks} chunks failed verification"))

    def on_push_dropped(self, peer: bytes, now: float, slack: float, nbytes: int = 0) -> None:
        """The transport dropped copies we sent ``peer`` unsent at their deadline, which was
        ``slack`` s away when we sent them: our uplink's queue, or its link's window, held
        them that long. Where ``peer`` is our child and that is past ``probe_busy``, the
        uplink probe hears it as the child's vote for busy (a copy sent just before its
        deadline, because it reached us late, says nothing of our uplink). No action follows."""
        self.counters.pushes_dropped += 1
        st = self.peers.get(peer)
        if self.uplink is not None and st is not None and st.children_mask and slack > self.config.probe_busy:
            if self.uplink.dropped(peer, nbytes, now):
                self._probe_uplink(now)

    def on_origin(self, seq: int, chunk: wire.ChunkMsg | None, now: float, held: float = 0.0,
                  took: float = -1.0) -> None:
        """Result of a ``FetchOrigin``: the chunk, or None (not there / failed). For
        ``ORIGIN_LATEST`` the adapter passes the keyframe's seq (any chunk is verified and
        only a fresh keyframe starts playback; a failure is retried on the start timer).
        ``held``: how long a CDN edge said it held the request for the chunk to come (s), not
        part of the fetch time learnt. ``took``: for ``ORIGIN_LATEST``, how long the
        keyframe's own request took (the adapter's timing; it primes the learnt fetch time,
        :meth:`oasis.core.repair.RepairPicker.origin_done`)."""
        if chunk is None or chunk.seq != seq:
            self.repair.origin_done(seq, False, now)
            return
        if seq in self.log:
            self.repair.origin_done(seq, True, now, held)
            return
        if not self.verify(self.sid, chunk):
            # (timed as an answer, as before; but unsigned bytes prime nothing: ``took``)
            self.repair.origin_done(seq, True, now, held)
            self.counters.bad_chunks += 1
            return
        self.repair.origin_done(seq, True, now, held, took)
        self._accept(chunk, None, SOURCE_ORIGIN, now)

    def on_message(self, peer: bytes, msg: wire.Message, now: float) -> None:
        st = self.peers.get(peer)
        if st is None:
            return
        if isinstance(msg, wire.Status):
            self._on_status(st, msg, now)
        elif isinstance(msg, wire.Subscribe):
            self.tree.on_subscribe(st, msg, now)
        elif isinstance(msg, wire.SubscribeAck):
            self.tree.on_subscribe_ack(st, msg, now)
        elif isinstance(msg, wire.Unsubscribe):
            # freed slots: told with the next periodic STATUS (not urgent)
            st.children_mask &= ~msg.mask
            if msg.mask & st.parent_mask:
                # from our parent: it sheds us (its uplink carries fewer children)
                self.tree.shed_by(st, msg.mask, now)
        elif isinstance(msg, wire.Request):
            if st.parent_mask >> (msg.seq % self.config.substreams) & 1:
                # our parent on that substream pulls its chunk from us: a copy of it from
                # the parent later is our own, echoed (``parent_echoes``)
                back = st.asked_back
                back.append(msg.seq)
                if len(back) > ECHO_KEPT:
                    del back[0]
            self.pulls.on_request(st, msg, now)
        elif isinstance(msg, wire.Cancel):
            self.pulls.on_cancel(st, msg.seq)
        elif isinstance(msg, wire.Missing):
            self.claims.on_missing(st, msg.seq, now)
            self.repair.on_missing(st, msg.seq, msg.refused, now)
        elif isinstance(msg, wire.Leave):
            self.remove_peer(peer, now)

    # ---- timers ------------------------------------------------------------
    def get_timer(self) -> float | None:
        # Hot path (called after every input): plain comparisons, no min() calls.
        t = self._next_status
        tree = self.tree
        if (tree.status_dirty or tree.children_dirty) and self._last_status + STATUS_MIN_GAP < t:
            t = self._last_status + STATUS_MIN_GAP
        t = tree.next_timeout(t)
        if tree.look_at < t:
            t = tree.look_at
        if self.held.count:
            d = self.held.next_deadline()  # O(1): a heap, whatever the number held
            if d < t:
                t = d
        if self.claims.probes:
            t = self.claims.next_due(t)
        if self.start_seq is not None and not self.is_source:
            t = self.repair.next_timer(t)
        elif self.repair.wants_t < t:
            t = self.repair.wants_t
        up = self.upload.next_release()
        if up is not None and up < t:
            t = up
        if self.start_seq is None:
            if self.origin_start_at < t:
                t = self.origin_start_at
            if self.lonely_start_at < t:
                t = self.lonely_start_at
        return t

    def handle_timer(self, now: float) -> None:
        cfg = self.config
        if now >= self._next_status:
            if self.uplink is not None and now >= self.uplink.next_at:
                self._probe_uplink(now)  # (new slots go out with this STATUS)
            self._broadcast_status(now)
            self._next_status = now + cfg.status_interval
            # Periodic look for better parents; missing parents are sought at once elsewhere.
            self.tree.select_parents(now, improve=True)
        elif now >= self._last_status + STATUS_MIN_GAP:
            if self.tree.status_dirty:
                self._broadcast_status(now)
            elif self.tree.children_dirty:
                self._status_to_children(now)
        if now >= self.tree.look_at:
            # ``start_look``: a first parent's early look (the periodic look's work, sooner)
            self.tree.look_at = INF  # (re-armed by the look for first parents not yet due)
            self.tree.select_parents(now, improve=True)
        self.tree.check_timeouts(now)
        if self.held.count:
            self.pulls.expire(now)
        if self.claims.probes:
            self.claims.check(now)
        if not self.is_source:
            self.repair.track(now, self.start_seq is not None)
            if self.start_seq is None and now >= self.lonely_start_at:
                self.lonely_start_at = INF
                if not self.peers and now < self.origin_start_at:
                    # no neighbour yet: no start can be on its way from a peer
                    self.origin_start_at = now
                    self.counters.origin_lonely_starts += 1
            if self.start_seq is None and now >= self.origin_start_at:
                # no peer gave us a start in time: the latest keyframe from the origin
                self.origin_start_at = now + cfg.origin_start_retry
                self.counters.origin_starts += 1
                self._actions.append(FetchOrigin(ORIGIN_LATEST, self.origin_start_at))
        self.pulls.flush(now)

    def _probe_uplink(self, now: float) -> None:
        """``upload_max_kbps``: the uplink probe's decision; a new cap re-counts the slots
        and re-rates the upload queue."""
        up = self.uplink
        assert up is not None
        before = up.kbps
        dropped = up.drops  # (decide() starts a new set: this one stays the interval's)
        kbps = up.decide(now, self.tree.free_slots() < self.config.substreams,
                         self.upload.counters.released_bytes)
        if kbps == before:
            return
        if kbps > before:
            self.counters.upload_raised += 1
        else:
            self.counters.upload_cut += 1
        self.tree.cap_kbps = kbps
        self.upload.set_rate(kbps, now)
        if kbps < before:
            self._shed(dropped)

    def _shed(self, dropped: set[bytes]) -> None:
        """The cap fell below what our children take: end the substreams past the slots
        left (UNSUBSCRIBE to the child), those of children that had copies dropped first,
        then the peers that came last; each finds another parent at once."""
        excess = -self.tree.free_slots_signed()
        if excess <= 0:
            return
        # (in the order the peers came, not the drop set's: its order is the hash seed's,
        # and the simulator is deterministic per seed)
        last_first = list(reversed(self.peers.values()))
        order = [st for st in last_first if st.key in dropped] \
            + [st for st in last_first if st.key not in dropped]
        for st in order:
            if excess <= 0:
                break
            mask = 0
            m = st.children_mask
            j = self.config.substreams - 1
            while j >= 0 and excess > 0:
                if m >> j & 1:
                    mask |= 1 << j
                    excess -= 1
                j -= 1
            if mask:
                st.children_mask &= ~mask
                self.counters.children_shed += bin(mask).count("1")
                self._actions.append(Send(st.key, wire.Unsubscribe(stream=self.skey, mask=mask)))

    @property
    def upload_kbps(self) -> int:
        """The upload cap now (kbit/s; 0: none): ``upload_kbps``, or the uplink probe's."""
        return self.tree.cap_kbps

    def _hop_sample(self, st: PeerState, msg: wire.Status) -> None:
        """``upload_max_kbps``: a child's STATUS: its hop delay from us (its lag less ours,
        lowest over the substreams we feed it) over the lowest seen, to the uplink probe."""
        up = self.uplink
        assert up is not None
        low = INF
        mask = st.children_mask
        lags = msg.lags
        paths = msg.paths
        delay = self.delay
        for j in range(min(self.config.substreams, len(lags), len(paths))):
            if not mask >> j & 1 or lags[j] == wire.LAG_UNKNOWN:
                continue
            path = paths[j]
            if len(path) < 2 or path[-2] != self.tag:
                continue  # not fed by us (yet): its lag is another parent's
            if self.is_source:
                own = 0.0
            elif self.parents[j] is None or not delay.known[j]:
                continue
            else:
                own = delay.lag[j]
            d = lags[j] / 1000 - own
            if d < low:
                low = d
        if low == INF:
            return
        if low < st.hop_low:
            st.hop_low = low
        up.sample(st.key, low - st.hop_low)

    def actions(self) -> list[SwarmAction]:
        out = self._actions[:]  # the list is shared with the tree: emptied, not rebound
        self._actions.clear()
        return out

    # ---- status & tree -------------------------------------------------------
    def status(self) -> wire.Status:
        log = self.log
        return wire.Status(
            stream=self.skey, latest=max(log.latest, 0), have=log.have_bitmap() if log.latest >= 0 else 0,
            keyframe=max(log.latest_keyframe, 0), slots=self.free_slots(),
            paths=self.tree.status_paths(),
            lags=self._status_lags())

    def _status_lags(self) -> list[int]:
        if self.is_source:
            return [0] * self.config.substreams
        return self.delay.status_lags(self.parents)

    def total_slots(self) -> int:
        return self.tree.total_slots()

    def free_slots(self) -> int:
        return self.tree.free_slots()

    def expected_arrival(self, st: PeerState, j: int) -> float:
        return self.tree.expected_arrival(st, j)

    def _send_status(self, key: bytes) -> None:
        self._actions.append(Send(key, self.status()))

    def _status_to_children(self, now: float) -> None:
        mask, self.tree.children_dirty = self.tree.children_dirty, 0
        self._last_status = now
        msg = self.status()
        for st in self.peers.values():
            if st.children_mask & mask:
                self._actions.append(Send(st.key, msg))

    def _broadcast_status(self, now: float) -> None:
        self.tree.status_dirty = False
        self.tree.children_dirty = 0
        self._last_status = now
        msg = self.status()
        for key in self.peers:
            self._actions.append(Send(key, msg))

    def _on_status(self, st: PeerState, msg: wire.Status, now: float) -> None:
        if not self.claims.plausible(msg, now):
            # A claim the signed chunk clock rules out: believe none of this STATUS, nor
            # the one it replaces (a peer that lies now is not taken at its older word:
            # a liar heard before we had a clock would otherwise keep its claim until the
            # start, and one after it the chunks it claimed last).
            st.status = None
            self.counters.claims_implausible += 1
            self.claims.lie(st, f"STATUS claims seq {max(msg.latest, msg.keyframe)}, "
                          f"the stream is near {self.log.expected_latest(now)}")
            return
        st.status = msg
        if self.uplink is not None and st.children_mask:
            self._hop_sample(st, msg)
        if self.config.one_hop_doubt > 0:
            self.tree.judge_doubt(st, msg)
        if st.withheld_seq >= 0:
            self.tree.judge_withheld(st, msg)
        probe = False
        if claims_chunks(msg):
            self.tree.hinted = True
            probe = self.start_seq is None
        self.tree.on_parent_status(st, msg, now)
        self.tree.select_parents(now)
        if probe:
            self.claims.probe(st, now)

    # ---- start: claims are hints, the start is a verified keyframe -----------------
    def _begin(self, seq: int, now: float) -> None:
        """Start playing at the verified keyframe ``seq``: chunks held since are told
        (in order), gaps up to the latest held are wanted at once (backfill); claims
        heard before we had a signed clock are checked now."""
        self.start_seq = seq
        self.repair.started_at = now
        self.repair.skipped_upto = seq - 1
        self.claims.probes.clear()
        early, self.claims.early = self.claims.early, {}
        log = self.log
        for s in range(seq + 1, min(log.latest, seq + self.config.window_chunks) + 1):
            chunk = log.get(s)
            if chunk is None:
                self.repair.want(s, now, backfill=True)
            elif s in early:
                source, peer = early[s]
                self._actions.append(Deliver(chunk, source, peer, now))
        for st in self.peers.values():
            if st.status is not None and not self.claims.plausible(st.status, now):
                st.status = None
                self.counters.claims_implausible += 1
                self.claims.lie(st, "STATUS heard before the start claims seqs the stream never had")
        # A verified chunk says the stream runs even if no STATUS did yet (a start pushed on
        # JOIN can come with a STATUS of latest 0, the stream's first chunk): find parents
        # now, not at the next STATUS (until then every chunk would be pulled).
        self.tree.hinted = True
        self.tree.select_parents(now)

    # ---- chunks --------------------------------------------------------------
    def _accept(self, chunk: wire.ChunkMsg, peer: bytes | None, source: str, now: float) -> None:
        seq = chunk.seq
        keyframe = is_keyframe(chunk)
        before = self.log.latest
        if not self.log.add(chunk, keyframe):
            return
        starting = False
        if self.start_seq is None:
            # Verified, so its signed time is the broadcaster's: a fresh keyframe is
            # the start; anything else is kept (it sets the clock, relays) until then.
            if keyframe and now - self.log.time_of(seq) <= self.config.start_max_age:
                starting = True
            else:
                early = self.claims.early
                if len(early) >= self.config.window_chunks:  # full: forget what left the log
                    for old in [s for s in early if s < self.log.low]:
                        del early[old]
                if len(early) < self.config.window_chunks:
                    early[seq] = (source, peer)
                else:
                    self.counters.early_unrecorded += 1  # in the log, not told at the start
        repair = self.repair
        end = is_end(chunk)
        if end:
            # (not the newest seq held, or long past: an earlier run's, replayed after a restart)
            if seq == self.log.latest and now - chunk.time_us / 1e6 <= END_MAX_AGE:
                repair.end_at(seq)
                self.counters.ends += 1
            else:
                self.counters.ends_ignored += 1
        elif 0 <= repair.end_seq < seq:
            repair.resumed()  # a restarted broadcaster numbers on past its end marker
        if 0 <= repair.last_end < seq and not end:  # (a restarted broadcaster's downtime: not made)
            repair.held_above_end(seq, bool(chunk.flags & FLAG_RUN_START))
        if repair.stall_latest >= 0 and seq > repair.stall_latest and self.start_seq is not None:
            repair.stall_over(now)  # the stream moves again (repair: a stall at the origin)
        want = repair.wants.pop(seq, None)
        if self.config.want_bound and repair.wants:
            repair.bound_by(seq, chunk.time_us / 1e6, now)  # the chunks before it are due by its time
        if want is not None and want.last is not None and peer is not None:
            repair.answered(want, peer)  # (``repair_trust``)
        if want is not None and want.asked and self.config.cancel_requests:
            # other peers still have our REQUEST: a held one (or a queued answer) would
            # send a duplicate (§9.4, CANCEL)
            for k in sorted(want.asked):  # (sorted: the order of the asks is not the order of old)
                if k != peer and k in self.peers:
                    self.peers[k].sink_asked.pop(seq, None)  # (``repair_guard``: not to be judged)
                    self._actions.append(Send(k, wire.Cancel(stream=self.skey, seq=seq)))
                    self.counters.cancels_sent += 1
        deadline = repair.deadline_of(seq)
        if end and deadline < now + END_SEND:
            deadline = now + END_SEND  # (no media to be late: every neighbour is to have it)
        if now > deadline and want is None and seq <= repair.skipped_upto:
            self.counters.late += 1
        if starting:
            self._actions.append(Deliver(chunk, source, peer, now))
            self._begin(seq, now)
        elif self.start_seq is not None and seq >= self.start_seq:
            self._actions.append(Deliver(chunk, source, peer, now))
        j = seq % self.config.substreams
        if peer is not None and peer == self.parents[j]:
            took = now - self.log.time_of(seq)
            self.delay.sample(j, took, True)
            self.tree.parent_pushed(j, seq, now, took)
        elif not end:  # (an end marker comes from every neighbour: no push out of turn, no withholding)
            if peer is not None and self.start_seq is not None and (want is None or peer not in want.asked):
                self._unsolicited(peer, j, now)
            if self.start_seq is not None and self.parents[j] is not None:
                # from a repair or the origin first: does our parent withhold? (§ 9.2)
                self.tree.got_elsewhere(j, seq, chunk.time_us / 1e6, now)
        held = self.held
        ahead = self._push_relays_first(chunk, j, peer, deadline) if self.config.push_relays_first else None
        for st in self.peers.values():
            if st.key == peer:
                if held.count:
                    held.take(st.key, seq)
                continue
            if st.children_mask & (1 << j) or end:
                # (the end marker, to every neighbour: a few bytes each, once a node, and a
                # viewer its substream's tree did not reach -- one started from the origin,
                # whose broadcaster is gone a moment later -- is told too)
                if end and held.count:
                    held.take(st.key, seq)  # (asked for it: this is the answer)
                if ahead is None or st.key not in ahead:
                    self.upload.enqueue(st.key, chunk, deadline)
            elif held.count:
                d = held.take(st.key, seq)
                if d is not None:
                    self.upload.enqueue(st.key, chunk, d)
                    self.counters.requests_served += 1
        if not self.is_source and self.start_seq is not None and not starting:
            # Chunks between our previous latest and this one exist now: want them. (Gaps
            # below the previous latest were wanted when it arrived: no per-chunk rescan.)
            floor = seq - self.config.window_chunks
            if floor > before + 1 and floor > repair.skipped_upto + 1:
                repair.give_up_below(floor, before + 1)  # fell behind by more than the window
            first = max(before + 1, repair.skipped_upto + 1, floor)
            for s in range(first, seq):
                if s not in self.log and s not in repair.wants:
                    repair.want(s, now)
        self.pulls.flush(now)

    def _push_relays_first(self, chunk: wire.ChunkMsg, j: int, peer: bytes | None,
                           deadline: float) -> set[bytes]:
        """``push_relays_first``: queue ``chunk`` first for our children on ``j`` that relay
        it further, as neighbours' STATUS paths show (``[..., us, child, neighbour]``);
        returns their keys, which the loop over the children in :meth:`_accept` skips."""
        tag = self.tag
        relays: list[bytes] = []
        for st in self.peers.values():
            msg = st.status
            if msg is None or j >= len(msg.paths):
                continue
            path = msg.paths[j]
            if len(path) >= 3 and path[-3] == tag and path[-2] not in relays:
                relays.append(path[-2])
        pushed: set[bytes] = set()
        if not relays:
            return pushed
        bit = 1 << j
        for st in self.peers.values():
            if st.children_mask & bit and st.key != peer and st.tag in relays:
                self.upload.enqueue(st.key, chunk, deadline)
                pushed.add(st.key)
                self.counters.pushes_relay_first += 1
        return pushed

    @property
    def end_seq(self) -> int:
        """The seq of the broadcaster's end marker when the stream has ended (we hold it
        and no chunk after it), else -1."""
        return self.repair.end_seq

    def stream_rate(self) -> float:
        """The stream's rate in bytes/s: measured once known, never below nominal."""
        return self.pulls.stream_rate()

    def repair_delay(self, j: int) -> float:
        return self.delay.repair[j]

    def deadline_of(self, seq: int) -> float:
        return self.repair.deadline_of(seq)



def _bits(mask: int) -> list[int]:
    return [j for j in range(mask.bit_length()) if mask >> j & 1]
