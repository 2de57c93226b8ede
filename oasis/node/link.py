"""One QUIC connection to a peer and its OFTP session: the per-link half of the adapter.

Theory of operation
-------------------
A :class:`Link` feeds its :class:`~oasis.core.session.Session` what its QUIC
connection delivers (control-stream bytes, chunk-stream bytes, resets, the TLS
handshake's end, the close) and turns the session's actions into QUIC calls;
after every input it flushes datagrams and re-arms QUIC's and the session's
timers. The :class:`~oasis.node.transport.Endpoint` owns the socket, routes
datagrams to links and decides which strangers may have one. What the QUIC
stack's public API does not tell (RTT, bytes held, unsent bytes, the peer's
certificate key) the endpoint's :class:`~oasis.node.quicstack.Stack` answers.

Flushing is batched: an input handles its QUIC and session events at once but
only *asks* the endpoint for a flush (:meth:`Link.transmit`). While the
endpoint reads a run of datagrams for one link out of one socket wake-up, the
links that asked are flushed once, when the run ends (the next datagram is
for another link, or the socket is drained); any other input flushes at once.
A burst of 30 datagrams from a peer thus costs one packet-building pass, not
30, and the order of flushes between links is that of the inputs. QUIC's
timer is re-armed only when its deadline moved.

A link guards what a peer can make it hold: the OFTP handshake deadline runs
from the link's creation (``Session.begin``); before authentication a peer may
send only ``Endpoint.preauth_budget`` stream bytes and its chunk streams are
stopped at once; at any time the stack may hold at most
``Endpoint.max_reorder_bytes`` out of order (aioquic: counted here; qh3: its
flow-control windows bound it). Closing puts the GOODBYE on the
wire before QUIC's CONNECTION_CLOSE.

Chunk runs (OFTP 2): a chunk the session marks ``run`` is appended to the
unidirectional stream the link keeps open for its lane (its seq modulo ``RUN_LANES``:
a substream each by default), which it ends (FIN) after ``Endpoint.chunk_run`` chunks
or ``RUN_MAX_BYTES``. A QUIC receiver grants a
new stream (MAX_STREAMS) for each stream that ends: an ack-eliciting packet back
per stream, which the sender must acknowledge -- per chunk and child with a
stream per chunk, once per run here; and a run's packets are all of one size, so
a chunk to a child leaves in one GSO send. Stale chunks: at a run chunk's
deadline, if any of its bytes are still unsent, the run is reset and the
chunks behind it that are still in time are written again on a new run (only
stale chunks are dropped); a chunk that is on the wire is left to QUIC's loss
recovery. An ended run keeps the
rule of a stream per chunk: reset at its last chunk's deadline unless all
acknowledged.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from oasis.core import session as ss
from oasis.core import wire
from oasis.core.wire import ErrorCode

from .udp import Addr

if TYPE_CHECKING:
    from collections.abc import Callable

    from .transport import Endpoint

UDP_IP_HEADER = 28


#: s a chunk stream's deadline may lie ahead when its timer fires and still count as due
EXPIRY_SLACK = 0.002
#: chunks an OFTP 2 run stream carries before the link ends it (1: a stream per chunk);
#: ``$OASIS_CHUNK_RUN`` or the endpoint's ``chunk_run`` set another. 16 since 2026-12-05
#: (1 before): within a run a lost packet holds back the chunks behind it until QUIC
#: repairs it, but a stream per chunk costs each link two more packets a chunk (the
#: receiver's MAX_STREAMS and its ACK) and the CPU to make them. In the 30-node testbed
#: (access links losing 0.1-1 % of packets each way) six alternating pairs, 1 against 16:
#: offload 0.869 -> 0.894 and p95 405 -> 389 ms in 6 of 6, the viewers' CPU -11 %,
#: continuity once playing 0.99589 -> 0.99649; with 2 % loss on every link continuity
#: equal within the spread (a swarm that loss breaks either way); a relay to 8 sinks
#: 576 -> 672 Mbit/s of media per core on the means (docs/benchmarks.md, session 42)
DEFAULT_CHUNK_RUN = 16
#: a link keeps one open run per lane, a chunk's lane its seq modulo this: with the
#: default 4 substreams a run carries one substream's chunks, and a packet lost on it holds
#: back only that substream (133 ms between its chunks at 33 ms), not every chunk the
#: link carries behind it (one run per link before 2026-12-07)
RUN_LANES = 4
#: a chunk that comes less than this many smoothed round trips after its lane's last ends
#: its run: the next will come as soon after it, likely, and a packet of it lost is repaired
#: only ~9/8 RTT later (a tail loss: the probe timeout, ~1.5-2 RTT), holding back whatever
#: rides behind it. So a far link (RTT over half the lane's chunk gap: 133 ms at 33 ms
#: chunks) sends a stream per chunk, a near one runs of ``chunk_run``
RUN_HOL_RTTS = 2.0
INF = float("inf")
#: uni-stream credit (the peer's MAX_STREAMS less the streams we opened) at or below which a
#: chunk does not end its run early (``RUN_HOL_RTTS``): chunks written in one loop tick (a
#: burst after a stall, a lone child fed every substream) come 0 s after their lane's last
#: and each took a stream of its own, and on qh3, which refuses a stream past the credit,
#: 100+ of them at once closed the link (found 2026-12-07 by an attack audit). With no
#: credit left a chunk that needs a new stream is dropped, counted ``chunk_no_stream``: the
#: child repairs it, the link stays
RUN_CREDIT_RESERVE = 16
#: a run also ends once this many bytes were written on it (well inside the peer's
#: 1 MiB stream window)
RUN_MAX_BYTES = 512 * 1024
#: control-stream bytes queued and not yet on the wire past which the link is closed
#: (OVERLOADED): a peer that never grants flow-control credit while its requests, each
#: within its budget, keep answers coming grew the node's memory ~2.5 MB/s over 46 links
#: without a limit (found 2026-12-06 from outside). An honest link's control messages are
#: a few kB a second; this is a minute of them stuck
CONTROL_UNSENT_MAX = 256 * 1024
#: the event loop's timer resolution (uvloop, libuv: 1 ms; a timer may fire that early)
TIMER_GRID = 0.001

#: A run of datagrams all shorter than this is control traffic (QUIC credits and ACKs,
#: OFTP messages), not part of a flight of stream data that more packets will follow
ACK_NOW_BELOW = 1000
#: s ahead: an ACK timer of QUIC's this close after such a run fires with the run
ACK_NOW_WITHIN = 0.002
#: qh3's name for its 1-RTT delayed-ACK timer (``get_timer()`` of its core: kind, time)
ACK_TIMER = "ack_application"

#: rounds of _apply_session's drain (actions, then events) before it stops: each round
#: takes every event queued, so more than a few means a session that keeps itself busy
MAX_APPLY_ROUNDS = 16


class Link:
    """One QUIC connection to a peer, with its OFTP session.

    ``make`` compiles this module with mypyc (oasis/node/__init__.py): a compiled link
    takes no attributes but these, and its methods cannot be patched."""

    def __init__(self, endpoint: Endpoint, quic: Any, addr: Addr,
                 session: ss.Session) -> None:
        self.endpoint = endpoint
        self.stack = endpoint.stack
        self.quic = quic
        #: the stack's native core, driven directly once the handshake is done
        #: (:meth:`Stack.fast_core`; None: through the connection's own methods)
        self._core: Any = None
        self.addr = addr
        self.migrations = 0  #: times the peer's address changed and QUIC followed it
        #: addresses packets came from that the peer has not (yet) proved it receives at: a
        #: peer moving, or a forged source address (once per address in a row, not per datagram)
        self.unvalidated_paths = 0
        self._unproven: Addr | None = None
        #: (address, qid): the DHT_PING sent to prove a move to ``address`` (:meth:`_prove`)
        self._proving: tuple[Addr, int] | None = None
        self.heard_at = 0.0  #: loop time of the last datagram from the peer
        self.probes = 0  #: PINGs sent because an expected push went quiet
        self.probed_at = 0.0  #: loop time of the last such PING
        self.session = session
        self.control_sid: int | None = 0 if session.is_dialler else None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._session_timer: asyncio.TimerHandle | None = None
        self._session_timer_at = 0.0
        #: chunk streams not known finished -> (their deadline, when their last chunk was
        #: written) (wall clock), one timer for all
        self._chunk_deadlines: dict[int, tuple[float, float]] = {}
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at = 0.0
        #: OFTP 2: the chunk runs open on this link, one per lane (a chunk's seq modulo
        #: RUN_LANES: with 4 substreams, a lane each), so a lost packet holds back only the
        #: chunks of its own lane
        self._runs = [_Run() for _ in range(RUN_LANES)]
        self.runs_reset = 0  #: chunk runs reset because a chunk on them was stale and unsent
        #: chunk runs ended early: the chunk came within ``run_hol_rtts`` round trips of its
        #: lane's last (so would the next, and a loss on this one would hold it back)
        self.runs_cut = 0
        #: chunks written again on a new run because a stale chunk ahead of them reset theirs
        self.run_chunks_resent = 0
        self.datagrams_in = self.datagrams_out = 0
        self.transmits = 0  #: flushes: how often :meth:`transmit_now` ran
        #: runs of datagrams handed to QUIC in one call (:meth:`datagrams_received`), and
        #: the datagrams in them
        self.runs_in = self.run_datagrams_in = 0
        self.wire_in = self.wire_out = 0
        self.closed = False
        #: its counters are in the node's totals (``Node._fold``): not counted twice
        self.folded = False
        self._started = False
        self._quic_closing = False
        self._control_stuck = False  #: closing for a control backlog (CONTROL_UNSENT_MAX)
        #: inside _apply_session (a send from an event handler only flags another round)
        self._applying = False
        self._apply_again = False
        self._delivered = 0  # stream bytes QUIC handed us (or we learnt it no longer holds)
        self._stopped: set[int] = set()  # streams we asked the peer to stop (where QUIC does not say)
        #: listener: the key of the certificate the dialler presented in TLS
        self.tls_key: bytes | None = None
        self.handshake_done = asyncio.get_running_loop().create_future()
        #: called once, after a flush, when the control stream holds at most ``drain_below``
        #: unsent bytes (then cleared): bulk senders (file blocks) refill from their own queue
        self.on_drain: Callable[[Link], None] | None = None
        self.drain_below = 0
        # The OFTP handshake deadline runs from connection creation, not from the
        # first control byte: a peer that never opens stream 0 is dropped on time.
        session.begin(endpoint.clock())

    @property
    def peer_key(self) -> bytes | None:
        return self.session.peer_key

    @property
    def rtt(self) -> float:
        """QUIC's smoothed RTT estimate (s); -1 before the first sample."""
        return self.stack.rtt(self.quic)

    @property
    def low_rtt(self) -> float:
        """A low RTT sample (s; the stack's minimum or latest); -1 before the first."""
        return self.stack.low_rtt(self.quic)

    # -- input -----------------------------------------------------------
    def datagram_received(self, data: bytes, now: float, addr: Addr | None = None) -> None:
        """One datagram for this connection from ``addr`` (where it came from). A peer
        whose address changed (a phone moving from Wi-Fi to 4G, a NAT rebinding) keeps
        the link: QUIC validates the new path and, once the peer's packets come from it,
        sends there (connection migration; both stacks follow a migrating client)."""
        self.datagrams_in += 1
        self.wire_in += len(data) + UDP_IP_HEADER
        self.heard_at = now
        try:
            self.quic.receive_datagram(data, self.addr if addr is None else addr, now)
        except self.stack.errors as exc:  # qh3: the connection is closed (or its core failed)
            self._quic_refused(exc)
        self._received_from(addr)

    def datagrams_received(self, datagrams: list[bytes], now: float, addr: Addr) -> None:
        """A run of datagrams from ``addr``, in order (the endpoint's batch, see
        :attr:`Stack.batch_receive`): QUIC takes them in one call, events are drained once."""
        self.datagrams_in += len(datagrams)
        self.runs_in += 1
        self.run_datagrams_in += len(datagrams)
        self.wire_in += sum(map(len, datagrams)) + UDP_IP_HEADER * len(datagrams)
        self.heard_at = now
        core = self._core
        try:
            self.stack.receive_many(self.quic, datagrams, addr, now)
            if core is not None and max(map(len, datagrams)) < ACK_NOW_BELOW:
                self._ack_now(core, now)
        except self.stack.errors as exc:
            self._quic_refused(exc)
        self._received_from(addr)

    def _ack_now(self, core: Any, now: float) -> None:
        """After a run of small datagrams (a child's flow-control credit for the chunk it
        just read, an OFTP message), qh3 acknowledges one ack-eliciting packet 1 ms later
        from its timer: a wake-up, a flush and a timer re-armed per such packet (about 10
        a second per child of a relay). Nothing else is coming in that millisecond to share
        the ACK, so its timer is fired now, with the run: the ACK leaves ~1 ms sooner
        (RFC 9000 §13.2.1 bounds the delay from above only) in the flush that follows.
        Only QUIC's delayed-ACK timer, and only when it is due within ACK_NOW_WITHIN:
        a loss or idle timer is never fired early."""
        at = core.get_timer()
        if at is not None and at[0] == ACK_TIMER and at[1] - now <= ACK_NOW_WITHIN:
            core.handle_timer(at[1])
            self.quic._drain_core()  # (see Stack.fast_core)

    def _received_from(self, addr: Addr | None) -> None:
        if addr is not None and addr != self.addr:
            # The link moves (and the policy counts it at the new address) only once the peer
            # proved it receives there (Stack.path; on qh3, _prove): a forged source address
            # moves nothing.
            path = self.stack.path(self.quic)
            if path is not None and path != self.addr and self.stack.validates_paths:
                self._moved(path)
            elif path is not None and path != self.addr:
                self._prove(path)
            elif addr != self._unproven:
                self._unproven = addr
                self.unvalidated_paths += 1
        self._process()

    def _moved(self, path: Addr) -> None:
        self.addr = path
        self.migrations += 1
        if self.endpoint.on_migrated is not None:
            self.endpoint.on_migrated(self)

    def _prove(self, path: Addr) -> None:
        """QUIC sends to ``path`` now but the stack's validation is no proof (qh3 validated
        a forged address whose forger still received at its own). The peer proves it
        receives there by answering a DHT_PING whose random ``qid`` only went there
        (:meth:`path_proof`); until then the link stays counted at its old address. A peer
        without a DHT never moves in our accounts (its link works on)."""
        if self._proving is not None and self._proving[0] == path:
            return  # asked already
        if path != self._unproven:
            self._unproven = path
            self.unvalidated_paths += 1
        if not self.session.authenticated:
            return  # a moved handshake: stays at the address its Retry token proved
        qid = self.endpoint.nonces.getrandbits(32)
        self._proving = (path, qid)
        self.send(wire.DhtPing(qid=qid))

    def path_proof(self, qid: int) -> bool:
        """A DHT_PONG with ``qid`` came on this link: whether it answers :meth:`_prove`'s
        ping (then the link moves to that address, if QUIC still sends there)."""
        proving = self._proving
        if proving is None or proving[1] != qid:
            return False
        self._proving = None
        if self.stack.path(self.quic) == proving[0] and proving[0] != self.addr:
            self._moved(proving[0])
        return True

    def _process(self) -> None:
        ep = self.endpoint
        now = ep.loop.time()
        wall = ep.clock()
        qe = self.stack.events
        events = 0
        # An authenticated peer's chunk stream arrives as one event per QUIC packet (~15
        # a chunk): consecutive pieces of one stream go to the session in one call.
        piece_sid = -1
        pieces: list[bytes] = []
        while (ev := self.quic.next_event()) is not None:
            events += 1
            if isinstance(ev, qe.StreamDataReceived):
                sid = ev.stream_id
                self._delivered += len(ev.data)
                if sid & 0x2 and self.session.authenticated and sid != self.control_sid:
                    if sid != piece_sid:
                        if pieces:
                            self._chunk_pieces(piece_sid, pieces, False, wall)
                        piece_sid, pieces = sid, []
                    pieces.append(ev.data)
                    if ev.end_stream:
                        self._chunk_pieces(sid, pieces, True, wall)
                        piece_sid, pieces = -1, []
                    continue
            if pieces:  # another event: what came before it goes first
                self._chunk_pieces(piece_sid, pieces, False, wall)
                piece_sid, pieces = -1, []
            if isinstance(ev, qe.StreamDataReceived):
                sid = ev.stream_id
                if sid == self.control_sid or (self.control_sid is None and sid == 0):
                    self.control_sid = sid
                    if not self._started:
                        # Listener: answer only once the dialler has opened stream 0
                        # (QUIC refuses to send on a stream the peer has not opened).
                        self._started = True
                        self.session.start(wall)
                    self.session.receive_control(ev.data, wall, end=ev.end_stream)
                elif sid & 0x2:
                    if not self.session.authenticated:
                        # Nothing may ride a chunk stream before AUTH: stop it at once and
                        # keep nothing for it (the session counts the violation).
                        ep.counters["preauth_chunk_data"] += 1
                        self._stop_receiving(sid, ErrorCode.UNEXPECTED)
                    self.session.receive_chunk_stream(sid, ev.data, ev.end_stream, wall)
                else:  # a bidirectional stream other than the control stream
                    ep.counters["unexpected_streams"] += 1
                    self._stop_receiving(sid, ErrorCode.UNEXPECTED)
                    self._protocol_error(ErrorCode.UNEXPECTED, f"unexpected stream {sid}")
            elif isinstance(ev, qe.StreamReset):
                self.session.chunk_stream_reset(ev.stream_id)
            elif isinstance(ev, qe.HandshakeCompleted):
                self._core = self.stack.fast_core(self.quic)
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
                self._quic_closing = True
                self.closed = True
        if pieces:
            self._chunk_pieces(piece_sid, pieces, False, wall)
        if not events and not self.stack.counts_received:
            # Nothing for the session (most often an ACK from a child): it has no new input,
            # so it has no new actions, timer or limit to check. (aioquic counts bytes held
            # out of order, which arrive without an event: there the checks below run.)
            self.transmit()
            return
        s = self.session
        if not s.closed:
            received = self._stream_bytes_received()
            if not s.authenticated and received > ep.preauth_budget:
                ep.counters["preauth_over_budget"] += 1
                s.close(ErrorCode.TOO_LARGE, f"over {ep.preauth_budget} stream bytes before authentication")
            elif self.stack.counts_received and received - self._delivered > ep.max_reorder_bytes:
                # Received but not delivered: held out of order, or ended by a reset. Only
                # now count exactly what QUIC holds, and measure from there next time.
                held = self.stack.held(self.quic)
                self._delivered = received - held
                if held > ep.max_reorder_bytes:
                    ep.counters["reorder_over_cap"] += 1
                    s.close(ErrorCode.TOO_LARGE, f"over {ep.max_reorder_bytes} stream bytes held out of order")
        self._apply_session(now)
        self.transmit()

    def _chunk_pieces(self, sid: int, pieces: list[bytes], end: bool, wall: float) -> None:
        """Consecutive pieces of chunk stream ``sid`` to the session, in one call."""
        self.session.receive_chunk_stream(sid, pieces[0] if len(pieces) == 1 else b"".join(pieces),
                                          end, wall)

    def _stream_bytes_received(self) -> int:
        """Stream bytes the peer has sent us: highest offsets, so gaps count too, where
        the stack tells (aioquic's flow-control count); else the bytes it delivered."""
        if self.stack.counts_received:
            return self.stack.received(self.quic)
        return self._delivered

    def _stop_receiving(self, sid: int, code: ErrorCode) -> None:
        """Ask the peer to stop sending on ``sid`` (once per stream)."""
        stopped = self.stack.stopped(self.quic, sid)
        if stopped is None:
            stopped = sid in self._stopped
            if not stopped:
                if len(self._stopped) >= 4096:
                    self._stopped.clear()  # bounded; stopping twice costs one small frame
                self._stopped.add(sid)
        if stopped:
            return
        try:
            self.quic.stop_stream(sid, int(code))
        except self.stack.errors:  # not a stream we can stop, or the connection is closed
            pass

    def _quic_refused(self, exc: Exception) -> None:
        """The QUIC stack refused a call: its connection is closed or failed (qh3 raises
        where aioquic is silent). Counted; the session ends quietly (nothing more can be
        sent) and the link is forgotten once QUIC says it has terminated."""
        self.endpoint.counters["quic_refused"] += 1
        self._quic_closing = True
        if not self.session.closed:
            self.session.close(ErrorCode.SHUTDOWN, f"QUIC connection closed: {exc}"[:200])

    def _protocol_error(self, code: ErrorCode, detail: str) -> None:
        report = getattr(self.session, "protocol_error", None)
        if report is not None:
            report(code, detail)
        else:  # until the session has a public call for it
            self.session._violation(code, detail)

    def _check_certificate(self) -> bool:
        """Dialler: the TLS certificate's key must be the pinned peer key.
        Listener: the dialler must present a certificate; its key is kept and
        compared with the key AUTH proves (:meth:`_tls_key_matches`) -- where the
        stack's TLS server can ask for one (aioquic; qh3 cannot: AUTH alone)."""
        # The TLS signature over the handshake transcript has been checked by now:
        # the peer holds the certificate's key.
        key = self.stack.peer_key(self.quic)
        if not self.session.is_dialler:
            if not self.stack.client_certificates:
                return True
            if key is None:
                self.endpoint.counters["tls_no_client_key"] += 1
                self.session.close(ErrorCode.WRONG_PEER, "dialler presented no Ed25519 certificate")
                return False
            self.tls_key = key
            return True
        if self.session.expected_key is None:
            return True
        if key != self.session.expected_key:
            self.session.close(ErrorCode.WRONG_PEER, "TLS certificate key is not the dialled peer id")
            return False
        return True

    def _tls_key_matches(self, peer_key: bytes) -> bool:
        return (self.session.is_dialler or not self.stack.client_certificates
                or self.tls_key == peer_key)

    def _apply_session(self, now: float) -> None:
        s = self.session
        if self._applying:
            # Called from an event handler below (an answer sent on this link): the
            # loop below writes its actions and goes on with the next event. Nesting
            # instead went one level deeper per queued message, and a burst of a few
            # hundred ended in RecursionError mid-send (seen in the testbed).
            self._apply_again = True
            return
        self._applying = True
        try:
            # Handling an event may close the session (a key mismatch) or send, which
            # queues more actions: go round until both are drained (bounded: the events
            # are what QUIC delivered, and a closed session is quiet).
            for _ in range(MAX_APPLY_ROUNDS):
                self._apply_again = False
                actions = s.actions()
                self._do_actions(actions)
                events = 0
                while (ev := s.next_event()) is not None:
                    events += 1
                    if isinstance(ev, ss.Authenticated) and not self._tls_key_matches(ev.peer_key):
                        self.endpoint.counters["tls_key_mismatch"] += 1
                        s.close(ErrorCode.WRONG_PEER, "TLS certificate key is not the key proven in AUTH")
                        continue  # nobody above ever sees this link authenticated
                    self.endpoint.on_session_event(self, ev)
                    if self._apply_again:  # a handler sent: write it before the next event
                        self._apply_again = False
                        self._do_actions(s.actions())
                if not actions and not events and not self._apply_again:
                    break
        finally:
            self._applying = False
        if s.closed and not self._quic_closing:
            # Closed by the peer's GOODBYE (or a violation budget): end the QUIC connection too.
            self._quic_closing = True
            try:
                self.quic.close(error_code=0x100 + int(ErrorCode.NO_ERROR), reason_phrase="session closed")
            except self.stack.errors as exc:
                self._quic_refused(exc)
        t = s.get_timer()
        if self._session_timer is not None and t == self._session_timer_at:
            return  # armed for that already (this runs after every received batch)
        if self._session_timer is not None:
            self._session_timer.cancel()
            self._session_timer = None
        if t is not None:
            self._session_timer_at = t
            self._session_timer = self.endpoint.loop.call_later(
                max(0.0, t - self.endpoint.clock()), self._on_session_timer)

    def _do_actions(self, actions: list[ss.Action]) -> None:
        for a in actions:
            if isinstance(a, ss.SendControl):
                if self.control_sid is None:
                    if not self.session.is_dialler:
                        continue  # the dialler has not opened the control stream: nothing to answer on
                    self.control_sid = 0
                if self.stack.unsent(self.quic, self.control_sid) > self.endpoint.control_unsent_max:
                    if not self._control_stuck:  # (then dropped: the link is going)
                        self._control_stuck = True
                        self.endpoint.counters["control_backlog_closed"] += 1
                        self.endpoint.loop.call_soon(
                            self.close, ErrorCode.OVERLOADED,
                            f"over {self.endpoint.control_unsent_max} bytes of our messages wait for your "
                            "flow-control credit")
                    continue
                try:
                    self.quic.send_stream_data(self.control_sid, a.data, end_stream=False)
                except self.stack.errors:  # stream finished/reset by the peer, or link closed
                    self.endpoint.counters["control_send_refused"] += 1
            elif isinstance(a, ss.SendChunkStream):
                if a.run:
                    self._send_in_run(a)
                    continue
                if self.stack.uni_streams_left(self.quic) <= 0:
                    self.endpoint.counters["chunk_no_stream"] += 1
                    continue
                sid = self.quic.get_next_available_stream_id(is_unidirectional=True)
                try:
                    self.quic.send_stream_data(sid, a.data, end_stream=True)
                except self.stack.errors as exc:  # qh3: the connection is closed
                    self._quic_refused(exc)
                    continue
                self._chunk_deadlines[sid] = (a.deadline, self.endpoint.clock())
                self._arm_expiry()
            elif isinstance(a, ss.StopChunkStream):
                self._stop_receiving(a.stream_id, ErrorCode.TOO_LARGE)
            elif isinstance(a, ss.CloseLink):
                if self._quic_closing:
                    continue
                self._quic_closing = True
                # quic.close() drops stream data not yet sent: abandon the chunk streams
                # and put the GOODBYE just queued on the wire first, so the peer's
                # session learns the code and reason.
                for sid in list(self._chunk_deadlines):
                    self._reset_unsent(sid)
                self._chunk_deadlines.clear()
                for run in self._runs:
                    if run.sid >= 0:
                        self._reset_unsent(run.sid)
                        self._end_run(run, False)
                self._flush()
                try:
                    self.quic.close(error_code=0x100 + int(a.code), reason_phrase=a.reason)
                except self.stack.errors as exc:
                    self._quic_refused(exc)

    def run_of(self, seq: int) -> _Run:
        """The lane of chunk ``seq``: its open run, if any."""
        return self._runs[seq % RUN_LANES]

    def _send_in_run(self, a: ss.SendChunkStream) -> None:
        """Append a framed chunk to its lane's open run (a new run if none), ending the run
        when it is full, or with this chunk if it came less than ``run_hol_rtts`` smoothed
        RTTs after the lane's last (``runs_cut``). A run the stack refuses (the peer
        stopped it) is dropped and the chunk goes on a new one; a refusal there is the
        connection's."""
        run = self._runs[a.seq % RUN_LANES]
        now = self.endpoint.loop.time()
        # this chunk came within run_hol_rtts round trips of its lane's last: so will the
        # next, likely, and a packet of this one lost would be repaired after the next
        # arrived, holding it back. This chunk ends its run (on a far link: a stream each),
        # unless the peer's stream credit runs short
        close = (now - run.last_at < self.endpoint.run_hol_rtts * self.stack.rtt(self.quic)
                 and self.stack.uni_streams_left(self.quic) > RUN_CREDIT_RESERVE)
        for attempt in (0, 1):
            if run.sid < 0:
                if self.stack.uni_streams_left(self.quic) <= 0:
                    self.endpoint.counters["chunk_no_stream"] += 1
                    return
                run.sid = self.quic.get_next_available_stream_id(is_unidirectional=True)
                run.chunks = run.bytes = 0
            sid = run.sid
            last = (close or run.chunks + 1 >= self.endpoint.chunk_run
                    or run.bytes + len(a.data) >= RUN_MAX_BYTES)
            try:
                self.quic.send_stream_data(sid, a.data, end_stream=last)
            except self.stack.errors as exc:
                self._end_run(run, False)
                if attempt:
                    self._quic_refused(exc)
                    return
                continue
            run.chunks += 1
            run.bytes += len(a.data)
            run.last_at = now
            if close:
                self.runs_cut += 1
                self.endpoint.counters["chunk_runs_cut"] += 1
            if last:
                self._end_run(run, True, a.deadline, self.endpoint.clock())
            else:
                run.due.append((run.bytes, a.deadline, a, self.endpoint.clock()))
            self._arm_expiry()
            return

    def _end_run(self, run: _Run, finished: bool, deadline: float = 0.0, written: float = 0.0) -> None:
        """Forget a lane's open run; one that ended by FIN keeps its last chunk's deadline
        (reset then unless every byte was acknowledged, as a stream of one chunk) and when
        that chunk was written."""
        if finished and run.sid >= 0:
            self._chunk_deadlines[run.sid] = (deadline, written)
        run.sid = -1
        run.due.clear()

    def _run_sent(self, run: _Run) -> int:
        """Bytes of a lane's open run on the wire (written and not waiting in QUIC)."""
        try:
            return run.bytes - self.stack.unsent(self.quic, run.sid)
        except self.stack.errors:
            return run.bytes

    def _check_runs(self, now: float) -> None:
        for run in self._runs:
            if run.due:
                self._check_run(run, now)

    def _check_run(self, run: _Run, now: float) -> None:
        """Forget a lane's open run's chunks that are all on the wire; if one of those left
        (none of their bytes after it has left either) is past its deadline, reset the run
        and write the others, still in time, on a new run: only stale chunks are dropped."""
        due = run.due
        if not due:
            return
        sent = self._run_sent(run)
        k = 0
        while k < len(due) and due[k][0] <= sent:
            k += 1
        if k:
            del due[:k]
        if not any(d[1] <= now for d in due):
            return
        keep = [d[2] for d in due if d[1] > now]
        unsent = run.bytes - sent
        if self._reset_unsent(run.sid):
            self.runs_reset += 1
            self.endpoint.counters["chunk_streams_reset"] += 1
            self._dropped(max(d[1] - d[3] for d in due if d[1] <= now), unsent)
            self.transmit()
        self._end_run(run, False)
        for a in keep:
            self.run_chunks_resent += 1
            self._send_in_run(a)

    def _on_session_timer(self) -> None:
        self._session_timer = None
        self.session.handle_timer(self.endpoint.clock())
        self._apply_session(self.endpoint.loop.time())
        self.transmit()

    def _arm_expiry(self) -> None:
        """One timer per link for its chunk streams' deadlines: first forget the streams
        QUIC is done with (every byte acknowledged: nothing to reset), then wake at the
        earliest deadline of those left. A child acknowledges a chunk within a round trip,
        so this timer rarely fires; a timer per chunk fired for every one."""
        d = self._chunk_deadlines
        if d:
            finished, quic = self.stack.finished, self.quic
            for sid in [sid for sid in d if finished(quic, sid)]:
                del d[sid]
        if self.closed:
            return
        at = min(t for t, _ in d.values()) if d else INF
        for run in self._runs:
            for e in run.due:  # (a newer chunk may go first: not in deadline order)
                if e[1] < at:
                    at = e[1]
        if at == INF:
            return
        if self._expiry is not None:
            if self._expiry_at <= at:
                return  # armed for an earlier deadline: it looks again then
            self._expiry.cancel()
        ep = self.endpoint
        self._expiry_at = at
        self._expiry = ep.loop.call_later(max(0.0, at - ep.clock()), self._on_expiry)

    def _on_expiry(self) -> None:
        self._expiry = None
        if self.closed:
            return
        # the event loop's timers may fire up to a millisecond early (uvloop: 1 ms steps)
        now = self.endpoint.clock() + EXPIRY_SLACK
        for sid in [sid for sid, (t, _) in self._chunk_deadlines.items() if t <= now]:
            self.expire_chunk(sid)
        self._check_runs(now)
        self._arm_expiry()

    def expire_chunk(self, sid: int) -> None:
        """Reset a chunk stream that is still not fully sent at its deadline."""
        entry = self._chunk_deadlines.pop(sid, None)
        if entry is None or self.closed:
            return
        try:  # bytes never put on the wire (a stream sent whole and not yet acknowledged
            # is reset too, but its peer may well have it: no drop to speak of)
            unsent = self.stack.unsent(self.quic, sid)
        except self.stack.errors:
            unsent = 0
        if self._reset_unsent(sid):
            self.endpoint.counters["chunk_streams_reset"] += 1
            if unsent > 0:
                self._dropped(entry[0] - entry[1], unsent)
            self.transmit()

    def _dropped(self, slack: float, nbytes: int) -> None:
        """``nbytes`` chunk bytes to our peer were dropped unsent at their deadline, the
        longest ``slack`` s after they were written: say so."""
        cb = self.endpoint.on_chunks_dropped
        if cb is not None:
            cb(self, slack, nbytes)

    def _reset_unsent(self, sid: int) -> bool:
        if self.stack.finished(self.quic, sid):
            return False
        try:
            self.quic.reset_stream(sid, int(ErrorCode.TIMEOUT))
        except self.stack.errors:
            return False
        return True

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

    def probe(self, now: float) -> None:
        """Send a QUIC PING: if our address changed (a new network, a NAT rebinding) the
        peer sees it now and migrates the path, instead of pushing to the old address
        until our next message; the PING is acknowledged, so a live path costs one
        small packet each way."""
        self.probes += 1
        self.probed_at = now
        try:
            self.quic.send_ping(self.probes)
        except self.stack.errors as exc:
            self._quic_refused(exc)
        self.transmit()

    def close(self, code: ErrorCode, reason: str) -> None:
        self.session.close(code, reason)
        self._apply_session(self.endpoint.loop.time())
        self.transmit()

    def _flush(self) -> None:
        ep = self.endpoint
        core = self._core
        try:
            if core is not None:
                out = poll_runs(core.poll_transmit, ep.loop.time())
            else:
                out = self.stack.datagrams_to_send(self.quic, ep.loop.time())
        except self.stack.errors as exc:
            self._quic_refused(exc)
            return
        for addr, batch in out:  # a run per address, in order (one unless QUIC changes path)
            self.datagrams_out += len(batch)
            self.wire_out += sum(map(len, batch)) + UDP_IP_HEADER * len(batch)
            ep.send_datagrams(batch, addr)

    def control_unsent(self) -> int:
        """Bytes on the control stream that QUIC has not yet put on the wire."""
        if self.control_sid is None:
            return 0
        return self.stack.unsent(self.quic, self.control_sid)

    def transmit(self) -> None:
        """Ask for a flush: the endpoint runs :meth:`transmit_now` once for this link after
        the loop's current batch of callbacks (see the module doc)."""
        self.endpoint.want_flush(self)

    def transmit_now(self) -> None:
        """Hand QUIC's datagrams to the socket and re-arm its timer (if it moved)."""
        ep = self.endpoint
        self.transmits += 1
        self._flush()
        if self.on_drain is not None and (self.closed or self.control_unsent() <= self.drain_below):
            cb, self.on_drain = self.on_drain, None
            cb(self)
        if self.stack.terminated(self.quic):
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            ep.forget(self)
            return
        core = self._core
        if core is not None:
            at = core.get_timer()  # (kind, time) or None
            t = None if at is None else at[1]
        else:
            t = self.quic.get_timer()
        if t == self._timer_at and (t is None or self._timer is not None):
            return  # the armed timer is still right: no cancel, no new handle
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = t
        if t is not None:
            self._timer = ep.loop.call_at(t, self._on_timer)

    def _on_timer(self) -> None:
        at = self._timer_at
        self._timer = None
        self._timer_at = None
        loop = self.endpoint.loop
        if at is not None and loop.time() < at:
            # Fired early: uvloop runs timers on a millisecond grid, up to a millisecond
            # before their time. QUIC has nothing due yet, and a timer armed again for the
            # same instant fired at once again: a spin of flushes until the clock got there
            # (qh3's pacing deadlines are often under a millisecond away). Wait past it.
            self._timer_at = at
            self._timer = loop.call_at(at + TIMER_GRID, self._on_timer)
            return
        core = self._core
        try:
            if core is not None:
                core.handle_timer(loop.time())
                self.quic._drain_core()  # (see Stack.fast_core)
            else:
                self.quic.handle_timer(now=loop.time())
        except self.stack.errors as exc:
            self._quic_refused(exc)
        self._process()

    def cancel_timers(self) -> None:
        for t in (self._timer, self._session_timer, self._expiry):
            if t is not None:
                t.cancel()
        self._timer = self._session_timer = self._expiry = None
        self._timer_at = None


