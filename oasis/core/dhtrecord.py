"""DHT names and signed provider records (pure).

* **Node id** = ``SHA-256("oasis/dht-node/v1\\0" ‖ Ed25519 public key)``: a node cannot pick
  its id, only grind keys for it; every id the DHT uses is computed from a key that a link
  authenticated (there is no id field on the wire).
* **Stream key** (where a stream's records live) =
  ``SHA-256("oasis/dht-stream/v1\\0" ‖ broadcaster key ‖ name)``.
* **Provider record**: "peer P carries stream S and is reachable at these addresses until
  ``expires_ms``; this is P's ``seq``-th statement", signed by P over a fixed layout::

      "oasis/dht-provider/v1\\0" | provider key (32) | broadcaster key (32)
          | name length (u8) | name | seq (u64 BE) | expires_ms (u64 BE)
          | address count (u8, 1..2) | per address: host length (u8) | host (ASCII) | port (u16 BE)

  followed on the wire by the 64-byte signature. Hosts are canonical unicast IP literals.
  A record whose provider is the stream's broadcaster is the *stream record*; an
  ADD_PROVIDER carrying it may also carry the stream's signed descriptor (core/descriptor.py).

``parse_record`` is strict (tag, lengths, canonical hosts, no trailing bytes) and never
raises anything but :class:`RecordError`; ``check_record`` adds the signature and the
time rules. ``prefix_of`` names the network an address belongs to (IPv4 /24, IPv6 /48),
the unit of the DHT's diversity limits; ``block_of`` the wider block (IPv4 /16, IPv6 /32).
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .identity import Identity
from .stream import StreamId, StreamIdError

NODE_TAG = b"oasis/dht-node/v1\x00"
STREAM_TAG = b"oasis/dht-stream/v1\x00"
RECORD_TAG = b"oasis/dht-provider/v1\x00"
MAX_ADDRS = 2  #: addresses in one record (e.g. one IPv4, one IPv6)
MAX_HOST = 45
#: largest encoded record: tag, keys, a 32-character name, two IPv6 addresses, signature
MAX_RECORD = len(RECORD_TAG) + 32 + 32 + 1 + 32 + 16 + 1 + MAX_ADDRS * (1 + MAX_HOST + 2) + 64
_QQ = struct.Struct(">QQ")

Verify = Callable[[bytes, bytes, bytes], bool]  #: (public key, signature, data) -> valid
Address = tuple[str, int]


class RecordError(ValueError):
    """A record that does not parse or check; ``code`` is a stable short name (a counter)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_ID_CACHE: dict[bytes, int] = {}
_ID_CACHE_MAX = 1 << 18


def node_id(key: bytes) -> int:
    """The 256-bit DHT id of a node's Ed25519 public key, as an int (XOR metric).

    Memoised (bounded): every table, answer and lookup computes ids of the same keys."""
    nid = _ID_CACHE.get(key)
    if nid is None:
        if len(_ID_CACHE) >= _ID_CACHE_MAX:
            _ID_CACHE.clear()
        nid = _ID_CACHE[key] = int.from_bytes(hashlib.sha256(NODE_TAG + key).digest(), "big")
    return nid


def stream_key(sid: StreamId) -> bytes:
    """Where ``sid``'s records live in the DHT (32 bytes)."""
    return hashlib.sha256(STREAM_TAG + sid.broadcaster + sid.name.encode()).digest()


def cpl(a: int, b: int) -> int:
    """Common prefix length of two 256-bit ids (256 when equal)."""
    return 256 - (a ^ b).bit_length()


@lru_cache(maxsize=1 << 16)
def canonical_host(host: str) -> str | None:
    """``host`` if it is a canonical, dialable unicast IP literal, else None.

    No IPv6 zone id (``fe80::1%eth0``): it names an interface of the host that wrote it, so
    another host would dial its own link with it."""
    if not 0 < len(host) <= MAX_HOST or "%" in host:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.is_unspecified or ip.is_multicast or str(ip) != host or host == "255.255.255.255":
        return None
    return host


def _net(host: str, v4: int, v6: int) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "?" + host[:MAX_HOST]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return "4:" + str(ipaddress.ip_network(f"{ip}/{v4}", strict=False).network_address)
    return "6:" + str(ipaddress.ip_network(f"{ip}/{v6}", strict=False).network_address)


@lru_cache(maxsize=1 << 17)
def prefix_of(host: str) -> str:
    """The diversity unit of an address: its IPv4 /24 or IPv6 /48 (IPv4-mapped IPv6 as IPv4)."""
    return _net(host, 24, 48)


