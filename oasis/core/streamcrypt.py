"""End-to-end encrypted live streams: a chunk's payload sealed with the stream's content key.

A broadcaster that publishes with ``--encrypt`` draws a 32-byte *content key* for the
stream (kept in its data directory, so a restart keeps the links valid) and seals every
chunk's media before signing it (docs/oftp.md §7.2)::

    payload = nonce (12 random bytes) | AES-256-GCM(key, nonce, media, aad) (media + 16-byte tag)
    aad     = "oasis/chunk-seal/v1\\0" | stream key (8) | seq (u64 BE) | time_us (u64 BE) | flags (u8)

The signature is over the sealed payload (seal, then sign): every relay, origin, CDN edge
and cache still verifies a chunk with the broadcaster's public key alone and carries it
as before, but sees only ciphertext. Only a holder of the key -- it travels in the
stream link's ``k=`` parameter, never in the descriptor, the DHT or the tracker -- reads
the media. The associated data binds the sealed media to its stream, seq, time and flags,
so a holder of the key also refuses media moved from one chunk to another.

Nonces are random: under one key, 2^32 chunks keep AES-GCM's collision risk below 2^-32
(NIST SP 800-38D §8.3), about 4.5 years of chunks at 30 a second. The stream's end marker
(empty payload, ``FLAG_END``) is not sealed: that a stream ended is no secret from its
relays. Sans-I/O and pure.
"""

from __future__ import annotations

import base64
import functools
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
#: bytes a sealed payload is longer than the media in it
OVERHEAD = NONCE_BYTES + TAG_BYTES
SEAL_TAG = b"oasis/chunk-seal/v1\x00"
_HDR = struct.Struct(">QQB")


class ContentKeyError(ValueError):
    """A content key that is not one: ``code`` is stable (``bad_key``)."""

    code = "bad_key"


def new_key() -> bytes:
    """A fresh random content key."""
    return os.urandom(KEY_BYTES)


def key_text(key: bytes) -> str:
    """The key as a link writes it: base64url without padding (43 characters)."""
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def key_from_text(text: str) -> bytes:
    """A content key from its link text (:func:`key_text`); raises :class:`ContentKeyError`."""
    if not isinstance(text, str) or len(text) != 43 or not text.isascii():
        raise ContentKeyError(f"a content key is 43 base64url characters ({KEY_BYTES} bytes), "
                        f"not {len(text) if isinstance(text, str) else type(text).__name__}")
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except ValueError as exc:
        raise ContentKeyError(f"a content key is base64url: {exc}") from None
    if len(raw) != KEY_BYTES or key_text(raw) != text:  # (no stray bits in the last character)
        raise ContentKeyError(f"a content key is {KEY_BYTES} bytes in base64url")
    return raw


@functools.lru_cache(maxsize=64)
def _aead(key: bytes) -> AESGCM:
    return AESGCM(key)


def _aad(skey: bytes, seq: int, time_us: int, flags: int) -> bytes:
    return SEAL_TAG + skey + _HDR.pack(seq, time_us, flags)


def seal(key: bytes, skey: bytes, seq: int, time_us: int, flags: int, media: bytes,
         nonce: bytes | None = None) -> bytes:
    """The sealed payload of chunk ``seq`` (``nonce``: for tests; random otherwise)."""
    if len(key) != KEY_BYTES:
        raise ContentKeyError(f"a content key is {KEY_BYTES} bytes")
    n = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if len(n) != NONCE_BYTES:
        raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
    return n + _aead(key).encrypt(n, media, _aad(skey, seq, time_us, flags))


def open_sealed(key: bytes, skey: bytes, seq: int, time_us: int, flags: int,
                payload: bytes) -> bytes | None:
    """The media of a sealed payload, or None when it does not open with ``key`` for this
    chunk's header (another key, another chunk's media, altered or too short)."""
    if len(payload) < OVERHEAD or len(key) != KEY_BYTES:
        return None
    try:
        return _aead(key).decrypt(payload[:NONCE_BYTES], payload[NONCE_BYTES:],
                                  _aad(skey, seq, time_us, flags))
    except InvalidTag:
        return None
