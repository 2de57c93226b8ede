"""HTTP face of proof of relay: ``POST /tickets`` (broadcaster), ``POST /rewards/settle``,
``GET /rewards``. Kept apart from :mod:`oasis.node.http` so the ledger's routes have one owner.

* ``POST /tickets`` -- a viewer asks for a ticket (see :meth:`Rewards.admit`): rate
  limits per source address and per identity, a fresh signed request, and membership of
  the swarm, before any ticket is signed. Refusals are counted and answered 400/403/429.
* ``POST /rewards/settle`` -- settle now, including the running epoch: only from a
  loopback address and with the token in ``<data>/ledger/settle.token``
  (header ``X-Oasis-Settle-Token``); anything else is 403 and counted. The node settles
  on its own cadence anyway; this is for the demo and tests that want a final figure.
* ``GET /rewards`` -- the node's report (read only): wallet, earnings, the ledger's figures;
  served only to this machine's clients (loopback, no proxy headers) unless the node runs
  with ``--public-metrics``, else 403 ``local_only``.
"""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from .http import (
    NO_STORE,
    BadJson,
    decode_json,
    json_error,
    read_body,
    require_operator,
    source_key,
)
from .node import Node
from .rewards import MAX_TICKET_BODY, TicketRefused

SETTLE_TOKEN_HEADER = "X-Oasis-Settle-Token"


class TicketRequestBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /tickets``: the viewer's binding, a timestamp and a nonce, signed (hex)."""

    binding: str
    ts: int
    nonce: str
    sig: str


def add_rewards_routes(app: web.Application, node: Node, *, broadcaster: bool) -> None:
    """``POST /tickets`` (broadcaster) and ``POST /rewards/settle``; ``GET /rewards``."""
    rewards = node.rewards
    rewards.node = node  # membership checks read the node's links and joins

    async def tickets(request: web.Request) -> web.Response:
        try:
            rewards.check_address(source_key(request.remote or ""), time.time())  # before reading anything
            try:
                raw = await read_body(request, MAX_TICKET_BODY)
            except web.HTTPException as exc:  # 413
                raise TicketRefused(exc.status, "ticket_requests_bad",
                                    f"ticket request over {MAX_TICKET_BODY} bytes") from None
            try:
                body = msgspec.structs.asdict(decode_json(raw, TicketRequestBody))
            except BadJson as exc:
                raise TicketRefused(400, "ticket_requests_bad", f"bad ticket request: {exc}") from None
            viewer = rewards.admit(body, time.time())
        except TicketRefused as exc:
            c = rewards.counters
            setattr(c, exc.counter, getattr(c, exc.counter) + 1)
            raise json_error(exc.status, exc.counter.removeprefix("ticket_requests_"),
                             exc.reason) from None
        try:
            reply = await rewards.run(rewards.issue_ticket, viewer)
        except RuntimeError as exc:  # shutting down
            raise json_error(503, "shutting_down", str(exc)) from None
        rewards.counters.ticket_requests_ok += 1
        return web.json_response(reply, headers=NO_STORE)

    async def settle(request: web.Request) -> web.Response:
        if not rewards.settle_allowed(request.remote, request.headers.get(SETTLE_TOKEN_HEADER)):
            raise json_error(403, "forbidden", "settle: loopback only, with the token in "
                             "<data>/ledger/settle.token (header X-Oasis-Settle-Token)")
        await rewards.settle(include_current=True)
        return web.json_response(await rewards.report(), headers=NO_STORE)

    async def report(request: web.Request) -> web.Response:
        # the wallet, its earnings, the ledger's CPU: the operator's, not every visitor's
        require_operator(request, "GET /rewards")
        return web.json_response(await rewards.report(), headers=NO_STORE)

    if broadcaster:
        app.router.add_post("/tickets", tickets)
    app.router.add_post("/rewards/settle", settle)
    app.router.add_get("/rewards", report)
