"""Every HTTP face (origin, tracker, tickets, gateway, API) is served by ``start_http``, which
guards it against clients that hold connections: idle and half-sent requests are closed after
``IDLE_TIMEOUT``, open connections are capped in all and per address, a player or file reader
that reads nothing is dropped after ``WRITE_TIMEOUT``. Found 2026-12-02 by an outside attacker:
20,000 idle connections took every file descriptor of a broadcaster (its origin, tracker and
API answered nothing), 64 clients that never read held every /live slot for ever."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web

from oasis.core import swarm as sw
from oasis.core.announce import sign_announce
from oasis.core.identity import Identity
from oasis.core.metrics import ViewerRecord
from oasis.core.stream import StreamId
from oasis.core.tracker import Tracker
from oasis.node import api as napi
from oasis.node import http
from oasis.node.node import Node
from oasis.node.runtime import start_http


async def _closed_within(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True if the server closes the connection (EOF or reset) within ``timeout`` s."""
    try:
        return await asyncio.wait_for(reader.read(1 << 16), timeout) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def _hello_app() -> web.Application:
    app = web.Application()
    http.harden(app)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")
    app.router.add_get("/hello", hello)
    return app


async def test_idle_and_half_sent_connections_are_closed_after_the_idle_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "IDLE_TIMEOUT", 1.0)
    runner, port = await start_http(_hello_app(), "127.0.0.1", 0)
    try:
        idle = await asyncio.open_connection("127.0.0.1", port)
        half = await asyncio.open_connection("127.0.0.1", port)
        half[1].write(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")  # and nothing more
        await half[1].drain()
        t0 = time.monotonic()
        assert await _closed_within(idle[0], 30) and await _closed_within(half[0], 30)
        assert time.monotonic() - t0 < 25  # the 1 s timeout, not aiohttp's hour
        # a client that keeps to its requests is served as before
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/hello") as r:
            assert r.status == 200 and await r.text() == "hello"
        for _, w in (idle, half):
            w.close()
    finally:
        await runner.cleanup()


async def test_connections_over_the_cap_are_refused_counted_and_the_face_keeps_serving(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "MAX_CONNECTIONS", 16)
    room = asyncio.Event()  # set when a connection the guard held is gone and one fits again
    lost = http.ConnectionGuard.lost

    def lost_and_tell(self: http.ConnectionGuard, handler: object, exc: BaseException | None = None) -> None:
        lost(self, handler, exc)
        if len(self) < self.total:
            room.set()

    monkeypatch.setattr(http.ConnectionGuard, "lost", lost_and_tell)
    app = _hello_app()
    runner, port = await start_http(app, "127.0.0.1", 0)
    try:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(16)]
        extra = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        for r, _ in extra:  # closed as they open
            assert await _closed_within(r, 10)
        assert app[http.HTTP_COUNTERS]["http_connections_refused"] == 4
        # the held ones still work, and once they go, a newcomer is served
        held[0][1].write(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await asyncio.wait_for(held[0][0].readuntil(b"hello"), 10)).startswith(b"HTTP/1.1 200")
        assert not room.is_set()
        for _, w in held + extra:
            w.close()
        await asyncio.wait_for(room.wait(), 10)  # the server saw a close
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/hello") as r:
            assert r.status == 200
    finally:
        await runner.cleanup()


class _Transport(asyncio.Transport):
    """A stand-in socket for the guard's bookkeeping (one module's unit test)."""

    def __init__(self, ip: str) -> None:
        super().__init__()
        self.ip = ip
        self.aborted = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return (self.ip, 5555) if name == "peername" else default

    def abort(self) -> None:
        self.aborted = True


