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

**Upload.** Pushes and answers go through :class:`UploadScheduler`, a token
bucket at the node's upload cap that serves newest chunks first and drops
whatever is past its deadline.

Nothing here reads a clock or touches a socket: inputs carry ``now``, outputs
are actions drained with :meth:`Swarm.actions`, and :meth:`Swarm.get_timer`
says when to call :meth:`Swarm.handle_timer` next.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from . import wire
from .chunklog import HAVE_BITS, ChunkLog
from .identity import peer_tag
from .pull import HeldRequests, PullBudget
from .stream import StreamId, is_keyframe, verify_chunk
from .upload import UploadScheduler
from .wire import ErrorCode

INF = float("inf")
U64_MAX = 0x7FFF_FFFF_FFFF_FFFF  #: the wire's integers are int64: never emit above this
STATUS_MIN_GAP = 0.05  #: at most one STATUS per 50 ms on tree changes
REPAIR_MARGIN = 0.03  #: added to the learnt push delay (steady trees have ~0 deviation)
HOP_GUESS = 0.1  #: assumed delay per hop when a peer's lag or RTT is not known (s)
SWITCH_GAIN = 0.03  #: swap a parent only for an expected arrival this much earlier (s)
SWITCH_DWELL = 5.0  #: and not within this long of the substream's last parent change (s)

SOURCE_P2P = "p2p"
SOURCE_BROADCASTER = "broadcaster"
SOURCE_ORIGIN = "origin"
SOURCE_SELF = "self"


@dataclass(frozen=True)
class SwarmConfig:
    chunk_ms: int = 100
    substreams: int = 4
    bitrate_kbps: int = 1500
    upload_kbps: int = 0  #: 0 = no cap
    playout_delay: float = 0.5  #: deadline = chunk time + this
    origin_margin: float = 0.2  #: ask the origin this long before the deadline
    repair_after: float = 0.15  #: pull a chunk this long after it should exist
    startup_grace: float = 1.5  #: deadline for chunks older than our join
    window_chunks: int = 300
    status_interval: float = 2.0  #: periodic STATUS (urgent changes go at once, § 9.2)
    subscribe_timeout: float = 2.0
    reject_backoff: float = 3.0
    max_depth: int = wire.MAX_PATH - 1
    max_children_uncapped: int = 64  #: substream slots when upload is uncapped
    slot_headroom: float = 0.8  #: share of the upload cap booked by push subscriptions
    bad_chunk_limit: int = 3
    origin_retry: float = 0.05
    #: added to a candidate parent's expected arrival per relay on its path: each is a
    #: point of failure (churn, congestion), so of two equally fast paths the shorter wins
    hop_penalty: float = 0.03
    use_origin: bool = True
    # ---- limits on what a peer may make us do (every one has a counter) ----
    #: a peer may pull at most this multiple of the stream rate (bytes, token bucket) ...
    request_share: float = 2.0
    #: ... with a burst of this many seconds of the stream (a joiner's backfill)
    request_burst: float = 4.0
    #: chunks older than this (signed time, s) are not served on REQUEST: no viewer plays them
    request_horizon: float = 8.0
    max_held_per_peer: int = 64  #: requests held for one peer
    max_held_total: int = 1024  #: requests held for all peers together
    #: refusals (over budget, out of window, over a cap) tolerated per ``flood_window`` s
    flood_limit: int = 64
    flood_window: float = 10.0
    #: a claimed seq more than this many seconds of stream above the signed clock is a lie
    claim_slack: float = 2.0
    lie_limit: int = 3  #: disproved claims before the peer is dropped
    start_max_age: float = 5.0  #: a start keyframe's signed time is at most this old (s)
    probe_timeout: float = 2.0  #: a start probe unanswered this long is a broken claim
    max_probes: int = 4  #: start probes in flight


# ---- actions ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Send:
    peer: bytes
    message: wire.Message


@dataclass(frozen=True, slots=True)
class Push:
    peer: bytes
    chunk: wire.ChunkMsg
    deadline: float


@dataclass(frozen=True, slots=True)
class FetchOrigin:
    seq: int
    deadline: float


@dataclass(frozen=True, slots=True)
class Deliver:
    chunk: wire.ChunkMsg
    source: str  #: p2p | broadcaster | origin | self
    peer: bytes | None
    at: float


@dataclass(frozen=True, slots=True)
class Skip:
    seq: int  #: given up: not received before its deadline


@dataclass(frozen=True, slots=True)
class DropPeer:
    peer: bytes
    code: ErrorCode
    reason: str


SwarmAction = Send | Push | FetchOrigin | Deliver | Skip | DropPeer


