"""Local API figures (issue 11): requests/s and latency of the read endpoints, and the event
feed's lag. Prints JSON.

The node (a real :class:`~oasis.node.node.Node` with two streams, the real API app) runs in
a child process; this process is the client (aiohttp, keep-alive). For each read endpoint,
``--requests`` calls at concurrency 1 and 16 give requests/s and p50/p99 latency. Then the
child publishes ``--rate`` events/s on the node's event bus for ``--seconds`` s and one
WebSocket client measures the lag from publish (the event's time) to receipt.

    python bench/api_bench.py [--requests 2000] [--rate 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def serve(ready: Any, go: Any, done: Any, rate: int, seconds: float) -> None:
    from oasis.core import swarm as sw
    from oasis.core.identity import Identity
    from oasis.core.stream import StreamId
    from oasis.node.api import start_api
    from oasis.node.node import Node
    from oasis.node.runtime import Common
    from oasis.node.streaming import Streaming

    async def main() -> None:
        node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
        await node.start()
        for name in ("a", "b"):
            node.add_stream(StreamId(node.identity.public, name), is_source=True)
        with tempfile.TemporaryDirectory() as d:
            streaming = Streaming(node, Common(data_dir=d))
            try:  # the short-video service, so /files is answered by it (not a 501)
                from oasis.node.files import Files
                node.files = Files(node, d)
            except ImportError:
                pass
            runner, api = await start_api(node, d, "127.0.0.1:0", streaming=streaming)
            ready.put((api.url, api.token, str(next(iter(node.streams.values())).text_id)))
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, go.wait)
            batch = max(1, rate // 100)  # every 10 ms
            end = time.monotonic() + seconds
            n = 0
            next_at = time.monotonic()
            while time.monotonic() < end:
                for _ in range(batch):
                    n += 1
                    node.events.publish("bench.tick", {"n": n})
                next_at += batch / rate
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            node.events.publish("bench.end", {"n": n})
            await loop.run_in_executor(None, done.wait)
            await streaming.close()
            await runner.cleanup()
            await node.close()

    asyncio.run(main())


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def load(url: str, token: str, total: int, concurrency: int) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    per = total // concurrency
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, headers={"Authorization": f"Bearer {token}"}) as s:
        async def worker() -> None:
            nonlocal errors
            for _ in range(per):
                t0 = time.perf_counter()
                async with s.get(url) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                lat.append(time.perf_counter() - t0)

        await worker() if concurrency == 1 else None  # warm-up of one connection
        lat.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"requests": len(lat), "errors": errors, "rps": round(len(lat) / wall, 1),
            "p50_ms": round(pct(lat, 0.5) * 1000, 2), "p99_ms": round(pct(lat, 0.99) * 1000, 2)}


async def feed_lag(base: str, token: str, go: Any) -> dict[str, Any]:
    lags: list[float] = []
    seqs: list[int] = []
    lagged = 0
    async with aiohttp.ClientSession() as s, \
            s.ws_connect(f"{base}/events?kinds=bench&token={token}") as ws:
        go.set()
        async for msg in ws:
            now = time.time()
            ev = json.loads(msg.data)
            if ev["kind"] == "subscribed":
                continue
            if ev["kind"] == "lagged":
                lagged += ev["data"]["dropped"]
                continue
            if ev["kind"] == "bench.end":
                published = ev["data"]["n"]
                break
            lags.append(now - ev["time"])
            seqs.append(ev["seq"])
    return {"published": published, "received": len(lags), "dropped": lagged,
            "lag_p50_ms": round(pct(lags, 0.5) * 1000, 2), "lag_p99_ms": round(pct(lags, 0.99) * 1000, 2),
            "lag_max_ms": round(max(lags) * 1000, 2) if lags else None,
            "lag_mean_ms": round(statistics.fmean(lags) * 1000, 2) if lags else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="calls per endpoint and concurrency")
    ap.add_argument("--rate", type=int, default=1000, help="events/s published for the lag figure")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    ready, go, done = ctx.Queue(), ctx.Event(), ctx.Event()
    child = ctx.Process(target=serve, args=(ready, go, done, args.rate, args.seconds), daemon=True)
    child.start()
    try:
        base, token, sid = ready.get(timeout=60)
        files = True
        try:
            import oasis.node.files  # noqa: F401  (the short-video service, when present)
        except ImportError:
            files = False

        async def run() -> dict[str, Any]:
            out: dict[str, Any] = {"endpoints": {}}
            paths = ["/node", "/streams", f"/streams/{sid}", "/openapi.json", f"/chat/{sid}", "/dm"]
            if files:
                paths.append("/files")
            for path in paths:
                key = path.replace(sid, "{id}")
                out["endpoints"][key] = {f"c{c}": await load(base + path, token, args.requests, c)
                                         for c in (1, 16)}
            out["event_feed"] = await feed_lag(base, token, go) | {"rate_per_s": args.rate,
                                                                   "seconds": args.seconds}
            return out

        result = asyncio.run(run())
    finally:
        done.set()
        child.join(10)
        if child.is_alive():
            child.terminate()
    result["load_avg"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
