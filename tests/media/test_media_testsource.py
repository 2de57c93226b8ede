"""The built-in test source: bitrate, GOP structure, visible running clock, pacing."""

from __future__ import annotations

import asyncio
import io

import av
import numpy as np

from oasis.media.testsource import TestSource, clock_text
from oasis.media.testsource import test_source_stream as paced_test_source


def test_bitrate_is_near_target(encoded_stream) -> None:
    seconds = (len(encoded_stream.feeds) - 1) / encoded_stream.fps
    kbps = len(encoded_stream.data) * 8 / seconds / 1000
    # CBR video + 64 kbit/s AAC + TS overhead: within a sane factor of the target.
    assert 0.8 * encoded_stream.bitrate_kbps <= kbps <= 1.4 * encoded_stream.bitrate_kbps


def test_stream_has_h264_video_and_aac_audio_with_1s_gop(encoded_stream) -> None:
    with av.open(io.BytesIO(encoded_stream.data), format="mpegts") as container:
        kinds = {(s.type, s.codec_context.name) for s in container.streams}
        assert kinds == {("video", "h264"), ("audio", "aac")}
        frames = list(container.decode(video=0))
    assert len(frames) == 90
    assert [i for i, f in enumerate(frames) if f.key_frame] == [0, 30, 60]
    assert (frames[0].width, frames[0].height) == (640, 360)


def test_clock_digits_change_between_frames() -> None:
    source = TestSource(500, width=320, height=180, fps=25)
    clock_strip = slice(180 * 5 // 8, 180)
    first = source.render_frame(1000.000)[clock_strip].copy()
    same = source.render_frame(1000.000)[clock_strip].copy()
    later = source.render_frame(1000.040)[clock_strip].copy()
    assert np.array_equal(first, same)
    assert np.count_nonzero(first != later) > 50  # the milliseconds digits were redrawn
    assert np.count_nonzero(first == 235) > 500  # digits are drawn in white on black
    source.close()


def test_frame_number_and_moving_box_change() -> None:
    source = TestSource(500, width=320, height=180, fps=25)
    before = source.render_frame(5.0).copy()
    source.next_frame_ts(5.0)
    after = source.render_frame(5.0)
    assert not np.array_equal(before[: 180 * 5 // 8], after[: 180 * 5 // 8])  # box moved
    assert not np.array_equal(before[180 * 5 // 8 : 180], after[180 * 5 // 8 : 180])  # frame no.
    source.close()


def test_clock_text_format() -> None:
    text = clock_text(1_700_000_000.25)
    assert len(text) == 12 and text[2] == ":" and text[5] == ":" and text.endswith(".250")


async def test_stream_is_paced_in_real_time() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    pieces = [p async for p in paced_test_source(300, fps=20, width=160, height=96, max_frames=10)]
    elapsed = loop.time() - started
    assert 0.4 <= elapsed < 2.0  # 10 frames at 20 fps ~ 0.45 s
    data = b"".join(pieces)
    assert data and len(data) % 188 == 0
