"""Content ids for files: a Merkle tree over fixed-size blocks, a small manifest, proofs.

Theory of operation
-------------------
A file is cut into blocks of ``BLOCK_SIZE`` bytes (the last one shorter). Each block's
leaf hash is SHA-256 over a domain tag, the block's index and its bytes; the tree is a
binary tree padded to a power of two with the all-zero hash, each inner node SHA-256 over
a second domain tag and its two children (as BitTorrent v2 / RFC 6962, domain-separated
so a leaf can never pass for a node). The **manifest** is small and fixed in layout::

    [version, name, size, block_size, mime, root]        (MessagePack array)

and the **content id** (CID) is SHA-256 over a third domain tag and the manifest's bytes.
A getter that holds the CID checks any manifest it is given against it, then checks every
block on its own: a block travels with its Merkle path (``depth`` sibling hashes), so one
block from one peer is verified before it is stored -- no block list needs fetching first
and a peer that lies about one block is caught on that block.

Text form of a CID: ``of1`` + lower-case base32 (no padding) of the 32 bytes (55 chars).

Limits: ``MAX_FILE`` bytes, hence ``MAX_BLOCKS`` blocks and a proof of at most
``MAX_DEPTH`` hashes; a manifest of at most ``MAX_MANIFEST`` bytes. Decoding is strict
(msgspec, no unknown fields, no trailing bytes); every failure is a :class:`ContentError`.
Sans-I/O: bytes in, bytes out; no files, no clock.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

BLOCK_SIZE = 32 * 1024  #: a block and its proof fit one control frame (wire.MAX_CONTROL_FRAME)
MAX_FILE = 256 * 1024 * 1024  #: bytes of one file
MAX_BLOCKS = MAX_FILE // BLOCK_SIZE  #: 8192
MAX_DEPTH = 13  #: log2(MAX_BLOCKS): hashes in one proof
MAX_MANIFEST = 1024  #: bytes of an encoded manifest
MANIFEST_VERSION = 1
CID_PREFIX = "of1"

_LEAF = b"oasis-file-leaf-v1\x00"
_NODE = b"oasis-file-node-v1\x00"
_CID = b"oasis-file-manifest-v1\x00"
ZERO = bytes(32)

MIME_BY_EXT = {".mp4": "video/mp4", ".m4v": "video/mp4", ".ts": "video/mp2t", ".mkv": "video/x-matroska",
               ".webm": "video/webm", ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".txt": "text/plain",
               ".json": "application/json", ".png": "image/png", ".jpg": "image/jpeg"}
_MIME_OK = frozenset(MIME_BY_EXT.values()) | {"application/octet-stream"}


def safe_mime(mime: str) -> str:
    """``mime`` if it is one of the media types files are served as, else
    ``application/octet-stream``: a shared ``.html`` or ``.svg`` must never run as a page on
    a getter's gateway (a manifest's type is the publisher's word, so it is checked on the
    way out too)."""
    return mime if mime in _MIME_OK else "application/octet-stream"


class ContentError(ValueError):
    """Bad content-addressed input; ``code`` is stable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = message  #: the message without its code


