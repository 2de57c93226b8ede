"""Run inside a network namespace (``tests/node/test_node_ipv6_prefix.py`` builds it):
one attacker with many addresses in one IPv6 /64 against the per-source caps of a real
HTTP face and a real OFTP endpoint. Prints one JSON object of what it saw; the test judges.

The namespace's ``lo`` holds ``PREFIX::1/64`` (the victim), ``PREFIX::10`` ..
``PREFIX::2d`` (the attacker's 30 addresses, one /64) and ``OTHER::1/64`` (someone else).
An IPv6 subscriber is given a whole /64, so a per-address cap that counts exact addresses
gives it 2^64 shares (found 2026-12-06).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from aiohttp import web  # noqa: E402
from procs import until  # noqa: E402

from oasis.core import swarm as sw  # noqa: E402
from oasis.core.identity import Identity  # noqa: E402
from oasis.core.tracker import Tracker  # noqa: E402
from oasis.node import http, runtime  # noqa: E402
from oasis.node.node import Node  # noqa: E402

PREFIX, OTHER = "fd00:5eed::", "fd00:beef::"
VICTIM = PREFIX + "1"
ATTACKERS = [f"{PREFIX}{i:x}" for i in range(0x10, 0x10 + 30)]
DEADLINE = 20.0  # s for each wait: a loaded 2-core machine


async def reached(pred: Any) -> bool:
    """``pred`` became true within DEADLINE (the suite's ``procs.until``, as a verdict: the
    test judges what this probe saw)."""
    try:
        await until(pred, DEADLINE)
    except TimeoutError:
        return bool(pred())
    return True


async def http_face() -> dict[str, Any]:
    app = web.Application()
    http.add_tracker_routes(app, Tracker())
    runner, port = await runtime.start_http(app, VICTIM, 0)
    counters: dict[str, int] = app[http.HTTP_COUNTERS]
    loop = asyncio.get_running_loop()
    socks: list[socket.socket] = []
    n = http.MAX_CONNECTIONS_PER_IP + 44
    try:
        for i in range(n):
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind((ATTACKERS[i % len(ATTACKERS)], 0))
            socks.append(s)
            await loop.sock_connect(s, (VICTIM, port))
        await reached(lambda: counters.get("http_connections_refused", 0) >= n - http.MAX_CONNECTIONS_PER_IP)
        refused = counters.get("http_connections_refused", 0)
        # someone in another /64 still gets an answer
        r, w = await asyncio.wait_for(asyncio.open_connection(VICTIM, port, local_addr=(OTHER + "1", 0)), DEADLINE)
        w.write(f"GET /tracker/streams HTTP/1.1\r\nHost: [{VICTIM}]:{port}\r\nConnection: close\r\n\r\n".encode())
        status = (await asyncio.wait_for(r.readline(), DEADLINE)).decode().strip()
        w.close()
        return {"connections": n, "refused": refused, "per_ip": http.MAX_CONNECTIONS_PER_IP,
                "other_status": status,
                "refused_after_other": counters.get("http_connections_refused", 0)}
    finally:
        for s in socks:
            s.close()
        await runner.cleanup()


async def oftp_endpoint() -> dict[str, Any]:
    from test_node_hostile_transport import RawClient  # a real aioquic client, silent after QUIC

    b = Node(Identity.generate(), sw.SwarmConfig(), host=VICTIM)
    await b.start()
    a = Node(Identity.generate(), sw.SwarmConfig(), host=OTHER + "1")
    await a.start()
    ep = b.endpoint
    clients: list[RawClient] = []
    most = 0
    try:
        for i in range(100):
            c = RawClient(Identity.generate())
            # (aioquic's client takes datagrams only from its peer's address as the socket
            # gives it: for IPv6 the 4-tuple)
            await c.open(ATTACKERS[i % len(ATTACKERS)], (*ep.address, 0, 0))
            clients.append(c)
            most = max(most, len(ep.halfopen))
        def settled() -> bool:
            nonlocal most
            most = max(most, len(ep.halfopen))  # sampled as the handshakes go
            return (ep.counters["halfopen_refused"] >= 1
                    and sum(c.handshake_at is not None for c in clients) >= ep.halfopen.per_ip)
        done = await reached(settled)
        linked = await a.connect(b.peer_id, *ep.address, timeout=DEADLINE)
        joined = await reached(lambda: a.identity.public in b.links_by_peer)
        return {"per_ip": ep.halfopen.per_ip, "cap": ep.halfopen.cap, "most_halfopen": most,
                "halfopen_refused": ep.counters["halfopen_refused"], "waited": done,
                "other_linked": bool(linked) and joined}
    finally:
        for c in clients:
            c.stop()
        await a.close()
        await b.close()


async def main() -> None:
    out = {"http": await http_face(), "oftp": await oftp_endpoint()}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
