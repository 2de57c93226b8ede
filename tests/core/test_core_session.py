"""Session: two cores wired back to back in memory, stepped clock (aioquic-style roundtrips)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from oasis.core import session as ss
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.core.wire import ErrorCode

RNG = random.Random(1234)
ALICE = Identity.from_private_bytes(RNG.randbytes(32))
BOB = Identity.from_private_bytes(RNG.randbytes(32))
MALLORY = Identity.from_private_bytes(RNG.randbytes(32))
SID = StreamId(ALICE.public, "live")


@dataclass
class Link:
    """Both ends of one link, the clock, and what each side saw."""

    a: ss.Session  # dialler
    b: ss.Session  # listener
    now: float = 0.0
    events: dict[int, list] = field(default_factory=lambda: {0: [], 1: []})
    actions: dict[int, list] = field(default_factory=lambda: {0: [], 1: []})
    byte_at_a_time: bool = False
    _next_stream: int = 2

    def side(self, i: int) -> ss.Session:
        return self.a if i == 0 else self.b

    def step(self, dt: float = 0.0) -> None:
        self.now += dt
        for s in (self.a, self.b):
            t = s.get_timer()
            if t is not None and self.now >= t:
                s.handle_timer(self.now)

    def roundtrip(self, rounds: int = 10) -> None:
        """Move queued bytes both ways until neither side has anything to send."""
        for _ in range(rounds):
            moved = False
            for i in (0, 1):
                src, dst = self.side(i), self.side(1 - i)
                for act in src.actions():
                    self.actions[i].append(act)
                    moved = True
                    if isinstance(act, ss.SendControl):
                        if self.byte_at_a_time:
                            for k in range(len(act.data)):
                                dst.receive_control(act.data[k : k + 1], self.now)
                        else:
                            dst.receive_control(act.data, self.now)
                    elif isinstance(act, ss.SendChunkStream):
                        sid = self._next_stream
                        self._next_stream += 4
                        half = len(act.data) // 2
                        dst.receive_chunk_stream(sid, act.data[:half], False, self.now)
                        dst.receive_chunk_stream(sid, act.data[half:], True, self.now)
            for i in (0, 1):
                while (ev := self.side(i).next_event()) is not None:
                    self.events[i].append(ev)
            if not moved:
                return

    def of(self, i: int, kind: type) -> list:
        return [e for e in self.events[i] if isinstance(e, kind)]

    def closed(self, i: int) -> ss.Closed:
        (c,) = self.of(i, ss.Closed)
        return c


def pair(*, expected_key: bytes | None = BOB.public, dialler: Identity = ALICE,
         listener: Identity = BOB, start: bool = True, **kw) -> Link:
    a = ss.Session(dialler, True, expected_key=expected_key, rng=random.Random(1), **kw)
    b = ss.Session(listener, False, rng=random.Random(2), **kw)
    link = Link(a, b)
    if start:
        a.start(link.now)
        b.start(link.now)
    return link


def authed(**kw) -> Link:
    link = pair(**kw)
    link.roundtrip()
    assert link.a.authenticated and link.b.authenticated
    return link


def test_handshake_both_sides_learn_keys() -> None:
    link = pair()
    assert not link.a.authenticated and link.a.get_timer() == ss.HANDSHAKE_TIMEOUT
    link.roundtrip()
    (ea,) = link.of(0, ss.Authenticated)
    (eb,) = link.of(1, ss.Authenticated)
    assert ea == ss.Authenticated(BOB.public, 2) and eb == ss.Authenticated(ALICE.public, 2)
    assert link.a.peer_key == BOB.public and link.b.peer_key == ALICE.public
    assert link.a.version == link.b.version == wire.OFTP_VERSION
    assert link.a.get_timer() is None and link.b.get_timer() is None
    assert link.a.counters.violations == link.b.counters.violations == 0
    # The handshake is HELLO + AUTH on each side, nothing else.
    sent = [wire.decode_control(act.data[4:]) for act in link.actions[0]]
    assert [type(m) for m in sent] == [wire.Hello, wire.Auth]


def test_listener_without_pin_accepts_anyone() -> None:
    link = authed(expected_key=None, dialler=MALLORY)
    assert link.b.peer_key == MALLORY.public


def test_wrong_expected_key_closes_with_wrong_peer() -> None:
    link = pair(expected_key=MALLORY.public)
    link.roundtrip()
    c = link.closed(0)
    assert c.code == ErrorCode.WRONG_PEER and not c.by_peer
    assert ss.CloseLink(ErrorCode.WRONG_PEER, c.reason) in link.actions[0]
    assert not link.of(0, ss.Authenticated)
    # The listener hears GOODBYE and closes too, never having authenticated the dialler.
    assert link.closed(1).by_peer and link.closed(1).code == ErrorCode.WRONG_PEER
    assert not link.of(1, ss.Authenticated)


def test_connecting_to_self_is_refused() -> None:
    link = pair(expected_key=None, listener=ALICE)
    link.roundtrip()
    assert link.closed(0).code == ErrorCode.WRONG_PEER


def _deliver_rewritten(link: Link, src: int, rewrite) -> None:
    """Move src's control bytes to the other side frame by frame, rewriting messages."""
    dst = link.side(1 - src)
    for act in link.side(src).actions():
        assert isinstance(act, ss.SendControl)
        msg = rewrite(wire.decode_control(act.data[4:]))
        dst.receive_control(wire.frame(msg), link.now)


