"""HTTP faces of the file service: the player gateway (Range) and the origin.

* ``GET /files/<cid>`` — the file, for a player (ffplay, VLC, a browser ``<video>``):
  ``Accept-Ranges: bytes``; one range per request (``bytes=a-b``, ``bytes=a-``,
  ``bytes=-n``) answered 206 with ``Content-Range``; a range that starts past the end is
  416; a multi-range or malformed Range header is ignored (200, the whole file, as RFC 9110
  allows). Blocks not here yet are fetched first (the swarm's read position) and waited for,
  bounded; a reader that waits too long has its response cut (the player retries).
  ``ETag: "<cid>"``: ``If-None-Match`` naming it is a 304; ``If-Range`` other than that
  tag (a weak tag, a date: the file has no Last-Modified) sends the whole file (200).
* ``GET /origin/files/<cid>/manifest`` — the manifest bytes (the CID verifies them).
* ``GET /origin/files/<cid>/<index>.blk`` — one BLOCK message (data and Merkle path);
  immutable and cacheable, so an HTTP cache or CDN can sit in front. Strong ETags
  (``"<cid>.manifest"``, ``"<cid>.<index>"``), ``If-None-Match`` → 304; only the canonical
  index (``7.blk``, not ``07.blk``) and no query string (else 404 ``not_canonical``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from oasis.core.content import parse_cid, safe_mime
from oasis.core.dialplan import dialable
from oasis.core.filelink import FileLink

from .files import Files
from .http import (
    MAX_PLAYERS_PER_IP,
    PlayerSlots,
    any_host,
    canonical_only,
    conditional,
    harden,
    if_range_holds,
    json_error,
    write_or_drop,
)

if TYPE_CHECKING:
    from .node import Node

MAX_READERS = 64  #: concurrent /files responses per gateway
_RANGE_RE = re.compile(r"^bytes=([0-9]{0,19})-([0-9]{0,19})$", re.IGNORECASE)  # the unit is case-insensitive (RFC 9110 §14.1)
_INDEX_RE = re.compile(r"^[0-9]{1,6}$")
IMMUTABLE = "public, max-age=31536000, immutable"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(first, last) inclusive, None for the whole file, "unsatisfiable" for a 416."""
    if not header:
        return None
    m = _RANGE_RE.match(header.strip())
    if m is None:
        return None  # malformed or several ranges: ignored
    a, b = m.group(1), m.group(2)
    if not a and not b:
        return None
    if not a:  # suffix: the last n bytes
        n = int(b)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    first = int(a)
    last = size - 1 if not b else min(int(b), size - 1)
    if b and int(b) < first:
        return None  # invalid: ignored
    if first >= size:
        return "unsatisfiable"
    return first, last


