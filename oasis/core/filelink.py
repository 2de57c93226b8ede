"""File links: ``oasis://file/<cid>?b=<peer id>@<host>:<port>&o=<origin URL>``.

All a getter needs: the content id (which verifies everything else), up to
``MAX_BOOTSTRAP`` peers that hold the file (dialled with their key pinned) and an
optional HTTP origin (or CDN) serving ``/origin/files/<cid>/...``. Strict parse: every
parameter known and within its count; failures are :class:`~oasis.core.streamlink.LinkError`.
Sans-I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

from .content import ContentError, cid_text, parse_cid
from .identity import peer_id_of
from .streamlink import LinkError, check_base_url, parse_bootstrap

MAX_LINK = 4096
MAX_BOOTSTRAP = 8
PREFIX = "oasis://file/"


@dataclass(frozen=True)
class FileLink:
    cid: bytes
    peers: tuple[tuple[bytes, str, int], ...] = ()  #: (key, host, port)
    origin: str | None = None

    def to_text(self) -> str:
        q = [f"b={peer_id_of(k)}@{f'[{h}]' if ':' in h else h}:{p}" for k, h, p in self.peers]
        if self.origin:
            q.append("o=" + quote(self.origin, safe=":/"))
        return PREFIX + cid_text(self.cid) + ("?" + "&".join(q) if q else "")


def parse_peer(text: str) -> tuple[bytes, str, int]:
    """``<peer id>@<host>:<port>`` (IPv6 host in brackets) → (key, host, port), by the stream
    links' rule (§16: a unicast address a node may dial); ``LinkError("bad_peer")`` if not."""
    b = parse_bootstrap(text, "bad_peer")
    return b.peer, b.host, b.port


def parse(text: str) -> FileLink:
    if len(text) > MAX_LINK:
        raise LinkError("too_long", f"file link over {MAX_LINK} characters")
    text = text.strip()  # a link pasted with its line end
    if text[: len(PREFIX)].lower() != PREFIX:
        raise LinkError("bad_scheme", f"a file link starts with {PREFIX}")
    text = PREFIX + text[len(PREFIX):]  # the scheme and the "file" host in any case
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text) or "#" in text:
        # urlsplit drops tabs and line ends, and a #fragment: not the link shown
        raise LinkError("not_a_link", "a control character or a # in a file link")
    parts = urlsplit(text)
    try:
        cid = parse_cid(parts.path.lstrip("/"))
    except ContentError as exc:
        raise LinkError(exc.code, exc.detail) from None
    peers: list[tuple[bytes, str, int]] = []
    origin: str | None = None
    for k, v in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)):
        if k == "b":
            if len(peers) >= MAX_BOOTSTRAP:
                raise LinkError("too_many_peers", f"at most {MAX_BOOTSTRAP} peers")
            peers.append(parse_peer(v))
        elif k == "o":
            if origin is not None:  # (was "parameter 'o' not allowed here")
                raise LinkError("bad_origin", "more than one origin (o=)")
            # the node appends /origin/files/<cid>/...: no query, user or fragment that would
            # make the request line the link's, no link-local host (cloud metadata)
            origin = check_base_url(v, "bad_origin", "file origin")
        else:
            raise LinkError("unknown_parameter", f"parameter {k!r} not allowed here")
    return FileLink(cid, tuple(peers), origin)
