"""HTTP face of proof of relay: ``POST /tickets`` (broadcaster), ``POST /rewards/settle``,
``GET /rewards``. Kept apart from :mod:`oasis.node.http` so the ledger's routes have one owner.

* ``POST /tickets`` -- a viewer asks for a ticket (see :meth:`Rewards.admit`): rate
  limits per source address and per identity, a fresh signed request, and membership of
  the swarm, before any ticket is signed. Refusals are counted and answered 400/403/429.
* ``POST /rewards/settle`` -- settle now, including the running epoch: only from a
  loopback address and with the token in ``<data>/ledger/settle.token``
  (header ``X-Oasis-Settle-Token``); anything else is 403 and counted. The node settles
  on its own cadence anyway; this is for the demo and tests that want a final figure.
* ``GET /rewards`` -- the node's report (read only).
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from .node import Node
from .rewards import MAX_TICKET_BODY, TicketRefused

SETTLE_TOKEN_HEADER = "X-Oasis-Settle-Token"


def add_rewards_routes(app: web.Application, node: Node, *, broadcaster: bool) -> None:
    """``POST /tickets`` (broadcaster) and ``POST /rewards/settle``; ``GET /rewards``."""
    rewards = node.rewards
    rewards.node = node  # membership checks read the node's links and joins

    async def tickets(request: web.Request) -> web.Response:
        raw = await request.content.read(MAX_TICKET_BODY + 1)
        if len(raw) > MAX_TICKET_BODY:
            rewards.counters.ticket_requests_bad += 1
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_TICKET_BODY, actual_size=len(raw))
        try:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise TicketRefused(400, "ticket_requests_bad", f"bad ticket request: {exc}") from None
            viewer = rewards.admit(body, request.remote or "", time.time())
        except TicketRefused as exc:
            c = rewards.counters
            setattr(c, exc.counter, getattr(c, exc.counter) + 1)
            return web.Response(status=exc.status, text=exc.reason + "\n")
        try:
            reply = await rewards.run(rewards.issue_ticket, viewer)
        except RuntimeError as exc:  # shutting down
            raise web.HTTPServiceUnavailable(text=f"{exc}\n") from None
        rewards.counters.ticket_requests_ok += 1
        return web.json_response(reply)

    async def settle(request: web.Request) -> web.Response:
        if not rewards.settle_allowed(request.remote, request.headers.get(SETTLE_TOKEN_HEADER)):
            raise web.HTTPForbidden(text="settle: loopback only, with the token in <data>/ledger/settle.token\n")
        await rewards.settle(include_current=True)
        return web.json_response(await rewards.report())

    async def report(request: web.Request) -> web.Response:
        return web.json_response(await rewards.report())

    if broadcaster:
        app.router.add_post("/tickets", tickets)
    app.router.add_post("/rewards/settle", settle)
    app.router.add_get("/rewards", report)
