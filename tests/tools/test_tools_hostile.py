"""The hostile peer (python -m oasis.tools.hostile) against a real broadcaster process:
every mode in one timed run (``--duration`` shared by the modes, so it needs the machine to
itself: tests/conftest.py runs this module in the serial phase). The other modes' tests are
in test_tools_hostile_modes.py.

The tool is how the defences are proven; this checks the tool itself: it dials
only loopback, stays within its bounds, mounts every attack on a victim, reports
in JSON what it sent and how the victim reacted, and the victim (a real node)
is still serving after each mode and exits cleanly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from oasis.tools import hostile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))  # the process helpers
from procs import OasisProcess  # noqa: E402

pytestmark = pytest.mark.integration


def test_every_mode_against_a_real_broadcaster(tmp_path):
    b = OasisProcess(["broadcast", "test", "--json", "--bitrate", "500",
                      "--data-dir", str(tmp_path / "b")], str(tmp_path / "b.log"))
    try:
        info = b.wait_info()
        victim = f"{info['oftp']}:{info['peer_id']}"
        modes = [m for m in hostile.MODES if m != "tickets"]  # no proof of relay here
        argv = [sys.executable, "-m", "oasis.tools.hostile", "--victim", victim,
                "--stream", info["stream_id"], "--tracker", info["tracker"],
                "--duration", "30", "--rate", "300", "--max-sends", "3000", "--seed", "1"]
        for m in modes:
            argv += ["--mode", m]
        out = subprocess.run(argv, capture_output=True, timeout=150, check=True)
        rep = json.loads(out.stdout)
        print({m: r["seconds"] for m, r in rep["modes"].items()})  # where the time went, for -s
        assert b.popen.poll() is None, "the victim died"
        # 'foreign' again with a budget of its own (above, on a loaded machine, the modes
        # before it may use up the shared time): chunks of a stream the victim does not
        # carry, validly signed by the tool's own key
        out = subprocess.run([*argv[:argv.index("--duration")], "--duration", "30", "--rate", "100",
                              "--max-sends", "300", "--seed", "2", "--mode", "foreign"],
                             capture_output=True, timeout=90, check=True)
        (foreign,) = json.loads(out.stdout)["modes"]["foreign"]["result"].values()
        assert b.popen.poll() is None, "the victim died"
    finally:
        code = b.stop()
    assert code in (0, -15)
    assert rep["sends"] <= 3000
    assert set(rep["modes"]) == set(modes)
    for mode, m in rep["modes"].items():
        assert m["victims_alive_after"] == 1 and not m["victims_dead_after"], (mode, m)
        if mode not in ("tracker",):
            (res,) = m["result"].values()
            assert "tool_error" not in res, (mode, res)
    assert rep["victims_alive_at_end"] == 1
    # the pre-authentication attacks end with the victim closing the link
    (bomb,) = rep["modes"]["bomb"]["result"].values()
    assert bomb["preauth_2k"]["victim"]["closed_by"] == "victim"
    assert bomb["preauth_64k"]["victim"]["closed_by"] == "victim"
    (pre,) = rep["modes"]["prechunk"]["result"].values()
    assert pre["victim"]["closed_by"] == "victim"
    # the attacks after the handshake reach the victim, which closes the link (the tool
    # used to wait out a whole CONNECT_TIMEOUT at a dial on a loaded machine: aioquic's
    # wait_connected missed the handshake's end, and the attack's slot was gone)
    for mode in ("flood", "forge"):
        (res,) = rep["modes"][mode]["result"].values()
        assert res["victim"]["closed_by"] == "victim", (mode, res)
    assert all(m["probe_seconds"] < hostile.CONNECT_TIMEOUT for m in rep["modes"].values()), rep["modes"]
    (silent,) = rep["modes"]["silent"]["result"].values()
    assert all(c["closed_by"] == "victim" for c in silent["victim"])
    # the foreign chunks are scored as chunks of a stream not joined: the tool is banned
    # after 20 (before: never)
    assert foreign["victim"]["closed_by"] == "victim", foreign
    assert foreign["victim"]["close_reason"].startswith("score"), foreign
    assert 20 <= foreign["foreign_chunks"] < 200, foreign
