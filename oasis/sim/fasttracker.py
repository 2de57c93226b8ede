"""The tracker's sampling rule in O(sample) per announce, for large swarms.

:class:`oasis.core.tracker.Tracker` builds the list of all peers on every
announce (O(N)); fine for a node, too slow for 10^5 simulated joins. This class
implements the same rule — the broadcaster always, plus a uniform random
sample of the others, and a departed peer is gone — with an indexable list and
swap-remove. ``oasis sim`` uses the core Tracker up to 2000 peers (``tracker =
"auto"``) and this one above.
"""

from __future__ import annotations

import random


class FastTracker:
    def __init__(self, sample: int = 20, rng: random.Random | None = None) -> None:
        self.sample = sample
        self.rng = rng or random.Random()
        self.broadcaster: str | None = None
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}

    def announce(self, peer_id: str, *, is_broadcaster: bool = False,
                 leaving: bool = False) -> list[str]:
        if leaving:
            i = self._pos.pop(peer_id, None)
            if i is not None:
                last = self._ids.pop()
                if last != peer_id:
                    self._ids[i] = last
                    self._pos[last] = i
            if peer_id == self.broadcaster:
                self.broadcaster = None
            return []
        if is_broadcaster:
            self.broadcaster = peer_id
        elif peer_id not in self._pos:
            self._pos[peer_id] = len(self._ids)
            self._ids.append(peer_id)
        out = [self.broadcaster] if self.broadcaster and self.broadcaster != peer_id else []
        want = self.sample - len(out)
        n = len(self._ids)
        if n - (peer_id in self._pos) <= want:
            out += [p for p in self._ids if p != peer_id]
            return out
        picked: list[str] = []
        seen = {peer_id}
        while len(picked) < want:
            p = self._ids[self.rng.randrange(n)]
            if p not in seen:
                seen.add(p)
                picked.append(p)
        return out + picked