def test_forged_auth_signature_fails() -> None:
    link = pair()
    _deliver_rewritten(link, 0, lambda m: m)  # alice's HELLO and nothing else yet
    # Bob answers with HELLO + AUTH; tamper with the AUTH signature.
    def tamper(m):
        if isinstance(m, wire.Auth):
            sig = bytearray(m.signature)
            sig[5] ^= 0x40
            return wire.Auth(version=m.version, signature=bytes(sig))
        return m
    _deliver_rewritten(link, 1, tamper)
    link.roundtrip()
    assert link.closed(0).code == ErrorCode.AUTH_FAILED
    assert link.a.peer_key is None and not link.of(0, ss.Authenticated)


def test_auth_signed_by_other_key_fails() -> None:
    """MALLORY presents BOB's key in HELLO but can only sign with her own."""
    a = ss.Session(ALICE, True, expected_key=BOB.public, rng=random.Random(1))
    m = ss.Session(MALLORY, False, rng=random.Random(2))
    a.start(0.0)
    m.start(0.0)
    hello_a = a.actions()
    (hello_m,) = m.actions()
    forged = wire.decode_control(hello_m.data[4:])
    forged = wire.Hello(versions=forged.versions, key=BOB.public, nonce=forged.nonce)
    a.receive_control(wire.frame(forged), 0.0)
    for act in hello_a:
        m.receive_control(act.data, 0.0)
    for act in m.actions():
        a.receive_control(act.data, 0.0)
    events = []
    while (ev := a.next_event()) is not None:
        events.append(ev)
    assert [type(e) for e in events] == [ss.Closed]
    assert events[0].code == ErrorCode.AUTH_FAILED


def test_reflected_auth_fails() -> None:
    """Sending A's own AUTH back to A (reflection) must not authenticate."""
    link = pair()
    a_out = link.a.actions()
    b_out = link.b.actions()
    for act in a_out:
        link.b.receive_control(act.data, 0.0)
    for act in b_out:  # bob's HELLO
        link.a.receive_control(act.data, 0.0)
    (auth_a,) = link.a.actions()
    link.a.receive_control(auth_a.data, 0.0)
    link.roundtrip()
    assert link.closed(0).code == ErrorCode.AUTH_FAILED


def test_no_common_version() -> None:
    s = ss.Session(BOB, False, rng=random.Random(3))
    s.start(0.0)
    s.receive_control(wire.frame(wire.Hello(versions=[3, 7], key=ALICE.public, nonce=b"n" * 16)), 0.0)
    ev = s.next_event()
    assert isinstance(ev, ss.Closed) and ev.code == ErrorCode.VERSION_MISMATCH
    assert s.closed
    kinds = [type(a) for a in s.actions()]
    assert kinds == [ss.SendControl, ss.SendControl, ss.CloseLink]  # HELLO, GOODBYE, close


def test_auth_with_other_version_is_refused() -> None:
    link = pair()
    _deliver_rewritten(link, 0, lambda m: m)
    _deliver_rewritten(link, 1, lambda m: wire.Auth(version=1, signature=m.signature)
                       if isinstance(m, wire.Auth) else m)
    link.roundtrip()
    assert link.closed(0).code == ErrorCode.VERSION_MISMATCH


def test_handshake_timeout() -> None:
    link = pair()
    # Nothing is delivered: the peer is silent.
    link.a.actions()
    link.step(4.9)
    assert not link.a.closed
    link.step(0.1)
    assert link.a.closed and link.b.closed
    for i in (0, 1):
        while (ev := link.side(i).next_event()) is not None:
            link.events[i].append(ev)
        assert link.closed(i).code == ErrorCode.TIMEOUT
    assert any(isinstance(x, ss.CloseLink) and x.code == ErrorCode.TIMEOUT for x in link.a.actions())
    assert link.a.get_timer() is None


def test_no_timeout_after_authentication() -> None:
    link = authed()
    link.step(100.0)
    link.roundtrip()
    assert link.a.authenticated and link.b.authenticated
    assert not link.of(0, ss.Closed)


@pytest.mark.parametrize("first", [
    wire.Join(stream="x.live"),
    wire.Request(stream=b"s" * 8, seq=1),
    wire.Auth(version=1, signature=b"s" * 64),
], ids=["join", "request", "auth-before-hello"])
def test_message_before_auth_is_unexpected(first: wire.Message) -> None:
    s = ss.Session(BOB, False, rng=random.Random(3))
    s.start(0.0)
    s.receive_control(wire.frame(first), 0.0)
    ev = s.next_event()
    assert isinstance(ev, ss.Closed) and ev.code == ErrorCode.UNEXPECTED
    assert s.next_event() is None


def test_message_after_hello_before_auth_is_unexpected() -> None:
    s = ss.Session(BOB, False, rng=random.Random(3))
    s.start(0.0)
    s.receive_control(wire.frame(wire.Hello(versions=[1], key=ALICE.public, nonce=b"n" * 16))
                      + wire.frame(wire.Leave(stream=b"s" * 8)), 0.0)
    ev = s.next_event()
    assert isinstance(ev, ss.Closed) and ev.code == ErrorCode.UNEXPECTED
    assert not s.authenticated


def test_send_before_auth_raises() -> None:
    link = pair()
    with pytest.raises(RuntimeError):
        link.a.send(wire.Join(stream="x.live"))
    with pytest.raises(RuntimeError):
        link.a.send_chunk(sign_chunk(ALICE, SID, 1, 1, True, b"p"), 1.0)


