"""Property tests: the TS chunker and packet parsers survive arbitrary bytes.

An ingest source (or a broadcaster's encoder gone wrong) can hand the chunker
anything. ``TsChunker.feed``/``flush`` must never raise and must only emit whole
188-byte packets that start with the sync byte; the ``tspackets`` parsers may only
raise :class:`TsError` (the chunker catches it).
"""

from __future__ import annotations

import functools

from conftest import encode_test_stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oasis.media import tspackets as ts
from oasis.media.chunker import TsChunker

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def real_packets() -> list[bytes]:
    data = encode_test_stream(0.5, fps=10, bitrate_kbps=200, width=160, height=96).data
    return [data[i : i + ts.TS_PACKET_SIZE] for i in range(0, len(data) - 187, ts.TS_PACKET_SIZE)]


@st.composite
def ts_like(draw: st.DrawFn) -> bytes:
    """Real packets (PAT, PMT, keyframes) with flipped bytes, cut at odd places, mixed with noise."""
    pkts = real_packets()
    start = draw(st.integers(0, len(pkts) - 1))
    data = bytearray(b"".join(pkts[start : start + draw(st.integers(1, 12))]))
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.integers(0, 3))
        if op == 0 and data:
            data[pos % len(data)] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.binary(max_size=200))
        elif op == 2:
            del data[pos : pos + draw(st.integers(1, 200))]
        else:
            data[pos:pos] = b"\x47" + draw(st.binary(max_size=187))
    return bytes(data)


any_bytes = st.one_of(st.binary(max_size=1200), ts_like())


@FUZZ
@given(st.lists(st.tuples(any_bytes, st.floats(0, 0.5)), max_size=6), st.integers(188, 4000))
def test_chunker_never_raises(feeds: list[tuple[bytes, float]], max_chunk: int) -> None:
    chunker = TsChunker(chunk_ms=100, max_chunk_bytes=max_chunk)
    now, out = 0.0, []
    for data, dt in feeds:
        now += dt
        out += chunker.feed(data, now)
    out += chunker.flush(now + 1.0)
    for c in out:
        assert c.payload and len(c.payload) % ts.TS_PACKET_SIZE == 0
        assert len(c.payload) <= chunker.max_chunk_bytes
        assert all(c.payload[i] == ts.SYNC_BYTE for i in range(0, len(c.payload), ts.TS_PACKET_SIZE))
    assert chunker.buffered_bytes == 0
    fed = sum(len(d) for d, _ in feeds)
    assert sum(len(c.payload) for c in out) + chunker.skipped_bytes == fed


packet = st.one_of(st.binary(min_size=188, max_size=188).map(lambda b: b"\x47" + b[1:]),
                   ts_like().map(lambda b: (b"\x47" + b[1:188]).ljust(188, b"\xff")),
                   st.binary(max_size=200))


@FUZZ
@given(st.lists(packet, min_size=1, max_size=8))
def test_packet_parsers_raise_only_ts_error(packets: list[bytes]) -> None:
    tracker = ts.ProgramTracker()
    for p in packets:
        for fn in (ts.pid, ts.payload_unit_start, ts.adaptation_field, ts.payload, ts.parse_pat,
                   ts.parse_pmt, tracker.observe, tracker.is_psi, tracker.is_random_access_point,
                   lambda p: ts.starts_decodable_picture(p, ts.STREAM_TYPE_H264),
                   lambda p: ts.starts_decodable_picture(p, ts.STREAM_TYPE_HEVC),
                   lambda p: ts.find_sync(p, 0)):
            try:
                fn(p)
            except ts.TsError:
                pass
