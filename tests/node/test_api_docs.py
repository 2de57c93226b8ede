"""docs/api.md is what a program gets: every documented endpoint of two real ``oasis node``
processes on loopback, called as a third-party program would (plain HTTP and WebSocket, not
the SDK), each answer checked against the documented shape -- the exact field names, the
status, the error body -- and the event feed's kinds and fields. Waits are on the nodes'
own events (``dm.received``, ``file.complete``, ``stream.stopped``, ...), each bounded.
A field added, renamed or dropped without docs/api.md fails here."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from oasis.core.content import cid_text
from oasis.core.filelink import parse as parse_file_link
from oasis.core.identity import peer_id_of
from tests.node.procs import OasisProcess, wait_until

pytestmark = pytest.mark.integration

# the documented shapes (docs/api.md § Endpoints and § Events)
NODE_INFO = {"peer_id", "version", "oftp", "http", "api", "uptime_s", "streams", "neighbours", "services", "counters"}
STREAM_INFO = {"stream_id", "role", "latest", "start", "neighbours", "depth", "chunks", "skipped", "continuity",
               "latency_p50_ms", "bytes", "offload", "player_url", "managed", "link",
               "start_trace", "start_source", "clock_offset", "end", "unmade", "web_url",
               "encrypted", "playable", "unopened"}
PUBLISHED = {"stream_id", "link", "player_url", "tracker", "web_url", "encrypted", "short_link"}
WATCHED = {"stream_id", "player_url", "web_url", "encrypted", "playable"}
CHAT = {"id", "stream", "sender", "seq", "text", "time"}
MODERATION = {"stream", "target", "action", "until", "issued"}
DM_SENT = {"id", "to", "state"}
DM = {"id", "sender", "text", "time"}
WALLET = {"address", "token_balance", "eth_balance", "pending_rewards", "settled_rewards", "receipts_stored",
          "settle_txs"}
FILE_INFO = {"cid", "name", "size", "block_size", "blocks", "mime", "link"}
FILE_STATUS = {"cid", "name", "size", "blocks", "have_blocks", "state", "from_peers", "from_origin", "url",
               "bad_blocks", "peers_dropped"}
EVENT = {"seq", "time", "kind", "data"}
EVENT_DATA = {"stream.started": {"stream_id", "role"}, "stream.stopped": {"stream_id"},
              "chat.message": CHAT | {"late"}, "dm.received": DM, "dm.acked": {"id", "to"},
              "subscribed": {"kinds", "next_seq"},
              "stream.ended (viewer)": {"stream_id", "reason", "seq"}}
ROUTES = {"/v1/node", "/v1/streams", "/v1/streams/{stream_id}", "/v1/watch", "/v1/wallet", "/v1/rewards",
          "/v1/chat/{stream_id}", "/v1/chat/{stream_id}/moderation", "/v1/dm/{peer_id}", "/v1/dm", "/v1/files",
          "/v1/files/{cid}", "/v1/files/{cid}/fetch", "/v1/events", "/v1/openapi.json"}


class Api:
    def __init__(self, proc: OasisProcess, data_dir: Path, session: aiohttp.ClientSession) -> None:
        self.base = proc.info["api"]
        self.token = (data_dir / "api.token").read_text().strip()
        self.s = session

    def get_sync(self, path: str) -> Any:
        """GET (blocking: for a bounded poll in a thread, procs.wait_until)."""
        rq = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(rq, timeout=10) as r:
            return json.loads(r.read())

    async def req(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                  headers: dict[str, str] | None = None, token: bool = True) -> tuple[int, Any, Any]:
        h = {"Authorization": f"Bearer {self.token}"} if token else {}
        h.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.s.request(method, self.base + path, data=data, headers=h) as r:
            assert r.content_type == "application/json", (method, path, r.status, await r.text())
            return r.status, await r.json(), r.headers


class Feed:
    """One node's event feed: every event kept, waits bounded."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def next(self, kind: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        for ev in self.events:
            if ev["kind"] == kind and all(ev["data"].get(k) == v for k, v in match.items()):
                return ev
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                ev = json.loads(msg.data)
                self.events.append(ev)
                if ev["kind"] == kind and all(ev["data"].get(k) == v for k, v in match.items()):
                    return ev


