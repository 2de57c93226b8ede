"""Stream chat: a sybil flood evicts an honest sender's dedup record at a relay, then a
neighbour replays that sender's message (docs/oftp.md §14.7; ``bench/atk4_chat_replay.py``
mounts it with the default 4,096 senders). Real nodes over real QUIC, in one process: a
broadcaster B (the relay, remembering 64 senders here so the flood is small), an honest
viewer H who chats, an observer O, and an attacker X -- a viewer of the stream like any
other, keeping the messages B forwards it. Before the fix B delivered H's message a second
time and forwarded it to everyone."""

from __future__ import annotations

from typing import Any

from joined import viewer
from procs import until

from oasis.core import chat as ch
from oasis.core import peer as pp
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node


def sybil(sid: StreamId, t: float, i: int) -> wire.ChatMsg:
    who = Identity.generate()
    ms = int(t * 1000)
    text = f"sybil {i}"
    return wire.ChatMsg(stream=sid.key, sender=who.public, seq=ms, time_ms=ms, text=text,
                        signature=who.sign(ch.chat_signing_bytes(sid.key, who.public, ms, ms, text)))


async def test_a_replay_after_a_sybil_flood_is_not_delivered_again() -> None:
    b = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    b.messaging.chat_config = ch.ChatConfig(max_senders=64)
    await b.start()
    sid = StreamId(b.identity.public, "live")
    b.add_stream(sid, is_source=True)
    nodes = [b]
    try:
        h, o, x = await viewer(sid, b), await viewer(sid, b), await viewer(sid, b)
        nodes += [h, o, x]
        kept: list[Any] = []
        on_chat = x.messaging.on_chat

        def keep(peer: bytes, msg: Any) -> None:  # the attacker keeps what it is sent
            kept.append(msg)
            on_chat(peer, msg)
        x.messaging.on_chat = keep  # type: ignore[method-assign]
        await h.messaging.chat_send(str(sid), "honest words")
        await until(lambda: any(getattr(m, "text", "") == "honest words" for m in kept), 10, what="relayed")
        original = next(m for m in kept if getattr(m, "text", "") == "honest words")

        for i in range(70):  # fresh keys, validly signed, within the link's chat burst
            x.send_to(b.identity.public, sybil(sid, x.clock(), i))
        await until(lambda: b.messaging.counters()["chat_senders_evicted"] >= 6, 15, what="flood")
        assert h.identity.public not in b.messaging.rooms[sid.key].senders  # H's record is gone

        def said() -> int:
            return [m["text"] for m in b.messaging.chat_history(str(sid), limit=500)].count("honest words")
        x.send_to(b.identity.public, original)  # the replay
        await until(lambda: b.messaging.counters().get("chat_forgotten_refused", 0) >= 1 or said() > 1,
                    10, what="the replay refused or delivered")
        assert said() == 1  # was: 2, and forwarded to O and H again
        assert b.counters["chat_forgotten_refused"] == 1  # what /metrics exports
        # B keeps relaying: H's next message reaches O
        await h.messaging.chat_send(str(sid), "still here")
        await until(lambda: any(m["text"] == "still here" for m in o.messaging.chat_history(str(sid), limit=500)),
                    10, what="relay after the flood")
        assert [m["text"] for m in o.messaging.chat_history(str(sid), limit=500)].count("honest words") == 1
    finally:
        for n in nodes:
            await n.close()


async def test_a_sybil_chat_flood_on_several_links_does_not_make_viewers_ban_their_relay() -> None:
    """Each attacker link stays within B's per-link chat bucket, with a fresh key per
    message; B relayed their sum to every viewer, over the viewer's control-message
    budget, and the viewers banned B -- their source of video (found 2026-12-03:
    ``bench/atk4_chat_replay.py``, 6 links at 45/s with the default budgets). Scaled down
    here: chat 10/s a link at B, a viewer's budget 30/s; 5 attacker links at ~10/s."""
    b = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    b.messaging.chat_config = ch.ChatConfig(link_rate=10.0, link_burst=20.0)
    await b.start()
    sid = StreamId(b.identity.public, "live")
    b.add_stream(sid, is_source=True)
    nodes = [b]
    try:
        o = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0,
                 policy=pp.PolicyConfig(msg_rate=30.0, msg_burst=60.0))
        nodes.append(o)
        await o.start()
        o.add_stream(sid, is_source=False)
        assert await o.connect(b.peer_id, b.host, b.port)
        await until(lambda: sid.key in b.joined.get(o.identity.public, set()), 10, what="join")
        xs = [await viewer(sid, b) for _ in range(5)]
        nodes += xs
        sent = 0
        # 5 links x 10 messages every second, 8 s: ~400 validly signed messages from fresh keys
        for step in range(8):
            for x in xs:
                for _ in range(10):
                    x.send_to(b.identity.public, sybil(sid, x.clock(), sent))
                    sent += 1
            target = 10 * len(xs) * (step + 1)
            await until(lambda target=target: b.messaging.counters()["chat_received"] >= target - 40, 10,
                        what="B received the flood")
            # (about one second of B's clock per step: B's buckets refill at their rate)
            t_step = b.clock()
            await until(lambda t_step=t_step: b.clock() - t_step >= 1.0, 5, what="a second")
        bc = b.messaging.counters()
        assert bc["chat_delivered"] >= 300  # B took the flood (each key is new)
        assert not o.policy.is_banned(b.identity.public, o.clock())  # was: banned
        assert o.counters["messages_over_budget"] == 0
        assert b.identity.public in o.policy.peers  # O keeps its link to B
        assert bc["chat_forward_limited"] > 0  # B forwarded each viewer only its share
    finally:
        for n in nodes:
            await n.close()
