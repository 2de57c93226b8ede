"""The asyncio node: runs the sans-I/O swarm cores over real QUIC links.

Theory of operation
-------------------
A :class:`Node` owns one :class:`~oasis.node.transport.Endpoint` (one UDP
socket) and, per stream, a :class:`LiveStream`: the :class:`~oasis.core.swarm.Swarm`
core, the viewer's measurements and the ordered playout the gateway reads.
Session events from the endpoint become core inputs; core actions become
sends, chunk streams, HTTP origin fetches, deliveries and skips. After every
input the stream's timer is re-armed at the core's next deadline. The swarm
core sees wall-clock seconds (``time.time``) because chunk times are the
broadcaster's wall clock; QUIC runs on the loop's monotonic clock.

Peers: every decision about a peer -- admit or refuse a link (neighbour limit,
the simultaneous-dial rule, bans), where a JOIN or a message goes, a peer's
message budget and score, whom to dial and when to ask the tracker again -- is
taken by the sans-I/O :class:`~oasis.core.peer.PeerPolicy` (``Node.policy``);
the node feeds it link events and executes its actions (send, close, dial, add
or remove a swarm peer, announce), re-arming one timer at its deadline.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from oasis.core import peer as pp
from oasis.core import session as ss
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, key_of_peer_id, peer_id_of
from oasis.core.metrics import ViewerRecord, counter_dict
from oasis.core.nat import NatKind
from oasis.core.stream import StreamId, is_end, is_keyframe
from oasis.core.streamcrypt import open_sealed
from oasis.core.wire import ErrorCode

from . import neighbourfile, outbound
from .dhtnode import DhtDriver
from .events import EventBus
from .looplag import LoopLag
from .messaging import Messaging
from .transport import Endpoint, Link

log = logging.getLogger("oasis.node")
#: hole punching and dials, one line each (INFO; off unless OASIS_TRACE_PUNCH=1 is set, as
#: the testbed does for runs whose logs it keeps: ``bench/punch_matrix.py --keep``)
trace = logging.getLogger("oasis.punch")


def _k(key: bytes | None) -> str:
    return "-" if key is None else key.hex()[:8]
MAX_OFFERED = 50  #: candidates taken from one answer of a source
#: LinkCounters summed over a node's links into Node.counters (as ``link_<name>``)
LINK_COUNTERS = ("violations", "errors_received", "unknown_codes_received", "chunk_streams_stopped",
                 "chunk_streams_timed_out", "runs_ended_in_frame")  # (docs/oftp.md §2.1, §8 name the last two)
#: the event loop's timer resolution (uvloop, libuv: 1 ms; a timer may fire that early)
TIMER_GRID = 0.001
PROBE_EVERY = 0.1  #: s at least between checks of the parents' links
PROBE_QUIET = 0.3  #: s of silence from a parent after which its link is PINGed
UNOPENED_SAY_EVERY = 30.0  #: s between two warnings of chunks that do not open (§7.2)
INF_S = float("inf")
#: the steps of a viewer's start, in the order they usually come (``LiveStream.start_trace``):
#: the first announce sent to the tracker, the player gateway up (``oasis watch``), the first
#: candidates from the tracker/DHT, the first dial, the first link up, the first neighbour in
#: the stream (its JOIN exchanged), its first STATUS, the first chunk, a start asked of the
#: origin, the first frame
START_STEPS = ("announce", "gateway", "candidates", "dial", "link", "peer", "status", "chunk", "origin_latest", "start")


@dataclass
class Playout:
    """Chunks in sequence order for the player gateway; skips mark gaps."""

    start: int | None = None
    chunks: dict[int, bytes] = field(default_factory=dict)
    skipped: set[int] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    #: the seq of the broadcaster's end marker: no chunk at or after it (None: running)
    end: int | None = None
    keep: int = 600
    #: the seqs in ``chunks``, a min-heap (``chunks`` is changed only by :meth:`add`)
    _seqs: list[int] = field(default_factory=list, repr=False)
    #: ``skipped`` in the order given up (the oldest forgotten first past ``keep``)
    _skipped_order: deque[int] = field(default_factory=deque, repr=False)

    def add(self, seq: int, payload: bytes, start: int) -> None:
        """Add a verified chunk; ``start`` is the swarm's first sequence (a keyframe)."""
        if self.start is None:
            self.start = start
        if seq < self.start:
            return
        chunks = self.chunks
        if seq not in chunks:
            heapq.heappush(self._seqs, seq)
        chunks[seq] = payload
        while len(chunks) > self.keep:  # the lowest seqs go (a heap: no sort per chunk)
            del chunks[heapq.heappop(self._seqs)]
        self._notify()

    def lowest(self) -> int | None:
        """The lowest seq held (the heap's top), None if none."""
        return self._seqs[0] if self._seqs else None

    def skip(self, seq: int) -> None:
        if seq not in self.skipped:
            self.skipped.add(seq)
            self._skipped_order.append(seq)
            if len(self._skipped_order) > self.keep:  # the oldest given up go (O(1), not a sort
                self.skipped.discard(self._skipped_order.popleft())  # of 600 per skip)
        self._notify()

    def set_end(self, seq: int | None) -> None:
        """The stream ended at ``seq`` (its end marker), or runs again (None)."""
        self.end = seq
        self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class LiveStream:
    """One stream inside a node: swarm core + measurements + playout."""

    def __init__(self, node: Node, sid: StreamId, *, is_source: bool, origin_url: str | None,
                 config: sw.SwarmConfig | None = None, clock_offset: float = 0.0) -> None:
        self.node = node
        #: our clock minus the broadcaster's (s; oasis.core.clocksync): the swarm core runs on
        #: broadcaster time, :meth:`now`, since every deadline is a signed chunk time + the
        #: playout delay; links, timers and the policy stay on our own clock
        self.clock_offset = 0.0 if is_source else clock_offset
        #: this stream's parameters (the node's unless given: an API-joined stream has its own)
        self.config = config or node.config
        self.sid = sid
        self.text_id = str(sid)
        self.is_source = is_source
        self.origin_url = origin_url
        now = self.now()
        self.swarm = sw.Swarm(sid, node.identity.public, self.config, is_source=is_source,
                              rng=random.Random(node.rng.random()), now=now)
        self.record = ViewerRecord(joined_at=now, playout_delay=self.config.playout_delay)
        self.playout = Playout()
        self.produced: dict[int, float] = {}  # source only: seq -> time
        self.origin_fetches = 0
        self.origin_failures = 0
        self.origin_error = ""  #: the last failed origin fetch's error (what `oasis watch` reports)
        #: origin fetches that missed their deadline and were left to finish (``_keep_late``),
        #: and those of them that did
        self._late: set[asyncio.Future[tuple[wire.ChunkMsg | None, float]]] = set()
        self.origin_late = 0
        #: fetches the origin/CDN answered with any status but 200 (mostly 404: not made yet
        #: there, or no longer held): not failures of the fetch, but no chunk
        self.origin_refused = 0
        self.origin_held = 0  #: fetches a CDN edge held for the chunk to come (Oasis-Held-Ms)
        #: how long the last FETCH_TIMES fetches that returned a chunk took (s, less a CDN edge's
        #: hold), and of them those that returned after its deadline (a peer may have brought it
        #: first): whether a late fallback was asked late or took long (``/stats``
        #: ``origin_fetch_ms``, ``origin_fetch_late_ms``)
        self.fetch_times: collections.deque[float] = collections.deque(maxlen=FETCH_TIMES)
        self.fetch_times_late: collections.deque[float] = collections.deque(maxlen=FETCH_TIMES)
        #: origin starts that used the ``latest.json`` read at the join (:meth:`prefetch_latest`)
        self.origin_prefetched = 0
        self.origin_prefetch_failed = 0  #: ... and the reads at the join that failed
        #: where else the stream's chunks are (the descriptor's other CDNs, then its origin;
        #: set by the runtime): after ``FAILOVER_AFTER`` failed fetches in a row the next one
        #: is asked, and the first again ``FAILOVER_BACK`` s later (:meth:`_fetch_failed`)
        self.origin_others: list[str] = []
        self._fail_streak = 0
        self._failed_over_at: float | None = None
        self._preferred: str | None = origin_url
        self.origin_failovers = 0
        #: a viewer's ``latest.json``, read once at its join (:meth:`prefetch_latest`): the
        #: keyframe it named and when it came (our clock); an origin start within
        #: LATEST_FRESH s of it asks for that keyframe at once instead of reading the file again
        self._pre_latest: tuple[int, float] | None = None
        self._pre_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        #: a viewer's start, step by step: seconds from its join to the first of each of
        #: START_STEPS (``/stats``, ``oasis_start_seconds`` on /metrics), and at its first
        #: frame ``start_age`` (the start keyframe's signed time - the join: < 0, made
        #: before it) and ``start_gap`` (chunks made after the join whose deadline had
        #: passed then and that we did not hold: lost to the late start)
        self.start_trace: dict[str, float] = {}
        self.start_source = ""  #: where the start keyframe came from (p2p, broadcaster, origin)
        #: a viewer: s from its join until a parent had pushed it a chunk on every substream
        #: (``/stats`` ``fed_s``; None until then): how long it leaned on the origin at its
        #: start; and the substreams fed so far (a bit each)
        self.fed_s: float | None = None
        self._fed_mask = 0
        #: chunks the origin gave us before then, and after (``/stats`` ``origin_chunks``)
        self.origin_unfed = 0
        self.origin_fed = 0
        #: the end marker's seq last told (stream.ended; -1: none, or the stream resumed)
        self.end_told = -1
        #: an encrypted stream's verified chunks whose media did not open with our content
        #: key (a wrong key in the link): passed over by the player, never played
        self.unopened = 0
        self._unopened_said = -INF_S

    @property
    def encrypted(self) -> bool:
        """The stream's media is sealed (its signed descriptor says so; docs/oftp.md §7.2)."""
        return self.sid.key in self.node.stream_keys

    @property
    def content_key(self) -> bytes | None:
        """The stream's content key, if this node has it (None: it relays only, or the
        stream is plain)."""
        key = self.sid.key
        return self.node.link_keys.get(key) or self.node.stream_keys.get(key)

    @property
    def playable(self) -> bool:
        """Can this node play the stream (not an encrypted one it relays without the key)?"""
        return not self.encrypted or self.content_key is not None

    def now(self) -> float:
        """Broadcaster time: our clock minus :attr:`clock_offset` (what the swarm core is given)."""
        return self.node.clock() - self.clock_offset

    def mark(self, step: str) -> None:
        """The first ``step`` of a viewer's start (START_STEPS) happens now."""
        if self.record.started_at is None and not self.is_source and step not in self.start_trace:
            self.start_trace[step] = round(self.now() - self.record.joined_at, 4)

    def pump(self) -> None:
        node = self.node
        policy = node.policy
        for a in self.swarm.actions():
            if isinstance(a, sw.Send):
                link = policy.link_of(a.peer)
                if link is not None:
                    link.send(a.message)
            elif isinstance(a, sw.Push):
                link = policy.link_of(a.peer)
                if link is not None:
                    link.send_chunk(a.chunk, a.deadline + self.clock_offset)  # (on our clock)
            elif isinstance(a, sw.Deliver):
                self._deliver(a)
            elif isinstance(a, sw.Skip):
                self.record.skip(a.seq, a.unmade, a.count)
                if a.count == 1:  # (a counted range lies below the window: nothing waits on it)
                    self.playout.skip(a.seq)
            elif isinstance(a, sw.FetchOrigin):
                if a.seq == sw.ORIGIN_LATEST:
                    self.mark("origin_latest")
                node.spawn(self._fetch_origin(a.seq, a.deadline))
            elif isinstance(a, sw.DropPeer):
                policy.on_drop_peer(a.peer, a.code, a.reason, node.clock())
                node._run_policy()
        if self.swarm.end_seq != self.end_told:
            self._end_changed(self.swarm.end_seq)
        self._arm()

    def _fed(self, seq: int, peer: bytes, at: float) -> None:
        """A chunk came from ``peer``: if it is our parent on the chunk's substream, that
        substream is fed; once all are, :attr:`fed_s` is set."""
        parents = self.swarm.parents
        j = seq % len(parents)
        if parents[j] != peer:
            return
        self._fed_mask |= 1 << j
        if self._fed_mask == (1 << len(parents)) - 1:
            self.fed_s = round(at - self.record.joined_at, 3)

    def _end_changed(self, seq: int) -> None:
        """The broadcaster's end marker ``seq`` came (-1: a chunk after it: it runs again):
        the player's response ends there; a viewer's API says ``stream.ended`` (a source's
        says it from :mod:`oasis.node.streaming`, which ended it)."""
        self.end_told = seq
        self.playout.set_end(seq if seq >= 0 else None)
        if self.is_source:
            return
        if seq >= 0:
            self.node.events.publish("stream.ended", {
                "stream_id": self.text_id, "reason": "the broadcaster ended the stream", "seq": seq})
        else:
            self.node.events.publish("stream.resumed", {"stream_id": self.text_id,
                                                        "latest": self.swarm.log.latest})

    def _deliver(self, a: sw.Deliver) -> None:
        c = a.chunk
        if is_end(c):
            return  # the end marker: no media (the swarm core holds it: pump tells of it)
        policy = self.node.policy
        if self.sid.key in policy.starting:
            policy.set_starting(self.sid.key, False)  # playing: our JOINs ask no more
        kf = is_keyframe(c)
        media = self._media(c)  # (None: relayed, not played here)
        unopened = media is None and self.content_key is not None
        if not self.is_source and not unopened:  # (a chunk we cannot open is no chunk to our player)
            first = self.record.started_at is None
            if first and kf:
                self._started(c, a)
            self.record.delivered(c.seq, c.time_us / 1e6, a.at, a.source, len(c.payload), kf)
            if a.source == sw.SOURCE_ORIGIN:
                if self.fed_s is None:
                    self.origin_unfed += 1
                else:
                    self.origin_fed += 1
            if self.fed_s is None and a.peer is not None:
                self._fed(c.seq, a.peer, a.at)
            if first and self.record.started_at is not None and self.node.dht is not None:
                self.node.dht.update_provided()  # playing: now we can give it to others
        if media is not None:
            self.playout.add(c.seq, media, self.swarm.start_seq if self.swarm.start_seq is not None else c.seq)
        elif self.playout.start is not None:
            self.playout.skip(c.seq)  # (the player passes over it)
        rewards = self.node.rewards
        if rewards is not None and a.source == sw.SOURCE_P2P and a.peer is not None:
            rewards.on_media(a.peer, len(c.payload), a.at + self.clock_offset)

    def _media(self, c: wire.ChunkMsg) -> bytes | None:
        """The media of a verified chunk for our own player (docs/oftp.md §7.2): opened with
        the content key we hold, if any; a plain stream's payload; None for an encrypted
        stream relayed without the key, or a chunk that does not open (counted ``unopened``).
        A chunk that does not open is played as it is only when the newest signed descriptor
        says the stream is plain (a broadcaster that turned sealing off)."""
        node = self.node
        if not node.link_keys and not node.stream_keys:
            return c.payload  # (no encrypted stream on this node: the common case)
        key = self.content_key
        if key is None:
            return None if self.encrypted else c.payload
        media = open_sealed(key, c.stream, c.seq, c.time_us, c.flags, c.payload)
        if media is not None or not self.encrypted:
            return media if media is not None else c.payload
        self.unopened += 1
        now = self.node.clock()
        if now - self._unopened_said >= UNOPENED_SAY_EVERY:  # (the first, then every 30 s of them:
            self._unopened_said = now  # a broadcaster that drew a new key plays nothing more)
            log.warning("stream %s: %d chunks' media did not open with this link's content key (k=): "
                        "is it the stream's (did the broadcaster draw a new one)? They are not played",
                        self.text_id, self.unopened)
        return None

    def _started(self, c: wire.ChunkMsg, a: sw.Deliver) -> None:
        """The first frame (keyframe ``c``): close the start trace."""
        tr = self.start_trace
        joined = self.record.joined_at
        tr["start"] = round(a.at - joined, 4)
        tr["start_age"] = round(c.time_us / 1e6 - joined, 4)
        log_ = self.swarm.log
        pd = self.config.playout_delay
        gap = 0
        for s in range(c.seq + 1, log_.expected_latest(a.at) + 1):
            t = log_.time_of(s)
            if t >= joined and t + pd < a.at and s not in log_:
                gap += 1
        tr["start_gap"] = gap
        self.start_source = a.source

    def _arm(self, at_least: float = 0.0) -> None:
        t = self.swarm.get_timer()
        if t is None or self.node.closing:
            return
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= t:
                return
            self._timer.cancel()
        delay = max(at_least, t - self.now())
        self._timer_at = t
        self._timer = self.node.loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.now()
        t = self.swarm.get_timer()
        if t is not None and t > now:
            # The deadline moved later since this timer was set, or the loop fired it early
            # (a millisecond grid): nothing is due. Not sooner than a grid step, or an early
            # timer re-armed for the same instant fires at once, again and again.
            self._arm(at_least=TIMER_GRID)
            return
        self.swarm.handle_timer(now)
        self.pump()

    async def _fetch_origin(self, seq: int, deadline: float) -> None:
        """A chunk from the origin/CDN; for ``ORIGIN_LATEST`` first the origin's
        ``latest.json`` (capped, strictly decoded: it is not signed, the chunk it names is)."""
        chunk: wire.ChunkMsg | None = None
        held = 0.0  #: s the CDN edge said it waited for the chunk (Oasis-Held-Ms)
        began = self.now()
        start = seq == sw.ORIGIN_LATEST
        # (a stalled player's probe of ``latest.json`` is no start: its keyframe may be old)
        probe = start and self.swarm.log.latest >= 0
        took = -1.0  #: the start keyframe's own request, s (the core learns the fetch time from it)
        self._back_to_preferred()
        # (``origin_adapt``: a fetch may end after the deadline, timed and its connection kept)
        over = sw.ORIGIN_OVERTIME if self.config.origin_adapt else 0.0
        if self.origin_url:
            base = f"{self.origin_url.rstrip('/')}/{self.text_id}"
            url = f"{base}/latest.json"
            try:
                if start:
                    kf = await self._prefetched(deadline)
                    if kf is None:
                        timeout = aiohttp.ClientTimeout(total=max(0.05, deadline - self.now()))
                        async with self.node.http.get(url, timeout=timeout) as r:
                            kf = await _read_latest(r)
                    seq = kf
                self.origin_fetches += 1
                url = f"{base}/{seq}.chunk"
                asked = self.now()
                budget = max(0.05, deadline + over - asked)
                fetch = asyncio.ensure_future(self._get_chunk(url, budget + ORIGIN_LATE_GRACE))
                fetch.add_done_callback(_retrieved)  # (whatever becomes of it, its error is read)
                try:
                    chunk, held = await asyncio.wait_for(asyncio.shield(fetch), budget)
                except TimeoutError:
                    self._keep_late(fetch)
                    raise
                except BaseException:  # its own error (done), or we are cancelled (the node closes)
                    fetch.cancel()
                    raise
                took_all = self.now() - asked
                if held and held < took_all:
                    self.origin_held += 1  # (a hold longer than the fetch is not believed: §10)
                if chunk is not None:
                    self._check_answer(chunk, seq, start and not probe)
                    net = took_all - held if 0.0 < held < took_all else took_all
                    self.fetch_times.append(net)
                    if not start and self.now() > deadline:
                        self.fetch_times_late.append(net)
            except (aiohttp.ClientError, TimeoutError, wire.WireError, ValueError) as exc:
                chunk = None
                self.origin_failures += 1
                what = outbound.reason(exc)[:200]
                # how long it took of the time it had (a timeout's budget is the chunk's deadline)
                self.origin_error = (f"{what} after {self.now() - began:.3f} s "
                                     f"(had {deadline - began:.3f} s)")
                log.debug("origin fetch %s failed: %s", url, exc)
                # (late is not down: a slow path, a late ask; but a start that times out is no
                # start at all: a CDN that stalls every start is failed over as a broken one)
                if (start and not probe) or not isinstance(exc, TimeoutError):
                    self._fetch_failed(what)
            else:
                self._fail_streak = 0
                if start:
                    took = self.now() - asked
        self.swarm.on_origin(seq, chunk, self.now(), held, took)
        self.pump()

    def _check_answer(self, chunk: wire.ChunkMsg, seq: int, start: bool) -> None:
        """An origin's or CDN's answer that is not what was asked is a failure (counted, and
        towards the failover), not a chunk dropped in silence: another seq than asked, or, for
        a start, not a keyframe or one older than ``start_max_age``: a CDN answering so never
        started a viewer that no peer reached, nothing counted (found 2026-12-06 from outside).
        (Not verified here: the swarm core verifies what it is given.)"""
        if chunk.seq != seq:
            raise ValueError(f"answered chunk {chunk.seq} when asked for {seq}")
        if start:
            if not is_keyframe(chunk):
                raise ValueError(f"latest.json named chunk {seq}, not a keyframe")
            age = self.now() - chunk.time_us / 1e6
            if age > self.config.start_max_age:
                raise ValueError(f"latest.json named a keyframe {age:.1f} s old")

    def prefetch_latest(self) -> None:
        """A viewer reads the origin's ``latest.json`` at its join, beside its first dials:
        if no peer starts it by ``origin_start_after``, its origin start then asks for the
        keyframe named at once (one request instead of two: ~0.1 s sooner from a far CDN
        edge; docs/oftp.md §9.5). The file is small and read strictly; the chunk it names is
        verified as any other. Once per join; a failure only means the start reads it again.
        Not when the start would come after the answer is stale (``origin_start_after`` >=
        LATEST_FRESH)."""
        cfg = self.config
        if (self.is_source or not self.origin_url or not cfg.use_origin or self._pre_task is not None
                or cfg.origin_start_after >= LATEST_FRESH):
            return
        node = self.node
        if node.closing:
            return
        self._pre_task = task = node.loop.create_task(self._prefetch())
        node._tasks.add(task)  # (cancelled with the node's other tasks when it closes)
        task.add_done_callback(node._tasks.discard)

    async def _prefetch(self) -> None:
        url = f"{self.origin_url.rstrip('/')}/{self.text_id}/latest.json" if self.origin_url else ""
        try:
            timeout = aiohttp.ClientTimeout(total=LATEST_FRESH)
            async with self.node.http.get(url, timeout=timeout) as r:
                kf = await _read_latest(r)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # (counted apart: the origin start reads the file again, and its failure is a
            # fetch failure, ``origin_failures``, as before)
            self.origin_prefetch_failed += 1
            log.debug("prefetch of %s failed: %s", url, exc)
            return
        self._pre_latest = (kf, self.node.clock())

    async def _prefetched(self, deadline: float) -> int | None:
        """The keyframe the join's ``latest.json`` named, if it came within LATEST_FRESH s
        (waiting for it while it is on its way, at most until ``deadline``); used once."""
        task = self._pre_task
        if task is not None and not task.done():
            # (``asyncio.wait`` neither cancels the read nor raises what it raised)
            await asyncio.wait({task}, timeout=max(0.0, deadline - self.now()))
        pre, self._pre_latest = self._pre_latest, None
        if pre is None or self.node.clock() - pre[1] > LATEST_FRESH:
            return None
        self.origin_prefetched += 1
        return pre[0]

    def _fetch_failed(self, what: str) -> None:
        """A fetch failed (no connection, a 5xx, a bad reply; not a timeout): after ``FAILOVER_AFTER``
        in a row, on to the next of the stream's URLs. A viewer whose CDN edge was down asked
        it alone and skipped what its peers did not bring (66 chunks in a 5-s edge restart,
        the origin up; found 2026-12-06 from outside)."""
        self._fail_streak += 1
        urls = self._urls()
        if self._fail_streak < FAILOVER_AFTER or len(urls) < 2 or self.origin_url is None:
            return
        i = urls.index(self.origin_url) if self.origin_url in urls else -1
        nxt = urls[(i + 1) % len(urls)]
        log.warning("origin %s: %d fetches failed in a row (last: %s); fetching from %s",
                    self.origin_url, self._fail_streak, what, nxt)
        self.origin_url = nxt
        self.origin_failovers += 1
        self._fail_streak = 0
        self._failed_over_at = time.monotonic()

    def _urls(self) -> list[str]:
        out = [u for u in (self._preferred, *self.origin_others) if u]
        return list(dict.fromkeys(out))

    def _back_to_preferred(self) -> None:
        """``FAILOVER_BACK`` s after a failover, the first URL is asked again (a CDN restarted)."""
        if self._failed_over_at is not None and time.monotonic() - self._failed_over_at >= FAILOVER_BACK:
            self._failed_over_at = None
            if self._preferred and self.origin_url != self._preferred:
                log.info("origin: asking %s again", self._preferred)
                self.origin_url = self._preferred

    @property
    def preferred_origin(self) -> str | None:
        """The fetch URL asked first (``origin_url`` is another after a failover)."""
        return self._preferred

    def set_origin(self, url: str | None, others: list[str] | None = None) -> None:
        """The stream's fetch URL (preferred) and where else to ask (see ``origin_others``)."""
        self.origin_url = self._preferred = url
        if others is not None:
            self.origin_others = [u for u in others if u and u != url]
        self._fail_streak = 0
        self._failed_over_at = None

    async def _get_chunk(self, url: str, limit: float) -> tuple[wire.ChunkMsg | None, float]:
        """GET one ``<seq>.chunk`` within ``limit`` s: the chunk (None for a refusal, 404)
        and how long a CDN edge says it held the request for it (``Oasis-Held-Ms``, s)."""
        from .http import HELD_HEADER, held_seconds, read_capped

        async with self.node.http.get(url, timeout=aiohttp.ClientTimeout(total=limit)) as r:
            if r.status >= 500:
                # the origin or the CDN failed (an edge whose origin is down: 502): a failure
                # with its reason, not a refusal, so the health line's last error is this one
                raise ValueError(f"HTTP {r.status} from {url.split('/origin/', 1)[0]}"
                                 f"{_error_code(await r.content.read(512))}")
            if r.status != 200:
                self.origin_refused += 1
                return None, 0.0
            held = held_seconds(r.headers.get(HELD_HEADER))
            # to the body's end: a CDN's reply may come in several segments
            return wire.decode_chunk(await read_capped(r.content, wire.MAX_CHUNK_MESSAGE)), held

    def _keep_late(self, fetch: asyncio.Future[tuple[wire.ChunkMsg | None, float]]) -> None:
        """A fetch its chunk's deadline has passed: too late for the player (the swarm is told
        it failed), but left to finish for up to ``ORIGIN_LATE_GRACE`` s more (at most
        ``MAX_LATE_FETCHES`` at once), so that its keep-alive connection goes back to the pool.
        Cut off, the connection closed, and the next fetch paid a TCP handshake first: from a
        CDN edge 60 ms away with 0.12 s to go, that one more round trip timed it out too, and
        a mobile viewer's fetches failed 60-80 % of the time in the testbed, one after the other."""
        if len(self._late) >= MAX_LATE_FETCHES:
            fetch.cancel()
            return
        self._late.add(fetch)

        def done(f: asyncio.Future[tuple[wire.ChunkMsg | None, float]]) -> None:
            self._late.discard(f)
            if not f.cancelled() and f.exception() is None:
                self.origin_late += 1  # arrived, late: the connection is kept
        fetch.add_done_callback(done)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for f in list(self._late):
            f.cancel()
        if self._pre_task is not None:
            self._pre_task.cancel()


