"""Data at rest: damage the ledger's files on disk, then open them through the real code.

Journal (the embedded chain's durability), ledger.db (receipts) and the wallet
key: bit flips at many offsets, truncation, zero length, wrong size, wrong
checksum, loose permissions. Damage is a clear DataFileError that names the
file and leaves it untouched; a torn journal tail after a crash is dropped and
counted; nothing is ever silently recreated or rolled back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import struct
import zlib
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from oasis import datafiles
from oasis.datafiles import DataFileError
from oasis.ledger.chain import EmbeddedChain
from oasis.ledger.eip712 import address_of_key
from oasis.ledger.journal import (
    FILE_HEADER_SIZE,
    MAGIC,
    Journal,
    JournalCorruptError,
    Record,
    encode_record,
    scan,
)
from oasis.ledger.receipt_store import ReceiptStore
from oasis.ledger.wallet import Wallet, ledger_dir


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _flip(path: Path, offset: int, bit: int = 0) -> bytes:
    """Flip one bit in place; the damaged content."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0] ^ (1 << bit)
        f.seek(offset)
        f.write(bytes([byte]))
    return path.read_bytes()


def _paid_world(world):
    """A relay paid once, then a last cheap transaction (a 1-wei top-up)."""
    relay = world.relay()
    vk, t = world.viewer()
    relay.accept_ticket(t.encode())
    relay.accept_receipt(world.receipt(vk, t, relay, 1_234_567).encode())
    relay.settle_due()
    world.chain.fund(relay.address, 1)
    return relay


def _nonce(chain: EmbeddedChain, key: bytes) -> int:
    """Transactions mined from ``key``'s account: replay reproduces them exactly."""
    return int(chain.w3.eth.get_transaction_count(to_checksum_address(address_of_key(key))))


def _record_offsets(path: Path) -> list[int]:
    """Start offset of every record, then the end of the file."""
    data = path.read_bytes()
    offsets, pos = [], FILE_HEADER_SIZE
    records, end, torn = scan(data, pos, path)
    assert torn == 0 and end == len(data)
    for rec in records:
        offsets.append(pos)
        pos += len(encode_record(rec))
    return offsets + [pos]


