"""A neighbour that lists a NATed node's candidates and never answers its INTROs
(docs/oftp.md §15.2-15.3; found 2026-12-03 by an outside attacker). Behind a NAT a node
punches every candidate a linked neighbour can introduce instead of dialling it, through
the newest neighbour that listed it; an introduction with no GO expired after 6 s and the
next plan round asked the same neighbour again. So one hostile neighbour that re-listed the
keys of the node's tracker candidates every 10 s (it learns them as any viewer does) and
dropped every INTRO kept the node from linking to any of them, for as long as it stayed
linked: no dial, an INTRO every 6 s per candidate. Now an unanswered introduction holds
that (target, introducer) pair off for ``punch_retry_after``: the next round dials the
candidate (or asks another neighbour). The real ``PeerPolicy`` and ``Introductions``."""

from __future__ import annotations

from test_core_nat import Net, key, public

from oasis.core import peer as pp
from oasis.core import wire
from oasis.core.nat import NatKind, Phase


class SilentIntroducer(Net):
    """Node 4 is hostile: INTROs sent to it are swallowed (counted)."""

    swallowed = 0

    def run(self) -> None:
        for _ in range(100):
            moved = False
            for i, p in self.p.items():
                for a in p.actions():
                    moved = True
                    if isinstance(a, pp.SendTo):
                        _, x, y = a.link
                        j = y if x == i else x
                        m = a.message
                        if j == 4 and isinstance(m, wire.Punch) and m.phase == Phase.INTRO:
                            self.swallowed += 1
                            continue
                        self.sent.append((i, j, m))
                        self.p[j].on_message(a.link, key(i), m, self.now)
                    elif isinstance(a, pp.Dial):
                        self.dials.append((i, a))
                    elif isinstance(a, pp.Prime):
                        self.primes.append((i, a))
            if not moved:
                return
        raise AssertionError("messages never settled")


def test_a_silent_introducer_cannot_keep_a_natted_node_from_its_candidates() -> None:
    net = SilentIntroducer(6)
    net.link(1, 3)
    net.link(1, 4)
    net.tick(10.0)
    a = net.p[1]
    assert a.mapping.kind == NatKind.EIM
    a.config.target_neighbours = 5  # (shared config) looking for more neighbours
    cands = [key(2), key(5), key(6)]
    lie = wire.Neighbours(keys=cands)  # the keys of A's candidates, as any viewer learns them
    a.on_message(("L", 1, 4), key(4), lie, net.now)
    a.on_candidates([pp.Candidate(k, public(k[1]), 4000) for k in cands], net.now, verified=True)
    net.run()
    t = net.now
    while t < 60.0:  # 50 s, the liar listing them again every 10 s
        t += 0.5
        if int(t * 2) % 20 == 0:
            a.on_message(("L", 1, 4), key(4), lie, t)
        net.tick(t)
    dialled = {d.peer for i, d in net.dials if i == 1}
    assert net.swallowed >= 3
    assert dialled == set(cands), dialled  # was: none, an INTRO to the liar every 6 s each
    assert net.swallowed <= 2 * len(cands)  # was: ~8 per candidate in 50 s
    assert a.nat.counters.punch_intros_failed >= 3
