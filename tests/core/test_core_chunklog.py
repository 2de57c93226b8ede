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
