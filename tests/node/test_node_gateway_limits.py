"""The player gateway holds at most MAX_PLAYERS /live responses; the rest get a counted 429."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node import http
from oasis.node.node import Node


async def test_too_many_players_are_refused_and_the_gateway_keeps_serving(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "MAX_PLAYERS", 3)
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    ls = node.add_stream(StreamId(Identity.generate().public, "live"), is_source=False)
    app = web.Application()
    http.add_gateway_routes(app, node)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = f"http://127.0.0.1:{server.port}/live/{ls.text_id}.ts"
    try:
        async with aiohttp.ClientSession() as s:
            held = [await s.get(url) for _ in range(3)]  # a stream that never starts: they wait
            assert [r.status for r in held] == [200, 200, 200]
            async with s.get(url) as r:
                assert r.status == 429 and (await r.json())["error"] == "too_many_players"
            async with s.get(f"http://127.0.0.1:{server.port}/metrics") as r:
                assert r.status == 200
                assert 'oasis_http_errors_total{event="live_refused"} 1.0' in await r.text()
            held[0].close()
            async with s.get(f"http://127.0.0.1:{server.port}/streams") as r:
                assert r.status == 200
            for r in held[1:]:
                r.close()
    finally:
        await server.close()
        await node.close()
