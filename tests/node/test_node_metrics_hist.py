"""The /metrics latency histogram reads only the latencies a stream's record gained since
the previous scrape (a record only grows), and starts over when the record is replaced."""

from __future__ import annotations

from oasis.core.metrics import ViewerRecord
from oasis.node.metrics import LATENCY_BUCKETS, _Latency


def test_a_scrape_counts_only_the_new_latencies() -> None:
    rec = ViewerRecord(joined_at=0.0, playout_delay=0.5)
    h = _Latency()
    for seq, lat in enumerate([0.1, 0.2, 0.3]):
        rec.delivered(seq, 1.0 + seq, 1.0 + seq + lat, "p2p", 100, seq == 0)
    h.update(rec.lat)
    assert h.seen == 3 and abs(h.total - 0.6) < 1e-6
    h.update(rec.lat)  # nothing new: nothing counted twice
    assert h.seen == 3 and sum(h.counts) == 3
    for seq, lat in [(3, 0.4), (4, LATENCY_BUCKETS[-1] + 1.0)]:
        rec.delivered(seq, 1.0 + seq, 1.0 + seq + lat, "origin", 100, False)
    h.update(rec.lat)
    assert h.seen == 5 and sum(h.counts) == 5
    assert h.buckets()[-1] == ("+Inf", 5) and h.counts[len(LATENCY_BUCKETS)] == 1  # past every bound
    fresh = ViewerRecord(joined_at=0.0, playout_delay=0.5)  # the stream restarted
    fresh.delivered(0, 1.0, 1.05, "p2p", 100, True)
    h.update(fresh.lat)
    assert h.seen == 1 and sum(h.counts) == 1
