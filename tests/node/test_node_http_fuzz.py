"""Fuzz the HTTP faces: random requests against a real aiohttp server on 127.0.0.1.

One node carries a live stream (a few signed chunks) and serves the tracker,
origin and gateway routes, as a broadcaster does. Hypothesis sends random JSON
bodies, nesting bombs, huge numbers, invalid UTF-8, odd paths and methods over
raw TCP sockets (so nothing is cleaned up by a client library). Every answer
must be a well-formed HTTP response below 500, and the server must keep
serving. Bounded: a few hundred examples, no deadline per example, well under
30 s on a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oasis.core import swarm as sw
from oasis.core.announce import sign_announce
from oasis.core.descriptor import Descriptor, sign_descriptor
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.core.tracker import Tracker
from oasis.node import http
from oasis.node.node import Node

BC = Identity.generate()
SID = StreamId(BC.public, "live")


class Server:
    """The node and its HTTP app on their own event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.counters: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise TimeoutError("fuzz server did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._stop())
        self.loop.close()

    async def _start(self) -> None:
        self.node = Node(BC, sw.SwarmConfig(), host="127.0.0.1")
        await self.node.start()
        ls = self.node.add_stream(SID, is_source=True)
        for seq in range(3):
            ls.swarm.publish(sign_chunk(BC, SID, seq, int(time.time() * 1e6), seq == 0, b"\x47" * 188),
                             time.time())
        self.tracker = Tracker()
        app = web.Application(client_max_size=64 * 1024)
        d = sign_descriptor(BC, Descriptor(SID, 1000, 100, 4, 1, origin="http://127.0.0.1:1/origin"))
        http.add_origin_routes(app, self.node, {str(SID): d})
        http.add_gateway_routes(app, self.node, tracker=self.tracker)
        http.add_tracker_routes(app, self.tracker)
        self.counters = http.harden(app)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.node.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.stop()


def request(port: int, method: bytes, path: bytes, body: bytes = b"",
            headers: dict[bytes, bytes] | None = None) -> int:
    """Send one raw HTTP/1.1 request; return the response status (0 if none)."""
    head = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
            b"Content-Length: " + str(len(body)).encode()]
    head += [k + b": " + v for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        data = b""
        while b"\r\n" not in data:
            part = s.recv(4096)
            if not part:
                break
            data += part
    line = data.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else 0


def ok(status: int) -> bool:
    return 200 <= status < 500


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
fields = st.sampled_from(["v", "stream", "peer_id", "host", "port", "time_ms", "sig", "area",
                          "leaving", "descriptor", "origin", "broadcaster"])


def good_announce() -> dict:
    peer = Identity.generate()
    return sign_announce(peer, SID, "127.0.0.1", 4433, int(time.time() * 1000)).to_json()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(fields, json_values | st.just(10**400) | st.just(1e308), max_size=12),
       st.booleans())
def test_random_announce_bodies_never_5xx(server: Server, fields_: dict, on_good: bool) -> None:
    body = (good_announce() | fields_) if on_good else fields_
    text = json.dumps(body, default=str).replace("1e+308", "1e400")
    status = request(server.port, b"POST", b"/tracker/announce", text.encode(),
                     {b"Content-Type": b"application/json"})
    assert ok(status), (status, text[:200])


BOMBS = [b"[" * 100_000, b'{"a":' * 50_000, b"[" * 4000 + b"]" * 4000, b"9" * 8000,
         b'{"port": 1e400}', b'{"port": ' + b"9" * 5000 + b"}", b"\xff\xfe\xfd", b'"\xed\xa0\x80"',
         b"\x00" * 100, b'{"descriptor": ' + b"[" * 3000 + b"]" * 3000 + b"}"]


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(BOMBS) | st.binary(max_size=2000),
       st.sampled_from([b"/tracker/announce", b"/tickets", b"/streams", b"/origin/x/1.chunk"]),
       st.sampled_from([b"POST", b"GET", b"PUT"]))
def test_raw_bodies_and_bombs_never_5xx(server: Server, body: bytes, path: bytes, method: bytes) -> None:
    assert ok(request(server.port, method, path, body))


segment = st.text(min_size=0, max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["/origin/{}/{}.chunk", "/origin/{}/latest.json", "/origin/{}/descriptor",
                        "/origin/" + str(SID) + "/{}{}.chunk", "/tracker/descriptor/{}{}",
                        "/live/{}.{}.ts", "/{}/{}", "/stats?detail={}{}", "/metrics?{}={}",
                        "/tracker/streams?{}{}"]),
       segment, segment, st.sampled_from([b"GET", b"HEAD", b"DELETE", b"OPTIONS"]))
def test_odd_paths_never_5xx(server: Server, template: str, a: str, b: str, method: bytes) -> None:
    path = template.format(urllib.parse.quote(a, safe="/%.?&="), urllib.parse.quote(b, safe="%."))
    status = request(server.port, method, path.encode())
    assert ok(status), (status, path)


def test_the_server_kept_serving_and_no_handler_failed(server: Server) -> None:
    for p in (f"/origin/{SID}/0.chunk", f"/origin/{SID}/descriptor", "/streams", "/metrics"):
        assert request(server.port, b"GET", p.encode()) == 200, p
    assert request(server.port, b"GET", f"/origin/{SID}/99999999999999999999.chunk".encode()) == 400
    assert server.counters.get("http_internal_errors", 0) == 0


def test_a_chunk_not_held_and_an_unknown_route_are_json_404s(server: Server) -> None:
    """Every refusal is JSON (docs/oftp.md §10): a chunk outside the origin's window says
    which it holds and must not be cached; a path no route takes says so."""
    for path, code, words in ((f"/origin/{SID}/123456789.chunk", "no_chunk", "latest.json"),
                              ("/live/nosuch.ts", "not_found", "no such route: GET /live/nosuch.ts")):
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10)
        body = json.loads(exc.value.read())
        assert exc.value.code == 404 and body["error"] == code and words in body["message"], body
        if code == "no_chunk":
            assert exc.value.headers["Cache-Control"] == "no-store"
