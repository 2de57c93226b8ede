"""A hostile OFTP peer, to prove a node's defences on loopback.

    python -m oasis.tools.hostile --victim 127.0.0.1:PORT:PEER_ID --stream SID --mode all
    python -m oasis.tools.hostile --tracker http://127.0.0.1:PORT/tracker --stream SID --mode flood

It dials the victims it is told (``--victim HOST:PORT:PEER_ID``, or the peers a
tracker lists for ``--stream``), only on loopback, and mounts one attack per
mode (``--mode all`` cycles them), built on the project's own wire codec and
session and on aioquic. Everything is bounded: ``--duration`` seconds in all
(shared by the modes), at most ``--rate`` crafted sends per second and
``--max-sends`` in all, at most ``--max-victims`` victims; ``--source`` dials from another
loopback address (several tools at once, each from its own, are several attackers to a
victim that counts its limits per address). It prints one JSON
object: per mode, what it sent and how each victim reacted (QUIC close code and
reason, ERROR and GOODBYE codes, STOP_SENDING, what the victim sent back), and
whether the victim still completes an honest handshake afterwards (and how long that
probe took: ``probe_seconds``; a whole ``CONNECT_TIMEOUT`` means no answer).

Modes:

``bomb``
    A control frame of nested MessagePack arrays before authentication (2 KB,
    and one announcing 64 KB), and a 64 KB one after it.
``junk``
    UDP datagrams that are not QUIC, short datagrams, and Initials with random
    connection ids and forged Retry tokens.
``silent``
    QUIC handshakes that never open the control stream (no HELLO).
``prechunk``
    Chunk streams (unidirectional, 64 KB each) before authentication.
``flood``
    After JOIN, REQUESTs at the rate limit: for chunks the victim holds, and
    out of the live window.
``liar``
    STATUS claiming ``latest = 2^63-2``, every chunk, a keyframe far ahead, a
    one-hop path and zero lag.
``forge``
    Chunks with bad signatures: the genuine header and signature over altered
    bytes for seqs the victim holds, and noise signatures for seqs ahead.
``foreign``
    After JOIN, chunks validly signed by the tool's own key for a stream of its
    own that the victim does not carry: never verified by the victim's swarm, so
    the bad-chunk rule never sees them (they must be scored as chunks of a stream
    not joined, until the tool is banned).
``replay``
    Genuine chunks the victim sent us, sent back again and again later.
``withhold``
    An attractive STATUS (the victim's own chunks, one hop, zero lag); every
    SUBSCRIBE accepted, nothing ever forwarded, REQUESTs never answered.
``tracker``
    Announces with forged signatures, for the victims' ids, leaving (evicting)
    announces for them, announces for another host, and a flood of fresh
    identities; then whether the victims are still listed.
``tickets``
    ``POST /tickets`` with junk, oversized and unsigned bodies at the rate limit.
``receipts``
    After JOIN, ReceiptMsg, WalletBind and TicketMsg with junk bodies.
``chat``
    After JOIN, stream chat at the rate limit: messages with forged signatures
    for random senders, validly signed messages far over the per-sender rate,
    a fresh identity per message (sybils), and mute records signed by us
    instead of the broadcaster.
``dm``
    Direct-message envelopes with junk ciphertext for random recipients (for
    the victim to store), for the victim itself, already expired, signed
    prekeys with bad signatures, and one genuine message to the victim sent
    again and again (a replay: shown once).
``files``
    File-swarm abuse: with ``--cid`` (a file the victim holds) a manifest that
    does not hash to the cid, blocks nobody asked for, BLOCK_REQUEST floods
    over the queue cap and BLOCK_CANCEL floods; for random cids FILE_WANT and
    BLOCK_REQUEST floods.
``nat``
    NAT traversal and peer exchange from a service link (authenticated, a DHT
    PING, never a JOIN: no neighbour): PUNCH OFFERs naming the ports of a UDP
    sink of the tool's (each one dialled was a reflection) and the unspecified
    address, INTROs for random peers, OBSERVED with a false address, NEIGHBOURS
    of made-up keys. The report counts what the victim sent to the sink (its
    dials: none is the defence).
``dht``
    The DHT from a service link (docs/oftp.md §14.5): unsolicited NODES answers,
    ADD_PROVIDER with records signed by throw-away keys (another provider than the
    link), expired records and records for another key, FIND_NODE floods over the
    request budget; and every FIND_NODE/GET_PROVIDERS the victim asks us is answered
    with 20 made-up keys and 20 records of throw-away providers, all at the ports of
    a UDP sink of the tool's in other /24s of 127/8 (the victim may dial a few, then
    stops following us). The report counts what reached the sinks.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import ssl
import struct
import sys
import time
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from oasis.core import session as ss
from oasis.core import wire
from oasis.core.identity import Identity, key_of_peer_id, peer_id_of, peer_tag
from oasis.core.stream import StreamId
from oasis.core.wire import ErrorCode
from oasis.node.keystore import make_certificate

if TYPE_CHECKING:
    import aiohttp

MODES = ("bomb", "junk", "silent", "prechunk", "flood", "liar", "forge", "foreign", "replay", "withhold",
         "tracker", "tickets", "receipts", "chat", "dm", "files", "nat", "dht")
NEEDS_STREAM = {"flood", "liar", "forge", "foreign", "replay", "withhold", "tracker", "receipts", "chat"}
HUGE = 0x7FFF_FFFF_FFFF_FFFF - 1  #: 2^63 - 2
ALL_BITS = 0x7FFF_FFFF_FFFF_FFFF
CONNECT_TIMEOUT = 5.0
#: an attack's dial past the run's deadline (``--duration``) waits at most this per step:
#: a loaded victim cannot stretch the run by CONNECT_TIMEOUT per dial (the liveness
#: probe, ``alive``, always waits the full CONNECT_TIMEOUT)
LATE_DIAL_S = 0.2
MAX_KEPT_CHUNKS = 64  #: genuine chunks kept for replay / forging
MAX_NOTED = 32  #: per-kind samples kept in a report


class Budget:
    """The run's limits: a deadline, a send rate and a total count."""

    def __init__(self, duration: float, rate: float, max_sends: int) -> None:
        self.deadline = time.monotonic() + duration
        self.interval = 1.0 / rate
        self.next = time.monotonic()
        self.left = max_sends
        self.sent = 0

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def take(self, until: float) -> bool:
        """Wait for a send slot before ``until`` (monotonic); False when out of time or count."""
        if self.left <= 0:
            return False
        now = time.monotonic()
        at = max(now, self.next)
        if at > min(until, self.deadline):
            return False
        self.next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)
        self.left -= 1
        self.sent += 1
        return True


@dataclass
class Victim:
    host: str
    port: int
    key: bytes

    @property
    def peer_id(self) -> str:
        return peer_id_of(self.key)

    def name(self) -> str:
        return f"{self.host}:{self.port}:{self.peer_id[:12]}"


def loopback_only(host: str) -> str:
    """The IP literal of ``host`` if it is a loopback address; refuses anything else."""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise SystemExit(f"hostile: {host!r} is not an IP literal (loopback only)") from None
    if not ip.is_loopback:
        raise SystemExit(f"hostile: {host} is not a loopback address; this tool dials loopback only")
    return str(ip)


