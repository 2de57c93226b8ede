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
DURATION_S = 20.0  #: after the last viewer joined (joins take ~10 s on 2 cores)
SEED = 1

# Tolerance on real - sim, from measurements (docs/simulation.md): over 3 bench runs
# (20 viewers x 30 s, seeds 1-3) and 3 runs of this test, the worst differences were
# p50 +53.6 ms (+50 %), p95 +66.7 ms (+37 %), offload -0.144. The real side is
# slower by what the model leaves out: a fixed stack cost (with no delays at all,
# real p50 17 ms vs 1 ms simulated), QUIC slow start / pacing / ACK clocking at
# 40-120 ms RTT, x264's variable chunk sizes, 21 Python processes on 2 cores; and
# the push tree the real swarm builds differs run to run (simulated p50 alone
# moves 107-189 ms with the join schedule). Bands: worst observed + ~20 ms / 0.05.
# What they catch: a node ignoring --link-delay-ms (real p50 17 ms vs ~140
# simulated), a simulator ignoring the delays (checked below), an origin-bound
# swarm (offload off by > 0.5). What they do not: a delay model off by less than
# ~1.5x (the old d_a + d_b model gives +30..+75 % on p50).
P50_TOL_MS, P50_TOL_REL = 75.0, 0.50
P95_TOL_MS, P95_TOL_REL = 100.0, 0.50
OFFLOAD_TOL = 0.20
CONTINUITY_MIN = 0.98


def within(diff: float, sim: float, abs_tol: float, rel_tol: float) -> bool:
    return abs(diff) <= max(abs_tol, rel_tol * sim)


async def test_simulator_matches_real_processes():
    out = await fidelity(VIEWERS, DURATION_S, SEED)
    real, sim, d = out["real"], out["sim"], out["diff"]
    print(out)  # the numbers, for -s
    assert real["errors"] == 0
    assert real["continuity"] >= CONTINUITY_MIN and sim["continuity"] >= CONTINUITY_MIN
    assert within(d["p50_ms"], sim["p50_ms"], P50_TOL_MS, P50_TOL_REL), out
    assert within(d["p95_ms"], sim["p95_ms"], P95_TOL_MS, P95_TOL_REL), out
    assert abs(d["offload"]) <= OFFLOAD_TOL, out
    # The tolerance is narrower than the effect of the delays themselves: the same
    # swarm simulated with no delays would fail it.
    flat = run_sim([0.0] * (VIEWERS + 1), [0.0] * VIEWERS, 10.0, SEED)
    assert not within(real["p50_ms"] - flat["p50_ms"], flat["p50_ms"], P50_TOL_MS, P50_TOL_REL)
