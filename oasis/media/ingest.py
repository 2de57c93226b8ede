"""Live MPEG-TS byte sources for a broadcaster: test pattern, file, stdin, UDP.

Theory of operation
-------------------
Every source is an ``AsyncIterator[bytes]`` of MPEG-TS that behaves like a live
feed: bytes come out no faster than real time.  Consumers (the chunker) do not
care about piece boundaries.

* ``test``: :func:`oasis.media.testsource.test_source_stream`, paced per frame.
* file: :func:`file_source` re-times a recorded TS using its own PCRs.  The
  stream is split into segments that each end with a PCR-carrying packet; a
  segment's packets are released as the loop clock reaches their place between
  the previous PCR and its own (a constant rate between PCRs, in ~10 ms pieces;
  relative to the first PCR, the *anchor*).  A backwards or >1 s forward PCR jump (e.g. when
  the file loops) re-anchors the clock at the previous due time plus one
  typical PCR interval, so pacing continues smoothly.  Files without PCR are
  paced by their average bitrate (PyAV's estimate, else 2 Mbit/s).  Each pass
  after the first moves the file's PCRs, PTSs and DTSs on by the length of one
  pass (:class:`_Retimer`), so the broadcast's clock runs on: a player saw time
  jump back at each loop point (found 2026-12-06 by an outside first run).
* ``-``: :func:`paced_stdin_source`: :func:`stdin_source` reads ``sys.stdin.buffer``
  through ``loop.connect_read_pipe`` (non-blocking), e.g. ``ffmpeg ... -f mpegts - |``, and
  its packets are released by their PCRs like a file's: ``cat a.ts a.ts | oasis broadcast -``
  went out (20 s of media) in 0.87 s; a pipe already at real time (``ffmpeg -re``) passes
  through as it comes. It ends at the end of stdin.
* ``udp://host:port``: :class:`UdpSource` binds a datagram endpoint, queues
  datagrams in a bounded queue (counting drops when full) and yields all queued
  datagrams joined together; :func:`udp_source` splices their timestamps as a pipe's
  (:func:`spliced`: an encoder restarted while the broadcaster listens on).

All loops end on cancellation, and transports are closed in ``finally``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from oasis.media.testsource import test_source_stream
from oasis.media.tspackets import (
    PCR_HZ,
    PCR_WRAP,
    SYNC_BYTE,
    TS_PACKET_SIZE,
    ProgramTracker,
    TsError,
    adaptation_field,
    find_sync,
    parse_pmt,
    pes_timestamps,
    pid,
    shift_timestamps,
)
from oasis.pipes import loop_can_watch

log = logging.getLogger("oasis.ingest")

FILE_READ_BYTES = TS_PACKET_SIZE * 64
MAX_UNTIMED_SEGMENT = TS_PACKET_SIZE * 64
#: in a stream with PCRs, a segment waits for its PCR up to this size (then goes by the byte
#: rate): 64 packets cut a 1.5 Mbit/s stream with a PCR every 100 ms (19 KB) in two, the first
#: half released by the byte-rate estimate instead of its PCR
MAX_PCR_SEGMENT = TS_PACKET_SIZE * 8192
DEFAULT_FILE_BITRATE = 2_000_000  # bit/s, when a file has neither PCR nor a probed bitrate
MAX_PCR_JUMP = 1.0  # seconds; larger forward jumps count as a discontinuity
PIECE_S = 0.010  # a PCR segment is released in pieces about this far apart (_spread)
MAX_LAG = 1.0  # seconds behind schedule before the pacer re-anchors instead of bursting


def _probe_bitrate(path: Path | None) -> float:
    """Average bitrate of a media file in bit/s (fallback pacing; no file: the default)."""
    if path is None:
        return float(DEFAULT_FILE_BITRATE)
    try:
        import av

        with av.open(str(path)) as container:
            if container.bit_rate:
                return float(container.bit_rate)
    except Exception:  # any probe failure just means "use the default"
        pass
    return float(DEFAULT_FILE_BITRATE)


def _split_packets(buffer: bytearray) -> list[bytes]:
    """Remove and return the whole packets at the front of ``buffer``, skipping garbage."""
    packets: list[bytes] = []
    pos = 0
    while len(buffer) - pos >= TS_PACKET_SIZE:
        if buffer[pos] != SYNC_BYTE:
            found = find_sync(buffer, pos)
            if found < 0:
                pos = max(pos, len(buffer) - TS_PACKET_SIZE)
                break
            pos = found
        packets.append(bytes(buffer[pos : pos + TS_PACKET_SIZE]))
        pos += TS_PACKET_SIZE
    del buffer[:pos]
    return packets


class _Pacer:
    """Maps stream PCR (or byte counts) to loop time and sleeps until data is due."""

    def __init__(self, loop: asyncio.AbstractEventLoop, path: Path | None) -> None:
        self.loop, self.path = loop, path
        self.last_due = loop.time()
        self.anchor_pcr: int | None = None
        self.anchor_time = self.last_due
        self.last_pcr: int | None = None
        self.pcr_interval = 0.0
        self.timed_bytes = 0
        self.timed_seconds = 0.0
        self._probed: float | None = None

    def byte_rate(self) -> float:
        if self.timed_seconds > 0.5:
            return self.timed_bytes / self.timed_seconds
        if self._probed is None:
            self._probed = _probe_bitrate(self.path) / 8
        return self._probed

    def due_for_pcr(self, pcr: int, segment_bytes: int) -> float:
        last = self.last_pcr
        jumped = last is not None and not 0 <= pcr - last <= MAX_PCR_JUMP * PCR_HZ
        if jumped:
            # a discontinuity (or PCRs that are noise): this segment is due by the byte rate,
            # and the next PCRs count from there. Anchored one PCR interval on, PCRs that
            # jump every time (random values, found 2026-12-06 from outside) were never
            # waited for: a 1 Mbit/s file went out at 74 Mbit/s
            self.anchor_pcr, self.anchor_time = pcr, self.due_for_bytes(segment_bytes)
        elif self.anchor_pcr is None:
            self.anchor_pcr, self.anchor_time = pcr, self.last_due + self.pcr_interval
        elif last is not None:
            self.pcr_interval = (pcr - last) / PCR_HZ
            self.timed_bytes += segment_bytes
            self.timed_seconds += self.pcr_interval
        self.last_pcr = pcr
        return self.anchor_time + (pcr - self.anchor_pcr) / PCR_HZ

    def due_for_bytes(self, segment_bytes: int) -> float:
        return self.last_due + segment_bytes / self.byte_rate()

    def restart(self) -> None:
        """The file loops: the next PCR starts a new anchor."""
        self.anchor_pcr = None

    async def wait_until(self, due: float) -> float:
        """Sleep until ``due``; the shift applied to the schedule (0 unless the consumer
        stalled more than MAX_LAG, when the schedule moves instead of bursting)."""
        delay = due - self.loop.time()
        shift = 0.0
        if delay < -MAX_LAG:  # consumer stalled: shift the schedule instead of bursting
            shift = -delay
            self.anchor_time += shift
            due += shift
            delay = 0.0
        if delay > 0:
            await asyncio.sleep(delay)
        self.last_due = due
        return shift


def _shifted(packet: bytes, offset: int) -> bytes:
    """``packet`` with its timestamps moved ``offset`` 27-MHz ticks (as it is when 0, or
    when it does not parse)."""
    if offset == 0:
        return packet
    try:
        return shift_timestamps(packet, offset)
    except TsError:
        return packet


class _PcrClock:
    """What pacing keeps across a file's passes: the PCR's PID, the packets seen."""

    def __init__(self) -> None:
        self.pcr_pid: int | None = None
        self.packets = 0


class _Retimer:
    """A looped file's timestamps, continued: the first pass measures, per PID, how far its
    PTSs (its PCRs, in a file with no PTS) run from the first to the highest of the pass's
    last stretch, plus one step (a frame, a PCR interval); every later pass is moved on by
    the largest, in whole 90 kHz ticks, once more per pass. So every stream's timestamps
    keep rising across the loop point (one may gap by up to a frame, none goes back).

    Timestamps are read *unwrapped* (a PTS that passes 2^33 goes on counting), and a step
    back of more than ``MAX_PCR_JUMP`` starts the last stretch again: a file that wrapped
    moved on by ~5 s instead of its 12, and jumped back 7 s at every loop point; one bad
    PCR 5 h ahead moved every pass on by 5 h (both found 2026-12-06 from outside). PTSs
    are preferred to PCRs: PCRs that are noise do not set the span."""

    def __init__(self) -> None:
        self.offset = 0  #: 27 MHz ticks added to this pass
        self.span = 0  #: one pass, 27 MHz ticks (0: unknown, nothing moved)
        self._first: dict[tuple[int, str], int] = {}  # (pid, "pcr"|"pts") -> first value
        self._last: dict[tuple[int, str], int] = {}  #: the last value seen, unwrapped
        self._high: dict[tuple[int, str], int] = {}  #: the highest of the last stretch
        self._wraps: dict[tuple[int, str], int] = {}  #: wraps added, 27 MHz ticks
        self._step: dict[tuple[int, str], int] = {}
        self._measuring = True

    def packet(self, packet: bytes) -> bytes:
        if self._measuring:
            try:
                self._observe(packet)
            except TsError:
                pass
            return packet
        return _shifted(packet, self.offset)

    def _observe(self, packet: bytes) -> None:
        af = adaptation_field(packet)
        p = pid(packet)
        if af is not None and af.pcr is not None:
            self._see((p, "pcr"), af.pcr)
        ts = pes_timestamps(packet)
        if ts:
            self._see((p, "pts"), ts[0] * 300)

    def _see(self, key: tuple[int, str], value: int) -> None:
        last = self._last.get(key)
        if last is None:
            self._first[key] = self._last[key] = self._high[key] = value
            return
        value += self._wraps.get(key, 0)
        if last - value > PCR_WRAP // 2:  # it passed 2^33 (x 300): count on
            self._wraps[key] = self._wraps.get(key, 0) + PCR_WRAP
            value += PCR_WRAP
        elif value - last > PCR_WRAP // 2:  # a frame stamped before the wrap, in decode order
            value -= PCR_WRAP  # after one stamped past it (B-frames): not a day ahead
        if value > last:
            if value - last <= MAX_PCR_JUMP * PCR_HZ:
                self._step[key] = value - last
            if value > self._high[key]:
                self._high[key] = value
        elif last - value > MAX_PCR_JUMP * PCR_HZ:  # back by more than a reordering: a new stretch
            self._high[key] = value
        self._last[key] = value

    def next_pass(self) -> None:
        """The file starts again."""
        if self._measuring:
            self._measuring = False
            keys = [k for k in self._first if k[1] == "pts"] or list(self._first)
            spans = [self._high[k] - self._first[k] + self._step.get(k, 0) for k in keys]
            span = max(spans, default=0)
            # a "file" of hours (or a span that is no span): leave it as it is
            self.span = span // 300 * 300 if 0 < span < 24 * 3600 * PCR_HZ else 0
        self.offset = (self.offset + self.span) % PCR_WRAP


class _Splicer:
    """A pipe's timestamps made continuous where it was spliced (``cat a.ts b.ts |``, an
    encoder restarted): when a PID's PCR jumps back or more than ``MAX_PCR_JUMP`` ahead, or
    its PTS goes back by more than that, every later timestamp (PCR, PTS, DTS of every PID)
    is moved by one offset that puts the jumping value one step after its last. The media
    of both sides keep their own timing; a player sees one clock. Before (found 2026-12-06
    from outside), each join went back by the first file's length, with no discontinuity
    flagged, and players may stall there."""

    def __init__(self) -> None:
        self.offset = 0  #: 27 MHz ticks added (a multiple of 300: PTSs stay exact)
        self.splices = 0
        self._last: dict[tuple[int, str], int] = {}  #: the last value out, per (pid, kind)
        self._step: dict[tuple[int, str], int] = {}

    def packet(self, packet: bytes) -> bytes:
        try:
            af = adaptation_field(packet)
            p = pid(packet)
            ts = pes_timestamps(packet)
        except TsError:
            return packet
        found: list[tuple[tuple[int, str], int]] = []
        if af is not None and af.pcr is not None:
            found.append(((p, "pcr"), af.pcr))
        if ts:
            found.append(((p, "pts"), ts[0] * 300))
        limit = int(MAX_PCR_JUMP * PCR_HZ)
        for key, raw in found:
            v = (raw + self.offset) % PCR_WRAP
            last = self._last.get(key)
            if last is not None:
                d = (v - last + PCR_WRAP // 2) % PCR_WRAP - PCR_WRAP // 2  # signed, across a wrap
                if d < -limit or (key[1] == "pcr" and d > limit):
                    move = last + self._step.get(key, 0) - v
                    self.offset = (self.offset + round(move / 300) * 300) % PCR_WRAP
                    self.splices += 1
                    v = (raw + self.offset) % PCR_WRAP
                elif 0 < d <= limit:
                    self._step[key] = d
            self._last[key] = v
        return _shifted(packet, self.offset)


async def _paced(blocks: AsyncIterator[bytes], pacer: _Pacer, clock: _PcrClock,
                 retime: _Retimer | _Splicer | None = None) -> AsyncIterator[bytes]:
    """The whole TS packets of ``blocks``, in segments that each end with a PCR, spread
    between the previous PCR's time and its own (``_spread``); a stream without PCRs in
    64-packet segments by the byte rate (and one whose PCRs stop, every 1.5 MB)."""
    buffer, segment = bytearray(), bytearray()
    async for block in blocks:
        buffer += block
        for packet in _split_packets(buffer):
            clock.packets += 1
            if retime is not None:
                packet = retime.packet(packet)
            segment += packet
            try:
                af = adaptation_field(packet)
                packet_pid = pid(packet)
            except TsError:
                continue
            pcr = af.pcr if af is not None else None
            if pcr is not None and clock.pcr_pid is None:
                clock.pcr_pid = packet_pid
            if pcr is not None and packet_pid == clock.pcr_pid:
                async for piece in _spread(segment, pacer, pacer.due_for_pcr(pcr, len(segment))):
                    yield piece
                segment.clear()
                continue
            if len(segment) >= (MAX_UNTIMED_SEGMENT if clock.pcr_pid is None else MAX_PCR_SEGMENT):
                await pacer.wait_until(pacer.due_for_bytes(len(segment)))
            else:
                continue
            yield bytes(segment)
            segment.clear()
    if segment:
        await pacer.wait_until(pacer.due_for_bytes(len(segment)))
        yield bytes(segment)


async def _spread(segment: bytearray, pacer: _Pacer, due: float) -> AsyncIterator[bytes]:
    """A segment that ends with a PCR due at ``due``, in pieces at least ``PIECE_S`` apart,
    each released when its last byte is due: bytes between two PCRs arrive at a constant
    rate (the transport stream's timing model, ISO/IEC 13818-1 §2.4.2.2). Released whole at
    its PCR, a file muxed with a PCR every 100 ms (PyAV's, our test source's) came in 100 ms
    bursts, and the chunker, which cuts at a feed, made ~12 chunks a second at ``--chunk-ms 33``."""
    start = pacer.last_due
    span = due - start
    packets = len(segment) // TS_PACKET_SIZE
    pieces = min(packets, int(span / PIECE_S)) if 0.0 < span <= MAX_PCR_JUMP else 1
    if pieces <= 1:
        await pacer.wait_until(due)
        yield bytes(segment)
        return
    shift, begin = 0.0, 0
    for k in range(1, pieces + 1):
        end = packets * k // pieces * TS_PACKET_SIZE
        shift += await pacer.wait_until(start + shift + span * end / len(segment))
        yield bytes(segment[begin:end])
        begin = end


async def _file_blocks(ts_file: BinaryIO) -> AsyncIterator[bytes]:
    while block := ts_file.read(FILE_READ_BYTES):
        yield block


async def file_source(path: str | Path, loop: bool = True) -> AsyncIterator[bytes]:
    """Yield a TS file's packets at real-time pace (by PCR), looping forever if ``loop``."""
    path = Path(path)
    pacer = _Pacer(asyncio.get_running_loop(), path)
    clock = _PcrClock()
    retime = _Retimer()
    while True:
        clock.packets = 0
        pacer.restart()
        with path.open("rb") as ts_file:
            async for segment in _paced(_file_blocks(ts_file), pacer, clock, retime):
                yield segment
        if clock.packets == 0:
            raise ValueError(f"{path}: no MPEG-TS packets found")
        if not loop:
            return
        retime.next_pass()


async def paced_stdin_source(stream: BinaryIO | None = None) -> AsyncIterator[bytes]:
    """Stdin's (or another pipe's) TS packets, released at real time by their PCRs as a
    file's are (:func:`file_source`), until its end. A concatenation (``cat a.ts b.ts``) is
    spliced onto one clock (:class:`_Splicer`); without PCRs, paced by the default byte rate."""
    pacer = _Pacer(asyncio.get_running_loop(), None)
    raw = stdin_source(stream)
    try:
        async for segment in _paced(raw, pacer, _PcrClock(), _Splicer()):
            yield segment
    finally:
        await raw.aclose()


async def stdin_source(
    stream: BinaryIO | None = None, read_size: int = 64 * 1024
) -> AsyncGenerator[bytes, None]:
    """Yield bytes from stdin (or another pipe) as they arrive, without blocking the loop."""
    stream = stream if stream is not None else sys.stdin.buffer
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=read_size * 4)
    if not loop_can_watch(stream.fileno()):
        # A regular file (or /dev/null) redirected to stdin cannot be watched by the loop
        # (uvloop aborts the process if asked to): read it in a thread.
        while data := await asyncio.to_thread(stream.read, read_size):
            yield data
        return
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stream)
    try:
        while data := await reader.read(read_size):
            yield data
    finally:
        transport.close()


