"""Attack: a sybil chat flood evicts an honest sender's dedup record, then a replay
(docs/oftp.md §14.7, §19.2). Real nodes over real QUIC on loopback, in one process: a
broadcaster B (the relay), an honest viewer H who chats once, an observer O, and
``--attackers`` viewers that each send validly signed messages from fresh keys at just
under the per-link chat rate (50/s), until B has evicted more than ``max_senders``
(4,096) senders; one of them then sends H's message -- which B forwarded it -- back to B.

Prints JSON: how many times B and O delivered H's message (1 is right), the flood's size
and time, B's chat counters.

PYTHONPATH=. python bench/atk4_chat_replay.py [--attackers 6] [--rate 45]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from oasis.core import chat as ch
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node


async def wait_for(pred: Any, timeout: float) -> bool:
    t = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > t:
            return False
        await asyncio.sleep(0.05)
    return True


async def viewer(sid: StreamId, b: Node) -> Node:
    v = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    await v.start()
    v.add_stream(sid, is_source=False)
    assert await v.connect(b.peer_id, b.host, b.port)
    assert await wait_for(lambda: sid.key in b.joined.get(v.identity.public, set()), 10)
    return v


def sybil(sid: StreamId, t: float, i: int) -> wire.ChatMsg:
    who = Identity.generate()
    ms = int(t * 1000)
    text = f"sybil {i}"
    return wire.ChatMsg(stream=sid.key, sender=who.public, seq=ms, time_ms=ms, text=text,
                        signature=who.sign(ch.chat_signing_bytes(sid.key, who.public, ms, ms, text)))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attackers", type=int, default=6)
    ap.add_argument("--rate", type=float, default=45.0, help="sybil messages per second per attacker link")
    a = ap.parse_args()
    b = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    await b.start()
    sid = StreamId(b.identity.public, "live")
    b.add_stream(sid, is_source=True)
    nodes = [b]
    try:
        h, o = await viewer(sid, b), await viewer(sid, b)
        xs = [await viewer(sid, b) for _ in range(a.attackers)]
        nodes += [h, o, *xs]
        kept: list[Any] = []
        on_chat = xs[0].messaging.on_chat

        def keep(peer: bytes, msg: Any) -> None:
            if getattr(msg, "text", "") == "honest words":
                kept.append(msg)
            on_chat(peer, msg)
        xs[0].messaging.on_chat = keep  # type: ignore[method-assign]
        got = {"B": 0, "O": 0}
        for name, n in (("B", b), ("O", o)):  # deliveries of H's message (history keeps 500)
            def count(m: Any, late: bool = False, _r: Any = n.messaging._record, _k: str = name) -> Any:
                if m.text == "honest words":
                    got[_k] += 1
                return _r(m, late)
            n.messaging._record = count  # type: ignore[method-assign]
        await h.messaging.chat_send(str(sid), "honest words")
        t_honest = time.monotonic()
        assert await wait_for(lambda: bool(kept), 10)
        cap = b.messaging.chat_config.max_senders
        sent = 0

        async def flood(x: Node) -> None:
            nonlocal sent
            while b.messaging.counters()["chat_senders_evicted"] < 64 and time.monotonic() - t_honest < 25:
                t0 = time.monotonic()
                for _ in range(max(1, int(a.rate / 10))):
                    x.send_to(b.identity.public, sybil(sid, x.clock(), sent))
                    sent += 1
                await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
        await asyncio.gather(*(flood(x) for x in xs))
        flood_s = time.monotonic() - t_honest
        evicted_h = h.identity.public not in b.messaging.rooms[sid.key].senders
        xs[0].send_to(b.identity.public, kept[0])  # the replay

        await wait_for(lambda: b.messaging.counters().get("chat_forgotten_refused", 0) >= 1 or got["B"] > 1, 10)
        await wait_for(lambda: got["O"] > 1, 2.0)  # (a second copy, if B forwarded one)
        bkey = b.identity.public
        viewers = {"H": h, "O": o, **{f"X{i}": x for i, x in enumerate(xs)}}
        c = b.messaging.counters()
        out = {"sybil_messages_sent": sent, "max_senders": cap, "flood_s": round(flood_s, 1),
               "replay_age_s": round(time.monotonic() - t_honest, 1),
               "honest_record_evicted_at_B": evicted_h,
               "honest_message_delivered_at_B": got["B"], "honest_message_delivered_at_O": got["O"],
               "viewers_that_banned_B": sorted(k for k, v in viewers.items() if v.policy.is_banned(bkey, v.clock())),
               "viewers_linked_to_B": sorted(k for k, v in viewers.items() if bkey in v.policy.peers),
               "O_messages_over_budget": o.counters["messages_over_budget"],
               "O_chat_link_limited": o.messaging.counters()["chat_link_limited"],
               **{k: v for k, v in c.items() if k.startswith("chat_") and v},
               "loadavg": open("/proc/loadavg").read().split()[:3]}
    finally:
        for n in nodes:
            await n.close()
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
