"""The testbed's per-viewer table (``runner.viewer_table``): pure data, no root."""

from __future__ import annotations

from typing import Any

from oasis.testbed import runner
from oasis.testbed.topology import build


def _stats(on_time: list[int], started: float | None, fetches: int = 0, failures: int = 0) -> dict[str, Any]:
    rec = {"joined_at": 100.0, "started_at": started, "on_time": on_time, "late_by_source": {"origin": 3},
           "latencies": {str(s): 0.2 for s in on_time}, "bytes": {"p2p": 1000 * len(on_time)}}
    return {"streams": [{"record": rec, "origin_fetches": fetches, "origin_failures": failures}]}


def test_viewer_table_splits_misses_while_playing_into_runs() -> None:
    topo = build(1, 2)
    produced = {i: 100.0 + i * 0.1 for i in range(200)}  # 20 s of chunks from the join
    # v0 starts at 100.0: chunks made from 105.0 (seq 50) are "playing"; misses 10
    # (settling: not counted), 60-62, 80, 120-129
    v0 = sorted(set(range(200)) - {10, 60, 61, 62, 80, *range(120, 130)})
    bstats = {"streams": [{"produced": {str(k): t for k, t in produced.items()}}]}
    now = 100.0 + 200 * 0.1 + 2.0  # every chunk's deadline passed
    table = runner.viewer_table(topo, [_stats(v0, 100.0, 7, 2), None], bstats, now)
    row = table["v0"]
    assert row["miss_runs"] == 3 and row["missed_playing"] == 14 and row["longest"] == 10
    assert row["missed_settling"] == 1  # seq 10, in the first 5 s of playback
    assert row["origin_fetches"] == 7 and row["origin_failures"] == 2
    assert row["late_by_source"] == {"origin": 3}
    assert row["withholding"] == {"dropped": 0, "cleared": 0, "strikes": 0, "cut_off": 0}
    assert row["nat"] == topo.viewers[0].nat and row["country"] == topo.viewers[0].country
    assert 0.9 < row["continuity_playing"] < 1.0
    assert table["v1"] is None  # no stats: a row that says so
    # a viewer that never started has no playing phase to split
    never = runner.viewer_table(topo, [_stats([], None), None], bstats, now)["v0"]
    assert never["miss_runs"] == 0 and never["continuity_playing"] == 0.0
    assert never["missed_settling"] == 0


def test_viewer_table_judges_a_viewer_up_to_its_own_stats() -> None:
    """Chunks due after a viewer's /stats was taken (``at``) are not in it: not misses."""
    topo = build(1, 2)
    produced = {i: 100.0 + i * 0.1 for i in range(200)}
    bstats = {"streams": [{"produced": {str(k): t for k, t in produced.items()}}]}
    now = 100.0 + 200 * 0.1 + 2.0
    st = _stats(list(range(150)), 100.0)  # the viewer had everything up to its /stats
    st["streams"][0]["record"]["at"] = 100.0 + 149.5 * 0.1 + 0.5  # seqs 0-149 due by then
    row = runner.viewer_table(topo, [st, None], bstats, now)["v0"]
    assert row["missed_playing"] == 0 and row["miss_runs"] == 0
    assert row["continuity_playing"] == 1.0
    # the same record without ``at``: seqs 150-199 counted missed, as before
    del st["streams"][0]["record"]["at"]
    assert runner.viewer_table(topo, [st, None], bstats, now)["v0"]["missed_playing"] == 50


def test_viewer_table_names_the_relays_on_each_substream_path() -> None:
    """``/stats?detail=1`` gives each substream's path as peer tags; the table names them
    by topology node (the broadcaster and the viewer itself left out; "?" a tag of no node
    here; None a substream with no feed)."""
    from oasis.core.identity import Identity

    topo = build(1, 3)
    ids = [Identity.generate() for _ in range(4)]  # b, v0, v1, v2
    tag = [i.tag.hex() for i in ids]
    produced = {i: 100.0 + i * 0.1 for i in range(10)}
    bstats = {"peer_id": ids[0].peer_id, "streams": [{"produced": {str(k): t for k, t in produced.items()}}]}
    stats: list[dict[str, Any] | None] = []
    for k in range(1, 4):
        st = _stats(list(range(10)), 100.0)
        st["peer_id"] = ids[k].peer_id
        stats.append(st)
    stats[0]["streams"][0]["swarm_counters"] = {"parents_withholding": 2, "withhold_cleared": 5,
                                                "withhold_strikes": 1, "withholders_dropped": 0}
    stats[0]["streams"][0]["paths"] = [[tag[0], tag[0 + 1]], [tag[0], tag[2], tag[1]],
                                       [tag[0], "ab" * 8, tag[3], tag[1]], []]
    table = runner.viewer_table(topo, stats, bstats, 102.0)
    assert table["v0"]["paths"] == [[], ["v1"], ["?", "v2"], None]
    assert table["v0"]["withholding"] == {"dropped": 2, "cleared": 5, "strikes": 1, "cut_off": 0}
    assert table["v1"]["paths"] == []  # a viewer whose /stats has no paths


def test_a_process_cpu_is_read_from_proc_and_summed_by_role() -> None:
    """``process_cpu_s`` reads a live process's CPU (this one, after some work: as its own
    clock says); a process that is gone reads None, counted apart by ``cpu_by_role``."""
    import os
    import subprocess
    import sys
    import time

    before = runner.process_cpu_s(os.getpid())
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:
        pass
    after = runner.process_cpu_s(os.getpid())
    assert before is not None and after is not None
    assert 0.2 <= after - before <= 1.0
    assert abs(after - time.process_time()) < 0.5  # (this thread did nearly all of it)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert runner.process_cpu_s(gone.pid) is None  # reaped: no /proc entry
    roles = runner.cpu_by_role({"b": 12.0, "v0": 2.0, "v1": 4.0, "v2": None, "edge-IN": 1.5,
                                "edge-BR": 0.5})
    assert roles == {"broadcaster": 12.0, "viewers_sum": 6.0, "viewer_p50": 4.0, "viewer_max": 4.0,
                     "edges_sum": 2.0, "unread": 1}
