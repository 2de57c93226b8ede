"""Compile the hottest protocol cores, the simulator's event engine and the node's
transport with mypyc, in place (``make`` runs this).

Two groups, each with one runtime library inside its package (so an editable
install finds it from any directory): the sans-I/O core and the simulator's
engine (``oasis/core/native__mypyc*.so``), and the node's per-datagram transport
(``oasis/node/native__mypyc*.so``: the UDP socket, the link, the endpoint).
``oasis/core/__init__.py`` and ``oasis/node/__init__.py`` use them only when they
are newer than the sources.
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
#: the node's transport (oasis/node/__init__.py COMPILED); a group of its own: it links
#: to nothing compiled in the core's group, and a stale core leaves it compiled
NODE_SOURCES = [f"oasis/node/{m}.py" for m in ("udp", "link", "transport")]

if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    setup(name="oasis-core-native", packages=[], py_modules=[],
          ext_modules=[*mypycify(SOURCES, group_name="oasis.core.native", opt_level="3"),
                       *mypycify(NODE_SOURCES, group_name="oasis.node.native", opt_level="3")],
          script_args=["build_ext", "--inplace", "--force", "--build-temp", "build/mypyc-temp"]
          + sys.argv[1:])
    # build_ext copies with the build tree's times: stamp the extensions now, so they
    # are newer than the sources they were built from
    for so in glob.glob("oasis/core/*.so") + glob.glob("oasis/sim/*.so") + glob.glob("oasis/node/*.so"):
        os.utime(so)
