"""Oasis in the simulator: the real :class:`oasis.core.swarm.Swarm` cores on the
network model, driven by a deterministic discrete-event engine.

Every action a core emits is executed the way ``oasis.node.node.LiveStream.pump``
executes it: Send/Push go over the modelled link to the peer's ``on_message`` /
``on_chunk``; FetchOrigin is an HTTP GET on the CDN edge answered with the
chunk, a 404 (not there yet) or nothing (timeout at the deadline), fed to
``on_origin``; Deliver/Skip go to the viewer's record; DropPeer goes to the
node's policy. A node's timer is ``swarm.get_timer()``; at most one timer event
per node is pending (the armed time is stored; a stale event is skipped).

Whom a node links to, and what it lets each peer do, is decided by the node's own
policy core, :class:`oasis.core.peer.PeerPolicy` (one per simulated node, executed
the way ``oasis.node.node.Node._run_policy`` executes it): its ``Announce`` asks the
tracker and offers the answer as verified candidates; its ``Dial`` becomes a link
when the real node's does: the dialler is authenticated ``HANDSHAKE_RTTS`` = 3 RTTs
later (the listener's stateless Retry, ``oasis.node.transport.Endpoint._accept``, 1;
QUIC's handshake, 1; HELLO/AUTH, 1), the listener when the dialler's AUTH reaches it
one one-way delay after that (its admission: a refusal reaches the dialler as a close,
which backs the address off); or a failure 5 s later when nobody is there; JOIN goes
over the link and its
``AddPeer``/``RemovePeer`` add and remove the swarm's neighbours; every control
message and chunk a node receives passes the policy first (budgets, joins, scores);
a swarm's DropPeer is the policy's ban; ``CloseLink`` closes the link on this side
now and on the other one one-way delay later. Every node has a fake address in
198.18.0.0/15 (the benchmarking range).

With ``session = true`` in the scenario's ``[protocol]`` table every link also runs
the real :class:`oasis.core.session.Session` handshake: after the Retry and the QUIC
handshake (``QUIC_RTTS`` = 2 RTT) the dialler's HELLO, the listener's HELLO + AUTH and
the dialler's AUTH cross the modelled link as bytes, signed and verified with real
Ed25519 keys (the viewers' keys are then real identities); the policy's ``link_up``
follows each side's ``Authenticated``. Control messages after it keep the direct path.

Events are ``(time, order, kind, a, b)`` tuples on one heap, dispatched on the
integer ``kind``. ``make`` compiles this module with mypyc together with the
core (``scripts/build_core.py``); ``oasis/sim/__init__.py`` uses the compiled
engine only with the compiled core and when it is newer than this source.
"""

from __future__ import annotations

import dataclasses
import gc
import heapq
import math
import random
import time
from array import array
from collections import Counter
from typing import Any

import numpy as np

from oasis.core import peer as pp
from oasis.core import session as ss
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.metrics import ViewerRecord
from oasis.core.nat import NatKind
from oasis.core.stream import StreamId, is_keyframe, sign_chunk, verify_chunk
from oasis.core.tracker import Tracker
from oasis.core.wire import ErrorCode

from . import adversary as adv
from .execute import execute
from .fasttracker import FastTracker
from .netmodel import (
    CDN_EDGE_HOLD_AHEAD,
    CDN_EDGE_HOLD_S,
    CDN_EDGE_RTT_MS,
    PeerNet,
    World,
    link_s,
    one_way_s,
    rtt_s,
)
from .population import INF, Viewer
from .records import Timeline, continuity_over_time, summarize
from .scenario import Scenario

T0 = 1000.0  #: virtual clock at stream start (seconds)
# event kinds
EV_TIMER = 0
EV_CHUNK = 1
EV_MSG = 2
EV_ORIGIN = 3
EV_PRODUCE = 4
EV_JOIN = 5
EV_LEAVE = 6
EV_POLICY = 7  #: a node's policy timer
EV_LINK_UP = 8
EV_DOWN = 9  #: a link closed, as one side learns it (policy.link_down)
EV_HOSTILE = 10  #: an adversary's injection tick
EV_BURST = 11  #: several control messages in one datagram (a REQUEST flood)
EV_DIAL_FAILED = 12  #: a dial nobody answered (the node's connect timeout)
EV_SESSION = 13  #: handshake bytes arrive (scenario protocol.session)
EV_NAT_RETRY = 14  #: a dial's Initial, dropped by the listener's NAT, is retransmitted
EV_DROPPED = 15  #: a copy never sent reaches its deadline: its sender's transport says so
MTU_PAYLOAD = 1200
PACKET_OVERHEAD = 60  #: IPv4 20 + UDP 8 + QUIC short header, AEAD tag, frame headers ~32
CONTROL_FRAME_PREFIX = 4
# ---- what a real node pays per message (docs/simulation.md, "Fidelity check") -------------
# Thread CPU of the real node per message, measured by ``bench/hop_cost.py`` (instrumented
# ``oasis demo`` processes, 20-60 ms link delays): 2-core x86-64 VM, Python 3.11, aioquic
# 1.7.2, pure-Python core, 2026-11-30, ``--viewers 6 --duration 10`` and ``--viewers 20
# --duration 20`` (load 4.8-8; CPU time, so little moved by load). Receiving: QUIC decrypt +
# stream reassembly, 0.12-0.16 ms per 1,350 B datagram (per byte here), then the handler
# (policy, core; 0.06 ms for a control message); a chunk adds its Ed25519 check (0.134 ms,
# ``verify_chunk`` on 18.8 kB). Sending a copy (Session encode, aioquic packetize + encrypt,
# sendto): 0.52-0.61 ms + 0.06 ms of sendto for an 18.8 kB chunk, 0.14-0.18 ms for a
# control message. A node has one CPU: messages queue for it (``SimNode.cpu_busy``).
CPU_RX_MSG_S = 0.15e-3  #: per message received (handler + a datagram's fixed part)
CPU_RX_BYTE_S = 0.10e-6  #: per byte received
CPU_VERIFY_S = 0.13e-3  #: per chunk received (Ed25519 over the chunk)
CPU_TX_MSG_S = 0.13e-3  #: per message (copy) sent
CPU_TX_BYTE_S = 0.028e-6  #: per byte sent
# aioquic's pacer and the node's congestion control (oasis.node.congestion), per link.
# aioquic: pacing rate cwnd / srtt after a burst of max(2, min(cwnd/4, 16 datagrams)).
# With aioquic's Reno (IW 10 datagrams) the first chunk on a link waited: bench/hop_cost.py
# measured the first copy's send -> last byte at p50 109-119 ms (p90 153-193, srtt 92-99
# ms, cwnd 14.7-15.6 kB), copies 2-4 p50 27-43 ms. With "oasis" (IW 64 datagrams: a chunk
# fits the burst) the same runs (`--cc reno` / default, 20 viewers x 30 s, seeds 1-3, load
# 4.4-9.1) measured p50 3.4-6.3 ms (p90 13-19), copies 2-4 p50 6.5-9.1 ms, later ones
# p50 6.0-6.5 ms (Reno 3.6-5.6: control packets share the 16-packet burst); cwnd at every
# first copy 86,400 B; no link saw a loss (loopback).
#: an origin response: the viewer's HTTP client (kernel TCP; assumed a message's fixed
#: cost, not measured) and the chunk's signature check
ORIGIN_RX_CPU_S = CPU_RX_MSG_S + CPU_VERIFY_S
QUIC_DATAGRAM = 1350  #: oasis.node.transport.DEFAULT_DATAGRAM_SIZE
#: oasis.node.congestion (every link of the node): INITIAL_WINDOW = 64 datagrams; app-
#: limited traffic does not grow it (RFC 9002 section 7.8), the handshake included
QUIC_CWND0 = 86_400
#: oasis.node.congestion.LOSS_FLOOR: a loss halves the window, not below the initial one
#: (1,000 peers x 40 s, mobile-churn mix, playout 0.5 s, seed 1: offload 0.29 with a floor
#: of 16 datagrams, 0.45 with 32, 0.53 with 64; aioquic's Reno model: 0.31)
QUIC_LOSS_FLOOR = 86_400
#: qh3's congestion control (``Scenario.quic = "qh3"``; qh3 2.1.0, Rust, ``recovery.rs``): CUBIC
#: from an initial window of 10 datagrams; a loss (one per recovery period: a datagram sent
#: after the last one began) takes it to 0.7 x, not below 2 datagrams; it grows on every ACK,
#: used or not (no app-limited rule), in slow start by the bytes ACKed, then by CUBIC with a
#: Reno-friendly floor (+1 datagram per window ACKed); 2 s without an ACK and the next send
#: starts again from the initial window. Its pacer: a token bucket of one window, at cwnd / srtt.
QH3_IW = 10 * QUIC_DATAGRAM
QH3_MIN = 2 * QUIC_DATAGRAM
QH3_BETA = 0.7
QH3_C = 0.4
QH3_IDLE_S = 2.0
#: loss recovery (RFC 9002, aioquic's constants): a datagram is declared lost when 3 later
#: ones are acknowledged or 9/8 RTT after it was sent; with none after it, at the probe
#: timeout, srtt + 4 rttvar + max_ack_delay (25 ms; rttvar taken as 2.5 ms, a steady path)
QUIC_PACKET_THRESHOLD = 3
QUIC_TIME_THRESHOLD = 9 / 8
QUIC_PTO_EXTRA_S = 0.035
# ---- what a new link costs, in round trips of the link (docs/simulation.md, "Dial") --------
# Measured by bench/link_setup.py (two real Endpoints on loopback, 40 ms egress delay each,
# RTT 80 ms, 15 dials, 2026-12-04): the dialler authenticated 247-248 ms = 3.09-3.10 RTT after
# its dial (p50), the listener half an RTT after it, 289 ms = 3.61 RTT; with the listener's
# Retry off 2.07 and 2.59 RTT.
#: the listener answers a dialler's first Initial with a stateless Retry, always
#: (``oasis.node.transport.Endpoint._accept``, ``retry`` on by default): the dialler's Initial,
#: the Retry back, and only then the Initial that echoes its token is accepted
RETRY_RTTS = 1.0
#: then QUIC's own 1-RTT handshake: from its dial until the dialler can send on the link (its
#: HELLO, with session = true)
QUIC_RTTS = RETRY_RTTS + 1.0
#: then the OFTP session (oasis.core.session): the dialler's HELLO out, the listener's HELLO +
#: AUTH back: the dialler is authenticated (its policy's link_up) this long after its dial. Its
#: AUTH reaches the listener one one-way delay later (the listener's link_up: 3.5 RTT on a
#: symmetric link). The swarms' add_peer follows the JOIN exchange: the dialler's JOIN
#: follows its AUTH (listener at 3.5 RTT), the answer comes back one RTT after its link_up
HANDSHAKE_RTTS = QUIC_RTTS + 1.0
DIAL_TIMEOUT_S = 5.0  #: the node's connect timeout (Node._dial)
#: QUIC retransmits an unanswered Initial after its PTO (RFC 9002: 3 x the initial RTT
#: of 333 ms, about 1 s); a dial dropped by a NAT is tried again this often, this many times
NAT_RETRY_S = 1.0
NAT_RETRIES = 3
NAT_PUBLIC, NAT_EIM, NAT_SYMMETRIC = 1, 2, 3  #: PeerNet.nat (oasis.core.nat.NatKind)
PORT = 4433
SIM_STREAM = "sim"  #: the stream's text id (what JOIN names)

