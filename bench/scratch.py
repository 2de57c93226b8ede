"""A benchmark's scratch directory (the nodes' data directories and logs).

Removed when the benchmark exits normally; kept, and its path printed on stderr, when the run ends
in an uncaught exception or when the benchmark was given ``--keep-logs``.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from types import TracebackType

_failed = False


def _hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    global _failed
    _failed = True
    _previous_hook(kind, value, tb)


_previous_hook = sys.excepthook
sys.excepthook = _hook


def scratch_dir(prefix: str, keep: bool = False) -> str:
    """A fresh temporary directory that is removed at exit unless ``keep`` or the run failed."""
    path = tempfile.mkdtemp(prefix=prefix)

    def _done() -> None:
        if keep or _failed:
            print(f"logs kept in {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(_done)
    return path
