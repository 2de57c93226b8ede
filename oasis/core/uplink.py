"""How much upload a relay offers: a cap probed against its children's hop delay, sans-I/O.

Theory of operation
-------------------
A node does not know its uplink. The default cap (4 x the bitrate) is a guess that wastes a
fibre line and overloads a weak one; the simulator found a relay offering 8 x instead of 4 x
the largest lever on the swarm's offload left (docs/simulation.md). So where the cap is the
node's own guess (``SwarmConfig.upload_max_kbps`` above ``upload_kbps``), the relay probes
upward from it, as TCP's congestion avoidance does, on a delay signal, as LEDBAT (RFC 6817)
does -- but the delay is the one its children live with, not a round trip.

Every STATUS a child sends us carries its smoothed delay on each substream (``lags``: chunk
time to its parent's push, :mod:`.delay`); ours on the same substream subtracted, what is
left is our hop: the path's one-way delay, the two clocks' offset, our processing and our
uplink's queue (the copies to our other children ahead of its own). The first two are a
constant per child, so each child's lowest hop delay is its *base* (LEDBAT's base delay) and
a sample is the hop delay over it: what our relaying adds now over what it added at best.
A median over our children (each child's latest sample: one vote each, however many STATUS it
sends), every ``probe_interval``:

* past ``probe_busy``: the cap falls half-way back to the floor (``upload_kbps``): the
  uplink's queue or the relay's CPU is past what it can carry; children whose pushes are
  late move to other parents by themselves (:mod:`.tree`), none is shed;
* within ``probe_quiet`` while fewer than ``substreams`` slots are free (a stream's worth):
  the cap rises by one bitrate;
* else, or with fewer than :data:`MIN_SAMPLES` children heard: it stays.

The cap never falls below the floor (the node's default offer; a user who knows their link
sets ``--upload-kbps``, which fixes it) nor rises past ``upload_max_kbps``.
"""

from __future__ import annotations

#: children heard per decision (a relay has at most ``max_children_uncapped`` substream
#: slots; more are not heard)
MAX_SAMPLES = 256
#: fewer samples in an interval than this: no decision (one child's word moves nothing)
MIN_SAMPLES = 3


class UplinkProbe:
    """The cap (kbit/s) of a relay's uplink probe: samples in, a decision per interval."""

    def __init__(self, floor_kbps: int, max_kbps: int, step_kbps: int, *, interval: float,
                 quiet: float, busy: float, now: float) -> None:
        if not 0 < floor_kbps <= max_kbps or step_kbps <= 0 or interval <= 0 or not 0 <= quiet <= busy:
            raise ValueError(f"uplink probe: floor {floor_kbps}, max {max_kbps}, step {step_kbps} kbit/s, "
                             f"interval {interval:g} s, quiet {quiet:g} s, busy {busy:g} s")
        self.floor = floor_kbps
        self.max = max_kbps
        self.step = step_kbps
        self.interval = interval
        self.quiet = quiet
        self.busy = busy
        self.kbps = floor_kbps  #: the cap now
        self.next_at = now + interval  #: the next decision
        #: this interval's samples: each child's latest (one vote a child, however many
        #: STATUS it sends)
        self.samples: dict[bytes, float] = {}
        self.last_median = -1.0  #: the median of the last decision with samples (s; -1: none)

    def sample(self, child: bytes, queue_s: float) -> None:
        """Child ``child``'s hop delay over its base (s); its latest this interval counts."""
        if child in self.samples or len(self.samples) < MAX_SAMPLES:
            self.samples[child] = queue_s

    def decide(self, now: float, full: bool) -> int:
        """The interval is over: the cap for the next one. ``full``: the relay has no room to
        speak of (the swarm passes: fewer than ``substreams`` slots free)."""
        self.next_at = now + self.interval
        s = sorted(self.samples.values())
        self.samples = {}
        if len(s) < MIN_SAMPLES:
            return self.kbps
        med = s[len(s) // 2]
        self.last_median = med
        if med > self.busy and self.kbps > self.floor:
            self.kbps = self.floor + (self.kbps - self.floor) // 2
        elif med <= self.quiet and full and self.kbps < self.max:
            self.kbps = min(self.max, self.kbps + self.step)
        return self.kbps
