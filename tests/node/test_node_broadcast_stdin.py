"""``oasis broadcast -`` as a user runs it, a real process fed through a pipe. Found
2026-12-02 by a new user working from the docs: at the end of stdin the broadcaster exited 0
at once and said nothing, and an unpaced pipe (``cat a.ts a.ts |``: 20 s of media) was used
up in 0.87 s; with ``--cdn-url`` the start line called the CDN the "origin"."""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
from pathlib import Path

from oasis.media.testsource import TestSource

MEDIA_S = 2.0


def _ts(seconds: float, fps: int = 10) -> bytes:
    """``seconds`` of real MPEG-TS (H.264 + AAC, with PCRs), encoded as fast as it goes."""
    src = TestSource(200, width=160, height=96, fps=fps)
    frames = [src.next_frame_ts(1_700_000_000.0 + n / fps) for n in range(round(seconds * fps))]
    return b"".join(frames) + src.close()


def _broadcast(tmp_path: Path, stdin: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "oasis", "broadcast", "-", "--data-dir", str(tmp_path / "b"),
                             "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", *extra],
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _start_line(p: subprocess.Popen[bytes]) -> dict[str, object]:
    assert p.stdout is not None
    ready, _, _ = select.select([p.stdout], [], [], 60)
    assert ready, "no start line within 60 s"
    info: dict[str, object] = json.loads(p.stdout.readline())
    return info


def test_stdin_is_paced_at_media_time_and_its_end_is_said(tmp_path: Path) -> None:
    media = _ts(MEDIA_S)
    cdn = "http://127.0.0.1:9/origin"
    p = _broadcast(tmp_path, subprocess.PIPE, "--cdn-url", cdn)
    try:
        info = _start_line(p)
        # L4: the origin is the node's own; the CDN is named as such
        assert info["origin"] == f"{info['http']}/origin" and info["cdn"] == cdn, info
        _, err = p.communicate(media + media, timeout=60)  # cat a.ts a.ts | oasis broadcast -
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    text = err.decode()
    assert p.returncode == 0, text
    m = re.search(r"oasis broadcast: stdin ended after (\d+) chunks \(([0-9.]+) s of stream\); stopping", text)
    assert m is not None, text
    # paced by its PCRs as a file is: the stream lasted (about) the media's 4 s, not a blink
    assert 0.75 * 2 * MEDIA_S <= float(m.group(2)) <= 2 * MEDIA_S + 1.0, text
    assert int(m.group(1)) >= 20 and "Traceback" not in text


def test_stdin_that_gives_no_chunk_exits_1_and_says_so(tmp_path: Path) -> None:
    with open("/dev/null", "rb") as empty:
        p = _broadcast(tmp_path, empty.fileno())
        try:
            _start_line(p)
            _, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert p.returncode == 1, err.decode()
    assert "oasis broadcast: stdin ended before a first chunk" in err.decode()
