"""The tracker's HTTP face on a real aiohttp server (127.0.0.1): signed announces only.

Each attack of a stranger is mounted over real HTTP and must be refused with a
4xx JSON error and counted, leaving the tracker's state as it was.
"""

from __future__ import annotations

import dataclasses
import random
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from oasis.core.announce import Announce, sign_announce, verified_peer_records
from oasis.core.descriptor import Descriptor, sign_descriptor, verified_descriptor
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.core.tracker import Tracker
from oasis.node.http import add_tracker_routes

IP = "127.0.0.1"


def ident(i: int) -> Identity:
    return Identity.from_private_bytes(random.Random(i).randbytes(32))


BC, MALLORY = ident(1000), ident(1001)
SID = StreamId(BC.public, "live")
ORIGIN = "http://127.0.0.1:8000/origin"


def signed(who: Identity, t: float | None = None, sid: StreamId = SID, **kw) -> Announce:
    return sign_announce(who, sid, kw.pop("host", IP), kw.pop("port", 4433),
                         int((time.time() if t is None else t) * 1000), **kw)


def descriptor(who: Identity, sid: StreamId = SID, origin: str = ORIGIN) -> Descriptor:
    d = Descriptor(sid, 1000, 100, 4, int(time.time() * 1000), origin=origin)
    if who.public == sid.broadcaster:
        return sign_descriptor(who, d)
    return dataclasses.replace(d, signature=who.sign(d.signing_bytes()))


@pytest.fixture
async def tracker_client():
    tracker = Tracker(sample=10, locality=0.5, rng=random.Random(1))
    app = web.Application()
    add_tracker_routes(app, tracker)
    server = TestServer(app, host=IP)
    await server.start_server()
    async with aiohttp.ClientSession(base_url=f"http://{IP}:{server.port}") as session:
        yield tracker, session
    await server.close()


async def post(session: aiohttp.ClientSession, body: object) -> tuple[int, dict]:
    async with session.post("/tracker/announce", json=body) as r:
        return r.status, await r.json(content_type=None)


def body(a: Announce, d: Descriptor | None = None) -> dict:
    return a.to_json() | ({"descriptor": d.to_json()} if d is not None else {})


async def test_announce_with_area_prefers_the_same_area_and_rejects_bad_ones(tracker_client) -> None:
    tracker, s = tracker_client
    assert (await post(s, body(signed(BC), descriptor(BC))))[0] == 200
    peers = [ident(i) for i in range(40)]
    area_of = {}
    for i, p in enumerate(peers[:-1]):
        area_of[p.peer_id] = "FR" if i % 8 == 0 else "US"
        status, _ = await post(s, body(signed(p, port=5000 + i, area=area_of[p.peer_id])))
        assert status == 200
    status, reply = await post(s, body(signed(peers[-1], area="FR")))
    got = [p["peer_id"] for p in reply["peers"]]
    assert got[0] == BC.peer_id and len(got) == 10
    assert sum(area_of.get(p) == "FR" for p in got) >= 4  # 5 FR peers exist; half of 9 asked
    # Every record verifies for this stream; the signed descriptor comes with the reply.
    assert len(verified_peer_records(SID, reply["peers"], time.time())) == 10
    assert verified_descriptor(reply["descriptor"], SID).origin == ORIGIN == reply["origin"]
    for bad in (123, "x" * 33, ["FR"]):
        status, err = await post(s, body(signed(peers[-1])) | {"area": bad})
        assert status == 400 and err["error"] in ("bad_area", "bad_announce")