#: the loopback address this run dials from (``--source``; None: the kernel's choice): a
#: victim counts its per-address limits by it, so several tools at once, each from an
#: address of its own, are several attackers
SOURCE: ContextVar[str | None] = ContextVar("SOURCE", default=None)


def _local() -> tuple[str, int] | None:
    src = SOURCE.get()
    return None if src is None else (src, 0)


def _http() -> aiohttp.ClientSession:
    """An HTTP client session (5 s a request) that connects from ``SOURCE``."""
    import aiohttp
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5),
                                 connector=aiohttp.TCPConnector(local_addr=_local()))


def parse_victim(text: str) -> Victim:
    try:
        host, port, pid = text.rsplit(":", 2)
        return Victim(loopback_only(host.strip("[]")), int(port), key_of_peer_id(pid))
    except ValueError as exc:
        raise SystemExit(f"hostile: --victim {text!r}: use HOST:PORT:PEER_ID ({exc})") from None


def loopback_url(url: str) -> str:
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname is None:
        raise SystemExit(f"hostile: {url!r} is not an http URL")
    loopback_only(parts.hostname)
    return url.rstrip("/")


# ---- one QUIC connection to a victim -------------------------------------------------

class Conn(QuicConnectionProtocol):
    """A client connection that records what the victim does; optionally runs the
    real OFTP handshake (the project's Session) and then lets the caller send
    anything on the control stream and on chunk streams."""

    def __init__(self, quic: QuicConnection, *, identity: Identity, expected: bytes,
                 auth: bool) -> None:
        super().__init__(quic)
        self.identity = identity
        self.auth = auth
        self.session = ss.Session(identity, is_dialler=True, expected_key=expected,
                                  rng=random.SystemRandom()) if auth else None
        self.reader = wire.FrameReader()
        self.control_open = False
        #: the QUIC handshake is done. aioquic's wait_connected marks the connection connected
        #: only if its waiter exists when HandshakeCompleted is processed; under uvloop a
        #: datagram's callback can run before the waiting task's first step, and the wait
        #: then ran to its timeout (5 s a dial on a loaded machine)
        self.connected = asyncio.Event()
        self.authed = asyncio.Event()
        self.terminated = asyncio.Event()
        self.t0 = time.monotonic()
        self.got: Counter[str] = Counter()  #: messages received, by name
        self.errors: Counter[str] = Counter()  #: ERROR codes received
        self.goodbye: str | None = None
        self.close_code: str | None = None
        self.close_reason = ""
        self.closed_after: float | None = None
        self.closed_by: str | None = None
        self.stop_sending = 0
        self.resets = 0
        self.undecodable = 0
        self.status: wire.Status | None = None
        self.subscribes: list[wire.Subscribe] = []
        self.requests: list[int] = []
        self.requests_n = 0
        self.chunks: dict[int, wire.ChunkMsg] = {}
        self.on_message: Any = None  #: called with each message (after auth)
        self.hung_up = False  #: we closed it (the end of an attack, not the victim's doing)

    # -- input
    def quic_event_received(self, event: qe.QuicEvent) -> None:
        now = time.time()
        if isinstance(event, qe.HandshakeCompleted):
            self.connected.set()
        if isinstance(event, qe.HandshakeCompleted) and self.session is not None:
            self.session.begin(now)
            self.session.start(now)
            self.control_open = True
        elif isinstance(event, qe.StreamDataReceived):
            if event.stream_id == 0:
                if self.session is not None:
                    self.session.receive_control(event.data, now, end=event.end_stream)
                else:
                    self._raw_control(event.data)
            elif event.stream_id & 2 and self.session is not None and self.session.authenticated:
                self.session.receive_chunk_stream(event.stream_id, event.data, event.end_stream, now)
        elif isinstance(event, qe.StopSendingReceived):
            self.stop_sending += 1
        elif isinstance(event, qe.StreamReset):
            self.resets += 1
        elif isinstance(event, qe.ConnectionTerminated):
            self._terminated(event.error_code, event.reason_phrase)
        if self.session is not None:
            self._drain()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._terminated(None, "socket closed")

    def _terminated(self, code: int | None, reason: str) -> None:
        if self.terminated.is_set():
            return
        if code is not None:
            self.close_code = _code_name(code)
        self.close_reason = reason[:200]
        self.closed_by = "us" if self.hung_up else "victim"
        self.closed_after = round(time.monotonic() - self.t0, 3)
        self.terminated.set()

    def _raw_control(self, data: bytes) -> None:
        try:
            bodies = self.reader.feed(data)
        except wire.WireError:
            self.undecodable += 1
            return
        for body in bodies:
            try:
                self._note(wire.decode_control(body))
            except wire.WireError:
                self.undecodable += 1

    def _drain(self) -> None:
        s = self.session
        assert s is not None
        for a in s.actions():
            if isinstance(a, ss.SendControl):
                self._quic.send_stream_data(0, a.data, end_stream=False)
        while (ev := s.next_event()) is not None:
            if isinstance(ev, ss.Authenticated):
                self.authed.set()
            elif isinstance(ev, ss.MessageReceived):
                self._note(ev.message)
            elif isinstance(ev, ss.ChunkReceived):
                self.got["CHUNK"] += 1
                if len(self.chunks) >= MAX_KEPT_CHUNKS:
                    del self.chunks[min(self.chunks)]
                self.chunks[ev.chunk.seq] = ev.chunk
        self.transmit()

    def _note(self, msg: wire.Message) -> None:
        self.got[type(msg).__name__.upper()] += 1
        if isinstance(msg, wire.Error):
            self.errors[_oftp_name(msg.code)] += 1
        elif isinstance(msg, wire.Goodbye):
            self.goodbye = _oftp_name(msg.code)
        elif isinstance(msg, wire.Status):
            self.status = msg
        elif isinstance(msg, wire.Subscribe):
            if len(self.subscribes) < MAX_NOTED:
                self.subscribes.append(msg)
        elif isinstance(msg, wire.Request):
            self.requests_n += 1
            if len(self.requests) < MAX_NOTED:
                self.requests.append(msg.seq)
        if self.on_message is not None:
            self.on_message(msg)

    # -- output
    def send_control(self, data: bytes) -> None:
        if self.terminated.is_set():
            return
        self.control_open = True
        try:
            self._quic.send_stream_data(0, data, end_stream=False)
        except Exception:  # the victim stopped or reset the stream: keep going, it is counted
            pass
        self.transmit()

    def send_msg(self, msg: wire.Message) -> None:
        self.send_control(wire.frame(msg))

    def send_chunk_stream(self, data: bytes, raw: bool = False) -> None:
        """``data`` (an encoded CHUNK) on a chunk stream of its own, framed as OFTP 2 asks
        when the link speaks it (a run of one chunk), unless ``raw`` (bytes sent as they are)."""
        if self.terminated.is_set():
            return
        s = self.session
        if not raw and s is not None and s.version is not None and s.version >= wire.CHUNK_RUNS_VERSION:
            data = wire.frame_chunk(data)
        sid = self._quic.get_next_available_stream_id(is_unidirectional=True)
        try:
            self._quic.send_stream_data(sid, data, end_stream=True)
        except Exception:
            pass
        self.transmit()

    def report(self) -> dict[str, Any]:
        return {"closed": self.terminated.is_set(), "closed_by": self.closed_by,
                "close_code": self.close_code,
                "close_reason": self.close_reason, "closed_after_s": self.closed_after,
                "goodbye": self.goodbye, "errors": dict(self.errors), "received": dict(self.got),
                "stop_sending": self.stop_sending, "stream_resets": self.resets,
                "authenticated": self.authed.is_set()}


