"""How long a substream's chunks normally take to reach us: the repair timer.

Theory of operation
-------------------
Each substream ``j`` reaches a node through one parent, several hops below the
broadcaster. Every chunk of ``j`` the parent pushes (a duplicate included: a
repair may beat the push) is a sample of ``now - time(seq)``, the delay from the
chunk's signed completion time to its arrival here. As TCP's RTT estimator
(RFC 6298, and aioquic's ``QuicRttMonitor``/recovery), the estimator keeps a
smoothed mean (gain 1/8) and mean deviation (gain 1/4) per substream; the repair
delay is ``lag + 4 dev + REPAIR_MARGIN``, at least ``repair_after`` (also used
while the substream has no parent or no sample) and at most
``playout_delay - origin_margin - repair_after``, so one repair round still fits
before the origin fallback; when the smoothed delay itself is past that cap
(the parent's push usually comes after a repair would) the substream is *late*:
its repair round comes at the cap and asks only peers that already hold the
chunk, or by their advertised lag will hold it before the origin fallback, and
have upload to spare (free push slots; :mod:`.repair`) — a held request to a peer
waiting for it no sooner than we would get it from our parent would fetch a chunk already
on its way, but a holder's copy beats the origin fallback (a withheld push is
then covered by a peer, not by the origin). A fixed
timer requested nearly every chunk from a node several hops deep (the chunk was
on its way) and turned the held request into a duplicate.

The smoothed delay is also what a node advertises in STATUS ``lags`` (ms), from
which its neighbours rank it as a parent (expected arrival = its lag + half the
RTT to it).
"""

from __future__ import annotations

from . import wire

REPAIR_MARGIN = 0.03  #: added to the learnt push delay (steady trees have ~0 deviation)


def smooth(mean: float, dev: float, sample: float, first: bool) -> tuple[float, float]:
    """One RFC 6298 step: the smoothed mean (gain 1/8) and mean deviation (gain 1/4)
    after ``sample``; the first sample sets the mean, and half of it the deviation."""
    if first:
        return sample, sample / 2
    err = sample - mean
    return mean + err / 8, dev + (abs(err) - dev) / 4


class DelayEstimator:
    """Per-substream smoothed push delay and the repair delay derived from it."""

    def __init__(self, substreams: int, repair_after: float, playout_delay: float,
                 origin_margin: float) -> None:
        self.repair_after = repair_after
        #: the learnt delay never pushes a repair past this (one round before the origin)
        self.cap = playout_delay - origin_margin - repair_after
        self.origin_at = playout_delay - origin_margin  #: the origin fallback (after time(seq))
        self.lag = [0.0] * substreams  #: smoothed delay, chunk time -> push by our parent (s)
        self.dev = [0.0] * substreams  #: its mean deviation (s)
        self.known = [False] * substreams  #: at least one sample since the last reset
        self.repair = [repair_after] * substreams  #: repair delay per substream, kept current
        #: the parent's push usually comes after a repair round would: ask holders only
        self.late = [False] * substreams
        self.min_repair = repair_after  #: the smallest of them (the wants timer's step)
        #: ``fresh_parent_lag``: a new parent that has not pushed yet is held to what its
        #: STATUS claimed (its lag + half the RTT, s); -1: the learnt delay rules
        self.fresh = [-1.0] * substreams

    def sample(self, j: int, sample: float, fed: bool) -> None:
        """One delay sample for substream ``j`` (a chunk our parent pushed)."""
        self.lag[j], self.dev[j] = smooth(self.lag[j], self.dev[j], sample, not self.known[j])
        self.known[j] = True
        self.update(j, fed)

    def update(self, j: int, fed: bool) -> None:
        """Recompute ``repair[j]``; ``fed``: substream ``j`` has a parent."""
        f = self.fresh[j]
        if fed and f >= 0:
            # a new parent, not pushed yet: its claim, not the previous parent's record
            self.late[j] = False
            d = f + REPAIR_MARGIN
            d = d if d < self.cap else self.cap
            self.repair[j] = d if d > self.repair_after else self.repair_after
            self.min_repair = min(self.repair)
            return
        self.late[j] = fed and self.known[j] and self.lag[j] + REPAIR_MARGIN > self.cap
        self.repair[j] = self._repair_delay(j, fed)
        self.min_repair = min(self.repair)

    def _repair_delay(self, j: int, fed: bool) -> float:
        """How long after a chunk's time to wait before repairing it from another
        peer: what the parent's pushes normally take (smoothed delay + 4 deviations
        + a margin, as TCP's RTO), at least ``repair_after``, and early enough to leave a repair
        round trip before the origin fallback."""
        if not fed or not self.known[j]:
            return self.repair_after
        if self.late[j]:
            # Our parent's push usually comes after a repair would: a request to a
            # peer still waiting for the chunk would fetch it after the push (a
            # duplicate, and upload taken from the relays that carry the trees); one
            # round at the cap, to holders only (RepairPicker.request).
            return self.cap if self.cap > self.repair_after else self.repair_after
        d = self.lag[j] + 4 * self.dev[j] + REPAIR_MARGIN
        if d > self.cap:
            d = self.cap
        return d if d > self.repair_after else self.repair_after

    def usual_push(self, j: int) -> float:
        """How long after a chunk's time our parent's push of it normally comes (its
        smoothed delay + a margin, at most until the origin fallback); 0 before any
        sample. A chunk that came from elsewhere sooner is no sign of withholding."""
        if not self.known[j]:
            return 0.0
        d = self.lag[j] + REPAIR_MARGIN
        # never past the origin fallback: a chunk the origin had to give us was withheld
        return d if d < self.origin_at else self.origin_at

    def status_lags(self, parents: list[bytes | None]) -> list[int]:
        """STATUS ``lags``: per substream the smoothed delay in ms, at least 1, or LAG_UNKNOWN.

        Never 0: a chunk takes some time to cross a hop, and a delay under a millisecond (a
        child of the broadcaster on loopback or a LAN) is sent as 1, so a claim of 0 comes
        only from a peer that did not measure it (``one_hop_doubt`` doubts it)."""
        out = []
        for j, parent in enumerate(parents):
            if parent is None or not self.known[j]:
                out.append(wire.LAG_UNKNOWN)
            else:
                ms = int(self.lag[j] * 1000)
                if ms < 0 or ms >= wire.LAG_UNKNOWN:
                    out.append(wire.LAG_UNKNOWN - 1)
                else:
                    out.append(ms if ms > 0 else 1)
        return out
