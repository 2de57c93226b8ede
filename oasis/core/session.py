"""One OFTP link between two nodes, sans-I/O.

Theory of operation
-------------------
A session sits on one QUIC connection. It never sees a socket or a clock: the
adapter feeds it the bytes of the control stream (``receive_control``), the
bytes of each unidirectional chunk stream (``receive_chunk_stream``) and the
time; the session answers with *actions* (bytes for the control stream, a new
chunk stream, or closing the link) and *events* (authenticated, message,
chunk, violation, closed). ``get_timer`` gives the next deadline (the
handshake timeout).

Handshake (both sides at once, no round trip is wasted)::

    A → B  HELLO(versions, key_A, nonce_A)       B → A  HELLO(versions, key_B, nonce_B)
    A → B  AUTH(v, sig_A(nonce_B, …))            B → A  AUTH(v, sig_B(nonce_A, …))

Each side checks the other's signature over a transcript binding both keys,
both nonces and the version (``identity.auth_transcript``), so the listener
learns who dialled and the dialler confirms the key it pinned. The selected
version is the highest both HELLOs list; both sides compute it alike.

Bad input never raises into the caller: a message that does not decode or is
not allowed yet becomes a :class:`Violation` event and an ERROR to the peer;
past ``max_errors`` violations, or on a framing error that cannot be resynced,
the session closes with a coded reason.

Strangers get no budget: before authentication the peer has proven no key, so
any violation closes the session; control frames are capped at
``MAX_HANDSHAKE_FRAME`` bytes (HELLO and AUTH are small) and any frame but HELLO,
AUTH or GOODBYE closes, so a stranger can make us hold at most two frames
(~4 KB); a chunk stream is stopped at its first byte, never buffered.
After authentication the chunk streams a peer has open may buffer at most
``MAX_BUFFERED_CHUNK_BYTES`` together (and ``MAX_CHUNK_MESSAGE`` each).

Chunk streams by version: on an OFTP 1 link each chunk stream is one CHUNK
(its FIN delimits it). On OFTP 2 each is a *run*: one or more CHUNKs, each
framed (4-byte length + body), the FIN on a frame boundary. A sender may put
one chunk on a stream (``SendChunkStream.run`` False) or append it to the
stream it keeps open for chunks (True: the adapter ends that run now and then,
so the peer's QUIC grants a new stream once per run, not once per chunk). The
receiver holds only a run's unfinished frame: the caps and the timeout above
apply to it, an idle run between frames holds nothing.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from . import wire
from .identity import Identity, auth_transcript, verify
from .wire import ErrorCode, WireError

HANDSHAKE_TIMEOUT = 5.0
MAX_OPEN_CHUNK_STREAMS = 256
#: Largest control frame accepted before authentication. The largest valid HELLO
#: is ~1.1 KB (8 versions, key, nonce, a 256-character agent string); AUTH is 71 bytes.
MAX_HANDSHAKE_FRAME = 2048
#: Bytes all open chunk streams of one link may buffer together. One chunk of the
#: largest size must fit, and the next may start before it ends (two maximal chunks
#: in flight; typical chunks of 0.1-1 MB leave room for many). A peer past it has
#: the stream that crossed it stopped, so one link holds at most ~4 MB, not
#: 256 streams x 2 MB.
MAX_BUFFERED_CHUNK_BYTES = 2 * wire.MAX_CHUNK_MESSAGE
#: Stopped chunk stream ids remembered so their late bytes are dropped, not rebuffered.
MAX_STOPPED_STREAMS = 64
#: A chunk stream still unfinished this long after its first byte is stopped and its
#: buffer freed (``chunk_streams_timed_out``): an honest sender resets a chunk it could
#: not finish by its deadline (a playout delay, 0.5 s by default), so one open this long
#: is stalled or parked on purpose (each link could otherwise hold ~4 MB for ever).
CHUNK_STREAM_TIMEOUT = 10.0
#: the chunk last encoded by :meth:`Session.send_chunk` and its bytes (a frozen message:
#: the same object encodes to the same bytes), so a relay encodes each chunk once, not
#: once per child
_LAST_ENCODED: list[Any] = [None, b"", None]  # (chunk, its body, the body framed or None)


# ---- actions (what the adapter must do) -----------------------------------

@dataclass(frozen=True, slots=True)
class SendControl:
    data: bytes  #: bytes to append to the control stream


@dataclass(frozen=True, slots=True)
class SendChunkStream:
    data: bytes  #: one chunk's bytes: a stream's whole content (then FIN), or a run's frame
    seq: int  #: chunk sequence number (for priority and logging)
    deadline: float  #: past this time the adapter drops/resets it
    #: OFTP 2: ``data`` is a framed chunk that may be appended to the link's open run
    #: (the adapter decides when a run ends); False: a new stream, ``data`` then FIN
    run: bool = False


@dataclass(frozen=True, slots=True)
class StopChunkStream:
    stream_id: int  #: adapter stream id to abort reading (over cap / bad)


@dataclass(frozen=True, slots=True)
class CloseLink:
    code: ErrorCode
    reason: str


Action = SendControl | SendChunkStream | StopChunkStream | CloseLink


# ---- events (what happened) -------------------------------------------------

@dataclass(frozen=True, slots=True)
class Authenticated:
    peer_key: bytes  #: the peer's proven Ed25519 public key
    version: int  #: negotiated OFTP version


@dataclass(frozen=True, slots=True)
class MessageReceived:
    message: wire.Message


@dataclass(frozen=True, slots=True)
class ChunkReceived:
    chunk: wire.ChunkMsg
    wire_bytes: int  #: bytes the chunk stream carried


@dataclass(frozen=True, slots=True)
class Violation:
    code: ErrorCode
    detail: str


@dataclass(frozen=True, slots=True)
class Closed:
    code: ErrorCode
    reason: str
    by_peer: bool


Event = Authenticated | MessageReceived | ChunkReceived | Violation | Closed


@dataclass
class LinkCounters:
    control_in: int = 0
    control_out: int = 0
    chunk_stream_in: int = 0
    chunk_stream_out: int = 0
    media_in: int = 0  #: chunk payload bytes received
    media_out: int = 0  #: chunk payload bytes sent
    chunks_in: int = 0
    chunks_out: int = 0
    violations: int = 0
    chunk_bytes_buffered: int = 0  #: now held for chunk streams not yet complete
    chunk_streams_stopped: int = 0  #: chunk streams refused or stopped (cap, pre-auth)
    chunk_streams_timed_out: int = 0  #: of those, stopped unfinished after CHUNK_STREAM_TIMEOUT
    runs_ended_in_frame: int = 0  #: OFTP 2 chunk runs whose FIN came inside a frame
    errors_received: int = 0  #: ERROR messages the peer sent us
    unknown_codes_received: int = 0  #: ERROR/GOODBYE carrying a code not in ErrorCode


@dataclass
class Session:
    identity: Identity
    is_dialler: bool
    expected_key: bytes | None = None  #: pinned peer key when dialling
    rng: random.Random = field(default_factory=random.Random)
    max_errors: int = 20
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    agent: str = "oasis/0.1"
    #: OFTP 2 links: send chunks as frames the adapter appends to its open run
    #: (``SendChunkStream.run``); False: each chunk framed on a stream of its own
    chunk_runs: bool = True
    #: the OFTP versions this side offers (a subset of ``wire.SUPPORTED_VERSIONS``)
    versions: tuple[int, ...] = wire.SUPPORTED_VERSIONS

    peer_key: bytes | None = field(default=None, init=False)
    version: int | None = field(default=None, init=False)
    closed: bool = field(default=False, init=False)
    counters: LinkCounters = field(default_factory=LinkCounters, init=False)

    def __post_init__(self) -> None:
        self._reader = wire.FrameReader()
        self._actions: list[Action] = []
        self._events: deque[Event] = deque()
        self._nonce = self.rng.randbytes(16)
        self._peer_hello: wire.Hello | None = None
        self._sent_auth = False
        self._sent_hello = False
        self._deadline: float | None = None
        self._chunk_bufs: dict[int, bytearray] = {}
        #: when each open chunk stream began (insertion order: oldest first)
        self._chunk_t0: dict[int, float] = {}
        self._stopped: dict[int, None] = {}  #: insertion-ordered, capped set

    # -- driving ---------------------------------------------------------
    def begin(self, now: float) -> None:
        """Arm the handshake deadline (``now + handshake_timeout``) without sending.

        The adapter calls this when the connection object is created: a listener
        cannot send HELLO before the dialler opens the control stream, yet a peer
        that never does must still be dropped on time. Calling it again, or
        :meth:`start` later, never moves an armed deadline later.
        """
        self._arm(now + self.handshake_timeout)

    def start(self, now: float) -> None:
        """Begin the handshake: queue our HELLO (once) and arm the deadline if not yet armed."""
        self._arm(now + self.handshake_timeout)
        if self._sent_hello:
            return
        self._sent_hello = True
        self._send(wire.Hello(versions=list(self.versions), key=self.identity.public,
                              nonce=self._nonce, agent=self.agent))

    def _arm(self, deadline: float) -> None:
        if self.version is not None or self.closed:
            return
        if self._deadline is None or deadline < self._deadline:
            self._deadline = deadline

    @property
    def authenticated(self) -> bool:
        return self.version is not None and not self.closed

    def get_timer(self) -> float | None:
        if self.closed:
            return None
        t = self._deadline
        if self._chunk_t0:
            c = next(iter(self._chunk_t0.values())) + CHUNK_STREAM_TIMEOUT
            if t is None or c < t:
                t = c
        return t

    def handle_timer(self, now: float) -> None:
        if self._deadline is not None and now >= self._deadline and not self.authenticated:
            self.close(ErrorCode.TIMEOUT, "handshake did not complete in time")
            return
        for stream_id, t0 in list(self._chunk_t0.items()):
            if now - t0 < CHUNK_STREAM_TIMEOUT:
                break  # the rest began later
            self.counters.chunk_streams_timed_out += 1
            self._stop(stream_id)

    def actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # -- sending ---------------------------------------------------------
    def send(self, msg: wire.Message) -> None:
        """Queue a control message (only after authentication)."""
        if not self.authenticated:
            raise RuntimeError("session not authenticated")
        self._send(msg)

    def _send(self, msg: wire.Message) -> None:
        if self.closed:
            return
        data = wire.frame(msg)
        self.counters.control_out += len(data)
        self._actions.append(SendControl(data))

    def send_chunk(self, chunk: wire.ChunkMsg, deadline: float) -> None:
        if not self.authenticated:
            raise RuntimeError("session not authenticated")
        framed = self.version is not None and self.version >= wire.CHUNK_RUNS_VERSION
        cached = _LAST_ENCODED
        if cached[0] is chunk:  # a relay pushes one chunk to each child in turn
            body: bytes = cached[1]
        else:
            body = wire.encode(chunk)
            cached[0], cached[1], cached[2] = chunk, body, None
        data = body
        if framed:
            data = cached[2]
            if data is None:
                data = cached[2] = wire.frame_chunk(body)
        self.counters.chunk_stream_out += len(data)
        self.counters.media_out += len(chunk.payload)
        self.counters.chunks_out += 1
        self._actions.append(SendChunkStream(data, chunk.seq, deadline, framed and self.chunk_runs))

    def close(self, code: ErrorCode, reason: str, *, by_peer: bool = False) -> None:
        if self.closed:
            return
        if not by_peer:
            self._send(wire.Goodbye(code=int(code), reason=reason[:256]))
            self._actions.append(CloseLink(code, reason))
        self.closed = True
        self._chunk_bufs.clear()
        self._chunk_t0.clear()
        self.counters.chunk_bytes_buffered = 0
        self._events.append(Closed(code, reason, by_peer))

    # -- receiving -------------------------------------------------------
    def receive_control(self, data: bytes, now: float, end: bool = False) -> None:
        """Bytes of the control stream; ``end`` = the peer FINished it (the link is over)."""
        if self.closed:
            return
        self.counters.control_in += len(data)
        self._reader.push(data)
        while not self.closed:
            self._reader.cap = MAX_HANDSHAKE_FRAME if self.version is None else wire.MAX_CONTROL_FRAME
            try:
                body = self._reader.pop()
            except WireError as exc:  # framing is lost: cannot resync a byte stream
                self._violation(exc.code, exc.detail)
                self.close(exc.code, exc.detail)
                return
            if body is None:
                break
            try:
                msg = wire.decode_control(body)
            except WireError as exc:
                self._violation(exc.code, exc.detail)
                continue
            self._on_message(msg, now)
        if end and not self.closed:
            if self._reader.pending:
                self._violation(ErrorCode.MALFORMED, "truncated frame")
                self.close(ErrorCode.MALFORMED, "control stream ended inside a frame")
            else:
                self.close(ErrorCode.UNEXPECTED, "peer closed its control stream")

    def receive_chunk_stream(self, stream_id: int, data: bytes, end: bool, now: float) -> None:
        if self.closed:
            return
        self.counters.chunk_stream_in += len(data)
        if stream_id in self._stopped:
            return  # late bytes of a stream we already stopped
        if self.version is None:
            self._stop(stream_id)
            self._violation(ErrorCode.UNEXPECTED, "chunk stream before authentication")
            return
        if self.version >= wire.CHUNK_RUNS_VERSION:
            self._receive_run(stream_id, data, end, now)
            return
        new = stream_id not in self._chunk_bufs
        buf = self._chunk_buf(stream_id)
        if buf is None:
            return
        if new:
            self._chunk_t0[stream_id] = now
        if len(buf) + len(data) > wire.MAX_CHUNK_MESSAGE:
            self._stop(stream_id)
            self._violation(ErrorCode.TOO_LARGE, f"chunk stream over {wire.MAX_CHUNK_MESSAGE} bytes")
            return
        if self.counters.chunk_bytes_buffered + len(data) > MAX_BUFFERED_CHUNK_BYTES:
            self._stop(stream_id)
            self._violation(ErrorCode.TOO_LARGE,
                            f"open chunk streams over {MAX_BUFFERED_CHUNK_BYTES} bytes together")
            return
        if end and not buf:  # the whole stream in one piece: decoded as it is, no copy
            self._drop_buffer(stream_id)
            whole = data
        else:
            buf += data
            self.counters.chunk_bytes_buffered += len(data)
            if not end:
                return
            self._drop_buffer(stream_id)
            whole = bytes(buf)
        try:
            chunk = wire.decode_chunk(whole)
        except WireError as exc:
            self._violation(exc.code, exc.detail)
            return
        self.counters.media_in += len(chunk.payload)
        self.counters.chunks_in += 1
        self._events.append(ChunkReceived(chunk, len(whole)))

    def _chunk_buf(self, stream_id: int) -> bytearray | None:
        """The buffer of chunk stream ``stream_id``, opened if new; None (the stream
        stopped, a counted violation) if ``MAX_OPEN_CHUNK_STREAMS`` are open already."""
        buf = self._chunk_bufs.get(stream_id)
        if buf is None:
            if len(self._chunk_bufs) >= MAX_OPEN_CHUNK_STREAMS:
                self._stop(stream_id)
                self._violation(ErrorCode.TOO_LARGE, "too many open chunk streams")
                return None
            buf = self._chunk_bufs[stream_id] = bytearray()
        return buf

    def _receive_run(self, stream_id: int, data: bytes, end: bool, now: float) -> None:
        """OFTP 2: bytes of a run of framed chunks. Complete frames are decoded from the
        bytes as they came (no copy when a piece holds whole frames); only an unfinished
        frame is kept, under the same caps as a whole chunk stream of OFTP 1, and its
        first byte's time starts the stream's timeout."""
        buf = self._chunk_buf(stream_id)
        if buf is None:
            return
        held = len(buf)
        whole: bytes | bytearray = data
        if held:
            buf += data
            whole = buf
        view = memoryview(whole)
        size = len(whole)
        pos = 0
        while size - pos >= 4:
            n = wire.chunk_frame_length(whole, pos)
            if n > wire.MAX_CHUNK_MESSAGE:
                view.release()
                self._stop(stream_id)
                self._violation(ErrorCode.TOO_LARGE, f"chunk frame of {n} bytes (cap {wire.MAX_CHUNK_MESSAGE})")
                return
            if size - pos - 4 < n:
                break
            try:
                chunk = wire.decode_chunk(view[pos + 4:pos + 4 + n])
            except WireError as exc:
                self._violation(exc.code, exc.detail)
                if self.closed:
                    view.release()
                    return
            else:
                self.counters.media_in += len(chunk.payload)
                self.counters.chunks_in += 1
                self._events.append(ChunkReceived(chunk, n + 4))
            pos += 4 + n
        view.release()
        rest = size - pos
        if rest and pos == 0 and held:
            pass  # the same unfinished frame, grown (already in buf)
        elif held:
            del buf[:pos]
        elif rest:
            buf += memoryview(data)[pos:]
        self.counters.chunk_bytes_buffered += rest - held
        if not rest:
            self._chunk_t0.pop(stream_id, None)
        elif pos or not held:  # a new unfinished frame: its timeout runs from now
            self._chunk_t0.pop(stream_id, None)
            self._chunk_t0[stream_id] = now
        if rest and self.counters.chunk_bytes_buffered > MAX_BUFFERED_CHUNK_BYTES:
            self._stop(stream_id)
            self._violation(ErrorCode.TOO_LARGE,
                            f"open chunk streams over {MAX_BUFFERED_CHUNK_BYTES} bytes together")
            return
        if end:
            if rest:
                self.counters.runs_ended_in_frame += 1
                self._violation(ErrorCode.MALFORMED, "chunk run ended inside a frame")
            self._drop_buffer(stream_id)

    def chunk_stream_reset(self, stream_id: int) -> None:
        """The sender abandoned a chunk stream (it was too late)."""
        self._drop_buffer(stream_id)
        self._stopped.pop(stream_id, None)

    # -- internals -------------------------------------------------------
    def _drop_buffer(self, stream_id: int) -> None:
        buf = self._chunk_bufs.pop(stream_id, None)
        self._chunk_t0.pop(stream_id, None)
        if buf is not None:
            self.counters.chunk_bytes_buffered -= len(buf)

    def _stop(self, stream_id: int) -> None:
        """Refuse a chunk stream: free its buffer, ask the adapter to stop reading it."""
        self._drop_buffer(stream_id)
        self._stopped[stream_id] = None
        if len(self._stopped) > MAX_STOPPED_STREAMS:
            del self._stopped[next(iter(self._stopped))]
        self.counters.chunk_streams_stopped += 1
        self._actions.append(StopChunkStream(stream_id))

    def _violation(self, code: ErrorCode, detail: str) -> None:
        self.counters.violations += 1
        self._events.append(Violation(code, detail))
        if self.version is None:  # a stranger that has proven no key gets no error budget
            self.close(code, detail)
            return
        if self.authenticated:
            self._send(wire.Error(code=int(code), reason=detail[:256]))
        if self.counters.violations > self.max_errors:
            self.close(ErrorCode.TOO_MANY_ERRORS, f"{self.counters.violations} protocol errors")

    def _on_message(self, msg: wire.Message, now: float) -> None:
        if isinstance(msg, wire.Goodbye):
            reason = _printable(msg.reason)
            if msg.code not in _KNOWN_CODES:
                self.counters.unknown_codes_received += 1
                reason = f"goodbye with unknown code {msg.code}: {reason}"
            self.close(_code(msg.code), reason, by_peer=True)
            return
        if isinstance(msg, wire.Error):
            self.counters.errors_received += 1
            if msg.code not in _KNOWN_CODES:
                self.counters.unknown_codes_received += 1
                self._violation(ErrorCode.MALFORMED, f"ERROR with unknown code {msg.code}")
                return
            msg = wire.Error(code=msg.code, reason=_printable(msg.reason))
        if self.version is None:
            self._handshake(msg, now)
            return
        if isinstance(msg, (wire.Hello, wire.Auth)):
            self._violation(ErrorCode.UNEXPECTED, f"{type(msg).__name__} after handshake")
            return
        self._events.append(MessageReceived(msg))

    def _handshake(self, msg: wire.Message, now: float) -> None:
        if isinstance(msg, wire.Hello) and self._peer_hello is None:
            if self.expected_key is not None and msg.key != self.expected_key:
                self.close(ErrorCode.WRONG_PEER, "peer presented a different key than dialled")
                return
            if msg.key == self.identity.public:
                self.close(ErrorCode.WRONG_PEER, "connected to self")
                return
            common = set(msg.versions) & set(self.versions)
            if not common:
                self.close(ErrorCode.VERSION_MISMATCH,
                           f"peer speaks {msg.versions}, we speak {list(self.versions)}")
                return
            self._peer_hello = msg
            version = max(common)
            sig = self.identity.sign(auth_transcript(self.identity.public, msg.key, msg.nonce,
                                                     self._nonce, version))
            self._send(wire.Auth(version=version, signature=sig))
            self._sent_auth = True
        elif isinstance(msg, wire.Auth) and self._peer_hello is not None:
            hello = self._peer_hello
            expected_version = max(set(hello.versions) & set(self.versions))
            if msg.version != expected_version:
                self.close(ErrorCode.VERSION_MISMATCH, "peer selected another version")
                return
            transcript = auth_transcript(hello.key, self.identity.public, self._nonce,
                                         hello.nonce, msg.version)
            if not verify(hello.key, msg.signature, transcript):
                self.close(ErrorCode.AUTH_FAILED, "identity challenge signature is invalid")
                return
            self.peer_key = hello.key
            self.version = msg.version
            self._deadline = None
            self._events.append(Authenticated(hello.key, msg.version))
        else:
            self.close(ErrorCode.UNEXPECTED, f"{type(msg).__name__} during handshake")


_KNOWN_CODES = frozenset(int(c) for c in ErrorCode)


def _printable(text: str) -> str:
    """A peer's reason text, safe to log: control and other non-printable characters become '?'."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def _code(value: int) -> ErrorCode:
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.MALFORMED
