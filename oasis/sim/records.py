"""Swarm-wide figures of the simulator, vectorised with numpy.

The per-viewer record is the node's own :class:`oasis.core.metrics.ViewerRecord`
(compact arrays, so 10^7 deliveries fit in memory); ``summarize`` computes the
same figures as :func:`oasis.core.metrics.summarize` (same nearest-rank
percentile, same continuity rule) straight from its arrays, with one addition: a
viewer that left (``left_at``) is judged only on the chunks whose deadline passed
while it was there.  A test checks that both summaries agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from oasis.core.metrics import ViewerRecord, figures


def summarize(records: list[ViewerRecord], produced_t: np.ndarray, now: float,
              playout_delay: float) -> dict[str, Any]:
    """Same figures as ``oasis.core.metrics.summarize``; ``produced_t[seq]`` = chunk time."""
    lat = np.concatenate([np.frombuffer(r.lat, dtype=np.float32) for r in records]) \
        if records else np.zeros(0, np.float32)
    lat = np.sort(lat.astype(np.float64))
    startup = np.sort(np.array([r.started_at - r.joined_at for r in records
                                if r.started_at is not None], dtype=np.float64))
    ok = due = 0
    bytes_total: dict[str, int] = {}
    for r in records:
        end = min(now, r.left_at)
        lo = int(np.searchsorted(produced_t, r.joined_at, side="left"))
        hi = int(np.searchsorted(produced_t, end - playout_delay, side="right"))
        if hi > lo:
            due += hi - lo
            if len(r.on_time):
                s = np.frombuffer(r.on_time, dtype=np.int32)
                ok += int(np.count_nonzero((s >= lo) & (s < hi)))
        for src, n in r.bytes_by_source.items():
            bytes_total[src] = bytes_total.get(src, 0) + n
    return figures(lat, startup, ok, due, bytes_total)  # type: ignore[arg-type]  # ndarrays index like sequences


class Timeline:
    """Per-second bins for the plots: offload and continuity over time."""

    def __init__(self, seconds: int) -> None:
        n = seconds + 2
        self.p2p = np.zeros(n)
        self.total = np.zeros(n)

    def add(self, t: float, source: str, nbytes: int) -> None:
        i = int(t)
        if 0 <= i < len(self.total):
            self.total[i] += nbytes
            if source == "p2p":
                self.p2p[i] += nbytes


def continuity_over_time(records: list[ViewerRecord], produced_t: np.ndarray, now: float,
                         playout_delay: float, t0: float) -> list[tuple[int, float]]:
    """(second, on-time share of the chunks completed in that second)."""
    if len(produced_t) == 0:
        return []
    secs = (produced_t - t0).astype(np.int64)
    nb = int(secs.max()) + 1
    due = np.zeros(nb)
    ok = np.zeros(nb)
    for r in records:
        end = min(now, r.left_at)
        lo = int(np.searchsorted(produced_t, r.joined_at, side="left"))
        hi = int(np.searchsorted(produced_t, end - playout_delay, side="right"))
        if hi <= lo:
            continue
        np.add.at(due, secs[lo:hi], 1)
        if len(r.on_time):
            s = np.frombuffer(r.on_time, dtype=np.int32)
            s = s[(s >= lo) & (s < hi)]
            np.add.at(ok, secs[s], 1)
    return [(i, float(ok[i] / due[i])) for i in range(nb) if due[i] > 0]
