"""A web page against the local API (issue 8, h-atk7): DNS rebinding, CSRF by simple
cross-origin requests, CORS preflights, the event feed's WebSocket, oversized and deep
bodies, a flood. Prints JSON: what each request got.

A real ``Node`` with its real API (``napi.start_api`` on 127.0.0.1, as ``oasis node`` serves
it) and real HTTP from this process, sending what a browser would send for a page of
``attacker.example`` (its ``Origin``; after rebinding its ``Host``); the page never knows the
token (``<data-dir>/api.token``, 0600), so it sends none or a guess.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time

import aiohttp

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.node import api as napi
from oasis.node.node import Node
from oasis.node.runtime import Common
from oasis.node.streaming import Streaming

EVIL = "http://attacker.example"


async def main() -> None:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
        await node.start()
        streaming = Streaming(node, Common(data_dir=tmp))
        runner, api = await napi.start_api(node, tmp, "127.0.0.1:0", streaming=streaming)
        url = api.url  # http://127.0.0.1:PORT/v1
        port = url.split(":")[2].split("/")[0]
        tok = {"Authorization": f"Bearer {api.token}"}
        try:
            async with aiohttp.ClientSession() as s:
                async def req(name: str, method: str, path: str, **kw: object) -> None:
                    async with s.request(method, url + path, **kw) as r:  # type: ignore[arg-type]
                        body = await r.read()
                        out[name] = {"status": r.status, "code": _code(body),
                                     "acao": r.headers.get("Access-Control-Allow-Origin")}

                # DNS rebinding: the page's own name as Host (with and without the token)
                await req("rebind_get_node", "GET", "/node", headers={"Host": f"attacker.example:{port}"})
                await req("rebind_with_token", "GET", "/node",
                          headers={**tok, "Host": f"attacker.example:{port}", "Origin": f"http://attacker.example:{port}"})
                # CSRF: simple cross-origin requests a form or fetch(no-cors) can send
                await req("csrf_form_post_streams", "POST", "/streams", data=b"name=live",
                          headers={"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"})
                await req("csrf_text_plain_dm", "POST", "/dm", data=b'{"to":"x","text":"hi"}',
                          headers={"Origin": EVIL, "Content-Type": "text/plain"})
                await req("csrf_no_origin_no_token", "POST", "/streams", data=b'{"name":"live"}',
                          headers={"Content-Type": "text/plain"})
                await req("csrf_null_origin", "DELETE", "/files/x", headers={"Origin": "null"})
                # CORS preflight: would the API let the page read or send with the token?
                await req("cors_preflight", "OPTIONS", "/node",
                          headers={"Origin": EVIL, "Access-Control-Request-Method": "GET",
                                   "Access-Control-Request-Headers": "authorization"})
                # a wrong token, a token in the query of an ordinary route
                await req("wrong_token", "GET", "/node", headers={"Authorization": "Bearer " + "0" * 64})
                await req("token_in_query_not_events", "GET", f"/node?token={api.token}")
                # the event feed from the page
                try:
                    async with s.ws_connect(f"{url}/events?token={api.token}", headers={"Origin": EVIL}):
                        out["ws_from_page"] = "opened"
                except aiohttp.WSServerHandshakeError as exc:
                    out["ws_from_page"] = exc.status
                # bodies
                await req("body_1mb", "POST", "/streams", data=b'{"name":"' + b"a" * (1 << 20) + b'"}',
                          headers=tok)
                await req("body_deep", "POST", "/streams", data=b"[" * 5000 + b"]" * 5000, headers=tok)
                # a flood: 600 requests at once with the token (a local program gone wrong)
                t0 = time.monotonic()
                statuses: dict[int, int] = {}

                async def one() -> None:
                    async with s.get(url + "/node", headers=tok) as r:
                        await r.read()
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                await asyncio.gather(*(one() for _ in range(600)))
                out["flood_600"] = {"statuses": statuses, "seconds": round(time.monotonic() - t0, 2)}
                t1 = time.monotonic()
                async with s.get(url + "/node", headers=tok) as r:
                    out["after_flood"] = {"status": r.status, "ms": round(1000 * (time.monotonic() - t1), 1)}
            out["counters"] = dict(api.counters)
        finally:
            await streaming.close()
            await runner.cleanup()
            await node.close()
    print(json.dumps(out))


def _code(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


if __name__ == "__main__":
    asyncio.run(main())
