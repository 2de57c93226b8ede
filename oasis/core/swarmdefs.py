"""Definitions shared by the parts of the swarm core: its configuration, the
actions it emits, what it knows about each neighbour, and its counters.

``oasis.core.swarm`` re-exports every name here; adapters import them from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import wire
from .pull import PullBudget
from .wire import ErrorCode

INF = float("inf")
U64_MAX = 0x7FFF_FFFF_FFFF_FFFF  #: the wire's integers are int64: never emit above this
#: a parent's REQUESTs to us remembered per peer (``PeerState.asked_back``): the suspicion
#: of withholding is settled within ``withhold_confirm`` + an RTT of its third miss, and a
#: peer's REQUESTs are bounded by its pull budget, so an echo must follow its REQUEST soon
ECHO_KEPT = 64
#: with ``origin_adapt`` an origin fetch may run this long past its chunk's deadline (s): it
#: is timed (the fetch time is learnt from answers only) and its connection kept
ORIGIN_OVERTIME = 0.5
#: a viewer reads the origin's ``latest.json`` at its join; for this long (s) after that answer
#: its origin start (``FetchOrigin(ORIGIN_LATEST)``) asks for the keyframe it named at once, a
#: request instead of two (the adapters: ``oasis.node.node.LiveStream.prefetch_latest`` and
#: ``oasis.sim.oasis_run``)
LATEST_FRESH = 1.0
#: the default chunk duration (ms): one frame at 30 fps. Each relay hop costs a whole chunk's
#: serialisation, so a smaller chunk makes every hop shorter (docs/simulation.md: at a 0.5 s
#: playout delay, 1,000 churning viewers carried 55 % of the bytes with 100 ms chunks, 84 % with 33)
DEFAULT_CHUNK_MS = 33

SOURCE_P2P = "p2p"
SOURCE_BROADCASTER = "broadcaster"
SOURCE_ORIGIN = "origin"
SOURCE_SELF = "self"


@dataclass(frozen=True)
class SwarmConfig:
    chunk_ms: int = DEFAULT_CHUNK_MS
    substreams: int = 4
    bitrate_kbps: int = 1500
    upload_kbps: int = 0  #: 0 = no cap
    #: the most a relay offers (kbit/s) when ``upload_kbps`` is its own guess, not the
    #: user's (0: the cap is ``upload_kbps``, fixed). Above that floor the cap rises by one
    #: bitrate every ``probe_interval`` while fewer than ``substreams`` of the relay's slots
    #: are free and its children's chunks reach them no later than they did (each child's
    #: hop delay over its lowest, median within ``probe_quiet``), and falls half-way back to
    #: ``upload_kbps`` (from there or below, half-way to ``upload_min_kbps``) when that median
    #: passes ``probe_busy``: the uplink's queue, or the relay's CPU, says the relay is past
    #: what it can carry (:mod:`oasis.core.uplink`; docs/oftp.md §9.7)
    upload_max_kbps: int = 0
    #: the lowest the uplink probe cuts the cap to (kbit/s; 0, or above ``upload_kbps``:
    #: ``upload_kbps``, never below its start)
    upload_min_kbps: int = 0
    probe_interval: float = 2.0  #: s between two decisions of the uplink probe
    probe_quiet: float = 0.04  #: s: a median child's hop delay over its lowest that lets the cap rise
    probe_busy: float = 0.08  #: s: ... past which the cap falls
    playout_delay: float = 0.5  #: deadline = chunk time + this
    #: ask the origin this long before the deadline (an HTTP fetch from a CDN edge, and a
    #: retry, fit in it). 0.15: at 1,000 simulated churning viewers and a 0.5 s playout delay
    #: peers carried 0.910 of the bytes against 0.840 with 0.2, p95 377 against 339 ms. 0.12
    #: since relays fetch early for their children (``relay_origin_early``), which took p95
    #: 29 ms lower: the room a later fallback needs (docs/simulation.md, 2026-12-02)
    origin_margin: float = 0.12
    repair_after: float = 0.15  #: pull a chunk this long after it should exist
    startup_grace: float = 1.5  #: deadline for chunks older than our join
    #: a chunk made before our first frame whose deadline would come sooner than this after
    #: it (a late start: its deadline passed while we waited for a start) is wanted until
    #: then instead of given up at once: the player plays on from the start keyframe without
    #: a hole (a start within ``playout_delay - start_grace`` of the join changes nothing).
    #: Off by default: at 0.25 s the 20 real viewers of the fidelity harness (join burst,
    #: first frame 1.3-2.7 s after the join) had half the hole after their first frame and
    #: +0.012 continuity from the join (5 of 5 pairs, with the announce at the join), but
    #: the simulator's mobile-churn 1,000 x 40 s at 0.5 s lost offload 0.951 -> 0.943,
    #: continuity 0.99975 -> 0.99942, p95 351 -> 359 ms (0.940 with no origin fetch for the
    #: graced chunks): the old chunks' repairs take the neighbours' upload and pull budgets
    #: from fresh ones (docs/benchmarks.md, *The viewer's first seconds*)
    start_grace: float = 0.0
    window_chunks: int = 300
    status_interval: float = 2.0  #: periodic STATUS (urgent changes go at once, § 9.2)
    subscribe_timeout: float = 2.0
    reject_backoff: float = 3.0
    max_depth: int = wire.MAX_PATH - 1
    max_children_uncapped: int = 64  #: substream slots when upload is uncapped
    #: share of the upload cap booked by push subscriptions. 1.0 raised the simulated
    #: mobile-churn offload at 0.5 s by 0.002-0.011 but cost the real-process swarm (and its
    #: simulation) 0.025 of offload and 33-40 ms of p95: a relay's pushes queue behind each
    #: other at its full cap (docs/simulation.md, 2026-12-02)
    slot_headroom: float = 0.8
    #: the broadcaster feeds each child one substream (the one it feeds fewest children,
    #: or the one the child has), and a child does not ask it for a second: its slots make
    #: as many relays one hop deep as it has slots, each a relay of one substream, instead
    #: of a quarter as many relays of all four. At 1,000 simulated churning viewers and a
    #: 0.5 s playout delay its 51 slots had gone to ~13 viewers; spread, offload rose
    #: 0.907 -> 0.920 and 0.852 -> 0.910 (seeds 1, 2), p95 fell 378 -> 371 and 392 -> 376 ms
    #: (strictly one per child: 0.934, 0.920, but a viewer alone with the broadcaster
    #: then pulls three substreams; docs/simulation.md, 2026-12-02)
    root_spread: bool = True
    #: ... strictly one at a child's first SUBSCRIBE; a child asks it for another only when
    #: no other neighbour is a candidate for that substream (a lone viewer, a small swarm),
    #: and gets it while the broadcaster has more free slots than neighbours without one.
    #: Without it (2026-12-03, HEAD 55cb810) the first viewers' first SUBSCRIBE got all four
    #: and kept them: 9 of the broadcaster's 48 neighbours held 36 of its 51 slots; with it
    #: and ``root_giveback``, 46-48 relays one hop deep, and simulated offload over six runs
    #: (three scenarios, two seeds, 1,000 x 40 s at 0.5 s) 0.907 -> 0.925 (docs/simulation.md)
    root_strict: bool = True
    #: ... and a child fed more than one substream by the broadcaster moves the others to
    #: another parent once one is a candidate and the broadcaster has no free slot (after
    #: the switch dwell; make before break)
    root_giveback: bool = True
    bad_chunk_limit: int = 3
    origin_retry: float = 0.05
    #: on a substream whose parent's push usually comes after the origin fallback would
    #: (a late substream, :mod:`.delay`), wait for that push as long as an origin fetch
    #: started then still arrives: until the deadline minus the learnt fetch time
    #: (smoothed + 4 deviations + ``ORIGIN_PAD``), never before the fixed fallback.
    #: Off by default: at 1,000 simulated churning viewers and a 0.5 s playout delay it
    #: lifts offload 0.870 -> 0.926 but p95 delivery latency 384 -> 441 ms (the
    #: latency target is 400), as a smaller fixed margin would (docs/simulation.md)
    origin_wait: bool = False
    #: ... and never later than this before the deadline, whatever the fetch takes
    origin_wait_margin: float = 0.0
    #: the fallback asks the origin early enough for the fetch to arrive: at
    #: ``deadline - max(origin_margin, fetch)`` (``fetch`` the learnt fetch time: smoothed +
    #: 2 deviations + ``ORIGIN_PAD``, once ``ORIGIN_SAMPLES`` fetches were timed), never before
    #: the chunk's own time, on a substream whose parent's push usually comes before it; and the adapter lets a fetch run ``ORIGIN_OVERTIME`` past its deadline, so
    #: a far origin's answers are timed (and its connection kept) instead of cut off. With a
    #: fixed 0.12 s an origin 0.2 s away answers nothing in time: in the 30-node testbed
    #: 97 % of the fetches timed out (docs/benchmarks.md, session 31). On since session 34:
    #: with a CDN edge in each viewer country, the 30-node testbed's continuity once playing
    #: rose 0.9844 -> 0.9877 on the mean of ten alternating pairs (a phone's fetch takes more
    #: than 0.12 s: ~10 % of all fetches came late), for -0.0007 of simulated offload on the
    #: six comparison runs (docs/benchmarks.md, "Session 34, the lead")
    origin_adapt: bool = True
    #: on a late substream, a repair may also ask a neighbour whose STATUS does not show the
    #: chunk (a STATUS is up to ``status_interval`` old) but whose advertised lag says it
    #: has had it by now (:meth:`oasis.core.repair.RepairPicker.request`)
    repair_by_lag: bool = True
    #: a relay whose parent's push of substream ``j`` usually comes too late for its children
    #: (its lag + a hop after the origin fallback) and that no peer can repair a chunk of
    #: ``j`` from at its repair round asks the origin then, not at the fallback: its copy
    #: reaches its children before their own fallback (one fetch instead of one per child)
    relay_origin_early: bool = True
    #: ``relay_origin_early`` only for a substream on which we feed at least this many
    #: children: for one child the early fetch costs the origin what that child's own
    #: fallback would, and that child may still get our push, or a repair, in time (1: every
    #: relay, the behaviour before 2026-12-03). 2 by default: at 1,000 simulated
    #: mobile-churn viewers x 40 s at 0.5 s with 70 % behind NATs, offload +0.017, +0.023,
    #: +0.009, +0.018 (seeds 1-4; the early fetches -55 %), p95 +3 to +4 ms; without NATs
    #: the nine comparison runs (three files, seeds 1-3) mean +0.0018, 7 of 9 up, p95 +0 to
    #: +12 ms (docs/benchmarks.md, h-nat7 and "Session 26, the lead")
    relay_early_children: int = 2
    #: a relay that feeds at least ``relay_early_children`` children on ``j`` asks the origin
    #: for a chunk of ``j`` still missing at the last moment its copy can reach them before
    #: their own fallback (the chunk's time + the fallback - ``relay_cover_hop`` - the learnt
    #: fetch time), whether or not its substream is late and a repair is out: a chunk lost
    #: above it is missing in its whole subtree, and every child fell back to the origin at
    #: the same moment as the relay (:meth:`oasis.core.repair.RepairPicker.want`; counter
    #: ``origin_cover``). A fetch whose answer comes after the push delivers nothing; one that
    #: beats a push that was coming makes the relay's own copy an origin delivery. On (off
    #: before h-stress2): with ``relay_cover_hop`` 0.02, 1,000 x 40 s at 0.5 s, the four stress
    #: files rose +0.003..+0.008 (seed 1) and the six comparison runs all rose, mean 0.9624 ->
    #: 0.9658, p95 lower in all ten (docs/benchmarks.md, h-stress2)
    relay_cover: bool = True
    #: ``relay_cover``: what the relay leaves for its copy to reach its children (s). 0.02: at
    #: 0.05 (a hop, as ``relay_origin_early``'s) stress-far lost (its relays' answers beat pushes
    #: that were coming); half the RTT to the farthest child + 10 ms (at least 0.05), an earlier
    #: cover still, lost more (docs/benchmarks.md, h-stress2)
    relay_cover_hop: float = 0.02
    #: ``relay_cover`` only where our parent's push of ``j`` usually comes before that
    #: moment (its smoothed delay + 2 deviations + ``REPAIR_MARGIN``), so a chunk missing then
    #: is overdue: a relay whose pushes come later would fetch chunks that are on their way
    #: (a fetch whose answer beats the push makes the relay's copy an origin delivery)
    relay_cover_overdue: bool = False
    #: ``relay_cover`` for a relay that feeds at least this many children on ``j`` (0: as
    #: ``relay_early_children``). 1: a relay with one child covers too: a chunk lost above
    #: it otherwise costs two origin fetches at the fallback (the relay's and its child's)
    relay_cover_children: int = 0
    #: a verified chunk bounds the chunks before it: made by its signed time, each is due
    #: by that time + ``playout_delay``. A want whose time the clock extrapolated later (a
    #: broadcaster that sends a burst after a stall; the clock assumes the nominal pace)
    #: is moved up, its repair and origin times with it (counter ``wants_moved_up``)
    want_bound: bool = True
    #: on a late substream, a second repair round once our parent's push of the chunk is
    #: overdue (its usual time + 2 deviations + a margin), to a neighbour whose advertised
    #: lag says it has the chunk and would answer before the origin fallback
    repair_overdue: bool = True
    #: a chunk that arrives while REQUESTs for it are out: tell the other peers asked
    #: (CANCEL) so a held request or a queued answer does not send a duplicate. Off: in
    #: the simulator it cut duplicate bytes by up to 16 % but moved offload -0.017..+0.016
    #: (mean -0.003 over the three scenario files, two seeds; docs/benchmarks.md). A
    #: CANCEL received is always honoured.
    cancel_requests: bool = False
    #: a viewer that has not started this long after its join asks the origin for the
    #: latest keyframe (``FetchOrigin(ORIGIN_LATEST)``), again every ``origin_start_retry``
    #: until it plays: a viewer no peer can reach (behind a symmetric NAT among NATed
    #: peers, or alone in the swarm) still plays, from the origin/CDN. 0.5 (1.0 before
    #: 2026-12-04): the six comparison runs' mean offload 0.97090 -> 0.97106 (three up, three
    #: down by <= 0.0018), continuity 0.99874-0.99955 -> >= 0.99963, start-up p95 520-867 ->
    #: 491-545 ms; a viewer whose far peers are slow to link starts from a near CDN edge
    #: (docs/benchmarks.md, session 32). 0.3 was better still on continuity (>= 0.99993) and
    #: start-up (p95 ~370 ms) but cost 0.05-0.3 points of offload on each run. 0.25
    #: (2026-12-05, session 38): first frame p50 ~676 -> ~444 ms in the 30-node testbed and
    #: the six comparison runs' offload +0.0005, but offload -0.0024 at 70 % NAT and -0.0027
    #: on the stress files (stress-mobile 0.951 -> 0.947, below issue 9's 95 %): not taken.
    #: 0.25 since 2026-12-06 (session 51), with the start's fetch time priming the fallback
    #: (``Swarm.on_origin(..., took=)``): in the 30-node testbed, three alternating pairs
    #: against 0.5 without it, continuity from the join 0.99188 -> 0.99469 (3 of 3 up), once
    #: playing 0.99707 -> 0.99785, first frame p50 660 -> 448 ms, offload 0.895 -> 0.899 (0.25
    #: alone, four pairs: from the join +0.0024; the priming on top of it, four pairs: +0.0006,
    #: the misses before the first frame fewer in 4 of 4; seed 2 the same, +0.0035; seed 3,
    #: its broadcaster in India, even from the join and offload 0.821 -> 0.812, four pairs);
    #: in the simulator's twelve runs (1,000 x 40 s at 0.5 s: the six
    #: comparison runs, 70 % NAT seeds 1-2, the four stress files seed 1) continuity up in all
    #: twelve, start-up p95 ~545 -> ~355 ms, offload -0.0012 on the mean (-0.0068 on
    #: stress-4mbit, +0.0023 at most; docs/benchmarks.md, session 51)
    origin_start_after: float = 0.25
    origin_start_retry: float = 1.0
    #: a viewer with no neighbour in the stream this long after its join (no JOIN answered,
    #: so no start can be on its way from a peer) asks the origin for its start then
    #: instead of at ``origin_start_after`` (0: off; counter ``origin_lonely_starts``).
    #: Behind NATs a newcomer's first dials may all go to peers that cannot answer
    #: (issue 10, h-nat10)
    origin_start_lonely: float = 0.0
    #: added to a candidate parent's expected arrival per relay on its path: each is a
    #: point of failure (churn, congestion), so of two equally fast paths the shorter wins
    hop_penalty: float = 0.03
    #: a parent is not swapped for a faster one within this long of the substream's last
    #: parent change (s; :data:`oasis.core.tree.SWITCH_DWELL`). 2.0 (5.0 before 2026-12-03)
    #: raised simulated offload at 0.5 s by 0.008-0.018 on all six runs of the three scenario
    #: files (1,000 viewers; mean 0.932 -> 0.944) and lowered p95 by 0-9 ms (docs/simulation.md,
    #: docs/benchmarks.md, 2026-12-03). It counts from the SUBSCRIBE_ACK, a round trip after
    #: the periodic look that asked, so at 2.0 (= ``status_interval``) a parent taken at one
    #: look is first reconsidered two looks later; 1.5 (every look) was no better: mean
    #: offload 0.944 -> 0.945 over the six runs, single runs -0.015 to +0.016 (docs/benchmarks.md,
    #: h-off5)
    switch_dwell: float = 2.0
    #: a substream's first parent (taken when it had none) is looked at again this long
    #: after its SUBSCRIBE_ACK, with this as its dwell, instead of at the periodic look after
    #: ``switch_dwell`` (s; 0: off). A newcomer subscribes every substream at the first
    #: STATUS that claims chunks: all of them from the neighbour whose link came up first,
    #: whatever its depth; with the 2 s dwell counted from the ACK the look two seconds
    #: after the join may not swap it, so it kept that parent ~4 s (a third of the
    #: origin's bytes went to viewers in their first 4 s; :meth:`oasis.core.tree.PushTree.select_parents`).
    #: 0.5 (0 before 2026-12-03): simulated offload at 0.5 s rose in 5 of the 6 runs of the
    #: three scenario files (1,000 x 40 s, seeds 1-2; -0.004 to +0.005), mean 0.944 -> 0.945,
    #: continuity >= 0.9997, p95 +2..13 ms in 5 of 6 (at most 366 ms); the newcomers' origin
    #: deliveries in their first 4 s -9 % (docs/benchmarks.md, h-off6). A small gain, of the
    #: size of one run's noise, but of one sign
    start_look: float = 0.5
    #: a newcomer's first SUBSCRIBE waits this long after the first STATUS that claims chunks
    #: (or the verified start) for the STATUSes of the neighbours whose links come up a
    #: moment later, so the first parents are chosen among them, not all from the first one
    #: heard, and no early swap is paid for (s; 0: off, subscribe at once). Until then the
    #: chunks are pulled as before any parent (:meth:`oasis.core.tree.PushTree.select_parents`).
    #: 0.25 (0 before 2026-12-03): simulated offload at 0.5 s rose on all six comparison runs
    #: (+0.012..+0.020, mean 0.9453 -> 0.9603; 1,000 x 40 s), p95 lower (docs/benchmarks.md,
    #: h-off7; with ``repair_guard`` on as well: the session-25 section)
    first_wait: float = 0.25
    #: for this long after our first frame, a repair on a late substream may also ask a
    #: neighbour whose STATUS shows no free push slot (s; 0: off). A newcomer hangs deep in
    #: the trees (the shallow relays are full) and its parent's push usually comes after a
    #: repair round; its shallower neighbours, full, were never asked, so the origin
    #: carried its chunks (:meth:`oasis.core.repair.RepairPicker.request`)
    start_repair: float = 0.0
    #: judge the current parent by what we measure through it (our smoothed delay on ``j``
    #: + the hop penalty of its path) when that is worse than what its STATUS predicts
    #: (its advertised lag + half the RTT): its queue behind its other children and the
    #: losses on its link to us count against it (:meth:`oasis.core.tree.PushTree.select_parents`).
    #: Off: with ``start_look`` = 0.5 the six comparison runs at 0.5 s moved -0.003..+0.004, mean
    #: 0.9453 -> 0.9446 (2 of 6 up), and 70 % NAT seed 1 0.887 -> 0.873 (docs/benchmarks.md, h-off7)
    parent_measured: bool = False
    #: added to a candidate parent's score on ``j``: how much later chunks reach it on ``j``
    #: than on the substream where it is fastest, at most this (s; 0: off). A relay is then
    #: asked for the substream where it is shallow (:meth:`oasis.core.tree.PushTree.parent_score`)
    home_penalty: float = 0.0
    #: a *leaf* on ``j`` (no children of ours on it) whose parent's expected arrival is this
    #: long or more before our origin fallback is *in time*: it does not swap that parent for
    #: a faster one, and when the parent is full (its STATUS shows no free slot) it moves to
    #: the best other candidate with free slots that keeps it in time, so the full parent's
    #: slot goes to a neighbour that relays: shallow slots for subtrees, not for leaves.
    #: Behind NATs the full parents are the public hubs and the leaves that can go elsewhere
    #: are the EIM viewers, which leaves the hubs' slots to those only a public peer can feed
    #: (:meth:`oasis.core.tree.PushTree.select_parents`; s, 0: off). Off: at 0.08, 1,000
    #: simulated mobile-churn viewers x 40 s at 0.5 s with 70 % behind NATs gave offload
    #: 0.882 -> 0.877 and 0.876 -> 0.875 (seeds 1, 2): ~700 moves a run; on seed 2 the
    #: substreams at depth >= 6 halved, the relays' early fetches did not fall (docs/benchmarks.md, h-nat6)
    leaf_yield: float = 0.0
    #: a candidate parent (not ours on the substream, not the broadcaster) costs this much
    #: over its free slots in its STATUS (``slot_weight / max(slots, 1)``, s): a newcomer and
    #: a switch prefer a parent with room over a nearly full hub, whose pushes queue behind
    #: its other children's (:meth:`oasis.core.tree.PushTree.candidates`; 0: off). Off: at
    #: 0.03, 1,000 mobile-churn viewers x 40 s at 0.5 s, 70 % behind NATs: offload 0.889 ->
    #: 0.893 and 0.876 -> 0.887 (seeds 1, 2), but without NATs all six comparison runs lost
    #: (mean 0.9603 -> 0.9557; docs/benchmarks.md, h-nat7)
    slot_weight: float = 0.0
    #: judge every candidate parent by how far its pushes fell behind what its STATUS
    #: predicted while it was our parent (:attr:`PeerState.overclaim`, beyond
    #: :data:`oasis.core.tree.OVERCLAIM_FREE`, added to its score on every substream): a
    #: peer that advertises a one-hop path and zero lag and relays late is not picked again
    #: once it has shown it (:meth:`oasis.core.tree.PushTree.parent_score`). Off: at 1,000 x 40 s
    #: of hostile-10k (20 % adversaries, playout 1.0 s) honest p95 555 -> 545 ms on seed 1, within
    #: the spread between seeds (docs/benchmarks.md, h-p95h); the honest runs were not measured
    parent_overclaim: bool = False
    #: rank repair candidates by what they did with our earlier REQUESTs: a peer whose STATUS
    #: claimed a chunk and that did not answer our REQUEST for it within the repair round
    #: (:attr:`PeerState.repair_misses`) is asked after the peers that did
    #: (:meth:`oasis.core.repair.RepairPicker.request`). Off: at 1,000 x 40 s of hostile-10k
    #: honest p95 555 -> 542 and 676 -> 660 ms (seeds 1, 2), origin requests -8 / -10 %, far from
    #: the 1.2 x target and within the spread between seeds; not yet measured on all six honest
    #: comparison runs (docs/benchmarks.md, h-p95h)
    repair_trust: bool = False
    #: judge a repair candidate only by the REQUESTs it could answer: those for chunks its
    #: STATUS claimed, left unanswered until the chunk's deadline (an answer that comes later
    #: counts as none). A peer with :data:`oasis.core.repair.SINK_MISSES` such misses in a row
    #: is *distrusted*: not asked for repairs for :data:`oasis.core.repair.SINK_BACKOFF` s
    #: (doubled per episode, up to 8x), then asked again on probation (one more miss: distrusted
    #: again). The broadcaster is never judged, and nobody is cut off for it (a full honest
    #: relay leaves the same record). A *repair sink* (a peer that claims every
    #: chunk and answers no REQUEST, or answers after the deadline) otherwise cost each of
    #: its neighbours a repair round per chunk asked of it (:meth:`oasis.core.repair.RepairPicker.request`;
    #: counters ``repair_misses_judged``, ``repair_sinks_distrusted``). Off: against the
    #: h-atk8 baseline the six honest comparison runs' mean rose 0.9453 -> 0.9477 (one run
    #: -0.0048) and the victims of 10 % sinks gained (0.942 -> 0.948, p95 396 -> 364 ms), but
    #: on top of ``first_wait`` (the default since) 4 of the 6 fell, mean 0.9603 -> 0.9567
    #: (docs/benchmarks.md, h-atk8 and "Session 25, the lead")
    repair_guard: bool = False
    #: rank a repair candidate whose STATUS claims the chunk but that has never given us a new
    #: verified chunk (:attr:`PeerState.given`: no push, no answer) after the holders that have
    #: (+:data:`oasis.core.repair.UNPROVEN_COST`): a withholder claims what it holds and answers
    #: no REQUEST, so a repair asked of it first cost a round. Off: hostile-10k at 1,000 x 40 s,
    #: seed 1, p95 584.3 -> 587.7 ms (issue 8, docs/benchmarks.md, h-p95h2)
    repair_proven: bool = False
    #: when the repair candidate picked is a claimed holder that has never given us a chunk
    #: (not the broadcaster), the same REQUEST goes to the next candidate too: the round is not
    #: lost on a peer that may never answer (a duplicate when both answer). Off: not measured
    #: in the simulator (issue 8, h-p95h2)
    repair_pair: bool = False
    #: a new parent on a substream, until its first push, is held to what its STATUS claimed:
    #: the repair timer waits its advertised lag + half the RTT (+ a margin) instead of the
    #: previous parent's learnt delay (:attr:`oasis.core.delay.DelayEstimator.fresh`). A
    #: withholder advertises a one-hop path and zero lag: taken as parent, its substream was
    #: repaired only after the old parent's learnt delay (up to the cap, 0.73 s at 1.0 s
    #: playout) for the FRESH_GRACE second and the ``withhold_run`` chunks it takes to drop it.
    #: Nor does its claimed path count as our depth in the repair ranking: its one hop left no
    #: neighbour "two hops closer" than us, so a chunk was asked only once a STATUS showed it
    #: (:meth:`oasis.core.repair.RepairPicker.request`). Off: hostile-10k at 1,000 x 40 s, seed 1,
    #: p95 584.3 -> 538.0 ms (1.49 -> 1.38 x the twin), but the six honest comparison runs fell
    #: in five, mean offload 0.9603 -> 0.9560 (issue 8, docs/benchmarks.md, h-p95h2)
    fresh_parent_lag: bool = False
    #: the narrow form of ``fresh_parent_lag``'s ranking part: a new parent that has not
    #: pushed once its own claim says its first push is overdue (taken more than its
    #: advertised lag + half the RTT + ``SILENT_PARENT_SLACK`` ago) no longer sets our depth in
    #: the repair ranking, so any neighbour fed on the substream may be asked. An honest new
    #: parent pushes within its claim and changes nothing; a withholder's one-hop claim left
    #: no neighbour "two hops closer" than us until a STATUS showed the chunk. On: hostile-10k
    #: at 1,000 x 40 s, seed 1, p95 602.2 -> 547.5 ms (1.52 -> 1.38 x the twin); the six honest
    #: comparison runs: three unchanged to the last digit, three up (+0.0012 to +0.0030)
    #: (issue 8, docs/benchmarks.md, "Session 27, the lead")
    silent_parent_open: bool = True
    #: a chunk of ``j`` goes first to the children that relay ``j`` further (a neighbour's
    #: STATUS path on ``j`` runs through us and then them), then to the others: a relay's
    #: pushes leave one after another on its uplink (a 4 Mbit/s chunk of a substream takes
    #: 16 ms at 8 Mbit/s, so the last of five children waits ~70 ms), and a relay served
    #: last makes its whole subtree wait (:meth:`oasis.core.swarm.Swarm._accept`; counter
    #: ``pushes_relay_first``). Only the order of our own pushes: a neighbour that claims a
    #: path through one of our children moves that child up our queue, no more. Off: the
    #: three stress files that miss 95 % at 0.5 s moved +0.005, -0.004, +0.006 (seed 1;
    #: stress-mobile, -4mbit, -far), within a run's noise; the comparison runs were not made
    #: (docs/benchmarks.md, h-stress1)
    push_relays_first: bool = False
    #: a viewer with fewer substream slots than this (what its upload cap lets it feed) does
    #: not ask the broadcaster for a substream while another neighbour is a candidate: the
    #: broadcaster's few slots go to viewers that feed more children, so the trees under
    #: them are a level shallower (a 4G viewer at 4 Mbit/s has ~5 slots, a fixed line 12;
    #: :meth:`oasis.core.tree.PushTree.candidates`, counter ``root_left_to_stronger``; 0: off).
    #: Off: at 8, 1,000 x 40 s at 0.5 s, the three stress files that miss 95 % rose +0.012,
    #: +0.002, +0.009 (seed 1; stress-mobile, -4mbit, -far; origin requests -12 %, -1 %, -13 %;
    #: stress-mobile seed 2 -0.009), but the six comparison runs (three files, seeds 1-2) moved -0.0024..+0.0009, mean
    #: -0.0003: a tie that loses by the letter of the rule (docs/benchmarks.md, h-stress1)
    root_min_slots: int = 0
    #: a substream at this depth or deeper (relays above us + 1) is looked at again
    #: ``start_look`` (or :data:`oasis.core.tree.DEEP_DWELL` when that is 0) after its last
    #: parent change, not ``switch_dwell``, and a STATUS that makes our path that deep arms a
    #: look that soon: the deep paths of the ramp and of re-parenting after departures are
    #: transient, and the origin's bytes go to them while they last
    #: (:meth:`oasis.core.tree.PushTree.select_parents`; 0: off). 6 by default (0 before
    #: 2026-12-04): 1,000 simulated mobile-churn viewers x 40 s at 0.5 s with 70 % behind NATs
    #: gave offload +0.005, +0.009, +0.012, +0.003 (seeds 1-4, mean 0.893 -> 0.900), p95
    #: -0.5..-1.3 ms, the origin's deliveries at depth >= 6 -25..-34 %; the six comparison
    #: runs without NATs mean 0.9602 -> 0.9610 (4 up, 1 tie, 1 down by 0.0005; p95 -3.5..+2.7
    #: ms); the simulator's CPU +40 % at 70 % NAT (docs/benchmarks.md, h-nat8). 4 since
    #: 2026-12-07 (session 60): 1,000 x 30 s at 70 % NAT with the qh3 window model, offload
    #: +0.006, +0.004, +0.012 (seeds 1-3), p50 -3..-7 ms; the six comparison runs +0.0004 on
    #: the mean (p95 lower in 5 of 6), hostile-10k and the testbed's topologies a tie; the
    #: 10,000-peer NAT run a tie too (0.88633 -> 0.88568): there every tree is deep and the
    #: looks find no shallower parent with room (docs/benchmarks.md, "Session 60")
    deep_look: int = 4
    #: a neighbour (not the broadcaster) whose latest STATUS claims a one-hop path (the
    #: broadcaster, then it) at zero lag on at least this many substreams is *doubted*
    #: (:attr:`PeerState.doubted`; 0: off): it is a parent only where no undoubted
    #: candidate is, and as our parent it is replaced at the next look once one is
    #: (:meth:`oasis.core.tree.PushTree.candidates`, ``parents_doubt_passed``); a repair asks
    #: it only for chunks its ``have`` shows, not by its claimed path or lag; and as our
    #: parent its claimed path does not set our depth in the repair ranking
    #: (:meth:`oasis.core.repair.RepairPicker.request`). A withholder or a liar claims exactly
    #: that on every substream, to be taken as the best parent there is; an honest relay one
    #: hop deep is fed one substream by the broadcaster (``root_spread``) and measures some
    #: lag, sent as at least 1 ms even where a hop takes less (loopback, a LAN:
    #: :meth:`oasis.core.delay.DelayEstimator.status_lags`). 3 by default
    #: (0 before h-odoubt): hostile-10k at 1,000 x 40 s (20 % adversaries, 1.0 s playout),
    #: honest p95 527.6 -> 411.2, 637.1 -> 490.7, 585.3 -> 441.0 ms (seeds 1-3; 1.37 -> 1.07 x
    #: the twin on seed 1), offload 0.976-0.980 -> 0.983-0.984; the twin and the six honest
    #: comparison runs (three files, seeds 1-2, 0.5 s) unchanged to the last digit: no honest
    #: node is doubted there (docs/benchmarks.md, "one_hop_doubt (h-odoubt)")
    one_hop_doubt: int = 3
    #: added to a candidate parent's score per level beyond :data:`oasis.core.tree.DEPTH_FREE`
    #: that taking it would put us at (s; 0: off): a newcomer's and a switch's parent chosen
    #: by depth as well as by expected arrival (:meth:`oasis.core.tree.PushTree.candidates`).
    #: Off: not measured in the simulator (h-nat8 ran out of time)
    depth_weight: float = 0.0
    use_origin: bool = True
    # ---- limits on what a peer may make us do (every one has a counter) ----
    #: a peer may pull at most this multiple of the stream rate (bytes, token bucket) ...
    #: (1.0: at 2,000 simulated peers with 20 % hostile the honest offload rose 0.930 ->
    #: 0.943 against 2.0; honest runs at 1.0 s and 0.5 s were unchanged)
    request_share: float = 1.0
    #: ... with a burst of this many seconds of the stream (a joiner's backfill)
    request_burst: float = 4.0
    #: chunks older than this (signed time, s) are not served on REQUEST: no viewer plays them
    request_horizon: float = 8.0
    max_held_per_peer: int = 64  #: requests held for one peer
    max_held_total: int = 1024  #: requests held for all peers together
    #: refusals (over budget, out of window, over a cap) tolerated per ``flood_window`` s
    flood_limit: int = 64
    flood_window: float = 10.0
    #: a peer that refused our REQUEST (MISSING with ``refused``: its budget for us is
    #: spent) is not asked again for this long (s; doubled per refusal in a row, up to
    #: 8x), so an honest requester never piles up the refusals that read as a flood
    refusal_backoff: float = 0.5
    #: a claimed seq more than this many seconds of stream above the signed clock is a lie
    claim_slack: float = 2.0
    lie_limit: int = 3  #: disproved claims before the peer is dropped
    start_max_age: float = 5.0  #: a start keyframe's signed time is at most this old (s)
    probe_timeout: float = 2.0  #: a start probe unanswered this long is a broken claim
    max_probes: int = 4  #: start probes in flight
    #: a neighbour our JOIN asked for a start is not probed for this long (at least 2 RTTs)
    start_wait: float = 0.3
    #: a parent that pushed none of this many consecutive chunks of its substream (we got
    #: them from repairs or the origin first) is suspected of withholding ...
    withhold_run: int = 3
    #: ... judged ``withhold_confirm`` s + the RTT to it after the last of them, if it pushed
    #: nothing of that substream meanwhile (a late duplicate clears it; counter
    #: ``withhold_cleared``). On a lossy link (4G, 1 %) QUIC holds the chunks behind a lost
    #: packet until it is repaired, and the origin covered three in a row: in the 30-node
    #: testbed (seed 3, one run each) honest parents were dropped as withholders 174 times in
    #: 60 s, struck 125 times, 3 honest relays cut off; with 0.1 s: 8, 6, none (133 cleared).
    #: 0: judged at once, as before 2026-12-07
    withhold_confirm: float = 0.1
    #: ... and not chosen again for that substream for this long (s; longer per strike)
    withhold_backoff: float = 20.0
    #: withholdings confirmed by its own STATUS (it claims the chunks) before the peer is dropped
    #: (5: at 2,000 simulated peers 3 cut off 3 honest relays, 5 none, and offload was higher)
    withhold_limit: int = 5
    #: a parent dropped for a feed lost past ``subscribe_timeout`` before it served us is
    #: not picked again for that substream for a while (``tree.flap_backoff``;
    #: ``parents_flapping`` counts the drops either way)
    flap_backoff: bool = True


# ---- actions ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Send:
    peer: bytes
    message: wire.Message


@dataclass(frozen=True, slots=True)
class Push:
    peer: bytes
    chunk: wire.ChunkMsg
    deadline: float


#: ``FetchOrigin.seq`` for "the latest keyframe": the adapter reads the origin's
#: ``latest.json`` and fetches the keyframe it names, then calls ``on_origin(that seq,
#: chunk)`` (or ``on_origin(ORIGIN_LATEST, None)`` when either step fails)
ORIGIN_LATEST = -1


@dataclass(frozen=True, slots=True)
class FetchOrigin:
    seq: int  #: a chunk, or ORIGIN_LATEST (a start from the origin)
    deadline: float


@dataclass(frozen=True, slots=True)
class Deliver:
    chunk: wire.ChunkMsg
    source: str  #: p2p | broadcaster | origin | self
    peer: bytes | None
    at: float


@dataclass(frozen=True, slots=True)
class Skip:
    seq: int  #: given up: not received before its deadline
    #: given up as *not made*: nothing at or after it was held or claimed by any neighbour
    #: UNKNOWN_DEFERRALS rechecks past its deadline (a stalled or dead broadcaster; the
    #: clock expected it). Not a loss: a node's continuity does not count it
    unmade: bool = False
    #: seqs this one stands for: ``seq`` and the ``count - 1`` right below it, a run far
    #: below the window (a node that fell behind by hours gave them up one action each:
    #: 872,426 for 8 h, 8 s of its event loop; found 2026-12-06). Only counted: below the
    #: window nothing waits on them (the gateway skips past ``RepairPicker.skipped_upto``)
    count: int = 1


@dataclass(frozen=True, slots=True)
class DropPeer:
    peer: bytes
    code: ErrorCode
    reason: str


SwarmAction = Send | Push | FetchOrigin | Deliver | Skip | DropPeer


@dataclass
class PeerState:
    key: bytes
    tag: bytes
    status: wire.Status | None = None
    children_mask: int = 0  #: substreams this peer subscribed from us
    parent_mask: int = 0  #: substreams we receive from this peer
    pending_mask: int = 0  #: substreams we asked it for, not yet answered
    pending_since: float = 0.0
    rejected_until: dict[int, float] = field(default_factory=dict)
    budget: PullBudget = field(default_factory=lambda: PullBudget(0.0))
    bad_chunks: int = 0
    lies: int = 0  #: its claims we disproved (implausible STATUS, claimed chunk not given)
    #: times it withheld a substream while its STATUS claimed the chunks (strikes)
    withholds: int = 0
    #: times it was dropped as a silent parent (the first is forgiven: asked again at once)
    silences: int = 0
    #: times it was dropped as a parent for a feed lost past ``subscribe_timeout`` before it
    #: served us (each backs it off longer: ``tree.flap_backoff``)
    flaps: int = 0
    #: first seq of a withheld run not yet judged against its STATUS (-1: none)
    withheld_seq: int = -1
    #: its STATUS path on that substream when it withheld (changed since: it was starved)
    withheld_path: list[bytes] = field(default_factory=list)
    is_broadcaster: bool = False
    rtt: float = -1.0  #: smoothed RTT to this peer (s), from the transport; -1 = unknown
    #: when we last told it UNSUBSCRIBE for pushes we never asked of it (rate limit)
    stray_told_at: float = -INF
    #: it refused a REQUEST of ours (``refusal_backoff``): not asked again before this
    refused_until: float = -INF
    refusal_streak: int = 0  #: its refusals in a row (each doubles the back-off, up to 8x)
    #: when our refusal of its REQUESTs opened the current episode (it owes us
    #: ``refusal_backoff`` of silence; requests in flight then are no strikes)
    refusal_opened: float = -INF
    #: ``parent_overclaim``: how much later its pushes reached us than its STATUS said they
    #: would (its advertised lag + half the RTT), smoothed (gain 1/8 from 0; s), learnt while
    #: it was our parent on any substream and kept when it is not
    overclaim: float = 0.0
    #: ``repair_trust``: our repair REQUESTs for chunks its STATUS said it held that it left
    #: unanswered until we asked the next peer (halved by each answer in time; at most
    #: :data:`oasis.core.repair.REPAIR_MISS_MAX`)
    repair_misses: int = 0
    #: ``repair_guard``: our repair REQUESTs to it for chunks its STATUS claimed, not answered
    #: yet: seq -> the chunk's deadline here (at most :data:`oasis.core.repair.SINK_ASKED_MAX`)
    sink_asked: dict[int, float] = field(default_factory=dict)
    sink_due: float = INF  #: a lower bound of the deadlines in ``sink_asked``
    sink_misses: int = 0  #: of those, left unanswered at their deadline in a row
    sink_missed: int = 0  #: ... in all
    sink_answers: int = 0  #: answered before their deadline, in all
    sink_late: int = 0  #: answered after their deadline, in all
    #: new verified chunks it sent us (pushes and answers; ``repair_proven``, ``repair_pair``:
    #: a peer that gave us none is not yet known to answer). Not kept across a rejoin: it only
    #: counts in the peer's favour
    given: int = 0
    #: not asked for repairs before this (distrusted), and the times it was
    distrusted_until: float = -INF
    distrusts: int = 0
    #: ``one_hop_doubt``: its latest STATUS claims a one-hop path at zero lag on at least
    #: ``one_hop_doubt`` substreams (judged anew at each STATUS; not kept across a rejoin)
    doubted: bool = False
    #: seqs it REQUESTed of us on substreams it was our parent on (the newest
    #: :data:`ECHO_KEPT`): its copy of one of them, of the pushes we suspect it of withholding,
    #: is our own chunk echoed back, not a push (``parent_echoes``)
    asked_back: list[int] = field(default_factory=list)
    #: ``upload_max_kbps``: the lowest hop delay seen to it as our child (its STATUS lag on a
    #: substream we feed it, less ours; s; INF: none yet): the hop's own cost (its path, the
    #: clocks' offset), over which a sample is our queue (:mod:`oasis.core.uplink`)
    hop_low: float = INF

@dataclass(slots=True)
class PeerAccounts:
    """What a peer's conduct earned it, kept when it leaves and given back if it joins again
    (``Swarm._departed``): its pull budget, strikes, lies, back-offs and the judgements of
    the switches. Not its last STATUS or masks (a record, not the PeerState)."""
    budget: PullBudget
    bad_chunks: int
    lies: int
    withholds: int
    silences: int
    flaps: int
    rejected_until: dict[int, float]
    refusal_opened: float
    overclaim: float
    repair_misses: int
    sink_misses: int
    sink_missed: int
    sink_answers: int
    sink_late: int
    distrusted_until: float
    distrusts: int

    @staticmethod
    def of(st: PeerState) -> PeerAccounts:
        return PeerAccounts(st.budget, st.bad_chunks, st.lies, st.withholds, st.silences, st.flaps,
                            st.rejected_until, st.refusal_opened, st.overclaim, st.repair_misses,
                            st.sink_misses, st.sink_missed, st.sink_answers, st.sink_late,
                            st.distrusted_until, st.distrusts)

    def give_back(self, st: PeerState) -> None:
        st.budget, st.bad_chunks, st.lies, st.withholds = self.budget, self.bad_chunks, self.lies, self.withholds
        st.silences, st.flaps, st.rejected_until = self.silences, self.flaps, self.rejected_until
        st.refusal_opened, st.overclaim, st.repair_misses = self.refusal_opened, self.overclaim, self.repair_misses
        st.sink_misses, st.sink_missed, st.sink_answers = self.sink_misses, self.sink_missed, self.sink_answers
        st.sink_late, st.distrusted_until, st.distrusts = self.sink_late, self.distrusted_until, self.distrusts


@dataclass
class SwarmCounters:
    duplicates: int = 0
    duplicate_bytes: int = 0
    bad_chunks: int = 0
    requests_sent: int = 0
    #: repair REQUESTs on a late substream sent to a neighbour whose STATUS did not show
    #: the chunk but whose advertised lag says it has had it by now (``RepairPicker.request``)
    requests_predicted: int = 0
    #: ``repair_pair``: repair REQUESTs sent to a second peer in the same round (the first
    #: picked had never given us a chunk)
    requests_paired: int = 0
    #: (``silent_parent_open``) repair rounds that asked past a new parent overdue with its first push
    repairs_past_silent_parent: int = 0
    requests_served: int = 0
    #: CANCELs sent (a chunk came while other peers still had our REQUEST for it), and
    #: CANCELs heard that dropped a held request / a queued answer / found nothing
    #: (answered already, or never asked)
    cancels_sent: int = 0
    cancels_held: int = 0
    cancels_queued: int = 0
    cancels_late: int = 0
    missing_sent: int = 0
    origin_fetches: int = 0
    origin_starts: int = 0  #: FetchOrigin(ORIGIN_LATEST): no start from peers in time
    #: of those, the keyframe's fetch time primed the learnt origin fetch time
    #: (:meth:`oasis.core.repair.RepairPicker.origin_done`)
    origin_start_primed: int = 0
    #: of those, asked at ``origin_start_lonely`` (no neighbour then) instead of later
    origin_lonely_starts: int = 0
    #: wants made before our first frame and due already at it (a late start), given
    #: ``start_grace`` after it instead of skipped at once
    start_graced: int = 0
    #: wants whose origin fetch was put after the fixed fallback to wait for a late
    #: parent's push (``origin_wait``)
    origin_waits: int = 0
    #: wants asked of the origin before the fixed fallback because a fetch takes longer
    #: than ``origin_margin`` (``origin_adapt``)
    origin_adapted: int = 0
    #: origin fetches a relay made at its repair round for its children (``relay_origin_early``)
    origin_early: int = 0
    #: origin fetches a relay made for its children at the last moment its copy could reach
    #: them before their fallback (``relay_cover``; retries after a 404 not counted)
    origin_cover: int = 0
    #: origin fetches that failed for a chunk that may not be made yet (nothing at or after
    #: it held or claimed): not retried before its deadline
    origin_not_retried: int = 0
    #: in a stall (the origin failed a chunk not made yet, nothing newer since), origin
    #: fetches not made for chunks nobody holds or claims, and the probes made instead
    origin_held: int = 0
    origin_probes: int = 0
    skipped: int = 0
    #: chunks from peers below the log's window (an earlier run's replayed, a relay far
    #: behind): dropped before their signature is checked
    chunks_too_old: int = 0
    #: wants given up as not made (``Skip.unmade``: a stalled or dead broadcaster)
    skipped_unmade: int = 0
    late: int = 0
    parent_switches: int = 0
    #: parents left by a leaf in time for another candidate, its full parent's slot freed
    #: for a relay (``leaf_yield``)
    leaf_yields: int = 0
    #: pushes sent ahead of the other children because the child relays the substream
    #: further (``push_relays_first``)
    pushes_relay_first: int = 0
    #: parent looks that left the broadcaster out for another candidate: we feed fewer than
    #: ``root_min_slots`` children
    root_left_to_stronger: int = 0
    #: STATUSes of a parent that made our path ``deep_look`` deep, each arming an early look
    deep_looks: int = 0
    #: (``one_hop_doubt``) STATUSes judged doubted (a one-hop path at zero lag on at least
    #: ``one_hop_doubt`` substreams), and the times a doubted neighbour was passed over for
    #: an undoubted candidate that it outscored, or replaced as our parent by one
    statuses_one_hop_doubted: int = 0
    parents_doubt_passed: int = 0
    #: REQUESTs refused: over the peer's pull budget / for a chunk outside the live
    #: window / over the held-request caps (per peer, total)
    requests_refused: int = 0
    requests_out_of_window: int = 0
    requests_claimed: int = 0  #: REQUESTs for a seq the asker's own STATUS says it holds
    held_refused: int = 0
    #: refusals of REQUESTs sent before the peer could hear our last refusal (no strike)
    refusals_in_flight: int = 0
    flooders_dropped: int = 0  #: peers cut off for asking past their budget
    #: chunks for a held seq that differ from the held copy (verified, not trusted)
    duplicates_mismatched: int = 0
    #: our parent's copies of chunks we held that came past their deadline, not of the pushes
    #: it was suspected of withholding: no service (a parent pushing only stale copies kept
    #: every substream it held: attack audit, 2026-12-07)
    parent_stale_copies: int = 0
    #: copies from a parent we suspect of withholding, of the pushes we suspect, that it had
    #: REQUESTed of us (``PeerState.asked_back``): our own chunk echoed back clears no
    #: suspicion and teaches no delay
    parent_echoes: int = 0
    probes_sent: int = 0  #: start probes (REQUEST of a peer's claimed keyframe)
    starts_served: int = 0  #: JOINs asking for a start answered with our latest keyframe
    starts_refused: int = 0  #: ... not answered: the joiner's pull budget was spent
    #: peers that joined again after leaving (LEAVE, a closed link) and got back their
    #: accounts (pull budget, strikes, lies, back-offs) instead of fresh ones
    peers_rejoined: int = 0
    claims_implausible: int = 0  #: STATUS claiming seqs the signed clock rules out
    claims_broken: int = 0  #: claimed chunks answered MISSING or never sent
    #: ``upload_max_kbps``: the uplink probe raised the upload cap / cut it back
    upload_raised: int = 0
    upload_cut: int = 0
    #: copies to a child the transport dropped unsent at their deadline (``on_push_dropped``)
    pushes_dropped: int = 0
    #: children's substreams we ended (UNSUBSCRIBE to the child) because the probe's cut
    #: left fewer slots than they took / parents that ended ours so
    children_shed: int = 0
    parents_shed: int = 0
    liars_dropped: int = 0
    #: verified chunks before the start beyond the window's worth (not delivered at the start)
    early_unrecorded: int = 0
    #: parents dropped for a substream because they pushed none of ``withhold_run``
    #: consecutive chunks that then came from elsewhere (§ 9.2)
    parents_withholding: int = 0
    withhold_strikes: int = 0  #: of those, confirmed by the parent's STATUS claiming the chunks
    #: suspected withholders (``withhold_run`` chunks from elsewhere) that pushed a chunk of the
    #: substream, a late duplicate included, within ``withhold_confirm`` + the RTT: kept
    withhold_cleared: int = 0
    withholders_dropped: int = 0  #: peers cut off past ``withhold_limit`` strikes
    #: substreams a SUBSCRIBE_ACK accepted after we stopped asking (the SUBSCRIBE had timed
    #: out): unsubscribed at once, or the peer would push to us and book its slots for ever
    acks_unwanted: int = 0
    #: chunks pushed by a peer we neither subscribed to on that substream nor asked for
    #: the chunk (it counts us as a child, we do not count it as a parent: a message lost
    #: with a closed duplicate link): told UNSUBSCRIBE, at most once a second per peer
    pushes_unsolicited: int = 0
    #: parents dropped (and asked again) for pushing nothing for ``SILENT_PARENT`` while
    #: their STATUS ran ahead: they had lost our subscription (the mirror of the above)
    parents_silent: int = 0
    #: parents dropped for a feed lost for longer than ``subscribe_timeout`` before they
    #: served us: not picked again for that substream for a back-off that grows per such
    #: drop of the same peer (a liar cannot make us take and drop it over and over)
    parents_flapping: int = 0
    #: wants past their (extrapolated) deadline not given up because nothing at or after
    #: them was held or claimed: the chunk may not be made yet (a slow broadcaster)
    wants_deferred: int = 0
    #: wants above the broadcaster's end marker, dropped when it came (never made)
    wants_ended: int = 0
    #: end markers taken (a stream ended; again after each restart that ended)
    ends: int = 0
    #: end markers held but taken as no end: not the newest seq held, or older than
    #: END_MAX_AGE (an earlier run's, replayed)
    ends_ignored: int = 0
    #: wants made due earlier by a newer chunk's signed time (``want_bound``)
    wants_moved_up: int = 0
    #: MISSING answers with ``refused``: the peer refused our REQUEST (we back off)
    refusals_heard: int = 0
    #: ``repair_trust``: repair REQUESTs to a peer that claimed the chunk, unanswered when
    #: the next peer was asked
    repairs_unanswered: int = 0
    #: ``repair_guard``: repair REQUESTs for a chunk the peer's STATUS claimed, unanswered at the
    #: chunk's deadline (or answered after it); peers distrusted for it (not asked for repairs
    #: for a while; the reasons: ``Swarm.repair.distrust_log``)
    repair_misses_judged: int = 0
    repair_sinks_distrusted: int = 0