async def test_forged_replayed_stale_evicting_and_impersonating_announces_are_refused(
        tracker_client) -> None:
    tracker, s = tracker_client
    alice = ident(7)
    assert (await post(s, body(signed(BC), descriptor(BC))))[0] == 200
    first = signed(alice)
    assert (await post(s, body(first)))[0] == 200
    before = dict(tracker.counters)

    cases = [
        # Mallory signs, claims to be Alice.
        ("forged", body(dataclasses.replace(signed(MALLORY), peer=alice.public)), 403, "bad_signature"),
        # The same signed announce again.
        ("replayed", body(first), 409, "replay"),
        ("stale", body(signed(MALLORY, time.time() - 300)), 400, "stale"),
        ("future", body(signed(MALLORY, time.time() + 300)), 400, "stale"),
        # Evict Alice: a leave for her id, signed by Mallory.
        ("evicting", body(dataclasses.replace(signed(MALLORY, leaving=True), peer=alice.public)),
         403, "bad_signature"),
        # Announce as the broadcaster (its id) with Mallory's key and her "origin".
        ("impersonating", body(dataclasses.replace(signed(MALLORY), peer=BC.public),
                               descriptor(MALLORY, origin="http://127.0.0.9/evil")),
         403, "bad_signature"),
        # Her own announce, carrying a descriptor she signed for the stream.
        ("broadcaster fields", body(signed(MALLORY), descriptor(MALLORY, origin="http://127.0.0.9/e")),
         403, "bad_descriptor"),
        # Make every node dial an address of her choosing (traffic amplification): a leave
        # is refused; a join is answered but not listed (below: Mallory is not there).
        ("other address", body(signed(MALLORY, host="10.1.2.3", leaving=True)), 403, "address_mismatch"),
        # The old unsigned format with a broadcaster claim and origin.
        ("unsigned", {"stream": str(SID), "peer_id": BC.peer_id, "host": IP, "port": 1,
                      "broadcaster": True, "origin": "http://127.0.0.9/evil", "leaving": True},
         400, "bad_announce"),
    ]
    for name, b, status, code in cases:
        got, err = await post(s, b)
        assert (got, err.get("error")) == (status, code), name
        assert err["message"], name
    c = tracker.counters
    assert c["refused_signature"] - before["refused_signature"] == 3
    assert c["refused_replay"] - before["refused_replay"] == 1
    assert c["refused_stale"] - before["refused_stale"] == 2
    assert c["refused_descriptor"] - before["refused_descriptor"] == 1
    assert c["refused_address"] - before["refused_address"] == 1
    assert c["bad_requests"] - before["bad_requests"] == 1
    # Nothing changed: Alice is still there, Mallory is not, the origin is the real one.
    peers = tracker.streams[str(SID)].peers
    assert set(peers) == {BC.peer_id, alice.peer_id}
    status, reply = await post(s, body(signed(ident(8))))
    assert status == 200 and reply["origin"] == ORIGIN
    assert verified_descriptor(reply["descriptor"], SID).origin == ORIGIN
    async with s.get(f"/tracker/descriptor/{SID}") as r:
        assert verified_descriptor(await r.json(), SID).origin == ORIGIN
    # Alice's own signed leave works.
    assert (await post(s, body(signed(alice, leaving=True))))[0] == 200
    assert alice.peer_id not in tracker.streams[str(SID)].peers


async def test_malformed_bodies_are_400_with_a_json_error(tracker_client) -> None:
    tracker, s = tracker_client
    good = body(signed(MALLORY))
    raw_bodies = [b"[" * 5000 + b"]" * 5000, b'{"a":' * 2000 + b"1" + b"}" * 2000,
                  b"\xff\xfe\x00", b"", b"null", b"{}", b"x" * 10_000]
    for raw in raw_bodies:
        async with s.post("/tracker/announce", data=raw,
                          headers={"Content-Type": "application/json"}) as r:
            assert 400 <= r.status < 500, raw[:20]
            assert "error" in await r.json()
    for change in ({"port": 1e400}, {"port": 10**30}, {"port": -1}, {"time_ms": "now"},
                   {"sig": "zz" * 64}, {"peer_id": "x"}, {"stream": "nope"}, {"v": 2},
                   {"descriptor": {"stream": str(SID)}}, {"descriptor": [[[]]]}):
        status, err = await post(s, good | change)
        assert status == 400 and err["error"], change
    assert tracker.entries() == 0


