"""What end-to-end encryption of a stream costs (docs/oftp.md §7.2); prints JSON.

1. ``micro``: sealing and opening one chunk's media (oasis.core.streamcrypt, AES-256-GCM
   through ``cryptography``) at three chunk sizes, in µs a chunk, and the share of one core
   that takes at the stream's chunk rate.
2. ``procs`` (unless ``--no-procs``): real processes on loopback, a broadcaster and
   ``--viewers`` viewers of the test pattern for ``--seconds``, plain and ``--encrypt``
   alternated ``--pairs`` times (which goes first alternates too): each process's CPU seconds (from /proc) per minute of stream.
   The difference is the cost as a node pays it; the run-to-run spread is the machine's.

    python bench/encrypt_cost.py [--viewers 3] [--seconds 20] [--pairs 2] [--no-procs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oasis.core import streamcrypt as sc  # noqa: E402

#: (label, media bytes a chunk, chunks a second): 1.5 and 4 Mbit/s at the node's 33-ms chunks,
#: and a 1-s chunk at 1.5 Mbit/s
SIZES = (("1.5 Mbit/s, 33 ms", 6_250, 30.0), ("4 Mbit/s, 33 ms", 16_500, 30.0),
         ("1.5 Mbit/s, 1 s", 187_500, 1.0))


def micro(rounds: int) -> list[dict[str, Any]]:
    key = sc.new_key()
    skey = bytes(8)
    out = []
    for label, size, rate in SIZES:
        media = os.urandom(size)
        t0 = time.perf_counter()
        sealed = b""
        for i in range(rounds):
            sealed = sc.seal(key, skey, i, i, 0, media)
        t1 = time.perf_counter()
        for _ in range(rounds):
            assert sc.open_sealed(key, skey, rounds - 1, rounds - 1, 0, sealed) is not None
        t2 = time.perf_counter()
        seal_us, open_us = (t1 - t0) / rounds * 1e6, (t2 - t1) / rounds * 1e6
        out.append({"chunk": label, "bytes": size, "seal_us": round(seal_us, 2), "open_us": round(open_us, 2),
                    "seal_mb_s": round(size / seal_us, 1),
                    "broadcaster_core_share": round(seal_us * rate / 1e6, 6),
                    "viewer_core_share": round(open_us * rate / 1e6, 6)})
    return out


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "oasis", *args], stdout=subprocess.PIPE,
                            stderr=log.open("wb"), stdin=subprocess.DEVNULL, start_new_session=True,
                            cwd=ROOT)


def _line(p: subprocess.Popen[bytes], timeout: float = 60.0) -> dict[str, Any]:
    assert p.stdout is not None
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError("no start line")
    return dict(json.loads(p.stdout.readline()))


def one_run(encrypt: bool, viewers: int, seconds: float, bitrate: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="oasis-enc-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        b = _start(["broadcast", "test", "--json", "--bitrate", str(bitrate), "--data-dir", str(tmp / "b"),
                    *(["--encrypt"] if encrypt else [])], tmp / "b.log")
        procs.append(b)
        info = _line(b)
        for i in range(viewers):
            procs.append(_start(["watch", info["link"], "--json", "--gateway", "127.0.0.1:0", "--listen",
                                 "127.0.0.1:0", "--data-dir", str(tmp / f"v{i}")], tmp / f"v{i}.log"))
        for v in procs[1:]:
            _line(v)
        before = [_cpu_s(p.pid) for p in procs]
        t0 = time.monotonic()
        time.sleep(seconds)  # (a benchmark's measuring window, not a test's wait)
        span = time.monotonic() - t0
        used = [_cpu_s(p.pid) - c for p, c in zip(procs, before, strict=True)]
        per_min = [u / span * 60 for u in used]
        return {"encrypt": encrypt, "seconds": round(span, 2),
                "broadcaster_cpu_s_per_min": round(per_min[0], 3),
                "viewer_cpu_s_per_min_mean": round(sum(per_min[1:]) / viewers, 3)}
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--viewers", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--bitrate", type=int, default=1500)
    ap.add_argument("--no-procs", action="store_true")
    a = ap.parse_args()
    if not 1 <= a.viewers <= 10 or not 1 <= a.seconds <= 300 or not 1 <= a.pairs <= 10:
        ap.error("--viewers 1-10, --seconds 1-300, --pairs 1-10")
    out: dict[str, Any] = {"machine": {"cpu": platform.processor() or platform.machine(),
                                       "cores": os.cpu_count(), "python": platform.python_version(),
                                       "load_1m": os.getloadavg()[0]},
                           "micro": micro(a.rounds)}
    if not a.no_procs:
        runs = []
        for i in range(a.pairs):  # (the order alternates: the machine's drift falls on both)
            for enc in ((False, True) if i % 2 == 0 else (True, False)):
                runs.append(one_run(enc, a.viewers, a.seconds, a.bitrate))
        out["procs"] = {"viewers": a.viewers, "bitrate_kbps": a.bitrate, "runs": runs}
        for enc in (False, True):
            mine = [r for r in runs if r["encrypt"] == enc]
            out["procs"]["encrypted" if enc else "plain"] = {
                k: round(sum(r[k] for r in mine) / len(mine), 3)
                for k in ("broadcaster_cpu_s_per_min", "viewer_cpu_s_per_min_mean")}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
