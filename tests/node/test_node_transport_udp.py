"""The endpoint's own UDP socket: GSO runs, the bounded send backlog, batched flushes."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import pytest
from procs import drain, udp_receiver, until

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.node import link as lk
from oasis.node.node import Node
from oasis.node.transport import Endpoint
from oasis.node.udp import UdpSocket


async def test_send_many_splits_runs_into_the_same_datagrams_in_order() -> None:
    r = udp_receiver()
    u = UdpSocket.bind("127.0.0.1", 0, on_datagram=lambda d, a: None, on_batch_end=lambda: None)
    try:
        sizes = [1350] * 70 + [400, 1350, 1350, 90]  # a run longer than 64, short tails
        datagrams = [bytes([i % 256]) * s for i, s in enumerate(sizes)]
        u.send_many(datagrams, r.getsockname())
        got = await drain(r, len(datagrams))
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

    def recvmsg(self, n: int, anc: int) -> Any:
        return self.real.recvmsg(n, anc)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.real.setsockopt(level, option, value)

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


async def _linked(a: Node, b: Node) -> tuple[lk.Link, lk.Link, list[wire.ChunkMsg]]:
    """``a`` dials ``b``; both ends of the link, and the chunks ``b`` will receive."""
    assert await a.connect(b.peer_id, *b.endpoint.address)
    await until(lambda: a.identity.public in b.links_by_peer, 10)
    got: list[wire.ChunkMsg] = []
    b.endpoint.on_event = lambda link, ev: got.append(ev.chunk) if hasattr(ev, "chunk") else None
    return a.links_by_peer[b.identity.public], b.links_by_peer[a.identity.public], got


async def test_a_burst_from_one_peer_is_flushed_once_per_run_not_per_datagram() -> None:
    a, b = Node(Identity.generate(), sw.SwarmConfig()), Node(Identity.generate(), sw.SwarmConfig())
    await a.start()
    await b.start()
    try:
        la, lb, got = await _linked(a, b)
        sid = StreamId(a.identity.public, "burst")
        before_in, before_flush = lb.datagrams_in, lb.transmits
        for seq in range(4):  # ~400 KB: hundreds of datagrams, sent in bursts
            la.send_chunk(sign_chunk(a.identity, sid, seq, 0, False, bytes(100_000)), 1e12)
        await until(lambda: len(got) == 4, 20)
        assert [c.seq for c in got] == [0, 1, 2, 3]
        received = lb.datagrams_in - before_in
        assert received > 250
        # every datagram was processed, but b flushed a fraction as often
        assert 0 < lb.transmits - before_flush < received / 2
    finally:
        await a.close()
        await b.close()


async def _gso_run_to_a_udpsocket(gro: bool) -> tuple[UdpSocket, list[tuple[bytes, Any]], list[bytes], int]:
    """A GSO sender's runs (and single datagrams) to a UdpSocket: what it delivered."""
    got: list[tuple[bytes, Any]] = []
    batches = [0]
    u = UdpSocket.bind("127.0.0.1", 0, on_datagram=lambda d, a: got.append((d, a)),
                       on_batch_end=lambda: batches.__setitem__(0, batches[0] + 1), gro=gro)
    s = UdpSocket.bind("127.0.0.1", 0, on_datagram=lambda d, a: None, on_batch_end=lambda: None)
    # 1350-byte runs with short tails, then a lone datagram, then a run again
    sizes = [1350] * 40 + [700] + [1200] + [1350] * 9 + [1]
    sent = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    s.send_many(sent, u.get_extra_info("sockname"))
    await until(lambda: len(got) >= len(sent), 5)
    s.close()
    return u, got, sent, s.get_extra_info("sockname")[1]


async def test_coalesced_reads_are_cut_back_into_the_datagrams_sent() -> None:
    u, got, sent, port = await _gso_run_to_a_udpsocket(gro=True)
    try:
        assert [d for d, _ in got] == sent
        assert all(a == ("127.0.0.1", port) for _, a in got)
        assert u.counters["datagrams_in"] == len(sent)
        if u.gro:  # this kernel coalesces: loopback hands a GSO run to a GRO socket whole
            assert u.counters["gro_reads"] >= 1
            assert u.counters["batches"] < len(sent)
    finally:
        u.close()


async def test_without_gro_every_datagram_is_read_alone() -> None:
    u, got, sent, _ = await _gso_run_to_a_udpsocket(gro=False)
    try:
        assert not u.gro
        assert [d for d, _ in got] == sent
        assert u.counters["gro_reads"] == 0
    finally:
        u.close()


async def test_a_read_over_64k_is_dropped_and_counted_not_delivered() -> None:
    got: list[bytes] = []
    u = UdpSocket.bind("127.0.0.1", 0, on_datagram=lambda d, a: got.append(d), on_batch_end=lambda: None)
    try:
        if not u.gro:
            pytest.skip("no UDP GRO on this kernel: reads are recvfrom, no truncation flag")
        import oasis.node.udp as udp_mod
        orig = udp_mod.READ_SIZE
        udp_mod.READ_SIZE = 1000  # a read buffer shorter than the datagram
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"z" * 1200, u.get_extra_info("sockname"))
            s.sendto(b"ok", u.get_extra_info("sockname"))
            s.close()
            await until(lambda: got == [b"ok"], 5)
        finally:
            udp_mod.READ_SIZE = orig
        assert u.counters["truncated_reads"] == 1
    finally:
        u.close()


