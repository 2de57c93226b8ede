"""The signed stream descriptor: everything a viewer needs besides the stream id.

The broadcaster signs, with the stream's own key (the key inside the stream
id), the stream's parameters and where to fetch it: bitrate, chunk duration,
substreams, origin and CDN URLs, the ticket URL and the ticket terms (all
terms optional), and when it issued the descriptor. A viewer that knows only
the stream id fetches a descriptor from anyone (tracker, origin, a friend),
checks the signature against the id, and builds its swarm from it; a newer
``issued_at_ms`` replaces an older one. Layout (all integers big-endian)::

    "oasis/descriptor/v1\\0" | broadcaster key (32) | name length (u8) | name
        | bitrate_kbps (u32) | chunk_ms (u32) | substreams (u8) | issued_at_ms (u64)
        | origin (str) | CDN count (u8) | CDN URL (str) ... | tickets (str)
        | price_per_mb (opt u256) | epoch_length (opt u32) | chain_id (opt u64)
        | contract (opt 20 bytes) [| 0x01 if encrypted]

where *str* is a u16 length and UTF-8 bytes (length 0: absent) and *opt* is a
presence byte (0 or 1) followed by the value when present. The last byte, 0x01, is there
only for an encrypted stream (``encrypted``: its media sealed, oasis.core.streamcrypt), so
a plain descriptor's bytes are what they were before the flag existed. Every field has a
cap (:data:`MAX_URL`, :data:`MAX_CDN` …) checked before signing and on decode;
``verify_descriptor`` is pure.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .identity import Identity, verify
from .stream import StreamId, StreamIdError
from .urls import base_url_problem

DESCRIPTOR_TAG = b"oasis/descriptor/v1\x00"
MAX_URL = 512  #: bytes of one URL
MAX_CDN = 4  #: CDN URLs in one descriptor
MAX_JSON = 4096  #: bytes of a descriptor's JSON form (well above the largest valid one)
_HEX40 = re.compile(r"^0x[0-9a-fA-F]{40}$")
_NUMS = struct.Struct(">IIBQ")


class DescriptorError(ValueError):
    """A descriptor that does not decode or verify; ``code`` is a stable short name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Descriptor:
    stream: StreamId
    bitrate_kbps: int
    chunk_ms: int
    substreams: int
    issued_at_ms: int
    origin: str | None = None  #: base URL of the broadcaster's origin (…/origin)
    cdn: tuple[str, ...] = ()  #: base URLs of caches in front of the origin, preferred first
    tickets: str | None = None  #: ticket URL (proof of relay), if the stream pays relays
    price_per_mb: int | None = None  #: ticket terms, wei per MB relayed
    epoch_length: int | None = None  #: ticket terms, seconds
    chain_id: int | None = None
    contract: str | None = None  #: 0x-prefixed 20-byte address
    #: the chunks' media is sealed with a content key that only the stream link carries
    #: (oasis.core.streamcrypt; docs/oftp.md §7.2): relays carry it, only key holders play it
    encrypted: bool = False
    signature: bytes = field(default=b"", compare=False)

    def signing_bytes(self) -> bytes:
        return descriptor_signing_bytes(self)

    @property
    def fetch_url(self) -> str | None:
        """Where a viewer fetches late chunks: the first CDN, else the origin."""
        return self.cdn[0] if self.cdn else self.origin

    def to_json(self) -> dict[str, Any]:
        out = self._json()
        if self.encrypted:  # (only then: a plain stream's JSON is as it always was)
            sig = out.pop("sig")
            out["encrypted"] = True
            out["sig"] = sig
        return out

    def _json(self) -> dict[str, Any]:
        return {"v": 1, "stream": str(self.stream), "bitrate_kbps": self.bitrate_kbps,
                "chunk_ms": self.chunk_ms, "substreams": self.substreams,
                "issued_at_ms": self.issued_at_ms, "origin": self.origin, "cdn": list(self.cdn),
                "tickets": self.tickets, "price_per_mb": self.price_per_mb,
                "epoch_length": self.epoch_length, "chain_id": self.chain_id,
                "contract": self.contract, "sig": self.signature.hex()}


