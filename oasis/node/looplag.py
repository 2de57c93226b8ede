"""How late a node's event loop runs what is due (``/stats`` ``loop_lag_ms``).

Every push, feed write and timer of a node waits its turn on one event loop. A loop held by
other work (a keyframe encoded in line, a burst of verification, a machine short of cores)
delays them all alike, and the network figures cannot tell that from a slow path. A timer
asked for every ``EVERY`` s records how late it ran; the last ``KEEP`` lateness samples
(a minute) give the p50, p95 and max an operator reads.
"""

from __future__ import annotations

import asyncio
from collections import deque

from oasis.core.metrics import ms_figures

EVERY = 0.05  #: s between samples
KEEP = 1200  #: samples kept (a minute at EVERY)


class LoopLag:
    """Samples ``loop``'s lateness from :meth:`start` until :meth:`stop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, every: float = EVERY, keep: int = KEEP) -> None:
        self.loop = loop
        self.every = every
        self.samples: deque[float] = deque(maxlen=keep)  #: s each tick ran after it was due
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._timer is None:
            self._due = self.loop.time() + self.every
            self._timer = self.loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        self.samples.append(max(0.0, now - self._due))
        self._due = now + self.every
        self._timer = self.loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def figures(self) -> dict[str, float] | None:
        """p50 / p95 / max lateness (ms) over the samples kept and their count; None before one."""
        return ms_figures(self.samples)
