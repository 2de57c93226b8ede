"""The DHT core, driven by hand: requests and answers, hostile answers, the record store,
bootstrap, publishing, timers. Virtual time, no sockets."""

from __future__ import annotations

import ipaddress
import json
import random

import pytest
from dhtkit import T0, host, keys_in_bucket, node_of, sends, split
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oasis.core import dht as dh
from oasis.core import wire
from oasis.core.descriptor import Descriptor, sign_descriptor
from oasis.core.dhtrecord import block_of, check_record, node_id, prefix_of, sign_record, stream_key
from oasis.core.identity import Identity, verify
from oasis.core.stream import StreamId

RNG = random.Random(11)
ME = Identity.from_private_bytes(RNG.randbytes(32))
B = Identity.from_private_bytes(RNG.randbytes(32))
SID = StreamId(B.public, "live")
SKEY = stream_key(SID)


def new(config: dh.DhtConfig | None = None, identity: Identity | None = ME) -> dh.Dht:
    return dh.Dht(ME.public, identity=identity, config=config, rng=random.Random(3), now=T0)


def populate(d: dh.Dht, keys: list[bytes], start: int = 0) -> None:
    """Each key asks us something (a PING): an authenticated link, an observed address."""
    for i, k in enumerate(keys, start):
        d.on_message(k, host(i), 4433, wire.DhtPing(qid=i), T0)
    d.actions()


def answer_all(d: dh.Dht, out: list[dh.Send], now: float, make) -> list[dh.DhtAction]:
    """Answer every request in ``out`` with ``make(send)`` (None: stay silent)."""
    for s in out:
        msg = make(s)
        if msg is not None:
            assert s.peer is not None
            d.on_message(s.peer, s.host, s.port, msg, now)
    return d.actions()


def qid(s: dh.Send) -> int:
    return s.message.qid  # type: ignore[attr-defined]


def pid(p: Identity, sid: StreamId = SID, *, seq: int = 1, h: str = "203.0.113.9",
        ttl: float = 600, now: float = T0) -> bytes:
    return sign_record(p, sid, seq, int((now + ttl) * 1000), [(h, 4433)]).raw


# ---- answers to our requests ---------------------------------------------------------

def test_an_answer_from_another_key_than_the_one_asked_is_refused() -> None:
    d = new()
    a, b = keys_in_bucket(ME.public, 0, 2)
    populate(d, [a])
    d.find_node(RNG.randbytes(32), T0)
    (req,) = sends(d)
    assert req.peer == a and isinstance(req.message, wire.DhtFindNode)
    d.on_message(b, req.host, 4433, wire.DhtNodesMsg(qid=qid(req), nodes=[]), T0 + 0.1)
    assert d.counters.answers_unsolicited == 1 and d.counters.answers_in == 0
    assert d.pending() == 1  # still waiting for a's own answer
    d.on_message(a, req.host, 4433, wire.DhtNodesMsg(qid=qid(req), nodes=[]), T0 + 0.2)
    _, done = split(d.actions())
    assert done and done[0].ok and done[0].nodes == ((a, host(0), 4433),)


def test_entries_not_nearer_the_target_than_the_answerer_are_dropped_and_scored() -> None:
    d = new(dh.DhtConfig(paths=1))
    target = RNG.randbytes(32)
    t = int.from_bytes(target, "big")
    pool = [RNG.randbytes(32) for _ in range(400)]
    pool.sort(key=lambda k: node_id(k) ^ t)
    near, answerer, far = pool[:5], pool[200], pool[300:320]
    populate(d, [answerer])
    for round_ in range(12):
        d.find_node(target, T0 + round_)
        (req,) = sends(d)
        entries = [node_of(k, 100 + j) for j, k in enumerate(far)] + [node_of(near[0], 99)]
        follow, _ = split(answer_all(d, [req], T0 + round_ + 0.1,
                                     lambda s, e=entries: wire.DhtNodesMsg(qid=qid(s), nodes=e)))
        if round_ == 0:
            assert d.counters.entries_not_closer == 20
            assert [s.peer for s in follow] == [near[0]]  # only the nearer entry is asked
        if answerer in d.bans:
            break
        answer_all(d, follow, T0 + round_ + 0.2, lambda s: None)
        d.handle_timer(T0 + round_ + 0.9)
        d.actions()
    assert answerer in d.bans and d.table.get(answerer) is None
    assert d.counters.peers_banned == 1 and round_ <= 10  # ~10 bad answers (score decays)
    # a banned key is not heard any more
    d.on_message(answerer, host(0), 4433, wire.DhtPing(qid=1), T0 + 20)
    assert d.counters.from_banned == 1 and not d.actions()


