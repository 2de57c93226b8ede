"""A browser plays a live stream from a viewer's gateway: ``/watch/<stream>`` (docs/oftp.md §10).

Real processes (a broadcaster and a viewer on loopback) and Debian's Chromium, headless,
driven by Playwright without a browser download of its own. Chromium plays MPEG-TS in no
``<video>`` element by itself (``/live/<stream>.ts`` there was MEDIA_ERR_SRC_NOT_SUPPORTED:
found 2026-12-06 from outside); the page's script (mpegts.js, built by ``make setup``)
transmuxes it into Media Source Extensions. The page's own HTTP surface is checked without a
browser: files by name only, a policy that loads nothing from elsewhere.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from procs import OasisProcess, free_port, start_broadcaster, wait_until

from oasis.node import http as http_mod

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
BUILT = (http_mod.WEB_DIR / "vendor" / "mpegts.js").exists()
SLACK = 60.0

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, bytes, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A broadcaster and one viewer (stopped at the end); the viewer's start line."""
    tmp = tmp_path_factory.mktemp("web")
    procs: list[OasisProcess] = []
    try:
        b = start_broadcaster(tmp, procs)
        v = OasisProcess(["watch", b.info["link"], "--gateway", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                          "--data-dir", str(tmp / "v")], str(tmp / "v.log"))
        procs.append(v)
        info = v.wait_info()
        gw = info["gateway"]
        wait_until(lambda: json.loads(_get(gw + "/streams")[1])[0]["chunks"] > 30, SLACK)
        yield info
    finally:
        for p in procs:
            p.stop()


def test_the_page_and_its_files_and_nothing_else(viewer: Any) -> None:
    gw, sid = viewer["gateway"], viewer["descriptor"]["stream"]
    assert viewer["web_url"] == f"{gw}/watch/{sid}"
    status, body, headers = _get(viewer["web_url"])
    assert status == 200 and b"/web/watch.js" in body and headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, body, headers = _get(f"{gw}/web/watch.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and b"mpegts" in body
    # files by name from a fixed list: no path of the request reaches the disk
    for bad in ("/web/../http.py", "/web/%2e%2e/http.py", "/web/watch.html", "/web/vendor/mpegts.js.map",
                "/web/vendor/../../http.py", "/web/node.py"):
        status, body, _ = _get(gw + bad)
        assert status in (400, 403, 404), (bad, status)
        assert b"import" not in body, bad
    # a stream this node does not carry, or no stream id: as /live
    other = "a" * 52 + ".live"
    status, body, _ = _get(f"{gw}/watch/{other}")
    assert status == 404 and json.loads(body)["error"] == "no_stream"
    assert _get(f"{gw}/watch/not-a-stream")[0] == 404


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make setup installs it as root)")
@pytest.mark.skipif(not BUILT, reason="the web player's script was not built (make setup needs npm)")
def test_chromium_plays_the_live_stream_near_its_edge(viewer: Any) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(viewer["web_url"])
            # (polled with evaluate: wait_for_function evaluates a string in the page, which the
            # page's policy refuses, as it should: the test runs under the policy a user gets)
            wait_until(lambda: page.evaluate("video.currentTime > 0.5 || video.error !== null"), 30)
            assert page.evaluate("video.error") is None, page.evaluate("video.error.message")
            t1 = page.evaluate("video.currentTime")
            # it goes on playing: three more seconds of the stream (waited on, bounded)
            wait_until(lambda: page.evaluate(f"video.currentTime > {t1 + 3}"), 30)
            state = page.evaluate("""() => ({w: video.videoWidth, h: video.videoHeight, paused: video.paused,
                text: document.getElementById('state').textContent})""")
            assert state["w"] > 0 and state["h"] > 0 and not state["paused"], state
            assert state["text"].startswith("live"), state
            # near the live edge: within the player's catch-up bound (1.5 s) of the newest frame
            # the node gave it, not a GOP or more behind (the gateway starts it at the newest
            # keyframe, up to 2 s old; a loaded machine may lag, and it catches up)
            wait_until(lambda: page.evaluate(
                "video.buffered.end(video.buffered.length - 1) - video.currentTime < 1.5"), 30)
            assert errors == [], errors
        finally:
            browser.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make setup installs it as root)")
@pytest.mark.skipif(not BUILT, reason="the web player's script was not built (make setup needs npm)")
def test_the_page_plays_again_when_a_stopped_broadcaster_starts_again(tmp_path: Path) -> None:
    """The gateway ends a player's response at the broadcaster's end marker: the page asked
    again only on an error, so it stood still for good, the broadcaster back (found
    2026-12-06 from outside). It asks again now, and plays the stream that runs again."""
    import socket

    sync_api = pytest.importorskip("playwright.sync_api")
    bargs = ["broadcast", "test", "--data-dir", str(tmp_path / "b"), "--bitrate", "800",
             "--listen", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", "--http", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"]
    procs: list[OasisProcess] = []
    try:
        b = OasisProcess(bargs, str(tmp_path / "b1.log"))
        procs.append(b)
        v = OasisProcess(["watch", b.wait_info()["link"], "--gateway", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "v")], str(tmp_path / "v.log"))
        procs.append(v)
        info = v.wait_info()
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page()
                page.goto(info["web_url"])
                wait_until(lambda: page.evaluate("video.currentTime > 1"), SLACK)
                b.stop()  # a clean stop: the end marker ends the player's response
                wait_until(lambda: "asking the gateway again" in page.evaluate(
                    "document.getElementById('state').textContent"), SLACK)
                b2 = OasisProcess(bargs, str(tmp_path / "b2.log"))
                procs.append(b2)
                b2.wait_info()
                wait_until(lambda: page.evaluate("document.getElementById('state').textContent").startswith("live"),
                           SLACK)
                t = page.evaluate("video.currentTime")
                wait_until(lambda: page.evaluate(f"video.currentTime > {t + 2}"), SLACK)  # it plays on
            finally:
                browser.close()
    finally:
        for p in procs:
            p.stop()
