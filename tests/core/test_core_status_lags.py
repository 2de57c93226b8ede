"""STATUS ``lags`` (docs/oftp.md § STATUS): a measured delay is sent in whole ms and never as 0,
so an honest child of the broadcaster on loopback or a LAN (a push under a millisecond) is not
mistaken for a peer claiming the impossible (``one_hop_doubt`` doubts a zero-lag one-hop claim)."""

from __future__ import annotations

from oasis.core import wire
from oasis.core.delay import DelayEstimator


def _estimator(samples: list[float]) -> DelayEstimator:
    d = DelayEstimator(1, repair_after=0.15, playout_delay=0.5, origin_margin=0.2)
    for s in samples:
        d.sample(0, s, fed=True)
    return d


def test_a_sub_millisecond_delay_is_sent_as_one_ms() -> None:
    assert _estimator([0.0003, 0.0004, 0.0002]).status_lags([b"p" * 32]) == [1]
    assert _estimator([0.0]).status_lags([b"p" * 32]) == [1]


def test_a_measured_delay_is_sent_in_whole_ms() -> None:
    assert _estimator([0.025]).status_lags([b"p" * 32]) == [25]
    assert _estimator([0.0019]).status_lags([b"p" * 32]) == [1]


def test_no_parent_or_no_sample_is_unknown_and_a_negative_delay_is_not_zero() -> None:
    assert _estimator([]).status_lags([b"p" * 32]) == [wire.LAG_UNKNOWN]
    assert _estimator([0.01]).status_lags([None]) == [wire.LAG_UNKNOWN]
    # a clock behind the broadcaster's: a delay below 0 is not claimed as 0 (nor as a lag)
    assert _estimator([-0.05]).status_lags([b"p" * 32]) == [wire.LAG_UNKNOWN - 1]