def test_chunk_stream_before_auth_is_refused_at_the_first_byte() -> None:
    """A stranger opens chunk streams before proving a key: nothing is buffered, the
    first stream is stopped and the session closes (no error budget before auth)."""
    link = pair()
    data = wire.encode(sign_chunk(ALICE, SID, 1, 1, True, b"p" * 100_000))
    link.b.receive_chunk_stream(3, data[:1], False, 0.0)
    assert link.b.next_event() == ss.Violation(ErrorCode.UNEXPECTED, "chunk stream before authentication")
    assert link.b.counters.chunk_bytes_buffered == 0 and link.b.counters.chunk_streams_stopped == 1
    acts = link.b.actions()
    assert ss.StopChunkStream(3) in acts
    assert any(isinstance(a, ss.CloseLink) and a.code == ErrorCode.UNEXPECTED for a in acts)
    ev = link.b.next_event()
    assert isinstance(ev, ss.Closed) and ev.code == ErrorCode.UNEXPECTED
    for sid in range(7, 7 + 4 * 300, 4):  # the rest of the flood is ignored
        link.b.receive_chunk_stream(sid, data, False, 0.0)
    assert link.b.counters.chunk_bytes_buffered == 0 and link.b.counters.chunks_in == 0
    assert link.b.actions() == []


def test_control_messages_after_auth() -> None:
    link = authed()
    msgs = [wire.Join(stream=str(SID)), wire.Request(stream=SID.key, seq=9),
            wire.Status(stream=SID.key, latest=3, have=7, keyframe=0, slots=4, paths=[[b"t" * 8]])]
    for m in msgs:
        link.a.send(m)
    link.roundtrip()
    assert [e.message for e in link.of(1, ss.MessageReceived)] == msgs


def test_hello_after_handshake_is_a_violation_not_a_close() -> None:
    link = authed()
    link.b.receive_control(wire.frame(wire.Hello(versions=[1], key=ALICE.public, nonce=b"n" * 16)), 1.0)
    link.roundtrip()
    assert [v.code for v in link.of(1, ss.Violation)] == [ErrorCode.UNEXPECTED]
    assert link.b.authenticated
    # The offender is told with an ERROR message.
    errs = [e.message for e in link.of(0, ss.MessageReceived) if isinstance(e.message, wire.Error)]
    assert [e.code for e in errs] == [ErrorCode.UNEXPECTED]


@pytest.mark.parametrize("versions", [(1,), (1, 2)])
def test_chunk_exchange_after_auth(versions: tuple[int, ...]) -> None:
    link = authed(versions=versions)
    frame = 4 if max(versions) >= wire.CHUNK_RUNS_VERSION else 0  # OFTP 2: each chunk framed
    payloads = [bytes([i]) * (1000 + i) for i in range(5)] + [b""]
    sent = [sign_chunk(ALICE, SID, i, 1_000_000 * i, i == 0, p) for i, p in enumerate(payloads)]
    for c in sent:
        link.a.send_chunk(c, deadline=9.0)
    link.roundtrip()
    got = link.of(1, ss.ChunkReceived)
    assert [e.chunk for e in got] == sent
    assert [e.chunk.payload for e in got] == payloads
    assert [e.wire_bytes for e in got] == [len(wire.encode(c)) + frame for c in sent]
    streams = [a for a in link.actions[0] if isinstance(a, ss.SendChunkStream)]
    assert [(s.seq, s.deadline) for s in streams] == [(i, 9.0) for i in range(6)]


def test_a_chunk_pushed_on_several_links_is_encoded_once_and_each_link_sends_its_chunk() -> None:
    """A relay pushes one chunk to each child: the bytes are encoded once and shared; a
    different chunk (even of the same seq) is encoded anew, never served from that cache."""
    one, two = authed(versions=(1,)), authed(versions=(1,))
    chunk = sign_chunk(ALICE, SID, 4, 4, True, b"a" * 3000)
    other = sign_chunk(ALICE, SID, 4, 4, True, b"b" * 3000)  # same seq, other bytes
    one.a.send_chunk(chunk, 9.0)
    two.a.send_chunk(chunk, 9.0)
    (sa,), (sb,) = ([a for a in lk.a.actions() if isinstance(a, ss.SendChunkStream)]
                    for lk in (one, two))
    assert sa.data is sb.data and wire.decode_chunk(sa.data) == chunk
    two.a.send_chunk(other, 9.0)
    one.a.send_chunk(chunk, 9.0)
    (sc,), (sd,) = ([a for a in lk.a.actions() if isinstance(a, ss.SendChunkStream)]
                    for lk in (two, one))
    assert wire.decode_chunk(sc.data) == other and wire.decode_chunk(sd.data) == chunk


def test_counters_add_up() -> None:
    link = authed()
    payloads = [b"a" * 100, b"b" * 2000, b"c" * 30]
    for i, p in enumerate(payloads):
        link.a.send_chunk(sign_chunk(ALICE, SID, i, i, False, p), 5.0)
    link.b.send_chunk(sign_chunk(ALICE, SID, 9, 9, False, b"z" * 7), 5.0)
    link.a.send(wire.Request(stream=SID.key, seq=1))
    link.roundtrip()
    a, b = link.a.counters, link.b.counters
    assert a.media_out == b.media_in == 2130 and a.chunks_out == b.chunks_in == 3
    assert b.media_out == a.media_in == 7 and b.chunks_out == a.chunks_in == 1
    assert a.chunk_stream_out == b.chunk_stream_in
    assert b.chunk_stream_out == a.chunk_stream_in
    assert a.control_out == b.control_in and b.control_out == a.control_in
    sent_a = sum(len(x.data) for x in link.actions[0] if isinstance(x, ss.SendControl))
    assert a.control_out == sent_a
    assert a.chunk_stream_out == sum(len(x.data) for x in link.actions[0]
                                     if isinstance(x, ss.SendChunkStream))