class _Run:
    """One lane's open chunk run: its stream (-1: none), the chunks and bytes written on
    it, and (end offset, deadline, the send, when written) of its chunks that may still be
    unsent."""

    __slots__ = ("sid", "chunks", "bytes", "due", "last_at")

    def __init__(self) -> None:
        self.sid = -1
        self.chunks = 0
        self.bytes = 0
        self.last_at = -INF  #: loop time the lane's last chunk was written
        self.due: list[tuple[int, float, ss.SendChunkStream, float]] = []


def chunk_run_length(value: int | None = None) -> int:
    """Chunks per OFTP 2 run stream: ``value``, else ``$OASIS_CHUNK_RUN``, else
    DEFAULT_CHUNK_RUN; ValueError unless 1-1000."""
    n = value if value is not None else int(os.environ.get("OASIS_CHUNK_RUN") or DEFAULT_CHUNK_RUN)
    if not 1 <= n <= 1000:
        raise ValueError(f"chunk run length {n} is not 1-1000")
    return n


def poll_runs(poll: Any, now: float) -> Sequence[tuple[Any, list[bytes]]]:
    """A native core's ``poll_transmit`` drained: (address, datagrams) for each run of
    datagrams to one address, in order; an empty tuple when it has nothing to send."""
    t = poll(now)
    if t is None:
        return ()
    addr = t[1]
    run = [t[0]]
    runs = [(addr, run)]
    while (t := poll(now)) is not None:
        if t[1] != addr:
            addr, run = t[1], []
            runs.append((addr, run))
        run.append(t[0])
    return runs


def _code(value: int) -> ErrorCode:
    try:
        return ErrorCode(value - 0x100 if value >= 0x100 else value)
    except ValueError:
        return ErrorCode.MALFORMED
