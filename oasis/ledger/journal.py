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

Format (version 2; all integers big-endian):

* file header, 16 bytes: ``b"OASISJNL"``, ``>H`` version (2), ``>H`` 0,
  ``>I`` CRC-32 of the 12 bytes before it. The file is created whole with it.
* record: ``b"\\xd7OJR"``, ``>I`` length of raw, ``>Q`` timestamp, ``>B``
  status, ``>I`` CRC-32 of those 17 bytes, raw bytes, ``>I`` CRC-32 of
  everything before it in the record.

Integrity rules. Appends are fsync'd one at a time under the lock, so only the
*last* record can be torn by a crash. Reading stops at the first record that
fails a check and classifies what follows:

* a torn tail -- a record shorter than its (checked) header says, a partial
  header, or only zero bytes up to the end, with no valid record after it --
  is dropped: truncated by whoever holds the lock, logged and counted;
* anything else -- a damaged record in the middle (a valid record follows)
  or a complete last record whose checksum fails -- raises
  :class:`JournalCorruptError` naming the file and offset. The file is not
  touched: no silent rollback, no truncation of valid later records.

A journal of the first format (no header, records without magic or header
CRC) is checked by the same rules and rewritten once in the current format.

Several processes may share one chain directory: every write happens under
an exclusive ``flock`` on ``journal.lock`` after first replaying records
appended by others, so they all see one linear history.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from oasis.datafiles import COUNTERS, DataFileError, private_dir, private_file, replace, write_new

log = logging.getLogger("oasis.ledger.journal")

MAGIC = b"OASISJNL"
VERSION = 2
FILE_HEAD = struct.Struct(">8sHH")
FILE_HEADER_SIZE = FILE_HEAD.size + 4
REC_MAGIC = b"\xd7OJR"
REC_HEAD = struct.Struct(">4sIQB")
REC_HEADER_SIZE = REC_HEAD.size + 4
CRC = struct.Struct(">I")
MAX_RAW = 1 << 24  # a batch of 256 receipts is ~45 KB; anything bigger is damage
V1_HEAD = struct.Struct(">IQB")

# Kept for readers of the old names.
HEADER = V1_HEAD


@dataclass(frozen=True)
class Record:
    timestamp: int
    raw: bytes
    status: int


class JournalCorruptError(DataFileError):
    """The journal is damaged where a crash cannot have damaged it."""

    def __init__(self, path: Path, offset: int, problem: str, last: bool = False) -> None:
        self.offset = offset
        drop = (f"; or, if the node crashed while writing it, `truncate -s {offset}` the file to drop "
                "that unacknowledged last transaction") if last and offset > FILE_HEADER_SIZE else ""
        super().__init__(
            path, f"damaged at byte offset {offset}: {problem}; the file was left untouched",
            "stop every node sharing this chain directory and restore journal.bin from a backup; "
            "if you have none, move the chain directory away to start a fresh chain (its balances "
            f"are lost){drop}")


def file_header() -> bytes:
    head = FILE_HEAD.pack(MAGIC, VERSION, 0)
    return head + CRC.pack(zlib.crc32(head))


def encode_record(record: Record) -> bytes:
    if not 0 <= record.status <= 255 or len(record.raw) > MAX_RAW:
        raise ValueError("record out of range")
    head = REC_HEAD.pack(REC_MAGIC, len(record.raw), record.timestamp, record.status)
    body = head + CRC.pack(zlib.crc32(head)) + record.raw
    return body + CRC.pack(zlib.crc32(body))


def _parse(data: bytes, pos: int) -> tuple[Record, int] | str:
    """The record at ``pos`` and its end, or why there is none."""
    if len(data) - pos < REC_HEADER_SIZE:
        return "short"
    magic, length, ts, status = REC_HEAD.unpack_from(data, pos)
    (hcrc,) = CRC.unpack_from(data, pos + REC_HEAD.size)
    if magic != REC_MAGIC:
        return "bad record marker"
    if zlib.crc32(data[pos : pos + REC_HEAD.size]) != hcrc:
        return "record header checksum mismatch"
    if length > MAX_RAW:
        return "record length out of range"
    end = pos + REC_HEADER_SIZE + length + CRC.size
    if end > len(data):
        return "short"
    (crc,) = CRC.unpack_from(data, end - CRC.size)
    if zlib.crc32(data[pos : end - CRC.size]) != crc:
        return "record checksum mismatch"
    return Record(ts, bytes(data[pos + REC_HEADER_SIZE : end - CRC.size]), status), end


