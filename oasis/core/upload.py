"""Upload scheduling at a node's cap: newest first, late chunks dropped.

A token bucket refills at ``upload_kbps``; its depth allows a short burst (a
chunk arrives whole and is forwarded at once). Queued sends are served highest
sequence number first, so under pressure the live edge wins and old chunks
age out; anything whose deadline has passed is dropped, never sent late.
With ``upload_kbps == 0`` there is no cap and everything is released at once.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

from .wire import ChunkMsg

BURST_SECONDS = 0.25
MIN_BURST_BYTES = 64 * 1024


@dataclass
class UploadCounters:
    released: int = 0
    released_bytes: int = 0
    dropped_late: int = 0
    dropped_bytes: int = 0


class UploadScheduler:
    def __init__(self, upload_kbps: int, now: float) -> None:
        self.rate = upload_kbps * 1000 / 8  # bytes per second; 0 = uncapped
        self.depth = max(self.rate * BURST_SECONDS, MIN_BURST_BYTES)
        self.tokens = self.depth
        self.updated = now
        self._queue: list[tuple[int, int, bytes, ChunkMsg, float]] = []
        #: how many sends of each (peer, seq) are queued: a CANCEL for a send that already
        #: left (most of them) is answered without a scan of the queue
        self._queued: dict[tuple[bytes, int], int] = {}
        self._order = itertools.count()
        #: no queued send's deadline is below this (a lower bound; inf when empty): while
        #: ``now`` is below it, nothing queued is late and release() skips its scan of the
        #: queue for late entries (with tokens out it ran at every call: ~15 % of the CPU of
        #: a 100,000-peer join phase; issue 9)
        self._min_deadline = math.inf
        self.counters = UploadCounters()

    def __len__(self) -> int:
        return len(self._queue)

    def enqueue(self, peer: bytes, chunk: ChunkMsg, deadline: float) -> None:
        heapq.heappush(self._queue, (-chunk.seq, next(self._order), peer, chunk, deadline))
        if deadline < self._min_deadline:
            self._min_deadline = deadline
        key = (peer, chunk.seq)
        self._queued[key] = self._queued.get(key, 0) + 1

    def _left(self, peer: bytes, seq: int) -> None:
        key = (peer, seq)
        n = self._queued.get(key, 0)
        if n <= 1:
            self._queued.pop(key, None)
        else:
            self._queued[key] = n - 1

    def cancel(self, peer: bytes, seq: int) -> bool:
        """Drop a queued send of ``seq`` to ``peer``; whether one was queued. Nothing
        queued for it (the answer left already): a dict lookup; queued: a scan of the
        queue to take it out (tens of entries)."""
        if (peer, seq) not in self._queued:
            return False
        q = self._queue
        for i in range(len(q)):
            e = q[i]
            if e[0] == -seq and e[2] == peer:
                q[i] = q[-1]
                q.pop()
                heapq.heapify(q)
                self._left(peer, seq)
                return True
        return False

    def set_rate(self, upload_kbps: int, now: float) -> None:
        """A new cap (the uplink probe moved it; > 0): the bucket fills at the old rate
        until ``now``, at the new one after; its depth follows, the tokens no further."""
        self._refill(now)
        self.rate = upload_kbps * 1000 / 8
        self.depth = max(self.rate * BURST_SECONDS, MIN_BURST_BYTES)
        if self.tokens > self.depth:
            self.tokens = self.depth

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.depth, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def release(self, now: float) -> list[tuple[bytes, ChunkMsg, float]]:
        """Sends allowed now, newest first; drops what is past its deadline."""
        out: list[tuple[bytes, ChunkMsg, float]] = []
        if not self._queue:
            return out
        self._refill(now)
        while self._queue:
            _, _, peer, chunk, deadline = self._queue[0]
            if deadline <= now:
                heapq.heappop(self._queue)
                self._left(peer, chunk.seq)
                self.counters.dropped_late += 1
                self.counters.dropped_bytes += len(chunk.payload)
                continue
            if self.rate > 0 and self.tokens <= 0:
                # Out of tokens: drop everything already late, wherever it sits (if
                # anything can be: see _min_deadline)
                if now >= self._min_deadline:
                    keep: list[tuple[int, int, bytes, ChunkMsg, float]] = []
                    low = math.inf
                    for e in self._queue:
                        if e[4] > now:
                            keep.append(e)
                            if e[4] < low:
                                low = e[4]
                        else:
                            self._left(e[2], e[3].seq)
                            self.counters.dropped_late += 1
                            self.counters.dropped_bytes += len(e[3].payload)
                    if len(keep) != len(self._queue):
                        heapq.heapify(keep)
                        self._queue = keep
                    self._min_deadline = low
                break
            heapq.heappop(self._queue)
            self._left(peer, chunk.seq)
            size = len(chunk.payload)
            if self.rate > 0:
                self.tokens -= size
            self.counters.released += 1
            self.counters.released_bytes += size
            out.append((peer, chunk, deadline))
        return out

    def next_release(self) -> float | None:
        """When the next queued send can go (or be dropped), or None if idle."""
        if not self._queue:
            return None
        if self.rate <= 0 or self.tokens > 0:
            return self.updated
        # Late entries are dropped by release() whenever it runs, so waking for the
        # refill is enough (no scan of the queue on this hot path).
        return self.updated + (-self.tokens + 1) / self.rate
