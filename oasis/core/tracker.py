"""Tracker rules, sans-I/O: who is in which stream's swarm, and whom to tell a joiner.

Peers announce (stream, peer id, address) periodically; entries expire after
``ttl`` seconds without an announce. A joiner gets a random sample of the
others, always including the broadcaster while it is alive (it holds the live
edge first). A peer may name its *area* (a short locality label: the
simulator uses the country); up to ``locality`` (0.8) of the sample then comes
from peers of the same area, the rest from everyone. Neighbours close by make
each tree hop short (docs/simulation.md has the measured effect). The HTTP face is in ``oasis.node.http``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MAX_STREAMS = 10_000
MAX_PEERS_PER_STREAM = 100_000
MAX_AREA = 32  #: characters of an area label kept


@dataclass
class TrackedPeer:
    peer_id: str
    host: str
    port: int
    seen: float
    is_broadcaster: bool = False
    area: str = ""


@dataclass
class Tracker:
    ttl: float = 30.0
    sample: int = 20
    locality: float = 0.8  #: share of the sample taken from the joiner's area
    rng: random.Random = field(default_factory=random.Random)
    streams: dict[str, dict[str, TrackedPeer]] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    tickets: dict[str, str] = field(default_factory=dict)  #: stream -> ticket URL (proof of relay)

    def announce(self, stream: str, peer_id: str, host: str, port: int, now: float, *,
                 is_broadcaster: bool = False, origin: str | None = None,
                 leaving: bool = False, tickets: str | None = None,
                 area: str = "") -> list[TrackedPeer]:
        peers = self.streams.get(stream)
        if peers is None:
            if leaving:
                return []
            if len(self.streams) >= MAX_STREAMS:
                self._drop_dead_streams(now)
            if len(self.streams) >= MAX_STREAMS:
                raise OverflowError("tracker is full: too many streams")
            peers = self.streams[stream] = {}
        self._expire(peers, now)
        if leaving:
            peers.pop(peer_id, None)
            if not peers:
                del self.streams[stream]
                self.origins.pop(stream, None)
                self.tickets.pop(stream, None)
            return []
        if peer_id not in peers and len(peers) >= MAX_PEERS_PER_STREAM:
            raise OverflowError("tracker is full for this stream")
        # The broadcaster is the peer whose id the stream id starts with: only it is
        # flagged (whatever a request claims) and only it may name the origin.
        is_broadcaster = stream.startswith(peer_id + ".")
        peers[peer_id] = TrackedPeer(peer_id, host, port, now, is_broadcaster, area[:MAX_AREA])
        if origin and is_broadcaster:
            self.origins[stream] = origin
        if tickets and is_broadcaster:
            self.tickets[stream] = tickets
        others = [p for p in peers.values() if p.peer_id != peer_id]
        bcast = [p for p in others if p.is_broadcaster]
        rest = [p for p in others if not p.is_broadcaster]
        want = max(0, self.sample - len(bcast))
        local: list[TrackedPeer] = []
        if area and self.locality > 0:
            near = [p for p in rest if p.area == area]
            local = self.rng.sample(near, min(int(want * self.locality), len(near)))
            if local:
                chosen = {p.peer_id for p in local}
                rest = [p for p in rest if p.peer_id not in chosen]
        picked = self.rng.sample(rest, min(want - len(local), len(rest)))
        return bcast + local + picked

    def _expire(self, peers: dict[str, TrackedPeer], now: float) -> None:
        for pid in [pid for pid, p in peers.items() if now - p.seen > self.ttl]:
            del peers[pid]

    def _drop_dead_streams(self, now: float) -> None:
        for stream in list(self.streams):
            self._expire(self.streams[stream], now)
            if not self.streams[stream]:
                del self.streams[stream]
                self.origins.pop(stream, None)

    def stream_ids(self) -> list[str]:
        return list(self.streams)