def _error_code(body: bytes) -> str:
    """`` (<code>)`` of an error body ``{"error": code, ...}`` (printable, short); "" if none."""
    try:
        code = msgspec.json.decode(body).get("error")
    except (msgspec.DecodeError, AttributeError):
        return ""
    if not isinstance(code, str) or not code.isascii() or not code.isprintable():
        return ""
    return f" ({code[:40]})"


#: failed fetches in a row (no connection, 5xx; timeouts neither count nor reset) after which a
#: viewer asks the stream's next URL
FAILOVER_AFTER = 5
FAILOVER_BACK = 30.0  #: s after a failover, the preferred URL (the first CDN) is asked again
#: an origin fetch that missed its chunk's deadline may go on this long (s) to keep its connection
ORIGIN_LATE_GRACE = 0.5
FETCH_TIMES = 256  #: origin fetches whose times ``/stats`` sums up (``LiveStream.fetch_times``)
MAX_LATE_FETCHES = 8  #: such fetches at once per stream (beyond: cut off, as before)
MAX_LATEST_JSON = 512  #: bytes of an origin's latest.json (about 80 when honest)


LATEST_FRESH = sw.LATEST_FRESH  #: (s) see :meth:`LiveStream.prefetch_latest`


class OriginLatest(msgspec.Struct):
    """What a node reads of ``GET /origin/<stream>/latest.json`` (other fields ignored)."""

    keyframe: int


