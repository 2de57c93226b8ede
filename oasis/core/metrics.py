"""Measurements, computed in one place for the demo, the simulator and /metrics.

Definitions (docs/benchmarks.md repeats them):

* **delivery latency** of a chunk at a viewer: time it was verified at the
  viewer minus the broadcaster's wall-clock time at which it was complete.
  Counted for chunks completed after the viewer joined.
* **continuity**: of the chunks completed after the viewer joined whose
  deadline has passed, the share that arrived before their deadline. A record
  taken at ``at`` (``to_json(at=...)``) is judged only on the chunks whose
  deadline had passed by then: a later one is still undecided in it.
* **offload**: media bytes viewers got from other viewers ÷ all media bytes
  viewers got (from viewers, from the broadcaster's node over OFTP, and from
  the HTTP origin/CDN). Bytes from the broadcaster's node are reported apart.
* **startup**: join → first playable keyframe chunk verified.
* **protocol overhead**: OFTP bytes that are not media payload ÷ media payload
  bytes (control messages, chunk headers and signatures, duplicates' headers).
"""

from __future__ import annotations

import dataclasses
import math
from array import array
from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class SortedValues(Protocol):
    """A sorted list or a sorted numpy array."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int, /) -> Any: ...

LATE = "late"

_FIELDS: dict[type, tuple[str, ...]] = {}  #: a counters class's field names (a handful of classes)


def counter_dict(counters: Any) -> dict[str, Any]:
    """A dataclass of counters as a dict, as ``dataclasses.asdict`` gives it. Counters are
    flat ints: copied as they are, without ``asdict``'s recursive deep copy of every value,
    which was most of a node's ``/stats`` read (7.7 ms of CPU under cProfile, 2.1 ms with
    this copy instead; 4 % of a testbed viewer's CPU at one read every 2 s; docs/benchmarks.md,
    "Session 57"). A class with a field that is not a plain scalar goes through ``asdict``."""
    names = _FIELDS.get(type(counters))
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(counters))
        _FIELDS[type(counters)] = names
    out = {n: getattr(counters, n) for n in names}
    for v in out.values():
        if v is not None and type(v) not in (int, float, bool, str):
            return dataclasses.asdict(counters)
    return out


class ViewerRecord:
    """Per-viewer record of one stream, fed by the node and the simulator alike.

    Compact: a delivery costs 12 bytes in flat ``array``s (seq, latency as a
    32-bit float, and the seq again when on time), so the simulator's 10^7
    deliveries fit in memory; ``oasis.sim.records.summarize`` reads the arrays
    directly with numpy, :func:`summarize` reads ``to_json()``.
    """

    __slots__ = ("joined_at", "left_at", "playout_delay", "started_at", "lat_seq", "lat",
                 "on_time", "bytes_by_source", "skipped", "verified", "given_up", "unmade",
                 "unmade_seqs", "late_by_source")

    #: a long-running node keeps the last this many entries of each array (trimmed when twice
    #: as many: ~2.4 h at 33 ms chunks, ~3 MB); the simulator's runs never reach it. The
    #: totals (``verified``, ``given_up``) count everything. Without it a viewer's record grew
    #: by 12 bytes a chunk for as long as it ran (~30 MB a day), and /stats with it.
    KEEP = 1 << 18

    def __init__(self, joined_at: float, playout_delay: float) -> None:
        self.joined_at = joined_at
        self.left_at = math.inf  #: the simulator judges a viewer that left up to here
        self.playout_delay = playout_delay
        self.started_at: float | None = None  #: first keyframe verified
        self.lat_seq = array("i")  #: seqs of the chunks completed after the join, in arrival order
        self.lat = array("f")  #: their latencies, seconds
        self.on_time = array("i")  #: seqs of those that arrived by their deadline
        self.bytes_by_source: dict[str, int] = {}
        #: chunks made after the join that arrived after their deadline, by the source that
        #: brought them first (``p2p``, ``origin``, ``broadcaster``): where the late ones came
        #: from (an origin fetch may deliver past its deadline: ``ORIGIN_OVERTIME``)
        self.late_by_source: dict[str, int] = {}
        self.skipped = array("i")  #: seqs given up on
        self.verified = 0  #: chunks completed after the join and verified here, in all
        self.given_up = 0  #: seqs given up on, in all
        #: seqs given up as not made (a stalled or dead broadcaster: ``Skip.unmade``), in
        #: all: not in ``skipped`` or ``given_up`` (not a loss)
        self.unmade = 0
        #: the last UNMADE_KEPT of those seqs (None until one): one that arrives after all was
        #: made -- a broadcaster stopped for a while and then sent what it had -- and is
        #: counted as given up instead when it came late (it was counted as not made, and as
        #: received); one on time (made after the pause) is only received
        self.unmade_seqs: set[int] | None = None

    #: unmade seqs remembered, at most (the oldest half forgotten when full)
    UNMADE_KEPT = 4096

    def delivered(self, seq: int, chunk_time: float, at: float, source: str, nbytes: int,
                  keyframe: bool) -> None:
        if self.started_at is None and keyframe:
            self.started_at = at
        if self.unmade_seqs is not None and seq in self.unmade_seqs:
            # made after all: a late one (made before it was given up) is a skip; one on
            # time was made late -- a source that paused, then went on -- and plays (the
            # gateway's player waits at a seq given up as not made until a newer one is
            # held): it was counted skipped as well as played (found 2026-12-07 from outside)
            self.unmade_seqs.discard(seq)
            self.unmade -= 1
            if at > chunk_time + self.playout_delay:
                self.given_up += 1
                self.skipped.append(seq)
        b = self.bytes_by_source
        b[source] = b.get(source, 0) + nbytes
        if chunk_time >= self.joined_at:
            self.verified += 1
            self.lat_seq.append(seq)
            self.lat.append(at - chunk_time)
            if at <= chunk_time + self.playout_delay:
                self.on_time.append(seq)
            else:
                late = self.late_by_source
                late[source] = late.get(source, 0) + 1
            if len(self.lat_seq) > 2 * self.KEEP:
                for a in (self.lat_seq, self.lat, self.on_time):
                    del a[:-self.KEEP]

    def skip(self, seq: int, unmade: bool = False, count: int = 1) -> None:
        """``seq`` given up (``unmade``: not made); ``count`` > 1: it stands for that many
        (``Skip.count``), counted in ``given_up`` and listed once."""
        if unmade:
            self.unmade += count  # (a run: its last seq kept, below)
            if self.unmade_seqs is None:
                self.unmade_seqs = set()
            self.unmade_seqs.add(seq)
            if len(self.unmade_seqs) > self.UNMADE_KEPT:
                self.unmade_seqs = set(sorted(self.unmade_seqs)[self.UNMADE_KEPT // 2:])
            return
        self.given_up += count
        self.skipped.append(seq)
        if len(self.skipped) > 2 * self.KEEP:
            del self.skipped[:-self.KEEP]

    @property
    def latencies(self) -> dict[int, float]:
        """seq -> latency (seconds), in arrival order (built on each call)."""
        return dict(zip(self.lat_seq, self.lat, strict=True))

    def continuity(self, produced: dict[int, float], now: float) -> tuple[int, int]:
        """(on time, due) over chunks produced after join whose deadline passed by ``now``."""
        on_time = set(self.on_time)
        due = ok = 0
        for seq, t in produced.items():
            if t < self.joined_at or t + self.playout_delay > now:
                continue
            due += 1
            if seq in on_time:
                ok += 1
        return ok, due

    def to_json(self, since: int | None = None, at: float | None = None) -> dict[str, Any]:
        """The record; with ``since``, only the chunks from that seq on (a bounded window);
        with ``at``, the (broadcaster) time it is taken, kept as ``at``: :func:`summarize`
        and :func:`missed_by_phase` judge it only on chunks due by then."""
        lo = -(1 << 62) if since is None else since
        out: dict[str, Any] = {} if at is None else {"at": at}
        return out | {
            "joined_at": self.joined_at,
            "started_at": self.started_at,
            "latencies": {str(k): v for k, v in zip(self.lat_seq, self.lat, strict=True) if k >= lo},
            "on_time": sorted({s for s in self.on_time if s >= lo}),
            "bytes": dict(self.bytes_by_source),
            "late_by_source": dict(self.late_by_source),  # (all of them, not from ``since``)
            "skipped": sorted({s for s in self.skipped if s >= lo}),
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for an empty list."""
    return nearest_rank(sorted(values), q)


