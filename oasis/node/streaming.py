"""Streams a node publishes or watches on request: the local API's stream backend.

Theory of operation
-------------------
``oasis broadcast`` and ``oasis watch`` each carry one stream chosen on the command
line. :class:`Streaming` does the same work for streams asked for at run time (through
the local API), on a node that is already up: ``publish`` adds a source stream, runs
its media ingest (:func:`ingest`, the loop ``oasis broadcast`` runs too), signs its
descriptor and announces it to the node's tracker; ``watch`` verifies a link (or fetches
the descriptor from a tracker), adds a viewer stream with the descriptor's parameters
and discovers peers like ``oasis watch``; ``stop`` ends either. The pieces (announce
loop, descriptor, link) are :mod:`oasis.node.runtime`'s.

A watchdog publishes ``stream.stalled`` on the node's event bus when a stream has made no
progress for ``STALL_AFTER`` s, and ``stream.resumed`` when it moves again; a published
stream whose source ended or failed says ``stream.ended`` once and is no longer watched
(it stays carried until stopped); ``stream.started``/``stream.stopped`` come from
:class:`~oasis.node.node.Node`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from oasis.core import peer as pp
from oasis.core.descriptor import Descriptor, DescriptorError, verified_descriptor_json
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk, sign_end
from oasis.core.streamlink import SCHEME as LINK_SCHEME
from oasis.core.streamlink import is_link
from oasis.core.streamlink import parse as parse_link
from oasis.core.tracker import Tracker

from . import outbound
from . import runtime as rt
from .node import LiveStream, Node

log = logging.getLogger("oasis.streaming")
STALL_AFTER = 3.0  #: s without a new chunk before a stream is reported stalled
WATCHDOG_EVERY = 0.5  #: s between the watchdog's looks
MAX_PRODUCED = 100_000  #: publish times kept per source stream


class NotAvailable(Exception):
    """This node cannot do that (e.g. publish without an origin server)."""


#: s between saves of a source stream's sequence clock (an fsync'd write on the ingest path;
#: a restart extrapolates from the last save by the time since, so it need not be fresher)
SEQ_SAVE_EVERY = 5.0


class _SeqClock(msgspec.Struct, forbid_unknown_fields=True):
    seq: int
    time: float
    chunk_ms: int


def seq_file(data_dir: str | os.PathLike[str], sid: StreamId) -> Path:
    """Where a broadcaster keeps the sequence clock of its stream ``sid``."""
    return Path(data_dir) / "streams" / f"{sid.name}.seq"


def key_file(data_dir: str | os.PathLike[str], sid: StreamId) -> Path:
    """Where a broadcaster keeps the content key of its encrypted stream ``sid`` (§7.2)."""
    return Path(data_dir) / "streams" / f"{sid.name}.key"


def content_key(data_dir: str | os.PathLike[str], sid: StreamId) -> bytes:
    """The content key of the broadcaster's encrypted stream ``sid``: the one kept in its
    data directory (so a restart keeps its links valid), else a new one, kept there
    (mode 0600). A key file that is not a key is an error, never silently replaced: the
    links given out would no longer open the stream."""
    import stat

    from oasis.core.streamcrypt import ContentKeyError, key_from_text, key_text, new_key
    from oasis.datafiles import DataFileError, private_dir, read_small, refuse_exposed, replace

    path = key_file(data_dir, sid)
    try:
        st = path.lstat()
    except FileNotFoundError:
        key = new_key()
        private_dir(path.parent)
        replace(path, key_text(key).encode() + b"\n")
        return key
    except OSError as exc:
        raise ValueError(f"{path}: the stream's content key cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):  # (a link to /dev/zero was read without end)
        raise ValueError(f"{path}: the stream's content key is not a regular file (a link, a device?); "
                         "put the key file itself there")
    try:
        refuse_exposed(path, "the stream's content key")
        raw = read_small(path, "the stream's content key", 256)
    except DataFileError as exc:
        raise ValueError(str(exc)) from None
    try:
        return key_from_text(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ContentKeyError) as exc:
        raise ValueError(f"{path}: not a content key ({exc}); move it away to draw a new one "
                         "(the links given out with the old key will no longer play)") from None


def refuse_plain_after_key(data_dir: str | os.PathLike[str], sid: StreamId) -> None:
    """A stream that was published encrypted (its content key kept in the data directory)
    is not published in clear by a restart that forgot ``--encrypt``: its relays, origin and
    CDNs would see the media, and the holders of its links would follow it in clear without
    a word (found 2026-12-06 from outside). ValueError saying what to do."""
    path = key_file(data_dir, sid)
    if os.path.lexists(path):
        raise ValueError(f"stream {sid.name!r} was published end-to-end encrypted (its content key is "
                         f"{path}): give --encrypt (the API: \"encrypt\": true) to go on so, or move "
                         "the key file away to publish it in clear from now on")


def first_seq(path: Path | None, chunk_ms: int, now: float) -> int:
    """Where a (re)started source's numbering begins: 0 the first time; after a restart,
    where the stream's clock has got to -- the last saved seq plus the chunk periods
    since (at the shorter of the two chunk lengths). A restarted broadcaster numbered
    from 0 again: its running viewers held seqs above that, their STATUS read as false
    claims and the broadcaster banned every one of them; they dropped the new chunks as
    duplicates of the old. On the clock, the downtime is a gap, which viewers skip."""
    if path is None or not path.exists():
        return 0
    try:
        c = msgspec.json.decode(path.read_bytes()[:4096], type=_SeqClock)
    except (OSError, ValueError) as exc:  # (ValueError: msgspec's, and not UTF-8 in a key)
        log.warning("%s: unreadable (%s); the stream's numbering starts from the clock", path, exc)
        return 0
    if not 0 <= c.seq < 2**62 or not 10 <= c.chunk_ms <= 10_000:
        return 0
    step = min(c.chunk_ms, chunk_ms) / 1000
    return c.seq + 1 + max(0, math.ceil((now - c.time) / step))


def _save_seq(path: Path, seq: int, at: float, chunk_ms: int) -> None:
    from oasis.datafiles import private_dir, replace

    try:
        private_dir(path.parent)
        replace(path, msgspec.json.encode(_SeqClock(seq, at, chunk_ms)))
    except OSError as exc:
        log.warning("could not save the stream's sequence clock to %s: %s", path, exc)


#: a source faster than this many times its declared --bitrate is reported (once)
BITRATE_WARN_RATIO = 1.5
BITRATE_WARN_AFTER = 10.0  #: s of stream measured before judging


class _RateWatch:
    """Measures the source's bitrate against the declared one. Peers size their upload
    slots and their relays by the declared bitrate: a 7.4 Mbit/s file under the default
    1500 took 24 % of its bytes from the origin, and a 280 kbit/s one under `--bitrate 10`
    77 %, and nothing said so (found 2026-12-06 from outside). Said once on stderr."""

    def __init__(self, declared_kbps: int) -> None:
        self.declared = declared_kbps
        self.bytes = 0
        self.since: float | None = None
        self.warned = False

    def add(self, size: int, at: float) -> None:
        if self.warned:
            return
        if self.since is None:
            self.since = at
            return
        self.bytes += size
        span = at - self.since
        if span < BITRATE_WARN_AFTER:
            return
        kbps = self.bytes * 8 / span / 1000
        if kbps > BITRATE_WARN_RATIO * self.declared:
            self.warned = True
            log.warning("the source runs at about %.0f kbit/s, but --bitrate says %d: peers size their "
                        "upload slots by --bitrate, so they relay too little and viewers fetch the "
                        "rest from the origin; give --bitrate %.0f or more", kbps, self.declared, kbps)
        else:
            self.bytes, self.since = 0, at  # measured again, a window at a time


@dataclasses.dataclass
class Ingested:
    """What :func:`ingest` made of a source that ended: chunks published, seconds of stream
    (from the first chunk's cut to the last's: media time, the source being paced)."""

    chunks: int = 0
    seconds: float = 0.0
    keyframes: int = 0  #: chunks that start at a video keyframe (a viewer starts only there)


async def ingest(identity: Identity, ls: LiveStream, source: AsyncIterator[bytes], chunk_ms: int,
                 *, clock_file: Path | None = None) -> Ingested:
    """Chunk a live MPEG-TS byte source, sign each chunk and publish it on ``ls``, until the
    source ends (what is buffered then is the last chunk); returns what was published.
    ``clock_file``: where the stream's sequence clock is kept across restarts (:func:`first_seq`)."""
    from oasis.core.streamcrypt import OVERHEAD
    from oasis.core.wire import MAX_CHUNK_PAYLOAD
    from oasis.media.chunker import TsChunker

    key = ls.content_key  # an encrypted stream's chunks are sealed (docs/oftp.md §7.2)
    chunker = TsChunker(chunk_ms=chunk_ms, max_chunk_bytes=MAX_CHUNK_PAYLOAD - (OVERHEAD if key else 0))
    seq = first_seq(clock_file, chunk_ms, time.time())
    saved_at = 0.0
    done = Ingested()
    first_at: float | None = None
    rate = _RateWatch(ls.config.bitrate_kbps)

    def publish(chunks: list[Any], now: float) -> None:
        nonlocal seq, saved_at, first_at
        for mc in chunks:
            rate.add(len(mc.payload), mc.complete_at)
            chunk = sign_chunk(identity, ls.sid, seq, int(mc.complete_at * 1e6), mc.keyframe, mc.payload,
                               content_key=key, run_start=done.chunks == 0)
            ls.produced[seq] = mc.complete_at
            if len(ls.produced) > MAX_PRODUCED:
                ls.produced.pop(next(iter(ls.produced)))
            ls.swarm.publish(chunk, now)
            ls.pump()
            if clock_file is not None and now - saved_at >= SEQ_SAVE_EVERY:
                saved_at = now
                _save_seq(clock_file, seq, mc.complete_at, chunk_ms)
            seq += 1
            done.chunks += 1
            done.keyframes += mc.keyframe
            first_at = mc.complete_at if first_at is None else first_at
            done.seconds = mc.complete_at - first_at

    async for data in source:
        now = time.time()
        publish(chunker.feed(data, now), now)
    now = time.time()
    publish(chunker.flush(now), now)
    if end_stream(identity, ls, clock_file=clock_file) is None \
            and clock_file is not None and first_at is not None:  # a restart goes on after the last
        _save_seq(clock_file, seq - 1, first_at + done.seconds, chunk_ms)
    return done