def test_control_bytes_one_at_a_time() -> None:
    link = pair()
    link.byte_at_a_time = True
    link.roundtrip()
    assert link.a.authenticated and link.b.authenticated
    link.a.send(wire.Subscribe(stream=SID.key, mask=5, substreams=4))
    link.a.send(wire.Goodbye(code=int(ErrorCode.SHUTDOWN), reason="bye"))
    link.roundtrip()
    assert [e.message for e in link.of(1, ss.MessageReceived)] == [
        wire.Subscribe(stream=SID.key, mask=5, substreams=4)]
    c = link.closed(1)
    assert c == ss.Closed(ErrorCode.SHUTDOWN, "bye", True)
    assert link.b.counters.violations == 0


def test_garbage_frames_count_then_too_many_errors() -> None:
    link = authed(max_errors=3)
    garbage = [b"\xc1", b"\x92\x63\x01", b"\x93\x09\xa1x\x01", b"", b"\x91"]
    for i, body in enumerate(garbage[:3]):
        link.b.receive_control(len(body).to_bytes(4, "big") + body, 1.0)
        assert link.b.counters.violations == i + 1
        assert link.b.authenticated
    link.b.receive_control(len(garbage[3]).to_bytes(4, "big") + garbage[3], 1.0)
    link.roundtrip()
    codes = [v.code for v in link.of(1, ss.Violation)]
    assert codes == [ErrorCode.MALFORMED, ErrorCode.UNKNOWN_MESSAGE, ErrorCode.MALFORMED,
                     ErrorCode.MALFORMED]
    assert link.closed(1).code == ErrorCode.TOO_MANY_ERRORS
    # The peer got one ERROR per violation and then a GOODBYE.
    got = [e.message for e in link.of(0, ss.MessageReceived)]
    assert [type(m) for m in got] == [wire.Error] * 4
    assert link.closed(0) == ss.Closed(ErrorCode.TOO_MANY_ERRORS, link.closed(1).reason, True)
    # A closed session ignores further input.
    link.b.receive_control(b"\x00\x00\x00\x01\xc1", 2.0)
    assert link.b.counters.violations == 4


def test_oversize_frame_closes() -> None:
    link = authed()
    link.b.receive_control((wire.MAX_CONTROL_FRAME + 1).to_bytes(4, "big"), 1.0)
    link.roundtrip()
    assert [v.code for v in link.of(1, ss.Violation)] == [ErrorCode.TOO_LARGE]
    assert link.closed(1).code == ErrorCode.TOO_LARGE


def test_oversize_chunk_stream_is_stopped() -> None:
    link = authed(versions=(1,))  # OFTP 1: a chunk stream is one unframed CHUNK
    piece = b"\x00" * (256 * 1024)
    sent = 0
    while sent <= wire.MAX_CHUNK_MESSAGE:
        link.b.receive_chunk_stream(7, piece, False, 1.0)
        sent += len(piece)
    acts = link.b.actions()
    assert acts.count(ss.StopChunkStream(7)) == 1
    assert link.b.counters.violations == 1
    link.roundtrip()
    assert [v.code for v in link.of(1, ss.Violation)] == [ErrorCode.TOO_LARGE]
    assert link.b.authenticated and not link.of(1, ss.ChunkReceived)
    # Other streams still work.
    link.b.receive_chunk_stream(11, wire.encode(sign_chunk(ALICE, SID, 1, 1, True, b"ok")), True, 1.0)
    link.roundtrip()
    assert [e.chunk.payload for e in link.of(1, ss.ChunkReceived)] == [b"ok"]


def test_a_chunk_stream_parked_unfinished_is_stopped_and_freed_after_its_timeout() -> None:
    """A peer opens chunk streams and never finishes them (each just under the buffer
    caps): they are stopped and their buffers freed CHUNK_STREAM_TIMEOUT after their first
    byte, oldest first, counted; a stream that began later is left to finish."""
    link = authed(versions=(1,))  # OFTP 1: a chunk stream is one unframed CHUNK
    b = link.b
    t0 = link.now
    data = wire.encode(sign_chunk(ALICE, SID, 1, 1, True, b"x" * 100_000))
    for sid in (3, 7):
        b.receive_chunk_stream(sid, data[:90_000], False, t0)
    assert b.counters.chunk_bytes_buffered == 180_000
    assert b.get_timer() == t0 + ss.CHUNK_STREAM_TIMEOUT
    b.receive_chunk_stream(11, data[:50_000], False, t0 + 6.0)  # a later one
    link.step(ss.CHUNK_STREAM_TIMEOUT - 0.01)
    assert b.counters.chunk_streams_timed_out == 0  # not yet
    link.step(0.02)
    stops = [a for a in b.actions() if isinstance(a, ss.StopChunkStream)]
    assert stops == [ss.StopChunkStream(3), ss.StopChunkStream(7)]
    assert b.counters.chunk_streams_timed_out == 2 and b.counters.chunk_bytes_buffered == 50_000
    assert b.get_timer() == t0 + 6.0 + ss.CHUNK_STREAM_TIMEOUT
    b.receive_chunk_stream(3, data[90_000:], True, link.now)  # late bytes of a stopped stream
    b.receive_chunk_stream(11, data[50_000:], True, link.now)  # the later one finishes
    link.roundtrip()
    assert [e.chunk.seq for e in link.of(1, ss.ChunkReceived)] == [1]
    assert b.counters.chunk_bytes_buffered == 0 and b.get_timer() is None
    assert b.authenticated  # a stall is not a violation: no error, no close


def test_garbage_chunk_stream_is_a_violation() -> None:
    link = authed(versions=(1,))  # OFTP 1: a chunk stream is one unframed CHUNK
    link.b.receive_chunk_stream(7, b"\x93\x0b\x01\x02", True, 1.0)
    link.roundtrip()
    assert [v.code for v in link.of(1, ss.Violation)] == [ErrorCode.MALFORMED]
    assert link.b.authenticated


