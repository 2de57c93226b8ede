"""Dials to one host at once (issue 8, h-atk7): candidates are signed by their own keys, which
are free, so a tracker's (or DHT's) answer can name one host -- not an Oasis node, perhaps --
under many keys and ports. Each was dialled at once (14 dials under way to 4 addresses of
one host: ``bench/atk7_tracker_dials.py``). Now one dial per address and
``max_dials_per_ip`` per IP are under way at a time."""

from __future__ import annotations

import random

from oasis.core import peer as pp
from oasis.core.dialplan import Candidate, DialPlan


def _plan() -> DialPlan:
    return DialPlan(b"\x01" * 32, pp.PolicyConfig(), pp.PeerCounters(), random.Random(1), now=0.0)


def _key(i: int) -> bytes:
    return i.to_bytes(2, "big") * 16


def test_many_keys_at_one_host_are_dialled_two_at_a_time() -> None:
    plan = _plan()
    victim = [Candidate(_key(i), "198.51.100.7", 4000 + i) for i in range(50)]
    honest = [Candidate(_key(1000 + i), f"203.0.113.{i + 1}", 4433) for i in range(6)]
    plan.offer(victim + honest, 0.0, verified=True, interval=None, linked=0)
    dials = plan.plan(0.0, 0, lambda _k: False)
    at_victim = [d for d in dials if d.host == "198.51.100.7"]
    assert len(at_victim) == plan.config.max_dials_per_ip == 2
    assert {d.host for d in dials} >= {c.host for c in honest}  # the others are not held up
    assert plan.counters.dials_held_per_ip > 0
    # the next round dials no more there while those two are under way ...
    again = plan.plan(1.0, 0, lambda _k: False)
    assert not [d for d in again if d.host == "198.51.100.7"]
    # ... and one more once one of them failed
    plan.failed(at_victim[0].peer, 2.0)
    later = plan.plan(2.0, 0, lambda _k: False)
    assert len([d for d in later if d.host == "198.51.100.7"]) == 1


def test_many_keys_at_one_address_are_dialled_one_at_a_time() -> None:
    plan = _plan()
    same = [Candidate(_key(i), "198.51.100.7", 4433) for i in range(20)]
    plan.offer(same, 0.0, verified=True, interval=None, linked=0)
    assert len(plan.plan(0.0, 0, lambda _k: False)) == 1


def test_loopback_is_exempt_from_the_per_ip_limit_not_from_one_per_address() -> None:
    plan = _plan()
    local = [Candidate(_key(i), "127.0.0.1", 5000 + i) for i in range(10)]
    plan.offer(local + [Candidate(_key(99), "127.0.0.1", 5000)], 0.0, verified=True, interval=None, linked=0)
    dials = plan.plan(0.0, 0, lambda _k: False)
    n = plan.config.max_dials_per_round
    assert n > plan.config.max_dials_per_ip
    assert len(dials) == n and len({(d.host, d.port) for d in dials}) == n