@pytest.mark.parametrize("stack", ["qh3", "aioquic"])
async def test_a_run_of_datagrams_reaches_qh3_in_one_call_and_aioquic_one_by_one(stack: str) -> None:
    a = Node(Identity.generate(), sw.SwarmConfig(), quic=stack)
    b = Node(Identity.generate(), sw.SwarmConfig(), quic=stack)
    await a.start()
    await b.start()
    try:
        la, lb, got = await _linked(a, b)
        sid = StreamId(a.identity.public, "run")
        chunks = [sign_chunk(a.identity, sid, seq, 0, False, bytes([seq]) * 60_000) for seq in range(6)]
        before, runs, in_runs = lb.datagrams_in, lb.runs_in, lb.run_datagrams_in
        for c in chunks:
            la.send_chunk(c, 1e12)
        await until(lambda: len(got) == len(chunks), 20)
        # every byte of every chunk; each rides its own stream, so they may complete in
        # any order (a lost packet of one retransmitted after the next has finished)
        assert sorted(got, key=lambda c: c.seq) == chunks
        received = lb.datagrams_in - before
        assert received > 250
        runs, in_runs = lb.runs_in - runs, lb.run_datagrams_in - in_runs
        if stack == "qh3":  # runs: fewer calls than datagrams, every datagram in one of them
            assert 0 < runs < received / 2 and in_runs == received
        else:  # aioquic: each datagram alone (its per-datagram checks stay exact)
            assert runs == 0 and in_runs == 0
    finally:
        await a.close()
        await b.close()


IP_RECVTTL = 12  #: linux/in.h (the socket module does not name it)


async def test_a_hole_punching_prime_leaves_with_its_own_ttl_and_the_rest_with_the_default() -> None:
    """Endpoint.prime (oasis.core.nat ``prime_ttl``): one datagram from the node's socket with
    IP TTL 2 -- it opens the node's NAT and dies before the peer's -- while the socket's other
    datagrams keep the default TTL. Were it to arrive, it is no QUIC packet: dropped, counted."""
    loop = asyncio.get_running_loop()
    r = udp_receiver()
    r.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    ep = Endpoint(Identity.generate(), on_event=lambda *a: None, clock=loop.time)
    await ep.listen("127.0.0.1", 0)
    try:
        assert ep.prime(r.getsockname(), 2)
        ep.send_datagram(b"q" * 1200, r.getsockname())
        got: list[tuple[bytes, int]] = []

        def read() -> bool:
            try:
                data, anc, _, _ = r.recvmsg(2048, 64)
            except BlockingIOError:
                return False
            got.append((data, next(int.from_bytes(c[:4], "little") for lvl, kind, c in anc
                                   if lvl == socket.IPPROTO_IP and kind == socket.IP_TTL)))
            return len(got) == 2

        await until(read, 5.0)
        assert got[0] == (b"\0", 2)
        assert got[1][0] == b"q" * 1200 and got[1][1] > 2  # the socket's default (64)
        assert ep.counters["primes_sent"] == 1
        assert not ep.prime(("::1", 9), 2)  # not an address this socket reaches: not sent
        # a prime that arrives (a peer nearer than its TTL) is no QUIC packet: dropped
        before = ep.counters["undecodable_datagrams"]
        ep.datagram_received(b"\0", r.getsockname())
        assert ep.counters["undecodable_datagrams"] == before + 1 and not ep.links
    finally:
        ep.close()
        r.close()


@pytest.mark.parametrize("stack", ["qh3", "aioquic"])
@pytest.mark.parametrize("dialler", ["qh3", "aioquic"])
async def test_nodes_link_over_ipv6_whichever_stack_dials(stack: str, dialler: str) -> None:
    # The socket gives an IPv6 sender as (host, port, flowinfo, scope_id); aioquic's client
    # drops every datagram from an address that is not its peer's ``==``, and the peer was
    # dialled as (host, port): no aioquic dial over IPv6 got past our Retry (found
    # 2026-12-06). A plain IPv6 sender now comes as (host, port).
    b = Node(Identity.generate(), sw.SwarmConfig(), host="::1", quic=stack)
    a = Node(Identity.generate(), sw.SwarmConfig(), host="::1", quic=dialler)
    await b.start()
    await a.start()
    try:
        assert await a.connect(b.peer_id, "::1", b.port, timeout=20)
        await until(lambda: a.identity.public in b.links_by_peer, 20)
        (link,) = [lk_ for lk_ in b.endpoint.links if lk_.peer_key == a.identity.public]
        assert link.addr == ("::1", a.port)  # as a dial would name it
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("gro", [True, False])
async def test_an_ipv6_sender_is_read_as_host_and_port(gro: bool) -> None:
    got: list[tuple[bytes, Any]] = []
    u = UdpSocket.bind("::1", 0, on_datagram=lambda data, addr: got.append((data, addr)),
                       on_batch_end=lambda: None, gro=gro)
    tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    tx.bind(("::1", 0))
    try:
        tx.sendto(b"x", u.get_extra_info("sockname"))
        await until(lambda: got, 10)
        assert got == [(b"x", ("::1", tx.getsockname()[1]))]  # not ("::1", port, 0, 0)
    finally:
        u.close()
        tx.close()