# -- 13a: the journal -----------------------------------------------------------
def test_bit_flip_in_the_middle_of_the_journal_is_a_hard_error(world, tmp_path):
    relay = _paid_world(world)
    chain_dir = tmp_path / "chain"
    journal = chain_dir / "journal.bin"
    good = journal.read_bytes()
    starts = _record_offsets(journal)
    assert len(starts) > 6
    mid = starts[len(starts) // 2]
    # the real embedded chain refuses to open, naming file and offset; the file is untouched
    for off in (mid + 1, mid + 9, mid + 30, (mid + starts[len(starts) // 2 + 1]) // 2):
        damaged = _flip(journal, off, bit=off % 8)
        with pytest.raises(JournalCorruptError) as err:
            EmbeddedChain(chain_dir)
        assert str(journal) in str(err.value) and "offset" in str(err.value)
        assert "restore" in str(err.value) and "truncate" not in str(err.value)  # later records are valid
        assert journal.read_bytes() == damaged  # no truncation, no rollback
        journal.write_bytes(good)
    # and after a clean reopen, the same block and the same balances
    again = EmbeddedChain(chain_dir)
    assert _nonce(again, again.faucet_key) == _nonce(world.chain, world.chain.faucet_key)
    assert again.token_balance(relay.address) == world.pay(1_234_567)
    assert again.relay_paid(relay.address, world.stream, world.epoch, 0) == 1_234_567


def test_every_sampled_single_bit_flip_is_caught(world, tmp_path):
    _paid_world(world)
    src = tmp_path / "chain" / "journal.bin"
    good = src.read_bytes()
    d = tmp_path / "copy"
    d.mkdir()
    path = d / "journal.bin"
    starts = _record_offsets(src)
    offsets = set(range(0, starts[1] + 40))  # the file header and every byte of the first record's head
    offsets |= set(range(0, len(good), max(1, len(good) // 300)))
    offsets |= {s + k for s in starts[:-1] for k in (0, 4, 8, 16, 17, 20)}  # record heads
    offsets |= {len(good) - k for k in range(1, 30)}  # the last record's checksum and tail
    path.write_bytes(good)
    for off in sorted(o for o in offsets if o < len(good)):
        damaged = _flip(path, off, bit=(off * 5) % 8)
        with pytest.raises(JournalCorruptError):
            Journal(d).read_from(0)
        assert path.read_bytes() == damaged, off
        _flip(path, off, bit=(off * 5) % 8)  # restore


@pytest.mark.parametrize("cut", [1, 4, 20, 21, 22, 100, -5, -1])
def test_torn_tail_is_dropped_counted_and_replay_matches(world, tmp_path, cut):
    relay = _paid_world(world)
    chain_dir = tmp_path / "chain"
    journal = chain_dir / "journal.bin"
    starts = _record_offsets(journal)
    last, end = starts[-2], starts[-1]
    at = last + cut if cut > 0 else end + cut
    with open(journal, "r+b") as f:  # the crash: the last append reached the disk only in part
        f.truncate(at)
    before = dict(datafiles.COUNTERS)
    c = EmbeddedChain(chain_dir)
    assert journal.stat().st_size == last  # truncated to the last complete record
    assert c.journal.counters["torn_tails_truncated"] == 1
    assert c.journal.counters["torn_bytes_dropped"] == at - last
    assert datafiles.COUNTERS["journal_torn_tails_truncated"] == before["journal_torn_tails_truncated"] + 1
    # only the torn 1-wei top-up (the faucet's last transaction) is gone
    assert _nonce(c, c.faucet_key) == _nonce(world.chain, world.chain.faucet_key) - 1
    assert c.token_balance(relay.address) == world.pay(1_234_567)
    c.fund(relay.address, 1)  # and the journal grows on from there
    again = EmbeddedChain(chain_dir)
    assert _nonce(again, again.faucet_key) == _nonce(world.chain, world.chain.faucet_key)
    # (ETH balances are not compared: gas paid depends on the base fee, which replay does
    # not reproduce exactly -- reported to the chain's owner; tokens and nonces are exact)
    assert again.token_balance(relay.address) == world.pay(1_234_567)


def test_zero_filled_tail_after_a_crash_is_dropped(world, tmp_path):
    relay = _paid_world(world)
    journal = tmp_path / "chain" / "journal.bin"
    size = journal.stat().st_size
    with open(journal, "ab") as f:  # some filesystems extend the size before the data lands
        f.write(b"\x00" * 4096)
    c = EmbeddedChain(tmp_path / "chain")
    assert journal.stat().st_size == size
    assert c.token_balance(relay.address) == world.pay(1_234_567)
    assert _nonce(c, c.faucet_key) == _nonce(world.chain, world.chain.faucet_key)


def test_damaged_last_record_is_not_mistaken_for_a_torn_one(world, tmp_path):
    _paid_world(world)
    journal = tmp_path / "chain" / "journal.bin"
    starts = _record_offsets(journal)
    damaged = _flip(journal, starts[-1] - 10)  # inside the complete last record
    with pytest.raises(JournalCorruptError) as err:
        EmbeddedChain(tmp_path / "chain")
    assert "last record" in str(err.value) and f"truncate -s {starts[-2]}" in str(err.value)
    assert journal.read_bytes() == damaged


def test_damaged_file_header_and_truncations(world, tmp_path):
    _paid_world(world)
    chain_dir = tmp_path / "chain"
    journal = chain_dir / "journal.bin"
    good = journal.read_bytes()
    starts = _record_offsets(journal)
    # cut inside an early record: what follows is not a valid record, and it is not the tail
    for cut_from, cut_to in ((starts[2] + 5, starts[3] + 3), (starts[1], starts[1] + 1)):
        journal.write_bytes(good[:cut_from] + good[cut_to:])
        with pytest.raises(JournalCorruptError):
            EmbeddedChain(chain_dir)
    # cut inside the file header; and the file emptied under a deployed chain
    for bad in (good[:10], b"", b"OASISJNL\x00\x09\x00\x00" + b"\x00" * 4 + good[16:]):
        journal.write_bytes(bad)
        with pytest.raises(DataFileError) as err:
            EmbeddedChain(chain_dir)
        assert str(journal) in str(err.value)
        assert journal.read_bytes() == bad
    # a flipped byte in the header's marker: a damaged header, never read as an old-format
    # journal (whose advice was `truncate -s 0`: every transaction gone)
    for at in (0, 3, 7):
        bad = bytearray(good)
        bad[at] ^= 0x20
        journal.write_bytes(bytes(bad))
        with pytest.raises(JournalCorruptError, match="file header damaged") as err:
            EmbeddedChain(chain_dir)
        assert "truncate" not in str(err.value)
        assert journal.read_bytes() == bytes(bad)
    # the journal deleted under a deployed chain: not a silent fresh chain
    journal.unlink()
    with pytest.raises(DataFileError, match="is missing"):
        EmbeddedChain(chain_dir)
    assert not journal.exists()
    # a header from the future says so
    head = b"OASISJNL" + struct.pack(">HH", 9, 0)
    journal.write_bytes(head + struct.pack(">I", zlib.crc32(head)) + good[16:])
    with pytest.raises(DataFileError, match="newer Oasis"):
        EmbeddedChain(chain_dir)


def test_append_never_cuts_valid_records(tmp_path):
    j = Journal(tmp_path / "j")
    with j.locked():
        end = j.append(FILE_HEADER_SIZE, Record(1, b"a" * 50, 1))
        end = j.append(end, Record(2, b"b" * 50, 1))
        with pytest.raises(ValueError, match="catch up"):
            j.append(FILE_HEADER_SIZE, Record(3, b"c", 1))  # a stale offset
    assert [r.raw for r in j.read_from(0)[0]] == [b"a" * 50, b"b" * 50]


def _to_v1(records: list[Record]) -> bytes:
    out = b""
    for r in records:
        body = struct.pack(">IQB", len(r.raw), r.timestamp, r.status) + r.raw
        out += body + struct.pack(">I", zlib.crc32(body))
    return out


def test_old_format_journal_is_migrated_or_refused(world, tmp_path):
    relay = _paid_world(world)
    src = tmp_path / "chain"
    records = Journal(src).read_from(0)[0]
    v1 = _to_v1(records)
    old = tmp_path / "old"
    old.mkdir()
    for name in ("genesis.json", "deployment.json"):
        shutil.copy(src / name, old / name)
    (old / "journal.bin").write_bytes(v1 + b"\x00\x00\x01")  # with a torn tail
    c = EmbeddedChain(old)
    assert (old / "journal.bin").read_bytes().startswith(MAGIC)
    assert c.journal.counters["migrated"] == 1
    assert c.token_balance(relay.address) == world.pay(1_234_567)
    assert c.token_balance(relay.address) == world.pay(1_234_567)
    assert _nonce(c, c.faucet_key) == _nonce(world.chain, world.chain.faucet_key)
    # an old-format journal damaged in the middle is refused, untouched
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("genesis.json", "deployment.json"):
        shutil.copy(src / name, bad / name)
    b = bytearray(v1)
    b[len(v1) // 2] ^= 4
    (bad / "journal.bin").write_bytes(bytes(b))
    with pytest.raises(JournalCorruptError):
        EmbeddedChain(bad)
    assert (bad / "journal.bin").read_bytes() == bytes(b)


def test_a_flipped_digit_in_genesis_json_is_refused_not_a_new_chain(world, tmp_path):
    """Found 2026-12-06 from outside: one bit of genesis.json's chain id flipped (still valid
    JSON) opened as another chain under the old journal: every balance read 0, silently.
    genesis.json carries a check value now; a damaged one is refused, untouched; one from
    before the check is given one and opens as before."""
    relay = _paid_world(world)
    src = tmp_path / "chain"
    for name, how in (("flip", "digit"), ("garbage", "bytes"), ("old", "no check")):
        d = tmp_path / name
        shutil.copytree(src, d)
        g = json.loads((d / "genesis.json").read_text())
        if how == "digit":
            text = (d / "genesis.json").read_text()
            digits = str(g["chain_id"])
            flipped = digits[:-1] + str((int(digits[-1]) + 1) % 10)
            (d / "genesis.json").write_text(text.replace(digits, flipped))
        elif how == "bytes":
            (d / "genesis.json").write_bytes(b"\x9a\xff junk")
        else:
            del g["check"]
            (d / "genesis.json").write_text(json.dumps(g))
        before = (d / "genesis.json").read_bytes()
        if how == "no check":
            c = EmbeddedChain(d)
            assert c.chain_id == g["chain_id"] and c.token_balance(relay.address) == world.pay(1_234_567)
            assert "check" in json.loads((d / "genesis.json").read_text())
            continue
        with pytest.raises(DataFileError, match="genesis.json: is damaged"):
            EmbeddedChain(d)
        assert (d / "genesis.json").read_bytes() == before


def test_chain_files_are_private(world, tmp_path):
    chain_dir = tmp_path / "chain"
    files = ("journal.bin", "genesis.json", "deployment.json")
    assert _mode(chain_dir) == 0o700 and all(_mode(chain_dir / f) == 0o600 for f in files)
    os.chmod(chain_dir, 0o755)
    for f in files:
        os.chmod(chain_dir / f, 0o644)
    before = datafiles.COUNTERS["data_modes_fixed"]
    EmbeddedChain(chain_dir)
    assert _mode(chain_dir) == 0o700 and all(_mode(chain_dir / f) == 0o600 for f in files)
    assert datafiles.COUNTERS["data_modes_fixed"] == before + 3  # deployment.json is rewritten


# -- 13b: ledger.db -------------------------------------------------------------
def _filled_store(path: Path) -> bytes:
    s = ReceiptStore(path)
    for i in range(200):
        s.put_receipt(os.urandom(32), b"s" * 32, i, i, 1000 + i, os.urandom(65), os.urandom(150))
    s.close()
    return path.read_bytes()


def _sidecars_gone(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def test_store_is_created_private(tmp_path):
    path = ledger_dir(tmp_path / "node") / "ledger.db"
    ReceiptStore(path).close()
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700 and _mode(tmp_path / "node") == 0o700
    os.chmod(path, 0o644)
    os.chmod(path.parent, 0o755)
    s = ReceiptStore(path)
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    s.put_receipt(b"v" * 32, b"s" * 32, 1, 0, 5, b"x" * 65, b"t")
    wal = Path(str(path) + "-wal")
    assert wal.exists() and _mode(wal) == 0o600
    s.close()


@pytest.mark.parametrize("content", [b"", b"\x00" * 4096, b"SQLite format 2\x00" + os.urandom(4000),
                                     os.urandom(8192), b"hello\n"])
def test_empty_or_foreign_store_is_refused_not_recreated(tmp_path, content):
    path = tmp_path / "ledger.db"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(DataFileError) as err:
        ReceiptStore(path)
    assert str(path) in str(err.value) and "backup" in str(err.value)
    assert path.read_bytes() == content


def test_sqlite_without_receipts_is_refused(tmp_path):
    path = tmp_path / "ledger.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    with pytest.raises(DataFileError, match="receipts table"):
        ReceiptStore(path)


def test_damaged_store_is_a_clear_error_never_a_traceback(tmp_path):
    path = tmp_path / "ledger.db"
    good = _filled_store(path)
    page = int.from_bytes(good[16:18], "big")
    must_fail = [0, 5, 15, 16, 17, 21, page, 2 * page, 3 * page]  # magic, page size, b-tree page types
    sample = must_fail + list(range(0, len(good), len(good) // 97))
    refused = 0
    for off in sample:
        _sidecars_gone(path)
        path.write_bytes(good)
        damaged = _flip(path, off, bit=4)
        try:
            ReceiptStore(path).close()
        except DataFileError as exc:  # anything else (a raw sqlite3 error) fails the test
            refused += 1
            assert str(path) in str(exc)
            assert path.read_bytes() == damaged
        else:
            assert off not in must_fail, off
    assert refused >= len(must_fail)
    # truncated to half: pages missing
    _sidecars_gone(path)
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFileError):
        ReceiptStore(path)


def test_unreadable_store_is_a_clear_error(tmp_path):
    path = tmp_path / "ledger.db"
    path.mkdir()
    with pytest.raises(DataFileError) as err:
        ReceiptStore(path)
    assert str(path) in str(err.value)


# -- 13c: the wallet key --------------------------------------------------------
def test_wallet_key_file_format_and_privacy(tmp_path):
    w = Wallet.load_or_create(tmp_path)
    path = ledger_dir(tmp_path) / "wallet.key"
    text = path.read_text()
    assert text.startswith("oasis-key/v1 secp256k1\n") and w.key.hex() in text and w.address.hex() in text
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert Wallet.load_or_create(tmp_path) == w
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_every_bit_flip_of_the_wallet_key_is_refused(tmp_path):
    w = Wallet.load_or_create(tmp_path)
    path = ledger_dir(tmp_path) / "wallet.key"
    good = path.read_bytes()
    for off in range(len(good)):
        for bit in range(8):
            damaged = _flip(path, off, bit)
            with pytest.raises(DataFileError) as err:
                Wallet.load_or_create(tmp_path)
            assert str(path) in str(err.value), (off, bit)
            assert path.read_bytes() == damaged
            _flip(path, off, bit)
    path.write_bytes(good)
    assert Wallet.load_or_create(tmp_path) == w


def test_wallet_key_truncated_wrong_or_mismatched_is_refused(tmp_path):
    w = Wallet.load_or_create(tmp_path)
    path = ledger_dir(tmp_path) / "wallet.key"
    good = path.read_bytes()
    other = Wallet.generate()
    # a valid check value over a body whose address is not the secret's
    body = f"oasis-key/v1 secp256k1\nsecret {w.key.hex()}\npublic {other.address.hex()}\n"
    mismatched = body + f"check {hashlib.sha256(body.encode()).hexdigest()[:16]}\n"
    cases = [good[:n] for n in (0, 1, 10, 30, len(good) // 2, len(good) - 1)]
    cases += [b"\x00" * 32, b"\x00" * 64, os.urandom(32), good + b"x", b"0" * 64 + b"\n",
              mismatched.encode(), good.replace(b"v1", b"v7")]
    for content in cases:
        path.write_bytes(content)
        with pytest.raises(DataFileError) as err:
            Wallet.load_or_create(tmp_path)
        assert str(path) in str(err.value) and ("backup" in str(err.value) or "newer" in str(err.value))
        assert path.read_bytes() == content
    path.write_bytes(good)
    os.chmod(path, 0o640)
    with pytest.raises(PermissionError, match="chmod 600"):
        Wallet.load_or_create(tmp_path)


def test_legacy_hex_wallet_is_loaded_and_upgraded(tmp_path):
    w = Wallet.generate()
    path = ledger_dir(tmp_path) / "wallet.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (w.key.hex() + "\n").encode())
    os.close(fd)
    before = datafiles.COUNTERS["key_files_upgraded"]
    assert Wallet.load_or_create(tmp_path) == w
    assert path.read_text().startswith("oasis-key/v1 secp256k1\n") and _mode(path) == 0o600
    assert datafiles.COUNTERS["key_files_upgraded"] == before + 1
    assert Wallet.load_or_create(tmp_path) == w


def test_damage_search_is_bounded(tmp_path, monkeypatch):
    from oasis.ledger import journal as jmod

    j = Journal(tmp_path / "j")
    with j.locked():
        end = FILE_HEADER_SIZE
        for i in range(40):
            end = j.append(end, Record(i, bytes([i]) * 300, 1))
    _flip(j.path, FILE_HEADER_SIZE + 25)
    monkeypatch.setattr(jmod, "MAX_RAW", 1000)  # far more than one record follows the damage
    with pytest.raises(JournalCorruptError, match="more than one record"):
        Journal(tmp_path / "j").read_from(0)
    monkeypatch.setattr(jmod, "MAX_RAW", 1 << 24)
    # a tail full of record heads that each claim a body whose checksum fails: the search gives up
    good = j.path.read_bytes()[: FILE_HEADER_SIZE]
    bogus = encode_record(Record(1, b"x" * 200, 1))
    bogus = bogus[:-1] + bytes([bogus[-1] ^ 1])
    j.path.write_bytes(good + bogus * 50)
    monkeypatch.setattr(jmod, "RESYNC_BUDGET", 1000)
    with pytest.raises(JournalCorruptError, match="could not be checked"):
        Journal(tmp_path / "j").read_from(0)
    assert j.path.read_bytes() == good + bogus * 50


def test_a_missing_wallet_key_beside_a_rewards_history_is_refused(tmp_path):
    """wallet.key gone but ledger.db still there: a new wallet would earn under a new
    address and show the old one's rewards as its own; refused until the key is back (or
    the store is moved away on purpose)."""
    from oasis.ledger.wallet import STORE_FILE, WALLET_FILE, Wallet, ledger_dir

    w = Wallet.load_or_create(tmp_path)
    ReceiptStore(ledger_dir(tmp_path) / STORE_FILE).close()
    key = ledger_dir(tmp_path) / WALLET_FILE
    kept = key.read_bytes()
    key.unlink()
    with pytest.raises(DataFileError, match="ledger.db") as err:
        Wallet.load_or_create(tmp_path)
    assert str(key) in str(err.value) and not key.exists()
    key.write_bytes(kept)
    key.chmod(0o600)
    assert Wallet.load_or_create(tmp_path).address == w.address
    (ledger_dir(tmp_path) / STORE_FILE).rename(tmp_path / "old-ledger.db")  # a new wallet, on purpose
    key.unlink()
    assert Wallet.load_or_create(tmp_path).address != w.address
