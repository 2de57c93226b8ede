"""Chunks we lack: when to ask whom, when to fall back to the origin, when to give up.

Theory of operation
-------------------
The chunk log (:class:`~oasis.core.chunklog.ChunkLog`) estimates ``time(seq)``
from verified chunks, so a node knows which seqs must exist by now even if it
never saw them. Each such seq it lacks is a *want* with three times:

* ``request_at``: ``repair_delay(j)`` after its estimated completion (at once for
  a backfill), it is REQUESTed from one peer not yet asked, among those whose
  STATUS says they hold it (score 0) or that are fed on its substream at least
  two hops closer to the broadcaster than we are (score: their path length; a
  peer no closer than our parent would get it no sooner, and its held request
  would only send a duplicate); +2 for our own parent, +3 per withholding strike
  (:mod:`.tree`), + U(0, 1). On a *late* substream (our parent's push usually
  comes after a repair round would, :mod:`.delay`) only peers that hold it and
  have upload to spare (free push slots in their STATUS) are asked: a held
  request would fetch a chunk already on its way. A STATUS is up to 2 s old,
  so with ``repair_by_lag`` a peer with free slots whose advertised lag says it
  will have the chunk and answer before the origin fallback and our parent's
  push counts as a holder (:meth:`RepairPicker._arrival_via`). If no peer can be
  asked and we have children on that substream whose copy from us would come
  after their own fallback (``relay_origin_early``), the origin is asked then,
  for them (a failure before the fixed fallback is retried, no stall). With
  ``relay_cover`` (on) a relay with ``relay_early_children`` children on the substream
  also asks the origin, at the last moment its copy reaches them before their own
  fallback (``origin_at`` - ``relay_cover_hop`` - the learnt fetch time), for a chunk
  still missing then, late substream or not (:meth:`want`). Repeated to
  another peer every ``max(0.05, repair_after)``; MISSING triggers the next try
  at once; when every peer has been asked, the list is cleared.
* ``origin_at`` = deadline - ``origin_margin``: ``FetchOrigin`` (HTTP), retried
  every ``origin_retry`` on failure. On a *late* substream (below) with
  ``origin_wait``, later: at the parent's usual push (smoothed delay + 2
  deviations + ``REPAIR_MARGIN``), but never after ``deadline - fetch``, where
  ``fetch`` is the learnt time of an origin fetch (smoothed over this node's
  successful fetches, + 4 deviations + ``ORIGIN_PAD``; no wait before
  ``ORIGIN_SAMPLES`` of them). A deep tree's push that comes just after the
  fixed fallback then still carries the chunk, and the origin is asked only
  when it would not.
  With ``origin_adapt`` the fallback is at ``deadline - max(origin_margin, f)``,
  ``f`` the smoothed fetch time + 2 deviations + ``ORIGIN_PAD`` (never before
  ``time(seq)``) once ``ORIGIN_SAMPLES`` fetches were timed, on a
  substream whose parent's push usually comes before that (smoothed delay + 2
  deviations + ``REPAIR_MARGIN``): an origin farther than the fixed margin allows is
  asked early enough to answer, for the chunks that missed their usual push.
* ``deadline`` = ``time(seq) + playout_delay`` (at least join + ``startup_grace``
  for chunks older than our join): still absent, it is given up (``Skip``).
  ``time(seq)`` of a chunk not held is extrapolated at the nominal pace; with
  ``want_bound`` (on) a newer verified chunk bounds it: made at ``t``, every chunk
  before it was made by ``t`` too, so a want due later than ``t + playout_delay``
  is due then, its repair and origin times moved up by as much (:meth:`bound_by`).

With ``repair_guard`` a peer is judged by the REQUESTs it could answer: those for chunks its
STATUS claimed (so the chunk was there to send), unanswered by the chunk's deadline. A
*repair sink* claims every chunk and answers none (or answers after the deadline): each
REQUEST to it cost a round. SINK_MISSES such misses in a row (an answer in time resets the
run) and it is not asked for SINK_BACKOFF; after that it is asked again on probation, and one
more miss distrusts it again, twice as long. The broadcaster is never judged. A sink is
never cut off for it: an honest relay whose upload is full drops our answers at their
deadline (newest first: a repair of an older chunk waits behind its pushes) and leaves the
same record, no answer at all (in the simulator ~15 % of the REQUESTs to claimed holders
missed; cutting off peers that never answered in two episodes cut off 2-6 honest peers a
run). Distrusted, it costs nothing but a REQUEST on probation now and then.

With ``repair_proven`` a claimed holder that has never given us a new verified chunk (no push,
no answer: ``PeerState.given``) scores UNPROVEN_COST more, so the holders that have are asked
first; with ``repair_pair`` a REQUEST to such a holder goes to the runner-up in the same round
too. A withholder claims the chunks it holds and answers no REQUEST: asked first, it cost a
round. (A peer earns ``given`` with one chunk: these rank, they do not judge.) The broadcaster
is exempt from both.

``wants_t`` is a lower bound of every want's next time, so the timer does not
scan the wants; it may be stale-low after a want is removed (an early wake-up),
never stale-high. No want is ever made above 2^63-1 (it could not exist, nor be
asked for on the wire), and wants come only from the signed chunk clock, never
from a peer's claim.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from . import wire
from .chunklog import ChunkLog, status_holds
from .delay import REPAIR_MARGIN, DelayEstimator, smooth
from .swarmdefs import (
    INF,
    ORIGIN_LATEST,
    U64_MAX,
    FetchOrigin,
    PeerState,
    Send,
    Skip,
    SwarmAction,
    SwarmConfig,
    SwarmCounters,
)
from .tree import HOP_GUESS, PushTree

ORIGIN_PAD = 0.02  #: added to the learnt origin fetch time (s)
RELAY_HOP = 0.05  #: what a relay assumes its push to a child takes (``relay_origin_early``; s)
#: ``repair_overdue``: a round later than this before the origin fallback could not be answered (s)
OVERDUE_ANSWER = 0.02
#: ``repair_trust``: the score a peer loses per unanswered repair REQUEST, and the most
#: misses remembered (a claimed holder scores 0-1, a closer relay its path length)
REPAIR_MISS_COST = 1.0
REPAIR_MISS_MAX = 8
#: ``repair_guard``: misses in a row (REQUESTs for chunks its STATUS claimed, unanswered at the
#: chunk's deadline) before a peer is distrusted: not asked for repairs for SINK_BACKOFF (s),
#: doubled per episode up to 8x; REQUESTs remembered per peer; distrust decisions kept (with their
#: reasons) for /stats
SINK_MISSES = 4
#: ``repair_proven``: the score a claimed holder that never gave us a chunk loses (a claimed
#: holder scores 0-1, a closer relay its path length)
UNPROVEN_COST = 1.0
SINK_BACKOFF = 10.0
SINK_ASKED_MAX = 32
DISTRUST_LOG = 16
ORIGIN_SAMPLES = 3  #: successful origin fetches before the fallback waits for late pushes
#: (``silent_parent_open``) past its claim, how long a new parent may take to push its first
#: chunk (a chunk interval at 33 ms, a fresh QUIC link's pacing, a margin; s)
SILENT_PARENT_SLACK = 0.15
ORIGIN_FLOOR = 0.05  #: the learnt fetch time is never taken below this (s)
#: ``want_bound``: a want is moved up only if due more than this after a newer chunk's
#: signed time + the playout delay (s; the clock's estimate carries rounding)
BOUND_SLACK = 0.001
#: a peer that has not refused us for this long (s) after its back-off is forgiven
REFUSAL_FORGET = 2.0
#: a want past its deadline that may not exist yet is looked at again after this (s)
UNKNOWN_RECHECK = 0.2
#: and given up after this many looks (2 s: a stream that ended, a chunk never made)
UNKNOWN_DEFERRALS = 10
#: in a stall (*a stall at the origin*, below) the first probe of the origin comes after
#: this, then at doubling intervals up to UNMADE_MAX (s)
UNMADE_BACKOFF = 0.05
UNMADE_MAX = 1.0
#: after this many probes of the next seq failed in a row, the next probe reads the origin's
#: ``latest.json`` instead (``FetchOrigin(ORIGIN_LATEST)``): a broadcaster restarted after a
#: crash numbers its chunks on by its clock, so the seqs of its downtime, the probed one
#: among them, are never made, and a viewer no peer fed asked for it until a link came back
#: (~14 s with no neighbour file; found 2026-12-07 from outside)
PROBE_LATEST_AFTER = 3


@dataclass
class Want:
    """A chunk we lack and expect: what was tried so far."""

    #: the peers asked (no repeats; a list, not a set: a node holds dozens of wants and an
    #: empty set is 216 bytes, a list 56)
    asked: list[bytes] = field(default_factory=list)
    request_at: float = 0.0  #: when the next repair request is due
    origin_at: float = 0.0
    deadline: float = 0.0
    origin_busy: bool = False
    origin_tries: int = 0
    deferred: int = 0  #: times its deadline passed while it may not have been made yet
    #: fetched early for our children (``relay_origin_early``): a failure before this
    #: (the fixed fallback's time) is a chunk not at the edge yet, retried, no stall
    early_until: float = 0.0
    #: ``repair_trust``: the peer asked last, if its STATUS claimed the chunk (None: none,
    #: or it answered)
    last: bytes | None = None


class RepairPicker:
    """The wants of one swarm and their timers (see the module docstring)."""

    def __init__(self, skey: bytes, config: SwarmConfig, *, log: ChunkLog, delay: DelayEstimator,
                 tree: PushTree, peers: dict[bytes, PeerState], counters: SwarmCounters,
                 actions: list[SwarmAction], rng: random.Random, joined_at: float) -> None:
        self.skey = skey
        self.config = config
        self.log = log
        self.delay = delay
        self.tree = tree
        self.peers = peers  #: the swarm's peer table (shared)
        self.counters = counters
        self.actions = actions  #: the swarm's action list (shared)
        self.rng = rng
        self.joined_at = joined_at
        #: our first frame (the start keyframe verified; -INF before): chunks made before it
        #: that were already due get ``start_grace`` after it (:meth:`want`)
        self.started_at = -INF
        self.wants: dict[int, Want] = {}
        self.skipped_upto = -1  #: highest seq given up
        #: the seq of the broadcaster's end marker we hold, no chunk above it (-1: none):
        #: nothing above it is wanted, so nothing above it is skipped (:meth:`end_at`)
        self.end_seq = -1
        #: the last end marker we held as our newest seq (-1: none), kept after a chunk above
        #: it resumed the stream: the start of a restarted broadcaster's downtime
        self.last_end = -1
        #: the lowest seq held above ``last_end`` but the next run's first: a chunk the
        #: broadcaster made there (a run we did not see start), so the gap is no downtime
        self.above_end = U64_MAX
        #: the seqs between that end marker and the first chunk of the broadcaster's next run
        #: (``FLAG_RUN_START``, signed; exclusive bounds, -1: none): its downtime, never made.
        #: One no neighbour shows it holds is given up as not made (:meth:`run_started`)
        self.end_gap_lo = -1
        self.end_gap_hi = -1
        self.max_wanted = -1  #: highest sequence number ever wanted
        #: lower bound of every want's next timer (request, origin, deadline)
        self.wants_t = INF
        #: origin fetches in flight: seq -> when asked (bounded by the wants window)
        self.origin_sent: dict[int, float] = {}
        #: how long a successful origin fetch takes here: smoothed, mean deviation, samples
        self.origin_srtt = 0.0
        self.origin_dev = 0.0
        self.origin_samples = 0
        #: A stall (*a stall at the origin*, below): the latest seq held when the origin
        #: first failed a chunk that may not be made yet (-1: no stall). Until a newer chunk
        #: arrives, wants above it that nobody holds or claims do not ask the origin; every
        #: ``unmade_backoff`` (doubling to UNMADE_MAX) one probe asks it for the next seq.
        self.stall_latest = -1
        self.unmade_at = 0.0
        self.unmade_backoff = UNMADE_BACKOFF
        self.probe_seq = -1  #: the probe in flight (-1: none)
        self.probe_misses = 0  #: probes of the next seq failed in a row (PROBE_LATEST_AFTER)
        self.stall_skip_low = -1  #: the lowest seq given up as not made during the stall
        #: ``repair_guard``: the latest distrust decisions: (peer, when, why), at most DISTRUST_LOG
        self.distrust_log: list[tuple[bytes, float, str]] = []

    def next_timer(self, t: float) -> float:
        """The earliest of ``t``, the wants' bound and the next seq's repair time."""
        if self.wants_t < t:
            t = self.wants_t
        if self.stall_latest >= 0 and self.probe_seq < 0 and self.unmade_at < t:
            t = self.unmade_at
        if self.log.anchor_seq >= 0:
            nxt = max(self.log.latest, self.skipped_upto, self.max_wanted) + 1
            if self.end_seq < 0 or nxt <= self.end_seq:  # (after the end: none is coming)
                nt = self.log.time_of(nxt) + self.delay.min_repair
                if nt < t:
                    t = nt
        return t

    def end_at(self, seq: int) -> None:
        """The broadcaster's end marker ``seq`` is held and nothing above it: the wants
        above it are dropped, not skipped (those chunks will not be made), and no stall
        probe asks the origin for the next seq. A verified chunk above it undoes this (a
        restarted broadcaster numbers on from its clock: :meth:`resumed`)."""
        self.end_seq = self.last_end = seq
        self.above_end = U64_MAX
        for s in [s for s in self.wants if s > seq]:
            del self.wants[s]
            self.counters.wants_ended += 1
        self.stall_latest, self.probe_seq, self.stall_skip_low = -1, -1, -1
        self.unmade_backoff = UNMADE_BACKOFF

    def resumed(self) -> None:
        """A verified chunk above the end marker: the stream runs again (its gaps are
        wanted as any new chunk's are; :meth:`next_timer` looks past the end again)."""
        self.end_seq = -1

    def held_above_end(self, seq: int, run_start: bool) -> None:
        """A verified chunk ``seq`` above the last end marker we held: the first of the
        broadcaster's next run (``run_start``) bounds its downtime (:meth:`run_started`);
        any other, below that one, shows a chunk made in between."""
        if run_start:
            self.run_started(seq)
        elif seq < self.above_end:
            self.above_end = seq

    def run_started(self, seq: int) -> None:
        """A verified chunk ``seq`` signed as the first of a broadcaster's run
        (``FLAG_RUN_START``): the seqs between the last end marker we held and it are the
        broadcaster's downtime, never made. Still wanted (one that comes is played), they
        are given up as not made unless a neighbour's STATUS shows it holds one
        (:meth:`_made_in_gap`). Only the signed first seq bounds it: the first chunk we got
        above the marker may be later (we were asleep, or lost the first ones), and the
        seqs between were made, and lost (a re-audit of session 50: 199 such counted as not
        made). Not when we hold a chunk between the marker and it (a run in between whose
        start we did not see, which crashed: its chunks were made), and once only: the
        marker is used up (the next run's start after a crash bounds nothing). Without it
        (a crash: no marker; the run's first chunk not received) the gap counts as lost."""
        if 0 <= self.last_end < seq and self.above_end > seq:
            self.end_gap_lo, self.end_gap_hi = self.last_end, seq
        if 0 <= self.last_end < seq:
            self.last_end = -1

    def _made_in_gap(self, seq: int) -> bool:
        """A neighbour's STATUS shows it holds ``seq`` (its latest, or a ``have`` bit):
        made after all (a run between the end we saw and the chunk that resumed it)."""
        for st in self.peers.values():
            status = st.status
            if status is None:
                continue
            if status.latest == seq:
                return True
            i = status.latest - 1 - seq
            if 0 <= i < 63 and status.have >> i & 1:
                return True
        return False

    def on_missing(self, st: PeerState, seq: int, refused: bool, now: float) -> None:
        """``st`` answered MISSING: ask the next peer at once. A *refused* request
        (its pull budget for us is spent, or the seq is outside its window: it struck
        us, § 9.4) makes ``st`` not asked again for ``refusal_backoff``, doubled for
        each refusal in a row up to 8x: asking again at once piles up the strikes
        of a flooder. (A held request that expired is no refusal: guessing refusals
        from the answer's timing counted those too, when the holder's deadline was
        earlier than ours, and cost simulator offload 0.850 -> 0.795.)"""
        if refused:
            if now - st.refused_until > REFUSAL_FORGET:
                st.refusal_streak = 0
            st.refused_until = now + self.config.refusal_backoff * (1 << min(st.refusal_streak, 3))
            st.refusal_streak += 1
            self.counters.refusals_heard += 1
        if st.sink_asked:
            st.sink_asked.pop(seq, None)  # (``repair_guard``) an answer, if not the chunk
        want = self.wants.get(seq)
        if want is not None:
            if want.last == st.key:
                want.last = None  # an answer (it does not hold it after all, or refused)
            want.request_at = min(want.request_at, now)
            if now < self.wants_t:
                self.wants_t = now

    def answered(self, want: Want, peer: bytes) -> None:
        """``repair_trust``: the chunk of ``want`` came from ``peer``: if it was the peer asked
        last, an answer in time (its misses halved)."""
        if want.last == peer:
            st = self.peers.get(peer)
            if st is not None:
                st.repair_misses //= 2

    def _unanswered(self, w: Want) -> None:
        """``repair_trust``: the round for ``w`` is over and the peer asked last, which
        claimed the chunk, has not answered: a miss against it."""
        st = self.peers.get(w.last) if w.last is not None else None
        w.last = None
        if st is not None:
            self.counters.repairs_unanswered += 1
            if st.repair_misses < REPAIR_MISS_MAX:
                st.repair_misses += 1

    # ---- ``repair_guard``: a peer judged by the REQUESTs it could answer ------------------
    def sink_answer(self, st: PeerState, seq: int, now: float) -> None:
        """``st`` sent ``seq``: if we asked it for it (a chunk it claimed), an answer; in time,
        its run of misses ends, after the deadline it is a miss."""
        d = st.sink_asked.pop(seq, None)
        if d is None:
            return
        if now <= d:
            st.sink_misses = 0
            st.sink_answers += 1
        else:
            st.sink_late += 1
            self._sink_missed(st, now, 1, f"answered seq {seq} {now - d:.3f} s after its deadline")

    def distrusted(self, st: PeerState, now: float) -> bool:
        """Judge ``st``'s REQUESTs whose deadline passed unanswered; is it distrusted now?"""
        if now >= st.sink_due:
            asked = st.sink_asked
            missed = [s for s, d in asked.items() if d < now]
            for s in missed:
                del asked[s]
            lo = INF
            for d in asked.values():
                if d < lo:
                    lo = d
            st.sink_due = lo
            if missed:
                self._sink_missed(st, now, len(missed), f"seq {missed[-1]} unanswered at its deadline")
        return st.distrusted_until > now

    def sink_left(self, st: PeerState, now: float) -> None:
        """``st`` left with REQUESTs of ours for chunks it claimed unanswered: misses in the
        record it gets back if it joins again (no verdict now: it is gone)."""
        n = len(st.sink_asked)
        st.sink_asked.clear()
        st.sink_due = INF
        st.sink_misses += n
        st.sink_missed += n
        self.counters.repair_misses_judged += n

    def _sink_missed(self, st: PeerState, now: float, n: int, last: str) -> None:
        st.sink_misses += n
        st.sink_missed += n
        self.counters.repair_misses_judged += n
        if st.sink_misses < SINK_MISSES or st.distrusted_until > now:
            return
        back = SINK_BACKOFF * (1 << min(st.distrusts, 3))
        st.distrusted_until = now + back
        st.distrusts += 1
        st.sink_misses = SINK_MISSES - 1  # on probation afterwards: one more miss
        self.counters.repair_sinks_distrusted += 1
        self._distrust_note(st, now, f"not asked for repairs for {back:g} s: {st.sink_missed} "
                                     f"misses, {st.sink_answers} answers in time; last: {last}")

    def _distrust_note(self, st: PeerState, now: float, why: str) -> None:
        log = self.distrust_log
        if len(log) >= DISTRUST_LOG:
            del log[0]
        log.append((st.key, now, why))

    def origin_done(self, seq: int, ok: bool, now: float, held: float = 0.0,
                    took: float = -1.0) -> None:
        """A FetchOrigin finished; on failure retry after ``origin_retry``. A success
        is a sample of the fetch time, less ``held``: the time a CDN edge held the request
        until its feed brought the chunk (an early request waits there; counted, the learnt
        time grew, the fallback asked earlier still and waited longer).

        ``took`` (>= 0): the adapter timed this fetch itself -- the start's keyframe, asked
        after ``latest.json`` for ``FetchOrigin(ORIGIN_LATEST)`` -- and, as the first sample,
        it stands for ``ORIGIN_SAMPLES``: a viewer that starts from the origin takes its
        first seconds from it, and a fallback asked at the fixed margin from a far origin
        arrives after the deadline (most of a 30-node testbed's misses in a viewer's first
        seconds; docs/benchmarks.md, session 51)."""
        sent = self.origin_sent.pop(seq, None)
        if sent is None and ok and took >= 0.0 and self.origin_samples == 0:
            sample = took - held if 0.0 < held < took else took
            self.origin_srtt, self.origin_dev = smooth(0.0, 0.0, sample, True)
            self.origin_samples = ORIGIN_SAMPLES
            self.counters.origin_start_primed += 1
        if seq == self.probe_seq:
            if seq >= 0:  # (ORIGIN_LATEST, -1, is no seq probed)
                self.probe_misses = 0 if ok else self.probe_misses + 1
            self.probe_seq = -1
            if not ok and self.stall_latest >= 0:
                self.unmade_backoff = min(2 * self.unmade_backoff, UNMADE_MAX)
                self.unmade_at = now + self.unmade_backoff
        if ok and sent is not None and now >= sent:
            took = now - sent
            if 0.0 < held < took:
                took -= held
            # (a hold longer than our whole fetch was not ours: a shared cache in front of the
            # edge replayed an earlier answer's Oasis-Held-Ms, and a hit 100 ms away was
            # learnt as a fetch of 0 s; found 2026-12-06 from outside)
            self.origin_srtt, self.origin_dev = smooth(self.origin_srtt, self.origin_dev, took,
                                                       self.origin_samples == 0)
            self.origin_samples += 1
        want = self.wants.get(seq)
        if want is not None:
            want.origin_busy = False
            if not ok and now < want.early_until:
                want.origin_at = now + self.config.origin_retry
                if want.origin_at < self.wants_t:
                    self.wants_t = want.origin_at
            elif not ok:
                # (a want that may not be made yet is not asked again: the origin is the
                # broadcaster's, or in front of it, and a late stream would only load it.
                # That includes a want nothing at or after which is held or claimed: during
                # a broadcaster's stall every viewer re-asked each expected chunk every
                # origin_retry until its deadline, ~4 fetches a chunk, ~120/s at 33 ms)
                unknown = want.deferred or self._unknown(seq, want)
                if unknown:
                    self.counters.origin_not_retried += 1
                    if self.stall_latest < 0 and now < want.deadline:
                        # the origin answered no (a fetch that timed out ends at the
                        # deadline: no sign the chunk is not made): a stall begins (below)
                        self.stall_latest = self.log.latest
                        self.unmade_at = now + self.unmade_backoff
                want.origin_at = want.deadline if unknown else now + self.config.origin_retry
                if want.origin_at < self.wants_t:
                    self.wants_t = want.origin_at

    def bound_by(self, seq: int, t: float, now: float) -> None:
        """(``want_bound``) chunk ``seq``, verified, was made at ``t``: so was every chunk
        before it. A want below it due more than BOUND_SLACK after ``t + playout_delay``
        (its time extrapolated at the nominal pace) is due then instead; its repair and
        origin times move up by as much (not before ``now``)."""
        bound = t + self.config.playout_delay
        grace = self.config.start_grace
        lo = self.wants_t
        for s, w in self.wants.items():
            if s >= seq or w.deferred or w.deadline - bound <= BOUND_SLACK:
                continue
            cap = bound
            ts = self.log.time_of(s)  # (as want() set its deadline: the floors it applied)
            if ts < self.joined_at - 0.001 and cap < self.joined_at + self.config.startup_grace:
                cap = self.joined_at + self.config.startup_grace
            if grace > 0 and ts < self.started_at and cap < self.started_at + grace:
                cap = self.started_at + grace
            d = w.deadline - cap
            if d <= BOUND_SLACK:
                continue
            w.deadline = cap
            self.counters.wants_moved_up += 1
            r = w.request_at - d
            w.request_at = r if r > now else now
            if w.early_until > 0:
                w.early_until -= d
            if not w.origin_busy:
                o = w.origin_at - d
                w.origin_at = o if o > now else now
                if w.origin_at < lo:
                    lo = w.origin_at
            if w.request_at < lo:
                lo = w.request_at
            if cap < lo:
                lo = cap
        self.wants_t = lo

    def deadline_of(self, seq: int) -> float:
        t = self.log.time_of(seq)
        d = t + self.config.playout_delay
        if t < self.joined_at - 0.001:  # (1 ms: an estimated time carries rounding)
            d = max(d, self.joined_at + self.config.startup_grace)
        return d

    def want(self, seq: int, now: float, backfill: bool = False) -> None:
        if seq > U64_MAX or 0 <= self.end_seq < seq:
            return  # cannot exist (and could not be asked for on the wire), or after the end
        t = self.log.time_of(seq)
        deadline = self.deadline_of(seq)
        grace = self.config.start_grace
        if grace > 0 and t < self.started_at and deadline < self.started_at + grace:
            # made before our first frame and due already, or nearly: a late start. Given up
            # now, it would be a hole right after the first frame; it may still come
            deadline = self.started_at + grace
            self.counters.start_graced += 1
        w = Want(deadline=deadline)
        if backfill:
            w.request_at = now
        else:
            r = t + self.delay.repair[seq % self.config.substreams]
            w.request_at = r if r > now else now
        w.origin_at = self.origin_time(seq, t, deadline)
        if self.config.relay_cover and not backfill and t >= self.joined_at:
            # (``relay_cover``) a relay: the last moment our origin copy reaches our
            # children before their own fallback
            d = self.delay
            j = seq % self.config.substreams
            cover = t + d.origin_at - self.config.relay_cover_hop - self.fetch_time()
            if self.config.relay_cover_overdue and d.known[j] and self._push_due(t, j) > cover:
                # (``relay_cover_overdue``) our parent's push usually comes after that
                # moment: missing then, the chunk is no sign of a loss above us
                cover = INF
            if now < cover < w.origin_at and self._feeds(j, self.config.relay_cover_children):
                w.early_until = w.origin_at  # (a 404 before then: not made or not at the edge yet)
                w.origin_at = cover
        self.wants[seq] = w
        lo = w.request_at if w.request_at < w.origin_at else w.origin_at
        if lo < self.wants_t:
            self.wants_t = lo
        if seq > self.max_wanted:
            self.max_wanted = seq

    def _unknown(self, seq: int, w: Want) -> bool:
        """``seq`` is just past everything we hold and no neighbour claims it (deferred
        a bounded number of times: a stream that ended is given up)."""
        if seq <= self.log.latest or w.deferred >= UNKNOWN_DEFERRALS:
            return False
        return not self._claimed(seq)

    def _claimed(self, seq: int) -> bool:
        """A neighbour's STATUS claims ``seq`` or a later seq."""
        for st in self.peers.values():
            if st.status is not None and st.status.latest >= seq:
                return True
        return False

    def fetch_time(self) -> float:
        """How long before a deadline an origin fetch must start to arrive: learnt."""
        f = self.origin_srtt + 4 * self.origin_dev + ORIGIN_PAD
        return f if f > ORIGIN_FLOOR else ORIGIN_FLOOR

    def origin_time(self, seq: int, t: float, deadline: float) -> float:
        """When to ask the origin for ``seq`` (made at ``t``) if peers have not given it."""
        at = deadline - self.config.origin_margin
        j = seq % self.config.substreams
        d = self.delay
        if self.config.origin_adapt and self.origin_samples >= ORIGIN_SAMPLES:
            # (2 deviations, not 4: the first sample sets one of half its value, and a
            # fetch time of 0.3 s was taken for 0.66 s after three samples)
            f = self.origin_srtt + 2 * self.origin_dev + ORIGIN_PAD
            latest = deadline - f
            # a fetch takes longer than the fixed margin allows: ask when one still
            # arrives, if our parent's push usually comes before that (asked then, a chunk
            # that is on its way as usual would be fetched twice: the fixed fallback stays)
            if latest < at and (not d.known[j] or self._push_due(t, j) <= latest):
                at = latest if latest > t else t
                self.counters.origin_adapted += 1
        if (not self.config.origin_wait or not d.late[j]
                or self.origin_samples < ORIGIN_SAMPLES):
            return at
        push = self._push_due(t, j)
        f = self.fetch_time()
        latest = deadline - (f if f > self.config.origin_wait_margin else self.config.origin_wait_margin)
        if push > latest:
            push = latest
        if push > at:
            self.counters.origin_waits += 1
            return push
        return at

    def give_up_below(self, floor: int, first: int) -> int:
        """Seqs from ``first`` below ``floor`` (the wanting window's bottom) neither held
        nor wanted are given up now (skipped: they were made, and they are gone for us),
        and nothing below ``floor`` is wanted afresh; returns how many. Wants are made only
        within ``window_chunks`` of the newest, so a node that fell further behind -- its
        process stopped (a laptop asleep, SIGSTOP) or its loop blocked -- passed over the
        seqs below that and never counted them: 215-280 seqs of a 25-s stop were neither
        played nor skipped (continuity overstated), and the gateway's player waited on the
        first of them until it left the 20-s window (found 2026-12-06 from outside)."""
        n, last = 0, -1
        log = self.log
        s = max(first, self.skipped_upto + 1)
        # The seqs held or wanted in the range (a window's worth at most, read off the log's
        # ring and the wants) split it into runs of seqs neither held nor wanted; each run is
        # given up as one counted action (``Skip.count``): a night asleep is ~870,000 seqs,
        # and one action each was 8 s of the event loop (found 2026-12-06).
        keep = [w for w in self.wants if s <= w < floor]
        for c in log.ring:
            if c is not None and s <= c.seq < floor:
                keep.append(c.seq)
        for q in log.spill:
            if s <= q < floor:
                keep.append(q)
        keep.sort()
        keep.append(floor)
        lo, hi = self.end_gap_lo, self.end_gap_hi
        for stop in keep:
            if stop > s:
                n += stop - s
                last = stop - 1
                # a run across a restarted broadcaster's downtime (:meth:`run_started`): the
                # part inside it was not made (one counted action, as the rest)
                a, b = max(s, lo + 1), min(stop, hi)
                if a < b:
                    for q0, q1, unmade in ((s, a, False), (a, b, True), (b, stop, False)):
                        if q1 > q0:
                            if unmade:
                                self.counters.skipped_unmade += q1 - q0
                            else:
                                self.counters.skipped += q1 - q0
                            self.actions.append(Skip(q1 - 1, unmade, q1 - q0))
                else:
                    self.counters.skipped += stop - s
                    self.actions.append(Skip(stop - 1, False, stop - s))
            if stop + 1 > s:
                s = stop + 1
        if last > self.skipped_upto:
            self.skipped_upto = last
        return n

    def track(self, now: float, started: bool) -> None:
        if not started or self.log.anchor_seq < 0:
            return
        expected = self.log.expected_latest(now)
        if self.end_seq >= 0 and expected > self.end_seq:
            expected = self.end_seq  # (held: nothing after it is made)
        top = expected if expected > self.log.latest else self.log.latest
        seen = max(self.max_wanted, self.skipped_upto, self.log.latest)  # held, wanted or given up
        if top - self.config.window_chunks > seen + 1 and self.stall_latest < 0:
            # we fell behind by more than the window (a broadcaster's stall is not ours: its
            # seqs are deferred, not passed over)
            self.give_up_below(top - self.config.window_chunks, seen + 1)
        if self.stall_latest >= 0:
            if self.log.latest > self.stall_latest:
                self.stall_over(now)
            elif self.probe_seq < 0 and now >= self.unmade_at and self.config.use_origin:
                self._probe(now)
        # Every seq up to _max_wanted is already held, wanted or given up: start above it.
        first = max(self.skipped_upto + 1, self.log.latest + 1, self.max_wanted + 1,
                    expected - self.config.window_chunks)
        for s in range(first, expected + 1):
            if s not in self.log and s not in self.wants:
                self.want(s, now)
        if self.wants_t > now:
            return  # no want is due (the bound is never above the earliest)
        lo = INF  # the new bound, gathered in the same pass
        use_origin = self.config.use_origin
        for seq, w in list(self.wants.items()):
            if now >= w.deadline and self._unknown(seq, w):
                # Nothing at or after it is held or claimed: it may not be made yet (a
                # broadcaster slower than our clock, which extrapolates the last chunk's
                # time at the nominal pace). Its deadline is a guess: do not give it up
                # yet; look again every UNKNOWN_RECHECK, without asking the origin again
                # (measured: re-asking it quadrupled the origin's load in a late swarm).
                self.counters.wants_deferred += 1
                w.deferred += 1
                w.deadline = now + UNKNOWN_RECHECK
                if not w.origin_busy:
                    w.origin_at = w.deadline  # it was asked before its first deadline
            if now >= w.deadline:
                if w.deferred and self.stall_latest >= 0 and (self.stall_skip_low < 0
                                                              or seq < self.stall_skip_low):
                    self.stall_skip_low = seq
                del self.wants[seq]
                if seq > self.skipped_upto:
                    self.skipped_upto = seq
                unmade = ((w.deferred > 0 and seq > self.log.latest and not self._claimed(seq))
                          or (self.end_gap_lo < seq < self.end_gap_hi and not self._made_in_gap(seq)))
                if unmade:
                    self.counters.skipped_unmade += 1
                else:
                    self.counters.skipped += 1
                self.actions.append(Skip(seq, unmade))
                continue
            if now >= w.request_at:
                self.request(seq, w, now)
            if (use_origin and not w.origin_busy and now >= w.origin_at and self.stall_latest >= 0
                    and seq != self.probe_seq and self._unknown(seq, w)):
                # a stall: the probe asks the origin, this one waits (its deadline)
                w.origin_at = w.deadline
                self.counters.origin_held += 1
            if use_origin and not w.origin_busy and now >= w.origin_at:
                if not w.origin_tries and now < w.early_until:
                    self.counters.origin_cover += 1  # (``relay_cover``: armed in want())
                self._fetch_origin(seq, w, now, w.deadline)
            if w.request_at < lo:
                lo = w.request_at
            if w.deadline < lo:
                lo = w.deadline
            if use_origin and not w.origin_busy and w.origin_at < lo:
                lo = w.origin_at
        self.wants_t = lo

    # ---- a stall at the origin ----------------------------------------------------
    # The origin failed a chunk that nothing at or after it held or claimed: the
    # broadcaster is late or stalled. The clock (which extrapolates at the nominal pace)
    # keeps expecting chunks that do not exist; each used to be asked of the origin once,
    # ~30 requests a second per viewer at 33 ms chunks for as long as the stall lasted.
    # Now they wait and one probe asks for the seq after the latest held (the first the
    # broadcaster will make), after a back-off that doubles to UNMADE_MAX; the first
    # newer chunk, from a peer or the probe, ends the stall: it re-anchors the clock,
    # and the seqs given up meanwhile as not made are wanted again on that clock (a
    # viewer that only the origin feeds was otherwise left behind for good: it asked for
    # and gave up seqs before the broadcaster made them).

    def _fetch_origin(self, seq: int, w: Want | None, now: float, deadline: float) -> None:
        """Ask the origin for ``seq`` (for the want ``w``, if there is one)."""
        if w is not None:
            w.origin_busy = True
            w.origin_tries += 1
            w.origin_at = w.deadline  # re-armed by on_origin on failure
            self.counters.origin_fetches += 1
        if len(self.origin_sent) >= self.config.window_chunks:
            self.origin_sent.clear()  # answers lost by the adapter: start afresh
        self.origin_sent[seq] = now
        self.actions.append(FetchOrigin(seq, deadline))

    def _sink_asked(self, st: PeerState, seq: int, deadline: float, now: float) -> None:
        """``repair_guard``: remember a REQUEST to ``st`` for a chunk it claimed, till its deadline."""
        asked = st.sink_asked
        if len(asked) >= SINK_ASKED_MAX:
            self.distrusted(st, now)  # judge what is due first
            if len(asked) >= SINK_ASKED_MAX:
                del asked[next(iter(asked))]  # (the oldest: its verdict is lost, not a miss)
        asked[seq] = deadline
        if deadline < st.sink_due:
            st.sink_due = deadline

    def _probe(self, now: float) -> None:
        seq = self.log.latest + 1
        self.unmade_at = now + self.unmade_backoff  # at the latest, if the answer is lost
        self.counters.origin_probes += 1
        if self.probe_misses >= PROBE_LATEST_AFTER:
            # the next seq may never be made: the origin's newest keyframe, which a newer
            # chunk's arrival ends the stall with (a failure backs off as a probe's does);
            # from now on every other probe reads it, until a probe or a peer's chunk succeeds
            self.probe_misses = PROBE_LATEST_AFTER - 1
            self.actions.append(FetchOrigin(ORIGIN_LATEST, now + self.config.playout_delay))
            return
        w = self.wants.get(seq)
        if w is not None and w.origin_busy:
            return  # already asked: its answer is the probe
        self.probe_seq = seq
        self._fetch_origin(seq, w, now, now + self.config.playout_delay)

    def stall_over(self, now: float) -> None:
        low = self.stall_skip_low
        self.probe_misses = 0
        self.stall_latest, self.unmade_backoff, self.stall_skip_low = -1, UNMADE_BACKOFF, -1
        latest = self.log.latest
        for seq in [s for s, w in self.wants.items() if s > latest and not w.origin_busy]:
            self.want(seq, now)  # fresh timers on the re-anchored clock
        if low >= 0 and low <= self.skipped_upto:
            # given up before they were made: want them again, on the re-anchored clock
            floor = low - 1 if low - 1 > latest else latest
            if self.skipped_upto > floor:
                self.skipped_upto = floor
            top = self.max_wanted
            first = top - self.config.window_chunks
            if first <= floor:
                first = floor + 1
            for seq in range(first, top + 1):
                if seq not in self.log and seq not in self.wants:
                    self.want(seq, now)
        self.wants_t = now

    def _feeds(self, j: int, need: int = 0) -> bool:
        """We feed at least ``need`` (0: ``relay_early_children``) children on substream ``j``."""
        bit = 1 << j
        if need <= 0:
            need = self.config.relay_early_children
        kids = 0
        for st in self.peers.values():
            if st.children_mask & bit:
                kids += 1
                if kids >= need:
                    return True
        return False

    def _push_due(self, t: float, j: int) -> float:
        """When our parent's push of a chunk of ``j`` made at ``t`` usually comes (its
        smoothed delay + 2 deviations + ``REPAIR_MARGIN``)."""
        d = self.delay
        return t + d.lag[j] + 2 * d.dev[j] + REPAIR_MARGIN

    def _relay_late(self, j: int) -> bool:
        """We have children on ``j`` (at least ``relay_early_children``) and our parent's push
        usually reaches us so late that our copy would reach them after their origin fallback
        (``RELAY_HOP`` a hop)."""
        d = self.delay
        if not d.known[j] or d.lag[j] + REPAIR_MARGIN + RELAY_HOP <= d.origin_at:
            return False
        return self._feeds(j)

    def _arrival_via(self, st: PeerState, j: int, age: float) -> float:
        """How long after its time a chunk of ``j`` that is ``age`` (s) old now would reach us
        if we asked ``st`` now: ``st`` is fed on ``j`` (not through us) and its advertised
        lag says when the chunk reaches it (a held request is answered then), plus the
        round trip of the request (INF: it is not fed, or below us)."""
        msg = st.status
        if msg is None or j >= len(msg.paths) or j >= len(msg.lags):
            return INF
        path = msg.paths[j]
        lag = msg.lags[j]
        if not path or self.tree.tag in path or lag == wire.LAG_UNKNOWN:
            return INF
        half = st.rtt / 2 if st.rtt >= 0 else 0.05
        have = lag / 1000 + REPAIR_MARGIN
        ask = age + half
        return (have if have > ask else ask) + half

    def _silent_parent(self, j: int, now: float) -> bool:
        """(``silent_parent_open``) our parent on ``j`` has not pushed, and by its own claim
        (advertised lag + half the RTT) its first push is overdue."""
        tree = self.tree
        key = tree.parents[j]
        if key is None or tree.parent_pushed_any[j]:
            return False
        st = self.peers.get(key)
        if st is None or st.is_broadcaster:
            return False
        claim = PushTree._claimed_delay(st, j)
        if claim < 0:
            claim = HOP_GUESS
        return now > tree.changed_at[j] + claim + SILENT_PARENT_SLACK

    def request(self, seq: int, w: Want, now: float) -> None:
        j = seq % self.config.substreams
        trust = self.config.repair_trust
        guard = self.config.repair_guard
        if trust and w.last is not None:
            self._unanswered(w)
        best: PeerState | None = None
        best_score = 1e9
        proven = self.config.repair_proven
        pair = self.config.repair_pair
        second: PeerState | None = None  # (``repair_pair``) the runner-up
        second_score = 1e9
        # A peer that does not hold the chunk yet is worth asking only if it is
        # at least two hops closer to the broadcaster on this substream than we are.
        mine = len(self.tree.paths[j]) - 2 if self.tree.parents[j] is not None else wire.MAX_PATH
        if self.config.fresh_parent_lag and not self.tree.parent_pushed_any[j]:
            # (``fresh_parent_lag``) a parent that has not pushed yet: its path is a claim (a
            # withholder's one hop left no neighbour "closer" than us until a STATUS showed
            # the chunk, up to ``status_interval`` later); any neighbour fed on j is worth asking
            mine = wire.MAX_PATH
        elif self.config.silent_parent_open and self._silent_parent(j, now):
            mine = wire.MAX_PATH  # (``silent_parent_open``) its claimed path is not our depth
            self.counters.repairs_past_silent_parent += 1
        doubt = self.config.one_hop_doubt > 0
        if doubt and mine != wire.MAX_PATH:
            key = self.tree.parents[j]
            parent = self.peers.get(key) if key is not None else None
            if parent is not None and parent.doubted:
                mine = wire.MAX_PATH  # (``one_hop_doubt``) its claimed path is not our depth
        # Our parent's push usually comes after a repair round would (a late substream):
        # only a holder with upload to spare (free slots) is asked. A STATUS is up to
        # ``status_interval`` old, so its ``have`` bits never show a chunk this fresh: a
        # neighbour fed on ``j`` (not below us) whose advertised lag says it will have the
        # chunk and answer before the origin fallback and our parent's push
        # (``repair_by_lag``, :meth:`_arrival_via`) counts as a holder too.
        late = self.delay.late[j]
        by_lag = late and self.config.repair_by_lag
        age = now - self.log.time_of(seq) if by_lag else 0.0
        d = self.delay
        # ``repair_overdue``: our parent's push of this chunk is overdue (past its usual
        # time + 2 deviations): a neighbour that has it by now is worth asking even though
        # our parent usually pushes sooner than it would answer (a loss on the path, a
        # busy relay: this chunk, not the tree, is late)
        overdue = by_lag and self.config.repair_overdue and age >= d.lag[j] + 2 * d.dev[j]
        if overdue and w.origin_busy:
            w.request_at = now + self.config.repair_after
            return  # (the origin is asked already: a repair would be a duplicate)
        predicted = claimed = False
        # ``start_repair``: in our first seconds a full neighbour is asked too
        full_ok = self.config.start_repair > 0 and now < self.started_at + self.config.start_repair
        for st in self.peers.values():
            if st.key in w.asked or st.status is None or st.refused_until > now:
                continue
            if guard and (now >= st.sink_due or st.distrusted_until > now) and self.distrusted(st, now):
                continue  # (``repair_guard``) a repair sink: not asked for a while
            msg = st.status
            holds = status_holds(msg, seq)
            if doubt and not holds and st.doubted:
                continue  # (``one_hop_doubt``) asked only for what its ``have`` shows
            guess = False
            arrival = INF
            if late:
                if msg.slots == 0 and not full_ok:
                    continue
                if not holds:
                    if not by_lag or st.key == self.tree.parents[j]:
                        continue  # (our parent: its push is the one that comes late)
                    # it would have it and answer before the origin fallback (and before
                    # our parent's usual push): a held request there beats both
                    arrival = self._arrival_via(st, j, age)
                    if arrival >= d.origin_at or (arrival >= d.lag[j] and not overdue):
                        continue
                    guess = True
            elif not holds and (j >= len(msg.paths) or not msg.paths[j] or len(msg.paths[j]) > mine):
                continue  # it would get the chunk no sooner than our own parent
            score = float((0 if holds else (1 + arrival if guess else len(msg.paths[j])))
                          + (2 if self.tree.parents[j] == st.key else 0)
                          + 3 * st.withholds)  # struck for withholding (§ 9.2): ask last
            if trust:
                score += REPAIR_MISS_COST * st.repair_misses
            if proven and holds and not st.given and not st.is_broadcaster:
                score += UNPROVEN_COST  # (``repair_proven``) it never gave us a chunk
            score += self.rng.random()
            if score < best_score:
                if pair:
                    second, second_score = best, best_score
                best, best_score, predicted, claimed = st, score, guess, holds
            elif pair and score < second_score:
                second, second_score = st, score
        if best is None:
            w.request_at = now + self.config.repair_after
            w.asked.clear()
            if by_lag and self.config.repair_overdue and not overdue:
                # one more round once our parent's push of it is overdue, if an answer
                # could still come before the origin fallback
                at = self._push_due(self.log.time_of(seq), j)
                if now < at < self.log.time_of(seq) + d.origin_at - OVERDUE_ANSWER:
                    w.request_at = at
            if (late and self.config.relay_origin_early and self.config.use_origin and not w.origin_busy
                    and now < w.origin_at and self._relay_late(j)):
                # our children would get our push after their own origin fallback: fetch
                # it for them now (one fetch instead of one per child)
                w.early_until = w.origin_at
                self.counters.origin_early += 1
                self._fetch_origin(seq, w, now, w.deadline)
            return
        w.asked.append(best.key)  # (not in it: the loop skipped those)
        if trust and claimed:
            w.last = best.key
        if guard and claimed and not best.is_broadcaster:  # (the source is no stranger)
            self._sink_asked(best, seq, w.deadline, now)
        w.request_at = now + max(0.05, self.config.repair_after)
        self.counters.requests_sent += 1
        if predicted:
            self.counters.requests_predicted += 1
        self.actions.append(Send(best.key, wire.Request(stream=self.skey, seq=seq)))
        if pair and second is not None and claimed and not best.given and not best.is_broadcaster:
            # (``repair_pair``) the holder picked never gave us a chunk: it may be one that
            # claims and never answers; the runner-up is asked in the same round
            w.asked.append(second.key)
            self.counters.requests_sent += 1
            self.counters.requests_paired += 1
            self.actions.append(Send(second.key, wire.Request(stream=self.skey, seq=seq)))
