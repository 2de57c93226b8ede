"""The iterative lookup state machine: disjoint paths, termination, budgets, hops."""

from __future__ import annotations

import random

from dhtkit import host

from oasis.core.dhtlookup import ANSWERED, ASKED, FAILED, Lookup
from oasis.core.dhtrecord import node_id

RNG = random.Random(4)
TARGET = RNG.getrandbits(256)


def lookup(kind: str = "nodes", **kw) -> Lookup:
    args = dict(k=4, alpha=2, paths=2, max_candidates=16, max_queries=60, max_hops=12, want=1,
                deadline=10.0)
    args.update(kw)
    return Lookup(1, kind, TARGET, 0.0, **args)  # type: ignore[arg-type]


def contacts(n: int) -> list[tuple[bytes, int, str, int]]:
    out = []
    for i in range(n):
        k = RNG.randbytes(32)
        out.append((k, node_id(k), host(i), 1))
    out.sort(key=lambda c: c[1] ^ TARGET)
    return out


def test_seeds_are_dealt_round_robin_and_paths_stay_disjoint() -> None:
    lk = lookup()
    seeds = contacts(6)
    lk.seed(seeds)
    asked = lk.next_queries()
    assert [c.key for c in asked] == [seeds[i][0] for i in (0, 2, 1, 3)]  # path 0, then path 1
    assert {c.path for c in asked} == {0, 1}
    # path 0's node names a node path 1 already holds: it stays with path 1
    lk.answered(seeds[0][0], [seeds[5]], 0.1)
    assert lk.owner[seeds[5][0]].path == 1
    extra = contacts(1)
    lk.answered(seeds[2][0], extra, 0.1)
    assert lk.owner[extra[0][0]].path == 0 and lk.owner[extra[0][0]].hop == 2


def test_a_nodes_lookup_asks_only_the_k_nearest_and_ends_when_they_answered() -> None:
    lk = lookup(paths=1, k=3, alpha=3)
    seeds = contacts(8)
    lk.seed(seeds)
    first = lk.next_queries()
    assert [c.key for c in first] == [s[0] for s in seeds[:3]]
    for c in first:
        lk.answered(c.key, [], 0.1)
    assert lk.next_queries() == [] and lk.done
    assert [c.key for c in lk.closest_answered()] == [s[0] for s in seeds[:3]]
    assert lk.hops() == 1


def test_a_failed_node_makes_room_for_the_next() -> None:
    lk = lookup(paths=1, k=2, alpha=2)
    seeds = contacts(4)
    lk.seed(seeds)
    a, b = lk.next_queries()
    lk.failed(a.key)
    (c,) = lk.next_queries()
    assert c.key == seeds[2][0] and lk.owner[a.key].state == FAILED
    lk.answered(a.key, [], 0.5)  # late: still used
    assert lk.owner[a.key].state == ANSWERED and lk.owner[b.key].state == ASKED


def test_a_stalled_nodes_lookup_asks_all_of_the_top_k() -> None:
    lk = lookup(paths=1, k=6, alpha=1)
    seeds = contacts(8)
    lk.seed(seeds[2:])
    (first,) = lk.next_queries()
    lk.answered(first.key, seeds[:2], 0.1)  # progress: still alpha = 1
    assert len(lk.next_queries()) == 1
    nxt = [c for c in lk.owner.values() if c.state == ASKED][0]
    lk.answered(nxt.key, [], 0.2)  # no progress: the rest of the top 6 at once
    assert len(lk.next_queries()) == 4


def test_a_providers_lookup_walks_past_the_top_k_until_a_record() -> None:
    lk = lookup("providers", paths=1, k=2, alpha=1, want=3)
    seeds = contacts(6)
    lk.seed(seeds)
    for i in range(5):  # sybils near the target hold nothing: the walk goes on
        (c,) = lk.next_queries()
        assert c.key == seeds[i][0]
        lk.answered(c.key, [], 0.1 * i)
    (c,) = lk.next_queries()
    lk.answered(c.key, [], 0.6)
    lk.found(c.key, 0.6)
    assert lk.first_found == 0.6 and lk.found_hop == 1
    assert lk.next_queries() == [] and lk.done


def test_budget_hops_and_candidate_caps() -> None:
    lk = lookup("providers", paths=1, alpha=1, max_queries=3, max_candidates=4, max_hops=2)
    seeds = contacts(10)
    lk.seed(seeds[6:])
    assert len(lk.paths[0].cands) == 4
    (c,) = lk.next_queries()
    lk.answered(c.key, seeds[:6], 0.1)  # nearer ones push the farthest unasked out
    assert len(lk.paths[0].cands) == 4 and c.key in lk.owner
    (c2,) = lk.next_queries()
    assert lk.owner[c2.key].hop == 2
    lk.answered(c2.key, contacts(1), 0.2)  # hop 3: never asked (max_hops 2)
    asked = lk.next_queries()
    assert all(x.hop <= 2 for x in asked)
    for x in asked:
        lk.answered(x.key, [], 0.3)
    assert lk.queries == 3 and lk.next_queries() == [] and lk.done
