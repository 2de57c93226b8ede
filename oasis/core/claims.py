"""What a peer's claims are worth: STATUS is a hint, the start a verified keyframe.

Theory of operation
-------------------
A STATUS says which seqs its sender holds (``latest``, ``have``, ``keyframe``);
nothing binds those integers to the stream. A newcomer used to take its start
point, and its chunk clock, from the first STATUS it heard: a peer claiming
``latest = 2^63-2`` (or a keyframe 50 chunks ahead) made newcomers wait for
chunks that did not exist, fetch them from the origin, and repeat the integers
to others. So:

* A claim is a **hint**. Before the start, a STATUS with chunks lets the node
  subscribe and *probe*: REQUEST the keyframe the sender claims, from it (at
  most ``max_probes`` in flight). The answer is verified like any chunk; the
  first verified keyframe whose signed time is fresh is the start (the swarm's
  ``_begin``), whoever sent it.
* The chunk clock (:class:`~oasis.core.chunklog.ChunkLog`) learns only from
  verified chunks, so once a node holds one it can bound every claim: the
  highest seq that can exist by ``now`` is ``expected_latest(now)`` plus
  ``claim_slack`` seconds of chunks. A STATUS above it is **implausible**.
* A newcomer's JOIN asks for a **start** (``Join.start``): a neighbour holding a
  fresh keyframe sends its latest one at once, paid from the newcomer's pull
  budget like the REQUEST it replaces. That saves the probe's round trip; the
  newcomer does not probe that neighbour for ``start_wait`` (at least two RTTs)
  meanwhile, and probes it as usual if nothing came (no strike: it claimed
  nothing).
* A claim disproved is a **lie** against the peer: an implausible STATUS, a
  probe answered MISSING, a probe unanswered after ``probe_timeout``. At
  ``lie_limit`` the peer is dropped (``DropPeer``, TOO_MANY_ERRORS).
"""

from __future__ import annotations

from . import wire
from .chunklog import ChunkLog
from .swarmdefs import INF, DropPeer, PeerState, Send, SwarmAction, SwarmConfig, SwarmCounters
from .wire import ErrorCode

#: the probe entry of a peer our JOIN asked for a start: any fresh keyframe of it will do
START_ANY = -1


def claims_chunks(msg: wire.Status) -> bool:
    """Does this STATUS say its sender holds chunks (``latest`` 0 with no ``have``: none)?"""
    return msg.latest > 0 or msg.have != 0


