"""Append-only transaction journal: what makes the embedded chain durable.

Theory of operation: the embedded chain is py-evm in memory. Instead of
persisting its state database we persist its *inputs*: every raw signed
transaction, with the block timestamp it was mined at and its status, is
appended to ``journal.bin`` and fsync'd before the caller hears that the
transaction happened. Opening the chain replays the journal into a fresh
py-evm with the same genesis (fixed timestamp, fixed accounts); execution is
deterministic, so the state -- balances, pool, paid lanes -- comes back bit
for bit, and a replayed status that differs from the recorded one is
reported as corruption instead of being silently accepted.

Record: ``>I`` length of raw, ``>Q`` timestamp, ``>B`` status, raw bytes,
``>I`` CRC-32 of everything before it. A crash mid-append leaves a short or
CRC-failing tail: readers stop there and the next writer truncates it.

Several processes may share one chain directory: every write happens under
an exclusive ``flock`` on ``journal.lock`` after first replaying records
appended by others, so they all see one linear history.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HEADER = struct.Struct(">IQB")
CRC = struct.Struct(">I")
MAX_RAW = 1 << 24  # a batch of 256 receipts is ~45 KB; anything bigger is damage


@dataclass(frozen=True)
class Record:
    timestamp: int
    raw: bytes
    status: int


class Journal:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "journal.bin"
        self.lock_path = directory / "journal.lock"
        self.path.touch(exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive cross-process lock for read-catch-up-then-append."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def read_from(self, offset: int) -> tuple[list[Record], int]:
        """Complete records from ``offset`` and the offset just past the last one."""
        out: list[Record] = []
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read()
        pos = 0
        while len(data) - pos >= HEADER.size:
            length, ts, status = HEADER.unpack_from(data, pos)
            end = pos + HEADER.size + length + CRC.size
            if length > MAX_RAW or end > len(data):
                break
            (crc,) = CRC.unpack_from(data, end - CRC.size)
            if zlib.crc32(data[pos : end - CRC.size]) != crc:
                break
            raw = data[pos + HEADER.size : end - CRC.size]
            out.append(Record(ts, bytes(raw), status))
            pos = end
        return out, offset + pos

    def append(self, offset: int, record: Record) -> int:
        """Write ``record`` at ``offset`` (dropping any torn tail); fsync; new end.
        Call under :meth:`locked` after catching up to ``offset``."""
        body = HEADER.pack(len(record.raw), record.timestamp, record.status) + record.raw
        blob = body + CRC.pack(zlib.crc32(body))
        with open(self.path, "r+b") as f:
            f.truncate(offset)
            f.seek(offset)
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        return offset + len(blob)
