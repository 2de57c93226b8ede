"""The tracker's HTTP face: announces with an area, and bad input refused."""

from __future__ import annotations

import random

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from oasis.core.identity import Identity
from oasis.core.tracker import Tracker
from oasis.node.http import add_tracker_routes


def _ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [Identity.from_private_bytes(rng.randbytes(32)).peer_id for _ in range(n)]


async def test_announce_with_area_prefers_the_same_area_and_rejects_bad_ones() -> None:
    tracker = Tracker(sample=10, locality=0.5, rng=random.Random(1))
    app = web.Application()
    add_tracker_routes(app, tracker)
    bc, *peers = _ids(41, 2)
    stream = f"{bc}.live"
    async with TestClient(TestServer(app)) as client:
        async def announce(pid: str, area: object = None, port: int = 4433) -> web.Response:
            body = {"stream": stream, "peer_id": pid, "host": "127.0.0.1", "port": port,
                    "broadcaster": pid == bc}
            if area is not None:
                body["area"] = area
            return await client.post("/tracker/announce", json=body)

        assert (await announce(bc)).status == 200
        for i, pid in enumerate(peers[:-1]):
            r = await announce(pid, "FR" if i % 8 == 0 else "US", 5000 + i)
            assert r.status == 200
        area_of = {pid: ("FR" if i % 8 == 0 else "US") for i, pid in enumerate(peers[:-1])}
        r = await announce(peers[-1], "FR")
        got = [p["peer_id"] for p in (await r.json())["peers"]]
        assert got[0] == bc and len(got) == 10
        assert sum(area_of.get(p) == "FR" for p in got) >= 4  # 5 FR peers exist; half of 9 asked
        for bad in (123, "x" * 33, ["FR"]):
            r = await announce(peers[-1], bad)
            assert r.status == 400 and "area" in await r.text()