def test_bad_addresses_duplicates_and_ourselves_in_an_answer() -> None:
    d = new(dh.DhtConfig(paths=1))
    target = ME.public  # entries near us: the answerer must be farther
    a = keys_in_bucket(ME.public, 0, 1)[0]
    near = keys_in_bucket(ME.public, 5, 2)
    populate(d, [a])
    d.find_node(node_id(ME.public).to_bytes(32, "big"), T0)
    (req,) = sends(d)
    entries = [wire.DhtNode(key=near[0], host="0.0.0.0", port=1),
               wire.DhtNode(key=near[0], host="203.0.113.1", port=1),
               wire.DhtNode(key=near[1], host="203.0.113.2", port=1),
               wire.DhtNode(key=near[1], host="203.0.113.2", port=1),
               wire.DhtNode(key=ME.public, host="203.0.113.3", port=1)]
    del target
    follow, _ = split(answer_all(d, [req], T0 + 0.1,
                                 lambda s: wire.DhtNodesMsg(qid=qid(s), nodes=entries)))
    c = d.counters
    assert (c.entries_bad_address, c.entries_duplicate) == (1, 2)
    assert sorted(s.peer for s in follow if s.peer) == sorted([near[1]])


def test_an_answer_naming_an_ipv6_zone_id_is_not_dialled() -> None:
    # found 2026-12-02: canonical_host took "fe80::1%eth0", so an answer could make a node
    # dial a link-local address on its own interface
    d = new(dh.DhtConfig(paths=1))
    rng = random.Random(99)
    a = keys_in_bucket(ME.public, 0, 1, rng)[0]
    near = keys_in_bucket(ME.public, 5, 2, rng)
    populate(d, [a])
    d.find_node(node_id(ME.public).to_bytes(32, "big"), T0)
    (req,) = sends(d)
    entries = [wire.DhtNode(key=near[0], host="fe80::1%eth0", port=1),
               wire.DhtNode(key=near[1], host="2001:db8::2", port=1)]
    follow, _ = split(answer_all(d, [req], T0 + 0.1,
                                 lambda s: wire.DhtNodesMsg(qid=qid(s), nodes=entries)))
    assert d.counters.entries_bad_address == 1
    assert [(s.peer, s.host) for s in follow if s.peer] == [(near[1], "2001:db8::2")]


def test_forged_and_foreign_records_are_rejected_and_valid_ones_returned() -> None:
    d = new(dh.DhtConfig(paths=1))
    a = keys_in_bucket(ME.public, 0, 1)[0]
    populate(d, [a])
    p1, p2 = (Identity.from_private_bytes(RNG.randbytes(32)) for _ in range(2))
    good = pid(p1)
    forged = good[:-64] + p2.sign(good[:-64])  # names p1, signed by p2
    other = pid(p2, StreamId(B.public, "other"))  # valid, for another stream
    stale = pid(p2, ttl=-1)
    d.find_providers(SID, T0)
    (req,) = sends(d)
    assert isinstance(req.message, wire.DhtGetProviders) and req.message.key == SKEY
    _, done = split(answer_all(d, [req], T0 + 0.1, lambda s: wire.DhtProviders(
        qid=qid(s), records=[forged, other, stale, good, b"junk"], descriptor=b"", nodes=[])))
    assert done and done[0].ok and [r.raw for r in done[0].providers] == [good]
    assert done[0].hops == 1 and done[0].first_found == pytest.approx(0.1)
    assert d.counters.records_rejected == 3 and d.counters.records_expired == 1


def test_request_timeout_follows_the_measured_rtt_with_a_floor() -> None:
    cfg = dh.DhtConfig(paths=1, rtt_floor=0.25)
    d = new(cfg)
    a = keys_in_bucket(ME.public, 0, 1)[0]
    populate(d, [a])
    d.find_node(RNG.randbytes(32), T0)
    (req,) = sends(d)
    assert d.get_timer() == pytest.approx(T0 + cfg.initial_rtt * 2)  # srtt + 4 var, no sample yet
    for i in range(8):  # a fast contact: 50 ms answers
        answer_all(d, [req], T0 + 0.05 + i, lambda s: wire.DhtNodesMsg(qid=qid(s), nodes=[]))
        d.actions()
        d.find_node(RNG.randbytes(32), T0 + 1 + i)
        (req,) = sends(d)
    assert d.get_timer() == pytest.approx(T0 + 8 + cfg.rtt_floor)
    d.handle_timer(T0 + 8 + cfg.rtt_floor)
    assert d.counters.timeouts == 1
    # a late answer is still counted as an answer, not as hostile
    d.on_message(a, host(0), 4433, wire.DhtNodesMsg(qid=qid(req), nodes=[]), T0 + 9)
    assert d.counters.answers_late == 1 and d.counters.answers_unsolicited == 0


def test_a_send_that_reached_another_key_fails_at_once() -> None:
    d = new(dh.DhtConfig(paths=1, alpha=1))
    a, b = keys_in_bucket(ME.public, 0, 2)
    populate(d, [a, b])
    d.find_node(RNG.randbytes(32), T0)
    (req,) = sends(d)
    d.send_failed(req.peer, req.host, req.port, T0 + 0.3)  # e.g. WRONG_PEER at the handshake
    assert d.counters.send_failures == 1
    (nxt,) = sends(d)
    assert nxt.peer != req.peer


