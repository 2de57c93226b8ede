"""The player gateway asked to play from the start of a long-watched stream (docs/oftp.md
§14.1, found 2026-12-03 by an outside attacker: ``bench/atk4_gateway_from_start.py``).

``/live/<stream>.ts?from=start`` -- which any web page can request from the loopback
gateway with a ``<video>`` element -- walked from the first chunk the node played to the
oldest one still held one sequence number at a time, each step a ``min()`` over the held
window: the node's event loop froze ~2 s per request after 2 h of 33 ms chunks (10 s for
4 players), ~30 s after a day. And each player that closed was a logged traceback. A
real node and gateway; the player window is what a viewer holds after 3,000,000 chunks
(built with the node's own ``Playout.add``); the player reads from a thread, with a
timeout, so that a frozen loop fails the test instead of hanging it."""

from __future__ import annotations

import asyncio
import logging
import urllib.request

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from procs import until

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node import http
from oasis.node.node import Node

BEHIND = 3_000_000


def first_chunk(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read(188)


async def test_from_start_on_a_long_watched_stream_starts_at_once_and_a_closing_player_is_no_error(
        caplog: pytest.LogCaptureFixture) -> None:
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    ls = node.add_stream(StreamId(Identity.generate().public, "live"), is_source=False)
    pl = ls.playout
    pl.add(0, b"\x47" + b"\x00" * 187, 0)  # the first chunk played, long ago
    for s in range(BEHIND, BEHIND + pl.keep):
        pl.add(s, b"\x47" + s.to_bytes(8, "big") + b"\x00" * 179, 0)
    app = web.Application()
    http.add_gateway_routes(app, node)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    try:
        with caplog.at_level(logging.ERROR, logger="aiohttp"):
            got = await asyncio.gather(*(asyncio.to_thread(first_chunk, f"{base}/live/{ls.text_id}.ts?from=start")
                                         for _ in range(4)))
            # from the oldest chunk held (the first played is long gone)
            assert all(g[1:9] == BEHIND.to_bytes(8, "big") for g in got)
            # the players closed after a chunk: counted as gone, not logged as errors
            await until(lambda: app[http.HTTP_COUNTERS].get("live_players_gone", 0) >= 4, 10, what="gone")
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}/metrics", timeout=10).read())
            assert b'oasis_http_errors_total{event="live_players_gone"}' in text
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # was: a traceback each
    finally:
        await server.close()
        await node.close()
