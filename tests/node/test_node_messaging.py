"""Chat and direct messages between real nodes over real QUIC (in one process).

Topology: a broadcaster B (the relay) and viewers linked only to it. Chat from one
viewer reaches the others through B; a mute by B is enforced by B for a viewer that
ignores it; a direct message to a viewer that is offline is stored by B and handed
over when it links, and the sender sees ``delivered``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from procs import until

from oasis.core import chat as ch
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node


async def viewer(sid: StreamId, b: Node) -> Node:
    v = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    await v.start()
    v.add_stream(sid, is_source=False)
    assert await v.connect(b.peer_id, b.host, b.port)
    await until(lambda: sid.key in b.joined.get(v.identity.public, set()), 10, what="join")
    return v


async def next_event(sub: Any, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    while True:
        ev = await sub.get(timeout)
        if ev.kind == kind:
            return ev.data  # type: ignore[no-any-return]


async def test_chat_through_a_relay_mute_enforced_and_dm_stored_for_an_offline_peer() -> None:
    b = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    await b.start()
    sid = StreamId(b.identity.public, "live")
    b.add_stream(sid, is_source=True)
    nodes = [b]
    try:
        v1 = await viewer(sid, b)
        v2 = await viewer(sid, b)
        nodes += [v1, v2]
        sub1, sub2 = v1.events.subscribe(["chat"]), v2.events.subscribe(["chat", "dm"])
        rec = await v2.messaging.chat_send(str(sid), "hello from v2")
        assert rec["sender"] == v2.peer_id and rec["text"] == "hello from v2"
        got = await next_event(sub1, "chat.message")
        assert got["text"] == "hello from v2" and got["sender"] == v2.peer_id
        assert [m["text"] for m in b.messaging.chat_history(str(sid))] == ["hello from v2"]

        # Moderation: only the broadcaster; its mute is enforced by the relay itself.
        with pytest.raises(PermissionError):
            await v1.messaging.chat_moderate(str(sid), v2.peer_id, "mute")
        await b.messaging.chat_moderate(str(sid), v2.peer_id, "mute", 60)
        assert (await next_event(sub2, "chat.moderation"))["action"] == "mute"
        with pytest.raises(PermissionError):
            await v2.messaging.chat_send(str(sid), "muted?")
        # v2 ignores the mute (a modified client): it signs and sends directly.
        room = v2.messaging.rooms[sid.key]
        t = v2.clock()
        seq = room.seq + 1
        forged_free = wire.ChatMsg(stream=sid.key, sender=v2.identity.public, seq=seq, time_ms=int(t * 1000),
                                   text="spam", signature=v2.identity.sign(ch.chat_signing_bytes(
                                       sid.key, v2.identity.public, seq, int(t * 1000), "spam")))
        v2.send_to(b.identity.public, forged_free)
        await until(lambda: b.messaging.counters()["chat_muted_dropped"] == 1, 10, what="drop")
        await v1.messaging.chat_send(str(sid), "still here")
        assert (await next_event(sub1, "chat.message"))["text"] == "still here"
        assert [m["text"] for m in v1.messaging.chat_history(str(sid))] == ["hello from v2", "still here"]

        # A direct message to a viewer that is not online: held by B, delivered later.
        v3_ident = Identity.generate()
        sent = await v1.messaging.dm_send(v3_ident.peer_id, "see you later")
        assert sent["state"] == "stored"
        await until(lambda: b.messaging.counters()["dm_held"] == 1, 10, what="held")
        acked = v1.events.subscribe(["dm.acked"])
        v3 = Node(v3_ident, sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
        await v3.start()
        nodes.append(v3)
        sub3 = v3.events.subscribe(["dm"])
        v3.add_stream(sid, is_source=False)
        assert await v3.connect(b.peer_id, b.host, b.port)
        got3 = await next_event(sub3, "dm.received")
        assert got3 == {"id": sent["id"], "sender": v1.peer_id, "text": "see you later",
                        "time": got3["time"]}
        assert (await next_event(acked, "dm.acked")) == {"id": sent["id"], "to": v3.peer_id}
        assert v1.messaging.dm_state(sent["id"])["state"] == "delivered"
        assert v3.messaging.dm_inbox()[0]["text"] == "see you later"
        # B relayed the ACK and opened nothing (it cannot: the boxes are for v1 and v3)
        assert b.messaging.counters()["dm_relayed"] >= 1 and b.messaging.dm.counters.delivered == 0
        # v3 online now: v1 -> B -> v3 is relayed at once (B is linked to v3)
        again = await v1.messaging.dm_send(v3.peer_id, "welcome back")
        assert (await next_event(sub3, "dm.received"))["text"] == "welcome back"
        assert (await next_event(acked, "dm.acked"))["id"] == again["id"]
        for bad in ("nope", b.peer_id[:-1] + "!"):
            with pytest.raises(ValueError):
                await v1.messaging.dm_send(bad, "x")
        with pytest.raises(LookupError):
            v1.messaging.chat_history("unknown.live")
    finally:
        await asyncio.gather(*(n.close() for n in nodes))
