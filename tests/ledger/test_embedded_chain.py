"""The embedded chain survives restarts: new object, new process, torn journal."""

from __future__ import annotations

import subprocess
import sys

from oasis.ledger.chain import EmbeddedChain, open_chain

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
