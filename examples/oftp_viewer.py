"""An independent OFTP v1 viewer (and relay), written from docs/oftp.md alone.

    python examples/oftp_viewer.py 'oasis://STREAM?d=...&b=...' [--seconds 20] [--chunks N]
                                   [--relay HOST:PORT] [--pushed N] [--probe]

It imports nothing from ``oasis``: only qh3 (QUIC), msgspec (MessagePack) and cryptography
(Ed25519, X.509), so it shows that the specification is enough to speak the protocol
(tests/node/test_node_docs_interop.py runs it against a real broadcaster). From the stream
link (§16) it verifies the signed descriptor (§10.1), dials the first bootstrap peer with
its key pinned (§3), runs HELLO/AUTH (§3.1, §4), JOINs the stream asking for a start (§6,
§9.1), SUBSCRIBEs to every substream of the parent's STATUS (§9.2), receives CHUNKs on
unidirectional streams (§2), verifies each against the 72-byte signing layout (§7) and
sends STATUS every 2 s. At the end it fetches its newest chunk from the origin and compares
bytes and ETag (§10). ``--probe`` sends inputs whose answers §5, §6 and §8 specify (an
unknown id, trailing bytes, an unknown stream, a second HELLO, a CHUNK on the control
stream, REQUESTs) and reports what came back. With ``--relay`` it also listens as an OFTP
listener and announces that address to the link's tracker (§11.1, checking the signatures
of the records it gets back): a node that dials it (``oasis watch
'oasis://STREAM?d=...&b=OUR_ID@HOST:PORT'``) is answered JOIN, STATUS and its latest
keyframe, its SUBSCRIBE is accepted, and every verified chunk of its substreams is pushed
to it; REQUESTs are answered from what it holds.

It prints one JSON line at the end (``OFTP_VIEWER_TRACE=1``: each control message on stderr). A conformance check, not a node: it neither repairs
gaps nor defends itself against a hostile peer as a node must (docs/oftp.md §14).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import hashlib
import json
import os
import ssl
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID
from qh3.asyncio import QuicConnectionProtocol, connect, serve
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from qh3.tls import SignatureAlgorithm

ALPN = "oftp/1"
MAX_CONTROL_FRAME = 65_536
MAX_CHUNK_MESSAGE = 2_097_152 + 1024
SUPPORTED = [1]


# ---- §5, §6: messages: a MessagePack array, the numeric id first, then the fields in order.

class Hello(msgspec.Struct, array_like=True, tag=1):
    versions: list[int]
    key: bytes
    nonce: bytes
    agent: str = ""


class Auth(msgspec.Struct, array_like=True, tag=2):
    version: int
    signature: bytes


class Join(msgspec.Struct, array_like=True, tag=3):
    stream: str
    start: bool = False


class Status(msgspec.Struct, array_like=True, tag=5):
    stream: bytes
    latest: int
    have: int
    keyframe: int
    slots: int
    paths: list[list[bytes]]
    lags: list[int] = []


class Subscribe(msgspec.Struct, array_like=True, tag=6):
    stream: bytes
    mask: int
    substreams: int


class SubscribeAck(msgspec.Struct, array_like=True, tag=7):
    stream: bytes
    accepted: int
    rejected: int


class Unsubscribe(msgspec.Struct, array_like=True, tag=8):
    stream: bytes
    mask: int


class Request(msgspec.Struct, array_like=True, tag=9):
    stream: bytes
    seq: int


class Missing(msgspec.Struct, array_like=True, tag=10):
    stream: bytes
    seq: int
    refused: bool = False


class Chunk(msgspec.Struct, array_like=True, tag=11):
    stream: bytes
    seq: int
    time_us: int
    flags: int
    signature: bytes
    payload: bytes


class Goodbye(msgspec.Struct, array_like=True, tag=12):
    code: int
    reason: str = ""


class Error(msgspec.Struct, array_like=True, tag=13):
    code: int
    reason: str = ""


class Observed(msgspec.Struct, array_like=True, tag=30):
    host: str
    port: int


class Neighbours(msgspec.Struct, array_like=True, tag=31):
    keys: list[bytes]


class DmPrekey(msgspec.Struct, array_like=True, tag=53):
    key: bytes
    prekey: bytes
    expires_ms: int
    signature: bytes


Control = Hello | Auth | Join | Status | Subscribe | SubscribeAck | Unsubscribe | Request | Missing | Goodbye | Error | Observed | Neighbours | DmPrekey
_ctl_decoder = msgspec.msgpack.Decoder(Control)
_chunk_decoder = msgspec.msgpack.Decoder(Chunk)
_enc = msgspec.msgpack.Encoder()


def frame(msg: Any) -> bytes:
    """§2: 4-byte big-endian length + MessagePack body."""
    body = _enc.encode(msg)
    return struct.pack(">I", len(body)) + body


def decode_control(body: bytes) -> Any | None:
    """A known control message, or None for an id this viewer does not model."""
    try:
        return _ctl_decoder.decode(body)
    except msgspec.ValidationError:
        return None


# ---- §3, §7: identities, stream keys, signed layouts.

def peer_id_of(pub: bytes) -> str:
    return base64.b32encode(pub).decode().rstrip("=").lower()


def key_of(peer_id: str) -> bytes:
    pub = base64.b32decode(peer_id.upper() + "=" * (-len(peer_id) % 8))
    if len(pub) != 32:
        raise ValueError("a peer id is 32 bytes")
    return pub


def peer_tag(pub: bytes) -> bytes:
    return hashlib.sha256(b"oasis/peer-tag/v1\0" + pub).digest()[:8]


def stream_key(stream_id: str) -> bytes:
    peer, name = stream_id.split(".", 1)
    return hashlib.sha256(b"oasis/stream/v1\0" + key_of(peer) + name.encode()).digest()[:8]


def auth_transcript(signer: bytes, other: bytes, other_nonce: bytes, own_nonce: bytes, version: int) -> bytes:
    t = b"oasis/oftp-auth/v1\0" + signer + other + other_nonce + own_nonce + struct.pack(">H", version)
    assert len(t) == 117, len(t)
    return t


def chunk_signed_bytes(c: Chunk) -> bytes:
    b = (b"oasis/chunk/v1\0" + c.stream + struct.pack(">QQB", c.seq, c.time_us, c.flags)
         + hashlib.sha256(c.payload).digest())
    assert len(b) == 72, len(b)
    return b


def verify_chunk(broadcaster: Ed25519PublicKey, skey: bytes, c: Chunk) -> bool:
    """§7: flags 0, 1, 4 or 5 (keyframe, the first chunk of a broadcaster's run) with media, or
    2 (the end marker) with none; the signature under the broadcaster's key."""
    if c.stream != skey:
        return False
    if (c.flags & ~0x05) == 0:
        if c.flags & 0x04 and not c.payload:
            return False
    elif c.flags != 0x02 or c.payload:
        return False
    try:
        broadcaster.verify(c.signature, chunk_signed_bytes(c))
    except InvalidSignature:
        return False
    return True


def make_cert(priv: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    """§3: self-signed X.509 with the node's Ed25519 key, CN = peer id, serial = tag >> 1."""
    pub = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, peer_id_of(pub))])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(priv.public_key())
            .serial_number(int.from_bytes(peer_tag(pub), "big") >> 1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(priv, None))
    key_pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# ---- one link (either side).

