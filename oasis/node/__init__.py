"""The node: asyncio, sockets, QUIC, HTTP around the sans-I/O cores.

``make`` compiles the transport's per-datagram modules (``COMPILED``: the UDP
socket, the link, the endpoint) with mypyc from these same sources, as it does
the core (``scripts/build_core.py``), in a group of their own. They are used only
when every one of them is newer than its source; otherwise (a source edited since
the last ``make``, with a warning), or with ``OASIS_PURE_PYTHON=1`` or
``OASIS_PURE_TRANSPORT=1``, all of them are loaded from source. Compiled classes
cannot be patched: a probe that patches them (``bench/hop_cost.py``) sets
``OASIS_PURE_TRANSPORT=1``.
"""

from __future__ import annotations

import os
import sys

from oasis import core

COMPILED = ("udp", "link", "transport")  #: in dependency order


def pure_forced() -> bool:
    """``OASIS_PURE_PYTHON=1`` (everything) or ``OASIS_PURE_TRANSPORT=1`` (these alone)."""
    return core.pure_forced() or os.environ.get("OASIS_PURE_TRANSPORT", "") not in ("", "0")


def compiled() -> bool:
    """True when the mypyc-compiled transport is the one in use."""
    mod = sys.modules.get(f"{__name__}.link")
    if mod is None:
        from . import link as mod  # noqa: F811
    return str(getattr(mod, "__file__", "")).endswith(".so")


core.use_sources(__name__, os.path.dirname(__file__), COMPILED, pure_forced(), "transport")
