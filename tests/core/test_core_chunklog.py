"""ChunkLog: the window slides without scanning, and a jump far ahead is pruned too."""

from __future__ import annotations

from oasis.core import wire
from oasis.core.chunklog import ChunkLog


def _chunk(seq: int) -> wire.ChunkMsg:
    return wire.ChunkMsg(stream=b"12345678", seq=seq, time_us=seq * 100_000, flags=0,
                         signature=b"s" * 64, payload=b"x")


def test_window_keeps_the_newest_chunks_in_and_out_of_order() -> None:
    log = ChunkLog(window=10)
    order = [0, 2, 1, 3, 5, 4] + list(range(6, 40))
    for s in order:
        assert log.add(_chunk(s), False)
    assert sorted(log.chunks) == list(range(30, 40))
    assert not log.add(_chunk(29), False)  # below the window: refused
    assert not log.add(_chunk(35), False)  # duplicate


def test_jump_far_ahead_prunes_everything_below_the_window() -> None:
    log = ChunkLog(window=10)
    for s in range(20):
        log.add(_chunk(s), False)
    log.add(_chunk(10**9), False)
    for s in range(10**9 - 5, 10**9):
        log.add(_chunk(s), False)
    assert sorted(log.chunks) == list(range(10**9 - 5, 10**9 + 1))
    assert log.low == 10**9 - 9


class _DictLog:
    """The log as a dict keyed by seq (before the ring, issue 9): what it holds, by rule."""

    def __init__(self, window: int) -> None:
        self.window, self.latest = window, -1
        self.chunks: dict[int, None] = {}

    def add(self, seq: int) -> bool:
        low = max(0, self.latest - self.window + 1)
        if seq in self.chunks or (self.latest >= 0 and seq < low):
            return False
        self.chunks[seq] = None
        if seq > self.latest:
            self.latest = seq
            low = max(0, seq - self.window + 1)
            if len(self.chunks) > self.window:
                for old in [s for s in self.chunks if s < low]:
                    del self.chunks[old]
        return True


def test_a_sparse_log_keeps_a_seq_its_ring_slot_lost_until_the_window_prunes_it() -> None:
    # 3 and 13 share a slot of a 10-chunk ring; a dict kept both (nothing pruned while it
    # held fewer than 10): so does the ring, 3 aside
    log = ChunkLog(window=10)
    for s in (3, 13):
        assert log.add(_chunk(s), False)
    assert 3 in log and 13 in log and len(log) == 2 and log.time_of(3) == 0.3
    assert sorted(log.chunks) == [3, 13]


def test_the_ring_holds_what_a_dict_keyed_by_seq_held() -> None:
    import random
    rng = random.Random(9)
    for window in (1, 4, 10, 63):
        log, ref = ChunkLog(window=window), _DictLog(window)
        seq = 0
        for _ in range(3000):
            seq = max(0, seq + rng.choice((-7, -3, -1, 1, 1, 2, 5, 3 * window)))
            assert log.add(_chunk(seq), False) == ref.add(seq)
            assert sorted(log.chunks) == sorted(ref.chunks) and len(log) == len(ref.chunks)
            probe = seq - rng.randrange(2 * window + 2)
            assert (probe in log) == (probe in ref.chunks)
