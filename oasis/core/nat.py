"""Reachability behind NATs, sans-I/O: the address peers see, and hole punching.

Theory of operation
-------------------
Most viewers sit behind a NAT that drops unsolicited inbound packets, so two of
them cannot dial each other. Owned by :class:`~oasis.core.peer.PeerPolicy`, this
module does three things (docs/oftp.md §15):

* **The address peers see** (:class:`MappingObserver`). On every link each side
  sends OBSERVED: the IP and port the other side's packets come from. A report counts
  only from a neighbour or a link we dialled (the policy's rule: an inbound link once
  it joins a stream, an inbound service link never), and only while its link is up. A
  node keeps one report per /24 network (IPv4; /48 for IPv6, as libp2p's and discv5's
  diversity rules) -- the newest -- for at most ``max_observers`` networks; a further
  network's report is refused, not swapped for a kept one. Its *public mapping* is an
  address that at least two networks report, and more networks than any other address;
  once it has one, another address replaces it only with a strict majority of the
  reporting networks. One liar, many from one network, or as many liars' networks as
  honest ones cannot set or move it; liars who left no longer count. The kind
  of mapping follows: ``PUBLIC`` when it equals the listening address (no NAT),
  ``EIM`` when two networks agree on a port (endpoint-independent mapping: a punch
  can work; a minority of other ports is allowed, see ``_decide``), ``SYMMETRIC``
  when the same IP comes with a different port for every observer, from at least
  three networks (a new mapping per destination: punching to another NAT fails;
  two that disagree are ``UNKNOWN`` until a third report decides).
* **Who can introduce whom.** Each node tells each neighbour, once it is one (we
  dialled it, or it joined a stream) and every ``pex_interval``, up to ``max_listed``
  keys of its other neighbours (NEIGHBOURS; never a service link's). The receiver
  takes NEIGHBOURS from neighbours only, at most ``max_listed`` keys of one, and
  remembers, per key, which linked neighbours can introduce it (bounded:
  ``max_targets`` keys, ``max_introducers`` each, ``max_per_introducer`` keys per
  introducer -- its own oldest go first --, ``via_ttl``; an introducer's keys go
  when its link does).
* **Hole punching** (as libp2p's DCUtR and ICE, through a common neighbour R):
  A sends PUNCH INTRO (B) to R; R, if both are its authenticated neighbours and A
  is within its introduction budget, sends PUNCH OFFER (A, A's address as R sees
  it, R's RTT to A) to B; B, if it has room and budget, *primes* towards A (one
  datagram with IP TTL ``prime_ttl``: it opens B's own NAT towards A and dies before
  A's), answers PUNCH ACCEPT to R and dials A after the round trip B→R→A (half of it
  when not priming); R forwards PUNCH GO (B, B's address as R sees it) to A, which
  primes and dials B at once. A's Initial passes B's primed NAT; B's, later, finds
  A's NAT open (QUIC retransmits what was dropped); the simultaneous-dial rule of
  the peer policy keeps one link. It works when both mappings are endpoint-independent, or one
  side is public -- then it is a *connection reversal*: the NATed side's dial
  reaches the public one. Symmetric to symmetric fails; such a peer still links
  to public and EIM peers by dialling them. Every stage is refused and counted
  outside its budget, and a node dials a punched address only with the peer's key
  pinned (an address that is not that peer's node never becomes a link).
* **Why prime, and a punch that failed is not retried until the NATs forgot it.**
  Against Linux NATs (the testbed's, many home routers') a first packet that reaches
  the far NAT before that NAT's own node sent leaves a conntrack entry there (unreplied
  UDP: 30 s, refreshed by each further packet), the late node's flow is then mapped to a
  new port, and the early side's NAT drops it -- both dials fail. Unprimed, the two dials
  had to leave within about the one-way delay between the peers, and on a loaded testbed
  machine a GO, or the dial itself, ran 70-100 ms late (67 ms one-way DE-US). Primed, B's
  NAT is open before A's Initial can arrive, and B's Initial reaches A's NAT a B→R→A
  half round trip later than before (A may be ~150 ms late). A prime that does not reach
  our NAT (a NAT farther than ``prime_ttl`` hops), a GO later still, or a plain or DHT
  dial to a NATed peer's mapping is such an early packet too. Every retry within the entry's life
  fails the same way and refreshes it (the nodes re-punched every 1-6 s and never
  linked), so a node whose punched dial failed holds the peer off at that address
  ``punch_retry_after`` (no INTRO through that introducer, no OFFER or GO naming the
  peer there acted on, no plain or DHT dial to it there, counted ``punch_failed`` /
  ``punch_held``) and the retry after it finds clean NATs. The dials
  are timed by the lowest RTT sample of each link (the policy's ``rtt_sample``), not the
  handshake's estimate, which a loaded machine inflates.

Trust: an OFFER or GO address is what an authenticated neighbour *observed*, not
what the peer signed. PUNCH is taken from neighbours only (a service link's is
ignored), and an OFFER or GO must name a canonical unicast IP literal (the DHT's
rule), not our own address, and loopback only from an introducer on loopback. A
lying introducer can still make a node dial an address of its choosing, pinned to
a key that will not answer there: at most ``introducer_dials`` at once from its
OFFERs, and once ``introducer_failures`` more of its punches failed than linked
within ``punch_retry_after``, none (its OFFERs refused, its GOs not dialled, no
INTRO to it) until they age out -- all within the node-wide ``accept_burst`` /
``accept_rate``. A failed punch holds the peer off *at that address* (and through
that introducer): a forged OFFER naming a key at a dead address does not hold that
key off elsewhere, and a made-up key at a real node's address does not back the
address off.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from . import wire
from .dhtrecord import canonical_host

_U63 = 0x7FFF_FFFF_FFFF_FFFF  #: nonces stay within the wire's U64 (int64) range


class NatKind(enum.IntEnum):
    UNKNOWN = 0
    PUBLIC = 1  #: observed address = listening address
    EIM = 2  #: endpoint-independent mapping (same public port towards every peer)
    SYMMETRIC = 3  #: a new public port per destination


class Phase(enum.IntEnum):
    INTRO = 0  #: A -> R: introduce me to ``peer`` (B)
    OFFER = 1  #: R -> B: ``peer`` (A) at host:port wants a link; delay_ms = RTT R<->A
    ACCEPT = 2  #: B -> R: I dial ``peer`` (A) now
    GO = 3  #: R -> A: ``peer`` (B) at host:port dials you now: dial it


@dataclass
class NatConfig:
    max_observers: int = 16  #: observations kept (the newest per observer)
    pex_interval: float = 10.0  #: NEIGHBOURS to each neighbour this often
    max_listed: int = 16  #: keys per NEIGHBOURS message
    max_targets: int = 1024  #: keys remembered with their introducers
    max_introducers: int = 4  #: introducers remembered per key
    via_ttl: float = 60.0  #: forget an introduction path not re-listed for this long
    punch_timeout: float = 6.0  #: an introduction not answered by GO by then failed
    max_pending: int = 16  #: our introductions under way
    #: INTROs per second a peer may ask us to forward, with a burst: a newcomer behind a
    #: NAT asks for about a dozen neighbours through its first two or three
    relay_rate: float = 4.0
    relay_burst: float = 16.0
    max_relaying: int = 256  #: OFFERs we forwarded and await ACCEPT for
    accept_rate: float = 2.0  #: OFFERs per second we act on (dial), node-wide ...
    accept_burst: float = 12.0  #: ... with this burst
    #: punch (rather than dial) a candidate a neighbour can introduce also while our own
    #: mapping is not known yet (a node behind a NAT does not know it in its first seconds)
    punch_unknown: bool = False
    #: after our punched dial to a peer failed, no punch with it (no INTRO, no OFFER
    #: accepted, no GO dialled) for this long: a punch whose first packet reached the far
    #: NAT before that NAT's own packet left leaves state there (a Linux NAT keeps a
    #: conntrack entry for the unsolicited packet and maps the late side's flow to a new
    #: port), and every packet of a retry refreshes it -- retries within its timeout (30 s
    #: for unreplied UDP in Linux) all fail. Longer than that: the retry finds clean NATs.
    punch_retry_after: float = 35.0
    #: IP TTL (IPv6 hop limit) of the priming datagram each side sends to the other's
    #: address just before it dials (B on the OFFER, A on the GO): enough to pass our own
    #: NAT (which then holds the mapping the peer was told) and to die before the far NAT,
    #: which so never sees an unsolicited packet from us. 2 passes a home router or a CGN
    #: one hop away and dies at the next router. 0: no priming (and B dials half a round
    #: trip after the OFFER, as A does on the GO: the two must leave within the one-way
    #: delay between them).
    prime_ttl: int = 2
    max_held: int = 1024  #: peers remembered as held off (oldest forgotten first)
    #: keys one introducer may hold in the table of introductions: a new key beyond it
    #: drops that introducer's oldest (found 2026-12-02: one link's 100 NEIGHBOURS of 32
    #: keys evicted all 2,208 entries, honest introducers' too, in a second)
    max_per_introducer: int = 64
    #: an introducer whose punches failed this many times more than they linked within
    #: ``punch_retry_after`` has its OFFERs refused, its GOs not dialled and is asked for
    #: no introduction until the failures age out (a stranger's forged OFFERs drew 60
    #: dials, 708 kB, to a host of its choosing in 30 s)
    introducer_failures: int = 4
    #: punched dials that one introducer's OFFERs may have under way at once (its own
    #: share of the node-wide accept budget)
    introducer_dials: int = 4


@dataclass
class NatCounters:
    observed: int = 0  #: OBSERVED messages taken
    observed_invalid: int = 0  #: not an IP literal / port 0
    observed_resent: int = 0  #: OBSERVED sent again: a peer's address changed (migration)
    pex_sent: int = 0
    pex_received: int = 0
    introducers_evicted: int = 0
    punch_intros_sent: int = 0
    punch_intros_failed: int = 0  #: no GO within punch_timeout
    punch_offers_relayed: int = 0
    punch_relay_refused: int = 0  #: INTRO over budget, or B not our neighbour
    punch_accepted: int = 0  #: OFFERs we answered (and dialled)
    punch_refused: int = 0  #: OFFERs (or GOs) over the dial budget; OFFERs with no room, banned or unsolicited
    punch_go_relayed: int = 0
    punch_go_received: int = 0
    punch_unexpected: int = 0  #: ACCEPT/GO matching nothing we sent
    #: punch dials not made: a plain dial to the address failed lately (backed off; a
    #: punched dial that failed holds the peer off there instead: punch_held)
    punch_backed_off: int = 0
    punch_failed: int = 0  #: punched dials that did not link (the peer is then held off)
    punch_held: int = 0  #: INTROs not sent, OFFERs refused, GOs not dialled: held off (above)
    punch_linked: int = 0  #: peers we asked to be introduced to (INTRO) and then linked
    punch_primed: int = 0  #: priming datagrams sent (low TTL: they open our NAT only)
    #: OBSERVED that never counted: from a service link, or an inbound link that closed
    #: (or turned to the DHT) before it joined a stream (only neighbours and links we
    #: dialled report our address)
    observed_unused: int = 0
    observed_table_full: int = 0  #: reports from a network beyond max_observers networks
    pex_not_neighbour: int = 0  #: NEIGHBOURS from a link that is not a neighbour (ignored)
    pex_keys_dropped: int = 0  #: keys beyond max_listed in one NEIGHBOURS (ignored)
    pex_keys_capped: int = 0  #: an introducer's oldest keys dropped at max_per_introducer
    punch_not_neighbour: int = 0  #: PUNCH from a link that is not a neighbour (ignored)
    #: OFFERs and GOs naming no address we may dial: not a canonical unicast IP literal
    #: (0.0.0.0, 255.255.255.255, multicast, a zone id), our own address, or loopback from
    #: an introducer that is not itself on loopback
    punch_bad_address: int = 0
    #: OFFERs and GOs not acted on: their introducer's punches failed (introducer_failures)
    #: or it has introducer_dials under way
    punch_introducer_refused: int = 0


@lru_cache(maxsize=1 << 18)  # (a simulation holds 10^5 nodes' addresses)
def _network(host: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) an address is in; None if not an IP literal."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{host}/{bits}", strict=False))


class MappingObserver:
    """What a node's address looks like from outside (see the module docstring).

    One report per network (an IPv4 /24, an IPv6 /48): the newest observer of a network
    replaces its earlier one, and at most ``max_observers`` networks are kept -- a report
    from a further network is refused (counted ``observed_table_full``) until a kept one's
    link goes down, so observers flooding in from a few networks neither outvote nor evict
    the others (16 links from two /24s used to push every honest report out). Which links
    may report at all is the policy's rule (neighbours, and links we dialled)."""

    def __init__(self, listen: tuple[str, int] | None = None, max_observers: int = 16,
                 counters: NatCounters | None = None) -> None:
        self.listen = listen
        self.max_observers = max_observers  #: networks kept (one observer each)
        #: observer key -> (observer's network, observed host, observed port); newest last
        self.reports: dict[bytes, tuple[str, str, int]] = {}
        self.networks: dict[str, bytes] = {}  #: network -> its observer (the newest)
        self.public: tuple[str, int] | None = None
        self.kind = NatKind.UNKNOWN
        self.counters = counters if counters is not None else NatCounters()

    @staticmethod
    def valid(observer_host: str, host: str, port: int) -> bool:
        """A report we could use: the observer's address is an IP literal, the observed
        one a canonical unicast IP literal (the DHT's rule) and a port."""
        return (_network(observer_host) is not None and canonical_host(host) is not None
                and 0 < port < 65536)

    def observe(self, observer: bytes, observer_host: str, host: str, port: int) -> bool:
        """A report from ``observer`` (at ``observer_host``). False if not valid."""
        if not self.valid(observer_host, host, port):
            return False
        net = _network(observer_host)
        assert net is not None
        old = self.reports.get(observer)
        if old is not None and old[0] == net:
            del self.reports[observer]  # re-insert: newest last
        else:
            holder = self.networks.get(net)
            if holder is None and len(self.networks) - (old is not None) >= self.max_observers:
                self.counters.observed_table_full += 1
                return True
            if old is not None:
                self._drop(observer)
            if holder is not None:
                self._drop(holder)  # one report per network: the newest
        self.reports[observer] = (net, host, port)
        self.networks[net] = observer
        self._decide()
        return True

    def _drop(self, observer: bytes) -> None:
        r = self.reports.pop(observer, None)
        if r is not None and self.networks.get(r[0]) == observer:
            del self.networks[r[0]]

    def forget(self, observer: bytes) -> None:
        """``observer``'s link is down: its report no longer counts. Reports outliving
        their links let two liars in different networks who had left still set the
        mapping (and the kind, so whether a node punches) until 16 newer observers
        displaced them; a mapping stays while someone linked still sees it."""
        if observer in self.reports:
            self._drop(observer)
            self._decide()

    def _set(self, addr: tuple[str, int]) -> None:
        self.public = addr
        self.kind = NatKind.PUBLIC if self.listen is not None and addr == self.listen else NatKind.EIM

    def _decide(self) -> None:
        by_addr: dict[tuple[str, int], set[str]] = {}
        ports_by_ip: dict[str, set[str]] = {}  # ip -> networks that saw some port of it
        port_set: dict[str, set[int]] = {}
        for net, host, port in self.reports.values():
            by_addr.setdefault((host, port), set()).add(net)
            ports_by_ip.setdefault(host, set()).add(net)
            port_set.setdefault(host, set()).add(port)
        n = len(self.reports)  # networks reporting (one report each)
        cur = self.public
        seen = len(by_addr.get(cur, ())) if cur is not None else 0
        agreed = [a for a, nets in by_addr.items() if len(nets) >= 2]
        if agreed:
            # A port two networks agree on is the mapping, even if a few observers saw
            # another: a Linux NAT that already holds a conntrack entry for a peer's
            # early (punching) packet maps our flow to that peer to a new port, while it
            # keeps the one mapping towards everyone else.
            best = max(agreed, key=lambda a: len(by_addr[a]))
            top = len(by_addr[best])
            if cur is not None and seen > 0:
                # A mapping someone still sees changes only for an address a strict
                # majority of the reporting networks agree on: liars from as many
                # networks as the honest observers cannot move it (found 2026-12-02:
                # 4 liars' networks against 3 honest ones flipped a PUBLIC node)
                if best != cur and 2 * top > n:
                    self._set(best)
                else:
                    self._set(cur)
                return
            if sum(1 for a in agreed if len(by_addr[a]) == top) == 1:
                self._set(best)  # (a tie decides nothing)
                return
        elif cur is not None and seen > 0:
            # No port two networks agree on. A mapping we had stays while someone still
            # sees it: when a peer's link migrates it reports again (§15.4), and a NAT that
            # remapped one flow (the conntrack clash above) must not make us symmetric; a
            # new mapping (a rebinding) replaces it once a majority agrees on it.
            return
        # Else the same IP with a port per observer is symmetric -- from three networks:
        # two that disagree may be one remapped flow (the conntrack clash above) or a
        # rebinding between their reports, and a third decides.
        for host, nets in ports_by_ip.items():
            if len(nets) >= 3 and len(port_set[host]) > 1 and not agreed:
                self.public = None
                self.kind = NatKind.SYMMETRIC
                return
        self.public = None
        self.kind = NatKind.UNKNOWN