@dataclass
class Stats:
    received: int = 0
    verified: int = 0
    bad: int = 0
    pushed: int = 0
    seqs: set[int] = field(default_factory=set)
    keyframes: int = 0
    #: the earliest chunk (lowest seq) received is a keyframe: JOIN(start) starts the viewer at the
    #: latest keyframe and nothing older is pushed (§9.1); pushes of later chunks may overtake it
    first_keyframe: bool | None = None
    first_seq: int | None = None
    errors: list[str] = field(default_factory=list)
    control: dict[str, int] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)  #: "out|in <peer>" per HELLO received


class Viewer:
    """What the links share: our key, the stream, the chunks held and our children."""

    def __init__(self, stream_id: str, stats: Stats) -> None:
        self.priv = Ed25519PrivateKey.generate()
        self.pub = self.priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.tag = peer_tag(self.pub)
        self.stream_id = stream_id
        self.skey = stream_key(stream_id)
        self.bkey = key_of(stream_id.split(".", 1)[0])
        self.broadcaster = Ed25519PublicKey.from_public_bytes(self.bkey)
        self.stats = stats
        self.chunks: dict[int, Chunk] = {}
        self.raw: dict[int, bytes] = {}
        self.latest = -1
        self.keyframe = 0
        self.parent_paths: list[list[bytes]] = []
        self.parent_lags: list[int] = []
        self.k = 0
        self.children: list[tuple[Link, int]] = []
        self.seq_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.done = asyncio.Event()
        self.want_verified = 0
        self.want_pushed = 0

    def _check_done(self) -> None:
        if ((self.want_verified or self.want_pushed)
                and self.stats.verified >= self.want_verified and self.stats.pushed >= self.want_pushed):
            self.done.set()

    async def wait_seq(self, seq: int) -> None:
        """Until a copy of `seq` arrives (a duplicate included)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.seq_waiters.append((seq, fut))
        await fut

    def on_chunk(self, raw: bytes, origin: Link) -> None:
        try:
            c = _chunk_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            self.stats.errors.append(f"chunk does not decode: {exc}")
            self.stats.bad += 1
            return
        self.stats.received += 1
        if self.stats.first_seq is None or c.seq < self.stats.first_seq:
            self.stats.first_seq, self.stats.first_keyframe = c.seq, bool(c.flags & 1)
        if not verify_chunk(self.broadcaster, self.skey, c):
            self.stats.bad += 1
            return
        self.stats.verified += 1
        self._check_done()
        for s, fut in self.seq_waiters:
            if s == c.seq and not fut.done():
                fut.set_result(None)
        if c.seq in self.chunks:
            return
        self.stats.seqs.add(c.seq)
        if c.flags & 1:
            self.stats.keyframes += 1
            self.keyframe = max(self.keyframe, c.seq)
        self.chunks[c.seq] = c
        self.raw[c.seq] = raw
        if c.seq > self.latest:
            self.latest = c.seq
        for old in [s for s in self.chunks if s < self.latest - 300]:
            del self.chunks[old]
            del self.raw[old]
        for child, mask in list(self.children):
            if self.k and mask & (1 << (c.seq % self.k)) and child is not origin:
                child.push(raw)
                self.stats.pushed += 1
        self._check_done()

    def status(self) -> Status:
        """Our STATUS: our parent's paths with our tag appended (§6, §9.2)."""
        latest = max(self.latest, 0)
        have = 0
        for i in range(63):
            if latest - 1 - i in self.chunks:
                have |= 1 << i
        paths = [p + [self.tag] if p else [] for p in self.parent_paths]
        lags = [0xFFFF] * len(paths)
        return Status(self.skey, latest, have, self.keyframe, 8, paths, lags)


