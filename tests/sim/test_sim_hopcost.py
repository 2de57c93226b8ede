"""The simulator's model of what a real node pays per hop (oasis/sim/oasis_run.py, CPU_*,
QUIC_*): per-message CPU at both ends, one CPU queue per node, aioquic's pacer per link.

Behaviour, not speed: every figure is the model's own arithmetic on virtual time.
"""

from __future__ import annotations

import pytest

from oasis.sim import fidelity as fid
from oasis.sim import oasis_run as orun
from oasis.sim.oasis_run import OasisSim, SimNode
from oasis.sim.scenario import Scenario

CHUNK = 18_834  #: an encoded 100 ms chunk at 1.5 Mbit/s
EGRESS = 0.030


def tx_cost(n: int) -> float:
    return orun.CPU_TX_MSG_S + orun.CPU_TX_BYTE_S * n


def rx_cost(n: int, verify: bool = True) -> float:
    return orun.CPU_RX_MSG_S + orun.CPU_RX_BYTE_S * n + (orun.CPU_VERIFY_S if verify else 0.0)


def make(children: int = 4, quic: str = "oasis") -> tuple[OasisSim, SimNode, list[SimNode]]:
    """A simulator with one relay and ``children`` viewers, every node on the same
    fast link with a 30 ms egress delay (nothing else delays a byte)."""
    n = children + 1
    s = Scenario(name="hop", peers=n, duration_s=5.0, baselines=[], bitrate_kbps=1500, chunk_ms=100,
                 gop_chunks=10, broadcaster_upload_kbps=3000, protocol={"playout_delay": 0.5},
                 upload_max_x=4, upload_share=1.0, quic=quic)
    w, bnet, viewers = fid.sim_population([EGRESS * 1000] * (n + 1), [0.0] * n, 1)
    sim = OasisSim(s, w, bnet, viewers, 1)
    for v in viewers:
        sim._join(v)
    nodes = [sim.by_key[v.key] for v in viewers]
    return sim, nodes[0], nodes[1:]