#: a link: (link id, dialler's key, listener's key) -- the policy's opaque handle
Link = tuple[int, bytes, bytes]


def sim_address(n: int) -> str:
    """The ``n``-th address of 198.18.0.0/15 (RFC 2544, benchmarking), n >= 1: consecutive
    nodes in different /24s (the third octet moves first), as strangers on the internet
    are -- a node learns its mapping only from observers in two /24s (oasis.core.nat), so a
    small simulation with every node in one /24 learnt none."""
    return f"198.{18 + (n >> 16)}.{n & 255}.{(n >> 8) & 255}"


class MemoVerifier:
    """All simulated nodes share the same chunk objects: verify each once."""

    def __init__(self) -> None:
        self.ok: dict[int, wire.ChunkMsg] = {}
        #: forged chunks already judged (adversaries send one object per seq to many)
        self.bad: dict[int, wire.ChunkMsg] = {}
        self.calls = 0
        self.real = 0

    def __call__(self, sid: StreamId, chunk: wire.ChunkMsg) -> bool:
        self.calls += 1
        if self.ok.get(chunk.seq) is chunk:
            return True
        if self.bad.get(chunk.seq) is chunk:
            return False
        self.real += 1
        good = verify_chunk(sid, chunk)
        if good:
            self.ok[chunk.seq] = chunk
        else:
            self.bad[chunk.seq] = chunk
        return good


class SimNode:
    def __init__(self, idx: int, key: bytes, net: PeerNet, swarm: sw.Swarm, born: float,
                 max_links: int, policy: pp.PeerPolicy[Link], host: str,
                 is_source: bool = False) -> None:
        self.idx = idx
        self.key = key
        self.pid = key.hex()
        self.swarm = swarm
        self.net = net
        self.up_busy = 0.0
        self.down_busy = 0.0
        self.armed = -1.0  #: time of the pending timer event; -1 = none
        self.alive = True
        self.rec: ViewerRecord | None = None
        #: the node's policy core: its admitted links are ``policy.peers``
        self.policy = policy
        self.host = host
        #: what a tracker answer names: one shared (immutable) object per node, not one
        #: per offer (10,000 policies hold up to 256 candidates each)
        self.cand = pp.Candidate(key, host, PORT)
        self.identity: Identity | None = None  #: a real Ed25519 identity (session mode)
        self.parmed = -1.0  #: time of the pending policy timer event; -1 = none
        #: link id -> arrival time of the last control message sent on it: the control
        #: stream is one ordered QUIC stream (a lost packet delays what follows it)
        self.ctl_at: dict[int, float] = {}
        self.max_links = max_links
        self.up_bytes = 0
        self.born = born
        self.pre_used = False  #: its origin start used the latest.json read at its join
        self.died = INF
        self.is_source = is_source
        self.spins = 0
        self.spin_t = -1.0
        self.mode = adv.HONEST  #: adversary mode (oasis/sim/adversary.py); 0 = honest
        #: the node's CPU is busy with messages until then (CPU_* costs)
        self.cpu_busy = 0.0
        #: peer key -> QUIC state of the link to it: [cwnd, paced until, ACK due at, bytes
        #: that ACK brings, 1.0 once a loss ended slow start] (OasisSim._paced)
        self.cc: dict[bytes, list[float]] = {}
        #: peer key -> when this node's hole-punching prime opened its NAT towards it
        #: (pp.Prime; the newest PRIMED_MAX kept)
        self.primed: dict[bytes, float] = {}


def _paced_until(st: list[float], end: float, t: float) -> float:
    """A link's pacer sends a message's last byte at ``end``: it leaves then, or at ``t`` (the
    upload queue) if later."""
    st[1] = end
    return end if end > t else t


def _ack_due(st: list[float], nbytes: int, t: float, rtt: float) -> float:
    """``nbytes`` left at ``t``: their ACK is due an RTT later (one ACK pending at a time:
    later bytes ride the earlier ACK)."""
    if not st[3]:
        st[2] = t + rtt
    st[3] += nbytes
    return t


PRIMED_MAX = 64  #: primes a simulated NAT remembers per node (the budget allows ~12 at once)
NAT_UDP_TIMEOUT_S = 30.0  #: how long a prime keeps a NAT open (Linux: unreplied UDP)