def _code_name(code: int) -> str:
    """A QUIC close code: OFTP codes ride QUIC's application range from 0x100."""
    if code >= 0x100:
        return _oftp_name(code - 0x100)
    return f"QUIC_{code:#x}"


def _oftp_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"{code:#x}"


async def dial(v: Victim, *, auth: bool, identity: Identity | None = None,
               deadline: float = float("inf")) -> Conn:
    """A QUIC connection to ``v`` (and, with ``auth``, the OFTP handshake); each step
    waits CONNECT_TIMEOUT, or LATE_DIAL_S once ``deadline`` (monotonic) has passed."""
    ident = identity or Identity.generate()
    cfg = QuicConfiguration(is_client=True, alpn_protocols=[wire.ALPN], idle_timeout=20.0,
                            server_name="oasis")
    cfg.certificate = make_certificate(ident)
    cfg.private_key = ident.private
    cfg.verify_mode = ssl.CERT_NONE
    loop = asyncio.get_running_loop()
    quic = QuicConnection(configuration=cfg)
    tr, proto = await loop.create_datagram_endpoint(
        lambda: Conn(quic, identity=ident, expected=v.key, auth=auth), remote_addr=(v.host, v.port),
        local_addr=_local())
    conn: Conn = proto
    conn.connect(tr.get_extra_info("peername") or (v.host, v.port))  # (IPv6: a 4-tuple)
    def limit() -> float:
        return min(CONNECT_TIMEOUT, max(LATE_DIAL_S, deadline - time.monotonic()))
    try:
        await asyncio.wait_for(_first(conn.connected, conn.terminated), limit())
        if auth:
            await asyncio.wait_for(_first(conn.authed, conn.terminated), limit())
    except (TimeoutError, ConnectionError):
        pass  # the report says how far it got
    return conn


async def hang_up(conn: Conn) -> None:
    if not conn.terminated.is_set():
        conn.hung_up = True
        conn.close()
        try:
            await asyncio.wait_for(conn.wait_closed(), 2.0)
        except (TimeoutError, ConnectionError):
            pass
    if conn._transport is not None:
        conn._transport.close()


async def _first(*events: asyncio.Event) -> None:
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


async def wait_closed(conn: Conn, until: float) -> None:
    try:
        await asyncio.wait_for(conn.terminated.wait(), max(0.0, until - time.monotonic()))
    except TimeoutError:
        pass


async def alive(v: Victim) -> str:
    """Does the victim still answer? ``ok`` (an honest handshake completes),
    ``refused:CODE`` (it answered and closed with a code, e.g. OVERLOADED when its
    link limits are reached: alive and defending), or ``no_answer``."""
    conn = await dial(v, auth=True)
    ok = conn.authed.is_set() and not conn.terminated.is_set()
    if ok:
        conn.send_msg(wire.Goodbye(code=int(ErrorCode.NO_ERROR), reason="probe"))
    await hang_up(conn)
    if ok:
        return "ok"
    if conn.closed_by == "victim" and conn.close_code:
        return f"refused:{conn.close_code}"
    return "no_answer"


# ---- the attacks ---------------------------------------------------------------------

@dataclass
class Ctx:
    budget: Budget
    stream: StreamId | None
    tracker: str | None
    tickets: str | None
    rng: random.Random
    cid: bytes | None = None


async def joined(ctx: Ctx, v: Victim, until: float) -> Conn:
    """Authenticated, JOINed, and (if the victim says) with its STATUS."""
    assert ctx.stream is not None
    conn = await dial(v, auth=True, deadline=ctx.budget.deadline)
    if conn.authed.is_set():
        conn.send_msg(wire.Join(stream=str(ctx.stream)))
        t = min(until, time.monotonic() + 3.0)
        while conn.status is None and not conn.terminated.is_set() and time.monotonic() < t:
            await asyncio.sleep(0.05)
    return conn


def grace(ctx: Ctx, until: float, seconds: float) -> float:
    """``until``, or ``seconds`` from now if that is later (time for the victim to react),
    never past the run's deadline."""
    return min(ctx.budget.deadline, max(until, time.monotonic() + seconds))


def _nest(n: int) -> bytes:
    body = b"\x91" * (n - 1) + b"\x00"
    return struct.pack(">I", len(body)) + body


