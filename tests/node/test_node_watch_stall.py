"""A viewer whose broadcaster dies without a word (killed: no end marker, docs/oftp.md §7.1;
a broadcaster that stops cleanly ends its stream: tests/node/test_node_stream_end.py), with
real processes: `oasis watch` says on stderr that nothing new arrives (and what it tried),
and the player's /live response ends instead of hanging open; a viewer given the link of a
broadcaster that is gone says nothing arrived. Before, the terminal showed only a tracker
warning and the player hung for ever."""

from __future__ import annotations

import http.client
import os
import re
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from oasis.node.http import LIVE_STALL_END
from oasis.node.runtime import WATCH_NOTHING_AFTER, WATCH_STALL_AFTER
from tests.node.procs import OasisProcess, wait_until

pytestmark = pytest.mark.integration
SLACK = 20.0  # a loaded 2-core machine


def _log(p: Path) -> str:
    return p.read_text(errors="replace")


def _player(tmp_path: Path, procs: list[OasisProcess], timeout: float) -> tuple[
        OasisProcess, dict, OasisProcess, http.client.HTTPConnection, http.client.HTTPResponse]:
    """A 300 kbit/s broadcaster, one viewer, and a player's GET of the viewer's /live (the
    processes are added to ``procs`` as they start, for the caller to stop)."""
    b = OasisProcess(["broadcast", "test", "--bitrate", "300", "--data-dir", str(tmp_path / "b"),
                      "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"], str(tmp_path / "b.log"))
    procs.append(b)
    info = b.wait_info()
    v = OasisProcess(["watch", info["link"], "--gateway", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                      "--data-dir", str(tmp_path / "v")], str(tmp_path / "v.log"))
    procs.append(v)
    url = urlparse(v.wait_info()["player_url"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    conn.request("GET", url.path)
    return b, info, v, conn, conn.getresponse()


def test_a_dead_broadcaster_is_reported_and_the_player_response_ends(tmp_path: Path) -> None:
    procs: list[OasisProcess] = []
    try:
        b, info, v, conn, resp = _player(tmp_path, procs, LIVE_STALL_END + 2 * SLACK)
        assert resp.status == 200
        got: list[int] = []
        ended = threading.Event()

        def read() -> None:  # the player: reads until the response ends
            try:
                while chunk := resp.read1(65536):
                    got.append(len(chunk))
            except OSError:
                pass
            ended.set()

        threading.Thread(target=read, daemon=True).start()
        wait_until(lambda: sum(got) > 20_000, SLACK)  # playing
        os.killpg(b.popen.pid, signal.SIGKILL)  # (no chance to say the end)
        b.popen.wait(10)
        stopped = time.monotonic()
        # a newcomer with the link of a broadcaster that is gone (started now: its own wait
        # for "nothing received" runs beside the viewer's stall below)
        n = OasisProcess(["watch", info["link"], "--gateway", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "n")], str(tmp_path / "n.log"))
        procs.append(n)
        wait_until(lambda: "no new chunk after chunk" in _log(tmp_path / "v.log"), WATCH_STALL_AFTER + SLACK)
        line = next(x for x in _log(tmp_path / "v.log").splitlines() if "no new chunk after chunk" in x)
        assert "the broadcaster may have stopped" in line and "neighbours" in line and "origin" in line
        # the origin's last error, with how long the fetch took of the time it had
        assert re.search(r"fetches failed \(last: \w+.* after [0-9.]+ s \(had -?[0-9.]+ s\)\)", line), line
        assert ended.wait(LIVE_STALL_END + 2 * SLACK), "the /live response never ended"
        assert time.monotonic() - stopped >= LIVE_STALL_END - 1  # not cut at the first gap
        conn.close()
        assert v.popen.poll() is None  # the viewer runs on (the broadcaster may come back)
        n.wait_info()
        wait_until(lambda: "nothing received for" in _log(tmp_path / "n.log"), WATCH_NOTHING_AFTER + SLACK)
    finally:
        for p in procs:
            p.stop()


def test_a_short_link_to_nobody_says_what_was_tried(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from oasis.core.identity import Identity
    from oasis.core.stream import StreamId

    b = Identity.generate()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    link = f"oasis://{StreamId(b.public, 'live')}?b={b.peer_id}@127.0.0.1:{port}"
    r = subprocess.run([sys.executable, "-m", "oasis", "watch", link, "--listen", "127.0.0.1:0",
                        "--gateway", "127.0.0.1:0", "--data-dir", str(tmp_path / "v")],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no_descriptor: no descriptor for" in r.stderr, r.stderr
    # nobody listens there: the one bootstrap peer was dialled, and that dial failed
    assert re.search(r"0 answers, [1-9]\d* dials \([1-9]\d* failed\)", r.stderr), r.stderr
    assert re.search(r"0 records expired, [1-9]\d* lookups", r.stderr), r.stderr  # (the rest said)


def test_a_player_goes_on_after_the_viewer_process_was_stopped(tmp_path: Path) -> None:
    """A viewer stopped for longer than its wanting window (10 s of 33-ms chunks) and the
    gateway's wait (2 x LIVE_WAIT): a laptop asleep, SIGSTOP. Found 2026-12-06 from
    outside: after 20-25 s stops its open /live response sent nothing for ~19 s more (it
    waited on a seq the node had passed over), or ended at once (it took its own stop for
    the stream's stall). Now the bytes flow again as soon as the node has chunks."""
    from oasis.node.http import LIVE_WAIT

    procs: list[OasisProcess] = []
    try:
        _b, _info, v, conn, resp = _player(tmp_path, procs, 60 + 2 * SLACK)
        assert resp.status == 200
        reads: list[float] = []
        ended = threading.Event()

        def read() -> None:
            try:
                while resp.read1(65536):
                    reads.append(time.monotonic())
            except Exception:  # noqa: BLE001 (the test closed the connection under it)
                pass
            ended.set()

        threading.Thread(target=read, daemon=True).start()
        wait_until(lambda: len(reads) >= 10, SLACK)
        os.kill(v.popen.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        # (a wait on the clock is the point here: the process is stopped, nothing to wait on)
        stop_s = LIVE_STALL_END + 5.0  # past the stall limit too, as the audit's 25 s
        assert stop_s > 2 * LIVE_WAIT
        wait_until(lambda: time.monotonic() - stopped > stop_s, stop_s + SLACK)
        os.kill(v.popen.pid, signal.SIGCONT)
        woke = time.monotonic()
        wait_until(lambda: any(t > woke for t in reads) or ended.is_set(), SLACK)
        assert not ended.is_set(), "the response ended at the wake"
        first = min(t for t in reads if t > woke) - woke
        assert first < SLACK / 2, first  # was ~19 s after a 25-s stop
        conn.close()
    finally:
        for p in procs:
            p.stop()
