"""``dial_patience`` (issue 10, h-nat9): a NAT drops a dial to the peer behind it without a
word, so a newcomer whose first round of dials went to NATed tracker entries waited out the
connect timeout with no link. With ``dial_patience`` a plain dial still under way that long
after it began no longer counts against the target while the node has fewer than
``patience_links`` neighbours: more candidates are dialled, the slow dials may still
complete."""

from __future__ import annotations

import dataclasses
import random

from oasis.core import peer as pp
from oasis.core.dialplan import INF, Candidate, DialPlan


def _key(i: int) -> bytes:
    return i.to_bytes(2, "big") * 16


def _plan(**kw: float | int) -> DialPlan:
    cfg = dataclasses.replace(pp.PolicyConfig(), **kw)
    plan = DialPlan(b"\x01" * 32, cfg, pp.PeerCounters(), random.Random(1), now=0.0)
    cands = [Candidate(_key(i), f"203.0.{i // 200}.{i % 200 + 1}", 4433) for i in range(40)]
    plan.offer(cands, 0.0, verified=True, interval=None, linked=0)
    return plan


def test_slow_dials_make_room_for_more_while_the_node_has_no_link() -> None:
    plan = _plan(dial_patience=0.5)
    first = plan.plan(0.0, 0, lambda _k: False)
    assert len(first) == plan.config.max_dials_per_round == 8
    assert plan.get_timer() == 0.5  # the policy plans again then
    again = plan.plan(0.5, 0, lambda _k: False)
    # the 8 slow dials count no more: a new round
    assert len(again) == plan.config.max_dials_per_round
    assert not {d.peer for d in again} & {d.peer for d in first}
    assert len(plan.dialling) == 16  # the first ones may still come up
    assert plan.get_timer() == 1.0
    # at most the target + a round under way at once (12 + 8)
    assert len(plan.plan(0.6, 0, lambda _k: False)) == 4
    assert plan.plan(1.0, 0, lambda _k: False) == []
    assert len(plan.dialling) == 20


def test_off_or_once_linked_the_dials_under_way_count_until_they_end() -> None:
    off = _plan(dial_patience=0.0)
    assert len(off.plan(0.0, 0, lambda _k: False)) == 8
    assert off.get_timer() == off.announce_at  # no patience timer
    assert len(off.plan(1.0, 0, lambda _k: False)) == 6  # 12 + 2 - 8 under way, as before
    assert off.plan(2.0, 0, lambda _k: False) == []
    on = _plan(dial_patience=0.5)
    assert len(on.plan(0.0, 0, lambda _k: False)) == 8
    # one link is up (``patience_links`` 1): the patience is over, the dials count again
    assert len(on.plan(1.0, 1, lambda _k: False)) == 5
    assert on.patience_at == INF and not on.dial_began
    assert on.plan(2.0, 1, lambda _k: False) == []


def test_the_policy_plans_again_when_the_first_dials_are_slow() -> None:
    cfg = dataclasses.replace(pp.PolicyConfig(), dial_patience=0.5)
    policy: pp.PeerPolicy[int] = pp.PeerPolicy(b"\x02" * 32, cfg, rng=random.Random(2), now=0.0)
    cands = [pp.Candidate(_key(i), f"203.0.{i // 200}.{i % 200 + 1}", 4433) for i in range(40)]
    policy.handle_timer(0.0)
    policy.on_candidates(cands, 0.0, verified=True, interval=10.0)
    first = [a for a in policy.actions() if isinstance(a, pp.Dial)]
    assert len(first) == 8
    t = policy.get_timer()
    assert t == 0.5
    policy.handle_timer(t)
    second = [a for a in policy.actions() if isinstance(a, pp.Dial)]
    assert len(second) == 8
    off: pp.PeerPolicy[int] = pp.PeerPolicy(b"\x02" * 32, dataclasses.replace(cfg, dial_patience=0.0),
                                            rng=random.Random(2), now=0.0)
    off.handle_timer(0.0)
    off.on_candidates(cands, 0.0, verified=True, interval=10.0)
    assert len([a for a in off.actions() if isinstance(a, pp.Dial)]) == 8
    assert off.get_timer() > 0.5
