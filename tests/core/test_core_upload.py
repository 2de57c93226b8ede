"""UploadScheduler: token bucket, newest first, late sends dropped."""

from __future__ import annotations

import pytest

from oasis.core.upload import MIN_BURST_BYTES, UploadScheduler
from oasis.core.wire import ChunkMsg

PEER_A = b"A" * 32
PEER_B = b"B" * 32


def chunk(seq: int, size: int) -> ChunkMsg:
    return ChunkMsg(stream=b"s" * 8, seq=seq, time_us=seq, flags=0, signature=b"x" * 64,
                    payload=bytes(size))


def seqs(released) -> list[int]:
    return [c.seq for _, c, _ in released]


def test_uncapped_releases_everything_at_once_newest_first() -> None:
    up = UploadScheduler(0, now=0.0)
    for s in (3, 9, 1, 7):
        up.enqueue(PEER_A, chunk(s, 500_000), deadline=10.0)
    assert up.next_release() == 0.0  # something can go right now
    out = up.release(0.0)
    assert seqs(out) == [9, 7, 3, 1]
    assert [(p, d) for p, _, d in out] == [(PEER_A, 10.0)] * 4
    assert len(up) == 0 and up.next_release() is None
    assert up.counters.released == 4 and up.counters.released_bytes == 2_000_000


def test_capped_newest_first_then_waits_for_tokens() -> None:
    # 80 kbit/s = 10,000 B/s; bucket depth is the 64 KiB minimum burst.
    up = UploadScheduler(80, now=0.0)
    assert up.rate == 10_000 and up.depth == MIN_BURST_BYTES
    for s in (1, 2, 3, 4):
        up.enqueue(PEER_A if s % 2 else PEER_B, chunk(s, 40_000), deadline=100.0)
    out = up.release(0.0)
    # 65,536 tokens: seq 4 (→ 25,536) and seq 3 (→ -14,464), then the bucket is empty.
    assert seqs(out) == [4, 3]
    assert up.tokens == MIN_BURST_BYTES - 80_000
    t = up.next_release()
    assert t == pytest.approx((80_000 - MIN_BURST_BYTES + 1) / 10_000)
    assert up.release(t - 0.01) == []
    assert seqs(up.release(t)) == [2]
    # Seq 1 waits for the bucket to recover the next 40 KB.
    t2 = up.next_release()
    assert t2 > t
    assert seqs(up.release(t2)) == [1]
    assert len(up) == 0 and up.counters.dropped_late == 0


def test_newer_chunk_enqueued_later_overtakes_queue() -> None:
    up = UploadScheduler(80, now=0.0)
    up.enqueue(PEER_A, chunk(1, 70_000), 100.0)
    assert seqs(up.release(0.0)) == [1]  # bucket now in debt
    up.enqueue(PEER_A, chunk(2, 1000), 100.0)
    up.enqueue(PEER_A, chunk(5, 1000), 100.0)
    up.enqueue(PEER_A, chunk(3, 1000), 100.0)
    assert up.release(0.1) == []
    order: list[int] = []
    while len(up):
        t = up.next_release()
        assert t is not None and t > 0.1
        order += seqs(up.release(t))
    assert order == [5, 3, 2]


def test_past_deadline_entries_are_dropped_and_counted() -> None:
    up = UploadScheduler(0, now=0.0)
    up.enqueue(PEER_A, chunk(10, 100), deadline=1.0)
    up.enqueue(PEER_A, chunk(9, 200), deadline=5.0)
    up.enqueue(PEER_B, chunk(8, 300), deadline=2.0)
    out = up.release(2.0)  # deadline == now counts as too late
    assert seqs(out) == [9]
    assert up.counters.dropped_late == 2 and up.counters.dropped_bytes == 400
    assert up.counters.released == 1 and up.counters.released_bytes == 200


def test_next_release_is_the_refill_and_late_entries_go_then() -> None:
    up = UploadScheduler(80, now=0.0)
    up.enqueue(PEER_A, chunk(1, 100_000), 100.0)
    up.release(0.0)  # tokens now -34,464: about 3.45 s to recover
    up.enqueue(PEER_A, chunk(2, 10), deadline=1.0)
    refill = up.next_release()
    assert refill is not None and 3.4 < refill < 3.5  # no wake-up just to drop the late entry
    assert up.release(refill) == []
    assert up.counters.dropped_late == 1 and len(up) == 0
    assert up.next_release() is None