class Link(QuicConnectionProtocol):
    """One OFTP link: the control stream, chunk streams, the handshake of §4."""

    viewer: Viewer
    pinned: bytes | None  # the key we dialled (None: we are the listener)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buf = b""
        self.uni: dict[int, bytearray] = {}
        self.nonce = os.urandom(16)
        self.peer_key: bytes | None = None
        self.authenticated = asyncio.Event()
        self.closed = asyncio.Event()
        self.joined = asyncio.Event()
        self.status_seen = asyncio.Event()
        self.acked = asyncio.Event()
        self.accepted = 0
        self.hello_sent = False
        self.control_id = 0
        self.is_dialler = False
        self.close_reason = ""
        self.answers: asyncio.Queue[Any] | None = None

    # -- sending
    def send(self, msg: Any) -> None:
        if self.closed.is_set():
            return
        try:
            self._quic.send_stream_data(self.control_id, frame(msg))
        except Exception:  # the connection closed under us (qh3 raises)
            self.closed.set()
            return
        self.transmit()

    def push(self, raw: bytes) -> None:
        if self.closed.is_set():
            return
        try:
            sid = self._quic.get_next_available_stream_id(is_unidirectional=True)
            self._quic.send_stream_data(sid, raw, end_stream=True)
        except Exception:  # the connection closed under us (qh3 raises)
            self.closed.set()
            return
        self.transmit()

    def hello(self, again: bool = False) -> None:
        if again or not self.hello_sent:
            self.hello_sent = True
            self.send(Hello(SUPPORTED, self.viewer.pub, self.nonce, "docs-viewer/0.1"))

    def goodbye(self, code: int, reason: str) -> None:
        self.send(Goodbye(code, reason))
        self._quic.close(error_code=0x100 + code, reason_phrase=reason)
        self.transmit()

    # -- receiving
    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted) and self.is_dialler:
            tls = self._quic.tls
            cert = tls._peer_certificate if tls is not None else None  # qh3's parsed server certificate
            der = cert.public_bytes() if cert is not None else b""
            key = x509.load_der_x509_certificate(der).public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            if key != self.pinned:
                self.close_reason = "WRONG_PEER (certificate)"
                self._quic.close(error_code=0x107, reason_phrase="wrong peer")
                self.transmit()
                return
            self.control_id = self._quic.get_next_available_stream_id()
            assert self.control_id == 0
            self.hello()
        elif isinstance(event, StreamDataReceived):
            if event.stream_id % 4 == 0:  # client-initiated bidirectional: the control stream
                self.buf += event.data
                if not self.is_dialler and not self.hello_sent:
                    self.control_id = event.stream_id
                    self.hello()
                self._frames()
                if event.end_stream:
                    self.close_reason = "peer ended its control stream"
            elif event.stream_id % 4 in (2, 3):  # unidirectional: a chunk stream
                b = self.uni.setdefault(event.stream_id, bytearray())
                b += event.data
                if len(b) > MAX_CHUNK_MESSAGE:
                    self.uni.pop(event.stream_id, None)
                    self._quic.stop_stream(event.stream_id, 0x3)
                elif event.end_stream:
                    raw = bytes(self.uni.pop(event.stream_id))
                    if self.authenticated.is_set():
                        self.viewer.on_chunk(raw, self)
        elif isinstance(event, StreamReset):
            self.uni.pop(event.stream_id, None)
        elif isinstance(event, ConnectionTerminated):
            self.close_reason = self.close_reason or f"closed {event.error_code:#x} {event.reason_phrase}"
            if os.environ.get("OFTP_VIEWER_TRACE"):
                print(f"{'out' if self.is_dialler else 'in'} {id(self) % 1000} terminated {self.close_reason}", file=sys.stderr)
            self.closed.set()
            self.viewer.children = [(c, m) for c, m in self.viewer.children if c is not self]

    def _frames(self) -> None:
        while len(self.buf) >= 4:
            (n,) = struct.unpack(">I", self.buf[:4])
            if n > MAX_CONTROL_FRAME:
                self.goodbye(0x3, "frame too large")
                return
            if len(self.buf) < 4 + n:
                return
            body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
            self._message(body)

    def _message(self, body: bytes) -> None:
        msg = decode_control(body)
        if self.answers is not None and msg is not None:
            self.answers.put_nowait(msg)
        stats = self.viewer.stats
        name = type(msg).__name__ if msg is not None else f"id {body[1] if len(body) > 1 else '?'}"
        stats.control[name] = stats.control.get(name, 0) + 1
        if os.environ.get("OFTP_VIEWER_TRACE"):
            print(f"{'out' if self.is_dialler else 'in'} {id(self) % 1000} {name}", file=sys.stderr)
        v = self.viewer
        if isinstance(msg, Hello):
            if self.pinned is not None and msg.key != self.pinned:
                self.goodbye(0x7, "wrong peer")
                return
            if msg.key == v.pub:
                self.goodbye(0x7, "connected to self")
                return
            common = set(msg.versions) & set(SUPPORTED)
            if not common:
                self.goodbye(0x5, "no common version")
                return
            self.peer_key = msg.key
            self.peer_nonce = msg.nonce
            stats.links.append(("out " if self.is_dialler else "in ") + peer_id_of(msg.key)[:8])
            self.version = max(common)
            sig = v.priv.sign(auth_transcript(v.pub, msg.key, msg.nonce, self.nonce, self.version))
            self.send(Auth(self.version, sig))
        elif isinstance(msg, Auth):
            if self.peer_key is None:
                self.goodbye(0x8, "AUTH before HELLO")
                return
            if msg.version != self.version:
                self.goodbye(0x5, "version")
                return
            t = auth_transcript(self.peer_key, v.pub, self.nonce, self.peer_nonce, msg.version)
            try:
                Ed25519PublicKey.from_public_bytes(self.peer_key).verify(msg.signature, t)
            except InvalidSignature:
                self.goodbye(0x6, "auth failed")
                return
            self.authenticated.set()
            if self.is_dialler:
                self.send(Join(v.stream_id, True))
        elif isinstance(msg, Join):
            if msg.stream != v.stream_id:
                self.send(Error(0xA, "unknown stream"))
                return
            if not self.is_dialler:
                self.send(Join(v.stream_id, False))
                self.send(v.status())
                if msg.start and v.keyframe in v.raw:
                    self.push(v.raw[v.keyframe])
            self.joined.set()
        elif isinstance(msg, Status):
            if self.is_dialler:
                v.parent_paths = msg.paths
                v.k = len(msg.paths)
                self.status_seen.set()
        elif isinstance(msg, SubscribeAck):
            self.accepted = msg.accepted
            self.acked.set()
        elif isinstance(msg, Subscribe) and not self.is_dialler:
            ok = 0
            if msg.substreams == v.k:
                for j in range(v.k):
                    if msg.mask & (1 << j) and v.parent_paths[j] and self.peer_key and peer_tag(self.peer_key) not in v.parent_paths[j]:
                        ok |= 1 << j
            v.children = [(c, m) for c, m in v.children if c is not self]
            if ok:
                v.children.append((self, ok))
            self.send(SubscribeAck(v.skey, ok, msg.mask & ~ok))
        elif isinstance(msg, Unsubscribe):
            v.children = [(c, m & ~msg.mask) for c, m in v.children if c is not self or m & ~msg.mask]
        elif isinstance(msg, Request) and not self.is_dialler:
            raw = v.raw.get(msg.seq)
            if raw is not None:
                self.push(raw)
            else:
                self.send(Missing(v.skey, msg.seq, False))
        elif isinstance(msg, Goodbye):
            self.close_reason = f"GOODBYE {msg.code:#x} {msg.reason}"
            stats.errors.append(self.close_reason)
            self.closed.set()
            v.children = [(c, m) for c, m in v.children if c is not self]
        elif isinstance(msg, Error):
            stats.errors.append(f"ERROR {msg.code:#x} {msg.reason}")


