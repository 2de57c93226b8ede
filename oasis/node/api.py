"""The local API: HTTP + WebSocket on 127.0.0.1 for programs on the node's machine.

Theory of operation
-------------------
Every node role (``oasis node``, ``oasis broadcast``, ``oasis watch``) can serve, on
its own loopback port, a versioned API (``/v1``) that local programs and the SDK
(:mod:`oasis.sdk`) drive: publish and watch streams, chat and DMs
(``node.messaging``), files (``node.files``), wallet and rewards, and a live event
feed over a WebSocket (``node.events``). ``docs/api.md`` is the user's guide.

The routes are declared once, in :data:`oasis.node.apiroutes.ROUTES` (method, path,
request and response types from :mod:`oasis.sdk.types`, with their handlers); this
module builds the app from that table and generates the OpenAPI document
(``GET /v1/openapi.json``) from it.

Defences, in the order a request meets them (each counted in ``counters``):

* bound to a loopback address only (:func:`start_api` refuses any other);
* ``Host`` must name a loopback host and ``Origin``, when sent, a loopback origin:
  a web page the user visits cannot drive the API by DNS rebinding (403);
* a bearer token (32 random bytes, hex, in ``<data-dir>/api.token``, mode 0600)
  compared in constant time (401); the WebSocket may take it as ``?token=``;
* at most ``MAX_INFLIGHT`` requests at once (503) and ``MAX_BODY`` bytes of JSON,
  nested at most 16 deep, decoded strictly into the route's Struct (400/413);
* every refusal and every error is ``{"error": {"code", "message"}}`` with its status
  (a 429 also says ``Retry-After`` in seconds); a handler bug is a counted 500, never a crash.

Service errors map to statuses: ``ValueError`` 400, ``PermissionError`` 403 (``muted``
for a chat message of a sender the broadcaster silenced, else ``forbidden``),
``LookupError`` 404, ``FileExistsError`` 409; a service the node does not run is
501 ``not_available``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import HttpVersion11, WSMsgType, web

from oasis.core.chat import RateLimited, Silenced
from oasis.core.stream import StreamIdError
from oasis.core.streamlink import LinkError
from oasis.datafiles import private_dir, read_small, refuse_exposed, replace, write_new
from oasis.sdk import types as t

from . import http
from .apiroutes import DATA_DIR, ROUTES, VERSION, Api, ApiError, Route, check_query
from .events import TooManySubscribers
from .http import host_is_loopback
from .node import Node
from .streaming import NotAvailable, Streaming

log = logging.getLogger("oasis.api")

TOKEN_FILE = "api.token"
_KIND_RE = re.compile(r"^[a-z][a-z_]*(\.[a-z_]*)?$")  #: an event kind prefix: "stream", "chat.message", "dm."
INFO_FILE = "api.json"  #: where the API's URL is written for the SDK to find
MAX_BODY = 16 * 1024  #: bytes of a request body
MAX_INFLIGHT = 64  #: requests handled at once
DEFAULT_PORT = 7480


RATE_LIMITED_RETRY_S = 1  #: Retry-After of a 429: the chat's rate refills a message a second


def error_body(status: int, code: str, message: str) -> bytes:
    """The API's refusal body, ``{"error": {"code", "message"}}`` (also for the HTTP
    parser's refusals: ``start_http(error_body=...)``)."""
    return msgspec.json.encode(t.ErrorBody(t.ErrorDetail(code, message[:500])))


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    resp = web.Response(status=status, body=error_body(status, code, message),
                        content_type="application/json", headers=headers)
    if headers is not None and headers.get("Connection", "").lower() == "close":
        resp.force_close()  # a refusal before the body was read: the connection goes with it
    return resp


def ok(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(value), content_type="application/json")


# ---- the token --------------------------------------------------------------------------

def load_or_create_token(data_dir: str | os.PathLike[str]) -> str:
    """The API token of the node at ``data_dir``: read, or created (0600) on first start."""
    d = private_dir(data_dir)
    path = d / TOKEN_FILE
    if not path.exists():
        write_new(path, secrets.token_hex(32).encode() + b"\n")
    refuse_exposed(path, "the API token")
    token = read_small(path, "the API token").decode("ascii", "replace").strip()
    if len(token) != 64 or any(ch not in "0123456789abcdef" for ch in token):
        raise ValueError(f"{path} does not hold an API token (64 hex digits); delete it to get a new one")
    return token


