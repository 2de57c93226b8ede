"""Clients of a node's local API: :class:`AsyncClient` (asyncio) and :class:`Client` (blocking).

Find a node and talk to it::

    from oasis.sdk import AsyncClient

    async with AsyncClient.from_data_dir("~/.local/share/oasis/node") as api:
        info = await api.node()
        pub = await api.publish("live", source="test")
        async for ev in api.events(kinds=["stream", "chat"]):
            print(ev.kind, ev.data)

Every method returns typed values (msgspec Structs of :mod:`oasis.sdk.types`, or
lists of them); a refusal by the node raises :class:`OasisApiError` with the HTTP
status, a stable ``code`` and a ``message`` saying what to do; a node that cannot be
reached raises :class:`OasisApiError` with status 0 and code ``unreachable``.

:class:`Client` is the same API, blocking: it runs one private event loop in a daemon
thread and hands each call to it (``run_coroutine_threadsafe``), so it works from
plain scripts and from threads, but not from inside a running event loop's thread
(use :class:`AsyncClient` there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import msgspec

from . import types as t

T = TypeVar("T")
MAX_REPLY = 8 * 1024 * 1024  #: bytes of one answer read at most


class OasisApiError(Exception):
    """The node refused a request (``status`` 4xx/5xx) or could not be reached (0).

    ``retry_after`` is the seconds the node asked to wait (its ``Retry-After`` header,
    sent with 429), else None.
    """

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after


def _refusal(status: int, raw: bytes, headers: Any) -> OasisApiError:
    """The :class:`OasisApiError` of a refused request: the API's ``{"error": {"code",
    "message"}}`` body, or (another server, a proxy) ``http_error`` and the body's start."""
    retry: float | None = None
    try:
        retry = float(headers.get("Retry-After", ""))
    except ValueError:
        pass
    try:
        err = msgspec.json.decode(raw, type=t.ErrorBody).error
        return OasisApiError(status, err.code, err.message, retry)
    except ValueError:  # (msgspec's errors, and UnicodeDecodeError: not UTF-8 in a string)
        return OasisApiError(status, "http_error", raw[:200].decode("utf-8", "replace"), retry)


