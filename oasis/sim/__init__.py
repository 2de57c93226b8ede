"""Oasis network simulator: the real sans-I/O swarm cores on a measured network model.

``make`` compiles the event engine (``oasis_run``) with mypyc together with the
core. The compiled engine links to the compiled core directly, so it is used
only when the compiled core is in use and the extension is newer than its
source; otherwise the engine is loaded from source (with a warning if stale).
"""

from __future__ import annotations

import glob
import os
import sys


def _load_engine_source_if_needed() -> None:
    here = os.path.dirname(__file__)
    found = glob.glob(os.path.join(here, "oasis_run.*.so"))
    if not found:
        return
    from oasis import core
    src = os.path.join(here, "oasis_run.py")
    stale = core.is_stale(found[0], src)
    if core.compiled() and not stale:
        return
    if stale and not core.pure_forced():
        print("oasis: compiled simulator engine is older than its source (oasis_run.py): "
              "running it as Python; run `make setup` to rebuild", file=sys.stderr)
    core.load_source(f"{__name__}.oasis_run", src)


def engine_compiled() -> bool:
    """True when the mypyc-compiled simulator engine is the one in use."""
    from . import oasis_run
    return str(getattr(oasis_run, "__file__", "")).endswith(".so")


_load_engine_source_if_needed()
