"""A simulated dial's link comes up when the real node's does (oasis/sim/oasis_run.py,
RETRY_RTTS, QUIC_RTTS, HANDSHAKE_RTTS; bench/link_setup.py measures the real one).

The listener answers the first Initial with a stateless Retry (1 RTT), QUIC's handshake
follows (1 RTT), then HELLO/AUTH (1 RTT): the dialler is authenticated 3 RTT after its dial,
the listener when the dialler's AUTH reaches it, one one-way delay later. Two viewers on
links with only an egress delay (20 ms and 40 ms: RTT 60 ms, one-way 20 ms from the first,
40 ms from the second), so every expected time is plain arithmetic on virtual time.
"""

from __future__ import annotations

import pytest

from oasis.sim import fidelity as fid
from oasis.sim import oasis_run as orun
from oasis.sim.oasis_run import OasisSim, SimNode
from oasis.sim.scenario import Scenario

EGRESS_MS = [30.0, 20.0, 40.0]  #: the broadcaster, viewer 0, viewer 1
EPS = 1e-6


def _two(protocol: dict[str, object] | None = None) -> tuple[OasisSim, SimNode, SimNode]:
    """Two viewers joined at T0, the engine run up to T0 (the policies' first dials):
    (sim, dialler, listener) for the dial between them."""
    s = Scenario(name="link-setup", peers=2, duration_s=10.0, baselines=[], bitrate_kbps=1500,
                 chunk_ms=100, gop_chunks=10, broadcaster_upload_kbps=3000,
                 protocol={"playout_delay": 0.5} | (protocol or {}), upload_max_x=4,
                 upload_share=1.0)
    w, bnet, viewers = fid.sim_population(EGRESS_MS, [0.0, 0.0], 1)
    sim = OasisSim(s, w, bnet, viewers, 1)
    for v in viewers:
        sim._join(v)
    sim._run_policy(sim.source)
    sim._loop(orun.T0, float("inf"), 10.0)
    a, b = (sim.nodes[k] for k in list(sim.nodes)[-2:])
    # one of them dialled the other at T0 (the policy's own dial, from the tracker's answer)
    dialler, listener = (b, a) if a.key in b.policy.dials.dialling else (a, b)
    assert listener.key in dialler.policy.dials.dialling
    assert dialler.key not in listener.policy.dials.dialling  # no simultaneous dial
    return sim, dialler, listener


def _up(node: SimNode, peer: SimNode) -> bool:
    return peer.key in node.policy.peers


def _run_to(sim: OasisSim, t: float) -> None:
    sim._loop(orun.T0 + t, float("inf"), 10.0)


def test_the_link_sets_up_in_a_retry_quic_and_hello_auth_as_the_real_nodes():
    assert orun.RETRY_RTTS == 1.0 and orun.QUIC_RTTS == 2.0 and orun.HANDSHAKE_RTTS == 3.0
    sim, dialler, listener = _two()
    rtt = sim._rtt(dialler.net, listener.net)
    owd = sim._owd(dialler.net, listener.net)
    assert rtt == pytest.approx(0.060) and owd in (pytest.approx(0.020), pytest.approx(0.040))
    _run_to(sim, 3 * rtt - EPS)
    assert not _up(dialler, listener) and not _up(listener, dialler)  # not at 1 or 2 RTT
    _run_to(sim, 3 * rtt + EPS)
    assert _up(dialler, listener) and not _up(listener, dialler)
    assert dialler.policy.peers[listener.key].since == pytest.approx(orun.T0 + 3 * rtt)
    assert dialler.policy.peers[listener.key].dialled
    _run_to(sim, 3 * rtt + owd - EPS)
    assert not _up(listener, dialler)  # the dialler's AUTH is on its way
    _run_to(sim, 3 * rtt + owd + EPS)
    assert _up(listener, dialler)
    assert listener.policy.peers[dialler.key].since == pytest.approx(orun.T0 + 3 * rtt + owd)
    assert not listener.policy.peers[dialler.key].dialled
    # the dialler's JOIN came after its AUTH: the listener has it as a neighbour now
    _run_to(sim, 3 * rtt + owd + 0.005)
    assert dialler.key in listener.swarm.peers
    # and the dialler one RTT (plus the messages' costs) after its link_up, not before
    assert listener.key not in dialler.swarm.peers
    _run_to(sim, 4 * rtt + 0.005)
    assert listener.key in dialler.swarm.peers


