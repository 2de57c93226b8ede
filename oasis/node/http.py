"""HTTP faces of a node (aiohttp): player gateway, origin, tracker, metrics.

* ``GET /live/<stream-id>.ts`` — continuous MPEG-TS for a player (ffplay, VLC,
  mpv), starting at a keyframe, chunks in order; a chunk given up on is skipped.
* ``GET /streams`` — JSON list of streams with their live figures (to a stranger: only
  the streams this node broadcasts).
* ``GET /metrics`` — Prometheus text format (prometheus-client, one registry per node).
* ``GET /stats`` — JSON with the per-chunk record the demo aggregates.
* Origin (broadcaster): ``GET /origin/<stream-id>/<seq>.chunk`` — the signed
  chunk (the same bytes as an OFTP CHUNK message), immutable and cacheable, so
  any HTTP cache or CDN can sit in front; ``GET /origin/<stream-id>/latest.json``;
  ``GET /origin/<stream-id>/descriptor`` — the signed stream descriptor;
  ``GET /origin/<stream-id>/time`` — ``{"now_us": ...}``, the broadcaster's clock (never
  cached), which viewers run their stream on (:mod:`oasis.core.clocksync`).
* Tracker: ``POST /tracker/announce`` with a *signed* announce (docs/oftp.md,
  :mod:`oasis.core.announce`) → ``{peers: [signed records], descriptor, origin,
  tickets, interval}``; ``GET /tracker/descriptor/<stream-id>``; ``GET /tracker/streams``
  (to a stranger: only the streams the embedding node broadcasts).

Every JSON body is size-capped before it is read and decoded strictly into a
typed struct (msgspec: no unknown fields, integers in range, bounded nesting);
every refusal is a 4xx with ``{"error": code, "message": ...}`` and ``Cache-Control:
no-store``, the HTTP parser's own refusals too (:func:`json_parser_errors`). A handler
bug is still a 500 (counted in ``http_internal_errors``), never a crash.

The operator's views (``/metrics``, ``/stats``, ``GET /rewards``) answer only clients
on this machine -- loopback, no proxy header -- unless the app serves them to anyone
(``--public-metrics``, :data:`PUBLIC_VIEWS`); others get 403 ``local_only``. Immutable
objects (chunks, blocks, manifests, files) carry strong ETags and answer
``If-None-Match`` (304) and ``If-Match`` (412) (:func:`conditional`), and are served
under one URL each, judged on the path as sent, before percent-decoding
(:func:`canonical_only`: 404 ``not_canonical`` otherwise; also ``/files/<cid>``,
``latest.json`` and descriptors). A face bound to loopback answers only a loopback ``Host``
(:func:`loopback_host`), except on GET/HEAD of the origin's public objects (:func:`any_host`),
which a same-machine proxy passing its client's Host must reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import math
import re
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest

from oasis.core import wire
from oasis.core.announce import AnnounceBody, AnnounceError, announce_from_json
from oasis.core.descriptor import Descriptor, DescriptorError, descriptor_from_body
from oasis.core.identity import peer_tag
from oasis.core.metrics import counter_dict, ms_figures
from oasis.core.stream import StreamId, StreamIdError
from oasis.core.tracker import TrackedPeer, Tracker, TrackerRefused, source_key
from oasis.media.tspackets import first_pcr, pcr_went_back

from .link import Link
from .metrics import make_registry, render
from .node import LiveStream, Node

log = logging.getLogger("oasis.http")

ANNOUNCE_INTERVAL = 10.0
MAX_ANNOUNCE_BODY = 8192  #: bytes: a signed announce with the largest valid descriptor fits
MAX_JSON_DEPTH = 16
SWEEP_INTERVAL = 5.0  #: seconds between tracker expiry sweeps
MAX_PLAYERS = 64  #: concurrent /live responses per gateway (each holds a task and a socket)
#: a /live response with nothing new to write for this long ends (the player sees the end of
#: the file and may ask again) instead of hanging open while the broadcaster is gone
LIVE_STALL_END = 20.0
#: a ``/live`` player whose next chunk left the gateway's window this many times is dropped
#: (``http_behind_readers_dropped``): it reads slower than the stream (see BEHIND_CHUNKS)
LIVE_FALLS_OUT = 2
#: a /live response waiting for its next chunk looks again at least this often (s)
LIVE_WAIT = 5.0
#: a player's response ends when the media's clock (its PCR) goes back more than this (27 MHz)
CLOCK_BACK = 27_000_000  #: 1 s
#: a response whose client reads nothing for this long is dropped (a player that stopped
#: reading held its /live slot, and its task and socket, for ever)
WRITE_TIMEOUT = 20.0
SUMMARY_LATENCIES = 10_000  #: a stream's latency_p50_ms is over its last this many chunks
#: /stats?detail=1 gives the per-chunk record of the last this many seqs, and is built at most
#: once a second (a 38-minute-old broadcaster's answer was 2.8 MB and blocked the loop 0.25 s
#: per request: a client asking in a loop cut its chunk output by three quarters)
DETAIL_SEQS = 18_000
DETAIL_EVERY = 1.0
MAX_PLAYERS_PER_IP = 4  #: /live responses (and file readers) per source address (not loopback)
#: an HTTP connection must send a whole request head within this many seconds of opening (or
#: of its last response), else it is closed: idle and half-sent requests were kept for ever
IDLE_TIMEOUT = 30.0
MAX_CONNECTIONS = 4096  #: open connections per HTTP face (bounded by the file-descriptor limit)
MAX_CONNECTIONS_PER_IP = 256  #: per source address (loopback exempt: local players, the demo)
_SEQ_RE = re.compile(r"^[0-9]{1,19}$")
HTTP_COUNTERS = web.AppKey("oasis_http_counters", dict)
T = TypeVar("T")


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def host_is_loopback(value: str) -> bool:
    """Whether a Host header (``name[:port]``) names this machine's loopback."""
    host = value.strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host in LOOPBACK_HOSTS:
        return True
    try:  # a literal loopback address only: "127.0.0.1.attacker.example" is a name
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def any_host(handler: T) -> T:
    """Mark a GET route's handler as public content that a loopback-bound face serves whatever
    the request's ``Host`` (:func:`loopback_host`): signed chunks, the descriptor, latest.json,
    file blocks and manifests."""
    handler.__dict__["oasis_any_host"] = True
    return handler


@web.middleware
async def loopback_host(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
    """On a face bound to loopback, only requests addressed to a loopback host: a page whose
    name an attacker re-points at 127.0.0.1 (DNS rebinding) read the gateway's /stats and
    /streams (what the user watches, its peer id). The public objects of the origin
    (:func:`any_host`: the same bytes to anyone, read-only) are exempt on GET/HEAD: a reverse
    proxy on this machine that passes the client's Host (Caddy's default, nginx's ``Host
    $host``) got 403 on every chunk."""
    route = request.match_info.route
    if request.method in ("GET", "HEAD") and getattr(route.handler, "oasis_any_host", False):
        return await handler(request)
    if not host_is_loopback(request.headers.get("Host", "")):
        counters = request.app[HTTP_COUNTERS]
        counters["http_bad_host"] = counters.get("http_bad_host", 0) + 1
        raise json_error(403, "bad_host", "this face answers only requests addressed to a loopback "
                         "host (127.0.0.1 or localhost)")
    return await handler(request)


def is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "localhost") or ip.startswith("::ffff:127.")