def test_reset_chunk_stream_is_forgotten() -> None:
    link = authed(versions=(1,))  # OFTP 1: a chunk stream is one unframed CHUNK
    data = wire.encode(sign_chunk(ALICE, SID, 1, 1, True, b"x" * 100))
    link.b.receive_chunk_stream(7, data[:50], False, 1.0)
    link.b.chunk_stream_reset(7)
    link.b.receive_chunk_stream(7, data, True, 1.0)  # same id reused from scratch
    link.roundtrip()
    assert [e.chunk.payload for e in link.of(1, ss.ChunkReceived)] == [b"x" * 100]


def test_local_close_sends_goodbye() -> None:
    link = authed()
    link.a.close(ErrorCode.SHUTDOWN, "going away")
    link.roundtrip()
    assert link.closed(0) == ss.Closed(ErrorCode.SHUTDOWN, "going away", False)
    assert link.closed(1) == ss.Closed(ErrorCode.SHUTDOWN, "going away", True)
    assert not link.a.authenticated


def test_invalid_utf8_control_frame_is_a_violation() -> None:
    link = authed()
    body = b"\x93\x0c\x00\xa1\xff"  # GOODBYE(code=0, reason=<0xff>)
    link.b.receive_control(len(body).to_bytes(4, "big") + body, 1.0)
    link.roundtrip()
    assert [v.code for v in link.of(1, ss.Violation)] == [ErrorCode.MALFORMED]


# ---- handshake deadline from connection creation; control stream FIN -------

def test_begin_arms_deadline_without_sending() -> None:
    """A listener whose dialler never opens the control stream is closed on time."""
    s = ss.Session(BOB, False, rng=random.Random(3))
    s.begin(10.0)
    assert s.actions() == [] and s.get_timer() == 10.0 + ss.HANDSHAKE_TIMEOUT
    s.handle_timer(10.0 + ss.HANDSHAKE_TIMEOUT - 0.01)
    assert not s.closed
    s.handle_timer(10.0 + ss.HANDSHAKE_TIMEOUT)
    assert s.closed and s.next_event() == ss.Closed(ErrorCode.TIMEOUT, "handshake did not complete in time",
                                                    False)


def test_start_after_begin_keeps_the_earlier_deadline() -> None:
    s = ss.Session(BOB, False, rng=random.Random(3))
    s.begin(0.0)
    s.start(4.0)  # the dialler opened stream 0 late: the deadline does not move
    assert s.get_timer() == ss.HANDSHAKE_TIMEOUT
    (hello,) = s.actions()
    assert isinstance(wire.decode_control(hello.data[4:]), wire.Hello)
    s.start(4.5)  # a second start sends nothing more
    assert s.actions() == [] and s.get_timer() == ss.HANDSHAKE_TIMEOUT
    s.begin(1.0)  # nor does a later begin
    assert s.get_timer() == ss.HANDSHAKE_TIMEOUT


def test_slow_handshake_after_begin_times_out() -> None:
    """A peer trickling its handshake cannot extend the deadline armed at creation."""
    link = pair(start=False)
    link.a.begin(0.0)
    link.b.begin(0.0)
    link.step(3.0)
    link.a.start(link.now)
    link.step(2.0)  # 5 s since the connection was created
    assert link.b.closed and link.a.closed
    link.roundtrip()
    assert link.closed(1).code == ErrorCode.TIMEOUT


def test_control_fin_with_partial_frame_is_truncated() -> None:
    link = authed()
    frame = wire.frame(wire.Join(stream="x.live"))
    link.b.receive_control(frame[:-2], 1.0, end=True)
    link.roundtrip()
    assert link.of(1, ss.Violation) == [ss.Violation(ErrorCode.MALFORMED, "truncated frame")]
    assert link.closed(1).code == ErrorCode.MALFORMED and not link.closed(1).by_peer
    assert any(isinstance(a, ss.CloseLink) for a in link.actions[1])


@pytest.mark.parametrize("authenticated", [False, True], ids=["pre-auth", "post-auth"])
def test_control_fin_closes_the_link(authenticated: bool) -> None:
    link = authed() if authenticated else pair()
    link.b.receive_control(b"", 1.0, end=True)
    link.roundtrip()
    c = link.closed(1)
    assert c.code == ErrorCode.UNEXPECTED and c.reason == "peer closed its control stream"
    assert not link.of(1, ss.Violation) and not link.b.authenticated
    assert any(isinstance(a, ss.CloseLink) and a.code == ErrorCode.UNEXPECTED for a in link.actions[1])


def test_goodbye_then_fin_is_a_clean_close() -> None:
    link = authed()
    bye = wire.frame(wire.Goodbye(code=int(ErrorCode.SHUTDOWN), reason="bye"))
    link.b.receive_control(bye, 1.0, end=True)
    link.roundtrip()
    assert link.closed(1) == ss.Closed(ErrorCode.SHUTDOWN, "bye", True)
    assert not link.of(1, ss.Violation)


# ---- caps on chunk stream buffers -------------------------------------------

