"""EIP-712 typed-data hashing and secp256k1 signatures for tickets and receipts.

Theory of operation: both structs are flat and static, so their EIP-712
``hashStruct`` is ``keccak(typeHash || 32-byte words)``; we build it directly
from the type strings below, which are byte-for-byte the ones in
``contracts/RewardsPool.vy``. The domain is ``EIP712Domain(name "Oasis",
version "1", chainId, verifyingContract = the RewardsPool)``, so a signature is
only worth anything on one chain and one pool.

Signatures are 65 bytes ``r || s || v`` with ``v`` in {27, 28}. We sign with
coincurve (libsecp256k1, which always emits low-s) and on recovery reject
high-s and any other ``v``, exactly as the contract does: a signature has one
valid encoding, so it cannot be replayed under a second form.
Pure functions, no I/O. Cross-checked against ``eth_account`` and the
contract's ``ecrecover`` in ``tests/ledger/test_eip712.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import coincurve
from eth_hash.auto import keccak

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HALF_N = SECP256K1_N // 2

DOMAIN_TYPE = b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
TICKET_TYPE = (
    b"Ticket(address viewer,bytes32 stream,uint32 index,uint48 allowance,"
    b"uint40 notBefore,uint40 expiry)"
)
RECEIPT_TYPE = b"Receipt(address relay,bytes32 stream,uint64 epoch,uint32 index,uint48 received)"
DOMAIN_TYPEHASH = keccak(DOMAIN_TYPE)
TICKET_TYPEHASH = keccak(TICKET_TYPE)
RECEIPT_TYPEHASH = keccak(RECEIPT_TYPE)
NAME, VERSION = "Oasis", "1"

SIG_LEN = 65


class SignatureError(ValueError):
    """A signature that is malformed, malleable (high-s) or does not recover."""


@dataclass(frozen=True)
class Domain:
    """Where signatures are valid: one chain id, one RewardsPool address."""

    chain_id: int
    pool: bytes  # 20-byte address

    def __post_init__(self) -> None:
        if len(self.pool) != 20:
            raise ValueError("pool address must be 20 bytes")

    @property
    def separator(self) -> bytes:
        return keccak(
            DOMAIN_TYPEHASH
            + keccak(NAME.encode())
            + keccak(VERSION.encode())
            + word(self.chain_id)
            + word(self.pool)
        )


def word(value: int | bytes) -> bytes:
    """One ABI word: an unsigned int, an address (left-padded) or a bytes32."""
    if isinstance(value, int):
        if not 0 <= value < 1 << 256:
            raise ValueError("uint out of range")
        return value.to_bytes(32, "big")
    if len(value) > 32:
        raise ValueError("too long for a word")
    return value.rjust(32, b"\x00")


def typed_digest(domain: Domain, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + domain.separator + struct_hash)


def ticket_struct_hash(
    viewer: bytes, stream: bytes, index: int, allowance: int, not_before: int, expiry: int
) -> bytes:
    _check_uint(index, 32)
    _check_uint(allowance, 48)
    _check_uint(not_before, 40)
    _check_uint(expiry, 40)
    _check_len(viewer, 20, "viewer")
    _check_len(stream, 32, "stream")
    return keccak(
        TICKET_TYPEHASH
        + word(viewer)
        + stream
        + word(index)
        + word(allowance)
        + word(not_before)
        + word(expiry)
    )


def receipt_struct_hash(relay: bytes, stream: bytes, epoch: int, index: int, received: int) -> bytes:
    _check_len(relay, 20, "relay")
    _check_len(stream, 32, "stream")
    _check_uint(epoch, 64)
    _check_uint(index, 32)
    _check_uint(received, 48)
    return keccak(
        RECEIPT_TYPEHASH + word(relay) + stream + word(epoch) + word(index) + word(received)
    )


def address_of_public(public: coincurve.PublicKey) -> bytes:
    return keccak(public.format(compressed=False)[1:])[12:]


def address_of_key(private_key: bytes) -> bytes:
    return address_of_public(coincurve.PrivateKey(private_key).public_key)


def sign_digest(private_key: bytes, digest: bytes) -> bytes:
    """65-byte ``r || s || v`` (low-s, v in {27, 28}) over a 32-byte digest."""
    sig = coincurve.PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes([27 + sig[64]])


def split(sig: bytes) -> tuple[int, int, int]:
    """(r, s, v) of a strict signature; raises SignatureError otherwise."""
    if len(sig) != SIG_LEN:
        raise SignatureError("signature must be 65 bytes")
    r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    if v not in (27, 28):
        raise SignatureError("v must be 27 or 28")
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise SignatureError("r or s out of range")
    if s > HALF_N:
        raise SignatureError("malleable signature (high s)")
    return r, s, v


def recover(digest: bytes, sig: bytes) -> bytes:
    """The 20-byte address that signed ``digest``; raises SignatureError."""
    split(sig)
    try:
        pub = coincurve.PublicKey.from_signature_and_message(
            sig[:64] + bytes([sig[64] - 27]), digest, hasher=None
        )
    except Exception as exc:  # coincurve raises ValueError/Exception on bad points
        raise SignatureError(f"signature does not recover: {exc}") from None
    return address_of_public(pub)


def high_s_twin(sig: bytes) -> bytes:
    """The malleable twin (n - s, flipped v) of a signature: for tests only."""
    s = int.from_bytes(sig[32:64], "big")
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])


def _check_uint(value: int, bits: int) -> None:
    if not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"value {value!r} does not fit uint{bits}")


def _check_len(value: bytes, n: int, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != n:
        raise ValueError(f"{what} must be {n} bytes")
