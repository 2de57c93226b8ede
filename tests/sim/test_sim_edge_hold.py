"""The simulator's CDN edge holds a fetch for a chunk it will have soon, as ``oasis edge``
does (``--hold``): answered when the chunk reaches the edge, not 404 at once.

Behaviour, not speed: the model's own arithmetic on virtual time.
"""

from __future__ import annotations

import pytest

from oasis.core import swarm as sw
from oasis.node import edge as edge_mod
from oasis.sim import fidelity as fid
from oasis.sim import oasis_run as orun
from oasis.sim.netmodel import CDN_EDGE_HOLD_AHEAD, CDN_EDGE_HOLD_S
from oasis.sim.oasis_run import EV_ORIGIN, OasisSim, SimNode
from oasis.sim.scenario import Scenario


def make() -> tuple[OasisSim, SimNode]:
    s = Scenario(name="hold", peers=2, duration_s=5.0, baselines=[], bitrate_kbps=1500, chunk_ms=100,
                 gop_chunks=10, broadcaster_upload_kbps=3000, protocol={"playout_delay": 0.5},
                 upload_max_x=4, upload_share=1.0)
    w, bnet, viewers = fid.sim_population([30.0, 30.0, 30.0], [0.0, 0.0], 1)
    sim = OasisSim(s, w, bnet, viewers, 1)
    sim._join(viewers[0])
    sim._produce(0)
    sim.q.clear()
    return sim, sim.by_key[viewers[0].key]


def answers(sim: OasisSim, node: SimNode) -> list[tuple[float, bool]]:
    """(time, with the chunk) of each origin answer scheduled for ``node``."""
    return sorted((t, b[1] is not None) for t, _, kind, a, b in sim.q if kind == EV_ORIGIN and a is node)


def test_the_simulated_edge_holds_as_long_and_as_far_ahead_as_the_real_one():
    assert CDN_EDGE_HOLD_S == edge_mod.HOLD_S
    assert CDN_EDGE_HOLD_AHEAD == edge_mod.HOLD_AHEAD


def test_a_fetch_for_a_chunk_not_made_yet_is_held_until_it_is_made_and_reaches_the_edge():
    """A probe or a relay's cover asks before the broadcaster made the chunk: the real
    edge holds that request too (it is a few seqs past its newest), and so does this one."""
    sim, node = make()
    sim.n_chunks = 50
    deadline = sim.now + 0.9
    sim._fetch_origin(node, 1, deadline)  # chunk 1 is made 0.1 s from now (100 ms chunks)
    [(t, got)] = answers(sim, node)
    back = sim.edge_rtt_ms / 2000 + node.net.lastmile_s
    made = orun.T0 + 1 * sim.chunk_s
    assert t >= made + sim._edge_delay(node.net) + back and sim.edge_holds == 1
    # the answer carries the chunk once it exists: made before the answer fires
    sim.q.clear()
    sim.now = made
    sim._produce(1)
    sim.now = t
    assert 1 not in node.swarm.log
    sim._origin_done(node, (1, None, t - made, -1.0))
    assert 1 in node.swarm.log
    # too far ahead of what was made (or past the stream's end): 404 at once
    sim.q.clear()
    sim._fetch_origin(node, 2 + CDN_EDGE_HOLD_AHEAD, deadline)
    sim._fetch_origin(node, 60, deadline)
    assert [g for _, g in answers(sim, node)] == [False, False]


@pytest.mark.parametrize("hold", [CDN_EDGE_HOLD_S, 0.0])
def test_a_fetch_for_a_chunk_not_at_the_edge_yet_is_answered_when_it_comes(hold: float) -> None:
    sim, node = make()
    sim.edge_hold_s = hold
    chunk, _ = sim.origin[0]
    at_edge = sim.now + 0.2  # the chunk reaches the origin later than the request the edge
    sim.origin[0] = (chunk, at_edge - sim._edge_delay(node.net))
    deadline = sim.now + 0.5
    sim._fetch_origin(node, 0, deadline)
    [(t, got)] = answers(sim, node)
    back = sim.edge_rtt_ms / 2000 + node.net.lastmile_s
    if hold:
        # held: the answer leaves the edge when the chunk arrives there
        assert got and t >= at_edge + back - 1e-9 and t < deadline
        assert sim.edge_holds == 1 and sim.origin_404 == 0
    else:
        # no hold: 404 after one round trip to the edge, long before the chunk is there
        assert not got and t == pytest.approx(sim.now + 2 * back) and t < at_edge
        assert sim.origin_404 == 1


def test_a_chunk_further_off_than_the_hold_is_404_when_the_hold_ends():
    sim, node = make()
    sim.edge_hold_s = 0.1
    chunk, _ = sim.origin[0]
    sim.origin[0] = (chunk, sim.now + 0.3 - sim._edge_delay(node.net))
    sim._fetch_origin(node, 0, sim.now + 5.0)
    [(t, got)] = answers(sim, node)
    back = sim.edge_rtt_ms / 2000 + node.net.lastmile_s
    assert not got and t == pytest.approx(sim.now + 2 * back + 0.1)
    # a chunk not made at all: 404 at once
    sim.q.clear()
    sim._fetch_origin(node, 7, sim.now + 5.0 - sw.ORIGIN_OVERTIME)
    [(t, got)] = answers(sim, node)
    assert not got and t == pytest.approx(sim.now + 2 * back)
    assert orun.CDN_EDGE_HOLD_S == CDN_EDGE_HOLD_S
