"""Signed provider records: layout, strict parsing, signatures and time rules."""

from __future__ import annotations

import random

import pytest
from dhtkit import T0
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oasis.core.dhtrecord import (
    MAX_RECORD,
    RecordError,
    check_record,
    node_id,
    parse_record,
    sign_record,
    stream_key,
)
from oasis.core.identity import Identity, verify
from oasis.core.stream import StreamId

RNG = random.Random(7)
B = Identity.from_private_bytes(RNG.randbytes(32))
P = Identity.from_private_bytes(RNG.randbytes(32))
SID = StreamId(B.public, "live")
EXP = int((T0 + 600) * 1000)


def rec(seq: int = 1, exp: int = EXP, addrs=(("203.0.113.7", 4433),), who: Identity = P):
    return sign_record(who, SID, seq, exp, list(addrs))


def check(raw: bytes, now: float = T0):
    return check_record(raw, now, verify, max_ttl=1800, skew=60)


def test_round_trip_and_check() -> None:
    r = rec(addrs=(("203.0.113.7", 4433), ("2001:db8::7", 4433)))
    got = check(r.raw)
    assert got == r and got.key == stream_key(SID) and not got.is_stream_record
    assert rec(who=B).is_stream_record
    assert len(rec(addrs=(("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 1),) * 2).raw) <= MAX_RECORD


def test_ids_are_hashed_from_keys() -> None:
    assert node_id(P.public) != int.from_bytes(P.public, "big")
    assert node_id(P.public) == node_id(bytes(P.public))
    assert stream_key(SID) != stream_key(StreamId(B.public, "other"))


@pytest.mark.parametrize("flip", [30, 60, 90, 100, -1])
def test_any_changed_byte_fails(flip: int) -> None:
    raw = bytearray(rec().raw)
    raw[flip] ^= 1
    with pytest.raises(RecordError) as info:
        check(bytes(raw))
    assert info.value.code in ("bad_signature", "bad_stream", "bad_addrs", "truncated",
                               "bad_length", "bad_tag", "too_long", "expired")


def test_signed_by_another_key_than_it_names() -> None:
    r = rec()
    forged = r.raw[:-64] + B.sign(r.raw[:-64])
    with pytest.raises(RecordError, match="not signed") as info:
        check(forged)
    assert info.value.code == "bad_signature"


def test_time_rules() -> None:
    with pytest.raises(RecordError) as info:
        check(rec(exp=int(T0 * 1000)).raw)
    assert info.value.code == "expired"
    with pytest.raises(RecordError) as info:
        check(rec(exp=int((T0 + 1800 + 61) * 1000)).raw)
    assert info.value.code == "too_long"
    check(rec(exp=int((T0 + 1800 + 59) * 1000)).raw)


def test_strict_layout() -> None:
    raw = rec().raw
    for n in range(len(raw)):
        with pytest.raises(RecordError):
            parse_record(raw[:n])
    with pytest.raises(RecordError) as info:
        parse_record(raw + b"\x00")
    assert info.value.code == "bad_length"
    with pytest.raises(RecordError) as info:
        parse_record(b"x" * (MAX_RECORD + 1))
    assert info.value.code == "too_large"


@pytest.mark.parametrize("addrs", [(), (("203.0.113.1", 1),) * 3, (("host.example", 1),),
                                   (("0.0.0.0", 1),), (("224.0.0.1", 1),), (("203.0.113.1", 0),),
                                   (("2001:DB8::1", 1),), (("::", 1),),
                                   (("255.255.255.255", 1),), (("fe80::1%eth0", 1),)])
def test_addresses_must_be_one_or_two_canonical_unicast_literals(addrs) -> None:
    with pytest.raises(RecordError):
        rec(addrs=addrs)


def test_a_non_canonical_host_on_the_wire_is_refused() -> None:
    r = rec(addrs=(("2001:db8::1", 9),))
    layout = r.raw[:-64].replace(b"\x0b2001:db8::1", b"\x0b2001:DB8::1")
    with pytest.raises(RecordError) as info:
        parse_record(layout + P.sign(layout))
    assert info.value.code == "bad_addrs"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_parse_raises_only_record_error(data: st.DataObject) -> None:
    raw = bytearray(rec(addrs=(("203.0.113.7", 4433), ("2001:db8::7", 1))).raw)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw)))
        op = data.draw(st.integers(0, 3))
        if op == 0 and raw:
            raw[pos % len(raw)] = data.draw(st.integers(0, 255))
        elif op == 1:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == 2:
            del raw[pos:pos + data.draw(st.integers(1, 8))]
        else:
            del raw[pos:]
    try:
        check(bytes(raw))
    except RecordError:
        pass
