"""The local API's endpoints: one handler per route, declared with its types.

Each ``@route`` adds a :class:`Route` to :data:`ROUTES` -- method, path, summary, the
request Struct it decodes and the response type it answers with (from
:mod:`oasis.sdk.types`), and the node service it needs. :mod:`oasis.node.api` builds the
aiohttp app and the OpenAPI document from that table, and owns everything in front of
the handlers (Host/Origin guard, token, body caps, error mapping). A handler gets the
:class:`Api` state, the request and the decoded body, and returns a value msgspec
encodes; it raises :class:`ApiError` (or a service's ``ValueError``/``LookupError``/
``PermissionError``, mapped by the dispatcher).
"""

from __future__ import annotations

import asyncio
import math
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from oasis.core import dm
from oasis.core.content import ContentError, parse_cid
from oasis.core.identity import key_of_peer_id, peer_id_of
from oasis.core.stream import StreamId, StreamIdError
from oasis.core.streamlink import LinkError, check_tracker, is_link
from oasis.core.streamlink import parse as parse_link
from oasis.sdk import types as t

from . import http, outbound
from .node import Node
from .streaming import Streaming

VERSION = "0.1.0"
MAX_LIST = 1000  #: items in one list answer
COUNTERS = ("unauthorized", "bad_host", "bad_origin", "bad_request", "too_large", "body_timeout",
            "not_found", "rate_limited", "busy", "refused", "internal_errors", "ws_refused", "ws_lagged")
DATA_DIR = web.AppKey("oasis_api_data_dir", str)


class ApiError(Exception):
    """A refusal: status, stable code and a sentence saying what to do (``headers``: extra
    response headers, e.g. ``Retry-After``)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


# ---- routes -------------------------------------------------------------------------------

Handler = Callable[["Api", web.Request, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    response: Any  #: a type from oasis.sdk.types (for the OpenAPI document)
    request: type | None = None
    status: int = 200
    service: str | None = None  #: node attribute it needs ("messaging", "files")
    query: tuple[str, ...] = ()  #: the query parameters it takes (any other is 400 bad_query)


ROUTES: list[Route] = []


def route(method: str, path: str, summary: str, response: Any, *, request: type | None = None,
          status: int = 200, service: str | None = None,
          query: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        ROUTES.append(Route(method, path, fn, summary, response, request, status, service, query))
        return fn
    return deco


def check_query(request: web.Request, allowed: tuple[str, ...]) -> None:
    """400 ``bad_query`` for a query parameter the route does not take, or one given twice:
    ``?limt=5`` (a typo) and ``?limit=5&limit=500`` were ignored or half-read, silently."""
    q = request.query
    for name in q:
        if name not in allowed:
            takes = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
            raise ApiError(400, "bad_query", f"unknown query parameter {name[:64]!r} "
                           f"({request.method} {request.path[:120]}: {takes})")
        if len(q.getall(name)) > 1:
            raise ApiError(400, "bad_query", f"query parameter {name[:64]!r} given more than once")


class Api:
    """The API's state: the node, its stream service, the token and the counters."""

    def __init__(self, node: Node, token: str, *, streaming: Streaming | None = None,
                 http_base: str | None = None) -> None:
        self.node = node
        self.token = token
        self.streaming = streaming
        self.http_base = http_base
        self.url = ""  #: set once listening
        self.started = time.monotonic()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.inflight = 0

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def service(self, name: str) -> Any:
        svc = getattr(self.node, name, None)
        if svc is None:
            raise ApiError(501, "not_available", f"this node does not run {name}")
        return svc

    def stream_info(self, ls: Any) -> t.StreamInfo:
        s = http.stream_summary(ls)
        total = sum(s["bytes"].values())
        delivered, skipped = s["chunks"], s["skipped"]
        base = self.streaming.gateway if self.streaming is not None else self.http_base
        s["player_url"] = f"{base or ''}{s['player_url']}"
        s["web_url"] = f"{base or ''}{s['web_url']}"
        managed = self.streaming is not None and ls.text_id in self.streaming.managed
        link = self.streaming.links.get(ls.text_id) if self.streaming is not None else None
        # (an encrypted stream's chunks that did not open with our key reached no player)
        lost = skipped + s["unopened"]
        return t.StreamInfo(
            **s, continuity=delivered / (delivered + lost) if delivered + lost else None,
            offload=(s["bytes"].get("p2p", 0) / total) if total else None, managed=managed, link=link)


def _stream_id(text: str) -> StreamId:
    try:
        return StreamId.parse(text)
    except StreamIdError as exc:
        raise ApiError(400, "bad_stream_id", str(exc)) from None


def _peer_key(text: str) -> bytes:
    try:
        return key_of_peer_id(text)
    except ValueError as exc:
        raise ApiError(400, "bad_peer_id", f"peer id {text[:64]!r}: {exc}") from None


