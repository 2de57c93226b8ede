"""``oasis demo`` stopped by a signal: SIGTERM and SIGHUP left its temporary directory behind
(only SIGINT cleaned up), and with ``--json`` an interrupted demo printed nothing. Now every
stop signal stops every process, removes the directory and prints what was measured,
marked ``interrupted``; and the start-up output names the broadcaster's player URL, which
serves the stream. A real demo: broadcaster, launcher and two viewer processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from oasis.demo import die_with_parent
from tests.node.procs import stderr_lines_until


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of ``pid`` from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0], fields[19]


def _descendants(root: int) -> dict[int, str]:
    """Every process below ``root``: pid -> start time (to tell a reused pid apart)."""
    parents = {int(d): st for d in os.listdir("/proc") if d.isdigit() and (st := _stat(int(d))) is not None}
    out: dict[int, str] = {}
    todo = [root]
    while todo:
        p = todo.pop()
        for pid, (ppid, _, start) in parents.items():
            if ppid == p and pid not in out:
                out[pid] = start
                todo.append(pid)
    return out


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGINT, False),
                                            (signal.SIGHUP, True),  # the terminal closed: the whole group
                                            # Ctrl-C at a terminal, the demo run under `timeout`: the
                                            # group's SIGINT, and timeout's copy a moment later, are one
                                            # stop (the copy was taken for a second Ctrl-C: no figures)
                                            (signal.SIGINT, "timeout")])
def test_a_stopped_demo_cleans_up_and_reports_what_it_measured(tmp_path: Path, sig: signal.Signals,
                                                               group: bool | str) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    wrapper = ["timeout", "600"] if group == "timeout" else []  # (it signals its group again)
    demo = subprocess.Popen([*wrapper, sys.executable, "-m", "oasis", "demo", "--viewers", "2", "--duration", "300",
                             "--no-rewards", "--bitrate", "300", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env={**os.environ, "TMPDIR": str(tmp)}, start_new_session=True,
                            preexec_fn=die_with_parent, bufsize=0)
    try:
        lines = stderr_lines_until(demo, "2 viewers joined", 90)
        player = next(line.split()[1] for line in lines if line.strip().startswith("player "))
        assert player.startswith("http://127.0.0.1:") and player.endswith(".live.ts"), player
        with urllib.request.urlopen(player, timeout=20) as r:  # the stream, as a player gets it
            assert r.read(188)[0] == 0x47  # an MPEG-TS packet
        [work] = list(tmp.iterdir())
        assert work.name.startswith("oasis-demo-")
        children = _descendants(demo.pid)
        assert len(children) >= 4, children  # broadcaster, launcher, two viewers
        if group:  # every process of the group gets it (children that end by it did not fail)
            os.killpg(demo.pid, sig)
        else:
            demo.send_signal(sig)
        assert demo.wait(60) == 128 + sig.value
        assert demo.stdout is not None
        summary = json.loads(demo.stdout.read())
        assert summary["interrupted"] == sig.name and summary["viewers_joined"] == 2
        assert summary["chunks_produced"] > 0 and "continuity" in summary and summary["errors"] == 0, json.dumps(summary)
        assert list(tmp.iterdir()) == []  # the demo's directory is gone
        for pid, start in children.items():
            st = _stat(pid)
            assert st is None or st[2] != start or st[1] == "Z", f"process {pid} outlived the demo"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        for f in (demo.stdout, demo.stderr):
            if f is not None:
                f.close()
