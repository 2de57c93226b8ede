"""Parent flapping (issue 8, h-atk7), mounted against real Swarm cores in virtual time.

A neighbour F advertises the best path there is; once a viewer takes a substream from it,
F pushes it one chunk (so the viewer lets its previous parent go) and then says it lost its
feed (``unfed``): the viewer keeps it ``subscribe_timeout`` with nothing counted against
it, no pushes on that substream for it or its subtree, then drops it -- and took it again
at its next periodic look, for ever: no strike, no back-off. Now such a parent, dropped
before it served us, is backed off (``PeerState.flaps``, ``tree.flap_backoff``). Over 25 s
of ``bench/atk7_parent_flap.py`` (15 viewers, seeds 1, 2, 4) the victims took F 144-161
times and drew 37.5-38.3 % of their chunks from the origin; with the back-off 48-54 times
and 17.3-31.8 %. A path through the viewer (``loop``) is dropped at once and costs nothing:
not backed off.
"""

from __future__ import annotations

from flapper import run

from oasis.core import swarm as sw
from oasis.core.tree import FLAP_BACKOFF_MAX, flap_backoff

#: F claims a 5 ms lag, not 0: a one-hop path at zero lag on three substreams or more is
#: doubted (``one_hop_doubt``, on by default since h-odoubt) and F would then never be taken
#: while another parent is a candidate, which hides the flapping this file tests
ARGS = {"viewers": 12, "seed": 2, "attack_at": 3.0, "duration": 22.0, "status_every": 0.2, "claim_lag_ms": 5}


def test_the_flap_back_off_grows_per_drop_and_is_bounded() -> None:
    cfg = sw.SwarmConfig()
    waits = [flap_backoff(cfg, n) for n in range(1, 12)]
    assert waits[0] == cfg.reject_backoff  # the first: an honest parent can lose its feed
    assert waits[1] == cfg.withhold_backoff and waits[2] == 2 * cfg.withhold_backoff
    assert waits == sorted(waits) and waits[-1] == FLAP_BACKOFF_MAX


def test_a_parent_that_takes_us_and_loses_its_feed_is_backed_off() -> None:
    off = run("unfed", flap_backoff=False, **ARGS)  # type: ignore[arg-type]
    on = run("unfed", **ARGS)  # type: ignore[arg-type]
    # counted (without the back-off too); 11 victims: 75 drops without, 35 with it
    # (the counts in these comments: this file's ARGS at 804595e)
    assert on["f_flaps"] >= on["victims"] and off["f_flaps"] > on["f_flaps"]
    # the victims take F far less often (101 -> 28 SUBSCRIBEs), F holds far fewer of their
    # substreams (20.4 % -> 7.8 % of the time) and less comes from the origin (40.4 -> 34.9 %)
    assert on["subscribes_to_f"] * 2 < off["subscribes_to_f"], (on, off)
    assert on["f_parent_share"] * 1.5 < off["f_parent_share"], (on, off)
    assert on["origin_share"] < off["origin_share"], (on, off)
    assert on["missed"] == 0 and on["late"] == 0


def test_a_parent_whose_path_runs_through_us_is_dropped_at_once_and_not_backed_off() -> None:
    r = run("loop", **ARGS)  # type: ignore[arg-type]
    assert r["f_flaps"] == 0, r  # not counted as a flap, so not backed off
    # Dropped at once: each time a victim takes F, F holds that substream only until its
    # next STATUS shows the loop (``status_every`` 0.2 s + a one-way delay). How often F is
    # taken follows how often the victims look: with ``deep_look`` 6, 310 SUBSCRIBEs and 5.1 %
    # of the victims' substream-time; at 4 (the default since 2026-12-07), deep victims look
    # every 0.5 s: 591 and 8.6 %, the same ~0.13 s a take. Kept for the unfed grace
    # (``subscribe_timeout``, 2 s) or for good, a take would hold for seconds.
    held = r["f_parent_share"] * r["victims"] * sw.SwarmConfig().substreams * r["seconds"]
    assert r["subscribes_to_f"] > 0 and held / r["subscribes_to_f"] < 0.25, r
    assert r["missed"] == 0 and r["late"] == 0, r


def test_honest_parents_in_a_calm_swarm_are_not_backed_off() -> None:
    r = run("honest", **{**ARGS, "duration": 10.0})  # type: ignore[arg-type]
    assert r["counters"]["parents_flapping"] == 0 and r["origin_share"] == 0.0, r