async def m_bomb(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, data, auth in (("preauth_2k", _nest(2040), False),
                             ("preauth_64k", _nest(wire.MAX_CONTROL_FRAME), False),
                             ("authed_64k", _nest(wire.MAX_CONTROL_FRAME), True)):
        if not await ctx.budget.take(grace(ctx, until, 1.0)):
            break
        conn = await dial(v, auth=auth, deadline=ctx.budget.deadline)
        if auth and not conn.authed.is_set():
            out[name] = {"sent": 0, "victim": conn.report()}
            await hang_up(conn)
            continue
        conn.send_control(data)
        await wait_closed(conn, grace(ctx, until, 3.0))
        out[name] = {"sent_bytes": len(data), "victim": conn.report()}
        await hang_up(conn)
    return out


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies += 1


def _varint(n: int) -> bytes:
    return struct.pack(">H", 0x4000 | n) if n < 0x4000 else struct.pack(">I", 0x8000_0000 | n)


def fake_initial(rng: random.Random, token: bytes) -> bytes:
    """A long-header Initial of version 1 with random ids, a given token, random payload."""
    dcid, scid = rng.randbytes(8), rng.randbytes(8)
    head = bytes([0xC3]) + struct.pack(">I", 1) + bytes([8]) + dcid + bytes([8]) + scid
    head += _varint(len(token)) + token
    rest = 1200 - len(head) - 2
    return head + _varint(rest)[:2] + rng.randbytes(rest)


async def m_junk(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Udp, remote_addr=(v.host, v.port),
                                                           local_addr=_local())
    sent: Counter[str] = Counter()
    rng = ctx.rng
    try:
        while await ctx.budget.take(until):
            kind = rng.choice(("noise", "short", "initial_no_token", "initial_bad_token", "short_header"))
            if kind == "noise":
                data = rng.randbytes(rng.randint(1, 1400))
            elif kind == "short":
                data = bytes([0xC0]) + rng.randbytes(rng.randint(0, 40))
            elif kind == "initial_no_token":
                data = fake_initial(rng, b"")
            elif kind == "initial_bad_token":
                data = fake_initial(rng, rng.randbytes(rng.randint(16, 120)))
            else:
                data = bytes([0x40 | rng.randrange(64)]) + rng.randbytes(rng.randint(20, 1200))
            transport.sendto(data)
            sent[kind] += 1
        await asyncio.sleep(0.2)  # replies in flight
    finally:
        transport.close()
    return {"sent": dict(sent), "replies": proto.replies}


async def m_silent(ctx: Ctx, v: Victim, until: float, conns: int = 4) -> dict[str, Any]:
    opened = []
    for _ in range(conns):
        if not await ctx.budget.take(grace(ctx, until, 1.0)):
            break
        opened.append(await dial(v, auth=False, deadline=ctx.budget.deadline))
    # never open the control stream: how long until the victim gives up on us? (at least
    # a handshake timeout and a bit, within the run's deadline)
    end = grace(ctx, until, ss.HANDSHAKE_TIMEOUT + 2.0)
    await asyncio.gather(*(wait_closed(c, end) for c in opened))
    out = {"connections": len(opened), "victim": [c.report() for c in opened]}
    for c in opened:
        await hang_up(c)
    return out


async def m_prechunk(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    conn = await dial(v, auth=False, deadline=ctx.budget.deadline)
    sent = 0
    for _ in range(8):
        if conn.terminated.is_set() or not await ctx.budget.take(grace(ctx, until, 1.0)):
            break
        conn.send_chunk_stream(ctx.rng.randbytes(64 * 1024), raw=True)
        sent += 1
    await wait_closed(conn, grace(ctx, until, 3.0))
    await hang_up(conn)
    return {"chunk_streams": sent, "bytes": sent * 64 * 1024, "victim": conn.report()}


def _skey(ctx: Ctx) -> bytes:
    assert ctx.stream is not None
    return ctx.stream.key


def _latest(conn: Conn) -> int:
    if conn.chunks:
        return max(conn.chunks)
    return conn.status.latest if conn.status is not None else 0


async def m_flood(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    conn = await joined(ctx, v, until)
    sent: Counter[str] = Counter()
    i = 0
    while conn.authed.is_set() and not conn.terminated.is_set() and await ctx.budget.take(until):
        latest = _latest(conn)
        if i % 10 == 9:
            seq, kind = latest + 1_000_000 + i, "out_of_window"
        else:
            seq, kind = max(0, latest - (i % 40)), "held"
        conn.send_msg(wire.Request(stream=_skey(ctx), seq=seq))
        sent[kind] += 1
        i += 1
    await wait_closed(conn, min(until, time.monotonic() + 1.0))
    await hang_up(conn)
    return {"requests": dict(sent), "victim": conn.report()}


def _subs(conn: Conn) -> int:
    return len(conn.status.paths) if conn.status is not None and conn.status.paths else 4


async def m_liar(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    conn = await joined(ctx, v, until)
    assert ctx.stream is not None
    k = _subs(conn)
    path = [peer_tag(ctx.stream.broadcaster), peer_tag(conn.identity.public)]
    lie = wire.Status(stream=_skey(ctx), latest=HUGE, have=ALL_BITS, keyframe=HUGE - 1, slots=16,
                      paths=[path] * k, lags=[0] * k)
    sent = 0
    while conn.authed.is_set() and not conn.terminated.is_set() and await ctx.budget.take(until):
        conn.send_msg(lie)
        sent += 1
        await asyncio.sleep(min(0.5, max(0.0, until - time.monotonic())))
    await hang_up(conn)
    return {"lies": sent, "victim_subscribed": len(conn.subscribes),
            "victim_requests": conn.requests_n, "victim": conn.report()}


def forged_copy(c: wire.ChunkMsg) -> wire.ChunkMsg:
    p = c.payload
    return wire.ChunkMsg(stream=c.stream, seq=c.seq, time_us=c.time_us, flags=c.flags,
                         signature=c.signature, payload=bytes([p[0] ^ 0xFF]) + p[1:] if p else b"\xff")


def _subscribe_all(ctx: Ctx, conn: Conn) -> None:
    k = _subs(conn)
    conn.send_msg(wire.Subscribe(stream=_skey(ctx), mask=(1 << k) - 1, substreams=k))


async def _collect(conn: Conn, until: float, want: int = 8) -> None:
    t = min(until, time.monotonic() + 3.0)
    while len(conn.chunks) < want and not conn.terminated.is_set() and time.monotonic() < t:
        await asyncio.sleep(0.05)


async def m_forge(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    conn = await joined(ctx, v, until)
    if conn.authed.is_set():
        _subscribe_all(ctx, conn)
        await _collect(conn, until, want=4)
    sent: Counter[str] = Counter()
    i = 0
    while conn.authed.is_set() and not conn.terminated.is_set() and await ctx.budget.take(until):
        latest = _latest(conn)
        held = [s for s in sorted(conn.chunks) if s >= latest - 20]
        if i % 2 == 0 and held:
            chunk = forged_copy(conn.chunks[held[i // 2 % len(held)]])
            sent["held_seq_altered"] += 1
        else:
            seq = latest + 1 + i % 10
            chunk = wire.ChunkMsg(stream=_skey(ctx), seq=seq, time_us=int(time.time() * 1e6),
                                  flags=int(seq % 10 == 0), signature=ctx.rng.randbytes(64),
                                  payload=ctx.rng.randbytes(1000))
            sent["ahead_noise_signature"] += 1
        conn.send_chunk_stream(wire.encode(chunk))
        i += 1
    await wait_closed(conn, min(until, time.monotonic() + 1.0))
    await hang_up(conn)
    return {"forged": dict(sent), "victim": conn.report()}


async def m_foreign(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    from oasis.core.identity import Identity
    from oasis.core.stream import sign_chunk

    conn = await joined(ctx, v, until)
    me = Identity.generate()
    own = StreamId(me.public, "foreign")
    sent = 0
    while conn.authed.is_set() and not conn.terminated.is_set() and await ctx.budget.take(until):
        chunk = sign_chunk(me, own, sent, int(time.time() * 1e6), sent % 30 == 0, ctx.rng.randbytes(1000))
        conn.send_chunk_stream(wire.encode(chunk))
        sent += 1
    await wait_closed(conn, min(until, time.monotonic() + 1.0))
    await hang_up(conn)
    return {"foreign_chunks": sent, "victim": conn.report()}


async def m_replay(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    conn = await joined(ctx, v, until)
    if conn.authed.is_set():
        _subscribe_all(ctx, conn)
        await _collect(conn, until, want=8)
        # let them age: replays of chunks the stream has moved past
        await asyncio.sleep(min(2.0, max(0.0, (until - time.monotonic()) / 3)))
        k = _subs(conn)
        conn.send_msg(wire.Unsubscribe(stream=_skey(ctx), mask=(1 << k) - 1))
    old = [conn.chunks[s] for s in sorted(conn.chunks)[:8]]
    sent = 0
    while old and not conn.terminated.is_set() and await ctx.budget.take(until):
        conn.send_chunk_stream(wire.encode(old[sent % len(old)]))
        sent += 1
    await wait_closed(conn, min(until, time.monotonic() + 1.0))
    await hang_up(conn)
    return {"replayed": sent, "distinct_chunks": len(old),
            "seqs": [c.seq for c in old], "victim": conn.report()}


async def m_withhold(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    conn = await joined(ctx, v, until)
    assert ctx.stream is not None
    accepted = 0
    ignored_requests = 0

    def on_message(msg: wire.Message) -> None:
        nonlocal accepted, ignored_requests
        if isinstance(msg, wire.Subscribe):
            conn.send_msg(wire.SubscribeAck(stream=msg.stream, accepted=msg.mask, rejected=0))
            accepted += 1
        elif isinstance(msg, wire.Request):
            ignored_requests += 1  # held forever: no chunk, no MISSING

    conn.on_message = on_message
    if conn.authed.is_set():
        _subscribe_all(ctx, conn)  # so what we claim is true: we hold the victim's chunks
    path = [peer_tag(ctx.stream.broadcaster), peer_tag(conn.identity.public)]
    sent = 0
    while conn.authed.is_set() and not conn.terminated.is_set() and await ctx.budget.take(until):
        st = conn.status
        k = _subs(conn)
        latest = _latest(conn)
        conn.send_msg(wire.Status(stream=_skey(ctx), latest=latest,
                                  have=st.have if st is not None else 0,
                                  keyframe=st.keyframe if st is not None else latest, slots=16,
                                  paths=[path] * k, lags=[0] * k))
        sent += 1
        await asyncio.sleep(min(1.0, max(0.0, until - time.monotonic())))
    await hang_up(conn)
    return {"statuses": sent, "subscribes_accepted": accepted, "requests_ignored": ignored_requests,
            "chunks_received_not_forwarded": conn.got.get("CHUNK", 0), "victim": conn.report()}


async def m_receipts(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    conn = await joined(ctx, v, until)
    sent: Counter[str] = Counter()
    rng = ctx.rng
    while conn.authed.is_set() and not conn.terminated.is_set() and await ctx.budget.take(until):
        n = sent.total()
        if n % 20 == 0:
            conn.send_msg(wire.WalletBind(binding=rng.randbytes(rng.randint(0, wire.MAX_LEDGER_BLOB))))
            sent["wallet_bind"] += 1
        elif n % 20 == 1:
            conn.send_msg(wire.TicketMsg(ticket=rng.randbytes(rng.randint(0, wire.MAX_LEDGER_BLOB))))
            sent["ticket"] += 1
        else:
            conn.send_msg(wire.ReceiptMsg(receipt=rng.randbytes(rng.randint(0, wire.MAX_LEDGER_BLOB))))
            sent["receipt"] += 1
    await wait_closed(conn, min(until, time.monotonic() + 1.0))
    await hang_up(conn)
    return {"sent": dict(sent), "victim": conn.report()}


# ---- HTTP faces: tracker, tickets ---------------------------------------------------

async def _post(session: Any, url: str, data: bytes) -> int:
    try:
        async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
            await r.read()
            return int(r.status)
    except Exception:
        return -1  # refused, reset or timed out


def _announce_body(ident: Identity, sid: StreamId, host: str, port: int, *, leaving: bool = False,
                   peer_id: str | None = None, bad_sig: bool = False) -> bytes:
    from oasis.core.announce import sign_announce
    a = sign_announce(ident, sid, host, port, int(time.time() * 1000), leaving=leaving)
    body = a.to_json()
    if peer_id is not None:
        body["peer_id"] = peer_id  # somebody else's id under our signature
    if bad_sig:
        body["sig"] = os.urandom(64).hex()
    return json.dumps(body).encode()


async def m_tracker(ctx: Ctx, victims: list[Victim], until: float) -> dict[str, Any]:
    assert ctx.tracker is not None and ctx.stream is not None
    url = ctx.tracker + "/announce"
    sid = ctx.stream
    codes: dict[str, Counter[int]] = {}
    async with _http() as http:
        async def send(kind: str, body: bytes) -> None:
            codes.setdefault(kind, Counter())[await _post(http, url, body)] += 1

        me = Identity.generate()
        for v in victims:
            if not await ctx.budget.take(until):
                break
            # forged: the victim's id with a signature that is noise
            await send("forged_sig", _announce_body(me, sid, "127.0.0.1", 9, peer_id=v.peer_id,
                                                    bad_sig=True))
            # evicting: a leave for the victim, signed by us (not the victim)
            await send("evict_leave", _announce_body(me, sid, v.host, v.port, leaving=True,
                                                     peer_id=v.peer_id))
            await send("evict_leave_noise_sig", _announce_body(me, sid, v.host, v.port, leaving=True,
                                                               peer_id=v.peer_id, bad_sig=True))
        # an announce for an address that is not ours
        if await ctx.budget.take(until):
            await send("other_host", _announce_body(me, sid, "127.0.0.2", 9))
        await send("junk_json", b"{not json")
        await send("oversized", b"{" + b" " * (1 << 20) + b"}")
        # sybils: fresh identities, correctly signed, as fast as allowed
        while await ctx.budget.take(until) and sum(codes.get("sybil", Counter()).values()) < 5000:
            await send("sybil", _announce_body(Identity.generate(), sid, "127.0.0.1",
                                               ctx.rng.randint(1024, 65535)))
        # are the victims still handed out? (a fresh honest announce)
        listed: list[str] = []
        try:
            body = _announce_body(Identity.generate(), sid, "127.0.0.1", 9)
            async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                reply = await r.json(content_type=None)
            listed = [p.get("peer_id", "") for p in reply.get("peers", [])]
        except Exception as exc:
            listed = [f"error: {exc}"]
    return {"status_codes": {k: dict(c) for k, c in codes.items()},
            "victims_still_listed": sum(1 for v in victims if v.peer_id in listed),
            "victims": len(victims), "listed_sample": len(listed)}


async def m_tickets(ctx: Ctx, until: float) -> dict[str, Any]:
    assert ctx.tickets is not None
    codes: dict[str, Counter[int]] = {}
    rng = ctx.rng
    async with _http() as http:
        i = 0
        while await ctx.budget.take(until):
            kind = ("junk", "oversized", "bad_hex", "unsigned")[i % 4]
            if kind == "junk":
                body = rng.randbytes(rng.randint(1, 200))
            elif kind == "oversized":
                body = b"{" + b" " * 65536 + b"}"
            elif kind == "bad_hex":
                body = json.dumps({"binding": "zz", "ts": 1, "nonce": "x", "sig": "y"}).encode()
            else:
                body = json.dumps({"binding": rng.randbytes(120).hex(), "ts": int(time.time()),
                                   "nonce": rng.randbytes(16).hex(), "sig": rng.randbytes(64).hex()}).encode()
            codes.setdefault(kind, Counter())[await _post(http, ctx.tickets, body)] += 1
            i += 1
    return {"status_codes": {k: dict(c) for k, c in codes.items()}}


async def _cycle(ctx: Ctx, conn: Conn, until: float, make: Any) -> dict[str, int]:
    """Send ``make(i)`` -> (kind, message) at the budget's pace while the link lasts, then
    wait a moment for the victim's reaction and hang up; the count sent by kind."""
    sent: Counter[str] = Counter()
    i = 0
    while conn.authed.is_set() and not conn.terminated.is_set() and await ctx.budget.take(until):
        kind, msg = make(i)
        conn.send_msg(msg)
        sent[kind] += 1
        i += 1
    await wait_closed(conn, min(until, time.monotonic() + 1.0))
    await hang_up(conn)
    return dict(sent)


async def m_chat(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    from oasis.core.chat import chat_signing_bytes, mod_signing_bytes

    conn = await joined(ctx, v, until)
    skey, rng = _skey(ctx), ctx.rng
    seq0 = int(time.time() * 1000)

    def make(i: int) -> tuple[str, wire.Message]:
        now_ms = int(time.time() * 1000)
        kind = ("forged", "flood", "sybil", "fake_mod")[i % 4]
        if kind == "forged":  # someone's key, noise for a signature
            return kind, wire.ChatMsg(stream=skey, sender=rng.randbytes(32), seq=now_ms + i, time_ms=now_ms,
                                      text=f"forged {i}", signature=rng.randbytes(64))
        if kind in ("flood", "sybil"):  # validly signed: ours far over the rate, or a new key each
            who = conn.identity if kind == "flood" else Identity.generate()
            seq, text = seq0 + i, f"{kind} {i}"
            return kind, wire.ChatMsg(stream=skey, sender=who.public, seq=seq, time_ms=now_ms, text=text,
                                      signature=who.sign(chat_signing_bytes(skey, who.public, seq, now_ms, text)))
        target, until_ms = rng.randbytes(32), now_ms + 3_600_000  # a mute signed by us, not the broadcaster
        return kind, wire.ChatMod(stream=skey, target=target, action=1, until_ms=until_ms, issued_ms=now_ms,
                                  signature=conn.identity.sign(mod_signing_bytes(skey, target, 1, until_ms, now_ms)))

    return {"chat": await _cycle(ctx, conn, until, make), "victim": conn.report()}


async def m_dm(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    from oasis.core import dm

    conn = await dial(v, auth=True, deadline=ctx.budget.deadline)
    rng = ctx.rng
    # one genuine message to the victim, sent again and again (and again after the junk
    # envelopes above have churned the victim's relay memory): shown once, then duplicates
    sealed, _ = dm.seal(conn.identity, v.key, "hostile: this message is replayed", time.time(),
                        rng.randbytes)

    def make(i: int) -> tuple[str, wire.Message]:
        now_ms = int(time.time() * 1000)
        kind = ("store_junk", "to_victim", "expired", "bad_prekey", "replay")[i % 5]
        if kind == "replay":
            return kind, sealed
        if kind == "bad_prekey":
            return kind, wire.DmPrekey(key=conn.identity.public, prekey=rng.randbytes(32),
                                       expires_ms=now_ms + 86_400_000, signature=rng.randbytes(64))
        to = v.key if kind == "to_victim" else rng.randbytes(32)
        expires = now_ms - 1000 if kind == "expired" else now_ms + 86_400_000
        return kind, wire.DmEnvelope(to=to, eph=rng.randbytes(32), prekey=bytes(32), expires_ms=expires,
                                     box=rng.randbytes(rng.randint(17, wire.MAX_DM_BOX)))

    return {"dm": await _cycle(ctx, conn, until, make), "victim": conn.report()}


async def m_files(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    conn = await dial(v, auth=True, deadline=ctx.budget.deadline)
    rng = ctx.rng
    blocks = 0
    if ctx.cid is not None and conn.authed.is_set():
        have: list[wire.FileHave] = []
        conn.on_message = lambda m: have.append(m) if isinstance(m, wire.FileHave) and not have else None
        conn.send_msg(wire.FileWant(cid=ctx.cid))
        t = min(until, time.monotonic() + 10.0)  # a loaded victim answers late
        while not have and not conn.terminated.is_set() and time.monotonic() < t:
            await asyncio.sleep(0.05)
        if have and have[0].manifest:
            from oasis.core import content
            try:
                blocks = content.decode_manifest(have[0].manifest, ctx.cid).blocks
            except content.ContentError:
                blocks = 0

    def make(i: int) -> tuple[str, wire.Message]:
        cid = ctx.cid if ctx.cid is not None and i % 5 else rng.randbytes(32)
        held = cid == ctx.cid and blocks > 0
        kind = ("request_flood", "cancel_flood", "unsolicited", "bad_manifest")[i % 4] if held else \
            ("want_unknown", "request_unknown")[i % 2]
        if kind in ("request_flood", "request_unknown"):
            n = blocks or 1 << 20
            return kind, wire.BlockRequest(cid=cid, indices=[rng.randrange(n) for _ in range(wire.MAX_BLOCK_REQUEST)],
                                           urgent=bool(i & 1))
        if kind == "cancel_flood":
            return kind, wire.BlockCancel(cid=cid, indices=[rng.randrange(blocks)
                                                            for _ in range(wire.MAX_BLOCK_REQUEST)])
        if kind == "unsolicited":
            return kind, wire.BlockMsg(cid=cid, index=rng.randrange(blocks), data=rng.randbytes(wire.MAX_FILE_BLOCK),
                                       proof=[rng.randbytes(32) for _ in range(4)])
        if kind == "bad_manifest":
            return kind, wire.FileHave(cid=cid, manifest=rng.randbytes(200), have=b"\xff" * 8)
        return kind, wire.FileWant(cid=cid)

    return {"files": await _cycle(ctx, conn, until, make), "blocks_in_file": blocks, "victim": conn.report()}


async def m_nat(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    from oasis.core.nat import Phase

    loop = asyncio.get_running_loop()
    sink_transport, sink = await loop.create_datagram_endpoint(_Udp, local_addr=("127.0.0.1", 0))
    host, port = sink_transport.get_extra_info("sockname")[:2]
    conn = await dial(v, auth=True, deadline=ctx.budget.deadline)
    rng = ctx.rng
    if conn.authed.is_set():
        conn.send_msg(wire.DhtPing(qid=rng.getrandbits(64)))  # a service link: the DHT's

    def make(i: int) -> tuple[str, wire.Message]:
        kind = ("offer_sink", "offer_any", "intro", "observed", "neighbours")[i % 5]
        if kind in ("offer_sink", "offer_any"):
            return kind, wire.Punch(phase=int(Phase.OFFER), peer=rng.randbytes(32), nonce=i,
                                    host=host if kind == "offer_sink" else "0.0.0.0", port=port)
        if kind == "intro":
            return kind, wire.Punch(phase=int(Phase.INTRO), peer=rng.randbytes(32), nonce=i)
        if kind == "observed":
            return kind, wire.Observed(host=f"198.51.100.{rng.randrange(1, 255)}", port=rng.randrange(1024, 65536))
        return kind, wire.Neighbours(keys=[rng.randbytes(32) for _ in range(32)])

    try:
        sent = await _cycle(ctx, conn, until, make)
    finally:
        sink_transport.close()
    return {"nat": sent, "sink_datagrams": sink.replies, "victim": conn.report()}


async def m_dht(ctx: Ctx, v: Victim, until: float) -> dict[str, Any]:
    from oasis.core.dhtrecord import node_id, sign_record

    loop = asyncio.get_running_loop()
    sinks: list[tuple[Any, _Udp, str, int]] = []
    for i in range(20):  # one per /24 of 127/8: the "networks" a lie names
        tr, proto = await loop.create_datagram_endpoint(_Udp, local_addr=(f"127.{i + 1}.0.1", 0))
        host, port = tr.get_extra_info("sockname")[:2]
        sinks.append((tr, proto, host, port))
    conn = await dial(v, auth=True, deadline=ctx.budget.deadline)
    rng = ctx.rng
    lies = {"nodes": 0, "providers": 0}
    mine = node_id(conn.identity.public)
    sid = ctx.stream or StreamId(conn.identity.public, "dht")

    def made_up(target: bytes) -> list[wire.DhtNode]:
        t = int.from_bytes(target, "big")
        out: list[wire.DhtNode] = []
        while len(out) < len(sinks):
            k = rng.randbytes(32)
            if node_id(k) ^ t < mine ^ t:  # nearer than us: the victim takes them
                _, _, h, p = sinks[len(out)]
                out.append(wire.DhtNode(key=k, host=h, port=p))
        return out

    def answer(msg: wire.Message) -> None:
        if isinstance(msg, wire.DhtPing):
            conn.send_msg(wire.DhtPong(qid=msg.qid))
        elif isinstance(msg, wire.DhtFindNode):
            lies["nodes"] += 1
            conn.send_msg(wire.DhtNodesMsg(qid=msg.qid, nodes=made_up(msg.target)))
        elif isinstance(msg, wire.DhtGetProviders):
            lies["providers"] += 1
            now_ms = int(time.time() * 1000)
            recs = [sign_record(Identity.generate(), sid, now_ms, now_ms + 600_000, [(h, p)]).raw
                    for _, _, h, p in sinks]
            conn.send_msg(wire.DhtProviders(qid=msg.qid, records=recs, descriptor=b"", nodes=made_up(msg.key)))

    conn.on_message = answer
    if conn.authed.is_set():
        conn.send_msg(wire.DhtPing(qid=rng.getrandbits(32)))  # a service link, and a contact

    def make(i: int) -> tuple[str, wire.Message]:
        now_ms = int(time.time() * 1000)
        kind = ("unsolicited", "foreign_record", "expired_record", "flood")[i % 4]
        if kind == "unsolicited":
            return kind, wire.DhtNodesMsg(qid=rng.getrandbits(32), nodes=made_up(rng.randbytes(32)))
        if kind == "foreign_record":  # signed by a throw-away key, not the link's
            _, _, h, p = sinks[i % len(sinks)]
            rec = sign_record(Identity.generate(), sid, now_ms, now_ms + 600_000, [(h, p)])
            return kind, wire.DhtAddProvider(record=rec.raw)
        if kind == "expired_record":
            rec = sign_record(conn.identity, sid, now_ms, now_ms - 1000, [("127.0.0.1", 9)])
            return kind, wire.DhtAddProvider(record=rec.raw)
        return kind, wire.DhtFindNode(qid=rng.getrandbits(32), target=rng.randbytes(32))

    try:
        sent = await _cycle(ctx, conn, until, make)
    finally:
        for tr, _, _, _ in sinks:
            tr.close()
    return {"dht": sent, "lies_told": lies, "sink_datagrams": sum(s[1].replies for s in sinks),
            "sinks_reached": sum(1 for s in sinks if s[1].replies), "victim": conn.report()}


PER_VICTIM = {"bomb": m_bomb, "junk": m_junk, "silent": m_silent, "prechunk": m_prechunk,
              "flood": m_flood, "liar": m_liar, "forge": m_forge, "foreign": m_foreign, "replay": m_replay,
              "withhold": m_withhold, "receipts": m_receipts, "chat": m_chat, "dm": m_dm,
              "files": m_files, "nat": m_nat, "dht": m_dht}


# ---- driver --------------------------------------------------------------------------

class _Redirect:
    """A datagram transport that sends everything through ``sock`` to ``dest``: the
    client's QUIC packets now leave from another address (connection migration)."""

    def __init__(self, transport: Any, dest: tuple[str, int]) -> None:
        self.transport, self.dest = transport, dest

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.transport.sendto(data, self.dest)

    def close(self) -> None:
        self.transport.close()

    def is_closing(self) -> bool:
        return bool(self.transport.is_closing())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)


class _Feed(asyncio.DatagramProtocol):
    """What arrives at the address a client moved to. The victim may answer from another
    of its addresses than the one the client dialled (a dual-stack socket answers an IPv4
    peer from its IPv4 address); aioquic's client drops a datagram from an address it
    does not know, so it would never answer the victim's PATH_CHALLENGE: each one is
    handed over as coming from the address the client dialled."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        paths = getattr(conn._quic, "_network_paths", None)  # not public API
        self.peer = paths[0].addr if paths else None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.conn.datagram_received(data, self.peer or addr)


async def migrate(conn: Conn, local_host: str, dest: tuple[str, int]) -> Any:
    """Move ``conn`` to a new UDP socket bound to ``local_host`` that sends to ``dest``
    (the victim's port, at any of its addresses), and send a PING from there: the victim's
    QUIC follows a client's migration (RFC 9000 §9) on a non-probing packet (qh3: one sent
    after it validated the new path, so keep pinging, :func:`ping`). The old transport is
    kept open (the caller may move back with :func:`move_back`); returns it."""
    loop = asyncio.get_running_loop()
    t, _ = await loop.create_datagram_endpoint(lambda: _Feed(conn), local_addr=(local_host, 0))
    old = conn._transport
    conn._transport = _Redirect(t, dest)  # type: ignore[assignment]
    ping(conn)
    return old


class _Deaf(asyncio.DatagramProtocol):
    """What arrives at a forged source address: a spoofer never sees it."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pass


async def spoof(conn: Conn, forged_host: str, dest: tuple[str, int]) -> Any:
    """From now on send ``conn``'s packets with ``forged_host`` (another host's address)
    as their source, to ``dest``, and never hear the answers, as an attacker on a network
    without ingress filtering: they leave from a socket bound to ``forged_host`` (a local
    address, so no raw socket is needed) whose input is thrown away; a PING goes at once.
    The victim's QUIC cannot validate that path (its PATH_CHALLENGE goes to the forged
    host). Returns the old transport (left open)."""
    loop = asyncio.get_running_loop()
    t, _ = await loop.create_datagram_endpoint(_Deaf, local_addr=(forged_host, 0))
    old = conn._transport
    conn._transport = _Redirect(t, dest)  # type: ignore[assignment]
    ping(conn)
    return old


def ping(conn: Conn) -> None:
    """A QUIC PING (a non-probing packet) on ``conn``'s current path."""
    conn._quic.send_ping(int(time.monotonic() * 1000) & 0xFFFF)
    conn.transmit()


def move_back(conn: Conn, old: Any) -> None:
    """Send from ``conn``'s first socket again (a PING, so the victim follows)."""
    new = conn._transport
    # (the victim answered from the other address too: QUIC may name it; send to the first)
    conn._transport = _Redirect(old, old.get_extra_info("peername"))  # type: ignore[assignment]
    ping(conn)
    if new is not None:
        new.close()


async def victims_from_tracker(tracker: str, sid: StreamId, limit: int) -> list[Victim]:
    """The peers the tracker lists for ``sid`` that are on loopback and answer a handshake
    (the tracker may also list sybils that other hostile runs announced)."""
    me = Identity.generate()
    async with _http() as http:
        async with http.post(tracker + "/announce", data=_announce_body(me, sid, "127.0.0.1", 9),
                             headers={"Content-Type": "application/json"}) as r:
            reply = await r.json(content_type=None)
        # leave again: we are not a peer anybody should dial
        await _post(http, tracker + "/announce", _announce_body(me, sid, "127.0.0.1", 9, leaving=True))
    found = []
    for p in reply.get("peers", []):
        try:
            found.append(Victim(loopback_only(str(p["host"])), int(p["port"]), key_of_peer_id(p["peer_id"])))
        except (KeyError, ValueError, SystemExit):
            continue  # not on loopback, or malformed: never dialled
    answers = await asyncio.gather(*(alive(v) for v in found))
    return [v for v, a in zip(found, answers, strict=True) if a != "no_answer"][:limit]


def _quiet_closed_waiters(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """aioquic fails a connection's waiters (its pings') with ConnectionError when the
    victim closes it; nobody waits on them then: not worth a traceback."""
    if isinstance(context.get("exception"), ConnectionError):
        return
    loop.default_exception_handler(context)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    asyncio.get_running_loop().set_exception_handler(_quiet_closed_waiters)
    SOURCE.set(getattr(args, "source", None))
    every = args.mode == ["all"]
    modes = list(MODES) if every else args.mode
    sid = StreamId.parse(args.stream) if args.stream else None
    tracker = loopback_url(args.tracker) if args.tracker else None
    if every:  # 'all': every mode the given options allow (a named mode missing its option is an error)
        need = {m: "--stream" for m in modes if m in NEEDS_STREAM and sid is None}
        need |= {"tracker": "--tracker"} if "tracker" in modes and tracker is None else {}
        need |= {"tickets": "--tickets"} if "tickets" in modes and not args.tickets else {}
        modes = [m for m in modes if m not in need]
        if need:
            print("hostile: 'all' skips " + ", ".join(f"{m} (needs {o})" for m, o in need.items()),
                  file=sys.stderr)
    victims = [parse_victim(t) for t in args.victim][: args.max_victims]
    if tracker and sid is not None and len(victims) < args.max_victims:
        victims += await victims_from_tracker(tracker, sid, args.max_victims - len(victims))
    victims = list({v.key: v for v in victims}.values())  # one entry per peer
    if not victims and any(m in PER_VICTIM for m in modes):
        raise SystemExit("hostile: no victim (give --victim, or --tracker and --stream)")
    missing = [m for m in modes if m in NEEDS_STREAM and sid is None]
    if missing:
        raise SystemExit(f"hostile: modes {', '.join(missing)} need --stream")
    if "tracker" in modes and tracker is None:
        raise SystemExit("hostile: mode tracker needs --tracker")
    tickets = loopback_url(args.tickets) if args.tickets else None
    if "tickets" in modes and tickets is None:
        raise SystemExit("hostile: mode tickets needs --tickets URL")
    cid = None
    if args.cid:
        from oasis.core.content import ContentError, parse_cid
        try:
            cid = parse_cid(args.cid)
        except ContentError as exc:
            raise SystemExit(f"hostile: --cid: {exc}") from None
    ctx = Ctx(Budget(args.duration, args.rate, args.max_sends), sid, tracker, tickets,
              random.Random(args.seed), cid)
    t0 = time.monotonic()
    report: dict[str, Any] = {"victims": [v.name() for v in victims], "modes": {}}
    for i, mode in enumerate(modes):
        slot = ctx.budget.remaining() / (len(modes) - i)
        until = time.monotonic() + slot
        m0 = time.monotonic()
        if mode == "tracker":
            res: Any = await m_tracker(ctx, victims, until)
        elif mode == "tickets":
            res = await m_tickets(ctx, until)
        else:
            fn = PER_VICTIM[mode]
            per = await asyncio.gather(*(fn(ctx, v, until) for v in victims), return_exceptions=True)
            res = {v.name(): (r if not isinstance(r, BaseException) else {"tool_error": repr(r)})
                   for v, r in zip(victims, per, strict=True)}
        a0 = time.monotonic()
        after = await asyncio.gather(*(alive(v) for v in victims))
        report["modes"][mode] = {
            "seconds": round(time.monotonic() - m0, 2), "probe_seconds": round(time.monotonic() - a0, 2),
            "result": res,
            # a victim that answers (even to refuse us) is alive
            "victims_alive_after": sum(1 for a in after if a != "no_answer"),
            "victims_refusing_after": {v.name(): a for v, a in zip(victims, after, strict=True)
                                       if a.startswith("refused")},
            "victims_dead_after": [v.name() for v, a in zip(victims, after, strict=True)
                                   if a == "no_answer"]}
    report["sends"] = ctx.budget.sent
    report["seconds"] = round(time.monotonic() - t0, 2)
    report["victims_alive_at_end"] = sum(1 for a in await asyncio.gather(*(alive(v) for v in victims))
                                         if a != "no_answer")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m oasis.tools.hostile", description=__doc__.split("\n\n")[0])
    p.add_argument("--victim", action="append", default=[], help="HOST:PORT:PEER_ID (loopback only); repeatable")
    p.add_argument("--tracker", help="tracker URL (http://127.0.0.1:PORT/tracker): victims and the tracker mode")
    p.add_argument("--stream", help="stream id (JOIN, the tracker's stream)")
    p.add_argument("--tickets", help="the broadcaster's POST /tickets URL (mode tickets)")
    p.add_argument("--cid", help="content id of a file the victims hold (mode files)")
    p.add_argument("--mode", action="append", choices=[*MODES, "all"], default=None,
                   help="attack to mount; repeatable; 'all' cycles every mode (default)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds in all (shared by the modes)")
    p.add_argument("--rate", type=float, default=200.0, help="crafted sends per second, at most")
    p.add_argument("--max-sends", type=int, default=100_000, help="crafted sends in all, at most")
    p.add_argument("--max-victims", type=int, default=8)
    p.add_argument("--seed", type=int, default=None, help="seed for the junk (default: random)")
    p.add_argument("--source", help="loopback address to dial from (e.g. 127.0.0.2; several tools at "
                                    "once, each from its own, are several attackers)")
    args = p.parse_args(argv)
    if args.source is not None:
        args.source = loopback_only(args.source)
    args.mode = args.mode or ["all"]
    if "all" in args.mode:
        args.mode = ["all"]
    if not 0 < args.duration <= 3600 or not 0 < args.rate <= 10_000 or args.max_sends < 1:
        p.error("--duration in (0, 3600], --rate in (0, 10000], --max-sends >= 1")
    try:
        import uvloop
        report = uvloop.run(run(args))
    except ImportError:
        report = asyncio.run(run(args))
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
