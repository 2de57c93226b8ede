"""Whether the event loop can watch a file descriptor (stdin) for reads.

``loop.connect_read_pipe`` takes pipes, sockets and terminals. asyncio refuses anything
else with ValueError; uvloop (the node's loop) aborts the whole process instead (SIGABRT)
when stdin is a regular file (``< movie.ts``) or ``/dev/null`` (a command started in the
background by a script). So look at the descriptor first, and read the others in a thread.
"""

from __future__ import annotations

import os
import stat


def loop_can_watch(fd: int) -> bool:
    """A pipe, a socket or a terminal: ``connect_read_pipe`` may be used on ``fd``."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return True
    return stat.S_ISCHR(mode) and os.isatty(fd)
