"""Property tests: no byte sequence from a peer raises out of the codec or the session.

The codec may only raise :class:`WireError`; the session may raise nothing at all,
in every state (fresh, mid-handshake, authenticated), for control bytes, control
stream FIN and chunk streams. Splitting a valid stream differently changes nothing;
bytes after a valid message are refused. Bounded: a few hundred examples each.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_core_wire import nesting_bombs, sample

from oasis.core import session as ss
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.core.wire import ErrorCode, WireError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RNG = random.Random(99)
ALICE = Identity.from_private_bytes(RNG.randbytes(32))
BOB = Identity.from_private_bytes(RNG.randbytes(32))
SID = StreamId(ALICE.public, "live")

VALID = [wire.encode(sample(c)) for c in wire.CONTROL_MESSAGES]
CHUNK = wire.encode(sign_chunk(ALICE, SID, 7, 7_000_000, True, b"\x47" * 1000))


@st.composite
def mutated(draw: st.DrawFn, bodies: list[bytes] = VALID + [CHUNK]) -> bytes:
    """A valid encoding with bit flips, byte changes, insertions, deletions, truncation,
    splices of another message, huge length headers or a nesting bomb."""
    data = bytearray(draw(st.sampled_from(bodies)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 6))
        pos = draw(st.integers(0, len(data)))
        if op == 0 and data:
            data[pos % len(data)] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and data:
            data[pos % len(data)] = draw(st.integers(0, 255))
        elif op == 2:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == 3:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == 4:
            del data[pos:]
        elif op == 5:
            other = draw(st.sampled_from(bodies))
            data[pos:] = other[draw(st.integers(0, len(other))):]
        else:  # a header announcing far more than is there, or a deep nest
            data[pos:pos] = draw(st.sampled_from([b"\xdd\xff\xff\xff\xff", b"\xdb\x7f\xff\xff\xff",
                                                  b"\xc6\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
                                                  b"\x91" * 3000]))
    return bytes(data)


hostile = st.one_of(st.binary(max_size=200), mutated())


def only_wire_error(fn, data: bytes) -> None:
    try:
        fn(data)
    except WireError as exc:
        assert isinstance(exc.code, ErrorCode)


@FUZZ
@given(hostile)
def test_decoders_raise_only_wire_error(data: bytes) -> None:
    only_wire_error(wire.decode_control, data)
    only_wire_error(wire.decode_chunk, data)


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=40), mutated().map(lambda b: len(b).to_bytes(4, "big") + b)),
                max_size=8))
def test_frame_reader_raises_only_wire_error(pieces: list[bytes]) -> None:
    reader = wire.FrameReader(cap=4096)
    for p in pieces:
        try:
            for body in reader.feed(p):
                only_wire_error(wire.decode_control, body)
        except WireError as exc:
            assert exc.code == ErrorCode.TOO_LARGE
            return


@FUZZ
@given(st.sampled_from(VALID + [CHUNK]), st.binary(min_size=1, max_size=50))
def test_trailing_garbage_is_refused(body: bytes, garbage: bytes) -> None:
    decode = wire.decode_chunk if body is CHUNK else wire.decode_control
    decode(body)
    try:
        decode(body + garbage)
    except WireError as exc:
        assert exc.code == ErrorCode.TRAILING_BYTES
    else:
        raise AssertionError("trailing bytes accepted")


# ---- the session, in every state --------------------------------------------

def _drain(s: ss.Session) -> list:
    out = []
    while (ev := s.next_event()) is not None:
        out.append(ev)
    return out


def _pair() -> tuple[ss.Session, ss.Session]:
    a = ss.Session(ALICE, True, expected_key=BOB.public, rng=random.Random(1), max_errors=5)
    b = ss.Session(BOB, False, rng=random.Random(2), max_errors=5)
    return a, b


def session_in(state: str) -> ss.Session:
    """BOB's session (listener): fresh, after ALICE's HELLO, or authenticated."""
    a, b = _pair()
    if state == "fresh":
        b.begin(0.0)
        return b
    a.start(0.0)
    b.start(0.0)
    (hello_a,) = a.actions()
    b.receive_control(hello_a.data, 0.0)
    if state == "authenticated":
        for act in b.actions():
            a.receive_control(act.data, 0.0)
        for act in a.actions():
            b.receive_control(act.data, 0.0)
        assert b.authenticated
    else:
        assert not b.authenticated and not b.closed
    b.actions()
    _drain(b)
    return b


STATES = st.sampled_from(["fresh", "mid-handshake", "authenticated"])
control_input = st.one_of(
    st.binary(max_size=200),
    mutated().map(lambda b: len(b).to_bytes(4, "big") + b),
    st.lists(mutated(), max_size=4).map(lambda bs: b"".join(len(b).to_bytes(4, "big") + b for b in bs)),
)


def _check_invariants(s: ss.Session, state: str) -> None:
    evs = _drain(s)
    acts = s.actions()
    assert s.counters.chunk_bytes_buffered <= ss.MAX_BUFFERED_CHUNK_BYTES
    assert s.counters.violations == sum(isinstance(e, ss.Violation) for e in evs) or s.closed
    if any(isinstance(e, ss.Closed) for e in evs):
        assert s.closed and s.get_timer() is None
        assert not any(isinstance(e, ss.Closed) for e in _drain(s))
    if state != "authenticated":  # fuzz cannot forge ALICE's AUTH
        assert not s.authenticated
        assert not any(isinstance(e, (ss.MessageReceived, ss.ChunkReceived)) for e in evs)
        assert s.closed or s.counters.violations == 0
    for a in acts:
        assert isinstance(a, (ss.SendControl, ss.SendChunkStream, ss.StopChunkStream, ss.CloseLink))


@FUZZ
@given(STATES, st.lists(st.tuples(control_input, st.booleans()), min_size=1, max_size=4))
def test_session_control_input_never_raises(state: str, feeds: list[tuple[bytes, bool]]) -> None:
    s = session_in(state)
    for data, end in feeds:
        s.receive_control(data, 1.0, end=end)
    _check_invariants(s, state)


chunk_input = st.one_of(st.binary(max_size=300), mutated([CHUNK]), st.just(CHUNK),
                        st.sampled_from(nesting_bombs(3000)))


@FUZZ
@given(STATES, st.lists(st.tuples(st.integers(0, 2**62), chunk_input, st.booleans(), st.booleans()),
                        min_size=1, max_size=6))
def test_session_chunk_streams_never_raise(state: str, feeds: list[tuple[int, bytes, bool, bool]]) -> None:
    s = session_in(state)
    for sid, data, end, reset in feeds:
        s.receive_chunk_stream(sid, data, end, 1.0)
        if reset:
            s.chunk_stream_reset(sid)
    s.handle_timer(100.0)
    _check_invariants(s, state)
    if state != "authenticated":
        assert s.closed and s.counters.chunk_bytes_buffered == 0


# ---- the same stream split differently gives the same events ----------------

MESSAGES = [sample(c) for c in (wire.Join, wire.Leave, wire.Status, wire.Subscribe, wire.SubscribeAck,
                                wire.Unsubscribe, wire.Request, wire.Missing, wire.Error, wire.WalletBind,
                                wire.TicketMsg, wire.ReceiptMsg, wire.Goodbye)]


def _dialler_bytes(msgs: list[wire.Message]) -> tuple[bytes, bytes]:
    """Everything ALICE sends on the control stream: her handshake, then ``msgs``."""
    a, b = _pair()
    a.start(0.0)
    b.start(0.0)
    hello_a = b"".join(x.data for x in a.actions())
    b.receive_control(hello_a, 0.0)
    for act in b.actions():
        a.receive_control(act.data, 0.0)
    assert a.authenticated
    for m in msgs:
        a.send(m)
    rest = b"".join(x.data for x in a.actions())
    return hello_a, rest


def _listener_events(stream: bytes, cuts: list[int]) -> list:
    _, b = _pair()
    b.start(0.0)
    prev = 0
    for cut in sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]:
        b.receive_control(stream[prev:cut], 0.0)
        prev = cut
    return _drain(b)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(MESSAGES), max_size=6), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_split_gives_the_same_events(msgs: list[wire.Message], cuts: list[int]) -> None:
    hello, rest = _dialler_bytes(msgs)
    stream = hello + rest
    whole = _listener_events(stream, [])
    assert isinstance(whole[0], ss.Authenticated)
    assert _listener_events(stream, cuts) == whole


def test_one_byte_at_a_time_gives_the_same_events() -> None:
    hello, rest = _dialler_bytes(MESSAGES)
    stream = hello + rest
    whole = _listener_events(stream, [])
    assert [type(e) for e in whole] == [ss.Authenticated] + [ss.MessageReceived] * 12 + [ss.Closed]
    assert _listener_events(stream, list(range(len(stream)))) == whole
