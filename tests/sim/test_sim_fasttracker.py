"""FastTracker (the simulator's O(sample) tracker) keeps the core Tracker's rule."""

from __future__ import annotations

import random

from oasis.sim.fasttracker import FastTracker


def test_broadcaster_first_no_self_no_duplicates_departed_gone() -> None:
    t = FastTracker(sample=8, rng=random.Random(1))
    t.announce("bc", is_broadcaster=True)
    for i in range(100):
        t.announce(f"v{i}", area="a")
    for _ in range(50):
        got = t.announce("v7", area="a")
        assert got[0] == "bc" and "v7" not in got and len(got) == 8 == len(set(got))
    for i in range(0, 100, 2):
        t.announce(f"v{i}", leaving=True)
    seen = {p for _ in range(200) for p in t.announce("v1", area="a")}
    assert not any(f"v{i}" in seen for i in range(0, 100, 2))
    assert len(seen) > 30  # random, not a fixed subset


def test_locality_share_from_the_same_area() -> None:
    t = FastTracker(sample=10, rng=random.Random(2), locality=0.5)
    for i in range(1000):
        t.announce(f"v{i}", area="FR" if i % 20 == 0 else "US")
    area = {f"v{i}": ("FR" if i % 20 == 0 else "US") for i in range(1000)}
    for _ in range(50):
        got = t.announce("me", area="FR")
        assert len(got) == 10 == len(set(got)) and "me" not in got
        assert sum(area[p] == "FR" for p in got) >= 5
    uniform = FastTracker(sample=10, rng=random.Random(2), locality=0.0)
    for i in range(1000):
        uniform.announce(f"v{i}", area=area[f"v{i}"])
    frs = sum(area[p] == "FR" for _ in range(50) for p in uniform.announce("me", area="FR"))
    assert frs < 75  # about 5 % of 500


def test_small_swarm_returns_everyone() -> None:
    t = FastTracker(sample=20, rng=random.Random(3), locality=0.5)
    for i in range(5):
        t.announce(f"v{i}", area="a" if i < 2 else "b")
    assert sorted(t.announce("v0", area="a")) == ["v1", "v2", "v3", "v4"]