class ConnectionGuard:
    """Caps the open connections of one HTTP face, in all and per source address, by hooking
    the aiohttp server's connection bookkeeping (``Server.connection_made/_lost``, which each
    connection's handler calls). A connection over a cap is closed as it opens, counted in
    ``http_connections_refused``. Without it 20,000 idle connections from one client took
    every file descriptor of a broadcaster, and its origin, tracker and API with them."""

    def __init__(self, server: web.Server, counters: dict[str, int], total: int,
                 per_ip: int) -> None:
        self.counters = counters
        self.total = total
        self.per_ip = per_ip
        self._made = server.connection_made
        self._lost = server.connection_lost
        self._ips: dict[object, str] = {}
        self._by_ip: dict[str, int] = {}
        server.connection_made = self.made  # type: ignore[method-assign]
        server.connection_lost = self.lost  # type: ignore[method-assign]
        counters.setdefault("http_connections_refused", 0)

    def __len__(self) -> int:
        return len(self._ips)

    def made(self, handler: Any, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        raw = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        ip = source_key(raw)  # an IPv6 /64 counts as one address (one subscriber's prefix)
        if len(self._ips) >= self.total or (
                not is_loopback(raw) and self._by_ip.get(ip, 0) >= self.per_ip):
            self.counters["http_connections_refused"] += 1
            transport.abort()
            return
        self._ips[handler] = ip
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1
        self._made(handler, transport)

    def lost(self, handler: Any, exc: BaseException | None = None) -> None:
        ip = self._ips.pop(handler, None)
        if ip is not None:
            left = self._by_ip[ip] - 1
            if left:
                self._by_ip[ip] = left
            else:
                del self._by_ip[ip]
        self._lost(handler, exc)


async def write_or_drop(request: web.Request, resp: web.StreamResponse, data: bytes,
                        counters: dict[str, int]) -> None:
    """``resp.write(data)``, but a client that reads nothing for :data:`WRITE_TIMEOUT` s is
    dropped (ConnectionResetError, counted ``http_slow_readers_dropped``)."""
    try:
        await asyncio.wait_for(resp.write(data), WRITE_TIMEOUT)
    except TimeoutError:
        counters["http_slow_readers_dropped"] = counters.get("http_slow_readers_dropped", 0) + 1
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("the client read nothing for "
                                   f"{WRITE_TIMEOUT:.0f} s") from None


#: a chunk feed's reader (an edge) more than this many chunks behind the newest (5 s of 33 ms
#: chunks) for BEHIND_FOR_S is dropped: one that takes a little every few seconds never met
#: the write timeout and held its slot for ever -- 32 such readers held every origin feed, and
#: a real edge could not follow the stream (found 2026-12-06 from outside). An edge reads as
#: fast as it can; one that cannot keep up reconnects from the newest chunk. (A player on
#: ``/live`` reads at its playback pace, as far behind as it started: it is dropped instead
#: when it falls out of the window a second time, LIVE_FALLS_OUT.)
BEHIND_CHUNKS = 150
BEHIND_FOR_S = 10.0


class Behind:
    """Tracks how long a live reader has been more than BEHIND_CHUNKS behind (see there)."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since = -1.0

    def check(self, lag_chunks: int, now: float, request: web.Request, counters: dict[str, int]) -> None:
        """After a write: raise ConnectionResetError (the connection aborted, counted
        ``http_behind_readers_dropped``) once the reader stayed behind too long."""
        if lag_chunks <= BEHIND_CHUNKS:
            self.since = -1.0
            return
        if self.since < 0:
            self.since = now
            return
        if now - self.since > BEHIND_FOR_S:
            counters["http_behind_readers_dropped"] = counters.get("http_behind_readers_dropped", 0) + 1
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError(f"the client stayed over {BEHIND_CHUNKS} chunks behind the newest "
                                       f"for {BEHIND_FOR_S:.0f} s")


class BadJson(ValueError):
    """A request body that is not JSON of the expected shape (the message says where)."""


def json_error(status: int, code: str, message: str) -> web.HTTPException:
    """An HTTP error whose body is ``{"error": code, "message": message}``."""
    body = msgspec.json.encode({"error": code, "message": message})
    exc = web.HTTPException(text=body.decode(), content_type="application/json",
                            headers={"Cache-Control": "no-store"})  # never cached, wherever raised
    exc.set_status(status)
    return exc


def closing(exc: web.HTTPException) -> web.HTTPException:
    """``exc`` with ``Connection: close``: for a refusal sent before the request's body was
    read, so that the client does not send its next request on this connection."""
    exc.headers["Connection"] = "close"
    return exc


#: on an app: serve the operator's views (``/metrics``, ``/stats``, ``GET /rewards``, every
#: stream in ``/streams`` and ``/tracker/streams``) to any client, not only to this machine's
#: (``--public-metrics``)
PUBLIC_VIEWS = web.AppKey("oasis_public_views", bool)
#: headers a proxy adds: a request that carries one was relayed (a reverse proxy or CDN on this
#: machine reaches the node over loopback), so it does not come from this machine's operator
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP", "Via", "CF-Connecting-IP",
                 "True-Client-IP", "Fastly-Client-IP")


def from_operator(request: web.Request) -> bool:
    """Whether ``request`` may see the operator's views: the app serves them to anyone
    (``--public-metrics``), or it came over loopback, not through a proxy, and addressed to
    a loopback host. The last is what a face bound to a wildcard or public address (where
    :func:`loopback_host` is not installed) has against DNS rebinding: a page the operator
    opens, whose name the attacker re-points at 127.0.0.1, reaches the face over loopback
    with its own name as ``Host`` and read /stats, /metrics and GET /rewards (h-atk7,
    ``bench/atk7_http_rebind.py``)."""
    if request.app.get(PUBLIC_VIEWS, False):
        return True
    return (is_loopback(request.remote or "") and not any(h in request.headers for h in PROXY_HEADERS)
            and host_is_loopback(request.headers.get("Host", "")))


def require_operator(request: web.Request, what: str) -> None:
    """Refuse (403 ``local_only``, counted ``http_local_only_refused``) a request for one of
    the operator's views from anyone but this machine's operator (:func:`from_operator`);
    those that came over loopback naming another host are also counted
    ``http_operator_host_refused`` (DNS rebinding, or a name of this machine: use
    127.0.0.1 or localhost)."""
    if from_operator(request):
        return
    counters = request.app[HTTP_COUNTERS]
    counters["http_local_only_refused"] = counters.get("http_local_only_refused", 0) + 1
    if is_loopback(request.remote or "") and not host_is_loopback(request.headers.get("Host", "")):
        counters["http_operator_host_refused"] = counters.get("http_operator_host_refused", 0) + 1
    raise json_error(403, "local_only", f"{what} is served only to clients on this node's machine "
                     "(over loopback, addressed to 127.0.0.1 or localhost, not through a proxy); "
                     "start the node with --public-metrics to serve it to anyone")


def set_public_views(app: web.Application, public: bool) -> None:
    """``--public-metrics``: the operator's views of ``app`` go to any client."""
    app[PUBLIC_VIEWS] = public


# ---- conditional requests (RFC 9110 §13) on immutable objects ------------------------------

_ETAG_RE = re.compile(r'\s*(W/)?"([\x21\x23-\x7e]*)"\s*(?:,|$)')


def _etags(header: str) -> list[tuple[bool, str]] | None:
    """The entity tags of an ``If-Match``/``If-None-Match`` list as (weak, opaque); None for
    ``*``; a malformed list gives the tags read before the error (the rest never matches)."""
    if header.strip() == "*":
        return None
    out: list[tuple[bool, str]] = []
    pos = 0
    while pos < len(header) and len(out) < 64:
        m = _ETAG_RE.match(header, pos)
        if m is None:
            break
        out.append((m.group(1) is not None, m.group(2)))
        pos = m.end()
    return out


def conditional(request: web.Request, etag: str, headers: dict[str, str]) -> web.Response | None:
    """The answer to a GET/HEAD's preconditions for an object whose strong ETag is ``etag``
    (quoted): 412 if ``If-Match`` names other tags, 304 (with ``headers``: the ETag and
    Cache-Control a 200 would carry) if ``If-None-Match`` names it (weak comparison), else
    None (serve it). ``If-Modified-Since`` is ignored: these objects have no date."""
    opaque = etag.strip('"')
    im = request.headers.get("If-Match")
    if im is not None:
        tags = _etags(im)
        if tags is not None and (False, opaque) not in tags:  # strong comparison
            raise json_error(412, "precondition_failed", "If-Match names no tag of this object "
                             f"(its ETag is {etag})")
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        tags = _etags(inm)
        if tags is None or any(t == opaque for _, t in tags):
            return web.Response(status=304, headers=headers)
    return None


def if_range_holds(request: web.Request, etag: str) -> bool:
    """Whether a Range request's ``If-Range`` (if any) lets the range be served: it must be
    this object's strong ETag; a weak tag or a date never matches (RFC 9110 §13.1.5: these
    objects have no Last-Modified), and then the whole object is sent (200)."""
    value = request.headers.get("If-Range")
    return value is None or value.strip() == etag


def request_target(request: web.Request) -> str:
    """The request's path and query exactly as sent (no percent-decoding); of an
    absolute-form target (``GET http://host/path``, RFC 9112 §3.2.2), its path and query."""
    raw = request.raw_path
    if raw.startswith("/"):
        return raw
    scheme_end = raw.find("://")
    if scheme_end < 0:
        return raw
    slash = raw.find("/", scheme_end + 3)
    rest = raw[slash:] if slash >= 0 else ""
    if not rest.startswith("/"):  # "http://host?x" or "http://host"
        query = raw.find("?", scheme_end + 3)
        rest = "/" + (raw[query:] if query >= 0 else "")
    return rest


def canonical_only(request: web.Request, canonical: str, what: str) -> None:
    """An object is served under one URL only: the request's path as sent -- before any
    percent-decoding -- must be ``canonical`` and carry no query string (not even an empty
    ``?``), else 404 ``not_canonical`` (counted ``http_not_canonical``). One object under
    many names is one object under many CDN cache keys: each new spelling (``014930.chunk``,
    ``%3648.chunk``, ``%2elive``, ``5.chunk?x=1``) missed the cache and reached the origin."""
    target = request_target(request)
    if target == canonical:
        return
    counters = request.app[HTTP_COUNTERS]
    counters["http_not_canonical"] = counters.get("http_not_canonical", 0) + 1
    path = target.partition("?")[0]
    if path != canonical:
        why = (f"{what} is served only at the path {canonical!r}, spelled exactly so (no "
               "percent-encoding, leading zero or upper case)")
    else:
        why = f"{what} is served with no query string, not even an empty '?'"
    raise json_error(404, "not_canonical", f"{why}: one URL per object, so that a cache holds it once")


# ---- parser-level refusals as JSON ---------------------------------------------------------

_PARSER_CODES = {400: "bad_request", 413: "too_large", 414: "uri_too_long",
                 431: "headers_too_large", 500: "internal", 504: "timeout"}


def flat_error_body(status: int, code: str, message: str) -> bytes:
    return msgspec.json.encode({"error": code, "message": message})


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, but its own refusals -- a request the HTTP parser
    refuses (malformed request line, bad or oversized header) and an error past the app --
    are JSON like every other refusal (they were aiohttp's plain text). The connection is
    still closed after it (``force_close``), as aiohttp does."""

    __slots__ = ()

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        plain = super().handle_error(request, status, exc, message)  # logs; refuses if sent
        server = self._manager
        shape: Callable[[int, str, str], bytes] = getattr(server, "oasis_error_body", flat_error_body)
        counters: dict[str, int] = getattr(server, "oasis_counters", {})
        counters["http_parser_refused"] = counters.get("http_parser_refused", 0) + 1
        code = _PARSER_CODES.get(status, "refused")
        if status >= 500:
            text = "internal error (logged)" if status == 500 else plain.reason
        elif isinstance(exc, aiohttp.http_exceptions.ContentEncodingError):
            # a body that does not decode (deflate over junk) or in an encoding not installed
            # here (br, zstd): the code the body reader gives gzip over junk, ``bad_body``
            # (docs/api.md), and no "Please install `Brotli`" (found 2026-12-05 from outside)
            code = "bad_body"
            said = " ".join(str(exc.message).split())
            text = ("request body does not decode: its Content-Encoding is not one this node "
                    "reads (gzip, deflate)" if "install" in said
                    else f"request body does not decode: {said[:160]}")
        else:
            text = " ".join((message or str(exc or "") or plain.reason).split())[:300]
            text = f"the HTTP parser refused the request: {text}"
        resp = web.Response(status=status, body=shape(status, code, text),
                            content_type="application/json",
                            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
        resp.force_close()
        return resp


class _JsonErrorServer(web.Server):
    """A :class:`web.Server` whose connections are :class:`_JsonErrorHandler`s."""

    oasis_error_body: Callable[[int, str, str], bytes]
    oasis_counters: dict[str, int]

    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


def json_parser_errors(server: web.Server, counters: dict[str, int],
                       shape: Callable[[int, str, str], bytes] | None = None) -> None:
    """Make ``server`` (a runner's, set up, not yet listening) answer its parser-level
    refusals as JSON of ``shape`` (default :func:`flat_error_body`), counted in ``counters``
    (``http_parser_refused``)."""
    server.__class__ = _JsonErrorServer
    srv: Any = server
    srv.oasis_error_body = shape or flat_error_body
    srv.oasis_counters = counters


def address_in_use(address: str, option: str, *, udp: bool = False, default: bool = False,
                   extra: str = "") -> str:
    """What a command says when ``address``, set by ``option`` (``default``: that option's
    default value), is held by another socket: the option to change and how."""
    host = address.rpartition(":")[0] or "127.0.0.1"
    given = f"{option}'s default" if default else option
    return (f"{address} ({given}, {'UDP' if udp else 'TCP'}) is already in use (another node, or "
            f"another program?): give {option} another address, or port 0 for any free one "
            f"({option} {host}:0){extra}")


BODY_TIMEOUT = 10.0  #: a request body must have arrived whole within this (s)
#: after a refusal sent before the body was read (``Connection: close``), the server reads
#: and drops what more of the body comes for this long, then closes (s; aiohttp's lingering
#: close, so that the client reads the refusal before any reset). aiohttp's default, 10 s,
#: kept a stalled client's socket 10 s past its 408 (found 2026-12-05 from outside)
LINGER_TIME = 2.0


async def read_body(request: web.Request, cap: int, timeout: float | None = None) -> bytes:
    """The request body, refused (413) past ``cap`` bytes before reading more than that,
    and (408) if it has not arrived whole within ``timeout`` s: a client that sends a
    few bytes and stalls holds its connection and the handler's slot no longer."""
    if request.content_length is not None and request.content_length > cap:
        raise closing(json_error(413, "too_large", f"request body over {cap} bytes"))
    encodings = request.headers.getall("Content-Encoding", [])
    if encodings and (len(encodings) > 1 or encodings[0].strip().lower() not in ("gzip", "deflate", "identity")):
        # (aiohttp decodes gzip and deflate and passes any other as it came: "xyz" or
        # "gzip, gzip" were read as plain JSON and refused as malformed, found 2026-12-06)
        raise closing(json_error(400, "bad_body", "request body does not decode: its Content-Encoding "
                                 f"{', '.join(encodings)[:60]!r} is not one this node reads (gzip, deflate)"))
    if timeout is None:
        timeout = BODY_TIMEOUT
    try:
        raw = await asyncio.wait_for(read_capped(request.content, cap), timeout)
    except TimeoutError:
        raise closing(json_error(408, "body_timeout",
                                 f"request body not received within {timeout:g} s")) from None
    except (RequestPayloadError, aiohttp.http_exceptions.HttpProcessingError) as exc:
        # a body that does not decode (Content-Encoding: gzip over junk): the client's
        # error, a 400 -- it was a logged 500 with a traceback, 1,000 a second unlimited
        # (an HttpProcessingError's str, which RequestPayloadError's copies, is "400, message:
        # ...": its message alone)
        cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.http_exceptions.HttpProcessingError) else exc
        why = " ".join(str(getattr(cause, "message", "") or exc).split())[:160]
        raise closing(json_error(400, "bad_body", f"request body does not decode: {why}")) from None
    if len(raw) > cap:
        raise closing(json_error(413, "too_large", f"request body over {cap} bytes"))
    return raw


async def read_capped(content: aiohttp.StreamReader, cap: int) -> bytes:
    """Up to ``cap + 1`` bytes of a body, to its end (``read(n)`` alone returns what has
    arrived so far, which may be part of a body sent in several segments)."""
    buf = bytearray()
    while len(buf) <= cap:
        part = await content.read(cap + 1 - len(buf))
        if not part:
            break
        buf += part
    return bytes(buf)


async def read_reply(r: aiohttp.ClientResponse, cap: int, typ: type[T]) -> T:
    """A JSON reply from another node (tracker, broadcaster): at most ``cap`` bytes read,
    decoded strictly into ``typ`` with bounded nesting; raises BadJson (a ValueError)."""
    raw = await read_capped(r.content, cap)
    if len(raw) > cap:
        raise BadJson(f"reply over {cap} bytes")
    return decode_json(raw, typ)


class TrackerReply(msgspec.Struct):
    """A tracker's answer to an announce, as a node reads it. The records and the descriptor
    stay untyped here: each is checked on its own (a bad one is left out and counted)."""

    peers: list[Any] = []
    descriptor: Any = None
    origin: str | None = None
    tickets: str | None = None
    interval: float = ANNOUNCE_INTERVAL


def json_depth_ok(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether brackets nest at most ``limit`` deep (outside strings): a cheap pre-check."""
    depth = 0
    in_str = esc = False
    for b in raw:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:
                esc = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif b in (0x5D, 0x7D):
            depth -= 1
    return True


#: a ``\uD800``-``\uDBFF`` escape (a UTF-16 high surrogate) not followed by a low one
_LONE_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def decode_json(raw: bytes, typ: type[T]) -> T:
    """Decode ``raw`` strictly into ``typ``; raises BadJson with a short reason."""
    if not json_depth_ok(raw):
        raise BadJson(f"JSON nested deeper than {MAX_JSON_DEPTH}")
    try:
        return msgspec.json.decode(raw, type=typ)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        reason = str(exc)
        if reason == "Input data was truncated" and _LONE_HIGH_SURROGATE.search(raw):
            # msgspec's word for a lone high surrogate (a string cut in a pair's middle)
            reason = "JSON is malformed: a \\uD800-\\uDBFF escape without its low surrogate"
        raise BadJson(reason[:200]) from None


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    """Refusals as JSON ``{"error", "message"}``, counted; a handler bug is a counted 500."""
    counters = request.app[HTTP_COUNTERS]
    try:
        return await handler(request)
    except web.HTTPException as err_in:
        exc = err_in
        if exc.status >= 400:
            key = f"http_{exc.status}"
            if key in counters or len(counters) < 64:
                counters[key] = counters.get(key, 0) + 1
            if exc.content_type != "application/json":
                text = (exc.text or exc.reason).strip()
                code = exc.reason.lower().replace(" ", "_")
                if exc.status in (404, 405) and text == f"{exc.status}: {exc.reason}":  # the router's
                    code, text = router_refusal(request, exc)
                err = json_error(exc.status, code, text)
                for h in ("Allow", "Retry-After", "Connection"):
                    if h in exc.headers:
                        err.headers[h] = exc.headers[h]
                exc = err
            # a refusal is never cached (a CDN in front of the origin cached 404s heuristically)
            exc.headers.setdefault("Cache-Control", "no-store")
            if exc is not err_in:
                raise exc from None
        raise
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        counters["http_internal_errors"] = counters.get("http_internal_errors", 0) + 1
        log.exception("HTTP handler failed on %s %s", request.method, request.path_qs[:200])
        raise json_error(500, "internal", "internal error (logged)") from None


#: the proof-of-relay routes (rewards_http), there only on a node run with --rewards
REWARDS_PATHS = frozenset({"/rewards", "/rewards/settle", "/tickets"})


def router_refusal(request: web.Request, exc: web.HTTPException) -> tuple[str, str]:
    """The code and message of the router's own 404 or 405: a rewards route on a node run
    without rewards is ``rewards_off`` (it read as a wrong URL), a 405 names the methods the
    path takes (also in ``Allow``)."""
    path = request.path[:200]
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return "method_not_allowed", (f"{request.method} is not allowed on {path}"
                                      + (f": it takes {allowed}" if allowed else ""))
    if path in REWARDS_PATHS:
        return "rewards_off", (f"{path} is served only by a broadcaster or viewer run with proof "
                               "of relay (`oasis broadcast|watch --rewards`); this server runs "
                               "without it")
    if path == "/":  # someone opened the server's address in a browser
        hint = request.app.get(ROOT_HINT)
        return "not_found", hint or ("no page here: the streams this node carries are listed at "
                                     "/streams, each played at /live/<stream-id>.ts (a desktop player) "
                                     "or /watch/<stream-id> (a browser); a file at /files/<cid>")
    return "not_found", f"no such route: {request.method} {path}"


#: what a server that is no gateway says at ``/`` (an edge: not the gateway's pages)
ROOT_HINT: web.AppKey[str] = web.AppKey("oasis_root_hint", str)


def harden(app: web.Application) -> dict[str, int]:
    """Install the JSON error middleware and its counters on ``app``; returns the counters."""
    if HTTP_COUNTERS not in app:
        app[HTTP_COUNTERS] = {"http_internal_errors": 0}
        app.middlewares.append(json_errors)
    return app[HTTP_COUNTERS]


NO_STORE = {"Cache-Control": "no-store"}  #: an answer that changes by the second: never cached


def metrics_response(registry: Any) -> web.Response:
    """``GET /metrics``: the Prometheus text exposition format, never cached."""
    return web.Response(body=render(registry), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff", **NO_STORE})


def own_streams(node: Node) -> Callable[[], list[str]]:
    """The ids of the streams ``node`` broadcasts (``add_tracker_routes(own=...)``)."""
    return lambda: [ls.text_id for ls in node.streams.values() if ls.is_source]


def _stream(node: Node, text: str) -> LiveStream:
    try:
        sid = StreamId.parse(text)
    except StreamIdError as exc:
        raise json_error(400, "bad_stream", str(exc)) from None
    ls = node.streams.get(sid.key)
    if ls is None:
        raise json_error(404, "no_stream", f"stream {text[:120]} is not carried by this node")
    return ls


def _playable(ls: LiveStream, request: web.Request) -> LiveStream:
    """``ls`` if this node can play it to ``request``: 403 ``no_key`` for an encrypted stream
    it relays without the content key, 403 ``local_only`` for an encrypted stream asked by
    anyone but a player on this machine (loopback, a loopback ``Host``, no proxy header;
    ``--public-metrics`` does not widen it), 502 ``unopened`` when its chunks do not open
    with the key it was given and none did yet (docs/oftp.md §7.2). Until the outside
    audit of 2026-12-06, a broadcaster's public face (its origin's) served its encrypted
    stream's media in clear to anyone who named it."""
    if ls.encrypted and not (is_loopback(request.remote or "")
                             and not any(h in request.headers for h in PROXY_HEADERS)
                             and host_is_loopback(request.headers.get("Host", ""))):
        counters = request.app.get(HTTP_COUNTERS)
        if counters is not None:
            counters["http_encrypted_refused"] = counters.get("http_encrypted_refused", 0) + 1
        raise json_error(403, "local_only", f"stream {ls.text_id} is end-to-end encrypted: its media is "
                         "played only to players on this node's machine (over loopback, addressed to "
                         "127.0.0.1 or localhost, not through a proxy)")
    if not ls.playable:
        raise json_error(403, "no_key", f"stream {ls.text_id} is end-to-end encrypted and this node "
                         "relays it without its content key (the k= of its link): it cannot be played here")
    if ls.unopened and ls.playout.start is None:
        raise json_error(502, "unopened", f"stream {ls.text_id}: its chunks do not open with the content "
                         f"key this node was given ({ls.unopened} tried): the link's k= is not this stream's")
    return ls


#: the web player's files (oasis/node/web; ``vendor/`` is built by the set-up from web/package.json)
WEB_DIR = Path(__file__).with_name("web")
#: what /web/ serves: the player's files only, by name (no path from the request reaches the disk)
WEB_FILES = {"watch.js": "text/javascript", "watch.css": "text/css",
             "vendor/mpegts.js": "text/javascript"}
#: the player page may load its own scripts and the media its script makes (blob:), nothing else
WEB_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; "
                                          "worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; "
                                          "form-action 'none'",
               "Referrer-Policy": "no-referrer"}


def add_web_player(app: web.Application, node: Node) -> None:
    """``/watch/<stream>``: a page that plays the stream in the browser (Media Source
    Extensions; its script transmuxes this gateway's ``/live/<stream>.ts``), and ``/web/``,
    its files. Read from the package once, at the first request of each."""
    cache: dict[str, bytes] = {}

    def read(name: str) -> bytes | None:
        if name not in cache:
            try:
                cache[name] = (WEB_DIR / name).read_bytes()
            except OSError:
                return None
        return cache[name]

    async def watch(request: web.Request) -> web.Response:
        _playable(_stream(node, request.match_info["sid"]), request)  # 400 / 403 / 404 as /live's
        page = read("watch.html")
        if page is None:
            raise json_error(404, "no_player", "this installation has no web player (oasis/node/web)")
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=WEB_HEADERS)

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = WEB_FILES.get(name)
        if kind is None:
            raise json_error(404, "no_file", "no such file of the web player")
        body = read(name)
        if body is None:
            raise json_error(404, "not_built", f"{name} was not built on this machine: run `make setup` "
                             "(it needs npm)")
        return web.Response(body=body, content_type=kind, charset="utf-8", headers=WEB_HEADERS)

    app.router.add_get(r"/watch/{sid:[a-z2-7]{52}\.[a-z0-9_-]{1,32}}", watch)
    app.router.add_get(r"/web/{name:[a-z0-9./-]{1,40}}", asset)