class _DatagramQueue(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpSource) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        owner = self.owner
        owner.datagrams += 1
        if owner.max_rate is not None and not owner.take(len(data)):
            owner.drops += 1  # faster than any stream it could be: a flood
            owner.rate_drops += 1
            return
        if owner.queued_bytes + len(data) > owner.max_queued_bytes:
            owner.drops += 1  # (bytes, not only datagrams: 4,096 of 64 KiB were 256 MiB)
            return
        try:
            owner.queue.put_nowait(data)
        except asyncio.QueueFull:
            owner.drops += 1
            return
        owner.queued_bytes += len(data)

    def error_received(self, exc: Exception) -> None:
        self.owner.socket_errors += 1


class UdpSource:
    """UDP receiver of TS datagrams with a queue bounded in datagrams and in bytes (a
    flood of 64-KiB datagrams at 1.7 Gbit/s took a broadcaster to 1.35 GB, found 2026-12-06
    from outside; ``drops`` counts what did not fit); use ``async with``."""

    RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
    MAX_READ_BYTES = 1024 * 1024
    #: bytes queued at most: ~11 s of a 6 Mbit/s feed in ffmpeg's 1,316-byte datagrams
    MAX_QUEUED_BYTES = 8 * 1024 * 1024

    def __init__(self, host: str, port: int, *, max_queued_datagrams: int = 4096,
                 max_queued_bytes: int = MAX_QUEUED_BYTES, max_rate: float | None = None) -> None:
        self.host, self.port = host, port
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=max_queued_datagrams)
        self.max_queued_bytes = max_queued_bytes
        self.queued_bytes = 0
        #: bytes a second taken at most (a token bucket of one second's worth; None: no cap)
        self.max_rate = max_rate
        self.rate_drops = 0
        self._tokens = max_rate or 0.0
        self._filled_at: float | None = None
        self.datagrams = 0
        self.drops = 0
        self.socket_errors = 0
        self._transport: asyncio.DatagramTransport | None = None

    def take(self, n: int) -> bool:
        """Spend ``n`` bytes of the rate's bucket, if it holds them."""
        assert self.max_rate is not None
        now = asyncio.get_running_loop().time()
        if self._filled_at is not None:
            self._tokens = min(self.max_rate, self._tokens + (now - self._filled_at) * self.max_rate)
        self._filled_at = now
        if self._tokens < n:
            return False
        self._tokens -= n
        return True

    @property
    def local_address(self) -> tuple[str, int]:
        if self._transport is None:
            raise RuntimeError("UdpSource is not started")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    async def start(self) -> tuple[str, int]:
        if self._transport is None:
            loop = asyncio.get_running_loop()
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _DatagramQueue(self), local_addr=(self.host, self.port)
            )
            sock = self._transport.get_extra_info("socket")
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RECEIVE_BUFFER_BYTES)
            except OSError:
                pass
        return self.local_address

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> UdpSource:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    async def read(self) -> bytes:
        """Wait for at least one datagram; return it joined with any others already queued."""
        parts = [await self.queue.get()]
        size = len(parts[0])
        while size < self.MAX_READ_BYTES and not self.queue.empty():
            parts.append(self.queue.get_nowait())
            size += len(parts[-1])
        self.queued_bytes -= size
        return b"".join(parts)


