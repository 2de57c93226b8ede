"""Hostile peers in the simulator (oasis/sim/adversary.py) against the real swarm core.

A small swarm where 20 % of the viewers are adversaries of every mode (lying
STATUS, withholding, forged and replayed chunks, REQUEST floods, silent links,
sybil relays that defect at once). The honest viewers run the unmodified core.
Asserted: behaviour, not speed — every adversary mode acted, not one forged
chunk was delivered to an honest viewer, forged chunks were detected, every
honest viewer started and kept playing, and a run without adversaries is the
run it always was.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oasis.sim import adversary as adv
from oasis.sim import runner
from oasis.sim.scenario import from_dict, load

ROOT = Path(__file__).resolve().parents[2]
HOSTILE_SMALL = ROOT / "scenarios" / "hostile-small.toml"


@pytest.fixture(scope="module")
def hostile_run() -> dict:
    return runner.run(load(HOSTILE_SMALL), timing=False)["oasis"]


def test_every_mode_acts(hostile_run: dict) -> None:
    h = hostile_run["hostile"]
    assert set(h["modes"]) == {adv.NAMES[m] for m in adv.DEFAULT_MODES}, h["modes"]
    sent = h["sent"]
    for k in ("lies_sent", "forged_sent", "replayed_sent", "requests_sent", "pushes_withheld",
              "sent_dropped_silent"):
        assert sent[k] > 0, (k, sent)
    assert hostile_run["honest_viewers"] == hostile_run["viewers"] - h["peers"]


def test_no_forged_chunk_is_ever_delivered_and_forgers_are_caught(hostile_run: dict) -> None:
    h = hostile_run["hostile"]
    assert h["forged_delivered"] == 0
    assert h["honest_counters"]["bad_chunks"] > 0  # the forged chunks arrived and failed
    assert h["dropped_by_honest"].get("forge", 0) > 0  # and their senders were cut off


def test_honest_viewers_keep_playing(hostile_run: dict) -> None:
    o = hostile_run
    assert o["viewers_started"] == o["honest_viewers"]  # no liar kept a viewer from starting
    assert o["continuity"] >= 0.95
    assert o["offload_ratio"] > 0.3  # still a swarm, not the origin alone
    assert o["hostile"]["honest_dropped_honest"] == 0  # no honest peer taken for a liar


def test_hostile_run_is_deterministic() -> None:
    s = from_dict(load(HOSTILE_SMALL).to_json() | {"peers": 25, "duration_s": 8})
    a = json.dumps(runner.run(s, 2, timing=False), sort_keys=True)
    assert a == json.dumps(runner.run(s, 2, timing=False), sort_keys=True)


def test_hostile_zero_is_the_honest_run() -> None:
    d = load(HOSTILE_SMALL).to_json() | {"peers": 25, "duration_s": 8, "ramp_s": 4}
    honest = runner.run(from_dict(d | {"hostile": 0.0}), 1, timing=False)["oasis"]
    plain = runner.run(from_dict(d | {"hostile": 0.0, "hostile_mix": {}}), 1, timing=False)["oasis"]
    assert "hostile" not in honest and honest == plain
    assert honest["viewers_started"] == 25


def test_mode_assignment_is_proportional_and_seeded() -> None:
    a = adv.assign(10_000, 0.2, {"liar": 3, "flood": 1}, 7)
    assert a == adv.assign(10_000, 0.2, {"liar": 3, "flood": 1}, 7)
    assert 1800 < len(a) < 2200
    liars = sum(1 for m in a.values() if m == adv.LIAR)
    assert abs(liars - 0.75 * len(a)) <= 1
    with pytest.raises(ValueError, match="unknown hostile modes"):
        from_dict({"hostile": 0.1, "hostile_mix": {"evil": 1.0}})


def test_repair_sinks_take_requests_and_the_guard_distrusts_them() -> None:
    """Repair sinks (``--mix sink``): they claim every chunk up to the live edge and answer no
    REQUEST of a viewer that plays. Honest viewers ask them; with ``repair_guard`` they
    distrust them (and ask them less), and nobody is dropped who is honest."""
    d = load(HOSTILE_SMALL).to_json() | {"peers": 40, "duration_s": 15, "ramp_s": 4,
                                         "hostile_mix": {"sink": 1.0}}
    runs = {}
    for guard in (False, True):
        proto = d["protocol"] | {"playout_delay": 0.5, "repair_guard": guard}
        runs[guard] = runner.run(from_dict(d | {"protocol": proto}), 1, timing=False)["oasis"]
    off, on = runs[False]["hostile"], runs[True]["hostile"]
    assert set(off["modes"]) == {"sink"}
    assert off["sent"]["requests_sunk"] > 100  # asked, never answered
    assert off["honest_counters"]["repair_sinks_distrusted"] == 0
    assert on["honest_counters"]["repair_sinks_distrusted"] > 0
    assert on["sent"]["requests_sunk"] < 0.8 * off["sent"]["requests_sunk"]  # (4 misses each first)
    assert on["honest_dropped_honest"] == 0 and on["honest_banned_honest"] == 0
    assert runs[True]["viewers_started"] == runs[True]["honest_viewers"]
