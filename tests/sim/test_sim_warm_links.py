"""The simulator's QUIC model with the node's "oasis" congestion control
(oasis.node.congestion): a fresh link sends a chunk as a warm one does; app-limited
traffic does not grow the window; a loss halves it, not below the initial one.

Behaviour, not speed: every figure is the model's own arithmetic on virtual time.
"""

from __future__ import annotations

import pytest
from test_sim_hopcost import CHUNK, EGRESS, make, warm

from oasis.node import congestion
from oasis.node.transport import DEFAULT_DATAGRAM_SIZE
from oasis.sim import oasis_run as orun


def test_the_constants_are_the_nodes() -> None:
    assert orun.QUIC_DATAGRAM == DEFAULT_DATAGRAM_SIZE
    assert orun.QUIC_CWND0 == congestion.INITIAL_WINDOW * DEFAULT_DATAGRAM_SIZE
    assert orun.QUIC_LOSS_FLOOR == congestion.LOSS_FLOOR * DEFAULT_DATAGRAM_SIZE


def test_a_fresh_links_first_chunk_is_not_paced() -> None:
    sim, relay, kids = make(2)
    fresh, hot = kids
    warm(sim, relay, hot)
    a = sim._transmit(relay, fresh, CHUNK) - sim.now
    b = sim._transmit(relay, hot, CHUNK) - sim.now
    # the second copy waits for the first one's CPU only: the same hop otherwise
    assert b - a == pytest.approx(orun.CPU_TX_MSG_S + orun.CPU_TX_BYTE_S * CHUNK, rel=1e-6)


def test_an_app_limited_link_keeps_its_window() -> None:
    sim, relay, kids = make(1)
    kid = kids[0]
    for _ in range(50):  # a chunk every 100 ms for 5 s
        sim._transmit(relay, kid, CHUNK)
        sim.now += 0.1
    assert relay.cc[kid.key][0] == orun.QUIC_CWND0


def test_a_window_limited_link_grows_in_slow_start() -> None:
    sim, relay, kids = make(1)
    kid = kids[0]
    big = orun.QUIC_CWND0  # a backlog: a whole window in one RTT
    sim._transmit(relay, kid, big)
    sim.now += 1.0
    sim._transmit(relay, kid, CHUNK)
    assert relay.cc[kid.key][0] == orun.QUIC_CWND0 + big


def test_a_loss_does_not_shrink_the_window_below_the_initial_one() -> None:
    sim, relay, kids = make(1)
    kid = kids[0]
    relay.net.loss = 1.0  # every message loses a packet
    for _ in range(4):
        sim._transmit(relay, kid, CHUNK)
        assert relay.cc[kid.key][0] == orun.QUIC_LOSS_FLOOR == orun.QUIC_CWND0
        sim.now += 2 * EGRESS + 0.1
    # a chunk on a link that lost packets still leaves in one burst
    relay.net.loss = 0.0
    sim.now += 1.0
    t = sim._transmit(relay, kid, CHUNK) - sim.now
    sim2, relay2, kids2 = make(1)
    warm(sim2, relay2, kids2[0])
    assert t == pytest.approx(sim2._transmit(relay2, kids2[0], CHUNK) - sim2.now, abs=1e-9)
    # a window grown by a backlog is halved, down to the initial one
    st = relay.cc[kid.key]
    st[0] = 4.0 * orun.QUIC_CWND0
    relay.net.loss = 1.0
    sim._transmit(relay, kid, CHUNK)
    assert st[0] == 2.0 * orun.QUIC_CWND0
    sim._transmit(relay, kid, CHUNK)
    sim._transmit(relay, kid, CHUNK)
    assert st[0] == orun.QUIC_CWND0