class OasisSim:
    def __init__(self, s: Scenario, world: World, bnet: PeerNet, viewers: list[Viewer],
                 seed: int) -> None:
        #: viewer's last mile -> CDN edge RTT (fidelity check: 0)
        self.edge_rtt_ms: float = CDN_EDGE_RTT_MS
        #: the links run qh3's CUBIC and pacer (Scenario.quic), else the node's controller
        self.qh3: bool = s.quic == "qh3"
        #: s the edge holds a request for a chunk it does not have yet (0: 404 at once)
        self.edge_hold_s: float = CDN_EDGE_HOLD_S
        self.s = s
        self.world = world
        self.rtt = world.rtt_ms
        self.viewers = viewers
        self.seed = seed
        self.rng = random.Random(f"oasis/{seed}")
        self.now = T0
        self.q: list[tuple[float, int, int, Any, Any]] = []
        self.n_ev = 0
        self.events = 0  #: events handled by the last run
        self.cfg = s.swarm_config()
        self.verify = MemoVerifier()
        bid = Identity.from_private_bytes(random.Random(f"bkey/{seed}").randbytes(32))
        self.bid = bid
        self.sid = StreamId(bid.public, "sim")
        bup = s.broadcaster_kbps()
        bcfg = dataclasses.replace(self.cfg, upload_kbps=bup)
        src = sw.Swarm(self.sid, bid.public, bcfg, is_source=True,
                       rng=random.Random(f"swarm/{seed}/src"), now=T0, verify=self.verify)
        self.n_links = 0
        #: links not closed yet (a CloseLink of both sides is executed once)
        self.open_links: set[int] = set()
        self.by_addr: dict[str, SimNode] = {}  #: every node that ever joined, by host
        self.by_key: dict[bytes, SimNode] = {}
        #: run the real Session handshake per link (protocol.session)
        self.with_session = bool(s.protocol.get("session", False))
        #: link id -> (dialler's session, listener's session) while the handshake runs
        self.handshakes: dict[int, tuple[ss.Session, ss.Session]] = {}
        self.handshakes_done = 0
        self.handshakes_failed = 0
        self.source = self._node(-1, bid.public, bnet, src, T0, 2 * s.max_neighbours, True)
        self.source.identity = bid
        self.nodes: dict[bytes, SimNode] = {bid.public: self.source}
        if s.tracker == "core" or (s.tracker == "auto" and len(viewers) <= 2000):
            self.tracker: Tracker | FastTracker = Tracker(sample=20, rng=random.Random(f"tr/{seed}"),
                                                          locality=s.tracker_locality)
        else:
            self.tracker = FastTracker(sample=20, rng=random.Random(f"tr/{seed}"),
                                       locality=s.tracker_locality)
        self.by_pid: dict[str, SimNode] = {}
        self._announce(self.source, is_broadcaster=True)
        self.by_pid[self.source.pid] = self.source
        # stream
        self.chunk_s = s.chunk_ms / 1000
        self.payload_len = int(s.bitrate_kbps * 1000 / 8 * self.chunk_s)
        self.payload = bytes(self.payload_len)
        self.produced_t: list[float] = []
        self.origin: dict[int, tuple[wire.ChunkMsg, float]] = {}
        self.chunk_size: dict[int, int] = {}
        self.n_chunks = 0  #: chunks the broadcaster makes in the run (seq i at T0 + i chunk_s)
        self.records: list[ViewerRecord] = []
        self.every: list[SimNode] = []
        # accounting
        self.oftp_bytes = 0  #: OFTP message bytes sent (control + chunk messages)
        self.media_sent = 0  #: chunk payload bytes sent peer to peer
        #: pushes not sent: the sender's uplink queue held them past their deadline (:meth:`push`)
        self.pushes_reset = 0
        self.wire_bytes = 0  #: plus packet headers
        self.control_bytes = 0
        self.origin_requests = 0
        self.origin_404 = 0
        self.edge_holds = 0  #: fetches the edge held until the chunk reached it
        self.origin_timeouts = 0
        self.hops: Counter[int] = Counter()
        self.dropped_peers = 0
        self.joins = 0
        self.leaves = 0
        #: honest viewers that left: their bad chunks and duplicate bytes (the results sum
        #: those still present and these; the departed were left out, found 2026-12-06)
        self.gone_bad_chunks = 0
        self.gone_duplicate_bytes = 0
        self._last_msg: Any = None
        self._last_size = 0
        self.timeline = Timeline(int(s.duration_s) + 10)
        self.direct: dict[int, float] = {}  #: viewer idx -> direct-path latency (s)
        self.stretch = array("f")
        #: called as progress(sim_s, duration_s, events, peers, offload) every progress_every_s
        #: simulated seconds (long runs show where they are); None = silent. offload: the
        #: peers' share of the chunk bytes delivered since the last call (None when none were)
        self.progress: Any = None
        self.progress_every_s = 10.0
        # adversaries
        self.hostile_of = adv.assign(len(viewers), s.hostile, s.hostile_mix, seed)
        self.adv = adv.Counters()
        self.defect_at = T0 + (s.hostile_defect_s if s.hostile_defect_s >= 0 else s.duration_s / 2)
        self.hostile_nodes: list[SimNode] = []
        self.drops_of_hostile: Counter[str] = Counter()  #: honest swarms' DropPeer, by mode
        self.honest_dropped_honest = 0
        self.bans_of_hostile: Counter[str] = Counter()  #: honest policies' bans, by mode
        self.idle_closed_hostile: Counter[str] = Counter()  #: ... links closed idle, by mode
        self.honest_banned_honest = 0
        self.forged_cache: dict[int, wire.ChunkMsg] = {}  #: one forged object per seq

    # ---- engine ----------------------------------------------------------
    def at(self, t: float, kind: int, a: Any = None, b: Any = None) -> None:
        self.n_ev += 1
        heapq.heappush(self.q, (t, self.n_ev, kind, a, b))

    def run(self) -> dict[str, Any]:
        s = self.s
        wall = time.perf_counter()
        end = T0 + s.duration_s
        for v in self.viewers:
            self.at(T0 + v.join, EV_JOIN, v)
            if v.leave < INF:
                self.at(T0 + v.leave, EV_LEAVE, v)
        n_chunks = self.n_chunks = int(round(s.duration_s / self.chunk_s))
        for i in range(n_chunks):
            self.at(T0 + i * self.chunk_s, EV_PRODUCE, i)
        stop = end + self.cfg.playout_delay + 1.0
        step = self.progress_every_s
        next_report = T0 + step if self.progress is not None else INF
        # The cyclic GC would walk every live object (millions at 10^4 peers) again and
        # again; what the run discards per event (tuples, actions, messages) has no
        # cycles and is freed by reference counting. Cycles (departed nodes and their
        # links) wait for the end of the run. 3,000 peers x 20 s: 13 % less CPU.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._run_policy(self.source)
            self._loop(stop, next_report, step)
        finally:
            if gc_was_enabled:
                gc.enable()
        self.now = stop
        for node in self.nodes.values():
            if node.rec is not None:
                node.rec.left_at = min(node.rec.left_at, self.now)
        return self._result(self.events, time.perf_counter() - wall, end)

    def _loop(self, stop: float, next_report: float, step: float) -> None:
        s = self.s
        q = self.q
        pop = heapq.heappop
        progress = self.progress
        events = 0
        tl = self.timeline
        last_bin = 0
        while q and q[0][0] <= stop:
            t, _, kind, a, b = pop(q)
            if t > self.now:
                self.now = t
                if t >= next_report:
                    cur = min(int(t - T0), len(tl.total))  # whole seconds since the last report
                    total = float(tl.total[last_bin:cur].sum())
                    off = float(tl.p2p[last_bin:cur].sum()) / total if total > 0 else None
                    last_bin = max(last_bin, cur)
                    progress(t - T0, s.duration_s, events, len(self.nodes) - 1, off)
                    next_report += step
            events += 1
            if kind == EV_TIMER:
                self._timer(a, b)
            elif kind == EV_CHUNK:
                self._recv_chunk(a, b)
            elif kind == EV_MSG:
                self._recv_msg(a, b)
            elif kind == EV_ORIGIN:
                self._origin_done(a, b)
            elif kind == EV_PRODUCE:
                self._produce(a)
            elif kind == EV_JOIN:
                self._join(a)
            elif kind == EV_LEAVE:
                self._leave(a)
            elif kind == EV_POLICY:
                self._policy_timer(a, b)
            elif kind == EV_LINK_UP:
                self._link_up(a, b)
            elif kind == EV_DOWN:
                self._down(a, b)
            elif kind == EV_HOSTILE:
                self._hostile_tick(a)
            elif kind == EV_BURST:
                self._recv_burst(a, b)
            elif kind == EV_SESSION:
                self._session(a, b)
            elif kind == EV_NAT_RETRY:
                self._dial(a, b[0], b[1])
            elif kind == EV_DROPPED:
                self._dropped(a, b)
            else:
                self._dial_failed(a, b)
        self.events = events

    # ---- membership --------------------------------------------------------
    def _announce(self, node: SimNode, *, is_broadcaster: bool = False,
                  leaving: bool = False) -> list[str]:
        tr = self.tracker
        if isinstance(tr, FastTracker):
            return tr.announce(node.pid, is_broadcaster=is_broadcaster, leaving=leaving,
                               area=str(node.net.country))
        got = tr.announce("sim", node.pid, "sim", 0, self.now - T0, is_broadcaster=is_broadcaster,
                          leaving=leaving, area=str(node.net.country))
        return [p.peer_id for p in got]

    def _node(self, idx: int, key: bytes, net: PeerNet, swarm: sw.Swarm, now: float,
              max_links: int, is_source: bool = False, target: int = 0) -> SimNode:
        """A node: its swarm, its policy core (as the node configures it), an address."""
        cfg = pp.PolicyConfig(target_neighbours=0 if is_source else target,
                              max_neighbours=max_links)
        host = sim_address(idx + 2)
        # behind a NAT the node listens on a private address: what peers see differs
        listen = (host, PORT) if net.nat == NAT_PUBLIC else ("10.0.0.2", PORT)
        policy: pp.PeerPolicy[Link] = pp.PeerPolicy(
            key, cfg, rng=random.Random(f"policy/{self.seed}/{idx}"), now=now, listen=listen)
        policy.tree_peer = swarm.in_tree  # (``near_swap`` keeps parents and children)
        policy.add_stream(SIM_STREAM, self.sid.key)
        policy.set_starting(self.sid.key, not is_source)  # its JOINs ask for a start
        node = SimNode(idx, key, net, swarm, now, max_links, policy, host, is_source)
        self.by_addr[host] = node
        self.by_key[key] = node
        return node

    def _join(self, v: Viewer) -> None:
        now = self.now
        s = self.s
        start = int(s.upload_max_x * s.bitrate_kbps)
        least = 0
        if s.upload_probe_x > s.upload_max_x and 0 < s.upload_floor_x < s.upload_max_x:
            # the node's default, its uplink unknown to it: the probe finds what it carries
            up_kbps = start
            probe = int(s.upload_probe_x * s.bitrate_kbps)
            least = max(1, int(s.upload_floor_x * s.bitrate_kbps))
        else:
            # a cap the user set from their uplink; at the default, probed upward only
            up_kbps = int(min(v.net.up_bps * 8 / 1000 * s.upload_share, start))
            probe = int(s.upload_probe_x * s.bitrate_kbps) \
                if up_kbps >= start and s.upload_probe_x > s.upload_max_x else 0
        cfg = dataclasses.replace(self.cfg, upload_kbps=max(1, up_kbps), upload_max_kbps=probe,
                                  upload_min_kbps=least)
        ident: Identity | None = None
        key = v.key
        if self.with_session:  # the viewer's random bytes are its private key
            ident = Identity.from_private_bytes(v.key)
            key = ident.public
        swarm = sw.Swarm(self.sid, key, cfg, rng=random.Random(f"swarm/{self.seed}/{v.idx}"),
                         now=now, verify=self.verify)
        mode = self.hostile_of.get(v.idx, adv.HONEST)
        # a silent adversary dials as many links as a node accepts
        target = s.max_neighbours if mode == adv.SILENT else s.neighbours
        node = self._node(v.idx, key, v.net, swarm, now, s.max_neighbours, target=target)
        node.identity = ident
        if mode:
            # an adversary: no record (figures are the honest viewers'), crafted traffic
            node.mode = mode
            self.hostile_nodes.append(node)
            if mode in adv.INJECTORS:
                self.at(now + 1.0 + self.rng.random() / s.hostile_rate, EV_HOSTILE, node)
        else:
            node.rec = ViewerRecord(now, cfg.playout_delay)
            self.records.append(node.rec)
            self.direct[v.idx] = self._direct_latency(v.net)
        self.nodes[key] = node
        self.every.append(node)
        self.by_pid[node.pid] = node
        self.joins += 1
        self._pump(node)  # arms its swarm's timer, as the node's add_stream does
        self._run_policy(node)  # its first Announce is due now

    # ---- the node policy (oasis.core.peer), executed as oasis.node.node.Node does --------
    def _run_policy(self, node: SimNode) -> None:
        policy = node.policy
        now = self.now
        pump = False
        acts = policy.actions()
        while acts:
            for a in acts:
                if isinstance(a, pp.SendTo):
                    if node.mode == adv.SILENT and not isinstance(a.message, wire.Join):
                        self.adv.sent_dropped_silent += 1  # it JOINs, then says nothing
                        continue
                    h = a.link
                    self._send_msg(node, self.by_key[h[2] if h[1] == node.key else h[1]], h, a.message)
                elif isinstance(a, pp.AddPeer):
                    other = self.by_key[a.peer]
                    node.swarm.add_peer(a.peer, now, rtt=self._rtt(node.net, other.net),
                                        start=a.start, asked=a.asked)
                    pump = True
                elif isinstance(a, pp.RemovePeer):
                    node.swarm.remove_peer(a.peer, now)
                    pump = True
                elif isinstance(a, pp.CloseLink):
                    self._close(node, a.link, a.peer, a.code)
                elif isinstance(a, pp.Dial):
                    self._dial(node, a)
                elif isinstance(a, pp.Prime):
                    node.primed.pop(a.peer, None)
                    node.primed[a.peer] = now
                    if len(node.primed) > PRIMED_MAX:
                        del node.primed[next(iter(node.primed))]
                elif isinstance(a, pp.Ban):
                    self._count_ban(node, a.peer)
                elif isinstance(a, pp.Announce):
                    self._policy_announce(node)
            acts = policy.actions()  # on_candidates planned dials
        if pump:
            self._pump(node)
        # arm the policy timer: at most one pending event per node
        t = policy.get_timer()
        if t is None or node.parmed == t:
            return
        node.parmed = t
        self.at(t if t > now else now, EV_POLICY, node, t)

    def _policy_timer(self, node: SimNode, t: float) -> None:
        if node.parmed != t or not node.alive:
            return  # stale: re-armed since, or gone
        node.parmed = -1.0
        node.policy.handle_timer(self.now)
        self._run_policy(node)

    def _policy_announce(self, node: SimNode) -> None:
        """What runtime's announce loop does on ``Announce``: ask the tracker, offer the
        answer as verified candidates."""
        found: list[pp.Candidate] = []
        if not node.is_source:  # the broadcaster announced itself once; it dials nobody
            for pid in self._announce(node):
                other = self.by_pid.get(pid)
                # a tracker lists a NATed node only once it announces the mapping peers
                # see (EIM, learnt from OBSERVED); before that it is answered, not listed
                if other is not None and (other.net.nat == NAT_PUBLIC
                                          or other.policy.mapping.kind == NatKind.EIM):
                    found.append(other.cand)
        node.policy.on_candidates(found, self.now, verified=True, interval=10.0)

    def _seen(self, node: SimNode, other: SimNode) -> tuple[str, int]:
        """The address ``node``'s packets come from, as ``other`` sees them: a symmetric
        NAT maps each destination to a port of its own."""
        if node.net.nat == NAT_SYMMETRIC:
            return node.host, 20000 + (other.idx * 7919 + node.idx) % 40000
        return node.host, PORT

    def _nat_drops(self, node: SimNode, other: SimNode) -> bool:
        """Does ``other``'s NAT drop ``node``'s dial? A NATed listener lets it in only
        while it dials ``node`` too, or primed its NAT towards it lately (its own packets
        opened the mapping), when its mapping is endpoint-independent (the port ``node``
        was told is the one open) and ``node``'s is not symmetric (the mapping admits
        only the port it saw)."""
        nat = other.net.nat
        if nat == NAT_PUBLIC:
            return False
        if nat != NAT_EIM or node.net.nat == NAT_SYMMETRIC:
            return True
        return not (node.key in other.policy.dials.dialling
                    or other.primed.get(node.key, -INF) > self.now - NAT_UDP_TIMEOUT_S)

    def _dial(self, node: SimNode, a: pp.Dial, tries: int = 0) -> None:
        other = self.by_addr.get(a.host)
        now = self.now
        if not node.alive:
            return
        if other is not None and other.alive and self._nat_drops(node, other):
            # the Initial is dropped at the listener's NAT; QUIC sends it again
            if tries < NAT_RETRIES:
                self.at(now + NAT_RETRY_S, EV_NAT_RETRY, node, (a, tries + 1))
            else:
                self.at(now + max(0.0, DIAL_TIMEOUT_S - NAT_RETRY_S * tries), EV_DIAL_FAILED, node, a.peer)
            return
        if self.with_session and other is not None and other.alive and a.port == PORT:
            # whoever answers on that address: the session checks the key we pinned
            self.n_links += 1
            hs: Link = (self.n_links, node.key, other.key)
            self.at(now + QUIC_RTTS * self._rtt(node.net, other.net), EV_SESSION, hs, a.peer)
            return
        if other is None or other.key != a.peer or not other.alive or a.port != PORT:
            # nobody answers (a departed viewer's address): the connect times out
            self.at(now + DIAL_TIMEOUT_S, EV_DIAL_FAILED, node, a.peer)
            return
        self.n_links += 1
        h: Link = (self.n_links, node.key, other.key)
        self.at(now + HANDSHAKE_RTTS * self._rtt(node.net, other.net), EV_LINK_UP, h, None)

    # ---- the OFTP session's handshake (oasis.core.session), protocol.session ------------
    def _session(self, h: Link, data: tuple[bool, bytes] | bytes) -> None:
        """QUIC is up (``data``: the key the dialler pinned; it starts), or handshake
        bytes arrive (``data``: (for the dialler?, bytes))."""
        dialler = self.by_key[h[1]]
        listener = self.by_key[h[2]]
        now = self.now
        lid = h[0]
        if isinstance(data, bytes):
            if not dialler.alive:
                return
            if not listener.alive:
                self.at(now + DIAL_TIMEOUT_S - QUIC_RTTS * self._rtt(dialler.net, listener.net),
                        EV_DIAL_FAILED, dialler, data)
                return
            assert dialler.identity is not None and listener.identity is not None
            sa = ss.Session(dialler.identity, True, expected_key=data,
                            rng=random.Random(f"session/{self.seed}/{lid}/d"))
            sb = ss.Session(listener.identity, False, rng=random.Random(f"session/{self.seed}/{lid}/l"))
            sb.begin(now)
            self.handshakes[lid] = (sa, sb)
            sa.start(now)
            self._session_flush(h, dialler, listener, sa, True)
            return
        pair = self.handshakes.get(lid)
        if pair is None:
            return
        to_dialler, raw = data
        node, other = (dialler, listener) if to_dialler else (listener, dialler)
        sess = pair[0] if to_dialler else pair[1]
        if not other.alive:  # the sender left: its connection is closed
            self.handshakes.pop(lid, None)
            return
        if not node.alive:
            self.handshakes.pop(lid, None)
            if to_dialler:
                return
            if lid in self.open_links:  # its AUTH: the dialler's link is up already
                self._listener_gone(h, dialler, listener)
                return
            # its HELLO (sent QUIC_RTTS after the dial, one one-way delay ago): the listener
            # left, the dialler's connect times out
            self.at(now + DIAL_TIMEOUT_S - QUIC_RTTS * self._rtt(dialler.net, listener.net)
                    - self._owd(dialler.net, listener.net),
                    EV_DIAL_FAILED, dialler, pair[0].expected_key or listener.key)
            return
        if not to_dialler:
            sess.start(now)  # the listener answers once the dialler opened the stream
        sess.receive_control(raw, now)
        self._session_flush(h, node, other, sess, to_dialler)

    def _session_flush(self, h: Link, node: SimNode, other: SimNode, sess: ss.Session,
                       is_dialler: bool) -> None:
        """Send a side's handshake bytes over the link; act on its events."""
        out = b""
        failed = False
        for a in sess.actions():
            if isinstance(a, ss.SendControl):
                out += a.data
            elif isinstance(a, ss.CloseLink):
                failed = True
        if out:
            self.oftp_bytes += len(out)
            self.control_bytes += len(out)
            at = self._ordered(node, h[0], self._transmit(node, other, len(out)))
            self.at(at, EV_SESSION, h, (not is_dialler, out))
        ev = sess.next_event()
        while ev is not None:
            if isinstance(ev, ss.Authenticated):
                if is_dialler:
                    self.open_links.add(h[0])
                else:
                    self.handshakes.pop(h[0], None)  # both sides done
                    self.handshakes_done += 1
                node.policy.link_up(h, ev.peer_key, dialled=is_dialler, now=self.now,
                                    addr=self._seen(other, node), rtt=self._rtt(node.net, other.net))
                self._run_policy(node)
            elif isinstance(ev, ss.Closed):
                failed = True
            ev = sess.next_event()
        if failed:
            pair = self.handshakes.pop(h[0], None)
            if pair is None:
                return
            self.handshakes_failed += 1
            dialler = node if is_dialler else other
            if dialler.alive:  # the connect failed: the policy backs the address off
                self.at(self.now, EV_DIAL_FAILED, dialler, pair[0].expected_key or h[2])

    def _dial_failed(self, node: SimNode, peer: bytes) -> None:
        if not node.alive:
            return
        node.policy.dial_failed(peer, self.now)
        self._run_policy(node)

    def _link_up(self, h: Link, listener_side: Any) -> None:
        """The dialler is authenticated, ``HANDSHAKE_RTTS`` after its dial (``listener_side``
        None), or its AUTH reaches the listener one one-way delay later (True): each side's
        link_up, as the node's on its session's ``Authenticated``."""
        dialler = self.by_key[h[1]]
        listener = self.by_key[h[2]]
        now = self.now
        rtt = self._rtt(dialler.net, listener.net)
        if listener_side is not None:
            if h[0] not in self.open_links:
                return  # the dialler closed it or left: the listener hears that close
            if not listener.alive:
                self._listener_gone(h, dialler, listener)
                return
            listener.policy.link_up(h, dialler.key, dialled=False, now=now,
                                    addr=self._seen(dialler, listener), rtt=rtt)
            self._run_policy(listener)  # a refusal reaches the dialler as a close
            return
        if not dialler.alive:
            return  # the handshake died with it
        if not listener.alive:
            # it left during the handshake: the connect times out
            self.at(now + DIAL_TIMEOUT_S - HANDSHAKE_RTTS * rtt, EV_DIAL_FAILED, dialler, listener.key)
            return
        self.open_links.add(h[0])
        # the dialler's AUTH leaves first on the link's control stream: the listener's
        # link_up comes before anything the dialler sends after its own (its JOIN)
        self.at(self._ordered(dialler, h[0], now + self._owd(dialler.net, listener.net)),
                EV_LINK_UP, h, True)
        dialler.policy.link_up(h, listener.key, dialled=True, now=now,
                               addr=self._seen(listener, dialler), rtt=rtt)
        self._run_policy(dialler)

    def _listener_gone(self, h: Link, dialler: SimNode, listener: SimNode) -> None:
        """The listener left before the dialler's AUTH reached it, after the dialler was
        authenticated: the dialler hears the close one one-way delay after it left, or now
        (the AUTH's arrival, when the engine learns of it) if that is later."""
        self.open_links.discard(h[0])
        self.at(max(self.now, listener.died + self._owd(listener.net, dialler.net)), EV_DOWN,
                dialler, (h, listener.key, ErrorCode.NO_ERROR))

    def _close(self, node: SimNode, h: Link, peer: bytes, code: ErrorCode) -> None:
        """CloseLink: this side learns it now, the other one one-way delay later."""
        if h[0] not in self.open_links:
            return
        self.open_links.discard(h[0])
        self.handshakes.pop(h[0], None)  # closed before the listener authenticated
        other = self.by_key[peer]
        if code == ErrorCode.TIMEOUT and other.mode and not node.mode:
            self.idle_closed_hostile[adv.NAMES[other.mode]] += 1
        self.at(self.now, EV_DOWN, node, (h, peer, code))
        self.at(self.now + self._owd(node.net, other.net), EV_DOWN, other, (h, node.key, code))

    def _down(self, node: SimNode, ev: tuple[Link, bytes, ErrorCode]) -> None:
        if not node.alive:
            return
        node.ctl_at.pop(ev[0][0], None)
        node.policy.link_down(ev[0], ev[1], self.now, code=ev[2])
        self._run_policy(node)

    def _count_ban(self, node: SimNode, peer: bytes) -> None:
        if node.mode or node.is_source:
            return
        other = self.by_key.get(peer)
        if other is None:
            return
        if other.mode:
            self.bans_of_hostile[adv.NAMES[other.mode]] += 1
        else:
            self.honest_banned_honest += 1

    def _leave(self, v: Viewer) -> None:
        node = self.nodes.pop(v.key, None)
        if node is None:
            return
        node.alive = False
        node.died = self.now
        if node.rec is not None:
            node.rec.left_at = self.now
        if not node.mode:
            self.gone_bad_chunks += node.swarm.counters.bad_chunks
            self.gone_duplicate_bytes += node.swarm.counters.duplicate_bytes
        self.leaves += 1
        self._announce(node, leaving=True)
        for peer, p in list(node.policy.peers.items()):
            # neighbours hear the LEAVE (or the connection close) one one-way delay later
            h = p.link
            if h[0] in self.open_links:
                self.open_links.discard(h[0])
                other = self.by_key[peer]
                self.at(self.now + self._owd(node.net, other.net), EV_DOWN, other,
                        (h, node.key, ErrorCode.NO_ERROR))

    # ---- the stream ----------------------------------------------------------
    def _produce(self, seq: int) -> None:
        now = self.now
        kf = seq % self.s.gop_chunks == 0
        chunk = sign_chunk(self.bid, self.sid, seq, int(round(now * 1e6)), kf, self.payload)
        t = chunk.time_us / 1e6
        self.produced_t.append(t)
        self.chunk_size[seq] = len(wire.encode(chunk))
        # the broadcaster uploads it to the origin (HTTP PUT) on its link
        bn = self.source.net
        up = self.chunk_size[seq] / bn.up_bps
        self.origin[seq] = (chunk, now + up + bn.lastmile_s)
        self.source.swarm.publish(chunk, now)
        self._pump(self.source)

    # ---- network ---------------------------------------------------------------
    def _owd(self, a: PeerNet, b: PeerNet) -> float:
        """One-way delay a -> b (``netmodel.one_way_s``)."""
        return one_way_s(self.rtt, a, b)

    def _rtt(self, a: PeerNet, b: PeerNet) -> float:
        """Round trip a -> b -> a (``netmodel.rtt_s``)."""
        return rtt_s(self.rtt, a, b)

    def _transmit(self, src: SimNode, dst: SimNode, nbytes: int, verify: bool = True) -> float:
        """When a message of ``nbytes`` sent now has been handled by the receiver:
        the sender's CPU (CPU_TX_*), its upload queue, QUIC's pacer on the link
        (``_paced``), propagation (+1 RTT when a packet is lost: QUIC retransmits),
        the receiver's download queue, then its CPU (CPU_RX_*; ``verify``: a chunk's
        signature check too). The receiver's CPU is taken as idle here; ``_rx_wait``
        queues the message behind what it is busy with when it arrives."""
        pkts = -(-nbytes // MTU_PAYLOAD)
        wire_n = nbytes + pkts * PACKET_OVERHEAD
        self.wire_bytes += wire_n
        src.up_bytes += wire_n
        sn, dn = src.net, dst.net
        # the sender's CPU: encode, packetize, encrypt, sendto (all datagrams, then the wire)
        ready = src.cpu_busy
        if ready < self.now:
            ready = self.now
        ready += CPU_TX_MSG_S + CPU_TX_BYTE_S * nbytes
        src.cpu_busy = ready
        start = src.up_busy
        if start < ready:
            start = ready
        t = start + wire_n / sn.up_bps
        src.up_busy = t
        owd, rtt = link_s(self.rtt, sn, dn)
        if nbytes > 2 * QUIC_DATAGRAM:  # smaller ones fit any pacer burst
            t = self._paced(src, dst, nbytes, ready, t, rtt)
        t += owd
        if sn.loss or dn.loss:
            # a datagram crosses the sender's uplink and the receiver's downlink: either drops it
            p = 1.0 - ((1.0 - sn.loss) * (1.0 - dn.loss)) ** pkts
            u = self.rng.random()
            if u < p:
                # which datagram (the same draw, scaled): one of the message's last
                # QUIC_PACKET_THRESHOLD has no later ones to reveal it and waits for the
                # probe timeout; an earlier one is declared lost 9/8 RTT after it was sent
                if u / p * pkts >= pkts - QUIC_PACKET_THRESHOLD:
                    t += rtt + QUIC_PTO_EXTRA_S
                else:
                    t += rtt * QUIC_TIME_THRESHOLD
                # the window halves, not below the floor; congestion avoidance. (Only on a
                # loss: it was on every message of a link with any loss, which the floor at
                # the initial window hid; found 2026-12-07 trying a model of qh3's window)
                st = src.cc.get(dst.key)
                if st is not None and self.qh3:
                    if self.now >= st[8]:  # a new recovery period: 0.7 x, at least 2 datagrams
                        cw = st[0]
                        st[5] = cw * (1.0 + QH3_BETA) / 2.0 if cw < st[5] else cw  # w_max
                        cw *= QH3_BETA
                        st[0] = cw if cw > QH3_MIN else float(QH3_MIN)
                        st[4] = st[0]  # ssthresh: slow start is over
                        st[6] = -1.0  # a new CUBIC epoch at the next ACK
                        st[8] = self.now + rtt  # (what was sent before its repair is not new)
                elif st is not None:
                    st[0] = max(st[0] / 2, min(st[0], float(QUIC_LOSS_FLOOR)))
                    st[4] = 1.0
        # download: serialization at the receiver's capacity; no cross-flow FIFO
        # (capacities are tens of times the stream rate; see docs/simulation.md)
        t += wire_n / dn.down_bps
        # the receiver's CPU works on the datagrams as they come: the message is handled
        # its whole work after its first datagram arrived, or the last datagram's after
        # its last one (a burst on a fast link pays it all, a paced or slow one little)
        work = CPU_RX_MSG_S + CPU_RX_BYTE_S * nbytes + (CPU_VERIFY_S if verify else 0.0)
        first = start + owd + (MTU_PAYLOAD + PACKET_OVERHEAD) / sn.up_bps + work
        t += work - CPU_RX_BYTE_S * (nbytes - MTU_PAYLOAD if nbytes > MTU_PAYLOAD else 0)
        if first > t:
            t = first
        if dn.host_wait_s:
            # the receiving process first waits for a core of its shared host (fidelity
            # check): exponential with the measured mean; the draw is a hash of the bytes
            # sent so far, so runs stay deterministic and the engine's rng untouched
            u = ((self.wire_bytes * 2654435761) & 0xFFFFFFFF) / 4294967296.0
            t -= dn.host_wait_s * math.log(1.0 - u)
        if sn.host_wait_s and sn.egress_s:
            # ... and so did the sender's, woken by its delay queue's timer (--link-delay-ms)
            u = ((self.wire_bytes * 2246822519 + 374761393) & 0xFFFFFFFF) / 4294967296.0
            t -= sn.host_wait_s * math.log(1.0 - u)
        return t

    def _paced(self, src: SimNode, dst: SimNode, nbytes: int, ready: float, t: float,
               rtt: float) -> float:
        """When the last byte of a large message leaves under aioquic's pacer on the
        link src -> dst (``t``: when the upload queue has sent it). The pacer sends a
        burst of max(2, min(cwnd/4, 16)) datagrams, then at cwnd / RTT; the window
        starts at QUIC_CWND0 and grows by the bytes ACKed one RTT after they left (slow
        start; a loss halves it in ``_transmit``, not below QUIC_LOSS_FLOOR, then it grows
        by one datagram per window ACKed: Reno's congestion avoidance), but only when
        those bytes (what was in flight) were more than half the window: app-limited
        traffic does not grow it (oasis.node.congestion). Keyed by peer: a link closed
        and opened again keeps its window (optimistic, rare)."""
        cc = src.cc
        st = cc.get(dst.key)
        if st is None:
            if len(cc) >= 4 * src.max_links + 16:  # forget links that are gone
                peers = src.policy.peers
                for k in [k for k in cc if k not in peers]:
                    del cc[k]
            if self.qh3:
                # cwnd, paced until, ACK due, bytes it brings, ssthresh (-1: slow start), w_max,
                # epoch start (-1: none), K, recovery until, last ACK, w_est, tokens, tokens at
                st = [float(QH3_IW), 0.0, 0.0, 0.0, -1.0, float(QH3_IW), -1.0, 0.0, 0.0, ready,
                      0.0, float(QH3_IW), ready]
            else:
                st = [float(QUIC_CWND0), 0.0, 0.0, 0.0, 0.0]
            cc[dst.key] = st
        if self.qh3:
            return self._paced_qh3(st, nbytes, ready, t, rtt)
        if st[3] and st[2] <= ready:
            # slow start: + the bytes ACKed; after a loss, + one datagram per window ACKed;
            # only if the window was used (more than half of it in flight)
            if 2.0 * st[3] > st[0]:
                st[0] += st[3] * QUIC_DATAGRAM / st[0] if st[4] else st[3]
            st[3] = 0.0
        cwnd = st[0]
        if rtt > 0.0:
            per_byte = rtt / cwnd
            if st[1] > ready:  # still pacing the previous one: no burst left
                end = st[1] + nbytes * per_byte
            else:
                burst = min(cwnd / 4, 16.0 * QUIC_DATAGRAM)
                if burst < 2.0 * QUIC_DATAGRAM:
                    burst = 2.0 * QUIC_DATAGRAM
                end = ready + (nbytes - burst) * per_byte if nbytes > burst else ready
            t = _paced_until(st, end, t)
        return _ack_due(st, nbytes, t, rtt)

    def _paced_qh3(self, st: list[float], nbytes: int, ready: float, t: float, rtt: float) -> float:
        """``_paced`` under qh3's CUBIC and pacer (``Scenario.quic = "qh3"``): the window
        grows when the ACK of what was in flight is in, used or not; the pacer's bucket holds
        one window and refills at cwnd / RTT, so a message beyond what it holds leaves at that
        rate; no ACK for QH3_IDLE_S and the window is the initial one again."""
        if st[3] and st[2] <= ready:
            self._qh3_acked(st, st[3], st[2], rtt)
            st[3] = 0.0
        if not st[3] and ready - st[9] >= QH3_IDLE_S:
            st[0], st[4], st[5], st[6] = float(QH3_IW), -1.0, float(QH3_IW), -1.0
        cwnd = st[0]
        if rtt > 0.0:
            rate = cwnd / rtt
            tokens = st[11]
            if ready > st[12]:
                tokens += (ready - st[12]) * rate
            if tokens > cwnd:
                tokens = cwnd
            if st[1] <= ready and tokens >= nbytes:
                end = ready  # the bucket holds it: one burst
                tokens -= nbytes
            else:
                start = st[1] if st[1] > ready else ready
                end = start + (nbytes - (tokens if tokens > 0.0 else 0.0)) / rate
                tokens = 0.0
            st[11], st[12] = tokens, end
            t = _paced_until(st, end, t)
        return _ack_due(st, nbytes, t, rtt)

    def _qh3_acked(self, st: list[float], acked: float, at: float, rtt: float) -> None:
        """qh3's ``CongestionController.packet_acked`` for ``acked`` bytes ACKed at ``at``."""
        st[9] = at
        cw = st[0]
        if st[4] < 0.0 or cw < st[4]:  # slow start: + the bytes ACKed
            st[0] = cw + acked
            return
        if st[6] < 0.0:  # the first ACK after a loss starts an epoch
            st[6] = at
            st[10] = cw
            d = (st[5] - cw) / QUIC_DATAGRAM
            st[7] = math.copysign((abs(d) / QH3_C) ** (1.0 / 3.0), d)
        st[10] += QUIC_DATAGRAM * acked / cw  # the Reno-friendly estimate
        el = at - st[6]
        if (QH3_C * (el - st[7]) ** 3 * QUIC_DATAGRAM + st[5]) < st[10]:
            if st[10] > cw:
                st[0] = st[10]
            return
        target = QH3_C * (el + rtt - st[7]) ** 3 * QUIC_DATAGRAM + st[5]
        if target < cw:
            target = cw
        elif target > 1.5 * cw:
            target = 1.5 * cw
        st[0] = cw + (target - cw) * acked / cw  # (target - cwnd) x datagram / cwnd per datagram

    def _send_msg(self, node: SimNode, dst: SimNode, h: Link, msg: wire.Message) -> None:
        """A control message over link ``h`` (EV_MSG at its arrival)."""
        if msg is self._last_msg:
            size = self._last_size
        else:
            size = len(wire.encode(msg)) + CONTROL_FRAME_PREFIX
            self._last_msg, self._last_size = msg, size
        self.oftp_bytes += size
        self.control_bytes += size
        self.at(self._ordered(node, h[0], self._transmit(node, dst, size, False)), EV_MSG,
                (node, dst, h), msg)

    def _ordered(self, node: SimNode, link_id: int, t: float) -> float:
        """Arrival of a control message on the link's ordered control stream."""
        last = node.ctl_at.get(link_id, 0.0)
        if t < last:
            t = last
        node.ctl_at[link_id] = t
        return t

    def _pump(self, node: SimNode) -> None:
        execute(self, node)  # oasis/sim/execute.py: the methods below carry each action out

    # ---- the executor's network (oasis/sim/execute.py: Network) -----------------
    def actions(self, node: SimNode) -> list[sw.SwarmAction]:
        return node.swarm.actions()

    def push(self, node: SimNode, a: sw.Push) -> None:
        if node.mode and self._hostile_filter(node, a):
            return
        h = node.policy.link_of(a.peer)
        if h is None:
            return
        if node.up_busy > a.deadline:
            # the transport resets a chunk stream still unsent at its deadline
            # (oasis/node/link.py): an uplink whose queue would hold this copy past it
            # sends none of it (a relay offering more than its link carries)
            self.pushes_reset += 1
            # ... and its core hears of it then, not now: the node's link resets the copy
            # when its deadline comes (oasis/node/link.py)
            self.at(a.deadline, EV_DROPPED, node, (a.peer, a.deadline - self.now, len(a.chunk.payload)))
            return
        dst = self.by_key[a.peer]
        size = self.chunk_size[a.chunk.seq]
        self.oftp_bytes += size
        self.media_sent += self.payload_len
        self.at(self._transmit(node, dst, size), EV_CHUNK, (node, dst, h), a.chunk)

    def send(self, node: SimNode, a: sw.Send) -> None:
        if node.mode and self._hostile_filter(node, a):
            return
        h = node.policy.link_of(a.peer)
        if h is None:
            return
        self._send_msg(node, self.by_key[a.peer], h, a.message)

    def deliver(self, node: SimNode, a: sw.Deliver) -> None:
        if node.policy.starting:
            node.policy.set_starting(self.sid.key, False)  # started: JOINs ask no more
        rec = node.rec
        if rec is None:
            return
        c = a.chunk
        genuine = self.origin.get(c.seq)
        if genuine is None or (genuine[0] is not c and genuine[0] != c):
            self.adv.forged_delivered += 1
        ct = c.time_us / 1e6
        rec.delivered(c.seq, ct, a.at, a.source, self.payload_len, is_keyframe(c))
        self.timeline.add(a.at - T0, a.source, self.payload_len)
        if ct >= rec.joined_at:
            d = self.direct.get(node.idx)
            if d:
                self.stretch.append((a.at - ct) / d)
        if a.source != sw.SOURCE_ORIGIN:
            self.hops[len(node.swarm.paths[c.seq % self.cfg.substreams]) - 1] += 1

    def skip(self, node: SimNode, a: sw.Skip) -> None:
        if node.rec is not None:
            node.rec.skip(a.seq, a.unmade, a.count)

    def fetch_origin(self, node: SimNode, a: sw.FetchOrigin) -> None:
        if node.mode and self._hostile_filter(node, a):
            return
        self._fetch_origin(node, a.seq, a.deadline)

    def drop_peer(self, node: SimNode, a: sw.DropPeer) -> bool:
        self.dropped_peers += 1
        mode = node.mode
        policy = node.policy
        other = self.by_key.get(a.peer)
        if other is not None and not mode and policy.link_of(a.peer) is not None:
            if other.mode:
                self.drops_of_hostile[adv.NAMES[other.mode]] += 1
            else:
                self.honest_dropped_honest += 1
        if mode == adv.SILENT:
            return False  # it holds every slot it got: its own core's verdicts are ignored
        policy.on_drop_peer(a.peer, a.code, a.reason, self.now)
        return True

    def run_policy(self, node: SimNode) -> None:
        self._run_policy(node)  # the bans: CloseLink, RemovePeer

    def arm(self, node: SimNode) -> None:
        """At most one pending timer event per node."""
        t = node.swarm.get_timer()
        if t is None:
            return
        armed = node.armed
        if 0.0 <= armed <= t:
            return
        now = self.now
        node.armed = t
        if t <= now:
            # guard against a core that keeps asking for "now" without progress
            if node.spin_t == now:
                node.spins += 1
                if node.spins > 20:
                    t = now + 0.001
            else:
                node.spin_t, node.spins = now, 0
            t = max(t, now)
            node.armed = t
        self.at(t, EV_TIMER, node, t)

    def _dropped(self, node: SimNode, what: tuple[bytes, float, int]) -> None:
        """A copy ``node`` never sent is past its deadline: its core hears of it (the peer,
        the deadline's slack when the copy was queued, its bytes), as the node's link tells
        it when it resets the copy."""
        if not node.alive:
            return
        node.swarm.on_push_dropped(what[0], self.now, what[1], what[2])
        self._pump(node)

    def _timer(self, node: SimNode, t: float) -> None:
        if node.armed != t or not node.alive:
            return
        node.armed = -1.0
        swarm = node.swarm
        nt = swarm.get_timer()
        if nt is not None and nt > t:
            # The core's next deadline moved later since this event was armed (the
            # chunk it waited for came): what the node's loop does when it cancels a
            # timer and sets a new one. Nothing is due: re-arm, no handle_timer.
            node.armed = nt
            self.at(nt, EV_TIMER, node, nt)
            return
        swarm.handle_timer(self.now)
        self._pump(node)

    def _rx_wait(self, node: SimNode, work: float) -> float:
        """A message arrives now, handled on the assumption that ``node``'s CPU was free
        for its ``work`` (``_transmit``): 0.0 if it was (the CPU is busy until now), else
        how much later it is handled, behind what the CPU was busy with."""
        now = self.now
        busy = node.cpu_busy
        if busy <= now - work:
            if busy < now:
                node.cpu_busy = now
            return 0.0
        node.cpu_busy = busy + work
        return busy + work - now

    def _recv_chunk(self, pair: tuple[Any, ...], chunk: wire.ChunkMsg) -> None:
        """A chunk handled by ``dst`` (a 4-tuple ``pair``: after waiting for its CPU)."""
        src: SimNode = pair[0]
        dst: SimNode = pair[1]
        h: Link = pair[2]
        if not dst.alive:
            return
        if len(pair) == 3:
            size = self.chunk_size.get(chunk.seq, self.payload_len)
            wait = self._rx_wait(dst, CPU_RX_MSG_S + CPU_RX_BYTE_S * size + CPU_VERIFY_S)
            if wait > 0.0:
                self.at(self.now + wait, EV_CHUNK, (src, dst, h, True), chunk)
                return
        if dst.policy.on_chunk(h, src.key, chunk.stream, self.now):
            dst.swarm.on_chunk(src.key, chunk, self.now)
            self._pump(dst)

    def _recv_msg(self, pair: tuple[Any, ...], msg: wire.Message) -> None:
        """A control message handled by ``dst`` (4-tuple: after waiting for its CPU)."""
        src: SimNode = pair[0]
        dst: SimNode = pair[1]
        h: Link = pair[2]
        if not dst.alive:
            return
        if len(pair) == 3:
            wait = self._rx_wait(dst, CPU_RX_MSG_S)
            if wait > 0.0:
                self.at(self.now + wait, EV_MSG, (src, dst, h, True), msg)
                return
        route = dst.policy.on_message(h, src.key, msg, self.now)
        if route == self.sid.key:
            if dst.mode == adv.SINK and isinstance(msg, wire.Request) and self._sink_request(src, dst, h, msg):
                return
            dst.swarm.on_message(src.key, msg, self.now)
            self._pump(dst)
        elif route is None:
            self._run_policy(dst)  # JOIN answered, or a refusal, a score, a ban

    # ---- HTTP origin / CDN edge ------------------------------------------------
    def _edge_delay(self, net: PeerNet) -> float:
        """When a chunk is at the viewer's CDN edge, after it reached the origin."""
        return self.rtt[self.source.net.country][net.country] / 2000

    def _direct_latency(self, net: PeerNet) -> float:
        """Latency of the direct path broadcaster -> origin -> edge -> viewer
        (what a viewer gets from the CDN with a request already waiting)."""
        bn = self.source.net
        size = self.payload_len + 200
        pkts = -(-size // MTU_PAYLOAD)
        w = size + pkts * PACKET_OVERHEAD
        return (w / bn.up_bps + bn.lastmile_s + self._edge_delay(net)
                + self.edge_rtt_ms / 2000 + net.lastmile_s + w / net.down_bps + ORIGIN_RX_CPU_S)

    def _latest_keyframe(self, at: float) -> int:
        """The newest keyframe the origin held at ``at`` (-1: none yet)."""
        g = self.s.gop_chunks
        k = len(self.produced_t) - 1
        k -= k % g
        while k >= 0 and self.origin[k][1] > at:
            k -= g
        return k

    def _fetch_origin(self, node: SimNode, seq: int, deadline: float, start: float = -1.0) -> None:
        self.origin_requests += 1
        net = node.net
        edge_half = self.edge_rtt_ms / 2000
        now = self.now if start < 0 else start
        req_at = now + net.lastmile_s + edge_half  # GET reaches the edge
        if seq == sw.ORIGIN_LATEST:
            # latest.json (no-cache: from the origin through the edge), then the keyframe. The
            # node read it at its join (``LiveStream.prefetch_latest``): while that answer is
            # fresh the keyframe it named is asked for at once (or when the answer comes)
            pre_at = node.born + net.lastmile_s + edge_half  # the join's read reached the edge
            pre_back = pre_at + edge_half + net.lastmile_s
            if (start < 0 and not node.pre_used and now - pre_back <= sw.LATEST_FRESH
                    and node.swarm.config.origin_start_after < sw.LATEST_FRESH):
                node.pre_used = True
                kf = self._latest_keyframe(pre_at - self._edge_delay(net))
                if kf >= 0 and max(now, pre_back) < deadline:
                    self._fetch_origin(node, kf, deadline, max(now, pre_back))
                    return
            back = req_at + edge_half + net.lastmile_s
            kf = self._latest_keyframe(req_at - self._edge_delay(net))
            if kf < 0 or back >= deadline:
                self.at(min(back, deadline), EV_ORIGIN, node, (seq, None, 0.0, -1.0))
            else:
                self._fetch_origin(node, kf, deadline, back)
            return
        # (``origin_adapt``: the real node lets a fetch run past its deadline, timed)
        if node.swarm.config.origin_adapt:
            deadline += sw.ORIGIN_OVERTIME
        entry = self.origin.get(seq)
        produced = len(self.produced_t)
        if entry is not None:
            at_edge = entry[1] + self._edge_delay(net)
            size = self.chunk_size[seq]
        elif (self.edge_hold_s > 0 and produced and produced <= seq < self.n_chunks
              and seq - (produced - 1) <= CDN_EDGE_HOLD_AHEAD):
            # not made yet, but soon (a probe, a relay's cover): the edge holds it too. When
            # it reaches the origin, as the broadcaster makes a chunk every chunk_s
            bn = self.source.net
            size = self.chunk_size[produced - 1]
            at_edge = (T0 + seq * self.chunk_s + size / bn.up_bps + bn.lastmile_s
                       + self._edge_delay(net))
        else:
            at_edge, size = INF, 0
        if at_edge - req_at > self.edge_hold_s:
            # not at the edge within its hold: 404, at once for a chunk not made yet (or too
            # far ahead), else when the hold ends
            self.origin_404 += 1
            back = req_at + edge_half + net.lastmile_s + (0.0 if at_edge == INF else self.edge_hold_s)
            self.at(min(back, deadline), EV_ORIGIN, node, (seq, None, 0.0, -1.0))
            return
        held = 0.0
        if at_edge > req_at:
            self.edge_holds += 1
            held = at_edge - req_at  # held there until the feed brings it (oasis.node.edge),
            req_at = at_edge  # which says so (``Oasis-Held-Ms``)
        # (a chunk not made yet is looked up when the answer arrives: ``_origin_done``)
        chunk = entry[0] if entry is not None else None
        size += 300  # HTTP response headers
        pkts = -(-size // MTU_PAYLOAD)
        w = size + pkts * PACKET_OVERHEAD
        t = req_at + edge_half + net.lastmile_s
        if net.loss and self.rng.random() < 1.0 - (1.0 - net.loss) ** pkts:
            t += 2 * (edge_half + net.lastmile_s)
        t += w / net.down_bps + ORIGIN_RX_CPU_S
        if t > deadline:  # aiohttp timeout = deadline - now
            self.origin_timeouts += 1
            self.at(deadline, EV_ORIGIN, node, (seq, None, 0.0, -1.0))
        else:
            # (a start's keyframe, asked after latest.json: timed, as the node times it)
            self.at(t, EV_ORIGIN, node, (seq, chunk, held, t - now if start >= 0 else -1.0))

    def _origin_done(self, node: SimNode, res: tuple[int, wire.ChunkMsg | None, float, float]) -> None:
        if not node.alive:
            return
        chunk = res[1]
        if chunk is None and res[2] > 0.0:  # held for a chunk made since: the edge has it
            entry = self.origin.get(res[0])
            chunk = entry[0] if entry is not None else None
        node.swarm.on_origin(res[0], chunk, self.now, res[2], res[3])
        self._pump(node)

    # ---- adversaries (oasis/sim/adversary.py) -----------------------------------
    def _hostile_filter(self, node: SimNode, a: Any) -> bool:
        """An adversary's core emitted ``a``: True if the adversary consumed it (dropped
        or replaced it with its own crafted message)."""
        mode = node.mode
        if isinstance(a, (sw.Deliver, sw.Skip, sw.DropPeer)):
            return False
        if mode == adv.SILENT:
            if not isinstance(a, sw.FetchOrigin):
                self.adv.sent_dropped_silent += 1
            return True
        if mode == adv.SYBIL:
            if self.now >= self.defect_at and isinstance(a, sw.Push):
                self.adv.pushes_withheld += 1
                return True
            return False
        if mode == adv.WITHHOLD:
            if isinstance(a, sw.Push):
                self.adv.pushes_withheld += 1
                return True
            if isinstance(a, sw.Send):
                msg = a.message
                if isinstance(msg, wire.Missing):
                    return True  # hold every request forever
                k = self.cfg.substreams
                if isinstance(msg, wire.Status):
                    self._send_crafted(node, a.peer, [adv.attractive(msg, self.source.swarm.tag,
                                                                     node.swarm.tag, k)])
                    return True
                if isinstance(msg, wire.SubscribeAck) and msg.rejected:
                    self._send_crafted(node, a.peer, [wire.SubscribeAck(
                        stream=msg.stream, accepted=msg.accepted | msg.rejected, rejected=0)])
                    return True
            return False
        if mode == adv.SINK:
            if isinstance(a, sw.Send):
                msg = a.message
                if isinstance(msg, wire.Status):
                    self._send_crafted(node, a.peer, [adv.sink_claim(msg, self._sink_top())])
                    return True
                if isinstance(msg, wire.Missing):
                    return True  # (its core holds no REQUEST of a player: a start probe's)
            return False
        if mode == adv.LIAR and isinstance(a, sw.Send) and isinstance(a.message, wire.Status):
            self.adv.lies_sent += 1
            top = len(self.produced_t) - 1 + int(adv.SUBTLE_AHEAD_S / self.chunk_s)
            top -= top % self.s.gop_chunks
            self._send_crafted(node, a.peer, [adv.lie(a.message, self.sid.key, self.source.swarm.tag,
                                                      node.swarm.tag, top, self.cfg.substreams,
                                                      huge=node.idx % 2 == 0)])
            return True
        return False

    def _sink_top(self) -> int:
        """A repair sink's claimed latest: the live edge, ``SINK_AHEAD_S`` ahead."""
        return len(self.produced_t) - 1 + int(adv.SINK_AHEAD_S / self.chunk_s)

    def _sink_request(self, src: SimNode, dst: SimNode, h: Any, msg: wire.Request) -> bool:
        """A repair sink (``dst``) took a REQUEST: True if it keeps it (never answered, or
        answered after the asker's deadline); a newcomer's (its start probe) goes to its core."""
        st = dst.swarm.peers.get(src.key)
        if st is None or src.swarm.start_seq is None:
            return False
        late = self.s.hostile_sink_late
        chunk = self.origin.get(msg.seq)
        if late < 0 or chunk is None or not src.alive:
            self.adv.requests_sunk += 1
            return True
        c = chunk[0]
        t = src.swarm.deadline_of(msg.seq) + late
        if t < self.now:
            t = self.now
        self.adv.answers_late += 1
        size = self.chunk_size.get(c.seq, self.payload_len)
        self.oftp_bytes += size
        self.at(max(t, self._transmit(dst, src, size)), EV_CHUNK, (dst, src, h), c)
        return True

    def _send_crafted(self, node: SimNode, peer: bytes, msgs: list[wire.Message]) -> None:
        h = node.policy.link_of(peer)
        if h is None or not msgs:
            return
        dst = self.by_key[peer]
        size = sum(len(wire.encode(m)) + CONTROL_FRAME_PREFIX for m in msgs)
        self.oftp_bytes += size
        self.control_bytes += size
        at = self._ordered(node, h[0], self._transmit(node, dst, size))
        if len(msgs) == 1:
            self.at(at, EV_MSG, (node, dst, h), msgs[0])
        else:
            self.at(at, EV_BURST, (node, dst, h), msgs)

    def _forged(self, seq: int) -> wire.ChunkMsg:
        f = self.forged_cache.get(seq)
        if f is None:
            if seq in self.origin:
                f = adv.forge(self.origin[seq][0])
            else:
                t = self.produced_t[-1] + (seq - len(self.produced_t) + 1) * self.chunk_s \
                    if self.produced_t else self.now
                f = adv.forge_ahead(self.sid.key, seq, int(round(t * 1e6)),
                                    int(seq % self.s.gop_chunks == 0), self.payload)
            self.forged_cache[seq] = f
            if len(self.forged_cache) > 4 * self.cfg.window_chunks:
                del self.forged_cache[next(iter(self.forged_cache))]
        return f

    def _hostile_tick(self, node: SimNode) -> None:
        """An injector's tick: crafted chunks or requests to every neighbour."""
        if not node.alive:
            return
        self.at(self.now + 1.0 / self.s.hostile_rate, EV_HOSTILE, node)
        n = len(self.produced_t)
        if n == 0:
            return
        latest = n - 1
        mode = node.mode
        skey = self.sid.key
        k = self.cfg.substreams
        for peer, p in list(node.policy.peers.items()):
            if not p.joined:
                continue  # not a neighbour yet: the JOIN exchange is under way
            h = p.link
            dst = self.by_key[peer]
            if mode == adv.SINK:  # its claim, refreshed: still up to the live edge
                self._send_crafted(node, dst.key, [adv.sink_claim(node.swarm.status(), self._sink_top())])
                continue
            if mode == adv.FLOOD:
                msgs: list[wire.Message] = [wire.Request(stream=skey, seq=max(0, latest - 1 - i))
                                            for i in range(adv.FLOOD_BURST - 2)]
                msgs.append(wire.Request(stream=skey, seq=latest + 10_000))
                msgs.append(wire.Request(stream=skey, seq=max(0, latest - 5 * self.cfg.window_chunks)))
                self.adv.requests_sent += len(msgs)
                self._send_crafted(node, dst.key, msgs)
                continue
            if mode == adv.FORGE:
                # a seq the victim holds (just behind the edge) and one ahead of it
                seqs = [max(0, latest - 2 - self.rng.randrange(k)), latest + 1 + self.rng.randrange(k)]
                self.adv.forged_sent += len(seqs)
                chunks = [self._forged(q) for q in seqs]
            else:  # REPLAY: beyond the window, inside it, the latest again
                seqs = [latest - 2 * self.cfg.window_chunks, latest - self.cfg.window_chunks // 2, latest]
                chunks = [self.origin[q][0] for q in seqs if q >= 0]
                self.adv.replayed_sent += len(chunks)
            for c in chunks:
                size = self.chunk_size.get(c.seq, self.chunk_size[0])
                self.oftp_bytes += size
                self.at(self._transmit(node, dst, size), EV_CHUNK, (node, dst, h), c)

    def _recv_burst(self, pair: tuple[SimNode, SimNode, Link], msgs: list[wire.Message]) -> None:
        src, dst, h = pair
        if not dst.alive:
            return
        policy = dst.policy
        skey = self.sid.key
        now = self.now
        for m in msgs:
            if policy.on_message(h, src.key, m, now) == skey:
                dst.swarm.on_message(src.key, m, now)
        self._run_policy(dst)
        self._pump(dst)

    def _hostile_result(self) -> dict[str, Any]:
        honest = [n for n in self.every if not n.mode and not n.is_source]
        totals: Counter[str] = Counter()
        for n in honest:
            for k, v in dataclasses.asdict(n.swarm.counters).items():
                if isinstance(v, int):
                    totals[k] += v
        modes = Counter(adv.NAMES[m] for m in self.hostile_of.values())
        return {
            "share": self.s.hostile,
            "peers": sum(modes.values()),
            "modes": dict(sorted(modes.items())),
            "sent": dataclasses.asdict(self.adv),
            "forged_delivered": self.adv.forged_delivered,
            "dropped_by_honest": dict(sorted(self.drops_of_hostile.items())),
            "honest_dropped_honest": self.honest_dropped_honest,
            #: bans by the honest nodes' policies (a swarm's DropPeer, a score past ban_score)
            "banned_by_honest": dict(sorted(self.bans_of_hostile.items())),
            "honest_banned_honest": self.honest_banned_honest,
            #: links honest policies closed for doing nothing (no JOIN, silence)
            "idle_closed_by_honest": dict(sorted(self.idle_closed_hostile.items())),
            "honest_counters": dict(sorted(totals.items())),
        }

    def _cancel_result(self) -> dict[str, int]:
        """CANCELs (docs/oftp.md §9.4) the honest nodes sent, and what those they reached did
        with them: a held request or a queued answer dropped, or nothing left to drop."""
        out = {"sent": 0, "held": 0, "queued": 0, "late": 0}
        for n in self.every:
            if n.mode:
                continue
            c = n.swarm.counters
            out["sent"] += c.cancels_sent
            out["held"] += c.cancels_held
            out["queued"] += c.cancels_queued
            out["late"] += c.cancels_late
        return out

    def _policy_result(self) -> dict[str, int]:
        """The honest viewers' policy counters, summed (oasis.core.peer.PeerCounters)."""
        totals: Counter[str] = Counter()
        for n in self.every:
            if n.mode or n.is_source:
                continue
            for k, v in dataclasses.asdict(n.policy.counters).items():
                totals[k] += v
        keep = ("links_accepted", "links_refused", "links_refused_banned", "links_duplicate",
                "links_idle_closed", "messages_over_budget", "messages_unjoined", "peers_banned",
                "peers_dropped_bad_chunks", "peers_dropped_swarm", "peers_dropped_score",
                "announces", "dial_attempts", "dial_failures", "joins", "links_replaced_nearer")
        return {k: totals[k] for k in keep}

    def _nat_result(self) -> dict[str, Any]:
        """Honest viewers by NAT kind: how many, the share that relayed at least one
        second of the stream to others, and the reachability counters summed."""
        kinds = {NAT_PUBLIC: "public", NAT_EIM: "eim", NAT_SYMMETRIC: "symmetric"}
        count: Counter[str] = Counter()
        relayed: Counter[str] = Counter()
        totals: Counter[str] = Counter()
        learnt: Counter[str] = Counter()
        second = self.s.bitrate_kbps * 1000 / 8
        for n in self.every:
            if n.mode or n.is_source:
                continue
            kind = kinds.get(n.net.nat, "public")
            count[kind] += 1
            if n.swarm.upload.counters.released_bytes >= second:
                relayed[kind] += 1
            learnt[f"{kind}_as_{n.policy.mapping.kind.name.lower()}"] += 1
            for k, v in dataclasses.asdict(n.policy.nat.counters).items():
                totals[k] += v
        return {"viewers": dict(count),
                "relaying_share": {k: round(relayed[k] / count[k], 4) for k in count},
                "mapping_learnt": dict(learnt), "counters": dict(totals)}

    # ---- results -------------------------------------------------------------
    def _uplink_result(self) -> dict[str, Any]:
        """The honest viewers still watching at the end, by whether their uplink's
        ``upload_share`` carries the probe's start (4 x the bitrate): how many, and their
        mean line, cap at the end and upload sent over their lives, in multiples of the
        bitrate (what the probe found against what it could have)."""
        s = self.s
        rate = s.bitrate_kbps * 1000 / 8
        start = s.upload_max_x
        groups: dict[str, list[tuple[float, float, float]]] = {"weak": [], "strong": []}
        for n in self.nodes.values():
            if n.is_source or n.mode or not n.alive or self.now - n.born < 1.0:
                continue
            line = n.net.up_bps * s.upload_share / rate
            cap = n.swarm.upload_kbps * 1000 / 8 / rate if n.swarm.upload_kbps else 0.0
            sent = n.up_bytes / (self.now - n.born) / rate
            groups["weak" if line < start else "strong"].append((line, cap, sent))
        return {k: {"n": len(v), "line_x": round(sum(e[0] for e in v) / len(v), 3),
                    "cap_x": round(sum(e[1] for e in v) / len(v), 3),
                    "sent_x": round(sum(e[2] for e in v) / len(v), 3)} if v else {"n": 0}
                for k, v in groups.items()}

    def _result(self, events: int, wall_s: float, end: float) -> dict[str, Any]:
        s = self.s
        produced = np.array(self.produced_t)
        now = self.now - 1.0  # as the demo: the last chunks are still in flight
        summ = summarize(self.records, produced, now, self.cfg.playout_delay)
        st: Any = np.sort(np.frombuffer(self.stretch, dtype=np.float32).astype(np.float64))
        from oasis.core.metrics import nearest_rank
        errors = self.gone_bad_chunks + sum(n.swarm.counters.bad_chunks for n in self.nodes.values()
                                            if not n.mode)
        out = {
            "viewers": len(self.viewers),
            "duration_s": s.duration_s,
            "bitrate_kbps": s.bitrate_kbps,
            "chunk_ms": s.chunk_ms,
            "chunks_produced": len(self.produced_t),
            "latency_ms": summ["latency_ms"],
            "continuity": summ["continuity"],
            "offload_ratio": summ["offload_ratio"],
            "startup_ms": summ["startup_ms"],
            "bytes": summ["bytes"],
            "overhead_ratio": round((self.oftp_bytes - self.media_sent) / self.media_sent, 5)
            if self.media_sent else 0.0,
            "wire_overhead_ratio": round((self.wire_bytes - self.media_sent) / self.media_sent, 5)
            if self.media_sent else 0.0,
            "errors": errors,
            # chunk bytes a viewer received again (it held the chunk already) per chunk byte
            # sent peer to peer: a push behind a repair or the origin, an answer in flight
            "duplicate_ratio": round((self.gone_duplicate_bytes
                                      + sum(n.swarm.counters.duplicate_bytes for n in self.nodes.values()
                                            if not n.mode)) / self.media_sent, 5) if self.media_sent else 0.0,
            "latency_stretch": {"p50": round(nearest_rank(st, 50), 3),
                                "p95": round(nearest_rank(st, 95), 3)},
            "viewers_started": summ["viewers_started"],
            "joins": self.joins,
            "leaves": self.leaves,
            "origin_requests": self.origin_requests,
            #: fetches the CDN edge answered 404 (not there within its hold) and held
            "origin_404": self.origin_404, "edge_holds": self.edge_holds,
            "pushes_reset": self.pushes_reset,
            "uplink": self._uplink_result(),
            "events": events,
            "policy": self._policy_result(),
            "cancels": self._cancel_result(),
            **({"nat": self._nat_result()} if s.has_nats() else {}),
            "wall_s": round(wall_s, 2),
        }
        if self.with_session:
            out["session"] = {"handshakes": self.handshakes_done,
                              "handshakes_failed": self.handshakes_failed}
        if self.hostile_of:
            # every figure above is the honest viewers' (adversaries keep no record)
            out["honest_viewers"] = len(self.viewers) - len(self.hostile_of)
            out["hostile"] = self._hostile_result()
        return out

    def plot_data(self) -> dict[str, Any]:
        produced = np.array(self.produced_t)
        lat = np.concatenate([np.frombuffer(r.lat, dtype=np.float32) for r in self.records]) \
            if self.records else np.zeros(0)
        util: dict[str, list[float]] = {}
        for n in self.every:
            if n.is_source:
                continue
            alive = min(n.died, self.now) - n.born
            if alive <= 1:
                continue
            util.setdefault(n.net.access, []).append(n.up_bytes / (n.net.up_bps * alive))
        tl = self.timeline
        off = [(i, float(tl.p2p[i] / tl.total[i])) for i in range(len(tl.total)) if tl.total[i] > 0]
        cont = continuity_over_time(self.records, produced, self.now - 1.0, self.cfg.playout_delay, T0)
        return {"latency_s": lat, "offload_t": off, "continuity_t": cont, "upload_util": util,
                "hops": dict(self.hops)}



def run_oasis(s: Scenario, world: World, bnet: PeerNet, viewers: list[Viewer],
              seed: int, progress: Any = None,
              progress_every_s: float = 10.0) -> tuple[dict[str, Any], OasisSim]:
    sim = OasisSim(s, world, bnet, viewers, seed)
    sim.progress = progress
    sim.progress_every_s = progress_every_s
    return sim.run(), sim


def stderr_progress(label: str = "oasis") -> Any:
    """A progress callback printing one line per report to stderr (wall, CPU, RSS)."""
    import resource
    import sys
    t0 = time.perf_counter()

    def report(sim_s: float, duration_s: float, events: int, peers: int, offload: float | None = None) -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        off = f"{offload:5.3f}" if offload is not None else "    -"
        print(f"[{label}] sim {sim_s:6.1f}/{duration_s:.0f} s  peers {peers:>7}  offload {off}  "
              f"events {events:>11,}  wall {time.perf_counter() - t0:7.1f} s  "
              f"CPU {ru.ru_utime + ru.ru_stime:7.1f} s  max RSS {ru.ru_maxrss / 1024:7.0f} MiB",
              file=sys.stderr, flush=True)
    return report
