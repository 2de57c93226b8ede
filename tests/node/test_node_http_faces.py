"""The public HTTP faces as an outside client sees them, each case against a real aiohttp
server (``start_http``) and real HTTP requests. Found 2026-12-02 by an outside attacker (LOW):

* ``/metrics``, ``/stats`` and ``GET /rewards`` (wallet, earnings) were public on a node's
  public face; the embedded tracker listed every stream announced to it to anyone;
* ``If-None-Match`` and ``If-Range`` were ignored on immutable chunks, blocks and files;
* ``014930.chunk``, ``00.blk``, ``5.chunk?x=1`` were served as the object of the canonical
  URL: one object under many CDN cache keys, each new spelling a miss at the origin.

(The parser's refusals, also found then, are in ``test_node_http_guard.py``.)
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from procs import OasisProcess

from oasis.core import swarm as sw
from oasis.core.announce import sign_announce
from oasis.core.descriptor import Descriptor, sign_descriptor
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.core.tracker import Tracker
from oasis.node import http, rewards_http
from oasis.node.files import Files
from oasis.node.files_http import add_file_routes
from oasis.node.node import Node
from oasis.node.runtime import start_http

BC = Identity.generate()
SID = StreamId(BC.public, "live")


def _outward_ipv4() -> str | None:
    """A non-loopback IPv4 address of this machine (the route to a TEST-NET address; no
    packet is sent), or None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            ip = str(s.getsockname()[0])
        except OSError:
            return None
    try:
        with socket.socket() as probe:
            probe.bind((ip, 0))
    except OSError:
        return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


