"""A broadcaster of a file that crashes (SIGKILL: no end marker, no last save of its
neighbours) and is started again on its ports and data directory, with real processes.
Found 2026-12-07 from outside, two ways a viewer suffered it:

* the new run numbers its chunks on by the broadcaster's clock, so the seqs of the downtime
  are never made; the viewer's stall probe asked the origin for one of them again and
  again, and a viewer the new process did not dial played nothing until a link came back
  (14 s and more). It now reads ``latest.json`` after a few failed probes
  (``oasis.core.repair``: PROBE_LATEST_AFTER) and finds the new run;
* the file's timestamps start afresh in the new run: its player was carried on over them
  (~3 s back here, 9 s in the report). The response now ends where the media's clock goes
  back (``live_clock_back_ended``), as it ends at a clean stop's end marker."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.node.procs import OasisProcess, free_port, ts_clip, wait_until

pytestmark = pytest.mark.integration
SLACK = 30.0  # a loaded 2-core machine


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return bytes(r.read())


def _latest(gateway: str) -> int:
    streams = json.loads(_get(f"{gateway}/streams"))
    return int(streams[0]["latest"]) if streams else -1


def _counter(gateway: str, event: str) -> int:
    line = 'oasis_http_errors_total{event="' + event + '"} '
    m = re.search("^" + re.escape(line) + r"([0-9.e+]+)$", _get(f"{gateway}/metrics").decode(), re.M)
    return int(float(m.group(1))) if m else 0


def test_a_crashed_broadcasters_new_run_reaches_its_viewer_and_ends_its_player_response(tmp_path: Path) -> None:
    media = tmp_path / "clip.ts"  # looped; a new process plays it from its first timestamps
    media.write_bytes(ts_clip(4.0))
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    bargs = ["broadcast", str(media), "--data-dir", str(tmp_path / "b"), "--listen", f"127.0.0.1:{udp}",
             "--http", f"127.0.0.1:{tcp}", "--bitrate", "300", "--api-listen", "off"]
    procs: list[OasisProcess] = []
    try:
        b1 = OasisProcess(bargs, str(tmp_path / "b1.log"))
        procs.append(b1)
        link = b1.wait_info()["link"]
        v = OasisProcess(["watch", link, "--gateway", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "v"), "--api-listen", "off"], str(tmp_path / "v.log"))
        procs.append(v)
        gw = v.wait_info()["gateway"]
        url = urlparse(v.info["player_url"])
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=3 * SLACK)
        conn.request("GET", url.path)
        resp = conn.getresponse()
        assert resp.status == 200
        got = bytearray()
        broken: list[BaseException] = []
        ended = threading.Event()

        def read() -> None:  # the player: reads until the response ends
            try:
                while chunk := resp.read1(65536):
                    got.extend(chunk)
            except (OSError, http.client.HTTPException) as exc:  # (an unclean end: a bug)
                broken.append(exc)
            ended.set()

        threading.Thread(target=read, daemon=True).start()
        wait_until(lambda: len(got) > 20_000, SLACK)  # playing the first run...
        wait_until(lambda: _latest(gw) >= 90, SLACK)  # ...for 3 s of its clock at least
        before = _latest(gw)
        os.killpg(b1.popen.pid, signal.SIGKILL)  # a crash: no end marker
        b1.popen.wait(10)
        procs.remove(b1)
        b2 = OasisProcess(bargs, str(tmp_path / "b2.log"))  # the same ports, the same data
        procs.append(b2)
        b2.wait_info()
        up = time.monotonic()
        # the viewer finds the new run (its first chunk is some 30 seqs a second of downtime on)
        wait_until(lambda: _latest(gw) > before + 15, SLACK)
        found = time.monotonic() - up
        # and its player's response ended at the new run's clock, as a response ends
        assert ended.wait(SLACK), "the /live response went on over the new run's clock"
        conn.close()
        assert not broken, broken
        assert _counter(gw, "live_clock_back_ended") == 1
        assert _counter(gw, "live_stalled_ended") == 0
        # (before: nothing until a link came back, 14 s and more; the bound leaves a loaded
        # machine its slack, not the old path: the viewer's link to the dead process lives
        # QUIC's idle timeout, 20 s)
        assert found < 12.0, found
        # a player that asks again is served, from the new run
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=SLACK)
        conn.request("GET", url.path)
        again = conn.getresponse()
        assert again.status == 200 and len(again.read1(65536)) > 0
        conn.close()
    finally:
        for p in procs:
            p.stop()
