"""TsChunker on real MPEG-TS from the test source (synthetic clock, no waiting)."""

from __future__ import annotations

import io
import random

import av
import pytest

from oasis.media.chunker import MediaChunk, TsChunker
from oasis.media.tspackets import PAT_PID, TS_PACKET_SIZE, ProgramTracker, pid


def chunk_stream(feeds, chunker: TsChunker) -> list[MediaChunk]:
    chunks: list[MediaChunk] = []
    for now, data in feeds:
        chunks += chunker.feed(data, now)
    chunks += chunker.flush(feeds[-1][0])
    return chunks


def video_frames(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data), format="mpegts") as container:
        return list(container.decode(video=0))


@pytest.fixture(scope="module")
def chunks(encoded_stream) -> list[MediaChunk]:
    return chunk_stream(encoded_stream.feeds, TsChunker(chunk_ms=100))


def test_chunks_are_whole_packets_and_lossless(encoded_stream, chunks) -> None:
    assert all(len(c.payload) % TS_PACKET_SIZE == 0 and c.payload for c in chunks)
    assert b"".join(c.payload for c in chunks) == encoded_stream.data


def test_one_keyframe_chunk_per_gop_starting_with_pat_or_keyframe(chunks) -> None:
    keyframe_chunks = [c for c in chunks if c.keyframe]
    assert len(keyframe_chunks) == 3  # 3 s of 1 s GOPs
    # The stream opens with SDT, PAT, PMT, IDR: at most the SDT precedes the first keyframe chunk.
    first_keyframe = chunks.index(keyframe_chunks[0])
    assert first_keyframe == 0 or (first_keyframe == 1 and pid(chunks[0].payload) == 0x11)
    tracker = ProgramTracker()
    for chunk in chunks:
        first = chunk.payload[:TS_PACKET_SIZE]
        if chunk.keyframe:
            assert pid(first) == PAT_PID or tracker.is_random_access_point(first)
        for i in range(0, len(chunk.payload), TS_PACKET_SIZE):
            tracker.observe(chunk.payload[i : i + TS_PACKET_SIZE])


def test_chunks_follow_the_clock(chunks) -> None:
    times = [c.complete_at for c in chunks]
    assert times == sorted(times)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    assert gaps and all(g <= 0.1 + 1e-6 for g in gaps)
    # Keyframe cuts add extra cuts but the cadence stays ~chunk_ms.
    assert 0.08 <= sum(gaps) / len(gaps) <= 0.1 + 1e-6
    assert 25 <= len(chunks) <= 40


def test_byte_at_a_time_gives_same_chunks(encoded_stream, chunks) -> None:
    chunker = TsChunker(chunk_ms=100)
    split: list[MediaChunk] = []
    for now, data in encoded_stream.feeds:
        for i in range(len(data)):
            split += chunker.feed(data[i : i + 1], now)
    split += chunker.flush(encoded_stream.feeds[-1][0])
    assert split == chunks
    assert chunker.errors == 0 and chunker.skipped_bytes == 0


def test_random_split_points_give_same_chunks(encoded_stream, chunks) -> None:
    rng = random.Random(7)
    chunker = TsChunker(chunk_ms=100)
    split: list[MediaChunk] = []
    for now, data in encoded_stream.feeds:
        pos = 0
        while pos < len(data):
            step = rng.randint(1, 700)
            split += chunker.feed(data[pos : pos + step], now)
            pos += step
    split += chunker.flush(encoded_stream.feeds[-1][0])
    assert split == chunks


def test_garbage_is_skipped_and_counted(encoded_stream) -> None:
    feeds = list(encoded_stream.feeds)
    garbage = bytes(range(1, 60)) * 3  # no 0x47 inside, 177 bytes
    feeds[0] = (feeds[0][0], b"\x47junk" + garbage + feeds[0][1])
    middle = len(feeds) // 2
    feeds[middle] = (feeds[middle][0], garbage + feeds[middle][1] + b"\x00" * 50)
    chunker = TsChunker(chunk_ms=100)
    chunks = chunk_stream(feeds, chunker)
    assert b"".join(c.payload for c in chunks) == encoded_stream.data
    assert chunker.errors == 3
    assert chunker.skipped_bytes == 5 + 2 * len(garbage) + 50
    assert sum(c.keyframe for c in chunks) == 3


