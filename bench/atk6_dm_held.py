"""Attack: keep a viewer's direct messages away from it with the relay's per-recipient
limit (docs/oftp.md §14.7, §19.3, §19.4).

A relay R hands an envelope for a peer it is linked to over at once, at most 20 a second
per recipient (burst 40); the excess is "held in the mailbox and handed over at the
recipient's next link". A recipient V that stays linked to R has no next link. So: one
attacker link X sends R junk envelopes addressed to V at the per-link rate (19/s, within
everything), and an honest viewer S, not linked to V, sends V a direct message through R
while the flood runs. When does V get it -- during the flood, after it, or only when V
links to R again?

Also without any attacker: S sends V a burst of ``--burst`` messages at once (an honest
burst over the relay's 40).

Real nodes over real QUIC on loopback, in one process. Prints JSON.

PYTHONPATH=. python bench/atk6_dm_held.py [--rate 19] [--flood 10] [--wait 20] [--burst 60]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from atk4_chat_replay import viewer, wait_for  # the same joined viewer (run from bench/)

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node


def junk(to: bytes) -> wire.DmEnvelope:
    return wire.DmEnvelope(to=to, eph=os.urandom(32), prekey=bytes(32),
                           expires_ms=int(time.time() * 1000) + 3_600_000, box=os.urandom(200))


def inbox_texts(v: Node) -> list[str]:
    return [m["text"] for m in v.messaging.dm_inbox(limit=1000)]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=19.0, help="junk envelopes per second per attacker link")
    ap.add_argument("--attackers", type=int, default=2, help="attacker links (each within R's per-link rate)")
    ap.add_argument("--flood", type=float, default=10.0, help="seconds of flood")
    ap.add_argument("--wait", type=float, default=20.0, help="seconds to wait after the flood")
    ap.add_argument("--burst", type=int, default=60, help="honest burst size (0: skip)")
    ap.add_argument("--honest", type=int, default=8, help="honest messages sent into the flood")
    a = ap.parse_args()
    r = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    await r.start()
    sid = StreamId(r.identity.public, "live")
    r.add_stream(sid, is_source=True)
    nodes = [r]
    out: dict[str, Any] = {"rate": a.rate, "flood_s": a.flood, "wait_s": a.wait}
    try:
        v, s = await viewer(sid, r), await viewer(sid, r)
        xs = [await viewer(sid, r) for _ in range(a.attackers)]
        nodes += [v, s, *xs]
        rkey, vkey = r.identity.public, v.identity.public
        # 1. baseline: one message, no flood
        t0 = time.monotonic()
        await s.messaging.dm_send(v.peer_id, "baseline")
        ok = await wait_for(lambda: "baseline" in inbox_texts(v), 10)
        out["baseline_delivered_s"] = round(time.monotonic() - t0, 2) if ok else None
        # 2. an honest burst, no attacker (before the flood: R's buckets and mailbox clean)
        if a.burst:
            rc = r.messaging.counters()
            t_b = time.monotonic()
            ids = [(await s.messaging.dm_send(v.peer_id, f"burst {i}"))["id"] for i in range(a.burst)]
            await wait_for(lambda: sum(t.startswith("burst ") for t in inbox_texts(v)) >= a.burst, a.wait)
            got = sum(t.startswith("burst ") for t in inbox_texts(v))
            states: dict[str, int] = {}
            for mid in ids:
                st = s.messaging.dm_state(mid)["state"]
                states[st] = states.get(st, 0) + 1
            rc2 = r.messaging.counters()
            out.update({"burst": a.burst, "burst_delivered": got, "burst_S_states": states,
                        "burst_waited_s": round(time.monotonic() - t_b, 1),
                        **{f"burst_R_{k}": n - rc.get(k, 0) for k, n in rc2.items()
                           if k.startswith("dm_") and n - rc.get(k, 0)}})
            await asyncio.sleep(3.0)  # R's buckets full again
        # 3. the flood, and an honest message 3 s into it
        stop = time.monotonic() + a.flood
        sent = 0

        async def flood() -> None:
            nonlocal sent
            t1 = time.monotonic()
            while time.monotonic() < stop:
                while sent < a.rate * len(xs) * (time.monotonic() - t1):
                    xs[sent % len(xs)].send_to(rkey, junk(vkey))
                    sent += 1
                await asyncio.sleep(0.05)
        task = asyncio.ensure_future(flood())
        await asyncio.sleep(min(2.0, a.flood / 4))
        sent_at: dict[str, float] = {}
        got_at: dict[str, float] = {}
        mids: list[str] = []

        async def watch() -> None:
            end = time.monotonic() + a.flood + a.wait
            while time.monotonic() < end and len(got_at) < a.honest:
                for t in inbox_texts(v):
                    if t in sent_at and t not in got_at:
                        got_at[t] = time.monotonic()
                await asyncio.sleep(0.05)
        watcher = asyncio.ensure_future(watch())
        for i in range(a.honest):  # honest messages into the flood, 0.5 s apart
            text = f"during the flood {i}"
            sent_at[text] = time.monotonic()
            mids.append((await s.messaging.dm_send(v.peer_id, text))["id"])
            await asyncio.sleep(0.5)
        await task
        t_stop = time.monotonic()
        held_at_end = r.messaging.counters()["dm_held"]
        await watcher
        await wait_for(lambda: r.messaging.counters()["dm_held"] == 0, 10)
        rc = r.messaging.counters()
        delays = sorted(round(got_at[t] - sent_at[t], 2) for t in got_at)
        states: dict[str, int] = {}
        for mid in mids:
            st = s.messaging.dm_state(mid)["state"]
            states[st] = states.get(st, 0) + 1
        out.update({
            "junk_sent": sent, "V_linked_to_R": rkey in v.policy.peers,
            "R_held_at_flood_end": held_at_end, "R_held_10s_later": rc["dm_held"], "honest_sent": a.honest,
            "honest_delivered_during_flood": sum(1 for t in got_at.values() if t <= t_stop),
            "honest_delivered_after_flood": sum(1 for t in got_at.values() if t > t_stop),
            "honest_never": a.honest - len(got_at), "honest_delays_s": delays, "honest_S_states": states,
            **{f"R_{k}": n for k, n in rc.items() if k.startswith("dm_") and n}})
    finally:
        for n in nodes:
            await n.close()
    out["loadavg"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