def test_one_address_gets_at_most_its_share_of_connections_loopback_excepted() -> None:
    made: list[object] = []

    class Server:
        def connection_made(self, handler: object, transport: object) -> None:
            made.append(handler)

        def connection_lost(self, handler: object, exc: BaseException | None = None) -> None:
            made.remove(handler)

    counters: dict[str, int] = {}
    srv = Server()
    guard = http.ConnectionGuard(srv, counters, total=10, per_ip=3)  # type: ignore[arg-type]
    ts = [_Transport("198.51.100.7") for _ in range(4)]
    for i, t in enumerate(ts):
        srv.connection_made(f"h{i}", t)
    assert [t.aborted for t in ts] == [False, False, False, True] and len(guard) == 3
    other = _Transport("198.51.100.8")
    srv.connection_made("o", other)
    assert not other.aborted
    srv.connection_lost("h0")
    again = _Transport("198.51.100.7")
    srv.connection_made("h9", again)
    assert not again.aborted and counters["http_connections_refused"] == 1
    local = [_Transport("127.0.0.1") for _ in range(6)]  # the local player, the demo: no share
    for i, t in enumerate(local):
        srv.connection_made(f"l{i}", t)
    assert not any(t.aborted for t in local) and len(guard) == 10
    last = _Transport("127.0.0.1")
    srv.connection_made("l9", last)  # but the total holds for everyone
    assert last.aborted and counters["http_connections_refused"] == 2
    assert made == ["h1", "h2", "o", "h9"] + [f"l{i}" for i in range(6)]


async def test_a_player_that_reads_nothing_is_dropped_and_a_head_ends_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "MAX_PLAYERS", 1)
    monkeypatch.setattr(http, "WRITE_TIMEOUT", 1.0)
    dropped = asyncio.Event()  # set when the gateway drops a reader (the real write_or_drop)
    write_or_drop = http.write_or_drop

    async def write_or_tell(*args: object) -> None:
        try:
            await write_or_drop(*args)  # type: ignore[arg-type]
        except ConnectionResetError:
            dropped.set()
            raise

    monkeypatch.setattr(http, "write_or_drop", write_or_tell)
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    ls = node.add_stream(StreamId(Identity.generate().public, "live"), is_source=False)
    for seq in range(64):  # 64 MB of "stream": far more than the sockets buffer
        ls.playout.add(seq, bytes(1 << 20), 0)
    app = web.Application()
    http.add_gateway_routes(app, node)
    runner, port = await start_http(app, "127.0.0.1", 0)
    path = f"/live/{ls.text_id}.ts?from=start"
    try:
        # HEAD: the headers, and the slot is free again (it used to loop for ever)
        async with aiohttp.ClientSession() as s:
            async with s.head(f"http://127.0.0.1:{port}{path}") as r:
                assert r.status == 200 and r.headers["Content-Type"] == "video/mp2t"
        # a GET that never reads: dropped once the socket is full and WRITE_TIMEOUT passes
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        await asyncio.wait_for(dropped.wait(), 60)  # "the silent reader was never dropped" else
        assert app[http.HTTP_COUNTERS]["http_slow_readers_dropped"] == 1
        writer.close()
        # its slot is free: the one player this gateway allows is served
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
            assert r.status == 200
            assert len(await r.content.readexactly(1 << 20)) == 1 << 20
    finally:
        await runner.cleanup()
        await node.close()


async def test_a_body_that_does_not_decode_is_a_charged_400_and_a_cross_site_announce_is_refused() -> None:
    tracker = Tracker(source_rate=0.001, source_burst=5)
    app = web.Application()
    http.add_tracker_routes(app, tracker)
    runner, port = await start_http(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}/tracker/announce"
    junk = b"\x1f\x8b" + bytes(18)  # a gzip header over nothing
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(url, data=junk, headers={"Content-Encoding": "gzip",
                                                       "Content-Type": "application/json"}) as r:
                assert r.status == 400 and (await r.json())["error"] == "bad_body"
            # a page on another site can POST text/plain without a CORS preflight: refused
            me = Identity.generate()
            a = sign_announce(me, StreamId(me.public, "x"), "127.0.0.1", 9, int(time.time() * 1000))
            body = msgspec.json.encode(a.to_json())
            async with s.post(url, data=body, headers={"Content-Type": "text/plain"}) as r:
                assert r.status == 415 and (await r.json())["error"] == "bad_content_type"
            assert not tracker.streams
            # each of those took a token: junk is rate-limited like an announce
            statuses = []
            for _ in range(4):
                async with s.post(url, data=gzip.compress(b"{") + b"x",
                                  headers={"Content-Encoding": "gzip"}) as r:
                    statuses.append(r.status)
            assert statuses[-1] == 429 and statuses.count(429) == 1, statuses
        assert app[http.HTTP_COUNTERS]["http_internal_errors"] == 0
    finally:
        await runner.cleanup()


