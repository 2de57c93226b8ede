"""The node's user-space link delay (``--link-delay-ms``): order, delay, bounded queue."""

from __future__ import annotations

import asyncio

from procs import drain, udp_receiver

from oasis.core.identity import Identity
from oasis.node.transport import Endpoint
from oasis.node.udp import UdpSocket


class Recorder:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sent: list[tuple[float, bytes]] = []
        self.done = asyncio.Event()
        self.expect = 0

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((self.loop.time(), data))
        if len(self.sent) >= self.expect:
            self.done.set()

    def close(self) -> None:
        pass


async def test_egress_delay_keeps_order_and_bounds_the_queue():
    loop = asyncio.get_running_loop()
    ep = Endpoint(Identity.generate(), on_event=lambda *a: None, clock=loop.time,
                  link_delay=0.05, max_delayed=100)
    rec = Recorder(loop)
    rec.expect = 100
    ep.transport = rec  # type: ignore[assignment]
    t0 = loop.time()
    for i in range(150):
        ep.send_datagram(i.to_bytes(2, "big"), ("127.0.0.1", 9))
    assert rec.sent == []  # nothing leaves before the delay
    await asyncio.wait_for(rec.done.wait(), 5)
    assert [d for _, d in rec.sent] == [i.to_bytes(2, "big") for i in range(100)]
    assert rec.sent[0][0] - t0 >= 0.05 - 0.002  # event-loop timer resolution
    assert ep.counters["delay_queue_drops"] == 50
    ep.close()


async def test_no_delay_by_default_and_close_flushes():
    loop = asyncio.get_running_loop()
    ep = Endpoint(Identity.generate(), on_event=lambda *a: None, clock=loop.time)
    rec = Recorder(loop)
    ep.transport = rec  # type: ignore[assignment]
    ep.send_datagram(b"x", ("127.0.0.1", 9))
    assert [d for _, d in rec.sent] == [b"x"]
    slow = Endpoint(Identity.generate(), on_event=lambda *a: None, clock=loop.time, link_delay=5.0)
    rec2 = Recorder(loop)
    slow.transport = rec2  # type: ignore[assignment]
    slow.send_datagram(b"y", ("127.0.0.1", 9))
    slow.close()  # shutting down: pending datagrams go out now
    assert [d for _, d in rec2.sent] == [b"y"]


async def test_a_delayed_flush_still_leaves_as_one_gso_send():
    """The emulated delay holds a flush's datagrams together: they leave as one GSO
    send after the delay, as they would have undelayed (no extra system calls)."""
    loop = asyncio.get_running_loop()
    r = udp_receiver()
    ep = Endpoint(Identity.generate(), on_event=lambda *a: None, clock=loop.time, link_delay=0.03)
    u = UdpSocket.bind("127.0.0.1", 0, on_datagram=lambda d, a: None, on_batch_end=lambda: None)
    ep.transport = u
    try:
        datagrams = [bytes([i]) * 1350 for i in range(10)] + [b"t" * 300]
        t0 = loop.time()
        ep.send_datagrams(datagrams, r.getsockname())
        ep.send_datagram(b"after", r.getsockname())
        assert u.counters["sends"] == 0  # nothing before the delay
        got = await drain(r, 12)
        assert loop.time() - t0 >= 0.03 - 0.002
        assert got == datagrams + [b"after"]  # in order, none lost
        if u.gso:  # this kernel takes UDP GSO: the flush was one system call, not 11
            assert u.counters["sends"] == 2
    finally:
        ep.close()
        r.close()
