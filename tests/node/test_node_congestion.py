"""The "oasis" congestion control: its window rules, and a fresh link's first chunk
leaving in one flush on real QUIC sockets (loopback, 40 ms egress delay per side)."""

from __future__ import annotations

import asyncio

import pytest
from aioquic.quic.packet import QuicPacketType
from aioquic.quic.packet_builder import QuicSentPacket

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


def test_loss_halves_down_to_the_floor_and_persistent_congestion_collapses() -> None:
    c = cc.OasisCongestionControl(max_datagram_size=MDS)
    t = 1.0
    expected = [32, 16, 16]
    for i, want in enumerate(expected):
        p = _pkt(i, sent_time=t)
        c.on_packet_sent(packet=p)
        t += 0.1
        c.on_packets_lost(now=t, packets=[p])
        assert c.congestion_window == want * MDS
        assert c.ssthresh == want * MDS
        t += 0.1
    # losses within one recovery period are one congestion event
    p1, p2 = _pkt(10, sent_time=t), _pkt(11, sent_time=t)
    c.on_packet_sent(packet=p1)
    c.on_packet_sent(packet=p2)
    c.on_packets_lost(now=t + 0.1, packets=[p1])
    w = c.congestion_window
    c.on_packets_lost(now=t + 0.2, packets=[p2])
    assert c.congestion_window == w and c.bytes_in_flight == 0
    c.on_persistent_congestion()  # RFC 9002 section 7.6.2: the minimum window (a MUST)
    assert c.congestion_window == 2 * MDS


async def _wait(cond, what: str, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def _first_chunk_in_flight(delay: float) -> list[tuple[str, int, int, int]]:
    """Two nodes with ``delay`` egress each; once the fresh link is quiet, each side
    sends one 18.75 kB chunk and flushes once: (algorithm, chunk stream bytes, bytes put
    in flight by that flush, cwnd) per side."""
    a = Node(Identity.generate(), sw.SwarmConfig(), link_delay=delay)
    b = Node(Identity.generate(), sw.SwarmConfig(), link_delay=delay)
    await a.start()
    await b.start()
    out = []
    try:
        assert await a.connect(b.peer_id, *b.endpoint.address, timeout=10.0)
        await _wait(lambda: a.identity.public in b.links_by_peer, "the listener's link")
        links: list[Link] = [a.links_by_peer[b.identity.public],
                             b.links_by_peer[a.identity.public]]
        for link in links:
            await _wait(lambda link=link: link.session.authenticated, "authentication")
        for link in links:
            loss = link.quic._loss
            # quiet: the handshake's bytes ACKed (control messages may still come and go)
            await _wait(lambda loss=loss: loss.bytes_in_flight <= 2 * MDS, "the link to go quiet")
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
