"""Process roles: broadcaster, viewer and stand-alone tracker.

Each role builds a :class:`~oasis.node.node.Node`, an aiohttp server with the
faces it needs, and the loops that feed it (media ingest, tracker announces),
then runs until cancelled (SIGINT/SIGTERM), closing everything it opened.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from oasis.core import swarm as sw
from oasis.core.stream import StreamId, sign_chunk
from oasis.core.tracker import Tracker

from . import http, rewards_http
from .keystore import load_or_create
from .node import LiveStream, Node

log = logging.getLogger("oasis.runtime")


@dataclass
class Common:
    data_dir: str
    listen: str = "127.0.0.1:0"  # OFTP (UDP)
    upload_kbps: int = 0
    bitrate_kbps: int = 1500
    chunk_ms: int = 100
    substreams: int = 4
    playout_delay: float = 0.5
    json_out: bool = False
    seed: int | None = None
    rewards: Any = None  #: oasis.node.rewards.RewardsConfig, or None: no proof of relay
    link_delay_ms: float = 0.0  #: emulated one-way delay on all QUIC datagrams sent (testing)
    area: str = ""  #: locality label sent to the tracker (e.g. a country code)


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{what} must be HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def swarm_config(c: Common, *, use_origin: bool = True) -> sw.SwarmConfig:
    return sw.SwarmConfig(chunk_ms=c.chunk_ms, substreams=c.substreams, bitrate_kbps=c.bitrate_kbps,
                          upload_kbps=c.upload_kbps, playout_delay=c.playout_delay,
                          use_origin=use_origin)


async def start_http(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
                           handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, bound


async def announce_loop(node: Node, ls: LiveStream, tracker_url: str, *, broadcaster: bool = False,
                        origin: str | None = None, tickets: str | None = None,
                        local: Tracker | None = None,
                        on_origin: Callable[[str], None] | None = None,
                        on_tickets: Callable[[str], None] | None = None, area: str = "") -> None:
    """Announce to the tracker and dial the peers it names, forever (bounded per round)."""
    interval = 1.0
    while True:
        body = {"stream": ls.text_id, "peer_id": node.peer_id, "host": node.host, "port": node.port,
                "broadcaster": broadcaster, "origin": origin, "tickets": tickets, "area": area}
        peers: list[dict[str, Any]] = []
        try:
            if local is not None:
                found = local.announce(ls.text_id, node.peer_id, node.host, node.port, time.time(),
                                       is_broadcaster=broadcaster, origin=origin, tickets=tickets,
                                       area=area)
                peers = [{"peer_id": p.peer_id, "host": p.host, "port": p.port} for p in found]
                interval = http.ANNOUNCE_INTERVAL
            else:
                async with node.http.post(f"{tracker_url.rstrip('/')}/announce", json=body,
                                          timeout=aiohttp.ClientTimeout(total=5)) as r:
                    r.raise_for_status()
                    reply = await r.json()
                peers = reply.get("peers", [])[:50]
                if reply.get("origin") and on_origin is not None:
                    on_origin(str(reply["origin"]))
                if reply.get("tickets") and on_tickets is not None:
                    on_tickets(str(reply["tickets"]))
                interval = float(reply.get("interval", http.ANNOUNCE_INTERVAL))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("tracker %s unreachable: %s", tracker_url, exc)
            interval = 2.0
        need = node.target_neighbours - node.neighbour_count()
        if need > 0 and peers:
            random.shuffle(peers)
            dials = [node.connect(p["peer_id"], p["host"], int(p["port"])) for p in peers[: need + 2]]
            await asyncio.gather(*dials, return_exceptions=True)
        # Announce again sooner while we still lack neighbours.
        wait = interval if node.neighbour_count() >= node.target_neighbours else min(interval, 1.0)
        await asyncio.sleep(wait)


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run_until_stopped(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


async def broadcast(c: Common, *, source: str, name: str, http_listen: str,
                    tracker_url: str | None, cdn_url: str | None) -> None:
    from oasis.media.chunker import TsChunker
    from oasis.media.ingest import open_source

    ident = load_or_create(c.data_dir)
    host, port = parse_hostport(c.listen, "--listen")
    node = Node(ident, swarm_config(c), host=host, port=port, max_neighbours=24,
                rng=random.Random(c.seed), link_delay=c.link_delay_ms / 1000)
    await node.start()
    sid = StreamId(ident.public, name)
    ls = node.add_stream(sid, is_source=True)
    hhost, hport = parse_hostport(http_listen, "--http")
    app = web.Application(client_max_size=64 * 1024)
    tracker = Tracker() if tracker_url is None else None
    http.add_origin_routes(app, node)
    http.add_gateway_routes(app, node)
    if tracker is not None:
        http.add_tracker_routes(app, tracker)
    if c.rewards is not None:
        from .rewards import Rewards
        node.rewards = Rewards(c.rewards, ident, stream_text_id=str(sid))
        await node.rewards.start_broadcaster(c.bitrate_kbps)
        rewards_http.add_rewards_routes(app, node, broadcaster=True)
    runner, hport = await start_http(app, hhost, hport)
    base = f"http://{hhost}:{hport}"
    origin = f"{base}/origin"
    tickets = f"{base}/tickets" if c.rewards is not None else None
    tracker_url = tracker_url or f"{base}/tracker"
    emit({"stream_id": str(sid), "tracker": tracker_url, "origin": cdn_url or origin,
          "oftp": f"{node.host}:{node.port}", "peer_id": node.peer_id, "http": base,
          "tickets": tickets})

    async def ingest() -> None:
        chunker = TsChunker(chunk_ms=c.chunk_ms)
        seq = 0
        stream: AsyncIterator[bytes] = open_source(source, c.bitrate_kbps)
        async for data in stream:
            now = time.time()
            for mc in chunker.feed(data, now):
                chunk = sign_chunk(ident, sid, seq, int(mc.complete_at * 1e6), mc.keyframe, mc.payload)
                ls.produced[seq] = mc.complete_at
                if len(ls.produced) > 100_000:
                    ls.produced.pop(next(iter(ls.produced)))
                ls.swarm.publish(chunk, now)
                ls.pump()
                seq += 1

    async def main(stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(ingest()),
                 asyncio.create_task(announce_loop(node, ls, tracker_url, broadcaster=True,
                                                   origin=cdn_url or origin, tickets=tickets,
                                                   local=tracker, area=c.area))]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for t in [*tasks, stopper]:
            t.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        for t in done:
            if t is not stopper and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    try:
        await run_until_stopped(main)
    finally:
        await node.close()
        await runner.cleanup()
        if node.rewards is not None:
            node.rewards.close()


async def watch(c: Common, *, stream_id: str, tracker_url: str, gateway: str,
                cdn_url: str | None) -> None:
    sid = StreamId.parse(stream_id)
    ident = load_or_create(c.data_dir)
    host, port = parse_hostport(c.listen, "--listen")
    node = Node(ident, swarm_config(c), host=host, port=port, rng=random.Random(c.seed),
                link_delay=c.link_delay_ms / 1000)
    await node.start()
    ghost, gport = parse_hostport(gateway, "--gateway")
    app = web.Application(client_max_size=64 * 1024)
    http.add_gateway_routes(app, node)
    rewards_ready: asyncio.Task[None] | None = None
    if c.rewards is not None:
        # Open wallet and chain first (slow: imports the EVM stack), then join.
        from .rewards import Rewards
        node.rewards = Rewards(c.rewards, ident, stream_text_id=str(sid))
        await node.rewards.open()
        rewards_http.add_rewards_routes(app, node, broadcaster=False)
    ls = node.add_stream(sid, is_source=False, origin_url=cdn_url)
    runner, gport = await start_http(app, ghost, gport)
    emit({"peer_id": node.peer_id, "gateway": f"http://{ghost}:{gport}",
          "player_url": f"http://{ghost}:{gport}/live/{ls.text_id}.ts", "oftp": f"{node.host}:{node.port}"})

    def set_origin(url: str) -> None:
        if ls.origin_url is None:
            ls.origin_url = url

    async def join_rewards(url: str) -> None:
        r = node.rewards
        await r.start_viewer(node.http, url)
        await r.loop(node.send_to)

    def set_tickets(url: str) -> None:
        nonlocal rewards_ready
        if node.rewards is not None and rewards_ready is None:
            rewards_ready = asyncio.create_task(join_rewards(url))

    async def main(stop: asyncio.Event) -> None:
        task = asyncio.create_task(announce_loop(node, ls, tracker_url, on_origin=set_origin,
                                                 on_tickets=set_tickets, area=c.area))
        await stop.wait()
        task.cancel()
        tasks = [task] + ([rewards_ready] if rewards_ready is not None else [])
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for res in results:
            if isinstance(res, Exception) and not isinstance(res, asyncio.CancelledError):
                log.warning("stopped with: %r", res)
        try:
            async with node.http.post(f"{tracker_url.rstrip('/')}/announce", json={
                    "stream": ls.text_id, "peer_id": node.peer_id, "host": node.host,
                    "port": node.port, "leaving": True}, timeout=aiohttp.ClientTimeout(total=1)):
                pass
        except (aiohttp.ClientError, TimeoutError):
            pass

    try:
        await run_until_stopped(main)
    finally:
        await node.close()
        await runner.cleanup()
        if node.rewards is not None:
            node.rewards.close()


async def tracker_only(listen: str) -> None:
    host, port = parse_hostport(listen, "--listen")
    app = web.Application(client_max_size=64 * 1024)
    http.add_tracker_routes(app, Tracker())
    runner, port = await start_http(app, host, port)
    emit({"tracker": f"http://{host}:{port}/tracker"})

    async def main(stop: asyncio.Event) -> None:
        await stop.wait()

    try:
        await run_until_stopped(main)
    finally:
        await runner.cleanup()


def default_data_dir(role: str) -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "oasis" / role)
