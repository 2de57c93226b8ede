"""A CDN edge for Oasis streams (``oasis edge``): the HTTP fallback near the viewers.

When peers cannot deliver a chunk in time a viewer fetches it over HTTP from the origin or
a CDN in front of it, 0.12 s before its deadline (``origin_margin``). From an origin on
another continent (100-350 ms away in the testbed) that answer comes too late; from an edge
in the viewer's region it comes in that region's round trip -- if the edge already holds
the chunk. An edge that pulls a live chunk only at its first miss does not (its first
viewer waits the origin's round trip), so this edge *follows* every stream it serves:
one long response from the origin, ``GET <origin>/<stream>/feed``, carries each chunk as
the broadcaster makes it (docs/oftp.md, the HTTP origin), as a live CDN's ingest does, and
the edge holds the newest :data:`CACHE_CHUNKS` of each stream. Of its :data:`FEEDS`
connections the first starts at the newest keyframe (what a viewer's start asks for) and the
second at the newest chunk (``feed/newest``), so that a far edge's fresh connection does not
carry a GOP of backlog through TCP's slow start before the live chunks.

It answers the origin's URLs, so a viewer is pointed at it with ``--cdn-url
http://<edge>/origin``:

* ``GET /origin/<stream>/<seq>.chunk`` -- from the cache. A chunk a little newer than the
  feed has brought (at most :data:`HOLD_AHEAD` seqs) is *held*: the request waits up to
  ``hold`` s (:data:`HOLD_S`) and is answered the moment the feed brings the chunk, as a
  low-latency HLS server holds a blocking request. Answered 404 at once instead, a viewer
  asked again after its retry interval and a round trip, and a chunk that reached the edge
  in that gap missed its deadline. Past the hold, further ahead, or with :data:`MAX_HELD`
  requests held already (:data:`MAX_HELD_PER_IP` from one address), it is 404 (not made
  yet, as the origin says). An older one not held is pulled through from the origin, once
  however many ask at the same time, and kept.
* ``GET /origin/<stream>/latest.json`` -- from the feed while it is up (else passed through).
* ``GET /origin/<stream>/time``, ``descriptor`` -- passed through to the origin and never
  kept (they change; ``time`` must be the broadcaster's clock).
* ``GET /origin/<stream>/feed`` and ``feed/newest`` -- its own feeds, for an edge behind it.
* ``GET /stats`` -- the edge's counters (to this machine only).

Nothing from the origin is trusted further than it is checked: a feed frame's length is
capped (:data:`oasis.core.wire.MAX_CHUNK_MESSAGE`), every chunk is decoded strictly and its
signature verified against the stream id, which names the broadcaster's key, before it is
kept or served; a frame that fails ends the feed (counted; reconnected after a back-off).
A stream is followed only while viewers ask for it (:data:`IDLE_UNFOLLOW`), at most
:data:`MAX_STREAMS` at once; a request for a stream id that does not parse is 400 without
a byte sent upstream.

A stream the operator names (``oasis edge --follow <stream-id>``, :meth:`Edge.pin`) is
followed from the edge's start whether or not anyone asks, as a CDN is warmed for a
scheduled broadcast: a cold edge's first viewer waits for the edge's first round trips to a
far origin (its ``latest.json`` passed through, then the feed's connection and first
keyframe). In the 30-node testbed the first viewer in each country whose edge was cold
started 0.6-1.2 s after its join instead of ~0.3 s, and those seven viewers missed 208 of a
run's 338 chunks (docs/benchmarks.md, session 52). Until the origin carries it, it is asked
for again every :data:`UNKNOWN_RETRY` s.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from oasis.core import wire
from oasis.core.metrics import rank_figures
from oasis.core.stream import StreamId, StreamIdError, verify_chunk
from oasis.core.urls import base_url_problem

from . import http, outbound
from .looplag import LoopLag

log = logging.getLogger(__name__)

CACHE_CHUNKS = 1800  #: chunks held per stream: 60 s of 33 ms chunks (~11 MB at 1.5 Mbit/s)
MAX_STREAMS = 16  #: streams followed at once; a request for one more is pulled through
#: A stream is followed at the first request that names it, but takes one of the
#: ``MAX_STREAMS`` only once its feed brought a genuine chunk (signed by its key): until then
#: it is pending, at most ``MAX_STREAMS`` pending and ``MAX_PENDING_PER_IP`` for one address,
#: and it is dropped at once when the origin says it does not carry it (404 ``no_stream``),
#: then not followed again for ``UNKNOWN_RETRY`` s (its requests are pulled through). Sixteen
#: requests for made-up stream ids took every slot for a minute, and the real stream's
#: requests were pulled through unheld (found 2026-12-05 by an outside audit).
MAX_PENDING_PER_IP = 4
UNKNOWN_RETRY = 2.0
MAX_UNKNOWN = 1024  #: stream ids remembered as not carried by the origin
#: feed connections per stream, each carrying every chunk; the first copy to arrive is kept.
#: One TCP connection stalls for a round trip or more at each lost packet, and every chunk
#: behind it waits (head-of-line): across a 300 ms path with 0.1 % loss the testbed's far
#: edges saw feed lags p95 ~0.6 s against p50 ~0.19 s. Two seldom stall at once.
FEEDS = 2
#: s after an origin answered ``feed/newest`` 404 (not ``no_stream``) before a new feed link asks
#: it again (meanwhile it takes the plain ``feed``)
NEWEST_RETRY = 60.0
IDLE_UNFOLLOW = 60.0  #: s without a request for a stream after which its feed is closed
FEED_READ_TIMEOUT = 5.0  #: s of silence on a feed after which it is reconnected
BACKOFF_MIN, BACKOFF_MAX = 0.5, 8.0  #: s between a failed feed and the next try
PASS_TIMEOUT = 5.0  #: s an origin may take to answer a passed-through or pulled request
#: bytes of a passed-through answer (``latest.json`` ~80, ``time`` ~30, a descriptor < 8 kB)
PASS_CAPS = {"latest.json": 512, "time": 512, "descriptor": 64 * 1024}
MAX_PULLS = 64  #: pull-throughs under way at once (each holds an upstream request)
MAX_PULLS_PER_IP = 16  #: ... started for one address (one address took all 64: found from outside)
LAG_SAMPLES = 2000  #: feed lags and miss distances kept per stream for /stats
#: s a request for a chunk just ahead of the feed waits for it (0: 404 at once). Longer than
#: a viewer's whole playout delay: its own timeout (the chunk's deadline) ends it sooner
HOLD_S = 1.0
HOLD_AHEAD = 64  #: seqs ahead of the feed's newest a request may be held for (~2 s of 33 ms chunks)
#: a 404 further ahead of the feed than this (~34 s of 33 ms chunks) is counted
#: ``misses_far_ahead`` and kept out of ``misses_ahead_by``: no viewer's clock is that far
#: off, and one request for seq 2**63 put 9.2e18 into the statistics
FAR_AHEAD = 1024
MAX_HELD = 1024  #: requests held at once (each an open connection; past it: 404 at once)
MAX_HELD_PER_IP = 64  #: ... from one address (a CGN's subscribers share one)
FEED_DOWN_SAY = 10.0  #: s a stream's feed fails before the edge says so on stderr (once an outage)
HELD_MS_MAX = 10_000  #: the most ``Oasis-Held-Ms`` says (the hold is at most 10 s)


class FeedError(ValueError):
    """A feed sent something this edge does not keep (the message says what)."""


class FeedRefused(ValueError):
    """The origin answered a feed request with another status than 200 (404 ``no_stream``,
    a wrong ``--origin``): counted ``feed_refused``, apart from ``feed_bad_chunks``.
    ``no_route``: a 404 that is not an origin's ``no_stream`` (no such path there)."""

    def __init__(self, message: str, *, no_route: bool = False) -> None:
        super().__init__(message)
        self.no_route = no_route


