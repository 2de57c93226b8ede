"""The admission bookkeeping on its own: Retry packets, tokens, per-source rates, the half-open table."""

from __future__ import annotations

import os

from aioquic.quic.packet import QuicProtocolVersion, encode_quic_retry

from oasis.node.admission import (
    HalfOpenTable,
    RatePerSource,
    RecentlySeen,
    RetryTokens,
    encode_retry,
)


def test_retry_packets_are_aioquics_byte_for_byte() -> None:
    for version in (QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2):
        scid, dcid, odcid, token = os.urandom(8), os.urandom(8), os.urandom(12), os.urandom(50)
        ours = encode_retry(version, scid, dcid, odcid, token)
        theirs = encode_quic_retry(version=version, source_cid=scid, destination_cid=dcid,
                                   original_destination_cid=odcid, retry_token=token)
        assert ours == theirs


def test_a_token_checks_out_only_for_its_address_cid_and_time() -> None:
    t = RetryTokens(lifetime=10.0)
    addr, odcid, cid = ("127.0.0.1", 4433), os.urandom(8), os.urandom(8)
    token = t.issue(addr, odcid, cid, 100.0)
    assert t.check(addr, token, cid, 105.0) == odcid
    assert t.check(("127.0.0.1", 4434), token, cid, 105.0) is None  # another port
    assert t.check(("127.0.0.2", 4433), token, cid, 105.0) is None  # another IP
    assert t.check(addr, token, os.urandom(8), 105.0) is None  # another connection id
    assert t.check(addr, token, cid, 111.0) is None  # expired
    assert t.check(addr, token[:-1] + bytes([token[-1] ^ 1]), cid, 105.0) is None  # forged
    assert t.check(addr, b"", cid, 105.0) is None and t.check(addr, os.urandom(60), cid, 105.0) is None
    assert RetryTokens().check(addr, token, cid, 105.0) is None  # another endpoint's secret
    v6 = ("::1", 4433)
    assert t.check(v6, t.issue(v6, odcid, cid, 1.0), cid, 2.0) == odcid


def test_rate_per_source_refills_and_forgets_the_least_recent() -> None:
    r = RatePerSource(rate=10.0, burst=5.0, max_sources=2)
    assert [r.allow("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert r.allow("b", 0.0)  # another source has its own bucket
    assert r.allow("a", 0.1) and not r.allow("a", 0.1)  # 0.1 s at 10/s = one more
    r.allow("c", 0.1)  # a third source: "b" (least recent) is forgotten
    assert len(r._buckets) == 2


def test_recently_seen_keys_expire_and_are_bounded() -> None:
    r = RecentlySeen(window=0.25, max_keys=3)
    r.add(b"a", 0.0)
    assert r.seen(b"a", 0.1) and not r.seen(b"a", 0.25) and not r.seen(b"b", 0.1)
    for i, k in enumerate((b"b", b"c", b"d", b"e")):
        r.add(k, 0.2 + i * 0.001)
    assert len(r) == 3 and not r.seen(b"a", 0.21) and not r.seen(b"b", 0.21)  # the oldest went
    assert r.seen(b"e", 0.3)
    r.add(b"f", 10.0)  # the expired ones go as a new one comes
    assert len(r) == 1 and r.seen(b"f", 10.1)


def test_half_open_table_counts_per_ip_and_keeps_age_order() -> None:
    h: HalfOpenTable[str] = HalfOpenTable(cap=3, per_ip=2)
    h.add("l1", "ip1")
    h.add("l2", "ip1")
    assert h.ip_full("ip1") and not h.ip_full("ip2") and not h.full()
    h.add("l3", "ip2")
    assert h.full() and h.victim() == "l1" and "l1" in h
    h.discard("l1")
    h.discard("l1")  # twice is harmless
    assert not h.ip_full("ip1") and "l1" not in h and h.victim() == "l2" and len(h) == 2


def test_half_open_victim_is_the_oldest_of_the_busiest_address() -> None:
    h: HalfOpenTable[str] = HalfOpenTable(cap=4, per_ip=3)
    assert h.victim() is None
    h.add("honest", "ip0")  # the oldest, alone at its address
    for i in range(3):
        h.add(f"a{i}", "ip1")
    assert h.victim() == "a0"  # not the oldest overall
    h.discard("a0")
    h.discard("a1")
    h.add("b0", "ip2")  # one each: plain age order
    assert h.victim() == "honest"
