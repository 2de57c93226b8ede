"""The OFTP session is compiled by mypyc with the core (``COMPILED`` in oasis/core/__init__.py,
scripts/build_core.py): it is used when fresh; a ``session.py`` edited since the last build
runs the whole core from source (with a warning) under the still-compiled transport, and
links still authenticate and carry chunks that way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import oasis.core

ROOT = Path(__file__).resolve().parents[2]
PROBE = [sys.executable, "-c",
         "import oasis.core as c, oasis.node as n; from oasis.core import session as s; "
         "print(c.compiled(), n.compiled(), s.__file__.endswith('.py'))"]

needs_compiled = pytest.mark.skipif(not oasis.core.compiled(),
                                    reason="core not compiled (no C compiler when `make` ran)")


def _run(args: list[str], env_extra: dict[str, str], cwd: Path = ROOT,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OASIS_PURE_PYTHON", "OASIS_PURE_TRANSPORT")}
    return subprocess.run(args, cwd=cwd, env={**env, **env_extra}, capture_output=True,
                          text=True, timeout=timeout)


@needs_compiled
def test_the_session_is_compiled_with_the_core() -> None:
    assert _run(PROBE, {}).stdout.split() == ["True", "True", "False"]
    assert _run(PROBE, {"OASIS_PURE_PYTHON": "1"}).stdout.split() == ["False", "False", "True"]


@needs_compiled
def test_a_stale_session_runs_the_core_from_source_and_links_still_work(tmp_path: Path) -> None:
    for tree in ("oasis", "tests"):
        shutil.copytree(ROOT / tree, tmp_path / tree, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {"PYTHONPATH": str(tmp_path)}
    assert _run(PROBE, env, tmp_path).stdout.split() == ["True", "True", "False"]
    src = tmp_path / "oasis" / "core" / "session.py"
    later = max(p.stat().st_mtime for p in (tmp_path / "oasis" / "core").glob("*.so")) + 10
    os.utime(src, (later, later))
    stale = _run(PROBE, env, tmp_path)
    # every core module from source (they are one group), the transport still compiled
    assert stale.stdout.split() == ["False", "True", "True"], stale.stderr
    assert "compiled core is older than its source (session.py)" in stale.stderr
    # the compiled link driving the session from source: handshakes, a wrong key refused,
    # chunks handed over in pieces of many packets
    tests = ["tests/node/test_node_transport.py",
             "tests/node/test_node_quicstack.py::test_a_chunk_comes_to_the_session_in_pieces_of_many_packets"]
    got = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                *tests], env, tmp_path, timeout=600)
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-3000:]
    assert "4 passed" in got.stdout
