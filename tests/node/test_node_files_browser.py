"""A real browser plays a short video from the gateway while it downloads, and seeks.

Debian's Chromium (headless, driven by Playwright with no browser download of its own) opens
the gateway URL of an ``oasis get`` process in a plain ``<video>`` element. The publisher
serves at 3 Mbit/s, so the 20 s, 2.5 Mbit/s clip takes about 16 s to arrive: the video must
start playing before the download is complete, and a seek to 16 s (blocks not fetched yet)
must play from there, the gateway answering the browser's Range requests by fetching those
blocks first.
"""

from __future__ import annotations

import select
import shutil
from pathlib import Path

import pytest
from procs import OasisProcess

from oasis.media.clip import make_clip

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# the flags this machine needs (no sandbox as root, no background connections to the world)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]


def _finished(p: OasisProcess) -> bool:
    """Has `oasis get` printed its completion line (without blocking)?"""
    assert p.popen.stdout is not None
    ready, _, _ = select.select([p.popen.stdout], [], [], 0)
    return bool(ready)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make setup installs it as root)")
def test_chromium_plays_a_clip_from_the_gateway_while_it_downloads_and_seeks(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    clip = str(tmp_path / "clip.mp4")
    make_clip(clip, 20.0, 2500)
    size = Path(clip).stat().st_size
    procs: list[OasisProcess] = []
    try:
        pub = OasisProcess(["publish", clip, "--data-dir", str(tmp_path / "pub"), "--upload-mbps", "3"],
                           str(tmp_path / "pub.log"))
        procs.append(pub)
        info = pub.wait_info(60)
        get = OasisProcess(["get", info["link"], "--data-dir", str(tmp_path / "get"), "-o", str(tmp_path / "o.mp4")],
                           str(tmp_path / "get.log"))
        procs.append(get)
        url = get.wait_info(60)["url"]
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page()
                ranges: list[tuple[int, str]] = []  # (status, Content-Range) of the video's responses
                page.on("response", lambda r: ranges.append((r.status, r.headers.get("content-range", "")))
                        if r.url == url else None)
                page.set_content(f'<video id="v" muted autoplay preload="auto" src="{url}"></video>')
                page.wait_for_function("v.currentTime > 0.5 || v.error !== null", timeout=30_000)
                assert page.evaluate("v.error") is None, page.evaluate("v.error.message")
                playing_while_downloading = not _finished(get)
                assert page.evaluate("[v.videoWidth, v.videoHeight]") == [640, 360]
                assert playing_while_downloading, "the download finished before the video played"
                # a seek far ahead of the download: the browser asks a Range the node has not fetched
                page.evaluate("v.currentTime = 16")
                page.wait_for_function("(v.currentTime > 16.5 && !v.seeking) || v.error !== null", timeout=30_000)
                assert page.evaluate("v.error") is None, page.evaluate("v.error.message")
                # the browser got the bytes at the seek point by a Range answered 206 (not by
                # reading the whole file from its start)
                starts = [int(cr.split()[1].split("-")[0]) for st, cr in ranges if st == 206 and cr]
                assert any(s >= size // 2 for s in starts), ranges
                frames = page.evaluate("v.getVideoPlaybackQuality().totalVideoFrames")
                assert frames > 10  # decoded pictures, not only metadata
                page.wait_for_function("v.ended || v.error !== null", timeout=30_000)
                assert page.evaluate("v.error") is None
                assert page.evaluate("v.duration") == pytest.approx(20.0, abs=0.1)
            finally:
                browser.close()
        # (the downloaded file's bytes are checked in test_node_files.py; not waited for here)
    finally:
        for p in procs:
            p.stop()
