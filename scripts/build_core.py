"""Compile the hottest protocol cores and the simulator's event engine with mypyc,
in place (``make`` runs this).

The extensions sit beside their sources in ``oasis/core`` and share one runtime
library, ``oasis/core/native__mypyc*.so``, inside the package (so an editable
install finds it from any directory). ``oasis/core/__init__.py`` uses them only
when they are newer than the sources.
"""

from __future__ import annotations

import glob
import os
import sys

from mypyc.build import mypycify
from setuptools import setup

SOURCES = [*(f"oasis/core/{m}.py" for m in ("chunklog", "upload", "pull", "swarmdefs", "delay",
                                              "tree", "repair", "claims", "serve", "swarm")),
           "oasis/sim/oasis_run.py"]  # the simulator's event engine (oasis/sim/__init__.py)

if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    setup(name="oasis-core-native", packages=[], py_modules=[],
          ext_modules=mypycify(SOURCES, group_name="oasis.core.native", opt_level="3"),
          script_args=["build_ext", "--inplace", "--force", "--build-temp", "build/mypyc-temp"]
          + sys.argv[1:])
    # build_ext copies with the build tree's times: stamp the extensions now, so they
    # are newer than the sources they were built from
    for so in glob.glob("oasis/core/*.so") + glob.glob("oasis/sim/*.so"):
        os.utime(so)
