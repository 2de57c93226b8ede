"""The node's policy towards its peers, sans-I/O: admission, routing, bans, dialling.

Theory of operation
-------------------
A :class:`PeerPolicy` decides, for one node, *whom* it talks to and what it lets each
peer do; the protocol of a link is the session's, the protocol of a stream the swarm's.
It owns no socket and reads no clock: the executor (the asyncio node, the simulator, a
test) feeds it events with ``now``, executes the actions it returns (``actions()``) and
calls ``handle_timer(now)`` at ``get_timer()``. Randomness comes from an injected
``random.Random``. Links are opaque hashable handles chosen by the executor (the node
passes its ``Link`` objects); peers are Ed25519 public keys.

* **Admission** (``link_up``): a banned peer is refused; of two links to one peer (both
  dialled at once) each side keeps the one dialled by the smaller key; an inbound link
  beyond ``max_neighbours`` is refused with OVERLOADED, as is one from an address (an
  IPv6 /64) that already holds ``max_inbound_per_ip`` of our inbound links (loopback
  exempt). The dialler then JOINs every stream the node carries.
* **Service links** (the DHT, docs/oftp.md §17.8): a link that carries only DHT
  messages is not a neighbour. We dial one with ``link_up(service=True)`` (no JOIN); an
  inbound peer becomes one with its first DHT message while it has joined nothing.
  Beyond ``max_neighbours``, ``service_links`` more inbound links are admitted for the
  DHT only (a JOIN on one is refused OVERLOADED; with ``start_room``, a JOIN that asks for
  a start -- a newcomer's -- is admitted there while the node has fewer than
  ``max_neighbours + start_room`` neighbours; with ``near_swap``, a JOIN there from a peer
  much nearer (link RTT) than our farthest inbound neighbour outside our trees replaces
  that neighbour, see :meth:`PeerPolicy._near_swap`). A service link idle for
  ``service_idle`` is closed without blame; one we dialled is promoted to a neighbour
  (it JOINs) when a verified source offers its peer as a candidate we want.
* **Routing** (``on_message``): every control message first spends tokens from the
  peer's bucket (``msg_rate``/s, ``msg_burst``; a JOIN costs ``join_cost``); over budget
  it is dropped and counted. JOIN names a stream by text: UNKNOWN_STREAM if the node does
  not carry it, OVERLOADED past ``max_streams_per_peer``; else the join is recorded
  (``AddPeer``) and the listener joins back. A message for a stream the peer has not
  joined is dropped and counted. ``on_message`` returns where the message goes next.
* **Scores and bans**: each offence adds its weight to the peer's score, which decays
  by ``score_decay`` per second; past ``ban_score`` -- or at once on a swarm's
  ``DropPeer`` -- the peer is banned for ``ban_seconds``: its link is closed, its
  inbound links and our re-dials are refused. The ban table holds at most ``max_bans``
  (the entry expiring first is evicted, counted). A score outlives the link (up to
  ``max_scores`` remembered, oldest forgotten first): reconnecting does not wipe it,
  and a link that ends in a timeout adds to it.
* **Dialling** (:class:`~oasis.core.dialplan.DialPlan`): candidates from verified
  sources, dialled until ``target_neighbours`` (not linked, banned or backed off) --
  ``nat_target_neighbours`` once the node knows it is behind a NAT (nobody dials it) --,
  and the cadence of ``Announce`` -- when to ask the sources for more.
* **Reachability** (:mod:`~oasis.core.nat`): OBSERVED tells each neighbour the address
  its packets come from (the node learns its public mapping and NAT kind from the
  answers); NEIGHBOURS lists, every ``pex_interval``, keys a neighbour can introduce;
  a candidate that a linked neighbour can introduce is *punched* through it (PUNCH,
  both ends dial at once) when this node is behind a NAT, and keys learnt only from
  NEIGHBOURS (or whose direct dial failed) are punched when no other candidate is left.
  All of it is between *neighbours* (``_is_neighbour``: a link we dialled, or one that
  joined a stream; not a service link): only they are listed and sent NEIGHBOURS, their
  NEIGHBOURS and PUNCH alone are taken, and an inbound link's OBSERVED counts once it
  joins (links we dialled count at once: a node serving only files learns its address
  from its own DHT dials).
"""

from __future__ import annotations

import enum
import ipaddress
import random
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from . import wire
from .dialplan import Candidate, Dial, DialPlan, ban_active, dialable, ip_key
from .nat import (
    Introductions,
    MappingObserver,
    NatConfig,
    NatKind,
    PunchDial,
    PunchPrime,
    SendToPeer,
)
from .wire import ErrorCode

__all__ = ["Candidate", "Dial", "dialable"]  # re-exported: the policy's actions and inputs

L = TypeVar("L", bound=Hashable)  #: the executor's link handle
INF = float("inf")
#: messages that make a link a service link when nothing is joined on it (§17.8): the DHT's,
#: direct messages handed to the peers nearest their recipient (§19.3), and file transfer
#: (§18). Not DM_PREKEY:
#: every node sends it on every link, so it says nothing of what the link is for.
SERVICE_MESSAGES = (*wire.DHT_MESSAGES, wire.DmEnvelope, *wire.FILE_MESSAGES)
TO_NODE = b""  #: ``on_message`` result: not stream-scoped, the executor handles it (ledger)


#: addresses in one network (an IPv4 /24, an IPv6 /48) taken from one answer that names where
#: to dial (a DHT providers lookup): signed records are cheap (keys are free), so one host
#: could otherwise make a node dial dozens of its ports, or of its neighbours' addresses
MAX_PER_NET_IN_ANSWER = 4


def net_key(host: str) -> str | None:
    """The network an address is in for the limits on what one answer may name: an IPv4
    /24, an IPv6 /48 (one site); None for loopback and non-addresses, as :func:`ip_key`."""
    k = ip_key(host)
    if k is None:
        return None
    if ":" in k:
        return str(ipaddress.IPv6Network(k).supernet(new_prefix=48))
    return str(ipaddress.IPv4Network(f"{k}/24", strict=False))


def cap_per_network(addrs: Iterable[tuple[bytes, str, int]],
               cap: int = MAX_PER_NET_IN_ANSWER) -> tuple[list[tuple[bytes, str, int]], int]:
    """``(key, host, port)`` entries, at most ``cap`` per network (an IPv4 /24, an IPv6 /48;
    loopback exempt, as in :func:`ip_key`), in order; and how many were left out. Per IP was
    not enough: 20 records under throw-away keys, one per IP of a victim's /24, drew ~20 x
    the answer's bytes to that network (a newcomer sent 4.7 MB for 227 kB of answers)."""
    seen: dict[str, int] = {}
    out = []
    dropped = 0
    for key, host, port in addrs:
        k = net_key(host)
        if k is not None:
            n = seen.get(k, 0)
            if n >= cap:
                dropped += 1
                continue
            seen[k] = n + 1
        out.append((key, host, port))
    return out, dropped


class Offence(enum.IntEnum):
    VIOLATION = 0  #: the session reported malformed or unexpected input
    UNJOINED = 1  #: a message for a stream the peer has not joined
    OVER_BUDGET = 2  #: a control message beyond the peer's rate budget
    BAD_JOIN = 3  #: JOIN for a stream not carried here, or beyond the per-peer limit
    TIMEOUT = 4  #: the peer did not answer in time


