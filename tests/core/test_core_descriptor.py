"""The signed stream descriptor: layout, caps, and refusal of any other key or stream."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from oasis.core.descriptor import (
    MAX_JSON,
    Descriptor,
    DescriptorError,
    descriptor_from_json,
    sign_descriptor,
    verified_descriptor,
    verified_descriptor_json,
    verify_descriptor,
)
from oasis.core.identity import Identity
from oasis.core.stream import StreamId

BC = Identity.from_private_bytes(random.Random(1).randbytes(32))
MALLORY = Identity.from_private_bytes(random.Random(2).randbytes(32))
SID = StreamId(BC.public, "live")


def full() -> Descriptor:
    return sign_descriptor(BC, Descriptor(
        SID, 1500, 100, 4, 1_700_000_000_000, origin="http://127.0.0.1:8000/origin",
        cdn=("https://cdn.example/o",), tickets="http://127.0.0.1:8000/tickets",
        price_per_mb=10**15, epoch_length=10, chain_id=31337,
        contract="0x" + "ab" * 20))


def test_round_trip_through_json_and_verify() -> None:
    d = full()
    assert verify_descriptor(d, SID)
    back = descriptor_from_json(json.dumps(d.to_json()).encode())
    assert back == d and back.signature == d.signature and verify_descriptor(back, SID)
    assert back.fetch_url == "https://cdn.example/o"
    minimal = sign_descriptor(BC, Descriptor(SID, 800, 100, 4, 1))
    assert verified_descriptor(minimal.to_json(), SID).origin is None


def test_signature_binds_every_field() -> None:
    d = full()
    for change in ({"bitrate_kbps": 1501}, {"chunk_ms": 200}, {"substreams": 2},
                   {"issued_at_ms": 1}, {"origin": "http://127.0.0.9/evil"}, {"cdn": ()},
                   {"tickets": None}, {"price_per_mb": 0}, {"epoch_length": 11},
                   {"chain_id": 1}, {"contract": None}):
        assert not verify_descriptor(dataclasses.replace(d, **change)), change


def test_another_key_or_another_stream_is_refused() -> None:
    d = full()
    forged = dataclasses.replace(d, signature=MALLORY.sign(d.signing_bytes()))
    with pytest.raises(DescriptorError) as e:
        verified_descriptor(forged.to_json(), SID)
    assert e.value.code == "bad_signature"
    theirs = sign_descriptor(MALLORY, Descriptor(StreamId(MALLORY.public, "live"), 1500, 100, 4, 1))
    assert verify_descriptor(theirs)  # valid for its own stream ...
    with pytest.raises(DescriptorError) as e:
        verified_descriptor(theirs.to_json(), SID)  # ... not for ours
    assert e.value.code == "wrong_stream"
    with pytest.raises(DescriptorError):
        sign_descriptor(MALLORY, Descriptor(SID, 1500, 100, 4, 1))


@pytest.mark.parametrize("change", [
    {"bitrate_kbps": 0}, {"bitrate_kbps": 10**12}, {"substreams": 17}, {"chunk_ms": True},
    {"origin": "ftp://x"}, {"origin": "http://" + "a" * 600}, {"origin": "http://a b"},
    {"cdn": ["http://a"] * 5}, {"contract": "0x12"}, {"price_per_mb": -1},
    {"price_per_mb": 2**256}, {"epoch_length": 0}, {"sig": "00"}, {"v": 2}, {"extra": 1},
    {"stream": "nope"}, {"bitrate_kbps": 1e400}, {"cdn": "http://a"},
])
def test_out_of_range_fields_are_refused_with_a_code(change: dict) -> None:
    body = full().to_json() | change
    with pytest.raises(DescriptorError) as e:
        verified_descriptor(json.loads(json.dumps(body)), SID)
    assert e.value.code


def test_json_is_size_capped() -> None:
    with pytest.raises(DescriptorError) as e:
        descriptor_from_json(b" " * (MAX_JSON + 1))
    assert e.value.code == "too_large"
    with pytest.raises(DescriptorError):
        descriptor_from_json(b"[" * 3000 + b"]" * 3000)


def test_json_bytes_from_a_peer_are_decoded_typed_and_verified() -> None:
    raw = json.dumps(full().to_json()).encode()
    assert verified_descriptor_json(raw, SID) == full()
    for bad in (b"[" * 2000 + b"]" * 2000,  # deep nesting: refused by the typed decode, no recursion
                b"x" * (MAX_JSON + 1), b"{}", raw[:-1]):
        with pytest.raises(DescriptorError):
            verified_descriptor_json(bad, SID)
    with pytest.raises(DescriptorError):  # another stream's
        verified_descriptor_json(raw, StreamId(BC.public, "other"))
