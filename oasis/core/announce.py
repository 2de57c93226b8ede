"""Signed tracker announces: who says it is in a stream, at which address, and when.

A peer tells the tracker "I, key K, am in stream S at HOST:PORT (area A) at
time T" — or "I am leaving S" — and signs exactly that with its own Ed25519
key (the key *is* its peer id) over a fixed, domain-separated layout::

    "oasis/announce/v1\\0" | peer key (32) | broadcaster key (32)
        | name length (u8) | name | time_ms (u64 BE) | flags (u8: 1 = leaving)
        | port (u16 BE) | host length (u8) | host (ASCII IP literal)
        | area length (u8) | area (UTF-8)

The stream is named in full (broadcaster key and name), so a signature for one
stream says nothing about another. The tracker checks the signature, that T
is fresh (``WINDOW`` seconds back, ``SKEW`` ahead) and newer than the last
announce it accepted from that peer in that stream (no replay), and that HOST
is the address the request came from; it hands the signed records to joiners,
who check them again before dialling. ``verify_announce`` is pure.

On the JSON face (``POST /tracker/announce``) an announce is an object with
the fields of :class:`AnnounceBody`; ``announce_from_json`` decodes it strictly.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

import msgspec

from .descriptor import DescriptorBody
from .identity import Identity, key_of_peer_id, peer_id_of, verify
from .stream import StreamId, StreamIdError

ANNOUNCE_TAG = b"oasis/announce/v1\x00"
FLAG_LEAVING = 0x01
WINDOW = 20.0  #: seconds an announce stays fresh (its time may be this far in the past)
SKEW = 5.0  #: seconds an announce's time may be ahead of the tracker's clock
MAX_AREA = 32  #: characters of an area label
MAX_HOST = 45  #: characters of an IP literal (IPv6 with IPv4 tail)
_U64 = struct.Struct(">Q")


class AnnounceError(ValueError):
    """An announce that does not decode or verify; ``code`` is a stable short name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Announce:
    """One signed announce (or leave) of a peer in a stream."""

    stream: StreamId
    peer: bytes  #: the announcing peer's 32-byte Ed25519 key
    host: str  #: IP literal the peer listens on (OFTP, UDP)
    port: int
    time_ms: int  #: the peer's wall clock when it signed, ms since the epoch
    signature: bytes
    area: str = ""
    leaving: bool = False

    @property
    def peer_id(self) -> str:
        return peer_id_of(self.peer)

    def signing_bytes(self) -> bytes:
        return announce_signing_bytes(self.stream, self.peer, self.host, self.port, self.time_ms,
                                      self.area, self.leaving)

    def record(self) -> dict[str, object]:
        """The JSON record a tracker hands out (the stream is implied; never a leave)."""
        return {"peer_id": self.peer_id, "host": self.host, "port": self.port, "area": self.area,
                "time_ms": self.time_ms, "sig": self.signature.hex()}

    def to_json(self) -> dict[str, object]:
        return {"v": 1, "stream": str(self.stream), "leaving": self.leaving, **self.record()}


def announce_signing_bytes(sid: StreamId, peer: bytes, host: str, port: int, time_ms: int,
                           area: str, leaving: bool) -> bytes:
    name = sid.name.encode()
    h = host.encode("ascii")
    a = area.encode()
    return (ANNOUNCE_TAG + peer + sid.broadcaster + bytes([len(name)]) + name + _U64.pack(time_ms)
            + bytes([FLAG_LEAVING if leaving else 0]) + port.to_bytes(2, "big")
            + bytes([len(h)]) + h + bytes([len(a)]) + a)