def add_gateway_routes(app: web.Application, node: Node, *, tracker: Tracker | None = None) -> None:
    http_counters = harden(app)
    registry = make_registry(node, tracker=tracker, http_counters=http_counters)

    players = PlayerSlots(MAX_PLAYERS, MAX_PLAYERS_PER_IP)

    async def live(request: web.Request) -> web.StreamResponse:
        ls = _playable(_stream(node, request.match_info["sid"]), request)
        with players.slot(request, http_counters, "live_refused", "too_many_players", "this gateway serves"):
            return await play(request, ls)

    async def play(request: web.Request, ls: LiveStream) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "video/mp2t", "Cache-Control": "no-store"})
        await resp.prepare(request)
        if request.method == "HEAD":  # the headers only (it ran, writing nothing, for ever)
            return resp
        pl = ls.playout
        deadline = time.monotonic() + LIVE_STALL_END  # nothing yet: ends like a stall
        while pl.start is None:
            if time.monotonic() > deadline:
                return resp
            try:
                await asyncio.wait_for(pl.changed.wait(), 1.0)
            except TimeoutError:
                pass
        # Start at the newest keyframe held, so the player begins near the live edge.
        seq = max((s for s in pl.chunks if s >= pl.start and node_keyframe(ls, s)), default=pl.start)
        if request.query.get("from") == "start":
            seq = pl.start
        fell_out = 0
        try:
            wrote = looked = time.monotonic()
            pcr: int | None = None  #: the last PCR written
            while True:
                if seq in pl.chunks:
                    data = pl.chunks[seq]
                    p = first_pcr(data)
                    if p is not None:
                        if pcr is not None and pcr_went_back(pcr, p, CLOCK_BACK):
                            # The media's clock went back: a broadcaster restarted after a
                            # crash (no end marker came to end the response, as a clean stop's
                            # does) starts a file's or a pipe's timestamps afresh (the test
                            # pattern's run on), and a player carried on over them saw them go back ~9 s
                            # with no discontinuity flagged (found 2026-12-07 from outside).
                            # Ended here as at an end marker; the web player asks again and
                            # starts on the new clock. (Not at the new run's first chunk,
                            # FLAG_RUN_START: a viewer linked after its deadline never holds
                            # it, and a clock that runs on needs no end.)
                            http_counters["live_clock_back_ended"] = \
                                http_counters.get("live_clock_back_ended", 0) + 1
                            await resp.write_eof()
                            return resp
                        pcr = p
                    await write_or_drop(request, resp, data, http_counters)
                    wrote = time.monotonic()
                    seq += 1
                    continue
                if pl.end is not None and seq >= pl.end:  # the broadcaster ended the stream
                    http_counters["live_ended"] = http_counters.get("live_ended", 0) + 1
                    await resp.write_eof()
                    return resp
                t = time.monotonic()
                if t - looked > 2 * LIVE_WAIT:
                    # this loop looks at least every LIVE_WAIT s: a longer gap was our own
                    # process stopped (a laptop asleep, SIGSTOP), not the stream stalling.
                    # The stream gets its LIVE_STALL_END from now (the response ended at
                    # the wake; found 2026-12-06 from outside)
                    wrote = t
                looked = t
                if t - wrote > LIVE_STALL_END and ls.swarm.log.latest < seq:
                    # (nothing newer held: the stream stalled)
                    http_counters["live_stalled_ended"] = http_counters.get("live_stalled_ended", 0) + 1
                    await resp.write_eof()
                    return resp
                low = pl.lowest()
                if low is not None and seq < low:
                    fell_out += 1
                    if fell_out >= LIVE_FALLS_OUT:
                        http_counters["http_behind_readers_dropped"] = \
                            http_counters.get("http_behind_readers_dropped", 0) + 1
                        if request.transport is not None:
                            request.transport.abort()
                        raise ConnectionResetError("the player fell out of the window twice")
                    # gone from the window: on to the lowest held at once (one seq at a time,
                    # each with min() over the window, froze the event loop for ~2 s a request
                    # after 2 h of 33 ms chunks with ?from=start, which any web page can ask for)
                    seq = low
                    continue
                repair = ls.swarm.repair
                if ((seq in pl.skipped or seq <= repair.skipped_upto) and seq not in repair.wants
                        and ls.swarm.log.latest > seq):
                    # given up (the playout's own list keeps the newest 600: a node that fell
                    # far behind gives up more at once, and its player waited on the first of
                    # them until it left the window, ~19 s) -- and passed over only once a
                    # newer chunk is held: a source that paused has its seqs given up as not
                    # made, then makes them; a player that ran ahead meanwhile lost what came
                    # after the pause (found 2026-12-07 from outside). One wanted again waits.
                    seq += 1
                    continue
                changed = pl.changed
                try:
                    await asyncio.wait_for(changed.wait(), LIVE_WAIT)
                except TimeoutError:
                    if ls.swarm.log.latest < seq:
                        continue
                    seq += 1
        except ConnectionResetError:  # the player left (or read nothing: dropped, counted)
            # (a traceback per player that closed, which any web page can do in a loop)
            http_counters["live_players_gone"] = http_counters.get("live_players_gone", 0) + 1
            return resp

    async def streams(request: web.Request) -> web.Response:
        # a stranger sees the streams this node broadcasts, not those it watches or relays
        shown = [ls for ls in node.streams.values() if ls.is_source or from_operator(request)]
        return web.json_response([stream_summary(ls) for ls in shown], headers=NO_STORE)

    detail_cache: list[tuple[float, bytes]] = []

    async def stats(request: web.Request) -> web.Response:
        require_operator(request, "/stats")
        if request.query.get("detail") != "1":
            return web.json_response(node_stats(node), headers=NO_STORE)
        now = time.monotonic()
        if not detail_cache or now - detail_cache[0][0] >= DETAIL_EVERY:
            detail_cache[:] = [(now, msgspec.json.encode(node_stats(node, detail=True)))]
        return web.Response(body=detail_cache[0][1], content_type="application/json", headers=NO_STORE)

    async def metrics(request: web.Request) -> web.Response:
        require_operator(request, "/metrics")
        return metrics_response(registry)

    app.router.add_get(r"/live/{sid:[a-z2-7]{52}\.[a-z0-9_-]{1,32}}.ts", live)
    add_web_player(app, node)
    app.router.add_get("/streams", streams)
    app.router.add_get("/stats", stats)
    app.router.add_get("/metrics", metrics)


