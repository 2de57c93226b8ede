"""One real ``Swarm`` (playout 1.0 s, one substream, 100 ms chunks) and the keys, chunks and
STATUS claims its neighbours need, for the repair tests that drive its neighbours by hand
(``test_core_repair_sink``, ``test_core_repair_proven``, ``test_core_fresh_parent``).

The draws from ``random.Random(seed)`` are always in the same order (the broadcaster, then four
peer keys, the last of them the node's own), so a test's outcome depends on its seed alone."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId, sign_chunk

GOP = 10
CHUNK_S = 0.1
ALL = (1 << 63) - 1  # a ``have`` mask that claims every chunk


class RepairBench:
    def __init__(self, seed: int, seconds: float, **config: Any) -> None:
        rng = random.Random(seed)
        bid = Identity.from_private_bytes(rng.randbytes(32))
        *self.peers, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(4))
        self.sid = StreamId(bid.public, "t")
        self.cfg = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, substreams=1, playout_delay=1.0, **config)
        self.node = sw.Swarm(self.sid, me, self.cfg, rng=random.Random(seed), now=0.0)
        self.tb = peer_tag(bid.public)
        n = int(seconds / CHUNK_S) + 20
        self.chunks = {seq: sign_chunk(bid, self.sid, seq, int(round(CHUNK_S * seq * 1e6)), seq % GOP == 0,
                                       b"x" * 500) for seq in range(n)}

    def status(self, p: bytes, path: list[bytes], latest: int, now: float, *, have: int = ALL,
               lag_ms: int = 100, slots: int = 8) -> None:
        """``p``'s STATUS: chunks up to ``latest`` (``have``), over ``path``, with ``lag_ms``."""
        self.node.on_message(p, wire.Status(stream=self.sid.key, latest=latest, have=have,
                                            keyframe=latest - latest % GOP, slots=slots, paths=[path],
                                            lags=[lag_ms]), now)

    def step(self, now: float, pending: list[tuple[float, bytes, int]]) -> tuple[float, int]:
        """Advance to the next of the node's timer, a ``pending`` chunk (time, sender, seq) and
        ``now`` + 50 ms; hand over the chunks due (in time order; none from a peer gone) and
        fire the timer if due. Returns the new time and the live edge's seq then."""
        node = self.node
        due = node.get_timer()
        now = max(now, min([due if due is not None else 9e9] + [t for t, _, _ in pending] + [now + 0.05]))
        for e in sorted(e for e in pending if e[0] <= now):
            pending.remove(e)
            if e[1] in node.peers:
                node.on_chunk(e[1], self.chunks[e[2]], now)
        if due is not None and due <= now:
            node.handle_timer(now)
        return now, int(now / CHUNK_S)

    def start_then_silent(self, parent: bytes) -> None:
        """``parent`` (one hop from the broadcaster) takes the node and pushes the start, chunk
        0 (a keyframe), at 0.05 s; then it is silent, so every later chunk is a repair."""
        self.status(parent, [self.tb, peer_tag(parent)], 1, 0.0)
        self.node.on_message(parent, wire.SubscribeAck(stream=self.sid.key, accepted=1, rejected=0), 0.01)
        self.node.on_chunk(parent, self.chunks[0], 0.05)


@dataclass
class Relay:
    """A relay two hops below the broadcaster: its swarm, the broadcaster's identity, the
    stream, its parent and its (not yet subscribed) children."""

    node: sw.Swarm
    bid: Identity
    sid: StreamId
    par: bytes
    kids: list[bytes]


def relay_under(children: int, lag_ms: int, *, substreams: int = 4, kid_rtt: float = 0.02,
                **config: Any) -> Relay:
    """A relay (playout 0.5 s, 100 ms chunks) subscribed to every substream of a parent that
    advertises ``lag_ms``, with ``children`` neighbours ``kid_rtt`` away that may subscribe."""
    rng = random.Random(7)
    bid = Identity.from_private_bytes(rng.randbytes(32))
    sid = StreamId(bid.public, "t")
    me, par = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(2))
    kids = [Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(children)]
    tb, t1 = peer_tag(bid.public), b"\x01" * 8
    k = substreams
    node = sw.Swarm(sid, me, sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5,
                                            **config), rng=random.Random(1), now=0.0)
    node.add_peer(par, 0.0, rtt=0.02)
    for kid in kids:
        node.add_peer(kid, 0.0, rtt=kid_rtt)
    node.on_message(par, wire.Status(stream=sid.key, latest=10, have=0, keyframe=0, slots=8,
                                     paths=[[tb, t1, peer_tag(par)]] * k, lags=[lag_ms] * k), 0.0)
    node.on_message(par, wire.SubscribeAck(stream=sid.key, accepted=(1 << k) - 1, rejected=0), 0.05)
    return Relay(node, bid, sid, par, kids)


def late_relay(children: int, substreams: int = 4, **config: Any) -> sw.Swarm:
    """A relay (playout 0.5 s, 100 ms chunks) whose parent pushes every chunk 0.33 s after its
    time, so the relay's copy would reach its children after their own origin fallback, with
    ``children`` children on substream 0; chunks 0-39 delivered, the substream marked late."""
    r = relay_under(children, 300, substreams=substreams, **config)
    node, bid, sid, par, kids, k = r.node, r.bid, r.sid, r.par, r.kids, substreams
    for seq in range(40):
        t = 1.0 + seq * 0.1
        node.on_chunk(par, sign_chunk(bid, sid, seq, int(t * 1e6), seq == 0, b"x"), t + 0.33)
    for kid in kids:
        node.on_message(kid, wire.Subscribe(stream=sid.key, mask=1, substreams=k), 5.0)
    node.actions()
    return node
