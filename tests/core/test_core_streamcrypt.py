"""End-to-end encrypted streams (oasis.core.streamcrypt, docs/oftp.md §7.2): the sealed
payload, its key in links, and the signed flag in the descriptor."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from oasis.core import streamcrypt as sc
from oasis.core.descriptor import (
    Descriptor,
    DescriptorError,
    descriptor_from_json,
    sign_descriptor,
    verify_descriptor,
)
from oasis.core.identity import Identity
from oasis.core.stream import FLAG_KEYFRAME, StreamId, sign_chunk, sign_end, verify_chunk
from oasis.core.streamlink import Bootstrap, LinkError, StreamLink
from oasis.core.streamlink import parse as parse_link
from oasis.media.chunker import TsChunker

BC = Identity.from_private_bytes(random.Random(1).randbytes(32))
SID = StreamId(BC.public, "live")
KEY = random.Random(7).randbytes(32)
MEDIA = bytes([0x47]) + bytes(187) + bytes([0x47]) + bytes(range(187))


def test_a_sealed_chunk_verifies_without_the_key_and_opens_only_with_it() -> None:
    c = sign_chunk(BC, SID, 42, 1_700_000_000_000_000, True, MEDIA, content_key=KEY)
    assert verify_chunk(SID, c)  # any relay checks the signature with the public key alone
    assert MEDIA not in c.payload and len(c.payload) == len(MEDIA) + sc.OVERHEAD
    assert sc.open_sealed(KEY, c.stream, c.seq, c.time_us, c.flags, c.payload) == MEDIA
    other = random.Random(8).randbytes(32)
    assert sc.open_sealed(other, c.stream, c.seq, c.time_us, c.flags, c.payload) is None


def test_sealed_media_is_bound_to_its_chunk() -> None:
    """A key holder refuses media moved to another seq, time, flag or stream, or altered."""
    c = sign_chunk(BC, SID, 42, 1_000, True, MEDIA, content_key=KEY)
    args = (c.stream, c.seq, c.time_us, c.flags)
    for i, v in ((0, StreamId(BC.public, "other").key), (1, 43), (2, 1_001), (3, 0)):
        moved = list(args)
        moved[i] = v
        assert sc.open_sealed(KEY, *moved, c.payload) is None, i  # type: ignore[arg-type]
    flipped = bytearray(c.payload)
    flipped[sc.NONCE_BYTES + 5] ^= 1
    assert sc.open_sealed(KEY, *args, bytes(flipped)) is None
    for cut in (0, 1, sc.OVERHEAD - 1, len(c.payload) - 1):
        assert sc.open_sealed(KEY, *args, c.payload[:cut]) is None


def test_nonces_are_fresh_per_chunk() -> None:
    a = sc.seal(KEY, SID.key, 1, 1, FLAG_KEYFRAME, MEDIA)
    b = sc.seal(KEY, SID.key, 1, 1, FLAG_KEYFRAME, MEDIA)
    assert a[:sc.NONCE_BYTES] != b[:sc.NONCE_BYTES] and a != b


def test_the_end_marker_is_not_sealed() -> None:
    end = sign_end(BC, SID, 99, 5)
    assert end.payload == b"" and verify_chunk(SID, end)


def test_key_text_is_strict() -> None:
    assert sc.key_from_text(sc.key_text(KEY)) == KEY
    text = sc.key_text(KEY)
    for bad in ("", text[:-1], text + "A", text[:-1] + "=", text[:-1] + "é", "+" * 43, "/" * 43):
        with pytest.raises(sc.ContentKeyError):
            sc.key_from_text(bad)
    # 43 characters hold 258 bits: the last one's 2 spare bits set spell the same bytes
    # another way; only the canonical spelling is the key
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other = text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1]
    import base64
    assert base64.urlsafe_b64decode(other + "=") == KEY
    with pytest.raises(sc.ContentKeyError):
        sc.key_from_text(other)


def test_an_encrypted_streams_chunks_stay_under_the_payload_cap() -> None:
    from oasis.core.wire import MAX_CHUNK_PAYLOAD

    ch = TsChunker(chunk_ms=1000, max_chunk_bytes=MAX_CHUNK_PAYLOAD - sc.OVERHEAD)
    packet = bytes([0x47]) + bytes(187)
    out = ch.feed(packet * 12_000, 0.0)  # 2.26 MB with no cut point: cut at the cap
    assert out and all(len(m.payload) + sc.OVERHEAD <= MAX_CHUNK_PAYLOAD for m in out)


# ---- the descriptor's flag -------------------------------------------------------------

def _desc(**kw: object) -> Descriptor:
    return sign_descriptor(BC, Descriptor(SID, 1500, 100, 4, 1_700_000_000_000,
                                          origin="http://127.0.0.1:8000/origin", **kw))  # type: ignore[arg-type]


#: a descriptor signed before the flag existed (tests/core/test_core_descriptor.py's
#: ``full()`` at 8639f29): its bytes, and so its signature, must still hold
BEFORE = ('{"v":1,"stream":"sf6mh5yaovfwtboalbrod6r44nkuxdsqrb4whwla7j2u45ctng6q.live","bitrate_kbps":1500,'
          '"chunk_ms":100,"substreams":4,"issued_at_ms":1700000000000,"origin":"http://127.0.0.1:8000/origin",'
          '"cdn":["https://cdn.example/o"],"tickets":"http://127.0.0.1:8000/tickets","price_per_mb":'
          '1000000000000000,"epoch_length":10,"chain_id":31337,"contract":"0xabababababababababababababababababababab",'
          '"sig":"b8e423019a09583c4a82591e14c1e5618f0185aaf26e6eab02d7522bb948c6de421935863012f4b33b56d5af554eae22e3'
          'fcbbbfed4da3ad437939cb60ee4a07"}')


def test_a_descriptor_signed_before_the_flag_still_verifies() -> None:
    d = descriptor_from_json(BEFORE.encode())
    assert not d.encrypted and verify_descriptor(d, SID)
    assert "encrypted" not in d.to_json()  # and its JSON is as it was


def test_the_flag_is_signed() -> None:
    d = _desc(encrypted=True)
    assert verify_descriptor(d, SID)
    back = descriptor_from_json(json.dumps(d.to_json()).encode())
    assert back.encrypted and verify_descriptor(back, SID)
    stripped = dataclasses.replace(d, encrypted=False)  # a relay that says "plain"
    assert not verify_descriptor(stripped, SID)
    raw = d.to_json()
    del raw["encrypted"]
    assert not verify_descriptor(descriptor_from_json(json.dumps(raw).encode()), SID)
    added = _desc()
    raw = added.to_json() | {"encrypted": True}  # one that says "sealed" of a plain stream
    assert not verify_descriptor(descriptor_from_json(json.dumps(raw).encode()), SID)


@pytest.mark.parametrize("value", [1, "true", None, [True]])
def test_the_flag_is_a_json_boolean(value: object) -> None:
    raw = _desc(encrypted=True).to_json() | {"encrypted": value}
    with pytest.raises(DescriptorError):
        descriptor_from_json(json.dumps(raw).encode())


# ---- the key in a link ---------------------------------------------------------------

BOOT = Bootstrap(BC.public, "127.0.0.1", 9000)


def test_a_link_carries_the_key() -> None:
    d = _desc(encrypted=True)
    text = StreamLink(SID, d, (BOOT,), None, KEY).format()
    assert f"k={sc.key_text(KEY)}" in text
    back = parse_link(text)
    assert back.key == KEY and back.descriptor is not None and back.descriptor.encrypted
    short = parse_link(StreamLink(SID, None, (BOOT,), None, KEY).format())
    assert short.key == KEY and short.descriptor is None
    assert parse_link(StreamLink(SID, d, (BOOT,), None).format()).key is None  # (a relay's link)


def test_bad_keys_in_links_are_refused() -> None:
    d = _desc(encrypted=True)
    text = StreamLink(SID, d, (BOOT,), None, KEY).format()
    with pytest.raises(LinkError) as e:
        parse_link(text + "&k=" + sc.key_text(KEY))
    assert e.value.code == "bad_query"
    for bad in ("", "abc", sc.key_text(KEY)[:-2], "%00" * 43):
        with pytest.raises(LinkError) as e:
            parse_link(text.rsplit("&k=", 1)[0] + "&k=" + bad)
        assert e.value.code == "bad_key", bad
    # a ';' is no separator to the parser: "t=...;k=KEY" sent the key to the tracker
    short = StreamLink(SID, None, (BOOT,), "http://127.0.0.1:7000/tracker").format()
    with pytest.raises(LinkError) as e:
        parse_link(short + ";k=" + sc.key_text(KEY))
    assert e.value.code == "bad_query"
    plain = StreamLink(SID, _desc(), (BOOT,), None, KEY).format()
    with pytest.raises(LinkError) as e:  # a key beside a descriptor that says "plain"
        parse_link(plain)
    assert e.value.code == "bad_key"
