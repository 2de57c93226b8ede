"""Data at rest: private directories, atomic writes, checked key files, checked SQLite.

Theory of operation: a node keeps a few files that a crash, a disk fault or a
local attacker may damage: ``identity.key``, ``ledger/wallet.key``,
``ledger/ledger.db`` and the embedded chain's ``journal.bin``. The rules here
apply to all of them:

* Directories are created 0700 and files 0600; an existing directory or data
  file that is looser is tightened and a warning is logged and counted
  (``COUNTERS['data_modes_fixed']``). A *key* file that others could read is
  refused instead: the secret may have leaked, the owner has to decide.
* A file is only ever created whole: written to a temporary name, fsync'd,
  then linked into place (so two processes racing to create it agree on one),
  and the directory is fsync'd. A file that exists is never silently
  recreated: if it cannot be read or fails its checks, opening raises
  :class:`DataFileError` naming the file, the problem and what to do.
* Key files carry a format line, the secret, the public key (or address) it
  derives to and a SHA-256 check value; each is verified on load.

Counters are process-wide plain ints in :data:`COUNTERS` (for /metrics).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger("oasis.datafiles")

COUNTERS: dict[str, int] = {
    "data_modes_fixed": 0,  # directories/files found looser than 0700/0600 and tightened
    "key_files_upgraded": 0,  # legacy key files rewritten in the checked format
    "journal_torn_tails_truncated": 0,  # incomplete last journal records dropped after a crash
    "journal_torn_bytes_dropped": 0,
    "journals_migrated": 0,  # old-format (v1) journals rewritten in the current format
}

KEY_MAGIC = "oasis-key/v1"
KEY_FILE_MAX = 4096
SQLITE_MAGIC = b"SQLite format 3\x00"


class DataFileError(RuntimeError):
    """A data file exists but cannot be used; never replaced by a fresh one.

    ``str()`` is one sentence for the user: the file, the problem, what to do.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str, advice: str) -> None:
        self.path, self.problem, self.advice = Path(path), problem, advice
        super().__init__(f"{path}: {problem}. {advice[:1].upper()}{advice[1:]}")


class DataFilePermissionError(DataFileError, PermissionError):
    """A secret file is readable by others (also a :class:`PermissionError`)."""