def _limit(request: web.Request) -> tuple[int, float | None]:
    q = request.query
    text = q.get("limit", "100")
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIST:
        raise ApiError(400, "bad_query", f"limit must be an integer 1..{MAX_LIST}")
    after = None
    if "after" in q:
        try:
            after = float(q["after"]) if q["after"].isascii() else math.nan
        except ValueError:
            after = math.nan
        if not math.isfinite(after):
            raise ApiError(400, "bad_query", "after must be a finite number (a time in seconds)")
    return int(text), after


@route("GET", "/v1/node", "This node: peer id, version, addresses, uptime", t.NodeInfo)
async def get_node(api: Api, request: web.Request, body: None) -> t.NodeInfo:
    n = api.node
    services = [s for s in ("messaging", "files", "rewards") if getattr(n, s, None) is not None]
    if api.streaming is not None and api.streaming.base is not None:
        services.append("publish")
    return t.NodeInfo(peer_id=n.peer_id, version=VERSION, oftp=f"{n.host}:{n.port}",
                      http=api.http_base, api=api.url, uptime_s=round(time.monotonic() - api.started, 3),
                      streams=len(n.streams), neighbours=n.neighbour_count(), services=services,
                      counters=dict(api.counters))


@route("GET", "/v1/streams", "Streams this node carries, with their live figures", list[t.StreamInfo])
async def list_streams(api: Api, request: web.Request, body: None) -> list[t.StreamInfo]:
    return [api.stream_info(ls) for ls in list(api.node.streams.values())[:MAX_LIST]]


@route("GET", "/v1/streams/{stream_id}", "One stream's live figures", t.StreamInfo)
async def get_stream(api: Api, request: web.Request, body: None) -> t.StreamInfo:
    sid = _stream_id(request.match_info["stream_id"])
    ls = api.node.streams.get(sid.key)
    if ls is None:
        raise ApiError(404, "not_found", f"stream {sid} is not carried by this node")
    return api.stream_info(ls)


def _streaming(api: Api) -> Streaming:
    if api.streaming is None:
        raise ApiError(501, "not_available", "this node cannot start or stop streams")
    return api.streaming


async def _check_source(source: str) -> None:
    """Refuse (400 ``bad_source``) a source the stream could not open, where that is cheap
    to know before the stream exists: stdin, an unknown scheme, a relative path, a file
    that is missing or not MPEG-TS (its head is read), a UDP port that cannot be bound
    (bound and released again: the stream binds it a moment later)."""
    from oasis.media.ingest import SOURCE_SPEC_HELP, check_udp_source, open_source

    def refused(exc: ValueError) -> ApiError:
        # (the parser's help names stdin, which the API refuses: the API's choices instead)
        why = str(exc).replace(SOURCE_SPEC_HELP, "expected 'test', 'udp://HOST:PORT' or the "
                               "absolute path of an MPEG-TS file (stdin cannot be given through the API)")
        return ApiError(400, "bad_source", why)

    if source == "test":
        return
    if source == "-":
        raise ApiError(400, "bad_source", "source '-' (stdin) cannot be given through the API: send "
                       "MPEG-TS to udp://127.0.0.1:PORT, or pipe it into `oasis broadcast -`")
    if source.startswith("udp://"):
        try:
            await check_udp_source(source)
        except ValueError as exc:
            raise refused(exc) from None
        return
    if "://" not in source and not os.path.isabs(source):
        raise ApiError(400, "bad_source", f"source {source[:200]!r}: give an absolute path (the node "
                       "does not resolve a relative path against its own working directory)")
    try:
        # a file: there, readable, MPEG-TS, a keyframe in it (nothing starts until iterated);
        # in a thread: the keyframe probe reads up to 64 MiB (~0.3 s), the node relays meanwhile
        await asyncio.to_thread(open_source, source, 100)
    except ValueError as exc:
        raise refused(exc) from None


@route("POST", "/v1/streams", "Publish a live stream from this node", t.PublishResult,
       request=t.PublishRequest, status=201)
async def publish_stream(api: Api, request: web.Request, body: t.PublishRequest) -> t.PublishResult:
    streaming = _streaming(api)
    sid = StreamId(api.node.identity.public, body.name)
    if streaming.base is not None and sid.key not in api.node.streams:  # else publish says why not
        await _check_source(body.source)
    res = await streaming.publish(body.name, body.source, bitrate_kbps=body.bitrate_kbps,
                                  chunk_ms=body.chunk_ms, encrypt=body.encrypt)
    return msgspec.convert(res, t.PublishResult)


TRACKER_PROBE_TIMEOUT = 3.0  #: s to see whether a tracker answers at all