def add_file_routes(app: web.Application, files: Files) -> None:
    counters = harden(app)
    readers = PlayerSlots(MAX_READERS, MAX_PLAYERS_PER_IP)

    def entry(text: str):  # type: ignore[no-untyped-def]
        try:
            return files.entry(text)
        except ValueError as exc:
            raise json_error(400, "bad_cid", str(exc)) from None
        except LookupError as exc:
            raise json_error(404, "no_file", str(exc)) from None

    async def get_file(request: web.Request) -> web.StreamResponse:
        e = entry(request.match_info["cid"])
        # the largest cacheable object: each alias behind a CDN cost the whole file
        canonical_only(request, f"/files/{e.text}", "a file")
        with readers.slot(request, counters, "files_readers_refused", "too_many_readers", ""):
            e.readers += 1
            try:
                return await serve(request, e)
            finally:
                e.readers -= 1

    async def serve(request: web.Request, e) -> web.StreamResponse:  # type: ignore[no-untyped-def]
        etag = f'"{e.text}"'  # the content id: the file's bytes can never change under it
        same = conditional(request, etag, {"ETag": etag, "Cache-Control": IMMUTABLE})
        if same is not None:  # If-None-Match before Range (RFC 9110 §13.2.2); no wait for it
            return same
        try:
            m = await files.wait_manifest(e, 10.0)
        except TimeoutError:
            raise json_error(504, "no_manifest", "the file's manifest has not arrived yet") from None
        # If-Range: the range only if the client's copy is this one (its strong tag); a weak
        # tag or a date (these files have no Last-Modified) never matches: the whole file
        rng = parse_range(request.headers.get("Range"), m.size) if if_range_holds(request, etag) else None
        # the manifest's type is the publisher's word: served only if it is a media type we
        # serve, never sniffed, and sandboxed (a shared .html ran as a page on the gateway)
        headers = {"Content-Type": safe_mime(m.mime), "Accept-Ranges": "bytes", "ETag": etag,
                   "Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": "sandbox; default-src 'none'; media-src 'self'"}
        if rng == "unsatisfiable":
            counters["files_range_416"] = counters.get("files_range_416", 0) + 1
            exc = json_error(416, "range_not_satisfiable", f"the range starts past the end of the "
                             f"file ({m.size} bytes)")
            exc.headers["Content-Range"] = f"bytes */{m.size}"
            raise exc
        if rng is None:
            first, last, status = 0, m.size - 1, 200
        else:
            assert not isinstance(rng, str)
            first, last = rng
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{m.size}"
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = max(0, last - first + 1)
        await resp.prepare(request)
        if request.method == "HEAD" or m.size == 0:
            return resp
        bs = m.block_size
        pos = first
        while pos <= last:
            i = pos // bs
            try:
                data = await files.block(e, i)
            except TimeoutError:
                counters["files_read_cut"] = counters.get("files_read_cut", 0) + 1
                raise ConnectionResetError("block did not arrive in time") from None
            off = pos - i * bs
            piece = data[off: off + (last - pos + 1)]
            await write_or_drop(request, resp, piece, counters)
            pos += len(piece)
        await resp.write_eof()
        return resp

    @any_host
    async def manifest(request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        canonical_only(request, f"/origin/files/{cid}/manifest", "a manifest")
        try:
            body = files.origin_manifest(cid)
        except ValueError as exc:
            raise json_error(400, "bad_cid", str(exc)) from None
        except LookupError as exc:
            raise json_error(404, "no_file", str(exc)) from None
        headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{cid}.manifest"'}  # the CID hashes it
        return conditional(request, headers["ETag"], headers) or web.Response(
            body=body, content_type="application/x-oasis-manifest", headers=headers)

    @any_host
    async def block(request: web.Request) -> web.Response:
        text = request.match_info["index"]
        if not _INDEX_RE.match(text):
            raise json_error(400, "bad_index", "block index must be a decimal integer")
        cid, index = request.match_info["cid"], int(text)
        canonical_only(request, f"/origin/files/{cid}/{index}.blk", f"block {index}")
        try:
            body = files.origin_block(cid, index)
        except ValueError as exc:
            raise json_error(400, "bad_cid", str(exc)) from None
        except LookupError as exc:
            raise json_error(404, "no_block", str(exc)) from None  # JSON like every refusal
        # a block (data and Merkle path) is fixed by the CID and its index
        headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{cid}.{index}"'}
        return conditional(request, headers["ETag"], headers) or web.Response(
            body=body, content_type="application/x-oftp-block", headers=headers)

    app.router.add_get(r"/files/{cid:of1[a-z2-7]{52}}", get_file)
    app.router.add_get(r"/origin/files/{cid:of1[a-z2-7]{52}}/manifest", manifest)
    app.router.add_get(r"/origin/files/{cid:of1[a-z2-7]{52}}/{index}.blk", block)


def attach_files(node: Node, app: web.Application, data_dir: str, **kw: Any) -> Files:
    """Give ``node`` its file service (``node.files``) and ``app`` the file routes; the caller
    sets ``files.gateway_url`` once the app listens."""
    files = Files(node, data_dir, **kw)
    node.files = files
    add_file_routes(app, files)
    return files


def share_link(cid: str, peer: tuple[bytes, str, int] | None, gateway: str | None) -> str | None:
    """The ``oasis://file/`` link a published file is shared by (``oasis publish`` prints it,
    the API's ``FileInfo.link``): ``peer`` (key, host, port) as ``b=`` and ``gateway`` as the
    origin (``o=``), each only if another node can dial it -- a node bound to 0.0.0.0 is
    neither (such a link was refused by every parser, ``bad_origin``); None if neither is."""
    peers = (peer,) if peer is not None and dialable(peer[1], peer[2]) else ()
    if gateway is not None:
        u = urlsplit(gateway)
        if not (u.hostname and dialable(u.hostname, u.port or (443 if u.scheme == "https" else 80))):
            gateway = None
    if not peers and gateway is None:
        return None
    return FileLink(parse_cid(cid), peers, origin=gateway).to_text()
