"""A fallback fetch that misses its chunk's deadline keeps its connection.

The swarm is told at the deadline that the fetch failed, but the request is left to finish
(``ORIGIN_LATE_GRACE``), so its keep-alive connection goes back to the pool. Cut off, the
connection was closed and the next fetch paid a TCP handshake first, which from a CDN edge a
round trip or two away timed it out too: fetches failed one after the other. A real Node's
fetch path against an aiohttp origin on loopback that answers each chunk late.

The origin answers a second late, and the grace (or ``origin_adapt``'s overtime) is set to
3 s here, so that a loaded machine's stall of a few hundred ms can neither make the
failure look late nor cut the late answer off (with 0.25 s and the defaults, a 0.45 s stall
under the suite failed the first test once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from procs import until

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.node import node as node_mod
from oasis.node.http import node_stats
from oasis.node.node import Node

SLOW = 1.0  #: s the origin takes to answer a chunk (longer than the fetches' budget)
LONG = 3.0  #: the grace and the overtime in these tests (s): well past SLOW


async def _slow_origin(sid: StreamId, bid: Identity) -> tuple[web.AppRunner, int, list[Any]]:
    peers: list[Any] = []  #: the client's (address, port) of each request: its connection

    async def chunk(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        seq = int(request.match_info["seq"])
        await asyncio.sleep(SLOW)  # the late answer under test, not a synchronisation
        return web.Response(body=wire.encode(sign_chunk(bid, sid, seq, int(time.time() * 1e6), True,
                                                        b"G" * 1000)))

    app = web.Application()
    app.router.add_get(f"/origin/{sid}/{{seq}}.chunk", chunk)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1], peers  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def _viewer_of_slow_origin(adapt: bool = False) -> AsyncIterator[tuple[Any, list[Any]]]:
    """A real Node's stream (no origin start of its own) whose origin is :func:`_slow_origin`:
    the stream and the list of connections the origin saw. ``adapt``: ``origin_adapt`` (on by
    default; off, a fetch's budget ends at its chunk's deadline, the case under test here)."""
    bid = Identity.generate()
    sid = StreamId(bid.public, "live")
    runner, port, peers = await _slow_origin(sid, bid)
    config = sw.SwarmConfig(origin_start_after=1000.0, origin_adapt=adapt)
    node = Node(Identity.generate(), config, target_neighbours=0)
    await node.start()
    try:
        yield node.add_stream(sid, is_source=False, origin_url=f"http://127.0.0.1:{port}/origin"), peers
    finally:
        await node.close()
        await runner.cleanup()


async def test_a_late_fallback_fetch_is_failed_in_time_and_its_connection_kept(monkeypatch: Any) -> None:
    monkeypatch.setattr(node_mod, "ORIGIN_LATE_GRACE", LONG)
    async with _viewer_of_slow_origin() as (ls, peers):
        for k in range(1, 4):
            t0 = time.monotonic()
            await ls._fetch_origin(100 + k, ls.now() + 0.1)  # 0.1 s to go: the answer takes SLOW
            assert time.monotonic() - t0 < SLOW  # the swarm heard of the failure at the deadline
            assert ls.origin_failures == k
            await until(lambda k=k: ls.origin_late == k, 5, what=f"late fetch {k} finished")
        assert len(peers) == 3
        assert len(set(peers)) == 1, peers  # one connection for all three
        assert ls.node.counters["http_connects"] == 1  # (as the node counts them)


async def test_late_fetches_left_to_finish_are_bounded(monkeypatch: Any) -> None:
    """At most ``MAX_LATE_FETCHES`` late fetches run on per stream; beyond, one is cut off at
    its deadline as before (an origin that never answers holds no more sockets than that)."""
    monkeypatch.setattr(node_mod, "MAX_LATE_FETCHES", 2)
    monkeypatch.setattr(node_mod, "ORIGIN_LATE_GRACE", LONG)
    async with _viewer_of_slow_origin() as (ls, _peers):
        await asyncio.gather(*(ls._fetch_origin(200 + k, ls.now() + 0.05) for k in range(4)))
        assert ls.origin_failures == 4 and len(ls._late) == 2
        await until(lambda: ls.origin_late == 2 and not ls._late, 5, what="the two kept fetches finished")


async def test_with_origin_adapt_a_late_answer_is_taken_within_the_overtime(monkeypatch: Any) -> None:
    """``origin_adapt`` (the default): a fetch may run ``ORIGIN_OVERTIME`` past its deadline, so
    the slow origin's answer is taken and timed (a sample of the fetch time), not failed."""
    assert sw.SwarmConfig().origin_adapt
    monkeypatch.setattr(sw, "ORIGIN_OVERTIME", LONG)  # (the node reads it at each fetch)
    async with _viewer_of_slow_origin(adapt=True) as (ls, peers):
        t0 = time.monotonic()
        await ls._fetch_origin(300, ls.now() + 0.1)  # 0.1 s to go: the answer takes SLOW
        assert SLOW <= time.monotonic() - t0 < 0.1 + LONG
        assert ls.origin_failures == 0 and ls.origin_late == 0 and len(peers) == 1
        assert ls.swarm.log.get(300) is not None  # the chunk reached the swarm
        # /stats says how long it took, and that it brought its chunk after the deadline
        st = node_stats(ls.node)["streams"][0]
        assert st["origin_fetch_ms"]["n"] == st["origin_fetch_late_ms"]["n"] == 1
        assert SLOW * 1000 <= st["origin_fetch_late_ms"]["p50"] < (0.1 + LONG) * 1000
