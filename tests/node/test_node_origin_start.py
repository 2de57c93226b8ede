"""A viewer that no peer can reach still plays, from the origin.

Real processes on loopback: a broadcaster (with its embedded origin), and a viewer whose
link names only a dead bootstrap peer and no tracker, as a viewer behind a symmetric NAT
in a swarm of NATed peers finds itself. The viewer has no neighbour; it asks the origin
for the latest keyframe (``latest.json``, then the signed chunk), starts there, plays
every chunk from the origin, and its gateway serves a stream a player decodes.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import av
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
    import asyncio
    import time

    from aiohttp import web

    from oasis.core import swarm as sw
    from oasis.core import wire
    from oasis.core.stream import StreamId, sign_chunk
    from oasis.node.node import Node

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

    runner, port = await _origin(sid, latest, chunk)
    cfg = sw.SwarmConfig(origin_start_after=0.1, origin_start_retry=0.1)
    node = Node(Identity.generate(), cfg, target_neighbours=0)
    await node.start()
    try:
        ls = node.add_stream(sid, is_source=False, origin_url=f"http://127.0.0.1:{port}/origin")
        # the first chunk the player gets is the start keyframe (bounded wait on the event)
        await asyncio.wait_for(ls.playout.changed.wait(), 20)
        assert len(served) == len(answers) + 1, served  # every lie answered, then the truth
        assert ls.swarm.start_seq == 9 and ls.swarm.counters.origin_starts == len(answers) + 1
        assert ls.origin_failures == 6  # the six bad replies; 7 and 8 fetched, then refused
        assert ls.swarm.counters.bad_chunks == 1  # the other key's chunk failed verification
        assert 8 not in ls.record.lat  # the stale keyframe was kept as a clock, not a start
    finally:
        await node.close()
        await runner.cleanup()


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

    from oasis.core import swarm as sw
    from oasis.core import wire
    from oasis.core.stream import StreamId, sign_chunk
    from oasis.node.node import Node

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

    runner, port = await _origin(sid, latest, chunk)
    cfg = sw.SwarmConfig(origin_start_after=0.1, origin_start_retry=1.0)  # 1 s per try
    node = Node(Identity.generate(), cfg, target_neighbours=0)
    await node.start()
    try:
        ls = node.add_stream(sid, is_source=False, origin_url=f"http://127.0.0.1:{port}/origin")
        await asyncio.wait_for(ls.playout.changed.wait(), 20)
        assert ls.swarm.start_seq == 9
        assert ls.origin_failures == 0  # the first answer, read whole, started it
        assert len(segments_sent) >= 3
    finally:
        await node.close()
        await runner.cleanup()


async def test_the_start_keyframe_request_is_timed_and_primes_the_fallback() -> None:
    """The node times the start keyframe's own request -- not ``latest.json`` before it --
    and the core takes it as its first origin fetch time (``origin_start_primed``), so the
    first fallbacks of a viewer started from a far origin are asked early enough
    (docs/oftp.md §9.5). An origin whose latest.json takes 0.6 s and whose chunks 0.2 s."""
    import asyncio
    import time

    from aiohttp import web

    from oasis.core import swarm as sw
    from oasis.core import wire
    from oasis.core.repair import ORIGIN_SAMPLES
    from oasis.core.stream import StreamId, sign_chunk
    from oasis.node.node import Node

    bid = Identity.generate()
    sid = StreamId(bid.public, "live")

    async def latest(request: web.Request) -> web.Response:
        await asyncio.sleep(0.6)  # the origin's delay under test, not a synchronisation
        return web.json_response({"latest": 9, "keyframe": 9, "time": time.time()})

    async def chunk(request: web.Request) -> web.Response:
        await asyncio.sleep(0.2)  # (the same)
        seq = int(request.match_info["seq"])
        return web.Response(body=wire.encode(sign_chunk(bid, sid, seq, int(time.time() * 1e6), True, b"G" * 188)))

    runner, port = await _origin(sid, latest, chunk)
    cfg = sw.SwarmConfig(origin_start_after=0.1, origin_start_retry=5.0)
    node = Node(Identity.generate(), cfg, target_neighbours=0)
    await node.start()
    try:
        ls = node.add_stream(sid, is_source=False, origin_url=f"http://127.0.0.1:{port}/origin")
        await asyncio.wait_for(ls.playout.changed.wait(), 20)
        assert ls.swarm.start_seq == 9
        c, r = ls.swarm.counters, ls.swarm.repair
        assert c.origin_starts == 1 and c.origin_start_primed == 1
        assert r.origin_samples >= ORIGIN_SAMPLES
        # the keyframe's 0.2 s (and the loop's slack), not latest.json's 0.6 s before it
        assert 0.2 <= r.origin_srtt < 0.55, r.origin_srtt
    finally:
        await node.close()
        await runner.cleanup()
