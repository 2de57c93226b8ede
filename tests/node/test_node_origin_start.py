"""A viewer that no peer can reach still plays, from the origin.

Real processes on loopback: a broadcaster (with its embedded origin), and a viewer whose
link names only a dead bootstrap peer and no tracker, as a viewer behind a symmetric NAT
in a swarm of NATed peers finds itself. The viewer has no neighbour; it asks the origin
for the latest keyframe (``latest.json``, then the signed chunk), starts there, plays
every chunk from the origin, and its gateway serves a stream a player decodes.
"""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest
from procs import OasisProcess, start_broadcaster, wait_until

from oasis.core import streamlink
from oasis.core.identity import Identity


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


def _dead_port() -> int:
    """A loopback UDP port with nobody behind it (bound, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _slow(seconds: float) -> None:
    """An origin handler's answer time (a far or slow origin under test): it answers that
    much later. Not a wait of the test for anything: the test waits on events."""
    import asyncio

    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(seconds, done.set_result, None)
    await done


async def _origin(sid: Any, latest: Any, chunk: Any) -> tuple[Any, int]:
    """An aiohttp origin on loopback with these two handlers: its runner and port."""
    from aiohttp import web

    app = web.Application()
    app.router.add_get(f"/origin/{sid}/latest.json", latest)
    app.router.add_get(f"/origin/{sid}/{{seq}}.chunk", chunk)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def _started_viewer(sid: Any, latest: Any, chunk: Any, start_after: float,
                          retry: float) -> AsyncIterator[Any]:
    """A real Node with no neighbour watching ``sid`` from an aiohttp origin on loopback
    (:func:`_origin` with these handlers): yields its stream once the player has its first
    chunk (the start keyframe; a bounded wait on the event), then stops node and origin."""
    import asyncio

    from oasis.core import swarm as sw
    from oasis.node.node import Node

    runner, port = await _origin(sid, latest, chunk)
    node = Node(Identity.generate(), sw.SwarmConfig(origin_start_after=start_after, origin_start_retry=retry),
                target_neighbours=0)
    await node.start()
    try:
        ls = node.add_stream(sid, is_source=False, origin_url=f"http://127.0.0.1:{port}/origin")
        await asyncio.wait_for(ls.playout.changed.wait(), 20)
        yield ls
    finally:
        await node.close()
        await runner.cleanup()


def test_a_viewer_no_peer_reaches_plays_from_the_origin(tmp_path: Path) -> None:
    procs: list[OasisProcess] = []
    try:
        b = start_broadcaster(tmp_path, procs)
        full = streamlink.parse(b.info["link"])
        assert full.descriptor is not None and full.descriptor.origin
        nobody = Identity.from_private_bytes(bytes([7]) * 32).public
        alone = streamlink.StreamLink(full.sid, full.descriptor,
                                      (streamlink.Bootstrap(nobody, "127.0.0.1", _dead_port()),), None)
        v = OasisProcess(["watch", alone.format(), "--json", "--gateway", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "v")], str(tmp_path / "v.log"))
        procs.append(v)
        gateway = v.wait_info()["gateway"]

        def stream() -> dict[str, Any]:
            return get_json(gateway + "/stats?detail=1")["streams"][0]

        wait_until(lambda: stream()["chunks"] >= 60, 60)
        s = stream()
        rec = s["record"]
        assert s["neighbours"] == 0  # nobody to get it from but the origin
        assert rec["started_at"] is not None and s["swarm_counters"]["origin_starts"] >= 1
        assert s["origin_starts"] >= 1 and s["origin_fetches"] >= 60
        assert set(s["bytes"]) == {"origin"} and s["bytes"]["origin"] > 0
        # a player gets a decodable stream from the gateway
        with av.open(gateway + s["player_url"], timeout=20) as c:
            frame = next(c.decode(video=0))
        assert frame.width > 0
    finally:
        for p in procs:
            p.stop()


async def test_a_lying_origin_cannot_start_or_crash_a_viewer() -> None:
    """latest.json is not signed: an origin (or a CDN in front of it) that answers junk,
    an oversized or deeply nested body, a keyframe out of range, a chunk signed by someone
    else or a stale keyframe gets failures counted and retries, never a start; the first
    honest answer starts the viewer. A real Node, its real fetch path, a hostile aiohttp
    origin on loopback."""
    import time

    from aiohttp import web

    from oasis.core import wire
    from oasis.core.stream import StreamId, sign_chunk

    bid, other = Identity.generate(), Identity.generate()
    sid = StreamId(bid.public, "live")
    answers = [
        (200, b"[" * 400 + b"]" * 400),  # nesting
        (200, b'{"keyframe": 7, "pad": "' + b"x" * 4000 + b'"}'),  # over the cap
        (200, b'{"keyframe": -5}'),
        (200, b'{"keyframe": 36893488147419103232}'),  # 2^65
        (200, b'{"keyframe": "7"}'),
        (404, b"{}"),
        (200, b'{"keyframe": 7}'),  # names a chunk signed by another key
        (200, b'{"keyframe": 8}'),  # a genuine keyframe, but 60 s old
    ]
    served: list[int] = []

    async def latest(request: web.Request) -> web.Response:
        i = len(served)
        served.append(i)
        if i < len(answers):
            status, body = answers[i]
            return web.Response(status=status, body=body, content_type="application/json")
        return web.json_response({"latest": 9, "keyframe": 9, "time": time.time()})

    async def chunk(request: web.Request) -> web.Response:
        seq = int(request.match_info["seq"])
        if seq == 7:
            c = sign_chunk(other, StreamId(other.public, "live"), 7, int(time.time() * 1e6), True, b"G" * 188)
        elif seq == 8:
            c = sign_chunk(bid, sid, 8, int((time.time() - 60) * 1e6), True, b"G" * 188)
        else:
            c = sign_chunk(bid, sid, seq, int(time.time() * 1e6), True, b"G" * 188)
        return web.Response(body=wire.encode(c))

    async with _started_viewer(sid, latest, chunk, 0.1, 0.1) as ls:
        assert len(served) == len(answers) + 1, served  # every lie answered, then the truth
        # (the first lie went to the read at the join, LiveStream.prefetch_latest; each of the
        # others to an origin start)
        assert ls.swarm.start_seq == 9 and ls.swarm.counters.origin_starts == len(answers)
        # the six bad replies (the first to the read at the join), and the stale keyframe 8
        # (fetched, then refused: too old to start from); 7 fetched and failed verification
        assert ls.origin_prefetch_failed == 1 and ls.origin_failures == 5 + 1
        assert ls.swarm.counters.bad_chunks == 1  # the other key's chunk failed verification
        assert 8 not in ls.record.lat  # the stale keyframe was kept as a clock, not a start


async def test_a_chunk_body_in_several_segments_is_read_to_its_end(monkeypatch: Any) -> None:
    """A CDN or origin may send a chunk's body in several TCP segments: the viewer reads
    it to its end (``read(n)`` alone returns the first segment, which then failed to
    decode and the chunk was lost). A real Node's fetch path, an aiohttp origin that
    sends each segment only once the viewer has read the one before (so the body
    certainly arrives in pieces)."""
    import asyncio
    import time

    import aiohttp
    from aiohttp import web

    from oasis.core import wire
    from oasis.core.stream import StreamId, sign_chunk

    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    segments_sent: list[int] = []
    read_some = asyncio.Event()  #: the viewer's HTTP client returned bytes from a read
    plain_read = aiohttp.StreamReader.read

    async def read(self: aiohttp.StreamReader, n: int = -1) -> bytes:
        got = await plain_read(self, n)
        if got:
            read_some.set()
        return got

    monkeypatch.setattr(aiohttp.StreamReader, "read", read)

    async def latest(request: web.Request) -> web.Response:
        return web.json_response({"latest": 9, "keyframe": 9, "time": time.time()})

    async def chunk(request: web.Request) -> web.StreamResponse:
        seq = int(request.match_info["seq"])
        body = wire.encode(sign_chunk(bid, sid, seq, int(time.time() * 1e6), True, b"G" * 18_800))
        resp = web.StreamResponse(headers={"Content-Length": str(len(body))})
        await resp.prepare(request)
        third = len(body) // 3
        for part in (body[:third], body[third:2 * third], body[2 * third:]):
            read_some.clear()
            await resp.write(part)
            segments_sent.append(len(part))
            if len(segments_sent) < 3:  # the next segment only after the viewer read this one
                await asyncio.wait_for(read_some.wait(), 10)
        await resp.write_eof()
        return resp

    async with _started_viewer(sid, latest, chunk, 0.1, 1.0) as ls:  # (1 s per try)
        assert ls.swarm.start_seq == 9
        assert ls.origin_failures == 0  # the first answer, read whole, started it
        assert len(segments_sent) >= 3


async def test_the_start_keyframe_request_is_timed_and_primes_the_fallback() -> None:
    """The node times the start keyframe's own request -- not ``latest.json`` before it --
    and the core takes it as its first origin fetch time (``origin_start_primed``), so the
    first fallbacks of a viewer started from a far origin are asked early enough
    (docs/oftp.md §9.5). An origin whose latest.json takes 0.6 s and whose chunks 0.2 s."""
    import time

    from aiohttp import web

    from oasis.core import wire
    from oasis.core.repair import ORIGIN_SAMPLES
    from oasis.core.stream import StreamId, sign_chunk

    bid = Identity.generate()
    sid = StreamId(bid.public, "live")

    async def latest(request: web.Request) -> web.Response:
        await _slow(0.6)  # the origin's delay under test, not a synchronisation
        return web.json_response({"latest": 9, "keyframe": 9, "time": time.time()})

    async def chunk(request: web.Request) -> web.Response:
        await _slow(0.2)  # (the same)
        seq = int(request.match_info["seq"])
        return web.Response(body=wire.encode(sign_chunk(bid, sid, seq, int(time.time() * 1e6), True, b"G" * 188)))

    async with _started_viewer(sid, latest, chunk, 0.1, 5.0) as ls:
        assert ls.swarm.start_seq == 9
        c, r = ls.swarm.counters, ls.swarm.repair
        assert c.origin_starts == 1 and c.origin_start_primed == 1
        assert r.origin_samples >= ORIGIN_SAMPLES
        # the keyframe's 0.2 s (and the loop's slack), not latest.json's 0.6 s before it
        assert 0.2 <= r.origin_srtt < 0.55, r.origin_srtt



@pytest.mark.parametrize("fail_first", [False, True])
async def test_latest_json_read_at_the_join_makes_the_origin_start_one_request(fail_first: bool) -> None:
    """A viewer reads ``latest.json`` once at its join; its origin start then asks for the
    keyframe named at once, without reading the file again (docs/oftp.md §9.5). If that read
    failed, the start reads it as before (the failure counted). A real Node and an aiohttp
    origin on loopback."""
    import time

    from aiohttp import web

    from oasis.core import wire
    from oasis.core.stream import StreamId, sign_chunk

    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    reads: list[float] = []
    chunks: list[int] = []

    async def latest(request: web.Request) -> web.Response:
        reads.append(time.monotonic())
        if fail_first and len(reads) == 1:
            return web.Response(status=503)
        return web.json_response({"latest": 9, "keyframe": 9, "time": time.time()})

    async def chunk(request: web.Request) -> web.Response:
        seq = int(request.match_info["seq"])
        chunks.append(seq)
        return web.Response(body=wire.encode(sign_chunk(bid, sid, seq, int(time.time() * 1e6), True, b"G" * 188)))

    async with _started_viewer(sid, latest, chunk, 0.3, 5.0) as ls:
        assert ls.swarm.start_seq == 9 and chunks[0] == 9
        from oasis.node.http import node_stats
        assert node_stats(ls.node)["streams"][0]["origin_prefetched"] == ls.origin_prefetched  # (on /stats)
        assert ls.origin_failures == 0
        if fail_first:  # the join's read failed (counted): the start read the file again
            assert len(reads) == 2 and ls.origin_prefetched == 0 and ls.origin_prefetch_failed == 1
        else:  # read once, at the join, and used by the start
            assert len(reads) == 1 and ls.origin_prefetched == 1 and ls.origin_prefetch_failed == 0


@pytest.mark.parametrize("mode", ["wrong_seq", "not_keyframe", "stale", "stall"])
async def test_a_cdn_whose_start_answers_are_wrong_or_stall_is_counted_and_failed_over(mode: str) -> None:
    """A CDN in front of the origin answers a start with another chunk than asked, names a
    chunk that is not a keyframe or a keyframe too old to start from, or stalls: each is a
    counted failure, and after ``FAILOVER_AFTER`` of them the viewer asks the stream's next
    URL and starts there (before: nothing counted, or timeouts that never failed over, and a
    viewer no peer reached never played; found 2026-12-06 from outside)."""
    import asyncio
    import time

    from aiohttp import web

    from oasis.core import swarm as sw
    from oasis.core import wire
    from oasis.core.stream import StreamId, sign_chunk
    from oasis.node import node as node_mod
    from oasis.node.node import Node

    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    never = asyncio.Event()  # (set when the test ends: a stalled answer then ends too)

    def body(seq: int, kf: bool = True, age: float = 0.0) -> bytes:
        return wire.encode(sign_chunk(bid, sid, seq, int((time.time() - age) * 1e6), kf, b"G" * 188))

    async def bad_latest(request: web.Request) -> web.Response:
        if mode == "stall":
            await never.wait()
        return web.json_response({"latest": 9, "keyframe": 9, "time": time.time()})

    async def bad_chunk(request: web.Request) -> web.Response:
        seq = int(request.match_info["seq"])
        if mode == "wrong_seq":
            return web.Response(body=body(seq - 1))
        if mode == "not_keyframe":
            return web.Response(body=body(seq, kf=False))
        return web.Response(body=body(seq, age=60.0))  # stale

    async def good_latest(request: web.Request) -> web.Response:
        return web.json_response({"latest": 9, "keyframe": 9, "time": time.time()})

    async def good_chunk(request: web.Request) -> web.Response:
        return web.Response(body=body(int(request.match_info["seq"])))

    bad, bad_port = await _origin(sid, bad_latest, bad_chunk)
    good, good_port = await _origin(sid, good_latest, good_chunk)
    node = Node(Identity.generate(), sw.SwarmConfig(origin_start_after=0.05, origin_start_retry=0.2),
                target_neighbours=0)
    await node.start()
    try:
        bad_url, good_url = f"http://127.0.0.1:{bad_port}/origin", f"http://127.0.0.1:{good_port}/origin"
        ls = node.add_stream(sid, is_source=False, origin_url=bad_url)
        ls.set_origin(bad_url, [good_url])
        await asyncio.wait_for(ls.playout.changed.wait(), 30)
        assert ls.swarm.start_seq == 9 and ls.origin_url == good_url and ls.origin_failovers == 1
        assert ls.origin_failures >= node_mod.FAILOVER_AFTER
        assert ls.swarm.counters.origin_start_primed == 1  # from the good answer only
    finally:
        never.set()
        await node.close()
        await bad.cleanup()
        await good.cleanup()
