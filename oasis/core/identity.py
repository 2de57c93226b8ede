"""Node identity: an Ed25519 key pair; the peer id is derived from the public key.

Pure functions only; loading and saving the key file lives in
``oasis.node.keystore``. Signed layouts are fixed and domain-separated: a tag
naming the purpose and version, then fields in a fixed order.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

AUTH_TAG = b"oasis/oftp-auth/v1\x00"

_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw
_RAW_PRIV = serialization.PrivateFormat.Raw


def peer_id_of(public_key: bytes) -> str:
    """Text peer id: the 32-byte public key in lower-case base32, no padding (52 chars).

    The id *is* the key, so anybody can check a signature against an id alone.
    """
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return base64.b32encode(public_key).decode().rstrip("=").lower()


def key_of_peer_id(peer_id: str) -> bytes:
    """Inverse of :func:`peer_id_of`; raises ValueError on a malformed id."""
    if len(peer_id) != 52:
        raise ValueError(f"peer id must have 52 characters, got {len(peer_id)}")
    try:
        key = base64.b32decode(peer_id.upper() + "====")
    except Exception as exc:  # binascii.Error
        raise ValueError(f"peer id is not base32: {exc}") from None
    if len(key) != 32:
        raise ValueError("peer id does not decode to 32 bytes")
    if peer_id_of(key) != peer_id.lower():
        raise ValueError("peer id is not in canonical form")
    return key


def peer_tag(public_key: bytes) -> bytes:
    """Short 8-byte tag of a peer, used in tree paths on the wire."""
    return hashlib.sha256(b"oasis/peer-tag/v1\x00" + public_key).digest()[:8]


@dataclass(frozen=True)
class Identity:
    """A node's signing key. ``public`` is the raw 32-byte public key."""

    private: Ed25519PrivateKey
    public: bytes

    @classmethod
    def generate(cls) -> Identity:
        return cls.from_private_bytes(Ed25519PrivateKey.generate().private_bytes(
            _RAW, _RAW_PRIV, serialization.NoEncryption()))

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Identity:
        priv = Ed25519PrivateKey.from_private_bytes(raw)
        return cls(priv, priv.public_key().public_bytes(_RAW, _RAW_PUB))

    def private_bytes(self) -> bytes:
        return self.private.private_bytes(_RAW, _RAW_PRIV, serialization.NoEncryption())

    @property
    def peer_id(self) -> str:
        return peer_id_of(self.public)

    @property
    def tag(self) -> bytes:
        return peer_tag(self.public)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def _verify_openssl(public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


try:  # qh3 (a dependency: the QUIC stack) verifies Ed25519 with aws-lc, ~2x OpenSSL's speed
    from qh3._hazmat import CryptoError as _Qh3CryptoError
    from qh3._hazmat import SignatureError as _Qh3SignatureError
    from qh3._hazmat import verify_with_public_key as _qh3_verify
except ImportError:  # pragma: no cover - qh3 is pinned in pyproject.toml
    _qh3_verify = None  # type: ignore[assignment]

#: DER SubjectPublicKeyInfo prefix of a raw Ed25519 key (RFC 8410), as aws-lc takes it
_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")
_TLS_ED25519 = 0x0807  #: the TLS SignatureScheme number of Ed25519 (qh3's algorithm id)


def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` by ``public_key`` over ``data`` is valid.

    Every chunk every node receives comes through here. qh3's aws-lc check (about
    32 µs) is used where present, else ``cryptography``'s OpenSSL one (about 70 µs):
    both are RFC 8032 checks that refuse a non-canonical S (S >= L), and they agree
    on the edge cases tests/core/test_core_identity_verify.py pins."""
    if _qh3_verify is None:
        return _verify_openssl(public_key, signature, data)
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        _qh3_verify(_ED25519_SPKI + public_key, _TLS_ED25519, data, signature)
    except (_Qh3SignatureError, _Qh3CryptoError, ValueError, TypeError):
        return False
    return True


def auth_transcript(signer_key: bytes, other_key: bytes, other_nonce: bytes,
                    own_nonce: bytes, version: int) -> bytes:
    """Bytes a side signs to answer the other's HELLO challenge.

    Binding both keys and both nonces means a signature can be neither replayed
    on another connection nor reflected back to its sender.
    """
    return (AUTH_TAG + signer_key + other_key + other_nonce + own_nonce
            + version.to_bytes(2, "big"))
