"""The fidelity check's link model in the simulator: per-node egress delay."""

from __future__ import annotations

from oasis.sim import fidelity as fid
from oasis.sim.netmodel import PeerNet, World, one_way_s


def test_egress_delay_is_one_way_from_the_sender():
    w = World()
    de = w.index("DE")
    a = PeerNet(de, "broadband", 1e6, 1e6, 0.004, 0.0, egress_s=0.030)
    b = PeerNet(de, "broadband", 1e6, 1e6, 0.002, 0.0, egress_s=0.050)
    core = w.rtt_ms[de][de] / 2000
    assert abs(one_way_s(w.rtt_ms, a, b) - (core + 0.006 + 0.030)) < 1e-12
    assert abs(one_way_s(w.rtt_ms, b, a) - (core + 0.006 + 0.050)) < 1e-12


def test_fidelity_sim_side_is_deterministic_and_bounded_by_the_delays():
    delays = fid.link_delays_ms(7, 8)
    assert delays == fid.link_delays_ms(7, 8) and len(delays) == 9
    assert all(20 <= d <= 60 for d in delays)
    joins = [0.1 * i for i in range(8)]
    r1 = fid.run_sim(delays, joins, 8.0, 7)
    assert r1 == fid.run_sim(delays, joins, 8.0, 7)
    # nothing arrives sooner than one hop from the broadcaster
    assert r1["p50_ms"] >= delays[0]
    assert r1["continuity"] > 0.95 and r1["offload"] > 0.5
