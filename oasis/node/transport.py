"""The asyncio/QUIC adapter: one UDP socket, many QUIC links, OFTP sessions.

Theory of operation
-------------------
:class:`Endpoint` owns one UDP socket used both to listen and to dial, and
demultiplexes datagrams to QUIC connections by destination connection id
(as aioquic's own server does). Each connection is a :class:`Link` that carries
one sans-I/O :class:`~oasis.core.session.Session`:

* the dialler opens bidirectional stream 0 as the control stream (length-
  prefixed OFTP frames both ways);
* each chunk rides its own unidirectional stream, written whole with FIN;
  a chunk stream still unsent at its deadline is reset (dropped, not queued);
* QUIC events go in, session actions come out; after every input the link
  flushes datagrams and re-arms QUIC's timer.

The QUIC implementation is a :class:`~oasis.node.quicstack.Stack`: qh3 (the
default) or aioquic (``quic="aioquic"``, ``--quic aioquic`` or ``OASIS_QUIC=aioquic``).

Identity: certificates are made from the node key; the dialler checks the
certificate key against the pinned peer id as soon as the TLS handshake
completes; the listener asks for the dialler's certificate and, once the OFTP
AUTH challenge has proven the dialler's key, requires it to be the same key
(aioquic; qh3's TLS server cannot ask, so there the listener relies on AUTH).

Strangers (see :mod:`oasis.node.admission`): a new connection is created only
for an Initial that echoes a valid Retry token (the sender receives at its
address); until its session authenticates, a listener's link is *half-open*,
counted in its own capped table (per source IP too), has the OFTP handshake
deadline armed from creation, may receive only a small budget of stream bytes,
and its chunk streams are stopped, not buffered.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import random
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from oasis.core import session as ss
from oasis.core import wire
from oasis.core.dialplan import ip_key
from oasis.core.identity import Identity
from oasis.core.wire import ErrorCode

from .admission import (
    TOKEN_LIFETIME,
    HalfOpenTable,
    RatePerSource,
    RecentlySeen,
    RetryTokens,
    encode_retry,
)
from .link import CONTROL_UNSENT_MAX, RUN_HOL_RTTS, UDP_IP_HEADER, Link, _code, chunk_run_length  # noqa: F401
from .quicstack import CID_LENGTH, Header, Stack, make_stack
from .udp import Addr, UdpSocket

log = logging.getLogger("oasis.transport")

DEFAULT_DATAGRAM_SIZE = 1350
MIN_INITIAL_SIZE = 1200  #: RFC 9000 §14.1: a client's Initial datagram is at least this big
#: stream bytes a link may receive before its session authenticates (HELLO + AUTH are
#: a few hundred bytes; nothing else is legitimate before then)
PREAUTH_BUDGET = 128 * 1024
PRIME_DATAGRAM = b"\0"  #: what a hole punch's low-TTL priming datagram carries (Endpoint.prime)
#: Out-of-order stream bytes aioquic may hold for one link (it fills a gap with zeros and
#: doubles flow-control windows as they fill, so without this an authenticated peer could
#: make it allocate without bound). Loss recovery needs about one RTT of data.
MAX_REORDER_BYTES = 8 * 1024 * 1024
#: UDP receive buffer asked of the kernel (it grants at most net.core.rmem_max)
RECEIVE_BUFFER = 4 * 1024 * 1024
#: Retries per second one source IP may draw (a dialler needs one per connection)
RETRY_RATE_PER_IP = 50.0
#: A token-less Initial for a connection id answered with a Retry less than this long ago,
#: from the same address, is the rest of that ClientHello: qh3's (X25519 + ML-KEM-768)
#: fills two Initial datagrams, and each drew a Retry (two HMAC tokens, two of the source's
#: Retry rate a dial). A client that lost our Retry sends its Initial again only after its
#: probe timeout (~1 s with no RTT measured yet, RFC 9002 §6.2.2), which this is well under.
RETRY_REPEAT_WINDOW = 0.25
INITIAL_MAX_DATA = 2 * 1024 * 1024  #: QUIC connection flow-control window at start
INITIAL_MAX_STREAM_DATA = 1024 * 1024  #: QUIC per-stream window at start


class Endpoint:
    """One UDP socket; listens and dials; routes datagrams to links.

    ``link_delay`` (seconds, default 0 = off) emulates a one-way delay on
    everything this node sends, for testing where kernel netem is not
    available: every outgoing QUIC datagram is handed to the socket
    ``link_delay`` seconds after QUIC produced it, in order. At most
    ``max_delayed`` datagrams wait; beyond that they are dropped and counted
    (``delay_queue_drops``), like a full router queue. Incoming datagrams and
    the node's HTTP traffic (origin, tracker) are not delayed.

    Admission of strangers: ``retry`` (default on) answers an Initial without
    a token with a stateless Retry; only an Initial echoing a valid token
    (``token_lifetime`` seconds) creates a connection. Links that are not yet
    authenticated are *half-open*: at most ``max_halfopen`` (the oldest of the
    source IP holding the most makes way) and ``max_halfopen_per_ip`` per source
    IP (then refused); they do not
    take the ``max_links`` slots. ``max_links + max_halfopen`` bounds the links
    the endpoint holds in all. Every outcome is a counter in :attr:`counters`.
    """

    def __init__(self, identity: Identity, *, on_event: Callable[[Link, ss.Event], None],
                 clock: Callable[[], float], rng: random.Random | None = None,
                 max_datagram_size: int = DEFAULT_DATAGRAM_SIZE, max_links: int = 64,
                 link_delay: float = 0.0, max_delayed: int = 10_000, retry: bool = True,
                 token_lifetime: float = TOKEN_LIFETIME, max_halfopen: int = 32,
                 max_halfopen_per_ip: int = 8, preauth_budget: int = PREAUTH_BUDGET,
                 retry_rate_per_ip: float = RETRY_RATE_PER_IP,
                 max_reorder_bytes: int = MAX_REORDER_BYTES, gso: bool = True,
                 quic: str | None = None, chunk_run: int | None = None) -> None:
        self.identity = identity
        #: the QUIC implementation (``quic``, else ``$OASIS_QUIC``, else qh3)
        self.stack: Stack = make_stack(quic)
        self.on_event = on_event
        #: called with a link whose peer's address changed (QUIC migrated the connection)
        self.on_migrated: Callable[[Link], None] | None = None
        #: called with a link that reset a chunk stream (or a run's tail) still unsent at its
        #: deadline, and the longest time those chunks had left when written (s): copies to
        #: its peer were dropped (the uplink probe hears it)
        self.on_chunks_dropped: Callable[[Link, float, int], None] | None = None
        self.clock = clock
        self.rng = rng or random.Random()
        #: handshake nonces always come from the OS, even when --seed makes the rest reproducible
        self.nonces = random.SystemRandom()
        self.loop = asyncio.get_running_loop()
        #: the UdpSocket once listening (Any: a test may put a stand-in with only sendto)
        self.transport: Any = None
        self.gso = gso
        #: OFTP 2 links: chunks a run stream carries before it ends (1: a stream per chunk)
        self.chunk_run = chunk_run_length(chunk_run)
        #: a chunk continues its lane's run only this many smoothed RTTs after the run's
        #: last chunk (link.RUN_HOL_RTTS; 0: always, as before 2026-12-07)
        self.run_hol_rtts = RUN_HOL_RTTS
        #: the OFTP versions this endpoint's links offer (all it speaks unless narrowed)
        self.oftp_versions: tuple[int, ...] = wire.SUPPORTED_VERSIONS
        self.links_by_cid: dict[bytes, Link] = {}
        self.links: set[Link] = set()
        self.max_links = max_links
        self.counters: dict[str, int] = dict.fromkeys((
            "undecodable_datagrams",  # no QUIC header, or an Initial we must not answer
            "unknown_cid_datagrams",  # not an Initial, for no connection of ours
            "short_initials",  # an Initial in a datagram under 1,200 bytes
            "unsupported_version",  # an Initial of a QUIC version we do not speak
            "retry_sent", "retry_token_invalid",  # address validation
            "retry_repeats",  # the rest of a ClientHello already answered with a Retry (dropped)
            "retry_rate_limited",  # Initials without token over the per-IP Retry rate (dropped)
            "halfopen_refused",  # this source IP already holds its half-open share
            "halfopen_evicted",  # the half-open table was full: the oldest of its busiest IP made way
            "refused_links",  # no room at all (max_links + max_halfopen links held)
            "links_accepted",  # connections created for a validated Initial
            "primes_sent",  # hole punching's low-TTL priming datagrams (Endpoint.prime)
            "preauth_chunk_data",  # chunk-stream data before authentication (stopped)
            "preauth_over_budget",  # links closed for too many bytes before authentication
            "reorder_over_cap",  # links closed for holding too many out-of-order stream bytes
            # links closed before the OFTP handshake completed (TLS failed, wrong key, bad
            # HELLO/AUTH, evicted, or silent): accepted ones, dialled ones, and of both
            # those closed by the handshake deadline
            "handshakes_failed_in", "handshakes_failed_out", "handshake_timeouts",
            "unreachable_family",  # dials to an address of the other IP version (not sent)
            "unexpected_streams", "tls_no_client_key", "tls_key_mismatch",
            "chunk_streams_reset", "delay_queue_drops", "control_send_refused",
            # chunk runs ended early, the next chunk of their lane too close behind (link.py)
            "chunk_runs_cut",
            "chunk_no_stream",  # a chunk dropped: the peer's stream credit was used up (Link)
            "control_backlog_closed",  # links closed for not reading our control stream (link.py)
            "quic_refused"), 0)  # a call the QUIC stack refused (its connection closed or failed)
        self.retry = retry
        self.tokens = RetryTokens(token_lifetime)
        self.retry_rate = RatePerSource(retry_rate_per_ip, burst=retry_rate_per_ip)
        #: (address, connection id) of the Initials answered with a Retry just now
        self.retried = RecentlySeen(RETRY_REPEAT_WINDOW)
        self.max_halfopen = max_halfopen
        self.halfopen: HalfOpenTable[Link] = HalfOpenTable(max_halfopen, max_halfopen_per_ip)
        self.preauth_budget = preauth_budget
        self.max_reorder_bytes = max_reorder_bytes
        #: control-stream bytes waiting for the peer's flow-control credit past which a
        #: link is closed (link.CONTROL_UNSENT_MAX; settable for tests)
        self.control_unsent_max = CONTROL_UNSENT_MAX
        if not 0.0 <= link_delay <= 10.0:
            raise ValueError("link delay must be between 0 and 10 seconds")
        self.link_delay = link_delay
        self.max_delayed = max_delayed
        #: (release time, one flush's datagrams, address), in release order
        self._delayed: deque[tuple[float, list[bytes], Addr]] = deque()
        self._delayed_count = 0  #: datagrams in ``_delayed``
        #: links that asked for a flush during this socket wake-up (insertion-ordered set)
        self._dirty: dict[Link, None] = {}
        self._batching = False
        self._batch_link: Link | None = None  #: the link the batch's last datagram was for
        #: datagrams of the batch's current run (one link, one address) not yet handed to
        #: it (stacks with ``batch_receive``); at most one socket wake-up's reads
        self._run: list[bytes] = []
        self._run_addr: Addr | None = None
        self._delay_timer: asyncio.TimerHandle | None = None
        self._mds = max_datagram_size
        self._server_config = self._config(is_client=False)
        self._versions = self.stack.supported_versions()

    def _config(self, *, is_client: bool) -> object:
        # Flow-control windows: aioquic doubles them as they fill, so they limit speed only
        # at the start; what they bound is what a stranger can make us allocate before the
        # pre-auth budget is checked (aioquic fills a gap in a stream with zeros).
        return self.stack.config(self.identity, is_client=is_client, mds=self._mds,
                                 max_data=INITIAL_MAX_DATA, max_stream_data=INITIAL_MAX_STREAM_DATA)

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        try:
            transport = UdpSocket.bind(host, port, on_datagram=self._on_datagram,
                                       on_batch_end=self._end_batch, gso=self.gso)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:  # (the bare error named no address)
                raise OSError(exc.errno, f"{host}:{port} (UDP) is not an address of this machine: "
                              "give one of its addresses (e.g. 127.0.0.1)") from None
            raise
        self.transport = transport
        # A flood shares the kernel's receive queue with our peers' packets; the default
        # (~200 KB, ~90 datagrams) overflows whenever the process is off the CPU for 10 ms
        # and then drops honest packets with the junk. The kernel caps this at rmem_max.
        try:
            transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError:
            pass
        sockname = transport.get_extra_info("sockname")
        return sockname[0], sockname[1]

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        s = self.transport.get_extra_info("sockname")
        return s[0], s[1]

    def reaches(self, host: str) -> bool:
        """Can our socket send to ``host``? An IPv4 socket reaches no IPv6 address (nor the
        reverse): the send raised deep in the link, a traceback per address a DHT contact or
        a link named, and closing the node failed on the half-made link."""
        if self.transport is None:
            return True
        try:
            v = ipaddress.ip_address(host).version
        except ValueError:
            return False
        return v == (6 if self.transport.sock.family == socket.AF_INET6 else 4)

    def dial(self, addr: tuple[str, int], expected_key: bytes) -> Link:
        if not self.reaches(addr[0]):
            self.counters["unreachable_family"] += 1
            raise ConnectionError(f"{addr[0]}: not an address of this node's IP version "
                                  f"(its socket is {self.transport.sock.getsockname()[0] if self.transport else '?'})")
        quic = self.stack.dialler(self._config(is_client=True))
        session = ss.Session(self.identity, is_dialler=True, expected_key=expected_key, rng=self.nonces,
                             chunk_runs=self.chunk_run > 1, versions=self.oftp_versions)
        link = Link(self, quic, addr, session)  # arms the handshake deadline
        self.links.add(link)
        self.links_by_cid[quic.host_cid] = link
        quic.connect(addr, now=self.loop.time())
        link.transmit_now()  # the Initial goes out now
        return link

    def prime(self, addr: tuple[str, int], ttl: int) -> bool:
        """Hole punching (oasis.core.nat): one small datagram to ``addr`` from our socket
        with IP TTL (IPv6 hop limit) ``ttl``, so our NAT maps the flow to ``addr`` as it
        maps our others, and the datagram dies before ``addr``'s NAT. Its one zero byte is
        no QUIC packet: were it to arrive, the receiver drops it. False: not sent."""
        t = self.transport
        if t is None or not self.reaches(addr[0]):
            return False
        ok: bool = t.send_ttl(PRIME_DATAGRAM, addr, ttl)
        if ok:
            self.counters["primes_sent"] += 1
        return ok

    def want_flush(self, link: Link) -> None:
        """``link`` has something for QUIC to send (or a timer to re-arm). Inside a socket
        wake-up's batch of datagrams it is flushed once at the batch's end; otherwise now."""
        if self._batching:
            self._dirty[link] = None
        else:
            link.transmit_now()

    def _on_datagram(self, data: bytes, addr: Addr) -> None:
        self._batching = True
        self.datagram_received(data, addr)

    def _end_batch(self) -> None:
        self._deliver_run()
        self._batching = False
        self._batch_link = None
        self._flush_dirty()

    def _flush_dirty(self) -> None:
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            for link in dirty:
                if link in self.links:
                    link.transmit_now()

    def send_datagrams(self, datagrams: list[bytes], addr: Addr) -> None:
        """Hand a link's datagrams to the socket in order (one GSO send per equal-sized run)."""
        t = self.transport
        if t is None:
            return
        if self.link_delay > 0.0:
            self._delay(datagrams, addr)
        else:
            self._put(t, datagrams, addr)

    def send_datagram(self, data: bytes, addr: Addr) -> None:
        """Hand one datagram to the socket, now or ``link_delay`` later (in order)."""
        if self.transport is None:
            return
        if self.link_delay <= 0.0:
            self.transport.sendto(data, addr)
            return
        self._delay([data], addr)

    @staticmethod
    def _put(t: Any, datagrams: list[bytes], addr: Addr) -> None:
        """Datagrams to the socket in order (a test's stand-in transport has only sendto)."""
        if isinstance(t, UdpSocket):
            t.send_many(datagrams, addr)  # one GSO send per equal-sized run
        else:
            for d in datagrams:
                t.sendto(d, addr)

    def _delay(self, datagrams: list[bytes], addr: Addr) -> None:
        """Queue one flush's datagrams for ``link_delay`` later, together: they leave as
        they would have undelayed (one GSO send), so the emulated delay costs no extra
        system calls. At most ``max_delayed`` datagrams wait; the rest are dropped."""
        room = self.max_delayed - self._delayed_count
        if room < len(datagrams):
            self.counters["delay_queue_drops"] += len(datagrams) - max(room, 0)
            if room <= 0:
                return
            datagrams = datagrams[:room]
        self._delayed_count += len(datagrams)
        # The delay is constant, so release times are in sending order: one FIFO, one timer.
        self._delayed.append((self.loop.time() + self.link_delay, datagrams, addr))
        if self._delay_timer is None:
            self._delay_timer = self.loop.call_at(self._delayed[0][0], self._release_delayed)

    def _release_delayed(self) -> None:
        self._delay_timer = None
        q = self._delayed
        t = self.transport
        # Event-loop timers may fire up to their resolution (uvloop: 1 ms) early.
        now = self.loop.time() + 0.001
        while q and q[0][0] <= now:
            _, datagrams, addr = q.popleft()
            self._delayed_count -= len(datagrams)
            if t is not None:
                self._put(t, datagrams, addr)
        if q:
            self._delay_timer = self.loop.call_at(q[0][0], self._release_delayed)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        # A short-header packet (all but the handshake's) names its connection in the 8
        # bytes after its first: that is all routing needs. Anything else (a long header,
        # a connection id we do not know) is parsed in full, as before.
        link = None
        if len(data) > CID_LENGTH and data[0] & 0xC0 == 0x40:
            link = self.links_by_cid.get(data[1:1 + CID_LENGTH])
        if link is None:
            try:
                header = self.stack.header(data)
            except Exception:
                self.counters["undecodable_datagrams"] += 1
                return
            link = self.links_by_cid.get(header.destination_cid)
            if link is None:
                link = self._accept(data, header, addr)
                if link is None:
                    return
        if link is not self._batch_link:
            # Coalesce only a run of datagrams for one link: before another link's input,
            # what the earlier ones asked for goes out (the order between links is kept).
            self._deliver_run()
            self._flush_dirty()
            self._batch_link = link
        if self._batching and self.stack.batch_receive:
            if addr != self._run_addr:  # a run comes from one address (a peer may migrate)
                self._deliver_run()
                self._run_addr = addr
            self._run.append(data)
            return
        link.datagram_received(data, self.loop.time(), addr)

    def _deliver_run(self) -> None:
        """Hand the current run of datagrams to its link, in one call."""
        run, link, addr = self._run, self._batch_link, self._run_addr
        if not run:
            return
        self._run = []
        if link is not None and addr is not None and link in self.links:
            link.datagrams_received(run, self.loop.time(), addr)

    def _accept(self, data: bytes, header: Header, addr: Addr) -> Link | None:
        """A datagram for no connection of ours: a new link, a Retry, or nothing (counted)."""
        c = self.counters
        if not header.initial:
            c["unknown_cid_datagrams"] += 1
            return None
        if len(data) < MIN_INITIAL_SIZE:
            c["short_initials"] += 1
            return None
        if header.version not in self._versions:
            c["unsupported_version"] += 1  # no Version Negotiation: ours all speak v1
            return None
        if not 8 <= len(header.destination_cid) <= 20:
            c["undecodable_datagrams"] += 1  # RFC 9000 §7.2: a client's first DCID is >= 8 bytes
            return None
        odcid = header.destination_cid
        retry_cid: bytes | None = None
        if self.retry:
            now = self.loop.time()
            if not header.token:
                asked = f"{addr[0]}|{addr[1]}|".encode() + header.destination_cid
                if self.retried.seen(asked, now):
                    c["retry_repeats"] += 1  # its Retry is on its way
                    return None
                if not self.retry_rate.allow(ip_key(addr[0]) or addr[0], now):  # a /64 is one source
                    c["retry_rate_limited"] += 1  # the dialler's QUIC retransmits its Initial
                    return None
                # Stateless: the token carries all we need to accept the echo.
                scid = self.nonces.randbytes(8)
                token = self.tokens.issue(addr, header.destination_cid, scid, now)
                assert header.version is not None  # an Initial has a long header
                self.send_datagram(encode_retry(header.version, scid, header.source_cid,
                                                header.destination_cid, token), addr)
                c["retry_sent"] += 1
                self.retried.add(asked, now)
                return None
            checked = self.tokens.check(addr, header.token, header.destination_cid, now)
            if checked is None:
                c["retry_token_invalid"] += 1  # dropped, no reply: the source may be spoofed
                return None
            odcid = checked
            retry_cid = header.destination_cid
        source = ip_key(addr[0]) or addr[0]  # per-source caps count an IPv6 /64 as one address
        if not self._admit(source):
            return None
        quic = self.stack.listener(self._server_config, odcid, retry_cid)
        session = ss.Session(self.identity, is_dialler=False, rng=self.nonces,
                             chunk_runs=self.chunk_run > 1, versions=self.oftp_versions)
        link = Link(self, quic, addr, session)  # arms the handshake deadline
        c["links_accepted"] += 1
        self.links.add(link)
        self.halfopen.add(link, source)
        self.links_by_cid[header.destination_cid] = link
        self.links_by_cid[quic.host_cid] = link
        return link

    def _admit(self, ip: str) -> bool:
        """Room for one more half-open link from ``ip``? May evict a half-open link (``HalfOpenTable.victim``)."""
        if self.halfopen.ip_full(ip):
            self.counters["halfopen_refused"] += 1
            return False
        if len(self.links) >= self.max_links + self.max_halfopen:
            self.counters["refused_links"] += 1
            return False
        if self.halfopen.full():
            victim = self.halfopen.victim()
            assert victim is not None
            self.counters["halfopen_evicted"] += 1
            self.halfopen.discard(victim)
            victim.close(ErrorCode.OVERLOADED, "too many links are still handshaking")
        return True

    def on_session_event(self, link: Link, ev: ss.Event) -> None:
        if isinstance(ev, (ss.Authenticated, ss.Closed)):
            self.halfopen.discard(link)
        if isinstance(ev, ss.Authenticated) and not link.handshake_done.done():
            link.handshake_done.set_result(ev.peer_key)
        if isinstance(ev, ss.Closed) and not link.handshake_done.done():
            c = self.counters
            c["handshakes_failed_out" if link.session.is_dialler else "handshakes_failed_in"] += 1
            if ev.code == ErrorCode.TIMEOUT and not ev.by_peer:
                c["handshake_timeouts"] += 1
            link.handshake_done.set_exception(ConnectionError(f"{ev.code.name}: {ev.reason}"))
            link.handshake_done.exception()  # mark retrieved
        self.on_event(link, ev)

    def forget(self, link: Link) -> None:
        link.cancel_timers()
        link.closed = True
        self._dirty.pop(link, None)
        self.links.discard(link)
        self.halfopen.discard(link)
        for cid in [c for c, lk in self.links_by_cid.items() if lk is link]:
            del self.links_by_cid[cid]

    def close(self) -> None:
        for link in list(self.links):
            if not link.closed:
                link.close(ErrorCode.SHUTDOWN, "node shutting down")
        self._flush_dirty()  # the GOODBYEs and CONNECTION_CLOSEs go out now, not never
        for link in list(self.links):
            self.forget(link)
        self._dirty.clear()
        if self._delay_timer is not None:
            self._delay_timer.cancel()
            self._delay_timer = None
        if self.transport is not None:
            # Shutting down: what still waits in the delay queue (the CONNECTION_CLOSEs
            # just queued among it) goes out now rather than being lost.
            while self._delayed:
                _, datagrams, addr = self._delayed.popleft()
                self._put(self.transport, datagrams, addr)
            self._delayed_count = 0
            self.transport.close()
