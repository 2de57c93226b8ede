"""The simulator's fidelity check (docs/simulation.md, "Fidelity check").

The same swarm of 20 viewers, every process with an egress delay of 20-60 ms
drawn from a fixed seed, run as real processes on loopback (``oasis demo
--no-rewards`` with ``--link-delay-ms`` per process) and in the simulator with
the same delays and the real run's join times. Figures from the same
``summarize``. The real side is measured, so the test bounds real - sim by a
tolerance derived from repeated runs (see TOLERANCE below and the docs).
"""

from __future__ import annotations

import pytest

from oasis.sim.fidelity import fidelity, run_sim

pytestmark = pytest.mark.integration

VIEWERS = 20
DURATION_S = 12.0  #: after the last viewer joined (joins take ~10 s on 2 cores; 20 before: offload 0.88 either way)
SEED = 1

# Tolerance, from measurements (docs/simulation.md): over 3 bench runs (20 viewers
# x 30 s, seeds 1-3) and 3 runs of this test on a quiet machine the worst
# differences were p50 +53.6 ms (+50 %), p95 +66.7 ms (+37 %), offload -0.144.
# The real side is slower by what the model leaves out: a fixed stack cost (no
# delays: real p50 17 ms vs 1 ms simulated), QUIC slow start / pacing / ACK
# clocking at 40-120 ms RTT, 21 Python processes on 2 cores. That part grows
# with the machine's load (a loaded CI machine measured real p50 192 ms against
# 113 simulated; a new user's quiet 2-core machine real p50/p95 245/486 ms and
# continuity 0.909), so a test that bounds it would fail because the machine is
# slow. The test therefore checks only what load cannot move:
#   * the real swarm forms: no protocol errors or bad chunks, every viewer
#     starts, peers carry a share of the bytes (a loose floor), and most chunks
#     arrive in time (a generous floor: load pushes latency towards the 0.5 s
#     playout delay, so real continuity is a load figure, not a fidelity one);
#   * the simulator is not pessimistic: real p50/p95 >= sim - band (CPU load only
#     ever adds delay to the real side);
#   * the delays are real on both sides: the real swarm is slower than a
#     no-delay simulation by more than the band, the delayed simulation too;
#   * the real swarm does not beat the simulated tree's offload by more than
#     OFFLOAD_TOL (load only pushes the real side to the origin).
# The two-sided comparison (real - sim within the band, real continuity) is
# `bench/fidelity.py`, recorded in docs/benchmarks.md on a quiet machine.
P50_TOL_MS, P50_TOL_REL = 75.0, 0.50
P95_TOL_MS, P95_TOL_REL = 100.0, 0.50
OFFLOAD_TOL = 0.20
CONTINUITY_MIN = 0.98  #: the simulator (deterministic: the machine cannot move it)
#: a swarm, not a stall. On qh3 (the default) 0.86-0.93 counted from each join (0.97-0.998
#: once playing), 12 quiet runs, 2026-12-01, after a parent's slots booked for a child that
#: had gone elsewhere were freed (before, 3 runs in 14 degraded to offload 0.6)
REAL_CONTINUITY_FLOOR = 0.6
REAL_OFFLOAD_FLOOR = 0.3  #: quiet 0.87-0.90; the origin alone would be 0


def band(sim: float, abs_tol: float, rel_tol: float) -> float:
    return max(abs_tol, rel_tol * sim)


async def test_simulator_matches_real_processes():
    out = await fidelity(VIEWERS, DURATION_S, SEED, medians=False)  # the bench reports medians
    real, sim, d = out["real"], out["sim"], out["diff"]
    print(out)  # the numbers, for -s
    # The real swarm forms (what load cannot move, or only a little).
    assert real["errors"] == 0, out
    assert real["viewers_started"] == VIEWERS, out
    assert real["offload"] >= REAL_OFFLOAD_FLOOR, out
    assert real["continuity"] >= REAL_CONTINUITY_FLOOR, out
    assert sim["continuity"] >= CONTINUITY_MIN, out
    # The simulator is never more pessimistic than the real processes.
    assert d["p50_ms"] >= -band(sim["p50_ms"], P50_TOL_MS, P50_TOL_REL), out
    assert d["p95_ms"] >= -band(sim["p95_ms"], P95_TOL_MS, P95_TOL_REL), out
    assert d["offload"] <= OFFLOAD_TOL, out
    assert sim["offload"] >= 0.7, out  # the simulated swarm is a swarm, not the origin
    # The delays act on both sides: a no-delay simulation of the same swarm is
    # faster than either by more than the band.
    flat = run_sim([0.0] * (VIEWERS + 1), [0.0] * VIEWERS, 10.0, SEED)
    assert real["p50_ms"] - flat["p50_ms"] > band(flat["p50_ms"], P50_TOL_MS, P50_TOL_REL), out
    assert sim["p50_ms"] - flat["p50_ms"] > band(flat["p50_ms"], P50_TOL_MS, P50_TOL_REL), out
