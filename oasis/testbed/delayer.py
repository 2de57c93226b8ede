"""The internet's delay, in user space: an NFQUEUE delayer for the testbed's core.

Kernel netem is not available on this machine, so the core namespace's FORWARD chain
queues every packet to NFQUEUE 0 and this process holds each one for the one-way
delay between its source and destination sites, then accepts it. A site is known by
its public address (``Network.delay_table``); the delay of a pair is the simulator's
``link_s`` (half the country-pair RTT of ``World.rtt_ms`` plus both last miles), except
between a CDN PoP and a site of its own country: the PoP sits in its viewers' metro,
``pop_rtt_ms`` round trip with its own last mile (the simulator's ``CDN_EDGE_RTT_MS``),
not the country's median round trip between any two of its sites.

Only the IPv4 header is copied to user space (``range=20``); the verdict is given
later on the kept packet id, so the kernel keeps the packet meanwhile. Delays are
constant per pair, so a heap ordered by (due, arrival) keeps each flow in order.

It wakes at most once a tick (``TICK_S``, 0.5 ms): it reads every packet queued since
its last look and releases every packet due, then sleeps the tick out. Woken for each
packet instead (the first design), it spent most of its CPU on context switches: at
10,000 packets a second offered 44 us a packet, 0.35 of a core; with the tick 11 us,
0.09 (``bench/testbed_delayer.py``, docs/testbed.md); in the 30-node testbed 0.40 of
a core became 0.23. The price: a packet waits up to a tick before it is read (its
delay starts then) and up to a tick past its due time, so each crossing of the core
is 0-1 ms longer than its pair's delay, never shorter.

Run inside the core namespace: ``python -m oasis.testbed.delayer TABLE.json``. It
prints ``{"ready": true}`` once bound, and on SIGTERM/SIGINT one JSON line of
figures: packets, per-second rate, wake-ups, CPU seconds, queue peak, release lateness.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from typing import Any

from oasis.sim.netmodel import World

QUEUE_MAX = 65536  #: packets the kernel queue may hold (bursts x delay); past it: dropped
TICK_S = 0.0005  #: at most one wake-up this often (0: one for each packet, the old way)


def delay_matrix(table: dict[str, Any], world: World | None = None
                 ) -> tuple[dict[bytes, int], list[list[float]]]:
    """(site of each packed address, one-way delay in seconds for each site pair)."""
    world = world or World()
    sites = table["sites"]
    index = {socket.inet_aton(s["addr"]): i for i, s in enumerate(sites)}
    c = [world.index(s["country"]) for s in sites]
    lm = [float(s["lastmile_ms"]) for s in sites]
    pop = [bool(s.get("pop", False)) for s in sites]
    pop_rtt = table.get("pop_rtt_ms")

    def one_way_ms(a: int, b: int) -> float:
        if pop_rtt is not None and c[a] == c[b] and pop[a] != pop[b]:
            # a PoP and a site of its metro: the PoP's half of the round trip (its own last
            # mile included) and the site's last mile
            return float(pop_rtt) / 2 + (lm[b] if pop[a] else lm[a])
        return world.rtt_ms[c[a]][c[b]] / 2 + lm[a] + lm[b]
    delay = [[one_way_ms(a, b) / 1000 for b in range(len(sites))] for a in range(len(sites))]
    return index, delay


def serve(table: dict[str, Any], queue_num: int = 0, scale: float = 1.0,
          tick: float = TICK_S) -> dict[str, Any]:
    from netfilterqueue import COPY_PACKET, NetfilterQueue

    index, delay = delay_matrix(table)
    heap: list[tuple[float, int, Any]] = []
    order = itertools.count()
    stats = {"packets": 0, "unknown": 0, "peak_held": 0, "wakeups": 0}
    lateness: list[float] = []
    clock = time.monotonic

    def on_packet(pkt: Any) -> None:
        h = pkt.get_payload()
        a, b = index.get(h[12:16]), index.get(h[16:20])
        stats["packets"] += 1
        if a is None or b is None:
            stats["unknown"] += 1
            pkt.accept()
            return
        heapq.heappush(heap, (clock() + delay[a][b] * scale, next(order), pkt))

    nfq = NetfilterQueue()
    nfq.bind(queue_num, on_packet, max_len=QUEUE_MAX, mode=COPY_PACKET, range=20,
             sock_len=32 * 1024 * 1024)
    fd = nfq.get_fd()
    stop = False

    def on_signal(_sig: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(json.dumps({"ready": True}), flush=True)
    t0, cpu0 = clock(), time.process_time()
    try:
        while not stop:
            timeout = max(0.0, heap[0][0] - clock()) if heap else 0.2
            try:
                ready, _, _ = select.select([fd], [], [], timeout)
            except InterruptedError:
                continue
            stats["wakeups"] += 1
            if ready:
                nfq.run(block=False)
                stats["peak_held"] = max(stats["peak_held"], len(heap))
            now = clock()
            while heap and heap[0][0] <= now:
                due, _, pkt = heapq.heappop(heap)
                pkt.accept()
                if len(lateness) < 200_000:
                    lateness.append(now - due)
            if tick > 0:
                # what arrives or falls due meanwhile waits for the next wake-up (< a tick)
                time.sleep(tick)
    finally:
        for _, _, pkt in heap:
            pkt.accept()
        nfq.unbind()
    wall = clock() - t0
    cpu = time.process_time() - cpu0
    lateness.sort()

    def q(p: float) -> float | None:
        return round(1000 * lateness[min(len(lateness) - 1, int(p * len(lateness)))], 3) \
            if lateness else None

    return stats | {"wall_s": round(wall, 1), "cpu_s": round(cpu, 2),
                    "cpu_share": round(cpu / wall, 3) if wall else 0.0,
                    "packets_per_s": round(stats["packets"] / wall, 1) if wall else 0.0,
                    "tick_ms": tick * 1000,
                    "wakeups_per_s": round(stats["wakeups"] / wall, 1) if wall else 0.0,
                    "cpu_us_per_packet": round(1e6 * cpu / stats["packets"], 1) if stats["packets"] else None,
                    "late_ms_p50": q(0.5), "late_ms_p99": q(0.99),
                    "realtime": _realtime(),
                    "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _realtime() -> bool:
    """Whether this process runs at a real-time priority (the testbed asks for it)."""
    try:
        return os.sched_getscheduler(0) in (os.SCHED_RR, os.SCHED_FIFO)
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m oasis.testbed.delayer")
    ap.add_argument("table", help="JSON: {sites: [{addr, country, lastmile_ms}]}")
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every delay (0 = none)")
    ap.add_argument("--tick-ms", type=float, default=TICK_S * 1000,
                    help="wake up at most once this often (0: for every packet)")
    args = ap.parse_args(argv)
    if not 0 <= args.tick_ms <= 10:
        ap.error(f"--tick-ms {args.tick_ms:g}: within [0, 10]")
    with open(args.table) as f:
        table = json.load(f)
    print(json.dumps(serve(table, args.queue, args.scale, args.tick_ms / 1000)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
