"""How much upload a relay offers: a cap probed against its children's hop delay, sans-I/O.

Theory of operation
-------------------
A node does not know its uplink. The default cap (4 x the bitrate) is a guess that wastes a
fibre line and overloads a weak one; the simulator found a relay offering 8 x instead of 4 x
the largest lever on the swarm's offload left (docs/simulation.md), and a 4G uplink carries
less than 4 x a 4 Mbit/s stream. So where the cap is the node's own guess
(``SwarmConfig.upload_max_kbps`` above ``upload_kbps``), the relay probes from it, upward
as TCP's congestion avoidance does and down to ``upload_min_kbps``, on a delay signal, as
LEDBAT (RFC 6817) does -- but the delay is the one its children live with, not a round trip.

Every STATUS a child sends us carries its smoothed delay on each substream (``lags``: chunk
time to its parent's push, :mod:`.delay`); ours on the same substream subtracted, what is
left is our hop: the path's one-way delay, the two clocks' offset, our processing and our
uplink's queue (the copies to our other children ahead of its own). The first two are a
constant per child, so each child's lowest hop delay is its *base* (LEDBAT's base delay) and
a sample is the hop delay over it: what our relaying adds now over what it added at best.
A median over our children (each child's latest sample: one vote each, however many STATUS it
sends), every ``probe_interval``:

* past ``probe_busy``: the uplink's queue or the relay's CPU is past what it can carry. The
  cap falls half-way back to the start (``upload_kbps``; to it from within a step); from
  the start or below it, half-way to the floor (``upload_min_kbps``), or where most of the
  children had copies dropped (the uplink does not carry the default at all) to
  :data:`DELIVERED_SHARE` of the rate it delivered meanwhile (what it released less what
  was dropped), the floor if that is not known. A cut that leaves fewer slots than the
  children take sheds the substreams past them (the swarm sends the child UNSUBSCRIBE:
  those of children with drops first), and a shed child asks another parent at once;
  children whose pushes are late but kept move to other parents by themselves (:mod:`.tree`);
* a copy to a child dropped unsent at its deadline (the transport resets it: the relay's own
  observation, as a loss is TCP's) is that child's vote for busy, whatever its STATUS says:
  the children of an uplink that cannot carry them get none of those copies, and the copies
  they get in time say nothing of the others. Where most children heard had a copy
  dropped, the cap falls, however few they are; where :data:`EARLY_DROPS` or more did, at
  once, not at the interval's end;
* within ``probe_quiet`` while fewer than ``substreams`` slots are free (a stream's worth):
  the cap rises by one bitrate;
* else, or with fewer than :data:`MIN_SAMPLES` children heard: it stays.

The cap never falls below the floor (a stream's worth: three substream slots at the default
headroom, so a weak relay still feeds a few children and hears how they fare) nor rises past
``upload_max_kbps``; a user who knows their link sets ``--upload-kbps``, which fixes it.
"""

from __future__ import annotations

#: children heard per decision (a relay has at most ``max_children_uncapped`` substream
#: slots; more are not heard)
MAX_SAMPLES = 256
#: fewer samples in an interval than this: no decision (one child's word moves nothing),
#: unless most of them are drops (:meth:`UplinkProbe.dropped`)
MIN_SAMPLES = 3
#: a dropped copy's vote (s): past any ``probe_busy``
BUSY_VOTE = 3600.0
#: where most children had copies dropped at or below the start, the cap goes to this share
#: of the rate the relay delivered since the last decision (released less dropped: what its
#: uplink carried while it was overloaded), not straight to the floor (stress-4mbit, 1,000
#: x 40 s, seeds 1 / 2: 0.6, 0.7, 0.8 gave mean offload 0.9442, 0.9458, 0.9437, a spread
#: within those runs' noise of +-0.003, as is their gain over the floor, 0.9427:
#: docs/simulation.md)
DELIVERED_SHARE = 0.7
#: a decision is taken at once, not at the interval's end, once this many children had
#: copies dropped and they are most of those heard (an overloaded uplink drops every
#: child's copies until it is cut) ...
EARLY_DROPS = 3
#: ... but not sooner than this (s) after the last decision (the delivered rate needs time)
EARLY_MIN_S = 0.5


