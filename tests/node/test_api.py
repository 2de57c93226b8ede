"""The local API (oasis.node.api) in one process: a real node and real HTTP on loopback.

The messaging and files services are fakes here (they are built elsewhere, to the
contract in oasis/node/api.py's routes); everything else is the real code path.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import socket
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from oasis.core import swarm as sw
from oasis.core.chat import RateLimited
from oasis.core.content import cid_text
from oasis.core.identity import Identity, peer_id_of
from oasis.core.stream import StreamId
from oasis.node import api as napi
from oasis.node import events as napi_events
from oasis.node.node import Node
from oasis.node.runtime import Common
from oasis.node.streaming import Streaming
from oasis.sdk import AsyncClient, OasisApiError
from oasis.sdk import types as t


class FakeMessaging:
    """The messaging contract's shape (oasis/node/messaging.py is built in parallel)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def chat_send(self, stream_id: str, text: str) -> dict[str, Any]:
        if text == "boom":
            raise RuntimeError("a bug")
        if text == "fast":
            raise RateLimited("chat rate limit: wait a moment")
        self.sent.append((stream_id, text))
        return {"id": "m1", "stream": stream_id, "sender": "me", "seq": 1, "text": text, "time": 1.0}

    def chat_history(self, stream_id: str, limit: int = 100, after_time: float | None = None) -> list[dict]:
        if stream_id.endswith(".nosuch"):
            raise LookupError("no such stream")
        return [{"id": f"m{i}", "stream": stream_id, "sender": "x", "seq": i, "text": "hi", "time": i}
                for i in range(limit)][:3]

    async def chat_moderate(self, stream_id: str, peer_id: str, action: str, seconds: float = 600) -> dict:
        raise PermissionError("only the broadcaster moderates")

    async def dm_send(self, peer_id: str, text: str) -> dict[str, Any]:
        return {"id": "d1", "to": peer_id, "state": "pending"}

    def dm_inbox(self, limit: int = 100, after_time: float | None = None) -> list[dict]:
        return [{"id": "d2", "sender": "p", "text": "yo", "time": 2.0}]

    def counters(self) -> dict[str, int]:
        return {}


C1 = cid_text(hashlib.sha256(b"a.ts").digest())  #: the content id FakeFiles holds
OTHER_CID = cid_text(hashlib.sha256(b"not here").digest())


class FakeFiles:
    def __init__(self) -> None:
        self.published: list[str] = []

    def close(self) -> None:
        pass

    async def publish(self, path: str) -> dict[str, Any]:
        self.published.append(path)
        return {"cid": C1, "name": Path(path).name, "size": os.path.getsize(path), "block_size": 65536,
                "blocks": 1, "mime": "video/mp2t"}

    def status(self, cid: str) -> dict[str, Any]:
        if cid != C1:
            raise LookupError(cid)
        return {"cid": C1, "name": "a.ts", "size": 3, "blocks": 1, "have_blocks": 1, "state": "seeding",
                "from_peers": 0, "from_origin": 0, "url": f"/files/{C1}"}

    async def fetch(self, cid: str, peers: list[str] | None = None) -> dict[str, Any]:
        return self.status(cid)

    def list(self) -> list[dict[str, Any]]:
        return [self.status(C1)]

    async def remove(self, cid: str) -> None:
        self.status(cid)

    def counters(self) -> dict[str, int]:
        return {}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Node, napi.Api, str]]:
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    streaming = Streaming(node, Common(data_dir=str(tmp_path)))
    runner, api = await napi.start_api(node, str(tmp_path), "127.0.0.1:0", streaming=streaming)
    try:
        yield node, api, api.url
    finally:
        await streaming.close()
        await runner.cleanup()
        await node.close()


