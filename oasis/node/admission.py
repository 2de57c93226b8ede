"""Who may make the endpoint hold state: QUIC address validation and the half-open table.

Theory of operation
-------------------
A QUIC Initial is cheap to forge: any 1,200 bytes with a long header will do,
from any source address. If every such datagram created a connection, a
stream of junk would hold every link slot until the idle timeout. So, before
a datagram may create *anything*:

1. **Address validation (stateless Retry, RFC 9000 §8.1.2).** An Initial
   without a token gets a Retry carrying a token and nothing is remembered.
   The token is an HMAC, under a secret drawn per endpoint at start, over the
   client's address (IP and port), the connection id the server chose for the
   Retry, the client's original destination connection id and the time it was
   issued; it is valid for ``lifetime`` seconds. Only an Initial that echoes a
   valid token, from that address, to that connection id, creates a
   connection: the sender has shown it receives packets at the address.
   A token that does not check out is dropped and counted (no reply: the
   source may be spoofed).
2. **The half-open table.** A connection whose OFTP session is not yet
   authenticated is *half-open*. Half-open links have their own cap (not the
   authenticated links') and a cap per source IP. When the table is full, the
   oldest half-open link of the source IP holding the most makes way for the
   newcomer (an honest handshake takes a few round trips; a link that has been
   half-open the longest is the likeliest to be idle, and an address holding
   many is the likeliest to be an attacker's); when one IP holds its share, its
   next one is refused. Every half-open link also has the OFTP handshake deadline armed
   from the moment it is created.

Both are pure bookkeeping: no socket, no clock of their own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import struct
from collections import OrderedDict
from typing import Generic, TypeVar

from aioquic.quic.packet import (
    RETRY_AEAD_KEY_VERSION_1,
    RETRY_AEAD_KEY_VERSION_2,
    RETRY_AEAD_NONCE_VERSION_1,
    RETRY_AEAD_NONCE_VERSION_2,
    QuicPacketType,
    QuicProtocolVersion,
    encode_long_header_first_byte,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOKEN_LIFETIME = 10.0  #: seconds a Retry token stays valid (clients echo it at once)
_MAC_LEN = 16
_TAG = b"oasis-retry-v1"

K = TypeVar("K")


def _address(addr: tuple[str, int]) -> bytes:
    """Packed IP and port (``socket.inet_pton``: the ``ipaddress`` module costs ~80 µs a call,
    which a flood of Initials would pay once per datagram)."""
    host = addr[0]
    packed = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    return packed + struct.pack("!H", addr[1] & 0xFFFF)


# The Retry integrity tag (RFC 9001 §5.8) is AES-128-GCM under a key fixed per QUIC
# version; aioquic's encode_quic_retry builds the cipher anew for every packet.
_RETRY_AEAD = {
    QuicProtocolVersion.VERSION_1: (AESGCM(RETRY_AEAD_KEY_VERSION_1), RETRY_AEAD_NONCE_VERSION_1),
    QuicProtocolVersion.VERSION_2: (AESGCM(RETRY_AEAD_KEY_VERSION_2), RETRY_AEAD_NONCE_VERSION_2),
}


def encode_retry(version: int, source_cid: bytes, destination_cid: bytes,
                 original_destination_cid: bytes, token: bytes) -> bytes:
    """A QUIC Retry packet, byte for byte what ``aioquic.quic.packet.encode_quic_retry`` makes."""
    aead, nonce = _RETRY_AEAD[QuicProtocolVersion(version)]
    packet = b"".join((
        bytes([encode_long_header_first_byte(version, QuicPacketType.RETRY, 0)]),
        struct.pack("!I", version), bytes([len(destination_cid)]), destination_cid,
        bytes([len(source_cid)]), source_cid, token))
    pseudo = bytes([len(original_destination_cid)]) + original_destination_cid + packet
    return packet + aead.encrypt(nonce, b"", pseudo)


class RetryTokens:
    """Issue and check stateless Retry tokens bound to a client address.

    Layout: ``issued_ms (8) | len(odcid) (1) | odcid | mac (16)`` where
    ``mac = HMAC-SHA256(secret, tag | address | retry_cid | issued_ms | odcid)[:16]``.
    """

    def __init__(self, lifetime: float = TOKEN_LIFETIME, secret: bytes | None = None) -> None:
        self.lifetime = lifetime
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def _mac(self, addr: tuple[str, int], retry_cid: bytes, issued: bytes, odcid: bytes) -> bytes:
        msg = b"".join((_TAG, _address(addr), bytes([len(retry_cid)]), retry_cid, issued, odcid))
        return hmac.new(self._secret, msg, hashlib.sha256).digest()[:_MAC_LEN]

    def issue(self, addr: tuple[str, int], odcid: bytes, retry_cid: bytes, now: float) -> bytes:
        issued = struct.pack("!Q", max(0, int(now * 1000)))
        return issued + bytes([len(odcid)]) + odcid + self._mac(addr, retry_cid, issued, odcid)

    def check(self, addr: tuple[str, int], token: bytes, retry_cid: bytes, now: float) -> bytes | None:
        """The original destination connection id if ``token`` is valid here and now, else None."""
        if len(token) < 9 + _MAC_LEN:
            return None
        n = token[8]
        if n > 20 or len(token) != 9 + n + _MAC_LEN:
            return None
        issued, odcid, mac = token[:8], token[9:9 + n], token[9 + n:]
        try:
            expected = self._mac(addr, retry_cid, issued, odcid)
        except (OSError, ValueError):  # not an IP address we can encode
            return None
        if not hmac.compare_digest(mac, expected):
            return None
        age = now - struct.unpack("!Q", issued)[0] / 1000
        if not -1.0 <= age <= self.lifetime:
            return None
        return odcid


class HalfOpenTable(Generic[K]):
    """Half-open links in the order they were admitted, with a count per source IP."""

    def __init__(self, cap: int, per_ip: int) -> None:
        if cap < 1 or per_ip < 1:
            raise ValueError("half-open caps must be at least 1")
        self.cap = cap
        self.per_ip = per_ip
        self._links: OrderedDict[K, str] = OrderedDict()
        self._by_ip: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._links)

    def __contains__(self, link: object) -> bool:
        return link in self._links

    def ip_full(self, ip: str) -> bool:
        return self._by_ip.get(ip, 0) >= self.per_ip

    def full(self) -> bool:
        return len(self._links) >= self.cap

    def victim(self) -> K | None:
        """The link to make way for a newcomer: the oldest of the source IP that holds the
        most half-open links. Plain oldest-first let an attacker dialling from a few
        addresses evict every honest handshake slower than its churn (a phone on a 1 s
        RTT); now it evicts its own first, and only 32 or more addresses each holding
        one can evict an honest dialler."""
        if not self._links:
            return None
        top = max(self._by_ip.values())
        return next(k for k, ip in self._links.items() if self._by_ip[ip] == top)

    def add(self, link: K, ip: str) -> None:
        self._links[link] = ip
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1

    def discard(self, link: K) -> None:
        ip = self._links.pop(link, None)
        if ip is None:
            return
        n = self._by_ip[ip] - 1
        if n:
            self._by_ip[ip] = n
        else:
            del self._by_ip[ip]


class RatePerSource:
    """A token bucket per source IP (``rate`` per second, ``burst`` at most), for the
    work a stranger can make us do without state of its own (a Retry costs an HMAC, an
    AES-GCM tag and a send). At most ``max_sources`` buckets are kept, least recently
    used dropped: a source forgotten that way starts again with a full bucket."""

    def __init__(self, rate: float, burst: float, max_sources: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str, now: float) -> bool:
        tokens, since = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - since) * self.rate)
        ok = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if ok else tokens, now)
        if len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return ok


class RecentlySeen:
    """Keys seen in the last ``window`` seconds, at most ``max_keys`` of them (the oldest
    forgotten first: a key forgotten early only costs what seeing it anew costs)."""

    def __init__(self, window: float, max_keys: int = 4096) -> None:
        self.window = window
        self.max_keys = max_keys
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def seen(self, key: bytes, now: float) -> bool:
        """Was ``key`` added less than ``window`` seconds before ``now``?"""
        at = self._seen.get(key)
        return at is not None and now - at < self.window

    def add(self, key: bytes, now: float) -> None:
        self._seen.pop(key, None)
        self._seen[key] = now
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        # (expired keys at the old end go as new ones come)
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at < self.window:
                break
            del self._seen[oldest]

    def __len__(self) -> int:
        return len(self._seen)