@dataclass
class PolicyConfig:
    #: dial until this many links. A node relays mostly its home substream (oasis.core.tree)
    #: and can only take children among its neighbours, so a strong relay needs about twice
    #: its children per substream as neighbours: 12/24 (6/12 before: trees 6-8 hops deep)
    target_neighbours: int = 12
    max_neighbours: int = 24  #: refuse inbound links beyond this many
    #: ... dial (punch) until this many while the node knows it is behind a NAT (EIM or
    #: SYMMETRIC, learnt from OBSERVED): nobody can dial it, so it has only the links it
    #: makes, where a public node gets ~8 inbound links on top of its 12. 20: at 1,000
    #: simulated churning viewers, 70 % behind NATs, 0.5 s playout, offload 0.827/0.836 ->
    #: 0.878/0.865 (seeds 1/2; 16 gave 0.850/0.855, 24 0.867/0.862: its own dials left no
    #: room for the punches others offered; docs/oftp.md §15.2). 0 or less than ``target_neighbours``:
    #: ``target_neighbours``; a node with ``target_neighbours`` 0 dials nobody still
    nat_target_neighbours: int = 20
    max_streams: int = 16  #: streams this node carries
    max_streams_per_peer: int = 4  #: streams one peer may join with us
    #: JOINs that ask for a start per stream while the node has none (each answer is a
    #: keyframe: asking every neighbour at once would fetch it that many times)
    start_asks: int = 2
    #: a JOIN that asks for a start (a newcomer's) on a link admitted beyond ``max_neighbours``
    #: (for the DHT only, where any other JOIN is refused, OVERLOADED) is admitted while we
    #: have fewer than ``max_neighbours`` + this many neighbours (0: off). Behind NATs the
    #: public nodes are the only ones a newcomer can dial, and the NATed nodes' own dials
    #: fill them (``nat_target_neighbours``): a newcomer's first links were refused there, and a
    #: quarter of the newcomers started from the origin (1 s). 8 by default (0 before
    #: 2026-12-04), with ``dial_patience`` 0.5: 1,000 simulated mobile-churn viewers x 40 s at
    #: 0.5 s, 70 % behind NATs, offload +0.014, +0.012, +0.022, +0.021 and continuity
    #: 0.9930-0.9941 -> 0.9949-0.9960 (seeds 1-4), p95 -4..-10 ms; the six comparison runs
    #: without NATs: see docs/benchmarks.md, "70 % NAT at the 3-RTT links" (h-nat9)
    start_room: int = 8
    ban_seconds: float = 60.0
    max_bans: int = 1024
    max_scores: int = 4096  #: scores of peers no longer linked, remembered
    ban_score: float = 20.0  #: a peer whose score reaches this is banned
    score_decay: float = 0.1  #: score points forgiven per second
    #: score added per offence, indexed by :class:`Offence`
    weights: tuple[float, ...] = (1.0, 1.0, 0.25, 0.5, 2.0)
    msg_rate: float = 200.0  #: control messages per second per peer (bucket refill)
    msg_burst: float = 400.0  #: bucket size
    join_cost: float = 10.0  #: tokens a JOIN or LEAVE spends (it creates or drops state)
    #: tokens a file BLOCK or BLOCK_REQUEST spends: 2,000 of each a second from one peer
    #: (~500 Mbit/s of 32 KiB blocks) at the refill rate
    file_cost: float = 0.1
    announce_interval: float = 10.0  #: ask for candidates this often once linked enough
    #: ... this often while short of neighbours (doubling, up to the above, while the
    #: answers name no peer not already known: oasis.core.dialplan)
    fast_interval: float = 1.0
    retry_interval: float = 2.0  #: ... this long after the source failed
    relink_delay: float = 0.05  #: ... this soon after a neighbour left
    announce_timeout: float = 10.0  #: ask again if the executor never answered
    dial_extra: int = 2  #: dial this many more than missing (some fail)
    max_dials_per_round: int = 8
    #: dials under way to one IP (an IPv4 address, an IPv6 /64; loopback exempt) at once, and
    #: one per address: a tracker's or a DHT's answer naming many keys at one host's ports
    #: (signed records are free) made a viewer dial it 14 at a time (``bench/atk7_tracker_dials.py``)
    max_dials_per_ip: int = 2
    dial_timeout: float = 10.0  #: a dial not reported by then counts as failed
    #: a plain dial still under way this long after it began no longer counts against the
    #: target while the node has fewer than ``patience_links`` neighbours: more candidates are
    #: dialled then, and the slow dial is still allowed to complete (s; 0: off). A NAT drops a
    #: dial to the peer behind it without a word (the dialler waits out its 5 s connect
    #: timeout), where a reachable listener has answered within 3 RTT; a newcomer whose first
    #: round of dials all went to NATed tracker entries had no link until the next announce
    #: (``oasis.core.dialplan``). 0.5 by default (0 before 2026-12-04), with ``start_room``:
    #: see there
    dial_patience: float = 0.5
    patience_links: int = 1
    stable_link: float = 30.0  #: a dialled link up this long clears its address's backoff
    join_timeout: float = 10.0  #: a link on which the peer joined no stream by then is closed
    silence_timeout: float = 30.0  #: a peer heard nothing from this long is closed (STATUS: 2 s)
    sweep_interval: float = 2.0  #: how often links are checked for the two timeouts above
    backoff_base: float = 1.0  #: first wait after a failed dial; doubles per failure
    backoff_max: float = 120.0
    max_backoff: int = 4096  #: addresses remembered with a backoff
    max_candidates: int = 256
    candidate_ttl: float = 120.0  #: forget a candidate not offered again for this long
    service_links: int = 8  #: inbound links beyond max_neighbours for DHT traffic only
    #: inbound service links held at once (below max_neighbours too); one more closes the
    #: oldest (no blame). Uncapped until 2026-12-03: 87 links that each sent a DHT_PING
    #: every 10 s filled a viewer's endpoint and honest viewers could not link to it
    #: (bench/atk6_service_links.py)
    inbound_service_links: int = 16
    #: inbound links (neighbours and service links together) from one IP address (an IPv6
    #: /64); 0: a quarter of ``max_neighbours``, at least 4. Keys are free, addresses are
    #: not: one machine with many keys cannot take every slot. Loopback is exempt (a demo,
    #: the tests). Many honest viewers behind one carrier-grade NAT share an address: they
    #: get this many here and link to other nodes for the rest.
    max_inbound_per_ip: int = 0
    service_idle: float = 15.0  #: a service link with no DHT message for this long is closed
    #: (a prototype, off by default) a JOIN on a link admitted beyond ``max_neighbours`` (DHT
    #: only) from a peer whose link RTT is at most ``near_swap_ratio`` of, and
    #: ``near_swap_gain`` s below, that of our farthest inbound neighbour -- one that is not
    #: our parent or child on any stream (``PeerPolicy.tree_peer``) -- closes that neighbour
    #: (OVERLOADED, ``links_replaced_nearer``) and is admitted in its place; at most once per
    #: ``near_swap_interval`` s. A public node that the tracker names to every viewer fills
    #: with far peers' dials and refused the one near viewer behind a carrier-grade NAT that
    #: could dial it only as a DHT link (the 30-node testbed: v28, Brazil, 45 % of the misses,
    #: with 5-7 neighbours none in Brazil; the Brazilian public v12 full)
    near_swap: bool = False
    near_swap_ratio: float = 0.5
    near_swap_gain: float = 0.02
    near_swap_interval: float = 10.0


@dataclass
class PeerCounters:
    """Plain ints, exported by the node's /metrics (names are stable)."""

    violations: int = 0  #: offences of kind VIOLATION or UNJOINED (node-wide)
    links_accepted: int = 0
    links_refused: int = 0  #: inbound links beyond max_neighbours
    links_refused_per_ip: int = 0  #: inbound links beyond max_inbound_per_ip from one address
    #: inbound links closed for migrating (QUIC) into an address that holds its share
    links_closed_per_ip_migrated: int = 0
    links_refused_banned: int = 0
    links_duplicate: int = 0  #: links closed by the simultaneous-dial rule
    links_redialled: int = 0  #: a linked peer dialled us again (restarted): its new link kept
    #: links we dialled for the DHT to a peer that kept our joins from a link we had
    #: closed, made neighbour links (JOIN back): ``_joins_kept``
    links_rejoined: int = 0
    links_idle_closed: int = 0  #: no stream joined in join_timeout, or silent silence_timeout
    messages_unjoined: int = 0
    chunks_unjoined: int = 0
    messages_over_budget: int = 0
    joins: int = 0
    joins_unknown_stream: int = 0
    joins_over_limit: int = 0
    joins_repeated: int = 0
    leaves: int = 0
    errors_received: int = 0  #: ERROR messages peers sent us
    #: ERROR unknown_stream for a stream the peer had joined with us: it left that stream here
    errors_unknown_stream: int = 0
    streams_refused: int = 0  #: add_stream beyond max_streams
    peers_banned: int = 0
    bans_evicted: int = 0
    scores_evicted: int = 0
    peers_dropped_bad_chunks: int = 0  #: swarm DropPeer BAD_CHUNK
    peers_dropped_swarm: int = 0  #: swarm DropPeer, other codes
    peers_dropped_score: int = 0  #: score reached ban_score
    announces: int = 0
    announce_failures: int = 0
    candidates_offered: int = 0
    candidates_unverified: int = 0  #: offered from an unverified source: ignored
    candidates_invalid: int = 0  #: not an IP literal and port we may dial
    candidates_evicted: int = 0
    dial_attempts: int = 0
    dial_failures: int = 0
    dials_refused: int = 0  #: connect() to a banned, backed-off, linked or dialling peer
    #: candidates not dialled this round: a dial to their address, or ``max_dials_per_ip``
    #: to their IP, was under way (a source naming many keys or ports of one host)
    dials_held_per_ip: int = 0
    backoff_evicted: int = 0
    links_service: int = 0  #: links that carried DHT messages only (service links)
    links_service_closed: int = 0  #: ... closed after service_idle without a DHT message
    #: inbound service links closed for a newer one past ``inbound_service_links``
    links_service_evicted: int = 0
    links_service_promoted: int = 0  #: service links we dialled that became neighbours
    joins_refused_service: int = 0  #: JOIN on a link admitted beyond max_neighbours
    #: (``start_room``) JOINs asking for a start admitted on a link beyond max_neighbours
    joins_start_room: int = 0
    joins_short_room: int = 0  #: JOINs of nodes short of neighbours admitted in ``start_room``
    #: (``near_swap``) inbound neighbours closed for a much nearer peer's JOIN beyond the limit
    links_replaced_nearer: int = 0