#: a UDP source takes at most this many times its stream's --bitrate, and at least this
#: many Mbit/s (a flood of 1.9 Gbit/s held ~1.3 GB in chunks: the chunk window and the
#: broadcaster's own player buffer; found 2026-12-06 from outside)
UDP_RATE_FACTOR = 8
UDP_DROPS_EVERY = 60.0  #: s at least between two warnings of a UDP source's drops
UDP_RATE_FLOOR_MBIT = 50


def udp_rate_cap(bitrate_kbps: int) -> float:
    """Bytes a second a UDP source of a ``bitrate_kbps`` stream takes at most."""
    return max(UDP_RATE_FACTOR * bitrate_kbps * 1000, UDP_RATE_FLOOR_MBIT * 1_000_000) / 8


async def udp_source(
    host: str, port: int, *, max_queued_datagrams: int = 4096, max_rate: float | None = None
) -> AsyncIterator[bytes]:
    """Yield TS bytes received on UDP ``host:port`` (e.g. ffmpeg ``-f mpegts udp://...``),
    whole packets, their timestamps spliced onto one clock (:func:`spliced`).
    Datagrams dropped (past the rate cap, or the queue full) are said on stderr, at most
    once a minute, with their count so far."""
    async with UdpSource(host, port, max_queued_datagrams=max_queued_datagrams, max_rate=max_rate) as source:
        raw = _udp_blocks(source, host, port, max_rate)
        try:
            async for data in spliced(raw):
                yield data
        finally:
            await raw.aclose()