def rank_figures(values: Iterable[float], scale: float = 1.0) -> dict[str, float] | None:
    """p50 / p95 / max of ``values`` times ``scale`` (nearest rank, to 0.1) and their count;
    None if there are none (an operator's figures: a CDN edge's feed lag, ...)."""
    v = sorted(values)
    if not v:
        return None
    return {"p50": round(nearest_rank(v, 50) * scale, 1), "p95": round(nearest_rank(v, 95) * scale, 1),
            "max": round(v[-1] * scale, 1), "n": len(v)}


def ms_figures(seconds: Iterable[float]) -> dict[str, float] | None:
    """:func:`rank_figures` of ``seconds`` in ms (``/stats`` ``loop_lag_ms``, ``origin_fetch_ms``)."""
    return rank_figures(seconds, 1000.0)


def judged_until(v: dict[str, Any], now: float) -> float:
    """Chunks due by this time are judged in record ``v``: ``now``, or the time the record
    was taken (``at``) if earlier. A chunk due after the record was taken has not arrived
    in it, arrive as it may: judged up to a ``now`` taken seconds after the viewers' /stats
    (the testbed gathers the broadcaster's, the edges' and every viewer's /metrics first),
    a 30-viewer run counted ~18 such chunks a viewer missed (docs/benchmarks.md, session 40)."""
    at = v.get("at")
    return at if isinstance(at, (int, float)) and at < now else now


