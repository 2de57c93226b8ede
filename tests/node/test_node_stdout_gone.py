"""A node whose stdout's reader went away (`oasis broadcast test | head -1`, which takes the
start line and leaves) goes on running: its lines go to /dev/null from then on. Before
(session 50's re-audit), BrokenPipeError ended it with exit 2 and unclosed sessions."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.node.procs import wait_until

pytestmark = pytest.mark.integration


def test_a_broadcaster_goes_on_when_its_stdout_reader_leaves(tmp_path: Path) -> None:
    data = tmp_path / "b"
    p = subprocess.Popen([sys.executable, "-m", "oasis", "broadcast", "test", "--bitrate", "300",
                          "--data-dir", str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    try:
        assert p.stdout is not None
        p.stdout.close()  # the reader leaves before the start line is written
        wait_until(lambda: (data / "api.json").exists() or p.poll() is not None, 60)
        assert p.poll() is None, p.stderr.read().decode()[-2000:] if p.stderr else ""
        url = json.loads((data / "api.json").read_text())["url"]
        token = (data / "api.token").read_text().strip()
        req = urllib.request.Request(url + "/node", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["streams"] == 1  # up, and broadcasting
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
        err = p.stderr.read().decode() if p.stderr else ""
        assert "Traceback" not in err and "Unclosed" not in err and "Broken pipe" not in err, err[-2000:]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stderr is not None:
            p.stderr.close()
