"""The asyncio/aioquic adapter: one UDP socket, many QUIC links, OFTP sessions.

Theory of operation
-------------------
:class:`Endpoint` owns one UDP socket used both to listen and to dial, and
demultiplexes datagrams to QUIC connections by destination connection id
(as aioquic's own server does). Each connection is a :class:`Link` that carries
one sans-I/O :class:`~oasis.core.session.Session`:

* the dialler opens bidirectional stream 0 as the control stream (length-
  prefixed OFTP frames both ways);
* each chunk rides its own unidirectional stream, written whole with FIN;
  a chunk stream still unsent at its deadline is reset (dropped, not queued);
* QUIC events go in, session actions come out; after every input the link
  flushes datagrams and re-arms aioquic's timer.

Identity: certificates are made from the node key; the dialler checks the
certificate key against the pinned peer id as soon as the TLS handshake
completes, and the OFTP AUTH challenge proves each side's key to the other.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

from aioquic.buffer import Buffer
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, QuicConnectionState
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from oasis.core import session as ss
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.wire import ErrorCode

from .keystore import certificate_key, make_certificate

log = logging.getLogger("oasis.transport")

UDP_IP_HEADER = 28
DEFAULT_DATAGRAM_SIZE = 1350


class Link:
    """One QUIC connection to a peer, with its OFTP session."""

    def __init__(self, endpoint: Endpoint, quic: QuicConnection, addr: tuple[str, int],
                 session: ss.Session) -> None:
        self.endpoint = endpoint
        self.quic = quic
        self.addr = addr
        self.session = session
        self.control_sid: int | None = 0 if session.is_dialler else None
        self._timer: asyncio.TimerHandle | None = None
        self._session_timer: asyncio.TimerHandle | None = None
        self._chunk_deadlines: dict[int, float] = {}
        self.datagrams_in = self.datagrams_out = 0
        self.wire_in = self.wire_out = 0
        self.closed = False
        self._started = False
        self.handshake_done = asyncio.get_running_loop().create_future()

    @property
    def peer_key(self) -> bytes | None:
        return self.session.peer_key

    @property
    def rtt(self) -> float:
        """QUIC's smoothed RTT estimate (s); -1 before the first sample. aioquic keeps
        it on the connection's loss recovery (not public API: guarded)."""
        loss = getattr(self.quic, "_loss", None)
        if loss is None or not getattr(loss, "_rtt_initialized", False):
            return -1.0
        return float(getattr(loss, "_rtt_smoothed", -1.0))

    # -- input -----------------------------------------------------------
    def datagram_received(self, data: bytes, now: float) -> None:
        self.datagrams_in += 1
        self.wire_in += len(data) + UDP_IP_HEADER
        self.quic.receive_datagram(data, self.addr, now)
        self._process()

    def _process(self) -> None:
        ep = self.endpoint
        now = ep.loop.time()
        wall = ep.clock()
        while (ev := self.quic.next_event()) is not None:
            if isinstance(ev, qe.StreamDataReceived):
                if ev.stream_id == self.control_sid or (self.control_sid is None and ev.stream_id == 0):
                    self.control_sid = ev.stream_id
                    if not self._started:
                        # Listener: answer only once the dialler has opened stream 0
                        # (aioquic refuses to send on a stream the peer has not opened).
                        self._started = True
                        self.session.start(wall)
                    self.session.receive_control(ev.data, wall)
                elif ev.stream_id & 0x2:
                    self.session.receive_chunk_stream(ev.stream_id, ev.data, ev.end_stream, wall)
                else:
                    self.session._violation(ErrorCode.UNEXPECTED, f"unexpected stream {ev.stream_id}")
            elif isinstance(ev, qe.StreamReset):
                self.session.chunk_stream_reset(ev.stream_id)
            elif isinstance(ev, qe.HandshakeCompleted):
                if not self._check_certificate():
                    continue
                if self.session.is_dialler and not self._started:
                    self._started = True
                    self.session.start(wall)
            elif isinstance(ev, qe.ConnectionIdIssued):
                ep.links_by_cid[ev.connection_id] = self
            elif isinstance(ev, qe.ConnectionIdRetired):
                ep.links_by_cid.pop(ev.connection_id, None)
            elif isinstance(ev, qe.ConnectionTerminated):
                self.session.close(_code(ev.error_code), ev.reason_phrase or "connection closed",
                                   by_peer=True)
                self.closed = True
        self._apply_session(now)
        self.transmit()

    def _check_certificate(self) -> bool:
        """Dialler: the TLS certificate's key must be the pinned peer key."""
        if not self.session.is_dialler or self.session.expected_key is None:
            return True
        # aioquic keeps the verified peer certificate on its TLS context.
        cert = getattr(self.quic.tls, "_peer_certificate", None)
        key = certificate_key(cert) if cert is not None else None
        if key != self.session.expected_key:
            self.session.close(ErrorCode.WRONG_PEER, "TLS certificate key is not the dialled peer id")
            return False
        return True

    def _apply_session(self, now: float) -> None:
        s = self.session
        for a in s.actions():
            if isinstance(a, ss.SendControl):
                if self.control_sid is None:
                    if not self.session.is_dialler:
                        continue  # the dialler has not opened the control stream: nothing to answer on
                    self.control_sid = 0
                try:
                    self.quic.send_stream_data(self.control_sid, a.data, end_stream=False)
                except ValueError:  # stream already finished/reset by the peer
                    self.endpoint.counters["control_send_refused"] += 1
            elif isinstance(a, ss.SendChunkStream):
                sid = self.quic.get_next_available_stream_id(is_unidirectional=True)
                self.quic.send_stream_data(sid, a.data, end_stream=True)
                self._chunk_deadlines[sid] = a.deadline
                self.endpoint.watch_deadline(self, sid, a.deadline)
            elif isinstance(a, ss.StopChunkStream):
                try:
                    self.quic.stop_stream(a.stream_id, int(ErrorCode.TOO_LARGE))
                except Exception:  # stream already gone
                    pass
            elif isinstance(a, ss.CloseLink):
                self.quic.close(error_code=0x100 + int(a.code), reason_phrase=a.reason)
        while (ev := s.next_event()) is not None:
            self.endpoint.on_session_event(self, ev)
        t = s.get_timer()
        if self._session_timer is not None:
            self._session_timer.cancel()
            self._session_timer = None
        if t is not None:
            self._session_timer = self.endpoint.loop.call_later(
                max(0.0, t - self.endpoint.clock()), self._on_session_timer)

    def _on_session_timer(self) -> None:
        self._session_timer = None
        self.session.handle_timer(self.endpoint.clock())
        self._apply_session(self.endpoint.loop.time())
        self.transmit()

    def expire_chunk(self, sid: int) -> None:
        """Reset a chunk stream that is still not fully sent at its deadline."""
        if self._chunk_deadlines.pop(sid, None) is None or self.closed:
            return
        stream = self.quic._streams.get(sid)  # aioquic has no public "is sent" query
        if stream is not None and not stream.sender.is_finished:
            self.quic.reset_stream(sid, int(ErrorCode.TIMEOUT))
            self.endpoint.counters["chunk_streams_reset"] += 1
            self.transmit()

    # -- output ------------------------------------------------------------
    def send(self, msg: wire.Message) -> None:
        if self.session.authenticated:
            self.session.send(msg)
            self._apply_session(self.endpoint.loop.time())
            self.transmit()

    def send_chunk(self, chunk: wire.ChunkMsg, deadline: float) -> None:
        if self.session.authenticated:
            self.session.send_chunk(chunk, deadline)
            self._apply_session(self.endpoint.loop.time())
            self.transmit()

    def close(self, code: ErrorCode, reason: str) -> None:
        self.session.close(code, reason)
        self._apply_session(self.endpoint.loop.time())
        self.transmit()

    def transmit(self) -> None:
        ep = self.endpoint
        now = ep.loop.time()
        for data, addr in self.quic.datagrams_to_send(now=now):
            self.datagrams_out += 1
            self.wire_out += len(data) + UDP_IP_HEADER
            ep.send_datagram(data, addr)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.quic._state in (QuicConnectionState.TERMINATED,):
            ep.forget(self)
            return
        t = self.quic.get_timer()
        if t is not None:
            self._timer = ep.loop.call_at(t, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.quic.handle_timer(now=self.endpoint.loop.time())
        self._process()

    def cancel_timers(self) -> None:
        for t in (self._timer, self._session_timer):
            if t is not None:
                t.cancel()


class Endpoint(asyncio.DatagramProtocol):
    """One UDP socket; listens and dials; routes datagrams to links.

    ``link_delay`` (seconds, default 0 = off) emulates a one-way delay on
    everything this node sends, for testing where kernel netem is not
    available: every outgoing QUIC datagram is handed to the socket
    ``link_delay`` seconds after QUIC produced it, in order. At most
    ``max_delayed`` datagrams wait; beyond that they are dropped and counted
    (``delay_queue_drops``), like a full router queue. Incoming datagrams and
    the node's HTTP traffic (origin, tracker) are not delayed.
    """

    def __init__(self, identity: Identity, *, on_event: Callable[[Link, ss.Event], None],
                 clock: Callable[[], float], rng: random.Random | None = None,
                 max_datagram_size: int = DEFAULT_DATAGRAM_SIZE, max_links: int = 64,
                 link_delay: float = 0.0, max_delayed: int = 10_000) -> None:
        self.identity = identity
        self.on_event = on_event
        self.clock = clock
        self.rng = rng or random.Random()
        #: handshake nonces always come from the OS, even when --seed makes the rest reproducible
        self.nonces = random.SystemRandom()
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self.links_by_cid: dict[bytes, Link] = {}
        self.links: set[Link] = set()
        self.max_links = max_links
        self.counters: dict[str, int] = {"undecodable_datagrams": 0, "refused_links": 0,
                                         "chunk_streams_reset": 0, "delay_queue_drops": 0}
        if not 0.0 <= link_delay <= 10.0:
            raise ValueError("link delay must be between 0 and 10 seconds")
        self.link_delay = link_delay
        self.max_delayed = max_delayed
        self._delayed: deque[tuple[float, bytes, tuple[str, int]]] = deque()
        self._delay_timer: asyncio.TimerHandle | None = None
        cert = make_certificate(identity)
        self._server_config = self._config(is_client=False, cert=cert, mds=max_datagram_size)
        self._client_cert = cert
        self._mds = max_datagram_size

    def _config(self, *, is_client: bool, cert: Any, mds: int) -> QuicConfiguration:
        cfg = QuicConfiguration(is_client=is_client, alpn_protocols=[wire.ALPN],
                                max_datagram_size=mds, idle_timeout=20.0,
                                max_data=16 * 1024 * 1024, max_stream_data=4 * 1024 * 1024)
        cfg.certificate = cert
        cfg.private_key = self.identity.private
        cfg.verify_mode = ssl.CERT_NONE  # pinning is done on the key, see Link._check_certificate
        return cfg

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        transport, _ = await self.loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self.transport = transport  # type: ignore[assignment]
        sockname = transport.get_extra_info("sockname")
        return sockname[0], sockname[1]

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        s = self.transport.get_extra_info("sockname")
        return s[0], s[1]

    def dial(self, addr: tuple[str, int], expected_key: bytes) -> Link:
        cfg = self._config(is_client=True, cert=self._client_cert, mds=self._mds)
        cfg.server_name = "oasis"
        quic = QuicConnection(configuration=cfg)
        session = ss.Session(self.identity, is_dialler=True, expected_key=expected_key, rng=self.nonces)
        link = Link(self, quic, addr, session)
        self.links.add(link)
        self.links_by_cid[quic.host_cid] = link
        quic.connect(addr, now=self.loop.time())
        link.transmit()
        return link

    def send_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """Hand one datagram to the socket, now or ``link_delay`` later (in order)."""
        if self.transport is None:
            return
        if self.link_delay <= 0.0:
            self.transport.sendto(data, addr)
            return
        if len(self._delayed) >= self.max_delayed:
            self.counters["delay_queue_drops"] += 1
            return
        # The delay is constant, so release times are in sending order: one FIFO, one timer.
        self._delayed.append((self.loop.time() + self.link_delay, data, addr))
        if self._delay_timer is None:
            self._delay_timer = self.loop.call_at(self._delayed[0][0], self._release_delayed)

    def _release_delayed(self) -> None:
        self._delay_timer = None
        q = self._delayed
        # Event-loop timers may fire up to their resolution (uvloop: 1 ms) early.
        now = self.loop.time() + 0.001
        while q and q[0][0] <= now:
            _, data, addr = q.popleft()
            if self.transport is not None:
                self.transport.sendto(data, addr)
        if q:
            self._delay_timer = self.loop.call_at(q[0][0], self._release_delayed)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
        except Exception:
            self.counters["undecodable_datagrams"] += 1
            return
        link = self.links_by_cid.get(header.destination_cid)
        if link is None:
            if header.packet_type != QuicPacketType.INITIAL or len(data) < 1200:
                self.counters["undecodable_datagrams"] += 1
                return
            if len(self.links) >= self.max_links:
                self.counters["refused_links"] += 1
                return
            quic = QuicConnection(configuration=self._server_config,
                                  original_destination_connection_id=header.destination_cid)
            session = ss.Session(self.identity, is_dialler=False, rng=self.nonces)
            link = Link(self, quic, addr, session)
            self.links.add(link)
            self.links_by_cid[header.destination_cid] = link
            self.links_by_cid[quic.host_cid] = link
        link.datagram_received(data, self.loop.time())

    def on_session_event(self, link: Link, ev: ss.Event) -> None:
        if isinstance(ev, ss.Authenticated) and not link.handshake_done.done():
            link.handshake_done.set_result(ev.peer_key)
        if isinstance(ev, ss.Closed) and not link.handshake_done.done():
            link.handshake_done.set_exception(ConnectionError(f"{ev.code.name}: {ev.reason}"))
            link.handshake_done.exception()  # mark retrieved
        self.on_event(link, ev)

    def watch_deadline(self, link: Link, sid: int, deadline: float) -> None:
        delay = max(0.0, deadline - self.clock())
        self.loop.call_later(delay, link.expire_chunk, sid)

    def forget(self, link: Link) -> None:
        link.cancel_timers()
        link.closed = True
        self.links.discard(link)
        for cid in [c for c, lk in self.links_by_cid.items() if lk is link]:
            del self.links_by_cid[cid]

    def close(self) -> None:
        for link in list(self.links):
            if not link.closed:
                link.close(ErrorCode.SHUTDOWN, "node shutting down")
            self.forget(link)
        if self._delay_timer is not None:
            self._delay_timer.cancel()
            self._delay_timer = None
        if self.transport is not None:
            # Shutting down: what still waits in the delay queue (the CONNECTION_CLOSEs
            # just queued among it) goes out now rather than being lost.
            while self._delayed:
                _, data, addr = self._delayed.popleft()
                self.transport.sendto(data, addr)
            self.transport.close()


def _code(value: int) -> ErrorCode:
    try:
        return ErrorCode(value - 0x100 if value >= 0x100 else value)
    except ValueError:
        return ErrorCode.MALFORMED