class PlayerSlots:
    """Long responses (``/live``, file reads) held at once: at most ``total``, and at most
    ``per_ip`` from one source address (loopback exempt: the local player is the point)."""

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self.held = 0
        self._by_ip: dict[str, int] = {}

    def refuse(self, ip: str) -> str:
        """Why ``ip`` may not have one more now ("" if it may)."""
        if self.held >= self.total:
            return f"{self.total} at once"
        if not is_loopback(ip) and self._by_ip.get(source_key(ip), 0) >= self.per_ip:
            return f"{self.per_ip} at once per address"
        return ""

    def take(self, ip: str) -> None:
        self.held += 1
        key = source_key(ip)  # an IPv6 /64 counts as one address
        self._by_ip[key] = self._by_ip.get(key, 0) + 1

    def give(self, ip: str) -> None:
        self.held -= 1
        ip = source_key(ip)
        left = self._by_ip[ip] - 1
        if left:
            self._by_ip[ip] = left
        else:
            del self._by_ip[ip]

    @contextlib.contextmanager
    def slot(self, request: web.Request, counters: dict[str, int], counter: str, code: str,
             what: str) -> Iterator[None]:
        """One of these for ``request``'s address while the ``with`` body runs; if there is
        none, a 429 ``code`` saying ``what`` "at most ..." (counted as ``counter``)."""
        ip = request.remote or ""
        why = self.refuse(ip)
        if why:
            counters[counter] = counters.get(counter, 0) + 1
            raise json_error(429, code, f"{what} at most {why}".strip())
        self.take(ip)
        try:
            yield
        finally:
            self.give(ip)


