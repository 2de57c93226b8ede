"""Attack (loopback only): many identities, each on its own link, send the victim validly
sealed direct messages as fast as the per-link DM budget lets through; measures the
victim's API latency meanwhile (the event loop's health) and what it counts.

python bench/atk3_dm_flood.py --victim HOST:PORT:PEER_ID --api URL --token FILE --links 8 --seconds 15
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import urllib.request

from oasis.core import dm
from oasis.core.identity import Identity
from oasis.tools.hostile import dial, hang_up, parse_victim


def get(url: str, token: str) -> float:
    t = time.perf_counter()
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
    return time.perf_counter() - t


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--victim", required=True)
    ap.add_argument("--api", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--links", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rate", type=float, default=40.0, help="per link")
    ap.add_argument("--text", type=int, default=900)
    a = ap.parse_args()
    v = parse_victim(a.victim)
    token = open(a.token).read().strip()
    base = [await asyncio.to_thread(get, f"{a.api}/node", token) for _ in range(10)]
    conns = []
    for _ in range(a.links):
        c = await dial(v, auth=True, identity=Identity.generate())
        if c.authed.is_set():
            conns.append(c)
    sent = 0
    lat: list[float] = []
    stop = time.monotonic() + a.seconds

    async def flood(c) -> None:  # type: ignore[no-untyped-def]
        nonlocal sent
        while time.monotonic() < stop and not c.terminated.is_set():
            for _ in range(int(a.rate / 10) or 1):
                env, _ = dm.seal(c.identity, v.key, "x" * a.text, time.time(), os.urandom)
                c.send_msg(env)
                sent += 1
            await asyncio.sleep(0.1)

    async def probe() -> None:
        while time.monotonic() < stop:
            lat.append(await asyncio.to_thread(get, f"{a.api}/node", token))
            await asyncio.sleep(0.2)

    await asyncio.gather(probe(), *(flood(c) for c in conns))
    closed = sum(1 for c in conns if c.terminated.is_set())
    for c in conns:
        await hang_up(c)
    print(json.dumps({"links": len(conns), "sent": sent, "links_closed": closed,
                      "api_ms_before_p50": round(statistics.median(base) * 1000, 1),
                      "api_ms_p50": round(statistics.median(lat) * 1000, 1),
                      "api_ms_max": round(max(lat) * 1000, 1), "probes": len(lat)}))


if __name__ == "__main__":
    asyncio.run(main())