def _config(viewer: Viewer, is_client: bool) -> QuicConfiguration:
    cert_pem, key_pem = make_cert(viewer.priv)
    cfg = QuicConfiguration(is_client=is_client, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE,
                            idle_timeout=20.0, max_datagram_frame_size=None)
    # The certificates are Ed25519 (§3): TLS must offer that signature algorithm, which
    # qh3 leaves out of its default list.
    cfg.signature_algorithms = [SignatureAlgorithm.ED25519]
    with tempfile.TemporaryDirectory() as d:  # qh3 reads PEM most reliably from files
        cert_path, key_path = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(cert_pem)
        with open(key_path, "wb") as f:
            f.write(key_pem)
        cfg.load_cert_chain(cert_path, key_path)
    return cfg


# ---- §16, §10.1, §11.1: the link, the signed descriptor, the signed announce.

def parse_link(link: str) -> tuple[str, dict[str, Any] | None, list[str], str | None]:
    """oasis://<stream id>?d=<descriptor>&b=<peer>@<host>:<port>&t=<tracker> (§16)."""
    if not link.startswith("oasis://"):
        raise ValueError("not an oasis:// link")
    sid, _, query = link[len("oasis://"):].partition("?")
    params = urllib.parse.parse_qs(query, strict_parsing=True)
    desc = None
    if "d" in params:
        d = params["d"][0]
        desc = json.loads(base64.urlsafe_b64decode(d + "=" * (-len(d) % 4)))
    return sid.rstrip("/"), desc, params.get("b", []), params.get("t", [None])[0]