#: s a broadcaster that ended a stream waits at most for its end marker to leave (``linger``)
END_LINGER = 1.0


def end_stream(identity: Identity, ls: LiveStream, *, clock_file: Path | None = None) -> int | None:
    """Publish the end marker of the source stream ``ls`` (docs/oftp.md §7): the seq after
    its latest chunk, at that seq's time on the stream's clock (one ``chunk_ms`` after the
    latest's). Returns its seq; None when the stream has no chunk yet or already ended.
    ``clock_file``: the sequence clock is saved at it, so a restart numbers on past it."""
    log_ = ls.swarm.log
    if log_.latest < 0 or ls.swarm.end_seq >= 0 or log_.get(log_.latest) is None:
        return None
    seq = log_.latest + 1
    chunk_ms = ls.config.chunk_ms
    at = log_.time_of(log_.latest) + chunk_ms / 1000
    ls.swarm.publish(sign_end(identity, ls.sid, seq, int(at * 1e6)), ls.now())
    ls.pump()
    if clock_file is not None:
        _save_seq(clock_file, seq, at, chunk_ms)
    return seq


async def linger(streams: list[LiveStream], timeout: float = END_LINGER) -> None:
    """Give ended streams' end markers up to ``timeout`` s to leave: until their upload
    queues are empty, then a quarter of a second for the links to send them (a node that
    closes at once drops what its links have not sent). None if the streams have no peer."""
    if not any(ls.swarm.peers for ls in streams):
        return  # nobody to tell
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout
    while any(len(ls.swarm.upload) for ls in streams) and loop.time() < until:
        await asyncio.sleep(0.02)  # (a bounded poll of a queue the swarm core drains)
    await asyncio.sleep(max(0.0, min(0.25, until - loop.time())))


