"""The endpoint's UDP socket: batched reads, batched (GSO) writes, a bounded backlog.

Theory of operation
-------------------
asyncio's datagram transport calls the protocol once per datagram and never
says when a socket wake-up's datagrams are done, so a QUIC stack driven by it
must build packets (and re-arm timers) after every single datagram. This
socket is read by a reader callback that drains up to ``MAX_BATCH`` datagrams,
hands each to ``on_datagram`` and then calls ``on_batch_end`` once: the
endpoint flushes each link that received something one time per batch.

Reads take what the kernel coalesced (Linux UDP GRO, the ``UDP_GRO`` socket
option): one ``recvmsg`` returns a run of datagrams of one flow, up to 64 KB,
with their segment size in a control message, and the socket cuts it back into
the datagrams the peer sent (each one routed and checked alone, as before). On
loopback a GSO send reaches a GRO socket whole, so a chunk's ~15 datagrams cost
one system call instead of 15. Where the kernel has no GRO the option fails
and reads stay one datagram each.

Writes go straight to the kernel. :meth:`UdpSocket.send_many` sends a run of
equal-sized datagrams to one address as one ``sendmsg`` with the
``UDP_SEGMENT`` option (Linux UDP GSO: the kernel splits the buffer into
datagrams of that size, the last may be shorter); where the kernel refuses it,
GSO is switched off for the socket and datagrams go one ``sendto`` each. When
the kernel's send buffer is full the datagrams wait in a bounded backlog
(``max_backlog`` entries and ``max_backlog_bytes``, then dropped and counted,
like a full router queue) drained
when the socket is writable again: QUIC recovers a dropped datagram.

The object quacks like the part of ``asyncio.DatagramTransport`` the endpoint
uses (``sendto``, ``close``, ``is_closing``, ``get_extra_info``).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

UDP_SEGMENT = 103  #: linux/udp.h: the GSO segment size, a SOL_UDP option or cmsg
UDP_GRO = 104  #: linux/udp.h: receive coalesced datagrams, segment size in a cmsg
MAX_GSO_SEGMENTS = 64  #: linux UDP_MAX_SEGMENTS (older kernels); newer accept 128
MAX_GSO_BYTES = 65000  #: one GSO send carries at most a UDP datagram's worth (64 KB)
MAX_BATCH = 32  #: datagrams read per wake-up before the loop gets a turn (as libuv reads)
READ_SIZE = 65536
_SEG = struct.Struct("=H")
_TTL = struct.Struct("=i")  #: IP_TTL / IPV6_HOPLIMIT as a control message: an int
_GRO_SEG = struct.Struct("=i")  #: the kernel puts the GRO segment size as an int
_GRO_ANC = socket.CMSG_SPACE(_GRO_SEG.size)
_MSG_TRUNC = int(socket.MSG_TRUNC)  #: a plain int: the flag enum's ``&`` is a Python call per read

#: a datagram's address: (host, port), or an IPv6 socket's (host, port, flowinfo, scope_id)
#: (loose on purpose: compiled, this module checks the types it is declared with)
Addr = tuple[Any, ...]


def send_with_ttl(sock: socket.socket, data: bytes, addr: Addr, ttl: int) -> None:
    """One datagram with IP TTL (IPv6 hop limit) ``ttl`` as a control message of this send
    only: the socket's option, and so its other datagrams, keep the default. Raises what
    ``sendmsg`` raises."""
    if sock.family == socket.AF_INET6:
        cmsg = (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, _TTL.pack(ttl))
    else:
        cmsg = (socket.IPPROTO_IP, socket.IP_TTL, _TTL.pack(ttl))
    sock.sendmsg([data], [cmsg], 0, addr)



def _plain(addr: Any) -> Any:
    """An IPv6 socket address without flow label or scope as ``(host, port)``."""
    if len(addr) == 4 and not addr[2] and not addr[3]:
        return addr[0], addr[1]
    return addr

class UdpSocket:
    """A non-blocking UDP socket on the running loop (see the module doc)."""

    def __init__(self, sock: socket.socket, *, on_datagram: Callable[[bytes, Addr], None],
                 on_batch_end: Callable[[], None], gso: bool = True, gro: bool = True,
                 max_backlog: int = 4096, max_backlog_bytes: int = 4 * 1024 * 1024) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.on_datagram = on_datagram
        self.on_batch_end = on_batch_end
        self.gso = gso and hasattr(socket, "SOL_UDP")
        self.gro = False
        if gro and hasattr(socket, "SOL_UDP"):
            try:
                sock.setsockopt(socket.SOL_UDP, UDP_GRO, 1)
                self.gro = True
            except OSError:  # no UDP GRO here (not Linux, or an old kernel)
                pass
        self.max_backlog = max_backlog  #: entries (a GSO entry holds up to 64 KB) ...
        self.max_backlog_bytes = max_backlog_bytes  #: ... and bytes, whichever is reached first
        self._backlog: deque[tuple[bytes, Addr, int]] = deque()  # (buffer, addr, segment or 0)
        self._backlog_bytes = 0
        self._closing = False
        self._sockname = sock.getsockname()
        self.counters = {"batches": 0, "datagrams_in": 0, "gro_reads": 0, "truncated_reads": 0,
                         "sends": 0, "datagrams_out": 0, "gso_sends": 0, "backlog_drops": 0,
                         "send_errors": 0}
        self.loop.add_reader(sock.fileno(), self._on_readable)

    @classmethod
    def bind(cls, host: str, port: int, **kw: Any) -> UdpSocket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        return cls(sock, **kw)

    # -- asyncio.DatagramTransport look-alike ------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._sockname
        if name == "socket":
            return self.sock
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        fd = self.sock.fileno()
        if fd >= 0:
            self.loop.remove_reader(fd)
            self.loop.remove_writer(fd)
        self._backlog.clear()
        self._backlog_bytes = 0
        self.sock.close()

    # -- reading -------------------------------------------------------------------
    def _on_readable(self) -> None:
        deliver = self.on_datagram
        c = self.counters
        n = errors = 0
        try:
            while n + errors < MAX_BATCH and not self._closing:
                try:
                    data, addr, seg = self._recv()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # an ICMP error reported on the socket: nothing to read
                    errors += 1
                    continue
                if seg < 0:  # more than 64 KB: not a datagram run anyone sent us
                    c["truncated_reads"] += 1
                    errors += 1
                elif 0 < seg < len(data):  # a coalesced run: cut back at the segment size
                    c["gro_reads"] += 1
                    for off in range(0, len(data), seg):
                        n += 1
                        deliver(data[off:off + seg], addr)
                        if self._closing:
                            break
                else:
                    n += 1
                    deliver(data, addr)
        finally:
            if n:
                c["batches"] += 1
                c["datagrams_in"] += n
                self.on_batch_end()

    def _recv(self) -> tuple[bytes, Addr, int]:
        """One read: its bytes, the sender and the GRO segment size (0: one datagram,
        -1: truncated). Raises what the socket raises. An IPv6 sender with no flow label
        and no scope comes as ``(host, port)``, the form a dial names it by: aioquic's
        client drops datagrams from an address that is not its peer's ``==``, and the
        socket's ``(host, port, 0, 0)`` is not (found 2026-12-06: no aioquic dial over
        IPv6 got past our Retry)."""
        if not self.gro:
            data, addr = self.sock.recvfrom(READ_SIZE)
            return data, _plain(addr), 0
        data, anc, flags, addr = self.sock.recvmsg(READ_SIZE, _GRO_ANC)
        addr = _plain(addr)
        if flags & _MSG_TRUNC:
            return data, addr, -1
        for level, kind, cdata in anc:
            if level == socket.SOL_UDP and kind == UDP_GRO and len(cdata) >= _GRO_SEG.size:
                return data, addr, _GRO_SEG.unpack_from(cdata)[0]
        return data, addr, 0

    # -- writing -------------------------------------------------------------------
    def sendto(self, data: bytes, addr: Addr) -> None:
        if self._closing:
            return
        if self._backlog or not self._try_send(data, addr, 0):
            self._queue(data, addr, 0)  # behind the backlog, or the kernel's buffer is full

    def send_ttl(self, data: bytes, addr: Addr, ttl: int) -> bool:
        """Send one datagram now with IP TTL (IPv6 hop limit) ``ttl``, a control message
        of this send only (the socket's other datagrams keep the default). Not queued
        behind a backlog: False when the kernel refuses it (buffer full, no such cmsg)."""
        if self._closing:
            return False
        try:
            send_with_ttl(self.sock, data, addr, ttl)
        except OSError:
            self.counters["send_errors"] += 1
            return False
        self.counters["sends"] += 1
        self.counters["datagrams_out"] += 1
        return True

    def send_many(self, datagrams: list[bytes], addr: Addr) -> None:
        """Send ``datagrams`` to ``addr`` in order, runs of equal size as one GSO send each."""
        if len(datagrams) == 1:  # most flushes: an ACK
            self.sendto(datagrams[0], addr)
            return
        if not self.gso or not datagrams:
            for d in datagrams:
                self.sendto(d, addr)
            return
        sizes = list(map(len, datagrams))
        i, n = 0, len(datagrams)
        while i < n:
            size = sizes[i]
            end = min(n, i + (min(MAX_GSO_SEGMENTS, MAX_GSO_BYTES // size) if size else 1))
            # equal sizes; the run's last datagram may be shorter (the kernel allows it)
            j = i + 1
            while j < end and sizes[j] == size:
                j += 1
            if j < end and sizes[j] < size:
                j += 1
            if j - i == 1:
                self.sendto(datagrams[i], addr)
            elif self._closing:
                return
            else:
                buf = b"".join(datagrams[i:j])
                if self._backlog:
                    self._queue(buf, addr, size)
                else:
                    self._send(buf, addr, size)
            i = j

    def _send(self, buf: bytes, addr: Addr, segment: int) -> None:
        if not self._try_send(buf, addr, segment):
            self._queue(buf, addr, segment)

    def _try_send(self, buf: bytes, addr: Addr, segment: int) -> bool:
        """One system call; False when the kernel's send buffer is full (nothing sent)."""
        c = self.counters
        try:
            if segment:
                self.sock.sendmsg([buf], [(socket.SOL_UDP, UDP_SEGMENT, _SEG.pack(segment))], 0, addr)
                c["gso_sends"] += 1
                c["datagrams_out"] += -(-len(buf) // segment)
            else:
                self.sock.sendto(buf, addr)
                c["datagrams_out"] += 1
            c["sends"] += 1
            return True
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if segment and exc.errno in (5, 22, 90, 95, 97):  # EIO EINVAL EMSGSIZE EOPNOTSUPP
                # This path (device, kernel) does not take UDP GSO: one datagram per call.
                self.gso = False
                pieces = [buf[k:k + segment] for k in range(0, len(buf), segment)]
                for n, piece in enumerate(pieces):
                    if not self._try_send(piece, addr, 0):  # the rest waits, first in line
                        for rest in reversed(pieces[n:]):
                            self._queue(rest, addr, 0, front=True)
                        break
                return True
            c["send_errors"] += 1  # e.g. an unreachable address: UDP loses it, QUIC copes
            return True

    def _queue(self, buf: bytes, addr: Addr, segment: int, front: bool = False) -> None:
        if len(self._backlog) >= self.max_backlog \
                or self._backlog_bytes + len(buf) > self.max_backlog_bytes:
            self.counters["backlog_drops"] += 1
            return
        if not self._backlog:
            self.loop.add_writer(self.sock.fileno(), self._on_writable)
        if front:
            self._backlog.appendleft((buf, addr, segment))
        else:
            self._backlog.append((buf, addr, segment))
        self._backlog_bytes += len(buf)

    def _on_writable(self) -> None:
        q = self._backlog
        while q and not self._closing:
            buf, addr, segment = q.popleft()
            self._backlog_bytes -= len(buf)
            if not self._try_send(buf, addr, segment):
                q.appendleft((buf, addr, segment))
                self._backlog_bytes += len(buf)
                return
        if not self._closing and not q:
            self.loop.remove_writer(self.sock.fileno())