class UplinkProbe:
    """The cap (kbit/s) of a relay's uplink probe: samples in, a decision per interval."""

    def __init__(self, start_kbps: int, max_kbps: int, step_kbps: int, *, interval: float,
                 quiet: float, busy: float, now: float, floor_kbps: int = 0) -> None:
        """The cap starts at ``start_kbps``; ``floor_kbps`` 0: the start (never cut below it)."""
        floor = floor_kbps or start_kbps
        if not 0 < floor <= start_kbps <= max_kbps or step_kbps <= 0 or interval <= 0 \
                or not 0 <= quiet <= busy:
            raise ValueError(f"uplink probe: floor {floor_kbps}, start {start_kbps}, max {max_kbps}, "
                             f"step {step_kbps} kbit/s, interval {interval:g} s, quiet {quiet:g} s, "
                             f"busy {busy:g} s")
        self.start = start_kbps
        self.floor = floor
        self.max = max_kbps
        self.step = step_kbps
        self.interval = interval
        self.quiet = quiet
        self.busy = busy
        self.kbps = start_kbps  #: the cap now
        self.next_at = now + interval  #: the next decision
        #: this interval's samples: each child's latest (one vote a child, however many
        #: STATUS it sends)
        self.samples: dict[bytes, float] = {}
        #: this interval's children with a copy dropped (their vote: busy)
        self.drops: set[bytes] = set()
        self.last_median = -1.0  #: the median of the last decision with samples (s; -1: none)
        self.since = now  #: the last decision
        #: the bytes released by the last decision (-1: not known). Not 0 from the start: a
        #: relay overloaded from its join did better cut to the floor (stress-4mbit: 0.0095
        #: less offload with the rate known from the first decision, docs/simulation.md; the
        #: upload scheduler's full bucket at the start may overstate the line)
        self.released0 = -1
        self.dropped_bytes = 0  #: this interval's bytes dropped (:meth:`dropped`)

    def sample(self, child: bytes, queue_s: float) -> None:
        """Child ``child``'s hop delay over its base (s); its latest this interval counts."""
        if child in self.drops:
            return
        if child in self.samples or len(self.samples) < MAX_SAMPLES:
            self.samples[child] = queue_s

    def dropped(self, child: bytes, nbytes: int = 0, now: float = -1.0) -> bool:
        """Copies to ``child``, ``nbytes`` of them, were dropped unsent at their deadline: its
        vote is busy. Whether a decision is due at once (:data:`EARLY_DROPS`)."""
        self.dropped_bytes += nbytes
        if child in self.samples or len(self.samples) < MAX_SAMPLES:
            self.samples[child] = BUSY_VOTE
            self.drops.add(child)
        return (EARLY_DROPS > 0 and len(self.drops) >= EARLY_DROPS and 2 * len(self.drops) > len(self.samples)
                and self.kbps > self.floor and now - self.since >= EARLY_MIN_S)

    def decide(self, now: float, full: bool, released: int = -1) -> int:
        """The interval is over (or cut short by drops): the cap for the next one. ``full``:
        the relay has no room to speak of (the swarm passes: fewer than ``substreams`` slots
        free); ``released``: the chunk bytes its upload scheduler has released so far (-1:
        not known), whose growth less the bytes dropped is the rate the uplink delivered (not
        known before the second decision)."""
        self.next_at = now + self.interval
        s = sorted(self.samples.values())
        drops = len(self.drops)
        self.samples = {}
        self.drops = set()
        delivered = -1
        if released >= 0 and self.released0 >= 0 and now - self.since > 0.1:
            delivered = int((released - self.released0 - self.dropped_bytes) * 8 / 1000 / (now - self.since))
        self.released0 = released
        self.since = now
        self.dropped_bytes = 0
        if len(s) < MIN_SAMPLES and 2 * drops <= len(s):
            return self.kbps
        med = s[len(s) // 2]
        self.last_median = med
        if med > self.busy and self.kbps > self.floor:
            if self.kbps > self.start:
                # half-way back towards the start (to it from within a step: the next cut
                # may then go below it)
                kbps = self.start + (self.kbps - self.start) // 2
                self.kbps = kbps if kbps - self.start > self.step // 2 else self.start
            elif 2 * drops > len(s):
                # from the start or below it, most children had copies dropped: this uplink
                # does not carry the default at all: to a share of what it delivered
                # meanwhile (the floor if that is not known), and up again from there
                self.kbps = max(self.floor, min(self.kbps, int(delivered * DELIVERED_SHARE))) \
                    if delivered > 0 else self.floor
            else:  # from the start or below it: half-way to the floor
                self.kbps = self.floor + (self.kbps - self.floor) // 2
        elif med <= self.quiet and full and self.kbps < self.max:
            self.kbps = min(self.max, self.kbps + self.step)
        return self.kbps
