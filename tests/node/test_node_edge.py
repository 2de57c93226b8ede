"""The CDN edge (``oasis edge``, :mod:`oasis.node.edge`) and the origin's chunk feed.

A real broadcaster and a real edge process on loopback: the edge follows the origin's
feed and answers the origin's URLs with the same bytes. An edge in front of a hostile
origin (an aiohttp server here, the edge in-process) keeps nothing it cannot verify and
never crashes; the origin serves a bounded number of feeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from procs import OasisProcess, start_broadcaster, until, wait_until

from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.node import edge as edge_mod
from oasis.node import http as http_mod
from oasis.node.edge import Edge


def _get(url: str, timeout: float = 10.0) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _stats(base: str) -> dict[str, Any]:
    status, body, _ = _get(f"{base}/stats")
    assert status == 200, body
    out: dict[str, Any] = json.loads(body)
    return out


@pytest.fixture(scope="module")
def broadcaster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OasisProcess]:
    """One real broadcaster for the module's real-process tests (stopped at the end)."""
    procs: list[OasisProcess] = []
    try:
        yield start_broadcaster(tmp_path_factory.mktemp("edge"), procs)
    finally:
        for p in procs:
            p.stop()


def test_the_origin_serves_a_bounded_number_of_feeds(broadcaster: OasisProcess) -> None:
    """Each feed costs the broadcaster the stream's bitrate: past ``MAX_FEEDS`` at once an
    origin answers 429 ``too_many_feeds`` (a real broadcaster; loopback is exempt from the
    per-address cap, not from the total)."""
    url = f"{broadcaster.info['origin']}/{broadcaster.info['stream_id']}/feed"

    async def many() -> list[int]:
        async with aiohttp.ClientSession() as s:
            held = []
            statuses = []
            try:
                for _ in range(http_mod.MAX_FEEDS + 1):
                    r = await s.get(url, timeout=aiohttp.ClientTimeout(total=20))
                    statuses.append(r.status)
                    if r.status == 200:
                        head = await r.content.readexactly(4)  # a frame: the feed is live
                        assert struct.unpack(">I", head)[0] <= wire.MAX_CHUNK_MESSAGE
                        held.append(r)
                    else:
                        assert (await r.json())["error"] == "too_many_feeds"
                        r.release()
            finally:
                for r in held:
                    r.close()
            return statuses

    statuses = asyncio.run(many())
    assert statuses.count(200) == http_mod.MAX_FEEDS and statuses[-1] == 429


def test_the_origins_feed_from_the_newest_chunk_carries_no_keyframe_backlog(broadcaster: OasisProcess) -> None:
    """``feed`` starts at the newest keyframe (a start for the edge's viewers), ``feed/newest``
    at the newest chunk: a far edge's fresh connection no longer carries up to a GOP of
    backlog through slow start ahead of the live chunks. Both go on with every chunk."""
    origin, sid = broadcaster.info["origin"], broadcaster.info["stream_id"]
    lj: dict[str, Any] = {}

    def ahead() -> bool:
        lj.update(json.loads(_get(f"{origin}/{sid}/latest.json")[1]))
        return bool(lj.get("keyframe", -1) >= 0 and lj["latest"] >= lj["keyframe"] + 5)

    wait_until(ahead, 30)

    async def first_two(path: str) -> list[wire.ChunkMsg]:
        async with aiohttp.ClientSession() as s, \
                s.get(f"{origin}/{sid}/{path}", timeout=aiohttp.ClientTimeout(total=20)) as r:
            assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
            out = []
            for _ in range(2):
                (n,) = http_mod.FEED_FRAME.unpack(await r.content.readexactly(4))
                out.append(wire.decode_chunk(await r.content.readexactly(n)))
            return out

    async def both() -> tuple[list[wire.ChunkMsg], list[wire.ChunkMsg]]:
        return await asyncio.gather(first_two("feed"), first_two("feed/newest"))

    plain, newest = asyncio.run(both())
    assert plain[0].flags & 1 and plain[0].seq >= lj["keyframe"]  # a keyframe: a start
    assert newest[0].seq >= lj["latest"] and newest[1].seq == newest[0].seq + 1
    assert plain[1].seq == plain[0].seq + 1
    # one URL per object: the feed from the newest chunk too
    assert _get(f"{origin}/{sid}/feed/newest?x=1")[0] == 404


