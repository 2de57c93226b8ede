"""Attack: CANCEL (OFTP id 24, docs/oftp.md §6, §9.4) against a real broadcaster.

A CANCEL makes the receiver look for the sender's held REQUEST for a seq, then scan its
upload queue for a queued answer (``UploadScheduler.cancel``: a walk of the whole queue
and a heapify). Tried here, from ``--links`` hostile links of a stranger that JOINed the
stream (every message within the per-peer budget of 200/s unless ``--rate`` says more):

* a flood of CANCELs for seqs nobody asked (each a full scan of the upload queue);
* CANCELs for seqs an honest viewer H asked (can they drop H's answers?);
* REQUEST then CANCEL pairs (can the held table or the queue be churned for free?).

The broadcaster B has an upload cap (``--upload-kbps``) below what its children take, so
its upload queue is not empty (the scan has something to walk). Measured: B's event-loop
lag (a 10 ms probe in the same process; every node here shares that loop), H's chunks per
second before and during the flood, the upload queue's length, and B's counters. Also the
scan's cost against the queue length on the real ``UploadScheduler``.

PYTHONPATH=. python bench/atk5_cancel_flood.py [--links 8] [--rate 190] [--seconds 10]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from typing import Any

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.core.upload import UploadScheduler
from oasis.node.node import Node
from oasis.tools.hostile import Victim, dial, hang_up


def scan_cost(sizes: list[int]) -> dict[str, float]:
    """µs per CANCEL that finds nothing, against the upload queue's length."""
    out = {}
    for n in sizes:
        up = UploadScheduler(0, 0.0)
        for i in range(n):
            up.enqueue(bytes([i % 251]) * 32, _C(i), 1e9)  # type: ignore[arg-type]
        peer = b"\xff" * 32
        reps = max(20, 20000 // max(n, 1))
        t = time.perf_counter()
        for r in range(reps):
            up.cancel(peer, r)
        out[str(n)] = round((time.perf_counter() - t) / reps * 1e6, 2)
    return out


class _C:
    """A stand-in chunk for the queue (only ``seq`` and ``payload`` are read)."""

    def __init__(self, seq: int) -> None:
        self.seq, self.payload = seq, b"x"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--links", type=int, default=8)
    ap.add_argument("--rate", type=float, default=190.0, help="CANCELs per second per link")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--upload-kbps", type=int, default=3000)
    ap.add_argument("--chunk-bytes", type=int, default=6000)
    ap.add_argument("--period", type=float, default=0.033)
    ap.add_argument("--fill", action="store_true",
                    help="each link also REQUESTs every new chunk (its pull budget): answers "
                         "queue behind B's cap, so each CANCEL's scan has a long queue to walk")
    a = ap.parse_args()
    loop = asyncio.get_running_loop()
    cfg = sw.SwarmConfig(upload_kbps=a.upload_kbps)
    b = Node(Identity.generate(), cfg, host="127.0.0.1", target_neighbours=0, dht=False)
    await b.start()
    sid = StreamId(b.identity.public, "live")
    src = b.add_stream(sid, is_source=True)
    seq = [0]

    def tick() -> None:
        chunk = sign_chunk(b.identity, sid, seq[0], int(time.time() * 1e6), seq[0] % 30 == 0,
                           b"\x47" * a.chunk_bytes)
        src.swarm.publish(chunk, time.time())
        src.pump()
        seq[0] += 1
        handles[0] = loop.call_later(a.period, tick)
    handles = [loop.call_later(0.0, tick)]

    lags: list[float] = []

    async def probe() -> None:
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - t - 0.01)
    prober = asyncio.ensure_future(probe())
    qmax = [0]

    async def watch_queue() -> None:
        while True:
            await asyncio.sleep(0.05)
            qmax[0] = max(qmax[0], len(src.swarm.upload))
    watcher = asyncio.ensure_future(watch_queue())

    h = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0, dht=False)
    await h.start()
    hs = h.add_stream(sid, is_source=False)
    await h.connect(b.peer_id, "127.0.0.1", b.port)
    conns: list[Any] = []
    for _ in range(a.links):
        c = await dial(Victim("127.0.0.1", b.port, b.identity.public), auth=True)
        if c.authed.is_set() and not c.terminated.is_set():
            c.send_msg(wire.Join(stream=str(sid)))
            conns.append(c)
    await asyncio.sleep(3.0)  # joined, pushed to, H playing

    def h_have() -> int:
        return int(hs.swarm.log.latest)

    async def phase(seconds: float, flood: bool) -> dict[str, Any]:
        lags.clear()
        q0 = qmax[0] = 0
        h0, t0 = h_have(), time.monotonic()
        sent = 0
        step = 0.02
        per_step = a.rate * step
        acc = 0.0
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(step)
            if not flood:
                continue
            acc += per_step
            k, acc = int(acc), acc - int(acc)
            top = int(src.swarm.log.latest)
            for c in conns:
                if c.terminated.is_set():
                    continue
                if a.fill:
                    last = getattr(c, "asked_up_to", top - 1)
                    for s in range(last + 1, top + 1):
                        c.send_msg(wire.Request(stream=sid.key, seq=s))
                    c.asked_up_to = top
                for _ in range(k):
                    r = random.random()
                    if r < 0.5:  # a seq nobody asked (a full scan of the queue)
                        s = random.randrange(0, 1 << 62)
                    elif r < 0.8:  # the live edge: what H and the others are being sent
                        s = max(0, top - random.randrange(0, 30))
                    else:  # a REQUEST and at once its CANCEL
                        s = max(0, top - random.randrange(0, 10))
                        c.send_msg(wire.Request(stream=sid.key, seq=s))
                    c.send_msg(wire.Cancel(stream=sid.key, seq=s))
                    sent += 1
        dt = time.monotonic() - t0
        lag_sorted = sorted(lags) or [0.0]
        return {"seconds": round(dt, 1), "cancels_sent": sent,
                "h_chunks_per_s": round((h_have() - h0) / dt, 1),
                "loop_lag_ms_p50": round(statistics.median(lag_sorted) * 1000, 1),
                "loop_lag_ms_p99": round(lag_sorted[int(len(lag_sorted) * 0.99) - 1] * 1000, 1),
                "loop_lag_ms_max": round(lag_sorted[-1] * 1000, 1),
                "upload_queue_max": max(q0, qmax[0])}
    before = await phase(a.seconds / 2, flood=False)
    during = await phase(a.seconds, flood=True)
    c_ = src.swarm.counters
    out = {"links": len(conns), "rate_per_link": a.rate, "before": before, "during": during,
           "attacker_links_alive": sum(1 for c in conns if not c.terminated.is_set()),
           "attacker_links_ended": sorted({f"{c.close_code}:{c.close_reason[:30]}" for c in conns
                                           if c.terminated.is_set()}),
           "b_cancels_held": c_.cancels_held, "b_cancels_queued": c_.cancels_queued,
           "b_cancels_late": c_.cancels_late, "b_requests_served": c_.requests_served,
           "b_messages_over_budget": b.policy.counters.messages_over_budget,
           "h_still_linked": b.identity.public in h.policy.peers,
           "scan_us_per_cancel_by_queue_length": scan_cost([10, 100, 1000, 10000])}
    prober.cancel()
    watcher.cancel()
    handles[0].cancel()
    for c in conns:
        await hang_up(c)
    await h.close()
    await b.close()
    out["loadavg"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
