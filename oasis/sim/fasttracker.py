"""The simulator's single-stream tracker: the core tracker's sampling rule, without expiry.

The sampling rule and its O(1)/O(sample) indexes live in
:class:`oasis.core.tracker.StreamPeers`, which the core
:class:`~oasis.core.tracker.Tracker` uses for every stream; this adapter keeps
the simulator's short call (``announce(peer_id, is_broadcaster=..., leaving=...,
area=...)`` -> peer ids) for one stream whose broadcaster the simulator names.
``oasis sim`` uses the full core Tracker up to 2000 peers (``tracker = "auto"``)
and this one above.
"""

from __future__ import annotations

import random

from oasis.core.tracker import StreamPeers, _Bag

__all__ = ["FastTracker", "StreamPeers", "_Bag"]


class FastTracker:
    def __init__(self, sample: int = 20, rng: random.Random | None = None,
                 locality: float = 0.0) -> None:
        self.sample = sample
        self.locality = locality
        self.rng = rng or random.Random()
        self.peers = StreamPeers()

    @property
    def broadcaster(self) -> str | None:
        return self.peers.broadcaster

    def announce(self, peer_id: str, *, is_broadcaster: bool = False,
                 leaving: bool = False, area: str = "") -> list[str]:
        if leaving:
            self.peers.leave(peer_id)
            return []
        self.peers.join(peer_id, is_broadcaster=is_broadcaster, area=area)
        return self.peers.draw(self.rng, peer_id, area, self.sample, self.locality)
