"""HTTP face of proof of relay: ``POST /tickets`` (broadcaster), ``POST /rewards/settle``,
``GET /rewards``. Kept apart from :mod:`oasis.node.http` so the ledger's routes have one owner."""

from __future__ import annotations

import json

from aiohttp import web

from .http import MAX_ANNOUNCE_BODY
from .node import Node


def add_rewards_routes(app: web.Application, node: Node, *, broadcaster: bool) -> None:
    """``POST /tickets`` (broadcaster) and ``POST /rewards/settle``; ``GET /rewards``."""
    rewards = node.rewards

    async def tickets(request: web.Request) -> web.Response:
        raw = await request.content.read(MAX_ANNOUNCE_BODY + 1)
        try:
            body = json.loads(raw)
            reply = await rewards.run(rewards.issue_ticket, str(body["binding"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise web.HTTPBadRequest(text=f"bad ticket request: {exc}\n") from None
        return web.json_response(reply)

    async def settle(request: web.Request) -> web.Response:
        await rewards.settle(include_current=True)
        return web.json_response(await rewards.report())

    async def report(request: web.Request) -> web.Response:
        return web.json_response(await rewards.report())

    if broadcaster:
        app.router.add_post("/tickets", tickets)
    app.router.add_post("/rewards/settle", settle)
    app.router.add_get("/rewards", report)