class StreamUnknown(Exception):
    """The origin does not carry a stream that was never confirmed here (404 ``no_stream``)."""


class NoNewestFeed(Exception):
    """The origin has no ``feed/newest`` (404): one from before it."""


class _ErrorBody(msgspec.Struct):
    error: str = ""


async def _no_stream(r: aiohttp.ClientResponse) -> bool:
    """A 404 that is the origin's ``no_stream`` (its JSON error, read capped and strictly)."""
    try:
        raw = await http.read_capped(r.content, PASS_CAPS["latest.json"])
        return len(raw) <= PASS_CAPS["latest.json"] and http.decode_json(raw, _ErrorBody).error == "no_stream"
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False


@dataclass
class Followed:
    """One stream the edge serves: its feed and the chunks it holds."""

    sid: StreamId
    text: str
    chunks: dict[int, bytes] = field(default_factory=dict)  #: seq -> the chunk's wire bytes
    etags: dict[int, str] = field(default_factory=dict)
    order: deque[int] = field(default_factory=deque)  #: held seqs, oldest first
    latest: int = -1  #: the newest seq the feed brought
    keyframe: int = -1  #: the newest keyframe's seq held
    latest_time: float = 0.0  #: the newest chunk's signed time (s)
    asked: float = 0.0  #: monotonic time of the last request for this stream
    links: int = 0  #: feed connections up now
    frames: int = 0  #: chunks the feeds brought first (a second copy is not counted)
    #: set (and replaced) when a feed brings a new chunk: what this edge's own feeds wait on
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    #: the last LAG_SAMPLES feed chunks' arrival here after the broadcaster signed them (s,
    #: on this machine's clock: what the feed costs), and how far ahead of the feed the
    #: last misses asked (chunks)
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_SAMPLES))
    ahead: deque[int] = field(default_factory=lambda: deque(maxlen=LAG_SAMPLES))
    #: held requests by the seq they wait for: its future (the chunk's bytes) and how many wait
    waiting: dict[int, tuple[asyncio.Future[bytes], list[int]]] = field(default_factory=dict)
    held_waits: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_SAMPLES))  #: s a hit waited
    #: a genuine chunk of it came (from its feed or a pull): it holds one of the edge's
    #: ``max_streams``; until then it is pending, for the address ``ip`` that first asked
    confirmed: bool = False
    ip: str = ""
    #: monotonic time its feed first failed in the current outage (None: up), and whether
    #: that outage was said on stderr (``FEED_DOWN_SAY`` s in)
    down_since: float | None = None
    down_said: bool = False
    #: followed from the start whether or not anyone asks (``--follow``): never unfollowed
    #: for want of requests, never dropped while the origin does not carry it yet
    pinned: bool = False

    @property
    def connected(self) -> bool:
        """At least one feed connection is up."""
        return self.links > 0