def test_a_long_running_viewers_record_stays_bounded_and_its_totals_count_everything(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ViewerRecord, "KEEP", 100)
    r = ViewerRecord(joined_at=0.0, playout_delay=0.5)
    for seq in range(1000):
        r.delivered(seq, seq * 0.033, seq * 0.033 + 0.05, "p2p", 10, seq % 30 == 0)
        if seq % 10 == 0:
            r.skip(seq)
    assert r.verified == 1000 and r.given_up == 100
    assert len(r.lat_seq) <= 200 and len(r.lat) == len(r.lat_seq) and len(r.on_time) <= 200
    assert r.lat_seq[-1] == 999 and r.on_time[-1] == 999
    window = r.to_json(since=950)
    assert sorted(int(k) for k in window["latencies"]) == list(range(950, 1000))
    assert window["skipped"] == [950, 960, 970, 980, 990] and window["on_time"][0] == 950


async def test_a_face_on_loopback_answers_only_loopback_hosts_and_refusals_are_never_cached() -> None:
    """DNS rebinding: a page whose name now points at 127.0.0.1 read the gateway's /stats
    and /streams (Host: evil.example got 200). And 404s carried no Cache-Control, so a CDN
    in front of the origin could cache them."""
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    app = web.Application()
    http.add_gateway_routes(app, node)
    runner, port = await start_http(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/streams", headers={"Host": "evil.example"}) as r:
                assert r.status == 403 and (await r.json())["error"] == "bad_host"
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "[::1]"):
                async with s.get(f"http://127.0.0.1:{port}/streams", headers={"Host": host}) as r:
                    assert r.status == 200, host
            async with s.get(f"http://127.0.0.1:{port}/no/such/route") as r:
                assert r.status == 404 and r.headers["Cache-Control"] == "no-store"
            bad = "a" * 52 + ".live"
            async with s.get(f"http://127.0.0.1:{port}/live/{bad}.ts") as r:
                assert r.status == 404 and r.headers["Cache-Control"] == "no-store"
        assert app[http.HTTP_COUNTERS]["http_bad_host"] == 1
    finally:
        await runner.cleanup()
        await node.close()


async def _raw(port: int, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection; everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)  # to EOF: the server must close it
    finally:
        writer.close()


BAD_REQUESTS = (b"GARBAGE\r\n\r\n",  # not a request line
                b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",  # no colon
                b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n",  # > 8 KiB
                b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # a long line


async def test_requests_the_http_parser_refuses_are_json_and_close_the_connection() -> None:
    """A malformed request line, a bad header, a head over 8 KiB: aiohttp's parser answers
    them before any middleware, and they were its plain text while every other refusal is
    JSON (found 2026-12-02). The connection is still closed after each (``_raw`` returns
    only at EOF), counted, and the face serves on."""
    app = _hello_app()
    runner, port = await start_http(app, "127.0.0.1", 0)
    try:
        for req in BAD_REQUESTS:
            raw = await _raw(port, req)
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0], raw[:200]
            assert b"Content-Type: application/json" in head and b"Cache-Control: no-store" in head
            err = msgspec.json.decode(body)
            assert err["error"] == "bad_request" and err["message"].startswith("the HTTP parser refused")
        assert app[http.HTTP_COUNTERS]["http_parser_refused"] == len(BAD_REQUESTS)
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/hello") as r:
            assert r.status == 200 and await r.text() == "hello"
    finally:
        await runner.cleanup()