async def _udp_blocks(source: UdpSource, host: str, port: int,
                      max_rate: float | None) -> AsyncGenerator[bytes, None]:
    said_at, said = -UDP_DROPS_EVERY, 0
    loop = asyncio.get_running_loop()
    while True:
        data = await source.read()
        if source.drops > said and loop.time() - said_at >= UDP_DROPS_EVERY:
            said_at, said = loop.time(), source.drops
            cap = f"{max_rate * 8 / 1e6:.0f} Mbit/s" if max_rate else "none"
            log.warning("UDP source %s:%d dropped %d of %d datagrams so far (%d past its rate cap "
                        "of %s, the rest with its queue full): the stream will show gaps",
                        host, port, source.drops, source.datagrams, source.rate_drops, cap)
        yield data


async def spliced(blocks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The whole TS packets of ``blocks``, their timestamps spliced onto one clock as a
    pipe's are (:class:`_Splicer`), as they come (not paced). A UDP source listens on while
    its encoder is stopped and started again (OBS's Stop and Start Streaming, ffmpeg run
    again), which starts its timestamps afresh: players saw them go back with no
    discontinuity flagged (found 2026-12-07 from outside)."""
    splicer, buffer = _Splicer(), bytearray()
    async for block in blocks:
        buffer += block
        packets = _split_packets(buffer)
        if packets:
            yield b"".join([splicer.packet(p) for p in packets])


async def check_udp_source(spec: str) -> None:
    """Bind a ``udp://`` source's address once and let it go, before anything says the stream
    runs: ValueError saying why it cannot be bound (a port in use, an address not of this
    machine). ``oasis broadcast`` printed its start line and link first, then failed."""
    host, port = parse_udp_spec(spec)
    probe = UdpSource(host, port)
    try:
        await probe.start()
    except OSError as exc:
        err = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc  # uvloop wraps it
        raise ValueError(f"source {spec[:200]}: cannot bind UDP {host}:{port} ({err.strerror or err}): is "
                         f"another program using the port, or is {host} not an address of this "
                         "machine?") from None
    finally:
        probe.close()


SOURCE_SPEC_HELP = "expected 'test', '-' (stdin), 'udp://HOST:PORT' or the path of an MPEG-TS file"


#: query parameters a UDP source takes: ffmpeg's ``pkt_size`` (a sender's URL often carries
#: it), checked and otherwise without effect -- every datagram is read whole, whatever its size
UDP_PARAMETERS = ("pkt_size",)
MAX_UDP_PAYLOAD = 65507


def parse_udp_spec(spec: str) -> tuple[str, int]:
    """``udp://HOST:PORT``, optionally ``?pkt_size=N`` (1-65507; no effect). The host is the
    address to bind and must be given (``0.0.0.0``: every interface): an empty one
    (``udp://:5000``, ffmpeg's ``udp://@:5000``) bound every interface without saying so.
    Any other query parameter, a user (even empty), a path (even ``/``) or a fragment is
    refused (ValueError): a parameter the source would silently ignore was taken as honoured."""
    try:
        parts = urlsplit(spec)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad UDP source {spec!r}: {exc}; {SOURCE_SPEC_HELP}") from None
    if port is None or port == 0:
        raise ValueError(f"UDP source {spec!r} needs a port, e.g. udp://127.0.0.1:5000")
    if parts.path or parts.fragment or "#" in spec or "@" in parts.netloc:
        found = ([f"a user ({parts.netloc.rpartition('@')[0] + '@'!r})"] if "@" in parts.netloc else []) \
            + ([f"a path ({parts.path!r})"] if parts.path else []) \
            + ([f"a fragment ({'#' + parts.fragment!r})"] if parts.fragment or "#" in spec else [])
        raise ValueError(f"UDP source {spec!r}: udp://HOST:PORT takes no user, path or fragment; "
                         f"this one has {' and '.join(found)}")
    if not parts.hostname:
        raise ValueError(f"UDP source {spec!r} needs the address to bind: udp://127.0.0.1:{port} "
                         f"(this machine only) or udp://0.0.0.0:{port} (every interface)")
    if parts.query or spec.endswith("?"):
        seen: set[str] = set()
        for item in parts.query.split("&"):
            name, eq, value = item.partition("=")
            if name not in UDP_PARAMETERS:
                raise ValueError(f"UDP source {spec!r}: unknown parameter {name!r} (a UDP source takes "
                                 f"only {', '.join(UDP_PARAMETERS)}: udp://HOST:PORT?pkt_size=1316)")
            if name in seen:
                raise ValueError(f"UDP source {spec!r}: {name} given twice")
            seen.add(name)
            if not (eq and value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_UDP_PAYLOAD):
                raise ValueError(f"UDP source {spec!r}: {name} must be a number of bytes, "
                                 f"1-{MAX_UDP_PAYLOAD}")
    return parts.hostname, port


def video_kbps_for(stream_kbps: int) -> int:
    """Video bitrate that makes the muxed TS (video + 64 kbit/s AAC + TS overhead)
    come out near ``stream_kbps`` (measured: TS ≈ 1.1 × video + 80 kbit/s)."""
    return max(100, int((stream_kbps - 80) / 1.1))


def open_source(spec: str, bitrate_kbps: int) -> AsyncIterator[bytes]:
    """Turn a command-line source spec into a live TS byte source (validated eagerly)."""
    if spec == "test":
        # --bitrate is the whole stream's; leave room for AAC and TS/PES overhead.
        return test_source_stream(video_kbps_for(bitrate_kbps))
    if spec == "-":
        return paced_stdin_source()
    if spec.startswith("udp://"):
        host, port = parse_udp_spec(spec)
        return udp_source(host, port, max_rate=udp_rate_cap(bitrate_kbps))
    if "://" in spec:
        raise ValueError(f"unsupported source {spec!r}; {SOURCE_SPEC_HELP}")
    path = Path(spec)
    if not path.is_file():
        # (a directory, a device or a pipe was "no such file" too: found 2026-12-05 from outside)
        what = "no such file" if not path.exists() else "not a regular file (a directory, device or pipe)"
        raise ValueError(f"source {spec!r}: {what}; {SOURCE_SPEC_HELP}")
    try:
        with path.open("rb") as ts_file:
            head = ts_file.read(TS_PACKET_SIZE * 8)
    except OSError as exc:
        raise ValueError(f"source {spec!r}: cannot read file: {exc}") from None
    start = find_sync(head)
    if not 0 <= start < TS_PACKET_SIZE:
        m2ts = any(all(head[o + 4 + 192 * k] == SYNC_BYTE for k in range(4)) for o in range(192)
                   if o + 4 + 192 * 3 < len(head))
        raise ValueError(
            f"source {spec!r} does not look like MPEG-TS (no 0x47 sync every 188 bytes)"
            + ("; it looks like M2TS (192-byte packets, a Blu-ray/AVCHD .m2ts): remux it, e.g. "
               "ffmpeg -i IN -c copy -f mpegts OUT.ts" if m2ts else "")
        )
    _check_video(path, spec, start)
    _check_keyframe(path, spec, start)
    return file_source(path, loop=True)


#: how much of a file source is read for its tables before it is started
VIDEO_PROBE_BYTES = 8 * 1024 * 1024
#: how much of a file source is read for a video keyframe before it is started (~85 s of a
#: 6 Mbit/s stream; the chunker reads ~200 MB/s)
KEYFRAME_PROBE_BYTES = 64 * 1024 * 1024


def _check_keyframe(path: Path, spec: str, start: int) -> None:
    """A file in which the chunker finds no video keyframe -- a program table naming a
    table or streams that are not there, a slice cut from the middle of a long GOP, a video
    stream it does not know -- was broadcast for ever and no viewer could start, with not
    a word (found 2026-12-06 from outside; stdin's source says so at its end): refused now,
    unless a keyframe comes in its first ``KEYFRAME_PROBE_BYTES``."""
    from oasis.media.chunker import TsChunker

    chunker = TsChunker(chunk_ms=33)
    read = 0
    with path.open("rb") as f:
        f.seek(start)
        while read < KEYFRAME_PROBE_BYTES and (block := f.read(1024 * 1024)):
            read += len(block)
            if any(c.keyframe for c in chunker.feed(block, read / 1e6)):
                return
    if any(c.keyframe for c in chunker.flush(read / 1e6)):
        return
    where = "in it" if read < KEYFRAME_PROBE_BYTES else f"in its first {KEYFRAME_PROBE_BYTES >> 20} MiB"
    raise ValueError(f"source {spec!r}: no video keyframe {where} (viewers start at a keyframe, so "
                     "nothing could be played): is its video stream there, and of a type Oasis reads "
                     "(H.264, HEVC, MPEG-1/2, MPEG-4 Part 2)?")


def _check_video(path: Path, spec: str, start: int) -> None:
    """A file with no video stream in its PMT (an audio-only TS) was broadcast for ever and
    no viewer could start (a start is a video keyframe) nor say why (found 2026-12-06 from
    outside; stdin's source says so at its end, a file loops for ever): refused now, from
    the tables in its first ``VIDEO_PROBE_BYTES``."""
    tracker = ProgramTracker()
    saw_pmt = False
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(VIDEO_PROBE_BYTES)
    for at in range(0, len(data) - TS_PACKET_SIZE + 1, TS_PACKET_SIZE):
        packet = data[at:at + TS_PACKET_SIZE]
        if packet[0] != SYNC_BYTE:
            continue
        try:
            tracker.observe(packet)
        except TsError:
            continue
        if not saw_pmt and pid(packet) in tracker.pmt_pids and parse_pmt(packet):
            saw_pmt = True  # a program table that lists its streams
        if tracker.video_pid is not None:
            return
    if saw_pmt:
        raise ValueError(f"source {spec!r} has no video stream of a type Oasis reads (its program "
                         "table lists none: H.264, HEVC, MPEG-1/2, MPEG-4 Part 2): viewers start at a "
                         "video keyframe, so an audio-only stream, or video in a private stream (AV1 "
                         "as ffmpeg muxes it), cannot be played; mux such a video track in (even a "
                         "still picture)")
