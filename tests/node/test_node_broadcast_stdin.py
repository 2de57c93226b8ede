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

import pytest

from tests.node.procs import ts_clip

MEDIA_S = 2.0



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
    media = ts_clip(MEDIA_S)
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


def test_stdin_of_random_bytes_exits_1_and_says_nothing_was_playable(tmp_path: Path) -> None:
    """Found 2026-12-06 from outside: 100 kB of random bytes on stdin gave "stdin ended after
    1 chunks", exit 0 (two 0x47 bytes 188 apart, by chance, make a packet the chunker takes).
    A stdin with no video keyframe is nothing a viewer can play: exit 1, said."""
    import random

    noise = random.Random(7).randbytes(300_000)
    assert noise.count(b"\x47") > 1000  # (sync bytes aplenty, as in any random data)
    p = _broadcast(tmp_path, subprocess.PIPE)
    try:
        _start_line(p)
        _, err = p.communicate(noise, timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    text = err.decode()
    assert p.returncode == 1, text
    assert "ended after 1 chunks, none with a video keyframe" in text and "Traceback" not in text


def test_a_closed_feed_on_a_stalled_stream_frees_its_origin_slot_within_seconds(tmp_path: Path) -> None:
    """The origin serves at most ``MAX_FEEDS`` chunk feeds (to CDN edges). A feed whose
    client has gone must give its slot back although the stream has stalled, when the feed
    has nothing to write: a feed that learnt of the close only at its next write would hold
    its slot until ``FEED_STALL_END`` (10 s). A broadcaster fed 2 s of media through a pipe
    that then stays open (a stalled encoder) fills its slots with feeds, they are closed,
    and a new feed is taken within seconds. (The node's server cancels a handler whose
    client closed, which frees the slot at once; ``http.feed_gone``, looked at after each
    1-s wait, frees it where a handler is not cancelled: tested at the edge in
    test_node_edge.py.)"""
    import asyncio
    import urllib.error
    import urllib.request

    import aiohttp

    from oasis.node import http as http_mod
    from tests.node.procs import wait_until

    p = _broadcast(tmp_path, subprocess.PIPE)
    try:
        info = _start_line(p)
        assert p.stdin is not None
        p.stdin.write(ts_clip(MEDIA_S))  # then nothing more, the pipe left open
        p.stdin.flush()
        feed = f"{info['origin']}/{info['stream_id']}/feed"

        async def fill_and_close() -> None:
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession() as s:
                # one feed read until no frame comes for 1.5 s (20 a second before): the
                # media is paced out and the stream has stalled
                first = await s.get(feed, timeout=timeout)
                assert first.status == 200, first.status
                frames = 0
                while True:
                    try:
                        head = await asyncio.wait_for(first.content.readexactly(4), 1.5)
                    except TimeoutError:
                        break
                    await first.content.readexactly(http_mod.FEED_FRAME.unpack(head)[0])
                    frames += 1
                    assert frames < 2000, "the piped media never stalled"
                assert frames > 0
                held = [first]
                for _ in range(http_mod.MAX_FEEDS - 1):
                    r = await s.get(feed, timeout=timeout)
                    assert r.status == 200, r.status
                    await r.content.readexactly(4)  # a frame: the feed is live
                    held.append(r)
                async with s.get(feed, timeout=timeout) as r:
                    assert r.status == 429  # every slot taken
                for r in held:
                    r.close()

        def taken() -> bool:
            try:
                with urllib.request.urlopen(feed, timeout=10) as r:
                    return bool(r.status == 200)
            except urllib.error.HTTPError as exc:
                assert exc.code == 429, exc.code
                return False

        asyncio.run(fill_and_close())
        # freed after a wait for a chunk (1 s) on a loaded machine, not at FEED_STALL_END
        wait_until(taken, http_mod.FEED_STALL_END / 2)
        assert p.poll() is None  # the broadcaster waits on for its pipe
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()


def test_a_source_much_faster_than_its_bitrate_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    # found 2026-12-06 from outside: a 7.4 Mbit/s file under the default --bitrate 1500 took
    # 24 % of its bytes from the origin, and nothing said why
    from oasis.node.streaming import BITRATE_WARN_AFTER, _RateWatch

    for declared, kbps, told in ((1500, 7400, True), (1500, 1600, False), (10, 280, True), (1500, 300, False)):
        w = _RateWatch(declared)
        with caplog.at_level("WARNING", logger="oasis.streaming"):
            caplog.clear()
            per_chunk = int(kbps * 1000 / 8 * 0.033)
            for i in range(int(3 * BITRATE_WARN_AFTER / 0.033)):
                w.add(per_chunk, 100.0 + i * 0.033)
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == (1 if told else 0), (declared, kbps, said)
        if told:
            assert f"--bitrate says {declared}" in said[0] and "origin" in said[0]