def test_an_edge_answers_the_origins_urls_with_the_chunks_the_feed_brought(
        broadcaster: OasisProcess, tmp_path: Path) -> None:
    procs: list[OasisProcess] = []
    try:
        b = broadcaster
        origin, sid = b.info["origin"], b.info["stream_id"]
        # a keyframe past the first, so that the feed starts after chunk 0 (an older one exists)
        wait_until(lambda: json.loads(_get(f"{origin}/{sid}/latest.json")[1]).get("keyframe", 0) > 0, 30)
        e = OasisProcess(["edge", "--origin", origin, "--listen", "127.0.0.1:0"], str(tmp_path / "e.log"))
        procs.append(e)
        edge_url = e.wait_info()["edge"]
        base = edge_url.rsplit("/origin", 1)[0]
        # time is the broadcaster's clock, passed through (never kept)
        status, body, headers = _get(f"{edge_url}/{sid}/time")
        assert status == 200 and abs(json.loads(body)["now_us"] / 1e6 - time.time()) < 60
        assert headers.get("Cache-Control") == "no-store"
        # that request made the edge follow the stream: chunks arrive without being asked
        wait_until(lambda: _stats(base)["streams"].get(sid, {}).get("frames", 0) >= 10, 30)
        held = _stats(base)["streams"][sid]
        assert held["connected"] and held["held"] >= 10
        # two feed connections, each carrying every chunk: the second copy is not kept again
        wait_until(lambda: _stats(base)["feed_copies"] >= 10, 30)
        assert _stats(base)["streams"][sid]["links"] == edge_mod.FEEDS == 2
        assert _stats(base)["feed_newest_unknown"] == 0  # (the second link: feed/newest)
        latest = held["latest"]
        status, body, headers = _get(f"{edge_url}/{sid}/{latest}.chunk")
        assert status == 200
        assert headers["Cache-Control"] == http_mod.CHUNK_CACHE and headers["ETag"]
        o_status, o_body, o_headers = _get(f"{origin}/{sid}/{latest}.chunk")
        assert o_status == 200 and body == o_body and headers["ETag"] == o_headers["ETag"]
        s = _stats(base)
        assert s["hits"] >= 1 and s["pulls"] == 0
        # latest.json from the feed (no round trip to the origin): where the stream is
        status, body, headers = _get(f"{edge_url}/{sid}/latest.json")
        lj = json.loads(body)
        assert status == 200 and headers.get("Cache-Control") == "no-cache"
        assert lj["latest"] >= latest and 0 <= lj["keyframe"] <= lj["latest"]
        assert _get(f"{edge_url}/{sid}/{lj['keyframe']}.chunk")[0] == 200
        assert _stats(base)["latest_answered"] == 1
        # the operator's /metrics: the same counters, and the stream's newest seq and links
        status, body, _ = _get(f"{base}/metrics")
        text = body.decode()
        assert status == 200 and 'oasis_edge_events_total{event="latest_answered"} 1.0' in text
        assert f'oasis_edge_feed_links{{stream="{sid}"}} 2.0' in text
        assert f'oasis_edge_latest_seq{{stream="{sid}"}}' in text
        assert f'oasis_edge_pinned{{stream="{sid}"}} 0.0' in text  # (followed on a request)
        assert 'oasis_edge_loop_lag_seconds{stat="p95"}' in text
        # a proxy in front that passes the client's Host (Caddy's default): the public objects
        # are served as the origin's are (they were 403 bad_host on this loopback-bound
        # edge), the operator's /stats is not
        for path in (f"{latest}.chunk", "latest.json", "time", "descriptor"):
            req = urllib.request.Request(f"{edge_url}/{sid}/{path}", headers={"Host": "cdn.example.com"})
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 200, path
        for operator_only in ("stats", "metrics"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(f"{base}/{operator_only}",
                                                              headers={"Host": "cdn.example.com"}), timeout=10)
            assert refused.value.code == 403 and json.loads(refused.value.read())["error"] == "bad_host"
        # a chunk not made yet: 404 from the edge itself, no request upstream
        status, body, headers = _get(f"{edge_url}/{sid}/{latest + 3000}.chunk")
        assert status == 404 and json.loads(body)["error"] == "no_chunk"
        assert headers.get("Cache-Control") == "no-store"
        s = _stats(base)
        assert s["misses_ahead"] >= 1 and s["pulls"] == 0
        # that far ahead, and seq 2**63 - 1, are counted apart: no clock is that far off, and
        # the statistics of how far ahead viewers ask (to tune --hold) keep their meaning
        assert _get(f"{edge_url}/{sid}/9223372036854775807.chunk")[0] == 404
        now_latest = _stats(base)["streams"][sid]["latest"]
        assert _get(f"{edge_url}/{sid}/{now_latest + 500}.chunk")[0] == 404  # ~16 s ahead
        s = _stats(base)
        assert s["misses_far_ahead"] == 2 and s["misses_ahead"] >= 3
        by = s["streams"][sid]["misses_ahead_by"]
        assert by is not None and 0 < by["max"] <= edge_mod.FAR_AHEAD, by
        # an older chunk than the feed brought (it began at the newest keyframe): pulled
        # through from the origin once, then held
        older = latest - held["held"]  # the feed's chunks are contiguous up to ``latest``
        assert older >= 0  # (the broadcaster had made a keyframe past 0 before the edge came)
        status, body, _ = _get(f"{edge_url}/{sid}/{older}.chunk")
        o_status, o_body, _ = _get(f"{origin}/{sid}/{older}.chunk")
        assert status == o_status == 200 and body == o_body
        assert _stats(base)["pulls"] == 1
        status, _, _ = _get(f"{edge_url}/{sid}/{older}.chunk")
        assert status == 200 and _stats(base)["pulls"] == 1  # held now
        # a stream id in another spelling is refused (one URL per object, as the origin's)
        status, body, _ = _get(f"{edge_url}/{sid.upper()}/time")
        assert status in (400, 404) and json.loads(body)["error"] in ("bad_stream", "not_canonical")
        # an edge behind this one (a shield tier): it follows this edge's own feed and
        # serves the origin's bytes
        e2 = OasisProcess(["edge", "--origin", edge_url, "--listen", "127.0.0.1:0", "--feeds", "1"],
                          str(tmp_path / "e2.log"))
        procs.append(e2)
        edge2_url = e2.wait_info()["edge"]
        base2 = edge2_url.rsplit("/origin", 1)[0]
        assert _get(f"{edge2_url}/{sid}/latest.json")[0] == 200
        wait_until(lambda: _stats(base2)["streams"].get(sid, {}).get("frames", 0) >= 10, 30)
        s2 = _stats(base2)["streams"][sid]
        assert s2["links"] == 1 and _stats(base)["feeds_out"] >= 1
        status, body, _ = _get(f"{edge2_url}/{sid}/{s2['latest']}.chunk")
        assert status == 200 and body == _get(f"{origin}/{sid}/{s2['latest']}.chunk")[1]
        assert _stats(base2)["pulls"] == 0  # from the first edge's feed, not pulled
        assert e2.stop() == 0
        assert e.stop() == 0  # SIGTERM: a clean stop, as the other long-running commands
    finally:
        for p in procs:
            p.stop()


# ---- an edge in front of a hostile origin (the edge in-process, the origin an aiohttp app) ----

async def _hostile_origin(sid: StreamId, frames: list[bytes], chunks: dict[int, bytes]
                          ) -> tuple[web.AppRunner, str, list[str]]:
    """An origin whose feed sends ``frames`` (raw bytes, framing included) and then holds the
    response open, and whose ``<seq>.chunk`` answers from ``chunks``; returns its runner, base
    URL and the paths it was asked."""
    asked: list[str] = []

    async def feed(request: web.Request) -> web.StreamResponse:
        asked.append(request.path)
        resp = web.StreamResponse()
        await resp.prepare(request)
        for f in frames:
            await resp.write(f)
        await asyncio.Event().wait()  # holds the feed open until the server is shut down
        return resp

    async def chunk(request: web.Request) -> web.Response:
        asked.append(request.path)
        body = chunks.get(int(request.match_info["seq"]))
        return web.Response(status=404) if body is None else web.Response(body=body)

    async def other(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"now_us": 1})

    app = web.Application()
    app.router.add_get(f"/origin/{sid}/feed", feed)
    app.router.add_get(f"/origin/{sid}/{{seq}}.chunk", chunk)
    app.router.add_get("/origin/{sid}/{what}", other)
    runner, origin = await _listen(app)
    return runner, origin, asked