async def _websocket_refusals(req: aiohttp.ClientRequest,
                              handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
    """Session middleware: a WebSocket handshake answered with an error raises it as
    :class:`OasisApiError` with the node's code and message (aiohttp's own
    ``WSServerHandshakeError`` carries the status only, not the body saying why)."""
    resp = await handler(req)
    if resp.status != 101 and req.headers.get("Upgrade", "").lower() == "websocket":
        try:
            raw = await resp.content.read(64 * 1024)
        except (aiohttp.ClientError, OSError):
            raw = b""
        finally:
            resp.close()
        raise _refusal(resp.status, raw, resp.headers)
    return resp


def discover(data_dir: str | os.PathLike[str]) -> tuple[str, str]:
    """The API base URL and token of the node whose data directory is ``data_dir``
    (from ``api.json`` and ``api.token``, written there when the node starts)."""
    d = Path(data_dir).expanduser()
    try:
        url = json.loads((d / "api.json").read_text())["url"]
        token = (d / "api.token").read_text().strip()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OasisApiError(0, "no_node", f"no running node's API found in {d} ({exc}); start "
                            "`oasis node --data-dir DIR` (or broadcast/watch) first") from None
    return str(url), token


def _quote(part: str) -> str:
    from urllib.parse import quote
    return quote(part, safe="")


class AsyncClient:
    """The local API over aiohttp. Use as ``async with``, or call :meth:`close`.

    ``base_url`` is the API root including ``/v1`` (e.g. ``http://127.0.0.1:7480/v1``);
    ``token`` the content of ``<data-dir>/api.token``. :meth:`from_data_dir` finds both.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False  #: :meth:`close` was called: no call is made after it
        #: set by :meth:`from_data_dir`: a node restarted on another port (the API's default
        #: port is taken, or 0) is found again there, by the calls and by :meth:`events`
        self.data_dir: str | os.PathLike[str] | None = None

    @classmethod
    def from_data_dir(cls, data_dir: str | os.PathLike[str], **kw: Any) -> AsyncClient:
        """A client of the node whose data directory is ``data_dir`` (see :func:`discover`)."""
        url, token = discover(data_dir)
        c = cls(url, token, **kw)
        c.data_dir = data_dir
        return c

    async def _rediscover(self) -> bool:
        """The node of :attr:`data_dir` listens elsewhere now (it restarted): follow it.
        True if the URL or token changed."""
        if self.data_dir is None:
            return False
        try:
            url, token = discover(self.data_dir)
        except OasisApiError:
            return False
        url = url.rstrip("/")
        if (url, token) == (self.base_url, self.token):
            return False
        self.base_url = url
        if token != self.token:
            self.token = token
            if self._session is not None:  # it carries the old token: a new one at the next call
                await self._session.close()
                self._session = None
        return True

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (``async with`` does it); a call after it raises
        :class:`OasisApiError` ``closed``, as :class:`Client`'s does."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._closed:  # (it made a new session, left unclosed at exit: found 2026-12-06)
            raise OasisApiError(0, "closed", "this AsyncClient was closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"},
                                                  middlewares=(_websocket_refusals,))
        return self._session

    async def request(self, method: str, path: str, typ: type[T], body: Any = None,
                      params: dict[str, Any] | None = None) -> T:
        """One call: ``path`` under the base URL; the answer decoded into ``typ``."""
        data = msgspec.json.encode(body) if body is not None else None
        q = {k: str(v) for k, v in (params or {}).items() if v is not None}
        for attempt in range(2):
            try:
                async with self.session.request(method, self.base_url + path, data=data, params=q,
                                                timeout=self.timeout,
                                                headers={"Content-Type": "application/json"}) as r:
                    raw = await r.content.read(MAX_REPLY + 1)
                    status, headers = r.status, r.headers
                break
            except aiohttp.ClientConnectorError as exc:  # nothing listens there (now)
                if attempt == 0 and await self._rediscover():
                    continue  # the node restarted elsewhere: once more, there
                raise OasisApiError(0, "unreachable", f"{self.base_url}: {exc}") from None
            except TimeoutError:  # connected, and no answer came: a stopped or stuck node
                raise OasisApiError(0, "unreachable", f"{self.base_url}: no answer within "
                                    f"{self.timeout.total:g} s (is the node stopped or stuck?)") from None
            except (aiohttp.ClientError, OSError) as exc:
                raise OasisApiError(0, "unreachable", f"{self.base_url}: {str(exc) or type(exc).__name__}") from None
        if status >= 400:
            raise _refusal(status, raw, headers)
        try:
            return msgspec.json.decode(raw, type=typ)
        except ValueError as exc:  # (msgspec's errors, and UnicodeDecodeError)
            raise OasisApiError(status, "bad_reply", f"the node's answer does not decode: {exc}") from None

    # ---- node and streams -------------------------------------------------------------
    async def node(self) -> t.NodeInfo:
        """Peer id, version, addresses, uptime, services, the API's refusal counters."""
        return await self.request("GET", "/node", t.NodeInfo)

    async def streams(self) -> list[t.StreamInfo]:
        """Streams the node carries, with live figures (continuity, latency, offload)."""
        return await self.request("GET", "/streams", list[t.StreamInfo])

    async def stream(self, stream_id: str) -> t.StreamInfo:
        """One stream's live figures (``stream_id`` is ``<peer id>.<name>``); 404 if not carried."""
        return await self.request("GET", f"/streams/{_quote(stream_id)}", t.StreamInfo)

    async def publish(self, name: str, source: str = "test", *, bitrate_kbps: int | None = None,
                      chunk_ms: int | None = None, encrypt: bool = False) -> t.PublishResult:
        """Broadcast a stream from the node: ``name`` matches ``^[a-z0-9][a-z0-9_-]{0,31}$``;
        ``source`` is ``test``, an MPEG-TS file (looped; a relative path is resolved
        against this program's working directory before it is sent) or
        ``udp://HOST:PORT`` (the node binds it at once: 400 ``bad_source`` if it cannot).
        With ``encrypt`` the stream is end-to-end encrypted: the returned link carries its
        content key (``k=``), and only holders of the link can play it.
        Returns its id and ``oasis://`` link."""
        if source not in ("test", "-") and "://" not in source:
            source = str(Path(source).expanduser().resolve())
        body = t.PublishRequest(name=name, source=source, bitrate_kbps=bitrate_kbps, chunk_ms=chunk_ms,
                                encrypt=encrypt)
        return await self.request("POST", "/streams", t.PublishResult, body)

    async def watch(self, link: str | None = None, *, stream_id: str | None = None,
                    tracker: str | None = None, relay_only: bool = False) -> t.WatchResult:
        """Join a stream by its ``oasis://`` link (or id + tracker URL); returns the player URL.
        An encrypted stream needs the link with its content key (``k=``), or ``relay_only``
        to relay it without playing (else ``OasisApiError`` 400 ``no_key``)."""
        body = t.WatchRequest(link=link, stream_id=stream_id, tracker=tracker, relay_only=relay_only)
        return await self.request("POST", "/watch", t.WatchResult, body)

    async def stop(self, stream_id: str) -> t.Deleted:
        """Stop a stream started through the API (published or watched); returns
        ``Deleted(deleted=stream_id)``."""
        return await self.request("DELETE", f"/streams/{_quote(stream_id)}", t.Deleted)

    async def wallet(self) -> dict[str, Any]:
        """Wallet address, balances (None without ``--rewards``), pending and settled rewards."""
        return await self.request("GET", "/wallet", dict[str, Any])

    async def rewards(self) -> dict[str, Any]:
        """Proof-of-relay figures; raises ``OasisApiError`` 501 when rewards are off."""
        return await self.request("GET", "/rewards", dict[str, Any])

    # ---- messaging ----------------------------------------------------------------------
    async def chat_send(self, stream_id: str, text: str) -> t.ChatMessage:
        """Send a chat message (1-500 UTF-8 bytes) in a stream this node carries; 429
        ``rate_limited`` (with ``retry_after``) when sent faster than the chat's rate."""
        return await self.request("POST", f"/chat/{_quote(stream_id)}", t.ChatMessage,
                                  t.ChatSendRequest(text=text))

    async def chat_history(self, stream_id: str, limit: int = 100,
                           after: float | None = None) -> list[t.ChatMessage]:
        """A stream's last ``limit`` chat messages (1-1000; the node keeps 500), oldest
        first; ``after``: only messages whose ``time`` (unix seconds) is later."""
        return await self.request("GET", f"/chat/{_quote(stream_id)}", list[t.ChatMessage],
                                  params={"limit": limit, "after": after})

    async def chat_moderate(self, stream_id: str, peer_id: str, action: str,
                            seconds: float = 600.0) -> dict[str, Any]:
        """``action``: ``mute``, ``ban`` or ``unmute`` (the stream's broadcaster only)."""
        return await self.request("POST", f"/chat/{_quote(stream_id)}/moderation", dict[str, Any],
                                  t.ModerationRequest(peer_id=peer_id, action=action,  # type: ignore[arg-type]
                                                      seconds=seconds))

    async def dm_send(self, peer_id: str, text: str) -> t.DmResult:
        """Send a direct message (1-1000 UTF-8 bytes, end-to-end encrypted) to a peer."""
        return await self.request("POST", f"/dm/{_quote(peer_id)}", t.DmResult, t.DmSendRequest(text=text))

    async def dm_inbox(self, limit: int = 100, after: float | None = None) -> list[t.DmMessage]:
        """The last ``limit`` direct messages received, oldest first; ``after``: only those
        whose ``time`` (unix seconds) is later."""
        return await self.request("GET", "/dm", list[t.DmMessage], params={"limit": limit, "after": after})

    # ---- files --------------------------------------------------------------------------
    async def file_publish(self, path: str | os.PathLike[str]) -> t.FileInfo:
        """Publish a regular file on the node's machine. A relative path is resolved
        against this program's working directory before it is sent (the API itself
        takes absolute paths only)."""
        return await self.request("POST", "/files", t.FileInfo,
                                  t.FilePublishRequest(path=str(Path(path).expanduser().resolve())))

    async def files(self) -> list[t.FileStatus]:
        """Files this node holds or fetches."""
        return await self.request("GET", "/files", list[t.FileStatus])

    async def file_status(self, cid: str) -> t.FileStatus:
        """One file's status; 400 ``bad_cid`` if ``cid`` is not a content id, 404 if not here."""
        return await self.request("GET", f"/files/{_quote(cid)}", t.FileStatus)

    async def file_fetch(self, cid: str, peers: list[str] | None = None) -> t.FileStatus:
        """Start (or join) fetching a file (a content id or an ``oasis://file/`` link) from
        ``peers`` (``PEER_ID@HOST:PORT``) and its origin; returns its status at once
        (watch ``file.*`` events)."""
        return await self.request("POST", f"/files/{_quote(cid)}/fetch", t.FileStatus,
                                  t.FileFetchRequest(peers=peers))

    async def file_remove(self, cid: str) -> t.Deleted:
        """Remove a file from this node; returns ``Deleted(deleted=cid)``."""
        return await self.request("DELETE", f"/files/{_quote(cid)}", t.Deleted)

    # ---- events -------------------------------------------------------------------------
    async def events(self, kinds: list[str] | None = None, *, reconnect: bool = True,
                     max_retries: int = 10) -> AsyncIterator[t.Event]:
        """The node's live events (WebSocket), as :class:`~oasis.sdk.types.Event`.

        ``kinds`` are prefixes (``["chat", "stream.stalled"]``, at most 16); none: every
        kind. The first event is ``subscribed`` (seq 0): from then on every event follows.

        A refusal of the subscription raises :class:`OasisApiError` with the node's code
        (a 4xx at once; 503 ``busy``, over the node's subscriber cap, once ``max_retries``
        attempts in a row were refused, or at once without ``reconnect``). With
        ``reconnect`` a lost connection (or one refused while the node restarts) is
        reopened, backing off, at most ``max_retries`` failures in a row, then
        :class:`OasisApiError` ``unreachable`` (status 0); events published meanwhile are
        lost, and the gap shows in ``seq``. Without ``reconnect`` the iterator ends when
        the node closes the feed and raises ``unreachable`` when it cannot connect. A
        ``lagged`` event (seq 0, ``data["dropped"]``) says this reader fell behind and
        the node dropped that many.
        """
        if isinstance(kinds, str):  # "stream" is one prefix, not six letters
            kinds = [kinds]
        for k in kinds or ():
            # the query joins the prefixes with commas: an empty one (which the node would
            # drop, leaving every kind) or one with a comma (two prefixes) is not what was asked
            if not isinstance(k, str) or not k or "," in k:
                raise OasisApiError(400, "bad_query", f"kind prefix {k!r}: one lower-case word, or two joined "
                                    "by a dot (stream, chat.message, dm.), and no comma")
        params = {"kinds": ",".join(kinds)} if kinds else {}
        failures = 0
        while True:
            url = self.base_url + "/events"
            try:
                async with self.session.ws_connect(url, params=params, heartbeat=20.0,
                                                   max_msg_size=1 << 20) as ws:
                    failures = 0
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            yield msgspec.json.decode(msg.data, type=t.Event)
                        elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                            break
            except OasisApiError as exc:  # refused by the node (see _websocket_refusals)
                failures += 1
                if exc.status != 503 or not reconnect or failures > max_retries:
                    raise
            except (aiohttp.ClientError, OSError) as exc:  # connection refused or lost
                failures += 1
                if not reconnect or failures > max_retries:
                    raise OasisApiError(0, "unreachable", f"{url}: {exc}") from None
            else:
                if not reconnect:  # the node closed the feed
                    return
            await asyncio.sleep(min(0.2 * 2 ** failures, 5.0))  # backoff before reconnecting
            await self._rediscover()  # a node restarted on another port (from_data_dir)


class Client:
    """Blocking twin of :class:`AsyncClient`: the same methods, with the same signatures,
    docstrings and results (they are generated from :class:`AsyncClient`'s when this
    module is imported, so ``help(Client)`` and ``dir(Client)`` list them).

    It owns a private event loop running in a daemon thread; each call is submitted
    to it and waited for. :meth:`events` is a plain iterator. Call :meth:`close`
    (or use ``with``) when done.
    """

    def __init__(self, base_url: str, token: str, **kw: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="oasis-sdk", daemon=True)
        self._thread.start()
        self._async = AsyncClient(base_url, token, **kw)
        self._closing = False  #: close() has begun: no new call reaches the loop

    @classmethod
    def from_data_dir(cls, data_dir: str | os.PathLike[str], **kw: Any) -> Client:
        """A client of the node whose data directory is ``data_dir`` (see :func:`discover`)."""
        url, token = discover(data_dir)
        c = cls(url, token, **kw)
        c._async.data_dir = data_dir
        return c

    @property
    def base_url(self) -> str:
        """The API root, e.g. ``http://127.0.0.1:7480/v1``."""
        return self._async.base_url

    def _call(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        if self._closing:
            if isinstance(coro, Coroutine):
                coro.close()  # (never to run: no "was never awaited" warning)
            raise OasisApiError(0, "closed", "this Client was closed")

        async def run() -> T:
            return await coro
        fut = asyncio.run_coroutine_threadsafe(run(), self._loop)
        try:
            return fut.result(timeout)
        except BaseException:
            # interrupted while waiting (Ctrl-C) or timed out: the call is cancelled on the
            # loop, not left running to fail once the client closes under it ("Task exception
            # was never retrieved" and a traceback after a clean Ctrl-C, 1 in ~160 runs)
            fut.cancel()
            raise

    if TYPE_CHECKING:  # the generated methods (below the class), for type checkers
        def __getattr__(self, name: str) -> Any: ...

    def events(self, kinds: list[str] | None = None, *, reconnect: bool = True,
               max_retries: int = 10) -> Iterator[t.Event]:
        agen = self._async.events(kinds, reconnect=reconnect, max_retries=max_retries)
        assert isinstance(agen, AsyncGenerator)
        try:
            while True:
                try:
                    yield self._call(agen.__anext__())
                except StopAsyncIteration:
                    return
                except (concurrent.futures.CancelledError, OasisApiError) as exc:
                    # close() (from another thread) cancelled the wait for the next event:
                    # the iterator ends (before: the wait for aclose() below never did, on a
                    # loop already stopped, and the reading thread hung)
                    if self._closing and (isinstance(exc, concurrent.futures.CancelledError)
                                          or exc.code == "closed"):
                        return
                    raise
        finally:
            if not self._closing:
                self._call(agen.aclose(), CLOSE_TIMEOUT)

    events.__doc__ = AsyncClient.events.__doc__

    def close(self) -> None:
        """Close the HTTP session and stop the client's event loop (within
        ``CLOSE_TIMEOUT`` s: a call still running, one a Ctrl-C interrupted, is cancelled and
        awaited first)."""
        if self._closing:
            return
        self._closing = True
        if self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(_shutdown(self._async), self._loop)
            try:
                fut.result(CLOSE_TIMEOUT)
            except (TimeoutError, concurrent.futures.CancelledError):
                fut.cancel()  # (stopped below all the same)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(CLOSE_TIMEOUT)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


CLOSE_TIMEOUT = 5.0  #: s :meth:`Client.close` waits for the loop's calls to end and for it to stop


async def _shutdown(api: AsyncClient) -> None:
    """:meth:`Client.close` on the client's loop: the calls still running there are cancelled
    and awaited (their errors retrieved), then the session is closed."""
    me = asyncio.current_task()
    rest = [t for t in asyncio.all_tasks() if t is not me]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
    await api.close()


def _blocking(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``Client.<name>``: runs ``AsyncClient.<name>`` on the client's loop and waits."""
    def method(self: Client, *args: Any, **kw: Any) -> Any:
        return self._call(getattr(self._async, name)(*args, **kw))
    method.__name__ = name
    method.__qualname__ = f"Client.{name}"
    method.__doc__ = fn.__doc__
    method.__annotations__ = dict(fn.__annotations__)
    method.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return method


for _name, _fn in list(vars(AsyncClient).items()):
    if not _name.startswith("_") and _name not in ("close", "events") and inspect.iscoroutinefunction(_fn):
        setattr(Client, _name, _blocking(_name, _fn))
del _name, _fn
