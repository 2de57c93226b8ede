"""Node wallet: a secp256k1 key beside the Ed25519 identity, and their binding.

Theory of operation: the ledger needs keys the EVM can check (``ecrecover``),
while peers know a node by its Ed25519 identity. Each node therefore keeps a
secp256k1 wallet key in ``<data_dir>/ledger/wallet.key`` (a checked key file,
see :mod:`oasis.datafiles`: created whole with mode 0600, refused if group/other
can read it or if it fails its check) and publishes a
:class:`WalletBinding`: the Ed25519 identity signs the wallet address and the
wallet signs the Ed25519 public key, both under a domain-separating tag.
Either signature alone could be replayed by someone else (claim another's
wallet, or lend one's wallet to another identity); the pair proves both keys
agree. Peers check it with :func:`verify_binding` before trusting a wallet
address in a ticket or receipt exchange. Wire form: 181 bytes.

:func:`wallet_report` is the data behind ``oasis wallet [--json]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coincurve
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from oasis.datafiles import DataFileError, encode_key, load_key, private_dir, write_new

from . import eip712

BINDING_TAG = b"oasis/wallet-binding/v1\x00"
BINDING_LEN = 32 + 20 + 64 + 65
WALLET_FILE = "wallet.key"
STORE_FILE = "ledger.db"


class BindingError(ValueError):
    pass


def ledger_dir(data_dir: str | Path) -> Path:
    """``<data_dir>/ledger``, created 0700 (and tightened if looser)."""
    return private_dir(Path(data_dir) / "ledger")


@dataclass(frozen=True)
class Wallet:
    key: bytes  # 32-byte secp256k1 secret

    @property
    def address(self) -> bytes:
        return eip712.address_of_key(self.key)

    @property
    def checksum_address(self) -> str:
        return to_checksum_address(self.address)

    @classmethod
    def generate(cls) -> Wallet:
        return cls(coincurve.PrivateKey().secret)

    @classmethod
    def load_or_create(cls, data_dir: str | Path) -> Wallet:
        """The node's wallet, created whole on first use (mode 0600, directory 0700).

        A damaged, unreadable or exposed key file raises
        :class:`~oasis.datafiles.DataFileError`: never a silently new wallet.
        """
        path = ledger_dir(data_dir) / WALLET_FILE
        if not path.exists():
            store = path.parent / STORE_FILE
            if store.exists() and store.stat().st_size > 0:
                # a new wallet would earn under a new address while the store's receipts,
                # settlements and rewards belong to the old one
                raise DataFileError(path, "is missing, but ledger.db beside it holds this node's "
                                    "receipts and rewards, made out to the old wallet's address",
                                    "restore wallet.key from your backup; to start a new wallet on "
                                    "purpose, move ledger.db away as well")
            wallet = cls.generate()
            if write_new(path, encode_key(WALLET_KIND, wallet.key, wallet.address)):
                return wallet
        return cls(load_key(path, WALLET_KIND, "the wallet key", _address_of, _legacy_hex, WALLET_ADVICE))


WALLET_KIND = "secp256k1"
WALLET_ADVICE = ("restore it from your backup; only if you have none, move it away and a new wallet "
                 "is created on the next start (tokens held by the old address are then out of reach)")


def _address_of(secret: bytes) -> bytes:
    if len(secret) != 32:
        raise ValueError("a secp256k1 secret has 32 bytes")
    return eip712.address_of_key(secret)


def _legacy_hex(data: bytes) -> bytes | None:
    """The first format: the secret in hex and a newline (unchecked; upgraded on load)."""
    text = data.strip()
    if len(text) != 64:
        return None
    try:
        return bytes.fromhex(text.decode("ascii"))
    except ValueError:
        return None


@dataclass(frozen=True)
class WalletBinding:
    identity: bytes  # Ed25519 public key, 32 bytes
    address: bytes  # wallet address, 20 bytes
    identity_sig: bytes  # Ed25519 over TAG || "wallet" || address
    wallet_sig: bytes  # secp256k1 over keccak(TAG || "identity" || identity)

    def encode(self) -> bytes:
        return self.identity + self.address + self.identity_sig + self.wallet_sig

    @classmethod
    def decode(cls, data: bytes) -> WalletBinding:
        if len(data) != BINDING_LEN:
            raise BindingError(f"binding must be {BINDING_LEN} bytes")
        return cls(bytes(data[:32]), bytes(data[32:52]), bytes(data[52:116]), bytes(data[116:]))


def _identity_msg(address: bytes) -> bytes:
    return BINDING_TAG + b"wallet" + address


def _wallet_digest(identity: bytes) -> bytes:
    return keccak(BINDING_TAG + b"identity" + identity)


def bind_wallet(ed25519_private: bytes, ed25519_public: bytes, wallet: Wallet) -> WalletBinding:
    """Both signatures of the binding; takes the raw 32-byte Ed25519 key pair."""
    ed = Ed25519PrivateKey.from_private_bytes(ed25519_private)
    if len(ed25519_public) != 32:
        raise ValueError("Ed25519 public key must be 32 bytes")
    return WalletBinding(
        identity=ed25519_public,
        address=wallet.address,
        identity_sig=ed.sign(_identity_msg(wallet.address)),
        wallet_sig=eip712.sign_digest(wallet.key, _wallet_digest(ed25519_public)),
    )


def verify_binding(data: bytes | WalletBinding, identity: bytes | None = None) -> WalletBinding:
    """Check both signatures (and, if given, that it binds ``identity``)."""
    b = WalletBinding.decode(data) if isinstance(data, bytes | bytearray) else data
    if identity is not None and identity != b.identity:
        raise BindingError("binding is for another identity")
    try:
        Ed25519PublicKey.from_public_bytes(b.identity).verify(b.identity_sig, _identity_msg(b.address))
    except (InvalidSignature, ValueError):
        raise BindingError("identity signature invalid") from None
    try:
        signer = eip712.recover(_wallet_digest(b.identity), b.wallet_sig)
    except eip712.SignatureError as exc:
        raise BindingError(f"wallet signature invalid: {exc}") from None
    if signer != b.address:
        raise BindingError("wallet signature is by another key")
    return b


def wallet_report(data_dir: str | Path, chain: Any) -> dict[str, Any]:
    """Address, balances and rewards of the node at ``data_dir`` (``oasis wallet --json``).

    ``chain`` is a :class:`chain.LedgerChain` or None (offline: no balances).
    ``pending_rewards`` estimates stored receipts not yet settled, capped by
    their tickets' allowances; ``settled_rewards`` sums mined settlements.
    """
    from .receipt_store import ReceiptStore
    from .tickets import Ticket

    wallet = Wallet.load_or_create(data_dir)
    store = ReceiptStore(ledger_dir(data_dir) / STORE_FILE)
    try:
        store.bind_wallet(wallet.address, ledger_dir(data_dir) / WALLET_FILE)
        pending = 0
        for r in store.unsettled():
            terms = store.stream(r.stream)
            if terms is None and chain is not None:
                info = chain.stream_info(r.stream)
                terms = (b"", info["price_per_mb"], info["epoch_length"])
            if terms is not None:
                unpaid = min(r.received - r.settled, Ticket.decode(r.ticket).allowance)
                pending += unpaid * terms[1] // 10**6
        totals = store.totals()
        report: dict[str, Any] = {
            "address": wallet.checksum_address,
            "token_balance": chain.token_balance(wallet.address) if chain is not None else None,
            "eth_balance": chain.eth_balance(wallet.address) if chain is not None else None,
            "pending_rewards": pending,
            "settled_rewards": totals["tokens_paid"],
            "receipts_stored": store.count_receipts(),
            "settle_txs": totals["settle_txs"],
        }
        if chain is not None:
            report["chain_id"] = chain.deployment.chain_id
            report["pool"] = chain.deployment.pool
        return report
    finally:
        store.close()
