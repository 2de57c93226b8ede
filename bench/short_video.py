"""Benchmark: short video -- N viewers of a PyAV-encoded clip joining within a window, on loopback.

One ``oasis publish`` process seeds the clip; the viewers are real nodes (QUIC, Files,
gateway), ``--per-process`` of them per worker process (asyncio) so 50 fit on 2 cores.
Each viewer starts ``Files.fetch(link)`` at its join time (uniform over ``--window`` s).

Time to first frame (TTFF), as defined here: from the fetch call until every block that
covers the MP4's ``moov`` box and the first keyframe's packet is verified and stored -- the
bytes a player needs to decode the first frame through the gateway (which serves a block
as soon as it is stored). The offsets come from PyAV reading the clip once.

Baseline: the same number of clients fetching the whole file from one aiohttp server,
same join schedule; TTFF there = time until the same byte offset has arrived.

Prints one JSON object. Usage: python bench/short_video.py --viewers 50 --seconds 30 --kbps 2500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scratch import scratch_dir  # bench/ is on sys.path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))


def first_frame_bytes(path: str) -> int:
    """Bytes from the start a decoder needs for the first frame: moov and the first keyframe."""
    import av

    with open(path, "rb") as f:
        head = f.read(4 * 1024 * 1024)
    moov = head.find(b"moov")
    moov_end = 0
    if moov >= 4:
        moov_end = moov - 4 + int.from_bytes(head[moov - 4:moov], "big")
    with av.open(path) as c:
        for pkt in c.demux(video=0):
            if pkt.is_keyframe and pkt.pos is not None and pkt.pos >= 0:
                return max(moov_end, pkt.pos + pkt.size)
    return moov_end


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3)


async def worker(spec: dict[str, Any]) -> list[dict[str, Any]]:
    from oasis.core import swarm as sw
    from oasis.core.content import BLOCK_SIZE
    from oasis.core.identity import Identity
    from oasis.node.files import Files
    from oasis.node.node import Node

    need_blocks = -(-spec["ttff_bytes"] // BLOCK_SIZE)
    out: list[dict[str, Any]] = []

    async def viewer(i: int, at: float) -> None:
        node = Node(Identity.generate(), sw.SwarmConfig(), dht=False, target_neighbours=0)
        await node.start()
        files = Files(node, Path(spec["dir"]) / f"v{spec['index']}-{i}")
        node.files = files
        await asyncio.sleep(max(0.0, at - time.time()))
        t0 = time.time()
        st = await files.fetch(spec["link"])
        cid = st["cid"]
        e = files.entry(cid)
        ttff = None
        done = None
        manifest_at = None
        origin_at_ttff = 0
        while time.time() - t0 < spec["timeout"]:
            have = e.swarm.have
            if manifest_at is None and e.manifest is not None:
                manifest_at = time.time() - t0
            if ttff is None and e.manifest is not None and all(b in have for b in range(min(need_blocks, e.manifest.blocks))):
                ttff = time.time() - t0
                origin_at_ttff = e.swarm.counters.blocks_from_origin
            if files.status(cid)["state"] != "fetching":
                done = time.time() - t0
                break
            await asyncio.sleep(0.01)
        s = files.status(cid)
        c = node.counters
        idx = len(out)
        keep = ("files_duplicate_blocks", "files_request_timeouts", "messages_over_budget", "peers_banned",
                "files_peers_dropped", "files_serve_expired", "files_origin_requests", "files_pex_received",
                "links_refused", "dials_refused")
        out.append({"counters": {k: c.get(k, 0) for k in keep}, "ttff": ttff, "manifest_at": manifest_at,
                    "origin_at_ttff": origin_at_ttff, "done": done, "from_peers": s["from_peers"], "from_origin": s["from_origin"],
                    "served": s["served"], "join": t0, "end": t0 + (done or spec["timeout"])})
        # keep seeding until every viewer of this worker is done
        await stop.wait()
        out[idx]["served"] = files.status(cid)["served"]  # all it served, seeding included
        await node.close()

    stop = asyncio.Event()
    lags: list[float] = []  # how late a 20 ms timer fires in this worker's loop (scheduling delay)

    async def sampler() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.02)
            lags.append(time.perf_counter() - t - 0.02)

    lag_task = asyncio.create_task(sampler())
    tasks = [asyncio.create_task(viewer(i, at)) for i, at in enumerate(spec["joins"])]
    while len(out) < len(tasks):
        await asyncio.sleep(0.1)
    # others may still fetch from us: seed until the coordinator's deadline
    await asyncio.sleep(max(0.0, spec["seed_until"] - time.time()))
    stop.set()
    await asyncio.gather(*tasks, lag_task, return_exceptions=True)
    if out:
        out[0]["loop_lags"] = lags
    return out


async def http_baseline(path: str, n: int, joins: list[float], ttff_bytes: int) -> dict[str, Any]:
    import aiohttp
    from aiohttp import web

    data = Path(path).read_bytes()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=data, content_type="video/mp4")

    app = web.Application()
    app.router.add_get("/clip.mp4", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/clip.mp4"
    res: list[tuple[float, float, float]] = []
    base = time.time()

    async def client(at: float) -> None:
        await asyncio.sleep(max(0.0, base + at - time.time()))
        t0 = time.time()
        got = 0
        first = None
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            async for piece in r.content.iter_chunked(65536):
                got += len(piece)
                if first is None and got >= ttff_bytes:
                    first = time.time() - t0
        assert got == len(data)
        res.append((first or 0.0, time.time() - t0, t0))

    await asyncio.gather(*(client(a) for a in joins))
    await runner.cleanup()
    ttffs = [r[0] for r in res]
    dones = [r[1] for r in res]
    span = max(r[2] + r[1] for r in res) - min(r[2] for r in res)
    return {"ttff_p50_s": pct(ttffs, 0.5), "ttff_p95_s": pct(ttffs, 0.95), "download_p50_s": pct(dones, 0.5),
            "download_p95_s": pct(dones, 0.95), "aggregate_mbit_s": round(n * len(data) * 8 / span / 1e6, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep-logs", action="store_true", help="keep the nodes' data and logs")
    ap.add_argument("--viewers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--kbps", type=int, default=2500)
    ap.add_argument("--window", type=float, default=10.0, help="viewers join within this many seconds")
    ap.add_argument("--per-process", type=int, default=10, help="viewer nodes per worker process")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--publisher-mbps", type=float, default=25.0,
                    help="the publisher's upload budget to peers (its HTTP origin is not capped)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(asyncio.run(worker(spec))))
        return 0

    from oasis.media.clip import make_clip

    tmp = scratch_dir("oasis-short-video-", args.keep_logs)
    clip = os.path.join(tmp, "clip.mp4")
    t = time.monotonic()
    make_clip(clip, args.seconds, args.kbps, size=(1280, 720))
    encode_s = time.monotonic() - t
    size = os.path.getsize(clip)
    ttff_bytes = first_frame_bytes(clip)
    load_before = os.getloadavg()
    rng = random.Random(1)
    joins = sorted(rng.uniform(0, args.window) for _ in range(args.viewers))

    pub = subprocess.Popen([sys.executable, "-m", "oasis", "publish", clip, "--data-dir", os.path.join(tmp, "pub"),
                            "--upload-mbps", str(args.publisher_mbps)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=HERE, text=True)
    try:
        assert pub.stdout is not None
        info = json.loads(pub.stdout.readline())
        start = time.time() + 3.0  # workers need a moment to start their nodes
        seed_until = start + args.window + args.timeout
        groups = [joins[i:i + args.per_process] for i in range(0, len(joins), args.per_process)]
        procs = []
        for gi, g in enumerate(groups):
            spec = {"index": gi, "link": info["link"], "dir": tmp, "joins": [start + j for j in g],
                    "ttff_bytes": ttff_bytes, "timeout": args.timeout, "seed_until": 0.0}
            spec["seed_until"] = start + args.window + 20.0
            procs.append(subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=HERE, text=True))
        results: list[dict[str, Any]] = []
        for p in procs:
            outp, _ = p.communicate(timeout=seed_until - time.time() + 60)
            results += json.loads(outp.strip().splitlines()[-1])
        del seed_until
    finally:
        pub.terminate()
        pub.wait(10)
    load_during = os.getloadavg()
    ttffs = [r["ttff"] for r in results if r["ttff"] is not None]
    dones = [r["done"] for r in results if r["done"] is not None]
    peers = sum(r["from_peers"] for r in results)
    origin = sum(r["from_origin"] for r in results)
    served_by_viewers = sum(r["served"] for r in results)
    span = max(r["end"] for r in results) - min(r["join"] for r in results)
    base = asyncio.run(http_baseline(clip, args.viewers, joins, ttff_bytes))
    counters: dict[str, int] = {}
    for r in results:
        for k, v in r["counters"].items():
            counters[k] = counters.get(k, 0) + v
    out = {
        "viewers": args.viewers, "clip_s": args.seconds, "kbps": args.kbps, "size_bytes": size,
        "ttff_bytes": ttff_bytes, "window_s": args.window, "publisher_mbps": args.publisher_mbps, "per_process": args.per_process,
        "completed": len(dones), "ttff_p50_s": pct(ttffs, 0.5), "ttff_p95_s": pct(ttffs, 0.95),
        "ttff_max_s": pct(ttffs, 1.0), "download_p50_s": pct(dones, 0.5), "download_p95_s": pct(dones, 0.95),
        "bytes_from_peers": peers, "bytes_from_origin": origin,
        "bytes_served_by_viewers": served_by_viewers,
        # offload: the share of all bytes viewers got that did not come from the publisher or the origin
        "offload": round(served_by_viewers / max(1, peers + origin), 3),
        "p2p_share": round(peers / max(1, peers + origin), 3),
        "aggregate_mbit_s": round(len(dones) * size * 8 / span / 1e6, 1),
        "http_single_source": base, "viewer_counters": counters,
        "encode_s": round(encode_s, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_during],
        "mean_ttff_s": round(statistics.mean(ttffs), 3) if ttffs else None,
        # where TTFF goes: time to the manifest, and how many first-frame blocks the origin sent
        "manifest_p50_s": pct([r["manifest_at"] for r in results if r.get("manifest_at") is not None], 0.5),
        "manifest_p95_s": pct([r["manifest_at"] for r in results if r.get("manifest_at") is not None], 0.95),
        "origin_blocks_at_ttff": sum(r.get("origin_at_ttff", 0) for r in results),
        # the workers' event-loop delay while they ran (10 nodes share one loop and 2 cores)
        "loop_lag_p50_s": pct([x for r in results for x in r.get("loop_lags", [])], 0.5),
        "loop_lag_p95_s": pct([x for r in results for x in r.get("loop_lags", [])], 0.95),
        "loop_lag_p99_s": pct([x for r in results for x in r.get("loop_lags", [])], 0.99),
        "per_viewer": [[round(r["join"] - min(x["join"] for x in results), 2), r["ttff"] and round(r["ttff"], 3),
                        r.get("manifest_at") and round(r["manifest_at"], 3)] for r in results],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