@dataclass
class PeerState:
    key: bytes
    tag: bytes
    status: wire.Status | None = None
    children_mask: int = 0  #: substreams this peer subscribed from us
    parent_mask: int = 0  #: substreams we receive from this peer
    pending_mask: int = 0  #: substreams we asked it for, not yet answered
    pending_since: float = 0.0
    rejected_until: dict[int, float] = field(default_factory=dict)
    budget: PullBudget = field(default_factory=lambda: PullBudget(0.0))
    bad_chunks: int = 0
    lies: int = 0  #: its claims we disproved (implausible STATUS, claimed chunk not given)
    is_broadcaster: bool = False
    rtt: float = -1.0  #: smoothed RTT to this peer (s), from the transport; -1 = unknown


@dataclass
class _Want:
    """A chunk we lack and expect: what was tried so far."""

    asked: set[bytes] = field(default_factory=set)
    request_at: float = 0.0  #: when the next repair request is due
    origin_at: float = 0.0
    deadline: float = 0.0
    origin_busy: bool = False
    origin_tries: int = 0


@dataclass
class SwarmCounters:
    duplicates: int = 0
    duplicate_bytes: int = 0
    bad_chunks: int = 0
    requests_sent: int = 0
    requests_served: int = 0
    missing_sent: int = 0
    origin_fetches: int = 0
    skipped: int = 0
    late: int = 0
    parent_switches: int = 0
    #: REQUESTs refused: over the peer's pull budget / for a chunk outside the live
    #: window / over the held-request caps (per peer, total)
    requests_refused: int = 0
    requests_out_of_window: int = 0
    held_refused: int = 0
    flooders_dropped: int = 0  #: peers cut off for asking past their budget
    #: chunks for a held seq that differ from the held copy (verified, not trusted)
    duplicates_mismatched: int = 0
    probes_sent: int = 0  #: start probes (REQUEST of a peer's claimed keyframe)
    claims_implausible: int = 0  #: STATUS claiming seqs the signed clock rules out
    claims_broken: int = 0  #: claimed chunks answered MISSING or never sent
    liars_dropped: int = 0


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
        self.counters = SwarmCounters()
        self.joined_at = now
        self.start_seq: int | None = 0 if is_source else None
        k = config.substreams
        self.parents: list[bytes | None] = [None] * k
        self.paths: list[list[bytes]] = [[self.tag] if is_source else [] for _ in range(k)]
        self.upload = UploadScheduler(config.upload_kbps, now)
        self._actions: list[SwarmAction] = []
        self._wants: dict[int, _Want] = {}
        self._skipped_upto = -1
        self._next_status = now
        self._last_status = now - STATUS_MIN_GAP
        self._status_dirty = True
        self._children_dirty = 0  #: substreams whose path changed: tell their children
        self._max_wanted = -1  #: highest sequence number ever wanted
        #: peers with a subscribe or held-request timer (a dict: ordered, deterministic)
        self._peer_timers: dict[bytes, None] = {}
        #: per substream: smoothed delay (and its mean deviation) from a chunk's time to
        #: its push by our parent; the repair timer waits for what is normal on that tree
        self._lag = [0.0] * k
        self._lagdev = [0.0] * k
        self._lag_known = [False] * k
        self._repair = [config.repair_after] * k  #: repair_delay(j), kept current
        self._min_repair = config.repair_after
        #: lower bound of every want's next timer (request, origin, deadline); may be
        #: stale-low after a want is removed (an early wake-up only), never stale-high
        self._wants_t = INF
        self._changed_at = [-INF] * k  #: when each substream last changed parent
        self._unfed_since = [INF] * k  #: when our parent said it lost its feed (INF: fed)
        #: requests held for chunks not here yet (capped; a deadline heap for the timer)
        self.held = HeldRequests(config.max_held_per_peer, config.max_held_total)
        #: a peer said the stream has chunks (a hint: we subscribe, probe, not start)
        self._hinted = is_source
        #: start probes in flight: peer -> (claimed seq asked for, when it is overdue)
        self._probes: dict[bytes, tuple[int, float]] = {}
        self._probe_again: dict[bytes, float] = {}  #: peer -> when it may be probed again
        #: verified chunks held from before the start: seq -> (source, peer), told at start
        self._early: dict[int, tuple[str, bytes | None]] = {}

    # ---- inputs ----------------------------------------------------------
    def add_peer(self, key: bytes, now: float, *, is_broadcaster: bool = False,
                 rtt: float = -1.0) -> None:
        """A neighbour joined the stream; ``rtt`` is the transport's RTT estimate (s)
        when it has one (QUIC measures it during the handshake)."""
        if key in self.peers or key == self.self_key:
            return
        self.peers[key] = PeerState(key, peer_tag(key), is_broadcaster=is_broadcaster
                                    or key == self.sid.broadcaster, rtt=rtt)
        self._send_status(key)

    def set_rtt(self, key: bytes, rtt: float) -> None:
        """The transport's current smoothed RTT to ``key`` (s); used to pick parents."""
        st = self.peers.get(key)
        if st is not None and rtt >= 0:
            st.rtt = rtt

    def remove_peer(self, key: bytes, now: float) -> None:
        st = self.peers.pop(key, None)
        if st is None:
            return
        self.held.forget(key)
        self._probes.pop(key, None)
        self._probe_again.pop(key, None)
        for j in range(self.config.substreams):
            if self.parents[j] == key:
                self._lose_parent(j)
        self._select_parents(now)

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
            self.counters.duplicates += 1
            self.counters.duplicate_bytes += len(chunk.payload)
            j = chunk.seq % self.config.substreams
            if peer == self.parents[j]:
                # a repair beat the parent's push: still what the tree takes
                self._sample_lag(j, now - self.log.time_of(chunk.seq))
            return
        if not self.verify(self.sid, chunk):
            self._bad_chunk(st)
            return
        source = SOURCE_BROADCASTER if st.is_broadcaster else SOURCE_P2P
        self._accept(chunk, peer, source, now)

    def _bad_chunk(self, st: PeerState) -> None:
        self.counters.bad_chunks += 1
        st.bad_chunks += 1
        if st.bad_chunks >= self.config.bad_chunk_limit:
            self._actions.append(DropPeer(st.key, ErrorCode.BAD_CHUNK,
                                          f"{st.bad_chunks} chunks failed verification"))

    def on_origin(self, seq: int, chunk: wire.ChunkMsg | None, now: float) -> None:
        """Result of a ``FetchOrigin``: the chunk, or None (not there / failed)."""
        want = self._wants.get(seq)
        if want is not None:
            want.origin_busy = False
        if chunk is None or chunk.seq != seq:
            if want is not None:
                want.origin_at = now + self.config.origin_retry
                if want.origin_at < self._wants_t:
                    self._wants_t = want.origin_at
            return
        if seq in self.log:
            return
        if not self.verify(self.sid, chunk):
            self.counters.bad_chunks += 1
            return
        self._accept(chunk, None, SOURCE_ORIGIN, now)

    def on_message(self, peer: bytes, msg: wire.Message, now: float) -> None:
        st = self.peers.get(peer)
        if st is None:
            return
        if isinstance(msg, wire.Status):
            self._on_status(st, msg, now)
        elif isinstance(msg, wire.Subscribe):
            self._on_subscribe(st, msg, now)
        elif isinstance(msg, wire.SubscribeAck):
            self._on_subscribe_ack(st, msg, now)
        elif isinstance(msg, wire.Unsubscribe):
            # freed slots: told with the next periodic STATUS (not urgent)
            st.children_mask &= ~msg.mask
        elif isinstance(msg, wire.Request):
            self._on_request(st, msg, now)
        elif isinstance(msg, wire.Missing):
            self._on_missing(st, msg.seq, now)
            want = self._wants.get(msg.seq)
            if want is not None:
                want.request_at = min(want.request_at, now)
                if now < self._wants_t:
                    self._wants_t = now
        elif isinstance(msg, wire.Leave):
            self.remove_peer(peer, now)

    # ---- timers ------------------------------------------------------------
    def get_timer(self) -> float | None:
        # Hot path (called after every input): plain comparisons, no min() calls.
        t = self._next_status
        if (self._status_dirty or self._children_dirty) and self._last_status + STATUS_MIN_GAP < t:
            t = self._last_status + STATUS_MIN_GAP
        if self._wants_t < t:
            t = self._wants_t
        if self._peer_timers:
            timeout = self.config.subscribe_timeout
            for key in list(self._peer_timers):
                st = self.peers.get(key)
                if st is None or not st.pending_mask:
                    del self._peer_timers[key]
                    continue
                if st.pending_since + timeout < t:
                    t = st.pending_since + timeout
        if self.held.count:
            d = self.held.next_deadline()  # O(1): a heap, whatever the number held
            if d < t:
                t = d
        if self._probes:
            for _seq, due in self._probes.values():  # at most max_probes
                if due < t:
                    t = due
        if self.start_seq is not None and self.log.anchor_seq >= 0 and not self.is_source:
            nxt = max(self.log.latest, self._skipped_upto, self._max_wanted) + 1
            nt = self.log.time_of(nxt) + self._min_repair
            if nt < t:
                t = nt
        up = self.upload.next_release()
        if up is not None and up < t:
            t = up
        return t

    def handle_timer(self, now: float) -> None:
        cfg = self.config
        if now >= self._next_status:
            self._broadcast_status(now)
            self._next_status = now + cfg.status_interval
            # Periodic look for better parents; missing parents are sought at once elsewhere.
            self._select_parents(now, improve=True)
        elif now >= self._last_status + STATUS_MIN_GAP:
            if self._status_dirty:
                self._broadcast_status(now)
            elif self._children_dirty:
                self._status_to_children(now)
        for key in list(self._peer_timers):
            st = self.peers.get(key)
            if st is None:
                continue
            if st.pending_mask and now >= st.pending_since + cfg.subscribe_timeout:
                for j in _bits(st.pending_mask):
                    st.rejected_until[j] = now + cfg.reject_backoff
                st.pending_mask = 0
                self._select_parents(now)
        if self.held.count:
            for key, seq in self.held.expire(now):
                self._actions.append(Send(key, wire.Missing(stream=self.skey, seq=seq)))
                self.counters.missing_sent += 1
        if self._probes:
            self._check_probes(now)
        if not self.is_source:
            self._track_wants(now)
        self._flush_upload(now)

    def actions(self) -> list[SwarmAction]:
        out, self._actions = self._actions, []
        return out

    # ---- status & tree -------------------------------------------------------
    def status(self) -> wire.Status:
        log = self.log
        return wire.Status(
            stream=self.skey, latest=max(log.latest, 0), have=log.have_bitmap() if log.latest >= 0 else 0,
            keyframe=max(log.latest_keyframe, 0), slots=self.free_slots(),
            paths=[p if (self.is_source or self.parents[j] is not None) else []
                   for j, p in enumerate(self.paths)],
            lags=self._status_lags())

    def _status_lags(self) -> list[int]:
        if self.is_source:
            return [0] * self.config.substreams
        out = []
        for j in range(self.config.substreams):
            if self.parents[j] is None or not self._lag_known[j]:
                out.append(wire.LAG_UNKNOWN)
            else:
                ms = int(self._lag[j] * 1000)
                out.append(ms if 0 <= ms < wire.LAG_UNKNOWN else wire.LAG_UNKNOWN - 1)
        return out

    def total_slots(self) -> int:
        cfg = self.config
        if cfg.upload_kbps <= 0:
            return cfg.max_children_uncapped
        # Cost of a substream: the measured rate once known, never less than nominal.
        # Only ``slot_headroom`` of the cap is booked: a fully booked relay queues every
        # chunk behind its other copies (seen in the simulator), and repairs need room.
        kbps = max(cfg.bitrate_kbps, self.log.rate_bps * 8 / 1000)
        return int(cfg.slot_headroom * cfg.upload_kbps * cfg.substreams / max(kbps, 1))

    def free_slots(self) -> int:
        used = sum(bin(st.children_mask).count("1") for st in self.peers.values())
        return max(0, min(0xFFFF, self.total_slots() - used))

    def _send_status(self, key: bytes) -> None:
        self._actions.append(Send(key, self.status()))

    def _status_to_children(self, now: float) -> None:
        mask, self._children_dirty = self._children_dirty, 0
        self._last_status = now
        msg = self.status()
        for st in self.peers.values():
            if st.children_mask & mask:
                self._actions.append(Send(st.key, msg))

    def _broadcast_status(self, now: float) -> None:
        self._status_dirty = False
        self._children_dirty = 0
        self._last_status = now
        msg = self.status()
        for key in self.peers:
            self._actions.append(Send(key, msg))

    def _on_status(self, st: PeerState, msg: wire.Status, now: float) -> None:
        if not self._plausible(msg, now):
            # A claim the signed chunk clock rules out: believe none of this STATUS.
            self.counters.claims_implausible += 1
            self._lie(st, f"STATUS claims seq {max(msg.latest, msg.keyframe)}, "
                          f"the stream is near {self.log.expected_latest(now)}")
            return
        st.status = msg
        probe = False
        if msg.latest > 0 or msg.have:
            self._hinted = True
            probe = self.start_seq is None
        for j in _bits(st.parent_mask):
            path = msg.paths[j] if j < len(msg.paths) else []
            if path:
                self._unfed_since[j] = INF
            elif self._unfed_since[j] == INF:
                # Our parent lost its own feed: it is finding another, which normally
                # takes a round trip. Keep it (and our path, so our subtree does not
                # cascade) for up to subscribe_timeout; repairs cover the gap.
                self._unfed_since[j] = now
                continue
            elif now < self._unfed_since[j] + self.config.subscribe_timeout:
                continue
            if not path or self.tag in path:
                self._lose_parent(j)
                self._actions.append(Send(st.key, wire.Unsubscribe(stream=self.skey, mask=1 << j)))
                st.parent_mask &= ~(1 << j)
            else:
                new_path = list(path) + [self.tag]
                if new_path != self.paths[j]:
                    self.paths[j] = new_path
                    self._path_changed(j)
        self._select_parents(now)
        if probe:
            self._probe(st, now)

    # ---- start: claims are hints, the start is a verified keyframe -----------------
    def _plausible(self, msg: wire.Status, now: float) -> bool:
        """False if ``msg`` claims a seq above what the signed chunk clock allows."""
        if self.log.anchor_seq < 0:
            return True  # no verified chunk yet: nothing to judge by (a probe will tell)
        return max(msg.latest, msg.keyframe) <= self._plausible_top(now)

    def _plausible_top(self, now: float) -> int:
        """Highest seq that can exist by ``now``, from verified chunk times, plus slack."""
        return self.log.expected_latest(now) + int(self.config.claim_slack / self.log.chunk_interval) + 2

    def _lie(self, st: PeerState, reason: str) -> None:
        st.lies += 1
        if st.lies == self.config.lie_limit:
            self.counters.liars_dropped += 1
            self._actions.append(DropPeer(st.key, ErrorCode.TOO_MANY_ERRORS,
                                          f"{st.lies} false claims; last: {reason}"))

    def _probe(self, st: PeerState, now: float) -> None:
        """Before the start: REQUEST the keyframe ``st`` claims (its latest if it
        claims none in the window). Its answer is verified like any chunk; the first
        fresh verified keyframe, from whoever, is the start."""
        msg = st.status
        if msg is None or st.key in self._probes or len(self._probes) >= self.config.max_probes \
                or self._probe_again.get(st.key, -INF) > now:
            return
        seq = msg.keyframe if msg.latest - msg.keyframe < self.config.window_chunks else msg.latest
        if seq in self.log:
            return
        self._probes[st.key] = (seq, now + self.config.probe_timeout)
        self.counters.probes_sent += 1
        self._actions.append(Send(st.key, wire.Request(stream=self.skey, seq=seq)))

    def _probe_more(self, now: float) -> None:
        if self.start_seq is None:
            for st in self.peers.values():
                if len(self._probes) >= self.config.max_probes:
                    break
                self._probe(st, now)

    def _probe_failed(self, st: PeerState, seq: int, now: float, reason: str) -> None:
        del self._probes[st.key]
        self._probe_again[st.key] = now + self.config.probe_timeout / 2
        self.counters.claims_broken += 1
        self._lie(st, reason)
        self._probe_more(now)

    def _on_missing(self, st: PeerState, seq: int, now: float) -> None:
        probe = self._probes.get(st.key)
        if probe is not None and probe[0] == seq:
            self._probe_failed(st, seq, now, f"MISSING for its claimed keyframe {seq}")

    def _check_probes(self, now: float) -> None:
        for key, (seq, due) in list(self._probes.items()):
            st = self.peers.get(key)
            if st is None:
                del self._probes[key]
            elif now >= due:
                self._probe_failed(st, seq, now, f"claimed keyframe {seq} never sent")

    def _begin(self, seq: int, now: float) -> None:
        """Start playing at the verified keyframe ``seq``: chunks held since are told
        (in order), gaps up to the latest held are wanted at once (backfill); claims
        heard before we had a signed clock are checked now."""
        self.start_seq = seq
        self._skipped_upto = seq - 1
        self._probes.clear()
        early, self._early = self._early, {}
        log = self.log
        for s in range(seq + 1, min(log.latest, seq + self.config.window_chunks) + 1):
            chunk = log.get(s)
            if chunk is None:
                self._want(s, now, backfill=True)
            elif s in early:
                source, peer = early[s]
                self._actions.append(Deliver(chunk, source, peer, now))
        for st in self.peers.values():
            if st.status is not None and not self._plausible(st.status, now):
                st.status = None
                self.counters.claims_implausible += 1
                self._lie(st, "STATUS heard before the start claims seqs the stream never had")

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

    def _candidates(self, j: int, now: float) -> list[tuple[float, PeerState]]:
        out = []
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
            # spread substreams over parents: another feed from the same peer shares its upload
            others = bin(st.parent_mask & ~(1 << j)).count("1")
            score = self.expected_arrival(st, j) + 0.01 * others + self.rng.random() * 0.005
            out.append((score, st))
        out.sort(key=lambda x: x[0])
        return out

    def _select_parents(self, now: float, improve: bool = False) -> None:
        """Subscribe where a substream has no parent; with ``improve`` also look for a
        parent through which chunks would arrive ``SWITCH_GAIN`` earlier (done once per
        status interval, not per input, and at most once per ``SWITCH_DWELL`` per substream)."""
        if self.is_source or not self._hinted:
            return
        if not improve and all(p is not None for p in self.parents):
            return
        pending = 0
        for st in self.peers.values():
            pending |= st.pending_mask
        asks: dict[bytes, int] = {}
        for j in range(self.config.substreams):
            if pending & (1 << j):
                continue
            if self.parents[j] is not None and not improve:
                continue
            current = self.parents[j]
            if current is not None and now < self._changed_at[j] + SWITCH_DWELL:
                continue
            cands = self._candidates(j, now)
            if not cands:
                continue
            best_score, best = cands[0]
            if current is not None:
                if best.key == current:
                    continue
                cur = self.peers.get(current)
                cur_est = self.expected_arrival(cur, j) if cur is not None else INF
                if best_score > cur_est - SWITCH_GAIN:
                    continue
                self.counters.parent_switches += 1
            asks[best.key] = asks.get(best.key, 0) | (1 << j)
        for key, mask in asks.items():
            st = self.peers[key]
            st.pending_mask |= mask
            st.pending_since = now
            self._peer_timers[key] = None
            self._actions.append(Send(key, wire.Subscribe(stream=self.skey, mask=mask,
                                                          substreams=self.config.substreams)))

    def _on_subscribe(self, st: PeerState, msg: wire.Subscribe, now: float) -> None:
        k = self.config.substreams
        if msg.substreams != k:
            self._actions.append(Send(st.key, wire.SubscribeAck(stream=self.skey, accepted=0, rejected=msg.mask)))
            return
        accepted = rejected = 0
        free = self.free_slots()
        for j in _bits(msg.mask & ((1 << k) - 1)):
            fed = self.is_source or self.parents[j] is not None
            if st.children_mask & (1 << j):
                accepted |= 1 << j
            elif fed and free > 0 and st.tag not in self.paths[j]:
                accepted |= 1 << j
                free -= 1
            else:
                rejected |= 1 << j
        st.children_mask |= accepted
        self._actions.append(Send(st.key, wire.SubscribeAck(stream=self.skey, accepted=accepted,
                                                            rejected=rejected)))
        if accepted and free == 0:
            self._status_dirty = True  # full: say so before others ask in vain

    def _on_subscribe_ack(self, st: PeerState, msg: wire.SubscribeAck, now: float) -> None:
        mask = msg.accepted & st.pending_mask
        st.pending_mask &= ~(msg.accepted | msg.rejected)
        for j in _bits(msg.rejected):
            st.rejected_until[j] = now + self.config.reject_backoff
        for j in _bits(mask):
            old = self.parents[j]
            if old is not None and old != st.key and old in self.peers:
                self.peers[old].parent_mask &= ~(1 << j)
                self._actions.append(Send(old, wire.Unsubscribe(stream=self.skey, mask=1 << j)))
            self.parents[j] = st.key
            self._unfed_since[j] = INF
            self._changed_at[j] = now
            self._update_repair(j)
            st.parent_mask |= 1 << j
            path = st.status.paths[j] if st.status and j < len(st.status.paths) else []
            self.paths[j] = list(path) + [self.tag]
            if old is None:
                self._status_dirty = True  # a feed gained: neighbours may be looking for one
            else:
                self._path_changed(j)
        if msg.rejected:
            self._select_parents(now)

    def _path_changed(self, j: int) -> None:
        """Our path on substream ``j`` changed but we still have a feed: our children
        on ``j`` hear it within ``STATUS_MIN_GAP`` (their paths, and their loop checks,
        stay exact down the tree); other neighbours with the periodic STATUS. A
        change high in a tree thus costs one STATUS per descendant, not one per
        descendant's neighbour. (A neighbour ranking us on a stale path cannot make
        a loop: we refuse a SUBSCRIBE from a peer on our own, exact, path.)"""
        self._children_dirty |= 1 << j

    def _lose_parent(self, j: int) -> None:
        self.parents[j] = None
        self._unfed_since[j] = INF
        self._update_repair(j)
        self.paths[j] = []
        self._status_dirty = True

    # ---- chunks --------------------------------------------------------------
    def deadline_of(self, seq: int) -> float:
        t = self.log.time_of(seq)
        d = t + self.config.playout_delay
        if t < self.joined_at - 0.001:  # (1 ms: an estimated time carries rounding)
            d = max(d, self.joined_at + self.config.startup_grace)
        return d

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
            elif len(self._early) < self.config.window_chunks:
                self._early[seq] = (source, peer)
        want = self._wants.pop(seq, None)
        deadline = self.deadline_of(seq)
        if now > deadline and want is None and seq <= self._skipped_upto:
            self.counters.late += 1
        if starting:
            self._actions.append(Deliver(chunk, source, peer, now))
            self._begin(seq, now)
        elif self.start_seq is not None and seq >= self.start_seq:
            self._actions.append(Deliver(chunk, source, peer, now))
        j = seq % self.config.substreams
        if peer is not None and peer == self.parents[j]:
            self._sample_lag(j, now - self.log.time_of(seq))
        held = self.held
        for st in self.peers.values():
            if st.key == peer:
                if held.count:
                    held.take(st.key, seq)
                continue
            if st.children_mask & (1 << j):
                self.upload.enqueue(st.key, chunk, deadline)
            elif held.count:
                d = held.take(st.key, seq)
                if d is not None:
                    self.upload.enqueue(st.key, chunk, d)
                    self.counters.requests_served += 1
        if not self.is_source and self.start_seq is not None and not starting:
            # Chunks between our previous latest and this one exist now: want them. (Gaps
            # below the previous latest were wanted when it arrived: no per-chunk rescan.)
            first = max(before + 1, self._skipped_upto + 1, seq - self.config.window_chunks)
            for s in range(first, seq):
                if s not in self.log and s not in self._wants:
                    self._want(s, now)
        self._flush_upload(now)

    def _sample_lag(self, j: int, sample: float) -> None:
        if not self._lag_known[j]:
            self._lag[j], self._lagdev[j], self._lag_known[j] = sample, sample / 2, True
        else:
            err = sample - self._lag[j]
            self._lag[j] += err / 8
            self._lagdev[j] += (abs(err) - self._lagdev[j]) / 4
        self._update_repair(j)

    def _update_repair(self, j: int) -> None:
        self._repair[j] = self._compute_repair_delay(j)
        self._min_repair = min(self._repair)

    def repair_delay(self, j: int) -> float:
        return self._repair[j]

    def _compute_repair_delay(self, j: int) -> float:
        """How long after a chunk's time to wait before repairing it from another
        peer: what the parent's pushes normally take (smoothed delay + 4 deviations
        + a margin, as TCP's RTO), at least ``repair_after``, and early enough to leave a repair
        round trip before the origin fallback."""
        cfg = self.config
        if self.parents[j] is None or not self._lag_known[j]:
            return cfg.repair_after
        d = self._lag[j] + 4 * self._lagdev[j] + REPAIR_MARGIN
        cap = cfg.playout_delay - cfg.origin_margin - cfg.repair_after
        if d > cap:
            d = cap
        return d if d > cfg.repair_after else cfg.repair_after

    def _want(self, seq: int, now: float, backfill: bool = False) -> None:
        if seq > U64_MAX:
            return  # cannot exist (and could not be asked for on the wire)
        t = self.log.time_of(seq)
        deadline = self.deadline_of(seq)
        w = _Want(deadline=deadline)
        if backfill:
            w.request_at = now
        else:
            r = t + self._repair[seq % self.config.substreams]
            w.request_at = r if r > now else now
        w.origin_at = deadline - self.config.origin_margin
        self._wants[seq] = w
        lo = w.request_at if w.request_at < w.origin_at else w.origin_at
        if lo < self._wants_t:
            self._wants_t = lo
        if seq > self._max_wanted:
            self._max_wanted = seq

    def _track_wants(self, now: float) -> None:
        if self.start_seq is None or self.log.anchor_seq < 0:
            return
        expected = self.log.expected_latest(now)
        # Every seq up to _max_wanted is already held, wanted or given up: start above it.
        first = max(self._skipped_upto + 1, self.log.latest + 1, self._max_wanted + 1,
                    expected - self.config.window_chunks)
        for s in range(first, expected + 1):
            if s not in self.log and s not in self._wants:
                self._want(s, now)
        if self._wants_t > now:
            return  # no want is due (the bound is never above the earliest)
        lo = INF  # the new bound, gathered in the same pass
        use_origin = self.config.use_origin
        for seq, w in list(self._wants.items()):
            if now >= w.deadline:
                del self._wants[seq]
                if seq > self._skipped_upto:
                    self._skipped_upto = seq
                self.counters.skipped += 1
                self._actions.append(Skip(seq))
                continue
            if now >= w.request_at:
                self._request(seq, w, now)
            if use_origin and not w.origin_busy and now >= w.origin_at:
                w.origin_busy = True
                w.origin_tries += 1
                w.origin_at = w.deadline  # re-armed by on_origin on failure
                self.counters.origin_fetches += 1
                self._actions.append(FetchOrigin(seq, w.deadline))
            if w.request_at < lo:
                lo = w.request_at
            if w.deadline < lo:
                lo = w.deadline
            if use_origin and not w.origin_busy and w.origin_at < lo:
                lo = w.origin_at
        self._wants_t = lo

    def _request(self, seq: int, w: _Want, now: float) -> None:
        j = seq % self.config.substreams
        best: PeerState | None = None
        best_score = 1e9
        # A peer that does not hold the chunk yet is worth asking only if it is
        # at least two hops closer to the broadcaster on this substream than we are.
        mine = len(self.paths[j]) - 2 if self.parents[j] is not None else wire.MAX_PATH
        for st in self.peers.values():
            if st.key in w.asked or st.status is None:
                continue
            msg = st.status
            fed = j < len(msg.paths) and bool(msg.paths[j])
            holds = msg.latest >= seq and (msg.latest == seq or _has(msg, seq))
            if not holds and (not fed or len(msg.paths[j]) > mine):
                continue  # it would get the chunk no sooner than our own parent
            score = float((0 if holds else len(msg.paths[j])) + (2 if self.parents[j] == st.key else 0))
            score += self.rng.random()
            if score < best_score:
                best, best_score = st, score
        if best is None:
            w.request_at = now + self.config.repair_after
            w.asked.clear()
            return
        w.asked.add(best.key)
        w.request_at = now + max(0.05, self.config.repair_after)
        self.counters.requests_sent += 1
        self._actions.append(Send(best.key, wire.Request(stream=self.skey, seq=seq)))

    def stream_rate(self) -> float:
        """The stream's rate in bytes/s: measured once known, never below nominal."""
        nominal = self.config.bitrate_kbps * 125.0
        return self.log.rate_bps if self.log.rate_bps > nominal else nominal

    def _on_request(self, st: PeerState, msg: wire.Request, now: float) -> None:
        """Serve, hold or refuse a REQUEST. A peer may pull only chunks of the live
        window it could still play, at most ``request_share`` x the stream rate
        (bucket of ``request_burst`` s), with at most ``max_held_per_peer`` held
        (``max_held_total`` for all); each refusal is a strike, and a peer that keeps
        asking past its budget (``flood_limit`` strikes) is dropped."""
        cfg = self.config
        seq = msg.seq
        log = self.log
        chunk = log.get(seq)
        if log.anchor_seq < 0:
            self._refuse(st, seq, now)  # nothing verified yet: nothing to hold for
            return
        if seq > self._plausible_top(now) or log.time_of(seq) < now - cfg.request_horizon \
                or seq <= log.latest - cfg.window_chunks:
            self.counters.requests_out_of_window += 1
            self._refuse(st, seq, now, strike=True)
            return
        rate = self.stream_rate()
        cost = float(len(chunk.payload)) if chunk is not None else rate * log.chunk_interval
        if not st.budget.take(cost, cfg.request_share * rate, cfg.request_burst * rate, now):
            self.counters.requests_refused += 1
            self._refuse(st, seq, now, strike=True)
            return
        deadline = self.deadline_of(seq)
        if chunk is not None:
            self.upload.enqueue(st.key, chunk, max(deadline, now + cfg.playout_delay))
            self.counters.requests_served += 1
            self._flush_upload(now)
        elif deadline <= now:
            self._refuse(st, seq, now)
        elif not self.held.hold(st.key, seq, deadline):
            self.counters.held_refused += 1
            self._refuse(st, seq, now, strike=True)

    def _refuse(self, st: PeerState, seq: int, now: float, strike: bool = False) -> None:
        """Answer MISSING; with ``strike``, count it against the peer's flood score."""
        cfg = self.config
        if strike and st.budget.strike(cfg.flood_limit, cfg.flood_window, now):
            if st.budget.strikes < cfg.flood_limit + 1:  # tell the adapter once
                self.counters.flooders_dropped += 1
                self._actions.append(DropPeer(st.key, ErrorCode.TOO_MANY_ERRORS,
                                              f"{cfg.flood_limit} REQUESTs refused in "
                                              f"{cfg.flood_window:g} s"))
            return
        self.counters.missing_sent += 1
        self._actions.append(Send(st.key, wire.Missing(stream=self.skey, seq=seq)))

    def _flush_upload(self, now: float) -> None:
        for peer, chunk, deadline in self.upload.release(now):
            if peer in self.peers:
                self._actions.append(Push(peer, chunk, deadline))


def _bits(mask: int) -> list[int]:
    return [j for j in range(mask.bit_length()) if mask >> j & 1]


def _has(msg: wire.Status, seq: int) -> bool:
    i = msg.latest - 1 - seq
    return 0 <= i < HAVE_BITS and bool(msg.have >> i & 1)