def test_random_garbage_never_raises() -> None:
    rng = random.Random(1)
    chunker = TsChunker()
    for n in range(200):
        chunker.feed(rng.randbytes(rng.randint(0, 1000)), n * 0.01)
    chunker.flush(2.0)
    assert chunker.errors >= 1


def test_max_chunk_bytes_caps_chunks(encoded_stream) -> None:
    limit = 20 * TS_PACKET_SIZE
    chunks = chunk_stream(encoded_stream.feeds, TsChunker(chunk_ms=100, max_chunk_bytes=limit))
    assert all(len(c.payload) <= limit for c in chunks)
    assert b"".join(c.payload for c in chunks) == encoded_stream.data
    assert sum(c.keyframe for c in chunks) == 3


def test_each_keyframe_chunk_onward_decodes(chunks) -> None:
    starts = [i for i, c in enumerate(chunks) if c.keyframe]
    for start in starts:
        data = b"".join(c.payload for c in chunks[start:])
        frames = video_frames(data)
        assert frames and frames[0].key_frame
        assert len(frames) >= 30 * (3 - starts.index(start)) - 2


def test_time_cut_keeps_pat_pmt_with_following_keyframe(encoded_stream) -> None:
    data = encoded_stream.data
    sdt, pat_pmt, rest = data[:188], data[188 : 3 * 188], data[3 * 188 :]
    assert [pid(p) for p in (sdt, pat_pmt[:188], pat_pmt[188:])] == [0x11, PAT_PID, 0x1000]
    chunker = TsChunker(chunk_ms=100)
    assert chunker.feed(sdt, 0.0) == []
    assert chunker.feed(pat_pmt, 0.05) == []
    first = chunker.feed(rest[: 10 * 188], 0.2)  # time cut due, but PAT/PMT lead-in is held
    assert [(c.payload, c.keyframe, c.complete_at) for c in first] == [(sdt, False, 0.2)]
    (keyframe_chunk,) = chunker.flush(0.3)
    assert keyframe_chunk.keyframe and keyframe_chunk.payload == pat_pmt + rest[: 10 * 188]


@pytest.mark.parametrize("jitter_ms", [0.0, 4.0])
def test_cadence_is_chunk_ms_when_frames_jitter(encoded_stream, jitter_ms) -> None:
    """A 30 fps source paced by an event loop (33.3 ms apart, give or take) with the
    default 33 ms chunks: one chunk a frame, not every other frame held for the next
    (the cadence was ~50 ms, and every viewer's chunk clock ran ahead of the stream)."""
    rng = random.Random(7)
    feeds = [(now + rng.uniform(-jitter_ms, jitter_ms) / 1000, data) for now, data in encoded_stream.feeds]
    feeds.sort(key=lambda f: f[0])
    chunks = chunk_stream(feeds, TsChunker(chunk_ms=33))
    span = chunks[-1].complete_at - chunks[0].complete_at
    assert span / (len(chunks) - 1) == pytest.approx(1 / 30, rel=0.05)
    assert b"".join(c.payload for c in chunks) == encoded_stream.data


def test_cadence_holds_with_small_feeds(encoded_stream) -> None:
    """Feeds every 5 ms (a pipe read in small pieces): chunks on the 100 ms grid, some
    cut a little early, none drifting: the mean is the chunk duration."""
    data = encoded_stream.data
    piece = TS_PACKET_SIZE * 4
    feeds = [(i / 200, data[o:o + piece]) for i, o in enumerate(range(0, len(data), piece))]
    chunks = chunk_stream(feeds, TsChunker(chunk_ms=100))
    times = [c.complete_at for c in chunks]
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    assert gaps[len(gaps) // 2] == pytest.approx(0.1)  # the grid's step, not step + a feed
    # short only around a keyframe (the cut before it, and the grid anchored again at
    # it: 3 GOPs), at the start and at the end
    assert sum(g < 0.1 - 1e-6 for g in gaps) <= 2 * 3 + 2
    span = feeds[-1][0] - feeds[0][0]
    assert len(chunks) == pytest.approx(span / 0.1 + 3, abs=3)  # + a keyframe cut a GOP