# ---- actions ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CloseLink(Generic[L]):
    link: L
    peer: bytes
    code: ErrorCode
    reason: str


@dataclass(frozen=True, slots=True)
class SendTo(Generic[L]):
    link: L
    message: wire.Message


@dataclass(frozen=True, slots=True)
class AddPeer:
    peer: bytes  #: joined ``stream``: the executor calls that swarm's add_peer
    stream: bytes
    start: bool = False  #: its JOIN asked for a start (our latest keyframe, §9.1)
    asked: bool = False  #: our JOIN to it asked it for one


@dataclass(frozen=True, slots=True)
class RemovePeer:
    peer: bytes  #: left ``stream`` (LEAVE, link closed): that swarm's remove_peer
    stream: bytes


@dataclass(frozen=True, slots=True)
class Ban:
    peer: bytes  #: informational: links are closed by CloseLink actions
    until: float
    code: ErrorCode
    reason: str


@dataclass(frozen=True, slots=True)
class Report:
    """Informational: an input worth a log line (the first ``REPORTS`` of a kind)."""
    peer: bytes
    text: str


#: unjoined messages reported with their context (Report), per node: counted beyond
REPORTS = 20
#: a peer whose joined link we closed is taken back as a neighbour when it still sends on a
#: link we dialled for the DHT within this many seconds (its own link timeouts: 30 s of
#: silence), and so many such peers are remembered (``PeerPolicy._joins_kept``)
REJOIN_WINDOW = 60.0
#: two links to one peer authenticated within this many seconds crossed (both dialled at
#: once: the smaller key's dial wins on both sides); a peer that dials us later than that
#: has lost its link (a restart): its new one wins
DUPLICATE_WINDOW = 5.0
FULL_HELD = 256  #: peers remembered as full (``_full_until``), oldest dropped first
LEFT_JOINED_MAX = 1024


@dataclass(frozen=True, slots=True)
class Announce:
    """Ask the verified sources for candidates; answer with on_candidates() or
    announce_failed()."""


@dataclass(frozen=True, slots=True)
class Prime:
    """Hole punching: send one small datagram to ``host:port`` from the socket the node
    dials with, with IP TTL (IPv6 hop limit) ``ttl`` -- it opens our NAT's mapping towards
    the peer and expires on the way, before the peer's NAT (oasis.core.nat). The address is
    the one the punch then dials (same checks, same budget)."""
    peer: bytes
    host: str
    port: int
    ttl: int


Action = CloseLink[L] | SendTo[L] | AddPeer | RemovePeer | Dial | Prime | Ban | Announce | Report


@dataclass
class _Peer(Generic[L]):
    link: L
    dialled: bool
    since: float = 0.0  #: admitted at (a join restarts it)
    linked_at: float = 0.0  #: its link authenticated at
    joined: set[bytes] = field(default_factory=set)
    score: float = 0.0
    score_t: float = 0.0
    tokens: float = 0.0
    tokens_t: float = 0.0
    closing: bool = False  #: banned: its link is being closed, nothing more is routed
    heard: float = 0.0  #: last control message or chunk from it
    addr: tuple[str, int] | None = None  #: where its packets come from (the link's remote)
    rtt_ms: int = 0  #: the executor's RTT estimate of the link
    service: bool = False  #: a DHT-only link: not a neighbour (see the module docstring)
    overflow: bool = False  #: admitted beyond max_neighbours: DHT only, JOIN refused
    service_at: float = 0.0  #: last DHT message from it
    asked_start: set[bytes] = field(default_factory=set)  #: streams whose JOIN to it asked a start
    #: streams we JOINed on its link: its JOIN of one needs no answer, and until it JOINs,
    #: its messages of one are its answer (_joined_by_answer)
    join_sent: set[bytes] = field(default_factory=set)
    #: its OBSERVED, waiting for it to become a neighbour (an inbound link counts once it
    #: joins a stream; one that turns to the DHT never does)
    observed: tuple[str, int] | None = None


class _Neighbours:
    """``key in view``: is ``key`` a neighbour of the policy (oasis.core.nat asks)."""

    __slots__ = ("policy",)

    def __init__(self, policy: PeerPolicy[Any]) -> None:
        self.policy = policy

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.policy.is_neighbour(key)