def test_lookups_and_pending_requests_are_capped() -> None:
    d = new(dh.DhtConfig(max_lookups=2, max_pending=4, paths=1))
    populate(d, keys_in_bucket(ME.public, 0, 10))
    for _ in range(3):
        d.find_node(RNG.randbytes(32), T0)
    out, done = split(d.actions())
    assert len(out) == 4 and d.pending() == 4  # 3 + 1: the second lookup got one slot
    assert len(done) == 1 and not done[0].ok and d.counters.lookups_refused == 1


def test_lookups_end_by_their_deadline() -> None:
    d = new(dh.DhtConfig(lookup_time=5.0))
    populate(d, keys_in_bucket(ME.public, 0, 30))
    d.find_providers(SID, T0)
    d.actions()
    t = T0
    done: list[dh.LookupDone] = []
    while not done and t < T0 + 20:
        t = d.get_timer() or t + 1
        d.handle_timer(t)
        done = split(d.actions())[1]
    assert done and not done[0].ok and done[0].elapsed <= 5.0 + 1e-9


# ---- requests we answer --------------------------------------------------------------

def test_find_node_answers_only_contacts_nearer_the_target_than_us() -> None:
    d = new()
    keys = [RNG.randbytes(32) for _ in range(200)]
    populate(d, keys)
    asker = keys[0]
    target = RNG.randbytes(32)
    t = int.from_bytes(target, "big")
    d.on_message(asker, host(0), 4433, wire.DhtFindNode(qid=77, target=target), T0 + 1)
    (ans,) = sends(d)
    assert isinstance(ans.message, wire.DhtNodesMsg) and ans.message.qid == 77
    got = [n.key for n in ans.message.nodes]
    assert 0 < len(got) <= 20 and asker not in got
    assert all(node_id(k) ^ t < d.id ^ t for k in got)
    nearer = sorted((c for c in d.table.index.values() if c.nid ^ t < d.id ^ t and c.key != asker),
                    key=lambda c: c.nid ^ t)
    assert got == [c.key for c in nearer[:20]]


def test_a_request_flood_is_cut_at_the_budget_and_banned() -> None:
    d = new()
    flooder = RNG.randbytes(32)
    for i in range(200):
        d.on_message(flooder, host(1), 4433, wire.DhtFindNode(qid=i, target=ME.public), T0)
    assert len(sends(d)) == 60  # the burst
    assert d.counters.requests_over_budget == 40 and flooder in d.bans


def test_add_provider_must_come_from_its_provider_at_one_of_its_addresses() -> None:
    d = new()
    p = Identity.from_private_bytes(RNG.randbytes(32))
    raw = pid(p, h="203.0.113.9")
    d.on_message(RNG.randbytes(32), "203.0.113.9", 4433, wire.DhtAddProvider(record=raw), T0)
    d.on_message(p.public, "198.51.100.1", 4433, wire.DhtAddProvider(record=raw), T0)
    assert d.counters.records_wrong_source == 2 and not d.providers_of(SKEY, T0)
    d.on_message(p.public, "203.0.113.9", 4433, wire.DhtAddProvider(record=raw), T0)
    assert [r.raw for r in d.providers_of(SKEY, T0)] == [raw]
    # same seq again: stale; a higher one replaces it
    d.on_message(p.public, "203.0.113.9", 4433, wire.DhtAddProvider(record=raw), T0 + 1)
    newer = pid(p, seq=2, h="203.0.113.9")
    d.on_message(p.public, "203.0.113.9", 4433, wire.DhtAddProvider(record=newer), T0 + 1)
    assert d.counters.records_stale == 1 and d.counters.records_refreshed == 1
    assert [r.seq for r in d.providers_of(SKEY, T0)] == [2] and d.records == 1
    # expired ones are swept
    d.handle_timer(T0 + 700)
    assert d.records == 0 and not len(d.store) and d.counters.records_evicted_expired == 1


_OWN_RNG = random.Random(12)  # the tests below draw their keys here, not from RNG


def _ident() -> Identity:
    return Identity.from_private_bytes(_OWN_RNG.randbytes(32))


def _add(d: dh.Dht, p: Identity, h: str, *, seq: int = 1, desc: bytes = b"",
         now: float = T0) -> None:
    d.on_message(p.public, h, 4433,
                 wire.DhtAddProvider(record=pid(p, seq=seq, h=h, now=now), descriptor=desc), now)


def _held(d: dh.Dht) -> set[bytes]:
    return {r.provider for r in d.providers_of(SKEY, T0)}


