"""Attack: LEAVE and JOIN again to refill the pull budget (docs/oftp.md §6 JOIN/LEAVE, §9.4).

A REQUEST is answered within the asker's *pull budget*: a token bucket per peer, refilled
at the stream rate and holding 4 s of it; over it, REQUESTs are refused and struck, and 64
strikes drop the peer. A peer may LEAVE a stream and JOIN it again (§6: "the peer may JOIN
again"); JOIN and LEAVE cost 10 tokens of the message budget each (200/s). Does a peer
that LEAVEs and JOINs again come back with a full pull budget (and its strikes forgiven)?

From ``--links`` hostile links of a stranger (``oasis.tools.hostile``'s QUIC client), each
JOINed to a real broadcaster B's stream: REQUESTs at ``--rate`` per second for chunks B
holds (the last 7 s); in the ``churn`` phase each link also sends LEAVE + JOIN every
``--period`` seconds. Measured: chunk bytes B sent the attacker per second, against the
stream's own rate; whether B cut the links off; an honest viewer H's chunks per second.

PYTHONPATH=. python bench/atk6_join_churn.py [--links 4] [--rate 150] [--period 0.5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.node.node import Node
from oasis.tools.hostile import Victim, dial, hang_up


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--links", type=int, default=4)
    ap.add_argument("--rate", type=float, default=150.0, help="REQUESTs per second per link")
    ap.add_argument("--period", type=float, default=0.5, help="LEAVE + JOIN every this many seconds")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    ap.add_argument("--upload-kbps", type=int, default=0, help="B's upload cap (0: none)")
    ap.add_argument("--chunk-bytes", type=int, default=6000)
    ap.add_argument("--period-chunk", type=float, default=0.033)
    ap.add_argument("--phases", default="plain,churn")
    a = ap.parse_args()
    loop = asyncio.get_running_loop()
    b = Node(Identity.generate(), sw.SwarmConfig(upload_kbps=a.upload_kbps), host="127.0.0.1",
             target_neighbours=0, dht=False)
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
        handles[0] = loop.call_later(a.period_chunk, tick)
    handles = [loop.call_later(0.0, tick)]
    h = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0, dht=False)
    await h.start()
    hs = h.add_stream(sid, is_source=False)
    await h.connect(b.peer_id, "127.0.0.1", b.port)
    await asyncio.sleep(2.0)
    stream_rate = a.chunk_bytes / a.period_chunk  # bytes/s of the stream

    async def phase(name: str) -> dict[str, Any]:
        conns: list[Any] = []
        for _ in range(a.links):
            c = await dial(Victim("127.0.0.1", b.port, b.identity.public), auth=True)
            if c.authed.is_set() and not c.terminated.is_set():
                c.send_msg(wire.Join(stream=str(sid)))
                conns.append(c)
        await asyncio.sleep(0.5)
        c0 = {id(c): c.got["CHUNK"] for c in conns}
        h0, t0 = int(hs.swarm.log.latest), time.monotonic()
        cnt0 = dict(vars(src.swarm.counters)) if hasattr(src.swarm.counters, "__dict__") else {}
        step, acc, next_churn, i, churns = 0.02, 0.0, t0 + a.period, 0, 0
        while time.monotonic() - t0 < a.seconds:
            await asyncio.sleep(step)
            acc += a.rate * step
            k, acc = int(acc), acc - int(acc)
            top = int(src.swarm.log.latest)
            churn = name == "churn" and time.monotonic() >= next_churn
            if churn:
                next_churn += a.period
                churns += 1
            for c in conns:
                if c.terminated.is_set():
                    continue
                if churn:
                    c.send_msg(wire.Leave(stream=sid.key))
                    c.send_msg(wire.Join(stream=str(sid)))
                for _ in range(k):
                    s = max(0, top - (i % 210))  # held, inside the request horizon (8 s)
                    i += 1
                    c.send_msg(wire.Request(stream=sid.key, seq=s))
        dt = time.monotonic() - t0
        got = sum(c.got["CHUNK"] - c0[id(c)] for c in conns)
        out = {"phase": name, "links": len(conns), "seconds": round(dt, 1), "churns_per_link": churns,
               "attacker_chunks": got, "attacker_bytes_per_s": round(got * a.chunk_bytes / dt),
               "attacker_x_stream_rate": round(got * a.chunk_bytes / dt / stream_rate, 2),
               "per_link_x_stream_rate": round(got * a.chunk_bytes / dt / stream_rate / max(1, len(conns)), 2),
               "links_cut": sorted({f"{c.close_code}:{c.close_reason[:40]}" for c in conns
                                    if c.terminated.is_set()}),
               "links_alive": sum(1 for c in conns if not c.terminated.is_set()),
               "h_chunks_per_s": round((int(hs.swarm.log.latest) - h0) / dt, 1)}
        cnt1 = dict(vars(src.swarm.counters)) if hasattr(src.swarm.counters, "__dict__") else {}
        out["b_counters"] = {k: v - cnt0.get(k, 0) for k, v in cnt1.items()
                             if isinstance(v, int) and v - cnt0.get(k, 0)}
        out["b_policy"] = {k: v for k, v in vars(b.policy.counters).items()
                           if isinstance(v, int) and v} \
            if hasattr(b.policy.counters, "__dict__") else {}
        for c in conns:
            await hang_up(c)
        return out

    results = []
    for name in a.phases.split(","):
        results.append(await phase(name))
        await asyncio.sleep(1.0)
    handles[0].cancel()
    await h.close()
    await b.close()
    print(json.dumps({"stream_bytes_per_s": round(stream_rate), "rate_per_link": a.rate, "period": a.period,
                      "upload_kbps": a.upload_kbps, "phases": results,
                      "loadavg": open("/proc/loadavg").read().split()[:3]}, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
