"""Attack: ``GET /live/<stream>.ts?from=start`` at a viewer's player gateway, as any web page
can ask it (``<video src="http://127.0.0.1:8080/live/<stream-id>.ts?from=start">``: a
media request carries no Origin, its Host is the loopback one; the stream id is public).

A gateway's player starts at the first chunk the node played and walked from there to the
oldest chunk still held one sequence number at a time, each step with ``min()`` over the
600 held: after two hours of 33 ms chunks (200,000 behind) each such request froze the
node's event loop -- QUIC, relaying, every other player -- for ~2 s; after a day, ~30 s.
And each player that closed its connection was a logged traceback.

The node here is a real :class:`Node` whose player window holds what a viewer's holds
after ``--behind`` chunks (built by the same ``Playout.add`` the node uses), behind a real
aiohttp server with the real gateway routes. Prints JSON: the event loop's longest stall
while ``--players`` players start at once and read their first chunk, and the error log
records of ``--cycles`` players that open and close.

PYTHONPATH=. python bench/atk4_gateway_from_start.py [--behind 200000] [--players 4]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node import http
from oasis.node.node import Node


class Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--behind", type=int, default=200_000, help="chunks since the first one played")
    ap.add_argument("--players", type=int, default=4)
    ap.add_argument("--cycles", type=int, default=50, help="players opened and closed")
    a = ap.parse_args()
    errors = Count()
    logging.getLogger("aiohttp").addHandler(errors)
    logging.getLogger("aiohttp.server").setLevel(logging.ERROR)
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    ls = node.add_stream(StreamId(Identity.generate().public, "live"), is_source=False)
    pl = ls.playout
    pl.add(0, b"G" * 188, 0)  # the first chunk played
    for seq in range(a.behind, a.behind + pl.keep):  # the window now
        pl.add(seq, b"G" * 188, 0)
    app = web.Application()
    http.add_gateway_routes(app, node)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    lag: list[float] = []

    async def ticker() -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.01)
            lag.append(time.monotonic() - t - 0.01)
    tk = asyncio.ensure_future(ticker())
    url = f"http://127.0.0.1:{server.port}/live/{ls.text_id}.ts?from=start"
    try:
        async with aiohttp.ClientSession() as s:
            async def one() -> float:
                t0 = time.monotonic()
                async with s.get(url) as r:
                    await r.content.readexactly(188)
                    return time.monotonic() - t0
            firsts = await asyncio.gather(*(one() for _ in range(a.players)))
            for _ in range(a.cycles):
                async with s.get(url) as r:
                    await r.content.readexactly(188)
            await asyncio.sleep(0.5)  # the server notices the last close
    finally:
        tk.cancel()
        await server.close()
        await node.close()
    print(json.dumps({"behind": a.behind, "players": a.players, "first_chunk_s_max": round(max(firsts), 3),
                      "event_loop_stall_s_max": round(max(lag, default=0.0), 3),
                      "cycles": a.cycles, "error_log_records": errors.n,
                      "loadavg": open("/proc/loadavg").read().split()[:3]}, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
