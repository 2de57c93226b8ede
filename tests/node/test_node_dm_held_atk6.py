"""Direct messages to a viewer kept from it by a junk flood through its relay (docs/oftp.md
§14.7, §19.3; found 2026-12-03 by an outside attacker, ``bench/atk6_dm_held.py``). Real
nodes over real QUIC, in one process: a broadcaster R, its viewer V, an honest viewer S not
linked to V, and attacker viewers sending R junk envelopes addressed to V, each link within
R's per-link DM rate. R relays V at most its rate and held the rest "for V's next link";
V stays linked, so held mail never left, and the junk filled V's places at R: honest
messages sent into the flood were refused or held for good. Scaled down: R takes and
relays 10 DMs/s a link (burst 20); 4 attacker links at ~10/s for 6 s; S sends 5 messages
into the flood. Now every one reaches V during the flood, and what is held drains to V
once the flood ends (``dm_relay_drained`` on /metrics)."""

from __future__ import annotations

from joined import junk, viewer
from procs import until

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.metrics import NodeCollector
from oasis.node.node import Node


async def test_honest_dms_reach_a_viewer_that_stays_linked_through_a_junk_flood() -> None:
    r = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    r.messaging.dm.config.link_rate, r.messaging.dm.config.link_burst = 10.0, 20.0
    await r.start()
    sid = StreamId(r.identity.public, "live")
    r.add_stream(sid, is_source=True)
    nodes = [r]
    try:
        v, s = await viewer(sid, r), await viewer(sid, r)
        xs = [await viewer(sid, r) for _ in range(4)]
        nodes += [v, s, *xs]
        rkey, vkey = r.identity.public, v.identity.public

        def inbox() -> set[str]:
            return {m["text"] for m in v.messaging.dm_inbox(limit=1000)}
        texts = [f"honest {i}" for i in range(5)]
        for step in range(6):  # 6 s of 4 x 10 junk envelopes a second for V
            for x in xs:
                for _ in range(10):
                    x.send_to(rkey, junk(vkey))
            if 1 <= step <= 5:  # V's share long spent, its places at R full of junk
                await s.messaging.dm_send(v.peer_id, texts[step - 1])
            t_step = r.clock()
            await until(lambda t_step=t_step: r.clock() - t_step >= 1.0, 5, what="a second")
        rc = r.messaging.counters()
        assert rc["dm_relay_limited"] > 0 and rc["dm_mailbox_full"] > 0  # the flood was over V's share
        await until(lambda: set(texts) <= inbox(), 5, what="the honest messages at V")  # was: 1-3 never
        assert rkey in v.policy.peers  # V stayed linked to R all along: no "next link"
        await until(lambda: r.messaging.counters()["dm_held"] == 0, 15, what="R's backlog for V drained")
        events = {m.labels["event"]: m.value for f in NodeCollector(r).collect()
                  if f.name == "oasis_node_events" for m in f.samples}
        assert events["dm_relay_drained"] > 0
        assert not v.policy.is_banned(rkey, v.clock()) and v.counters["messages_over_budget"] == 0
    finally:
        for n in nodes:
            await n.close()
