"""The testbed's topology runs in the simulator node for node (issue 10, item 5)."""

from __future__ import annotations

from oasis.sim.fidelity import TOPOLOGY_NAT, run_topology, topology_population
from oasis.testbed.topology import build


def test_the_simulator_gets_the_testbeds_nodes_one_for_one() -> None:
    topo = build(5, 8, nat_share=0.7)
    w, bnet, viewers = topology_population(topo, 1)
    assert len(viewers) == len(topo.viewers) == 8
    for spec, v in zip(topo.viewers, viewers, strict=True):
        assert w.cc[v.net.country] == spec.country and v.net.access == spec.access
        assert v.net.up_bps == spec.up_kbps * 1000 / 8 and v.net.down_bps == spec.down_kbps * 1000 / 8
        assert v.net.lastmile_s == spec.lastmile_ms / 1000 and v.join == spec.join_s
        assert v.net.nat == TOPOLOGY_NAT[spec.nat]
    assert w.cc[bnet.country] == topo.broadcaster.country and bnet.nat == 1


def test_a_natted_topology_runs_with_the_nat_model() -> None:
    topo = build(5, 8, nat_share=0.7)
    r = run_topology(topo, 8.0, 1, 33)
    assert r["viewers_started"] == 8 and r["continuity"] > 0.5
    kinds = {v.nat for v in topo.viewers}
    assert set(r["nat"]["viewers"]) == {("eim" if k == "cgn" else k) for k in kinds}


def test_the_topology_runs_at_the_playout_delay_it_is_given() -> None:
    """``bench/testbed_fidelity.py --playout-delay`` runs both sides at another playout:
    the simulated viewers wait that long before a fallback, so copies come later."""
    topo = build(5, 8, nat_share=0.7)
    short = run_topology(topo, 8.0, 1, 33)
    long = run_topology(topo, 8.0, 1, 33, playout_delay=1.0)
    # (ignored, the two runs would be the same run: the simulator is deterministic per seed)
    assert long["latency_ms"]["p95"] > short["latency_ms"]["p95"] + 200.0
    assert long["continuity"] >= short["continuity"] > 0.5
