"""Benchmark: a sybil flood against the tracker, over its real HTTP face (127.0.0.1).

A broadcaster and ``--real`` peers announce (signed), refresh once after
``--establish`` seconds (the tracker's ``establish_after``, shortened here from
10 s to keep the run short), then ``--sybils`` fresh, correctly signed ids are
posted (bench/hostile_swarm.py saw 428 from 5 hostile processes); then
``--draws`` newcomers announce and each 20-peer reply is checked: the share of
the real peers it lists. Run twice: uniform samples (``established_share`` 0,
the rule before) and the current rule (0.5). All traffic comes from 127.0.0.1,
so the per-address id cap (loopback exempt) and the rate limit are not in play
here; tests/core/test_core_tracker.py mounts the cap from internet addresses.

Prints one JSON object. Usage: python bench/tracker_sybils.py --real 8 --sybils 428
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from oasis.core.announce import sign_announce
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.core.tracker import Tracker
from oasis.node.http import add_tracker_routes

IP = "127.0.0.1"


def ident(tag: str) -> Identity:
    return Identity.from_private_bytes(random.Random(tag).randbytes(32))


async def run(share: float, args: argparse.Namespace) -> dict[str, object]:
    tracker = Tracker(sample=20, rng=random.Random(1), established_share=share,
                      establish_after=args.establish, source_rate=1e9, source_burst=1e9)
    app = web.Application()
    add_tracker_routes(app, tracker)
    server = TestServer(app, host=IP)
    await server.start_server()
    bc = ident("bc")
    sid = StreamId(bc.public, "live")
    real = [ident(f"real/{i}") for i in range(args.real)]
    statuses: dict[int, int] = {}

    async def post(s: aiohttp.ClientSession, who: Identity, port: int) -> dict:
        a = sign_announce(who, sid, IP, port, int(time.time() * 1000))
        async with s.post("/tracker/announce", json=a.to_json()) as r:
            statuses[r.status] = statuses.get(r.status, 0) + 1
            return await r.json(content_type=None)

    try:
        async with aiohttp.ClientSession(base_url=f"http://{IP}:{server.port}") as s:
            for _ in range(2):  # announce, then refresh once establish_after later
                t0 = time.monotonic()
                await post(s, bc, 4000)
                for i, r in enumerate(real):
                    await post(s, r, 5000 + i)
                await asyncio.sleep(max(0.0, args.establish + 0.05 - (time.monotonic() - t0)))
            for i in range(args.sybils):
                await post(s, ident(f"sybil/{i}"), 10_000 + i)
            real_ids = {r.peer_id for r in real}
            shares = []
            for d in range(args.draws):
                reply = await post(s, ident(f"new/{d}"), 30_000 + d)
                peers = [p["peer_id"] for p in reply["peers"]]
                shares.append(sum(p in real_ids for p in peers) / len(real_ids))
    finally:
        await server.close()
    return {"established_share": share, "entries": tracker.entries(), "status_codes": statuses,
            "real_peers_listed_mean": round(sum(shares) / len(shares), 3),
            "real_peers_listed_min": round(min(shares), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", type=int, default=8)
    ap.add_argument("--sybils", type=int, default=428)
    ap.add_argument("--draws", type=int, default=50)
    ap.add_argument("--establish", type=float, default=1.0)
    args = ap.parse_args()
    out = {"real": args.real, "sybils": args.sybils, "draws": args.draws, "sample": 20,
           "before": asyncio.run(run(0.0, args)), "after": asyncio.run(run(0.5, args))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
