"""``first_wait``: a newcomer's first SUBSCRIBE waits a moment for more neighbours' STATUS.

Without it a newcomer subscribes every substream at the first STATUS that claims chunks, to
the neighbour whose link came up first, however deep (``start_look`` swaps it later, at the
cost of a fresh subscription). With it the first SUBSCRIBE goes out ``first_wait`` after
that STATUS, among all the neighbours heard by then."""

from __future__ import annotations

import random

from newcomer import K, newcomer_subscribes
from newcomer import status as _status

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId


def _newcomer(first_wait: float, near_at: float = 0.15) -> tuple[list[tuple[float, bytes, int]], bytes, bytes]:
    """Every SUBSCRIBE the scripted newcomer sends over 3 s of timers."""
    return newcomer_subscribes(3.0, near_at, first_wait=first_wait)


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