def node_keyframe(ls: LiveStream, seq: int) -> bool:
    c = ls.swarm.log.get(seq)
    return c is not None and bool(c.flags & 1)


CHUNK_CACHE = "public, max-age=86400, immutable"


def descriptor_response(request: web.Request, d: Descriptor) -> web.Response:
    """A signed descriptor: ``no-cache`` (a newer one may replace it), with its signature as
    a strong ETag, so that a cache revalidates it with ``If-None-Match`` for a 304."""
    headers = {"Cache-Control": "no-cache", "ETag": f'"{d.signature[:12].hex()}"'}
    same = conditional(request, headers["ETag"], headers)
    if same is not None:
        return same
    return web.json_response(d.to_json(), headers=headers)


#: chunk feeds (``GET /origin/<stream>/feed``) an origin serves at once, and per source address:
#: each costs the stream's bitrate, so they are for the CDN edges in front of it
#: (:mod:`oasis.node.edge`), a few per region, not for viewers (whose fallback asks per chunk)
MAX_FEEDS = 32
MAX_FEEDS_PER_IP = 2
#: a feed with no new chunk to write for this long ends (the broadcaster stopped); the edge
#: reconnects if it still serves the stream
FEED_STALL_END = 10.0
FEED_WRITE_MAX = 1 << 20  #: bytes of frames a feed writes at once (a backlog goes in pieces)
FEED_FRAME = struct.Struct(">I")  #: a feed frame: this length, then the chunk's bytes
#: on a chunk a CDN edge held until its feed brought it: how long, in whole ms (0-10000)
HELD_HEADER = "Oasis-Held-Ms"
_HELD_RE = re.compile(r"[0-9]{1,5}")