@pytest.fixture
def stranger(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(address the face binds, address a stranger's requests come from): this machine's
    outward address for both when it has one (a client there is not loopback); else the
    face on 127.0.0.1 and the stranger at 127.0.0.2, which the test then does not count as
    loopback (only ``is_loopback`` is replaced, and only for that address)."""
    ip = _outward_ipv4()
    if ip is not None:
        return ip, ip
    real = http.is_loopback
    monkeypatch.setattr(http, "is_loopback", lambda a: a != "127.0.0.2" and real(a))
    return "127.0.0.1", "127.0.0.2"


class _Rewards:
    """What ``GET /rewards`` reads of a node's proof of relay (the route and server are real)."""

    node: Any = None

    async def report(self) -> dict[str, Any]:
        return {"wallet": "0x" + "ab" * 20, "earned": 12345}


async def _node() -> Node:
    node = Node(BC, sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    ls = node.add_stream(SID, is_source=True)
    for seq in range(12):
        ls.swarm.publish(sign_chunk(BC, SID, seq, int(time.time() * 1e6), seq == 0, bytes([seq]) * 188),
                         time.time())
    node.add_stream(StreamId(Identity.generate().public, "watched"), is_source=False)  # not ours
    node.rewards = _Rewards()
    return node


def _app(node: Node, tracker: Tracker, *, public: bool = False) -> web.Application:
    app = web.Application()
    d = sign_descriptor(BC, Descriptor(SID, 1000, 100, 4, 1, origin="http://127.0.0.1:1/origin"))
    http.add_origin_routes(app, node, {str(SID): d})
    http.add_gateway_routes(app, node, tracker=tracker)
    http.add_tracker_routes(app, tracker, own=http.own_streams(node))
    rewards_http.add_rewards_routes(app, node, broadcaster=False)
    http.set_public_views(app, public)
    return app


def _tracker_with_a_strangers_stream() -> Tracker:
    tracker = Tracker()
    now = time.time()
    for sid in (SID, StreamId(Identity.generate().public, "someone-else")):
        me = Identity.generate()
        tracker.submit(sign_announce(me, sid, "127.0.0.1", 4433, int(now * 1000)), "127.0.0.1", now)
    return tracker


@pytest.fixture
async def faces(stranger: tuple[str, str]) -> AsyncIterator[dict[str, Any]]:
    """One node behind two faces: the default one on ``stranger``'s address and one run with
    ``--public-metrics`` (both on the address a stranger reaches), and a loopback face."""
    bind, _ = stranger
    node = await _node()
    tracker = _tracker_with_a_strangers_stream()
    runners = []
    try:
        urls = {}
        for name, host, public in (("private", bind, False), ("public", bind, True),
                                   ("local", "127.0.0.1", False)):
            app = _app(node, tracker, public=public)
            runner, port = await start_http(app, host, port=0)
            runners.append(runner)
            urls[name] = (f"http://{host}:{port}", app[http.HTTP_COUNTERS])
        yield urls
    finally:
        for r in runners:
            await r.cleanup()
        await node.close()


def _session(local_addr: str | None = None) -> aiohttp.ClientSession:
    conn = aiohttp.TCPConnector(local_addr=(local_addr, 0) if local_addr else None, force_close=True)
    return aiohttp.ClientSession(connector=conn)


VIEWS = ("/metrics", "/stats", "/stats?detail=1", "/rewards")


async def test_metrics_stats_and_rewards_answer_only_this_machine_unless_public_metrics(
        faces: dict[str, Any], stranger: tuple[str, str]) -> None:
    _, client = stranger
    private, counters = faces["private"]
    async with _session(client) as s:
        for path in VIEWS:
            async with s.get(private + path) as r:
                body = await r.json()
                assert r.status == 403 and body["error"] == "local_only", (path, body)
                assert "--public-metrics" in body["message"] and r.headers["Cache-Control"] == "no-store"
        # the rest of the face is the stranger's: the player list shows only our own stream,
        # the tracker's listing only the streams this node broadcasts, a lookup by id works
        async with s.get(private + "/streams") as r:
            assert r.status == 200 and [x["stream_id"] for x in await r.json()] == [str(SID)]
        async with s.get(private + "/tracker/streams") as r:
            assert r.status == 200 and await r.json() == {str(SID): 1}
        async with s.get(f"{private}/tracker/descriptor/{SID}") as r:
            assert r.status == 404  # (no descriptor announced here; the route answers)
        async with s.get(f"{private}/origin/{SID}/latest.json") as r:
            assert r.status == 200 and (await r.json())["latest"] == 11
    assert counters["http_local_only_refused"] == len(VIEWS)
    # with --public-metrics, anyone gets them, never cached
    public, _ = faces["public"]
    async with _session(client) as s:
        for path in VIEWS:
            async with s.get(public + path) as r:
                assert r.status == 200 and r.headers["Cache-Control"] == "no-store", path
                if path == "/metrics":
                    assert r.content_type == "text/plain" and "oasis_" in await r.text()
        async with s.get(public + "/rewards") as r:
            assert (await r.json())["earned"] == 12345
        async with s.get(public + "/streams") as r:
            assert len(await r.json()) == 2
        async with s.get(public + "/tracker/streams") as r:
            assert len(await r.json()) == 2


async def test_this_machines_operator_reads_the_views_but_not_through_a_proxy(
        faces: dict[str, Any]) -> None:
    """Over loopback the operator reads them all; a request relayed by a proxy on this
    machine (a reverse proxy or CDN edge reaching the node over loopback) is a stranger's."""
    local, counters = faces["local"]
    async with _session() as s:
        for path in VIEWS:
            async with s.get(local + path) as r:
                assert r.status == 200, path
        async with s.get(local + "/tracker/streams") as r:
            assert len(await r.json()) == 2
        for header in ("X-Forwarded-For", "Forwarded", "Via", "X-Real-IP"):
            async with s.get(local + "/metrics", headers={header: "203.0.113.9"}) as r:
                assert r.status == 403 and (await r.json())["error"] == "local_only", header
            async with s.get(local + "/tracker/streams", headers={header: "203.0.113.9"}) as r:
                assert await r.json() == {str(SID): 1}
    assert counters["http_local_only_refused"] == 4


async def test_a_rebound_page_on_a_wildcard_face_does_not_read_the_operators_views() -> None:
    """DNS rebinding (h-atk7): on a face bound to 0.0.0.0 (a broadcaster's origin, tracker and
    gateway) the loopback Host check is not installed, and a page of attacker.example that
    the operator opened, re-pointed at 127.0.0.1, came over loopback with no proxy header:
    it read /stats (the node's peer id and neighbours), /metrics and GET /rewards (its
    wallet and earnings), and every stream. Now only a loopback Host is the operator."""
    node = await _node()
    app = _app(node, _tracker_with_a_strangers_stream())
    runner, port = await start_http(app, "0.0.0.0", 0)
    url = f"http://127.0.0.1:{port}"
    try:
        async with _session() as s:
            for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}"):
                for path in VIEWS:
                    async with s.get(url + path, headers={"Host": host}) as r:
                        body = await r.json()
                        assert r.status == 403 and body["error"] == "local_only", (host, path)
                async with s.get(url + "/streams", headers={"Host": host}) as r:
                    assert [x["stream_id"] for x in await r.json()] == [str(SID)]
                async with s.get(url + "/tracker/streams", headers={"Host": host}) as r:
                    assert await r.json() == {str(SID): 1}
            # the operator, by address or by name
            for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
                for path in VIEWS:
                    async with s.get(url + path, headers={"Host": host}) as r:
                        assert r.status == 200, (host, path)
        counters = app[http.HTTP_COUNTERS]
        assert counters["http_operator_host_refused"] == 3 * len(VIEWS)
        assert counters["http_local_only_refused"] == 3 * len(VIEWS)
    finally:
        await runner.cleanup()
        await node.close()


async def test_the_tracker_command_serves_metrics_to_a_proxy_only_with_public_metrics(
        tmp_path: Path) -> None:
    """The flag as a user gives it: ``oasis tracker`` with and without ``--public-metrics``
    (a request through a proxy stands for a stranger's, as it does on loopback)."""
    procs = [OasisProcess(["tracker", "--listen", "127.0.0.1:0", *extra], str(tmp_path / f"t{i}.log"))
             for i, extra in enumerate(([], ["--public-metrics"]))]
    try:
        urls = [p.wait_info(60)["tracker"].removesuffix("/tracker") for p in procs]
        async with _session() as s:
            statuses = []
            for url in urls:
                async with s.get(url + "/metrics", headers={"X-Forwarded-For": "203.0.113.9"}) as r:
                    statuses.append(r.status)
                async with s.get(url + "/metrics") as r:
                    assert r.status == 200  # the operator, always
            assert statuses == [403, 200]
    finally:
        for p in procs:
            p.stop()


async def test_immutable_objects_answer_if_none_match_with_304_and_keep_their_cache_headers(
        faces: dict[str, Any]) -> None:
    local, _ = faces["local"]
    chunk = f"{local}/origin/{SID}/3.chunk"
    async with _session() as s:
        async with s.get(chunk) as r:
            assert r.status == 200
            etag, body = r.headers["ETag"], await r.read()
            assert etag.startswith('"') and len(body) > 188
            assert r.headers["Cache-Control"] == http.CHUNK_CACHE
        for inm in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
            async with s.get(chunk, headers={"If-None-Match": inm}) as r:
                assert r.status == 304 and await r.read() == b"", inm
                # a 304 carries what a cache needs to keep the object as fresh as a 200
                assert r.headers["ETag"] == etag and r.headers["Cache-Control"] == http.CHUNK_CACHE
        async with s.get(chunk, headers={"If-None-Match": '"another"'}) as r:
            assert r.status == 200 and await r.read() == body
        async with s.head(chunk, headers={"If-None-Match": etag}) as r:
            assert r.status == 304
        async with s.get(chunk, headers={"If-Match": '"another"'}) as r:
            assert r.status == 412 and (await r.json())["error"] == "precondition_failed"
        async with s.get(chunk, headers={"If-Match": etag}) as r:
            assert r.status == 200
        # another chunk has another tag; the signed descriptor revalidates the same way
        async with s.get(f"{local}/origin/{SID}/4.chunk", headers={"If-None-Match": etag}) as r:
            assert r.status == 200 and r.headers["ETag"] != etag
        for url in (f"{local}/origin/{SID}/descriptor",):
            async with s.get(url) as r:
                assert r.status == 200 and r.headers["Cache-Control"] == "no-cache"
                dtag = r.headers["ETag"]
            async with s.get(url, headers={"If-None-Match": dtag}) as r:
                assert r.status == 304 and r.headers["ETag"] == dtag


async def test_a_chunk_is_served_under_its_canonical_url_only(faces: dict[str, Any]) -> None:
    """A CDN keys its cache on the URL: each other spelling of a chunk was a miss that
    reached the origin and was answered with the whole chunk."""
    local, counters = faces["local"]
    upper = f"{str(SID).split('.')[0].upper()}.live"
    async with _session() as s:
        for path in (f"/origin/{SID}/07.chunk", f"/origin/{SID}/0000000000000000007.chunk",
                     f"/origin/{SID}/7.chunk?x=1", f"/origin/{upper}/7.chunk",
                     f"/origin/{SID}/00.chunk"):
            async with s.get(local + path) as r:
                body = await r.json()
                assert r.status == 404 and body["error"] == "not_canonical", (path, body)
                assert r.headers["Cache-Control"] == "no-store"
        async with s.get(f"{local}/origin/{SID}/7.chunk") as r:
            assert r.status == 200
        async with s.get(f"{local}/origin/{SID}/0.chunk") as r:
            assert r.status == 200
    # an empty query ("7.chunk?", which aiohttp's client would drop) is another key too
    raw = await _raw(int(local.rsplit(":", 1)[1]), f"GET /origin/{SID}/7.chunk? HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    assert b" 404 " in raw.split(b"\r\n")[0] and b'"not_canonical"' in raw
    assert counters["http_not_canonical"] == 6


@pytest.fixture
async def file_face(tmp_path: Path) -> AsyncIterator[tuple[str, str, bytes, dict[str, int]]]:
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    files = Files(node, tmp_path / "files")
    node.files = files
    data = bytes(range(256)) * 1200  # 300 KiB: more than one block
    (tmp_path / "clip.ts").write_bytes(data)
    runner = None
    try:
        info = await files.publish(str(tmp_path / "clip.ts"))
        app = web.Application()
        add_file_routes(app, files)
        runner, port = await start_http(app, "127.0.0.1", 0)
        yield f"http://127.0.0.1:{port}", info["cid"], data, app[http.HTTP_COUNTERS]
    finally:
        if runner is not None:
            await runner.cleanup()
        files.close()
        await node.close()


async def test_files_and_blocks_answer_if_none_match_and_if_range(
        file_face: tuple[str, str, bytes, dict[str, int]]) -> None:
    url, cid, data, counters = file_face
    async with _session() as s:
        async with s.get(f"{url}/files/{cid}") as r:
            assert r.status == 200 and await r.read() == data
            etag = r.headers["ETag"]
        assert etag == f'"{cid}"'
        async with s.get(f"{url}/files/{cid}", headers={"If-None-Match": etag, "Range": "bytes=0-9"}) as r:
            assert r.status == 304 and await r.read() == b"" and r.headers["ETag"] == etag
        # a file this node does not know is 404 no_file, whatever the If-None-Match (§18.4)
        other = "of1" + "a" * 52
        async with s.get(f"{url}/files/{other}", headers={"If-None-Match": f'"{other}"'}) as r:
            assert r.status == 404 and (await r.json())["error"] == "no_file"
        # If-Range with this file's tag: the range; with anything else, the whole file
        async with s.get(f"{url}/files/{cid}", headers={"Range": "bytes=10-19", "If-Range": etag}) as r:
            assert r.status == 206 and await r.read() == data[10:20]
        for other in ('"of1-some-other-version"', f"W/{etag}", "Wed, 02 Dec 2026 15:00:00 GMT"):
            async with s.get(f"{url}/files/{cid}", headers={"Range": "bytes=10-19", "If-Range": other}) as r:
                assert r.status == 200 and await r.read() == data, other
                assert "Content-Range" not in r.headers
        # a range past the end: a JSON 416 like every refusal, never cached
        async with s.get(f"{url}/files/{cid}", headers={"Range": f"bytes={len(data)}-"}) as r:
            assert r.status == 416 and (await r.json())["error"] == "range_not_satisfiable"
            assert r.headers["Content-Range"] == f"bytes */{len(data)}"
            assert r.headers["Cache-Control"] == "no-store"
        # origin: manifest and blocks, strong tags, 304
        for path in ("manifest", "0.blk", "1.blk"):
            async with s.get(f"{url}/origin/files/{cid}/{path}") as r:
                assert r.status == 200 and "immutable" in r.headers["Cache-Control"]
                tag = r.headers["ETag"]
            async with s.get(f"{url}/origin/files/{cid}/{path}", headers={"If-None-Match": tag}) as r:
                assert r.status == 304 and r.headers["ETag"] == tag and "immutable" in r.headers["Cache-Control"]
        async with s.get(f"{url}/origin/files/{cid}/0.blk") as r0, \
                s.get(f"{url}/origin/files/{cid}/1.blk") as r1:
            assert r0.headers["ETag"] != r1.headers["ETag"]
        # and one URL per block
        for path in ("00.blk", "01.blk", "1.blk?x=1", "manifest?v=2"):
            async with s.get(f"{url}/origin/files/{cid}/{path}") as r:
                assert r.status == 404 and (await r.json())["error"] == "not_canonical", path
    assert counters["http_not_canonical"] == 4


async def _raw(port: int, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection; everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closes it
    finally:
        writer.close()


# ---- found 2026-12-02 by a new user / operator working from the docs -------------------------

async def _request(url: str, target: str, *, host: str = "127.0.0.1",
                   method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """``method target`` sent byte for byte as given (no client re-encodes it) to the face
    at ``url``: (status, headers, body)."""
    port = int(url.rsplit(":", 1)[1])
    raw = await _raw(port, f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _error(body: bytes) -> str:
    """The ``error`` code of a JSON refusal (else the body's head, for the assertion message)."""
    return str(json.loads(body)["error"]) if body.startswith(b"{") else body[:80].decode("latin-1")


def _message(body: bytes) -> str:
    return str(json.loads(body)["message"])


def _pct(c: str) -> str:
    return f"%{ord(c):02x}"


async def test_percent_encoded_and_other_spellings_of_origin_objects_are_not_canonical(
        faces: dict[str, Any]) -> None:
    """H1: the check ran on the decoded path, so ``%37.chunk``, an encoded stream id character
    and ``%2e`` were served 200 and immutable: unbounded aliases of one chunk, each a CDN miss
    that reached the origin. M4: ``descriptor?y`` and ``latest.json?x`` were served too. L1: an
    id all in upper case was 400 ``bad_stream``. L2: the message blamed the stream id for a
    query string."""
    local, counters = faces["local"]
    s = str(SID)
    peer, name = s.split(".")
    aliases = [f"/origin/{s}/{_pct('7')}.chunk", f"/origin/{s}/1{_pct('1')}.chunk",
               f"/origin/{_pct(s[0])}{s[1:]}/7.chunk", f"/origin/{peer}{_pct('.')}{name}/7.chunk",
               f"/origin/{peer}%2E{name}/7.chunk", f"/origin/{s}/7{_pct('.')}chunk",
               f"/origin/{s}/7.{_pct('c')}hunk", f"/origin/{s.upper()}/7.chunk",
               f"/origin/{peer}.LIVE/7.chunk", f"/origin/{s}/latest.json?x",
               f"/origin/{s}/latest.json?", f"/origin/{s}/{_pct('l')}atest.json",
               f"/origin/{s}/descriptor?y", f"/origin/{s[:10]}{_pct(s[10])}{s[11:]}/descriptor",
               f"/tracker/descriptor/{s}?z", f"/tracker/descriptor/{s.upper()}",
               f"/tracker/descriptor/{_pct(s[0])}{s[1:]}"]
    for target in aliases:
        status, headers, body = await _request(local, target)
        assert (status, _error(body)) == (404, "not_canonical"), (target, body)
        assert headers["cache-control"] == "no-store"
    assert counters["http_not_canonical"] == len(aliases)
    # the message names what is wrong: the query string, or the spelling of the path
    _, _, body = await _request(local, f"/origin/{s}/7.chunk?x=1")
    assert "no query string" in _message(body) and "stream id" not in _message(body)
    _, _, body = await _request(local, f"/origin/{s}/{_pct('7')}.chunk")
    assert f"/origin/{s}/7.chunk" in _message(body) and "percent-encoding" in _message(body)
    # the canonical URLs, also in absolute form (RFC 9112 §3.2.2), are served
    for target in (f"/origin/{s}/7.chunk", f"/origin/{s}/11.chunk", f"/origin/{s}/latest.json",
                   f"/origin/{s}/descriptor", f"{local}/origin/{s}/7.chunk"):
        status, _, body = await _request(local, target)
        assert status == 200, (target, body)
    # the player's /live (no-store: never cached) takes whatever query string a player adds
    status, headers, _ = await _request(local, f"/live/{s}.ts?from=start&t=1733150000", method="HEAD")
    assert status == 200 and headers["content-type"] == "video/mp2t" and headers["cache-control"] == "no-store"
    # an id in upper case that names no stream is still no stream, a bad one still bad
    other = StreamId(Identity.generate().public, "live")
    assert (await _request(local, f"/origin/{str(other).upper()}/7.chunk"))[0] == 404
    assert (await _request(local, f"/origin/{peer}.bad!name/7.chunk"))[0] == 400


async def test_files_blocks_and_manifests_are_served_under_their_canonical_url_only(
        file_face: tuple[str, str, bytes, dict[str, int]]) -> None:
    """H1 and M4: ``/files/<cid>`` (up to 256 MiB, cacheable for a year) was served under any
    query string and percent-encoding, blocks and manifests under percent-encoding."""
    url, cid, data, counters = file_face
    enc = f"{_pct(cid[0])}{cid[1:]}"
    aliases = [f"/files/{cid}?x=1", f"/files/{cid}?", f"/files/{enc}", f"/files/{cid[:9]}{_pct(cid[9])}{cid[10:]}",
               f"/origin/files/{cid}/{_pct('1')}.blk", f"/origin/files/{cid}/1{_pct('.')}blk",
               f"/origin/files/{enc}/manifest", f"/origin/files/{cid}/manifes{_pct('t')}",
               f"/origin/files/{cid}/manifest?"]
    for target in aliases:
        status, headers, body = await _request(url, target)
        assert (status, _error(body)) == (404, "not_canonical"), (target, body)
        assert headers["cache-control"] == "no-store"
    assert counters["http_not_canonical"] == len(aliases)
    status, headers, body = await _request(url, f"/files/{cid}")
    assert status == 200 and body == data and headers["cache-control"] == "public, max-age=31536000, immutable"
    for target in (f"/origin/files/{cid}/1.blk", f"/origin/files/{cid}/manifest"):
        assert (await _request(url, target))[0] == 200, target


async def test_a_proxy_passing_the_clients_host_gets_the_public_objects_of_a_loopback_origin(
        faces: dict[str, Any], file_face: tuple[str, str, bytes, dict[str, int]]) -> None:
    """M2: a proxy on this machine that passes the client's ``Host`` (Caddy's default, nginx's
    ``Host $host``) got 403 ``bad_host`` on every chunk of a loopback-bound origin. The public
    objects (the same bytes to anyone) are served whatever the Host; everything else on the
    face still needs a loopback Host (DNS rebinding)."""
    local, counters = faces["local"]
    s = str(SID)
    cdn = "cdn.example.com"
    for target in (f"/origin/{s}/7.chunk", f"/origin/{s}/latest.json", f"/origin/{s}/descriptor"):
        for method in ("GET", "HEAD"):
            status, _, body = await _request(local, target, host=cdn, method=method)
            assert status == 200, (method, target, body)
    for method, target in (("GET", "/streams"), ("GET", "/stats"), ("GET", "/metrics"),
                           ("GET", "/rewards"), ("GET", "/tracker/streams"),
                           ("GET", f"/tracker/descriptor/{s}"), ("GET", f"/live/{s}.ts"),
                           ("POST", "/tracker/announce"), ("POST", f"/origin/{s}/7.chunk")):
        status, _, body = await _request(local, target, host=cdn, method=method)
        assert (status, _error(body)) == (403, "bad_host"), (method, target, body)
    assert counters["http_bad_host"] == 9
    # the rebinding guard still holds on a non-canonical spelling's way to its 404, and the
    # canonical check on a foreign Host
    assert (await _request(local, f"/origin/{s}/07.chunk", host=cdn))[0] == 404
    url, cid, _, fcounters = file_face
    for target in (f"/origin/files/{cid}/manifest", f"/origin/files/{cid}/0.blk"):
        assert (await _request(url, target, host=cdn))[0] == 200, target
    # the player's URL of a file is the local gateway's, not an origin object: guarded
    status, _, body = await _request(url, f"/files/{cid}", host=cdn)
    assert (status, _error(body)) == (403, "bad_host")


async def test_rewards_routes_without_rewards_and_wrong_methods_say_so() -> None:
    """L8: ``GET /rewards`` on a node without proof of relay answered 404 "no such route", as
    if the URL were wrong, and a 405 said "no such route" too."""
    node = await _node()
    app = web.Application()
    http.add_origin_routes(app, node)
    http.add_gateway_routes(app, node)
    runner, port = await start_http(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}"
    try:
        for method, path in (("GET", "/rewards"), ("POST", "/tickets"), ("POST", "/rewards/settle")):
            status, headers, body = await _request(url, path, method=method)
            assert (status, _error(body)) == (404, "rewards_off"), (path, body)
            assert "--rewards" in _message(body) and headers["cache-control"] == "no-store"
        status, headers, body = await _request(url, f"/origin/{SID}/7.chunk", method="POST")
        assert (status, _error(body)) == (405, "method_not_allowed"), body
        assert "GET" in headers["allow"] and f"POST is not allowed on /origin/{SID}/7.chunk" in _message(body)
        status, _, body = await _request(url, "/nosuch")
        assert (status, _error(body), _message(body)) == (404, "not_found", "no such route: GET /nosuch")
    finally:
        await runner.cleanup()
        await node.close()