def _retrieved(f: asyncio.Future[Any]) -> None:
    """Read a finished fetch's error: one cut off or left late is awaited by nobody, and its
    error was printed as "Task exception was never retrieved" (found 2026-12-06 from outside)."""
    if not f.cancelled():
        f.exception()


async def _read_latest(r: aiohttp.ClientResponse) -> int:
    """The keyframe an origin's ``latest.json`` names (not signed: capped, strict, in range)."""
    from .http import read_reply  # (http imports this module)

    if r.status != 200:
        raise ValueError(f"HTTP {r.status}")
    latest = await read_reply(r, MAX_LATEST_JSON, OriginLatest)
    if not 0 <= latest.keyframe <= sw.U64_MAX:
        raise ValueError(f"keyframe {latest.keyframe} out of range")
    return latest.keyframe


class Node:
    """Executes the policy core (:class:`~oasis.core.peer.PeerPolicy`) and the swarm cores
    over the endpoint's links: every decision about a peer is the policy's."""

    def __init__(self, identity: Identity, config: sw.SwarmConfig, *, host: str = "127.0.0.1",
                 port: int = 0, target_neighbours: int | None = None,
                 max_neighbours: int | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 link_delay: float = 0.0, policy: pp.PolicyConfig | None = None,
                 dht: bool = True, quic: str | None = None,
                 http_connector: aiohttp.BaseConnector | None = None) -> None:
        """``http_connector``: the connection pool of the node's HTTP client (tracker,
        origin), taken over (closed with the node): a connection opened before the node,
        to fetch the stream's descriptor, carries its first announce."""
        self.identity = identity
        self.config = config
        self.host, self.port = host, port
        self.clock = clock
        self.rng = rng or random.Random()
        self.loop = asyncio.get_running_loop()
        pcfg = policy or pp.PolicyConfig()
        pcfg = dataclasses.replace(
            pcfg, target_neighbours=pcfg.target_neighbours if target_neighbours is None else target_neighbours,
            max_neighbours=pcfg.max_neighbours if max_neighbours is None else max_neighbours)
        #: the node's policy towards peers (admission, bans, JOIN routing, dialling)
        self.policy: pp.PeerPolicy[Link] = pp.PeerPolicy(identity.public, pcfg,
                                                         rng=random.Random(self.rng.random()),
                                                         now=clock())
        self.policy.tree_peer = self._in_tree  # (``near_swap`` keeps parents and children)
        self.endpoint = Endpoint(identity, on_event=self._on_event, clock=clock, rng=self.rng,
                                 max_links=pcfg.max_neighbours * 2 + 8, link_delay=link_delay,
                                 quic=quic)
        self.streams: dict[bytes, LiveStream] = {}
        #: encrypted streams (docs/oftp.md §7.2) as their newest signed descriptors say, by
        #: stream key: the content key, or None where this node relays the stream without
        #: the key (it never plays it)
        self.stream_keys: dict[bytes, bytes | None] = {}
        #: content keys this node was given (a link's ``k=``, its own), by stream key, kept
        #: whatever a descriptor says: a chunk is opened with it first, so an old "plain"
        #: descriptor handed out by a liar does not make ciphertext play as media
        self.link_keys: dict[bytes, bytes] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # (its TCP connections opened are counted: ``http_connects``; a fetch on a fresh one
        # pays a handshake, a round trip, before its request)
        traces = aiohttp.TraceConfig()
        traces.on_connection_create_end.append(self._http_connected)
        self.http: aiohttp.ClientSession = outbound.session(connector=http_connector,
                                                            trace_configs=[traces])
        self.closed_links_stats = {"control": 0, "chunk_stream": 0, "media": 0, "wire": 0}
        self.closed_link_counters = {f"link_{name}": 0 for name in LINK_COUNTERS}
        self.closed_link_counters["link_migrations"] = 0  #: peers' address changes QUIC followed
        self.closed_link_counters["link_probes"] = 0  #: PINGs to parents gone quiet
        #: addresses a peer's packets came from that QUIC had not validated (not followed)
        self.closed_link_counters["link_paths_unvalidated"] = 0
        # closed links already folded into the two dicts above (still in endpoint.links
        # until the QUIC close completes) are marked ``Link.folded``: not counted twice
        self.rewards: Any = None  #: oasis.node.rewards.Rewards when proof of relay is on
        #: set when the policy wants fresh candidates (see :meth:`announce_due`)
        self.announce_wanted = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._probe_timer: asyncio.TimerHandle | None = None  #: _probe_quiet_parents
        #: how late the loop runs what is due (``/stats`` ``loop_lag_ms``), from :meth:`start`
        self.loop_lag = LoopLag(self.loop)
        self.closing = False  #: close() has begun: no new timers, tasks or dials
        #: what happened, for local programs (the local API's event feed)
        self.events = EventBus(clock)
        self.endpoint.on_migrated = self._on_migrated
        self.endpoint.on_chunks_dropped = self._on_chunks_dropped
        #: the DHT (docs/oftp.md §17): finds the streams' peers without a tracker
        self.dht: DhtDriver | None = DhtDriver(self) if dht else None
        #: stream chat and direct messages (oasis.core.chat, oasis.core.dm)
        self.messaging = Messaging(self)
        #: files (docs/oftp.md §18): oasis.node.files.Files, set by the runtime (it knows the data dir)
        self.files: Any = None
        #: where the neighbours are kept for a restart (:meth:`keep_neighbours`), the last set
        #: written and its timer
        self._nb_dir: Path | None = None
        self._nb_saved: bytes = b""
        self._nb_timer: asyncio.TimerHandle | None = None
        #: the node's own counters (exported with the others by :attr:`counters`)
        self.node_counters = {"neighbours_recalled": 0,  # saved neighbours offered at start
                              "http_connects": 0}  # TCP connections its HTTP client opened

    async def _http_connected(self, _session: aiohttp.ClientSession, _ctx: Any,
                              _params: aiohttp.TraceConnectionCreateEndParams) -> None:
        self.node_counters["http_connects"] += 1

    async def start(self) -> tuple[str, int]:
        self.host, self.port = await self.endpoint.listen(self.host, self.port)
        self.policy.mapping.listen = (self.host, self.port)
        self._run_policy()
        if not self.closing:
            self._probe_timer = self.loop.call_later(PROBE_EVERY, self._probe_quiet_parents)
            self.loop_lag.start()
        return self.host, self.port

    def keep_neighbours(self, data_dir: Path) -> int:
        """Dial the neighbours saved in ``data_dir`` by the node's last run (if fresh), and from
        now on keep the current ones there (:mod:`oasis.node.neighbourfile`): a node
        restarted after a crash links again with those who still hold a dead link to it.
        Call once its streams are added. Returns how many were offered."""
        found = neighbourfile.load(data_dir, self.identity.public)
        self._nb_dir = data_dir
        if found:
            self.offer_candidates(found)
            self.node_counters["neighbours_recalled"] += len(found)
        if not self.closing and self._nb_timer is None:
            self._nb_timer = self.loop.call_later(neighbourfile.SAVE_EVERY, self._save_neighbours)
        return len(found)

    def _neighbour_entries(self) -> list[tuple[bytes, str, int]]:
        out = []
        for k, p in self.policy.peers.items():
            if p.joined and not p.link.closed:
                out.append((k, str(p.link.addr[0]), int(p.link.addr[1])))
        return out

    def _save_neighbours(self) -> None:
        self._nb_timer = None
        if self.closing or self._nb_dir is None:
            return
        self._nb_timer = self.loop.call_later(neighbourfile.SAVE_EVERY, self._save_neighbours)
        entries = sorted(self._neighbour_entries())
        if not entries:
            return  # (a node that lost every link keeps the last set for its next run)
        body = neighbourfile.encode(entries, 0.0)  # compared without the time
        if body == self._nb_saved:
            return
        self._nb_saved = body
        self.spawn(asyncio.to_thread(neighbourfile.save, self._nb_dir,
                                     neighbourfile.encode(entries, time.time())))

    def _in_tree(self, peer: bytes) -> bool:
        """Is ``peer`` our parent or child on one of our streams (the policy's ``tree_peer``)?"""
        return any(ls.swarm.in_tree(peer) for ls in self.streams.values())

    def _probe_quiet_parents(self) -> None:
        """PING each parent link (a peer that pushes to us) that has sent nothing for
        ``PROBE_QUIET`` s: when our address changes, the first packet from the new one
        lets the parent migrate the connection (docs/oftp.md §15.4). Parents push several
        times a second, so a live one is rarely probed.

        It looks again when the first parent could turn quiet (its last packet or PING
        plus ``PROBE_QUIET``, a timer step past), no sooner than ``PROBE_EVERY`` and no
        later than ``PROBE_QUIET`` (a parent gained meanwhile): about 3 wake-ups a second
        while parents push, where a fixed 0.1 s period took 10. A timer callback (armed
        by :meth:`start`, cancelled by :meth:`close`), not a task sleeping in a loop."""
        self._probe_timer = None
        if self.closing:
            return
        now = self.loop.time()
        soonest = now + PROBE_QUIET
        try:
            for ls in list(self.streams.values()):
                for key in {k for k in ls.swarm.tree.parents if k is not None}:
                    link = self.policy.link_of(key)
                    if link is None or link.closed:
                        continue
                    if now - link.heard_at > PROBE_QUIET and now - link.probed_at > PROBE_QUIET:
                        link.probe(now)  # at most one PING per quiet spell of PROBE_QUIET
                    soonest = min(soonest, max(link.heard_at, link.probed_at) + PROBE_QUIET)
        finally:
            if not self.closing:
                wait = min(PROBE_QUIET, max(PROBE_EVERY, soonest - now + TIMER_GRID))
                self._probe_timer = self.loop.call_later(wait, self._probe_quiet_parents)

    def announce_address(self) -> tuple[str, int]:
        """The address to announce: behind a NAT with an endpoint-independent mapping,
        the one peers see (OBSERVED from two networks, oasis.core.nat); else where we listen."""
        m = self.policy.mapping
        if m.public is not None and m.kind == NatKind.EIM:
            return m.public
        return self.host, self.port

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    # ---- views of the policy (read by http.py, runtime.py and tests) -----------
    @property
    def target_neighbours(self) -> int:
        return self.policy.config.target_neighbours

    @property
    def max_neighbours(self) -> int:
        return self.policy.config.max_neighbours

    @property
    def counters(self) -> dict[str, int]:
        """The policy's counters and the links' (``link_*``, summed over live and closed
        links; ``link_chunk_bytes_buffered`` is held now): a copy of plain ints, what
        /stats and /metrics export."""
        nat = {f"nat_{k}": v for k, v in counter_dict(self.policy.nat.counters).items()}
        nat["nat_kind"] = int(self.policy.mapping.kind)  # oasis.core.nat.NatKind
        dht = self.dht.counters_all() if self.dht is not None else {}
        files = self.files.counters() if self.files is not None else {}
        return (counter_dict(self.policy.counters) | nat | dht | files | self.link_counters()
                | self.messaging.counters() | self.node_counters)

    def link_counters(self) -> dict[str, int]:
        """The sessions' hostile-input counters summed over every link of this node."""
        out = dict(self.closed_link_counters)
        buffered = 0
        for link in self.endpoint.links:
            if link.folded:
                continue
            c = link.session.counters
            for name in LINK_COUNTERS:
                out[f"link_{name}"] += getattr(c, name)
            out["link_migrations"] += link.migrations
            out["link_probes"] += link.probes
            out["link_paths_unvalidated"] += link.unvalidated_paths
            buffered += c.chunk_bytes_buffered
        out["link_chunk_bytes_buffered"] = buffered
        return out

    @property
    def links_by_peer(self) -> dict[bytes, Link]:
        return {k: p.link for k, p in self.policy.peers.items()}

    @property
    def joined(self) -> dict[bytes, set[bytes]]:
        return {k: p.joined for k, p in self.policy.peers.items()}

    @property
    def banned(self) -> dict[bytes, float]:
        return self.policy.bans

    @property
    def dialling(self) -> set[bytes]:
        return set(self.policy.dialling)

    def spawn(self, coro: Any) -> None:
        if self.closing:  # shutting down: links closing now must not start fetches or dials
            coro.close()
            return
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add_stream(self, sid: StreamId, *, is_source: bool, origin_url: str | None = None,
                   config: sw.SwarmConfig | None = None, clock_offset: float = 0.0) -> LiveStream:
        """Carry a stream; a viewer's ``clock_offset`` is its clock minus the broadcaster's
        (:func:`oasis.core.clocksync.correction`: the stream's core runs on the latter)."""
        # until it plays, JOINs ask for a start; links already up are JOINed now
        if not self.policy.add_stream(str(sid), sid.key, starting=not is_source):
            raise ValueError(f"this node carries at most {self.policy.config.max_streams} streams")
        ls = LiveStream(self, sid, is_source=is_source, origin_url=origin_url, config=config,
                        clock_offset=clock_offset)
        self.streams[sid.key] = ls
        self._run_policy()  # sends those JOINs
        ls.pump()  # arms its timer: a viewer no peer reaches still starts from the origin
        ls.prefetch_latest()  # (its latest.json, read now: such a start then takes one request)
        self.events.publish("stream.started", {"stream_id": ls.text_id,
                                               "role": "broadcaster" if is_source else "viewer"})
        return ls

    def remove_stream(self, sid: StreamId) -> bool:
        """Stop carrying a stream: its swarm peers are dropped and its timer cancelled."""
        ls = self.streams.pop(sid.key, None)
        if ls is None:
            return False
        for peer in list(ls.swarm.peers):
            ls.swarm.remove_peer(peer, ls.now())
            self.send_to(peer, wire.Leave(stream=sid.key))  # the peer drops our subscriptions
        ls.close()
        if self.dht is not None:
            self.dht.stream_removed(sid)
        self.policy.remove_stream(ls.text_id)
        self._run_policy()
        self.events.publish("stream.stopped", {"stream_id": ls.text_id})
        return True

    def ban(self, peer: bytes, seconds: float = 60.0) -> None:
        self.policy.ban(peer, self.clock(), seconds)
        self._run_policy()

    def neighbour_count(self) -> int:
        return self.policy.neighbour_count()

    def _mark(self, step: str) -> None:
        """A step of the start (``LiveStream.start_trace``) for every stream not playing yet."""
        for ls in self.streams.values():
            if ls.record.started_at is None:
                ls.mark(step)

    # ---- the policy's actions ----------------------------------------------------
    def _run_policy(self) -> None:
        policy = self.policy
        for a in policy.actions():
            if isinstance(a, pp.SendTo):
                if isinstance(a.message, wire.Punch) and trace.isEnabledFor(logging.INFO):
                    m = a.message
                    trace.info("send PUNCH %s to %s: peer %s %s:%s nonce %d delay %d ms",
                               m.phase, _k(a.link.peer_key), _k(m.peer), m.host, m.port, m.nonce,
                               m.delay_ms)
                a.link.send(a.message)
            elif isinstance(a, pp.AddPeer):
                ls = self.streams.get(a.stream)
                link = policy.link_of(a.peer)
                if ls is not None:
                    ls.mark("peer")
                    ls.swarm.add_peer(a.peer, ls.now(), rtt=link.rtt if link is not None else -1.0,
                                      start=a.start, asked=a.asked)
                    ls.pump()
                    self.messaging.on_join(a.peer, a.stream)
            elif isinstance(a, pp.RemovePeer):
                ls = self.streams.get(a.stream)
                if ls is not None:
                    ls.swarm.remove_peer(a.peer, ls.now())
                    ls.pump()
            elif isinstance(a, pp.CloseLink):
                if not a.link.closed:
                    a.link.close(a.code, a.reason)
            elif isinstance(a, pp.Dial):
                if trace.isEnabledFor(logging.INFO):
                    trace.info("dial %s at %s:%s", _k(a.peer), a.host, a.port)
                self._mark("dial")
                self.spawn(self._dial(a.peer, a.host, a.port, 5.0))
            elif isinstance(a, pp.Prime):
                sent = self.endpoint.prime((a.host, a.port), a.ttl)
                if trace.isEnabledFor(logging.INFO):
                    trace.info("prime %s at %s:%s ttl %d%s", _k(a.peer), a.host, a.port, a.ttl,
                               "" if sent else " (not sent)")
            elif isinstance(a, pp.Ban):
                log.warning("banned %s until %.0f: %s %s", peer_id_of(a.peer)[:16], a.until,
                            a.code.name, a.reason)
            elif isinstance(a, pp.Report):
                log.warning("protocol violation (unjoined) from %s: %s", peer_id_of(a.peer)[:16], a.text)
            elif isinstance(a, pp.Announce):
                self.announce_wanted.set()
                if self.dht is not None:
                    self.dht.want_candidates()
        self._arm()

    def _arm(self, at_least: float = 0.0) -> None:
        t = self.policy.get_timer()
        if t is None or self.closing or (self._timer is not None and self._timer_at == t):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = t
        self._timer = self.loop.call_later(max(at_least, t - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        at = self._timer_at
        self._timer = None
        self._timer_at = None
        if at is not None and self.clock() < at:  # fired early (see LiveStream._on_timer)
            self._arm(at_least=TIMER_GRID)
            return
        self.policy.handle_timer(self.clock())
        self._run_policy()

    # ---- candidates and dialling ---------------------------------------------------
    async def announce_due(self) -> None:
        """Wait until the policy wants fresh candidates (its announce cadence: at once after
        start, every ``fast_interval`` while short of neighbours (slower while the answers name
        nobody new), else the source's interval;
        ``retry_interval`` after :meth:`announce_failed`; soon after a neighbour left).
        Answer with :meth:`offer_candidates` or :meth:`announce_failed`. One waiter."""
        await self.announce_wanted.wait()
        self.announce_wanted.clear()

    def offer_candidates(self, found: list[pp.Candidate], *, interval: float | None = None,
                         verified: bool = True) -> None:
        """The answer to an announce: candidates a source named (``verified``: the caller
        checked them, e.g. signed records); the policy dials those it wants, now and later."""
        if found:
            self._mark("candidates")
        self.policy.on_candidates(found[:MAX_OFFERED], self.clock(), verified=verified,
                                  interval=interval)
        self._run_policy()
        if verified and self.dht is not None and not self.dht.seeded:
            self.dht.seed(found)  # the first peers any source names bootstrap the DHT

    def offer_peers(self, peers: list[dict[str, Any]], *, interval: float | None = None,
                    verified: bool = True) -> None:
        """:meth:`offer_candidates` from JSON-like dicts (``peer_id``, ``host``, ``port``);
        malformed entries are skipped."""
        found = []
        for p in peers[:MAX_OFFERED]:
            try:
                found.append(pp.Candidate(key_of_peer_id(str(p["peer_id"])), str(p["host"]),
                                          int(p["port"])))
            except (KeyError, TypeError, ValueError):
                continue
        self.offer_candidates(found, interval=interval, verified=verified)

    def announce_failed(self) -> None:
        self.policy.announce_failed(self.clock())
        self._run_policy()

    async def connect(self, peer_id: str, host: str, port: int, timeout: float = 5.0) -> bool:
        """Dial one peer now (if the policy allows); True once its link is admitted."""
        try:
            key = key_of_peer_id(peer_id)
        except ValueError:
            return False
        if not self.policy.may_dial(key, host, port, self.clock()):
            return False
        return await self._dial(key, host, port, timeout)

    async def _dial(self, key: bytes, host: str, port: int, timeout: float) -> bool:
        pending = self.dht.dial_in_flight(key) if self.dht is not None else None
        if pending is not None:
            # The DHT is dialling this peer already: take its link (admitted as a neighbour,
            # the policy dialling it too) rather than open a second one. Two links dialled
            # by one side can come up in opposite orders at the two ends, and the
            # duplicate-link rule (keep the one dialled by the smaller key) cannot tell them
            # apart: each end kept a different one.
            try:
                await asyncio.wait_for(asyncio.shield(pending), timeout)
            except (TimeoutError, ConnectionError, OSError):
                pass
            if self.policy.link_of(key) is not None:
                return True
            self.policy.dial_failed(key, self.clock())
            if self.dht is not None:
                self.dht.provider_dialled(key, False)
            self._run_policy()
            return False
        try:
            link = self.endpoint.dial((host, port), key)
            await asyncio.wait_for(asyncio.shield(link.handshake_done), timeout)
        except (TimeoutError, ConnectionError, OSError) as exc:
            log.debug("dial %s:%s failed: %s", host, port, exc)
            if trace.isEnabledFor(logging.INFO):
                trace.info("dial %s at %s:%s failed: %r", _k(key), host, port, exc)
            self.policy.dial_failed(key, self.clock())
            if self.dht is not None:
                self.dht.provider_dialled(key, False)
            self._run_policy()
            return False
        return self.policy.link_of(key) is link

    # ---- session events ------------------------------------------------------
    def _on_event(self, link: Link, ev: ss.Event) -> None:
        if isinstance(ev, ss.MessageReceived):
            self._on_message(link, ev.message)
        elif isinstance(ev, ss.ChunkReceived):
            peer = link.peer_key
            # (the policy first, also for a stream we do not carry: it scores the sender)
            if peer is not None and self.policy.on_chunk(link, peer, ev.chunk.stream, self.clock()):
                ls = self.streams.get(ev.chunk.stream)
                if ls is not None:
                    ls.mark("chunk")
                    ls.swarm.on_chunk(peer, ev.chunk, ls.now())
                    ls.pump()
            elif peer is not None:
                self._run_policy()  # refused: scored, perhaps banned
        elif isinstance(ev, ss.Authenticated):
            # the address its packets come from (told to the peer: OBSERVED) and the RTT
            dialled = link.session.is_dialler
            # a link we dialled for the DHT alone (not one the policy dials) is a service link
            service = (dialled and self.dht is not None and self.dht.is_dialling(ev.peer_key)
                       and ev.peer_key not in self.policy.dialling)
            admitted = self.policy.link_up(link, ev.peer_key, dialled=dialled,
                                           now=self.clock(), addr=(str(link.addr[0]), int(link.addr[1])),
                                           rtt=link.low_rtt if link.low_rtt > 0 else None, service=service)
            if trace.isEnabledFor(logging.INFO):
                trace.info("link %s %s %s:%s admitted %s rtt %.0f ms", _k(ev.peer_key),
                           "dialled" if dialled else "inbound", link.addr[0], link.addr[1],
                           admitted, link.rtt * 1000)
            if admitted:
                self._mark("link")
            if admitted and self.rewards is not None:
                link.send(self.rewards.hello())
            self._run_policy()
            if dialled and self.dht is not None:
                self.dht.provider_dialled(ev.peer_key, True)  # a record's provider, reached
            if admitted and self.dht is not None:
                self.dht.link_admitted(ev.peer_key)  # DHT messages that waited (after JOIN)
            if admitted:
                self.messaging.on_link_up(ev.peer_key)
            if admitted and self.files is not None:
                self.files.link_up(ev.peer_key)  # a peer a file swarm wanted (dialled by anyone)
        elif isinstance(ev, ss.Violation):
            log.warning("protocol violation from %s: %s %s", link.addr, ev.code.name, ev.detail)
            self.policy.on_violation(link, link.peer_key, self.clock(), f"{ev.code.name} {ev.detail}")
            self._run_policy()
        elif isinstance(ev, ss.Closed):
            self._on_closed(link, ev.code)

    def _on_migrated(self, link: Link) -> None:
        """The peer of ``link`` now sends from another address: tell the policy (the peer
        is told its new address, OBSERVED, so it learns its new mapping)."""
        if link.peer_key is not None:
            self.policy.address_changed(link, link.peer_key, (str(link.addr[0]), int(link.addr[1])),
                                        self.clock())
            self._run_policy()

    def _on_chunks_dropped(self, link: Link, slack: float, nbytes: int) -> None:
        """``link`` dropped ``nbytes`` of copies to its peer unsent at their deadline,
        ``slack`` s after they were written: each stream that has the peer hears it (its
        uplink probe, where the peer is its child: a link's chunk streams carry no stream
        id, and a peer in two streams is rare)."""
        peer = link.peer_key
        if peer is None:
            return
        for ls in self.streams.values():
            if peer in ls.swarm.peers:
                # (a cut it makes at once may shed children: their UNSUBSCRIBE goes out
                # with the stream's next pump, not from inside the link's reset)
                ls.swarm.on_push_dropped(peer, ls.now(), slack, nbytes)

    def _on_message(self, link: Link, msg: wire.Message) -> None:
        peer = link.peer_key
        if peer is None:
            return
        now = self.clock()
        if isinstance(msg, wire.Error):
            log.info("peer %s reports error %s: %s", link.addr, msg.code, msg.reason)
        if isinstance(msg, wire.Punch):
            self.policy.rtt_sample(peer, link.low_rtt)  # punches time the dials by it
        if isinstance(msg, (wire.Punch, wire.Observed)) and trace.isEnabledFor(logging.INFO):
            kind = self.policy.mapping.kind
            if isinstance(msg, wire.Punch):
                trace.info("got PUNCH %s from %s: peer %s %s:%s nonce %d delay %d ms", msg.phase,
                           _k(peer), _k(msg.peer), msg.host, msg.port, msg.nonce, msg.delay_ms)
        route = self.policy.on_message(link, peer, msg, now)
        if isinstance(msg, wire.Observed) and trace.isEnabledFor(logging.INFO):
            m = self.policy.mapping
            trace.info("OBSERVED from %s: %s:%s; mapping %s %s (was %s)", _k(peer), msg.host,
                       msg.port, m.kind.name, m.public, kind.name)
        if route is None:
            self._run_policy()
        elif route == pp.TO_NODE:
            if isinstance(msg, (wire.WalletBind, wire.TicketMsg, wire.ReceiptMsg)):
                self._on_ledger_message(link, peer, msg)
            elif isinstance(msg, wire.DhtPong) and link.path_proof(msg.qid):
                pass  # the peer proved its new address (Link._prove), not a DHT answer
            elif isinstance(msg, wire.DHT_MESSAGES) and self.dht is not None:
                self.dht.on_message(link, peer, msg)
            elif isinstance(msg, wire.DM_MESSAGES):
                self.messaging.on_dm(peer, msg)
            elif isinstance(msg, wire.FILE_MESSAGES) and self.files is not None:
                self.files.on_message(link, peer, msg)
        else:
            ls = self.streams.get(route)
            if ls is None:
                return
            if isinstance(msg, wire.CHAT_MESSAGES):
                self.messaging.on_chat(peer, msg)
                return
            if isinstance(msg, wire.Status):
                ls.mark("status")
                ls.swarm.set_rtt(peer, link.rtt)  # parents are chosen on it: keep it current
                self.policy.rtt_sample(peer, link.low_rtt)  # (and punches time their dials by it)
            ls.swarm.on_message(peer, msg, ls.now())
            ls.pump()

    def _on_ledger_message(self, link: Link, peer: bytes, msg: wire.Message) -> None:
        r = self.rewards
        if r is None:
            return  # this node takes no part in proof of relay: ignore, not an error
        if isinstance(msg, wire.WalletBind):
            if not r.on_wallet(peer, msg):
                self.policy.on_violation(link, peer, self.clock(), "bad wallet binding")
                self._run_policy()
        elif r.ledger is not None and r.issuer is None:  # relays verify; broadcasters are not paid
            if isinstance(msg, wire.TicketMsg):
                r.on_ticket(msg, peer)  # rate limits are per peer
            elif isinstance(msg, wire.ReceiptMsg):
                r.on_receipt(msg, peer)

    def send_to(self, peer: bytes, msg: wire.Message) -> None:
        link = self.policy.link_of(peer)
        if link is not None:
            link.send(msg)

    def _on_closed(self, link: Link, code: ErrorCode) -> None:
        if trace.isEnabledFor(logging.INFO):
            trace.info("link %s %s:%s closed %s", _k(link.peer_key), link.addr[0], link.addr[1],
                       code.name if isinstance(code, ErrorCode) else code)
        if not link.folded:
            self._fold(link)
        self.policy.link_down(link, link.peer_key, self.clock(), code=code)
        self._run_policy()
        if self.files is not None and link.peer_key is not None:
            self.files.link_down(link.peer_key)

    def _fold(self, link: Link) -> None:
        """Add a closed link's counters to the node's totals, once."""
        link.folded = True
        c = link.session.counters
        self.closed_links_stats["control"] += c.control_in + c.control_out
        self.closed_links_stats["chunk_stream"] += c.chunk_stream_in + c.chunk_stream_out
        self.closed_links_stats["media"] += c.media_in + c.media_out
        self.closed_links_stats["wire"] += link.wire_in + link.wire_out
        for name in LINK_COUNTERS:
            self.closed_link_counters[f"link_{name}"] += getattr(c, name)
        self.closed_link_counters["link_migrations"] += link.migrations
        self.closed_link_counters["link_probes"] += link.probes
        self.closed_link_counters["link_paths_unvalidated"] += link.unvalidated_paths

    # ---- accounting ------------------------------------------------------------
    def traffic(self) -> dict[str, int]:
        """Bytes sent+received on all links (live and closed): OFTP and UDP level."""
        t = dict(self.closed_links_stats)
        for link in self.endpoint.links:
            if link.folded:
                continue
            c = link.session.counters
            t["control"] += c.control_in + c.control_out
            t["chunk_stream"] += c.chunk_stream_in + c.chunk_stream_out
            t["media"] += c.media_in + c.media_out
            t["wire"] += link.wire_in + link.wire_out
        return t

    def neighbours(self) -> list[str]:
        return [peer_id_of(k) for k in self.policy.peers]

    async def close(self) -> None:
        self.closing = True
        for ls in self.streams.values():
            ls.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._probe_timer is not None:
            self._probe_timer.cancel()
            self._probe_timer = None
        self.loop_lag.stop()
        if self._nb_timer is not None:
            self._nb_timer.cancel()
            self._nb_timer = None
        if self._nb_dir is not None and (entries := sorted(self._neighbour_entries())):
            # the set at a clean stop (a restart dials them; they were told we stopped)
            await asyncio.to_thread(neighbourfile.save, self._nb_dir,
                                    neighbourfile.encode(entries, time.time()))
        if self.dht is not None:
            self.dht.close()
        if self.files is not None:
            self.files.close()
        self.endpoint.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.events.close()
        await self.http.close()