def _tracker_url(text: str) -> str:
    """A tracker URL given in a request: http(s) with a host (``bad_tracker`` if not, the
    code the link parser gives a link's tracker)."""
    try:
        return check_tracker(text)  # the link parser's rule for t=
    except LinkError as exc:
        raise ApiError(400, "bad_tracker", "tracker " + exc.reason) from None


async def _unreachable(url: str) -> str | None:
    """Why ``url`` does not answer HTTP at all (refused, no route, timeout), or None when
    it answers (any status)."""
    try:
        async with aiohttp.ClientSession() as session, session.get(
                url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=TRACKER_PROBE_TIMEOUT)):
            return None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return outbound.reason(exc)


@route("POST", "/v1/watch", "Join a stream (a link, or a stream id and a tracker)", t.WatchResult,
       request=t.WatchRequest, status=201)
async def watch_stream(api: Api, request: web.Request, body: t.WatchRequest) -> t.WatchResult:
    streaming = _streaming(api)
    tracker = _tracker_url(body.tracker) if body.tracker is not None else None
    from_tracker = body.link is None  # the descriptor must come from the tracker
    if body.link is not None:
        parsed = parse_link(body.link)  # the link parser's codes (not_a_link, bad_tracker, ...)
        tracker = tracker or parsed.tracker
        from_tracker = parsed.descriptor is None
    try:
        res = await streaming.watch(link=body.link, stream_id=body.stream_id, tracker=body.tracker,
                                    relay_only=body.relay_only)
    except LookupError:  # no descriptor: the tracker does not know the stream, or is not there
        if from_tracker and tracker is not None and (why := await _unreachable(tracker)) is not None:
            raise ApiError(400, "bad_tracker", f"tracker {tracker[:200]} cannot be reached ({why[:200]}): "
                           "check its URL, or retry once it is up") from None
        raise
    return msgspec.convert(res, t.WatchResult)


@route("DELETE", "/v1/streams/{stream_id}", "Stop a stream started through the API", t.Deleted)
async def stop_stream(api: Api, request: web.Request, body: None) -> t.Deleted:
    sid = _stream_id(request.match_info["stream_id"])
    await _streaming(api).stop(str(sid))
    return t.Deleted(str(sid))


@route("GET", "/v1/wallet", "Wallet address, balances, pending and settled rewards", t.Wallet)
async def get_wallet(api: Api, request: web.Request, body: None) -> dict[str, Any]:
    r = api.node.rewards
    data_dir = r.cfg.data_dir if r is not None else request.app.get(DATA_DIR)
    if data_dir is None:
        raise ApiError(501, "not_available", "this node has no data directory")
    from oasis.ledger.wallet import wallet_report  # the EVM stack: only when asked

    chain = getattr(r, "chain", None) if r is not None else None
    return await asyncio.get_running_loop().run_in_executor(None, wallet_report, data_dir, chain)


@route("GET", "/v1/rewards", "Proof-of-relay figures: receipts, tickets, settlements", t.Rewards)
async def get_rewards(api: Api, request: web.Request, body: None) -> dict[str, Any]:
    r = api.node.rewards
    if r is None:
        raise ApiError(501, "not_available", "rewards are off on this node (`oasis broadcast --rewards` and "
                       "`oasis watch --rewards` take part in proof of relay; `oasis node` does not)")
    return dict(await r.report())


# ---- messaging (node.messaging) ------------------------------------------------------------

@route("POST", "/v1/chat/{stream_id}", "Send a chat message in a stream", t.ChatMessage,
       request=t.ChatSendRequest, status=201, service="messaging")
async def chat_send(api: Api, request: web.Request, body: t.ChatSendRequest) -> t.ChatMessage:
    sid = _stream_id(request.match_info["stream_id"])
    rec = await api.service("messaging").chat_send(str(sid), body.text)
    return msgspec.convert(rec, t.ChatMessage)


@route("GET", "/v1/chat/{stream_id}", "A stream's chat history (?limit=&after=)", list[t.ChatMessage],
       service="messaging", query=("limit", "after"))
async def chat_history(api: Api, request: web.Request, body: None) -> list[t.ChatMessage]:
    sid = _stream_id(request.match_info["stream_id"])
    limit, after = _limit(request)
    recs = api.service("messaging").chat_history(str(sid), limit=limit, after_time=after)
    return msgspec.convert(list(recs)[:MAX_LIST], list[t.ChatMessage])


@route("POST", "/v1/chat/{stream_id}/moderation", "Mute, ban or unmute a peer (broadcaster only)",
       t.ModerationResult, request=t.ModerationRequest, service="messaging")
async def chat_moderate(api: Api, request: web.Request, body: t.ModerationRequest) -> dict[str, Any]:
    sid = _stream_id(request.match_info["stream_id"])
    _peer_key(body.peer_id)
    res = await api.service("messaging").chat_moderate(str(sid), body.peer_id, body.action, body.seconds)
    return dict(res)