async def call(method: str, url: str, *, token: str | None = None, data: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s, s.request(method, url, data=data, headers=h) as r:
        assert r.content_type == "application/json", await r.text()
        return r.status, await r.json()


def error_code(body: Any) -> str:
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return str(body["error"]["code"])


async def test_token_is_required_and_kept_private(served: tuple[Node, napi.Api, str], tmp_path: Path) -> None:
    node, api, url = served
    token_file = tmp_path / napi.TOKEN_FILE
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == api.token and len(api.token) == 64
    for tok in (None, "", "0" * 64, api.token[:-1], api.token + "0"):
        status, body = await call("GET", f"{url}/node", token=tok)
        assert status == 401 and error_code(body) == "unauthorized"
    status, body = await call("GET", f"{url}/node?token={api.token}")  # only the WebSocket takes ?token=
    assert status == 401
    status, body = await call("GET", f"{url}/node", token=api.token)
    assert status == 200 and body["peer_id"] == node.peer_id and body["counters"]["unauthorized"] == 6
    # the same token on the next start
    assert napi.load_or_create_token(tmp_path) == api.token


async def test_dns_rebinding_and_foreign_origins_are_refused(served: tuple[Node, napi.Api, str]) -> None:
    """A web page at attacker.example whose name now resolves to 127.0.0.1 sends requests with
    its own Host (and Origin); even holding the token (it cannot), it is refused."""
    node, api, url = served
    port = url.split(":")[2].split("/")[0]
    attacks = [{"Host": f"attacker.example:{port}"},
               {"Host": f"attacker.example:{port}", "Origin": f"http://attacker.example:{port}"},
               {"Host": f"127.0.0.1:{port}", "Origin": "http://attacker.example"},
               {"Host": f"127.0.0.1:{port}", "Origin": "null"},
               {"Host": f"127.0.0.1.attacker.example:{port}"}]
    for headers in attacks:
        status, body = await call("GET", f"{url}/streams", token=api.token, headers=headers)
        assert status == 403 and error_code(body) in ("bad_host", "bad_origin"), headers
    status, _ = await call("GET", f"{url}/streams", token=api.token,
                           headers={"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"})
    assert status == 200
    # the event feed too (a page may open WebSockets to any host)
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await s.ws_connect(f"{url}/events?token={api.token}", headers={"Origin": "http://attacker.example"})
        assert exc.value.status == 403
    assert api.counters["bad_host"] >= 3 and api.counters["bad_origin"] >= 3
    # an absolute-form target names its own host, which wins over Host's (HTTP/1.1): it was
    # served with Host 127.0.0.1 (found 2026-12-06 from outside)
    for target, status in ((f"http://attacker.example:{port}/v1/node", 403),
                           ("http://127.0.0.1.attacker.example/v1/node", 403),
                           (f"http://localhost:{port}/v1/node", 200)):
        reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
        try:
            writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                         f"Authorization: Bearer {api.token}\r\nConnection: close\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            rest = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
        assert head.split(b" ")[1] == str(status).encode(), (target, head)
        if status == 403:
            assert error_code(msgspec.json.decode(rest)) == "bad_host", rest


def test_the_api_listens_on_loopback_only() -> None:
    for bad in ("0.0.0.0:7480", "192.168.1.2:1", ":7480x", "[::]:1"):
        with pytest.raises(ValueError):
            napi.parse_listen(bad)
    assert napi.parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert napi.parse_listen(":0") == ("127.0.0.1", 0)


async def test_bad_bodies_and_routes_get_json_errors(served: tuple[Node, napi.Api, str]) -> None:
    node, api, url = served
    tok = api.token
    cases = [
        (b"{", 400), (b"[]", 400), (b'{"name": "x", "extra": 1}', 400), (b'{"name": 5}', 400),
        (b'{"name": "UPPER"}', 400), (b'{"name": "ok", "bitrate_kbps": 1}', 400),
        (b"[" * 40 + b"]" * 40, 400), (b'{"name": "' + b"a" * (napi.MAX_BODY + 10) + b'"}', 413),
    ]
    for data, want in cases:
        status, body = await call("POST", f"{url}/streams", token=tok, data=data)
        assert status == want and error_code(body) in ("bad_request", "too_large"), data[:40]
    status, body = await call("GET", f"{url}/no/such/route", token=tok)
    assert status == 404 and error_code(body) == "not_found"
    status, body = await call("PUT", f"{url}/node", token=tok)
    assert status == 405 and error_code(body) == "method_not_allowed"
    status, body = await call("GET", f"{url}/streams/not-a-stream-id", token=tok)
    assert status == 400 and error_code(body) == "bad_stream_id"
    sid = StreamId(Identity.generate().public, "gone")
    status, body = await call("GET", f"{url}/streams/{sid}", token=tok)
    assert status == 404
    # no origin server on this node: publishing is not available, and says so
    status, body = await call("POST", f"{url}/streams", token=tok, data=b'{"name": "live"}')
    assert status == 501 and error_code(body) == "not_available"
    status, body = await call("GET", f"{url}/rewards", token=tok)
    assert status == 501 and error_code(body) == "not_available"
    status, body = await call("DELETE", f"{url}/streams/{sid}", token=tok)
    assert status == 404
    assert api.counters["bad_request"] >= 7 and api.counters["too_large"] == 1


async def test_services_absent_answer_501_and_present_map_errors(served: tuple[Node, napi.Api, str],
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    node, api, url = served
    monkeypatch.setenv("HOME", str(tmp_path))  # "~/a.ts" names a file there: still not absolute
    sid = str(StreamId(node.identity.public, "live"))
    node.messaging = None  # type: ignore[assignment]  # a node without these services
    node.files = None  # type: ignore[attr-defined]
    async with AsyncClient(url, api.token) as c:
        for coro in (c.chat_send(sid, "hi"), c.dm_inbox(), c.files(), c.file_status(C1)):
            with pytest.raises(OasisApiError) as exc:
                await coro
            assert exc.value.status == 501 and exc.value.code == "not_available"
        node.messaging = FakeMessaging()  # type: ignore[attr-defined]
        node.files = FakeFiles()  # type: ignore[attr-defined]
        msg = await c.chat_send(sid, "hello")
        assert msg == t.ChatMessage("m1", sid, "me", 1, "hello", 1.0)
        assert [m.id for m in await c.chat_history(sid, limit=2)] == ["m0", "m1"]
        peer = peer_id_of(Identity.generate().public)
        assert (await c.dm_send(peer, "yo")).state == "pending"
        assert (await c.dm_inbox())[0].text == "yo"
        low_order = peer_id_of(bytes(32))  # maps to X25519 u = 1: nothing can be sealed to it
        for coro, status, code in (
                (c.chat_moderate(sid, peer, "ban"), 403, "forbidden"),
                (c.chat_moderate(sid, "p", "ban"), 400, "bad_peer_id"),
                (c.dm_send("bad", "x"), 400, "bad_peer_id"), (c.dm_send(peer.upper()[:-1] + "!", "x"), 400, "bad_peer_id"),
                (c.dm_send(low_order, "x"), 400, "bad_peer_id"),
                (c.chat_history(sid[:-4] + "nosuch"), 404, "not_found"), (c.chat_send(sid, "boom"), 500, "internal"),
                (c.chat_send(sid, "fast"), 429, "rate_limited"), (c.file_status(OTHER_CID), 404, "not_found"),
                (c.file_status("of1aaaa"), 400, "bad_cid"), (c.file_remove("zz"), 400, "bad_cid"),
                (c.file_fetch(C1.upper()), 400, "bad_cid")):
            with pytest.raises(OasisApiError) as exc:
                await coro
            assert (exc.value.status, exc.value.code) == (status, code)
        with pytest.raises(OasisApiError) as exc:  # 429 says when to retry (Retry-After, seconds)
            await c.chat_send(sid, "fast")
        assert exc.value.retry_after == 1.0
        async with aiohttp.ClientSession() as s, s.post(
                f"{url}/chat/{sid}", data=b'{"text": "fast"}', headers={"Authorization": f"Bearer {api.token}"}) as r:
            assert r.status == 429 and r.headers["Retry-After"] == "1"
        node.messaging.dm_inbox = lambda **kw: [{"id": "d2"}]  # type: ignore[attr-defined]
        with pytest.raises(OasisApiError) as exc:  # a service breaking the contract is a 500, not a 400
            await c.dm_inbox()
        assert exc.value.status == 500 and exc.value.code == "internal"
        clip = tmp_path / "a.ts"
        clip.write_bytes(b"\x47" * 3)
        assert (await c.file_publish(clip)).size == 3
        cwd = os.getcwd()
        os.chdir(tmp_path)  # the SDK resolves a relative path against this program's directory
        try:
            assert (await c.file_publish("a.ts")).size == 3
        finally:
            os.chdir(cwd)
        for bad in ("/dev/null", str(tmp_path), "relative.ts", "a.ts", "~/a.ts", str(tmp_path / "missing")):
            status, body = await call("POST", f"{url}/files", token=api.token,
                                      data=msgspec.json.encode({"path": bad}))
            assert status == 400 and error_code(body) == "bad_path", bad
            if "/" not in bad or bad.startswith("~"):
                assert "absolute" in body["error"]["message"]
        assert node.files.published == [str(clip)] * 2  # type: ignore[attr-defined]
        assert (await c.file_fetch(C1, peers=["p"])).state == "seeding"
        assert [f.cid for f in await c.files()] == [C1]
        assert await c.file_remove(C1) == t.Deleted(C1)  # docs/api.md: {"deleted": C}
        status, body = await call("GET", f"{url}/chat/{sid}?limit=0", token=api.token)
        assert status == 400


async def test_event_feed_delivers_filtered_events(served: tuple[Node, napi.Api, str]) -> None:
    node, api, url = served
    async with AsyncClient(url, api.token) as c:
        got: list[t.Event] = []
        subscribed = asyncio.Event()

        async def read() -> None:
            async for ev in c.events(kinds=["chat"], reconnect=False):
                if ev.kind == "subscribed":  # always first: the subscription exists
                    assert ev.seq == 0 and ev.data["kinds"] == ["chat"]
                    subscribed.set()
                    continue
                got.append(ev)
                if len(got) == 2:
                    return

        task = asyncio.create_task(read())
        await asyncio.wait_for(subscribed.wait(), 5)
        assert node.events.subscribers == 1
        node.events.publish("stream.started", {"stream_id": "x"})
        node.events.publish("chat.message", {"text": "a"})
        node.events.publish("chat.moderation", {"action": "mute"})
        await asyncio.wait_for(task, 5)
        assert [(e.kind, e.data) for e in got] == [("chat.message", {"text": "a"}),
                                                   ("chat.moderation", {"action": "mute"})]
        assert got[0].seq < got[1].seq
    # the socket closed: the node dropped the subscription
    await node.events.wait_subscribers(lambda n: n == 0, 5)


def _validate(value: Any, schema: dict[str, Any], components: dict[str, Any], where: str = "$") -> None:
    """A small JSON Schema check (the subset msgspec emits): $ref, anyOf, type, properties,
    required, items, additionalProperties, enum."""
    if "$ref" in schema:
        _validate(value, components[schema["$ref"].rsplit("/", 1)[1]], components, where)
        return
    if "anyOf" in schema:
        errors = []
        for sub in schema["anyOf"]:
            try:
                _validate(value, sub, components, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: matches none of anyOf: {errors}")
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
             "integer": int, "number": (int, float)}
    if kind is not None:
        assert isinstance(value, types[kind]) and not (kind in ("integer", "number")
                                                       and isinstance(value, bool)), f"{where}: not {kind}"
    if kind == "object":
        for name in schema.get("required", []):
            assert name in value, f"{where}: {name} missing"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                _validate(value[name], sub, components, f"{where}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for k, v in value.items():
                _validate(v, extra, components, f"{where}.{k}")
    if kind == "array":
        for i, item in enumerate(value):
            _validate(item, schema.get("items", {}), components, f"{where}[{i}]")


async def test_openapi_lists_every_route_and_real_answers_match_it(served: tuple[Node, napi.Api, str],
                                                                   tmp_path: Path) -> None:
    node, api, url = served
    status, doc = await call("GET", f"{url}/openapi.json", token=api.token)
    assert status == 200 and doc["openapi"].startswith("3.")
    app = napi.make_app(api)
    registered = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()  # type: ignore[union-attr]
                  if r.method != "HEAD"}
    assert {p for _, p in registered} >= {"/v1/node", "/v1/events", "/v1/files/{cid}/fetch"}
    for method, path in registered:
        assert path.startswith("/v1/") and method in doc["paths"].get(path, {}), (method, path)
    components = doc["components"]["schemas"]
    # a published stream on a real node, then every read endpoint's answer against its schema
    sid = StreamId(node.identity.public, "live")
    node.add_stream(sid, is_source=True)
    node.messaging = FakeMessaging()  # type: ignore[attr-defined]
    node.files = FakeFiles()  # type: ignore[attr-defined]
    for path, template in (("/node", "/v1/node"), ("/streams", "/v1/streams"),
                           (f"/streams/{sid}", "/v1/streams/{stream_id}"), ("/wallet", "/v1/wallet"),
                           (f"/chat/{sid}", "/v1/chat/{stream_id}"), ("/dm", "/v1/dm"),
                           ("/files", "/v1/files"), (f"/files/{C1}", "/v1/files/{cid}")):
        status, body = await call("GET", url + path, token=api.token)
        assert status == 200, (path, body)
        schema = doc["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        _validate(body, schema, components, path)
    status, body = await call("GET", f"{url}/rewards", token=api.token)
    _validate(body, doc["paths"]["/v1/rewards"]["get"]["responses"]["default"]["content"][
        "application/json"]["schema"], components)


async def test_watchdog_reports_stalls_and_recovery(tmp_path: Path) -> None:
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    try:
        streaming = Streaming(node, Common(data_dir=str(tmp_path)))
        sub = node.events.subscribe(["stream"])
        sid = StreamId(node.identity.public, "live")
        ls = node.add_stream(sid, is_source=True)
        assert (await sub.get(timeout=1)).kind == "stream.started"
        streaming.check_health(100.0)
        streaming.check_health(102.0)
        assert sub.get_nowait() is None
        streaming.check_health(104.0)
        ev = sub.get_nowait()
        assert ev is not None and ev.kind == "stream.stalled" and ev.data["stream_id"] == str(sid)
        streaming.check_health(110.0)
        assert sub.get_nowait() is None  # told once per stall
        from tests.node.procs import produce
        delivered = ls.playout.changed  # set by the first chunk the source delivers to itself
        producing = produce(node, ls, sid, period=0.01)
        await asyncio.wait_for(delivered.wait(), 5)
        producing.cancel()
        assert ls.swarm.log.latest >= 0
        streaming.check_health(111.0)
        ev = sub.get_nowait()
        assert ev is not None and ev.kind == "stream.resumed"
        assert node.remove_stream(sid) and not node.remove_stream(sid)
        ev = sub.get_nowait()
        assert ev is not None and ev.kind == "stream.stopped"
    finally:
        await node.close()


async def test_requests_in_flight_are_capped(served: tuple[Node, napi.Api, str]) -> None:
    """A local program holding MAX_INFLIGHT slow requests open: the next is refused (503),
    and the API answers again once they finish."""
    node, api, url = served
    release = asyncio.Event()
    all_in = asyncio.Event()
    entered = 0

    class SlowMessaging(FakeMessaging):
        async def dm_send(self, peer_id: str, text: str) -> dict[str, Any]:
            nonlocal entered
            entered += 1
            if entered == napi.MAX_INFLIGHT:
                all_in.set()  # every slot is held
            await release.wait()
            return {"id": "d", "to": peer_id, "state": "stored"}

    node.messaging = SlowMessaging()  # type: ignore[attr-defined]
    async with AsyncClient(url, api.token) as c:
        peer = peer_id_of(Identity.generate().public)
        held = [asyncio.create_task(c.dm_send(peer, "x")) for _ in range(napi.MAX_INFLIGHT)]
        await asyncio.wait_for(all_in.wait(), 10)
        with pytest.raises(OasisApiError) as exc:
            await c.node()
        assert exc.value.status == 503 and exc.value.code == "busy"
        release.set()
        assert all(r.state == "stored" for r in await asyncio.gather(*held))
        assert (await c.node()).counters["busy"] == 1


async def test_invalid_utf8_in_a_body_is_a_400_not_a_500(served: tuple[Node, napi.Api, str]) -> None:
    """A string with bytes that are not UTF-8 is malformed JSON: 400, no handler bug."""
    node, api, url = served
    for path, data in (("streams", b'{"name": "\xff"}'), ("watch", b'{"link": "oasis://\xfe\xff"}'),
                       ("watch", b'{"stream_id": "\xc3", "tracker": "http://127.0.0.1:1"}')):
        status, body = await call("POST", f"{url}/{path}", token=api.token, data=data)
        assert status == 400 and error_code(body) == "bad_request", (path, body)
    assert api.counters["internal_errors"] == 0


async def test_a_lone_utf16_surrogate_is_named_not_called_truncated(served: tuple[Node, napi.Api, str]) -> None:
    """A JSON string escape of half a surrogate pair: 400 that says so (msgspec's own word
    for a lone high surrogate is "Input data was truncated", which sent users looking for a
    cut body); a body that is cut is still called truncated."""
    node, api, url = served
    for data, want in ((b'{"name": "a\\ud83d"}', "surrogate"), (b'{"name": "\\ud83dx"}', "surrogate"),
                       (b'{"name": "\\udc00"}', "surrogate"), (b'{"name": "ab', "truncated")):
        status, body = await call("POST", f"{url}/streams", token=api.token, data=data)
        assert status == 400 and error_code(body) == "bad_request", (data, body)
        assert want in body["error"]["message"], (data, body)
    assert api.counters["internal_errors"] == 0


async def test_the_event_feed_without_a_websocket_upgrade_is_a_400(served: tuple[Node, napi.Api, str]) -> None:
    node, api, url = served
    status, body = await call("GET", f"{url}/events", token=api.token)
    assert status == 400 and error_code(body) == "not_websocket"
    assert api.counters["internal_errors"] == 0
    assert len(node.events._subs) == 0  # nothing subscribed for it


async def test_event_subscribers_do_not_take_the_request_slots(served: tuple[Node, napi.Api, str]) -> None:
    """The 64 subscribers the bus allows, all connected: requests are still answered, and
    the 65th subscriber is refused by the bus's own cap."""
    node, api, url = served
    async with aiohttp.ClientSession() as s:
        socks = []
        try:
            for _ in range(napi_events.MAX_SUBSCRIBERS):
                ws = await s.ws_connect(f"{url}/events?token={api.token}")
                socks.append(ws)
                assert (await asyncio.wait_for(ws.receive_json(), 10))["kind"] == "subscribed"
            status, body = await call("GET", f"{url}/node", token=api.token)
            assert status == 200, body
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await s.ws_connect(f"{url}/events?token={api.token}")
            assert exc.value.status == 503
        finally:
            for ws in socks:
                await ws.close()
    assert api.inflight == 0


async def test_a_body_that_stalls_is_refused_and_frees_its_slot(served: tuple[Node, napi.Api, str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A client (with the token) that announces a body and sends one byte of it: 408 once
    the body timeout passes, and its slot is free again."""
    node, api, url = served
    monkeypatch.setattr(napi.http, "BODY_TIMEOUT", 0.5)
    host, port = url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"POST /v1/streams HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Authorization: Bearer {api.token}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 100\r\n\r\n{{".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert b"connection: close" in head.lower(), head  # the rest of the body is not read
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = msgspec.json.decode(await asyncio.wait_for(reader.readexactly(length), 10))
        assert error_code(body) == "body_timeout"
        # and the connection goes: closed after the short linger, not aiohttp's 10 s
        t0 = time.monotonic()
        assert await asyncio.wait_for(reader.read(), napi.http.LINGER_TIME + 5) == b""
        assert time.monotonic() - t0 < napi.http.LINGER_TIME + 3
    finally:
        writer.close()
    assert api.inflight == 0 and api.counters["body_timeout"] == 1


async def test_a_body_that_does_not_decode_is_a_400_bad_body(served: tuple[Node, napi.Api, str]) -> None:
    """A body the reader cannot decode (Content-Encoding: gzip over junk) is 400 ``bad_body``
    with Connection: close. Until 2026-12-03 the API told every reader refusal but the 408
    as ``too_large``, "request body over 16384 bytes", for a 12-byte body."""
    node, api, url = served
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/streams", data=b"junkjunkjunk",
                          headers={"Authorization": f"Bearer {api.token}", "Content-Encoding": "gzip",
                                   "Content-Type": "application/json"}) as r:
            body = await r.json(content_type=None)
            assert r.status == 400 and r.headers.get("Connection", "").lower() == "close"
    assert error_code(body) == "bad_body" and "does not decode" in body["error"]["message"], body
    # the reason in words, not aiohttp's exception text ("400, message: Can not decode
    # content-encoding: gzip", found 2026-12-07 from outside)
    assert "400, message" not in body["error"]["message"] and "gzip" in body["error"]["message"], body
    assert api.counters["bad_request"] == 1 and api.counters["too_large"] == 0
    # the same for the encodings the HTTP parser decodes itself, or does not have here: it
    # refused deflate over junk as 400 bad_request "the HTTP parser refused the request:
    # deflate", and br with "... Please install `Brotli`" (found 2026-12-05 from outside)
    for enc in ("deflate", "br", "zstd", "x-nonsense", "gzip, gzip", "identity"):
        reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0]))
        try:
            writer.write(b"POST /v1/streams HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         + f"Authorization: Bearer {api.token}\r\nContent-Encoding: {enc}\r\n".encode()
                         + b"Content-Type: application/json\r\nContent-Length: 12\r\n\r\njunkjunkjunk")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            body = msgspec.json.decode(await asyncio.wait_for(reader.readexactly(length), 10))
        finally:
            writer.close()
        assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request"), (enc, head)  # (1.0: the parser's)
        if enc == "identity":  # no encoding: the body is read as it is (junk JSON)
            assert error_code(body) == "bad_request" and "request body" in body["error"]["message"], body
            continue
        # (not an encoding this node reads, or stacked: they were read as plain JSON and
        # refused as malformed, found 2026-12-06 from outside)
        assert error_code(body) == "bad_body", (enc, body)
        msg = body["error"]["message"]
        assert "does not decode" in msg and "install" not in msg.lower(), (enc, body)


async def test_an_expect_header_is_refused_in_the_api_s_shape_and_100_continue_works(
        served: tuple[Node, napi.Api, str]) -> None:
    """Found 2026-12-06 from outside: ``Expect: foo`` got aiohttp's plain-text 417."""
    _, api, url = served
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    for expect, status in (("foo", 417), ("100-continue", 201)):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            body = b'{"name":"exp%d"}' % status
            writer.write(b"POST /v1/streams HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         + f"Authorization: Bearer {api.token}\r\nExpect: {expect}\r\n".encode()
                         + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
            if status == 201:  # the client waits for the go-ahead before its body
                line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                assert line.startswith(b"HTTP/1.1 100 Continue"), line
            writer.write(body)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            got = msgspec.json.decode(await asyncio.wait_for(reader.readexactly(length), 10))
        finally:
            writer.close()
        if status == 417:
            assert head.split(b" ")[1] == b"417", (expect, head)
            assert error_code(got) == "bad_expect" and "100-continue" in got["error"]["message"], got
            assert b"application/json" in head
        else:  # the body went through to the route (this node runs no streaming: 501)
            assert head.split(b" ")[1] == b"501" and error_code(got) == "not_available", (head, got)


async def test_a_refused_event_subscription_raises_the_nodes_code(served: tuple[Node, napi.Api, str]) -> None:
    """docs/api.md: a refusal raises OasisApiError(status, code, message) -- also for the
    event feed, whose refusals arrive on the WebSocket handshake: a 4xx at once (with or
    without reconnect), 503 busy after the retries (or at once without reconnect)."""
    node, api, url = served

    async def first(c: AsyncClient, kinds: list[str] | None = None, **kw: Any) -> t.Event:
        async for ev in c.events(kinds, **kw):
            return ev
        raise AssertionError("the feed ended without an event or an error")

    async with AsyncClient(url, api.token) as c:
        for reconnect in (False, True):  # over MAX_KINDS prefixes: a 4xx is final, no retrying
            with pytest.raises(OasisApiError) as exc:
                await asyncio.wait_for(first(c, [chr(97 + i) for i in range(napi.MAX_KINDS + 1)], reconnect=reconnect), 5)
            assert (exc.value.status, exc.value.code) == (400, "bad_query")
            assert str(napi.MAX_KINDS) in exc.value.message
        async with AsyncClient(url, "0" * 64) as wrong:
            with pytest.raises(OasisApiError) as exc:
                await asyncio.wait_for(first(wrong), 5)
            assert (exc.value.status, exc.value.code) == (401, "unauthorized")
        node.events.max_subscribers = 1  # the subscriber cap, reached by one reader
        held = c.events(["stream"])
        assert (await asyncio.wait_for(held.__anext__(), 5)).kind == "subscribed"
        with pytest.raises(OasisApiError) as exc:
            await asyncio.wait_for(first(c, reconnect=False), 5)
        assert (exc.value.status, exc.value.code) == (503, "busy")
        with pytest.raises(OasisApiError) as exc:  # retried (busy may pass), then raised
            await asyncio.wait_for(first(c, max_retries=2), 10)
        assert (exc.value.status, exc.value.code) == (503, "busy")
        assert api.counters["ws_refused"] == 4
        await held.aclose()
        await node.events.wait_subscribers(lambda n: n == 0, 5)
        assert (await asyncio.wait_for(first(c), 5)).kind == "subscribed"  # a free slot: served


async def test_the_event_feed_reconnects_when_the_node_restarts(tmp_path: Path) -> None:
    """A transient failure (the API going away and coming back on its port) is reconnected
    through; the reader sees a new ``subscribed`` and the events after it. A node that
    stays away ends the feed with ``unreachable`` once the retries are spent."""
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    runner, api = await napi.start_api(node, str(tmp_path), "127.0.0.1:0")
    port = int(api.url.rsplit(":", 1)[1].split("/")[0])
    try:
        async with AsyncClient(api.url, api.token) as c:
            feed = c.events(["chat"], max_retries=3)
            assert (await asyncio.wait_for(feed.__anext__(), 5)).kind == "subscribed"
            await runner.cleanup()  # the API stops: the socket closes, reconnecting is refused
            nxt = asyncio.ensure_future(feed.__anext__())
            runner, api = await napi.start_api(node, str(tmp_path), f"127.0.0.1:{port}")
            assert (await asyncio.wait_for(nxt, 10)).kind == "subscribed"
            node.events.publish("chat.message", {"text": "after"})
            ev = await asyncio.wait_for(feed.__anext__(), 5)
            assert (ev.kind, ev.data) == ("chat.message", {"text": "after"})
            await runner.cleanup()
            with pytest.raises(OasisApiError) as exc:
                await asyncio.wait_for(feed.__anext__(), 20)
            assert (exc.value.status, exc.value.code) == (0, "unreachable")
    finally:
        await runner.cleanup()
        await node.close()


async def test_a_client_from_the_data_dir_follows_a_node_restarted_on_another_port(tmp_path: Path) -> None:
    """`oasis node --api-listen 127.0.0.1:0` (and broadcast/watch, whose API port is any free
    one) restarts on another port: calls and the event feed of a client made by
    from_data_dir read api.json again (they raised unreachable at the old port)."""
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    runner, api = await napi.start_api(node, str(tmp_path), "127.0.0.1:0")
    try:
        async with AsyncClient.from_data_dir(tmp_path) as c:
            feed = c.events("chat", max_retries=4)  # one prefix as a string: not six letters
            first = await asyncio.wait_for(feed.__anext__(), 5)
            assert first.kind == "subscribed" and first.data["kinds"] == ["chat"]
            old = c.base_url
            await runner.cleanup()
            runner, api = await napi.start_api(node, str(tmp_path), "127.0.0.1:0")  # a new port
            assert api.url.rstrip("/") != old
            assert (await asyncio.wait_for(feed.__anext__(), 15)).kind == "subscribed"
            assert c.base_url == api.url.rstrip("/")
            assert (await c.node()).peer_id == node.peer_id
            for bad in (["s t"], ["../x?&="], ["Chat"]):
                with pytest.raises(OasisApiError) as exc:
                    async for _ in c.events(bad, reconnect=False):
                        break
                assert (exc.value.status, exc.value.code) == (400, "bad_query"), bad
    finally:
        await runner.cleanup()
        await node.close()


def test_the_blocking_client_has_the_async_clients_methods() -> None:
    """dir()/help() show Client's methods: real functions with AsyncClient's signatures
    and docstrings (not built on the fly by __getattr__)."""
    import inspect

    from oasis.sdk import Client

    public = {n for n, f in vars(AsyncClient).items() if not n.startswith("_") and callable(f)}
    assert public <= set(dir(Client)) and {"node", "publish", "stop", "file_remove", "events"} <= public
    for name in public - {"from_data_dir"}:
        mine, theirs = getattr(Client, name), getattr(AsyncClient, name)
        assert inspect.isfunction(mine) and mine.__qualname__ == f"Client.{name}", name
        assert inspect.signature(mine).parameters == inspect.signature(theirs).parameters, name
        if name not in ("events", "close"):  # those two: an Iterator, a plain close
            assert inspect.signature(mine) == inspect.signature(theirs), name
            assert mine.__doc__ and mine.__doc__ == theirs.__doc__, name
        assert mine.__doc__, name
    with pytest.raises(AttributeError):
        Client.nosuch  # noqa: B018


async def test_the_blocking_client_calls_the_node(served: tuple[Node, napi.Api, str]) -> None:
    """The generated methods call the node (from another thread: the blocking client runs
    its own loop, this test's loop serves the API)."""
    from oasis.sdk import Client

    node, api, url = served
    node.files = FakeFiles()  # type: ignore[attr-defined]

    def script() -> tuple[t.NodeInfo, t.Deleted]:
        with Client(url, api.token) as c:
            with pytest.raises(OasisApiError) as exc:
                c.file_status(OTHER_CID)
            assert exc.value.status == 404
            return c.node(), c.file_remove(C1)

    info, deleted = await asyncio.wait_for(asyncio.to_thread(script), 20)
    assert info.peer_id == node.peer_id and deleted == t.Deleted(C1)


async def test_close_from_another_thread_ends_an_event_iterator_and_later_calls_say_closed(
        served: tuple[Node, napi.Api, str]) -> None:
    """Found 2026-12-06 by a docs-only audit: a thread reading Client.events() while another
    closed the client never finished (its iterator waited for aclose() on a loop close() had
    stopped) and the program did not exit; once in six it got a bare CancelledError. Now the
    iterator ends, and a call after close() raises OasisApiError status 0 code ``closed``."""
    import threading

    from oasis.sdk import Client

    node, api, url = served
    c = Client(url, api.token)
    got: list[str] = []
    first, ended = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def read() -> None:
        try:
            for ev in c.events(["stream"]):
                got.append(ev.kind)
                first.set()
        except BaseException as exc:  # (the test asserts there is none)
            failed.append(exc)
        finally:
            ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert await asyncio.to_thread(first.wait, 10), "no subscription event"
    assert got == ["subscribed"]
    await asyncio.wait_for(asyncio.to_thread(c.close), 10)
    assert await asyncio.to_thread(ended.wait, 10), "the reading thread still waits"
    assert not failed, failed
    with pytest.raises(OasisApiError) as exc:
        c.node()
    assert (exc.value.status, exc.value.code) == (0, "closed")
    c.close()  # a second close is nothing


async def test_the_sdk_refuses_an_empty_kind_or_one_with_a_comma(served: tuple[Node, napi.Api, str]) -> None:
    """docs/api.md: a kind prefix that is not lower-case words joined by a dot is 400
    ``bad_query``. The SDK joins the list with commas, so ``[""]`` subscribed to every kind
    (the node drops empty prefixes) and ``["chat,dm"]`` to two (found by a docs-only audit)."""
    node, api, url = served
    async with AsyncClient(url, api.token) as c:
        for kinds in ([""], ["chat,dm"], ["stream", ""]):
            with pytest.raises(OasisApiError) as exc:
                await c.events(kinds, reconnect=False).__anext__()
            assert (exc.value.status, exc.value.code) == (400, "bad_query"), kinds
        feed = c.events(["stream."], reconnect=False)  # a prefix that ends in a dot is one
        assert (await asyncio.wait_for(feed.__anext__(), 5)).data["kinds"] == ["stream."]
        await feed.aclose()
        # the node, asked without the SDK: the same 400 for an empty prefix (it dropped it,
        # found 2026-12-06 from outside); a repeated prefix counts once
        ws_url = url.replace("http://", "ws://") + "/events"
        async with aiohttp.ClientSession() as s:
            async with s.get(ws_url, params={"kinds": "stream,,chat", "token": api.token}) as r:
                body = await r.json(content_type=None)
                assert r.status == 400 and error_code(body) == "bad_query", body
                assert "empty prefix" in body["error"]["message"], body
            async with s.ws_connect(ws_url, params={"kinds": "chat,chat", "token": api.token}) as ws:
                first = msgspec.json.decode((await ws.receive(timeout=5)).data)
                assert first["kind"] == "subscribed" and first["data"]["kinds"] == ["chat"], first
            # a third word is refused, and the message says the rule it breaks (it said "words
            # joined by dots", which chat.message.x is: found 2026-12-07 from outside)
            async with s.get(ws_url, params={"kinds": "chat.message.x", "token": api.token}) as r:
                body = await r.json(content_type=None)
                assert r.status == 400 and error_code(body) == "bad_query", body
                assert "or two joined by a dot" in body["error"]["message"], body
    # AsyncClient after close: refused as Client's calls are (it opened a new session, left
    # unclosed at exit: found 2026-12-06 from outside)
    with pytest.raises(OasisApiError) as exc:
        await c.node()
    assert (exc.value.status, exc.value.code) == (0, "closed")
    assert c._session is None


async def test_watch_refusals_carry_the_documented_codes(served: tuple[Node, napi.Api, str]) -> None:
    """docs/api.md: a link that cannot be used gets the link parser's code; a tracker that
    cannot be reached is ``bad_tracker``; one that answers without the stream, 404."""
    node, api, url = served
    sid = str(StreamId(Identity.generate().public, "live"))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    gone = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # nothing listens there now
    async with AsyncClient(url, api.token) as c:
        for kw, code in (({"link": "garbage"}, "not_a_link"), ({"link": "http://x/y"}, "not_a_link"),
                         ({"link": f"oasis://{sid}?t=ftp://x"}, "bad_tracker"),
                         ({"link": f"oasis://{sid}"}, "no_peers"),
                         ({"stream_id": sid, "tracker": "ftp://x"}, "bad_tracker"),
                         ({"stream_id": sid, "tracker": "nonsense"}, "bad_tracker")):
            with pytest.raises(OasisApiError) as exc:
                await c.watch(**kw)
            assert (exc.value.status, exc.value.code) == (400, code), kw
            # the code once, in its field: not again at the head of the message
            assert exc.value.message and not exc.value.message.startswith(f"{code}:"), exc.value.message

        said: list[str] = []

        async def refusal(**kw: Any) -> tuple[int, str]:
            with pytest.raises(OasisApiError) as exc:
                await c.watch(**kw)
            said.append(str(exc.value))
            return exc.value.status, exc.value.code

        # each waits out the descriptor fetch's retries (5 s): run together
        got = await asyncio.wait_for(asyncio.gather(
            refusal(stream_id=sid, tracker=gone), refusal(link=f"oasis://{sid}?t={gone}"),
            refusal(stream_id=sid, tracker=url)), 30)  # the API answers (401): a tracker, without it
        assert got == [(400, "bad_tracker"), (400, "bad_tracker"), (404, "not_found")]
        # why, in the user's words (not aiohttp's "ssl:default [Connect call failed ...]")
        refused = [m for m in said if "cannot be reached" in m]
        assert len(refused) == 2 and all(f"cannot connect to {gone[7:]} (connection refused)" in m
                                         and "ssl:default" not in m for m in refused), said
    assert node.streams == {} and api.counters["internal_errors"] == 0


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def publishing(tmp_path: Path) -> AsyncIterator[tuple[Node, napi.Api, str, Streaming]]:
    """A node that can publish (as `oasis node` does): its origin and tracker URL name a
    port nothing serves, so published streams announce in vain; the API is real."""
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    base = f"http://127.0.0.1:{_free_port()}"
    streaming = Streaming(node, Common(data_dir=str(tmp_path)), base=base, tracker_url=f"{base}/tracker")
    runner, api = await napi.start_api(node, str(tmp_path / "api"), "127.0.0.1:0", streaming=streaming)
    try:
        yield node, api, api.url, streaming
    finally:
        await streaming.close()
        await runner.cleanup()
        await node.close()


@pytest.fixture
def ts_clip(tmp_path: Path) -> Path:
    from oasis.media.testsource import TestSource

    src = TestSource(200, width=160, height=96, fps=10)
    path = tmp_path / "clip.ts"
    path.write_bytes(b"".join(src.next_frame_ts(1_700_000_000.0 + n / 10) for n in range(10)) + src.close())
    return path


async def test_publish_refuses_a_source_it_cannot_open(
        publishing: tuple[Node, napi.Api, str, Streaming], tmp_path: Path, ts_clip: Path) -> None:
    """A source the stream could not open is refused up front (400 bad_source), where that
    is cheap to know: a UDP port that cannot be bound, stdin, a relative path, a file that
    is missing or not MPEG-TS, an unknown scheme. Nothing is published then."""
    node, api, url, streaming = publishing
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    text = tmp_path / "notes.txt"
    text.write_text("not a transport stream\n" * 20)
    try:
        for source in (f"udp://127.0.0.1:{taken.getsockname()[1]}", "udp://1.2.3.4:5000", "udp://127.0.0.1",
                       "-", "clip.ts", "~/clip.ts", str(tmp_path / "missing.ts"), str(text), "rtmp://x/y"):
            status, body = await call("POST", f"{url}/streams", token=api.token,
                                      data=msgspec.json.encode({"name": "live", "source": source}))
            assert (status, error_code(body)) == (400, "bad_source"), (source, body)
            # the choices said are the API's: stdin is not one (the command line's help named it)
            assert "'-' (stdin)," not in body["error"]["message"], body
            if source.startswith("udp://") and source.count(":") == 2:
                assert "cannot bind UDP" in body["error"]["message"]
                assert os.strerror(errno.EADDRINUSE if "127." in source else errno.EADDRNOTAVAIL) \
                    in body["error"]["message"]
        assert node.streams == {} and streaming.managed == {}
        async with AsyncClient(url, api.token) as c:
            port = _free_port(socket.SOCK_DGRAM)
            pub = await c.publish("live", f"udp://127.0.0.1:{port}")
            assert [s.stream_id for s in await c.streams()] == [pub.stream_id]
            with pytest.raises(OasisApiError) as exc:  # the name is taken: that is what to say
                await c.publish("live", f"udp://127.0.0.1:{port}")
            assert (exc.value.status, exc.value.code) == (409, "conflict")
            cwd = os.getcwd()
            os.chdir(ts_clip.parent)  # the SDK resolves a relative file against this program's directory
            try:
                clip = await c.publish("clip", ts_clip.name)
            finally:
                os.chdir(cwd)
            assert await c.stop(clip.stream_id) == t.Deleted(clip.stream_id)
            assert await c.stop(pub.stream_id) == t.Deleted(pub.stream_id)
    finally:
        taken.close()


async def test_a_stream_stopped_through_the_api_ends_with_its_end_marker(
        publishing: tuple[Node, napi.Api, str, Streaming]) -> None:
    """A published stream stopped through the API publishes the signed end marker after its
    last chunk (what its viewers take as the end, not as a stall: docs/oftp.md §7) before it
    goes, and its sequence clock is saved past it (a restart numbers on)."""
    from procs import until

    from oasis.core.stream import is_end, verify_chunk
    from oasis.node.streaming import first_seq, seq_file

    node, api, url, streaming = publishing
    async with AsyncClient(url, api.token) as c:
        live = await c.publish("live", "test")
        ls = node.streams[StreamId.parse(live.stream_id).key]
        await until(lambda: ls.swarm.log.latest >= 2, 30, what="the test source's chunks")
        [info] = await c.streams()
        assert info.end is None
        await c.stop(live.stream_id)
    end = ls.swarm.end_seq
    marker = ls.swarm.log.get(end)
    assert end == ls.swarm.log.latest > 2 and marker is not None
    assert is_end(marker) and verify_chunk(ls.sid, marker) and marker.payload == b""
    assert ls.playout.end == end and ls.sid.key not in node.streams
    assert first_seq(seq_file(str(streaming.common.data_dir), ls.sid), 100, time.time()) > end


async def test_a_stream_whose_file_source_fails_ends_for_its_viewers_with_a_plain_reason(
        publishing: tuple[Node, napi.Api, str, Streaming], ts_clip: Path) -> None:
    """A published file source that fails once the stream runs (the file removed: its next
    pass cannot open it) publishes the signed end marker, as ``oasis broadcast`` does at its
    source's failure (found 2026-12-07 from outside: the API's stream said ``stream.ended``
    to its own node only; its viewers were sent no end and said ``stream.stalled``, their
    ``unmade`` growing by the stream's rate for as long as they watched). The reason is a
    sentence, not a Python repr (it said ``FileNotFoundError(2, 'No such file or directory')``)."""
    from procs import until

    from oasis.core.stream import is_end

    node, api, url, streaming = publishing
    sub = node.events.subscribe(["stream"])
    async with AsyncClient(url, api.token) as c:
        pub = await c.publish("clip", str(ts_clip))
        assert (await sub.get(timeout=5)).kind == "stream.started"
        ls = node.streams[StreamId.parse(pub.stream_id).key]
        await until(lambda: ls.swarm.log.latest >= 1, 30, what="the clip's first chunks")
        ts_clip.unlink()  # the clip is 1 s long: its next pass finds no file
        ev = await sub.get(timeout=15)
        assert ev is not None and ev.kind == "stream.ended", ev
        reason = ev.data["reason"]
        assert "No such file" in reason and str(ts_clip) in reason and "Error(" not in reason, reason
        end = ls.swarm.end_seq
        assert end >= 1 and end == ls.swarm.log.latest, (end, ls.swarm.log.latest)
        marker = ls.swarm.log.get(end)
        assert marker is not None and is_end(marker)
        [info] = await c.streams()
        assert info.end == end and info.latest == end and info.managed
        await c.stop(pub.stream_id)


async def test_publish_refuses_a_udp_source_with_a_parameter_it_would_ignore(
        publishing: tuple[Node, napi.Api, str, Streaming]) -> None:
    """``udp://HOST:PORT?x=1`` was published, its query silently ignored (found 2026-12-02):
    a parameter the source does not take is a 400 ``bad_source`` that names it; ffmpeg's
    ``pkt_size`` (checked, no effect) is still taken."""
    node, api, url, streaming = publishing
    port = _free_port(socket.SOCK_DGRAM)
    for source, why in ((f"udp://127.0.0.1:{port}?x=1", "unknown parameter 'x'"),
                        (f"udp://127.0.0.1:{port}?pkt_size=1316&fifo_size=9", "unknown parameter 'fifo_size'"),
                        (f"udp://127.0.0.1:{port}?pkt_size=70000", "pkt_size must be")):
        status, body = await call("POST", f"{url}/streams", token=api.token,
                                  data=msgspec.json.encode({"name": "live", "source": source}))
        assert (status, error_code(body)) == (400, "bad_source"), (source, body)
        assert why in body["error"]["message"], body
    assert node.streams == {} and streaming.managed == {}
    status, body = await call("POST", f"{url}/streams", token=api.token, data=msgspec.json.encode(
        {"name": "live", "source": f"udp://127.0.0.1:{port}?pkt_size=1316"}))
    assert status == 201, body
    status, _ = await call("DELETE", f"{url}/streams/{body['stream_id']}", token=api.token)
    assert status == 200


async def test_publish_on_a_node_whose_origin_is_on_every_interface_says_what_to_do(tmp_path: Path) -> None:
    """A node started with ``--http 0.0.0.0:P`` has no origin a viewer can reach: publish is
    refused saying so and what to give (it said ``origin: 'http://0.0.0.0:P/origin': not a
    unicast address, or link-local``, found 2026-12-07 from outside), and nothing is left."""
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    base = f"http://0.0.0.0:{_free_port()}"  # (nothing is bound there: the refusal comes first)
    streaming = Streaming(node, Common(data_dir=str(tmp_path)), base=base, tracker_url=f"{base}/tracker")
    runner, api = await napi.start_api(node, str(tmp_path / "api"), "127.0.0.1:0", streaming=streaming)
    try:
        async with AsyncClient(api.url, api.token) as c:
            with pytest.raises(OasisApiError) as exc:
                await c.publish("live", "test")
        assert (exc.value.status, exc.value.code) == (400, "bad_request")
        assert "every interface" in exc.value.message and "--http" in exc.value.message, exc.value.message
        assert node.streams == {} and streaming.managed == {}
    finally:
        await streaming.close()
        await runner.cleanup()
        await node.close()


async def test_a_stream_whose_source_failed_is_ended_not_stalled(
        publishing: tuple[Node, napi.Api, str, Streaming]) -> None:
    """A source that fails once the stream exists (here a UDP port taken between the API's
    check and the stream's bind): ``stream.ended`` once, and the watchdog does not then
    report the stream ``stalled``; it stays listed until stopped."""
    node, api, url, streaming = publishing
    sub = node.events.subscribe(["stream"])
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        res = await streaming.publish("live", f"udp://127.0.0.1:{taken.getsockname()[1]}")
        assert (await sub.get(timeout=5)).kind == "stream.started"
        ev = await sub.get(timeout=5)
        assert ev.kind == "stream.ended" and ev.data["stream_id"] == res["stream_id"]
        assert "bind" in ev.data["reason"] or "in use" in ev.data["reason"]
    finally:
        taken.close()
    now = asyncio.get_running_loop().time()
    for dt in (0.0, 10.0, 100.0):
        streaming.check_health(now + dt)
    assert sub.get_nowait() is None  # no stream.stalled after stream.ended
    async with AsyncClient(url, api.token) as c:
        [info] = await c.streams()
        assert info.stream_id == res["stream_id"] and info.latest == -1 and info.managed
        await c.stop(info.stream_id)
    assert (await sub.get(timeout=5)).kind == "stream.stopped"
    assert streaming.ended == set()


async def test_chat_history_and_events_with_the_real_messaging_service(served: tuple[Node, napi.Api, str]) -> None:
    """What docs/api.md says of chat: history's default limit is 100, ``after`` is a unix
    time compared with ``time`` (not a ``seq``: that is the sender's millisecond clock),
    and ``chat.message`` events carry ``late``."""
    node, api, url = served
    sid = StreamId(node.identity.public, "live")
    node.add_stream(sid, is_source=True)
    async with AsyncClient(url, api.token) as c:
        feed = c.events(["chat.message"], reconnect=False)
        assert (await asyncio.wait_for(feed.__anext__(), 5)).kind == "subscribed"
        first = await c.chat_send(str(sid), "one")
        ev = await asyncio.wait_for(feed.__anext__(), 5)
        assert ev.data == {**msgspec.to_builtins(first), "late": False}
        node.clock = lambda: first.time + 1.5  # type: ignore[method-assign]  # the next message a bit later
        second = await c.chat_send(str(sid), "two")
        await feed.aclose()
        assert second.seq > first.seq >= first.time * 1000  # ms of the sender's clock, not a counter
        assert [m.text for m in await c.chat_history(str(sid))] == ["one", "two"]
        assert [m.text for m in await c.chat_history(str(sid), after=first.time)] == ["two"]
        assert await c.chat_history(str(sid), after=first.seq) == []
        status, body = await call("GET", f"{url}/chat/{sid}?limit=1", token=api.token)
        assert status == 200 and [m["text"] for m in body] == ["two"]
        # the broadcaster cannot ban itself (it was taken, 200, and then its own posts were
        # refused): 400, and it still posts
        with pytest.raises(OasisApiError) as exc:
            await c.chat_moderate(str(sid), node.peer_id, "ban")
        assert (exc.value.status, exc.value.code) == (400, "bad_request") and "itself" in str(exc.value)
        assert (await c.chat_send(str(sid), "three")).text == "three"


async def test_a_silenced_sender_is_told_muted_not_forbidden(served: tuple[Node, napi.Api, str]) -> None:
    """A viewer the broadcaster muted (or banned) posts through the API: 403 with the code
    ``muted`` (what the CLI says), not the generic ``forbidden`` of a call this node may
    never make; the message says which (found 2026-12-06 by a docs-only audit)."""
    from oasis.core import chat as ch
    from oasis.core import wire

    node, api, url = served
    broadcaster = Identity.generate()
    sid = StreamId(broadcaster.public, "live")
    node.add_stream(sid, is_source=False)
    room = node.messaging._room(sid.key)
    assert room is not None
    async with AsyncClient(url, api.token) as c:
        assert (await c.chat_send(str(sid), "before")).text == "before"
        for action, word in ((ch.MUTE, "muted"), (ch.BAN, "banned")):
            until = int((node.clock() + 600) * 1000)
            issued = int(node.clock() * 1000) + action  # (each newer than the last)
            mod = wire.ChatMod(stream=sid.key, target=node.identity.public, action=action,
                                   until_ms=until, issued_ms=issued, signature=broadcaster.sign(
                                       ch.mod_signing_bytes(sid.key, node.identity.public, action, until, issued)))
            node.messaging.on_chat(broadcaster.public, mod)  # the broadcaster's signed record
            with pytest.raises(OasisApiError) as exc:
                await c.chat_send(str(sid), "let me talk")
            assert (exc.value.status, exc.value.code) == (403, "muted"), exc.value
            assert f"you are {word}" in str(exc.value)
        with pytest.raises(OasisApiError) as exc:  # a call this node may never make: forbidden
            await c.chat_moderate(str(sid), peer_id_of(Identity.generate().public), "ban")
        assert (exc.value.status, exc.value.code) == (403, "forbidden")


def test_from_data_dir_without_a_node_raises_no_node(tmp_path: Path) -> None:
    from oasis.sdk import Client

    for make in (AsyncClient.from_data_dir, Client.from_data_dir):
        with pytest.raises(OasisApiError) as exc:
            make(tmp_path / "missing")
        assert (exc.value.status, exc.value.code) == (0, "no_node")


async def test_a_published_files_link_names_only_addresses_another_node_can_dial(tmp_path: Path) -> None:
    """``FileInfo.link`` names this node (``b=``) and its gateway (``o=``) only where another
    node can reach them: a gateway bound to 0.0.0.0 is no origin (the link said
    ``o=http://0.0.0.0:PORT``, which every link parser refuses as ``bad_origin``)."""
    from oasis.core.filelink import parse as parse_file_link

    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    clip = tmp_path / "a.ts"
    clip.write_bytes(b"abc")
    try:
        for base, origin in (("http://0.0.0.0:8080", None), ("http://127.0.0.1:8080", "http://127.0.0.1:8080")):
            runner, api = await napi.start_api(node, str(tmp_path / "api"), "127.0.0.1:0", http_base=base)
            node.files = FakeFiles()  # type: ignore[attr-defined]
            try:
                async with AsyncClient(api.url, api.token) as c:
                    info = await c.file_publish(str(clip))
            finally:
                await runner.cleanup()
            assert info.link is not None
            link = parse_file_link(info.link)  # (it raised bad_origin)
            assert [(k, h, p) for k, h, p in link.peers] == [(node.identity.public, "127.0.0.1", node.port)]
            assert link.origin == origin, info.link
    finally:
        await node.close()


async def test_a_node_that_does_not_answer_is_unreachable_saying_so() -> None:
    """A node that takes the connection and never answers (stopped with SIGSTOP, or its
    loop stuck): the call gives up after the client's ``timeout`` with ``unreachable``, and
    the message says what happened (found 2026-12-07 from outside: it ended in an empty
    reason, ``http://127.0.0.1:PORT/v1: ``, a TimeoutError's empty text)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(4)  # the kernel completes the handshakes; nothing ever reads or answers
        url = f"http://127.0.0.1:{mute.getsockname()[1]}/v1"
        async with AsyncClient(url, "0" * 64, timeout=0.5) as c:
            with pytest.raises(OasisApiError) as exc:
                await c.node()
    assert (exc.value.status, exc.value.code) == (0, "unreachable")
    assert "no answer within 0.5 s" in exc.value.message, exc.value.message


async def test_a_dm_names_its_recipient_as_the_events_do_and_not_this_node(
        served: tuple[Node, napi.Api, str]) -> None:
    """A peer id is read in any case (base32), but the answer's ``to`` is the canonical
    id that ``dm.acked`` and the inbox carry (found 2026-12-07 from outside: it echoed the
    upper-case id it was given, and a program matching the send to its ``dm.acked`` by ``to``
    never matched); the node's own id is 400 ``bad_peer_id``, as ``oasis dm`` says it
    (docs/oftp.md §19.5), not ``bad_request``."""
    node, api, url = served
    peer = peer_id_of(Identity.generate().public)
    async with AsyncClient(url, api.token) as c:
        res = await c.dm_send(peer.upper(), "hi")
        assert res.to == peer and res.state in ("pending", "stored"), res
        for own in (node.peer_id, node.peer_id.upper()):
            with pytest.raises(OasisApiError) as exc:
                await c.dm_send(own, "to myself")
            assert (exc.value.status, exc.value.code) == (400, "bad_peer_id"), exc.value


async def test_list_queries_take_ascii_integers_and_finite_times(served: tuple[Node, napi.Api, str]) -> None:
    """Found 2026-12-02: ``limit=１０`` (full-width digits) was taken as 10 and ``after=nan``
    was refused with a message about ``limit``."""
    node, api, url = served
    node.messaging = FakeMessaging()  # type: ignore[attr-defined]
    auth = {"Authorization": f"Bearer {api.token}"}
    async with aiohttp.ClientSession() as s:
        for query, word in (("limit=%EF%BC%91%EF%BC%90", "limit"), ("limit=0", "limit"), ("limit=1e3", "limit"),
                            ("after=nan", "after"), ("after=inf", "after"), ("after=x", "after"),
                            ("after=%EF%BC%91", "after")):
            async with s.get(f"{url}/dm?{query}", headers=auth) as r:
                body = await r.json()
                assert r.status == 400 and body["error"]["code"] == "bad_query", query
                assert body["error"]["message"].startswith(word), (query, body)
        async with s.get(f"{url}/dm?limit=10&after=1.5", headers=auth) as r:
            assert r.status == 200


async def test_a_query_parameter_a_route_does_not_take_is_refused(served: tuple[Node, napi.Api, str]) -> None:
    """Found 2026-12-06 by a docs-only audit: unknown and repeated query parameters were
    ignored, so ``?limt=5`` (a typo) answered 100 messages and ``?limit=5&limit=500`` read
    the first. Each is a 400 ``bad_query`` naming the parameter; the documented ones work."""
    node, api, url = served
    node.messaging = FakeMessaging()  # type: ignore[attr-defined]
    auth = {"Authorization": f"Bearer {api.token}"}
    sid = str(StreamId(node.identity.public, "live"))
    async with aiohttp.ClientSession() as s:
        for path, word in (("/dm?limt=5", "'limt'"), ("/dm?limit=5&limit=500", "more than once"),
                           (f"/chat/{sid}?after=1&x=", "'x'"), ("/node?verbose=1", "takes none"),
                           ("/streams?token=abc", "'token'"), ("/openapi.json?v=2", "'v'"),
                           ("/events?kinds=chat&since=3", "'since'")):
            async with s.get(f"{url}{path}", headers=auth) as r:
                body = await r.json()
                assert r.status == 400 and body["error"]["code"] == "bad_query", (path, body)
                assert word in body["error"]["message"], (path, body)
        for path in ("/dm?limit=5&after=1", f"/chat/{sid}?limit=2", "/node", "/openapi.json"):
            async with s.get(f"{url}{path}", headers=auth) as r:
                assert r.status == 200, path
    async with AsyncClient(url, api.token) as c:  # the SDK sends only what routes take
        assert len(await c.dm_inbox(limit=1, after=0.5)) == 1
        feed = c.events(["chat"], reconnect=False)
        assert (await asyncio.wait_for(feed.__anext__(), 5)).kind == "subscribed"
        await feed.aclose()


class _Interrupt(BaseException):
    """What Ctrl-C raises in the main thread, for the test below (not KeyboardInterrupt,
    which pytest would take for the user's own)."""


def test_a_blocking_call_interrupted_is_cancelled_and_close_ends_cleanly() -> None:
    """Found 2026-12-05 in examples/stream_health.py: a Ctrl-C during a call closed the client
    under the call still running on its loop, which then failed ("Connector is closed") and
    was logged as "Task exception was never retrieved", a traceback after a clean Ctrl-C.
    Now the interrupted call is cancelled, close() awaits it and ends within its timeout."""
    import gc
    import signal
    import threading
    import time

    from oasis.sdk import Client
    from oasis.sdk import client as sdk_client

    assert threading.current_thread() is threading.main_thread()  # (signals land here)
    with socket.socket() as srv:  # accepts (the kernel's backlog) and never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        c = Client(f"http://127.0.0.1:{port}/v1", "0" * 64)
        errors: list[dict[str, Any]] = []
        c._loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))

        def interrupt(_sig: int, _frame: Any) -> None:
            raise _Interrupt

        old = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(_Interrupt):
                c.node()  # no answer: interrupted while it waits
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        t0 = time.monotonic()
        c.close()
        assert time.monotonic() - t0 < sdk_client.CLOSE_TIMEOUT
        assert not c._thread.is_alive() and c._loop.is_closed()
        del c
        gc.collect()
    assert errors == [], [e.get("message") for e in errors]
