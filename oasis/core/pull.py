"""Answering pulls: a request budget per peer, and the table of held requests.

Theory of operation
-------------------
A REQUEST costs its sender about 20 bytes and the receiver a whole chunk, so a
peer that is free to ask can make a node spend its whole upload cap on it (a
flood of 311 KiB of REQUESTs drew 11.5 MB of sends before this module). Answers
are therefore rationed per peer, as a token bucket in bytes
(:class:`PullBudget`): it refills at ``share`` x the stream's rate and holds
``burst`` seconds of the stream. An honest peer pulls repairs (a small part of
the stream) and, when it joins, one backfill from its start keyframe to the
live edge; a peer asking for more than that is refused (MISSING, counted).
Each refusal is also a *strike* in a second, leaky bucket; a peer that keeps
asking past its budget fills it and is cut off (``DropPeer``).

A request for a chunk not held yet is *held* until the chunk arrives or its
deadline passes (then MISSING). :class:`HeldRequests` keeps them per peer, with
a cap per peer and one in total, and a heap ordered by deadline, so the next
expiry is found in O(1) and each expiry costs O(log n): the swarm's
``get_timer``/``handle_timer`` do not scan the table (28,800 held requests made
``get_timer`` 4,000x slower when it did). Heap entries of requests served or
forgotten early stay in the heap until they reach its top (lazy deletion); the
heap is compacted when they outnumber live entries.
"""

from __future__ import annotations

import heapq

INF = float("inf")


class PullBudget:
    """One peer's budget of answers: bytes it may still pull, and its strikes."""

    def __init__(self, now: float) -> None:
        self.tokens = -1.0  #: bytes it may pull now; < 0 before first use (starts full)
        self.updated = now
        self.strikes = 0.0  #: refusals not yet forgiven (leaks at ``limit / window`` per s)
        self.struck = now

    def take(self, cost: float, rate: float, depth: float, now: float) -> bool:
        """Spend ``cost`` bytes if the bucket (``rate`` B/s, ``depth`` B) allows it."""
        if self.tokens < 0:
            self.tokens = depth
        elif now > self.updated:
            self.tokens = min(depth, self.tokens + (now - self.updated) * rate)
        if now > self.updated:
            self.updated = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def strike(self, limit: int, window: float, now: float) -> bool:
        """Count one refusal; True once ``limit`` refusals pile up faster than
        ``limit`` per ``window`` seconds are forgiven (the peer floods)."""
        if now > self.struck:
            self.strikes = max(0.0, self.strikes - (now - self.struck) * limit / window)
            self.struck = now
        self.strikes += 1.0
        return self.strikes >= limit


class HeldRequests:
    """Requests held for chunks not here yet: ``peer -> seq -> deadline``, capped
    per peer and in total, with a deadline heap for the timer."""

    def __init__(self, per_peer: int, total: int) -> None:
        self.per_peer = per_peer
        self.cap = total
        self.by_peer: dict[bytes, dict[int, float]] = {}
        self.count = 0  #: live entries
        self._heap: list[tuple[float, int, bytes]] = []  #: (deadline, seq, peer), lazily pruned

    def __len__(self) -> int:
        return self.count

    def hold(self, peer: bytes, seq: int, deadline: float) -> bool:
        """Hold ``seq`` for ``peer`` until ``deadline``; False if a cap refuses it."""
        held = self.by_peer.get(peer)
        if held is None:
            held = self.by_peer[peer] = {}
        if seq in held:
            return True  # asked twice: still one entry
        if len(held) >= self.per_peer or self.count >= self.cap:
            if not held:
                del self.by_peer[peer]
            return False
        held[seq] = deadline
        self.count += 1
        heapq.heappush(self._heap, (deadline, seq, peer))
        if len(self._heap) > 4 * self.cap + 64:
            self._compact()
        return True

    def take(self, peer: bytes, seq: int) -> float | None:
        """Remove ``seq`` held for ``peer`` (it is being answered); its deadline, or None."""
        held = self.by_peer.get(peer)
        if held is None:
            return None
        d = held.pop(seq, None)
        if d is None:
            return None
        self.count -= 1
        if not held:
            del self.by_peer[peer]
        return d

    def held_for(self, peer: bytes) -> int:
        held = self.by_peer.get(peer)
        return len(held) if held is not None else 0

    def forget(self, peer: bytes) -> None:
        """Drop every request held for a peer that left."""
        held = self.by_peer.pop(peer, None)
        if held is not None:
            self.count -= len(held)

    def next_deadline(self) -> float:
        """Earliest deadline of a live held request (INF if none). Prunes dead tops."""
        heap = self._heap
        while heap:
            d, seq, peer = heap[0]
            held = self.by_peer.get(peer)
            if held is not None and held.get(seq) == d:
                return d
            heapq.heappop(heap)
        return INF

    def expire(self, now: float) -> list[tuple[bytes, int]]:
        """Remove and return every held request whose deadline is ``<= now``."""
        out: list[tuple[bytes, int]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            d, seq, peer = heapq.heappop(heap)
            held = self.by_peer.get(peer)
            if held is not None and held.get(seq) == d:
                del held[seq]
                self.count -= 1
                if not held:
                    del self.by_peer[peer]
                out.append((peer, seq))
        return out

    def _compact(self) -> None:
        live: list[tuple[float, int, bytes]] = []
        for e in self._heap:
            held = self.by_peer.get(e[2])
            if held is not None and held.get(e[1]) == e[0]:
                live.append(e)
        heapq.heapify(live)
        self._heap = live
