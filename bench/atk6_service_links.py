"""Attack: fill a node's inbound room with DHT service links (docs/oftp.md §17.8, §2.2).

A link that carries DHT messages only is a *service link*: no neighbour slot, closed after
15 s without a DHT message. Past ``max_neighbours`` 8 more inbound links are admitted for
the DHT only; a node holds at most ``max_neighbours + 8`` inbound links in all, "service
links among the links counted there, while a newcomer's JOIN still finds a neighbour slot
as long as fewer than max_neighbours neighbours are held". Does it? ``--links`` service
links from a stranger (``oasis.tools.hostile``'s client), each sending a DHT_PING every
``--ping`` seconds (under the 15 s), then honest viewers dial the victim and JOIN.

On loopback the per-address cap (a quarter of the slots) does not apply (the operator's own
machine); an attacker elsewhere needs ``links / 6`` addresses (IPv4) or /64s (IPv6).

PYTHONPATH=. python bench/atk6_service_links.py [--links 40] [--honest 4] [--hold 20]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node
from oasis.tools.hostile import Victim, dial, hang_up


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--links", type=int, default=40)
    ap.add_argument("--honest", type=int, default=4)
    ap.add_argument("--ping", type=float, default=10.0)
    ap.add_argument("--hold", type=float, default=20.0, help="seconds the links are held before the honest dials")
    ap.add_argument("--victim", choices=("broadcaster", "viewer"), default="viewer")
    a = ap.parse_args()
    src = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    await src.start()
    sid = StreamId(src.identity.public, "live")
    src.add_stream(sid, is_source=True)
    extra: list[Node] = []
    if a.victim == "viewer":  # a viewer of src (max_neighbours 24), the honest newcomers dial it
        b = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
        await b.start()
        b.add_stream(sid, is_source=False)
        assert await b.connect(src.peer_id, src.host, src.port)
        extra.append(b)
    else:
        b = src
    victim = Victim("127.0.0.1", b.port, b.identity.public)
    conns: list[Any] = []
    stop = asyncio.Event()

    async def keep(c: Any) -> None:
        while not stop.is_set() and not c.terminated.is_set():
            c.send_msg(wire.DhtPing(qid=random.getrandbits(32)))
            try:
                await asyncio.wait_for(stop.wait(), a.ping)
            except TimeoutError:
                pass
    keepers = []
    refused: dict[str, int] = {}
    for _ in range(a.links):
        c = await dial(victim, auth=True)
        if c.authed.is_set() and not c.terminated.is_set():
            conns.append(c)
            keepers.append(asyncio.ensure_future(keep(c)))
        else:
            k = f"{c.close_code}:{c.close_reason[:30]}"
            refused[k] = refused.get(k, 0) + 1
    await asyncio.sleep(a.hold)
    alive = sum(1 for c in conns if not c.terminated.is_set())
    honest: list[Node] = []
    results = []
    for _ in range(a.honest):
        v = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
        await v.start()
        v.add_stream(sid, is_source=False)
        honest.append(v)
        ok = await v.connect(b.peer_id, b.host, b.port)
        t = time.monotonic() + 5
        while time.monotonic() < t and sid.key not in b.joined.get(v.identity.public, set()):
            await asyncio.sleep(0.05)
        results.append({"connected": bool(ok), "joined": sid.key in b.joined.get(v.identity.public, set())})
    out = {"links": a.links, "victim": a.victim, "attacker_dials_refused": refused,
           "service_links_alive_at_honest_dials": alive, "honest": results,
           "b_policy": {k: v for k, v in vars(b.policy.counters).items() if isinstance(v, int) and v}
           if hasattr(b.policy.counters, "__dict__") else str(b.policy.counters)}
    stop.set()
    for k in keepers:
        await k
    for c in conns:
        await hang_up(c)
    for v in honest + extra:
        await v.close()
    await src.close()
    out["loadavg"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(out, sort_keys=True, default=str))


if __name__ == "__main__":
    asyncio.run(main())