async def test_the_api_answers_parser_refusals_in_its_own_json_shape(tmp_path: Path) -> None:
    """The local API's refusals are ``{"error": {"code", "message"}}``: so are its parser's."""
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    runner = None
    try:
        runner, api = await napi.start_api(node, str(tmp_path), "127.0.0.1:0")
        port = int(api.url.rsplit(":", 1)[1].split("/")[0])
        for req in BAD_REQUESTS:
            raw = await _raw(port, req.replace(b"/hello", b"/v1/streams"))
            head, _, body = raw.partition(b"\r\n\r\n")
            assert b" 400 " in head.split(b"\r\n")[0] and b"application/json" in head
            err = msgspec.json.decode(body)["error"]
            assert err["code"] == "bad_request" and "parser" in err["message"]
    finally:
        if runner is not None:
            await runner.cleanup()
        await node.close()


async def test_a_player_that_reads_a_little_now_and_then_is_dropped_once_far_behind(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found 2026-12-06 from outside: readers that took 2 KB every 3 s never met the write
    timeout and held their slots for ever (32 of them held every origin feed; a real edge
    could not follow the stream). A ``/live`` player whose next chunk leaves the window a
    second time is dropped, counted, and its slot is free again. The stream runs on the
    reader's clock, not the wall's: for each 16 KiB the player takes, ten 64 KiB chunks are
    made (forty times what it reads), into a window of 30."""
    monkeypatch.setattr(http, "MAX_PLAYERS", 1)
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    ls = node.add_stream(StreamId(Identity.generate().public, "live"), is_source=False)
    ls.playout.keep = 30
    made = 0

    def make(n: int) -> None:
        nonlocal made
        for _ in range(n):
            ls.playout.add(made, bytes(64 * 1024), 0)
            made += 1

    make(30)
    app = web.Application()
    http.add_gateway_routes(app, node)
    runner, port = await start_http(app, "127.0.0.1", 0)
    counters = app[http.HTTP_COUNTERS]
    path = f"/live/{ls.text_id}.ts"
    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)  # (small buffers: quick)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        # (the kernel still holds what was written before the drop: the reader would read
        # megabytes before it saw the end, so the gateway's count is watched; bounded)
        for _ in range(5000):
            if counters.get("http_behind_readers_dropped"):
                break
            try:
                await asyncio.wait_for(reader.read(16 * 1024), 1.0)
            except (TimeoutError, ConnectionError):
                pass
            make(10)
        assert counters.get("http_behind_readers_dropped") == 1, "the player far behind was never dropped"
        assert counters.get("http_slow_readers_dropped", 0) == 0  # (it never went silent)
        writer.close()
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
            assert r.status == 200  # its slot is free
            for _ in range(100):  # a player that keeps up (a chunk read, a chunk made): kept
                assert len(await asyncio.wait_for(r.content.readexactly(64 * 1024), 10)) == 64 * 1024
                make(1)
        assert counters.get("http_behind_readers_dropped") == 1
    finally:
        await runner.cleanup()
        await node.close()


def test_a_feed_reader_far_behind_for_long_is_dropped_and_one_that_catches_up_is_not() -> None:
    """The chunk feeds' rule (``http.Behind``: an edge reads as fast as it can): over
    BEHIND_CHUNKS behind the newest for BEHIND_FOR_S after a write, dropped and counted;
    back within it at any write, the clock starts again."""

    class _Request:
        transport = None

    counters: dict[str, int] = {}
    b = http.Behind()
    far = http.BEHIND_CHUNKS + 1
    b.check(far, 100.0, _Request(), counters)  # type: ignore[arg-type]
    b.check(far, 100.0 + http.BEHIND_FOR_S, _Request(), counters)  # type: ignore[arg-type]
    b.check(3, 100.0 + http.BEHIND_FOR_S + 1, _Request(), counters)  # type: ignore[arg-type]  # caught up
    b.check(far, 200.0, _Request(), counters)  # type: ignore[arg-type]
    assert counters == {}
    with pytest.raises(ConnectionResetError):
        b.check(far, 200.0 + http.BEHIND_FOR_S + 0.1, _Request(), counters)  # type: ignore[arg-type]
    assert counters == {"http_behind_readers_dropped": 1}
