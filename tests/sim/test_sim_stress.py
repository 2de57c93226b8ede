"""The stress scenario files (issue 9: the design is not tuned to the three scenario files)
load, differ from mobile-churn-10k only in what they say, and the run reports the swarm's
resource index: what the viewers offer to relay over what they consume."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from oasis.sim import population
from oasis.sim.netmodel import World
from oasis.sim.runner import resource_index
from oasis.sim.scenario import from_dict, load

ROOT = Path(__file__).resolve().parents[2] / "scenarios"
CHANGED = {
    "stress-mobile": {"access_mix"},
    "stress-4mbit": {"bitrate_kbps"},
    "stress-churn20": {"churn_per_min"},
    "stress-far": {"broadcaster_country"},
}


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_each_stress_file_is_mobile_churn_with_one_change_at_the_nodes_playout(name: str) -> None:
    base, s = asdict(load(ROOT / "mobile-churn-10k.toml")), asdict(load(ROOT / f"{name}.toml"))
    assert s["protocol"]["playout_delay"] == 0.5 and (s["peers"], s["duration_s"]) == (1000, 40)
    base["protocol"]["playout_delay"] = 0.5
    differ = {k for k in base if base[k] != s[k]} - {"name", "peers", "duration_s"}
    assert differ == CHANGED[name]


def test_the_resource_index_is_what_viewers_offer_over_the_bitrate() -> None:
    world = World()

    def index(**kw: object) -> float:
        s = from_dict({"name": "ri", "peers": 300, "duration_s": 10, **kw})
        return resource_index(s, population.build(s, world, 1)[1])

    # a 10 kbit/s stream (the least a scenario takes): every uplink exceeds 8 x the bitrate,
    # so each offers exactly what its uplink probe may reach, or its cap where it probes not
    assert index(bitrate_kbps=10) == pytest.approx(8.0)
    assert index(bitrate_kbps=10, upload_probe_x=0.0) == pytest.approx(4.0)
    assert index(bitrate_kbps=10, upload_max_x=2.0, upload_probe_x=0.0) == pytest.approx(2.0)
    # a 1 Gbit/s stream: no access link here can carry it, the swarm cannot relay it
    assert index(bitrate_kbps=1_000_000) < 0.2
    # more of the viewers on 4G (slower uplinks) offer less at a bitrate some cannot carry 4 times
    fibre = index(bitrate_kbps=4000, access_mix={"fibre": 1.0})
    mobile = index(bitrate_kbps=4000, access_mix={"4g": 1.0})
    assert fibre > mobile
    assert index(peers=1, duration_s=1, bitrate_kbps=10) == pytest.approx(8.0)