def feed_gone(request: web.Request) -> bool:
    """The client of a long response has closed its connection. Looked at after each wait
    for a chunk (1 s). The node's own server cancels a handler whose client closed
    (``handler_cancellation`` in ``runtime.start_http``); a server that does not (an edge's
    routes in another application) would let a feed learn it only at its next write, which
    on a stalled stream comes at ``FEED_STALL_END``, holding its slot (of ``MAX_FEEDS``)
    that long."""
    t = request.transport
    return t is None or t.is_closing()


def held_seconds(value: str | None) -> float:
    """``Oasis-Held-Ms`` as seconds; 0 if absent or not 1-5 ASCII digits within 10,000
    (an edge's word, used only to time this node's own fetches, never beyond their duration)."""
    if value is None or not _HELD_RE.fullmatch(value):
        return 0.0
    ms = int(value)
    return ms / 1000 if ms <= 10_000 else 0.0


def feed_frame(body: bytes) -> bytes:
    """One frame of a chunk feed: the 4-byte big-endian length of ``body``, then ``body``
    (the bytes of ``<seq>.chunk``: an OFTP CHUNK message, signed by the broadcaster)."""
    return FEED_FRAME.pack(len(body)) + body


def add_origin_routes(app: web.Application, node: Node,
                      descriptors: dict[str, Descriptor] | None = None) -> None:
    """Origin routes; ``descriptors`` maps a stream id to its signed descriptor (kept current)."""
    counters = harden(app)
    held = descriptors if descriptors is not None else {}
    feeds = PlayerSlots(MAX_FEEDS, MAX_FEEDS_PER_IP)
    #: the newest chunks' wire bytes, encoded once for every feed and GET (seq -> bytes)
    encoded: dict[tuple[bytes, int], bytes] = {}

    def chunk_bytes(ls: LiveStream, c: wire.ChunkMsg) -> bytes:
        key = (ls.sid.key, c.seq)
        body = encoded.get(key)
        if body is None:
            body = encoded[key] = wire.encode(c)
            if len(encoded) > 256:  # oldest first (insertion order)
                del encoded[next(iter(encoded))]
        return body

    def origin_stream(request: web.Request) -> LiveStream:
        # an id in upper case is the stream's, spelled otherwise: 404 not_canonical (the name
        # part in upper case was a 400 bad_stream), by canonical_only below
        return _stream(node, request.match_info["sid"].lower())

    @any_host
    async def chunk(request: web.Request) -> web.Response:
        ls = origin_stream(request)
        seq_text = request.match_info["seq"]
        if not _SEQ_RE.match(seq_text):
            raise json_error(400, "bad_seq", "sequence number must be a decimal integer of 1-19 digits")
        seq = int(seq_text)
        canonical_only(request, f"/origin/{ls.text_id}/{seq}.chunk", f"chunk {seq}")
        c = ls.swarm.log.get(seq)
        if c is None:
            log_ = ls.swarm.log
            raise json_error(404, "no_chunk", f"chunk {seq} is not (or no longer) held: this origin "
                             f"keeps at most {log_.low}..{max(log_.latest, 0)} (since its start, if later); latest.json says where the "
                             "stream is")
        # the signature is over the stream, seq, time, flags and payload hash: a strong tag
        headers = {"Cache-Control": CHUNK_CACHE, "ETag": f'"{c.signature[:12].hex()}"'}
        same = conditional(request, headers["ETag"], headers)
        if same is not None:
            return same
        return web.Response(body=chunk_bytes(ls, c), content_type="application/x-oftp-chunk",
                            headers=headers)

    @any_host
    async def feed(request: web.Request) -> web.StreamResponse:
        # Every chunk as it is made, from the newest keyframe on: what a CDN edge follows to
        # hold a live stream's chunks before any viewer asks (oasis.node.edge; docs/oftp.md).
        ls = origin_stream(request)
        canonical_only(request, f"/origin/{ls.text_id}/feed", "the feed")
        with feeds.slot(request, counters, "feeds_refused", "too_many_feeds", "this origin serves chunk feeds"):
            return await feed_out(request, ls)

    @any_host
    async def feed_newest(request: web.Request) -> web.StreamResponse:
        # The same feed from the newest chunk on: an edge that starts following takes one of
        # each. From the keyframe, a fresh TCP connection to a far edge carries up to a GOP
        # of backlog first (~190 kB at 1.5 Mbit/s, several round trips of slow start) and the
        # live chunks queue behind it (the testbed, eight pairs: misses before a newcomer's
        # first frame 348 -> 314 a run; docs/benchmarks.md, session 39). Same slots.
        ls = origin_stream(request)
        canonical_only(request, f"/origin/{ls.text_id}/feed/newest", "the feed from the newest chunk")
        with feeds.slot(request, counters, "feeds_refused", "too_many_feeds", "this origin serves chunk feeds"):
            return await feed_out(request, ls, newest=True)

    async def feed_out(request: web.Request, ls: LiveStream, newest: bool = False) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-oftp-chunks",
                                           "Cache-Control": "no-store"})
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        log_ = ls.swarm.log
        if newest:
            seq = max(log_.latest, 0)
        else:
            seq = log_.latest_keyframe if log_.latest_keyframe >= 0 else max(log_.latest, 0)
        wrote = time.monotonic()
        behind = Behind()
        try:
            while True:
                # Every chunk made since the last write goes in one write: a write per chunk
                # costs the handler an event-loop turn each, and a broadcaster's loop short of
                # CPU (30 nodes on 2 cores) turned ~11 times a second: its feeds fell 7-19 s
                # behind at 30 chunks a second.
                seq = max(seq, log_.low)  # fell out of the window: on from the lowest held
                frames, size = [], 0
                while seq <= log_.latest and size < FEED_WRITE_MAX:
                    c = log_.get(seq)
                    seq += 1
                    if c is not None:  # (not held: never made)
                        frames.append(feed_frame(chunk_bytes(ls, c)))
                        size += len(frames[-1])
                if frames:
                    await write_or_drop(request, resp, b"".join(frames), counters)
                    wrote = time.monotonic()
                    behind.check(log_.latest - seq + 1, wrote, request, counters)
                    continue
                if time.monotonic() - wrote > FEED_STALL_END:
                    await resp.write_eof()
                    return resp
                changed = ls.playout.changed
                try:
                    await asyncio.wait_for(changed.wait(), 1.0)
                except TimeoutError:
                    pass
                if feed_gone(request):
                    raise ConnectionResetError("the feed's client closed its connection")
        except ConnectionResetError:
            counters["feeds_gone"] = counters.get("feeds_gone", 0) + 1
            return resp

    @any_host
    async def latest(request: web.Request) -> web.Response:
        ls = origin_stream(request)
        canonical_only(request, f"/origin/{ls.text_id}/latest.json", "latest.json")
        log = ls.swarm.log
        return web.json_response({"latest": log.latest, "keyframe": log.latest_keyframe,
                                  "time": log.time_of(log.latest) if log.latest >= 0 else None},
                                 headers={"Cache-Control": "no-cache"})

    @any_host
    async def clock(request: web.Request) -> web.Response:
        # The broadcaster's clock, which signs the chunks' times: viewers run their stream on
        # it (oasis.core.clocksync). Never cached: a CDN passes it through.
        ls = origin_stream(request)
        canonical_only(request, f"/origin/{ls.text_id}/time", "time")
        return web.json_response({"now_us": int(node.clock() * 1e6)},
                                 headers={"Cache-Control": "no-store"})

    @any_host
    async def descriptor(request: web.Request) -> web.Response:
        ls = origin_stream(request)
        canonical_only(request, f"/origin/{ls.text_id}/descriptor", "the descriptor")
        d = held.get(ls.text_id)
        if d is None:
            raise json_error(404, "no_descriptor", "this origin has no descriptor for that stream")
        return descriptor_response(request, d)

    app.router.add_get(r"/origin/{sid}/descriptor", descriptor)
    app.router.add_get(r"/origin/{sid}/{seq}.chunk", chunk)
    app.router.add_get(r"/origin/{sid}/latest.json", latest)
    app.router.add_get(r"/origin/{sid}/time", clock)
    app.router.add_get(r"/origin/{sid}/feed", feed)
    app.router.add_get(r"/origin/{sid}/feed/newest", feed_newest)


