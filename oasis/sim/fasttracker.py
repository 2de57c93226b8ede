"""The tracker's sampling rule in O(sample) per announce, for large swarms.

:class:`oasis.core.tracker.Tracker` builds the list of all peers on every
announce (O(N)); fine for a node, too slow for 10^5 simulated joins. This class
implements the same rule — the broadcaster always, then up to ``locality`` of
the sample from the joiner's own area, the rest a uniform random sample of the
others, and a departed peer is gone — with indexable lists and swap-remove.
``oasis sim`` uses the core Tracker up to 2000 peers (``tracker = "auto"``) and
this one above.
"""

from __future__ import annotations

import random


class _Bag:
    """A set with O(1) add, remove and uniform random pick."""

    __slots__ = ("ids", "pos")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}

    def add(self, x: str) -> None:
        if x not in self.pos:
            self.pos[x] = len(self.ids)
            self.ids.append(x)

    def remove(self, x: str) -> None:
        i = self.pos.pop(x, None)
        if i is not None:
            last = self.ids.pop()
            if last != x:
                self.ids[i] = last
                self.pos[last] = i

    def pick(self, rng: random.Random, want: int, seen: set[str], out: list[str]) -> None:
        """Append up to ``want`` members not in ``seen`` (bounded tries)."""
        n = len(self.ids)
        if n - len(seen) <= want * 2:  # small: filter
            avail = [p for p in self.ids if p not in seen]
            got = avail if len(avail) <= want else rng.sample(avail, want)
            seen.update(got)
            out += got
            return
        added = 0
        for _ in range(8 * want + 16):
            if added >= want:
                break
            p = self.ids[rng.randrange(n)]
            if p not in seen:
                seen.add(p)
                out.append(p)
                added += 1


class FastTracker:
    def __init__(self, sample: int = 20, rng: random.Random | None = None,
                 locality: float = 0.0) -> None:
        self.sample = sample
        self.locality = locality
        self.rng = rng or random.Random()
        self.broadcaster: str | None = None
        self._all = _Bag()
        self._areas: dict[str, _Bag] = {}
        self._area_of: dict[str, str] = {}

    def announce(self, peer_id: str, *, is_broadcaster: bool = False,
                 leaving: bool = False, area: str = "") -> list[str]:
        if leaving:
            self._all.remove(peer_id)
            a = self._area_of.pop(peer_id, None)
            if a is not None:
                self._areas[a].remove(peer_id)
            if peer_id == self.broadcaster:
                self.broadcaster = None
            return []
        if is_broadcaster:
            self.broadcaster = peer_id
        elif peer_id not in self._all.pos:
            self._all.add(peer_id)
            if area:
                self._area_of[peer_id] = area
                self._areas.setdefault(area, _Bag()).add(peer_id)
        out = [self.broadcaster] if self.broadcaster and self.broadcaster != peer_id else []
        seen = {peer_id}
        seen.update(out)
        want = self.sample - len(out)
        near = self._areas.get(area) if area else None
        if near is not None:
            near.pick(self.rng, int(want * self.locality), seen, out)
        self._all.pick(self.rng, self.sample - len(out), seen, out)
        return out
