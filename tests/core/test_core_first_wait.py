"""``first_wait``: a newcomer's first SUBSCRIBE waits a moment for more neighbours' STATUS.

Without it a newcomer subscribes every substream at the first STATUS that claims chunks, to
the neighbour whose link came up first, however deep (``start_look`` swaps it later, at the
cost of a fresh subscription). With it the first SUBSCRIBE goes out ``first_wait`` after
that STATUS, among all the neighbours heard by then."""

from __future__ import annotations

import random

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId

K = 4


def _status(sid_key: bytes, path: list[bytes], lag: int) -> wire.Status:
    return wire.Status(stream=sid_key, latest=40, have=0, keyframe=40, slots=8,
                       paths=[path] * K, lags=[lag] * K)


def _newcomer(first_wait: float, near_at: float = 0.15) -> tuple[list[tuple[float, bytes, int]], bytes, bytes]:
    """A newcomer hears a deep neighbour first (300 ms lag) and a shallow one ``near_at``
    later (40 ms). Returns every SUBSCRIBE it sent (time, peer, mask) over 3 s of timers
    (each neighbour accepts a round trip, 0.1 s, later)."""
    rng = random.Random(21)
    b, deep, near, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(4))
    sid = StreamId(b, "t")
    cfg = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, substreams=K, first_wait=first_wait)
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
    node.on_message(deep, _status(sid.key, [tb, b"\x01" * 8, peer_tag(deep)], 300), 0.0)
    drain(0.0)
    events = [near_at]
    now = 0.0
    while now < 3.0:
        t = node.get_timer()
        assert t is not None
        now = max(now, min([t] + [a[0] for a in acks] + events))
        for a in [a for a in acks if a[0] <= now]:
            acks.remove(a)
            node.on_message(a[1], wire.SubscribeAck(stream=sid.key, accepted=a[2], rejected=0), now)
        if events and events[0] <= now:
            events.clear()
            node.add_peer(near, now, rtt=0.02)
            node.on_message(near, _status(sid.key, [tb, peer_tag(near)], 40), now)
        node.handle_timer(now)
        drain(now)
    return sent, deep, near


def test_first_wait_subscribes_among_the_neighbours_heard_in_the_wait() -> None:
    """With ``first_wait`` = 0.25 nothing is asked at the first STATUS; at 0.25 s every
    substream goes to the shallow neighbour heard at 0.15 s, and the deep one is never asked."""
    sent, deep, near = _newcomer(0.25)
    assert sent, "the wait ends: the newcomer subscribes"
    t, peer, mask = sent[0]
    assert abs(t - 0.25) < 1e-9 and peer == near and mask == (1 << K) - 1, sent
    assert all(p != deep for _, p, _ in sent), sent


def test_without_first_wait_the_first_neighbour_heard_gets_every_substream() -> None:
    """Off (0; the default is 0.25): every substream is asked of the deep neighbour at once."""
    assert sw.SwarmConfig().first_wait == 0.25
    sent, deep, near = _newcomer(0.0)
    assert sent[0] == (0.0, deep, (1 << K) - 1), sent


def test_first_wait_takes_the_only_neighbour_when_no_other_comes() -> None:
    """A newcomer with one neighbour in the wait still subscribes when it ends (a lone
    viewer is not left without parents)."""
    sent, deep, near = _newcomer(0.25, near_at=2.0)
    assert sent[0] == (0.25, deep, (1 << K) - 1), sent


def test_first_wait_does_not_delay_a_node_that_had_parents() -> None:
    """The wait is a newcomer's only: a node that lost its parents asks again at once."""
    # a node whose tree had a parent before (changed_at set): no wait
    rng = random.Random(5)
    b, p, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(3))
    sid = StreamId(b, "t")
    node = sw.Swarm(sid, me, sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, substreams=K, first_wait=0.25),
                    rng=random.Random(1), now=0.0)
    node.tree.changed_at[0] = 1.0  # (a parent held before)
    node.add_peer(p, 5.0, rtt=0.05)
    node.on_message(p, _status(sid.key, [peer_tag(b), peer_tag(p)], 40), 5.0)
    subs = [a for a in node.actions() if isinstance(a, sw.Send) and isinstance(a.message, wire.Subscribe)]
    assert subs and subs[0].peer == p
