"""Benchmark: the tracker's cost per announce, alone and behind its HTTP face.

1. Core rule: mean time of a re-announce (with a sample drawn) in a stream of
   N peers, N = 500 / 5,000 / 50,000.
2. Expiry: fake entries in many streams that are never announced again, held
   after ``ttl`` (virtual time, one sweep).
3. HTTP: a real tracker (aiohttp, its own process, 127.0.0.1) holding
   ``--prefill`` signed entries in one stream; ``--clients`` concurrent clients
   post pre-signed announces of distinct peers; announces/s and the status
   codes seen. The per-source rate limit is lifted for the run (one source).

Prints one JSON object. Usage: python bench/tracker_load.py --prefill 50000 --requests 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import time

import aiohttp

from oasis.core.announce import sign_announce
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.core.tracker import Tracker


def core_cost(n: int, reps: int = 2000) -> float:
    t = Tracker(sample=20, rng=random.Random(1))
    s = "bc.s"
    for i in range(n):
        t.announce(s, f"v{i}", "127.0.0.1", 1 + i % 60000, 0.0, area="FR" if i % 7 else "US")
    t0 = time.perf_counter()
    for i in range(reps):
        t.announce(s, f"v{i % n}", "127.0.0.1", 1, 1.0, area="US")
    return (time.perf_counter() - t0) / reps


def expiry() -> dict:
    t = Tracker()
    for i in range(21_109):
        t.announce(f"s{i % 2000}", f"fake{i}", "127.0.0.1", 1, i / 10_000)
    held = t.entries()
    t.sweep(21_109 / 10_000 + 20 * 60)
    return {"fake_entries": held, "held_after_20_min": t.entries(), "expired": t.counters["expired"]}


def serve(sid_text: str, prefill: int, port_q: mp.Queue) -> None:
    from aiohttp import web

    from oasis.node.http import add_tracker_routes

    async def main() -> None:
        sid = StreamId.parse(sid_text)
        tracker = Tracker(source_rate=1e9, source_burst=1e9)
        now = time.time()
        for i in range(prefill):
            who = Identity.from_private_bytes(random.Random(i).randbytes(32))
            a = sign_announce(who, sid, "127.0.0.1", 1 + i % 60000, int(now * 1000))
            tracker.announce(sid_text, a.peer_id, a.host, a.port, now, record=a)
        app = web.Application()
        add_tracker_routes(app, tracker)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_q.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


async def http_load(port: int, sid: StreamId, requests: int, clients: int) -> dict:
    now_ms = int(time.time() * 1000)
    bodies = [sign_announce(Identity.generate(), sid, "127.0.0.1", 5000 + i % 60000, now_ms).to_json()
              for i in range(requests)]
    statuses: dict[int, int] = {}
    url = f"http://127.0.0.1:{port}/tracker/announce"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as s:
        async def worker(k: int) -> None:
            for b in bodies[k::clients]:
                async with s.post(url, json=b) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        dt = time.perf_counter() - t0
    return {"requests": requests, "clients": clients, "seconds": round(dt, 3),
            "announces_per_s": round(requests / dt, 1), "statuses": statuses}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefill", type=int, default=50_000)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args()
    out: dict = {"machine": {"cpus": os.cpu_count()}}
    out["core_us_per_announce"] = {str(n): round(core_cost(n) * 1e6, 1) for n in (500, 5000, 50_000)}
    out["expiry"] = expiry()
    sid = StreamId(Identity.generate().public, "bench")
    q: mp.Queue = mp.Queue()
    p = mp.Process(target=serve, args=(str(sid), args.prefill, q), daemon=True)
    p.start()
    try:
        port = q.get(timeout=600)
        out["http"] = asyncio.run(http_load(port, sid, args.requests, args.clients))
        out["http"]["prefill"] = args.prefill
    finally:
        p.terminate()
        p.join(10)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