@dataclass
class _Bucket:
    tokens: float
    at: float

    def take(self, now: float, rate: float, burst: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class Intro:
    """An introduction we asked for (we are A)."""

    target: bytes
    introducer: bytes
    deadline: float


@dataclass
class Relayed:
    """An OFFER we forwarded (we are R): A asked for B."""

    source: bytes
    target: bytes
    expires: float


@dataclass(frozen=True, slots=True)
class PunchDial:
    """Dial ``peer`` at ``host:port`` at ``at`` (the policy turns it into a ``Dial``)."""

    at: float
    peer: bytes
    host: str
    port: int
    via: bytes = b""  #: the introducer whose OFFER or GO named the address


@dataclass(frozen=True, slots=True)
class PunchPrime:
    """Send a small datagram with IP TTL ``ttl`` to ``host:port`` now, from the socket
    we dial with (the policy turns it into a ``Prime``): it opens our NAT's mapping
    towards the peer and expires before the peer's NAT."""

    peer: bytes
    host: str
    port: int
    ttl: int


@dataclass(frozen=True, slots=True)
class SendToPeer:
    """Send ``message`` on the link of neighbour ``peer`` (the policy maps it)."""

    peer: bytes
    message: wire.Message


def _recent(times: list[float], now: float, window: float) -> list[float]:
    while times and times[0] + window <= now:
        times.pop(0)
    return times


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Introductions:
    """The three roles of hole punching and the introduction paths (module docstring).

    The policy feeds it what it knows of links (``addr_of``: peer -> (host, port) as
    the link's remote address, for neighbours only, and an RTT estimate per peer) and
    takes its ``out`` list of :class:`SendToPeer`, :class:`PunchPrime` and
    :class:`PunchDial`. PUNCH and NEIGHBOURS reach it only from neighbours (the
    policy's rule: not service links)."""

    self_key: bytes
    config: NatConfig = field(default_factory=NatConfig)
    counters: NatCounters = field(default_factory=NatCounters)
    #: target key -> its introducers, oldest first: ((introducer key, listed at), ...). Tuples,
    #: not a dict per target, and one pair (and one 1-tuple of it) shared by every key of a
    #: NEIGHBOURS message: a node holds hundreds of these (a dict each is 224 bytes)
    via: dict[bytes, tuple[tuple[bytes, float], ...]] = field(default_factory=dict)
    #: introducer -> the keys it listed (oldest first): bounded by max_per_introducer. A
    #: list, not a dict used as an ordered set: 64 keys cost 0.6 kB, not 2.3 kB (a node
    #: holds one per neighbour that listed; 100,000 nodes, issue 9)
    taught: dict[bytes, list[bytes]] = field(default_factory=dict)
    pending: dict[int, Intro] = field(default_factory=dict)  #: nonce -> our introduction
    #: (A's key, A's nonce) -> forwarded OFFER
    relaying: dict[tuple[bytes, int], Relayed] = field(default_factory=dict)
    buckets: dict[bytes, _Bucket] = field(default_factory=dict)  #: per INTRO source
    accept_bucket: _Bucket | None = None
    out: list[SendToPeer | PunchDial | PunchPrime] = field(default_factory=list)
    next_nonce: int = 1
    #: peer -> {address: until when no punch with the peer at that address is made (our
    #: punched dial to it there failed)}. Keyed by the address too: a stranger's OFFER
    #: naming a key at a dead address held that key off everywhere for 35 s
    held: dict[bytes, dict[tuple[str, int], float]] = field(default_factory=dict)
    #: target -> {introducer: until when we ask that introducer for no introduction to it}
    held_via: dict[bytes, dict[bytes, float]] = field(default_factory=dict)
    #: introducer -> times its punches failed / linked, within punch_retry_after
    failures: dict[bytes, list[float]] = field(default_factory=dict)
    successes: dict[bytes, list[float]] = field(default_factory=dict)
    #: peer -> our punched dials to it that failed since we last linked (bounded as ``held``):
    #: after a failed primed punch the next dials when A does (see ``on_punch``, OFFER)
    peer_failures: dict[bytes, int] = field(default_factory=dict)

    # ---- after a failed punch ---------------------------------------------------------
    def hold(self, peer: bytes, addr: tuple[str, int], now: float, via: bytes = b"") -> None:
        """Our punched dial to ``peer`` at ``addr`` failed (``via`` named it): no punch
        with it there for ``punch_retry_after``, no introduction to it through ``via``
        as long, and a failure for ``via``."""
        cfg = self.config
        self.counters.punch_failed += 1
        until = now + cfg.punch_retry_after
        addrs = self.held.pop(peer, None)  # re-insert: newest last
        if addrs is None:
            addrs = {}
        addrs.pop(addr, None)
        addrs[addr] = until
        if len(addrs) > 4:
            del addrs[next(iter(addrs))]
        self.held[peer] = addrs
        if len(self.held) > cfg.max_held:
            del self.held[next(iter(self.held))]
        if via:
            self._hold_via(peer, via, until)
            self._tally(self.failures, via, now)
        self.peer_failures[peer] = self.peer_failures.pop(peer, 0) + 1
        if len(self.peer_failures) > cfg.max_held:
            del self.peer_failures[next(iter(self.peer_failures))]

    def _hold_via(self, peer: bytes, via: bytes, until: float) -> None:
        """No introduction to ``peer`` through ``via`` before ``until``."""
        cfg = self.config
        pairs = self.held_via.pop(peer, None)
        if pairs is None:
            pairs = {}
        pairs.pop(via, None)
        pairs[via] = until
        if len(pairs) > cfg.max_introducers:
            del pairs[next(iter(pairs))]
        self.held_via[peer] = pairs
        if len(self.held_via) > cfg.max_held:
            del self.held_via[next(iter(self.held_via))]

    def linked_via(self, via: bytes, now: float) -> None:
        """A punch ``via`` introduced linked: it offsets one of its failures."""
        if via:
            self._tally(self.successes, via, now)

    def _tally(self, table: dict[bytes, list[float]], via: bytes, now: float) -> None:
        times = table.pop(via, None)  # re-insert: newest last
        if times is None:
            times = []
        times.append(now)
        if len(times) > 64:
            del times[0]
        table[via] = times
        if len(table) > self.config.max_held:
            del table[next(iter(table))]

    def introducer_refused(self, via: bytes, now: float) -> bool:
        """Did ``via``'s punches fail ``introducer_failures`` times more than they linked
        within ``punch_retry_after``?"""
        fails = self.failures.get(via)
        if not fails:
            return False
        w = self.config.punch_retry_after
        n = len(_recent(fails, now, w)) - len(_recent(self.successes.get(via, []), now, w))
        return n >= self.config.introducer_failures

    def is_held(self, peer: bytes, host: str, port: int, now: float) -> bool:
        """Did our punched dial to ``peer`` at ``host:port`` fail within
        ``punch_retry_after`` (no packet to it there: the NATs' state would outlive it)?"""
        addrs = self.held.get(peer)
        if addrs is None:
            return False
        until = addrs.get((host, port))
        if until is None:
            return False
        if until <= now:
            del addrs[(host, port)]
            if not addrs:
                del self.held[peer]
            return False
        return True

    def _held_via(self, target: bytes, via: bytes, now: float) -> bool:
        pairs = self.held_via.get(target)
        if pairs is None:
            return False
        until = pairs.get(via)
        if until is None:
            return False
        if until <= now:
            del pairs[via]
            if not pairs:
                del self.held_via[target]
            return False
        return True

    def release(self, peer: bytes) -> None:
        """Linked after all (the peer dialled us, say): nothing to wait for."""
        self.held.pop(peer, None)
        self.held_via.pop(peer, None)
        self.peer_failures.pop(peer, None)

    # ---- introduction paths -------------------------------------------------
    def listed(self, introducer: bytes, keys: Iterable[bytes], now: float) -> None:
        """NEIGHBOURS from neighbour ``introducer``: each key can be reached through it.
        At most ``max_listed`` keys of one message are taken (the wire allows 32), and
        an introducer holds at most ``max_per_introducer`` keys (its oldest go first)."""
        cfg = self.config
        c = self.counters
        c.pex_received += 1
        keys = list(keys)
        if len(keys) > cfg.max_listed:
            c.pex_keys_dropped += len(keys) - cfg.max_listed
            keys = keys[:cfg.max_listed]
        mine = self.taught.pop(introducer, None)  # re-insert: newest last
        if mine is None:
            mine = []
        self.taught[introducer] = mine
        entry = (introducer, now)
        only: tuple[tuple[bytes, float], ...] = (entry,)  #: shared by the keys new here
        via = self.via
        for k in keys:
            if k == self.self_key or k == introducer:
                continue
            old = via.pop(k, None)  # re-insert: newest last
            if old is None:
                paths = only
            else:  # the introducer moves to the end, listed now
                paths = (*(e for e in old if e[0] != introducer), entry)
                if len(paths) > cfg.max_introducers:
                    cut = len(paths) - cfg.max_introducers
                    for e in paths[:cut]:
                        self._untaught(e[0], k)
                    paths = paths[cut:]
            via[k] = paths
            try:
                mine.remove(k)  # (re-listed: moves to the end)
            except ValueError:
                pass
            mine.append(k)
            if len(mine) > cfg.max_per_introducer:
                oldest = mine.pop(0)
                self._unlink(oldest, introducer)
                c.pex_keys_capped += 1
            if len(via) > cfg.max_targets:
                gone = next(iter(via))
                for r, _ in via.pop(gone):
                    self._untaught(r, gone)
                c.introducers_evicted += 1
        if not mine:
            del self.taught[introducer]
        elif len(self.taught) > cfg.max_targets:  # (bounded as the keys they name)
            gone_r = next(iter(self.taught))
            for k in self.taught.pop(gone_r):
                self._unlink(k, gone_r)

    def _untaught(self, introducer: bytes, key: bytes) -> None:
        mine = self.taught.get(introducer)
        if mine is not None:
            try:
                mine.remove(key)
            except ValueError:
                pass
            if not mine:
                del self.taught[introducer]

    def introducers(self, target: bytes) -> list[bytes]:
        """The neighbours that listed ``target``, oldest first (expired ones included)."""
        return [k for k, _ in self.via.get(target, ())]

    def _unlink(self, key: bytes, introducer: bytes) -> None:
        paths = self.via.get(key)
        if paths is not None:
            kept = tuple(e for e in paths if e[0] != introducer)
            if not kept:
                del self.via[key]
            elif len(kept) < len(paths):
                self.via[key] = kept  # (the key keeps its place)

    def introducer_for(self, target: bytes, linked: Container[bytes], now: float) -> bytes | None:
        """A linked neighbour that listed ``target`` within ``via_ttl`` (the newest), not
        held off for it and not refused for its failed punches."""
        paths = self.via.get(target)
        if not paths:
            return None
        best = None
        held = False
        ttl = self.config.via_ttl
        kept: list[tuple[bytes, float]] = []
        for e in paths:
            k, at = e
            if at + ttl <= now:
                self._untaught(k, target)
                continue
            kept.append(e)
            if k in linked:
                if self._held_via(target, k, now):
                    held = True
                elif not self.introducer_refused(k, now):
                    best = k
        if not kept:
            del self.via[target]
        elif len(kept) < len(paths):
            self.via[target] = tuple(kept)  # expired ones forgotten (the target keeps its place)
        if best is None and held:
            self.counters.punch_held += 1  # (no INTRO: a punch through it failed lately)
        return best

    def forget_introducer(self, introducer: bytes) -> None:
        """A neighbour's link went down: its OFFERs cannot be answered, and what it
        listed is of no use (it lists again when it links again)."""
        for key in [k for k, r in self.relaying.items() if introducer in (r.source, r.target)]:
            del self.relaying[key]
        for k in self.taught.pop(introducer, []):
            self._unlink(k, introducer)

    # ---- role A ---------------------------------------------------------------
    def introduce(self, target: bytes, introducer: bytes, now: float) -> bool:
        """Ask ``introducer`` to introduce us to ``target``. False: too many under way, or
        a punch with ``target`` through it failed lately (held off)."""
        if self._held_via(target, introducer, now):
            self.counters.punch_held += 1
            return False
        if len(self.pending) >= self.config.max_pending:
            return False
        nonce = self._nonce()
        self.pending[nonce] = Intro(target, introducer, now + self.config.punch_timeout)
        self.counters.punch_intros_sent += 1
        self.out.append(SendToPeer(introducer, wire.Punch(phase=Phase.INTRO, peer=target, nonce=nonce)))
        return True

    def _nonce(self) -> int:
        n = self.next_nonce
        self.next_nonce = n + 1 if n < _U63 else 1
        return n

    def _dialable(self, host: str, port: int, via_addr: tuple[str, int] | None,
                  own: Container[tuple[str, int]]) -> bool:
        """May an OFFER or GO from an introducer at ``via_addr`` name ``host:port``? A
        canonical unicast IP literal (the DHT's rule), not our own address, and loopback
        only from an introducer on loopback (it is then on our machine)."""
        if canonical_host(host) is None or not 0 < port < 65536 or (host, port) in own:
            return False
        return not _is_loopback(host) or (via_addr is not None and _is_loopback(via_addr[0]))

    # ---- incoming PUNCH ------------------------------------------------------------
    def on_punch(self, sender: bytes, msg: wire.Punch, now: float, *,
                 addr_of: Callable[[bytes], tuple[str, int] | None],
                 rtt_ms_of: Callable[[bytes], int], room: bool,
                 blocked: Callable[[bytes], bool] | None = None,
                 own: Container[tuple[str, int]] = (),
                 under_way: Callable[[bytes], int] | None = None) -> None:
        """A PUNCH from neighbour ``sender``. ``addr_of``: where a neighbour's packets
        come from (None: not a neighbour, or no address); ``rtt_ms_of``: our RTT
        estimate to a neighbour; ``room``: we may take another neighbour; ``blocked``:
        banned; ``own``: our own addresses (never dialled); ``under_way``: punched dials
        an introducer's OFFERs have under way. Looked up only for the keys a stage names
        (a PUNCH costs O(1))."""
        c = self.counters
        cfg = self.config
        phase = msg.phase
        if phase == Phase.INTRO:  # we are R; sender is A, msg.peer is B
            b = msg.peer
            bucket = self.buckets.get(sender)
            if bucket is None:
                bucket = self.buckets[sender] = _Bucket(cfg.relay_burst, now)
                if len(self.buckets) > 4 * cfg.max_relaying:
                    del self.buckets[next(iter(self.buckets))]
            addr = addr_of(sender)
            if (b == sender or addr_of(b) is None or addr is None
                    or len(self.relaying) >= cfg.max_relaying
                    or not bucket.take(now, cfg.relay_rate, cfg.relay_burst)):
                c.punch_relay_refused += 1
                return
            self.relaying[(sender, msg.nonce)] = Relayed(sender, b, now + cfg.punch_timeout)
            c.punch_offers_relayed += 1
            self.out.append(SendToPeer(b, wire.Punch(
                phase=Phase.OFFER, peer=sender, nonce=msg.nonce, host=addr[0], port=addr[1],
                delay_ms=min(rtt_ms_of(sender), 0xFFFF))))
        elif phase == Phase.OFFER:  # we are B; sender is R, msg.peer is A
            a = msg.peer
            if not self._dialable(msg.host, msg.port, addr_of(sender), own):
                c.punch_bad_address += 1
                return
            if self.introducer_refused(sender, now) or (
                    under_way is not None and under_way(sender) >= cfg.introducer_dials):
                c.punch_introducer_refused += 1
                return
            if self.is_held(a, msg.host, msg.port, now):  # our punch with A there failed lately
                c.punch_held += 1
                return
            if self.accept_bucket is None:
                self.accept_bucket = _Bucket(cfg.accept_burst, now)
            if (a == self.self_key or not room or (blocked is not None and blocked(a))
                    or not self.accept_bucket.take(now, cfg.accept_rate, cfg.accept_burst)):
                c.punch_refused += 1
                return
            c.punch_accepted += 1
            # our NAT opens towards A now (the prime dies before A's NAT), so A's Initial,
            # whenever the GO lets A send it, finds the mapping A was told
            prime = cfg.prime_ttl > 0
            if prime:
                self.out.append(PunchPrime(a, msg.host, msg.port, cfg.prime_ttl))
            self.out.append(SendToPeer(sender, wire.Punch(phase=Phase.ACCEPT, peer=a, nonce=msg.nonce)))
            # A dials when our ACCEPT has travelled B -> R -> A: half our RTT to R plus
            # half R's to A. Unprimed, we dial then too (the two Initials must cross
            # within the one-way delay). Primed, we wait that long again: our Initial
            # must not reach A's NAT before A's own packets left (or that NAT keeps an
            # entry for ours and maps A's flow to another port), and A, behind its start
            # burst on a loaded machine, took the GO up to ~100 ms late; A's Initial
            # meanwhile passes our open NAT (a link from it that is up by then cancels
            # our dial; one still in its handshake meets ours: the simultaneous-dial rule).
            # After a primed punch with A failed, the retry dials when A does: a prime that
            # did not open our NAT (a NAT farther than prime_ttl hops: a home router behind
            # a carrier's CGN) makes the later dial lose every time, the simultaneous one
            # only when the GO is late -- so the two timings alternate.
            delay = (rtt_ms_of(sender) + msg.delay_ms) / 2000.0
            late = prime and self.peer_failures.get(a, 0) % 2 == 0
            self.out.append(PunchDial(now + (2 * delay if late else delay), a, msg.host, msg.port,
                                      sender))
        elif phase == Phase.ACCEPT:  # we are R; sender is B, msg.peer is A
            key = (msg.peer, msg.nonce)
            r = self.relaying.get(key)
            if r is None or r.target != sender:
                c.punch_unexpected += 1
                return
            del self.relaying[key]
            addr = addr_of(sender)
            if addr_of(msg.peer) is None or addr is None:
                c.punch_unexpected += 1
                return
            c.punch_go_relayed += 1
            self.out.append(SendToPeer(msg.peer, wire.Punch(
                phase=Phase.GO, peer=sender, nonce=msg.nonce, host=addr[0], port=addr[1])))
        elif phase == Phase.GO:  # we are A; sender is R, msg.peer is B
            intro = self.pending.get(msg.nonce)
            if intro is None or intro.introducer != sender or intro.target != msg.peer:
                c.punch_unexpected += 1
                return
            del self.pending[msg.nonce]
            c.punch_go_received += 1
            if not self._dialable(msg.host, msg.port, addr_of(sender), own):
                c.punch_bad_address += 1
                return
            if self.introducer_refused(sender, now):  # (its punches failed since we asked)
                c.punch_introducer_refused += 1
                return
            if self.is_held(msg.peer, msg.host, msg.port, now):  # (failed there since we asked)
                c.punch_held += 1
                return
            # the address is the introducer's word, as an OFFER's is: the same node-wide
            # budget of punch dials (a hostile introducer answered every INTRO with a GO
            # naming a victim: 60 dials in 20 s, beyond the budget OFFERs keep)
            if self.accept_bucket is None:
                self.accept_bucket = _Bucket(cfg.accept_burst, now)
            if not self.accept_bucket.take(now, cfg.accept_rate, cfg.accept_burst):
                c.punch_refused += 1
                return
            if cfg.prime_ttl > 0:  # out before the dial's Initial is built
                self.out.append(PunchPrime(msg.peer, msg.host, msg.port, cfg.prime_ttl))
            self.out.append(PunchDial(now, msg.peer, msg.host, msg.port, sender))
        else:
            c.punch_unexpected += 1

    # ---- time -------------------------------------------------------------------------
    def expired(self, now: float) -> list[bytes]:
        """Introductions with no GO by their deadline (their targets); stale relays dropped."""
        gone = [n for n, i in self.pending.items() if i.deadline <= now]
        out = []
        for n in gone:
            i = self.pending.pop(n)
            out.append(i.target)
            self.counters.punch_intros_failed += 1
            # no INTRO for that target through that introducer for punch_retry_after: the
            # next plan dials it, or asks another introducer. Until 2026-12-03 it asked the
            # same one again at once: a neighbour that listed every key of a NATed node's
            # candidates and never answered its INTROs kept it from linking to any of them
            # (bench/atk6_silent_introducer.py)
            self._hold_via(i.target, i.introducer, now + self.config.punch_retry_after)
        for k in [k for k, r in self.relaying.items() if r.expires <= now]:
            del self.relaying[k]
        return out

    def get_timer(self) -> float:
        t = float("inf")
        for i in self.pending.values():
            if i.deadline < t:
                t = i.deadline
        return t
