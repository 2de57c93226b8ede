"""Tracker rules: sampling, broadcaster always included, expiry, leaving, caps."""

from __future__ import annotations

import random

import pytest

from oasis.core import tracker as tr
from oasis.core.tracker import Tracker

S = "bc.stream-a"  # a stream id starts with its broadcaster's peer id


def make(sample: int = 3, ttl: float = 30.0) -> Tracker:
    return Tracker(ttl=ttl, sample=sample, rng=random.Random(5))


def ids(peers) -> list[str]:
    return [p.peer_id for p in peers]


def test_sample_always_includes_broadcaster() -> None:
    t = make(sample=3)
    assert t.announce(S, "bc", "10.0.0.1", 1, 0.0, is_broadcaster=True) == []
    for i in range(10):
        got = t.announce(S, f"v{i}", "10.0.0.2", 100 + i, 1.0)
        assert ids(got)[0] == "bc"
        assert got[0].is_broadcaster and (got[0].host, got[0].port) == ("10.0.0.1", 1)
        assert len(got) == min(3, i + 1)
        assert f"v{i}" not in ids(got)
        assert len(set(ids(got))) == len(got)
    # The broadcaster itself gets only others.
    got = t.announce(S, "bc", "10.0.0.1", 1, 2.0)
    assert "bc" not in ids(got) and len(got) == 3


def test_only_the_streams_own_key_is_broadcaster() -> None:
    t = make()
    t.announce(S, "mallory", "h", 9, 0.0, is_broadcaster=True, origin="http://evil/")
    assert not t.streams[S]["mallory"].is_broadcaster
    assert S not in t.origins


def test_broadcaster_flag_is_sticky() -> None:
    t = make()
    t.announce(S, "bc", "h", 1, 0.0, is_broadcaster=True)
    t.announce(S, "bc", "h", 1, 1.0)  # re-announce without the flag
    assert t.streams[S]["bc"].is_broadcaster
    assert ids(t.announce(S, "v", "h", 2, 1.0))[0] == "bc"


def test_sample_is_random_subset_of_others() -> None:
    t = make(sample=5)
    for i in range(30):
        t.announce(S, f"v{i}", "h", i, 0.0)
    seen: set[str] = set()
    for _ in range(20):
        got = ids(t.announce(S, "me", "h", 99, 1.0))
        assert len(got) == 5 and "me" not in got
        seen |= set(got)
    assert len(seen) > 10  # not always the same five


def test_expiry_after_ttl() -> None:
    t = make(ttl=30.0)
    t.announce(S, "old", "h", 1, 0.0)
    assert ids(t.announce(S, "x", "h", 2, 30.0)) == ["old"]  # exactly ttl: still there
    assert ids(t.announce(S, "y", "h", 3, 30.5)) == ["x"]  # old expired; x fresh
    assert set(t.streams[S]) == {"x", "y"}


def test_reannounce_refreshes() -> None:
    t = make(ttl=10.0)
    t.announce(S, "a", "h", 1, 0.0)
    t.announce(S, "a", "h", 1, 8.0)
    assert ids(t.announce(S, "b", "h", 2, 15.0)) == ["a"]


def test_broadcaster_expires_too() -> None:
    t = make(ttl=10.0)
    t.announce(S, "bc", "h", 1, 0.0, is_broadcaster=True)
    assert ids(t.announce(S, "v", "h", 2, 20.0)) == []


def test_leaving_removes() -> None:
    t = make()
    t.announce(S, "a", "h", 1, 0.0)
    t.announce(S, "b", "h", 2, 0.0)
    assert t.announce(S, "a", "h", 1, 1.0, leaving=True) == []
    assert ids(t.announce(S, "c", "h", 3, 1.0)) == ["b"]


def test_streams_are_separate_and_origin_recorded() -> None:
    t = make()
    t.announce("s1", "a", "h", 1, 0.0, origin="https://cdn/s1/")  # "a" is not s1's broadcaster
    assert t.origins == {}
    t.announce("a.s1", "a", "h", 1, 0.0, origin="https://cdn/s1/")
    assert t.announce("s2", "b", "h", 2, 0.0) == []
    assert t.origins == {"a.s1": "https://cdn/s1/"}
    assert sorted(t.stream_ids()) == ["a.s1", "s1", "s2"]


def test_stream_cap_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tr, "MAX_STREAMS", 2)
    t = make()
    t.announce("s1", "a", "h", 1, 0.0)
    t.announce("s2", "a", "h", 1, 0.0)
    with pytest.raises(OverflowError):
        t.announce("s3", "a", "h", 1, 0.0)
    t.announce("s1", "b", "h", 1, 0.0)  # existing streams still work


def test_peer_cap_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tr, "MAX_PEERS_PER_STREAM", 3)
    t = make()
    for p in ("a", "b", "c"):
        t.announce(S, p, "h", 1, 0.0)
    with pytest.raises(OverflowError):
        t.announce(S, "d", "h", 1, 0.0)
    t.announce(S, "a", "h", 1, 1.0)  # a known peer may re-announce at the cap
    t.announce(S, "a", "h", 1, 1.0, leaving=True)
    t.announce(S, "d", "h", 1, 1.0)  # room again after a leave


def test_dead_streams_do_not_count_against_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tr, "MAX_STREAMS", 2)
    t = make(ttl=10.0)
    t.announce("s1", "a", "h", 1, 0.0)
    t.announce("s1", "a", "h", 1, 0.0, leaving=True)  # s1 is now empty
    t.announce("s2", "a", "h", 1, 0.0)  # s2 expires at t=10
    t.announce("s3", "a", "h", 1, 100.0)  # no live stream besides this one


def test_locality_takes_a_share_of_the_sample_from_the_same_area() -> None:
    t = Tracker(sample=10, locality=0.5, rng=random.Random(3))
    for i in range(200):
        t.announce(S, f"v{i}", "h", i + 1, 0.0, area="FR" if i % 10 == 0 else "US")
    for _ in range(20):
        got = t.announce(S, "me", "h", 999, 1.0, area="FR")
        assert len(got) == 10 and "me" not in ids(got) and len(set(ids(got))) == 10
        # 5 of 10 from FR (1 in 10 of the others), the other 5 uniform
        assert sum(p.area == "FR" for p in got) >= 5
    # no area (or locality 0): uniform; FR is 10 % of the peers
    frs = sum(p.area == "FR" for _ in range(20) for p in t.announce(S, "x", "h", 998, 1.0))
    assert frs < 60


def test_locality_falls_back_to_everyone_when_the_area_is_small() -> None:
    t = Tracker(sample=6, locality=0.5, rng=random.Random(4))
    t.announce(S, "only-fr", "h", 1, 0.0, area="FR")
    for i in range(50):
        t.announce(S, f"v{i}", "h", i + 2, 0.0, area="US")
    got = t.announce(S, "me", "h", 999, 1.0, area="FR")
    assert len(got) == 6 and "only-fr" in ids(got)
    assert t.announce(S, "long", "h", 997, 1.0, area="X" * 100) and \
        len(t.streams[S]["long"].area) == tr.MAX_AREA