# -- modes and directories ----------------------------------------------------
def _tighten(path: Path, want: int) -> None:
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077 and (mode & stat.S_ISVTX or st.st_uid != os.geteuid()):
        # a shared directory such as /tmp, or someone else's: never change it
        log.warning("%s (mode %o, owner %d) is shared or not ours: use a private data directory",
                    path, mode, st.st_uid)
        return
    if mode & 0o077:
        try:
            os.chmod(path, want)
        except OSError as exc:
            log.warning("%s has mode %o and cannot be tightened to %o: %s", path, mode, want, exc)
            return
        COUNTERS["data_modes_fixed"] += 1
        log.warning("%s had mode %o (readable by others); set to %o", path, mode, want)


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; tighten it if looser."""
    try:
        return _private_dir(Path(path))
    except PermissionError:  # (the raw error names whichever component failed)
        raise DataFileError(path, "this data directory cannot be reached or created by this user",
                            "give a --data-dir you can write to, or fix its owner and mode") from None


def _private_dir(p: Path) -> Path:
    missing = []
    q = p
    while not q.exists():
        missing.append(q)
        if q.parent == q:
            break
        q = q.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass
    if not p.is_dir():
        raise DataFileError(p, "is not a directory", "point the data directory elsewhere or move this file away")
    _tighten(p, 0o700)
    return p


LOCK_FILE = "node.lock"
_HELD: dict[str, object] = {}  #: data directories this process holds -> the open lock file


class DataDirInUse(ValueError):
    """Another process runs a node on this data directory (see :func:`hold_data_dir`)."""


def hold_data_dir(path: str | os.PathLike[str], command: str) -> None:
    """One node per data directory: take ``<dir>/node.lock`` (flock, released when the
    process ends, however it ends) for the process's life. Two processes on one data
    directory were two nodes with one identity -- one starved of neighbours, a second
    broadcaster of the same stream, ``api.json`` pointing at the wrong one. Raises
    :class:`DataDirInUse` naming the holder (its command and pid)."""
    import fcntl

    d = private_dir(path)
    key = str(d.resolve())
    if key in _HELD:
        return
    try:
        f = open(d / LOCK_FILE, "a+")  # noqa: SIM115 - held while we run
    except OSError as exc:  # (/proc/1, a read-only mount: the raw error named node.lock only)
        raise DataFileError(path, f"a file cannot be created in this data directory ({exc.strerror})",
                            "give a --data-dir you can write to") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read(200).strip() or "another process"
        f.close()
        raise DataDirInUse(f"{path} is in use by {holder}: one node per data directory (they would "
                           "share one identity); stop it, or give another --data-dir") from None
    f.seek(0)
    f.truncate()
    try:
        f.write(f"`oasis {command}` (pid {os.getpid()})\n")
        f.flush()
    except OSError as exc:  # a full disk (the raw error named no file)
        with contextlib.suppress(OSError):  # (closing flushes again, and fails again)
            f.close()
        raise _unwritable(d / f".{LOCK_FILE}.tmp-", exc) from None
    _HELD[key] = f


def private_file(path: str | os.PathLike[str]) -> None:
    """Tighten an existing data file (not a key) to 0600 if others can read it."""
    p = Path(path)
    if p.exists():
        _tighten(p, 0o600)


def refuse_exposed(path: Path, what: str) -> None:
    """Secrets: refuse a file others can read (``chmod`` it, then think leak)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise DataFilePermissionError(
            path, f"{what} is readable by others (mode {mode:o})",
            f"run: chmod 600 {path} (if others may have read it, treat the key as leaked)")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_new(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` (0600, fsync'd) unless it exists; True if created.

    Written under a temporary name and hard-linked into place, so a crash
    never leaves a partial file and racing creators agree on one content.
    """
    tmp = _temp_name(path)
    _write_temp(tmp, data)
    try:
        os.link(tmp, path)
        created = True
    except FileExistsError:
        created = False
    finally:
        tmp.unlink()
    fsync_dir(path.parent)
    return created


def replace(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (temp + fsync + rename, 0600)."""
    tmp = _temp_name(path)
    _write_temp(tmp, data)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _write_temp(tmp: Path, data: bytes) -> None:
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except PermissionError:  # (the raw error named our temporary file, not the directory)
        raise DataFileError(tmp.parent, "this data directory is not writable by this user",
                            "give a --data-dir you can write to, or fix its owner and mode") from None
    except OSError as exc:  # a read-only file system, a full disk (where inodes run out)
        raise _unwritable(tmp, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        # a full disk: every command said only "error: [Errno 28] No space left on device",
        # naming no file, and left the temporary file behind (found 2026-12-07 from outside)
        tmp.unlink(missing_ok=True)
        raise _unwritable(tmp, exc) from None


def _unwritable(tmp: Path, exc: OSError) -> DataFileError:
    return DataFileError(tmp.parent, f"cannot write {tmp.name.split('.tmp-')[0][1:]} in this data "
                                     f"directory ({exc.strerror or exc})",
                         "free space on its disk (or make it writable), or give another --data-dir")


def read_small(path: Path, what: str, limit: int = KEY_FILE_MAX) -> bytes:
    """The whole of a small file, or a clear error if it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise DataFileError(path, f"{what} cannot be read ({exc.strerror or exc})",
                            "check the file's owner and the disk; restore it from a backup") from None
    if len(data) > limit:
        raise DataFileError(path, f"{what} is larger than {limit} bytes (not such a file)",
                            "restore it from a backup")
    return data


# -- key files ------------------------------------------------------------------
def encode_key(kind: str, secret: bytes, public: bytes) -> bytes:
    """Key file text: format and kind, secret, public key/address, check value."""
    body = f"{KEY_MAGIC} {kind}\nsecret {secret.hex()}\npublic {public.hex()}\n"
    return (body + f"check {_check(body)}\n").encode()


def _check(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def load_key(path: Path, kind: str, what: str, public_of: Callable[[bytes], bytes],
             legacy: Callable[[bytes], bytes | None], advice: str) -> bytes:
    """The secret in key file ``path``, checked; ``legacy(data)`` reads an old format.

    ``public_of(secret)`` derives the recorded public key (raises ValueError on
    an invalid secret). A legacy file is rewritten in the checked format.
    """
    refuse_exposed(path, what)
    data = read_small(path, what)

    def damaged(problem: str) -> DataFileError:
        return DataFileError(path, f"{what} is damaged ({problem})", advice)

    if not data:
        raise damaged("the file is empty")
    if not data.startswith(KEY_MAGIC.encode()):
        if data.startswith(b"oasis-key/"):
            raise DataFileError(path, f"{what} has an unknown format version ({data[:16]!r})",
                                "it was written by a newer Oasis: upgrade Oasis")
        secret = legacy(data)
        if secret is None:
            raise damaged("not a key file in any known format")
        try:
            public = public_of(secret)
        except ValueError:
            raise damaged("the secret is not a valid key") from None
        replace(path, encode_key(kind, secret, public))
        COUNTERS["key_files_upgraded"] += 1
        log.warning("%s: rewritten in the checked key-file format (%s)", path, KEY_MAGIC)
        return secret
    try:
        lines = data.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise damaged("non-ASCII bytes") from None
    if len(lines) != 5 or lines[4] != "":
        raise damaged("wrong number of lines")
    head, sec, pub, chk = lines[:4]
    if head != f"{KEY_MAGIC} {kind}":
        raise damaged(f"first line is {head[:40]!r}, expected {KEY_MAGIC} {kind!r}")
    if not chk.startswith("check ") or chk[6:] != _check("\n".join(lines[:3]) + "\n"):
        raise damaged("check value mismatch")
    try:
        if not (sec.startswith("secret ") and pub.startswith("public ")):
            raise ValueError
        secret, public = bytes.fromhex(sec[7:]), bytes.fromhex(pub[7:])
        derived = public_of(secret)
    except ValueError:
        raise damaged("malformed secret or public line") from None
    if derived != public:
        raise damaged("the public key recorded does not match the secret")
    return secret


# -- SQLite ---------------------------------------------------------------------
STORE_ADVICE = ("stop the node and restore it from a backup; only if you have none, move it away "
                "to start an empty store (unsettled receipts in it are then lost, and a broadcaster "
                "must then broadcast under a new stream name: its viewers' ticket indexes were in it)")


def open_sqlite(path: str | os.PathLike[str], schema: str, marker_table: str) -> sqlite3.Connection:
    """Open (or create, whole and 0600) an SQLite store in WAL mode, checked.

    An existing file must be a non-empty SQLite database that passes
    ``PRAGMA quick_check`` and has ``marker_table``; anything else raises
    :class:`DataFileError`: it is never recreated over.
    """
    p = Path(path)
    private_dir(p.parent)
    if not p.exists():
        _create_sqlite(p, schema)
    for suffix in ("", "-wal", "-shm"):
        private_file(p.with_name(p.name + suffix))
    head = _head(p)
    if not head:
        raise DataFileError(p, "is empty (0 bytes), not a receipt store", STORE_ADVICE)
    if not head.startswith(SQLITE_MAGIC):
        raise DataFileError(p, "is not an SQLite database (bad header)", STORE_ADVICE)
    uri = f"file:{quote(str(p.resolve()))}?mode=rw"
    db: sqlite3.Connection | None = None
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        rows = db.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            raise DataFileError(p, f"fails the SQLite integrity check ({rows[0][0]})", STORE_ADVICE)
        found = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                           (marker_table,)).fetchone()
        if found is None:
            raise DataFileError(p, f"is an SQLite database without a {marker_table} table: not this store",
                                "check the path; move the file away if it is not yours")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
    except sqlite3.DatabaseError as exc:
        if db is not None:
            db.close()
        raise DataFileError(p, f"is damaged ({exc})", STORE_ADVICE) from None
    except BaseException:
        if db is not None:
            db.close()
        raise
    return db


def _create_sqlite(p: Path, schema: str) -> None:
    """Build the store under a temporary name (0600), fsync it, link it into place."""
    tmp = _temp_name(p)
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    db = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)
    finally:
        db.close()  # the last close checkpoints the WAL into the file and removes it
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, p)
    except FileExistsError:
        pass  # another process created it first: open that one
    finally:
        tmp.unlink()
    fsync_dir(p.parent)


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise DataFileError(path, f"cannot be read ({exc.strerror or exc})",
                            "check the file's owner and the disk") from None
