"""The mypyc-compiled core (and simulator engine) is the same code: one simulation, run on the
compiled core and on the pure-Python sources, gives byte-identical output; an
extension older than its source is not used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import oasis.core

ROOT = Path(__file__).resolve().parents[2]
SIM = [sys.executable, "-c", "import sys; from oasis.cli import main; sys.exit(main())",
       "sim", "--peers", "60", "--duration", "15", "--baselines", "none", "--json", "--no-timing"]

needs_compiled = pytest.mark.skipif(not oasis.core.compiled(),
                                    reason="core not compiled (no C compiler when `make` ran)")


def _run(env_extra: dict[str, str], cwd: Path = ROOT, args: list[str] = SIM) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@needs_compiled
def test_compiled_and_pure_python_cores_give_identical_simulations() -> None:
    fast = _run({"OASIS_PURE_PYTHON": "0"})
    pure = _run({"OASIS_PURE_PYTHON": "1"})
    assert fast.returncode == 0 and pure.returncode == 0, fast.stderr + pure.stderr
    assert '"offload_ratio"' in fast.stdout
    assert fast.stdout == pure.stdout


@needs_compiled
def test_stale_extension_is_not_used(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "oasis", tmp_path / "oasis",
                    ignore=shutil.ignore_patterns("__pycache__"))
    probe = [sys.executable, "-c", "import oasis.core as c; print(c.compiled())"]
    env = {"PYTHONPATH": str(tmp_path), "OASIS_PURE_PYTHON": "0"}
    fresh = _run(env, tmp_path, probe)
    assert fresh.stdout.strip() == "True", fresh.stderr
    src = tmp_path / "oasis" / "core" / "swarm.py"
    later = max(p.stat().st_mtime for p in (tmp_path / "oasis" / "core").glob("*.so")) + 10
    os.utime(src, (later, later))
    stale = _run(env, tmp_path, probe)
    assert stale.stdout.strip() == "False"
    assert "older than its source (swarm.py)" in stale.stderr


@needs_compiled
def test_compiled_engine_used_only_with_the_compiled_core_and_when_fresh(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "oasis", tmp_path / "oasis",
                    ignore=shutil.ignore_patterns("__pycache__"))
    probe = [sys.executable, "-c",
             "import oasis.core as c, oasis.sim as s; print(c.compiled(), s.engine_compiled())"]
    env = {"PYTHONPATH": str(tmp_path)}
    assert _run({**env, "OASIS_PURE_PYTHON": "0"}, tmp_path, probe).stdout.split() == ["True", "True"]
    # a pure-Python core never runs under the compiled engine (it links the compiled core)
    assert _run({**env, "OASIS_PURE_PYTHON": "1"}, tmp_path, probe).stdout.split() == ["False", "False"]
    src = tmp_path / "oasis" / "sim" / "oasis_run.py"
    later = max(p.stat().st_mtime for p in (tmp_path / "oasis" / "sim").glob("*.so")) + 10
    os.utime(src, (later, later))
    stale = _run({**env, "OASIS_PURE_PYTHON": "0"}, tmp_path, probe)
    assert stale.stdout.split() == ["True", "False"]
    assert "older than its source (oasis_run.py)" in stale.stderr
