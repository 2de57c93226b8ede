"""Benchmark: one viewer of a live swarm under a flood of junk UDP at its QUIC port.

A real broadcaster and a few real viewers (processes, loopback, real video)
run; after a quiet window, a junk sender fires ``--rate`` datagrams/s for
``--junk-seconds`` at one viewer (the *victim*), from 127.0.0.2. The mix, in
equal thirds:

* random bytes (1-1400 bytes);
* junk Initials: a QUIC v1 Initial long header (random connection ids, half of
  them with a random "token"), >= 1,200 bytes, payload that does not decrypt;
* valid-looking Initials: real client Initials made by aioquic (they decrypt),
  each with its own random destination connection id, replayed from a pool.

Prints one JSON object: the victim's continuity and offload before, during and
after the flood (from its gateway's /stats), its RSS (from /proc/<pid>/status)
and CPU seconds per window, the junk actually sent, and the victim's endpoint
counters. Every loop is bounded in count and time; every process is stopped.

Usage: python bench/junk_udp.py --viewers 3 --rate 10000 --junk-seconds 25 --window 15 [--sources 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import ssl
import struct
import sys
import time
import urllib.request
from typing import Any

from scratch import scratch_dir  # bench/ is on sys.path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "node"))
sys.path.insert(0, os.path.dirname(__file__))
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402
from aioquic.quic.connection import QuicConnection  # noqa: E402
from live_swarm import machine  # noqa: E402
from procs import OasisProcess, wait_until  # noqa: E402

from oasis.core import wire  # noqa: E402


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def proc_status(pid: int) -> dict[str, int]:
    """RSS (kB) and CPU seconds of a process, from /proc."""
    out = {"rss_kb": 0, "cpu_s": 0}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_kb"] = int(line.split()[1])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    out["cpu_s"] = round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    return out


def long_header(dcid: bytes, scid: bytes, token: bytes, size: int) -> bytes:
    first = 0xC0 | random.getrandbits(4)
    head = bytes([first]) + struct.pack("!I", 1) + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    head += bytes([len(token)]) + token
    rest = size - len(head) - 2
    return head + struct.pack("!H", 0x4000 | rest) + os.urandom(rest)


def real_initials(n: int, dst: tuple[str, int]) -> list[bytes]:
    """``n`` genuine client Initial datagrams (each from a fresh connection, random DCID)."""
    out = []
    for _ in range(n):
        cfg = QuicConfiguration(is_client=True, alpn_protocols=[wire.ALPN], server_name="oasis")
        cfg.verify_mode = ssl.CERT_NONE
        q = QuicConnection(configuration=cfg)
        q.connect(dst, now=time.monotonic())
        for data, _ in q.datagrams_to_send(now=time.monotonic()):
            if len(data) >= 1200:
                out.append(data)
                break
    return out


def junk_pool(n: int, dst: tuple[str, int]) -> list[bytes]:
    pool: list[bytes] = []
    real = real_initials(max(1, n // 3), dst)
    for i in range(n):
        kind = i % 3
        if kind == 0:
            pool.append(os.urandom(random.randint(1, 1400)))
        elif kind == 1:
            token = os.urandom(40) if i % 2 else b""
            pool.append(long_header(os.urandom(8), os.urandom(8), token, random.randint(1200, 1350)))
        else:
            pool.append(real[(i // 3) % len(real)])
    return pool


def flood(dst: tuple[str, int], rate: int, seconds: float, pool: list[bytes], pid: int,
          sources: int) -> dict[str, Any]:
    """Send ``rate`` datagrams/s for ``seconds`` (bounded in count and time), in 10 ms ticks,
    round-robin from ``sources`` loopback addresses; sample the victim's RSS once a second."""
    socks = []
    for i in range(sources):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((f"127.0.{2 + i // 250}.{2 + i % 250}", 0))
        sock.setblocking(False)
        socks.append(sock)
    per_tick = max(1, rate // 100)
    limit = int(rate * seconds)
    sent = dropped = 0
    t0 = time.monotonic()
    deadline = t0 + seconds
    tick = 0
    rss_max = 0
    try:
        while sent + dropped < limit and time.monotonic() < deadline:
            for _ in range(per_tick):
                n = sent + dropped
                try:
                    socks[n % sources].sendto(pool[n % len(pool)], dst)
                    sent += 1
                except (BlockingIOError, OSError):
                    dropped += 1  # our own socket buffer is full
            tick += 1
            if tick % 100 == 0:
                rss_max = max(rss_max, proc_status(pid)["rss_kb"])
            pause = t0 + tick * 0.01 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    finally:
        for sock in socks:
            sock.close()
    wall = time.monotonic() - t0
    return {"sent": sent, "send_refused": dropped, "seconds": round(wall, 2),
            "rate": round(sent / wall) if wall else 0, "victim_rss_max_kb": rss_max}


def stream_stats(v: OasisProcess) -> dict[str, Any]:
    return get_json(v.info["gateway"] + "/stats")


def window(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Continuity and offload of the victim between two /stats snapshots."""
    sa, sb = a["streams"][0], b["streams"][0]
    got = sb["chunks"] - sa["chunks"]
    skipped = sb["skipped"] - sa["skipped"]
    by = {k: sb["bytes"].get(k, 0) - sa["bytes"].get(k, 0) for k in sb["bytes"]}
    total = sum(by.values())
    return {"chunks": got, "skipped": skipped,
            "continuity": round(got / (got + skipped), 4) if got + skipped else None,
            "offload": round(by.get("p2p", 0) / total, 4) if total else None,
            "bytes_by_source": by, "latest_advance": sb["latest"] - sa["latest"],
            "neighbours": sb["neighbours"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep-logs", action="store_true", help="keep the nodes' data and logs")
    ap.add_argument("--viewers", type=int, default=3)
    ap.add_argument("--rate", type=int, default=10_000, help="junk datagrams per second")
    ap.add_argument("--junk-seconds", type=float, default=25.0)
    ap.add_argument("--window", type=float, default=15.0, help="seconds measured before and after")
    ap.add_argument("--bitrate", type=int, default=1000)
    ap.add_argument("--sources", type=int, default=1,
                    help="loopback source addresses the junk comes from (1..1000); many sources "
                         "stand for a spoofed flood, which per-IP limits do not stop")
    args = ap.parse_args()
    tmp = scratch_dir("oasis-junk-", args.keep_logs)
    procs: list[OasisProcess] = []
    if not 1 <= args.sources <= 1000:
        ap.error("--sources must be 1..1000")
    result: dict[str, Any] = {"bench": "junk_udp", "viewers": args.viewers, "rate_asked": args.rate,
                              "sources": args.sources}
    try:
        b = OasisProcess(["broadcast", "test", "--json", "--bitrate", str(args.bitrate),
                          "--data-dir", f"{tmp}/b"], f"{tmp}/b.log")
        procs.append(b)
        info = b.wait_info()
        viewers = []
        for i in range(args.viewers):
            v = OasisProcess(["watch", info["stream_id"], "--tracker", info["tracker"], "--json",
                              "--bitrate", str(args.bitrate), "--gateway", "127.0.0.1:0",
                              "--data-dir", f"{tmp}/v{i}"], f"{tmp}/v{i}.log")
            procs.append(v)
            v.wait_info()
            viewers.append(v)
        victim = viewers[0]
        host, port = victim.info["oftp"].rsplit(":", 1)
        dst = (host, int(port))
        pid = victim.popen.pid
        wait_until(lambda: all((s := stream_stats(v)["streams"][0])["start"] is not None
                               and s["latest"] >= s["start"] + 20 for v in viewers), timeout=120)
        pool = junk_pool(3000, dst)

        s0, p0 = stream_stats(victim), proc_status(pid)
        time.sleep(args.window)  # a measurement window, not synchronisation
        s1, p1 = stream_stats(victim), proc_status(pid)
        sent = flood(dst, args.rate, args.junk_seconds, pool, pid, args.sources)
        s2, p2 = stream_stats(victim), proc_status(pid)
        time.sleep(args.window)
        s3, p3 = stream_stats(victim), proc_status(pid)
        result.update({
            "junk": sent,
            "before": window(s0, s1) | {"rss_kb": p1["rss_kb"], "cpu_s": round(p1["cpu_s"] - p0["cpu_s"], 2),
                                        "seconds": args.window},
            "during": window(s1, s2) | {"rss_kb": p2["rss_kb"], "cpu_s": round(p2["cpu_s"] - p1["cpu_s"], 2),
                                        "seconds": sent["seconds"]},
            "after": window(s2, s3) | {"rss_kb": p3["rss_kb"], "cpu_s": round(p3["cpu_s"] - p2["cpu_s"], 2),
                                       "seconds": args.window},
            "victim_counters": {k: v for k, v in s3["counters"].items() if v},
            "machine": machine(),
        })
    finally:
        result["exit_codes"] = [p.stop() for p in procs]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
