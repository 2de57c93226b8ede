"""The pull budget and the held-request table (core/pull.py), driven directly."""

from __future__ import annotations

from oasis.core.pull import HeldRequests, PullBudget


def test_budget_refills_at_its_rate_up_to_its_depth() -> None:
    b = PullBudget(0.0)
    assert b.take(1000, rate=100, depth=1000, now=0.0)  # starts full
    assert not b.take(1, rate=100, depth=1000, now=0.0)
    assert not b.take(600, rate=100, depth=1000, now=5.0)  # 500 refilled
    assert b.take(500, rate=100, depth=1000, now=5.0)
    assert b.take(1000, rate=100, depth=1000, now=1000.0)  # never above the depth
    assert not b.take(1, rate=100, depth=1000, now=1000.0)


def test_strikes_are_forgiven_at_limit_per_window() -> None:
    b = PullBudget(0.0)
    assert not any(b.strike(10, 10.0, 0.0) for _ in range(9))
    assert b.strike(10, 10.0, 0.0)  # the 10th at once: flooding
    b2 = PullBudget(0.0)
    # one refusal per second is forgiven as fast as it comes: never a flood
    assert not any(b2.strike(10, 10.0, float(t)) for t in range(100))


def test_held_table_caps_and_expiry_order() -> None:
    h = HeldRequests(per_peer=3, total=5)
    a, b = b"a" * 32, b"b" * 32
    assert all(h.hold(a, s, 10.0 + s) for s in range(3))
    assert not h.hold(a, 99, 1.0)  # per-peer cap
    assert h.hold(a, 0, 10.0)  # the same request again: still one entry
    assert h.hold(b, 7, 5.0) and h.hold(b, 8, 6.0)
    assert not h.hold(b, 9, 7.0)  # total cap
    assert len(h) == 5 and h.next_deadline() == 5.0
    assert h.take(b, 7) == 5.0 and h.take(b, 7) is None
    assert h.next_deadline() == 6.0  # the served entry left the heap's top
    assert h.expire(10.5) == [(b, 8), (a, 0)]
    h.forget(a)
    assert len(h) == 0 and h.next_deadline() == float("inf")


def test_heap_of_served_requests_is_compacted() -> None:
    """Held requests answered early leave dead heap entries; the heap stays bounded."""
    h = HeldRequests(per_peer=64, total=100)
    peer = b"p" * 32
    for s in range(100_000):
        assert h.hold(peer, s, 1e9 + s)
        assert h.take(peer, s) is not None
    assert len(h) == 0
    assert len(h._heap) <= 4 * h.cap + 64
