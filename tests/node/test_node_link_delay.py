"""The node's user-space link delay (``--link-delay-ms``): order, delay, bounded queue."""

from __future__ import annotations

import asyncio

from oasis.core.identity import Identity
from oasis.node.transport import Endpoint


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