@dataclasses.dataclass
class Managed:
    """A stream started through :class:`Streaming`: its tasks and, if published, its link."""

    ls: LiveStream
    tasks: list[asyncio.Task[Any]]
    link: str | None = None


class Streaming:
    """Publish and watch streams on a running node (see the module docstring).

    ``common`` gives the default stream parameters and the data dir; ``base`` is the node's
    HTTP base URL (origin + gateway), ``tracker``/``tracker_url`` where published streams
    are announced (an embedded :class:`Tracker` or an external URL); ``descriptors`` is
    the dict the node's origin routes serve descriptors from. Without ``base``, ``publish``
    raises :class:`NotAvailable`.
    """

    def __init__(self, node: Node, common: rt.Common, *, base: str | None = None,
                 gateway: str | None = None, tracker: Tracker | None = None,
                 tracker_url: str | None = None,
                 descriptors: dict[str, Descriptor] | None = None) -> None:
        self.node = node
        self.common = common
        self.base = base
        self.gateway = gateway or base
        self.tracker = tracker
        self.tracker_url = tracker_url or (f"{base}/tracker" if base and tracker else None)
        self.descriptors = descriptors if descriptors is not None else {}
        self.managed: dict[str, Managed] = {}
        self.links: dict[str, str] = {}  #: stream id -> oasis:// link of streams published here
        self._progress: dict[str, tuple[int, float, bool]] = {}  # id -> (latest, since, stalled)
        self.ended: set[str] = set()  #: published streams whose source ended (not reported stalled)
        self._watchdog: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch_health())

    def player_url(self, ls: LiveStream) -> str:
        return f"{self.gateway or ''}/live/{ls.text_id}.ts"

    def web_url(self, ls: LiveStream) -> str:
        return f"{self.gateway or ''}/watch/{ls.text_id}"

    # ---- publish ------------------------------------------------------------------
    async def publish(self, name: str, source: str, *, bitrate_kbps: int | None = None,
                      chunk_ms: int | None = None, encrypt: bool = False) -> dict[str, Any]:
        from oasis.media.ingest import open_source

        if self.base is None or self.tracker_url is None:
            raise NotAvailable("this node has no origin server to publish from; start it with "
                               "`oasis node` (or `oasis broadcast`)")
        if source == "-":
            raise ValueError("source '-' (stdin) cannot be given through the API")
        u = urlsplit(self.base)
        if rt.unspecified(u.hostname or ""):  # (the descriptor refused it, in other words)
            raise ValueError(f"this node's origin {self.base} is on every interface (--http {u.netloc}): "
                             "no address a viewer can fetch chunks from; restart the node with --http on "
                             f"this machine's address viewers reach (e.g. 192.168.1.10:{u.port})")
        c = dataclasses.replace(self.common, bitrate_kbps=bitrate_kbps or self.common.bitrate_kbps,
                                chunk_ms=chunk_ms or self.common.chunk_ms)
        sid = StreamId(self.node.identity.public, name)
        if sid.key in self.node.streams:
            raise FileExistsError(f"stream {sid} is already carried by this node")
        # raises ValueError on a bad source (in a thread: a file's keyframe probe reads up to
        # 64 MiB, and the node's loop relays meanwhile)
        media = await asyncio.to_thread(open_source, source, c.bitrate_kbps)
        if sid.key in self.node.streams:  # (published meanwhile, by a request that came along)
            raise FileExistsError(f"stream {sid} is already carried by this node")
        if not encrypt:
            refuse_plain_after_key(c.data_dir, sid)
        key = content_key(c.data_dir, sid) if encrypt else None
        if key is not None:
            self.node.stream_keys[sid.key] = self.node.link_keys[sid.key] = key
        else:
            self.node.stream_keys.pop(sid.key, None)
            self.node.link_keys.pop(sid.key, None)
        ls = self.node.add_stream(sid, is_source=True, config=rt.swarm_config(c))
        text = str(sid)
        desc = rt.stream_descriptor(c, self.node, sid, origin=f"{self.base}/origin", cdn_url=None,
                                    tickets=None, encrypted=key is not None)
        self.descriptors[text] = desc
        if self.node.dht is not None:  # the stream record carries it: short links work
            self.node.dht.set_descriptor(sid, msgspec.json.encode(desc.to_json()))
        full = rt.stream_link(self.node, sid, desc, self.tracker_url, key=key)
        link = full.format()
        # (as `oasis broadcast` prints it: the stream id, this node and the key; no tracker)
        short_link = dataclasses.replace(full, descriptor=None, tracker=None).format()
        announcer = asyncio.create_task(rt.announce_loop(
            self.node, ls, self.tracker_url, local=self.tracker,
            descriptor=lambda: self.descriptors.get(text), area=c.area))
        feeder = asyncio.create_task(ingest(self.node.identity, ls, media, c.chunk_ms,
                                            clock_file=seq_file(c.data_dir, sid)))
        feeder.add_done_callback(lambda t: self._ended(text, t))
        self.managed[text] = Managed(ls, [announcer, feeder], link)
        self.links[text] = link
        return {"stream_id": text, "link": link, "player_url": self.player_url(ls), "web_url": self.web_url(ls),
                "tracker": self.tracker_url, "encrypted": key is not None, "short_link": short_link}

    def _ended(self, text: str, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        self.ended.add(text)
        self._progress.pop(text, None)
        m = self.managed.get(text)
        if exc is not None and m is not None:
            # A source that failed (ingest's own end marks a source that ended): its viewers
            # are told the stream ended, as `oasis broadcast` tells them, not left to stall
            end_stream(self.node.identity, m.ls, clock_file=seq_file(self.common.data_dir, m.ls.sid))
        reason = f"the source failed: {str(exc) or type(exc).__name__}" if exc else "source ended"
        self.node.events.publish("stream.ended", {"stream_id": text, "reason": reason[:200]})

    # ---- watch --------------------------------------------------------------------
    async def watch(self, *, link: str | None = None, stream_id: str | None = None,
                    tracker: str | None = None, relay_only: bool = False) -> dict[str, Any]:
        desc: Descriptor | None
        key: bytes | None = None
        if link is not None:
            if not is_link(link):
                raise ValueError(f"a link starts with {LINK_SCHEME}://")
            parsed = parse_link(link)  # verifies the descriptor's signature (ValueError if bad)
            sid, desc, boots, key = parsed.sid, parsed.descriptor, parsed.bootstrap, parsed.key
            tracker = tracker or parsed.tracker
            if desc is None:  # a short link: from the tracker, else the DHT's stream record
                desc = await self._short_link_descriptor(sid, boots, tracker)
        elif stream_id is not None and tracker is not None:
            if not tracker.startswith(("http://", "https://")):
                raise ValueError("tracker must be an http(s) URL")
            sid = StreamId.parse(stream_id)
            async with outbound.session() as session:
                try:
                    desc = await rt.fetch_descriptor(session, tracker, sid, timeout=5.0)
                except RuntimeError as exc:
                    raise LookupError(str(exc)) from None
            boots = ()
        else:
            raise ValueError("give a link, or a stream_id and a tracker")
        text = str(sid)
        if sid.key in self.node.streams:
            raise FileExistsError(f"stream {text} is already carried by this node")
        rt.check_key(desc, key, relay_only=relay_only)
        c = dataclasses.replace(self.common, given={})
        rt.apply_descriptor(c, desc)
        # the stream runs on the broadcaster's clock (docs/oftp.md §9.5.1): asked of its origin
        offset = 0.0
        if desc.fetch_url is not None:
            try:  # (no longer than `oasis watch` waits for it: a slow origin does not hold the join)
                offset = await asyncio.wait_for(rt.origin_offset(desc.fetch_url, text, self.node.clock),
                                                rt.CLOCK_WAIT)
            except TimeoutError:
                pass
        if sid.key in self.node.streams:  # (joined meanwhile)
            raise FileExistsError(f"stream {text} is already carried by this node")
        rt.set_stream_key(self.node, desc, key)
        ls = self.node.add_stream(sid, is_source=False, origin_url=desc.fetch_url,
                                  config=rt.swarm_config(c), clock_offset=offset)
        ls.set_origin(desc.fetch_url, rt.fetch_urls(desc))
        current = desc

        def on_descriptor(d: Descriptor) -> None:
            nonlocal current
            if d.issued_at_ms > current.issued_at_ms:
                current = d
                ls.set_origin(d.fetch_url, rt.fetch_urls(d))
                rt.set_stream_key(self.node, d, key)  # (a restart may have turned sealing on or off)

        if self.node.dht is not None:
            def from_dht(raw: bytes) -> None:
                try:  # (the DHT checked it; checked again against this stream)
                    on_descriptor(verified_descriptor_json(raw, sid))
                except DescriptorError as exc:
                    log.warning("DHT gave a bad descriptor for %s: %s", text, exc)
            # its records: were taken for the command line's stream's, and dropped as bad
            self.node.dht.descriptor_hooks[sid.key] = from_dht
        if boots:
            self.node.offer_candidates([pp.Candidate(b.peer, b.host, b.port) for b in boots])
        if tracker is not None:
            task = asyncio.create_task(rt.announce_loop(self.node, ls, tracker,
                                                        on_descriptor=on_descriptor, area=c.area))
        else:
            task = asyncio.create_task(rt.bootstrap_loop(self.node, boots))
        self.managed[text] = Managed(ls, [task])
        return {"stream_id": text, "player_url": self.player_url(ls), "web_url": self.web_url(ls),
                "encrypted": desc.encrypted, "playable": ls.playable}

    async def _short_link_descriptor(self, sid: StreamId, boots: tuple[Any, ...],
                                     tracker: str | None) -> Descriptor:
        if tracker is not None:
            async with outbound.session() as session:
                try:  # (with bootstrap peers, one short try: they are asked next)
                    return await rt.fetch_descriptor(session, tracker, sid, timeout=0 if boots else 5.0,
                                                     per_try=rt.LINK_TRACKER_TRY if boots else 5.0)
                except RuntimeError as exc:
                    if not boots:
                        raise LookupError(str(exc)) from None
        raw = None
        if self.node.dht is not None:
            raw = await self.node.dht.find_descriptor(
                sid, [pp.Candidate(b.peer, b.host, b.port) for b in boots], rt.SHORT_LINK_TIMEOUT)
        if raw:
            try:
                return verified_descriptor_json(raw, sid)
            except DescriptorError:
                pass
        raise LookupError(f"no descriptor for {sid} from the link's peers (DHT)")

    # ---- stop ---------------------------------------------------------------------
    async def stop(self, stream_id: str) -> None:
        sid = StreamId.parse(stream_id)
        text = str(sid)
        m = self.managed.pop(text, None)
        if m is None:
            if sid.key in self.node.streams:
                raise PermissionError(f"stream {text} was not started through the API; stop its "
                                      "process instead")
            raise LookupError(f"stream {text} is not carried by this node")
        for t in m.tasks:
            t.cancel()
        await asyncio.gather(*m.tasks, return_exceptions=True)
        if self.node.dht is not None:
            self.node.dht.descriptor_hooks.pop(sid.key, None)
        if m.ls.is_source and end_stream(self.node.identity, m.ls) is not None:
            await linger([m.ls])  # its viewers learn that it ended, not that it stalled
        self.descriptors.pop(text, None)
        self.links.pop(text, None)
        self._progress.pop(text, None)
        self.ended.discard(text)
        self.node.remove_stream(sid)
        self.node.stream_keys.pop(sid.key, None)
        self.node.link_keys.pop(sid.key, None)

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        tasks = [t for m in self.managed.values() for t in m.tasks]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ended = [m.ls for m in self.managed.values() if m.ls.is_source
                 and end_stream(self.node.identity, m.ls) is not None]
        if ended:
            await linger(ended)
        self.managed.clear()

    # ---- health -------------------------------------------------------------------
    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_EVERY)  # a period, not synchronisation
            self.check_health(time.monotonic())

    def check_health(self, now: float) -> None:
        """Publish ``stream.stalled``/``stream.resumed`` on a change of a stream's progress."""
        seen = set()
        for ls in list(self.node.streams.values()):
            text = ls.text_id
            if text in self.ended or ls.swarm.end_seq >= 0:
                continue  # it said stream.ended: no chunk will come, nothing to report
            seen.add(text)
            latest = ls.swarm.log.latest
            last, since, stalled = self._progress.get(text, (latest, now, False))
            if latest != last:
                if stalled:
                    self.node.events.publish("stream.resumed", {"stream_id": text, "latest": latest})
                self._progress[text] = (latest, now, False)
            elif not stalled and now - since > STALL_AFTER:
                self.node.events.publish("stream.stalled", {"stream_id": text, "latest": latest,
                                                            "quiet_s": round(now - since, 1)})
                self._progress[text] = (latest, since, True)
            else:
                self._progress[text] = (last, since, stalled)
        for text in list(self._progress):
            if text not in seen:
                del self._progress[text]
