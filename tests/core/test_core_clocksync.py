"""A viewer's clock against its broadcaster's (oasis.core.clocksync): NTP's offset from
request/answer exchanges, the shortest round trip kept, small offsets left alone."""

from __future__ import annotations

from oasis.core import clocksync as cs


def test_the_exchange_with_the_shortest_round_trip_gives_the_offset() -> None:
    # our clock 1.0 s ahead; round trips 0.3, 0.02 and 0.1 s (the answer half way)
    ex = [(100.0, 99.15, 100.3), (101.0, 100.01, 101.02), (102.0, 101.05, 102.1)]
    offset, rtt = cs.offset_of(ex) or (None, None)
    assert rtt is not None and abs(rtt - 0.02) < 1e-9
    assert offset is not None and abs(offset - 1.0) < 1e-9
    assert abs(cs.correction(ex) - 1.0) < 1e-9
    assert not cs.unsure(ex)


def test_a_clock_behind_is_corrected_too() -> None:
    ex = [(50.0, 50.41, 50.02)]  # 0.4 s behind
    assert abs(cs.correction(ex) - (-0.4)) < 1e-9


def test_a_synchronised_clock_is_left_alone() -> None:
    assert cs.correction([(10.0, 10.03, 10.04)]) == 0.0  # 0.01 s: within MIN_OFFSET
    assert cs.correction([]) == 0.0 and cs.unsure([])


def test_an_offset_within_half_the_round_trip_is_not_told_apart_from_zero() -> None:
    # 0.2 s off, but the only exchange took 0.6 s: the answer could be anywhere in it
    ex = [(10.0, 10.1, 10.6)]
    assert cs.correction(ex) == 0.0
    assert cs.unsure(ex)  # more exchanges may tell
    assert abs(cs.correction([*ex, (20.0, 19.81, 20.02)]) - 0.2) < 1e-9  # a quicker one does


def test_broken_answers_are_refused() -> None:
    assert cs.offset_of([(10.0, 9.0, 9.5)]) is None  # answered before it was asked
    assert cs.offset_of([(10.0, 10.0 - 2 * cs.MAX_OFFSET, 10.1)]) is None  # days off
    assert cs.correction([(10.0, -1e12, 10.1)]) == 0.0
