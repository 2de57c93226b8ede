"""A hostile tracker names one host under many keys (issue 8, h-atk7): a real viewer Node and
the real announce loop against a tracker of the attacker's that answers every announce with
fresh, validly signed records of throw-away keys at UDP sinks on one address of this machine
(not an Oasis node: nothing answers). The viewer dialled 14 of them at once, over and over
(``bench/atk7_tracker_dials.py``: x14 the answers' bytes at 4 records an answer); now at most
``max_dials_per_ip`` are under way to that host at a time."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from aiohttp import web
from procs import until
from test_node_http_faces import _outward_ipv4

from oasis.core import swarm as sw
from oasis.core.announce import sign_announce
from oasis.core.dialplan import ip_key
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node import runtime
from oasis.node.node import Node
from oasis.node.runtime import start_http


async def test_a_trackers_records_at_one_host_are_dialled_two_at_a_time() -> None:
    host = _outward_ipv4()
    if host is None or ip_key(host) is None:
        pytest.skip("no non-loopback address on this machine to stand for the victim's host")
    sinks = []
    for _ in range(8):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        sinks.append(s)
    ports = [s.getsockname()[1] for s in sinks]
    sid = StreamId(Identity.generate().public, "live")
    answers = 0

    async def announce(request: web.Request) -> web.Response:
        nonlocal answers
        await request.read()
        answers += 1
        now_ms = int(time.time() * 1000)
        peers = [sign_announce(Identity.generate(), sid, host, p, now_ms).record() for p in ports]
        return web.Response(body=json.dumps({"peers": peers, "interval": 1.0}).encode(),
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/tracker/announce", announce)
    runner, tport = await start_http(app, "127.0.0.1", 0)
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    task = None
    try:
        ls = node.add_stream(sid, is_source=False)
        task = asyncio.create_task(runtime.announce_loop(node, ls, f"http://127.0.0.1:{tport}/tracker"))
        most = 0

        def three_answers() -> bool:
            nonlocal most
            most = max(most, sum(1 for h, _ in node.policy.dials.dial_addr.values() if h == host))
            return answers >= 3

        await until(three_answers, 30, what="three tracker answers")
        c = node.policy.counters
        assert c.candidates_offered >= 16  # the records were taken: fresh and validly signed
        assert 1 <= most <= node.policy.config.max_dials_per_ip
        assert c.dial_attempts <= 2 * node.policy.config.max_dials_per_ip
        assert c.dials_held_per_ip > 0
    finally:
        if task is not None:
            task.cancel()
        await node.close()
        await runner.cleanup()
        for s in sinks:
            s.close()
