"""A newcomer's first seconds, scripted: the shared harness of the ``first_wait`` and
``start_look`` tests (the real ``Swarm`` core, simulated time, no I/O)."""

from __future__ import annotations

import random
from typing import Any

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId

K = 4


def status(sid_key: bytes, path: list[bytes], lag: int) -> wire.Status:
    """A neighbour's STATUS claiming chunks up to 40 on all K substreams along ``path``."""
    return wire.Status(stream=sid_key, latest=40, have=0, keyframe=40, slots=8,
                       paths=[path] * K, lags=[lag] * K)


def newcomer_subscribes(until: float, near_at: float = 0.15,
                        **config: Any) -> tuple[list[tuple[float, bytes, int]], bytes, bytes]:
    """A newcomer hears a deep neighbour first (300 ms lag, at 0) and a shallow one
    ``near_at`` later (40 ms). Each neighbour accepts a SUBSCRIBE a round trip (0.1 s)
    later. Returns every SUBSCRIBE sent until ``until`` as (time, peer, mask), and the deep
    and the shallow neighbour. ``config``: SwarmConfig fields."""
    rng = random.Random(21)
    b, deep, near, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(4))
    sid = StreamId(b, "t")
    cfg = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, substreams=K, **config)
    node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=0.0)
    tb = peer_tag(b)
    sent: list[tuple[float, bytes, int]] = []
    acks: list[tuple[float, bytes, int]] = []

    def drain(now: float) -> None:
        for a in node.actions():
            if isinstance(a, sw.Send) and isinstance(a.message, wire.Subscribe):
                sent.append((now, a.peer, a.message.mask))
                acks.append((now + 0.1, a.peer, a.message.mask))

    node.add_peer(deep, 0.0, rtt=0.05)
    node.on_message(deep, status(sid.key, [tb, b"\x01" * 8, peer_tag(deep)], 300), 0.0)
    drain(0.0)
    events = [near_at]
    now = 0.0
    while now < until:
        t = node.get_timer()
        assert t is not None
        now = max(now, min([t] + [a[0] for a in acks] + events))
        for a in [a for a in acks if a[0] <= now]:
            acks.remove(a)
            node.on_message(a[1], wire.SubscribeAck(stream=sid.key, accepted=a[2], rejected=0), now)
        if events and events[0] <= now:
            events.clear()
            node.add_peer(near, now, rtt=0.02)
            node.on_message(near, status(sid.key, [tb, peer_tag(near)], 40), now)
        node.handle_timer(now)
        drain(now)
    return sent, deep, near


def two_candidates(seed: int, **config: Any) -> tuple[sw.Swarm, StreamId, bytes, bytes, bytes, random.Random]:
    """A newcomer on one substream (``first_wait`` 0.25 s, no ``start_look``) with two
    neighbours 50 ms away, nothing heard yet: the harness of the parent-score tests
    (``slot_weight``, ``depth_weight``). Returns (node, sid, the broadcaster's tag, the two
    neighbours, the rng the keys came from). ``config``: SwarmConfig fields."""
    rng = random.Random(seed)
    b, one, two, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(4))
    sid = StreamId(b, "t")
    cfg = sw.SwarmConfig(first_wait=0.25, start_look=0.0, chunk_ms=100, upload_kbps=6000, substreams=1,
                         playout_delay=0.5, **config)
    node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=0.0)
    node.add_peer(one, 0.0, rtt=0.1)
    node.add_peer(two, 0.0, rtt=0.1)
    node.actions()
    return node, sid, peer_tag(b), one, two, rng