def check_fields(host: str, port: int, time_ms: int, area: str) -> str:
    """Validate the plain fields; returns the canonical host text or raises AnnounceError."""
    if not isinstance(host, str) or not 0 < len(host) <= MAX_HOST:
        raise AnnounceError("bad_host", "host: an IP address literal")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise AnnounceError("bad_host", f"host {host[:MAX_HOST]!r} is not an IP address literal") from None
    if ip.is_unspecified or ip.is_multicast:
        raise AnnounceError("bad_host", f"host {host} cannot be dialled (listen on a concrete address)")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise AnnounceError("bad_port", "port: an integer in 1..65535")
    if not isinstance(time_ms, int) or isinstance(time_ms, bool) or not 0 <= time_ms < 2**63:
        raise AnnounceError("bad_time", "time_ms: milliseconds since the epoch")
    if not isinstance(area, str) or len(area) > MAX_AREA or not area.isprintable():
        raise AnnounceError("bad_area", f"area: a printable string of at most {MAX_AREA} characters")
    return str(ip)


def sign_announce(identity: Identity, sid: StreamId, host: str, port: int, time_ms: int, *,
                  area: str = "", leaving: bool = False) -> Announce:
    host = check_fields(host, port, time_ms, area)
    sig = identity.sign(announce_signing_bytes(sid, identity.public, host, port, time_ms, area, leaving))
    return Announce(sid, identity.public, host, port, time_ms, sig, area, leaving)


def verify_announce(a: Announce) -> bool:
    """True when ``a`` carries its peer's valid signature over exactly these fields."""
    return len(a.signature) == 64 and verify(a.peer, a.signature, a.signing_bytes())


def is_fresh(time_ms: int, now: float) -> bool:
    """Whether a signed time is within the freshness window around ``now`` (seconds)."""
    t = time_ms / 1000
    return now - WINDOW <= t <= now + SKEW


# ---- JSON --------------------------------------------------------------------

class PeerRecord(msgspec.Struct, forbid_unknown_fields=True):
    """A signed peer record as the tracker returns it."""

    peer_id: str
    host: str
    port: int
    time_ms: int
    sig: str
    area: str = ""


class AnnounceBody(PeerRecord, forbid_unknown_fields=True):
    """``POST /tracker/announce``: a signed record plus the stream and the leaving flag."""

    stream: str = ""
    v: int = 1
    leaving: bool = False
    descriptor: DescriptorBody | None = None  #: a signed stream descriptor (any announcer)


def _sig(text: str) -> bytes:
    if not isinstance(text, str) or len(text) != 128:
        raise AnnounceError("bad_signature", "sig: 64 bytes in hex")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise AnnounceError("bad_signature", "sig: 64 bytes in hex") from None


def announce_from_record(sid: StreamId, rec: PeerRecord, leaving: bool = False) -> Announce:
    """Build (not yet verify) an announce from decoded fields; raises AnnounceError."""
    try:
        peer = key_of_peer_id(rec.peer_id)
    except ValueError as exc:
        raise AnnounceError("bad_peer_id", f"peer_id: {exc}") from None
    host = check_fields(rec.host, rec.port, rec.time_ms, rec.area)
    if host != rec.host:
        raise AnnounceError("bad_host", "host: use the canonical form of the address")
    return Announce(sid, peer, host, rec.port, rec.time_ms, _sig(rec.sig), rec.area, leaving)


def announce_from_json(body: AnnounceBody) -> Announce:
    if body.v != 1:
        raise AnnounceError("bad_version", f"announce version {body.v} is not supported (1)")
    try:
        sid = StreamId.parse(body.stream)
    except StreamIdError as exc:
        raise AnnounceError("bad_stream", str(exc)) from None
    return announce_from_record(sid, body, body.leaving)


def verified_peer_records(sid: StreamId, records: object, now: float, *, limit: int = 50,
                          max_age: float = 120.0) -> list[Announce]:
    """The records of a tracker reply that carry a valid, recent signature for ``sid``.

    Anything malformed, unsigned, signed for another stream or older than
    ``max_age`` seconds is left out: a node dials only addresses a peer signed.
    """
    out: list[Announce] = []
    if not isinstance(records, list):
        return out
    for raw in records[:limit]:
        try:
            rec = msgspec.convert(raw, PeerRecord)
            a = announce_from_record(sid, rec)
        except (msgspec.ValidationError, AnnounceError):
            continue
        if not now - max_age <= a.time_ms / 1000 <= now + max_age:
            continue
        if verify_announce(a):
            out.append(a)
    return out
