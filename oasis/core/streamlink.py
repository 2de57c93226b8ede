"""Stream links: ``oasis://`` URIs that are all a viewer needs to join a stream.

A link carries the stream id, the stream's signed descriptor and a few bootstrap peers
(with their keys), and optionally a tracker::

    oasis://<stream id>?d=<descriptor>&b=<peer id>@<host>:<port>&b=...&t=<tracker URL>&k=<key>

* ``d`` (optional): the descriptor's JSON (docs/oftp.md §10.1), base64url without
  padding. It is verified against the stream id's key, so a link cannot lie about
  bitrate, chunking, origin or ticket terms; a newer descriptor from a tracker or the
  broadcaster replaces it. A *short link* leaves it out: the viewer then takes the
  descriptor from the tracker, or from the DHT (the broadcaster's stream record carries
  it, §17.2), reached through the bootstrap peers.
* ``b`` (0–8): bootstrap peers, dialled with their key pinned -- an address that is not
  that peer's node never becomes a link (docs/oftp.md §3). Host is a unicast IP literal
  by the DHT's rule (``dhtrecord.canonical_host``: not unspecified, multicast or
  255.255.255.255, no IPv6 zone id), IPv6 in brackets; port 1-65535 in ASCII digits.
* ``t`` (optional): a tracker URL (http or https). Without one, the node finds peers
  through its bootstrap peers and their NEIGHBOURS (§15.2): the tracker is a bootstrap
  among others, and its loss does not stop a swarm.
* ``k`` (optional): an encrypted stream's content key, 32 bytes in base64url without
  padding (oasis.core.streamcrypt; docs/oftp.md §7.2). It is the capability to play the
  stream: whoever holds the link can; the descriptor, the DHT and the tracker never carry
  it. A link whose descriptor is not ``encrypted`` may not carry one.

Decoding is strict: the whole link at most ``MAX_LINK`` characters, nothing after the
stream id but ``?parameters`` (a lone ``/`` aside: no path, no ``#fragment``), no control
characters (``urlsplit`` would drop tabs and line ends unseen; only the ends of the text
are trimmed), every parameter known and within its count, every field checked; any
failure is a :class:`LinkError` with a stable code. Sans-I/O: no network, no clock.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

from .descriptor import Descriptor, DescriptorError, descriptor_from_json, verify_descriptor
from .dhtrecord import canonical_host
from .identity import key_of_peer_id, peer_id_of
from .stream import StreamId, StreamIdError
from .streamcrypt import ContentKeyError, key_from_text, key_text
from .urls import base_url_problem

SCHEME = "oasis"
MAX_LINK = 8192  #: characters of a whole link
MAX_BOOTSTRAP = 8  #: ``b`` parameters
MAX_DESCRIPTOR = 4096  #: bytes of the decoded descriptor JSON


class LinkError(ValueError):
    """A stream link that cannot be used; ``code`` is stable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.reason = message  #: the message alone (an API answer carries the code apart)


@dataclass(frozen=True)
class Bootstrap:
    peer: bytes  #: Ed25519 key, pinned when dialling
    host: str  #: an IP literal
    port: int


@dataclass(frozen=True)
class StreamLink:
    sid: StreamId
    descriptor: Descriptor | None  #: None: a short link (the DHT or the tracker has it)
    bootstrap: tuple[Bootstrap, ...] = ()
    tracker: str | None = None
    key: bytes | None = None  #: an encrypted stream's content key (``k``)

    def format(self) -> str:
        """The ``oasis://`` text of this link."""
        parts = []
        if self.descriptor is not None:
            raw = json.dumps(self.descriptor.to_json(), separators=(",", ":")).encode()
            parts.append(f"d={base64.urlsafe_b64encode(raw).decode().rstrip('=')}")
        for b in self.bootstrap:
            host = f"[{b.host}]" if ":" in b.host else b.host
            parts.append(f"b={peer_id_of(b.peer)}@{host}:{b.port}")
        if self.tracker:
            parts.append(f"t={quote(self.tracker, safe='')}")
        if self.key is not None:
            parts.append(f"k={key_text(self.key)}")
        return f"{SCHEME}://{self.sid}?{'&'.join(parts)}"


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def check_tracker(v: str) -> str:
    """``v`` if it is a tracker URL a stranger's link may make this node request (see
    :func:`check_base_url`); raises :class:`LinkError` ``bad_tracker``."""
    return check_base_url(v, "bad_tracker", "tracker URL")


def check_base_url(v: str, code: str = "bad_tracker", what: str = "tracker URL") -> str:
    """``v`` if it is a base URL a stranger's link may make this node request (the rule of
    :mod:`oasis.core.urls`: http(s), a host, a port and a path -- no user, query string or
    fragment, no link-local host); raises :class:`LinkError` ``code``."""
    problem = base_url_problem(v, what)
    if problem is not None:
        raise LinkError(code, problem)
    return v