def write_info(data_dir: str | os.PathLike[str], url: str) -> None:
    """Record the API's URL in ``<data-dir>/api.json`` (for :meth:`oasis.sdk.AsyncClient.from_data_dir`)."""
    replace(Path(data_dir) / INFO_FILE, json.dumps({"url": url, "pid": os.getpid()}).encode())


def remove_info(data_dir: str | os.PathLike[str]) -> None:
    """The API stops: remove ``api.json`` if it is still ours (a client then hears
    ``no_node``, not ``unreachable`` at a dead address)."""
    path = Path(data_dir) / INFO_FILE
    try:
        if json.loads(path.read_bytes()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


# ---- dispatch ----------------------------------------------------------------------------------
# ---- dispatch ----------------------------------------------------------------------------------

API = web.AppKey("oasis_api", Api)


def _handler(r: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        api = request.app[API]
        check_query(request, r.query)
        if r.service is not None:
            api.service(r.service)  # 501 before reading a body for a service not run here
        body: Any = None
        if r.request is not None:
            raw = await read_body(request)
            try:
                body = http.decode_json(raw or b"{}", r.request)
            except http.BadJson as exc:
                raise ApiError(400, "bad_request", f"request body: {exc}") from None
        try:
            result = await r.handler(api, request, body)
        except ApiError:
            raise
        except msgspec.ValidationError:  # a service's answer not of the declared shape: a bug
            raise  # (a ValueError, but not the caller's): the guard logs it, counts it, 500
        except NotAvailable as exc:
            raise ApiError(501, "not_available", str(exc)) from None
        except FileExistsError as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        except RateLimited as exc:
            raise ApiError(429, "rate_limited", str(exc),
                           headers={"Retry-After": str(RATE_LIMITED_RETRY_S)}) from None
        except Silenced as exc:  # (the CLI's `muted`: what to tell the person, not a fault)
            raise ApiError(403, "muted", str(exc)) from None
        except PermissionError as exc:
            raise ApiError(403, "forbidden", str(exc)) from None
        except LookupError as exc:
            raise ApiError(404, "not_found", str(exc).strip("'\"")) from None
        except LinkError as exc:  # a stream or file link, or a PEER_ID@HOST:PORT: its own code
            raise ApiError(400, exc.code, exc.reason) from None
        except StreamIdError as exc:
            raise ApiError(400, "bad_stream_id", str(exc)) from None
        except ValueError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        return ok(result, r.status)
    return handle


async def read_body(request: web.Request) -> bytes:
    """The request body (the gateway's reader: capped, timed). Its refusals keep their code
    and message in the API's shape, and their ``Connection: close``: they come before the
    body was read whole. (Until 2026-12-03 every refusal but the 408 was told ``too_large``,
    also a 400 for a body that does not decode, and the connection was kept.)"""
    try:
        return await http.read_body(request, MAX_BODY)
    except web.HTTPException as exc:
        try:
            flat = json.loads(exc.text or "")
            code, message = str(flat["error"]), str(flat["message"])
        except (ValueError, TypeError, KeyError):
            code, message = "bad_request", exc.reason
        headers = {"Connection": exc.headers["Connection"]} if "Connection" in exc.headers else None
        raise ApiError(exc.status, code, message, headers=headers) from None


def origin_is_loopback(value: str) -> bool:
    scheme, sep, rest = value.strip().lower().partition("://")
    return bool(sep) and scheme in ("http", "https") and "/" not in rest and host_is_loopback(rest)


def _target_is_loopback(target: str) -> bool:
    """The request target is a path, or (absolute-form: ``GET http://host/...``) names a
    loopback host: HTTP/1.1 has that host win over ``Host``'s (such a request with
    ``Host: 127.0.0.1`` was served, found 2026-12-06)."""
    if target.startswith("/"):
        return True
    scheme, sep, rest = target.partition("://")
    return bool(sep) and origin_is_loopback(f"{scheme}://{rest.split('/', 1)[0]}")


_COUNTER_OF = {400: "bad_request", 408: "body_timeout", 413: "too_large", 404: "not_found",
               429: "rate_limited", 503: "busy"}


@web.middleware
async def guard(request: web.Request,
                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Host/Origin check, token, in-flight cap, JSON errors; see the module docstring."""
    api = request.app[API]
    if not host_is_loopback(request.headers.get("Host", "")) or not _target_is_loopback(request.raw_path):
        api.count("bad_host")
        return error_response(403, "bad_host", "the API answers only requests addressed to a "
                              "loopback host (127.0.0.1 or localhost)")
    origin = request.headers.get("Origin")
    if origin is not None and not origin_is_loopback(origin):
        api.count("bad_origin")
        return error_response(403, "bad_origin", "requests from web pages of other origins are refused")
    given = request.headers.get("Authorization", "")
    token = given[7:].strip() if given[:7].lower() == "bearer " else ""
    if not token and request.path == "/v1/events":
        token = request.query.get("token", "")
    if not hmac.compare_digest(token.encode("utf-8", "replace"), api.token.encode()):
        api.count("unauthorized")
        return error_response(401, "unauthorized", "send the token of <data-dir>/api.token as "
                              "'Authorization: Bearer <token>'")
    # an event subscription lasts as long as its WebSocket: it is capped by the event
    # bus (64 subscribers), not counted among the requests in flight
    counted = request.path != "/v1/events"
    if counted and api.inflight >= MAX_INFLIGHT:
        api.count("busy")
        return error_response(503, "busy", f"at most {MAX_INFLIGHT} requests at once; retry")
    api.inflight += counted
    try:
        return await handler(request)
    except ApiError as exc:
        api.count(_COUNTER_OF.get(exc.status, "refused"))
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            api.count("not_found")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "bad_request")
        resp = error_response(exc.status, code, f"{exc.reason}: {request.method} {request.path[:200]}")
        if "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        api.count("internal_errors")
        log.exception("API handler failed on %s %s", request.method, request.path[:200])
        return error_response(500, "internal", "internal error (logged by the node)")
    finally:
        api.inflight -= counted


# ---- the event feed ----------------------------------------------------------------------------

MAX_KINDS = 16
WS_BATCH = 256  #: events sent per wake-up of a feed at most


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /v1/events?kinds=chat,stream``: a WebSocket of JSON events (see :class:`t.Event`)."""
    api = request.app[API]
    check_query(request, ("kinds", "token"))
    given = request.query.get("kinds", "")
    kinds = list(dict.fromkeys(given.split(","))) if given else []  # (repeats once)
    if "" in kinds:  # ("stream,,chat": the SDK refuses it too)
        raise ApiError(400, "bad_query", "kinds: an empty prefix (comma-separated, e.g. stream,chat)")
    if len(kinds) > MAX_KINDS or any(len(k) > 64 for k in kinds):
        raise ApiError(400, "bad_query", f"at most {MAX_KINDS} kinds of at most 64 characters")
    bad = [k for k in kinds if not _KIND_RE.match(k)]
    if bad:  # (taken before, they matched nothing or, a single letter, nearly everything)
        raise ApiError(400, "bad_query", f"kind prefix {bad[0][:64]!r}: one lower-case word (a-z, _), "
                       "or two joined by a dot, e.g. stream, chat.message or dm.")
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "not_websocket", "GET /v1/events is a WebSocket: send the upgrade "
                       "headers (Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Key, "
                       "Sec-WebSocket-Version: 13)")
    try:
        sub = api.node.events.subscribe(kinds)
    except TooManySubscribers as exc:
        api.count("ws_refused")
        raise ApiError(503, "busy", str(exc)) from None
    try:
        await ws.prepare(request)

        async def drain_input() -> None:  # the client sends nothing; read to see it close
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break

        # first, that the subscription exists: every event published from now on follows
        await ws.send_str(msgspec.json.encode(
            {"seq": 0, "time": api.node.clock(), "kind": "subscribed",
             "data": {"kinds": list(kinds), "next_seq": api.node.events.seq + 1}}).decode())
        reader = asyncio.create_task(drain_input())
        getter: asyncio.Future[Any] | None = None
        try:
            while not ws.closed:
                getter = asyncio.ensure_future(sub.get())
                done, _ = await asyncio.wait([getter, reader], return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    break
                if getter.exception() is not None:  # EOFError: the bus closed (node stopping)
                    break
                batch = [getter.result()]
                while len(batch) < WS_BATCH and (more := sub.get_nowait()) is not None:
                    batch.append(more)  # what else is queued goes out without another wait
                for ev in batch:
                    if ev.kind == "lagged":
                        api.count("ws_lagged")
                    await ws.send_str(msgspec.json.encode(ev.to_json()).decode())
        finally:  # also when cancelled (the server stopping): no task left unawaited
            pending = [f for f in (reader, getter) if f is not None]
            for f in pending:
                f.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    finally:
        sub.close()
        if ws.prepared:
            await ws.close()
    return ws


# ---- OpenAPI -------------------------------------------------------------------------------------

def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`ROUTES` (schemas from :mod:`oasis.sdk.types`)."""
    types: list[Any] = [t.ErrorBody, t.Event]
    for r in ROUTES:
        types.append(r.response)
        if r.request is not None:
            types.append(r.request)
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}")
    of = dict(zip(map(_key, types), schemas, strict=True))
    err = {"description": "error", "content": {"application/json": {"schema": of[_key(t.ErrorBody)]}}}
    paths: dict[str, dict[str, Any]] = {}
    for r in ROUTES:
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in _path_params(r.path)]
        params += [{"name": p, "in": "query", "required": False, "schema": {"type": "string"}}
                   for p in r.query]
        op: dict[str, Any] = {
            "summary": r.summary, "operationId": r.handler.__name__, "parameters": params,
            "security": [{"bearer": []}],
            "responses": {str(r.status): {"description": "ok", "content": {"application/json": {
                "schema": of[_key(r.response)]}}}, "default": err}}
        if r.service is not None:
            op["x-oasis-service"] = r.service
        if r.request is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": of[_key(r.request)]}}}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    paths["/v1/events"] = {"get": {
        "summary": "The event feed: a WebSocket of JSON text messages, one Event each "
                   "(?kinds=chat,stream: prefixes; ?token= instead of the header)",
        "operationId": "events", "security": [{"bearer": []}],
        "parameters": [{"name": "kinds", "in": "query", "required": False, "schema": {"type": "string"}},
                       {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}}],
        "responses": {"101": {"description": "WebSocket; each message is an Event", "content": {
            "application/json": {"schema": of[_key(t.Event)]}}}, "default": err}}}
    paths["/v1/openapi.json"] = {"get": {"summary": "This document", "operationId": "openapi",
                                          "security": [{"bearer": []}],
                                          "responses": {"200": {"description": "OpenAPI 3.1"}}}}
    return {"openapi": "3.1.0",
            "info": {"title": "Oasis local API", "version": VERSION,
                     "description": "A node's local API on 127.0.0.1; see docs/api.md"},
            "paths": paths,
            "components": {"schemas": components,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}


def _key(tp: Any) -> str:
    return repr(tp)


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


# ---- the app -------------------------------------------------------------------------------------

def make_app(api: Api, data_dir: str | None = None) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY + 1024)
    app[API] = api
    if data_dir is not None:
        app[DATA_DIR] = data_dir
    for r in ROUTES:
        app.router.add_route(r.method, r.path, _handler(r), expect_handler=_expect)
    doc: list[bytes] = []  # built at the first request: ~0.1 CPU-s (msgspec's schemas of
    # every route's types), which blocked a viewer's event loop right after its join

    async def openapi_route(request: web.Request) -> web.Response:
        check_query(request, ())
        if not doc:
            doc.append(msgspec.json.encode(openapi()))
        return web.Response(body=doc[0], content_type="application/json")

    app.router.add_get("/v1/openapi.json", openapi_route, expect_handler=_expect)
    app.router.add_get("/v1/events", events, expect_handler=_expect)
    return app


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """An ``Expect`` header: ``100-continue`` as aiohttp answers it; any other is refused
    with the API's JSON error (aiohttp's was a plain-text 417, found 2026-12-06)."""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return None
    if expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # (the body has not started)
        return None
    return web.Response(status=417, body=error_body(417, "bad_expect", f"Expect {expect[:64]!r}: only "
                                                    "100-continue is taken"),
                        content_type="application/json", headers={"Connection": "close",
                                                                  "Cache-Control": "no-store"})


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(DEFAULT_PORT)
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--api-listen must be HOST:PORT, got {text!r}")
    if not host_is_loopback(host if ":" not in host else f"[{host}]"):
        raise ValueError(f"--api-listen {text!r}: the API listens on loopback only (127.0.0.1)")
    return host, int(port)


async def start_api(node: Node, data_dir: str, listen: str, *, streaming: Streaming | None = None,
                    http_base: str | None = None) -> tuple[web.AppRunner, Api]:
    """Serve the API of ``node`` on ``listen`` (loopback only); writes the token and
    ``api.json`` in ``data_dir``. Returns the runner (``cleanup()`` it) and the :class:`Api`."""
    from .runtime import start_http

    host, port = parse_listen(listen)
    api = Api(node, load_or_create_token(data_dir), streaming=streaming, http_base=http_base)
    runner, bound = await start_http(make_app(api, data_dir), host, port, check_host=False,  # guard()
                                     error_body=error_body)
    api.url = f"http://{'[::1]' if host == '::1' else host}:{bound}/v1"
    write_info(data_dir, api.url)
    if streaming is not None:
        streaming.start()
    return runner, api
