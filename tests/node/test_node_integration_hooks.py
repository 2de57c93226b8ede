"""Integration of the node's parts under attack (real nodes, real QUIC, real aiohttp on 127.0.0.1).

* A hostile tracker answers announces with nesting bombs (with the recursion limit py_ecc
  sets, ``json.loads`` of one segfaults CPython), non-objects, wrong types, oversized and
  truncated bodies, bad UTF-8 and HTTP errors: the announce loop keeps running, counts each
  (``tracker_errors``), retries on the policy's cadence, and links to the honest peer the
  tracker finally names.
* A peer sends ERROR with an unknown code: the link's counters reach ``Node.counters``
  (``link_*``) and ``/metrics``, and stay there after the link closed, counted once.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from procs import until

from oasis.core import peer as pp
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.announce import sign_announce
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.core.tracker import Tracker
from oasis.node import http as nh
from oasis.node.http import prometheus
from oasis.node.metrics import discovery_counters
from oasis.node.node import Node
from oasis.node.runtime import announce_loop

#: (HTTP status, body) a hostile tracker answers, in order; each must count as a tracker error
HOSTILE = [
    (200, b"[" * 70_000),  # segfaults json.loads at a recursion limit of 100,000
    (200, b'{"peers": ' + b"[" * 70_000),
    (200, b"{" * 50_000),
    (200, b"[]"),  # not an object
    (200, b'"peers"'),
    (200, b"null"),
    (200, b'{"peers": {}}'),  # wrong types
    (200, b'{"peers": "x"}'),
    (200, b'{"interval": "soon"}'),
    (200, b'{"peers": [], "interval": true}'),
    (200, b" " * 300_000 + b"{}"),  # over the reply cap
    (200, b'{"peers": ['),  # truncated
    (200, b'\xff\xfe{"peers": []}'),  # not UTF-8
    (500, b"oops"),
]


async def test_announce_loop_survives_a_hostile_tracker_and_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    bc = Identity.generate()
    sid = StreamId(bc.public, "live")
    honest = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await honest.start()
    # Fast cadence so the test does not wait on the default 2 s retry.
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1",
                policy=pp.PolicyConfig(retry_interval=0.05, fast_interval=0.05))
    await node.start()
    ls = node.add_stream(sid, is_source=False, origin_url="http://127.0.0.1:1/origin")
    served = 0
    hostile_done = asyncio.Event()

    async def announce(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        if served <= len(HOSTILE):
            status, body = HOSTILE[served - 1]
            return web.Response(status=status, body=body, content_type="application/json")
        hostile_done.set()
        rec = sign_announce(honest.identity, sid, "127.0.0.1", honest.port, int(time.time() * 1000))
        # Junk records beside the honest one: left out and counted, not a tracker error.
        return web.json_response({"peers": ["junk", {"port": 1e300}, None, rec.record()],
                                  "descriptor": {"x": [1]}, "interval": 0})

    app = web.Application()
    app.router.add_post("/tracker/announce", announce)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # what importing py_ecc does to a node with --rewards
    task = asyncio.create_task(announce_loop(node, ls, f"http://127.0.0.1:{server.port}/tracker",
                                             on_descriptor=lambda d: None))
    try:
        await asyncio.wait_for(hostile_done.wait(), 60)
        counters = discovery_counters(node)
        assert counters["tracker_errors"] == len(HOSTILE)
        assert node.counters["announce_failures"] == len(HOSTILE)
        assert not task.done()  # the loop lives on
        await until(lambda: honest.identity.public in node.links_by_peer, 20)
        await until(lambda: counters["tracker_records_refused"] >= 3
                    and counters["descriptors_refused"] >= 1, 10)
        assert counters["tracker_errors"] == len(HOSTILE)  # honest replies are not errors
        assert not task.done()
        # said once, and once that it answers again: not a warning per failed try
        said = [r.getMessage() for r in caplog.records if r.name == "oasis.runtime"]
        failing = [m for m in said if m.startswith("tracker http") and "answers again" not in m
                   and "bad descriptor" not in m]
        assert len(failing) == 1, said
        assert sum(f"answers again (after {len(HOSTILE)} failed tries)" in m for m in said) == 1, said
    finally:
        sys.setrecursionlimit(old_limit)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await node.close()
        await honest.close()
        await server.close()


async def test_link_counters_reach_node_counters_and_metrics_once() -> None:
    a = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    b = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await a.start()
    await b.start()
    try:
        assert await a.connect(b.peer_id, b.host, b.port)
        link = a.links_by_peer[b.identity.public]
        for _ in range(3):
            link.send(wire.Error(code=60_000, reason="\x1b[31mnot a code"))
        await until(lambda: b.counters["link_unknown_codes_received"] >= 3, 10)
        assert b.counters["link_errors_received"] >= 3
        assert b.counters["link_chunk_bytes_buffered"] == 0
        text = prometheus(b)
        assert 'oasis_node_events_total{event="link_unknown_codes_received"} 3.0' in text
        assert "oasis_endpoint_events_total{" in text  # the transport's Endpoint.counters
        # and its UDP socket's: b has read what a sent, in wake-ups with data (batches)
        udp = dict(re.findall(r'^oasis_udp_socket_events_total\{event="(\w+)"\} (\S+)$', text, re.M))
        assert float(udp["datagrams_in"]) >= float(udp["batches"]) > 0, udp
        # The link closes (a leaves): its counts stay, and are not counted twice while the
        # closed link winds down in the endpoint.
        blink = b.links_by_peer[a.identity.public]
        await a.close()
        await until(lambda: blink.session.closed, 10)
        assert b.counters["link_unknown_codes_received"] == 3
        await until(lambda: blink not in b.endpoint.links, 30)
        assert b.counters["link_unknown_codes_received"] == 3
        assert b.counters["link_violations"] == 3
    finally:
        await a.close()
        await b.close()


async def test_a_body_sent_in_several_segments_is_read_whole() -> None:
    """``read(n)`` returns what has arrived: a signed announce sent in two TCP segments was
    decoded from its first half (400 bad JSON). Now the body is read to its end (or the cap)."""
    tracker = Tracker()
    app = web.Application()
    nh.add_tracker_routes(app, tracker)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    ident = Identity.generate()
    sid = StreamId(ident.public, "live")
    body = msgspec.json.encode(sign_announce(ident, sid, "127.0.0.1", 4000, int(time.time() * 1000)).to_json())

    async def two_parts():
        yield body[: len(body) // 2]
        await asyncio.sleep(0.1)  # the shape of the input (a gap between segments), not a wait
        yield body[len(body) // 2:]

    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{server.port}/tracker/announce", data=two_parts(),
                              headers={"Content-Type": "application/json"}) as r:
                assert r.status == 200, await r.text()
                assert "peers" in await r.json()
        assert tracker.counters["announces"] == 1 and tracker.counters["bad_requests"] == 0
    finally:
        await server.close()

