"""The simulated viewers run the node's uplink probe (docs/oftp.md §9.7) where their cap is
the node's default: relays that fill their slots raise it, within 4x-8x the bitrate; a viewer
whose uplink is below the default keeps its fixed cap, and without ``upload_probe_x`` none moves.

Behaviour, not speed: a small run on virtual time."""

from __future__ import annotations

from oasis.sim import oasis_run, population
from oasis.sim.netmodel import World
from oasis.sim.scenario import Scenario

BITRATE = 1500


def _run(probe_x: float) -> oasis_run.OasisSim:
    s = Scenario(name="probe", peers=150, duration_s=25.0, baselines=[], bitrate_kbps=BITRATE,
                 protocol={"playout_delay": 0.5}, upload_probe_x=probe_x, seed=3,
                 access_mix={"fibre": 0.5, "4g": 0.5})
    world = World()
    bnet, viewers = population.build(s, world, 3)
    _, sim = oasis_run.run_oasis(s, world, bnet, viewers, 3)
    return sim


def _viewers(sim: oasis_run.OasisSim) -> list:
    return [n for n in sim.nodes.values() if not n.is_source]


def test_relays_with_room_raise_their_cap_and_the_others_keep_theirs() -> None:
    sim = _run(8.0)
    probing = [n for n in _viewers(sim) if n.swarm.uplink is not None]
    fixed = [n for n in _viewers(sim) if n.swarm.uplink is None]
    assert probing and fixed  # fibre lines carry 4x; many 4G uplinks do not
    for n in fixed:  # a cap below the default is the user's: never moved
        assert n.swarm.upload_kbps == n.swarm.config.upload_kbps < 4 * BITRATE
    caps = [n.swarm.upload_kbps for n in probing]
    assert all(4 * BITRATE <= c <= 8 * BITRATE for c in caps)
    raised = [n for n in probing if n.swarm.counters.upload_raised]
    assert raised and max(caps) > 4 * BITRATE
    for n in raised:  # the slots follow the cap
        assert n.swarm.upload.rate == n.swarm.upload_kbps * 1000 / 8
        assert n.swarm.total_slots() == int(0.8 * n.swarm.upload_kbps * 4 / max(
            BITRATE, n.swarm.log.rate_bps * 8 / 1000))


def test_without_the_probe_no_cap_moves() -> None:
    sim = _run(0.0)
    assert all(n.swarm.uplink is None and n.swarm.upload_kbps == n.swarm.config.upload_kbps
               for n in _viewers(sim))
