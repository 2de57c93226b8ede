"""A viewer whose address changes mid-stream keeps its link (QUIC connection migration).

Real nodes on loopback, real QUIC. The viewer reaches the broadcaster through a UDP
forwarder that stands for its NAT; mid-stream the forwarder rebinds -- its packets
to the broadcaster now come from another port, as when a phone moves from Wi-Fi to 4G
or a NAT drops a mapping. The broadcaster's pushes to the old address are lost; the
viewer's next packet (a PING to its quiet parent, Node._probe_quiet_parents, unless a
repair REQUEST or a STATUS goes first) comes from the new port; the broadcaster (the QUIC
server) sees the new address, validates the path and follows it: the same link goes
on, no re-dial, and no chunk misses its deadline.
"""

from __future__ import annotations

import asyncio
import socket

from procs import produce, until

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node


class Rebinder(asyncio.DatagramProtocol):
    """Forwards the viewer's datagrams to ``target`` from an outside socket, and the
    answers back; ``rebind()`` swaps the outside socket for one on a new port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.inside: asyncio.DatagramTransport | None = None
        self.client: tuple[str, int] | None = None
        self.outside: asyncio.DatagramTransport | None = None
        self.ports: list[int] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inside = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client = addr
        if self.outside is not None:
            self.outside.sendto(data, self.target)

    async def rebind(self) -> None:
        loop = asyncio.get_running_loop()
        old = self.outside
        me = self

        class Outside(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if me.inside is not None and me.client is not None and addr == me.target:
                    me.inside.sendto(data, me.client)

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        self.ports.append(sock.getsockname()[1])
        self.outside, _ = await loop.create_datagram_endpoint(Outside, sock=sock)
        if old is not None:
            old.close()


async def _node() -> Node:
    # a 3 s playout delay: a loaded machine makes chunks late, never skipped; the test
    # measures how late the move made them
    n = Node(Identity.generate(), sw.SwarmConfig(chunk_ms=100, bitrate_kbps=200, playout_delay=3.0))
    await n.start()
    return n


async def test_a_viewer_whose_address_changes_keeps_its_link_and_its_stream() -> None:
    b = await _node()
    v = await _node()
    sid = StreamId(b.identity.public, "live")
    src = b.add_stream(sid, is_source=True)
    loop = asyncio.get_running_loop()
    nat = Rebinder(b.endpoint.address)
    inside, _ = await loop.create_datagram_endpoint(lambda: nat, local_addr=("127.0.0.1", 0))
    await nat.rebind()

    producer = produce(b, src, sid)
    try:
        view = v.add_stream(sid, is_source=False)
        assert await v.connect(b.peer_id, *inside.get_extra_info("sockname")[:2])
        await until(lambda: len(view.record.latencies) >= 10, 20)
        (blink,) = [ln for ln in b.endpoint.links if not ln.closed]
        before_addr = blink.addr
        got = len(view.record.latencies)
        last = max(view.record.lat_seq)  # the newest chunk before the move
        skipped = len(view.record.skipped)
        await nat.rebind()  # the viewer's packets now come from another port
        await until(lambda: blink.addr != before_addr, 10)
        # the same link, now at the new address, carries the stream on
        await until(lambda: len(view.record.latencies) >= got + 30, 20)
        assert blink.addr == ("127.0.0.1", nat.ports[-1]) and not blink.closed
        assert [ln for ln in b.endpoint.links if not ln.closed] == [blink]
        assert b.counters["link_migrations"] == 1
        assert v.neighbour_count() == b.neighbour_count() == 1
        # (what told the parent is a race: the viewer's PING to its quiet parent, or a
        # repair REQUEST or STATUS it sent first; either moves the link, so it is not asserted)
        # the playback gap: no chunk since the move given up, none a second late
        assert len(view.record.skipped) == skipped
        worst = max(lat for seq, lat in zip(view.record.lat_seq, view.record.lat, strict=True)
                    if seq > last)
        assert worst < 1.0, f"a chunk came {worst:.2f} s after its time"
    finally:
        producer.cancel()
        inside.close()
        if nat.outside is not None:
            nat.outside.close()
        await b.close()
        await v.close()


async def test_a_parent_gone_quiet_is_pinged_and_the_link_stays() -> None:
    """The probe itself (Node._probe_quiet_parents): when the parent's pushes stop (here
    the stream stops), the viewer PINGs the parent link after PROBE_QUIET of silence;
    a PING is harmless: the link stays up."""
    b = await _node()
    v = await _node()
    sid = StreamId(b.identity.public, "live")
    src = b.add_stream(sid, is_source=True)
    producer = produce(b, src, sid)
    try:
        view = v.add_stream(sid, is_source=False)
        assert await v.connect(b.peer_id, *b.endpoint.address)
        await until(lambda: len(view.record.latencies) >= 10, 20)
        assert all(p == b.identity.public for p in view.swarm.tree.parents)
        (vlink,) = [ln for ln in v.endpoint.links if not ln.closed]
        producer.cancel()  # the parent goes quiet (its STATUS comes every 2 s)
        await until(lambda: v.counters["link_probes"] >= 1, 10)
        assert not vlink.closed and [ln for ln in v.endpoint.links if not ln.closed] == [vlink]
        assert v.neighbour_count() == b.neighbour_count() == 1
    finally:
        producer.cancel()
        await b.close()
        await v.close()
