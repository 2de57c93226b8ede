"""Probes that check what the testbed promises, from sockets opened inside namespaces.

A UDP echo server that also says which address and port it saw (what STUN does, so a
NAT's mapping can be observed), a burst ping (round trips and losses), and a TCP
bulk transfer (the rate an access link really carries). No subprocess: each socket is
opened in its namespace (:func:`oasis.testbed.netns.ns_socket`) and used from here.
Every wait has a timeout; nothing sleeps.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass

from .netns import ns_socket


class EchoServer:
    """UDP echo in namespace ``ns`` at ``addr:port``: replies ``payload | b"@ip:port"``."""

    def __init__(self, ns: str, addr: str, port: int) -> None:
        self.sock = ns_socket(ns, socket.SOCK_DGRAM)
        self.sock.bind((addr, port))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            self.sock.sendto(data + f"@{peer[0]}:{peer[1]}".encode(), peer)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@dataclass
class PingResult:
    sent: int
    rtt_ms: list[float]  #: one per reply received
    observed: str  #: the address:port the echo server saw (the last reply's)

    @property
    def lost(self) -> int:
        return self.sent - len(self.rtt_ms)

    @property
    def median_ms(self) -> float:
        s = sorted(self.rtt_ms)
        return s[len(s) // 2] if s else float("nan")


def ping(ns: str, dst: tuple[str, int], count: int = 20, timeout: float = 3.0,
         sock: socket.socket | None = None, batch: int = 0, enough: int = 0) -> PingResult:
    """Send ``count`` numbered datagrams to an :class:`EchoServer`; collect the replies
    until all are back or ``timeout`` seconds passed since the last send. ``batch``: send
    that many at a time, so a delayer slowed by a loaded machine is not flooded (0: all
    at once); the next batch goes once this one's replies stop coming (no reply for
    three times the slowest round trip so far, at least 0.3 s, at most ``timeout``). A
    reply that comes later still counts, up to the last batch's full ``timeout``.
    ``enough``: stop once that many replies are in (0: wait for all)."""
    own = sock is None
    s = sock if sock is not None else ns_socket(ns, socket.SOCK_DGRAM)
    try:
        rtts: list[float] = []
        observed = ""
        step = batch or count
        sent_at: dict[int, float] = {}  # all batches': a late reply still counts
        for first in range(0, count, step):
            last_batch = first + step >= count
            for i in range(first, min(count, first + step)):
                sent_at[i] = time.monotonic()
                s.sendto(struct.pack("!I", i) + b"x" * 28, dst)
            deadline = time.monotonic() + timeout
            heard = time.monotonic()
            while sent_at and (left := deadline - time.monotonic()) > 0:
                if enough and len(rtts) >= enough:
                    break
                if not last_batch:
                    gap = 3 * max(rtts) / 1000 if rtts else timeout
                    left = min(left, heard + max(0.3, gap) - time.monotonic())
                    if left <= 0:
                        break  # this batch's replies stopped: the rest are lost or late
                r, _, _ = select.select([s], [], [], left)
                if not r:
                    if last_batch:
                        break
                    continue
                data, src = s.recvfrom(2048)
                if src[:2] != dst[:2] or len(data) < 4:
                    continue  # another server's late reply on a shared socket (mapping())
                seq = struct.unpack("!I", data[:4])[0]
                if seq in sent_at:
                    heard = time.monotonic()
                    rtts.append(1000 * (heard - sent_at.pop(seq)))
                    observed = data.rsplit(b"@", 1)[1].decode()
        return PingResult(count, rtts, observed)
    finally:
        if own:
            s.close()


def mapping(ns: str, servers: list[tuple[str, int]], port: int = 0) -> list[str]:
    """From one UDP socket in ``ns``, the address:port each echo server saw: equal for an
    endpoint-independent mapping, different for a symmetric one."""
    s = ns_socket(ns, socket.SOCK_DGRAM)
    try:
        s.bind(("0.0.0.0", port))
        # a few datagrams and a wait a loaded machine's delayer cannot outlast: one reply
        # is enough to read the mapping
        return [ping(ns, srv, count=5, timeout=3.0, sock=s, enough=1).observed for srv in servers]
    finally:
        s.close()


def bulk_rate(src_ns: str, dst_ns: str, dst: tuple[str, int], seconds: float = 3.0,
              timeout: float = 20.0) -> float:
    """Push TCP as fast as it goes from ``src_ns`` to a sink at ``dst`` in ``dst_ns`` for
    ``seconds``; the sink's goodput in bit/s, measured from its first byte to its last."""
    srv = ns_socket(dst_ns)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(dst)
    srv.listen(1)
    srv.settimeout(timeout)
    got: dict[str, float] = {}
    done = threading.Event()

    def sink() -> None:
        try:
            conn, _ = srv.accept()
        except OSError:
            done.set()
            return
        conn.settimeout(timeout)
        n, first, last = 0, 0.0, 0.0
        with conn:
            while True:
                try:
                    b = conn.recv(65536)
                except OSError:
                    break
                if not b:
                    break
                last = time.monotonic()
                first = first or last
                n += len(b)
        got.update(bytes=n, secs=last - first)
        done.set()

    t = threading.Thread(target=sink, daemon=True)
    t.start()
    c = ns_socket(src_ns)
    try:
        c.settimeout(timeout)
        c.connect(dst)
        chunk = b"\0" * 16384
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            c.sendall(chunk)
    finally:
        c.close()
    done.wait(timeout)
    srv.close()
    if not got.get("secs"):
        raise RuntimeError("bulk transfer: the sink received nothing")
    return 8 * got["bytes"] / got["secs"]
