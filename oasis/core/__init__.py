"""Sans-I/O protocol cores (no asyncio, no sockets, no clocks).

``make`` compiles the hottest of them (``COMPILED``) with mypyc, from these same
sources, into extension modules beside them; the node and the simulator then
run the compiled code (same behaviour: a test runs one simulation both ways
and compares the output byte for byte). If an extension is older than its
source (a source edited since the last ``make``), or ``OASIS_PURE_PYTHON=1``,
all of them are loaded from source instead, with a warning for the stale case.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
from types import ModuleType

COMPILED = ("chunklog", "upload", "pull", "swarmdefs", "delay", "tree", "repair", "claims", "serve",
            "swarm")  #: in dependency order


def pure_forced() -> bool:
    """``OASIS_PURE_PYTHON=1``: load every compiled module from its source."""
    return os.environ.get("OASIS_PURE_PYTHON", "") not in ("", "0")


def is_stale(extension: str, source: str) -> bool:
    """The extension was built before the source's last edit."""
    return os.path.getmtime(extension) < os.path.getmtime(source)


def load_source(full_name: str, path: str) -> ModuleType:
    """Import ``full_name`` from its ``.py`` source, not the extension beside it."""
    spec = importlib.util.spec_from_file_location(full_name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[full_name] = mod
    spec.loader.exec_module(mod)
    return mod


def use_sources(package: str, here: str, names: tuple[str, ...], forced: bool, what: str) -> None:
    """Load ``package``'s compiled modules ``names`` (a mypyc group, in dependency order)
    from their ``.py`` sources instead when ``forced``, when one is missing or when one is
    older than its source (with a warning naming ``what``); otherwise leave the extensions
    to the normal import."""
    exts = {}
    for name in names:
        found = glob.glob(os.path.join(here, name + ".*.so"))
        if found:
            exts[name] = found[0]
    if not exts:
        return
    stale = [n for n, so in exts.items() if is_stale(so, os.path.join(here, n + ".py"))]
    if not forced and not stale and len(exts) == len(names):
        return
    if stale and not forced:
        print(f"oasis: compiled {what} is older than its source ({', '.join(stale)}.py): "
              "running it from source; run `make setup` to rebuild", file=sys.stderr)
    pkg = sys.modules[package]
    for name in names:
        setattr(pkg, name, load_source(f"{package}.{name}", os.path.join(here, name + ".py")))


def compiled() -> bool:
    """True when the mypyc-compiled core is the one in use."""
    mod = sys.modules.get(f"{__name__}.swarm")
    if mod is None:
        from . import swarm as mod  # noqa: F811
    return str(getattr(mod, "__file__", "")).endswith(".so")


use_sources(__name__, os.path.dirname(__file__), COMPILED, pure_forced(), "core")
