"""Shared fixtures: real MPEG-TS produced by the built-in test source (no real-time waits)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from oasis.media.testsource import TestSource

FPS = 30
SECONDS = 3
START_WALL_TIME = 1_700_000_000.0


@dataclass(frozen=True)
class EncodedStream:
    feeds: list[tuple[float, bytes]]  # (now, bytes) per encoded frame, as a live source delivers
    fps: int
    bitrate_kbps: int

    @property
    def data(self) -> bytes:
        return b"".join(piece for _, piece in self.feeds)


def encode_test_stream(
    seconds: float, *, fps: int = FPS, bitrate_kbps: int = 1500, width: int = 640, height: int = 360
) -> EncodedStream:
    source = TestSource(bitrate_kbps, width=width, height=height, fps=fps)
    feeds: list[tuple[float, bytes]] = []
    frames = round(seconds * fps)
    for n in range(frames):
        now = n / fps
        feeds.append((now, source.next_frame_ts(START_WALL_TIME + now)))
    feeds.append((frames / fps, source.close()))
    return EncodedStream(feeds, fps, bitrate_kbps)


@pytest.fixture(scope="session")
def encode_stream():
    """Factory fixture: ``encode_stream(seconds, fps=..., ...)`` -> EncodedStream."""
    return encode_test_stream


@pytest.fixture(scope="session")
def encoded_stream() -> EncodedStream:
    return encode_test_stream(SECONDS)


@pytest.fixture(scope="session")
def short_ts_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 0.5 s, small-picture TS file for pacing tests."""
    stream = encode_test_stream(0.5, fps=10, bitrate_kbps=200, width=160, height=96)
    path = tmp_path_factory.mktemp("media") / "short.ts"
    path.write_bytes(stream.data)
    return str(path)
