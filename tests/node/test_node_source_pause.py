"""A broadcaster whose source pauses for longer than a few seconds (an encoder that hung, an
OBS scene switch, a network source that stalls) and then goes on where it was, with real
processes: ``oasis broadcast -`` fed through a pipe that stops for a while, one viewer, a
player on the viewer's ``/live``. Found 2026-12-07 from outside: after a pause of 10-14 s the
viewer's player lost the first 1.5-5.5 s of what came after it (the broadcaster's own
``/live`` had all of it). During the pause the viewer gives the seqs its clock expects up as
not made (``unmade``); its player passed over each as it was given up, and when the
broadcaster made those very seqs after the pause, the player was already past them."""

from __future__ import annotations

import http.client
import io
import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import av
import pytest

from tests.node.procs import OasisProcess, ts_clip, wait_until

pytestmark = pytest.mark.integration
SLACK = 30.0  # a loaded 2-core machine
FPS = 10


def _video_pts(data: bytes) -> list[float]:
    with av.open(io.BytesIO(data), format="mpegts") as c:
        return sorted(float(p.pts * p.time_base) for p in c.demux(video=0) if p.pts is not None)


def _viewer_stream(gateway: str) -> dict:
    with urllib.request.urlopen(f"{gateway}/streams", timeout=10) as r:
        streams: list[dict] = json.loads(r.read())
    return streams[0] if streams else {}


def test_a_source_that_pauses_goes_on_at_the_viewers_player_where_it_paused(tmp_path: Path) -> None:
    media = ts_clip(3.0, FPS)
    log = open(tmp_path / "b.log", "wb")  # noqa: SIM115 - closed below
    b = subprocess.Popen([sys.executable, "-m", "oasis", "broadcast", "-", "--data-dir", str(tmp_path / "b"),
                          "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--api-listen", "off"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    procs: list[OasisProcess] = []
    try:
        assert b.stdin is not None and b.stdout is not None
        info = json.loads(b.stdout.readline())
        v = OasisProcess(["watch", info["link"], "--gateway", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "v"), "--api-listen", "off"], str(tmp_path / "v.log"))
        procs.append(v)
        vinfo = v.wait_info()
        url = urlparse(vinfo["player_url"])
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=3 * SLACK)
        conn.request("GET", url.path)
        resp = conn.getresponse()
        assert resp.status == 200
        got = bytearray()
        ended = threading.Event()

        def read() -> None:  # the player: reads until the response ends
            try:
                while chunk := resp.read1(65536):
                    got.extend(chunk)
            except OSError:
                pass
            ended.set()

        threading.Thread(target=read, daemon=True).start()
        b.stdin.write(media)  # the first stretch, paced by its PCRs: ~3 s
        b.stdin.flush()
        wait_until(lambda: len(got) > 20_000, SLACK)  # playing
        # the source pauses: the viewer's clock expects chunks, and gives them up as not made
        wait_until(lambda: _viewer_stream(vinfo["gateway"]).get("unmade", 0) >= 90, 2 * SLACK)
        first = _video_pts(bytes(got))
        b.stdin.write(media)  # ...and goes on (its timestamps spliced on from the first's)
        b.stdin.close()  # then ends: the player's response ends at the end marker
        assert ended.wait(2 * SLACK), "the /live response never ended"
        conn.close()
        after = [t for t in _video_pts(bytes(got)) if t > first[-1]]
        # every frame of the second stretch reached the player (all 30 of them, bar the
        # last chunk's, which the end of stdin may cut); before, its first seconds never did
        assert len(after) >= 3 * FPS - 2, (len(first), len(after), after[:3])
        # and the viewer's figures say so: what was given up as not made during the pause
        # and played after it is no skip (before: every seq of the second stretch was)
        st = _viewer_stream(vinfo["gateway"])
        assert st["skipped"] <= 5 and st["chunks"] >= 60, st
    finally:
        if b.poll() is None:
            b.terminate()
            try:
                b.wait(10)
            except subprocess.TimeoutExpired:
                b.kill()
                b.wait()
        log.close()
        for p in procs:
            p.stop()
