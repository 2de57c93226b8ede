"""The gateway's playout buffer (``oasis.node.node.Playout``) keeps the newest ``keep``
chunks by sequence number, whatever order they came in."""

from __future__ import annotations

import random

from oasis.node.node import Playout


def test_the_playout_keeps_the_highest_seqs_whatever_the_arrival_order() -> None:
    rng = random.Random(5)
    seqs = list(range(100, 160))
    rng.shuffle(seqs)  # repairs and late substreams arrive out of order
    p = Playout(keep=10)
    for n, seq in enumerate(seqs, 1):
        p.add(seq, bytes([seq % 256]), start=100)
        held = sorted(seqs[:n])[-10:]
        assert sorted(p.chunks) == held
        assert all(p.chunks[s] == bytes([s % 256]) for s in held)
    p.add(170, b"x", start=100)
    p.add(155, b"again", start=100)  # a seq held already: replaced, nothing evicted
    assert sorted(p.chunks) == [*range(151, 160), 170] and p.chunks[155] == b"again"
    p.add(99, b"old", start=100)  # before the swarm's start: never kept
    assert 99 not in p.chunks


def test_a_smaller_keep_drops_the_oldest_at_once() -> None:
    p = Playout(keep=50)
    for seq in range(40):
        p.add(seq, b"c", start=0)
    p.keep = 5  # several over: the oldest go in one add
    p.add(40, b"c", start=0)
    assert sorted(p.chunks) == [36, 37, 38, 39, 40]