def test_record_floods_hit_every_cap_and_are_counted() -> None:
    cfg = dh.DhtConfig(max_records_per_key=5, max_records_per_publisher=3, max_records=12,
                       request_burst=1000)
    d = new(cfg)
    provs = [Identity.from_private_bytes(RNG.randbytes(32)) for _ in range(12)]

    def add(p: Identity, sid: StreamId, h: str) -> None:
        d.on_message(p.public, h, 4433, wire.DhtAddProvider(record=pid(p, sid, h=h)), T0)

    # one network: 2 records per key
    for i in range(3):
        add(provs[i], SID, f"198.51.100.{i + 1}")
    assert d.counters.records_refused_prefix == 1
    # per key: 5
    for i in range(3, 8):
        add(provs[i], SID, host(i))
    assert len(d.providers_of(SKEY, T0)) == 5 and d.counters.records_refused_full == 2
    # per publisher: 3 keys
    for j in range(4):
        add(provs[8], StreamId(B.public, f"s{j}"), host(8))
    assert d.counters.records_refused_full == 3
    # in all: 12
    for i in range(9, 12):
        for j in range(3):
            add(provs[i], StreamId(B.public, f"t{j}"), host(i))
    assert d.records == 12 and d.counters.records_refused_full == 8
    # a record that would outlive max_record_ttl, or is not signed, is refused
    p = provs[0]
    d.on_message(p.public, "203.0.113.9", 4433,
                 wire.DhtAddProvider(record=pid(p, ttl=3600)), T0)
    assert d.counters.records_expired == 1
    bad = pid(p)[:-1] + b"\x00"
    d.on_message(p.public, "203.0.113.9", 4433, wire.DhtAddProvider(record=bad), T0)
    assert d.counters.records_rejected == 1


def test_a_refresh_cannot_move_a_record_into_a_network_already_at_its_share() -> None:
    # found 2026-12-02: the per-network cap was checked for new records only, so records
    # stored from fresh networks, refreshed (seq + 1) from one network, all landed there
    d = new(dh.DhtConfig(request_burst=1000))
    provs = [_ident() for _ in range(6)]
    for i, p in enumerate(provs):
        _add(d, p, host(i))
    for p in provs:
        _add(d, p, "198.51.100.1", seq=2)
    moved = [r for r in d.providers_of(SKEY, T0) if r.addrs[0][0] == "198.51.100.1"]
    assert len(moved) == 2 and d.counters.records_refused_prefix == 4
    assert d.records == 6  # the others keep their earlier statement until it expires
    # a refresh within its network is no newcomer there
    _add(d, provs[0], "198.51.100.1", seq=3)
    assert d.counters.records_refreshed == 3 and d.counters.records_refused_prefix == 4


def test_store_bytes_are_capped() -> None:
    d = new(dh.DhtConfig(max_store_bytes=1000, request_burst=1000))
    for i in range(10):
        p = Identity.from_private_bytes(RNG.randbytes(32))
        d.on_message(p.public, host(i), 4433,
                     wire.DhtAddProvider(record=pid(p, h=host(i))), T0)
    assert d.records == 1000 // 174 and d.counters.records_refused_full == 10 - d.records


def _descriptor(issued: int = 1, key: Identity = B) -> bytes:
    d = sign_descriptor(B, Descriptor(SID, 1500, 33, 4, issued, origin="http://o.example/origin"))
    if key is not B:
        d = Descriptor(SID, 1500, 33, 4, issued, origin="http://o.example/origin",
                       signature=key.sign(d.signing_bytes()))
    return json.dumps(d.to_json()).encode()


def test_the_broadcaster_record_carries_the_signed_descriptor() -> None:
    d = new()
    other = Identity.from_private_bytes(RNG.randbytes(32))
    d.on_message(other.public, "203.0.113.9", 4433,
                 wire.DhtAddProvider(record=pid(other), descriptor=_descriptor()), T0)
    d.on_message(B.public, "203.0.113.9", 4433,
                 wire.DhtAddProvider(record=pid(B), descriptor=_descriptor(key=other)), T0)
    assert d.counters.descriptors_rejected == 2 and d.records == 0
    d.on_message(B.public, "203.0.113.9", 4433,
                 wire.DhtAddProvider(record=pid(B), descriptor=_descriptor(5)), T0)
    d.on_message(B.public, "203.0.113.9", 4433,
                 wire.DhtAddProvider(record=pid(B, seq=2), descriptor=_descriptor(3)), T0)
    assert d.store.descriptor(SKEY) == _descriptor(5)  # the newest issued wins
    d.on_message(other.public, host(1), 4433, wire.DhtGetProviders(qid=3, key=SKEY), T0)
    (ans,) = sends(d)
    assert isinstance(ans.message, wire.DhtProviders)
    assert ans.message.descriptor == _descriptor(5) and len(ans.message.records) == 1


def test_two_records_from_the_broadcasters_network_do_not_keep_its_stream_record_out() -> None:
    # found 2026-12-02: two valid records from the broadcaster's /24, stored first, made a
    # storer refuse the stream record and with it the descriptor (records_refused_prefix)
    d = new()
    a1, a2 = (_ident() for _ in range(2))
    _add(d, a1, "203.0.113.7")
    _add(d, a2, "203.0.113.8")
    _add(d, B, "203.0.113.1", desc=_descriptor(5))
    assert _held(d) == {a1.public, a2.public, B.public}
    assert d.store.descriptor(SKEY) == _descriptor(5) and d.counters.records_refused_prefix == 0
    # the network's share for everyone else is unchanged: a third viewer there is refused
    _add(d, _ident(), "203.0.113.9")
    assert d.counters.records_refused_prefix == 1 and len(_held(d)) == 3


