"""Attack: a silent introducer keeps a NATed node from its candidates (docs/oftp.md §15.2-15.3).

Behind a NAT (kind EIM or SYMMETRIC) a node punches every candidate that a linked neighbour
can introduce instead of dialling it, through the newest neighbour that listed it in
NEIGHBOURS. The attacker is one neighbour of the NATed node A: it lists the keys of A's
candidates (anyone in the swarm learns them: the tracker, the DHT) every 10 s and drops
every PUNCH INTRO A sends it. Measured over ``--seconds`` of virtual time on the real
``PeerPolicy`` (the harness of tests/core/test_core_nat.py: policies joined by links,
messages delivered at once): how many candidates A dialled, how many INTROs the attacker
swallowed. Run from the repository root; prints JSON.

PYTHONPATH=. python bench/atk6_silent_introducer.py [--candidates 8] [--seconds 120]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "core"))

from test_core_nat import key, public  # noqa: E402
from test_core_nat_atk6 import SilentIntroducer  # noqa: E402

from oasis.core import peer as pp  # noqa: E402
from oasis.core import wire  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=120.0)
    a = ap.parse_args()
    n = 4 + a.candidates
    net = SilentIntroducer(n)
    net.link(1, 3)
    net.link(1, 4)
    net.tick(10.0)
    p = net.p[1]
    p.config.target_neighbours = 2 + a.candidates
    cands = [key(i) for i in range(5, n + 1)]
    lie = wire.Neighbours(keys=cands)
    p.on_message(("L", 1, 4), key(4), lie, net.now)
    p.on_candidates([pp.Candidate(k, public(k[1]), 4000) for k in cands], net.now, verified=True)
    net.run()
    t, first = net.now, {}
    while t < 10.0 + a.seconds:
        t += 0.5
        if int(t * 2) % 20 == 0:
            p.on_message(("L", 1, 4), key(4), lie, t)
        net.tick(t)
        for i, d in net.dials:
            if i == 1 and d.peer not in first:
                first[d.peer] = t - 10.0
    print(json.dumps({"nat_kind": p.mapping.kind.name, "candidates": a.candidates, "seconds": a.seconds,
                      "candidates_dialled": len(first),
                      "first_dial_after_s": sorted(first.values())[:1] + sorted(first.values())[-1:],
                      "intros_swallowed_by_the_liar": net.swallowed,
                      "punch_intros_failed": p.nat.counters.punch_intros_failed}, sort_keys=True))


if __name__ == "__main__":
    main()
