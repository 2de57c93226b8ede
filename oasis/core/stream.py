"""The live stream model: stream ids and signed chunks.

A stream is named by its broadcaster's public key plus a name; its text id is
``<peer-id>.<name>``. A chunk is a slice of MPEG-TS (≈33 ms, one video frame, by default) with a
sequence number, the broadcaster's wall-clock time at which it was complete, a
random-access flag and the SHA-256 of its payload, all signed by the
broadcaster over a fixed, domain-separated layout::

    "oasis/chunk/v1\\0" | stream key (8) | seq (u64 BE) | time_us (u64 BE)
                        | flags (u8) | sha256(payload) (32)

The 8-byte stream key is itself a hash of the broadcaster key and the name, so
the signature binds the chunk to exactly one stream. ``verify_chunk`` is pure.

The broadcaster ends a stream with an *end marker* (:func:`sign_end`): a chunk with
``FLAG_END``, an empty payload, at the seq after the last one, signed like any chunk and
carried like one (pushed, pulled, served by the origin). A viewer that holds it wants no
later seq (so counts none as skipped) and tells its user that the stream ended.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from dataclasses import dataclass

from .identity import Identity, key_of_peer_id, peer_id_of, verify
from .streamcrypt import seal
from .wire import ChunkMsg

CHUNK_TAG = b"oasis/chunk/v1\x00"
FLAG_KEYFRAME = 0x01
#: the end marker: no chunk follows (empty payload; never with FLAG_KEYFRAME)
FLAG_END = 0x02
#: the first chunk a broadcaster run made (with media; a keyframe or not): the seqs between
#: the end marker of its previous run and this one were never made (docs/oftp.md §7.1)
FLAG_RUN_START = 0x04
_MEDIA_FLAGS = FLAG_KEYFRAME | FLAG_RUN_START
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_HDR = struct.Struct(">QQB")


class StreamIdError(ValueError):
    """A stream id that does not parse; the message says the expected form."""


def _cut(text: str, limit: int = 80) -> str:
    """``text`` quoted for a message, cut at ``limit`` characters (a 5,000-character name
    was echoed whole)."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


@dataclass(frozen=True)
class StreamId:
    broadcaster: bytes  #: 32-byte Ed25519 public key
    name: str

    def __post_init__(self) -> None:
        if len(self.broadcaster) != 32:
            raise StreamIdError("broadcaster key must be 32 bytes")
        if not _NAME_RE.match(self.name):
            raise StreamIdError(
                f"stream name {_cut(self.name)}: use 1-32 of a-z 0-9 _ - (starting with a letter or digit)")

    @classmethod
    def parse(cls, text: str) -> StreamId:
        peer, dot, name = text.partition(".")
        if not dot:
            raise StreamIdError(f"stream id {_cut(text)} is not of the form <peer-id>.<name>")
        try:
            key = key_of_peer_id(peer)
        except ValueError as exc:
            raise StreamIdError(f"stream id {_cut(text)}: {exc}") from None
        return cls(key, name)

    def __str__(self) -> str:
        return f"{peer_id_of(self.broadcaster)}.{self.name}"

    @property
    def key(self) -> bytes:
        """8-byte stream key used on the wire."""
        return stream_key(self.broadcaster, self.name)


@functools.lru_cache(maxsize=1024)
def stream_key(broadcaster: bytes, name: str) -> bytes:
    """The 8-byte key of a stream (memoized: ``StreamId.key`` is read per message)."""
    return hashlib.sha256(b"oasis/stream/v1\x00" + broadcaster + name.encode()).digest()[:8]


def chunk_signing_bytes(skey: bytes, seq: int, time_us: int, flags: int, payload_hash: bytes) -> bytes:
    return CHUNK_TAG + skey + _HDR.pack(seq, time_us, flags) + payload_hash


def sign_chunk(identity: Identity, sid: StreamId, seq: int, time_us: int,
               keyframe: bool, payload: bytes, content_key: bytes | None = None,
               run_start: bool = False) -> ChunkMsg:
    """Make the signed chunk message for ``payload`` (broadcaster side); with
    ``content_key`` (an encrypted stream) the media is sealed first and the signature is
    over the sealed payload (oasis.core.streamcrypt); ``run_start``: the first chunk of
    this run of the broadcaster (``FLAG_RUN_START``)."""
    flags = (FLAG_KEYFRAME if keyframe else 0) | (FLAG_RUN_START if run_start else 0)
    skey = sid.key
    if content_key is not None:
        payload = seal(content_key, skey, seq, time_us, flags, payload)
    sig = identity.sign(chunk_signing_bytes(skey, seq, time_us, flags, hashlib.sha256(payload).digest()))
    return ChunkMsg(stream=skey, seq=seq, time_us=time_us, flags=flags, signature=sig, payload=payload)


def sign_end(identity: Identity, sid: StreamId, seq: int, time_us: int) -> ChunkMsg:
    """Make the signed end marker of ``sid`` at ``seq`` (the seq after the last chunk)."""
    skey = sid.key
    sig = identity.sign(chunk_signing_bytes(skey, seq, time_us, FLAG_END, hashlib.sha256(b"").digest()))
    return ChunkMsg(stream=skey, seq=seq, time_us=time_us, flags=FLAG_END, signature=sig, payload=b"")


def verify_chunk(sid: StreamId, chunk: ChunkMsg) -> bool:
    """True when ``chunk`` belongs to ``sid`` and carries its broadcaster's valid signature
    (flags: the keyframe and run-start bits on a chunk with media, or the end bit alone with
    an empty payload; nothing else)."""
    flags = chunk.flags
    if chunk.stream != sid.key:
        return False
    if flags & ~_MEDIA_FLAGS == 0:
        if flags & FLAG_RUN_START and not chunk.payload:
            return False  # (a run starts with media)
    elif flags != FLAG_END or chunk.payload:
        return False
    data = chunk_signing_bytes(chunk.stream, chunk.seq, chunk.time_us, chunk.flags,
                               hashlib.sha256(chunk.payload).digest())
    return verify(sid.broadcaster, chunk.signature, data)


def is_keyframe(chunk: ChunkMsg) -> bool:
    return bool(chunk.flags & FLAG_KEYFRAME)


def is_end(chunk: ChunkMsg) -> bool:
    """The stream's end marker (verified chunks only: :func:`verify_chunk` checks its form)."""
    return bool(chunk.flags & FLAG_END)
