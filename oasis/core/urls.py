"""What a URL a stranger hands us may be, before this node requests it (sans-I/O).

A stream link's tracker (``t=``), a file link's origin (``o=``) and a signed descriptor's
origin, CDN and ticket URLs are base URLs the node completes with paths of its own and then
requests, from wherever it runs. Anyone can make a link (and sign a descriptor for a stream
of their own), so each must be an http(s) URL with a host, an optional port and a path:
no user or password, no query string or fragment (either made the whole request line the
link's: ``http://10.0.0.1/cgi-bin/x?cmd=reboot&y=`` + our path), no space or control
character, and an IP-literal host unicast (the DHT's rule, :func:`dhtrecord.canonical_host`)
and not link-local (169.254.0.0/16, fe80::/10: where cloud metadata services answer).
Found 2026-12-03 by an outside attacker (docs/oftp.md §14.2)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .dhtrecord import canonical_host


def base_url_problem(v: str, what: str = "URL") -> str | None:
    """None if ``v`` may be requested as a base URL, else what is wrong with it."""
    try:
        t = urlsplit(v)
        port = t.port  # raises on a port that is not one
    except ValueError:
        return f"{v[:80]!r}: not a URL"
    if t.scheme not in ("http", "https") or not t.hostname:
        return f"{v[:80]!r}: an http(s) URL"
    if any(ord(ch) < 32 or ord(ch) == 127 or ch.isspace() for ch in v):
        return f"{v[:80]!r}: a control character or a space"
    article = "an" if what[:1].lower() in "aeiou" else "a"
    if "@" in t.netloc:
        return f"{v[:80]!r}: a user or password in {article} {what}"
    if "?" in v or "#" in v:
        return f"{v[:80]!r}: a query string or fragment in {article} {what}"
    if port == 0:
        return f"{v[:80]!r}: port 0"
    try:
        ip = ipaddress.ip_address(t.hostname)
    except ValueError:
        if "%" in t.hostname or ":" in t.hostname:  # a zone id, or not a host name at all
            return f"{v[:80]!r}: not a host"
        return None  # a host name
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    if canonical_host(str(ip)) is None or ip.is_link_local or (mapped is not None and mapped.is_link_local):
        return f"{v[:80]!r}: not a unicast address, or link-local"
    return None
