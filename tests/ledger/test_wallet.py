from __future__ import annotations

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from oasis.ledger.wallet import (
    BindingError,
    Wallet,
    WalletBinding,
    bind_wallet,
    ledger_dir,
    verify_binding,
    wallet_report,
)


def _ed25519():
    k = Ed25519PrivateKey.generate()
    raw = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                          serialization.NoEncryption())
    pub = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw, pub


def test_wallet_file_is_private_and_stable(tmp_path):
    w = Wallet.load_or_create(tmp_path)
    path = ledger_dir(tmp_path) / "wallet.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Wallet.load_or_create(tmp_path) == w
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError):
        Wallet.load_or_create(tmp_path)


def test_binding_roundtrip_and_tamper():
    raw, pub = _ed25519()
    w = Wallet.generate()
    b = bind_wallet(raw, pub, w)
    assert verify_binding(b.encode(), identity=pub).address == w.address
    other = Wallet.generate()
    # someone else's wallet claimed for this identity
    with pytest.raises(BindingError):
        verify_binding(WalletBinding(pub, other.address, b.identity_sig, b.wallet_sig))
    # this wallet claimed by another identity
    raw2, pub2 = _ed25519()
    b2 = bind_wallet(raw2, pub2, other)
    with pytest.raises(BindingError):
        verify_binding(WalletBinding(pub2, w.address, b2.identity_sig, b.wallet_sig))
    with pytest.raises(BindingError):
        verify_binding(b.encode(), identity=pub2)
    with pytest.raises(BindingError):
        verify_binding(b.encode()[:-1])


def test_wallet_report(world, tmp_path):
    data = tmp_path / "node"
    w = Wallet.load_or_create(data)
    from oasis.ledger.receipt_store import ReceiptStore
    from oasis.ledger.settlement import RelayLedger

    relay = world.relay(key=w.key)
    relay.store.close()
    relay = RelayLedger(ReceiptStore(ledger_dir(data) / "ledger.db"), w.key, world.domain, world.chain,
                        clock=lambda: world.now)
    vk, t = world.viewer()
    relay.accept_ticket(t.encode())
    assert relay.accept_receipt(world.receipt(vk, t, relay, 2_000_000).encode()).accepted
    rep = wallet_report(data, world.chain)
    assert rep["address"] == w.checksum_address
    assert rep["pending_rewards"] == world.pay(2_000_000) and rep["settled_rewards"] == 0
    relay.settle_due()
    rep = wallet_report(data, world.chain)
    assert rep["pending_rewards"] == 0
    assert rep["settled_rewards"] == rep["token_balance"] == world.pay(2_000_000)
    assert rep["settle_txs"] == 1