def _s(text: str | None) -> bytes:
    raw = (text or "").encode()
    return struct.pack(">H", len(raw)) + raw


def _opt(value: Any, fmt: str | None = None, size: int = 0) -> bytes:
    if value is None:
        return b"\0"
    if fmt is None:
        return b"\1" + int(value).to_bytes(size, "big")
    return b"\1" + struct.pack(fmt, value)


def descriptor_signed_bytes(d: dict[str, Any]) -> bytes:
    peer, name = d["stream"].split(".", 1)
    out: bytes = b"oasis/descriptor/v1\0" + key_of(peer) + bytes([len(name.encode())]) + name.encode()
    out += struct.pack(">IIBQ", d["bitrate_kbps"], d["chunk_ms"], d["substreams"], d["issued_at_ms"])
    out += _s(d["origin"]) + bytes([len(d["cdn"])]) + b"".join(_s(u) for u in d["cdn"]) + _s(d["tickets"])
    out += _opt(d["price_per_mb"], None, 32) + _opt(d["epoch_length"], ">I") + _opt(d["chain_id"], ">Q")
    out += b"\0" if d["contract"] is None else b"\1" + bytes.fromhex(d["contract"][2:])
    if d.get("encrypted"):  # (the stream's media sealed, §7.2: one byte, only when set)
        out += b"\1"
    return out