def add_tracker_routes(app: web.Application, tracker: Tracker, *, metrics: bool = False,
                       own: Callable[[], list[str]] | None = None) -> None:
    """Tracker routes, plus a task that sweeps expired entries every ``SWEEP_INTERVAL`` s.

    ``metrics``: also serve ``/metrics`` (a stand-alone tracker, with no node's gateway).
    ``own``: the ids of the streams the node that embeds this tracker broadcasts, the only
    ones ``GET /tracker/streams`` lists to a stranger (:func:`from_operator`: all of them).
    """
    http_counters = harden(app)
    registry = make_registry(None, tracker=tracker, http_counters=http_counters)

    async def sweeper(app: web.Application) -> AsyncIterator[None]:
        async def run() -> None:
            while True:
                await asyncio.sleep(SWEEP_INTERVAL)
                tracker.sweep(time.time())
        task = asyncio.create_task(run())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(sweeper)

    def refused(exc: TrackerRefused) -> web.HTTPException:
        """The tracker's refusal; ``rate_limited`` says when a token is back (``Retry-After``,
        whole seconds: it had no header, found 2026-12-06 from outside)."""
        err = json_error(exc.status, exc.code, str(exc))
        if exc.code == "rate_limited":  # (a full table's 429 has no time to say)
            err.headers["Retry-After"] = str(max(1, math.ceil(1 / max(tracker.source_rate, 1e-3))))
        return err

    async def announce(request: web.Request) -> web.Response:
        # Refused before its body is read, a request's connection cannot carry another
        # (the body is still on it): the answer says so (Connection: close).
        try:  # charged before the body is read: junk bodies were never rate-limited
            tracker.admit_request(request.remote or "", time.time())
        except TrackerRefused as exc:
            raise closing(refused(exc)) from None
        if request.content_type != "application/json":
            # a cross-site page can POST text/plain without asking (no CORS preflight): it
            # made visitors' browsers announce ids at their addresses (any port)
            tracker.counters["bad_requests"] += 1
            raise closing(json_error(415, "bad_content_type", "an announce is application/json"))
        raw = await read_body(request, MAX_ANNOUNCE_BODY)
        try:
            body = decode_json(raw, AnnounceBody)
            a = announce_from_json(body)
            d = descriptor_from_body(body.descriptor) if body.descriptor is not None else None
        except (AnnounceError, DescriptorError) as exc:
            tracker.counters["bad_requests"] += 1
            raise json_error(400, exc.code, str(exc)) from None
        except BadJson as exc:
            tracker.counters["bad_requests"] += 1
            raise json_error(400, "bad_announce", str(exc)) from None
        try:
            peers = tracker.submit(a, request.remote or "", time.time(), d, admitted=True)
        except TrackerRefused as exc:
            raise refused(exc) from None
        return web.json_response(tracker_reply(tracker, str(a.stream), peers), headers=NO_STORE)

    async def descriptor(request: web.Request) -> web.Response:
        sid = request.match_info["sid"].lower()  # (in upper case: another spelling, not_canonical)
        canonical_only(request, f"/tracker/descriptor/{sid}", "a descriptor")
        d = tracker.descriptors.get(sid)
        if d is None:
            raise json_error(404, "no_descriptor", "this tracker holds no descriptor for that stream "
                             "(is its broadcaster announcing here?)")
        return descriptor_response(request, d)

    async def metrics_route(request: web.Request) -> web.Response:
        require_operator(request, "/metrics")
        return metrics_response(registry)

    async def listing(request: web.Request) -> web.Response:
        shown: Iterator[tuple[str, Any]]
        if from_operator(request):
            shown = itertools.islice(tracker.streams.items(), 1000)
        else:  # a stranger enumerated every stream announced here: only this node's own
            mine = own() if own is not None else []
            shown = ((s, tracker.streams[s]) for s in itertools.islice(mine, 1000) if s in tracker.streams)
        return web.json_response({s: len(p) for s, p in shown}, headers=NO_STORE)

    app.router.add_post("/tracker/announce", announce)
    app.router.add_get("/tracker/streams", listing)
    app.router.add_get(r"/tracker/descriptor/{sid}", descriptor)
    if metrics:
        app.router.add_get("/metrics", metrics_route)


