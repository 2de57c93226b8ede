"""The ``oasis`` command line: what a node's process loads before it starts."""

from __future__ import annotations

import subprocess
import sys


def test_a_viewer_does_not_load_the_simulator_or_the_testbed() -> None:
    """`oasis watch` parses its arguments without the simulator's and the testbed's
    modules (numpy among them: ~0.3 s of CPU per process start); `oasis sim` and
    `oasis testbed` still get their whole option sets."""
    code = ("import sys; from oasis.cli import build_parser\n"
            "a = build_parser(['watch', 'x.live']).parse_args(['watch', 'x.live'])\n"
            "assert a.cmd == 'watch' and a.stream_id == 'x.live', a\n"
            "print(sorted(m for m in ('oasis.sim.cli', 'oasis.testbed.runner', 'numpy') if m in sys.modules))\n"
            "s = build_parser(['sim']).parse_args(['sim', '--peers', '7'])\n"
            "t = build_parser(['testbed']).parse_args(['testbed', '--viewers', '3'])\n"
            "print(s.peers, t.viewers)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "7 3"], out.stdout
