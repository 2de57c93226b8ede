"""Attack: make a viewer ban its relay with relayed direct messages (docs/oftp.md §14.7,
§19.3). A relay R hands an envelope for a peer it is linked to over at once. Each of
``--attackers`` links to R sends junk envelopes (random bytes: R cannot open them, only
relays them) addressed to a viewer V of R's stream, within R's per-link DM rate (20/s); R
relayed their sum to V, past V's control-message budget (200/s), and V's peer policy
banned R -- its source of video. Real nodes over real QUIC on loopback, in one process.

Prints JSON: whether V banned R or still holds its link, V's over-budget count, R's DM
counters.

PYTHONPATH=. python bench/atk4_dm_relay.py [--attackers 12] [--rate 19] [--seconds 10]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from atk4_chat_replay import viewer  # the same joined viewer (run from bench/)

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node


def junk(to: bytes) -> wire.DmEnvelope:
    return wire.DmEnvelope(to=to, eph=os.urandom(32), prekey=bytes(32),
                           expires_ms=int(time.time() * 1000) + 3_600_000, box=os.urandom(200))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attackers", type=int, default=12)
    ap.add_argument("--rate", type=float, default=19.0, help="envelopes per second per attacker link")
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    r = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    await r.start()
    sid = StreamId(r.identity.public, "live")
    r.add_stream(sid, is_source=True)
    nodes = [r]
    try:
        v = await viewer(sid, r)
        xs = [await viewer(sid, r) for _ in range(a.attackers)]
        nodes += [v, *xs]
        rkey, vkey = r.identity.public, v.identity.public
        sent = 0
        stop = time.monotonic() + a.seconds

        async def flood(x: Node) -> None:
            nonlocal sent
            t0, mine = time.monotonic(), 0
            while time.monotonic() < stop:
                while mine < a.rate * (time.monotonic() - t0):  # the link's rate, on average
                    x.send_to(rkey, junk(vkey))
                    sent += 1
                    mine += 1
                await asyncio.sleep(0.05)
        await asyncio.gather(*(flood(x) for x in xs))
        await asyncio.sleep(1.0)
        rc = r.messaging.counters()
        out = {"attackers": a.attackers, "rate_per_link": a.rate, "seconds": a.seconds, "sent": sent,
               "V_banned_R": v.policy.is_banned(rkey, v.clock()), "V_linked_to_R": rkey in v.policy.peers,
               "V_messages_over_budget": v.counters["messages_over_budget"],
               "V_dm_link_limited": v.messaging.counters()["dm_link_limited"],
               **{f"R_{k}": n for k, n in rc.items() if k.startswith("dm_") and n},
               "loadavg": open("/proc/loadavg").read().split()[:3]}
    finally:
        for n in nodes:
            await n.close()
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
