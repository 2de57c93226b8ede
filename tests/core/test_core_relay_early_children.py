"""``relay_early_children`` (2 by default; 1: every relay): a late relay's early origin fetch
(``relay_origin_early``) only on a substream where it feeds at least that many children.

For one child the early fetch costs the origin what the child's own fallback would, and the
child may still get the relay's push, or a repair, in time; for two or more it saves fetches.
"""

from __future__ import annotations

from repairbench import late_relay

from oasis.core import swarm as sw


def _relay(children: int, need: int) -> sw.Swarm:
    """A relay whose parent pushes every chunk 0.33 s after its time (its children's copy
    would come after their own fallback at 0.38 s) and ``children`` children on substream 0."""
    node = late_relay(children, relay_early_children=need)
    assert node.delay.late[0]
    assert sum(1 for st in node.peers.values() if st.children_mask & 1) == children
    return node


def _fetched_early(node: sw.Swarm, seq: int) -> bool:
    """The repair round of ``seq`` (substream 0) finds nobody to ask: did it ask the origin?"""
    t = 1.0 + seq * 0.1
    node.handle_timer(t + node.delay.cap + 0.001)
    return any(isinstance(a, sw.FetchOrigin) and a.seq == seq for a in node.actions())


def test_one_child_gets_no_early_fetch_two_do() -> None:
    gap = 40  # substream 0
    one = _relay(1, 2)
    assert not _fetched_early(one, gap)
    assert one.counters.origin_early == 0
    # the one child's own fallback is unchanged; ours comes at the origin time as a leaf's
    one.handle_timer(1.0 + gap * 0.1 + one.delay.origin_at + 0.001)
    assert [a for a in one.actions() if isinstance(a, sw.FetchOrigin) and a.seq == gap]
    two = _relay(2, 2)
    assert _fetched_early(two, gap)
    assert two.counters.origin_early == 1


def test_at_one_every_relay_fetches_early_and_the_default_is_two() -> None:
    node = _relay(1, 1)
    assert _fetched_early(node, 40)
    assert node.counters.origin_early == 1
    assert sw.SwarmConfig().relay_early_children == 2
