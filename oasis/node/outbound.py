"""HTTP requests to URLs that came from outside: origins, trackers, CDN edges, ticket
services, the addresses in a stream link, a file link or a signed descriptor. Every
client session the node opens for them comes from :func:`session`, which follows no
redirect.

Such a URL is checked before it is used (:mod:`oasis.core.urls`: no user, query or
fragment, no link-local host), but aiohttp follows up to 10 redirects by default and a
``Location`` may name any URL at all: a hostile origin or tracker that passed the checks
sent a node's GETs (and, with a 307, its tracker POSTs, body and all) to
``http://127.0.0.1:PORT/cgi-bin/x?cmd=reboot&y=`` -- or to a cloud's metadata address
(found 2026-12-06 by an outside audit: ``oasis get`` with a file link's ``o=``,
``oasis watch`` with ``--tracker``). No face of ours redirects, so a redirect answer is a
failed request: :class:`RedirectRefused`, an ``aiohttp.ClientResponseError`` (which every
caller already handles as one), counted in :data:`COUNTERS`.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

#: the statuses aiohttp would follow
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: process-wide: redirects refused (``oasis_http_client_events_total`` on /metrics)
COUNTERS: dict[str, int] = {"redirects_refused": 0}


class RedirectRefused(aiohttp.ClientResponseError):
    """An outside URL answered with a redirect: not followed."""


async def _no_redirects(req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
    resp = await handler(req)
    if resp.status not in REDIRECT_STATUSES:
        return resp
    COUNTERS["redirects_refused"] += 1
    where = resp.headers.get("Location", "")[:120]
    resp.release()
    raise RedirectRefused(resp.request_info, resp.history, status=resp.status,
                          message=f"redirect to {where!r} not followed (Oasis follows no redirect)")


def session(**kw: Any) -> aiohttp.ClientSession:
    """An ``aiohttp.ClientSession`` (``kw`` as its) that refuses redirects."""
    return aiohttp.ClientSession(middlewares=(_no_redirects,), **kw)


def reason(exc: BaseException) -> str:
    """A failed request's cause in a line for a user: "cannot connect to 127.0.0.1:7000
    (Connection refused)" instead of aiohttp's "Cannot connect to host 127.0.0.1:7000
    ssl:default [Connect call failed ('127.0.0.1', 7000)]" (which names TLS on a plain
    http URL)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        why = ("connection refused" if isinstance(err, ConnectionRefusedError)
               else err.strerror or (os.strerror(err.errno) if err.errno else "") or str(err)
               or type(err).__name__)
        return f"cannot connect to {exc.host}:{exc.port} ({why})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}: {exc.message}"[:300]
    return str(exc)[:300] or type(exc).__name__
