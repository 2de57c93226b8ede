"""The "oasis" congestion control: its window rules, and a fresh link's first chunk
leaving in one flush on real QUIC sockets (loopback, 40 ms egress delay per side)."""

from __future__ import annotations

import asyncio

import pytest
from aioquic.quic.packet import QuicPacketType
from aioquic.quic.packet_builder import QuicSentPacket
from procs import until

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.node import congestion as cc
from oasis.node.link import Link
from oasis.node.node import Node

MDS = 1350


def _pkt(n: int, sent_time: float, size: int = MDS) -> QuicSentPacket:
    return QuicSentPacket(epoch=3, in_flight=True, is_ack_eliciting=True, is_crypto_packet=False,
                          packet_number=n, packet_type=QuicPacketType.ONE_RTT,
                          sent_time=sent_time, sent_bytes=size)


def test_initial_window_holds_one_chunk_in_the_pacer_burst() -> None:
    c = cc.OasisCongestionControl(max_datagram_size=MDS)
    assert c.congestion_window == cc.INITIAL_WINDOW * MDS
    # aioquic's pacer bursts min(cwnd / 4, 16 datagrams): a whole chunk (~15 datagrams)
    burst = min(c.congestion_window // 4, 16 * MDS)
    chunk = len(wire.encode(wire.ChunkMsg(stream=b"12345678", seq=1, time_us=1, flags=0,
                                          signature=b"s" * 64, payload=b"x" * 18_750)))
    assert burst >= chunk + 15 * 50  # + per-datagram QUIC overhead


def test_no_growth_while_app_limited_then_slow_start_when_window_limited() -> None:
    c = cc.OasisCongestionControl(max_datagram_size=MDS)
    w0 = c.congestion_window
    for i in range(200):  # one datagram at a time, each ACKed: app-limited
        p = _pkt(i, sent_time=i * 0.01)
        c.on_packet_sent(packet=p)
        c.on_packet_acked(now=i * 0.01 + 0.005, packet=p)
    assert c.congestion_window == w0 and c.bytes_in_flight == 0
    sent = [_pkt(1000 + i, sent_time=3.0) for i in range(cc.INITIAL_WINDOW)]  # fill it
    for p in sent:
        c.on_packet_sent(packet=p)
    for p in sent:
        c.on_packet_acked(now=3.1, packet=p)
    assert c.congestion_window == 2 * w0  # slow start: + the bytes ACKed


def test_a_loss_halves_the_window_down_to_the_initial_one() -> None:
    c = cc.OasisCongestionControl(max_datagram_size=MDS)
    iw = cc.INITIAL_WINDOW * MDS
    assert cc.LOSS_FLOOR * MDS == iw
    t = 1.0
    p = _pkt(0, sent_time=t)
    c.on_packet_sent(packet=p)
    c.on_packets_lost(now=t + 0.1, packets=[p])  # app-limited at the initial window
    assert c.congestion_window == iw and c.ssthresh == iw
    # a backlog fills the window: it grows (congestion avoidance now), then a loss halves it
    t = 2.0
    sent = [_pkt(100 + i, sent_time=t) for i in range(4 * cc.INITIAL_WINDOW)]
    for q in sent:
        c.on_packet_sent(packet=q)
    for q in sent:
        c.on_packet_acked(now=t + 0.1, packet=q)
    grown = c.congestion_window
    assert grown > iw
    c.congestion_window = 2 * iw  # as a longer backlog would have grown it
    t = 3.0
    p1, p2 = _pkt(1000, sent_time=t), _pkt(1001, sent_time=t)
    c.on_packet_sent(packet=p1)
    c.on_packet_sent(packet=p2)
    c.on_packets_lost(now=t + 0.1, packets=[p1])
    assert c.congestion_window == iw
    c.congestion_window = 2 * iw
    c.on_packets_lost(now=t + 0.2, packets=[p2])  # the same recovery period: no new event
    assert c.congestion_window == 2 * iw and c.bytes_in_flight == 0


def test_persistent_congestion_collapses_and_slow_start_regrows_to_the_initial_window() -> None:
    c = cc.OasisCongestionControl(max_datagram_size=MDS)
    c.on_persistent_congestion()  # RFC 9002 section 7.6.2: the minimum window (a MUST)
    assert c.congestion_window == 2 * MDS
    small = cc.OasisCongestionControl(max_datagram_size=MDS)
    small.on_persistent_congestion()
    p = _pkt(0, sent_time=5.0)
    small.on_packet_sent(packet=p)
    small.on_packets_lost(now=5.1, packets=[p])  # the floor does not raise a small window
    assert small.congestion_window == 2 * MDS
    t, n = 5.0, 1
    while c.congestion_window < cc.INITIAL_WINDOW * MDS and n < 1000:  # one datagram at a time
        t += 0.2
        q = _pkt(n, sent_time=t)
        c.on_packet_sent(packet=q)
        c.on_packet_acked(now=t + 0.1, packet=q)
        n += 1
    assert cc.INITIAL_WINDOW * MDS <= c.congestion_window < (cc.INITIAL_WINDOW + 1) * MDS
    w = c.congestion_window
    for i in range(50):  # and no further while app-limited
        t += 0.2
        q = _pkt(n + i, sent_time=t)
        c.on_packet_sent(packet=q)
        c.on_packet_acked(now=t + 0.1, packet=q)
    assert c.congestion_window == w


async def _first_chunk_in_flight(delay: float) -> list[tuple[str, int, int, int]]:
    """Two nodes with ``delay`` egress each; once the fresh link is quiet, each side
    sends one 18.75 kB chunk and flushes once: (algorithm, chunk stream bytes, bytes put
    in flight by that flush, cwnd) per side."""
    a = Node(Identity.generate(), sw.SwarmConfig(), link_delay=delay,
             quic="aioquic")  # the congestion control under test is aioquic's plug-in
    b = Node(Identity.generate(), sw.SwarmConfig(), link_delay=delay, quic="aioquic")
    await a.start()
    await b.start()
    out = []
    try:
        assert await a.connect(b.peer_id, *b.endpoint.address, timeout=10.0)
        await until(lambda: a.identity.public in b.links_by_peer, 10.0, what="the listener's link")
        links: list[Link] = [a.links_by_peer[b.identity.public],
                             b.links_by_peer[a.identity.public]]
        for link in links:  # both sides authenticated: an event, awaited
            await asyncio.wait_for(asyncio.shield(link.handshake_done), 10.0)
        for link in links:
            loss = link.quic._loss
            # quiet: the handshake's bytes ACKed (control messages may still come and go)
            await until(lambda loss=loss: loss.bytes_in_flight <= 2 * MDS, 10.0,
                        what="the link to go quiet")
            before = loss.bytes_in_flight
            chunk = wire.ChunkMsg(stream=b"12345678", seq=1, time_us=1, flags=0,
                                  signature=b"s" * 64, payload=b"x" * 18_750)
            link.send_chunk(chunk, deadline=link.endpoint.loop.time() + 5.0)
            link.transmit_now()  # one flush, as the endpoint does at the end of a wake-up
            out.append((type(loss._cc).__name__, len(wire.encode(chunk)),
                        loss.bytes_in_flight - before, loss.congestion_window))
    finally:
        await a.close()
        await b.close()
    return out


async def test_a_fresh_links_first_chunk_leaves_in_one_flush() -> None:
    for name, chunk_len, in_flight, cwnd in await _first_chunk_in_flight(0.04):
        assert name == "OasisCongestionControl"  # dialler and listener alike
        assert cwnd >= cc.INITIAL_WINDOW * MDS
        assert in_flight >= chunk_len  # neither the window nor the pacer held any back


async def test_with_aiquics_reno_the_first_chunk_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the same exchange with aioquic's default holds most of it back."""
    monkeypatch.setattr(cc, "NAME", "reno")
    for name, chunk_len, in_flight, cwnd in await _first_chunk_in_flight(0.04):
        assert name == "RenoCongestionControl"
        assert cwnd < chunk_len and in_flight < chunk_len
