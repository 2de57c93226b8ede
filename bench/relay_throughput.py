"""Benchmark: the relay throughput one node sustains per CPU core.

A broadcaster (looping a high-bitrate TS file made here with the PyAV test
source) can feed exactly one copy of the stream; one relay process (uncapped)
takes it and pushes it to M sink processes that may not relay (upload cap 1
kbit/s = no slots). Over a window we read the relay's CPU time from /proc and
the media bytes it pushed from its /stats, and print Mbit/s per busy core.

Usage: python bench/relay_throughput.py --bitrate 4000 --sinks 8 --window 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "node"))
from procs import OasisProcess, wait_until  # noqa: E402

from oasis.core import swarm as sw  # noqa: E402
from oasis.media.ingest import video_kbps_for  # noqa: E402
from oasis.media.testsource import TestSource  # noqa: E402
from oasis.node.quicstack import stack_name  # noqa: E402


def make_ts(path: str, kbps: int, seconds: int) -> None:
    src = TestSource(bitrate_kbps=video_kbps_for(kbps))
    t0 = 1_700_000_000.0
    with open(path, "wb") as f:
        for i in range(seconds * 30):
            f.write(src.next_frame_ts(t0 + i / 30))
        f.write(src.close())


def stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats", timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_broadcast(tmp: str, bitrate: int, procs: list[OasisProcess],
                    chunk_ms: int = sw.DEFAULT_CHUNK_MS) -> tuple[dict[str, Any], list[str]]:
    """A broadcaster looping a ``bitrate`` TS file made in ``tmp`` (added to ``procs``),
    cut in ``chunk_ms`` chunks: its info line, and the options every process of the run shares."""
    ts = os.path.join(tmp, "source.ts")
    make_ts(ts, bitrate, 10)
    common = ["--bitrate", str(bitrate), "--chunk-ms", str(chunk_ms), "--json"]
    b = OasisProcess(["broadcast", ts, *common, "--upload-kbps", str(int(bitrate * 1.3)),
                      "--data-dir", f"{tmp}/b"], f"{tmp}/b.log")
    procs.append(b)
    return b.wait_info(), common


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bitrate", type=int, default=4000)
    ap.add_argument("--sinks", type=int, default=8)
    ap.add_argument("--window", type=float, default=20)
    ap.add_argument("--chunk-ms", type=int, default=sw.DEFAULT_CHUNK_MS,
                    help=f"chunk duration (default: the node's, {sw.DEFAULT_CHUNK_MS})")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="oasis-relay-")
    procs: list[OasisProcess] = []
    try:
        info, common = start_broadcast(tmp, args.bitrate, procs, args.chunk_ms)
        relay = OasisProcess(["watch", info["stream_id"], "--tracker", info["tracker"], *common,
                              "--gateway", "127.0.0.1:0", "--upload-kbps", "0", "--data-dir", f"{tmp}/r"],
                             f"{tmp}/r.log")
        procs.append(relay)
        rinfo = relay.wait_info()
        wait_until(lambda: all(d == 1 for d in stats(rinfo["gateway"])["streams"][0]["depth"]), 30)
        sinks = []
        for i in range(args.sinks):
            s = OasisProcess(["watch", info["stream_id"], "--tracker", info["tracker"], *common,
                              "--gateway", "127.0.0.1:0", "--upload-kbps", "1", "--data-dir", f"{tmp}/s{i}"],
                             f"{tmp}/s{i}.log")
            procs.append(s)
            s.wait_info()
            sinks.append(s)
        wait_until(lambda: all(None not in stats(s.info["gateway"])["streams"][0]["depth"] for s in sinks), 30)
        time.sleep(3)  # settle: let the trees form fully before the measured window (a benchmark, not a test)
        pid = relay.popen.pid
        s0, c0, t0 = stats(rinfo["gateway"]), cpu_seconds(pid), time.monotonic()
        time.sleep(args.window)
        s1, c1, t1 = stats(rinfo["gateway"]), cpu_seconds(pid), time.monotonic()
        sent = s1["streams"][0]["upload"]["released_bytes"] - s0["streams"][0]["upload"]["released_bytes"]
        wire = s1["traffic"]["wire"] - s0["traffic"]["wire"]
        wall = t1 - t0
        cores = (c1 - c0) / wall
        out_mbps = sent * 8 / wall / 1e6
        sink_stats = [stats(s.info["gateway"])["streams"][0] for s in sinks]
        print(json.dumps({
            "bitrate_kbps": args.bitrate, "chunk_ms": args.chunk_ms, "sinks": args.sinks, "window_s": round(wall, 1),
            "quic": stack_name(),
            "relay_media_out_mbps": round(out_mbps, 1),
            "relay_wire_in_out_mbps": round(wire * 8 / wall / 1e6, 1),
            "relay_cpu_cores": round(cores, 3),
            "relay_mbps_per_core": round(out_mbps / cores, 1) if cores else None,
            "sinks_skipped_chunks": sum(s["skipped"] for s in sink_stats),
            "sinks_latency_p50_ms": sorted(s["latency_p50_ms"] or 0 for s in sink_stats),
        }))
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # the nodes' data directories
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
