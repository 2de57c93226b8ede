"""Cut a live MPEG-TS byte stream into chunks for the swarm (sans-I/O).

Theory of operation
-------------------
Bytes arrive in arbitrary pieces via :meth:`TsChunker.feed`, each tagged with
the caller's ``now`` (seconds, any monotonic clock).  The chunker never reads a
clock and never does I/O, so it is deterministic and trivially testable.

1. *Packetisation.*  Incoming bytes are appended to a pending buffer and split
   into 188-byte packets.  While in sync, a packet is accepted if it starts with
   0x47.  Otherwise we have lost sync: we count one error, then skip to the
   next 0x47 that is followed by another 0x47 188 bytes later (waiting for more
   bytes if needed) and count the skipped bytes.  Bad input never raises.

2. *Time cuts.*  Chunks are cut on a grid of ``chunk_ms`` steps: at the start of
   each feed, if ``now`` has reached the current chunk's grid boundary (less a
   quarter of a chunk: feeds jitter), the chunk is emitted (so a chunk holds
   what arrived before ``now``; ``feed(b"", now)`` works as a timer tick), and
   the next boundary is one step further on the grid, not one step after
   ``now``.  So the stream's cadence is ``chunk_ms`` on average whatever the
   feeds' timing: with "``chunk_ms`` after the chunk's first feed" a 30 fps
   source feeding every 33.3 ms +- jitter with ``chunk_ms = 33`` made a chunk
   every ~50 ms (every frame that came a little early was held for the next),
   and every viewer's chunk clock, which starts from the nominal interval, ran
   ahead of the stream.  The grid is anchored at the first packet, again at
   each keyframe cut, and again after a gap of more than a step.

3. *Keyframe cuts.*  Every packet is classified with a
   :class:`~oasis.media.tspackets.ProgramTracker`.  Immediately before a video
   random-access point (RAP) the current chunk is cut and the next one is
   flagged ``keyframe=True``.  libavformat writes PAT and PMT right before every
   video keyframe; a run of PAT/PMT packets starting with a PAT and directly
   preceding the RAP (the *lead-in*) goes into the keyframe chunk, so it starts
   with PAT, PMT, keyframe.  A time cut never splits a lead-in from what follows.

4. *Size cuts.*  A chunk is cut before it would exceed ``max_chunk_bytes``.

Concatenating all emitted chunks reproduces the accepted packets exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from oasis.media.tspackets import (
    PAT_PID,
    SYNC_BYTE,
    TS_PACKET_SIZE,
    ProgramTracker,
    TsError,
    find_sync,
    pid,
)


@dataclass(frozen=True)
class MediaChunk:
    payload: bytes  # whole 188-byte TS packets only
    keyframe: bool  # starts with a random-access point (optionally after PAT/PMT)
    complete_at: float  # the `now` at which the chunk was cut


class TsChunker:
    """Sans-I/O MPEG-TS chunker: feed bytes with timestamps, get :class:`MediaChunk`s."""

    def __init__(self, chunk_ms: int = 100, max_chunk_bytes: int = 2 * 1024 * 1024) -> None:
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        if max_chunk_bytes < TS_PACKET_SIZE:
            raise ValueError(f"max_chunk_bytes must be at least {TS_PACKET_SIZE}")
        self.chunk_seconds = chunk_ms / 1000.0
        self.max_chunk_bytes = max_chunk_bytes - max_chunk_bytes % TS_PACKET_SIZE
        self.errors = 0  # runs of garbage skipped (sync lost/not found, partial packet at flush)
        self.skipped_bytes = 0  # total garbage bytes discarded
        self.programs = ProgramTracker()
        self._pending = bytearray()
        self._in_sync = False  # the first packet needs a confirming sync byte too
        self._in_garbage_run = False
        self._chunk = bytearray()
        self._chunk_keyframe = False
        self._due: float | None = None  # grid boundary at which the current chunk is cut
        self._grid: float | None = None  # the last grid boundary (or anchor)
        self._tolerance = self.chunk_seconds / 4
        self._lead_in_at: int | None = None  # offset in _chunk where a PAT/PMT lead-in began

    # -- public API --------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> list[MediaChunk]:
        """Consume ``data`` received at ``now``; return chunks completed by it."""
        out: list[MediaChunk] = []
        if self._due is not None and now >= self._due - self._tolerance - 1e-9:
            self._grid = self._due
            self._cut_for_time(now, out)
        self._pending += data
        for packet in self._packets():
            self._add_packet(packet, now, out)
        return out

    def flush(self, now: float) -> list[MediaChunk]:
        """Emit whatever is buffered (end of stream); trailing partial packets are dropped."""
        out: list[MediaChunk] = []
        for packet in self._packets(final=True):
            self._add_packet(packet, now, out)
        if self._pending:
            self._in_sync = False
            self._skip(len(self._pending))
            self._pending.clear()
        self._emit(len(self._chunk), now, out)
        self._lead_in_at = None
        return out

    @property
    def buffered_bytes(self) -> int:
        """Accepted packet bytes waiting for the current chunk to be cut."""
        return len(self._chunk)

    # -- packetisation -------------------------------------------------------------

    def _packets(self, final: bool = False) -> list[bytes]:
        """Split whole packets off the pending bytes, resyncing past garbage.

        With ``final`` the end of the data counts as confirmation of a last sync byte.
        """
        pending = self._pending
        search_in = pending + b"\x47" if final else pending
        packets: list[bytes] = []
        pos = 0
        while len(pending) - pos >= TS_PACKET_SIZE:
            if self._in_sync and pending[pos] == SYNC_BYTE:
                packets.append(bytes(pending[pos : pos + TS_PACKET_SIZE]))
                pos += TS_PACKET_SIZE
                continue
            self._in_sync = False
            found = find_sync(search_in, pos)
            if found < 0:
                # Keep the tail where a sync byte could still be confirmed later.
                found = max(pos, len(pending) - TS_PACKET_SIZE)
            else:
                self._in_sync = True
            self._skip(found - pos)
            pos = found
            if not self._in_sync:
                break
        del pending[:pos]
        return packets

    def _skip(self, garbage: int) -> None:
        if garbage and not self._in_garbage_run:
            self.errors += 1
        self._in_garbage_run = (self._in_garbage_run or garbage > 0) and not self._in_sync
        self.skipped_bytes += garbage

    # -- chunking ------------------------------------------------------------------

    def _add_packet(self, packet: bytes, now: float, out: list[MediaChunk]) -> None:
        try:
            self.programs.observe(packet)
            random_access = self.programs.is_random_access_point(packet)
            is_psi = self.programs.is_psi(packet)
        except TsError:
            random_access = is_psi = False  # malformed header fields: carry, don't classify
        if random_access:
            self._grid = now  # the grid follows the keyframes
            cut_at = self._lead_in_at if self._lead_in_at is not None else len(self._chunk)
            self._emit(cut_at, now, out)
            self._chunk_keyframe = True
            self._lead_in_at = None
        elif is_psi:
            if self._lead_in_at is None and pid(packet) == PAT_PID:
                self._lead_in_at = len(self._chunk)
        else:
            self._lead_in_at = None
        if len(self._chunk) + TS_PACKET_SIZE > self.max_chunk_bytes:
            self._emit(len(self._chunk), now, out)
            self._lead_in_at = None
        if not self._chunk:
            self._start(now)
        self._chunk += packet

    def _start(self, now: float) -> None:
        """A chunk begins at ``now``: it is cut at the next grid boundary."""
        g = self._grid
        if g is None or g + self.chunk_seconds < now:  # no grid yet, or a gap: anchor here
            g = self._grid = now
        self._due = g + self.chunk_seconds

    def _cut_for_time(self, now: float, out: list[MediaChunk]) -> None:
        cut_at = self._lead_in_at if self._lead_in_at is not None else len(self._chunk)
        self._emit(cut_at, now, out)
        if self._lead_in_at is not None:
            self._lead_in_at = 0 if self._chunk else None

    def _emit(self, cut_at: int, now: float, out: list[MediaChunk]) -> None:
        """Emit chunk bytes before ``cut_at``; the rest starts the next chunk (at ``now``)."""
        if cut_at > 0:
            out.append(MediaChunk(bytes(self._chunk[:cut_at]), self._chunk_keyframe, now))
            del self._chunk[:cut_at]
            self._chunk_keyframe = False
        if self._chunk:
            self._start(now)
        else:
            self._due = None