def one_way(a: SimNode, b: SimNode) -> float:
    """Propagation + serialization of a chunk on the modelled link, no CPU, no pacing."""
    pkts = -(-CHUNK // orun.MTU_PAYLOAD)
    wire_n = CHUNK + pkts * orun.PACKET_OVERHEAD
    return wire_n / a.net.up_bps + EGRESS + wire_n / b.net.down_bps


def warm(sim: OasisSim, src: SimNode, dst: SimNode) -> None:
    """The link src -> dst has carried a long stream: its window no longer paces a chunk."""
    src.cc[dst.key] = [1e9, 0.0, 0.0, 0.0, 0.0]


def test_a_hop_costs_at_least_the_senders_and_the_receivers_cpu():
    sim, relay, kids = make(1)
    warm(sim, relay, kids[0])
    t = sim._transmit(relay, kids[0], CHUNK)
    hop = t - sim.now
    floor = EGRESS + tx_cost(CHUNK) + rx_cost(CHUNK)
    assert hop >= floor - 1e-9
    assert hop >= one_way(relay, kids[0]) + tx_cost(CHUNK)  # every byte has arrived
    # a fast link delivers the datagrams as a burst: the receiver handles them as they
    # come, all of its work after the first one (no hidden slack)
    first_dg = (orun.MTU_PAYLOAD + orun.PACKET_OVERHEAD) / relay.net.up_bps
    assert hop == pytest.approx(floor + first_dg, abs=1e-9)
    # a control message pays no signature check and little per byte
    small = sim._transmit(relay, kids[0], 200, False) - sim.now
    assert small < hop
    assert small >= EGRESS + tx_cost(200) + rx_cost(200, verify=False) - 1e-9


def test_more_children_deliver_the_last_copy_later_by_the_per_copy_cost():
    sim, relay, kids = make(4)
    for k in kids:
        warm(sim, relay, k)
    arrivals = [sim._transmit(relay, k, CHUNK) for k in kids]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    for g in gaps:  # one CPU: copy k waits for the k-1 before it
        assert g == pytest.approx(tx_cost(CHUNK), rel=1e-6)
    assert arrivals[-1] - arrivals[0] == pytest.approx(3 * tx_cost(CHUNK), rel=1e-6)
    # a relay with one child delivers it as early as the first of four
    sim1, relay1, kids1 = make(1)
    warm(sim1, relay1, kids1[0])
    assert sim1._transmit(relay1, kids1[0], CHUNK) == pytest.approx(arrivals[0], abs=1e-9)


def test_a_backlog_on_a_fresh_link_is_paced_beyond_the_first_burst():
    """The pacer's burst (min(cwnd / 4, 16 datagrams)) holds one chunk on a fresh link
    (oasis.node.congestion); more than that goes out at cwnd / RTT."""
    sim, relay, kids = make(1)
    kid = kids[0]
    rtt = 2 * EGRESS
    big = 3 * CHUNK
    first = sim._transmit(relay, kid, big) - sim.now
    burst = max(2 * orun.QUIC_DATAGRAM, min(orun.QUIC_CWND0 / 4, 16 * orun.QUIC_DATAGRAM))
    assert burst >= CHUNK
    paced = (big - burst) * rtt / orun.QUIC_CWND0
    assert first >= one_way(relay, kid) + tx_cost(big) + paced - 1e-9


def test_a_small_message_is_not_paced_behind_a_chunk():
    sim, relay, kids = make(1)
    kid = kids[0]
    sim._transmit(relay, kid, CHUNK)  # paced on the fresh link
    ctl = sim._transmit(relay, kid, 120, False) - sim.now
    assert ctl < 2 * tx_cost(CHUNK) + EGRESS + rx_cost(120, verify=False) + 0.001


def test_a_message_waits_for_a_busy_cpu_in_order():
    sim, relay, kids = make(1)
    kid = kids[0]
    work = rx_cost(CHUNK)
    kid.cpu_busy = sim.now + 0.010  # busy sending, say
    w1 = sim._rx_wait(kid, work)
    assert w1 == pytest.approx(0.010 + work)
    w2 = sim._rx_wait(kid, work)  # the next one queues behind it
    assert w2 == pytest.approx(0.010 + 2 * work)
    sim.now += 1.0  # an idle CPU: no wait, and it is busy until now
    assert sim._rx_wait(kid, work) == 0.0
    assert kid.cpu_busy == sim.now


def test_the_model_is_on_by_default_and_deterministic():
    """A small fidelity swarm: the costs show in every simulation, the same each run."""
    delays = fid.link_delays_ms(3, 4)
    joins = [0.1 * i for i in range(4)]
    r1 = fid.run_sim(delays, joins, 6.0, 3)
    assert r1 == fid.run_sim(delays, joins, 6.0, 3)
    # no chunk reaches a viewer before one hop from the broadcaster and its costs
    floor_ms = 1000 * (delays[0] / 1000 + tx_cost(CHUNK) + rx_cost(CHUNK))
    assert r1["p50_ms"] >= floor_ms


def test_a_shared_host_adds_its_measured_wait_only_when_asked():
    """The fidelity check's processes share one machine: with ``host_wait_s`` every
    message waits for a core (exponential, the given mean, deterministic); by default
    (a host of its own) nothing is added."""
    sim, relay, kids = make(1)
    kid = kids[0]
    warm(sim, relay, kid)
    plain = [sim._transmit(relay, kid, CHUNK) - sim.now for _ in range(3)]
    kid.net.host_wait_s = 0.005
    waits = []
    for _ in range(2000):
        sim.now += 0.1
        waits.append(sim._transmit(relay, kid, CHUNK) - sim.now - plain[0])
    assert min(waits) >= -1e-9
    assert 0.004 < sum(waits) / len(waits) < 0.006
    assert sorted(waits)[int(0.95 * len(waits))] > 2 * 0.005  # a tail, as queueing has
    # the same run again gives the same waits
    sim2, relay2, kids2 = make(1)
    warm(sim2, relay2, kids2[0])
    for _ in range(3):
        sim2._transmit(relay2, kids2[0], CHUNK)
    kids2[0].net.host_wait_s = 0.005
    again = []
    for _ in range(2000):
        sim2.now += 0.1
        again.append(sim2._transmit(relay2, kids2[0], CHUNK) - sim2.now - plain[0])
    assert again == waits


def test_the_fidelity_sim_takes_the_measured_host_wait():
    """One viewer fed by the broadcaster: its median chunk waits about the mean more
    (bigger swarms build other trees from other timings: no such simple relation)."""
    delays = fid.link_delays_ms(3, 1)
    own = fid.run_sim(delays, [0.0], 6.0, 3)
    shared = fid.run_sim(delays, [0.0], 6.0, 3, host_wait_s=0.005)
    assert own["offload"] == shared["offload"] == 0.0
    assert 1.0 < shared["p50_ms"] - own["p50_ms"] < 10.0


def test_a_loss_halves_the_window_and_ends_slow_start():
    sim, relay, kids = make(1)
    kid = kids[0]
    sim._transmit(relay, kid, CHUNK)
    st = relay.cc[kid.key]
    st[0] = 4 * orun.QUIC_CWND0  # grown by a backlog
    relay.net.loss = 1.0  # every message loses a packet
    sim._transmit(relay, kid, CHUNK)
    assert st[0] == pytest.approx(2 * orun.QUIC_CWND0) and st[4] == 1.0
    relay.net.loss = 0.0
    sim.now += 1.0
    big = 2 * orun.QUIC_CWND0  # fills the window: its ACK grows it
    sim._transmit(relay, kid, big)
    sim.now += 1.0
    sim._transmit(relay, kid, CHUNK)  # the ACK is in: + a datagram's share
    grown = 2 * orun.QUIC_CWND0 + big * orun.QUIC_DATAGRAM / (2 * orun.QUIC_CWND0)
    assert st[0] == pytest.approx(grown)


def test_a_message_that_loses_nothing_leaves_the_window_alone_on_a_lossy_link():
    """Only a loss shrinks the window: a link with some loss whose messages all arrive keeps
    its window and its slow start (every message on such a link halved it, hidden while the
    floor was the initial window)."""
    sim, relay, kids = make(1)
    kid = kids[0]
    sim._transmit(relay, kid, CHUNK)
    st = relay.cc[kid.key]
    st[0] = 4 * orun.QUIC_CWND0  # grown by a backlog
    relay.net.loss = 1e-12  # a lossy access link; these draws lose nothing
    for _ in range(5):
        sim._transmit(relay, kid, CHUNK)
    assert st[0] == 4 * orun.QUIC_CWND0 and st[4] == 0.0


# ---- qh3's CUBIC (Scenario.quic = "qh3") ---------------------------------------------------------

def test_qh3_links_start_at_ten_datagrams_and_pace_the_rest_at_the_window_per_rtt():
    sim, relay, kids = make(1, "qh3")
    kid = kids[0]
    rtt = 2 * EGRESS
    big = 3 * CHUNK
    first = sim._transmit(relay, kid, big) - sim.now
    st = relay.cc[kid.key]
    assert st[0] == orun.QH3_IW == 10 * orun.QUIC_DATAGRAM
    # the bucket holds one window: the rest leaves at cwnd / RTT (not the oasis model's
    # 64-datagram window: that one sends this in ~7 ms, this one in ~100)
    paced = (big - orun.QH3_IW) * rtt / orun.QH3_IW
    assert first >= one_way(relay, kid) + tx_cost(big) + paced - 1e-9
    sim_o, relay_o, kids_o = make(1)
    assert sim_o._transmit(relay_o, kids_o[0], big) - sim_o.now < first - 0.05


def test_qh3_a_loss_takes_the_window_to_0_7_once_per_rtt_and_never_below_two_datagrams():
    sim, relay, kids = make(1, "qh3")
    kid = kids[0]
    sim._transmit(relay, kid, CHUNK)
    st = relay.cc[kid.key]
    st[0] = 100_000.0
    relay.net.loss = 1.0  # every message loses a datagram
    sim._transmit(relay, kid, CHUNK)
    assert st[0] == pytest.approx(70_000.0) and st[4] == pytest.approx(70_000.0)
    sim._transmit(relay, kid, CHUNK)  # within the same RTT: the same loss event
    assert st[0] == pytest.approx(70_000.0)
    sim.now += 1.0  # a later loss, from a small window: not below 2 datagrams
    st[0] = 3_000.0
    st[2] = st[3] = 0.0  # (nothing in flight: no ACK grows it first)
    sim._transmit(relay, kid, CHUNK)
    assert st[0] == orun.QH3_MIN == 2 * orun.QUIC_DATAGRAM


def test_qh3_grows_with_every_ack_used_or_not_and_starts_over_after_two_idle_seconds():
    sim, relay, kids = make(1, "qh3")
    kid = kids[0]
    sim._transmit(relay, kid, CHUNK)  # far less than the window (app-limited)
    st = relay.cc[kid.key]
    sim.now += 0.1  # its ACK is in (RTT 60 ms): slow start adds the bytes ACKed
    sim._transmit(relay, kid, CHUNK)
    assert st[0] == pytest.approx(orun.QH3_IW + CHUNK)
    # (the node's own controller grows only a window more than half used)
    sim_o, relay_o, kids_o = make(1)
    sim_o._transmit(relay_o, kids_o[0], CHUNK)
    sim_o.now += 0.1
    sim_o._transmit(relay_o, kids_o[0], CHUNK)
    assert relay_o.cc[kids_o[0].key][0] == orun.QUIC_CWND0
    # after a loss, congestion avoidance: it still grows, by CUBIC or a datagram a window
    relay.net.loss = 1.0
    sim.now += 0.1
    sim._transmit(relay, kid, CHUNK)
    relay.net.loss = 0.0
    after_loss = st[0]
    for _ in range(20):
        sim.now += 0.1
        sim._transmit(relay, kid, CHUNK)
    assert st[0] > after_loss
    # 2 s without an ACK: the next send starts from the initial window again
    sim.now += 0.1
    sim._transmit(relay, kid, CHUNK)
    sim.now += orun.QH3_IDLE_S + 0.5
    sim._transmit(relay, kid, CHUNK)
    assert st[0] == orun.QH3_IW


def test_a_scenario_names_a_known_link_model():
    from oasis.sim.scenario import from_dict
    assert from_dict({"quic": "qh3"}).quic == "qh3"
    with pytest.raises(ValueError, match="quic 'bbr'"):
        from_dict({"quic": "bbr"})