def test_a_key_filled_in_advance_still_takes_the_stream_record() -> None:
    # found 2026-12-02: 64 throw-away keys on 32 IPv6 /48s filled the stream key's 64 places
    # (the key is computable from the public stream id) and the stream record was refused
    d = new()
    for n in range(32):
        for h in (1, 2):
            _add(d, _ident(), _v6(n, h))
    assert len(_held(d)) == 64
    _add(d, B, "198.51.100.1", desc=_descriptor(5))
    assert B.public in _held(d) and len(_held(d)) == 65  # its own place beside the 64
    assert d.store.descriptor(SKEY) == _descriptor(5)
    # refreshed and re-published with a newer descriptor: still there
    _add(d, B, "198.51.100.1", seq=2, desc=_descriptor(6))
    assert B.public in _held(d) and d.store.descriptor(SKEY) == _descriptor(6)
    assert d.counters.records_refused_full == 0


def _v6(n: int, h: int) -> str:
    return str(ipaddress.ip_address(f"2001:db8:{n:x}::{h}"))  # /48 number n of one /32


def test_a_key_filled_from_few_blocks_gives_way_to_viewers_from_elsewhere() -> None:
    # found 2026-12-02: with the 64 places of the stream key taken in advance (32 /48s),
    # an honest viewer's record was refused too: first come, first kept
    d = new(dh.DhtConfig(request_burst=1000))
    flood = [_ident() for _ in range(64)]
    for i, p in enumerate(flood):
        _add(d, p, _v6(i // 2, i % 2 + 1))
    assert len(_held(d)) == 64
    viewers = [_ident() for _ in range(10)]
    for i, v in enumerate(viewers):  # each from another /16
        _add(d, v, f"{60 + i}.1.2.3")
    held = _held(d)
    assert {v.public for v in viewers} <= held and len(held) == 64
    assert d.counters.records_evicted_crowded == 10 and d.counters.records_refused_full == 0
    assert not held & {p.public for p in flood[:10]}  # the least recently stored went first
    # fresh keys on fresh /48s of the flood's block cannot push them out again
    for n in range(32, 40):
        _add(d, _ident(), _v6(n, 1))
    assert {v.public for v in viewers} <= _held(d) and d.counters.records_refused_full == 8
    # nor can its refreshes: a refresh takes no one's place
    for p in flood[10:20]:
        _add(d, p, _v6(0, 9), seq=2)
    assert {v.public for v in viewers} <= _held(d) and d.counters.records_evicted_crowded == 10
    # a block as crowded as the newcomer's, or one more, is left alone (no swapping round)
    d2 = new(dh.DhtConfig(max_records_per_key=4, request_burst=1000))
    for h in ["60.1.0.1", "60.1.1.1", "61.1.0.1", "62.1.0.1"]:
        _add(d2, _ident(), h)
    _add(d2, _ident(), "61.1.1.1")
    assert d2.counters.records_refused_full == 1
    _add(d2, _ident(), "63.1.0.1")
    assert d2.counters.records_evicted_crowded == 1 and len(_held(d2)) == 4


def test_holding_a_keys_places_takes_as_many_blocks_as_places() -> None:
    # the bound of the rule above: one record from each of 64 /32s holds the key
    d = new(dh.DhtConfig(request_burst=1000))
    for n in range(64):
        _add(d, _ident(), f"2001:{n + 1:x}::1")
    _add(d, _ident(), "198.51.100.1")
    assert d.counters.records_refused_full == 1
    _add(d, B, "198.51.100.2")  # the stream record still has its place
    assert B.public in _held(d)


_POOL = [_ident() for _ in range(8)]
_BCS = [_ident() for _ in range(2)]
_SIDS = [StreamId(b.public, n) for b in _BCS for n in ("a", "b")]
_HOSTS = ["60.1.0.1", "60.1.0.2", "60.1.1.1", "60.2.0.1", "61.1.0.1", "2001:db8:1::1",
          "2001:db8:2::1", "2001:db9::1"]
_DESCS = {sid: json.dumps(sign_descriptor(_BCS[i // 2], Descriptor(sid, 1500, 33, 4, 1)).to_json()
                          ).encode() for i, sid in enumerate(_SIDS)}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_POOL) + 1), st.integers(0, len(_SIDS) - 1),
                          st.integers(0, len(_HOSTS) - 1), st.integers(1, 4),
                          st.sampled_from([0, 0, 0, 1, 30, 300, 700])), max_size=80))