@lru_cache(maxsize=1 << 16)
def block_of(host: str) -> str:
    """The wider unit: an IPv4 /16 or IPv6 /32 (an RIR's smallest IPv6 allocation to an
    ISP): many /24s (/48s) cost one holder little, many blocks take many providers."""
    return _net(host, 16, 32)


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    stream: StreamId
    provider: bytes  #: the signer's Ed25519 key
    seq: int  #: the provider's statement number: a higher one replaces a lower
    expires_ms: int  #: wall clock, ms since the epoch
    addrs: tuple[Address, ...]  #: where the provider accepts OFTP links
    signature: bytes
    raw: bytes  #: the encoded record (layout + signature), as carried on the wire

    @property
    def key(self) -> bytes:
        return stream_key(self.stream)

    @property
    def is_stream_record(self) -> bool:
        """Signed by the stream's broadcaster itself."""
        return self.provider == self.stream.broadcaster


def _layout(sid: StreamId, provider: bytes, seq: int, expires_ms: int,
            addrs: Sequence[Address]) -> bytes:
    name = sid.name.encode()
    out = [RECORD_TAG, provider, sid.broadcaster, bytes([len(name)]), name,
           _QQ.pack(seq, expires_ms), bytes([len(addrs)])]
    for host, port in addrs:
        h = host.encode("ascii")
        out += [bytes([len(h)]), h, port.to_bytes(2, "big")]
    return b"".join(out)


def sign_record(identity: Identity, sid: StreamId, seq: int, expires_ms: int,
                addrs: Sequence[Address]) -> ProviderRecord:
    """Sign a provider record; raises RecordError on a field out of range."""
    if not 1 <= len(addrs) <= MAX_ADDRS:
        raise RecordError("bad_addrs", f"a record names 1..{MAX_ADDRS} addresses")
    for host, port in addrs:
        if canonical_host(host) is None or not 0 < port < 65536:
            raise RecordError("bad_addrs", f"{host!r}:{port} is not a dialable address")
    if not 0 <= seq < 2**63 or not 0 <= expires_ms < 2**63:
        raise RecordError("bad_field", "seq and expires_ms: 0..2^63-1")
    data = _layout(sid, identity.public, seq, expires_ms, addrs)
    sig = identity.sign(data)
    return ProviderRecord(sid, identity.public, seq, expires_ms, tuple(addrs), sig, data + sig)


def parse_record(raw: bytes) -> ProviderRecord:
    """Decode an encoded record strictly (no signature check); raises RecordError."""
    if len(raw) > MAX_RECORD:
        raise RecordError("too_large", f"record of {len(raw)} bytes (cap {MAX_RECORD})")
    n = len(RECORD_TAG)
    if raw[:n] != RECORD_TAG:
        raise RecordError("bad_tag", "not a provider record")
    try:
        provider, broadcaster = raw[n:n + 32], raw[n + 32:n + 64]
        pos = n + 64
        ln = raw[pos]
        name = raw[pos + 1:pos + 1 + ln].decode("ascii")
        pos += 1 + ln
        seq, expires_ms = _QQ.unpack_from(raw, pos)
        pos += 16
        count = raw[pos]
        pos += 1
        addrs: list[Address] = []
        for _ in range(count):
            hl = raw[pos]
            host = raw[pos + 1:pos + 1 + hl].decode("ascii")
            port = int.from_bytes(raw[pos + 1 + hl:pos + 3 + hl], "big")
            pos += 3 + hl
            if len(host) != hl:
                raise RecordError("truncated", "record ends inside an address")
            addrs.append((host, port))
    except (IndexError, struct.error, UnicodeDecodeError):
        raise RecordError("truncated", "record ends early or holds non-ASCII text") from None
    if len(broadcaster) != 32 or len(name) != ln:
        raise RecordError("truncated", "record ends early")
    if not 1 <= count <= MAX_ADDRS:
        raise RecordError("bad_addrs", f"a record names 1..{MAX_ADDRS} addresses")
    for host, port in addrs:
        if canonical_host(host) is None or not 0 < port < 65536:
            raise RecordError("bad_addrs", "an address is not a canonical unicast IP literal and port")
    if seq >= 2**63 or expires_ms >= 2**63:
        raise RecordError("bad_field", "seq and expires_ms: 0..2^63-1")
    if len(raw) != pos + 64:
        raise RecordError("bad_length", "record must end with exactly a 64-byte signature")
    try:
        sid = StreamId(broadcaster, name)
    except StreamIdError as exc:
        raise RecordError("bad_stream", str(exc)) from None
    return ProviderRecord(sid, provider, seq, expires_ms, tuple(addrs), raw[pos:], raw)


def check_record(raw: bytes, now: float, verify: Verify, *, max_ttl: float,
                 skew: float) -> ProviderRecord:
    """Parse, then require a valid signature, ``now < expires <= now + max_ttl + skew``.

    Raises RecordError with code ``expired``, ``too_long`` or ``bad_signature``."""
    rec = parse_record(raw)
    exp = rec.expires_ms / 1000
    if exp <= now:
        raise RecordError("expired", "record has expired")
    if exp > now + max_ttl + skew:
        raise RecordError("too_long", f"record expires more than {max_ttl:g} s ahead")
    if not verify(rec.provider, rec.signature, raw[:-64]):
        raise RecordError("bad_signature", "record is not signed by its provider")
    return rec
