"""Built-in live test source: colour bars, a moving box, a running clock, a tone.

Theory of operation
-------------------
:class:`TestSource` paints each video frame directly into a YUV 4:2:0 buffer
with numpy (no colour conversion, no font library): 75 % colour bars, a white
box sweeping across them, and a black strip showing the wall-clock time
(``HH:MM:SS.mmm``, local time) and the frame number as seven-segment digits.
The clock makes glass-to-glass latency visible: compare a viewer's picture
with the broadcaster's.

Video is encoded with libx264 (ultrafast, zerolatency, no B-frames, one IDR
every ``fps`` frames = 1 s GOP, CBR via ``nal-hrd=cbr`` with maxrate/bufsize so
the stream really uses ``bitrate_kbps`` even for a static picture).  Audio is a
quiet 440 Hz sine with a loud 1 kHz beep during the first 100 ms of every
second, AAC-encoded in 1024-sample frames.  Both are muxed by libavformat's
mpegts muxer into an in-memory sink with ``flush_packets=1`` and
``max_delay=0``, so each :meth:`TestSource.next_frame_ts` call returns the TS
bytes for roughly that frame (the muxer interleaves audio and video, so the
very first call usually returns nothing).

:func:`test_source_stream` paces frames in real time on an absolute schedule
(``loop.time()``), so it does not drift; if the loop stalls for more than a
second it re-anchors instead of bursting to catch up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from fractions import Fraction

import av
import numpy as np

AUDIO_SAMPLE_RATE = 48_000
AAC_FRAME_SAMPLES = 1024
AUDIO_BITRATE = 64_000

# 75 % colour bars in BT.601 limited-range YUV: white, yellow, cyan, green, magenta, red, blue.
_BARS_YUV = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
]
_Y_BLACK, _Y_WHITE = 16, 235

# Seven-segment layout: a=top b=upper-right c=lower-right d=bottom e=lower-left f=upper-left g=middle
_DIGIT_SEGMENTS = {
    "0": "abcdef",
    "1": "bc",
    "2": "abdeg",
    "3": "abcdg",
    "4": "bcfg",
    "5": "acdfg",
    "6": "acdefg",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
}


def _glyph(char: str, height: int) -> np.ndarray:
    """Boolean mask of one seven-segment glyph (digit, ':' or '.') of the given height."""
    t = max(2, height // 9)
    if char in ":.":
        mask = np.zeros((height, 2 * t), dtype=bool)
        mask[height - 2 * t : height - t, 0 : 2 * t] = True
        if char == ":":
            mask[height // 3 - t : height // 3 + t, 0 : 2 * t] = True
        return mask
    width = max(3 * t, height * 11 // 20)
    mid = height // 2
    mask = np.zeros((height, width), dtype=bool)
    spans = {
        "a": (slice(0, t), slice(0, width)),
        "d": (slice(height - t, height), slice(0, width)),
        "g": (slice(mid - t // 2, mid - t // 2 + t), slice(0, width)),
        "f": (slice(0, mid), slice(0, t)),
        "e": (slice(mid, height), slice(0, t)),
        "b": (slice(0, mid), slice(width - t, width)),
        "c": (slice(mid, height), slice(width - t, width)),
    }
    for segment in _DIGIT_SEGMENTS[char]:
        mask[spans[segment]] = True
    return mask


class SevenSegmentFont:
    """Pre-rendered glyph masks for digits, ':' and '.'."""

    def __init__(self, height: int) -> None:
        self.height = height
        self.gap = max(2, height // 6)
        self.glyphs = {c: _glyph(c, height) for c in "0123456789:."}

    def text_width(self, text: str) -> int:
        return int(sum(self.glyphs[c].shape[1] + self.gap for c in text) - self.gap)

    def draw(self, plane: np.ndarray, text: str, top: int, left: int, value: int) -> None:
        """Set the pixels of ``text`` to ``value`` in a luma plane."""
        x = left
        for char in text:
            mask = self.glyphs[char]
            h, w = mask.shape
            region = plane[top : top + h, x : x + w]
            region[mask[: region.shape[0], : region.shape[1]]] = value
            x += w + self.gap


def clock_text(wall_time: float) -> str:
    """Local wall-clock time as ``HH:MM:SS.mmm``."""
    millis = int(wall_time * 1000) % 1000
    return time.strftime("%H:%M:%S", time.localtime(wall_time)) + f".{millis:03d}"


class TestSource:
    """Encodes the test pattern and tone into MPEG-TS, one video frame per call."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, bitrate_kbps: int = 1500, width: int = 640, height: int = 360, fps: int = 30
    ) -> None:
        if width % 2 or height % 4 or width < 160 or height < 96:
            raise ValueError("width must be even and >= 160, height a multiple of 4 and >= 96")
        if not 1 <= fps <= 120 or bitrate_kbps < 50:
            raise ValueError("fps must be 1..120 and bitrate_kbps >= 50")
        self.width, self.height, self.fps, self.bitrate_kbps = width, height, fps, bitrate_kbps
        self.frames_encoded = 0
        self.bytes_out = 0
        self._audio_samples = 0
        self._out = bytearray()
        self._closed = False
        self._container = av.open(
            self,
            mode="w",
            format="mpegts",
            container_options={"flush_packets": "1", "max_delay": "0"},
            buffer_size=4096,
        )
        video = self._container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = bitrate_kbps * 1000
        video.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "g": str(fps),
            "keyint_min": str(fps),
            "sc_threshold": "0",
            "bf": "0",
            "maxrate": f"{bitrate_kbps}k",
            "bufsize": f"{max(bitrate_kbps // 2, 50)}k",
            "x264-params": "nal-hrd=cbr",
        }
        audio = self._container.add_stream("aac", rate=AUDIO_SAMPLE_RATE, layout="mono")
        audio.bit_rate = AUDIO_BITRATE
        self._video, self._audio = video, audio
        self._frame_buffer, self._background = self._paint_background()
        self._font = SevenSegmentFont(height // 8)
        self._text_top = height * 5 // 8 + height // 32

    # file-like sink used by libavformat
    def write(self, data: bytes) -> int:
        self._out += data
        return len(data)

    def _drain(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        self.bytes_out += len(data)
        return data

    def _paint_background(self) -> tuple[np.ndarray, np.ndarray]:
        w, h = self.width, self.height
        buffer = np.empty((h * 3 // 2, w), dtype=np.uint8)
        y, u, v = self._planes(buffer)
        bars_bottom = h * 5 // 8
        for i, (cy, cu, cv) in enumerate(_BARS_YUV):
            x0, x1 = i * w // len(_BARS_YUV), (i + 1) * w // len(_BARS_YUV)
            y[:bars_bottom, x0:x1] = cy
            u[: bars_bottom // 2, x0 // 2 : x1 // 2] = cu
            v[: bars_bottom // 2, x0 // 2 : x1 // 2] = cv
        y[bars_bottom:] = _Y_BLACK
        u[bars_bottom // 2 :] = 128
        v[bars_bottom // 2 :] = 128
        return buffer, buffer.copy()

    def _planes(self, buffer: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w, h = self.width, self.height
        y = buffer[:h]
        u = buffer[h : h + h // 4].reshape(h // 2, w // 2)
        v = buffer[h + h // 4 :].reshape(h // 2, w // 2)
        return y, u, v

    def render_frame(self, wall_time: float) -> np.ndarray:
        """Paint the next frame (YUV 4:2:0 as one (h*3/2, w) array) without encoding it."""
        buffer = self._frame_buffer
        np.copyto(buffer, self._background)
        y, u, v = self._planes(buffer)
        n = self.frames_encoded
        box = self.height // 8
        travel = self.width - box
        x = (n * 4) % (2 * travel)
        x = x if x < travel else 2 * travel - x  # bounce
        top = self.height // 4
        y[top : top + box, x : x + box] = _Y_WHITE
        u[top // 2 : (top + box) // 2, x // 2 : (x + box) // 2] = 128
        v[top // 2 : (top + box) // 2, x // 2 : (x + box) // 2] = 128
        font, left = self._font, self.width // 20
        font.draw(y, clock_text(wall_time), self._text_top, left, _Y_WHITE)
        frame_text = f"{n:07d}"
        right = self.width - self.width // 20 - font.text_width(frame_text)
        font.draw(y, frame_text, self._text_top, max(right, left), _Y_WHITE)
        return buffer

    def _audio_block(self, first_sample: int) -> av.AudioFrame:
        index = np.arange(first_sample, first_sample + AAC_FRAME_SAMPLES)
        seconds = index / AUDIO_SAMPLE_RATE
        tone = 0.1 * np.sin(2 * np.pi * 440.0 * seconds)
        beeping = (index % AUDIO_SAMPLE_RATE) < AUDIO_SAMPLE_RATE // 10
        tone = np.where(beeping, 0.5 * np.sin(2 * np.pi * 1000.0 * seconds), tone)
        frame = av.AudioFrame.from_ndarray(
            tone.astype(np.float32)[np.newaxis, :], format="fltp", layout="mono"
        )
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = first_sample
        frame.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
        return frame

    def next_frame_ts(self, wall_time: float) -> bytes:
        """Encode one video frame (+ the audio for its duration); return the TS bytes produced."""
        if self._closed:
            raise RuntimeError("TestSource is closed")
        picture = av.VideoFrame.from_ndarray(self.render_frame(wall_time), format="yuv420p")
        picture.pts = self.frames_encoded
        picture.time_base = Fraction(1, self.fps)
        for packet in self._video.encode(picture):
            self._container.mux(packet)
        self.frames_encoded += 1
        audio_due = self.frames_encoded * AUDIO_SAMPLE_RATE // self.fps
        while self._audio_samples + AAC_FRAME_SAMPLES <= audio_due:
            for packet in self._audio.encode(self._audio_block(self._audio_samples)):
                self._container.mux(packet)
            self._audio_samples += AAC_FRAME_SAMPLES
        return self._drain()

    def close(self) -> bytes:
        """Flush the encoders and the muxer; return the remaining TS bytes (idempotent)."""
        if self._closed:
            return b""
        self._closed = True
        for stream in (self._video, self._audio):
            for packet in stream.encode(None):
                self._container.mux(packet)
        self._container.close()
        return self._drain()


async def test_source_stream(
    bitrate_kbps: int,
    *,
    fps: int = 30,
    width: int = 640,
    height: int = 360,
    max_frames: int | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[bytes]:
    """Yield TS bytes of the test source, one video frame at a time, paced in real time."""
    source = TestSource(bitrate_kbps, width=width, height=height, fps=fps)
    loop = asyncio.get_running_loop()
    frame_interval = 1.0 / fps
    anchor, anchor_frame = loop.time(), 0
    try:
        while max_frames is None or source.frames_encoded < max_frames:
            due = anchor + (source.frames_encoded - anchor_frame) * frame_interval
            delay = due - loop.time()
            if delay < -1.0:  # stalled for over a second: re-anchor rather than burst
                anchor, anchor_frame = loop.time(), source.frames_encoded
                delay = 0.0
            await asyncio.sleep(max(delay, 0.0))
            data = source.next_frame_ts(wall_clock())
            if data:
                yield data
        tail = source.close()
        if tail:
            yield tail
    finally:
        source.close()


test_source_stream.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
