"""Signed announces on the core Tracker: only a peer moves itself, only the stream key speaks for it."""

from __future__ import annotations

import dataclasses
import random

import pytest

from oasis.core.announce import (
    Announce,
    AnnounceError,
    sign_announce,
    verified_peer_records,
    verify_announce,
)
from oasis.core.descriptor import Descriptor, sign_descriptor
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.core.tracker import Tracker, TrackerRefused

NOW = 1_700_000_000.0
IP = "127.0.0.1"


def ident(i: int) -> Identity:
    return Identity.from_private_bytes(random.Random(i).randbytes(32))


BC, ALICE, MALLORY = ident(1), ident(2), ident(3)
SID = StreamId(BC.public, "live")


def ann(who: Identity, t: float = NOW, **kw: object) -> Announce:
    return sign_announce(who, SID, kw.pop("host", IP), kw.pop("port", 4433),  # type: ignore[arg-type]
                         int(t * 1000), **kw)  # type: ignore[arg-type]


def desc(who: Identity, sid: StreamId = SID, origin: str = "http://127.0.0.1:1/origin",
         issued: float = NOW) -> Descriptor:
    d = Descriptor(sid, 1000, 100, 4, int(issued * 1000), origin=origin)
    if who.public == sid.broadcaster:
        return sign_descriptor(who, d)
    return dataclasses.replace(d, signature=who.sign(d.signing_bytes()))


def refused(t: Tracker, a: Announce, code: str, *, src: str = IP, now: float = NOW,
            d: Descriptor | None = None) -> None:
    with pytest.raises(TrackerRefused) as e:
        t.submit(a, src, now, d)
    assert e.value.code == code and 400 <= e.value.status < 500


def test_signature_binds_every_field() -> None:
    a = ann(ALICE, area="FR")
    assert verify_announce(a)
    for change in ({"port": 4434}, {"host": "127.0.0.2"}, {"area": "US"}, {"leaving": True},
                   {"time_ms": a.time_ms + 1}, {"peer": MALLORY.public},
                   {"stream": StreamId(BC.public, "other")}):
        assert not verify_announce(dataclasses.replace(a, **change)), change


def test_bad_fields_are_refused_before_signing() -> None:
    for kw in ({"host": "example.com"}, {"host": "0.0.0.0"}, {"port": 0}, {"port": 70000},
               {"area": "x" * 33}, {"area": "a\nb"}):
        with pytest.raises(AnnounceError):
            ann(ALICE, **kw)


def test_submit_accepts_a_signed_announce_and_hands_out_signed_records() -> None:
    t = Tracker()
    t.submit(ann(BC), IP, NOW, desc(BC))
    got = t.submit(ann(ALICE), IP, NOW)
    assert [p.peer_id for p in got] == [BC.peer_id] and got[0].record is not None
    recs = verified_peer_records(SID, [p.record.record() for p in got if p.record], NOW)
    assert [r.peer_id for r in recs] == [BC.peer_id]
    assert t.descriptors[str(SID)].origin == "http://127.0.0.1:1/origin"


def test_forged_signature_refused_and_counted() -> None:
    t = Tracker()
    forged = dataclasses.replace(ann(MALLORY), peer=ALICE.public)  # Alice's id, Mallory's signature
    refused(t, forged, "bad_signature")
    assert t.counters["refused_signature"] == 1 and t.entries() == 0


def test_stale_and_future_announces_refused() -> None:
    t = Tracker()
    refused(t, ann(ALICE, NOW - 60), "stale")
    refused(t, ann(ALICE, NOW + 60), "stale")
    assert t.counters["refused_stale"] == 2


def test_replay_refused_even_after_a_leave() -> None:
    t = Tracker()
    first = ann(ALICE, NOW)
    t.submit(first, IP, NOW)
    refused(t, first, "replay", now=NOW + 1)
    t.submit(ann(ALICE, NOW + 2, leaving=True), IP, NOW + 2)
    refused(t, ann(ALICE, NOW + 1), "replay", now=NOW + 3)  # an older join, replayed
    assert t.counters["refused_replay"] == 2 and t.entries() == 0


def test_a_stranger_cannot_evict_a_peer() -> None:
    t = Tracker()
    t.submit(ann(ALICE), IP, NOW)
    evict = dataclasses.replace(ann(MALLORY, NOW + 1, leaving=True), peer=ALICE.public)
    refused(t, evict, "bad_signature", now=NOW + 1)
    assert ALICE.peer_id in t.streams[str(SID)].peers


def test_only_the_source_address_may_be_announced() -> None:
    t = Tracker()
    t.submit(ann(ALICE, host="127.0.0.1"), "::ffff:127.0.0.1", NOW)  # mapped IPv4 is the same
    # Another host's address (make others dial 10.1.2.3) is answered -- a NATed node
    # announces its private address until peers tell it the public one -- never listed.
    got = t.submit(ann(MALLORY, NOW + 1, host="10.1.2.3"), IP, NOW + 1)
    assert [p.peer_id for p in got] == [ALICE.peer_id]
    assert MALLORY.peer_id not in t.streams[str(SID)].peers
    assert t.counters["answered_unlisted"] == 1
    assert all(p.host != "10.1.2.3" for p in t.submit(ann(ident(4), NOW + 2), IP, NOW + 2))
    # a leave naming another host's address is refused outright
    refused(t, ann(MALLORY, NOW + 3, host="10.1.2.3", leaving=True), "address_mismatch", now=NOW + 3)
    assert t.counters["refused_address"] == 1


def test_broadcaster_fields_only_under_the_stream_key() -> None:
    t = Tracker()
    t.submit(ann(BC), IP, NOW, desc(BC))
    # Mallory signs a descriptor pointing newcomers at her "origin": refused, counted.
    refused(t, ann(MALLORY), "bad_descriptor", d=desc(MALLORY, origin="http://127.0.0.9/evil"))
    # A descriptor of another stream (validly signed by its own key) is not this stream's.
    other = StreamId(MALLORY.public, "live")
    refused(t, ann(MALLORY, NOW + 1), "bad_descriptor", now=NOW + 1, d=desc(MALLORY, other))
    # An older (replayed) descriptor of the real stream does not replace the newer one.
    t.submit(ann(BC, NOW + 2), IP, NOW + 2, desc(BC, origin="http://127.0.0.1:2/o", issued=NOW + 2))
    t.submit(ann(ALICE, NOW + 3), IP, NOW + 3, desc(BC, issued=NOW))
    assert t.descriptors[str(SID)].origin == "http://127.0.0.1:2/o"
    assert t.counters["refused_descriptor"] == 2


def test_records_not_signed_for_this_stream_are_not_dialled() -> None:
    good = ann(ALICE).record()
    other = sign_announce(ALICE, StreamId(MALLORY.public, "x"), IP, 1, int(NOW * 1000)).record()
    bad_sig = dict(good, port=4999)  # the tracker (or anyone) changed the address
    old = ann(ALICE, NOW - 1000).record()
    junk = [None, 5, {"peer_id": 1}, dict(good, extra=1), dict(good, port=1e400)]
    got = verified_peer_records(SID, [good, other, bad_sig, old, *junk], NOW)
    assert [(a.peer_id, a.port) for a in got] == [(ALICE.peer_id, 4433)]


def test_rate_limit_keys_group_an_ipv6_64() -> None:
    from oasis.core.tracker import source_key
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert source_key("::ffff:10.0.0.1") == "10.0.0.1" == source_key("10.0.0.1")
    assert source_key("not an address" * 10) == ("not an address" * 10)[:64]
