"""The neighbours a node had, kept in its data directory so that a restarted node dials them.

Theory of operation
-------------------
A broadcaster that crashed (``kill -9``, a power cut) and is started again on its ports
comes back with no link and an empty embedded tracker. Its viewers still hold their links
to the dead process: nothing tells them it is gone before QUIC's idle timeout, as the new
process cannot reset connections it never had. They dial nobody, and the broadcaster
learns of them only when each announces again, up to the tracker's interval (10 s) later.
Measured (``kill -9``, restart 3 s later, 4 viewers; session 49): first link back after
0.7-6.6 s, all four after up to 13.7 s. Meanwhile every viewer fetched every chunk from
the origin.

So every ``SAVE_EVERY`` s, when the set changed, a node writes down the peers it shares a
stream with: each one's key and the address its link uses (``<data-dir>/neighbours.json``).
At start, once its streams are added, the runtime hands those saved within ``MAX_AGE`` to
the policy as candidates. The policy dials them as it dials any candidate, and the peers'
redial rule (docs/oftp.md §5: a linked peer that dials again later wins the new link) makes
them drop their dead link for it.

The file is local and written only by the node, but it is read as hostile all the same: at
most ``MAX_FILE`` bytes, a strict schema, ``MAX_ENTRIES`` entries, each address checked as
any candidate's. A stale or edited entry costs one failed dial: the dial pins the key
(OFTP's AUTH), so an address that now belongs to someone else links to nobody. A file that
cannot be read or decoded is logged and ignored. It is not a secret (0600 as every data file).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import msgspec

from oasis.core import peer as pp
from oasis.core.dialplan import dialable
from oasis.core.identity import key_of_peer_id, peer_id_of
from oasis.datafiles import DataFileError, read_small, replace

log = logging.getLogger("oasis.node")

FILE_NAME = "neighbours.json"
VERSION = 1
#: s between looks at the neighbour set (written only when it changed)
SAVE_EVERY = 5.0
#: s after its writing that a file is still used (older: its addresses may be anyone's now)
MAX_AGE = 600.0
MAX_ENTRIES = 64
MAX_FILE = 16 * 1024


class Entry(msgspec.Struct, forbid_unknown_fields=True):
    peer_id: str
    host: str
    port: int


class Saved(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    saved_ms: int
    peers: list[Entry]


def encode(entries: list[tuple[bytes, str, int]], now: float) -> bytes:
    """The file's bytes for ``entries`` (key, host, port), at most ``MAX_ENTRIES``."""
    peers = [Entry(peer_id_of(k), h, p) for k, h, p in entries[:MAX_ENTRIES]]
    return msgspec.json.encode(Saved(VERSION, int(now * 1000), peers))


def decode(data: bytes, now: float, self_key: bytes) -> list[pp.Candidate]:
    """The candidates in a file's bytes; ValueError if it is not such a file. Entries with a
    bad key or an address no candidate may have are skipped; an old file gives none."""
    if len(data) > MAX_FILE:
        raise ValueError(f"larger than {MAX_FILE} bytes")
    try:
        saved = msgspec.json.decode(data, type=Saved)
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    if saved.v != VERSION:
        raise ValueError(f"version {saved.v}, not {VERSION}")
    age = now - saved.saved_ms / 1000
    if not -60.0 <= age <= MAX_AGE:  # (a clock stepped back a little: still fine)
        return []
    out: list[pp.Candidate] = []
    seen: set[bytes] = set()
    for e in saved.peers[:MAX_ENTRIES]:
        try:
            key = key_of_peer_id(e.peer_id)
        except ValueError:
            continue
        if key == self_key or key in seen or not dialable(e.host, e.port):
            continue
        seen.add(key)
        out.append(pp.Candidate(key, e.host, e.port))
    return out


def load(data_dir: Path, self_key: bytes, now: float | None = None) -> list[pp.Candidate]:
    """The fresh neighbours saved in ``data_dir`` ([] if none; a damaged file is logged)."""
    path = data_dir / FILE_NAME
    if not path.exists():
        return []
    try:
        return decode(read_small(path, "the neighbour list", MAX_FILE), time.time() if now is None else now,
                      self_key)
    except (DataFileError, ValueError) as exc:
        log.warning("%s: not used (%s); it is written again as the node links", path, exc)
        return []


#: one write at a time (a periodic one in a worker thread and the last one at a stop: they
#: would share the temporary file's name)
_WRITING = threading.Lock()


def save(data_dir: Path, data: bytes) -> None:
    """Write the file (atomically; call it in a worker thread: it fsyncs)."""
    try:
        with _WRITING:
            replace(data_dir / FILE_NAME, data)
    except (DataFileError, OSError) as exc:
        log.warning("%s: cannot save the neighbour list (%s)", data_dir / FILE_NAME, exc)