class Manifest(Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    version: Annotated[int, Meta(ge=1, le=255)]
    name: Annotated[str, Meta(max_length=255)]  #: informational (never a path: see safe_name)
    size: Annotated[int, Meta(ge=0, le=MAX_FILE)]
    block_size: Annotated[int, Meta(ge=BLOCK_SIZE, le=BLOCK_SIZE)]  #: fixed in version 1
    mime: Annotated[str, Meta(max_length=64)]
    root: Annotated[bytes, Meta(min_length=32, max_length=32)]

    @property
    def blocks(self) -> int:
        return blocks_of(self.size)

    @property
    def depth(self) -> int:
        return depth_of(self.blocks)

    def block_len(self, index: int) -> int:
        """Exact length of block ``index`` (the last one may be short)."""
        if not 0 <= index < self.blocks:
            raise ContentError("bad_index", f"block {index} of {self.blocks}")
        return min(self.block_size, self.size - index * self.block_size)

    def encode(self) -> bytes:
        return _enc.encode(self)

    def cid(self) -> bytes:
        return hashlib.sha256(_CID + self.encode()).digest()

    def to_json(self, cid: bytes | None = None) -> dict[str, object]:
        return {"cid": cid_text(cid or self.cid()), "name": self.name, "size": self.size,
                "block_size": self.block_size, "blocks": self.blocks, "mime": self.mime}


_enc = msgspec.msgpack.Encoder()
_manifest_dec = msgspec.msgpack.Decoder(Manifest)


def blocks_of(size: int) -> int:
    return max(1, -(-size // BLOCK_SIZE))  # an empty file is one empty block


def depth_of(blocks: int) -> int:
    return max(0, (blocks - 1).bit_length())


def leaf_hash(index: int, data: bytes) -> bytes:
    return hashlib.sha256(_LEAF + index.to_bytes(4, "big") + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


class MerkleTree:
    """All levels of the tree over a file's leaf hashes (level 0 = leaves, padded)."""

    def __init__(self, leaves: list[bytes]) -> None:
        if not 1 <= len(leaves) <= MAX_BLOCKS:
            raise ContentError("too_large", f"{len(leaves)} blocks (at most {MAX_BLOCKS})")
        width = 1 << depth_of(len(leaves))
        level = leaves + [ZERO] * (width - len(leaves))
        self.levels = [level]
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
            self.levels.append(level)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, index: int) -> list[bytes]:
        """Sibling hashes from the leaf up (``depth`` of them)."""
        out = []
        for level in self.levels[:-1]:
            out.append(level[index ^ 1])
            index >>= 1
        return out


def build(chunks: Iterable[bytes], size: int, *, name: str, mime: str) -> tuple[Manifest, MerkleTree]:
    """Manifest and tree of a file given as its blocks in order (each ``BLOCK_SIZE``, the last
    shorter). Raises ContentError past the limits."""
    if size > MAX_FILE:
        raise ContentError("too_large", f"file of {size} bytes (at most {MAX_FILE})")
    leaves = [leaf_hash(i, c) for i, c in enumerate(chunks)]
    if not leaves:
        leaves = [leaf_hash(0, b"")]
    tree = MerkleTree(leaves)
    m = Manifest(MANIFEST_VERSION, safe_name(name), size, BLOCK_SIZE,
                 safe_mime(mime), tree.root)
    if len(m.encode()) > MAX_MANIFEST:
        raise ContentError("too_large", "manifest over its cap")
    return m, tree


def build_bytes(data: bytes, *, name: str = "", mime: str = "application/octet-stream"
                ) -> tuple[Manifest, MerkleTree]:
    return build((data[i:i + BLOCK_SIZE] for i in range(0, len(data), BLOCK_SIZE)), len(data),
                 name=name, mime=mime)


def safe_name(name: str) -> str:
    """A display name: the last path component, printable, at most 255 characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(c if c.isprintable() else "_" for c in base)[:255]
    return "" if clean in (".", "..") else clean


def verify_block(m: Manifest, index: int, data: bytes, proof: list[bytes]) -> bool:
    """True iff ``data`` is block ``index`` of the file ``m`` describes (pure, never raises)."""
    if not 0 <= index < m.blocks or len(data) != m.block_len(index) or len(proof) != m.depth:
        return False
    h = leaf_hash(index, data)
    i = index
    for sib in proof:
        if len(sib) != 32:
            return False
        h = node_hash(h, sib) if i % 2 == 0 else node_hash(sib, h)
        i >>= 1
    return h == m.root


def decode_manifest(raw: bytes, cid: bytes) -> Manifest:
    """The manifest in ``raw`` if it hashes to ``cid``; else ContentError."""
    if len(raw) > MAX_MANIFEST:
        raise ContentError("too_large", f"manifest of {len(raw)} bytes")
    if hashlib.sha256(_CID + raw).digest() != cid:
        raise ContentError("wrong_cid", "manifest does not hash to the content id")
    try:
        m: Manifest = _manifest_dec.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise ContentError("malformed", str(exc)) from None
    if m.version != MANIFEST_VERSION:
        raise ContentError("version", f"manifest version {m.version}")
    return m


def cid_text(cid: bytes) -> str:
    return CID_PREFIX + base64.b32encode(cid).decode().rstrip("=").lower()


def parse_cid(text: str) -> bytes:
    """Strict parse of a CID's text form; ContentError on anything else."""
    if not isinstance(text, str) or len(text) != len(CID_PREFIX) + 52 or not text.startswith(CID_PREFIX):
        raise ContentError("bad_cid", "a content id is 'of1' and 52 base32 characters")
    body = text[len(CID_PREFIX):]
    if body != body.lower() or not all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in body):
        raise ContentError("bad_cid", "a content id is lower-case base32")
    raw = base64.b32decode(body.upper() + "====")
    if cid_text(raw) != text:  # non-canonical trailing bits
        raise ContentError("bad_cid", "content id is not canonical (the last character's 4 unused low bits must be 0)")
    return raw
