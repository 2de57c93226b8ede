"""The node identity on disk: damage identity.key, then start through the real code.

A damaged, truncated, mismatched or unreadable key file is a clear
DataFileError naming the file and what to do -- never a silently new identity,
never a traceback from the CLI -- and it is left as it was.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from oasis import datafiles
from oasis.core.identity import Identity
from oasis.datafiles import DataFileError, DataFilePermissionError
from oasis.node.keystore import KEY_FILE, load_or_create


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _flip(path: Path, offset: int, bit: int) -> bytes:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0] ^ (1 << bit)
        f.seek(offset)
        f.write(bytes([byte]))
    return path.read_bytes()


def test_identity_is_created_whole_private_and_stable(tmp_path):
    data = tmp_path / "a" / "node"
    ident = load_or_create(data)
    path = data / KEY_FILE
    text = path.read_text()
    assert text.startswith("oasis-key/v1 ed25519\n") and ident.public.hex() in text
    assert _mode(path) == 0o600 and _mode(data) == 0o700 and _mode(tmp_path / "a") == 0o700
    assert sorted(p.name for p in data.iterdir()) == [KEY_FILE]  # no temp file left behind
    assert load_or_create(data).public == ident.public


def test_loose_data_dir_is_tightened_and_exposed_key_refused(tmp_path):
    ident = load_or_create(tmp_path / "n")
    os.chmod(tmp_path / "n", 0o755)
    before = datafiles.COUNTERS["data_modes_fixed"]
    assert load_or_create(tmp_path / "n").public == ident.public
    assert _mode(tmp_path / "n") == 0o700 and datafiles.COUNTERS["data_modes_fixed"] == before + 1
    os.chmod(tmp_path / "n" / KEY_FILE, 0o644)
    with pytest.raises(DataFilePermissionError, match="chmod 600"):
        load_or_create(tmp_path / "n")


def test_a_shared_sticky_directory_is_never_changed(tmp_path):
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: tightening it would break other users
    load_or_create(shared)
    assert _mode(shared) == 0o1777 and _mode(shared / KEY_FILE) == 0o600


def test_every_bit_flip_of_the_identity_key_is_refused(tmp_path):
    ident = load_or_create(tmp_path)
    path = tmp_path / KEY_FILE
    good = path.read_bytes()
    for off in range(len(good)):
        for bit in range(8):
            damaged = _flip(path, off, bit)
            with pytest.raises(DataFileError) as err:
                load_or_create(tmp_path)
            assert str(path) in str(err.value), (off, bit)
            assert path.read_bytes() == damaged
            _flip(path, off, bit)
    assert load_or_create(tmp_path).public == ident.public


def test_truncated_wrong_size_and_mismatched_keys_are_refused(tmp_path):
    ident = load_or_create(tmp_path)
    path = tmp_path / KEY_FILE
    good = path.read_bytes()
    other = Identity.generate()
    body = f"oasis-key/v1 ed25519\nsecret {ident.private_bytes().hex()}\npublic {other.public.hex()}\n"
    mismatched = (body + f"check {hashlib.sha256(body.encode()).hexdigest()[:16]}\n").encode()
    cases = [good[:n] for n in (0, 1, 12, 32, len(good) // 2, len(good) - 1)]
    cases += [os.urandom(31), os.urandom(33), os.urandom(64), good + b"\n", good * 2, mismatched,
              good.replace(b"ed25519\n", b"secp256k1\n", 1), b"\xff" * 5000]
    for content in cases:
        path.write_bytes(content)
        with pytest.raises(DataFileError) as err:
            load_or_create(tmp_path)
        msg = str(err.value)
        assert str(path) in msg and "backup" in msg, msg
        assert path.read_bytes() == content  # never replaced by a new identity
    path.write_bytes(good.replace(b"oasis-key/v1", b"oasis-key/v2"))
    with pytest.raises(DataFileError, match="newer Oasis"):
        load_or_create(tmp_path)


def test_unreadable_key_file_is_a_clear_error(tmp_path):
    (tmp_path / KEY_FILE).mkdir(mode=0o700)
    with pytest.raises(DataFileError, match="cannot be read"):
        load_or_create(tmp_path)


def test_legacy_raw_key_is_loaded_and_upgraded(tmp_path):
    ident = Identity.generate()
    path = tmp_path / KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, ident.private_bytes())
    os.close(fd)
    assert load_or_create(tmp_path).public == ident.public
    assert path.read_text().startswith("oasis-key/v1 ed25519\n") and _mode(path) == 0o600
    assert load_or_create(tmp_path).public == ident.public


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oasis", *args], capture_output=True, text=True, timeout=120)


def test_cli_reports_damaged_files_without_a_traceback(tmp_path):
    data = tmp_path / "node"
    load_or_create(data)
    key = data / KEY_FILE
    _flip(key, 40, 1)
    out = _cli("broadcast", "test", "--data-dir", str(data), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and str(key) in out.stderr and "backup" in out.stderr
    # the wallet command: a damaged wallet key, then a zero-length ledger.db
    from oasis.ledger.wallet import Wallet, ledger_dir

    Wallet.load_or_create(data)
    wallet = ledger_dir(data) / "wallet.key"
    good = wallet.read_bytes()
    wallet.write_bytes(good[:-3])
    out = _cli("wallet", "--offline", "--data-dir", str(data))
    assert out.returncode == 2 and "Traceback" not in out.stderr and str(wallet) in out.stderr, out.stderr
    # ... and a broadcaster with --rewards (its identity sound) stops on it, nothing left open
    data2 = tmp_path / "node2"
    load_or_create(data2)
    Wallet.load_or_create(data2)
    wallet2 = ledger_dir(data2) / "wallet.key"
    wallet2.write_bytes(wallet2.read_bytes()[:-3])
    out = _cli("broadcast", "test", "--rewards", "--chain-dir", str(tmp_path / "chain0"), "--data-dir", str(data2),
               "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
    assert out.returncode == 2 and str(wallet2) in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "Unclosed" not in out.stderr, out.stderr
    wallet.write_bytes(good)
    store = ledger_dir(data) / "ledger.db"
    fd = os.open(store, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    out = _cli("wallet", "--offline", "--data-dir", str(data))
    assert out.returncode == 2 and "Traceback" not in out.stderr and str(store) in out.stderr, out.stderr
    assert store.stat().st_size == 0
    store.unlink()
    # the embedded chain's journal damaged in the middle
    from oasis.ledger.journal import FILE_HEADER_SIZE, Journal, Record

    chain_dir = tmp_path / "chain"
    j = Journal(chain_dir)
    with j.locked():
        end = j.append(FILE_HEADER_SIZE, Record(1, b"a" * 100, 1))
        j.append(end, Record(2, b"b" * 100, 1))
    damaged = _flip(j.path, FILE_HEADER_SIZE + 50, 3)
    out = _cli("wallet", "--data-dir", str(data), "--chain-dir", str(chain_dir))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert str(j.path) in out.stderr and "offset" in out.stderr and j.path.read_bytes() == damaged


def test_a_data_directory_that_is_not_writable_is_a_clear_error(tmp_path):
    # was: "[Errno 13] Permission denied: '.../.identity.key.tmp-16736'" (our temporary file)
    import multiprocessing
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="oasis-ro-", dir="/tmp"))  # reachable by every user
    d = base / "ro"
    d.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: the user is someone else (nobody)
        base.chmod(0o755)
        d.chmod(0o755)
    else:
        d.chmod(0o500)

    def attempt(q):
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        try:
            load_or_create(d)
            q.put("created")
        except Exception as exc:  # noqa: BLE001 - the message is what is tested
            q.put(f"{type(exc).__name__}: {exc}")

    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=attempt, args=(q,))
    p.start()
    try:
        got = q.get(timeout=30)
    finally:
        p.join(10)
        d.chmod(0o700)
        shutil.rmtree(base)
    assert got.startswith("DataFileError: ") and "not writable by this user" in got, got
    assert f"{d}:" in got and "--data-dir" in got


def test_wallet_says_when_its_rewards_were_settled_on_another_chain(tmp_path):
    # `oasis wallet` without --chain-dir opened a fresh embedded chain and printed
    # token_balance 0 beside settled_rewards 53392000000000, with no word on why
    from oasis.ledger.receipt_store import ReceiptStore
    from oasis.ledger.wallet import STORE_FILE, Wallet, ledger_dir

    data = tmp_path / "relay"
    Wallet.load_or_create(data)
    store = ReceiptStore(ledger_dir(data) / STORE_FILE)
    entries = [(b"v" * 32, 0, 1000)]
    store.begin_settlement(b"t" * 32, b"s" * 32, 1, entries)
    store.finish_settlement(b"t" * 32, b"s" * 32, 1, entries, {0: 1000}, 5 * 10**16, 21000)
    store.close()
    out = _cli("wallet", "--data-dir", str(data))
    assert out.returncode == 0, out.stderr
    assert "settled on the chain this node ran with, not on the embedded one" in out.stderr and "--chain-dir" in out.stderr
    assert "settled_rewards: 50000000000000000 wei (0.050000 OAS)" in out.stdout, out.stdout


def test_a_full_disk_is_an_error_naming_the_data_directory(tmp_path, monkeypatch):
    """Found 2026-12-07 from outside (a data directory on a full disk): broadcast, watch,
    node and publish said only "error: [Errno 28] No space left on device", naming no file,
    and left a temporary key file behind."""
    import errno

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    d = tmp_path / "data"
    with monkeypatch.context() as m:
        m.setattr(datafiles.os, "fsync", full)
        with pytest.raises(DataFileError) as err:
            load_or_create(d)
    text = str(err.value)
    assert text.startswith(f"{d}: cannot write {KEY_FILE} in this data directory (No space left")
    assert "--data-dir" in text
    assert [p.name for p in d.iterdir()] == [], "a temporary file was left behind"

    class FullFile:  # the lock file: its write reaches the disk at flush (and close)
        def __init__(self, path: object, mode: str) -> None:
            self.f = open(path, mode)  # noqa: SIM115 - closed in close()

        def __getattr__(self, name: str) -> object:
            return getattr(self.f, name)

        def flush(self) -> None:
            full()

        def close(self) -> None:
            self.f.close()
            full()

    lock_dir = tmp_path / "locked"
    with monkeypatch.context() as m:
        m.setattr(datafiles, "open", FullFile, raising=False)
        with pytest.raises(DataFileError) as err:
            datafiles.hold_data_dir(lock_dir, "watch")
    assert str(err.value).startswith(f"{lock_dir}: cannot write node.lock in this data directory (No space")
    datafiles.hold_data_dir(lock_dir, "watch")  # (not held: a later try, with room, takes it)
    datafiles._HELD.pop(str(lock_dir.resolve())).close()  # type: ignore[attr-defined]
