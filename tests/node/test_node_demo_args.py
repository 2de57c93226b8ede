"""``oasis demo``'s refusals, found 2026-12-06 from outside: ``--duration nan`` printed a
summary with NaN in it (not JSON), ``--duration -5`` and ``--viewers 0`` or -1 ran and
reported nothing, and a broadcaster that could not start was "exited before it started
(exit None)" without its reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oasis", "demo", "--no-rewards", "--json", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("args", "says"), [
    (["--duration", "nan"], "--duration must be more than 0"),
    (["--duration", "-5"], "--duration must be more than 0"),
    (["--viewers", "0"], "--viewers must be 1 to 200"),
    (["--viewers", "-1"], "--viewers must be 1 to 200"),
    (["--bitrate", "0"], "--bitrate must be 10..1000000"),
    (["--chunk-ms", "5"], "--chunk-ms 10..10000"),
    (["--upload-kbps", "-1"], "--upload-kbps must be 0"),
])
def test_numbers_no_demo_can_use_are_refused_before_it_starts(args: list[str], says: str, tmp_path: Path) -> None:
    out = _demo(*args, cwd=tmp_path)
    assert out.returncode == 2 and says in out.stderr, out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr


def test_a_broadcaster_that_cannot_start_is_named_with_its_reason(tmp_path: Path) -> None:
    out = _demo("--viewers", "1", "--duration", "3", "--source", str(tmp_path / "missing.ts"), cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "broadcaster exited before it started (exit 2): oasis broadcast: error: source" in out.stderr
    assert "no such file" in out.stderr and "exit None" not in out.stderr, out.stderr
    # --epoch is the rewards' (off here): not handed to a broadcaster that would refuse 0
    out = _demo("--viewers", "1", "--duration", "1", "--epoch", "0", "--bitrate", "300", cwd=tmp_path)
    assert out.returncode == 0, out.stderr


def test_a_broadcaster_that_ends_while_the_viewers_start_is_the_cause_said_at_once(tmp_path: Path) -> None:
    """``--source -`` with nothing on stdin: the broadcaster prints its start line, then ends.
    The demo waited 30 s for the viewers and blamed the first (found 2026-12-06)."""
    import time

    began = time.monotonic()
    out = _demo("--viewers", "2", "--duration", "3", "--source", "-", cwd=tmp_path)  # (stdin: empty)
    assert out.returncode == 1, out.stderr
    assert "broadcaster ended while the viewers started (exit 1): oasis broadcast: stdin ended before a " \
           "first chunk" in out.stderr, out.stderr
    assert "viewer0" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert time.monotonic() - began < 25  # (not the viewers' 30-s start timeout)
