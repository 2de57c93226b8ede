"""Probe: odd ``?from=`` values (and other query strings) at a viewer's player gateway
(``GET /live/<stream>.ts``, docs/oftp.md §10, §14.1), which any web page can request of the
default ``127.0.0.1:8080``. A real :class:`Node` whose player window holds 600 chunks, 200,000
past the first played, behind a real aiohttp server with the real gateway routes (as
``bench/atk4_gateway_from_start.py``). For each query: the status, the bytes read within 1 s,
the event loop's longest stall, and error log records. Prints JSON.

PYTHONPATH=. python bench/atk6_gateway_from.py
"""
from __future__ import annotations

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

QUERIES = ["", "from=start", "from=-1", "from=0", "from=199999", "from=200300", "from=99999999999999999999999",
           "from=1e9", "from=nan", "from=%00", "from=start&from=start", "from=" + "9" * 5000, "from=+5",
           "from=%EF%BC%91", "from[]=start", "x=1"]


class Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1


async def main() -> None:
    errors = Count()
    logging.getLogger().addHandler(errors)
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    ls = node.add_stream(StreamId(Identity.generate().public, "live"), is_source=False)
    pl = ls.playout
    pl.add(0, b"G" * 188, 0)
    for seq in range(200_000, 200_000 + pl.keep):
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
    out = []
    try:
        async with aiohttp.ClientSession() as s:
            for q in QUERIES:
                lag.clear()
                e0 = errors.n
                url = f"http://127.0.0.1:{server.port}/live/{ls.text_id}.ts" + (f"?{q}" if q else "")
                got, status = 0, None
                t0 = time.monotonic()
                try:
                    async with s.get(url, timeout=aiohttp.ClientTimeout(total=1.5)) as r:
                        status = r.status
                        while time.monotonic() - t0 < 1.0:
                            try:
                                b = await asyncio.wait_for(r.content.read(65536), 0.3)
                            except TimeoutError:
                                break
                            if not b:
                                break
                            got += len(b)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    status = status or type(exc).__name__
                out.append({"query": q[:40], "status": status, "bytes_1s": got,
                            "max_stall_ms": round(max(lag, default=0) * 1000, 1), "errors": errors.n - e0})
    finally:
        tk.cancel()
        await server.close()
        await node.close()
    print(json.dumps({"probes": out, "loadavg": open("/proc/loadavg").read().split()[:3]}))


if __name__ == "__main__":
    asyncio.run(main())