def error_of(where: str, status: int, body: Any, want_status: int, want_code: str) -> None:
    assert status == want_status, (where, status, body)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, (where, body)
    assert body["error"]["code"] == want_code, (where, body)


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[Api, Api]]:
    procs = [OasisProcess(["node", "--data-dir", str(tmp_path / n), "--api-listen", "127.0.0.1:0", "--http",
                           "127.0.0.1:0", "--listen", "127.0.0.1:0", "--bitrate", "300"], str(tmp_path / f"{n}.log"))
             for n in ("a", "b")]
    try:
        for p in procs:
            await asyncio.to_thread(p.wait_info, 60)
        async with aiohttp.ClientSession() as s:
            yield Api(procs[0], tmp_path / "a", s), Api(procs[1], tmp_path / "b", s)
    finally:
        for p in procs:
            assert p.stop() == 0


async def feed(api: Api, kinds: str) -> Feed:
    ws = await api.s.ws_connect(f"{api.base.replace('http://', 'ws://')}/events?kinds={kinds}&token={api.token}")
    f = Feed(ws)
    sub = await f.next("subscribed", 10)  # always first: wait for it before acting (docs/api.md)
    assert set(sub) == EVENT and sub["seq"] == 0 and set(sub["data"]) == EVENT_DATA["subscribed"]
    return f


