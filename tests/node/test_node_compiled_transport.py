"""The node's transport compiled by mypyc (oasis/node/__init__.py, scripts/build_core.py) is
the same code: a stale extension is not used (the sources run, with a warning), the
switches force the sources, and the sources still carry a link end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import oasis.node

ROOT = Path(__file__).resolve().parents[2]
PROBE = [sys.executable, "-c",
         "import oasis.core as c, oasis.node as n; print(c.compiled(), n.compiled())"]

needs_compiled = pytest.mark.skipif(not oasis.node.compiled(),
                                    reason="transport not compiled (no C compiler when `make` ran)")


def _run(args: list[str], env_extra: dict[str, str], cwd: Path = ROOT,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OASIS_PURE_PYTHON", "OASIS_PURE_TRANSPORT")}
    return subprocess.run(args, cwd=cwd, env={**env, **env_extra}, capture_output=True,
                          text=True, timeout=timeout)


@needs_compiled
def test_the_switches_run_the_transport_from_source() -> None:
    assert _run(PROBE, {}).stdout.split() == ["True", "True"]
    # the transport alone from source; the core stays compiled
    assert _run(PROBE, {"OASIS_PURE_TRANSPORT": "1"}).stdout.split() == ["True", "False"]
    assert _run(PROBE, {"OASIS_PURE_PYTHON": "1"}).stdout.split() == ["False", "False"]


@needs_compiled
def test_a_stale_transport_extension_is_not_used(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "oasis", tmp_path / "oasis",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(tmp_path)}
    assert _run(PROBE, env, tmp_path).stdout.split() == ["True", "True"]
    src = tmp_path / "oasis" / "node" / "link.py"
    later = max(p.stat().st_mtime for p in (tmp_path / "oasis" / "node").glob("*.so")) + 10
    os.utime(src, (later, later))
    stale = _run(PROBE, env, tmp_path)
    assert stale.stdout.split() == ["True", "False"]  # every transport module from source
    assert "compiled transport is older than its source (link.py)" in stale.stderr


@needs_compiled
def test_the_transport_from_source_still_carries_links_and_chunks() -> None:
    # the pure-Python fallback, end to end: handshakes, a wrong key refused, a burst of
    # chunks flushed once per run, qh3's batched and aioquic's one-by-one receive
    tests = ["tests/node/test_node_transport.py",
             "tests/node/test_node_transport_udp.py::test_a_burst_from_one_peer_is_flushed_once_per_run_not_per_datagram",
             "tests/node/test_node_transport_udp.py::test_a_run_of_datagrams_reaches_qh3_in_one_call_and_aioquic_one_by_one"]
    got = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                *tests], {"OASIS_PURE_TRANSPORT": "1"}, timeout=600)
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-3000:]
    assert "5 passed" in got.stdout
