"""``OASIS_CPROFILE=DIR``: an ``oasis`` process writes its command's CPU profile to
``DIR/<command>-<pid>.prof`` when the command returns (docs/testbed.md), readable by
``pstats``; a command that stops on an error still writes it; a directory that cannot be made is
named on stderr, and the command's own result stands."""

from __future__ import annotations

import os
import pstats
import subprocess
import sys
from pathlib import Path


def _oasis(args: list[str], prof_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OASIS_CPROFILE": str(prof_dir)}
    return subprocess.run([sys.executable, "-m", "oasis", *args], capture_output=True, text=True,
                          timeout=120, env=env, stdin=subprocess.DEVNULL)


def test_a_profile_per_process_named_by_command_and_pid(tmp_path: Path) -> None:
    r = _oasis(["sim", "--peers", "5", "--duration", "1", "--baselines", "none", "--json"], tmp_path / "p")
    assert r.returncode == 0, r.stderr
    (f,) = (tmp_path / "p").iterdir()
    assert f.name.startswith("sim-") and f.name.endswith(".prof") and f.name[4:-5].isdigit()
    st = pstats.Stats(str(f))
    assert any(fn == "_main" for (_file, _line, fn) in st.stats), "the command's own calls"
    assert st.total_tt > 0
    # an option error: argparse's exit still leaves a profile, under a neutral name
    r = _oasis(["--no-such-option"], tmp_path / "q")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (g,) = (tmp_path / "q").iterdir()
    assert g.name.startswith("oasis-")


def test_a_directory_that_cannot_be_made_is_named_and_the_result_stands(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = _oasis(["sim", "--peers", "5", "--duration", "1", "--baselines", "none", "--json"], blocker / "p")
    assert r.returncode == 0 and "OASIS_CPROFILE" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout.strip().startswith("{")