async def test_per_source_rate_limit_answers_429(tracker_client) -> None:
    tracker, s = tracker_client
    tracker.source_rate, tracker.source_burst = 0.001, 5.0
    tracker._buckets.clear()
    statuses = [(await post(s, body(signed(ident(100 + i)))))[0] for i in range(8)]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 3
    assert tracker.counters["refused_rate"] == 3
    # the refusal says when to try again: a token comes back every 1 / source_rate s
    tracker.source_rate = 0.4
    async with s.post("/tracker/announce", json=body(signed(ident(120)))) as r:
        assert r.status == 429 and r.headers["Retry-After"] == "3", dict(r.headers)


async def test_caps_answer_429_with_a_code_and_count(tracker_client) -> None:
    tracker, s = tracker_client
    tracker.max_streams, tracker.max_peers_per_stream = 1, 2
    assert (await post(s, body(signed(BC))))[0] == 200
    other = StreamId(MALLORY.public, "live")
    async with s.post("/tracker/announce", json=body(signed(MALLORY, sid=other))) as r:
        status, err = r.status, await r.json(content_type=None)
        assert "Retry-After" not in r.headers  # (full: no time to say)
    assert (status, err["error"]) == (429, "streams_full")
    assert (await post(s, body(signed(ident(5)))))[0] == 200
    status, err = await post(s, body(signed(ident(6))))
    assert (status, err["error"]) == (429, "peers_full")
    assert tracker.counters["refused_streams_full"] == 1 == tracker.counters["refused_peers_full"]


async def test_a_stand_alone_tracker_exports_its_counters() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    tracker = Tracker()
    app = web.Application()
    add_tracker_routes(app, tracker, metrics=True)
    server = TestServer(app, host=IP)
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=f"http://{IP}:{server.port}") as s:
            await post(s, body(signed(MALLORY, host="10.1.2.3", leaving=True)))
            async with s.get("/metrics") as r:
                fams = {f.name: f for f in text_string_to_metric_families(await r.text())}
        refused = {smp.labels["event"]: smp.value for smp in fams["oasis_tracker_events"].samples}
        assert refused["refused_address"] == 1
        http_errors = {smp.labels["event"]: smp.value for smp in fams["oasis_http_errors"].samples}
        assert http_errors["http_403"] == 1 and http_errors["http_internal_errors"] == 0
    finally:
        await server.close()


async def test_sybil_ids_from_one_address_answer_429_too_many_ids(tracker_client) -> None:
    """The attack over real HTTP: one address registers many peer ids in a stream.

    Loopback is exempt by default (the demo's viewers share 127.0.0.1), so the
    tracker here applies the cap to loopback too, as it does to internet addresses.
    """
    tracker, s = tracker_client
    tracker.max_ids_per_address, tracker.cap_loopback = 3, True
    sybils = [ident(300 + i) for i in range(6)]
    statuses = []
    for i, p in enumerate(sybils):
        status, reply = await post(s, body(signed(p, port=6000 + i)))
        statuses.append((status, reply.get("error")))
    assert statuses == [(200, None)] * 3 + [(429, "too_many_ids")] * 3
    assert tracker.counters["refused_ids_per_address"] == 3
    assert len(tracker.streams[str(SID)]) == 3
    # An admitted id keeps re-announcing; another stream has its own count.
    assert (await post(s, body(signed(sybils[0], port=6000))))[0] == 200
    other = StreamId(MALLORY.public, "other")
    assert (await post(s, body(signed(sybils[4], sid=other))))[0] == 200
    # Default (loopback exempt): the operator's own machine runs many peers.
    tracker.cap_loopback = False
    assert (await post(s, body(signed(sybils[5], port=6005))))[0] == 200
