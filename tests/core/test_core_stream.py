"""Stream ids, chunk signatures (oasis.core.stream) and peer ids (oasis.core.identity)."""

from __future__ import annotations

import random

import pytest
from msgspec.structs import replace

from oasis.core import identity
from oasis.core.identity import Identity, key_of_peer_id, peer_id_of, peer_tag
from oasis.core.stream import (
    FLAG_KEYFRAME,
    StreamId,
    StreamIdError,
    is_keyframe,
    sign_chunk,
    stream_key,
    verify_chunk,
)

RNG = random.Random(42)
BCAST = Identity.from_private_bytes(RNG.randbytes(32))
OTHER = Identity.from_private_bytes(RNG.randbytes(32))
SID = StreamId(BCAST.public, "live")
PAYLOAD = bytes(range(256)) * 8


def good_chunk(seq: int = 5, keyframe: bool = True):
    return sign_chunk(BCAST, SID, seq, 1_700_000_000_123_456, keyframe, PAYLOAD)


def test_sign_and_verify_chunk() -> None:
    chunk = good_chunk()
    assert chunk.stream == SID.key and chunk.seq == 5 and chunk.payload == PAYLOAD
    assert chunk.flags == FLAG_KEYFRAME and is_keyframe(chunk)
    assert verify_chunk(SID, chunk)
    plain = good_chunk(keyframe=False)
    assert plain.flags == 0 and not is_keyframe(plain) and verify_chunk(SID, plain)


@pytest.mark.parametrize("change", [
    {"payload": PAYLOAD[:-1] + b"\x00"},
    {"payload": PAYLOAD + b"x"},
    {"payload": b""},
    {"seq": 6},
    {"time_us": 1_700_000_000_123_457},
    {"flags": 0},
    {"flags": FLAG_KEYFRAME | 0x02},
    {"stream": b"\x00" * 8},
    {"signature": bytes(64)},
], ids=["payload-byte", "payload-longer", "payload-empty", "seq", "time", "flags-cleared",
        "flags-unknown-bit", "stream-key", "signature-zero"])
def test_tampered_chunk_fails(change: dict) -> None:
    chunk = good_chunk()
    assert not verify_chunk(SID, replace(chunk, **change))


def test_every_signature_bit_matters() -> None:
    chunk = good_chunk()
    for i in (0, 17, 31, 32, 63):
        sig = bytearray(chunk.signature)
        sig[i] ^= 0x01
        assert not verify_chunk(SID, replace(chunk, signature=bytes(sig)))


def test_chunk_is_bound_to_its_stream_and_broadcaster() -> None:
    chunk = good_chunk()
    # Same broadcaster, other stream name: different stream key, and the chunk does not verify.
    other_name = StreamId(BCAST.public, "live2")
    assert other_name.key != SID.key
    assert not verify_chunk(other_name, chunk)
    # Signed by someone else for our stream id: refused.
    forged = sign_chunk(OTHER, SID, 5, 1, True, PAYLOAD)
    assert forged.stream == SID.key
    assert not verify_chunk(SID, forged)
    # The other key's own stream with the same name has a different key.
    assert StreamId(OTHER.public, "live").key != SID.key


def test_stream_key_is_deterministic_and_8_bytes() -> None:
    assert SID.key == stream_key(BCAST.public, "live")
    assert len(SID.key) == 8


def test_stream_id_text_round_trip() -> None:
    text = str(SID)
    assert text == f"{BCAST.peer_id}.live"
    parsed = StreamId.parse(text)
    assert parsed == SID and parsed.key == SID.key
    assert StreamId.parse(str(StreamId(BCAST.public, "a" * 32))).name == "a" * 32
    assert StreamId.parse(f"{BCAST.peer_id}.0-x_y").name == "0-x_y"


@pytest.mark.parametrize("text", [
    "",
    "no-dot-here",
    f"{BCAST.peer_id}",
    f"{BCAST.peer_id}.",
    f"{BCAST.peer_id}.Live",
    f"{BCAST.peer_id}.-live",
    f"{BCAST.peer_id}._live",
    f"{BCAST.peer_id}.{'a' * 33}",
    f"{BCAST.peer_id}.a.b",
    f"{BCAST.peer_id}.a b",
    f"{BCAST.peer_id[:-1]}.live",
    f"{BCAST.peer_id}x.live",
    f"{'1' * 52}.live",
    ".live",
])
def test_bad_stream_ids_raise(text: str) -> None:
    with pytest.raises(StreamIdError):
        StreamId.parse(text)


def test_stream_id_constructor_checks() -> None:
    with pytest.raises(StreamIdError):
        StreamId(b"k" * 31, "live")
    with pytest.raises(StreamIdError):
        StreamId(BCAST.public, "")
    assert issubclass(StreamIdError, ValueError)


def test_peer_id_round_trip() -> None:
    for _ in range(20):
        key = RNG.randbytes(32)
        pid = peer_id_of(key)
        assert len(pid) == 52 and pid == pid.lower() and "=" not in pid
        assert key_of_peer_id(pid) == key
    assert BCAST.peer_id == peer_id_of(BCAST.public)


@pytest.mark.parametrize("bad", [b"", b"k" * 31, b"k" * 33])
def test_peer_id_of_bad_key(bad: bytes) -> None:
    with pytest.raises(ValueError):
        peer_id_of(bad)


@pytest.mark.parametrize("bad", ["", "a" * 51, "a" * 53, "1" * 52, "a" * 51 + "!", "a" * 50 + "=="])
def test_key_of_bad_peer_id(bad: str) -> None:
    with pytest.raises(ValueError):
        key_of_peer_id(bad)


def test_peer_id_is_canonical() -> None:
    pid = BCAST.peer_id
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    alias = pid[:-1] + alphabet[alphabet.index(pid[-1]) ^ 1]
    with pytest.raises(ValueError):
        key_of_peer_id(alias)


def test_identity_private_bytes_round_trip_and_sign() -> None:
    again = Identity.from_private_bytes(BCAST.private_bytes())
    assert again.public == BCAST.public
    sig = again.sign(b"hello")
    assert identity.verify(BCAST.public, sig, b"hello")
    assert not identity.verify(BCAST.public, sig, b"hellO")
    assert not identity.verify(OTHER.public, sig, b"hello")
    assert not identity.verify(b"short", sig, b"hello")  # bad key: False, not an exception


def test_peer_tag_is_short_and_distinct() -> None:
    assert len(peer_tag(BCAST.public)) == 8
    assert BCAST.tag == peer_tag(BCAST.public) != peer_tag(OTHER.public)


def test_auth_transcript_binds_roles_and_version() -> None:
    a, b, na, nb = b"A" * 32, b"B" * 32, b"1" * 16, b"2" * 16
    t = identity.auth_transcript(a, b, nb, na, 1)
    assert t.startswith(identity.AUTH_TAG)
    assert t != identity.auth_transcript(b, a, na, nb, 1)  # reflection
    assert t != identity.auth_transcript(a, b, nb, na, 2)
    assert t != identity.auth_transcript(a, b, na, nb, 1)