def test_next_release_never_in_the_past_after_release() -> None:
    up = UploadScheduler(80, now=0.0)
    up.enqueue(PEER_A, chunk(1, 100_000), 100.0)
    up.release(0.0)  # bucket in debt for ~3.4 s
    up.enqueue(PEER_A, chunk(5, 10), deadline=50.0)  # newest: heap head, not late
    up.enqueue(PEER_B, chunk(2, 10), deadline=1.0)  # older, goes late at t=1
    out = up.release(1.0)
    assert out == []
    # Either the late entry was dropped, or the next wake-up is in the future.
    assert up.counters.dropped_late == 1 or up.next_release() > 1.0
    assert up.next_release() > 1.0


def test_bucket_refill_is_capped_at_depth() -> None:
    up = UploadScheduler(80, now=0.0)
    up.enqueue(PEER_A, chunk(1, 10), 1e9)
    up.release(1000.0)
    assert up.tokens <= up.depth
    # After a long idle time only one burst's worth goes at once.
    for s in range(2, 12):
        up.enqueue(PEER_A, chunk(s, 20_000), 1e9)
    out = up.release(2000.0)
    assert seqs(out) == [11, 10, 9, 8]  # 65,536 B allow 4 sends (the 4th overdraws)



def test_cancel_takes_out_only_what_is_still_queued() -> None:
    """CANCEL drops a queued send to that peer (not another peer's copy of the chunk);
    one for a send that already left, was dropped late or was cancelled already finds
    nothing, and two queued copies to one peer need two CANCELs."""
    up = UploadScheduler(800, now=0.0)  # 100 kB/s, a 64 KiB burst: two 40 kB chunks go at once
    for s in (1, 2, 3):
        up.enqueue(PEER_A, chunk(s, 40_000), deadline=10.0)
    up.enqueue(PEER_B, chunk(3, 40_000), deadline=10.0)
    up.enqueue(PEER_B, chunk(4, 40_000), deadline=10.0)
    up.enqueue(PEER_B, chunk(4, 40_000), deadline=10.0)  # asked twice
    up.enqueue(PEER_B, chunk(5, 40_000), deadline=0.5)
    up.enqueue(PEER_A, chunk(6, 40_000), deadline=10.0)
    assert [(p, c.seq) for p, c, _ in up.release(0.0)] == [(PEER_A, 6), (PEER_B, 5)]
    assert up.cancel(PEER_A, 6) is False and up.cancel(PEER_B, 5) is False  # sent already
    assert up.cancel(PEER_B, 4) is True and up.cancel(PEER_B, 4) is True  # both copies
    assert up.cancel(PEER_B, 4) is False
    assert up.cancel(PEER_A, 3) is True and up.cancel(PEER_A, 3) is False
    assert up.cancel(PEER_A, 99) is False
    assert len(up) == 3
    # the rest goes in time, newest first: B's copy of 3 was not touched by A's CANCEL
    rest = up.release(1.0) + up.release(2.0)
    assert [(p, c.seq) for p, c, _ in rest] == [(PEER_B, 3), (PEER_A, 2), (PEER_A, 1)]
    assert len(up) == 0 and up.cancel(PEER_B, 3) is False


def test_cancel_after_a_late_drop_finds_nothing() -> None:
    up = UploadScheduler(800, now=0.0)
    up.enqueue(PEER_A, chunk(1, 40_000), deadline=0.1)
    up.enqueue(PEER_A, chunk(2, 40_000), deadline=0.1)
    up.enqueue(PEER_A, chunk(3, 40_000), deadline=0.1)
    assert [c.seq for _, c, _ in up.release(0.0)] == [3, 2]
    assert up.release(1.0) == [] and up.counters.dropped_late == 1
    assert up.cancel(PEER_A, 1) is False


def test_release_skips_its_late_scan_only_when_nothing_queued_can_be_late() -> None:
    # the reference scans the queue for late sends at every release out of tokens (as it
    # did before _min_deadline): both release, drop and count the same, step by step
    import math
    import random
    rng = random.Random(4)
    for _ in range(40):
        up, ref = UploadScheduler(800, now=0.0), UploadScheduler(800, now=0.0)
        now, seq = 0.0, 0
        for _step in range(400):
            now += rng.random() * 0.05
            r = rng.random()
            if r < 0.6:
                seq += rng.choice((1, 1, 2, -3))
                peer = rng.choice((PEER_A, PEER_B))
                c, dl = chunk(max(0, seq), rng.choice((900, 4000, 20_000))), now + rng.random() * 1.5
                up.enqueue(peer, c, dl)
                ref.enqueue(peer, c, dl)
            elif r < 0.7:
                s, peer = max(0, seq - rng.randrange(4)), rng.choice((PEER_A, PEER_B))
                assert up.cancel(peer, s) == ref.cancel(peer, s)
            else:
                ref._min_deadline = -math.inf
                assert seqs(up.release(now)) == seqs(ref.release(now))
                assert len(up) == len(ref) and up.counters == ref.counters
                assert up.next_release() == ref.next_release()