def test_session_mode_pays_the_retry_too():
    """With the real HELLO/AUTH bytes (protocol.session): the same times."""
    sim, dialler, listener = _two({"session": True})
    rtt = sim._rtt(dialler.net, listener.net)
    owd = sim._owd(dialler.net, listener.net)
    _run_to(sim, 3 * rtt - EPS)
    assert not _up(dialler, listener) and not _up(listener, dialler)
    _run_to(sim, 3 * rtt + owd + 0.005)  # + the handshake messages' CPU and bytes
    assert _up(dialler, listener) and _up(listener, dialler)
    assert dialler.policy.peers[listener.key].since == pytest.approx(orun.T0 + 3 * rtt, abs=0.005)
    assert (listener.policy.peers[dialler.key].since
            == pytest.approx(orun.T0 + 3 * rtt + owd, abs=0.005))
    assert sim.handshakes_done >= 1


def test_a_listener_that_refuses_closes_the_dialler_s_link_one_round_trip_after_it_came_up():
    """The listener decides when the dialler's AUTH reaches it; its close reaches the
    dialler one one-way delay later (4 RTT after the dial) and backs the address off."""
    sim, dialler, listener = _two()
    rtt = sim._rtt(dialler.net, listener.net)
    listener.policy.ban(dialler.key, sim.now)
    refused0 = listener.policy.counters.links_refused_banned
    _run_to(sim, 3 * rtt + EPS)
    assert _up(dialler, listener)  # it does not know yet
    _run_to(sim, rtt * 4 - EPS)
    assert listener.policy.counters.links_refused_banned == refused0 + 1
    assert _up(dialler, listener)
    _run_to(sim, rtt * 4 + EPS)
    assert not _up(dialler, listener) and not _up(listener, dialler)
    assert dialler.policy.dials.backoff[(listener.host, orun.PORT)][0] >= 1


def test_a_listener_gone_after_the_dialler_authenticated_closes_its_link():
    """The listener leaves between the dialler's link_up and the AUTH's arrival: the
    dialler hears the close one one-way delay after it left, or when its AUTH would have
    arrived if that is later (the engine learns of it then), not as a dial failure 5 s on."""
    sim, dialler, listener = _two()
    rtt = sim._rtt(dialler.net, listener.net)
    owd = sim._owd(dialler.net, listener.net)
    back = sim._owd(listener.net, dialler.net)
    _run_to(sim, 3 * rtt + EPS)
    assert _up(dialler, listener) and not _up(listener, dialler)
    sim.now = orun.T0 + 3 * rtt + 0.001
    viewer = next(v for v in sim.viewers if v.key == listener.key)
    sim._leave(viewer)
    failed0 = dialler.policy.counters.dial_failures
    heard = max(3 * rtt + 0.001 + back, 3 * rtt + owd)
    _run_to(sim, heard - EPS)
    assert _up(dialler, listener)
    _run_to(sim, heard + EPS)
    assert not _up(dialler, listener)
    _run_to(sim, orun.DIAL_TIMEOUT_S + EPS)  # (a new dial to the gone address fails later)
    assert dialler.policy.counters.dial_failures == failed0


def test_a_listener_gone_during_the_handshake_fails_the_dial_at_the_connect_timeout():
    sim, dialler, listener = _two()
    failed0 = dialler.policy.counters.dial_failures
    viewer = next(v for v in sim.viewers if v.key == listener.key)
    _run_to(sim, 0.05)
    sim._leave(viewer)
    _run_to(sim, orun.DIAL_TIMEOUT_S - EPS)
    assert dialler.policy.counters.dial_failures == failed0 and not _up(dialler, listener)
    _run_to(sim, orun.DIAL_TIMEOUT_S + EPS)
    assert dialler.policy.counters.dial_failures == failed0 + 1