def parse_bootstrap(text: str, code: str = "bad_bootstrap") -> Bootstrap:
    """``PEER_ID@HOST:PORT`` (IPv6 in brackets) as a :class:`Bootstrap`; a :class:`LinkError`
    with ``code`` if it is not one a node may dial (file links use it too, as ``bad_peer``)."""
    pid, at, hostport = text.partition("@")
    if not at:
        raise LinkError(code, f"{text[:80]!r}: expected PEER_ID@HOST:PORT")
    try:
        key = key_of_peer_id(pid)
    except ValueError as exc:
        raise LinkError(code, f"peer id {pid[:60]!r}: {exc}") from None
    host, colon, port_text = hostport.rpartition(":")
    # isdigit alone takes other scripts' digits ("１９１００"), and int() reads them
    if (not colon or not port_text.isascii() or not port_text.isdigit()
            or not 0 < int(port_text) < 65536):
        raise LinkError(code, f"{hostport[:80]!r}: expected HOST:PORT with a port 1-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # "::1:19100": is the port 19100, or part of the address?
        raise LinkError(code, f"{host[:60]!r}: an IPv6 address goes in brackets, "
                        "[HOST]:PORT")
    if "%" in host:
        raise LinkError(code, f"{host[:60]!r}: an IPv6 zone id names an interface of "
                        "the host that wrote it")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise LinkError(code, f"{host[:60]!r} is not an IP address (no names: nothing "
                        "to resolve)") from None
    if canonical_host(str(ip)) is None:  # the DHT's rule for the addresses it dials
        raise LinkError(code, f"{host} is not a unicast address")
    return Bootstrap(key, str(ip), int(port_text))


def is_link(text: str) -> bool:
    """Does ``text`` name a link (``oasis:``, in any case: a URI's scheme is case-insensitive,
    RFC 3986 §3.1) rather than a bare stream id? ``OASIS://...`` was read as a stream id,
    "peer id must have 52 characters" (found 2026-12-05 from outside)."""
    return text.strip()[: len(SCHEME) + 1].lower() == f"{SCHEME}:"


def parse(text: str) -> StreamLink:
    """A verified :class:`StreamLink` from ``oasis://...`` text; raises :class:`LinkError`."""
    if len(text) > MAX_LINK:
        raise LinkError("too_long", f"a link of {len(text)} characters (at most {MAX_LINK})")
    text = text.strip()  # a link pasted with its line end
    if _has_control(text):  # urlsplit would drop tabs and line ends: not the link shown
        ctl = next(i for i, ch in enumerate(text) if _has_control(ch))
        raise LinkError("not_a_link", f"a control character ({text[ctl]!r}) at position {ctl}")
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. an unbalanced [ in the host part
        raise LinkError("not_a_link", str(exc)) from None
    if parts.scheme != SCHEME:
        raise LinkError("not_a_link", "a stream link starts with oasis://")
    if "#" in text:
        raise LinkError("not_a_link", "a stream link has no #fragment (a tracker URL in t= is "
                        "percent-encoded)")
    if parts.path not in ("", "/"):
        raise LinkError("not_a_link", f"nothing may follow the stream id but ?parameters, not "
                        f"{parts.path[:40]!r}")
    try:
        sid = StreamId.parse(parts.netloc)
    except StreamIdError as exc:
        raise LinkError("bad_stream_id", str(exc)) from None
    desc_text: str | None = None
    boots: list[Bootstrap] = []
    tracker: str | None = None
    key: bytes | None = None
    if ";" in parts.query:  # (parse_qsl would keep "...;k=KEY" inside a value: the tracker's URL)
        raise LinkError("bad_query", "a link's parameters are separated by &, and a ';' may not "
                        "appear in them (a tracker URL in t= is percent-encoded)")
    try:
        params = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query),
                           max_num_fields=MAX_BOOTSTRAP + 3)
    except ValueError as exc:
        raise LinkError("bad_query", str(exc)) from None
    for k, v in params:
        if k == "d":
            if desc_text is not None:
                raise LinkError("bad_query", "more than one descriptor")
            desc_text = v
        elif k == "b":
            boots.append(parse_bootstrap(v))
        elif k == "t":
            if tracker is not None:
                raise LinkError("bad_query", "more than one tracker")
            tracker = check_tracker(v)
        elif k == "k":
            if key is not None:
                raise LinkError("bad_query", "more than one content key")
            try:
                key = key_from_text(v)
            except ContentKeyError as exc:
                raise LinkError("bad_key", str(exc)) from None
        else:
            raise LinkError("bad_query", f"unknown parameter {k[:20]!r}")
    if len(boots) > MAX_BOOTSTRAP:
        raise LinkError("bad_query", f"more than {MAX_BOOTSTRAP} bootstrap peers")
    # the descriptor first: a link cut short when copied ends inside it (d= comes first),
    # and "no bootstrap peer" would hide that
    cut = " (is the link complete? it may have been cut short when copied)" if not boots and tracker is None else ""
    desc = None
    if desc_text is not None:
        try:
            raw = base64.urlsafe_b64decode(desc_text + "=" * (-len(desc_text) % 4))
        except ValueError as exc:
            raise LinkError("bad_descriptor", f"not base64url: {exc}{cut}") from None
        if len(raw) > MAX_DESCRIPTOR:
            raise LinkError("bad_descriptor", f"{len(raw)} bytes (at most {MAX_DESCRIPTOR})")
        try:
            desc = descriptor_from_json(raw)
        except DescriptorError as exc:
            raise LinkError("bad_descriptor", f"{str(exc)[:200]}{cut}") from None
        if not verify_descriptor(desc, sid):
            raise LinkError("bad_descriptor", "the descriptor is not signed by this stream's key")
    if not boots and tracker is None:
        raise LinkError("no_peers", "the link names no bootstrap peer and no tracker")
    if key is not None and desc is not None and not desc.encrypted:
        raise LinkError("bad_key", "the link carries a content key, but its signed descriptor "
                        "says the stream is not encrypted")
    return StreamLink(sid, desc, tuple(boots), tracker, key)  # desc None: a short link