def test_open_chunk_streams_share_one_byte_cap() -> None:
    """An authenticated peer opens many streams and never finishes them: the total
    buffered stays under MAX_BUFFERED_CHUNK_BYTES, the stream that crossed it is stopped."""
    link = authed(versions=(1,))  # OFTP 1: a chunk stream is one unframed CHUNK
    piece = b"\x00" * (512 * 1024)
    stopped_at = None
    for k in range(40):
        sid = 3 + 4 * k
        link.b.receive_chunk_stream(sid, piece, False, 1.0)
        assert link.b.counters.chunk_bytes_buffered <= ss.MAX_BUFFERED_CHUNK_BYTES
        if ss.StopChunkStream(sid) in link.b.actions():
            stopped_at = k
            break
    assert stopped_at == ss.MAX_BUFFERED_CHUNK_BYTES // len(piece)
    assert link.b.counters.chunk_streams_stopped == 1
    link.roundtrip()
    assert [(v.code, "together" in v.detail) for v in link.of(1, ss.Violation)] == [(ErrorCode.TOO_LARGE, True)]
    # Late bytes of the stopped stream are dropped, not buffered again.
    link.b.receive_chunk_stream(3 + 4 * stopped_at, piece, True, 1.0)
    assert link.b.counters.violations == 1
    # Resetting the open streams frees their bytes; a real chunk then gets through.
    for k in range(stopped_at):
        link.b.chunk_stream_reset(3 + 4 * k)
    assert link.b.counters.chunk_bytes_buffered == 0
    link.a.send_chunk(sign_chunk(ALICE, SID, 1, 1, True, b"ok"), 9.0)
    link.roundtrip()
    assert [e.chunk.payload for e in link.of(1, ss.ChunkReceived)] == [b"ok"]
    assert link.b.authenticated


def test_buffered_counter_returns_to_zero() -> None:
    link = authed()
    for i in range(5):
        link.a.send_chunk(sign_chunk(ALICE, SID, i, i, False, b"x" * 50_000), 9.0)
    link.roundtrip()
    assert len(link.of(1, ss.ChunkReceived)) == 5
    assert link.b.counters.chunk_bytes_buffered == 0
    link.b.receive_chunk_stream(99, b"abc", False, 1.0)
    assert link.b.counters.chunk_bytes_buffered == 3
    link.b.close(ErrorCode.SHUTDOWN, "bye")
    assert link.b.counters.chunk_bytes_buffered == 0


# ---- ERROR and GOODBYE from the peer ---------------------------------------

def test_errors_received_are_counted_and_unknown_codes_are_violations() -> None:
    link = authed()
    link.b.receive_control(wire.frame(wire.Error(code=int(ErrorCode.OVERLOADED), reason="busy\n\x1b[31m")), 1.0)
    link.b.receive_control(wire.frame(wire.Error(code=0xBEEF, reason="?")), 1.0)
    link.roundtrip()
    c = link.b.counters
    assert c.errors_received == 2 and c.unknown_codes_received == 1 and c.violations == 1
    # The known one reaches the node, with its reason made safe to log.
    (got,) = [e.message for e in link.of(1, ss.MessageReceived)]
    assert got == wire.Error(code=int(ErrorCode.OVERLOADED), reason="busy??[31m")
    assert link.of(1, ss.Violation) == [ss.Violation(ErrorCode.MALFORMED, "ERROR with unknown code 48879")]
    assert link.b.authenticated


def test_error_before_auth_closes() -> None:
    s = ss.Session(BOB, False, rng=random.Random(3))
    s.start(0.0)
    s.receive_control(wire.frame(wire.Error(code=0xBEEF, reason="?")), 0.0)
    assert s.closed and s.counters.errors_received == 1 and s.counters.unknown_codes_received == 1


def test_goodbye_with_unknown_code_is_a_coded_close() -> None:
    link = authed()
    link.b.receive_control(wire.frame(wire.Goodbye(code=0x7777, reason="later\r\nFAKE LOG LINE")), 1.0)
    link.roundtrip()
    c = link.closed(1)
    assert c == ss.Closed(ErrorCode.MALFORMED, "goodbye with unknown code 30583: later??FAKE LOG LINE", True)
    assert link.b.counters.unknown_codes_received == 1


# ---- strangers get no error budget ------------------------------------------

def test_any_violation_before_auth_closes() -> None:
    s = ss.Session(BOB, False, rng=random.Random(3), max_errors=20)
    s.start(0.0)
    s.receive_control(b"\x00\x00\x00\x01\xc1" * 5, 0.0)
    events = []
    while (ev := s.next_event()) is not None:
        events.append(ev)
    assert events == [ss.Violation(ErrorCode.MALFORMED, events[0].detail),
                      ss.Closed(ErrorCode.MALFORMED, events[0].detail, False)]
    assert s.counters.violations == 1


def test_large_frame_before_auth_is_refused_from_its_length() -> None:
    s = ss.Session(BOB, False, rng=random.Random(3))
    s.start(0.0)
    s.receive_control((ss.MAX_HANDSHAKE_FRAME + 1).to_bytes(4, "big"), 0.0)
    ev = s.next_event()
    assert isinstance(ev, ss.Violation) and ev.code == ErrorCode.TOO_LARGE
    assert s.closed


def test_handshake_holds_at_most_two_small_frames() -> None:
    """The largest HELLO is accepted; the next frame may be at most MAX_HANDSHAKE_FRAME."""
    hello = wire.frame(wire.Hello(versions=list(range(1, 9)), key=ALICE.public, nonce=b"n" * 16,
                                  agent="\U0001F600" * 256))
    assert len(hello) < ss.MAX_HANDSHAKE_FRAME
    s = ss.Session(BOB, False, rng=random.Random(3))
    s.start(0.0)
    s.receive_control(hello, 0.0)  # the largest HELLO is accepted
    assert not s.closed and s.next_event() is None
    s.receive_control(ss.MAX_HANDSHAKE_FRAME.to_bytes(4, "big") + b"\x00" * 100, 0.0)  # an AUTH that never ends
    assert not s.closed
    s2 = ss.Session(BOB, False, rng=random.Random(3))
    s2.receive_control(hello + (ss.MAX_HANDSHAKE_FRAME + 1).to_bytes(4, "big"), 0.0)
    assert [type(e) for e in (s2.next_event(), s2.next_event())] == [ss.Violation, ss.Closed]
    assert s2.closed and s2.counters.violations == 1


