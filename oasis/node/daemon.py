"""``oasis node``: a node with no stream of its own, driven by local programs through its API.

It runs what a broadcaster runs minus the media -- the OFTP endpoint, an HTTP server with
the origin, gateway and (unless ``--tracker``) an embedded tracker -- plus the local API
(:mod:`oasis.node.api`), through which programs publish and watch streams
(:class:`~oasis.node.streaming.Streaming`), chat, share files and read the event feed.
:func:`serve_api` is also how ``oasis broadcast`` and ``oasis watch`` add the API.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from aiohttp import web

from oasis.core import peer as pp
from oasis.core.descriptor import Descriptor
from oasis.core.tracker import Tracker
from oasis.datafiles import hold_data_dir

from . import http
from . import runtime as rt
from .api import Api, remove_info, start_api
from .keystore import load_or_create
from .messaging import read_prekeys
from .node import Node
from .streaming import Streaming

OFF = ("off", "none", "")


@dataclass
class ApiServer:
    runner: web.AppRunner
    api: Api
    streaming: Streaming
    data_dir: str

    @property
    def url(self) -> str:
        return self.api.url

    async def close(self) -> None:
        remove_info(self.data_dir)
        await self.streaming.close()
        await self.runner.cleanup()


async def serve_api(c: rt.Common, node: Node, *, base: str | None, gateway: str | None = None,
                    tracker: Tracker | None = None, tracker_url: str | None = None,
                    descriptors: dict[str, Descriptor] | None = None,
                    links: dict[str, str] | None = None) -> ApiServer | None:
    """Start the local API of ``node`` on ``c.api_listen`` (None if it is ``off``)."""
    if c.api_listen is None or c.api_listen.lower() in OFF:
        return None
    streaming = Streaming(node, c, base=base, gateway=gateway, tracker=tracker, tracker_url=tracker_url,
                          descriptors=descriptors)
    streaming.links.update(links or {})
    runner, api = await start_api(node, c.data_dir, c.api_listen, streaming=streaming,
                                  http_base=gateway or base)
    return ApiServer(runner, api, streaming, c.data_dir)


async def run_node(c: rt.Common, *, http_listen: str, tracker_url: str | None) -> None:
    hold_data_dir(c.data_dir, "node")
    rt.stop_event()  # a stop signal from here on is a clean stop
    ident = load_or_create(c.data_dir)
    prekeys = read_prekeys(c.data_dir, ident)
    host, port = rt.parse_hostport(c.listen, "--listen")
    hhost, hport = rt.parse_hostport(http_listen, "--http")  # (before the node: nothing to close)
    node = Node(ident, rt.swarm_config(c), host=host, port=port,
                max_neighbours=2 * pp.PolicyConfig.max_neighbours,
                rng=random.Random(c.seed), link_delay=c.link_delay_ms / 1000, quic=c.quic)
    node.messaging.keep_prekeys(*prekeys)  # DMs held for us open after a restart
    await rt._start_or_close(node)
    app = web.Application(client_max_size=64 * 1024)
    tracker = Tracker() if tracker_url is None else None
    descriptors: dict[str, Descriptor] = {}
    http.add_origin_routes(app, node, descriptors)
    http.add_gateway_routes(app, node, tracker=tracker)
    if tracker is not None:
        http.add_tracker_routes(app, tracker, own=http.own_streams(node))
    http.set_public_views(app, c.public_metrics)
    from .files_http import attach_files
    files = attach_files(node, app, c.data_dir)  # node.files: short videos (docs/oftp.md §18)
    try:
        runner, hport = await rt.start_http(app, hhost, hport)
    except BaseException:  # a taken --http: nothing left open behind the error
        await node.close()
        raise
    base = f"http://{rt.url_host(hhost)}:{hport}"
    files.gateway_url = base
    server: ApiServer | None = None
    try:
        server = await serve_api(c, node, base=base, tracker=tracker,
                                 tracker_url=tracker_url or f"{base}/tracker", descriptors=descriptors)
        rt.emit({"peer_id": node.peer_id, "oftp": f"{rt.url_host(node.host)}:{node.port}", "http": base,
                 "tracker": tracker_url or f"{base}/tracker",
                 "api": server.url if server is not None else None, "data_dir": c.data_dir})

        async def main(stop: asyncio.Event) -> None:
            await stop.wait()

        await rt.run_until_stopped(main)
    finally:
        if server is not None:
            await server.close()
        await node.close()
        await runner.cleanup()
