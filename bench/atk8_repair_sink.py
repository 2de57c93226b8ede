"""Attack (issue 8, loopback only): repair sinks against real viewer nodes. Prints JSON.

A repair sink is a stranger that JOINs a stream, sends STATUS claiming every chunk up to the
live edge (``--ahead`` chunks beyond what its victims' own STATUS shows, within the signed
clock's slack, so the claim is plausible), offers no path (it is never taken as a parent)
and one free slot (so it is asked on late substreams too), and takes every REQUEST without
answering it: no chunk, no MISSING. Each REQUEST a viewer sends it costs that viewer a
repair round before it asks another peer; the last rounds before the origin fallback fall
to the origin, or past the deadline.

Here, in one process on loopback (real ``Node``s, QUIC, the real swarm core): a broadcaster
B (upload cap ``--b-upload`` kbit/s, an HTTP origin), ``--viewers`` honest viewers (upload
cap ``--v-upload``; each links to B and to earlier viewers), all with ``--link-ms`` one-way
delay; B's and the relays' caps keep their uploads busy, so chunks are late at times and
viewers repair. After ``--warmup`` s, ``--sinks`` sinks (``oasis.tools.hostile``'s OFTP
client) dial every viewer and run ``--seconds`` s. Three runs, fresh nodes each: no sink,
sinks with the viewers' ``SwarmConfig.repair_guard`` off, and on. For the honest viewers
over the attack (chunks made from 2 s after it began to 1 s before the end): continuity
(on time for the 0.5 s playout), the origin's share of their bytes, p50/p95 latency, the
REQUESTs they sent and what the sinks took, and the guard's counters.

PYTHONPATH=. python bench/atk8_repair_sink.py [--viewers 8] [--sinks 2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import time
from typing import Any

from aiohttp import web

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.node import http
from oasis.node.node import Node
from oasis.node.runtime import start_http
from oasis.tools.hostile import ALL_BITS, Conn, Victim, dial, hang_up

PERIOD = 0.033
GOP = 30


class Sink:
    """One repair sink: a link to each victim, a claim refreshed every ``every`` s."""

    def __init__(self, sid: StreamId, ahead: int, every: float) -> None:
        self.sid = sid
        self.ahead = ahead
        self.every = every
        self.conns: list[Conn] = []
        self.taken = 0  #: REQUESTs taken and never answered
        self.claims = 0

    async def attach(self, victims: list[Node]) -> None:
        for v in victims:
            c = await dial(Victim("127.0.0.1", v.port, v.identity.public), auth=True)
            if not c.authed.is_set() or c.terminated.is_set():
                continue

            def note(msg: wire.Message) -> None:
                if isinstance(msg, wire.Request):
                    self.taken += 1  # held for ever: no chunk, no MISSING

            c.on_message = note
            c.send_msg(wire.Join(stream=str(self.sid)))
            self.conns.append(c)

    async def run(self, until: float) -> None:
        while time.monotonic() < until:
            for c in self.conns:
                st = c.status  # the victim's own STATUS: its live edge and substreams
                if c.terminated.is_set() or st is None or not st.latest:
                    continue
                k = len(st.paths) or 4
                c.send_msg(wire.Status(stream=self.sid.key, latest=st.latest + self.ahead, have=ALL_BITS,
                                       keyframe=st.keyframe, slots=1, paths=[[] for _ in range(k)],
                                       lags=[wire.LAG_UNKNOWN] * k))
                self.claims += 1
            await asyncio.sleep(self.every)

    async def close(self) -> None:
        for c in self.conns:
            await hang_up(c)


async def one_run(a: argparse.Namespace, sinks: int, guard: bool, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    b = Node(Identity.generate(), sw.SwarmConfig(upload_kbps=a.b_upload), host="127.0.0.1",
             target_neighbours=0, dht=False, link_delay=a.link_ms / 1000)
    await b.start()
    sid = StreamId(b.identity.public, "live")
    src = b.add_stream(sid, is_source=True)
    app = web.Application()
    http.add_origin_routes(app, b)
    runner, port = await start_http(app, "127.0.0.1", 0)
    origin = f"http://127.0.0.1:{port}/origin"
    produced: dict[int, float] = {}
    seq = [0]
    payload = b"\x47" * a.chunk_bytes

    def tick() -> None:
        now = time.time()
        produced[seq[0]] = now
        src.swarm.publish(sign_chunk(b.identity, sid, seq[0], int(now * 1e6), seq[0] % GOP == 0, payload), now)
        src.pump()
        seq[0] += 1
        handle[0] = loop.call_later(PERIOD, tick)
    handle = [loop.call_later(0.0, tick)]
    vcfg = sw.SwarmConfig(upload_kbps=a.v_upload, repair_guard=guard)
    viewers: list[Node] = []
    streams = []
    for _ in range(a.viewers):
        v = Node(Identity.generate(), vcfg, host="127.0.0.1", target_neighbours=0, dht=False,
                 link_delay=a.link_ms / 1000)
        await v.start()
        streams.append(v.add_stream(sid, is_source=False, origin_url=origin, config=vcfg))
        await v.connect(b.peer_id, "127.0.0.1", b.port)
        for o in rng.sample(viewers, min(3, len(viewers))):
            await v.connect(o.peer_id, "127.0.0.1", o.port)
        viewers.append(v)
        await asyncio.sleep(0.3)
    await asyncio.sleep(a.warmup)
    attackers = [Sink(sid, a.ahead, a.every) for _ in range(sinks)]
    for s in attackers:
        await s.attach(viewers)
    t0 = time.time()
    before = [dict(ls.record.bytes_by_source) for ls in streams]
    c0 = [dataclasses.asdict(ls.swarm.counters) for ls in streams]
    until = time.monotonic() + a.seconds
    await asyncio.gather(*(s.run(until) for s in attackers), asyncio.sleep(a.seconds))
    t1 = time.time()
    handle[0].cancel()
    # the honest viewers' figures over the attack
    lo, hi = t0 + 2.0, t1 - 1.0
    due = ok = 0
    lat: list[float] = []
    by_source: dict[str, int] = {}
    for ls, b0 in zip(streams, before, strict=True):
        r = ls.record
        got = dict(zip(r.lat_seq, r.lat, strict=True))
        on_time = set(r.on_time)
        for s, t in produced.items():
            if lo <= t <= hi:
                due += 1
                ok += s in on_time
                if s in got:
                    lat.append(got[s])
        for k, n in r.bytes_by_source.items():
            by_source[k] = by_source.get(k, 0) + n - b0.get(k, 0)
    lat.sort()
    total = sum(by_source.values()) or 1
    diff = {k: sum(dataclasses.asdict(ls.swarm.counters)[k] - c[k] for ls, c in zip(streams, c0, strict=True))
            for k in ("requests_sent", "repair_misses_judged", "repair_sinks_distrusted",
                      "skipped", "origin_fetches")}
    sink_links_closed = sum(1 for s in attackers for c in s.conns if c.terminated.is_set())
    reasons = sorted({why.split(":")[0] for ls in streams for _, _, why in ls.swarm.repair.distrust_log})
    sink_keys = {c.identity.public for s in attackers for c in s.conns}
    judged = [key in sink_keys for ls in streams for key, _, _ in ls.swarm.repair.distrust_log]
    out = {"sinks": sinks, "guard": guard, "seed": seed, "viewers": a.viewers,
           "continuity": round(ok / due, 5) if due else None, "chunks_due": due,
           "origin_share": round(by_source.get("origin", 0) / total, 4),
           "p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
           "p95_ms": round(lat[int(len(lat) * 0.95)] * 1000, 1) if lat else None,
           "counters": diff, "requests_taken_by_sinks": sum(s.taken for s in attackers),
           "sink_links": sum(len(s.conns) for s in attackers), "sink_links_closed": sink_links_closed,
           "distrust_reasons": reasons,
           "distrusts_of_sinks": sum(judged), "distrusts_of_honest": len(judged) - sum(judged)}
    for s in attackers:
        await s.close()
    for v in viewers:
        await v.close()
    await runner.cleanup()
    await b.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--viewers", type=int, default=8)
    ap.add_argument("--sinks", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--b-upload", type=int, default=6000)
    ap.add_argument("--v-upload", type=int, default=3000)
    ap.add_argument("--chunk-bytes", type=int, default=6200)
    ap.add_argument("--link-ms", type=float, default=20.0)
    ap.add_argument("--ahead", type=int, default=15, help="chunks claimed beyond the victim's latest")
    ap.add_argument("--every", type=float, default=0.25, help="s between a sink's claims")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--runs", nargs="+", default=["none", "off", "on"],
                    help="none: no sink; off/on: sinks, the viewers' repair_guard off/on")
    a = ap.parse_args()
    for seed in a.seeds:
        for run in a.runs:
            r = await one_run(a, 0 if run == "none" else a.sinks, run == "on", seed)
            r["run"] = run
            r["loadavg"] = open("/proc/loadavg").read().split()[:3]
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