@route("POST", "/v1/dm/{peer_id}", "Send a direct message to a peer", t.DmResult,
       request=t.DmSendRequest, status=201, service="messaging")
async def dm_send(api: Api, request: web.Request, body: t.DmSendRequest) -> t.DmResult:
    peer = request.match_info["peer_id"]
    key = _peer_key(peer)
    if not dm.can_seal_to(key):
        raise ApiError(400, "bad_peer_id", f"peer id {peer!r}: no message can be sealed to this key "
                       "(a low-order point)")
    if key == api.node.identity.public:
        raise ApiError(400, "bad_peer_id", f"peer id {peer!r} is this node's own: a direct message "
                       "goes to another peer")
    # the canonical spelling (a peer id is read in any case): the answer's `to` is the one
    # dm.acked and the recipient's inbox carry
    return msgspec.convert(await api.service("messaging").dm_send(peer_id_of(key), body.text), t.DmResult)


@route("GET", "/v1/dm", "Direct messages received (?limit=&after=)", list[t.DmMessage], service="messaging",
       query=("limit", "after"))
async def dm_inbox(api: Api, request: web.Request, body: None) -> list[t.DmMessage]:
    limit, after = _limit(request)
    recs = api.service("messaging").dm_inbox(limit=limit, after_time=after)
    return msgspec.convert(list(recs)[:MAX_LIST], list[t.DmMessage])


# ---- files (node.files) ----------------------------------------------------------------------

def _regular_file(path_text: str) -> str:
    """The absolute path of a regular file we can read; refuses devices, dirs, fifos."""
    if "\x00" in path_text:
        raise ApiError(400, "bad_path", "a path has no NUL character")
    p = Path(path_text)
    if not p.is_absolute():
        raise ApiError(400, "bad_path", f"{path_text[:200]!r}: give an absolute path (the node does "
                       "not resolve a relative path or ~ against its own working directory or home)")
    try:
        st = os.stat(p)
    except OSError as exc:
        raise ApiError(400, "bad_path", f"{path_text[:200]}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ApiError(400, "bad_path", f"{path_text[:200]} is not a regular file")
    if not os.access(p, os.R_OK):
        raise ApiError(400, "bad_path", f"{path_text[:200]} is not readable by the node")
    return str(p)


@route("POST", "/v1/files", "Publish a local file", t.FileInfo, request=t.FilePublishRequest,
       status=201, service="files")
async def file_publish(api: Api, request: web.Request, body: t.FilePublishRequest) -> t.FileInfo:
    files = api.service("files")
    info = await files.publish(_regular_file(body.path))
    return msgspec.convert({**info, "link": _file_link(api, info["cid"])}, t.FileInfo)


def _file_link(api: Api, cid: str) -> str | None:
    """The link a published file is shared by, as ``oasis publish`` prints it."""
    from .files_http import share_link

    host, port = api.node.announce_address()
    return share_link(cid, (api.node.identity.public, host, port), api.http_base)


@route("GET", "/v1/files", "Files this node holds or fetches", list[t.FileStatus], service="files")
async def file_list(api: Api, request: web.Request, body: None) -> list[t.FileStatus]:
    return msgspec.convert(list(api.service("files").list())[:MAX_LIST], list[t.FileStatus])


def _cid(request: web.Request, links: bool = False) -> str:
    """The route's content id (or, with ``links``, an ``oasis://file/`` link, checked by
    the service: a LinkError with its code); ``bad_cid`` if it is not one."""
    text = request.match_info["cid"]
    if links and is_link(text):
        return text
    try:
        parse_cid(text)
    except ContentError as exc:
        raise ApiError(400, exc.code, f"{text[:80]!r}: {exc.detail}") from None
    return text


@route("GET", "/v1/files/{cid}", "One file's status", t.FileStatus, service="files")
async def file_status(api: Api, request: web.Request, body: None) -> t.FileStatus:
    return msgspec.convert(api.service("files").status(_cid(request)), t.FileStatus)


@route("POST", "/v1/files/{cid}/fetch", "Fetch a file (or join its download)", t.FileStatus,
       request=t.FileFetchRequest, status=202, service="files")
async def file_fetch(api: Api, request: web.Request, body: t.FileFetchRequest) -> t.FileStatus:
    res = await api.service("files").fetch(_cid(request, links=True), body.peers)
    return msgspec.convert(res, t.FileStatus)


@route("DELETE", "/v1/files/{cid}", "Remove a file from this node", t.Deleted, service="files")
async def file_remove(api: Api, request: web.Request, body: None) -> t.Deleted:
    cid = _cid(request)
    await api.service("files").remove(cid)
    return t.Deleted(cid)