async def test_every_endpoint_answers_as_docs_api_md_says(nodes: tuple[Api, Api], tmp_path: Path) -> None:
    a, b = nodes
    fa, fb = await feed(a, "stream,chat,file,dm"), await feed(b, "stream,dm,file")
    try:
        st, node_a, _ = await a.req("GET", "/node")
        assert st == 200 and set(node_a) == NODE_INFO
        _, node_b, _ = await b.req("GET", "/node")

        # refusals: one JSON shape, the documented code
        error_of("no token", *(await a.req("GET", "/node", token=False))[:2], 401, "unauthorized")
        error_of("Host", *(await a.req("GET", "/node", headers={"Host": "evil.example"}))[:2], 403, "bad_host")
        error_of("Origin", *(await a.req("GET", "/node", headers={"Origin": "http://evil.example"}))[:2],
                 403, "bad_origin")
        error_of("route", *(await a.req("GET", "/nope"))[:2], 404, "not_found")
        error_of("method", *(await a.req("PUT", "/node"))[:2], 405, "method_not_allowed")
        error_of("17 KB", *(await a.req("POST", "/streams", raw=b'{"name": "' + b"a" * 17000 + b'"}'))[:2],
                 413, "too_large")
        error_of("no upgrade", *(await a.req("GET", "/events"))[:2], 400, "not_websocket")

        # streams: publish (201), conflict, watch (201), the StreamInfo of both roles
        st, pub, _ = await a.req("POST", "/streams", {"name": "live", "source": "test", "bitrate_kbps": 300})
        assert st == 201 and set(pub) == PUBLISHED, pub
        sid = pub["stream_id"]
        ev = await fa.next("stream.started", stream_id=sid)
        assert set(ev) == EVENT and set(ev["data"]) == EVENT_DATA["stream.started"] and ev["data"]["role"] == "broadcaster"
        error_of("twice", *(await a.req("POST", "/streams", {"name": "live"}))[:2], 409, "conflict")
        error_of("source", *(await a.req("POST", "/streams", {"name": "x", "source": "rel.ts"}))[:2], 400, "bad_source")
        # the viewer joins by the short link the answer gives, as `oasis broadcast` prints one
        # (the API gave none: found 2026-12-07 from outside): the descriptor comes from the DHT
        short = pub["short_link"]
        assert short.startswith(f"oasis://{sid}?") and "d=" not in short and f"b={node_a['peer_id']}@" in short, short
        st, w, _ = await b.req("POST", "/watch", {"link": short})
        assert st == 201 and set(w) == WATCHED and w["stream_id"] == sid, w
        assert (await fb.next("stream.started", stream_id=sid))["data"]["role"] == "viewer"
        st, mine, _ = await a.req("GET", "/streams")
        assert st == 200 and [set(x) for x in mine] == [STREAM_INFO]
        assert mine[0]["role"] == "broadcaster" and mine[0]["link"] == pub["link"] and mine[0]["start"] == 0
        assert mine[0]["depth"] == [0, 0, 0, 0] and mine[0]["managed"] is True
        st, theirs, _ = await b.req("GET", f"/streams/{sid}")
        assert st == 200 and set(theirs) == STREAM_INFO and theirs["role"] == "viewer" and theirs["link"] is None
        assert set(theirs["bytes"]) <= {"broadcaster", "p2p", "origin"} and len(theirs["depth"]) == 4
        error_of("sid", *(await a.req("GET", "/streams/notastream"))[:2], 400, "bad_stream_id")
        error_of("no such", *(await a.req("GET", f"/streams/{node_b['peer_id']}.nope"))[:2], 404, "not_found")

        # chat: 201 ChatMessage, the event (with late), history, moderation (200), 403, 429
        st, msg, _ = await a.req("POST", f"/chat/{sid}", {"text": "hello"})
        assert st == 201 and set(msg) == CHAT, msg
        ev = await fa.next("chat.message", id=msg["id"])
        assert set(ev["data"]) == EVENT_DATA["chat.message"] and ev["data"]["late"] is False
        st, hist, _ = await a.req("GET", f"/chat/{sid}?limit=20")
        assert st == 200 and [set(m) for m in hist] == [CHAT] and hist[0]["id"] == msg["id"]
        error_of("limit", *(await a.req("GET", f"/chat/{sid}?limit=0"))[:2], 400, "bad_query")
        # the documented longest (7 days; the docs and the SDK said 30 until 2026-12-05), one
        # second more refused; the 30 s mute after it wins (the newest record per target)
        st, mod, _ = await a.req("POST", f"/chat/{sid}/moderation",
                                 {"peer_id": node_b["peer_id"], "action": "mute", "seconds": 7 * 86400})
        assert st == 200 and abs(mod["until"] - mod["issued"] - 7 * 86400) < 1, mod
        error_of("8 days", *(await a.req("POST", f"/chat/{sid}/moderation",
                                         {"peer_id": node_b["peer_id"], "action": "mute",
                                          "seconds": 7 * 86400 + 1}))[:2], 400, "bad_request")
        st, mod, _ = await a.req("POST", f"/chat/{sid}/moderation",
                                 {"peer_id": node_b["peer_id"], "action": "mute", "seconds": 30})
        assert st == 200 and set(mod) == MODERATION, mod
        error_of("viewer moderates", *(await b.req("POST", f"/chat/{sid}/moderation",
                                                   {"peer_id": node_a["peer_id"], "action": "mute"}))[:2],
                 403, "forbidden")
        limited = None
        for i in range(8):
            st, body, headers = await a.req("POST", f"/chat/{sid}", {"text": f"burst {i}"})
            if st == 429:
                limited = (body, headers)
                break
        assert limited is not None, "no 429 within 8 messages (a burst of 5)"
        error_of("rate", 429, limited[0], 429, "rate_limited")
        assert limited[1]["Retry-After"] == "1"

        # DMs: 201, the recipient's event and inbox, the sender's ack
        st, dm, _ = await a.req("POST", f"/dm/{node_b['peer_id']}", {"text": "psst"})
        assert st == 201 and set(dm) == DM_SENT and dm["state"] in ("delivered", "stored", "pending"), dm
        ev = await fb.next("dm.received", id=dm["id"])
        assert set(ev["data"]) == EVENT_DATA["dm.received"]
        assert set((await fa.next("dm.acked", id=dm["id"]))["data"]) == EVENT_DATA["dm.acked"]
        st, inbox, _ = await b.req("GET", "/dm?limit=10")
        assert st == 200 and [set(m) for m in inbox] == [DM]
        error_of("peer", *(await a.req("POST", "/dm/notapeer", {"text": "x"}))[:2], 400, "bad_peer_id")

        # wallet and rewards (off on `oasis node`)
        st, wallet, _ = await a.req("GET", "/wallet")
        assert st == 200 and set(wallet) == WALLET and wallet["token_balance"] is None, wallet
        error_of("rewards", *(await a.req("GET", "/rewards"))[:2], 501, "not_available")

        # files: publish (201), list, status, fetch (202) to file.complete, remove
        path = tmp_path / "clip.bin"
        path.write_bytes(os.urandom(70_000))
        st, info, _ = await a.req("POST", "/files", {"path": str(path)})
        assert st == 201 and set(info) == FILE_INFO, info
        cid = info["cid"]
        assert (await fa.next("file.published", cid=cid))["data"]["cid"] == cid
        error_of("path", *(await a.req("POST", "/files", {"path": "clip.bin"}))[:2], 400, "bad_path")
        st, files, _ = await a.req("GET", "/files")
        assert st == 200 and [set(f) for f in files] == [FILE_STATUS]
        st, status, _ = await a.req("GET", f"/files/{cid}")
        assert st == 200 and set(status) == FILE_STATUS and status["state"] == "seeding"
        error_of("cid", *(await a.req("GET", "/files/of1xyz"))[:2], 400, "bad_cid")
        # the answer carries the link to share, as `oasis publish` prints it (it had none: a
        # program had to build one from docs/oftp.md §18.1, found 2026-12-07 from outside);
        # the other node fetches by that link alone
        link = parse_file_link(info["link"])
        assert [(peer_id_of(k), f"{h}:{p}") for k, h, p in link.peers] == [(node_a["peer_id"], node_a["oftp"])]
        assert link.origin == node_a["http"] and cid_text(link.cid) == cid, info["link"]
        st, fetching, _ = await b.req("POST", f"/files/{quote(info['link'], safe='')}/fetch", {})
        assert st == 202 and set(fetching) == FILE_STATUS, fetching
        await fb.next("file.complete", cid=cid)
        st, got, _ = await b.req("GET", f"/files/{cid}")
        assert set(got) == FILE_STATUS and got["state"] == "complete" and got["have_blocks"] == got["blocks"]
        error_of("peer", *(await b.req("POST", f"/files/{cid}/fetch", {"peers": ["nonsense"]}))[:2], 400, "bad_peer")
        own = f"{node_b['peer_id']}@{node_b['oftp']}"  # (taken in silence before, found 2026-12-07)
        error_of("own", *(await b.req("POST", f"/files/{cid}/fetch", {"peers": [own]}))[:2], 400, "bad_peer")
        assert (await b.req("DELETE", f"/files/{cid}"))[:2] == (200, {"deleted": cid})

        # stop: {"deleted": S} and stream.stopped on both; the broadcaster first: its
        # viewer is told stream.ended, and its StreamInfo says where (end)
        await asyncio.to_thread(wait_until, lambda: b.get_sync(f"/streams/{sid}")["latest"] >= 0, 30)  # playing
        assert (await a.req("DELETE", f"/streams/{sid}"))[:2] == (200, {"deleted": sid})
        await fa.next("stream.stopped", stream_id=sid)
        ended = (await fb.next("stream.ended", stream_id=sid))["data"]
        assert set(ended) == EVENT_DATA["stream.ended (viewer)"], ended
        assert ended["reason"] == "the broadcaster ended the stream"
        st, theirs, _ = await b.req("GET", f"/streams/{sid}")
        assert st == 200 and theirs["end"] == ended["seq"] == theirs["latest"], theirs
        assert (await b.req("DELETE", f"/streams/{sid}"))[:2] == (200, {"deleted": sid})
        assert set((await fb.next("stream.stopped", stream_id=sid))["data"]) == EVENT_DATA["stream.stopped"]

        # the OpenAPI document names exactly the documented routes
        st, doc, _ = await a.req("GET", "/openapi.json")
        assert st == 200 and str(doc["openapi"]).startswith("3.1") and set(doc["paths"]) == ROUTES
        for ev in fa.events + fb.events:
            assert set(ev) == EVENT, ev
    finally:
        await fa.ws.close()
        await fb.ws.close()
