"""Benchmark: real Oasis nodes in Linux network namespaces with world delays, access
links and NATs (docs/testbed.md). Root only. Prints one JSON object with --json.

Usage: python bench/testbed.py --viewers 29 --duration 60 --json
       python bench/testbed.py --cleanup      # remove what crashed runs left behind
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oasis.testbed.runner import parse_args, run_testbed  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_testbed(parse_args()))