class Edge:
    """The edge's state and its upstream client; :meth:`routes` serves it."""

    def __init__(self, origin: str, session: aiohttp.ClientSession, *,
                 cache_chunks: int = CACHE_CHUNKS, max_streams: int = MAX_STREAMS,
                 feeds: int = FEEDS, hold: float = HOLD_S, clock: Any = time.monotonic) -> None:
        problem = base_url_problem(origin, "origin URL")
        if problem:
            raise ValueError(problem)
        if not 1 <= feeds <= http.MAX_FEEDS_PER_IP:
            raise ValueError(f"feeds {feeds}: 1 to {http.MAX_FEEDS_PER_IP} (an origin serves at most "
                             f"{http.MAX_FEEDS_PER_IP} per address)")
        if not 0.0 <= hold <= 10.0:
            raise ValueError(f"hold {hold}: 0 (answer 404 at once) to 10 s")
        self.feeds = feeds
        #: (monotonic s) until when the second feed link asks for ``feed`` instead of
        #: ``feed/newest``: the origin answered that 404 (not ``no_stream``), as one from before
        #: the route does. Asked again NEWEST_RETRY later: one 404 (a proxy in front that had
        #: not learnt the route yet, an upstream edge restarting) turned it off for the edge's
        #: life (found in session 52's audit)
        self.newest_off_until = 0.0
        self.warned_no_route = False  #: the warning of a feed path the origin does not have, given
        self.hold = hold
        self.holding = 0  #: requests held now
        self.held_by_ip: dict[str, int] = {}
        #: this edge's own feeds (``GET /origin/<stream>/feed``), for edges behind it: an
        #: edge may be the origin of others (a CDN's shield tier), as bounded as the origin's
        self.feed_slots = http.PlayerSlots(http.MAX_FEEDS, http.MAX_FEEDS_PER_IP)
        self.origin = origin.rstrip("/")
        self.session = session
        self.cache_chunks = cache_chunks
        self.max_streams = max_streams
        self.clock = clock
        self.streams: dict[str, Followed] = {}
        self.pending_by_ip: dict[str, int] = {}  #: streams followed, not confirmed yet, by asker
        #: stream ids the origin said it does not carry -> until when they are not followed
        self.unknown: dict[str, float] = {}
        self._pulls: dict[tuple[str, int], asyncio.Future[bytes | str]] = {}
        self._pulls_by_ip: dict[str, int] = {}  #: pulls under way by the address that started each
        self._bg: set[asyncio.Future[bytes | str]] = set()  #: pulls a cold stream's feed outran
        self.closing = False
        self._registry: Any = None  #: the /metrics registry, made at the first scrape
        #: how late the loop runs what is due (``/stats`` ``loop_lag_ms``), from :meth:`start`
        self.loop_lag: LoopLag | None = None
        self.counters: dict[str, int] = {
            "hits": 0, "misses_ahead": 0, "misses_far_ahead": 0, "pulls": 0, "pull_failures": 0, "pulls_refused": 0,
            "passed": 0, "pass_failures": 0, "latest_answered": 0, "feed_frames": 0, "feed_connects": 0,
            "feed_failures": 0, "feed_newest_unknown": 0, "feed_bad_chunks": 0, "feed_refused": 0, "feed_copies": 0, "streams_refused": 0, "streams_unknown": 0,
            "streams_unfollowed": 0, "feeds_out": 0, "feed_frames_out": 0,
            "holds": 0, "hold_hits": 0, "hold_timeouts": 0, "holds_refused": 0, "cold_feed_hits": 0}

    # ---- the feeds -------------------------------------------------------------------
    def follow(self, text: str, ip: str = "") -> Followed | None:
        """The stream ``text`` (a canonical stream id), followed from now on if it was not
        and there is room (pending until confirmed: :data:`MAX_PENDING_PER_IP`); None if there
        is none, or the origin said just now that it does not carry it (its chunks are then
        pulled through)."""
        f = self.streams.get(text)
        if f is None:
            now = self.clock()
            if self.unknown.get(text, 0.0) > now:
                return None
            confirmed = sum(1 for g in self.streams.values() if g.confirmed)
            if (confirmed >= self.max_streams or len(self.streams) - confirmed >= self.max_streams
                    or self.pending_by_ip.get(ip, 0) >= MAX_PENDING_PER_IP):
                self.counters["streams_refused"] += 1
                return None
            f = self.streams[text] = Followed(StreamId.parse(text), text, ip=ip)
            self.pending_by_ip[ip] = self.pending_by_ip.get(ip, 0) + 1
        f.asked = self.clock()
        if f.task is None and not self.closing:
            f.task = asyncio.create_task(self._follow(f))
        return f

    def _unpend(self, f: Followed) -> None:
        left = self.pending_by_ip.get(f.ip, 0) - 1
        if left > 0:
            self.pending_by_ip[f.ip] = left
        else:
            self.pending_by_ip.pop(f.ip, None)

    def _confirm(self, f: Followed) -> None:
        """A genuine chunk of ``f`` came: it is a stream the origin carries."""
        if not f.confirmed and self.streams.get(f.text) is f:
            f.confirmed = True
            if not f.pinned:  # (a pinned stream is pending for no asker)
                self._unpend(f)

    def pin(self, text: str) -> Followed:
        """Follow stream ``text`` from now on, whether or not viewers ask for it (``oasis edge
        --follow``); raises ValueError for a stream id that does not parse (it may be given in
        upper case) or one pin more than ``max_streams``."""
        try:
            sid = StreamId.parse(text.strip().lower())
        except StreamIdError as exc:
            raise ValueError(f"--follow {text!r}: not a stream id ({exc})") from None
        canon = str(sid)
        f = self.streams.get(canon)
        if (f is None or not f.pinned) and sum(g.pinned for g in self.streams.values()) >= self.max_streams:
            raise ValueError(f"--follow: at most {self.max_streams} streams (the streams this edge follows at once)")
        if f is None:
            f = self.streams[canon] = Followed(sid, canon)
        elif not f.pinned and not f.confirmed:
            self._unpend(f)  # (pending for the address that asked first: no longer)
        f.pinned = True
        f.asked = self.clock()
        self.unknown.pop(canon, None)
        if f.task is None and not self.closing:
            f.task = asyncio.create_task(self._follow(f))
        return f

    def _wanted(self, f: Followed) -> bool:
        """Whether ``f`` is still followed: pinned, or asked for within ``IDLE_UNFOLLOW`` s."""
        return not self.closing and (f.pinned or self.clock() - f.asked < IDLE_UNFOLLOW)

    async def _follow(self, f: Followed) -> None:
        # (the second from the newest chunk: no GOP of backlog ahead of the live chunks)
        links = [asyncio.create_task(self._feed_link(f, newest=i == 1)) for i in range(self.feeds)]
        unknown = False
        try:
            done, _ = await asyncio.wait(links, return_when=asyncio.FIRST_EXCEPTION)
            errors = [e for t in done if not t.cancelled() and (e := t.exception()) is not None]
            unknown = any(isinstance(e, StreamUnknown) for e in errors)
            for e in errors:
                if not isinstance(e, StreamUnknown):  # a bug: the follow ends, said
                    log.error("the feed of %s ended on %r", f.text, e)
        finally:
            for t in links:
                t.cancel()
            await asyncio.gather(*links, return_exceptions=True)
            f.task = None
            if self.streams.get(f.text) is f and not self.closing:
                del self.streams[f.text]
                if not f.confirmed and not f.pinned:
                    self._unpend(f)
                if unknown:  # not followed again for a while: its requests are pulled through
                    self.counters["streams_unknown"] += 1
                    self.unknown.pop(f.text, None)
                    self.unknown[f.text] = self.clock() + UNKNOWN_RETRY
                    while len(self.unknown) > MAX_UNKNOWN:
                        del self.unknown[next(iter(self.unknown))]
                else:
                    self.counters["streams_unfollowed"] += 1

    @property
    def newest_feed(self) -> bool:
        """The second feed link asks for ``feed/newest`` now (see ``newest_off_until``)."""
        return time.monotonic() >= self.newest_off_until

    async def _feed_link(self, f: Followed, newest: bool = False) -> None:
        """One of the stream's feed connections (``newest``: from the newest chunk on),
        reconnected after a back-off while the stream is asked for."""
        backoff = BACKOFF_MIN
        while self._wanted(f):
            try:
                await self._read_feed(f, newest and self.newest_feed)
                backoff = BACKOFF_MIN  # the origin ended it (a stall): try again soon
            except NoNewestFeed:
                # an origin from before ``feed/newest``: the plain feed instead, at once, and
                # for NEWEST_RETRY
                self.newest_off_until = time.monotonic() + NEWEST_RETRY
                self.counters["feed_newest_unknown"] += 1
            except (aiohttp.ClientError, TimeoutError, asyncio.IncompleteReadError, FeedError,
                    FeedRefused) as exc:
                self.counters["feed_failures"] += 1
                now = time.monotonic()
                if f.down_since is None:
                    f.down_since = now
                elif not f.down_said and now - f.down_since >= FEED_DOWN_SAY:
                    # (an origin down for 40 s went unsaid: only /stats counted it; found
                    # 2026-12-06 from outside)
                    f.down_said = True
                    log.warning("the origin's feed of %s has failed for %.0f s (last: %s): chunks not "
                                "held here cannot be fetched; is %s up?", f.text, now - f.down_since,
                                outbound.reason(exc)[:200], self.origin)
                if isinstance(exc, FeedError):
                    self.counters["feed_bad_chunks"] += 1
                elif isinstance(exc, FeedRefused):
                    self.counters["feed_refused"] += 1
                    if exc.no_route and not self.warned_no_route:
                        # (a wrong --origin: every feed fails so, and only the counter said it)
                        self.warned_no_route = True
                        log.warning("the origin has no feed at %s (HTTP 404, not an Oasis origin's "
                                    "no_stream): is %s the origin's base URL as `oasis broadcast` "
                                    "prints it, ending in /origin?", f"{self.origin}/{f.text}/feed",
                                    self.origin)
                await asyncio.sleep(backoff)  # a back-off, not a synchronisation
                # (a pinned stream, carried or not yet: asked for again soon. Its broadcast is
                # awaited, or its origin restarting: at BACKOFF_MAX a feed back 3 s after an
                # outage of 5 was taken up to 8 s later, and its viewers' chunks were pulled
                # through meanwhile; found in session 52's audit)
                most = UNKNOWN_RETRY if f.pinned else BACKOFF_MAX
                backoff = min(most, backoff * 2)

    async def _read_feed(self, f: Followed, newest: bool = False) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=PASS_TIMEOUT, sock_read=FEED_READ_TIMEOUT)
        url = f"{self.origin}/{f.text}/feed{'/newest' if newest else ''}"
        async with self.session.get(url, timeout=timeout) as r:
            no_stream = r.status == 404 and await _no_stream(r)
            if newest and r.status == 404 and not no_stream:
                # (no such route: an origin from before it. ``no_stream`` -- the origin does
                # not carry the stream yet, an edge started first -- is a failure like any:
                # taken for an old origin, it turned the newest feed off for good)
                raise NoNewestFeed(url)
            if no_stream and not newest and not f.confirmed and not f.pinned:
                raise StreamUnknown(f.text)  # (the plain feed's word: the newest may lag it)
            if r.status != 200:  # (not a bad chunk: it was counted as one, 96 with none received)
                raise FeedRefused("the origin does not carry the stream (yet): 404 no_stream" if no_stream
                                  else f"the origin answered the feed with HTTP {r.status}",
                                  no_route=r.status == 404 and not no_stream)
            self.counters["feed_connects"] += 1
            f.links += 1
            try:
                while self._wanted(f):
                    # (each frame within FEED_READ_TIMEOUT, whatever the client's parser does: a
                    # chunked response with a bad chunk-size line left aiohttp's C parser's read
                    # waiting for good, past its socket timeout and the origin's close, and the
                    # stream showed a feed up that brought nothing; found 2026-12-06 from outside)
                    async with asyncio.timeout(FEED_READ_TIMEOUT):
                        head = await r.content.readexactly(http.FEED_FRAME.size)
                        (n,) = http.FEED_FRAME.unpack(head)
                        if n > wire.MAX_CHUNK_MESSAGE:
                            raise FeedError(f"a feed frame of {n} bytes (at most {wire.MAX_CHUNK_MESSAGE})")
                        body = await r.content.readexactly(n)
                    self.counters["feed_frames"] += 1
                    c, new = self._keep(f, body, fed=True)
                    if f.down_since is not None:  # (back: a genuine chunk came, not just a 200)
                        if f.down_said:
                            log.warning("the origin's feed of %s is back (after %.0f s)", f.text,
                                        time.monotonic() - f.down_since)
                        f.down_since, f.down_said = None, False
                    if new:
                        f.lags.append(time.time() - c.time_us / 1e6)
                        f.frames += 1
                    else:
                        self.counters["feed_copies"] += 1
            finally:
                f.links -= 1

    def keep(self, f: Followed, body: bytes) -> wire.ChunkMsg:
        """Check ``body`` (a chunk's wire bytes) and hold it; returns the chunk. Raises
        :class:`FeedError` if it is not a chunk of ``f``'s stream signed by its broadcaster."""
        return self._keep(f, body)[0]

    def _keep(self, f: Followed, body: bytes, fed: bool = False) -> tuple[wire.ChunkMsg, bool]:
        """:meth:`keep`, and whether the chunk is new here (False: the same bytes were held
        already -- another feed's copy, not verified again). Only a chunk the feed brought
        (``fed``) moves the stream's newest seq and keyframe: a pulled one is older than the
        feed's, or, on a cold stream, any chunk an asker named (an old keyframe pulled made
        ``latest.json`` name it and the live chunks 404 "not made yet"; found from outside)."""
        try:
            c = wire.decode_chunk(body)
        except wire.WireError as exc:
            raise FeedError(f"not a chunk: {exc}") from None
        if c.stream != f.sid.key:
            raise FeedError(f"chunk {c.seq} is not of this stream")
        held = f.chunks.get(c.seq)
        if held == body:
            return c, False
        if not verify_chunk(f.sid, c):
            raise FeedError(f"chunk {c.seq} is not signed by the stream's broadcaster")
        if held is not None:  # another genuine chunk of that seq: the first one stays
            return c, False
        if not f.confirmed:
            self._confirm(f)
        f.chunks[c.seq] = body
        f.etags[c.seq] = f'"{c.signature[:12].hex()}"'
        f.order.append(c.seq)
        while len(f.order) > self.cache_chunks:
            old = f.order.popleft()
            f.chunks.pop(old, None)
            f.etags.pop(old, None)
        if fed and c.seq > f.latest:
            f.latest, f.latest_time = c.seq, c.time_us / 1e6
        if fed and c.flags & 1 and c.seq > f.keyframe:
            f.keyframe = c.seq
        w = f.waiting.pop(c.seq, None)
        if w is not None and not w[0].done():
            w[0].set_result(body)
        changed, f.changed = f.changed, asyncio.Event()
        changed.set()
        return c, True

    async def _pull(self, f: Followed, seq: int, ip: str = "") -> bytes | str:
        """Chunk ``seq`` from the origin (one request however many ask), kept if it checks;
        else why not: ``busy`` (``MAX_PULLS`` under way, or ``MAX_PULLS_PER_IP`` started for
        ``ip``), ``unreachable: <reason>``, ``HTTP <status>`` (the origin's answer) or ``bad``
        (it did not verify)."""
        key = (f.text, seq)
        fut = self._pulls.get(key)
        if fut is not None:
            return await asyncio.shield(fut)
        if len(self._pulls) >= MAX_PULLS or self._pulls_by_ip.get(ip, 0) >= MAX_PULLS_PER_IP:
            self.counters["pulls_refused"] += 1
            return "busy"
        fut = asyncio.get_running_loop().create_future()
        self._pulls[key] = fut
        self._pulls_by_ip[ip] = self._pulls_by_ip.get(ip, 0) + 1
        out: bytes | str = "bad"
        try:
            self.counters["pulls"] += 1
            timeout = aiohttp.ClientTimeout(total=PASS_TIMEOUT)
            async with self.session.get(f"{self.origin}/{f.text}/{seq}.chunk", timeout=timeout) as r:
                if r.status == 200:
                    raw = await http.read_capped(r.content, wire.MAX_CHUNK_MESSAGE)
                    try:
                        if self.keep(f, raw).seq == seq:
                            out = raw
                    except FeedError:
                        self.counters["feed_bad_chunks"] += 1
                else:
                    out = f"HTTP {r.status}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.counters["pull_failures"] += 1
            out = f"unreachable: {outbound.reason(exc)[:200]}"
        finally:
            del self._pulls[key]
            left = self._pulls_by_ip[ip] - 1
            if left:
                self._pulls_by_ip[ip] = left
            else:
                del self._pulls_by_ip[ip]
            fut.set_result(out)
        return out

    async def _pull_or_feed(self, f: Followed, seq: int, ip: str = "") -> bytes | str:
        """Chunk ``seq`` while ``f``'s feed is coming up (followed, nothing brought yet: a
        cold edge's first viewer): pulled from the origin or brought by the feed, whichever
        comes first (bounded as pulls are: at most ``MAX_PULLS`` seqs at once; no pull to be
        had, "busy", it is held for the feed as a request ahead of it is, within the hold's
        caps; no wait past a failed pull). The feed starts
        at the newest keyframe, the one a starting viewer asks for: pulled alone it cost that
        viewer one more round trip to a far origin, and a request that came when the feed
        had connected but brought nothing was 404 "not made yet" (it is ahead of nothing).
        The chunk's bytes, or :meth:`_pull`'s reason."""
        w = f.waiting.get(seq)
        if w is None:
            w = f.waiting[seq] = (asyncio.get_running_loop().create_future(), [0])
        fut, n = w
        n[0] += 1
        pull = asyncio.ensure_future(self._pull(f, seq, ip))  # (shared by every asker; ends within PASS_TIMEOUT)
        self._bg.add(pull)
        pull.add_done_callback(self._bg.discard)
        try:
            either: set[asyncio.Future[Any]] = {pull, fut}
            done, _ = await asyncio.wait(either, timeout=PASS_TIMEOUT,
                                         return_when=asyncio.FIRST_COMPLETED)
            got = pull.result() if pull in done else "unreachable: no answer in time"
            if isinstance(got, bytes):  # (its copy resolves the feed's waiter too: asked first)
                return got
            if fut in done:
                self.counters["cold_feed_hits"] += 1
                return fut.result()
            if got == "busy" and self.hold > 0:
                # (every pull slot taken, by one address perhaps: the feed may yet bring it.
                # Answered busy at once, a cold viewer's start was refused while an address
                # held the 64 pulls; found 2026-12-06 from outside)
                body = await self._hold(f, seq, ip)
                if body is not None:
                    self.counters["cold_feed_hits"] += 1
                    return body
            # (a failed pull is the answer: waiting on for the feed, each request for a seq the
            # origin refused would hold a connection and a waiter, unbounded)
            return got
        finally:
            n[0] -= 1
            if n[0] == 0 and f.waiting.get(seq) is w:
                del f.waiting[seq]

    async def _hold(self, f: Followed, seq: int, ip: str) -> bytes | None:
        """Wait up to ``hold`` s for the feed to bring ``seq``: its bytes, or None (not
        brought in time, or no room to hold one more request)."""
        by_ip = self.held_by_ip.get(ip, 0)
        if self.holding >= MAX_HELD or by_ip >= MAX_HELD_PER_IP:
            self.counters["holds_refused"] += 1
            return None
        w = f.waiting.get(seq)
        if w is None:
            w = f.waiting[seq] = (asyncio.get_running_loop().create_future(), [0])
        fut, n = w
        n[0] += 1
        self.holding += 1
        self.held_by_ip[ip] = by_ip + 1
        self.counters["holds"] += 1
        began = self.clock()
        try:
            body: bytes = await asyncio.wait_for(asyncio.shield(fut), self.hold)
        except TimeoutError:
            self.counters["hold_timeouts"] += 1
            return None
        finally:
            self.holding -= 1
            left = self.held_by_ip[ip] - 1
            if left:
                self.held_by_ip[ip] = left
            else:
                del self.held_by_ip[ip]
            n[0] -= 1
            if n[0] == 0 and f.waiting.get(seq) is w:  # nobody waits for it any more
                del f.waiting[seq]
        self.counters["hold_hits"] += 1
        f.held_waits.append(self.clock() - began)
        return body

    # ---- HTTP ------------------------------------------------------------------------
    def stream_of(self, request: web.Request) -> Followed:
        text = request.match_info["sid"]
        try:  # (its lower case: an id spelled in upper case anywhere is the origin's 404)
            sid = StreamId.parse(text.lower())
        except StreamIdError as exc:
            raise http.json_error(400, "bad_stream", str(exc)) from None
        if str(sid) != text:
            raise http.json_error(404, "not_canonical", "a stream id has one spelling, lower case")
        f = self.follow(text, http.source_key(request.remote or ""))  # an IPv6 /64 is one asker
        return f if f is not None else Followed(sid, text)  # not followed: pulls only

    @http.any_host  # (the origin's public objects: a proxy may pass the client's Host)
    async def chunk(self, request: web.Request) -> web.Response:
        f = self.stream_of(request)
        seq_text = request.match_info["seq"]
        if not http._SEQ_RE.match(seq_text):
            raise http.json_error(400, "bad_seq", "sequence number must be a decimal integer of 1-19 digits")
        seq = int(seq_text)
        http.canonical_only(request, f"/origin/{f.text}/{seq}.chunk", f"chunk {seq}")
        body = f.chunks.get(seq)
        held = -1.0
        if body is not None:
            self.counters["hits"] += 1
        elif f.connected and f.latest >= 0 and seq > f.latest:
            if self.hold > 0 and seq - f.latest <= HOLD_AHEAD:
                began = self.clock()
                body = await self._hold(f, seq, http.source_key(request.remote or ""))
                held = self.clock() - began
            if body is None:
                self.counters["misses_ahead"] += 1
                if seq - f.latest <= FAR_AHEAD:
                    f.ahead.append(seq - f.latest)
                else:
                    self.counters["misses_far_ahead"] += 1
                raise http.json_error(404, "no_chunk", f"chunk {seq} is not made yet: the newest is {f.latest}")
        else:
            # (the feed coming up with nothing brought yet, a cold edge's first viewer: the
            # pull raced with it)
            cold = f.latest < 0 and f.task is not None
            ip = http.source_key(request.remote or "")
            got = await (self._pull_or_feed(f, seq, ip) if cold else self._pull(f, seq, ip))
            if got == "busy":
                raise http.json_error(503, "busy", f"chunk {seq} is not held here and this edge has "
                                      f"{MAX_PULLS} requests to the origin under way, or {MAX_PULLS_PER_IP} "
                                      "for this address; ask again")
            if isinstance(got, str) and got.startswith("unreachable"):
                # (not a 404: a viewer's health line named an edge restarted 40 s before as its
                # last failure while the origin was down; found 2026-12-06 from outside)
                raise http.json_error(502, "origin_unreachable", f"chunk {seq} is not held here and the "
                                      f"origin {self.origin} did not answer ({got[13:]})")
            if isinstance(got, str):
                raise http.json_error(404, "no_chunk", f"chunk {seq} is not held here nor at the origin "
                                      f"({'it did not verify' if got == 'bad' else 'the origin answered ' + got})")
            body = got
        headers = {"Cache-Control": http.CHUNK_CACHE, "ETag": f.etags.get(seq, "")}
        if held >= 0:  # the viewer learns its fetch time without our wait (docs/oftp.md §10)
            headers[http.HELD_HEADER] = str(min(int(held * 1000), HELD_MS_MAX))
        if not headers["ETag"]:
            del headers["ETag"]
        else:
            same = http.conditional(request, headers["ETag"], headers)
            if same is not None:
                return same
        return web.Response(body=body, content_type="application/x-oftp-chunk", headers=headers)

    @http.any_host  # (the origin's public objects: a proxy may pass the client's Host)
    async def feed(self, request: web.Request) -> web.StreamResponse:
        """The origin's ``feed``, from this edge: every chunk its feeds bring, from the
        newest keyframe held on, so that another edge may follow this one (a shield tier:
        one edge near the origin takes the origin's feeds, the far edges take its)."""
        return await self._feed(request, False)

    @http.any_host  # (the origin's public objects: a proxy may pass the client's Host)
    async def feed_newest(self, request: web.Request) -> web.StreamResponse:
        """The origin's ``feed/newest``, from this edge: the same from the newest chunk on."""
        return await self._feed(request, True)

    async def _feed(self, request: web.Request, newest: bool) -> web.StreamResponse:
        f = self.stream_of(request)
        http.canonical_only(request, f"/origin/{f.text}/feed{'/newest' if newest else ''}", "the feed")
        if self.streams.get(f.text) is not f:
            raise http.json_error(503, "not_followed", f"this edge follows at most {self.max_streams} "
                                  "streams at once and has no feed of this one")
        with self.feed_slots.slot(request, self.counters, "feeds_refused", "too_many_feeds",
                                  "this edge serves chunk feeds"):
            return await self._feed_out(request, f, newest)

    async def _feed_out(self, request: web.Request, f: Followed, newest: bool = False) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-oftp-chunks",
                                           "Cache-Control": "no-store"})
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        self.counters["feeds_out"] += 1
        seq = -1  # the next seq to send; -1 until the feeds have brought a keyframe (a chunk)
        wrote = self.clock()
        behind = http.Behind()
        try:
            while not self.closing:
                f.asked = self.clock()  # an edge behind this one keeps the stream followed
                if seq < 0:
                    seq = f.latest if newest else f.keyframe
                frames: list[bytes] = []
                size = 0
                held: list[int] | None = None  # the seqs held, sorted: at the first gap
                while 0 <= seq <= f.latest and size < http.FEED_WRITE_MAX:
                    body = f.chunks.get(seq)
                    if body is None:
                        # not held (fell out of the cache, or neither feed brought it): on
                        # from the next seq held. Not seq by seq: a broadcaster's chunks may
                        # jump by billions (signed, so kept), and a walk would hang the edge;
                        # nor a scan per gap (every other seq missing: the cache squared)
                        if held is None:
                            held = sorted(f.chunks)
                        i = bisect.bisect_right(held, seq)
                        if i == len(held):
                            break
                        seq = held[i]
                        continue
                    seq += 1
                    frames.append(http.feed_frame(body))
                    size += len(frames[-1])
                if frames:
                    await http.write_or_drop(request, resp, b"".join(frames), self.counters)
                    self.counters["feed_frames_out"] += len(frames)
                    wrote = self.clock()
                    behind.check(f.latest - seq + 1, wrote, request, self.counters)
                    continue
                if self.clock() - wrote > http.FEED_STALL_END:
                    await resp.write_eof()
                    return resp
                try:
                    await asyncio.wait_for(f.changed.wait(), 1.0)
                except TimeoutError:
                    pass
                if http.feed_gone(request):
                    raise ConnectionResetError("the feed's client closed its connection")
        except ConnectionResetError:
            self.counters["feeds_gone"] = self.counters.get("feeds_gone", 0) + 1
        return resp

    @http.any_host  # (the origin's public objects: a proxy may pass the client's Host)
    async def passthrough(self, request: web.Request) -> web.Response:
        f = self.stream_of(request)
        what = request.match_info["what"]
        http.canonical_only(request, f"/origin/{f.text}/{what}", what)
        if what == "latest.json" and f.connected and f.keyframe >= 0:
            # the feed says where the stream is, newer than a round trip to a far origin could
            self.counters["latest_answered"] += 1
            return web.json_response({"latest": f.latest, "keyframe": f.keyframe, "time": f.latest_time},
                                     headers={"Cache-Control": "no-cache"})
        headers = {k: v for k, v in request.headers.items() if k in ("If-None-Match",)}
        try:
            async with self.session.get(f"{self.origin}/{f.text}/{what}", headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=PASS_TIMEOUT)) as r:
                body = await http.read_capped(r.content, PASS_CAPS[what])
                out = {k: r.headers[k] for k in ("Cache-Control", "ETag") if k in r.headers}
                self.counters["passed"] += 1
                return web.Response(status=r.status, body=body, headers=out,
                                    content_type=r.content_type or "application/json")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.counters["pass_failures"] += 1
            raise http.json_error(502, "origin_unreachable",
                                  f"the origin {self.origin} did not answer ({outbound.reason(exc)[:200]})") from None

    async def stats(self, request: web.Request) -> web.Response:
        http.require_operator(request, "/stats")
        return web.json_response({
            "origin": self.origin, **self.counters, "holding": self.holding,
            "loop_lag_ms": self.loop_lag.figures() if self.loop_lag is not None else None,
            "streams": {t: {"latest": f.latest, "held": len(f.chunks), "connected": f.connected,
                            "links": f.links, "pinned": f.pinned,
                            "frames": f.frames, "feed_lag_ms": rank_figures(f.lags, 1000.0),
                            "misses_ahead_by": rank_figures(f.ahead),
                            "hold_wait_ms": rank_figures(f.held_waits, 1000.0)}
                        for t, f in self.streams.items()}},
            headers=http.NO_STORE)

    async def metrics(self, request: web.Request) -> web.Response:
        """``/metrics`` (the operator's, as ``/stats``): the edge's counters and, per stream
        it follows, the newest seq, the chunks held and the feed links up, in Prometheus's
        text format (an operator scraping every node found none at an edge: 404)."""
        http.require_operator(request, "/metrics")
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            from .metrics import EdgeCollector
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(EdgeCollector(self))
        return http.metrics_response(self._registry)

    def routes(self, app: web.Application) -> None:
        http.harden(app)
        app[http.ROOT_HINT] = ("no page here: this is a CDN edge of an Oasis origin; it serves the "
                               "origin's URLs, /origin/<stream-id>/<seq>.chunk, latest.json, time, "
                               "descriptor and feed, and its operator's /stats and /metrics")
        app.router.add_get(r"/origin/{sid}/{seq}.chunk", self.chunk)
        app.router.add_get(r"/origin/{sid}/feed", self.feed)
        app.router.add_get(r"/origin/{sid}/feed/newest", self.feed_newest)
        app.router.add_get(r"/origin/{sid}/{what:latest\.json|time|descriptor}", self.passthrough)
        app.router.add_get("/stats", self.stats)
        app.router.add_get("/metrics", self.metrics)

    def start(self) -> None:
        """Sample the loop's lag (call on the running loop; :meth:`close` stops it)."""
        if self.loop_lag is None:
            self.loop_lag = LoopLag(asyncio.get_running_loop())
            self.loop_lag.start()

    async def close(self) -> None:
        self.closing = True
        if self.loop_lag is not None:
            self.loop_lag.stop()
        tasks: list[asyncio.Future[Any]] = [f.task for f in self.streams.values() if f.task is not None]
        tasks += list(self._bg)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_edge(origin: str, listen: str, *, public_metrics: bool = False, feeds: int = FEEDS,
                   hold: float = HOLD_S, follow: Sequence[str] = ()) -> None:
    """``oasis edge``: serve ``origin``'s streams at ``listen`` until SIGINT/SIGTERM, following
    the streams ``follow`` names from the start (:meth:`Edge.pin`)."""
    from . import runtime as rt

    host, port = rt.parse_hostport(listen, "--listen")
    if not 0.0 <= hold <= 10.0:
        raise ValueError(f"--hold {hold}: 0 (answer a chunk ahead of the feed 404 at once) to 10 s")
    limit = MAX_PULLS + MAX_STREAMS * feeds + 8
    async with outbound.session(connector=aiohttp.TCPConnector(limit=limit)) as s:
        edge = Edge(origin, s, feeds=feeds, hold=hold)
        edge.start()
        # (before the port opens: a bad id is a usage error; an id given twice is followed once)
        pinned = list(dict.fromkeys(edge.pin(t).text for t in follow))
        app = web.Application(client_max_size=4096)
        edge.routes(app)
        http.set_public_views(app, public_metrics)
        runner, port = await rt.start_http(app, host, port)
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        rt.emit({"edge": f"http://{rt.url_host(shown)}:{port}/origin", "origin": edge.origin,
                 "listening": f"{host}:{port}", "following": pinned})

        async def main(stop: asyncio.Event) -> None:
            await stop.wait()

        try:
            await rt.run_until_stopped(main)
        finally:
            await edge.close()
            await runner.cleanup()