class PeerPolicy(Generic[L]):
    """One node's policy towards its peers. See the module docstring."""

    def __init__(self, self_key: bytes, config: PolicyConfig | None = None, *,
                 rng: random.Random | None = None, now: float = 0.0,
                 listen: tuple[str, int] | None = None, nat: NatConfig | None = None) -> None:
        self.self_key = self_key
        self.config = config or PolicyConfig()
        self.rng = rng or random.Random()
        self.counters = PeerCounters()
        self.streams: dict[str, bytes] = {}  #: text id -> stream key
        #: stream keys this node has not started playing -> JOINs that asked for a start
        self.starting: dict[bytes, int] = {}
        self.peers: dict[bytes, _Peer[L]] = {}  #: admitted links, one per peer
        self._n_service = 0  #: of self.peers, the service links (not neighbours)
        self.bans: dict[bytes, float] = {}  #: peer -> banned until
        self.scores: dict[bytes, tuple[float, float]] = {}  #: unlinked peer -> (score, at)
        #: peers whose link with streams joined went from our side -> when (``_joins_kept``)
        self._left_joined: dict[bytes, float] = {}
        self.dials = DialPlan(self_key, self.config, self.counters, self.rng, now)
        self._actions: list[Action[L]] = []
        self._sweep_at = now + self.config.sweep_interval
        self.nat = Introductions(self_key, nat or NatConfig())
        self.mapping = MappingObserver(listen, self.nat.config.max_observers, self.nat.counters)
        self._neighbours = _Neighbours(self)  #: ``in``: is this key a neighbour?
        self._pex_at = now + self.nat.config.pex_interval
        self._punch_dials: list[PunchDial] = []  #: dials an accepted OFFER scheduled
        #: peer -> when we sent the INTRO for it (bounded as the pending introductions)
        self._intro_at: dict[bytes, float] = {}
        #: (peer, seconds from INTRO to the link): the latest 256 punches' connect times
        self.punch_connect_s: deque[tuple[bytes, float]] = deque(maxlen=256)
        #: peer -> (the address of our punched dial to it under way, the introducer that
        #: named it) (bounded by the dials)
        self._punched: dict[bytes, tuple[tuple[str, int], bytes]] = {}
        #: peer -> until when it is not punched: it closed a link we dialled as full
        #: (OVERLOADED), so it is reachable and has no room; an OFFER to it would be refused
        #: for the same reason (bounded: FULL_HELD, oldest first)
        self._full_until: dict[bytes, float] = {}
        #: the executor's word: does this peer carry one of our streams' trees with us (our
        #: parent, a subscription to it under way, our child)? ``near_swap`` never replaces
        #: such a neighbour (None: the policy cannot tell; any may be replaced)
        self.tree_peer: Callable[[bytes], bool] | None = None
        self._near_swap_at = -INF  #: (``near_swap``) no swap before this

    @property
    def dialling(self) -> dict[bytes, float]:
        return self.dials.dialling

    @property
    def candidates(self) -> dict[bytes, tuple[Candidate, float]]:
        return self.dials.candidates

    # ---- streams -----------------------------------------------------------
    def add_stream(self, text_id: str, key: bytes, *, starting: bool = False) -> bool:
        """The node carries a stream (``starting``: it waits for its first keyframe, see
        ``set_starting``); False (counted) beyond ``max_streams``.

        A link is JOINed when it comes up, for the streams carried then; so a stream added
        later is JOINed at once on every neighbour link (the links we dialled, and inbound
        links that joined a stream), which the peer answers with its JOIN if it carries the
        stream. Joins recorded for it before (an earlier carriage of it, which our LEAVE
        ended) are forgotten, so that the answer adds the peer to the new swarm. Before, a
        node that watched a second stream of a peer it was already linked to, or the same
        stream again after stopping it, never got that peer (nor dialled it: it was linked)
        and played from the origin alone."""
        if text_id in self.streams:
            return True
        if len(self.streams) >= self.config.max_streams:
            self.counters.streams_refused += 1
            return False
        self.streams[text_id] = key
        self.set_starting(key, starting)
        for p in self.peers.values():
            neighbour = (p.dialled or bool(p.joined)) and not p.service and not p.overflow and not p.closing
            p.joined.discard(key)
            p.asked_start.discard(key)
            p.join_sent.discard(key)
            if neighbour:
                self._join(p, text_id)
        return True

    def set_starting(self, key: bytes, starting: bool) -> None:
        """Whether the node still waits for its first keyframe of stream ``key`` (the
        executor tells): while it does, its first ``start_asks`` JOINs ask for a start."""
        if starting:
            self.starting.setdefault(key, 0)
        else:
            self.starting.pop(key, None)

    def _join(self, p: _Peer[L], text_id: str) -> None:
        """Send JOIN for ``text_id`` on ``p``'s link; while we have no start, the first
        ``start_asks`` of them ask for one."""
        skey = self.streams[text_id]
        asks = self.starting.get(skey)
        start = False
        if asks is not None and asks < self.config.start_asks:
            start = True
            self.starting[skey] = asks + 1
            p.asked_start.add(skey)
        p.join_sent.add(skey)
        self._actions.append(SendTo(p.link, wire.Join(stream=text_id, start=start, short=self.short())))

    def remove_stream(self, text_id: str) -> None:
        """The node stops carrying a stream; new JOINs of it are refused as unknown. Peers'
        joins stay recorded, so their messages still in flight are no offence (the node
        drops them: no swarm); they go with the link or the peer's LEAVE."""
        key = self.streams.pop(text_id, None)
        if key is not None:
            self.starting.pop(key, None)
            for p in self.peers.values():
                p.join_sent.discard(key)

    # ---- queries -------------------------------------------------------------
    def is_banned(self, peer: bytes, now: float) -> bool:
        return ban_active(self.bans, peer, now)

    def link_of(self, peer: bytes) -> L | None:
        p = self.peers.get(peer)
        return None if p is None else p.link

    def joined(self, peer: bytes) -> set[bytes]:
        p = self.peers.get(peer)
        return set() if p is None else p.joined

    def score(self, peer: bytes, now: float) -> float:
        p = self.peers.get(peer)
        if p is not None:
            return self._decayed(p, now)
        score, at = self.scores.get(peer, (0.0, now))
        return max(0.0, score - (now - at) * self.config.score_decay)

    def target(self) -> int:
        """Neighbours to dial until: ``target_neighbours``, or ``nat_target_neighbours``
        (at most ``max_neighbours``) once the node knows it is behind a NAT."""
        cfg = self.config
        t = cfg.target_neighbours
        if t > 0 and cfg.nat_target_neighbours > t and self.mapping.kind in (NatKind.EIM, NatKind.SYMMETRIC):
            return min(cfg.nat_target_neighbours, cfg.max_neighbours)
        return t

    def short(self) -> bool:
        """We have fewer than half the neighbours we dial for (``target``): our JOINs say so,
        and a node over its limit admits us in its ``start_room``. Full public nodes refused
        a viewer that joined late (the NATed viewers' own dials fill them): its links came up
        after it had started from the origin, so its JOINs asked for no start, and in the
        30-node testbed the Brazilian viewer behind a CGN kept 1-8 neighbours and took its
        whole stream from the CDN edge."""
        t = self.target()
        return t > 0 and self.neighbour_count() < t // 2

    def neighbour_count(self) -> int:
        """Admitted links that are neighbours (service links excluded)."""
        return len(self.peers) - self._n_service

    def is_service(self, peer: bytes) -> bool:
        p = self.peers.get(peer)
        return p is not None and p.service

    def is_neighbour(self, peer: bytes) -> bool:
        """Is ``peer`` a neighbour (see :meth:`_is_neighbour`)?"""
        p = self.peers.get(peer)
        return p is not None and self._is_neighbour(p)

    @staticmethod
    def _is_neighbour(p: _Peer[L]) -> bool:
        """A link that carries streams: we dialled it (and JOINed), or it joined a stream
        with us -- not a service link (the DHT, a DM, a file), not one that joined
        nothing yet, not one being closed. Only neighbours take part in reachability:
        they are listed in NEIGHBOURS and sent them, and their NEIGHBOURS and PUNCH are
        taken (a stranger's DHT-only link made nodes dial addresses of its choosing and
        emptied their tables of introductions, found 2026-12-02)."""
        return not p.service and not p.closing and (p.dialled or bool(p.joined))

    def _set_service(self, p: _Peer[L], on: bool) -> None:
        if p.service != on:
            p.service = on
            self._n_service += 1 if on else -1
            if on:
                self.counters.links_service += 1
                if p.observed is not None:  # an inbound DHT user does not tell our address
                    p.observed = None
                    self.nat.counters.observed_unused += 1
                if not p.dialled:
                    self._cap_inbound_service()

    def _cap_inbound_service(self) -> None:
        """At most ``inbound_service_links`` inbound service links: the oldest beyond goes
        (closed without blame, as an idle one; a DHT user dials again when it needs us)."""
        held = [(q.since, k) for k, q in self.peers.items()
                if q.service and not q.dialled and not q.closing and not q.joined]
        for _since, k in sorted(held)[: max(0, len(held) - self.config.inbound_service_links)]:
            q = self.peers[k]
            q.closing = True
            self.counters.links_service_evicted += 1
            self._actions.append(CloseLink(q.link, k, ErrorCode.NO_ERROR, "too many DHT links"))

    def _forget_peer(self, peer: bytes) -> _Peer[L]:
        p = self.peers.pop(peer)
        if p.service:
            self._n_service -= 1
        return p

    # ---- links ---------------------------------------------------------------
    def link_up(self, link: L, peer: bytes, *, dialled: bool, now: float,
                addr: tuple[str, int] | None = None, rtt: float | None = None,
                service: bool = False) -> bool:
        """A link authenticated ``peer``. True: admitted (the executor routes it).
        ``addr``: the address the link's packets come from (told to the peer in
        OBSERVED); ``rtt``: the link's RTT estimate in seconds (hole punching times by it);
        ``service``: we dialled it for the DHT only (no JOIN; not a neighbour)."""
        c = self.counters
        cfg = self.config
        if dialled:
            self.dials.connected(peer)
        if self.is_banned(peer, now):
            c.links_refused_banned += 1
            self._actions.append(CloseLink(link, peer, ErrorCode.TOO_MANY_ERRORS, "banned"))
            return False
        existing = self.peers.get(peer)
        if existing is not None and existing.closing and existing.link != link:
            # Its old link is being closed (idle): the new link starts afresh.
            self._forget_peer(peer)
            self._remember(peer, existing, now)
            self._actions.extend(RemovePeer(peer, skey) for skey in existing.joined)
            self._joined_left(peer, existing, now)
            existing = None
        if existing is not None and existing.link != link:
            # Simultaneous dial: both sides keep the link dialled by the smaller key. A peer
            # that dials us again well after its link came up has lost that link (its
            # process restarted: same key, new connection; or the link died on its side):
            # its new link wins, whatever the keys. The old one, dead, was kept until it
            # idled out and the restarted viewer had no neighbour for 14-18 s (found
            # 2026-12-06 from outside).
            c.links_duplicate += 1
            # (both ends apply it, the dialler too: a dial of ours that completes well after
            # the peer's link to us came up is the new link at both ends. Only the listener
            # applied it, and a dial that came up 5.5 s late closed both links for one key
            # order: the listener kept the new one, the dialler the old; found 2026-12-06)
            redial = now - existing.linked_at >= DUPLICATE_WINDOW
            if redial:
                c.links_redialled += 1
            elif (self.self_key < peer) != dialled:
                self._actions.append(CloseLink(link, peer, ErrorCode.NO_ERROR, "duplicate link"))
                return False
            self._actions.append(CloseLink(existing.link, peer, ErrorCode.NO_ERROR, "duplicate link"))
            existing.link, existing.dialled = link, dialled  # joins and score stay with the peer
            existing.linked_at = now
            existing.join_sent.clear()  # ours went on the old link: the peer may not have read them
            existing.observed = None  # (the old link's report: the peer reports on this one)
            if existing.service and not service and not existing.overflow and dialled:
                # the policy's own dial won: a neighbour. (Not a peer's inbound redial: it
                # turned DHT-only links into neighbours past max_neighbours; found 2026-12-06)
                self._set_service(existing, False)
                existing.since = now
        elif existing is None:
            if not dialled and addr is not None and self._ip_full(addr[0]):
                c.links_refused_per_ip += 1
                self._actions.append(CloseLink(link, peer, ErrorCode.OVERLOADED,
                                               "too many links from this address"))
                return False
            overflow = not dialled and self.neighbour_count() >= cfg.max_neighbours
            if overflow and self._n_service >= cfg.service_links:
                c.links_refused += 1
                self._actions.append(CloseLink(link, peer, ErrorCode.OVERLOADED,
                                               "neighbour limit reached"))
                return False
            score, at = self.scores.pop(peer, (0.0, now))
            self.peers[peer] = _Peer(link, dialled, since=now, linked_at=now, score=score, score_t=at,
                                     tokens=cfg.msg_burst, tokens_t=now, heard=now,
                                     overflow=overflow)
            if overflow or (dialled and service):
                self._set_service(self.peers[peer], True)
        c.links_accepted += 1
        p = self.peers[peer]
        punched = self._punched.pop(peer, None)
        if punched is not None:
            self.nat.linked_via(punched[1], now)
        self.nat.release(peer)
        t0 = self._intro_at.pop(peer, None)
        if t0 is not None and (punched is not None or not dialled):
            # made by the punch (our punched dial, or the peer's reaching us), not by a plain
            # dial while an INTRO for the peer was out (counted, a public peer's redial after
            # its back-off read as a 7 s punch)
            self.nat.counters.punch_linked += 1
            self.punch_connect_s.append((peer, now - t0))
        p.addr = addr
        p.rtt_ms = 0 if rtt is None else max(0, min(0xFFFF, int(rtt * 1000)))
        if addr is not None and 0 < addr[1] < 65536:
            self._actions.append(SendTo(link, wire.Observed(host=addr[0][:45], port=addr[1])))
        if p.service:
            return True  # DHT only: no JOIN, no NEIGHBOURS
        if dialled and self.streams:
            for text_id in self.streams:
                self._join(p, text_id)
            self._send_neighbours(peer, p)
        # (an inbound link is sent NEIGHBOURS once it joins a stream: _on_join)
        return True

    def _ip_full(self, host: str) -> bool:
        """Does ``host`` (its /64 for IPv6) already hold ``max_inbound_per_ip`` inbound links?"""
        key = ip_key(host)
        if key is None:
            return False  # loopback (or not an address): exempt
        cap = self.config.max_inbound_per_ip or max(4, self.config.max_neighbours // 4)
        n = 0
        for p in self.peers.values():
            if not p.dialled and not p.closing and p.addr is not None and ip_key(p.addr[0]) == key:
                n += 1
                if n >= cap:
                    return True
        return False

    def rtt_sample(self, peer: bytes, rtt: float) -> None:
        """A newer RTT estimate of ``peer``'s link (s; the executor's, e.g. on each PUNCH
        and STATUS). The lowest is kept: hole punching times the two dials by it, and the
        estimate at link-up includes the handshake's processing (40 ms links measured
        90-149 ms on a loaded testbed machine; the OFFER's dial then went 55 ms late)."""
        p = self.peers.get(peer)
        if p is None or rtt <= 0:
            return
        ms = max(1, min(0xFFFF, int(rtt * 1000)))
        if p.rtt_ms == 0 or ms < p.rtt_ms:
            p.rtt_ms = ms

    def address_changed(self, link: L, peer: bytes, addr: tuple[str, int], now: float) -> None:
        """``peer``'s packets on ``link`` now come from ``addr`` (its NAT rebound, its phone
        changed network; QUIC migrated the link): it is told, OBSERVED, as on a new link."""
        p = self.peers.get(peer)
        if p is None or p.link != link or p.closing or p.addr == addr or not 0 < addr[1] < 65536:
            return
        if (not p.dialled and (p.addr is None or ip_key(p.addr[0]) != ip_key(addr[0]))
                and self._ip_full(addr[0])):
            # An inbound link moving into an address that holds its share: closed as a new
            # link from there would be refused (found 2026-12-03: links that hopped to a
            # second address and back took all 32 inbound slots from one address, not 6).
            self.counters.links_closed_per_ip_migrated += 1
            p.closing = True
            self._actions.append(CloseLink(link, peer, ErrorCode.OVERLOADED,
                                           "too many links from this address"))
            return
        p.addr = addr
        self.nat.counters.observed_resent += 1
        self._actions.append(SendTo(link, wire.Observed(host=addr[0][:45], port=addr[1])))

    def link_down(self, link: L, peer: bytes | None, now: float, *,
                  code: ErrorCode = ErrorCode.NO_ERROR) -> None:
        """A link closed (either side). A peer that refused or banned our link is backed
        off; one we dialled that stayed up ``stable_link`` clears its backoff."""
        if peer is None:
            return
        p = self.peers.get(peer)
        if p is None or p.link != link:
            return
        self._forget_peer(peer)
        self.nat.forget_introducer(peer)
        self.mapping.forget(peer)
        if p.observed is not None:
            self.nat.counters.observed_unused += 1
        if code == ErrorCode.TIMEOUT:
            p.score = self._decayed(p, now) + self.config.weights[Offence.TIMEOUT]
            p.score_t = now
        self._remember(peer, p, now)
        self._joined_left(peer, p, now)
        for skey in p.joined:
            self._actions.append(RemovePeer(peer, skey))
        if p.dialled and code in (ErrorCode.OVERLOADED, ErrorCode.TOO_MANY_ERRORS, ErrorCode.TIMEOUT):
            # refused, banned, or closed for joining nothing / going silent (by either side,
            # or the connection timed out): not dialled again at once (a silent fake relay was
            # re-dialled 0.1 s after each 30 s silence close, however long its link had lived)
            self.dials.back_off(peer, now)
            if code == ErrorCode.OVERLOADED:
                # ... nor punched meanwhile: a backed-off candidate is otherwise taken for one
                # a direct dial could not reach (behind a NAT) and introduced, and the full
                # peer refuses the OFFER. In the 30-node testbed half of a CGN viewer's INTROs
                # went to peers that had just refused it as full, each holding one of its
                # dial slots for punch_timeout (found 2026-12-05)
                until = self.dials.backed_off_until(peer)
                self._full_until.pop(peer, None)
                self._full_until[peer] = until if until > now else now + self.nat.config.punch_timeout
                if len(self._full_until) > FULL_HELD:
                    del self._full_until[next(iter(self._full_until))]
        elif p.dialled and now - p.since >= self.config.stable_link:
            self.dials.stable(peer)
        if not p.service and self.neighbour_count() < self.target():
            self._plan(now)
            self.dials.neighbour_left(now)

    # ---- input from links ------------------------------------------------------
    def on_message(self, link: L, peer: bytes, msg: wire.Message, now: float) -> bytes | None:
        """Route one control message: the stream key whose swarm gets it, ``TO_NODE``
        (handled by the executor: ledger messages), or None (consumed or refused)."""
        p = self.peers.get(peer)
        if p is None or p.link != link or p.closing:
            return None
        cfg = self.config
        if isinstance(msg, (wire.BlockMsg, wire.BlockRequest)):
            # a file transfer's requests and answers: one of each per 32 KiB block, bounded by
            # the file swarm (requests: its per-peer queue, refused beyond; blocks: only ones we
            # asked for, an unsolicited one strikes). At a full token each, a download from one
            # peer met the budget after ~440 blocks (~14 MB); the messages over it were
            # dropped and the transfer stalled ~12 s until the requests timed out (a 20 MB
            # file took 13 s on loopback, and 200 MB about 125 s)
            cost = cfg.file_cost
        else:
            # (an ERROR unknown_stream leaves a stream as a LEAVE does: it costs as much; at 1
            # token it was a cheap LEAVE, 1.8x the join churn a link could make; found 2026-12-06)
            cost = cfg.join_cost if isinstance(msg, (wire.Join, wire.Leave, wire.Error)) else 1.0
        tokens = min(cfg.msg_burst, p.tokens + (now - p.tokens_t) * cfg.msg_rate)
        p.tokens_t = now
        if tokens < cost:
            p.tokens = tokens
            self.counters.messages_over_budget += 1
            self.offence(peer, Offence.OVER_BUDGET, now, "control messages over budget")
            return None
        p.tokens = tokens - cost
        p.heard = now
        if isinstance(msg, wire.Join):
            self._on_join(p, peer, msg.stream, now, msg.start, msg.short)
            return None
        if isinstance(msg, wire.Error):
            self.counters.errors_received += 1
            skey0 = self.streams.get(msg.reason) if msg.code == int(ErrorCode.UNKNOWN_STREAM) else None
            if skey0 is not None and skey0 in p.joined:
                # the peer does not carry that stream (any more: a broadcaster restarted
                # without a stream its API had published): it leaves it here. Ignored, our
                # STATUS for it went on, each an offence there, and it banned us after 40 s
                # (found 2026-12-06 from outside)
                self.counters.errors_unknown_stream += 1
                p.joined.discard(skey0)
                p.join_sent.discard(skey0)
                self._actions.append(RemovePeer(peer, skey0))
            return None
        if isinstance(msg, (wire.Observed, wire.Neighbours, wire.Punch)):
            self._on_reachability(p, peer, msg, now)
            return None
        if isinstance(msg, SERVICE_MESSAGES):
            p.service_at = now
            if not p.joined and not p.service:
                self._set_service(p, True)  # it came for the DHT (or a DM): not a neighbour (yet)
            return TO_NODE
        skey: bytes | None = getattr(msg, "stream", None)
        if skey is None:
            return TO_NODE
        if (skey not in p.joined and not self._joined_by_answer(p, peer, skey)
                and not self._joins_kept(p, peer, skey, now)):
            self.counters.messages_unjoined += 1
            if self.counters.messages_unjoined <= REPORTS:  # what the count hides: the context
                self._actions.append(Report(peer, (
                    f"{type(msg).__name__} for stream {skey.hex()[:8]} not joined; link "
                    f"{now - p.since:.1f} s old, {'dialled' if p.dialled else 'accepted'}, "
                    f"{len(p.joined)} streams joined, {self.counters.links_duplicate} duplicate "
                    f"links so far")))
            self.offence(peer, Offence.UNJOINED, now, f"{type(msg).__name__} for a stream not joined")
            return None
        if isinstance(msg, wire.Leave):
            self.counters.leaves += 1
            p.joined.discard(skey)
            p.join_sent.discard(skey)  # it left: a new JOIN of it is answered afresh
            self._actions.append(RemovePeer(peer, skey))
            return None
        return skey

    def on_chunk(self, link: L, peer: bytes, stream: bytes, now: float) -> bool:
        """May a chunk of ``stream`` from ``peer`` go to that swarm? A chunk of a stream the
        peer has not joined with us (or that we do not carry) is dropped unverified and
        scored like any message for such a stream (else a forger dodged the bad-chunk
        ban by naming another stream, and made us read its bytes for nothing)."""
        p = self.peers.get(peer)
        if p is None or p.link != link or p.closing:
            return False
        p.heard = now
        if stream not in p.joined and not self._joined_by_answer(p, peer, stream):
            self.counters.chunks_unjoined += 1
            self.offence(peer, Offence.UNJOINED, now, "CHUNK for a stream not joined")
            return False
        return True

    def on_violation(self, link: L, peer: bytes | None, now: float, detail: str = "") -> None:
        """The session of ``link`` reported malformed or unexpected input."""
        if peer is None:
            self.counters.violations += 1  # before authentication: the session's budget
            return
        p = self.peers.get(peer)
        if p is None or p.link != link:
            self.counters.violations += 1
            return
        self.offence(peer, Offence.VIOLATION, now, detail or "protocol violation")

    def on_drop_peer(self, peer: bytes, code: ErrorCode, reason: str, now: float) -> None:
        """A swarm judged ``peer`` (forged chunks, lies, floods): ban it now."""
        if code == ErrorCode.BAD_CHUNK:
            self.counters.peers_dropped_bad_chunks += 1
        else:
            self.counters.peers_dropped_swarm += 1
        self.ban(peer, now, code=code, reason=reason)

    def offence(self, peer: bytes, kind: Offence, now: float, detail: str = "") -> None:
        """Add ``kind``'s weight to the peer's score; past ``ban_score``: ban."""
        if kind in (Offence.VIOLATION, Offence.UNJOINED):
            self.counters.violations += 1
        p = self.peers.get(peer)
        if p is None or p.closing:
            return
        p.score = self._decayed(p, now) + self.config.weights[kind]
        p.score_t = now
        if p.score >= self.config.ban_score:
            self.counters.peers_dropped_score += 1
            self.ban(peer, now, code=ErrorCode.TOO_MANY_ERRORS,
                     reason=f"score {p.score:.1f}: {detail or kind.name}"[:200])

    def ban(self, peer: bytes, now: float, seconds: float | None = None, *,
            code: ErrorCode = ErrorCode.TOO_MANY_ERRORS, reason: str = "banned") -> None:
        """Ban ``peer`` until ``now + seconds``: close its link, refuse it meanwhile."""
        until = now + (self.config.ban_seconds if seconds is None else seconds)
        bans = self.bans
        if peer not in bans and len(bans) >= self.config.max_bans:
            for k in [k for k, t in bans.items() if t <= now]:
                del bans[k]
            if len(bans) >= self.config.max_bans:
                del bans[min(bans, key=bans.__getitem__)]
                self.counters.bans_evicted += 1
        bans[peer] = max(until, bans.get(peer, until))
        self.counters.peers_banned += 1
        self.dials.forget(peer)
        self.scores.pop(peer, None)  # the ban is the sentence: it comes back with a clean slate
        self._actions.append(Ban(peer, bans[peer], code, reason))
        p = self.peers.get(peer)
        if p is not None and not p.closing:
            p.closing = True
            p.score = 0.0
            self._actions.append(CloseLink(p.link, peer, code, reason))

    # ---- dialling ----------------------------------------------------------------
    def withdraw_candidates(self, peers: Iterable[bytes]) -> int:
        """Forget these candidates (their source turned out to lie: the DHT's distrusted
        answerer, §14.5), so they are not dialled again; how many were held."""
        n = 0
        for peer in peers:
            if peer in self.dials.candidates:
                self.dials.forget(peer)
                n += 1
        return n

    def on_candidates(self, found: Iterable[Candidate], now: float, *, verified: bool,
                      interval: float | None = None) -> None:
        """Answer to ``Announce``: peers a source named. ``verified``: the caller vouches
        that the source is authenticated (the tracker's reply over the configured URL,
        a signed record); unverified offers are counted and ignored. ``interval``: the
        source's wish for the next announce."""
        found = list(found)
        if verified and self._n_service:
            self._promote(found, now)
        self.dials.offer(found, now, verified=verified, interval=interval,
                         linked=self.neighbour_count(), target=self.target())
        self._plan(now)

    def _promote(self, found: list[Candidate], now: float) -> None:
        """Service links we dialled whose peer a verified source now offers: JOIN on them
        (the listener joins back) while short of neighbours, instead of a second dial."""
        for cand in found:
            if self.neighbour_count() >= self.target():
                return
            p = self.peers.get(cand.peer)
            if p is None or not p.service or p.overflow or not p.dialled or p.closing:
                continue
            self._set_service(p, False)
            p.since = now  # the join timeout runs from here
            self.counters.links_service_promoted += 1
            for text_id in self.streams:
                self._join(p, text_id)
            self._send_neighbours(cand.peer, p)

    def announce_failed(self, now: float) -> None:
        self.dials.source_failed(now)
        self._plan(now)  # the candidates we already know may do

    def dial_failed(self, peer: bytes, now: float) -> None:
        """A ``Dial`` (or ``connect``) did not authenticate the peer. If a neighbour can
        introduce it (it may sit behind a NAT), it is punched through that neighbour. A
        punched dial that failed holds the peer off (``NatConfig.punch_retry_after``)."""
        self._failed(peer, now)
        if (self.neighbour_count() + len(self.dials.dialling) < self.target()
                and peer not in self.peers and not self.is_banned(peer, now)):
            r = self.nat.introducer_for(peer, self._neighbours, now)
            if r is not None and self._introduce(peer, r, now):
                self.dials.dialling[peer] = now + self.nat.config.punch_timeout
                self._take_nat_actions(now)

    def _failed(self, peer: bytes, now: float) -> None:
        """``peer``'s dial under way failed: its address backs off. If it was a punch, no
        punch with the peer at the punched address and no dial to it there for
        ``punch_retry_after`` (:class:`~oasis.core.nat.NatConfig`: a retry before the NATs
        forgot the failed punch fails too, and its packets keep them from forgetting it)."""
        entry = self._punched.pop(peer, None)
        if (entry is not None and peer in self.dials.dialling
                and self.dials.dial_addr.get(peer) == entry[0]):
            # a punched dial: the peer is held off at that address (and through that
            # introducer), which counts a failure; the address itself is not backed off
            # for others (a stranger's OFFER naming a made-up key at a real node's address
            # kept that node from being punched)
            self.dials.failed(peer, now, back_off=False)
            self.nat.hold(peer, entry[0], now, entry[1])
        else:
            self.dials.failed(peer, now)

    def may_dial(self, peer: bytes, host: str, port: int, now: float) -> bool:
        """An executor-initiated dial (``connect``): allowed? If so it is now dialling."""
        return self.dials.may_dial(peer, host, port, now,
                                   blocked=(peer in self.peers or self.is_banned(peer, now)
                                            or self.nat.is_held(peer, host, port, now)))

    def _plan(self, now: float) -> None:
        def blocked(k: bytes) -> bool:
            return k in self.peers or self.is_banned(k, now)

        def held(c: Candidate) -> bool:  # a punch with it there failed lately
            return self.nat.is_held(c.peer, c.host, c.port, now)

        kind = self.mapping.kind
        punch_all = kind in (NatKind.EIM, NatKind.SYMMETRIC) or (
            kind == NatKind.UNKNOWN and self.nat.config.punch_unknown)
        for d in self.dials.plan(now, self.neighbour_count(), blocked, held, target=self.target()):
            # Behind a NAT, a peer a neighbour can introduce is punched through it: a
            # plain dial reaches it only if it is public (the punch covers that case too).
            r = self.nat.introducer_for(d.peer, self._neighbours, now) if punch_all else None
            if r is not None and self._introduce(d.peer, r, now):
                self.dials.dial_addr.pop(d.peer, None)  # dialling until GO or the timeout
                self.dials.dialling[d.peer] = now + self.nat.config.punch_timeout
                self.counters.dial_attempts -= 1  # counted when it is dialled
            else:
                self._actions.append(d)
        need = self.target() - self.neighbour_count() - len(self.dials.dialling)
        if need > 0 and self.nat.via:
            # Short of neighbours: punch peers known only through a neighbour (only
            # NEIGHBOURS named them, or a direct dial to them failed).
            picks = [k for k in self.nat.via if k not in self.dials.dialling and not blocked(k)
                     and (k not in self.dials.candidates or self._backed_off(k, now))
                     and self._full_until.get(k, 0.0) <= now]
            self.rng.shuffle(picks)
            # (keys only a neighbour's word names: at most introducer_dials introductions
            # through one introducer at once -- a liar listed made-up keys and answered each
            # INTRO with a GO naming an address of its choosing)
            asked: dict[bytes, int] = {}  # introducer -> introductions and dials under way
            for i in self.nat.pending.values():
                asked[i.introducer] = asked.get(i.introducer, 0) + 1
            for _, via in self._punched.values():
                asked[via] = asked.get(via, 0) + 1
            n = min(need, self.config.max_dials_per_round)
            for k in picks:  # (until n are asked: picks no introducer may take are skipped)
                if n <= 0:
                    break
                r = self.nat.introducer_for(k, self._neighbours, now)
                if (r is not None and asked.get(r, 0) < self.nat.config.introducer_dials
                        and self._introduce(k, r, now)):
                    asked[r] = asked.get(r, 0) + 1
                    self.dials.dialling[k] = now + self.nat.config.punch_timeout
                    n -= 1
        self._take_nat_actions(now)

    def _introduce(self, peer: bytes, introducer: bytes, now: float) -> bool:
        if not self.nat.introduce(peer, introducer, now):
            return False
        self._intro_at[peer] = now
        if len(self._intro_at) > 4 * self.nat.config.max_pending:
            del self._intro_at[next(iter(self._intro_at))]
        return True

    def _backed_off(self, peer: bytes, now: float) -> bool:
        entry = self.dials.candidates.get(peer)
        return entry is not None and self.dials.backed_off((entry[0].host, entry[0].port), now)

    # ---- reachability (oasis.core.nat) ---------------------------------------------------
    def _on_reachability(self, p: _Peer[L], peer: bytes, msg: wire.Message, now: float) -> None:
        nat = self.nat
        c = nat.counters
        if isinstance(msg, wire.Observed):
            # Our address as a neighbour, or a link we dialled, sees it. An inbound link's
            # report waits until it joins a stream; an inbound service link's never counts
            # (16 strangers' DHT links set a node's address, found 2026-12-02).
            c.observed += 1
            if p.addr is None or not self.mapping.valid(p.addr[0], msg.host, msg.port):
                c.observed_invalid += 1
            elif p.dialled or self._is_neighbour(p):
                self.mapping.observe(peer, p.addr[0], msg.host, msg.port)
            elif p.service:
                c.observed_unused += 1
            else:
                p.observed = (msg.host, msg.port)
            return
        if not self._is_neighbour(p):
            # NEIGHBOURS and PUNCH are between neighbours only (§15)
            if isinstance(msg, wire.Neighbours):
                c.pex_not_neighbour += 1
            else:
                c.punch_not_neighbour += 1
            return
        if isinstance(msg, wire.Neighbours):
            nat.listed(peer, msg.keys, now)
            if self.neighbour_count() + len(self.dials.dialling) < self.target():
                self._plan(now)
        elif isinstance(msg, wire.Punch):
            room = self.neighbour_count() + len(self.dials.dialling) < self.config.max_neighbours
            own = {a for a in (self.mapping.listen, self.mapping.public) if a is not None}
            nat.on_punch(peer, msg, now, addr_of=self._addr_of, rtt_ms_of=self._rtt_ms_of, room=room,
                         blocked=lambda k: self.is_banned(k, now), own=own,
                         under_way=self._punches_via)
        self._take_nat_actions(now)

    def _punches_via(self, introducer: bytes) -> int:
        """Punched dials under way (or scheduled) that ``introducer``'s OFFERs or GOs named."""
        return (sum(1 for _, v in self._punched.values() if v == introducer)
                + sum(1 for a in self._punch_dials if a.via == introducer))

    def _addr_of(self, peer: bytes) -> tuple[str, int] | None:
        """Where a neighbour's packets come from (None for any other link: a service link
        is neither introduced nor introduces)."""
        q = self.peers.get(peer)
        return None if q is None or not self._is_neighbour(q) else q.addr

    def _rtt_ms_of(self, peer: bytes) -> int:
        q = self.peers.get(peer)
        return 0 if q is None else q.rtt_ms

    def _take_nat_actions(self, now: float) -> None:
        for a in self.nat.out:
            if isinstance(a, SendToPeer):
                q = self.peers.get(a.peer)
                if q is not None and not q.closing:
                    self._actions.append(SendTo(q.link, a.message))
            elif isinstance(a, PunchPrime):
                # to the address the punch dials, when it would dial it (not linked, banned,
                # backed off or held off): no packet to an address a dial would not go to
                if (a.peer not in self.peers and not self.is_banned(a.peer, now)
                        and dialable(a.host, a.port)
                        and not self.dials.backed_off((a.host, a.port), now)
                        and not self.nat.is_held(a.peer, a.host, a.port, now)):
                    self.nat.counters.punch_primed += 1
                    self._actions.append(Prime(a.peer, a.host, a.port, a.ttl))
            elif a.at <= now:
                self._punch_dial(a, now)
            else:
                self._punch_dials.append(a)
                # an accepted OFFER: we dial the peer shortly. Until then it counts as being
                # dialled, so nothing else dials it meanwhile -- the policy's plan, an
                # executor's connect, the node's DHT (which waits for this link instead):
                # such a dial's Initial would reach the peer's NAT before the peer's own
                # packets left and spoil the punch (a testbed pair failed so, its DHT dial
                # a few ms before the punch)
                if a.peer not in self.dials.dialling:
                    self.dials.dialling[a.peer] = a.at + self.config.dial_timeout
        self.nat.out.clear()

    def _punch_dial(self, a: PunchDial, now: float) -> None:
        """Dial a punched address (pinned to the peer's key), unless linked or banned."""
        if a.peer in self.peers or self.is_banned(a.peer, now):
            self.dials.dialling.pop(a.peer, None)
            return
        if self.dials.backed_off((a.host, a.port), now):
            # a punched address that failed is backed off as any dialled one (a hostile
            # introducer's OFFERs and GOs named one victim address 40 times over)
            self.nat.counters.punch_backed_off += 1
            self.dials.dialling.pop(a.peer, None)
            return
        if self.nat.is_held(a.peer, a.host, a.port, now):  # a punch there failed meanwhile
            self.nat.counters.punch_held += 1
            self.dials.dialling.pop(a.peer, None)
            return
        self.dials.dialling[a.peer] = now + self.config.dial_timeout
        self.dials.dial_addr[a.peer] = (a.host, a.port)
        self._punched[a.peer] = ((a.host, a.port), a.via)
        if len(self._punched) > 4 * self.nat.config.max_pending:
            del self._punched[next(iter(self._punched))]
        self.counters.dial_attempts += 1
        self._actions.append(Dial(a.peer, a.host, a.port))

    def _send_neighbours(self, peer: bytes, p: _Peer[L]) -> None:
        """NEIGHBOURS to neighbour ``p``: up to ``max_listed`` keys of our other
        neighbours (never a service link's: a stranger's DHT link was listed, and then
        punched to with honest viewers' addresses)."""
        keys = [k for k, q in self.peers.items() if k != peer and self._is_neighbour(q)]
        if not keys:
            return
        n = min(len(keys), self.nat.config.max_listed, wire.MAX_LISTED)
        self.nat.counters.pex_sent += 1
        self._actions.append(SendTo(p.link, wire.Neighbours(keys=self.rng.sample(keys, n))))

    # ---- JOIN --------------------------------------------------------------------------
    def _on_join(self, p: _Peer[L], peer: bytes, text_id: str, now: float,
                 start: bool = False, short: bool = False) -> None:
        c = self.counters
        skey = self.streams.get(text_id)
        if skey is None:
            c.joins_unknown_stream += 1
            self._actions.append(SendTo(p.link, wire.Error(code=int(ErrorCode.UNKNOWN_STREAM),
                                                          reason=text_id[:200])))
            self.offence(peer, Offence.BAD_JOIN, now, "JOIN for a stream not carried")
            return
        if skey in p.joined:
            c.joins_repeated += 1
            if not p.dialled:
                # The dialler may have started afresh: it closed its end of our old link
                # as idle and dialled again, and we kept its joins on the new link (the
                # simultaneous-dial rule). Unanswered, it never had us joined and took
                # each of our STATUS for a message on a stream not joined. One JOIN per
                # JOIN, paid from its message budget: no amplification.
                self._join(p, text_id)
            return
        if p.service and not p.dialled and self.neighbour_count() >= self.config.max_neighbours:
            # an inbound DHT-only link made while a neighbour slot was free, joining now that
            # none is: as one admitted beyond the limit (it took a 65th place of 48; found
            # 2026-12-06 by an outside audit)
            p.overflow = True
        if p.overflow and (start or short) and self.config.start_room > 0 \
                and self.neighbour_count() < self.config.max_neighbours + self.config.start_room:
            # (``start_room``) a newcomer asks us for a start, or a node short of neighbours
            # (``short``) joins: a neighbour, over the limit
            p.overflow = False
            self._set_service(p, False)
            if start:
                c.joins_start_room += 1
            else:
                c.joins_short_room += 1
        if p.overflow and self._near_swap(p, now):
            p.overflow = False  # (``near_swap``) a neighbour, in a far one's place
            self._set_service(p, False)
        if p.overflow:  # admitted beyond max_neighbours for the DHT only
            c.joins_refused_service += 1
            p.closing = True
            self._actions.append(CloseLink(p.link, peer, ErrorCode.OVERLOADED,
                                           "neighbour limit reached"))
            return
        if len(p.joined) >= self.config.max_streams_per_peer:
            c.joins_over_limit += 1
            self._actions.append(SendTo(p.link, wire.Error(code=int(ErrorCode.OVERLOADED),
                                                          reason="stream limit per peer")))
            self.offence(peer, Offence.BAD_JOIN, now, "JOIN beyond the per-peer stream limit")
            return
        c.joins += 1
        first = not p.joined
        p.joined.add(skey)
        if p.service:  # a DHT contact joins: now a neighbour
            self._set_service(p, False)
        if skey not in p.join_sent:
            # the listener answers the dialler's JOIN; the dialler answers a listener that
            # JOINed first (it started carrying the stream after the link came up)
            self._join(p, text_id)
        self._actions.append(AddPeer(peer, skey, start=start, asked=skey in p.asked_start))
        p.asked_start.discard(skey)
        if first and not p.dialled:  # an inbound link became a neighbour
            if p.observed is not None and p.addr is not None:
                self.mapping.observe(peer, p.addr[0], *p.observed)
            p.observed = None
            self._send_neighbours(peer, p)

    def _near_swap(self, p: _Peer[L], now: float) -> bool:
        """(``near_swap``) ``p``, a link admitted beyond ``max_neighbours``, JOINs: close our
        farthest inbound neighbour if ``p``'s link RTT is at most ``near_swap_ratio`` of its
        and ``near_swap_gain`` below it, and say so (the caller admits ``p``). Candidates are
        neighbours that dialled us (our own dials are our choice, kept), that joined a stream,
        are not being closed, have an RTT estimate, and carry none of our trees
        (``tree_peer``: a parent or child whose link went would cost its subtree a
        re-selection). At most one swap per ``near_swap_interval``: a node cannot churn.

        Taken at the JOIN, not at ``link_up``: an inbound link may come for the DHT alone
        (a lookup, a DM), and a swap for it would cost a neighbour for nothing. The closed
        peer (OVERLOADED) backs our address off and dials others; when it comes back it is
        admitted beyond the limit, as before."""
        cfg = self.config
        if not cfg.near_swap or p.rtt_ms <= 0 or now < self._near_swap_at:
            return False
        in_tree = self.tree_peer
        far: tuple[bytes, _Peer[L]] | None = None
        for k, q in self.peers.items():
            if (q.dialled or q.closing or q.service or q.overflow or not q.joined or q.rtt_ms <= 0
                    or (far is not None and q.rtt_ms <= far[1].rtt_ms)):
                continue
            if in_tree is not None and in_tree(k):
                continue
            far = (k, q)
        if far is None:
            return False
        k, q = far
        if p.rtt_ms > cfg.near_swap_ratio * q.rtt_ms or q.rtt_ms - p.rtt_ms < cfg.near_swap_gain * 1000:
            return False
        q.closing = True
        self._near_swap_at = now + cfg.near_swap_interval
        self.counters.links_replaced_nearer += 1
        self._actions.append(CloseLink(q.link, k, ErrorCode.OVERLOADED, "replaced by a nearer peer"))
        return True

    def _joined_left(self, peer: bytes, p: _Peer[L], now: float) -> None:
        """``peer``'s link, on which it had streams joined with us, is gone from our side."""
        if not p.joined:
            return
        left = self._left_joined
        left.pop(peer, None)  # re-insert: newest last
        left[peer] = now
        if len(left) > LEFT_JOINED_MAX:
            del left[next(iter(left))]

    def _joins_kept(self, p: _Peer[L], peer: bytes, skey: bytes, now: float) -> bool:
        """A message of a stream we carry on a link we dialled for the DHT alone, from a
        peer we had streams joined with on a link we closed less than ``REJOIN_WINDOW`` s
        ago: it had not seen that close when our dial came, so to it the new link was a
        duplicate and it kept our joins on it (the simultaneous-dial rule) -- its STATUS,
        REQUESTs and pushes are for the neighbour it believes us. We JOIN back, as a
        neighbour (``links_rejoined``): before 2026-12-04 each counted as a message on a
        stream not joined (22 in one 30-node testbed run)."""
        if not (p.dialled and p.service) or p.overflow:
            return False
        t = self._left_joined.get(peer)
        if t is None or now - t > REJOIN_WINDOW:
            return False
        text_id = next((k for k, v in self.streams.items() if v == skey), None)
        if text_id is None or len(p.joined) >= self.config.max_streams_per_peer:
            return False
        self._set_service(p, False)  # a neighbour again
        p.since = now
        self.counters.links_rejoined += 1
        self.counters.joins += 1
        p.joined.add(skey)
        self._join(p, text_id)
        self._actions.append(AddPeer(peer, skey, start=False, asked=False))
        return True

    def _joined_by_answer(self, p: _Peer[L], peer: bytes, skey: bytes) -> bool:
        """A message of a stream we JOINed on ``p``'s link that the peer did not JOIN back:
        it took our JOIN (its swarm took us: it sends STATUS, a start's keyframe), so ours
        takes it, as its JOIN would have. A JOIN is not always answered by one: a listener
        that starts carrying a stream JOINs its inbound links first (``add_stream``), which
        a dialler from before 2026-12-03 never answers, and a peer that JOINed first, was
        refused (the stream was not carried yet) and takes our later JOIN does not answer
        it either. False (the message is unjoined) for anything else."""
        if skey not in p.join_sent or skey not in self.streams.values():
            return False
        if len(p.joined) >= self.config.max_streams_per_peer:
            return False
        self.counters.joins += 1
        p.joined.add(skey)
        self._actions.append(AddPeer(peer, skey, start=False, asked=skey in p.asked_start))
        p.asked_start.discard(skey)
        return True

    # ---- time ----------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        t = min(self.dials.get_timer(), self._sweep_at, self._pex_at, self.nat.get_timer())
        for a in self._punch_dials:
            if a.at < t:
                t = a.at
        return t

    def handle_timer(self, now: float) -> None:
        if self._sweep_at <= now:
            self._sweep_at = now + self.config.sweep_interval
            self._sweep(now)
        for peer in self.dials.overdue(now):
            if self.dials.dial_addr.get(peer) is None:
                self.dials.dialling.pop(peer, None)  # an introduction that got no GO
            else:
                self._failed(peer, now)  # the executor never reported: count it failed
        for target in self.nat.expired(now):
            if self.dials.dial_addr.get(target) is None:
                self.dials.dialling.pop(target, None)
        if self._punch_dials:
            due = [a for a in self._punch_dials if a.at <= now]
            self._punch_dials = [a for a in self._punch_dials if a.at > now]
            for a in due:
                self._punch_dial(a, now)
        if self._pex_at <= now:
            self._pex_at = now + self.nat.config.pex_interval
            for peer, p in self.peers.items():
                if self._is_neighbour(p):
                    self._send_neighbours(peer, p)
        if self.dials.announce_at <= now:
            self.dials.asked(now)
            self._actions.append(Announce())
            self._plan(now)
        elif self.dials.patience_at <= now:
            self._plan(now)  # (``dial_patience``: a dial under way for long counts no more)

    def _sweep(self, now: float) -> None:
        """Close links that hold a neighbour slot and do nothing with it: no stream joined
        after ``join_timeout``, or nothing heard for ``silence_timeout`` (honest peers send
        STATUS every 2 s). The close's TIMEOUT adds to the peer's score (``link_down``).
        A service link (DHT only) is closed without blame once idle ``service_idle``."""
        cfg = self.config
        for peer, p in self.peers.items():
            if p.closing:
                continue
            if p.service and not p.joined:
                if now - max(p.since, p.service_at) >= cfg.service_idle:
                    p.closing = True
                    self.counters.links_service_closed += 1
                    self._actions.append(CloseLink(p.link, peer, ErrorCode.NO_ERROR, "DHT link idle"))
                continue
            if not p.joined and now - p.since >= cfg.join_timeout:
                why = f"no stream joined in {cfg.join_timeout:g} s"
            elif now - p.heard >= cfg.silence_timeout:
                why = f"silent for {cfg.silence_timeout:g} s"
            else:
                continue
            p.closing = True
            self.counters.links_idle_closed += 1
            self._actions.append(CloseLink(p.link, peer, ErrorCode.TIMEOUT, why))

    def actions(self) -> list[Action[L]]:
        out, self._actions = self._actions, []
        return out

    def _decayed(self, p: _Peer[L], now: float) -> float:
        return max(0.0, p.score - (now - p.score_t) * self.config.score_decay)

    def _remember(self, peer: bytes, p: _Peer[L], now: float) -> None:
        score = self._decayed(p, now)
        if score <= 0.0:
            return
        self.scores.pop(peer, None)  # re-insert: newest last
        self.scores[peer] = (score, now)
        if len(self.scores) > self.config.max_scores:
            del self.scores[next(iter(self.scores))]
            self.counters.scores_evicted += 1