def tracker_reply(tracker: Tracker, stream: str, peers: list[TrackedPeer]) -> dict[str, Any]:
    """The announce reply: signed peer records, the stream's signed descriptor, the interval."""
    d = tracker.descriptors.get(stream)
    return {"peers": [p.record.record() for p in peers if p.record is not None],
            "descriptor": d.to_json() if d is not None else None,
            "origin": d.fetch_url if d is not None else None,
            "tickets": d.tickets if d is not None else None,
            "interval": ANNOUNCE_INTERVAL}


# ---- reports -----------------------------------------------------------------

def stream_summary(ls: LiveStream) -> dict[str, Any]:
    sw = ls.swarm
    rec = ls.record
    lat = sorted(rec.lat[-SUMMARY_LATENCIES:])
    return {
        "stream_id": ls.text_id,
        "role": "broadcaster" if ls.is_source else "viewer",
        "latest": sw.log.latest,
        "start": sw.start_seq,
        "neighbours": len(sw.peers),
        "depth": [len(p) - 1 if p else None for p in sw.paths],
        "bytes": rec.bytes_by_source,
        "latency_p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
        "chunks": rec.verified,
        "skipped": rec.given_up,
        "unmade": rec.unmade,
        # end-to-end encrypted (docs/oftp.md §7.2), and the chunks whose media did not open
        # with our content key; ``playable`` false: relayed here without the key
        "encrypted": ls.encrypted,
        "playable": ls.playable,
        "unopened": ls.unopened,
        "player_url": f"/live/{ls.text_id}.ts",
        "web_url": f"/watch/{ls.text_id}",  # (the browser's page: add_web_player)
        # a viewer's start: s from its join to each step (node.START_STEPS), the start
        # keyframe's age and the chunks lost to a late start (LiveStream.start_trace)
        "start_trace": dict(ls.start_trace),
        "start_source": ls.start_source,
        # our clock minus the broadcaster's, s (the stream runs on the latter; clocksync)
        "clock_offset": round(ls.clock_offset, 4),
        # the broadcaster's end marker's seq once it ended the stream (None: it runs)
        "end": sw.end_seq if sw.end_seq >= 0 else None,
    }


def node_stats(node: Node, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "peer_id": node.peer_id,
        "traffic": node.traffic(),
        # how late its event loop ran what was due, the last minute (node.looplag)
        "loop_lag_ms": node.loop_lag.figures(),
        "counters": dict(node.counters) | {f"endpoint_{k}": v for k, v in node.endpoint.counters.items()},
        "streams": [],
    }
    if detail:
        m = node.policy.mapping
        out["nat"] = {"kind": m.kind.name.lower(), "public": None if m.public is None else list(m.public),
                      "announced": list(node.announce_address()),
                      "punch_connect_ms": [[k.hex()[:16], round(x * 1000, 1)]
                                           for k, x in node.policy.punch_connect_s],
                      "neighbours": [k.hex()[:16] for k in node.policy.peers]}
        # each QUIC link's transport state (as ``ss -ti`` for TCP): whether a link is held back
        # by its congestion window (in flight near the window) and how much it lost
        out["links"] = [_link_detail(link) for link in node.endpoint.links]
    for ls in node.streams.values():
        s = stream_summary(ls)
        s["swarm_counters"] = counter_dict(ls.swarm.counters)
        s["upload"] = counter_dict(ls.swarm.upload.counters)
        s["origin_fetches"] = ls.origin_fetches
        s["origin_failures"] = ls.origin_failures
        s["origin_late"] = ls.origin_late  # of the failures: arrived within the late grace
        s["origin_refused"] = ls.origin_refused  # answered, but not with the chunk (404)
        s["origin_held"] = ls.origin_held  # answered by a CDN edge that held the request for it
        # how long the last fetches that returned a chunk took (ms, less an edge's hold), and those
        # of them that returned after its deadline (asked late, or slow; a peer may have been first)
        s["origin_fetch_ms"] = ms_figures(ls.fetch_times)
        s["origin_fetch_late_ms"] = ms_figures(ls.fetch_times_late)
        # a viewer: s from its join until a parent had pushed it a chunk on every substream
        # (null until then, and at a broadcaster): how long it leaned on the origin at its start
        s["fed_s"] = ls.fed_s
        # chunks the player got from the origin before ``fed_s`` (at its start) and after it
        s["origin_chunks"] = {"unfed": ls.origin_unfed, "fed": ls.origin_fed}
        s["origin_error"] = ls.origin_error  # the last failed fetch's error ("" = none yet)
        s["origin_starts"] = ls.swarm.counters.origin_starts
        s["origin_prefetched"] = ls.origin_prefetched  # of those, with the join's latest.json
        s["origin_prefetch_failed"] = ls.origin_prefetch_failed  # that read failed (read again)
        if ls.swarm.repair.distrust_log:  # (``repair_guard``) whom it distrusted, and why
            s["repair_distrusted"] = [{"peer": key.hex()[:16], "at": round(at, 3), "reason": why}
                                      for key, at, why in ls.swarm.repair.distrust_log]
        if detail:  # the last DETAIL_SEQS chunks (a run of 10 min at 33 ms is whole)
            since = ls.swarm.log.latest - DETAIL_SEQS
            s["record"] = ls.record.to_json(since=since, at=ls.now())
            if ls.is_source:
                s["produced"] = {str(k): v for k, v in ls.produced.items() if k >= since}
            # per substream, the tree path that feeds us: the peer tags (identity.peer_tag) from
            # the broadcaster down to us ([]: no feed); where in the trees this node sits
            s["paths"] = [[t.hex() for t in p] for p in ls.swarm.paths]
        out["streams"].append(s)
    return out


def _link_detail(link: Link) -> dict[str, Any]:
    key = link.peer_key
    cwnd, flight, lost, ptos = link.stack.window(link.quic)
    rtt = link.rtt
    return {"peer": None if key is None else peer_tag(key).hex(), "rtt_ms": round(rtt * 1000, 1) if rtt >= 0 else None,
            "cwnd": cwnd, "in_flight": flight, "lost": lost, "ptos": ptos}


def prometheus(node: Node, tracker: Tracker | None = None) -> str:
    """The node's metrics in the Prometheus text format (a fresh registry; for one-off use)."""
    return render(make_registry(node, tracker=tracker)).decode()