def test_big_status_right_after_auth_in_the_same_read_is_accepted() -> None:
    """The small pre-auth frame cap switches off as soon as AUTH is processed, even
    for frames that arrived in the same read."""
    link = pair()
    link.roundtrip(rounds=1)  # both HELLOs delivered; AUTHs queued
    status = wire.Status(stream=SID.key, latest=3, have=7, keyframe=0, slots=4,
                         paths=[[b"t" * 8] * wire.MAX_PATH] * wire.MAX_SUBSTREAMS)
    assert len(wire.frame(status)) > 2 * ss.MAX_HANDSHAKE_FRAME
    (auth_a,) = link.a.actions()
    link.b.receive_control(auth_a.data + wire.frame(status), 0.0)
    assert link.b.authenticated
    evs = [link.b.next_event(), link.b.next_event()]
    assert isinstance(evs[0], ss.Authenticated) and evs[1] == ss.MessageReceived(status)


@pytest.mark.parametrize("depth", [40_000, 60_000])
@pytest.mark.parametrize("authenticated", [False, True], ids=["pre-auth", "post-auth"])
def test_nesting_bomb_frame_is_a_coded_violation(depth: int, authenticated: bool) -> None:
    """A ~40-60 KB frame of nested arrays (it segfaulted msgspec's untyped decoder)."""
    body = b"\x91" * depth + b"\x01"
    link = authed(max_errors=5, versions=(1,)) if authenticated else pair(max_errors=5)
    if authenticated:
        link.b.receive_control(len(body).to_bytes(4, "big") + body, 1.0)
        link.b.receive_chunk_stream(3, body, True, 1.0)
        link.roundtrip()
        assert [v.code for v in link.of(1, ss.Violation)] == [ErrorCode.MALFORMED] * 2
        assert link.b.authenticated
    else:  # before auth the frame is refused from its length alone, and the link closed
        link.b.receive_control(len(body).to_bytes(4, "big") + body, 1.0)
        link.roundtrip()
        assert [v.code for v in link.of(1, ss.Violation)] == [ErrorCode.TOO_LARGE]
        assert link.closed(1).code == ErrorCode.TOO_LARGE
        small = b"\x91" * 2000 + b"\x01"  # under MAX_HANDSHAKE_FRAME: decoded (typed) and refused
        s = ss.Session(BOB, False, rng=random.Random(3))
        s.receive_control(len(small).to_bytes(4, "big") + small, 1.0)
        ev = s.next_event()
        assert isinstance(ev, ss.Violation) and ev.code == ErrorCode.MALFORMED and s.closed


# ---- OFTP 2: chunk runs (several framed chunks on one stream) -------------------------

def _run_bytes(*chunks: wire.ChunkMsg) -> bytes:
    return b"".join(wire.frame_chunk(wire.encode(c)) for c in chunks)


def test_a_chunk_run_in_any_pieces_gives_each_chunk_in_order_and_holds_nothing_between() -> None:
    """OFTP 2: frames cut anywhere (a byte at a time, across frame boundaries) come out
    whole and in order; between frames the run holds no bytes and arms no timeout."""
    sent = [sign_chunk(ALICE, SID, i, i, i == 0, bytes([i]) * (500 + 97 * i)) for i in range(6)]
    data = _run_bytes(*sent)
    for cuts in ([1] * len(data), [3, 5, 700, 1, 2000], [len(data)]):
        link = authed()
        b = link.b
        assert b.version == 2
        pos = 0
        for n in cuts:
            b.receive_chunk_stream(3, data[pos:pos + n], False, link.now)
            pos += n
            if pos >= len(data):
                break
        b.receive_chunk_stream(3, data[pos:], True, link.now)
        link.roundtrip()
        got = link.of(1, ss.ChunkReceived)
        assert [e.chunk for e in got] == sent
        assert [e.wire_bytes for e in got] == [len(wire.encode(c)) + 4 for c in sent]
        assert b.counters.chunk_bytes_buffered == 0 and b.get_timer() is None
        assert not link.of(1, ss.Violation)
    # an open run between two frames: nothing held, no timeout running
    link = authed()
    link.b.receive_chunk_stream(3, _run_bytes(sent[0]), False, link.now)
    assert link.b.counters.chunk_bytes_buffered == 0 and link.b.get_timer() is None
    link.step(3 * ss.CHUNK_STREAM_TIMEOUT)
    link.b.receive_chunk_stream(3, _run_bytes(sent[1]), True, link.now)
    link.roundtrip()
    assert [e.chunk for e in link.of(1, ss.ChunkReceived)] == sent[:2]


def test_a_run_frame_announcing_too_much_is_stopped_at_its_header() -> None:
    """A frame header over MAX_CHUNK_MESSAGE: the run is stopped before any of its bytes
    are kept (TOO_LARGE), the frames before it were delivered."""
    link = authed()
    ok = sign_chunk(ALICE, SID, 1, 1, True, b"x" * 100)
    head = (wire.MAX_CHUNK_MESSAGE + 1).to_bytes(4, "big")
    link.b.receive_chunk_stream(3, _run_bytes(ok) + head, False, link.now)
    link.roundtrip()
    assert [e.chunk for e in link.of(1, ss.ChunkReceived)] == [ok]
    assert [v.code for v in link.of(1, ss.Violation)] == [ErrorCode.TOO_LARGE]
    assert any(isinstance(a, ss.StopChunkStream) and a.stream_id == 3 for a in link.actions[1])
    assert link.b.counters.chunk_bytes_buffered == 0
    link.b.receive_chunk_stream(3, b"y" * 1000, False, link.now)  # late bytes: dropped
    assert link.b.counters.chunk_bytes_buffered == 0


