"""The endpoint's own UDP socket: GSO runs, the bounded send backlog, batched flushes."""

from __future__ import annotations

import errno
import socket
from typing import Any

from procs import until

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.node import link as lk
from oasis.node.node import Node
from oasis.node.udp import UdpSocket


def _receiver() -> socket.socket:
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind(("127.0.0.1", 0))
    r.setblocking(False)
    return r


async def _drain(r: socket.socket, n: int, timeout: float = 5.0) -> list[bytes]:
    got: list[bytes] = []

    def read() -> bool:
        while True:
            try:
                got.append(r.recv(65536))
            except BlockingIOError:
                return len(got) >= n

    await until(read, timeout)
    return got


async def test_send_many_splits_runs_into_the_same_datagrams_in_order() -> None:
    r = _receiver()
    u = UdpSocket.bind("127.0.0.1", 0, on_datagram=lambda d, a: None, on_batch_end=lambda: None)
    try:
        sizes = [1350] * 70 + [400, 1350, 1350, 90]  # a run longer than 64, short tails
        datagrams = [bytes([i % 256]) * s for i, s in enumerate(sizes)]
        u.send_many(datagrams, r.getsockname())
        got = await _drain(r, len(datagrams))
        assert got == datagrams
        if u.gso:  # this kernel takes UDP GSO: fewer system calls than datagrams
            assert u.counters["sends"] < len(datagrams)
    finally:
        u.close()
        r.close()


class _Refusing:
    """A socket stand-in: the real socket's fd for the loop, sends refused as scripted."""

    def __init__(self, real: socket.socket, *, full: int = 0, gso_errno: int = 0) -> None:
        self.real = real
        self.full = full  # this many sends fail with EAGAIN first
        self.gso_errno = gso_errno
        self.sent: list[bytes] = []

    def setblocking(self, flag: bool) -> None:
        self.real.setblocking(flag)

    def getsockname(self) -> Any:
        return self.real.getsockname()

    def fileno(self) -> int:
        return self.real.fileno()

    def close(self) -> None:
        self.real.close()

    def recvfrom(self, n: int) -> Any:
        return self.real.recvfrom(n)

    def sendto(self, data: bytes, addr: Any) -> int:
        if self.full > 0:
            self.full -= 1
            raise BlockingIOError(errno.EAGAIN, "full")
        self.sent.append(data)
        return len(data)

    def sendmsg(self, bufs: list[bytes], cmsg: Any, flags: int, addr: Any) -> int:
        if self.gso_errno:
            raise OSError(self.gso_errno, "no GSO here")
        return self.sendto(bufs[0], addr)


async def test_a_full_send_buffer_queues_in_order_bounded_and_drains() -> None:
    real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    real.bind(("127.0.0.1", 0))
    fake = _Refusing(real, full=1)
    u = UdpSocket(fake, on_datagram=lambda d, a: None, on_batch_end=lambda: None,  # type: ignore[arg-type]
                  gso=False, max_backlog=5)
    try:
        for i in range(8):
            u.sendto(bytes([i]), ("127.0.0.1", 9))
        # the first send hit EAGAIN: it and the next four wait, three are dropped
        assert u.counters["backlog_drops"] == 3
        await until(lambda: len(fake.sent) == 5, 5)
        assert fake.sent == [bytes([i]) for i in range(5)]
        u.sendto(b"later", ("127.0.0.1", 9))  # the backlog is empty again: straight out
        assert fake.sent[-1] == b"later"
    finally:
        u.close()


async def test_the_backlog_is_bounded_in_bytes_too() -> None:
    """A GSO entry may hold 64 KB: the backlog's byte cap holds whatever the entries."""
    real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    real.bind(("127.0.0.1", 0))
    fake = _Refusing(real, full=1)
    u = UdpSocket(fake, on_datagram=lambda d, a: None, on_batch_end=lambda: None,  # type: ignore[arg-type]
                  gso=False, max_backlog=1000, max_backlog_bytes=2500)
    try:
        for i in range(8):
            u.sendto(bytes([i]) * 1000, ("127.0.0.1", 9))
        # the first send hit EAGAIN: two entries (2,000 B) wait, six would pass 2,500 B
        assert u.counters["backlog_drops"] == 6
        await until(lambda: len(fake.sent) == 2, 5)
        assert fake.sent == [bytes([0]) * 1000, bytes([1]) * 1000]
    finally:
        u.close()


async def test_a_kernel_without_gso_gets_one_datagram_per_send() -> None:
    real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    real.bind(("127.0.0.1", 0))
    fake = _Refusing(real, gso_errno=errno.EIO)
    u = UdpSocket(fake, on_datagram=lambda d, a: None, on_batch_end=lambda: None)  # type: ignore[arg-type]
    try:
        datagrams = [b"a" * 100, b"b" * 100, b"c" * 40, b"d" * 100]
        u.send_many(datagrams, ("127.0.0.1", 9))
        assert not u.gso
        assert fake.sent == datagrams
    finally:
        u.close()


async def test_a_burst_from_one_peer_is_flushed_once_per_run_not_per_datagram() -> None:
    a, b = Node(Identity.generate(), sw.SwarmConfig()), Node(Identity.generate(), sw.SwarmConfig())
    await a.start()
    await b.start()
    flushes: dict[int, int] = {}
    orig = lk.Link.transmit_now

    def counting(self: lk.Link) -> None:
        flushes[id(self)] = flushes.get(id(self), 0) + 1
        orig(self)

    lk.Link.transmit_now = counting  # type: ignore[method-assign]
    try:
        assert await a.connect(b.peer_id, *b.endpoint.address)
        await until(lambda: a.identity.public in b.links_by_peer, 10)
        la, lb = a.links_by_peer[b.identity.public], b.links_by_peer[a.identity.public]
        got: list[wire.ChunkMsg] = []
        b.endpoint.on_event = lambda link, ev: got.append(ev.chunk) if hasattr(ev, "chunk") else None
        sid = StreamId(a.identity.public, "burst")
        before_in, before_flush = lb.datagrams_in, flushes.get(id(lb), 0)
        for seq in range(4):  # ~400 KB: hundreds of datagrams, sent in bursts
            la.send_chunk(sign_chunk(a.identity, sid, seq, 0, False, bytes(100_000)), 1e12)
        await until(lambda: len(got) == 4, 20)
        assert [c.seq for c in got] == [0, 1, 2, 3]
        received = lb.datagrams_in - before_in
        assert received > 250
        # every datagram was processed, but b flushed a fraction as often
        assert flushes.get(id(lb), 0) - before_flush < received / 2
    finally:
        lk.Link.transmit_now = orig  # type: ignore[method-assign]
        await a.close()
        await b.close()