async def _feed_origin(sid: StreamId, feed: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> tuple[web.AppRunner, str]:
    """An origin whose ``feed`` and ``feed/newest`` are ``feed`` and whose other URLs answer
    ``{"now_us": 1}``, on loopback: its runner and its ``/origin`` URL."""
    async def other(request: web.Request) -> web.Response:
        return web.json_response({"now_us": 1})

    app = web.Application()
    app.router.add_get(f"/origin/{sid}/feed", feed)
    app.router.add_get(f"/origin/{sid}/feed/newest", feed)
    app.router.add_get("/origin/{sid}/{what}", other)
    return await _listen(app)


async def _listen(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on a free loopback port: its runner and its ``/origin`` URL."""
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/origin"


async def _serve(edge: Edge) -> tuple[web.AppRunner, str]:
    app = web.Application()
    edge.routes(app)
    return await _listen(app)


def _frame(body: bytes) -> bytes:
    return http_mod.feed_frame(body)


@contextlib.asynccontextmanager
async def _edge_following(s: aiohttp.ClientSession, origin: str, runner_o: web.AppRunner, sid: StreamId,
                          **kw: Any) -> AsyncIterator[tuple[Edge, str]]:
    """An in-process edge in front of ``origin``, served on loopback and following ``sid``
    (one request for its time starts that); the edge and the origin are shut down after."""
    edge = Edge(origin, s, **kw)
    runner_e, url = await _serve(edge)
    try:
        async with s.get(f"{url}/{sid}/time") as r:  # starts following
            assert r.status == 200
        yield edge, url
    finally:
        await edge.close()
        await runner_e.cleanup()
        await runner_o.cleanup()


@pytest.mark.parametrize("attack", ["forged", "garbage", "oversized"])
async def test_an_edge_keeps_nothing_a_hostile_origin_sends_that_does_not_verify(attack: str) -> None:
    bid, other = Identity.generate(), Identity.generate()
    sid = StreamId(bid.public, "live")
    now = int(time.time() * 1e6)
    good = [wire.encode(sign_chunk(bid, sid, s, now, s == 10, b"G" * 500)) for s in (10, 11)]
    bad = {
        # a well-formed chunk of this stream (its stream key) as seq 12, signed by another key
        "forged": _frame(wire.encode(sign_chunk(other, sid, 12, now, False, b"G" * 500))),
        "garbage": _frame(b"\x91" + b"\xff" * 300),
        # announces more than any chunk may be, then sends it
        "oversized": struct.pack(">I", wire.MAX_CHUNK_MESSAGE + 1) + b"\0" * 4096,
    }[attack]
    forged_12 = wire.encode(sign_chunk(other, sid, 12, now, False, b"G" * 500))
    runner_o, origin, asked = await _hostile_origin(sid, [_frame(good[0]), _frame(good[1]), bad],
                                                    {12: forged_12})
    async with aiohttp.ClientSession() as s, _edge_following(s, origin, runner_o, sid) as (edge, url):
        await until(lambda: edge.counters["feed_bad_chunks"] >= 1, 10, what="the bad frame refused")
        f = edge.streams[str(sid)]
        assert sorted(f.chunks) == [10, 11]  # the two genuine chunks, nothing else
        async with s.get(f"{url}/{sid}/11.chunk") as r:
            assert r.status == 200 and await r.read() == good[1]
        # seq 12 is not served: the feed's copy was refused, and the origin's own copy
        # (asked for once the feed is down) is refused too
        async with s.get(f"{url}/{sid}/12.chunk") as r:
            assert r.status == 404
        assert 12 not in f.chunks and edge.counters["feed_failures"] >= 1


async def test_an_edge_refuses_a_bad_stream_id_without_asking_the_origin_and_follows_a_bounded_number(
        monkeypatch: Any) -> None:
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    runner_o, origin, asked = await _hostile_origin(sid, [], {})
    monkeypatch.setattr(edge_mod, "MAX_STREAMS", 3)
    async with aiohttp.ClientSession() as s:
        edge = Edge(origin, s, max_streams=edge_mod.MAX_STREAMS)
        runner_e, url = await _serve(edge)
        try:
            for bad in ("not-a-stream", f"{sid}x".replace(".live", ""), str(sid).upper(), "a" * 300):
                async with s.get(f"{url}/{bad}/time") as r:
                    assert r.status in (400, 404), (bad, r.status)
                    assert (await r.json())["error"] in ("bad_stream", "not_canonical")
            # an id spelled in upper case, in either part, is the origin's answer: 404
            # not_canonical (the name part was 400 bad_stream at the edge: found 2026-12-06)
            for upper in (str(sid).upper(), str(sid).replace(".live", ".LIVE"),
                          str(sid).split(".")[0].upper() + ".live"):
                async with s.get(f"{url}/{upper}/time") as r:
                    assert (r.status, (await r.json())["error"]) == (404, "not_canonical"), upper
            assert asked == []  # not one byte upstream for any of them
            ids = [StreamId(Identity.generate().public, "live") for _ in range(5)]
            for i in ids:
                async with s.get(f"{url}/{i}/5.chunk") as r:
                    assert r.status == 404
            assert len(edge.streams) == 3 and edge.counters["streams_refused"] == 2
        finally:
            await edge.close()
            await runner_e.cleanup()
            await runner_o.cleanup()


async def test_an_edge_keeps_one_copy_of_two_feeds_and_serves_a_bounded_feed_of_its_own(
        monkeypatch: Any) -> None:
    """Two feed connections bring every chunk twice: each is verified and held once. The
    edge's own feed (for an edge behind it) starts at its newest keyframe, carries every chunk
    it holds from there, is bounded in number like the origin's, and is 503 for a stream it
    does not follow."""
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    now = int(time.time() * 1e6)
    # ten chunks, then one a broadcaster signed a trillion seqs later (genuine, so kept): the
    # edge's own feed must step over the gap, not walk it (a walk would hang the edge)
    seqs = [*range(10, 20), 10**12]
    chunks = {s: wire.encode(sign_chunk(bid, sid, s, now + s % 1000, s in (10, 14), b"G" * 300)) for s in seqs}
    runner_o, origin, asked = await _hostile_origin(sid, [_frame(chunks[s]) for s in sorted(chunks)], {})
    async with aiohttp.ClientSession() as s, _edge_following(s, origin, runner_o, sid, feeds=2,
                                                               max_streams=1) as (edge, url):
        edge.feed_slots = http_mod.PlayerSlots(2, 2)
        await until(lambda: edge.counters["feed_copies"] >= 11, 10, what="both feeds' copies")
        f = edge.streams[str(sid)]
        # (this origin has no feed/newest: the second link took the plain feed instead)
        assert asked.count(f"/origin/{sid}/feed") == 2 and f.links == 2
        assert edge.counters["feed_newest_unknown"] == 1 and not edge.newest_feed
        assert sorted(f.chunks) == seqs and f.frames == 11
        assert edge.counters["feed_frames"] == 22 and len(f.order) == 11
        # its own feed: from the newest keyframe (14) on, the bytes it holds
        timeout = aiohttp.ClientTimeout(total=10)
        r1 = await s.get(f"{url}/{sid}/feed", timeout=timeout)
        assert r1.status == 200
        got = []
        for _ in range(7):
            (n,) = http_mod.FEED_FRAME.unpack(await r1.content.readexactly(4))
            got.append(await r1.content.readexactly(n))
        assert got == [chunks[q] for q in [*range(14, 20), 10**12]]
        # its feed from the newest chunk: that chunk first, not the keyframe's backlog
        r2 = await s.get(f"{url}/{sid}/feed/newest", timeout=timeout)
        assert r2.status == 200
        (n,) = http_mod.FEED_FRAME.unpack(await r2.content.readexactly(4))
        assert await r2.content.readexactly(n) == chunks[10**12]
        # bounded: two at once here (of either kind), the third is refused
        for path in ("feed", "feed/newest"):
            async with s.get(f"{url}/{sid}/{path}", timeout=timeout) as r3:
                assert r3.status == 429 and (await r3.json())["error"] == "too_many_feeds"
        r1.close()
        r2.close()
        # the stream has stalled (this origin sends nothing more): the closed feeds' slots
        # are freed within a wait for a chunk (1 s), not at the feed's next write (10 s on)
        await until(lambda: edge.feed_slots.held == 0, 5, what="the closed feeds' slots freed")
        assert edge.counters["feeds_gone"] == 2
        async with s.get(f"{url}/{sid}/feed", timeout=timeout) as r5:
            assert r5.status == 200
        # a stream it has no room to follow: no feed to give (and nothing asked upstream)
        other = StreamId(Identity.generate().public, "live")
        async with s.get(f"{url}/{other}/feed", timeout=timeout) as r4:
            assert r4.status == 503 and (await r4.json())["error"] == "not_followed"
        assert not any(str(other) in a for a in asked)


# ---- a request for a chunk just ahead of the feed is held until the feed brings it ----

async def _driven_origin(sid: StreamId, chunk: Any = None) -> tuple[web.AppRunner, str, asyncio.Queue[bytes]]:
    """An origin whose feed sends each frame put on the returned queue, when it is put (and
    whose ``<seq>.chunk`` is answered by the handler ``chunk``, if given)."""
    q: asyncio.Queue[bytes] = asyncio.Queue()

    async def feed(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        while True:
            await resp.write(await q.get())

    async def other(request: web.Request) -> web.Response:
        return web.json_response({"now_us": 1})

    app = web.Application()
    app.router.add_get(f"/origin/{sid}/feed", feed)
    if chunk is not None:
        app.router.add_get(f"/origin/{sid}/{{seq}}.chunk", chunk)
    app.router.add_get("/origin/{sid}/{what}", other)
    runner, origin = await _listen(app)
    return runner, origin, q


async def test_an_edge_holds_a_request_for_the_next_chunks_and_answers_it_when_the_feed_brings_it(
        monkeypatch: Any) -> None:
    """A viewer's fallback asks for a chunk the feed has not brought yet: the edge answers it
    the moment the chunk comes, not with a 404 the viewer must follow with another request.
    Bounded: too far ahead, past the hold, or past the table (per address and in all), the
    answer is 404 at once, as before holds."""
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    now = int(time.time() * 1e6)
    chunks = {s: wire.encode(sign_chunk(bid, sid, s, now + s, s == 10, b"H" * 400)) for s in range(10, 20)}
    monkeypatch.setattr(edge_mod, "MAX_HELD_PER_IP", 3)
    runner_o, origin, q = await _driven_origin(sid)
    async with aiohttp.ClientSession() as s, _edge_following(s, origin, runner_o, sid, feeds=1,
                                                               hold=0.4) as (edge, url):
        q.put_nowait(_frame(chunks[10]))
        f = edge.streams[str(sid)]
        await until(lambda: f.latest == 10, 10, what="chunk 10 from the feed")

        async def get(seq: int) -> tuple[int, bytes]:
            async with s.get(f"{url}/{sid}/{seq}.chunk", timeout=aiohttp.ClientTimeout(total=10)) as r:
                return r.status, await r.read()

        # held: two requests for 12 and one for 11 wait; nothing is answered before the feed
        waiting = [asyncio.create_task(get(q_)) for q_ in (12, 12, 11)]
        await until(lambda: edge.holding == 3, 10, what="three requests held")
        assert not any(t.done() for t in waiting) and sorted(f.waiting) == [11, 12]
        # a fourth from the same address: the table's per-address share is full, 404 at once
        status, body = await get(13)
        assert status == 404 and json.loads(body)["error"] == "no_chunk"
        assert edge.counters["holds_refused"] == 1
        q.put_nowait(_frame(chunks[11]))
        assert await waiting[2] == (200, chunks[11])
        assert not waiting[0].done()  # 12 still waits for its chunk
        q.put_nowait(_frame(chunks[12]))
        assert [await t for t in waiting[:2]] == [(200, chunks[12])] * 2
        assert edge.counters["hold_hits"] == 3 and edge.holding == 0 and f.waiting == {}
        # a chunk the feed does not bring within the hold: 404 when the hold ends
        t0 = time.monotonic()
        status, _ = await get(14)
        assert status == 404 and time.monotonic() - t0 >= 0.4
        assert edge.counters["hold_timeouts"] == 1 and f.waiting == {}
        # too far ahead of the feed to be held: 404 at once
        before = edge.counters["holds"]
        status, _ = await get(12 + edge_mod.HOLD_AHEAD + 1)
        assert status == 404 and edge.counters["holds"] == before
        # a held chunk is then an ordinary hit: its ETag, and no word of a hold
        async with s.get(f"{url}/{sid}/12.chunk") as r:
            assert r.status == 200 and r.headers["ETag"] and http_mod.HELD_HEADER not in r.headers
        # a held answer says how long it waited, and keeps the chunk's ETag (conditional
        # requests answered as for any hit)
        held_req = asyncio.create_task(s.get(f"{url}/{sid}/15.chunk"))
        await until(lambda: edge.holding == 1, 10, what="the request for 15 held")
        q.put_nowait(_frame(chunks[13]))
        q.put_nowait(_frame(chunks[14]))
        q.put_nowait(_frame(chunks[15]))
        async with await held_req as r:
            assert r.status == 200 and await r.read() == chunks[15]
            assert r.headers["ETag"] == f.etags[15]
            assert 0 <= int(r.headers[http_mod.HELD_HEADER]) <= 10_000
        async with s.get(f"{url}/{sid}/15.chunk", headers={"If-None-Match": f.etags[15]}) as r:
            assert r.status == 304
        # ... a held one too (a cache revalidating what it holds)
        tag16 = f'"{wire.decode_chunk(chunks[16]).signature[:12].hex()}"'
        held_req = asyncio.create_task(s.get(f"{url}/{sid}/16.chunk", headers={"If-None-Match": tag16}))
        await until(lambda: edge.holding == 1, 10, what="the request for 16 held")
        q.put_nowait(_frame(chunks[16]))
        async with await held_req as r:
            assert r.status == 304 and r.headers["ETag"] == tag16
        # without a hold (``--hold 0``) the edge answers 404 at once, as before
        edge.hold = 0.0
        before = edge.counters["holds"]
        status, _ = await get(17)
        assert status == 404 and edge.counters["holds"] == before


def test_the_hold_is_a_bounded_number_of_seconds() -> None:
    with pytest.raises(ValueError, match="hold"):
        Edge("http://127.0.0.1:1/origin", None, hold=11.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hold"):
        Edge("http://127.0.0.1:1/origin", None, hold=-1.0)  # type: ignore[arg-type]


async def test_requests_held_from_many_addresses_fill_a_bounded_table(monkeypatch: Any) -> None:
    """Holds from many addresses (loopback's 127.0.0.x here) stop at ``MAX_HELD``: the next
    is 404 at once, and the held ones are answered when the chunk comes."""
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    now = int(time.time() * 1e6)
    chunks = {s: wire.encode(sign_chunk(bid, sid, s, now + s, s == 10, b"H" * 400)) for s in (10, 11)}
    monkeypatch.setattr(edge_mod, "MAX_HELD", 4)
    monkeypatch.setattr(edge_mod, "MAX_HELD_PER_IP", 2)
    runner_o, origin, q = await _driven_origin(sid)
    async with aiohttp.ClientSession() as s, _edge_following(s, origin, runner_o, sid, feeds=1) as (edge, url):
        q.put_nowait(_frame(chunks[10]))
        f = edge.streams[str(sid)]
        await until(lambda: f.latest == 10, 10, what="chunk 10 from the feed")
        sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{i}", 0)))
                    for i in (2, 3, 4)]
        try:
            async def get(c: aiohttp.ClientSession) -> int:
                async with c.get(f"{url}/{sid}/11.chunk", timeout=aiohttp.ClientTimeout(total=10)) as r:
                    await r.read()
                    return r.status

            held = [asyncio.create_task(get(c)) for c in (sessions[0], sessions[0], sessions[1], sessions[1])]
            await until(lambda: edge.holding == 4, 10, what="four requests held")
            assert await get(sessions[2]) == 404 and edge.counters["holds_refused"] == 1
            q.put_nowait(_frame(chunks[11]))
            assert [await t for t in held] == [200] * 4
            assert edge.holding == 0 and edge.held_by_ip == {}
        finally:
            for c in sessions:
                await c.close()


def test_held_ms_is_read_strictly() -> None:
    """``Oasis-Held-Ms`` is an edge's word: whole ms, 1-5 ASCII digits, at most 10,000; any
    other value counts as no hold."""
    assert http_mod.held_seconds("250") == 0.25 and http_mod.held_seconds("0") == 0.0
    assert http_mod.held_seconds("10000") == 10.0
    for bad in (None, "", "-1", "1e3", " 5", "5 ", "0x10", "10001", "99999", "123456", "٣", "2.5"):
        assert http_mod.held_seconds(bad) == 0.0, bad


async def test_a_viewer_learns_its_fetch_time_without_the_edges_hold() -> None:
    """A real Node's fallback through a real (in-process) edge that holds its request until
    the feed brings the chunk: the edge says how long it held it (``Oasis-Held-Ms``) and the
    swarm learns the fetch time without that wait. Counted, an early request's wait made the
    learnt time grow and the fallback ask earlier still (docs/oftp.md §10)."""
    from oasis.core import swarm as sw
    from oasis.node.node import Node

    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    now = int(time.time() * 1e6)
    chunks = {s: wire.encode(sign_chunk(bid, sid, s, now + s, s == 10, b"H" * 400)) for s in (10, 11)}
    runner_o, origin, q = await _driven_origin(sid)
    async with aiohttp.ClientSession() as s, _edge_following(s, origin, runner_o, sid, feeds=1) as (edge, url):
        q.put_nowait(_frame(chunks[10]))
        f = edge.streams[str(sid)]
        await until(lambda: f.latest == 10, 10, what="chunk 10 from the feed")
        node = Node(Identity.generate(), sw.SwarmConfig(origin_start_after=1000.0), target_neighbours=0)
        await node.start()
        try:
            ls = node.add_stream(sid, is_source=False, origin_url=url)
            t0 = ls.now()
            ls.swarm.repair.origin_sent[11] = t0  # as the core's FetchOrigin records it
            fetch = asyncio.create_task(ls._fetch_origin(11, t0 + 5.0))
            await until(lambda: edge.holding == 1, 10, what="the fetch held at the edge")
            with pytest.raises(TimeoutError):  # still held 0.3 s on: the edge answers nothing
                await asyncio.wait_for(asyncio.shield(fetch), 0.3)
            q.put_nowait(_frame(chunks[11]))
            await fetch
            took = ls.now() - t0
            assert ls.swarm.log.get(11) is not None and ls.origin_held == 1 and ls.origin_failures == 0
            r = ls.swarm.repair
            assert r.origin_samples == 1 and took >= 0.3
            assert r.origin_srtt < took / 2, (r.origin_srtt, took)  # the hold is not the fetch's
        finally:
            await node.close()


async def test_an_edge_whose_origin_is_down_says_so_and_the_viewer_reports_it() -> None:
    """A chunk the edge does not hold and cannot pull, the origin down: 502
    ``origin_unreachable`` naming the origin (it was 404 ``no_chunk``, as if the chunk did not
    exist; a viewer counted that as a refusal, and its health line's last failure named an
    edge restart 40 s before). The viewer counts it as a failed fetch with that reason."""
    from oasis.core import swarm as sw
    from oasis.node.node import Node

    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    now = int(time.time() * 1e6)
    runner_o, origin, q = await _driven_origin(sid)
    async with aiohttp.ClientSession() as s, _edge_following(s, origin, runner_o, sid, feeds=1) as (edge, url):
        q.put_nowait(_frame(wire.encode(sign_chunk(bid, sid, 10, now, True, b"H" * 400))))
        f = edge.streams[str(sid)]
        await until(lambda: f.latest == 10, 10, what="chunk 10 from the feed")
        await runner_o.cleanup()  # the origin goes away
        async with s.get(f"{url}/{sid}/5.chunk") as r:  # older than the feed brought: a pull
            body = await r.json()
            assert (r.status, body["error"]) == (502, "origin_unreachable"), body
            assert origin in body["message"] and r.headers["Cache-Control"] == "no-store"
        assert edge.counters["pull_failures"] == 1
        node = Node(Identity.generate(), sw.SwarmConfig(origin_start_after=1000.0), target_neighbours=0)
        await node.start()
        try:
            ls = node.add_stream(sid, is_source=False, origin_url=url)
            t0 = ls.now()
            await ls._fetch_origin(5, t0 + 5.0)
            assert ls.origin_failures == 1 and ls.origin_refused == 0
            assert "HTTP 502" in ls.origin_error and "(origin_unreachable)" in ls.origin_error, ls.origin_error
        finally:
            await node.close()


async def test_a_viewer_whose_cdn_is_down_fetches_from_the_streams_next_url(monkeypatch: Any) -> None:
    """The descriptor's URLs in order (its CDNs, then its origin): after ``FAILOVER_AFTER``
    failed fetches in a row the viewer asks the next one, and the first again
    ``FAILOVER_BACK`` s later. It asked a dead CDN edge alone and skipped what its peers did
    not bring (66 chunks in a 5-s edge restart, the origin up; found 2026-12-06)."""
    import socket

    from oasis.core import swarm as sw
    from oasis.node import node as node_mod
    from oasis.node.node import Node

    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    now = int(time.time() * 1e6)
    chunks = {q: wire.encode(sign_chunk(bid, sid, q, now + q, q == 0, b"F" * 300)) for q in range(20)}
    runner_o, origin, asked = await _hostile_origin(sid, [], chunks)
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/origin"
    node = Node(Identity.generate(), sw.SwarmConfig(origin_start_after=1000.0), target_neighbours=0)
    await node.start()
    try:
        ls = node.add_stream(sid, is_source=False, origin_url=dead)
        ls.set_origin(dead, [dead, origin])
        t0 = ls.now()
        for q in range(node_mod.FAILOVER_AFTER):
            await ls._fetch_origin(q, t0 + 5.0)
        assert ls.origin_failures == node_mod.FAILOVER_AFTER and asked == []
        assert ls.origin_url == origin and ls.origin_failovers == 1
        await ls._fetch_origin(10, t0 + 5.0)
        assert ls.swarm.log.get(10) is not None and asked == [f"/origin/{sid}/10.chunk"]
        # a 404 is an answer: the URL works (no failover for chunks it does not hold)
        for q in range(30, 30 + node_mod.FAILOVER_AFTER):
            await ls._fetch_origin(q, t0 + 5.0)
        assert ls.origin_url == origin and ls.origin_refused == node_mod.FAILOVER_AFTER
        monkeypatch.setattr(node_mod, "FAILOVER_BACK", 0.0)
        await ls._fetch_origin(11, t0 + 5.0)  # the preferred one asked again: still dead
        assert ls.origin_url == dead and ls.origin_failures == node_mod.FAILOVER_AFTER + 1
    finally:
        await node.close()
        await runner_o.cleanup()


async def test_an_origin_that_does_not_carry_the_stream_yet_does_not_turn_the_newest_feed_off() -> None:
    """An edge started before the broadcaster's stream: the origin's ``feed/newest`` is 404
    ``no_stream`` for a while. That is a failure retried like any, not an origin without the
    route (taken for one, it turned the newest feed off for good)."""
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    body = wire.encode(sign_chunk(bid, sid, 30, int(time.time() * 1e6), True, b"G" * 300))
    newest_asked: list[int] = []

    async def feed(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/newest"):
            newest_asked.append(1)
            if len(newest_asked) <= 2:  # not carried yet, as the origin says it
                return web.json_response({"error": "no_stream", "message": "not carried"}, status=404)
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(_frame(body))
        await asyncio.Event().wait()  # held open until the server is shut down
        return resp

    runner_o, origin = await _feed_origin(sid, feed)
    async with aiohttp.ClientSession() as s, _edge_following(s, origin, runner_o, sid) as (edge, _url):
        await until(lambda: len(newest_asked) >= 3 and edge.streams[str(sid)].links == 2, 15,
                    what="the newest feed taken once the origin carries the stream")
        assert edge.newest_feed and edge.counters["feed_newest_unknown"] == 0
        assert edge.counters["feed_failures"] == 2
        # refusals, not bad chunks (they were counted as such: 96 with not one chunk received)
        assert edge.counters["feed_refused"] == 2 and edge.counters["feed_bad_chunks"] == 0


async def test_one_404_on_the_newest_feed_turns_it_off_for_a_while_not_for_good(monkeypatch: Any) -> None:
    """An origin answers ``feed/newest`` 404 without ``no_stream`` once (a proxy in front
    that had not learnt the route yet), then serves it. The second link takes the plain
    feed meanwhile, and asks the newest feed again NEWEST_RETRY later, not never again."""
    monkeypatch.setattr(edge_mod, "NEWEST_RETRY", 0.3)
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    body = wire.encode(sign_chunk(bid, sid, 30, int(time.time() * 1e6), True, b"G" * 300))
    newest_asked: list[int] = []
    plain: list[web.StreamResponse] = []

    async def feed(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/newest"):
            newest_asked.append(1)
            if len(newest_asked) == 1:
                return web.Response(status=404, text="404: Not Found")  # (no Oasis error body)
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(_frame(body))
        if request.path.endswith("/newest") or len(plain) >= 2:
            await asyncio.Event().wait()  # held open until the server is shut down
        plain.append(resp)  # the plain feed the second link took: ended, as by a restart
        return resp

    runner_o, origin = await _feed_origin(sid, feed)
    async with aiohttp.ClientSession() as s, _edge_following(s, origin, runner_o, sid) as (edge, _url):
        await until(lambda: edge.counters["feed_newest_unknown"] == 1, 15, what="the 404 taken")
        await until(lambda: len(newest_asked) >= 2 and edge.streams[str(sid)].links == 2, 15,
                    what="the newest feed asked again and taken")
        assert edge.newest_feed and edge.counters["feed_newest_unknown"] == 1


async def test_an_edge_pointed_past_the_origins_path_warns_once_what_is_wrong(
        caplog: pytest.LogCaptureFixture) -> None:
    """``oasis edge --origin http://HOST:PORT`` (without ``/origin``) was accepted, and every
    feed failed with only a counter to say so (found 2026-12-05 by an outside audit). The
    edge now warns once, naming the URL it tried and what --origin should be; a 404 that is
    the origin's own ``no_stream`` is not such a path and is not warned of."""
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")

    async def refused(request: web.Request) -> web.Response:
        return web.json_response({"error": "no_stream", "message": "not carried"}, status=404)

    app = web.Application()  # an origin's routes, under /origin only
    app.router.add_get("/origin/{sid}/{what:.*}", refused)
    runner_o, base = await _listen(app)
    wrong = base.removesuffix("/origin")
    assert wrong != base
    async with aiohttp.ClientSession() as s:
        edge = Edge(wrong, s)
        runner_e, url = await _serve(edge)
        try:
            with caplog.at_level("WARNING", logger="oasis.node.edge"):
                async with s.get(f"{url}/{sid}/11.chunk") as r:  # asks the edge to follow it
                    await r.read()
                await until(lambda: edge.counters["feed_refused"] >= 3, 20, what="feeds refused")
            warned = [m.getMessage() for m in caplog.records if "no feed at" in m.getMessage()]
            assert len(warned) == 1, warned
            assert f"{wrong}/{sid}/feed" in warned[0] and "ending in /origin" in warned[0]
        finally:
            await edge.close()
            await runner_e.cleanup()
        caplog.clear()
        edge = Edge(base, s)  # the right base: the origin's no_stream is no wrong path
        runner_e, url = await _serve(edge)
        try:
            with caplog.at_level("WARNING", logger="oasis.node.edge"):
                async with s.get(f"{url}/{sid}/11.chunk") as r:
                    await r.read()
                await until(lambda: edge.counters["streams_unknown"] >= 1, 20, what="the stream dropped")
            assert not edge.warned_no_route
            assert not [m for m in caplog.records if "no feed at" in m.getMessage()]
        finally:
            await edge.close()
            await runner_e.cleanup()
            await runner_o.cleanup()


async def test_made_up_stream_ids_cannot_take_the_edges_slots_from_a_real_stream() -> None:
    """Sixteen requests for made-up stream ids took every one of the edge's 16 follow slots
    for a minute (each kept two feed loops retrying the origin), and the real stream's
    requests were pulled through, unheld (found 2026-12-05 by an outside audit). A stream
    now holds a slot only once a genuine chunk of it came; until then it is pending (a few
    per address), and the origin's 404 no_stream drops it at once."""
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    asked_fake: list[str] = []
    made = [1]  # the real stream's newest chunk; the test makes the next one (``produce``)
    produce = asyncio.Event()

    def chunk(seq: int) -> bytes:
        return wire.encode(sign_chunk(bid, sid, seq, int(time.time() * 1e6), seq == 1, b"G" * 300))

    async def feed(request: web.Request) -> web.StreamResponse:  # the real stream's feed
        resp = web.StreamResponse()
        await resp.prepare(request)
        sent = 0
        while True:
            while sent < made[0]:
                sent += 1
                await resp.write(_frame(chunk(sent)))
            await produce.wait()
            produce.clear()

    async def real_other(request: web.Request) -> web.Response:
        return web.json_response({"now_us": int(time.time() * 1e6)})

    async def no_stream(request: web.Request) -> web.Response:  # what an origin says of the others
        asked_fake.append(request.path)
        return web.json_response({"error": "no_stream", "message": "not carried here"}, status=404)

    app = web.Application()
    app.router.add_get(f"/origin/{sid}/feed", feed)
    app.router.add_get(f"/origin/{sid}/feed/newest", feed)
    app.router.add_get(f"/origin/{sid}/{{what}}", real_other)
    app.router.add_get("/origin/{other}/{tail:.*}", no_stream)
    runner_o, origin = await _listen(app)
    async with aiohttp.ClientSession() as s:
        edge = Edge(origin, s)
        runner_e, url = await _serve(edge)
        try:
            fakes = [StreamId(Identity.generate().public, "live") for _ in range(edge_mod.MAX_STREAMS)]
            for fake in fakes:
                async with s.get(f"{url}/{fake}/5.chunk") as r:
                    assert r.status == 404
            assert len(edge.streams) <= edge_mod.MAX_PENDING_PER_IP  # pending, a few per address
            await until(lambda: not edge.streams, 10, what="the made-up streams dropped")
            assert edge.counters["streams_unknown"] >= 1 and edge.unknown
            # the real stream: followed, and confirmed by its first genuine chunk
            async with s.get(f"{url}/{sid}/time") as r:
                assert r.status == 200
            await until(lambda: str(sid) in edge.streams and edge.streams[str(sid)].confirmed, 10,
                        what="the real stream confirmed")
            # another flood cannot take its slot, nor more than a few pending ones
            for fake in [StreamId(Identity.generate().public, "live") for _ in range(edge_mod.MAX_STREAMS)]:
                async with s.get(f"{url}/{fake}/5.chunk") as r:
                    assert r.status == 404
            assert edge.streams[str(sid)].confirmed
            assert sum(1 for g in edge.streams.values() if not g.confirmed) <= edge_mod.MAX_PENDING_PER_IP
            # and its requests just ahead of the feed are held and answered by it
            f = edge.streams[str(sid)]
            held = asyncio.ensure_future(s.get(f"{url}/{sid}/{f.latest + 1}.chunk"))
            await until(lambda: edge.holding == 1, 10, what="the request held")
            made[0] += 1  # the broadcaster makes the next chunk
            produce.set()
            async with await asyncio.wait_for(held, 10) as r:
                assert r.status == 200 and http_mod.HELD_HEADER in r.headers
        finally:
            await edge.close()
            await runner_e.cleanup()
            await runner_o.cleanup()


def test_the_edges_quantiles_take_one_rule_for_every_rank() -> None:
    """p50 took the upper middle element and p95 the lower: two samples read p50 954.8 ms,
    p95 178.8 ms (found 2026-12-06). Nearest rank for both: p50 <= p95 <= max."""
    import random
    from collections import deque

    assert edge_mod.rank_figures(deque([0.9548, 0.1788]), 1000.0) == {"p50": 178.8, "p95": 954.8, "max": 954.8, "n": 2}
    rng = random.Random(5)
    for n in range(1, 40):
        q = edge_mod.rank_figures(deque(rng.random() for _ in range(n)), 1.0)
        assert q is not None and q["p50"] <= q["p95"] <= q["max"], q


async def test_an_edge_says_when_its_origins_feed_is_down_and_when_it_is_back(
        monkeypatch: Any, caplog: pytest.LogCaptureFixture) -> None:
    """An origin down for 40 s went unsaid (only /stats counted it); and an edge's ``/``
    named the gateway's pages, which an edge does not have."""
    monkeypatch.setattr(edge_mod, "FEED_DOWN_SAY", 0.0)
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    now = int(time.time() * 1e6)
    runner_o, origin, q = await _driven_origin(sid)
    caplog.set_level("WARNING", logger="oasis")
    async with aiohttp.ClientSession() as s, _edge_following(s, origin, runner_o, sid, feeds=1) as (edge, url):
        q.put_nowait(_frame(wire.encode(sign_chunk(bid, sid, 10, now, True, b"H" * 400))))
        f = edge.streams[str(sid)]
        await until(lambda: f.latest == 10, 10, what="chunk 10 from the feed")
        await runner_o.cleanup()  # the origin goes away: the feed fails, again and again
        await until(lambda: "has failed for" in caplog.text, 20, what="the outage said")
        assert origin in caplog.text and caplog.text.count("has failed for") == 1  # once an outage
        async with s.get(url.rsplit("/origin", 1)[0] + "/") as r:
            assert r.status == 404 and "CDN edge" in (await r.json())["message"]


# ---- an edge told which streams to follow (``oasis edge --follow``, a CDN warmed) ----

def test_an_edge_told_to_follow_a_stream_holds_it_before_any_viewer_asks(
        broadcaster: OasisProcess, tmp_path: Path) -> None:
    """``--follow``: the edge follows the stream from its start, with no request for it, so
    that its first viewer is answered from the feed (a cold edge's first viewer waited for
    its round trips to the origin: 0.6-1.2 s to a far one in the testbed)."""
    procs: list[OasisProcess] = []
    try:
        origin, sid = broadcaster.info["origin"], broadcaster.info["stream_id"]
        e = OasisProcess(["edge", "--origin", origin, "--listen", "127.0.0.1:0", "--follow", sid.upper()],
                         str(tmp_path / "e.log"))
        procs.append(e)
        info = e.wait_info()
        assert info["following"] == [sid]  # (given in upper case: the one spelling)
        base = info["edge"].rsplit("/origin", 1)[0]
        wait_until(lambda: _stats(base)["streams"].get(sid, {}).get("frames", 0) >= 5, 30)
        # both feed links are opened at once, but on a loaded machine the second can come up
        # after the first has brought five chunks: wait for it, as a viewer would not notice
        wait_until(lambda: _stats(base)["streams"][sid]["links"] == edge_mod.FEEDS, 30)
        s = _stats(base)
        f = s["streams"][sid]
        assert f["pinned"] and f["connected"] and f["links"] == edge_mod.FEEDS
        # its event loop's lag, as a node's /stats gives it (none before its first 50-ms tick:
        # on a loaded machine the feed brought five chunks first)
        wait_until(lambda: _stats(base)["loop_lag_ms"] is not None, 30)
        assert _stats(base)["loop_lag_ms"]["n"] >= 1
        assert f'oasis_edge_pinned{{stream="{sid}"}} 1.0' in _get(f"{base}/metrics")[1].decode()
        # nobody asked: not a pass-through, a hit or a pull (the stats above are the operator's)
        assert s["passed"] == s["hits"] == s["pulls"] == s["holds"] == 0
        status, body, _ = _get(f"{info['edge']}/{sid}/latest.json")  # from the feed at once
        assert status == 200 and _stats(base)["latest_answered"] == 1 and _stats(base)["passed"] == 0
        kf = json.loads(body)["keyframe"]
        assert _get(f"{info['edge']}/{sid}/{kf}.chunk")[0] == 200 and _stats(base)["hits"] == 1
        assert e.stop() == 0
    finally:
        for p in procs:
            p.stop()


async def test_a_pinned_streams_feed_is_retried_soon_after_its_origin_fails(monkeypatch: Any) -> None:
    """A pinned stream (``--follow``) its origin carried, then failed (a restart): its feed is
    asked again every UNKNOWN_RETRY s at most, not after a back-off doubling to BACKOFF_MAX
    (its viewers' chunks are pulled through while it is down). A stream a viewer named keeps
    the longer back-off (an origin down for many edges is not asked by all of them at once)."""
    monkeypatch.setattr(edge_mod, "BACKOFF_MIN", 0.02)
    monkeypatch.setattr(edge_mod, "UNKNOWN_RETRY", 0.1)  # (BACKOFF_MAX stays 8 s)
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    body = wire.encode(sign_chunk(bid, sid, 30, int(time.time() * 1e6), True, b"G" * 300))
    asked: list[float] = []

    async def feed(request: web.Request) -> web.StreamResponse:
        asked.append(time.monotonic())
        if len(asked) > 1:
            return web.Response(status=503)  # the origin restarting
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(_frame(body))
        return resp  # (the feed ends: the origin went down)

    app = web.Application()
    app.router.add_get(f"/origin/{sid}/feed", feed)
    runner_o, origin = await _listen(app)
    async with aiohttp.ClientSession() as s:
        edge = Edge(origin, s, feeds=1)
        try:
            edge.pin(str(sid))
            await until(lambda: str(sid) in edge.streams and edge.streams[str(sid)].confirmed, 10,
                        what="the stream carried")
            # past the doubling (0.02 .. 5.12 s: nine tries in ~10 s at BACKOFF_MAX), tries
            # every 0.1 s
            await until(lambda: len(asked) >= 25, 8, what="the feed asked again and again")
            gaps = [b - a for a, b in zip(asked[-10:], asked[-9:], strict=False)]
            assert max(gaps) < 1.0 and edge.counters["feed_failures"] >= 20
        finally:
            await edge.close()
            await runner_o.cleanup()


def test_a_stream_to_follow_that_is_not_a_stream_id_is_a_usage_error(tmp_path: Path) -> None:
    e = OasisProcess(["edge", "--origin", "http://127.0.0.1:9/origin", "--listen", "127.0.0.1:0",
                      "--follow", "not-a-stream"], str(tmp_path / "e.log"))
    try:
        assert e.popen.wait(30) == 2  # a usage error, before the port opens
    finally:
        e.stop()
    assert "--follow 'not-a-stream': not a stream id" in Path(tmp_path / "e.log").read_text()


async def test_a_followed_stream_waits_for_its_broadcast_and_is_never_unfollowed_for_want_of_viewers() -> None:
    """A stream pinned before its broadcast starts: the origin's 404 ``no_stream`` is retried
    (every UNKNOWN_RETRY s at most), not the end of it as for a stream a viewer named; once
    carried it is followed, and it stays followed with no request for IDLE_UNFOLLOW s and
    more. More pins than the edge follows streams, or an id that does not parse, are refused."""
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    carried = asyncio.Event()
    refused: list[str] = []
    q: asyncio.Queue[bytes] = asyncio.Queue()

    async def feed(request: web.Request) -> web.StreamResponse:
        if not carried.is_set():
            refused.append(request.path)
            return web.json_response({"error": "no_stream", "message": "not carried"}, status=404)
        resp = web.StreamResponse()
        await resp.prepare(request)
        while True:
            await resp.write(await q.get())

    app = web.Application()
    app.router.add_get(f"/origin/{sid}/feed", feed)
    app.router.add_get(f"/origin/{sid}/feed/newest", feed)
    runner_o, origin = await _listen(app)
    now = [1000.0]
    async with aiohttp.ClientSession() as s:
        edge = Edge(origin, s, feeds=1, clock=lambda: now[0])
        try:
            with pytest.raises(ValueError, match="not a stream id"):
                edge.pin("garbage")
            f = edge.pin(str(sid))
            # (wait on the edge's count: the origin logs a request before the edge reads its answer)
            await until(lambda: edge.counters["feed_refused"] >= 3, 15, what="the origin asked again while it does not carry it")
            assert len(refused) >= 3
            assert edge.streams.get(str(sid)) is f and f.task is not None  # still followed
            assert edge.counters["streams_unknown"] == 0
            carried.set()  # the broadcast starts
            await until(lambda: f.connected, 15, what="the feed up once the origin carries the stream")
            q.put_nowait(_frame(wire.encode(sign_chunk(bid, sid, 1, int(time.time() * 1e6), True, b"K" * 300))))
            await until(lambda: f.latest == 1 and f.confirmed, 10, what="chunk 1 from the feed")
            assert edge.pending_by_ip == {}  # pending for no asker
            now[0] += edge_mod.IDLE_UNFOLLOW * 3  # nobody asked for three idle periods
            q.put_nowait(_frame(wire.encode(sign_chunk(bid, sid, 2, int(time.time() * 1e6), False, b"P" * 300))))
            await until(lambda: f.latest == 2, 10, what="chunk 2 kept, the stream still followed")
            assert edge.streams.get(str(sid)) is f and f.connected
            others = [StreamId(Identity.generate().public, "live") for _ in range(edge.max_streams - 1)]
            for o in others:
                edge.pin(str(o))
            assert sum(g.pinned for g in edge.streams.values()) == edge.max_streams
            edge.pin(str(sid))  # (pinned already: no one more)
            with pytest.raises(ValueError, match="at most"):
                edge.pin(str(StreamId(Identity.generate().public, "live")))
        finally:
            await edge.close()
            await runner_o.cleanup()


async def test_a_cold_edges_first_viewer_gets_its_start_from_the_feed_or_a_pull_whichever_comes_first() -> None:
    """A stream nobody asked this edge for before: its first viewer's start keyframe is pulled
    from the origin *and* awaited from the feed coming up (which starts at that keyframe),
    and whichever brings it first answers. Before, it was pulled alone (one more round trip
    to a far origin), and asked when the feed had connected but brought nothing it was 404
    "not made yet"."""
    bid = Identity.generate()
    a, b = StreamId(bid.public, "a"), StreamId(bid.public, "b")
    now = int(time.time() * 1e6)
    kf = {str(sid): wire.encode(sign_chunk(bid, sid, 30, now, True, b"K" * 500)) for sid in (a, b)}
    feed_q: asyncio.Queue[bytes] = asyncio.Queue()
    pull_go = {str(a): asyncio.Event(), str(b): asyncio.Event()}
    pulls_asked: list[str] = []
    pull_go[str(b)].set()  # b's origin answers a pull at once; a's only when the test says

    async def feed(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)  # connected: the edge's feed is up, with nothing brought
        if request.match_info["sid"] == str(a):
            while True:
                await resp.write(await feed_q.get())
        await asyncio.Event().wait()  # b's feed brings nothing (held open until shut down)
        return resp

    async def chunk(request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        pulls_asked.append(sid)
        await pull_go[sid].wait()
        return web.Response(body=kf[sid])

    app = web.Application()
    app.router.add_get("/origin/{sid}/feed", feed)
    app.router.add_get("/origin/{sid}/{seq}.chunk", chunk)
    runner_o, origin = await _listen(app)
    async with aiohttp.ClientSession() as s:
        edge = Edge(origin, s, feeds=1)
        runner_e, url = await _serve(edge)
        try:
            for sid in (a, b):
                edge.follow(str(sid))  # (what a viewer's first request does)
            fa, fb = edge.streams[str(a)], edge.streams[str(b)]
            await until(lambda: fa.connected and fb.connected, 10, what="both feeds connected")
            asked = asyncio.ensure_future(s.get(f"{url}/{a}/30.chunk"))
            await until(lambda: pulls_asked == [str(a)] and 30 in fa.waiting, 10,
                        what="the start pulled and awaited from the feed")
            feed_q.put_nowait(_frame(kf[str(a)]))  # the feed brings it first
            async with await asyncio.wait_for(asyncio.shield(asked), 10) as r:
                assert r.status == 200 and await r.read() == kf[str(a)]
            assert edge.counters["cold_feed_hits"] == 1 and edge.counters["misses_ahead"] == 0
            pull_go[str(a)].set()  # the pull ends too, its copy the same bytes
            await until(lambda: not edge._bg, 10, what="the outrun pull finished")
            assert fa.chunks[30] == kf[str(a)] and edge.counters["feed_bad_chunks"] == 0
            # b: the feed brings nothing, the pull answers
            async with s.get(f"{url}/{b}/30.chunk") as r:
                assert r.status == 200 and await r.read() == kf[str(b)]
            assert edge.counters["cold_feed_hits"] == 1 and edge.counters["pulls"] == 2
            assert not fa.waiting and not fb.waiting
            # a pulled chunk is kept but is not where the stream is (only the feed says that):
            # an old keyframe pulled had made latest.json name it, and live chunks 404
            assert fb.chunks[30] == kf[str(b)] and fb.latest == -1 and fb.keyframe == -1
        finally:
            await edge.close()
            await runner_e.cleanup()
            await runner_o.cleanup()


async def test_a_feed_whose_framing_breaks_fails_and_is_reconnected_not_left_hanging(monkeypatch: Any) -> None:
    """An origin answering the feed 200, chunked, then a chunk-size line that is not hex: the
    read waited for good in aiohttp's C parser (past its socket timeout and the origin's close)
    and a followed stream showed a feed up that brought nothing (found 2026-12-06 from
    outside). Each frame is now read within FEED_READ_TIMEOUT: a failure, reconnected."""
    monkeypatch.setattr(edge_mod, "FEED_READ_TIMEOUT", 0.5)
    sid = StreamId(Identity.generate().public, "live")
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(1)
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            await writer.drain()
            later = asyncio.get_running_loop().create_future()  # (the bad line in a segment of its own)
            asyncio.get_running_loop().call_later(0.2, later.set_result, None)
            await later
            writer.write(b"zz\r\nbad\r\n")  # not a chunk size
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession() as s:
        edge = Edge(f"http://127.0.0.1:{port}/origin", s, feeds=1)
        try:
            f = edge.pin(str(sid))
            await until(lambda: edge.counters["feed_failures"] >= 2 and len(served) >= 2, 15,
                        what="the broken feed failed and was asked again")
            assert f.latest == -1 and f.frames == 0
        finally:
            await edge.close()
            server.close()
            await server.wait_closed()


async def test_one_address_cannot_take_every_pull_and_a_cold_start_waits_for_the_feed(monkeypatch: Any) -> None:
    """A cold stream whose origin is slow to answer pulls: one address asking many seqs
    starts at most MAX_PULLS_PER_IP pulls, and a request with no pull to be had ("busy") is
    held for the feed (within the hold's caps) instead of refused at once: answered 503, a
    cold viewer's start was refused while one address held all 64 (found 2026-12-06)."""
    monkeypatch.setattr(edge_mod, "MAX_PULLS", 6)
    monkeypatch.setattr(edge_mod, "MAX_PULLS_PER_IP", 3)
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    now = int(time.time() * 1e6)
    kf = {q: wire.encode(sign_chunk(bid, sid, q, now, q == 50, b"C" * 200)) for q in range(40, 60)}
    stall = asyncio.Event()  # pulls stall until the end

    async def chunk(request: web.Request) -> web.Response:
        await stall.wait()
        return web.Response(status=404)

    runner_o, origin, feed_q = await _driven_origin(sid, chunk)
    async with aiohttp.ClientSession() as a, aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as b:
        edge = Edge(origin, a, feeds=1)
        runner_e, url = await _serve(edge)
        try:
            f = edge.pin(str(sid))
            await until(lambda: f.connected, 10, what="the feed connected, bringing nothing")
            flood = [asyncio.ensure_future(a.get(f"{url}/{sid}/{q}.chunk")) for q in range(40, 45)]
            await until(lambda: len(edge._pulls) == 3 and edge.holding == 2, 10,
                        what="three pulls for the address, two more requests held for the feed")
            other = asyncio.ensure_future(b.get(f"{url}/{sid}/50.chunk"))  # another address: a pull slot
            await until(lambda: len(edge._pulls) == 4, 10, what="the other address's pull")
            feed_q.put_nowait(_frame(kf[50]))
            feed_q.put_nowait(_frame(kf[43]))  # one of the held ones
            async with await asyncio.wait_for(asyncio.shield(other), 10) as r:
                assert r.status == 200 and await r.read() == kf[50]
            async with await asyncio.wait_for(asyncio.shield(flood[3]), 10) as r:
                assert r.status == 200 and await r.read() == kf[43]
            assert edge.counters["cold_feed_hits"] == 2 and edge.counters["pulls_refused"] == 2
            stall.set()
            for t in flood:
                (await t).close()
        finally:
            stall.set()
            await edge.close()
            await runner_e.cleanup()
            await runner_o.cleanup()