def _url(value: str | None, what: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise DescriptorError("bad_url", f"{what}: an http(s) URL")
    raw = value.encode()
    if len(raw) > MAX_URL or not value.isprintable() or any(c.isspace() for c in value):
        raise DescriptorError("bad_url", f"{what}: at most {MAX_URL} bytes, no spaces")
    # a viewer requests it (its paths appended): no user, query, fragment or link-local
    # host, whoever signed it -- anyone signs a descriptor for a stream of their own
    problem = base_url_problem(value, f"{what} URL")
    if problem is not None:
        raise DescriptorError("bad_url", f"{what}: {problem}")
    return len(raw).to_bytes(2, "big") + raw


def _opt(value: int | None, nbytes: int, what: str) -> bytes:
    if value is None:
        return b"\x00"
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 256 ** nbytes:
        raise DescriptorError("bad_terms", f"{what}: an integer in 0..2^{8 * nbytes}-1")
    return b"\x01" + value.to_bytes(nbytes, "big")


def check(d: Descriptor) -> None:
    """Raise DescriptorError unless every field is in range (the caps of the layout)."""
    ints = (("bitrate_kbps", d.bitrate_kbps, 10, 1_000_000), ("chunk_ms", d.chunk_ms, 10, 10_000),
            ("substreams", d.substreams, 1, 16), ("issued_at_ms", d.issued_at_ms, 0, 2**63 - 1))
    for name, v, lo, hi in ints:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise DescriptorError("bad_field", f"{name}: an integer in {lo}..{hi}")
    if not isinstance(d.cdn, tuple) or len(d.cdn) > MAX_CDN:
        raise DescriptorError("bad_url", f"cdn: at most {MAX_CDN} URLs")
    if d.contract is not None and not (isinstance(d.contract, str) and _HEX40.match(d.contract)):
        raise DescriptorError("bad_terms", "contract: 0x and 40 hex digits")
    if d.epoch_length is not None and isinstance(d.epoch_length, int) and d.epoch_length < 1:
        raise DescriptorError("bad_terms", "epoch_length: at least 1 second")


def descriptor_signing_bytes(d: Descriptor) -> bytes:
    check(d)
    name = d.stream.name.encode()
    out = [DESCRIPTOR_TAG, d.stream.broadcaster, bytes([len(name)]), name,
           _NUMS.pack(d.bitrate_kbps, d.chunk_ms, d.substreams, d.issued_at_ms),
           _url(d.origin, "origin") or b"\x00\x00", bytes([len(d.cdn)])]
    out += [_url(u, "cdn") for u in d.cdn]
    out += [_url(d.tickets, "tickets") or b"\x00\x00", _opt(d.price_per_mb, 32, "price_per_mb"),
            _opt(d.epoch_length, 4, "epoch_length"), _opt(d.chain_id, 8, "chain_id"),
            b"\x00" if d.contract is None else b"\x01" + bytes.fromhex(d.contract[2:])]
    if d.encrypted is not False:  # appended only when set: a plain descriptor's bytes (and
        if d.encrypted is not True:  # every signature made before) are unchanged
            raise DescriptorError("bad_field", "encrypted: true or false")
        out.append(b"\x01")
    return b"".join(out)


def sign_descriptor(identity: Identity, d: Descriptor) -> Descriptor:
    """Sign ``d`` with the stream's key; ``identity`` must be the stream's broadcaster."""
    if identity.public != d.stream.broadcaster:
        raise DescriptorError("wrong_key", "only the stream's broadcaster key signs its descriptor")
    sig = identity.sign(descriptor_signing_bytes(d))
    return dataclasses.replace(d, signature=sig)


def verify_descriptor(d: Descriptor, sid: StreamId | None = None) -> bool:
    """True when ``d`` is in range and signed by its stream's key (and is for ``sid``, if given)."""
    if sid is not None and d.stream != sid:
        return False
    try:
        data = descriptor_signing_bytes(d)
    except DescriptorError:
        return False
    return len(d.signature) == 64 and verify(d.stream.broadcaster, d.signature, data)


# ---- JSON --------------------------------------------------------------------

class DescriptorBody(msgspec.Struct, forbid_unknown_fields=True):
    stream: str
    bitrate_kbps: int
    chunk_ms: int
    substreams: int
    issued_at_ms: int
    sig: str
    v: int = 1
    origin: str | None = None
    cdn: list[str] = []
    tickets: str | None = None
    price_per_mb: int | None = None
    epoch_length: int | None = None
    chain_id: int | None = None
    contract: str | None = None
    encrypted: bool = False


def descriptor_from_body(b: DescriptorBody) -> Descriptor:
    if b.v != 1:
        raise DescriptorError("bad_version", f"descriptor version {b.v} is not supported (1)")
    try:
        sid = StreamId.parse(b.stream)
    except StreamIdError as exc:
        raise DescriptorError("bad_stream", str(exc)) from None
    if len(b.cdn) > MAX_CDN:
        raise DescriptorError("bad_url", f"cdn: at most {MAX_CDN} URLs")
    if not isinstance(b.sig, str) or len(b.sig) != 128:
        raise DescriptorError("bad_signature", "sig: 64 bytes in hex")
    try:
        sig = bytes.fromhex(b.sig)
    except ValueError:
        raise DescriptorError("bad_signature", "sig: 64 bytes in hex") from None
    d = Descriptor(sid, b.bitrate_kbps, b.chunk_ms, b.substreams, b.issued_at_ms, b.origin,
                   tuple(b.cdn), b.tickets, b.price_per_mb, b.epoch_length, b.chain_id, b.contract,
                   b.encrypted, sig)
    descriptor_signing_bytes(d)  # raises DescriptorError on any field out of range
    return d


def descriptor_from_obj(obj: object) -> Descriptor:
    """Decode an already-parsed JSON value strictly; raises DescriptorError."""
    try:
        return descriptor_from_body(msgspec.convert(obj, DescriptorBody))
    except msgspec.ValidationError as exc:
        raise DescriptorError("bad_descriptor", f"descriptor: {exc}") from None


def descriptor_from_json(raw: bytes) -> Descriptor:
    """Decode a descriptor's JSON bytes strictly (size-capped); raises DescriptorError."""
    if len(raw) > MAX_JSON:
        raise DescriptorError("too_large", f"descriptor: more than {MAX_JSON} bytes")
    try:
        return descriptor_from_body(msgspec.json.decode(raw, type=DescriptorBody))
    except UnicodeDecodeError:  # (msgspec raises it for a string or key that is not UTF-8)
        raise DescriptorError("bad_descriptor", "descriptor: JSON is malformed: not UTF-8") from None
    except ValueError as exc:  # msgspec's DecodeError and ValidationError
        raise DescriptorError("bad_descriptor", f"descriptor: {exc}") from None


def verified_descriptor(obj: object, sid: StreamId) -> Descriptor:
    """Decode and verify a descriptor for ``sid``; raises DescriptorError saying why not."""
    return _verified(descriptor_from_obj(obj), sid)


def verified_descriptor_json(raw: bytes, sid: StreamId) -> Descriptor:
    """:func:`verified_descriptor` from JSON bytes (a peer's, e.g. the DHT's): decoded
    straight into the typed body, size-capped, never as free-form JSON."""
    return _verified(descriptor_from_json(raw), sid)


def _verified(d: Descriptor, sid: StreamId) -> Descriptor:
    if d.stream != sid:
        raise DescriptorError("wrong_stream", "descriptor is for another stream")
    if not verify_descriptor(d, sid):
        raise DescriptorError("bad_signature", "descriptor signature is not the stream's")
    return d