def summarize(viewers: list[dict[str, Any]], produced: dict[int, float], now: float,
              playout_delay: float) -> dict[str, Any]:
    """Swarm-wide figures from viewers' ``ViewerRecord.to_json()`` outputs.

    ``produced`` maps every chunk the broadcaster made to its completion time; a chunk
    counts once its deadline passed by ``now`` (and by the record's ``at``:
    :func:`judged_until`).
    """
    lat: list[float] = []
    startup: list[float] = []
    ok = due = ok_playing = due_playing = 0
    bytes_total: dict[str, int] = {}
    for v in viewers:
        joined = v["joined_at"]
        started = v["started_at"]
        lat.extend(v["latencies"].values())
        if started is not None:
            startup.append(started - joined)
        on_time = set(v["on_time"])
        until = judged_until(v, now)
        for seq, t in produced.items():
            if t < joined or t + playout_delay > until:
                continue
            due += 1
            ok += seq in on_time
            if started is None or t >= started:
                due_playing += 1
                ok_playing += seq in on_time
        for src, n in v["bytes"].items():
            bytes_total[src] = bytes_total.get(src, 0) + n
    lat.sort()
    startup.sort()
    out = figures(lat, startup, ok, due, bytes_total)
    # the same, over the chunks made after each viewer's first frame: playback alone, its
    # start-up (reported as startup_ms) left out; a viewer that never started counts whole
    out["continuity_playing"] = round(ok_playing / due_playing, 5) if due_playing else 0.0
    return out


#: a viewer's first this many seconds of playback count as its start in :func:`missed_by_phase`
SETTLE_S = 5.0
#: the phases of :func:`missed_by_phase`, in time order
MISSED_PHASES = ("never_started", "before_start", "before_frame", "settling", "playing")