def _parse_v1(data: bytes, pos: int) -> tuple[Record, int] | str:
    if len(data) - pos < V1_HEAD.size:
        return "short"
    length, ts, status = V1_HEAD.unpack_from(data, pos)
    if length > MAX_RAW:
        return "record length out of range"
    end = pos + V1_HEAD.size + length + CRC.size
    if end > len(data):
        return "short"
    (crc,) = CRC.unpack_from(data, end - CRC.size)
    if zlib.crc32(data[pos : end - CRC.size]) != crc:
        return "record checksum mismatch"
    return Record(ts, bytes(data[pos + V1_HEAD.size : end - CRC.size]), status), end


RESYNC_BUDGET = 1 << 26  # bytes checksummed while looking for a valid record after damage


def _valid_after(data: bytes, pos: int, v1: bool) -> int | None:
    """Offset of a complete, valid record starting after ``pos``; None if there is
    none; -1 if the search gave up (over :data:`RESYNC_BUDGET`: treat as damage)."""
    parse = _parse_v1 if v1 else _parse
    budget = RESYNC_BUDGET
    if v1:  # no marker to search for: try every offset (one-time migration)
        candidates: Iterator[int] = iter(range(pos + 1, len(data) - V1_HEAD.size - CRC.size + 1))
    else:
        candidates = _find_all(data, REC_MAGIC, pos + 1)
    for q in candidates:
        got = parse(data, q)
        if not isinstance(got, str):
            return q
        if got == "record checksum mismatch":
            budget -= V1_HEAD.unpack_from(data, q)[0] if v1 else REC_HEAD.unpack_from(data, q)[1]
            if budget < 0:
                return -1
    return None


def _find_all(data: bytes, needle: bytes, start: int) -> Iterator[int]:
    q = data.find(needle, start)
    while q >= 0:
        yield q
        q = data.find(needle, q + 1)


def scan(data: bytes, pos: int, path: Path, base: int = 0, v1: bool = False) -> tuple[list[Record], int, int]:
    """Records in ``data`` from ``pos``: (records, end of the last, torn tail bytes).

    ``base`` is the file offset of ``data[0]`` (for messages). Raises
    :class:`JournalCorruptError` unless what follows the last valid record is
    empty or a torn tail (see the module docstring).
    """
    parse = _parse_v1 if v1 else _parse
    one_record = (V1_HEAD.size if v1 else REC_HEADER_SIZE) + MAX_RAW + CRC.size
    out: list[Record] = []
    while pos < len(data):
        got = parse(data, pos)
        if isinstance(got, str):
            if len(data) - pos > one_record:
                raise JournalCorruptError(path, base + pos, f"{got}, with more than one record's worth "
                                          "of bytes after it")
            later = _valid_after(data, pos, v1)
            if later == -1:
                raise JournalCorruptError(path, base + pos, f"{got}; what follows could not be checked")
            if later is not None:
                raise JournalCorruptError(path, base + pos, f"{got}, with a valid record after it at offset "
                                          f"{base + later}")
            if got != "short" and data[pos:].strip(b"\x00"):
                raise JournalCorruptError(path, base + pos, f"{got} in the last record", last=True)
            return out, pos, len(data) - pos
        rec, pos = got
        out.append(rec)
    return out, pos, 0


