"""A viewer whose clock is off the broadcaster's (real processes on loopback). Every deadline
is broadcaster time (a chunk's signed time + the playout delay): before 2026-12-04 a viewer
1 s ahead judged every chunk late on arrival and skipped it, and fetched each from the origin
(~80 a second), and one 0.3 s ahead sent a third of the swarm's bytes to the origin
(docs/benchmarks.md, session 30). The viewer now asks the origin's ``/time`` at its join and
runs the stream on the broadcaster's clock (oasis.core.clocksync)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from procs import OasisProcess, wait_until

pytestmark = pytest.mark.integration


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


@pytest.mark.parametrize("skew_ms", [1500.0, -1500.0])
def test_a_viewer_with_a_clock_off_plays_on_the_broadcasters(tmp_path: Path, skew_ms: float) -> None:
    procs: list[OasisProcess] = []
    try:
        b = OasisProcess(["broadcast", "test", "--json", "--bitrate", "800", "--data-dir", str(tmp_path / "b")],
                         str(tmp_path / "b.log"))
        procs.append(b)
        info = b.wait_info()
        # the origin tells its clock, never cached
        with urllib.request.urlopen(f"{info['http']}/origin/{info['stream_id']}/time", timeout=10) as r:  # noqa: S310
            assert r.headers["Cache-Control"] == "no-store"
            assert set(json.loads(r.read())) == {"now_us"}
        v = OasisProcess(["watch", info["stream_id"], "--tracker", info["tracker"], "--json",
                          "--gateway", "127.0.0.1:0", "--clock-skew-ms", str(skew_ms),
                          "--data-dir", str(tmp_path / "v")], str(tmp_path / "v.log"))
        procs.append(v)
        gateway = v.wait_info()["gateway"]

        def stream() -> dict[str, Any]:
            return dict(get(gateway + "/stats")["streams"][0])

        # its clock offset is measured (within the exchange's error on loopback)
        wait_until(lambda: abs(stream()["clock_offset"] - skew_ms / 1000) < 0.1, 30)
        # and it plays: 150 chunks (5 s at 33 ms) with few given up and few origin fetches
        wait_until(lambda: stream()["chunks"] >= 150, 60)
        s = stream()
        assert s["skipped"] <= 0.05 * s["chunks"], s
        assert s["origin_fetches"] <= 0.2 * s["chunks"], s["origin_fetches"]
        # latencies are told on the broadcaster's clock: not 1.5 s too high, nor below 0
        assert s["latency_p50_ms"] is not None and 0 <= s["latency_p50_ms"] < 500, s
        assert "clock is 1.50 s " in Path(tmp_path / "v.log").read_text()
    finally:
        for p in procs:
            p.stop()