def missed_by_phase(v: dict[str, Any], produced: dict[int, float], now: float,
                    playout_delay: float, start_seq: int | None) -> dict[str, int]:
    """Where a viewer's missed chunks fall: those ``summarize`` counts against continuity
    from the join (made after it, deadline passed by ``now`` and by the record's ``at``,
    not arrived by it).

    * ``never_started``: the viewer had no first frame;
    * ``before_start``: made before the keyframe it started at (``start_seq``): its start
      is later than its join, these were never played;
    * ``before_frame``: from that keyframe on, made before the first frame arrived
      (``started_at``): a late start, they were due before or soon after it;
    * ``settling``: made in the first ``SETTLE_S`` s after the first frame;
    * ``playing``: later.

    Each phase but the first is split into ``_late`` (arrived after its deadline) and
    ``_lost`` (never arrived); ``due`` is what continuity divides by. ``v`` is a
    ``ViewerRecord.to_json()``."""
    out = {"due": 0, "never_started": 0}
    for ph in MISSED_PHASES[1:]:
        out[f"{ph}_late"] = out[f"{ph}_lost"] = 0
    joined = v["joined_at"]
    started = v["started_at"]
    on_time = set(v["on_time"])
    arrived = {int(k) for k in v["latencies"]}
    until = judged_until(v, now)
    for seq, t in produced.items():
        if t < joined or t + playout_delay > until:
            continue
        out["due"] += 1
        if seq in on_time:
            continue
        if started is None or start_seq is None:
            out["never_started"] += 1
            continue
        if seq < start_seq:
            ph = "before_start"
        elif t < started:
            ph = "before_frame"
        elif t < started + SETTLE_S:
            ph = "settling"
        else:
            ph = "playing"
        out[f"{ph}_{'late' if seq in arrived else 'lost'}"] += 1
    return out


def nearest_rank(sorted_values: SortedValues, q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (list or numpy array)."""
    n = len(sorted_values)
    if n == 0:
        return 0.0
    return float(sorted_values[max(0, min(n - 1, math.ceil(q * n / 100 - 1e-9) - 1))])


def figures(lat: Sequence[float], startup: Sequence[float], ok: int, due: int,
            bytes_total: dict[str, int]) -> dict[str, Any]:
    """The swarm-wide figures from sorted latencies and startup times (seconds), the
    continuity counts and media bytes by source — one definition for demo and simulator."""
    got = sum(bytes_total.values())
    return {
        "latency_ms": {p: round(nearest_rank(lat, q) * 1000, 1)
                       for p, q in (("p50", 50), ("p95", 95), ("p99", 99))}
        | {"max": round(float(lat[-1]) * 1000, 1) if len(lat) else 0.0},
        "continuity": round(ok / due, 5) if due else 0.0,
        "offload_ratio": round(bytes_total.get("p2p", 0) / got, 5) if got else 0.0,
        "startup_ms": {"p50": round(nearest_rank(startup, 50) * 1000, 1),
                       "p95": round(nearest_rank(startup, 95) * 1000, 1)},
        "bytes": {"p2p": bytes_total.get("p2p", 0), "origin": bytes_total.get("origin", 0),
                  "broadcaster": bytes_total.get("broadcaster", 0)},
        "chunks_due": due,
        "chunks_on_time": ok,
        "viewers_started": len(startup),
    }


def start_figures(per_viewer: list[dict[str, Any]]) -> dict[str, Any]:
    """Real viewers' starts (the demo's ``per_viewer``, the fidelity harness and the testbed):
    per step of ``LiveStream.start_trace`` the median and
    the max over the viewers that reached it (s from the join), how many reached it,
    and where the start keyframes came from; ``fed``: when a parent had fed a viewer on every
    substream (``fed_s``), the same way."""
    steps: dict[str, list[float]] = {}
    sources: dict[str, int] = {}
    for pv in per_viewer:
        for k, v in (pv.get("start_trace") or {}).items():
            steps.setdefault(k, []).append(float(v))
        if pv.get("fed_s") is not None:
            steps.setdefault("fed", []).append(float(pv["fed_s"]))
        src = pv.get("start_source") or "none"
        sources[src] = sources.get(src, 0) + 1
    out: dict[str, Any] = {}
    for k, vs in steps.items():
        vs.sort()
        out[k] = {"p50": round(vs[len(vs) // 2], 3), "max": round(vs[-1], 3), "n": len(vs)}
    out["sources"] = sources
    return out
