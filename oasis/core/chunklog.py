"""A bounded live window of verified chunks, and the stream's clock estimate.

The log keeps the newest ``window`` chunks of one stream. It also learns how
sequence numbers map to broadcaster time (an anchor plus a smoothed interval),
so a node can tell which chunks *should* exist by now and when each one is due,
even for chunks it has never seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import wire
from .wire import ChunkMsg

HAVE_BITS = 63


@dataclass
class ChunkLog:
    window: int = 300
    chunk_interval: float = 0.1  #: prior for the interval estimate, seconds

    latest: int = -1  #: highest sequence number held (-1: none)
    latest_keyframe: int = -1
    anchor_seq: int = -1
    anchor_time: float = 0.0
    rate_bps: float = 0.0  #: smoothed media rate, bytes per second (0: unknown)
    #: every held seq is >= this (all below were pruned, and add() refuses seqs below low)
    pruned_below: int = 0
    #: the chunks held: chunk ``seq`` in slot ``seq % window``, and in ``spill`` the few a
    #: newer chunk's slot displaced before the window slid past them (kept until pruned, as
    #: a dict of seqs kept them). A dict keyed by seq was 26 kB a node at 300 chunks (its
    #: table sized for churn, and an int object per key); the ring is 2.4 kB (issue 9)
    ring: list[ChunkMsg | None] = field(default_factory=list)
    spill: dict[int, ChunkMsg] = field(default_factory=dict)
    count: int = 0  #: chunks held (ring and spill)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("ChunkLog: window must be >= 1")
        self.ring = [None] * self.window

    def __contains__(self, seq: int) -> bool:
        return self.get(seq) is not None

    def __len__(self) -> int:
        return self.count

    def get(self, seq: int) -> ChunkMsg | None:
        c = self.ring[seq % self.window]
        if c is not None and c.seq == seq:
            return c
        if self.spill:
            return self.spill.get(seq)
        return None

    @property
    def chunks(self) -> dict[int, ChunkMsg]:
        """seq -> chunk of every chunk held (a new dict, in no particular order)."""
        out = {c.seq: c for c in self.ring if c is not None}
        out.update(self.spill)
        return out

    @property
    def low(self) -> int:
        """Oldest sequence number the window still accepts."""
        return max(0, self.latest - self.window + 1)

    def _drop(self, seq: int) -> None:
        i = seq % self.window
        c = self.ring[i]
        if c is not None and c.seq == seq:
            self.ring[i] = None
            self.count -= 1
        elif self.spill and self.spill.pop(seq, None) is not None:
            self.count -= 1

    def add(self, chunk: ChunkMsg, keyframe: bool) -> bool:
        """Store a verified chunk; False if it is a duplicate or too old."""
        seq = chunk.seq
        if self.get(seq) is not None or (self.latest >= 0 and seq < self.low):
            return False
        i = seq % self.window
        old = self.ring[i]
        if old is not None:  # (a seq the window has not pruned yet: kept aside)
            self.spill[old.seq] = old
        self.ring[i] = chunk
        self.count += 1
        t = chunk.time_us / 1e6
        if self.anchor_seq >= 0 and seq > self.anchor_seq:
            step = (t - self.anchor_time) / (seq - self.anchor_seq)
            if 0 < step < 10 * self.chunk_interval + 1:
                self.chunk_interval += 0.2 * (step - self.chunk_interval)
        if seq == self.anchor_seq + 1 and t > self.anchor_time:
            rate = len(chunk.payload) / max(t - self.anchor_time, self.chunk_interval / 2)
            self.rate_bps = rate if self.rate_bps == 0 else self.rate_bps + 0.05 * (rate - self.rate_bps)
        if seq > self.anchor_seq:
            self.anchor_seq, self.anchor_time = seq, t
        if keyframe and seq > self.latest_keyframe:
            self.latest_keyframe = seq
        if seq > self.latest:
            self.latest = seq
            low = self.low
            if self.count > self.window:
                if low - self.pruned_below <= 2 * self.count:
                    # the window slid by a few: drop those seqs, no scan of the window
                    for old_seq in range(self.pruned_below, low):
                        self._drop(old_seq)
                else:  # a jump far ahead: scan the (smaller) window instead
                    for old_seq in [s for s in self.chunks if s < low]:
                        self._drop(old_seq)
                self.pruned_below = low
        return True

    def learn_anchor(self, seq: int, t: float) -> None:
        """Adopt a (seq, time) pair heard from elsewhere when we hold nothing newer."""
        if seq > self.anchor_seq:
            self.anchor_seq, self.anchor_time = seq, t

    def time_of(self, seq: int) -> float:
        """Broadcaster time at which ``seq`` was (or will be) complete."""
        chunk = self.get(seq)
        if chunk is not None:
            return chunk.time_us / 1e6
        return self.anchor_time + (seq - self.anchor_seq) * self.chunk_interval

    def expected_latest(self, now: float, step: float = 0.0) -> int:
        """Highest sequence number that should be complete at the broadcaster by ``now``,
        at ``step`` s per chunk from the newest verified one (default: the learnt interval)."""
        if self.anchor_seq < 0:
            return -1
        return self.anchor_seq + max(0, int((now - self.anchor_time) / (step or self.chunk_interval)))

    def have_bitmap(self) -> int:
        """Bit i set = holds ``latest - 1 - i`` (63 bits: the wire's integers are int64)."""
        bits = 0
        for i in range(HAVE_BITS):
            if self.get(self.latest - 1 - i) is not None:
                bits |= 1 << i
        return bits


def status_holds(msg: wire.Status, seq: int) -> bool:
    """``msg`` (a STATUS) says its sender holds ``seq``: its ``latest`` or a ``have``
    bit (``latest = 0`` with ``have = 0`` is also "nothing": no claim of seq 0)."""
    if msg.latest == seq:
        return seq != 0 or msg.have != 0
    i = msg.latest - 1 - seq
    return 0 <= i < HAVE_BITS and bool(msg.have >> i & 1)
