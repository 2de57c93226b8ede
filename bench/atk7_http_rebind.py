"""DNS rebinding against a node's HTTP face bound to a wildcard address (issue 8, h-atk7).
Prints JSON.

A broadcaster serves its origin, tracker and gateway on ``--http 0.0.0.0:PORT`` (so that
viewers reach them); its operator opens a web page of ``attacker.example``, whose name the
attacker then re-points at 127.0.0.1. The page's requests reach the face over loopback
with ``Host: attacker.example:PORT`` and no proxy header, and the page may read the answers
(same origin, for the browser). This script makes those requests against a real node and a
real aiohttp face (``start_http``, the routes of ``tests/node/test_node_http_faces.py``) and
reports what each returns; then the same with ``Host: 127.0.0.1:PORT`` (the operator).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "node"))

from test_node_http_faces import SID, _app, _node, _tracker_with_a_strangers_stream  # noqa: E402

from oasis.node import http  # noqa: E402
from oasis.node.runtime import start_http  # noqa: E402

PATHS = ("/stats", "/stats?detail=1", "/metrics", "/rewards", "/streams", "/tracker/streams")


async def main() -> None:
    node = await _node()
    app = _app(node, _tracker_with_a_strangers_stream())
    runner, port = await start_http(app, "0.0.0.0", 0)
    out: dict = {"bind": f"0.0.0.0:{port}", "stream": str(SID)}
    try:
        async with aiohttp.ClientSession() as s:
            for who, host in (("rebound_page", f"attacker.example:{port}"), ("operator", f"127.0.0.1:{port}")):
                res = {}
                for path in PATHS:
                    async with s.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}) as r:
                        body = await r.read()
                        entry: dict = {"status": r.status, "bytes": len(body)}
                        if r.status == 200 and path == "/rewards":
                            entry["wallet_leaked"] = "wallet" in json.loads(body)
                        if r.status == 200 and path in ("/streams", "/tracker/streams"):
                            entry["streams_listed"] = len(json.loads(body))
                        if r.status == 200 and path.startswith("/stats"):
                            entry["peer_id_leaked"] = node.peer_id in body.decode()
                        res[path] = entry
                out[who] = res
        out["counters"] = {k: v for k, v in app[http.HTTP_COUNTERS].items()
                           if k in ("http_local_only_refused", "http_operator_host_refused")}
    finally:
        await runner.cleanup()
        await node.close()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
