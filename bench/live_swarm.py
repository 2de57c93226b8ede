"""Benchmark: a live swarm of real processes on loopback (``oasis demo --json``).

Prints one JSON object per run: the demo's figures plus the machine and the
CPU load. Usage: python bench/live_swarm.py --viewers 20 40 60 --duration 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--viewers", type=int, nargs="+", default=[20])
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--bitrate", type=int, default=1500)
    ap.add_argument("--no-rewards", dest="rewards", action="store_false",
                    help="run the swarm without proof of relay (no chain)")
    args = ap.parse_args()
    for n in args.viewers:
        t0 = time.monotonic()
        cpu0 = os.times()
        cmd = [sys.executable, "-m", "oasis", "demo", "--viewers", str(n), "--duration", str(args.duration),
               "--bitrate", str(args.bitrate), "--json", *([] if args.rewards else ["--no-rewards"])]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
            try:
                stdout, stderr = p.communicate(timeout=args.duration + 20 * n + 180)
            except subprocess.TimeoutExpired:
                p.terminate()  # the demo stops its nodes on SIGTERM
                stdout, stderr = p.communicate(timeout=60)
        out = subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr)
        cpu1 = os.times()
        wall = time.monotonic() - t0
        try:
            result = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            print(json.dumps({"viewers": n, "error": out.stderr[-2000:]}))
            continue
        child_cpu = (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system)
        result["bench"] = {"wall_s": round(wall, 1), "cpu_s_all_processes": round(child_cpu, 1),
                           "mean_cores_busy": round(child_cpu / wall, 2), "machine": machine()}
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
