"""The simulated population churns at the rate its scenario names."""

from __future__ import annotations

import dataclasses

import pytest

from oasis.sim import population
from oasis.sim.netmodel import World
from oasis.sim.scenario import Scenario


@pytest.mark.parametrize(("peers", "duration", "churn"), [(1000, 120, 0.1), (1000, 600, 0.1), (300, 60, 0.3)])
def test_departures_run_at_churn_per_min_of_the_swarm(peers: int, duration: float, churn: float) -> None:
    """``churn_per_min`` 0.1 is 10 % of the swarm leaving a minute, from the first second:
    the viewers found watching at the start leave after the rest of a size-biased
    session. (Their plain session length times a uniform made 2-7 times as many leave in
    runs of 20-120 s, the heavy-tailed body's short sessions all ending at once.)"""
    s = dataclasses.replace(Scenario(), peers=peers, duration_s=duration, churn_per_min=churn, ramp_s=10)
    counts = []
    for seed in (1, 2, 3):
        _, viewers = population.build(s, World(), seed)
        counts.append(sum(1 for v in viewers if v.leave < duration))
    expected = peers * churn * duration / 60
    mean = sum(counts) / len(counts)
    assert 0.75 * expected <= mean <= 1.25 * expected, (counts, expected)