def test_no_sequence_of_adds_breaks_the_stores_caps_or_keeps_a_stream_record_out(
        script: list[tuple[int, int, int, int, int]]) -> None:
    cfg = dh.DhtConfig(max_keys=3, max_records=7, max_records_per_key=4, per_key_prefix=2,
                       max_records_per_publisher=2, max_store_bytes=2500, request_burst=1e9)
    d = new(cfg)
    store = d.store
    now = T0
    for who, s_i, h_i, seq, dt in script:
        now += dt
        sid, h = _SIDS[s_i], _HOSTS[h_i]
        ident = _BCS[s_i // 2] if who >= len(_POOL) else _POOL[who]
        key = stream_key(sid)
        stream = ident.public == sid.broadcaster
        d.handle_timer(now)  # sweeps
        was = key in store
        over = store._by_publisher.get(ident.public, 0) >= cfg.max_records_per_publisher
        held = {p: r.seq for p, r in store.keys[key].records.items()} if was else {}
        # a fresh stream record may be refused only under a key new to a store full (of keys
        # or records), from a publisher over its keys, or when bytes are short (not asserted)
        must = (stream and held.get(ident.public, 0) < seq
                and store.bytes + 650 <= cfg.max_store_bytes  # a record and a descriptor fit
                and (was or (not over and len(store) < cfg.max_keys
                             and store.records < cfg.max_records)))
        d.on_message(ident.public, h, 4433, wire.DhtAddProvider(
            record=pid(ident, sid, seq=seq, h=h, now=now),
            descriptor=_DESCS[sid] if stream else b""), now)
        d.actions()
        if must:
            assert ident.public in {r.provider for r in store.get(key, now)}
            assert store.descriptor(key) == _DESCS[sid]
        # every count matches what is held, every cap holds
        sts = list(store.keys.values())
        assert store.records == sum(len(x.records) for x in sts) <= cfg.max_records
        assert store.bytes == sum(len(r.raw) for x in sts for r in x.records.values()) \
            + sum(len(x.descriptor) for x in sts) <= cfg.max_store_bytes
        assert len(store) <= cfg.max_keys and all(x.records for x in sts)
        pubs: dict[bytes, int] = {}
        for x in sts:
            others = [r for r in x.records.values() if not r.is_stream_record]
            assert len(others) <= cfg.max_records_per_key
            nets = [prefix_of(r.addrs[0][0]) for r in others]
            assert all(nets.count(n) <= cfg.per_key_prefix for n in nets)
            for prov in x.records:
                pubs[prov] = pubs.get(prov, 0) + 1
        assert pubs == store._by_publisher
        assert all(v <= cfg.max_records_per_publisher for v in pubs.values())


def test_blocks_are_ipv4_16s_and_ipv6_32s() -> None:
    assert block_of("198.51.7.1") == block_of("198.51.200.9") != block_of("198.52.7.1")
    assert block_of("2001:db8:1::1") == block_of("2001:db8:ffff::9") != block_of("2001:db9::1")
    assert block_of("::ffff:198.51.100.7") == block_of("198.51.0.1")


def test_when_the_store_is_full_the_stream_record_takes_room_from_its_own_key() -> None:
    d = new(dh.DhtConfig(max_records=6, request_burst=1000))
    other = StreamId(_ident().public, "other")
    for i in range(3):  # another stream's records: left alone
        p = _ident()
        d.on_message(p.public, host(20 + i), 4433,
                     wire.DhtAddProvider(record=pid(p, other, h=host(20 + i))), T0)
    crowd = [_ident() for _ in range(3)]
    _add(d, crowd[0], "192.0.2.1")
    _add(d, crowd[1], host(1))
    _add(d, crowd[2], "192.0.2.2")
    assert d.records == 6
    _add(d, B, "198.51.100.1", desc=_descriptor(5))
    # the most crowded network's least recently stored record made room
    assert _held(d) == {crowd[1].public, crowd[2].public, B.public}
    assert d.records == 6 and d.counters.records_evicted_crowded == 1
    assert d.store.descriptor(SKEY) == _descriptor(5)
    assert len(d.providers_of(stream_key(other), T0)) == 3
    # a storer full of keys still refuses a new key's stream record
    d2 = new(dh.DhtConfig(max_keys=1))
    _add(d2, crowd[0], "192.0.2.1")
    second = StreamId(B.public, "second")
    d2.on_message(B.public, "198.51.100.1", 4433,
                  wire.DhtAddProvider(record=pid(B, second, h="198.51.100.1")), T0)
    assert d2.counters.records_refused_full == 1


def test_a_flood_of_throw_away_keys_from_one_block_gives_way_to_a_stream_from_elsewhere() -> None:
    # left open 2026-12-02: one host filled a storer's keys with throw-away streams, and every
    # stream new to the storer -- its broadcaster's record and descriptor included -- was refused
    d = new(dh.DhtConfig(max_keys=16, request_burst=1e9))
    flood = [_ident() for _ in range(4)]  # 8 keys per publisher: 4 throw-away keys cover 16+
    for i in range(20):
        p = flood[i % 4]
        _add_key(d, p, StreamId(p.public, f"junk{i}"), f"203.0.{i}.7")
    assert len(d.store) == 16 and d.counters.records_refused_full == 4
    first_junk = stream_key(StreamId(flood[0].public, "junk0"))
    assert first_junk in d.store
    # the broadcaster's stream record, from another block: the flood's oldest key makes way
    _add(d, B, "198.51.100.1", desc=_descriptor(5))
    assert _held(d) == {B.public} and d.store.descriptor(SKEY) == _descriptor(5)
    assert d.counters.keys_evicted_crowded == 1 and first_junk not in d.store
    assert len(d.store) == 16 and d.records == 16
    # the flooding block cannot take it back: a new key from there is refused
    p = _ident()
    _add_key(d, p, StreamId(p.public, "more"), "203.0.99.7")
    assert d.counters.records_refused_full == 5 and SKEY in d.store
    # keys spread over blocks give way to nobody: first come, first kept
    even = new(dh.DhtConfig(max_keys=4, request_burst=1e9))
    for i in range(4):
        p = _ident()
        _add_key(even, p, StreamId(p.public, "s"), host(i << 16))
    _add(even, B, "198.51.100.1", desc=_descriptor(5))
    assert SKEY not in even.store and even.counters.keys_evicted_crowded == 0
    assert even.counters.records_refused_full == 1


def _add_key(d: dh.Dht, p: Identity, sid: StreamId, h: str) -> None:
    d.on_message(p.public, h, 4433, wire.DhtAddProvider(record=pid(p, sid, h=h)), T0)


def test_a_provider_answers_with_its_own_record_and_descriptor_before_any_storer_has_them() -> None:
    # the broadcaster alone, nobody to publish to yet: a short link's viewer bootstraps at it
    d = dh.Dht(B.public, identity=B, rng=random.Random(3), now=T0)
    d.provide(SID, [("203.0.113.9", 4433)], T0, descriptor=_descriptor(7))
    d.actions()
    asker = Identity.from_private_bytes(RNG.randbytes(32))
    d.on_message(asker.public, host(1), 4433, wire.DhtGetProviders(qid=9, key=SKEY), T0 + 1)
    (ans,) = sends(d)
    assert isinstance(ans.message, wire.DhtProviders)
    assert ans.message.descriptor == _descriptor(7)
    (raw,) = ans.message.records
    rec = check_record(raw, T0 + 1, verify, max_ttl=1800, skew=60)
    assert rec.key == SKEY
    assert rec.provider == B.public and rec.addrs == (("203.0.113.9", 4433),)
    # another stream's key: nothing of ours
    d.on_message(asker.public, host(1), 4433, wire.DhtGetProviders(qid=10, key=b"\x01" * 32), T0 + 1)
    (ans,) = sends(d)
    assert isinstance(ans.message, wire.DhtProviders)
    assert ans.message.records == [] and ans.message.descriptor == b""


# ---- bootstrap and publishing --------------------------------------------------------

def test_bootstrap_from_bare_addresses_then_a_self_lookup() -> None:
    d = new()
    seed = keys_in_bucket(ME.public, 0, 1)[0]
    nearer = keys_in_bucket(ME.public, 4, 3)
    lid = d.bootstrap([("203.0.113.1", 4433), ("not an ip", 1), ("0.0.0.0", 1)], T0)
    (req,) = sends(d)
    assert req.peer is None and isinstance(req.message, wire.DhtFindNode)
    assert req.message.target == d.id.to_bytes(32, "big")
    d.on_message(seed, "203.0.113.1", 4433, wire.DhtNodesMsg(
        qid=qid(req), nodes=[node_of(k, i) for i, k in enumerate(nearer)]), T0 + 0.1)
    assert d.table.get(seed) is not None  # any key at a bootstrap address is taken
    out = sends(d)
    assert all(s.peer is not None for s in out)  # pinned from now on
    assert set(nearer) <= {s.peer for s in out}
    _, done = split(answer_all(d, out, T0 + 0.3,
                               lambda s: wire.DhtNodesMsg(qid=qid(s), nodes=[])))
    assert done and done[0].lookup == lid and done[0].kind == "join" and done[0].ok
    assert len(d.table) == 4


def test_bootstrap_with_nobody_answering_ends_the_join_unsuccessfully() -> None:
    d = new()
    d.bootstrap([("203.0.113.1", 4433)], T0)
    d.actions()
    d.handle_timer(T0 + 5)
    _, done = split(d.actions())
    assert done and done[0].kind == "join" and not done[0].ok


def test_provide_stores_at_the_nearest_nodes_and_republishes_before_expiry() -> None:
    d = new(dh.DhtConfig(republish=240, record_ttl=600))
    keys = [RNG.randbytes(32) for _ in range(60)]
    populate(d, keys)
    d.provide(SID, [("198.51.100.5", 4433)], T0)
    seqs = []
    for rnd in range(2):
        now = T0 + 240 * rnd
        if rnd:
            d.handle_timer(now)
        out = sends(d)
        acts: list[dh.DhtAction] = []
        while out:
            acts = answer_all(d, out, now + 0.1, lambda s: wire.DhtNodesMsg(qid=qid(s), nodes=[]))
            out = [a for a in acts if isinstance(a, dh.Send)
                   and isinstance(a.message, wire.DhtFindNode)]
        adds = [a for a in acts if isinstance(a, dh.Send)
                and isinstance(a.message, wire.DhtAddProvider)]
        assert len(adds) == 20
        t = int.from_bytes(SKEY, "big")
        want = sorted(keys, key=lambda k: node_id(k) ^ t)[:20]
        assert sorted(a.peer for a in adds if a.peer) == sorted(want)
        assert isinstance(adds[0].message, wire.DhtAddProvider)
        r = check_record(adds[0].message.record, now, verify, max_ttl=1800, skew=60)
        assert r.provider == ME.public and r.expires_ms == int((now + 600) * 1000)
        seqs.append(r.seq)
    assert seqs[1] > seqs[0] and d.counters.publishes == 2
    d.stop_providing(SID)
    d.handle_timer(T0 + 480)
    assert not [a for a in d.actions() if isinstance(a, dh.LookupDone) and a.kind == "publish"]


def test_ping_before_evict_through_the_dht() -> None:
    d = new(dh.DhtConfig(k=2, ping_after=10))
    old = keys_in_bucket(ME.public, 0, 3)
    populate(d, old[:2])
    d.on_message(old[2], host(9), 4433, wire.DhtPing(qid=1), T0 + 11)
    out = sends(d)
    pings = [s for s in out if isinstance(s.message, wire.DhtPing)]
    assert [s.peer for s in pings] == [old[0]]  # the least recently seen is asked first
    d.handle_timer(T0 + 20)  # no PONG: evicted, the newcomer takes its place
    assert d.table.get(old[0]) is None and d.table.get(old[2]) is not None


def test_a_record_must_name_only_the_host_it_is_stored_from() -> None:
    d = new()
    p = Identity.from_private_bytes(RNG.randbytes(32))
    two = sign_record(p, SID, 1, int((T0 + 600) * 1000),
                      [("203.0.113.9", 4433), ("198.51.100.77", 4433)]).raw
    d.on_message(p.public, "203.0.113.9", 4433, wire.DhtAddProvider(record=two), T0)
    assert d.counters.records_wrong_source == 1 and d.records == 0


def test_one_network_gets_at_most_three_dials_per_lookup_whatever_keys_name_it() -> None:
    d = new(dh.DhtConfig(paths=1, alpha=30, k=20))
    target = RNG.randbytes(32)
    t = int.from_bytes(target, "big")
    pool = sorted((RNG.randbytes(32) for _ in range(300)), key=lambda k: node_id(k) ^ t)
    answerer, fakes = pool[100], pool[:20]
    populate(d, [answerer])
    d.find_node(target, T0)
    (req,) = sends(d)
    victim = [wire.DhtNode(key=k, host=f"192.0.2.{i + 1}", port=443) for i, k in enumerate(fakes)]
    follow, _ = split(answer_all(d, [req], T0 + 0.1,
                                 lambda s: wire.DhtNodesMsg(qid=qid(s), nodes=victim)))
    assert len(follow) == 3 and {s.host.rsplit(".", 1)[0] for s in follow} == {"192.0.2"}
    d.handle_timer(T0 + 11)
    d.actions()
    assert d.counters.entries_same_network == 17


def first_refresh(d: dh.Dht, step: float = 10.0) -> float:
    t = T0
    while t < T0 + 2000:
        t += step
        d.handle_timer(t)
        if any(isinstance(a, dh.Send) for a in d.actions()):
            return t
    return float("inf")


def test_the_table_refresh_is_jittered_and_skipped_after_a_lookup_of_our_own() -> None:
    cfg = dh.DhtConfig(refresh_interval=600)
    due = []
    for seed in range(5):
        d = dh.Dht(ME.public, config=cfg, rng=random.Random(seed), now=T0)
        populate(d, keys_in_bucket(ME.public, 0, 3))
        due.append(first_refresh(d))
    assert len(set(due)) == 5 and all(T0 + 300 <= t <= T0 + 910 for t in due)
    d = dh.Dht(ME.public, config=cfg, rng=random.Random(0), now=T0)
    populate(d, keys_in_bucket(ME.public, 0, 3))
    d.mark_fresh(T0 + 500)  # e.g. the oracle's fill, or a lookup of our own
    assert first_refresh(d) >= T0 + 1100


def test_a_lookup_keeps_the_newest_descriptor_not_the_first() -> None:
    # an old descriptor, genuinely signed (any old link or storer has one), answered first
    # by a liar: the newcomer took it and played with the stream's old parameters
    for order in ((3, 9), (9, 3)):
        d = new(dh.DhtConfig(paths=1))
        contacts = keys_in_bucket(ME.public, 0, 2)
        populate(d, contacts)
        d.find_providers(SID, T0)
        reqs = sends(d)
        assert len(reqs) == 2
        issued = dict(zip(sorted(r.peer for r in reqs), order, strict=True))
        rec = pid(Identity.from_private_bytes(RNG.randbytes(32)))

        def answer(s: dh.Send, rec: bytes = rec, issued: dict[bytes, int] = issued) -> wire.DhtProviders:
            return wire.DhtProviders(qid=qid(s), records=[rec], descriptor=_descriptor(issued[s.peer]), nodes=[])

        _, done = split(answer_all(d, sorted(reqs, key=lambda r: r.peer), T0 + 0.1, answer))
        assert done and done[0].descriptor == _descriptor(9), order
        assert d.counters.descriptors_stale == (1 if order == (9, 3) else 0)