def test_a_run_ended_inside_a_frame_is_a_violation_and_frees_its_bytes() -> None:
    link = authed()
    data = _run_bytes(sign_chunk(ALICE, SID, 1, 1, True, b"x" * 3000))
    link.b.receive_chunk_stream(3, data[:1000], False, link.now)
    assert link.b.counters.chunk_bytes_buffered == 1000
    link.b.receive_chunk_stream(3, data[1000:2000], True, link.now)
    link.roundtrip()
    assert [v.code for v in link.of(1, ss.Violation)] == [ErrorCode.MALFORMED]
    assert link.b.counters.runs_ended_in_frame == 1
    assert link.b.counters.chunk_bytes_buffered == 0 and link.b.get_timer() is None
    assert not link.of(1, ss.ChunkReceived)


def test_a_run_frame_left_unfinished_is_stopped_after_the_timeout_from_its_first_byte() -> None:
    """The timeout runs from an unfinished frame's first byte, not from the run's: a run
    that delivered a frame long ago and then parks half a frame is stopped on time."""
    link = authed()
    a, c = (sign_chunk(ALICE, SID, i, i, True, b"x" * 2000) for i in (1, 2))
    link.b.receive_chunk_stream(3, _run_bytes(a), False, link.now)
    link.step(5.0)
    t = link.now
    link.b.receive_chunk_stream(3, _run_bytes(c)[:100], False, link.now)
    assert link.b.get_timer() == t + ss.CHUNK_STREAM_TIMEOUT
    link.step(ss.CHUNK_STREAM_TIMEOUT - 0.1)
    assert link.b.counters.chunk_streams_timed_out == 0
    link.step(0.1)
    link.roundtrip()
    assert link.b.counters.chunk_streams_timed_out == 1 and link.b.counters.chunk_bytes_buffered == 0
    assert [e.chunk for e in link.of(1, ss.ChunkReceived)] == [a]


def test_a_garbage_frame_in_a_run_is_a_violation_and_the_run_goes_on() -> None:
    link = authed()
    good = sign_chunk(ALICE, SID, 2, 2, True, b"g" * 300)
    bad = b"\x93\x01\x02"  # a frame that is no CHUNK
    data = len(bad).to_bytes(4, "big") + bad + _run_bytes(good)
    link.b.receive_chunk_stream(3, data, True, link.now)
    link.roundtrip()
    assert [v.code for v in link.of(1, ss.Violation)] == [ErrorCode.MALFORMED]
    assert [e.chunk for e in link.of(1, ss.ChunkReceived)] == [good]


def test_open_runs_share_the_one_byte_cap() -> None:
    """Unfinished frames on many runs count against MAX_BUFFERED_CHUNK_BYTES together."""
    link = authed()
    big = _run_bytes(sign_chunk(ALICE, SID, 1, 1, True, b"z" * (wire.MAX_CHUNK_PAYLOAD - 10)))
    part = big[: len(big) - 10]
    link.b.receive_chunk_stream(3, part, False, link.now)
    link.b.receive_chunk_stream(7, part, False, link.now)
    assert link.b.counters.chunk_bytes_buffered == 2 * len(part) <= ss.MAX_BUFFERED_CHUNK_BYTES
    link.b.receive_chunk_stream(11, part, False, link.now)
    link.roundtrip()
    assert [v.code for v in link.of(1, ss.Violation)] == [ErrorCode.TOO_LARGE]
    assert link.b.counters.chunk_bytes_buffered == 2 * len(part)


@pytest.mark.parametrize(("versions", "runs", "framed", "run"),
                         [((1,), True, False, False), ((1, 2), True, True, True),
                          ((1, 2), False, True, False)])
def test_what_send_chunk_asks_for_by_version_and_setting(versions: tuple[int, ...], runs: bool,
                                                          framed: bool, run: bool) -> None:
    """OFTP 1: the chunk's bytes, a stream each. OFTP 2: the chunk framed, for the link's
    run (``chunk_runs``) or a stream of its own; one encoding shared by every link."""
    one, two = authed(versions=versions, chunk_runs=runs), authed(versions=versions, chunk_runs=runs)
    chunk = sign_chunk(ALICE, SID, 4, 4, True, b"a" * 3000)
    one.a.send_chunk(chunk, 9.0)
    two.a.send_chunk(chunk, 9.0)
    (sa,), (sb,) = ([a for a in lk.a.actions() if isinstance(a, ss.SendChunkStream)]
                    for lk in (one, two))
    body = wire.encode(chunk)
    assert sa.data == (wire.frame_chunk(body) if framed else body) and sa.data is sb.data
    assert sa.run is run and (sa.seq, sa.deadline) == (4, 9.0)


def test_a_peer_offering_only_oftp_1_gets_oftp_1() -> None:
    link = authed(versions=(1,))
    assert link.a.version == link.b.version == 1
    link = pair(start=False)  # a new node (1, 2) and an old one (1)
    link.b.versions = (1,)
    link.a.start(link.now)
    link.b.start(link.now)
    link.roundtrip()
    assert link.a.version == link.b.version == 1
    chunk = sign_chunk(ALICE, SID, 1, 1, True, b"x" * 500)
    link.a.send_chunk(chunk, 9.0)
    link.roundtrip()
    assert [e.chunk for e in link.of(1, ss.ChunkReceived)] == [chunk]