class ClaimCheck:
    """Start probes in flight, and the plausibility of claims (see the module docstring)."""

    def __init__(self, skey: bytes, config: SwarmConfig, *, log: ChunkLog,
                 peers: dict[bytes, PeerState], counters: SwarmCounters,
                 actions: list[SwarmAction]) -> None:
        self.skey = skey
        self.config = config
        self.log = log
        self.peers = peers  #: the swarm's peer table (shared)
        self.counters = counters
        self.actions = actions  #: the swarm's action list (shared)
        #: start probes in flight: peer -> (claimed seq asked for, when it is overdue)
        self.probes: dict[bytes, tuple[int, float]] = {}
        self.probe_again: dict[bytes, float] = {}  #: peer -> when it may be probed again
        #: verified chunks held from before the start: seq -> (source, peer), told at start
        self.early: dict[int, tuple[str, bytes | None]] = {}

    def forget(self, key: bytes) -> None:
        self.probes.pop(key, None)
        self.probe_again.pop(key, None)

    def next_due(self, t: float) -> float:
        """The earliest probe timeout, if before ``t``."""
        for _seq, due in self.probes.values():  # at most max_probes
            if due < t:
                t = due
        return t

    def plausible(self, msg: wire.Status, now: float) -> bool:
        """False if ``msg`` claims a seq above what the signed chunk clock allows."""
        if self.log.anchor_seq < 0:
            return True  # no verified chunk yet: nothing to judge by (a probe will tell)
        return max(msg.latest, msg.keyframe) <= self.plausible_top(now)

    def plausible_top(self, now: float) -> int:
        """Highest seq that can exist by ``now``, from verified chunk times, plus slack.

        Time since the newest verified chunk, and the slack of ``claim_slack`` seconds,
        count at the faster of the learnt and the nominal pace: a broadcaster starved
        for CPU makes chunks slower than nominal, its viewers' clocks (which start from
        the nominal pace) run ahead of its own, and their honest requests and claims
        must not read as lies or floods; and a node that learnt such a slow pace and
        then heard no chunk for a while (its parent lost, its process starved) must not
        take the stream, which went on at its pace, for a lie (in the 30-node testbed
        on a saturated machine honest viewers dropped each other so). The broadcaster
        cuts on a ``chunk_ms`` grid: it cannot run faster than nominal for long."""
        log = self.log
        step = log.chunk_interval
        nominal = self.config.chunk_ms / 1000
        if nominal < step:
            step = nominal
        return log.expected_latest(now, step) + int(self.config.claim_slack / step) + 2

    def lie(self, st: PeerState, reason: str) -> None:
        st.lies += 1
        if st.lies == self.config.lie_limit:
            self.counters.liars_dropped += 1
            self.actions.append(DropPeer(st.key, ErrorCode.TOO_MANY_ERRORS,
                                          f"{st.lies} false claims; last: {reason}"))

    def probe(self, st: PeerState, now: float) -> None:
        """Before the start: REQUEST the keyframe ``st`` claims (its latest if it
        claims none in the window). Its answer is verified like any chunk; the first
        fresh verified keyframe, from whoever, is the start."""
        msg = st.status
        if msg is None or st.key in self.probes or len(self.probes) >= self.config.max_probes \
                or self.probe_again.get(st.key, -INF) > now:
            return
        seq = msg.keyframe if msg.latest - msg.keyframe < self.config.window_chunks else msg.latest
        if seq in self.log:
            return
        self.probes[st.key] = (seq, now + self.config.probe_timeout)
        self.counters.probes_sent += 1
        self.actions.append(Send(st.key, wire.Request(stream=self.skey, seq=seq)))

    def expect_start(self, st: PeerState, now: float) -> None:
        """Our JOIN asked ``st`` for a start (§9.1): its latest keyframe is on its way if it
        holds a fresh one, so do not probe it for the same chunk meanwhile. Not a claim:
        if nothing comes within ``start_wait`` (it had none, or its budget for us was
        spent), it is probed as usual, with no strike."""
        if st.key in self.probes or len(self.probes) >= self.config.max_probes:
            return
        wait = 2 * st.rtt if st.rtt > 0 else 0.0
        if wait < self.config.start_wait:
            wait = self.config.start_wait
        self.probes[st.key] = (START_ANY, now + wait)

    def probe_more(self, now: float) -> None:
        """Probe other peers (a probe failed): up to ``max_probes`` in flight."""
        for st in self.peers.values():
            if len(self.probes) >= self.config.max_probes:
                break
            self.probe(st, now)

    def _failed(self, st: PeerState, seq: int, now: float, reason: str) -> None:
        del self.probes[st.key]
        self.probe_again[st.key] = now + self.config.probe_timeout / 2
        self.counters.claims_broken += 1
        self.lie(st, reason)
        self.probe_more(now)

    def on_missing(self, st: PeerState, seq: int, now: float) -> None:
        probe = self.probes.get(st.key)
        if probe is not None and probe[0] == seq:
            self._failed(st, seq, now, f"MISSING for its claimed keyframe {seq}")

    def check(self, now: float) -> None:
        for key, (seq, due) in list(self.probes.items()):
            st = self.peers.get(key)
            if st is None:
                del self.probes[key]
            elif now >= due and seq == START_ANY:
                del self.probes[key]  # no start came: probe it as usual if it claims chunks
                if st.status is not None and claims_chunks(st.status):
                    self.probe(st, now)
            elif now >= due:
                self._failed(st, seq, now, f"claimed keyframe {seq} never sent")
