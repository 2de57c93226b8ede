"""The embedded chain survives restarts: new object, new process, torn journal."""

from __future__ import annotations

import subprocess
import sys

from oasis.ledger.chain import EmbeddedChain, open_chain


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
