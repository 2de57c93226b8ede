"""The embedded chain survives restarts: new object, new process, torn journal."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys

import pytest

from oasis.datafiles import DataFileError
from oasis.ledger.chain import EmbeddedChain, JournalWriteError, open_chain
from oasis.ledger.journal import FILE_HEADER_SIZE, encode_record, file_header, scan

from .world import EPOCH


def _pay_something(world):
    relay = world.relay()
    vk, t = world.viewer()
    relay.accept_ticket(t.encode())
    relay.accept_receipt(world.receipt(vk, t, relay, 1_234_567).encode())
    relay.settle_due()
    return relay


def test_balances_survive_a_new_object(world, tmp_path):
    relay = _pay_something(world)
    bal = world.chain.token_balance(relay.address)
    pool = world.pool_balance()
    again = EmbeddedChain(tmp_path / "chain")
    assert again.deployment == world.chain.deployment
    assert again.token_balance(relay.address) == bal == world.pay(1_234_567)
    assert again.stream_info(world.stream)["balance"] == pool
    assert again.relay_paid(relay.address, world.stream, world.epoch, 0) == 1_234_567


def test_balances_survive_a_new_process(world, tmp_path):
    relay = _pay_something(world)
    code = (
        "import sys; from oasis.ledger.chain import EmbeddedChain;"
        "c = EmbeddedChain(sys.argv[1]); print(c.token_balance(bytes.fromhex(sys.argv[2])))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "chain"), relay.address.hex()],
                         capture_output=True, text=True, check=True, timeout=60)
    assert int(out.stdout.strip()) == world.pay(1_234_567)


def test_torn_journal_tail_is_ignored_then_overwritten(world, tmp_path):
    relay = _pay_something(world)
    journal = tmp_path / "chain" / "journal.bin"
    good = journal.stat().st_size
    with open(journal, "ab") as f:
        f.write(b"\x00\x00\x01\x00garbage")  # a crash mid-append
    c = EmbeddedChain(tmp_path / "chain")
    assert c.token_balance(relay.address) == world.pay(1_234_567)
    c.fund(relay.address, 1)  # the next write truncates the torn tail
    assert EmbeddedChain(tmp_path / "chain").eth_balance(relay.address) == c.eth_balance(relay.address)
    assert journal.stat().st_size > good


def test_two_handles_share_one_chain(world, tmp_path):
    other = open_chain(tmp_path, chain_dir=tmp_path / "chain")
    relay = _pay_something(world)  # written through the first handle
    assert other.token_balance(relay.address) == world.pay(1_234_567)
    other.fund(b"\x01" * 20, 5)  # written through the second
    assert world.chain.eth_balance(b"\x01" * 20) == 5


def test_a_transaction_that_reverted_on_time_replays_as_it_ran(world, tmp_path, monkeypatch):
    """A settle of an epoch not yet begun reverts because of the block time. Reopened an
    hour later, the chain must replay it at the time it ran (reverting again), not at the
    wall clock (where it would succeed, diverge, and leave the directory unopenable)."""
    from oasis.ledger import chain as chain_mod
    from oasis.ledger.chain import ChainError
    from oasis.ledger.wallet import Wallet

    relay = Wallet.generate()
    world.chain.fund(relay.address)
    future = world.chain.timestamp() // EPOCH + 3
    try:
        world.chain.settle(relay.key, world.stream, future, [[0, 0, 0, 0, 0]])
        raise AssertionError("a settle of a future epoch went through")
    except ChainError:
        pass
    before = EmbeddedChain(tmp_path / "chain")
    import eth._utils.headers as evm_headers

    later = chain_mod.time.time() + 3600  # the epoch has begun by now: both clocks say so
    monkeypatch.setattr(chain_mod.time, "time", lambda: later)
    monkeypatch.setattr(evm_headers, "eth_now", lambda: int(later))
    again = EmbeddedChain(tmp_path / "chain")  # raised "journal replay diverged" before
    assert again.deployment == before.deployment
    assert again.eth_balance(relay.address) == before.eth_balance(relay.address)
    # replayed blocks keep their recorded times: the head is not an hour ahead of the journal
    assert again.timestamp() == before.timestamp()


def test_a_missing_genesis_under_a_journal_is_refused_not_a_new_chain(world, tmp_path):
    """genesis.json holds the chain id every journaled transaction was signed for: without
    it the chain would reopen as a new one and every balance would read 0, silently."""
    import pytest

    from oasis.datafiles import DataFileError

    relay = _pay_something(world)
    genesis = tmp_path / "chain" / "genesis.json"
    kept = genesis.read_bytes()
    genesis.unlink()
    with pytest.raises(DataFileError) as exc:
        EmbeddedChain(tmp_path / "chain")
    assert str(genesis) in str(exc.value) and "backup" in str(exc.value)
    assert not genesis.exists()  # nothing made up in its place
    genesis.write_bytes(kept)
    assert EmbeddedChain(tmp_path / "chain").token_balance(relay.address) == world.pay(1_234_567)


def test_a_failed_journal_append_rolls_the_chain_back(world, tmp_path):
    """Attack/fault: a full disk while appending to journal.bin. The transaction had
    already run in the in-memory EVM and stayed there: the process then signed its next
    transaction from that phantom state (a nonce gap in the journal) and no process
    could open the chain again. Now the block is rolled back: memory never gets ahead
    of the journal. The failing write is the kernel's own (RLIMIT_FSIZE), no root needed."""
    relay = world.relay()
    vk, t = world.viewer()
    relay.accept_ticket(t.encode())
    assert relay.accept_receipt(world.receipt(vk, t, relay, 1_000_000).encode()).accepted
    entry = world.entry(t, world.receipt(vk, t, relay, 1_000_000))
    dest = b"\x11" * 20
    path = tmp_path / "chain" / "journal.bin"
    size = path.stat().st_size
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, hard))  # 40 bytes of a record fit
    try:
        with pytest.raises(JournalWriteError):
            world.chain.settle(relay.key, world.stream, world.epoch, [entry])
        with pytest.raises(JournalWriteError):
            world.chain.fund(dest, 10**15)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert path.stat().st_size == size  # the partial record was taken back
    assert world.chain.token_balance(relay.address) == 0 and world.chain.eth_balance(dest) == 0
    # Room again: the same process goes on from the journal's state ...
    [res] = relay.settle_due()
    assert res.amount == world.pay(1_000_000)
    world.chain.fund(dest, 10**15)
    # ... and any process opens the chain, with the same balances.
    again = EmbeddedChain(tmp_path / "chain")
    assert again.token_balance(relay.address) == world.pay(1_000_000)
    assert again.eth_balance(dest) == 10**15


def test_a_journal_that_lost_a_transaction_is_a_clear_error(world, tmp_path):
    """A journal whose records all check but cannot be replayed (here one transaction is
    missing: a nonce gap) was a raw eth_utils ValidationError traceback on open; now a
    one-line DataFileError naming the file."""
    _pay_something(world)
    path = tmp_path / "chain" / "journal.bin"
    records, _, _ = scan(path.read_bytes()[FILE_HEADER_SIZE:], 0, path)
    keep = records[:2] + records[3:]  # a faucet transaction lost: its later ones have a gap
    path.write_bytes(file_header() + b"".join(encode_record(r) for r in keep))
    with pytest.raises(DataFileError) as err:
        EmbeddedChain(tmp_path / "chain")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert "cannot be replayed" in str(err.value)