def verify_descriptor(d: dict[str, Any]) -> bool:
    peer = d["stream"].split(".", 1)[0]
    try:
        Ed25519PublicKey.from_public_bytes(key_of(peer)).verify(bytes.fromhex(d["sig"]), descriptor_signed_bytes(d))
    except InvalidSignature:
        return False
    return True


def announce_signed_bytes(peer_key: bytes, stream_id: str, time_ms: int, leaving: bool, host: str,
                          port: int, area: str) -> bytes:
    bpeer, name = stream_id.split(".", 1)
    return (b"oasis/announce/v1\0" + peer_key + key_of(bpeer) + bytes([len(name.encode())]) + name.encode()
            + struct.pack(">QBH", time_ms, 1 if leaving else 0, port) + bytes([len(host)]) + host.encode()
            + bytes([len(area.encode())]) + area.encode())


def verify_announce(stream_id: str, rec: dict[str, Any]) -> bool:
    key = key_of(rec["peer_id"])
    signed = announce_signed_bytes(key, stream_id, rec["time_ms"], False, rec["host"], rec["port"], rec.get("area") or "")
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(bytes.fromhex(rec["sig"]), signed)
    except InvalidSignature:
        return False
    return True


def http_json(url: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            raw = r.read()
            return r.status, raw, dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


async def probes(link: Link, viewer: Viewer) -> dict[str, Any]:
    """Inputs whose answers §6 and §8 specify; what came back for each."""
    out: dict[str, Any] = {}

    async def answer(send: Any, what: type, timeout: float = 3.0) -> Any:
        link.answers = asyncio.Queue()
        send()
        while True:
            m = await asyncio.wait_for(link.answers.get(), timeout)
            if isinstance(m, what):
                return m

    def raw(body: bytes) -> None:
        link._quic.send_stream_data(link.control_id, struct.pack(">I", len(body)) + body)
        link.transmit()

    async def error_for(name: str, send: Any) -> None:
        try:
            e = await answer(send, Error)
            out[name] = e.code
        except TimeoutError:
            out[name] = None

    await error_for("unknown_id", lambda: raw(_enc.encode([99, 1])))
    await error_for("trailing_bytes", lambda: raw(_enc.encode(viewer.status()) + b"\xc0"))
    await error_for("unknown_stream", lambda: link.send(Join(viewer.stream_id.split(".")[0] + ".nosuch", False)))
    await error_for("hello_after_auth", lambda: link.hello(again=True))
    await error_for("wrong_channel_chunk", lambda: raw(_enc.encode(viewer.chunks[max(viewer.chunks)])))
    try:
        far = await answer(lambda: link.send(Request(viewer.skey, 2**62)), Missing)
        out["request_far_future"] = {"missing": True, "refused": far.refused}
    except TimeoutError:
        out["request_far_future"] = None
    # a seq the parent holds and our STATUS does not claim (§9.4). A parent serves only
    # chunks still in its window and younger than its request horizon (§9.4), so take a
    # recent one, forget it, and say so in a STATUS before asking (the control stream is
    # ordered: the parent reads the STATUS first).
    recent = sorted(viewer.chunks)[-8:]
    old = recent[0] if recent else 0
    viewer.chunks.pop(old, None)
    viewer.raw.pop(old, None)
    link.send(viewer.status())
    link.send(Request(viewer.skey, old))
    try:
        await asyncio.wait_for(viewer.wait_seq(old), 3)
        out["request_held_seq"] = "chunk"
    except TimeoutError:
        out["request_held_seq"] = None
    return out


async def run(link_text: str, seconds: float, relay: str | None = None, probe: bool = False,
              chunks: int = 0, pushed: int = 0) -> dict[str, Any]:
    """View (and relay) the stream of ``link_text`` for ``seconds`` at most; with ``chunks``
    or ``pushed`` set, end as soon as that many chunks were verified, or pushed to children."""
    stream_id, desc, boots, tracker = parse_link(link_text)
    stats = Stats()
    viewer = Viewer(stream_id, stats)
    viewer.want_verified, viewer.want_pushed = chunks, pushed
    result: dict[str, Any] = {"peer_id": peer_id_of(viewer.pub), "stream": stream_id}
    if desc is not None:
        result["descriptor_verified"] = verify_descriptor(desc)
        if not result["descriptor_verified"]:
            stats.errors.append("the link's descriptor does not verify under the §10.1 layout")
    if not boots:
        raise SystemExit("this viewer needs a link with a bootstrap peer (b=)")
    peer, _, hostport = boots[0].partition("@")
    host, _, port = hostport.rpartition(":")
    server = None
    relay_addr: tuple[str, int] | None = None
    if relay:
        rhost, _, rport = relay.rpartition(":")

        def listener(*a: Any, **kw: Any) -> Link:
            link = Link(*a, **kw)
            link.viewer, link.pinned, link.is_dialler = viewer, None, False
            return link

        server = await serve(rhost, int(rport), configuration=_config(viewer, False), create_protocol=listener)
        transport = server._transport
        assert transport is not None
        relay_addr = (rhost, transport.get_extra_info("sockname")[1])
        result["relay"] = f"{peer_id_of(viewer.pub)}@{rhost}:{relay_addr[1]}"
        print(json.dumps({"relay": result["relay"]}), flush=True)

    if tracker and relay_addr is not None:
        # §11.1: a signed announce of our relay address; its answer's records are signed too.
        now_ms = int(time.time() * 1000)
        sig = viewer.priv.sign(announce_signed_bytes(viewer.pub, stream_id, now_ms, False, relay_addr[0], relay_addr[1], ""))
        body = {"v": 1, "stream": stream_id, "peer_id": peer_id_of(viewer.pub), "host": relay_addr[0],
                "port": relay_addr[1], "area": "", "time_ms": now_ms, "leaving": False, "sig": sig.hex(),
                "descriptor": None}
        st, raw, _ = await asyncio.to_thread(http_json, tracker.rstrip("/") + "/announce", body)
        result["announce_status"] = st
        if st == 200:
            ans = json.loads(raw)
            recs = ans.get("peers", [])
            result["announce_peers"] = len(recs)
            result["announce_peers_verified"] = sum(verify_announce(stream_id, r) for r in recs)
        else:
            stats.errors.append(f"announce: {st} {raw[:200]!r}")

    def dialler(*a: Any, **kw: Any) -> Link:
        link = Link(*a, **kw)
        link.viewer, link.pinned, link.is_dialler = viewer, key_of(peer), True
        return link

    t0 = time.monotonic()
    async with connect(host.strip("[]"), int(port), configuration=_config(viewer, True),
                       create_protocol=dialler) as link:
        assert isinstance(link, Link)
        await asyncio.wait_for(link.authenticated.wait(), 5)
        result["auth_s"] = round(time.monotonic() - t0, 3)
        await asyncio.wait_for(link.status_seen.wait(), 5)
        k = viewer.k
        if desc is not None and k != desc["substreams"]:
            stats.errors.append(f"STATUS has {k} paths, the descriptor {desc['substreams']} substreams")
        result["parent_paths_are_its_tag"] = all(p == [peer_tag(key_of(peer))] for p in viewer.parent_paths)
        # §9.2: the broadcaster grants a child that has none exactly one substream; bits it
        # rejects while accepting another are no refusal, so a viewer with no other candidate
        # asks again at once (at most k rounds) until it holds every substream or none is new.
        full, held = (1 << k) - 1, 0
        for _ in range(k):
            link.acked.clear()
            link.send(Subscribe(viewer.skey, full, k))
            await asyncio.wait_for(link.acked.wait(), 5)
            if link.accepted | held == held:
                break
            held |= link.accepted
            if held == full:
                break
        result["k"], result["accepted"] = k, held
        end = time.monotonic() + seconds
        stop = asyncio.ensure_future(asyncio.wait([asyncio.ensure_future(link.closed.wait()),
                                                   asyncio.ensure_future(viewer.done.wait())],
                                                  return_when=asyncio.FIRST_COMPLETED))
        while time.monotonic() < end and not stop.done():
            # STATUS every 2 s (§9.2), to the parent and to our children
            link.send(viewer.status())
            for child, _ in list(viewer.children):
                child.send(viewer.status())
            await asyncio.wait([stop], timeout=min(2.0, max(0.0, end - time.monotonic())))
        stop.cancel()
        if probe and not link.closed.is_set():
            result["probes"] = await probes(link, viewer)
        if not link.closed.is_set():
            link.goodbye(0xD, "viewer done")  # SHUTDOWN: GOODBYE, then QUIC close 0x100 + code (§8)
        result["closed"] = link.close_reason or None
    if server is not None:
        server.close()  # type: ignore[no-untyped-call]  # (qh3 leaves it unannotated)
    if desc is not None and viewer.raw:
        # §10: the origin serves the same bytes as the chunk stream, ETag = hex(signature[0:12]).
        seq = max(viewer.raw)
        st, got, headers = await asyncio.to_thread(http_json, f"{desc['origin']}/{stream_id}/{seq}.chunk")
        c = viewer.chunks[seq]
        result["origin_same_bytes"] = st == 200 and got == viewer.raw[seq]
        result["origin_etag_ok"] = headers.get("ETag") == f'"{c.signature[:12].hex()}"'
    seqs = sorted(stats.seqs)
    result.update(received=stats.received, verified=stats.verified, bad=stats.bad, pushed=stats.pushed,
                  distinct=len(seqs), keyframes=stats.keyframes, first_keyframe=stats.first_keyframe,
                  first=seqs[0] if seqs else None, last=seqs[-1] if seqs else None,
                  errors=stats.errors[:5], control=stats.control, links=stats.links, seconds=seconds)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("link", help="the stream's oasis:// link (the broadcaster's \"link\" or \"short_link\")")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--chunks", type=int, default=0, help="end once this many chunks verified")
    ap.add_argument("--pushed", type=int, default=0, help="end once this many chunks were relayed")
    ap.add_argument("--probe", action="store_true", help="at the end, send inputs whose answers §6/§8 specify")
    ap.add_argument("--relay", help="also listen here (HOST:PORT, port 0: any) and relay to viewers that dial us")
    args = ap.parse_args(argv)
    out = asyncio.run(run(args.link, args.seconds, args.relay, args.probe, args.chunks, args.pushed))
    print(json.dumps(out), flush=True)
    return 0 if out["verified"] > 0 and out["bad"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