class Journal:
    def __init__(self, directory: Path) -> None:
        private_dir(directory)
        self.path = directory / "journal.bin"
        self.lock_path = directory / "journal.lock"
        self.counters = {"torn_tails_truncated": 0, "torn_bytes_dropped": 0, "migrated": 0}
        self._held = 0
        with self.locked():
            self._open_file(directory)

    def _open_file(self, directory: Path) -> None:
        if not self.path.exists():
            if (directory / "deployment.json").exists():
                raise DataFileError(self.path, "is missing but the chain was deployed (deployment.json exists)",
                                    "restore journal.bin from a backup, or move the chain directory away to "
                                    "start a fresh chain (its balances are lost)")
            if write_new(self.path, file_header()):
                return
        private_file(self.path)
        try:
            with open(self.path, "rb") as f:
                head = f.read(FILE_HEADER_SIZE)
        except OSError as exc:
            raise DataFileError(self.path, f"cannot be read ({exc.strerror or exc})",
                                "check the file's owner and the disk") from None
        if head == file_header():
            return
        near_magic = len(head) == FILE_HEADER_SIZE and sum(a == b for a, b in zip(head, MAGIC, strict=False)) >= 6
        if near_magic and not head.startswith(MAGIC):
            # a byte or two of the marker flipped: not an old-format journal, never
            # "migrated" or truncated as one
            raise JournalCorruptError(self.path, 0, "file header damaged")
        if head.startswith(MAGIC):
            ver = FILE_HEAD.unpack_from(head)[1] if len(head) >= FILE_HEAD.size else None
            if len(head) == FILE_HEADER_SIZE and CRC.unpack_from(head, FILE_HEAD.size)[0] == zlib.crc32(
                    head[: FILE_HEAD.size]) and ver != VERSION:
                raise DataFileError(self.path, f"is a journal of format version {ver}",
                                    "it was written by a newer Oasis: upgrade Oasis")
            raise JournalCorruptError(self.path, 0, "file header damaged")
        if not head and not (directory / "deployment.json").exists():
            replace(self.path, file_header())  # old-style empty journal of a chain never used
            return
        if not head:
            raise JournalCorruptError(self.path, 0, "the file is empty but the chain was deployed "
                                      "(deployment.json exists)")
        self._migrate_v1()

    def _migrate_v1(self) -> None:
        data = self.path.read_bytes()
        records, end, torn = scan(data, 0, self.path, v1=True)
        if not records:
            raise JournalCorruptError(self.path, 0, "no journal header and no valid old-format record")
        replace(self.path, file_header() + b"".join(encode_record(r) for r in records))
        self.counters["migrated"] += 1
        COUNTERS["journals_migrated"] += 1
        log.warning("%s: old-format journal (%d records%s) rewritten in format %d", self.path,
                    len(records), f", {torn} torn bytes dropped" if torn else "", VERSION)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive cross-process lock for read-catch-up-then-append."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def read_from(self, offset: int) -> tuple[list[Record], int]:
        """Complete records from ``offset`` and the offset just past the last one.

        A torn tail is dropped (truncated if this process holds the lock);
        damage anywhere else raises :class:`JournalCorruptError`.
        """
        offset = max(offset, FILE_HEADER_SIZE)
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read()
        records, pos, torn = scan(data, 0, self.path, base=offset)
        if torn and self._held:
            with open(self.path, "r+b") as f:
                self._truncate(f, offset + pos, torn)
        return records, offset + pos

    def _truncate(self, f: BinaryIO, at: int, nbytes: int) -> None:
        f.truncate(at)
        os.fsync(f.fileno())
        self.counters["torn_tails_truncated"] += 1
        self.counters["torn_bytes_dropped"] += nbytes
        COUNTERS["journal_torn_tails_truncated"] += 1
        COUNTERS["journal_torn_bytes_dropped"] += nbytes
        log.warning("%s: torn tail of %d bytes at offset %d (a crash mid-append) dropped", self.path, nbytes, at)

    def append(self, offset: int, record: Record) -> int:
        """Write ``record`` at ``offset`` (dropping a torn tail only); fsync; new end.
        Call under :meth:`locked` after catching up to ``offset``."""
        if offset < FILE_HEADER_SIZE:
            raise ValueError("append before catching up")
        blob = encode_record(record)
        with open(self.path, "r+b") as f:
            f.seek(offset)
            rest = f.read()
            if rest:  # only a torn tail may be cut, never a valid record
                if scan(rest, 0, self.path, base=offset)[0]:
                    raise ValueError(f"append at offset {offset} would cut valid records: catch up first")
                self._truncate(f, offset, len(rest))
            try:  # unbuffered: nothing is left to be flushed (again) when f closes
                done = 0
                while done < len(blob):
                    done += os.pwrite(f.fileno(), blob[done:], offset + done)
                os.fsync(f.fileno())
            except OSError:
                # a full disk, a file size limit, an I/O error: take back what part of
                # the record reached the file (else it would be a torn tail, dropped on
                # the next open), so the file ends where the caller's chain does
                with contextlib.suppress(OSError):
                    os.ftruncate(f.fileno(), offset)
                    os.fsync(f.fileno())
                raise
        return offset + len(blob)
