"""`oasis demo --encrypt` (docs/oftp.md §7.2): the broadcaster seals its stream and the
viewers join with its link, which carries the content key: they play it (every chunk's
media opened, none refused) and relay it to each other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_the_demo_runs_an_encrypted_swarm(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "oasis", "demo", "--viewers", "3", "--duration", "4",
                          "--bitrate", "300", "--encrypt", "--no-rewards", "--json"],
                         capture_output=True, text=True, timeout=240, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["encrypted"] is True
    assert out["viewers_started"] == 3 and out["errors"] == 0, out["error_detail"]
    assert out["error_detail"]["unopened"] == 0
    assert out["continuity"] > 0.5 and out["bytes"].get("p2p", 0) > 0  # played, and relayed by peers
