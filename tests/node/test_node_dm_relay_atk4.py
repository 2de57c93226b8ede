"""Relayed direct messages make a viewer ban its relay (docs/oftp.md §14.7, found
2026-12-03 by an outside attacker: ``bench/atk4_dm_relay.py``, 16 links at 19/s with the
default budgets). Real nodes over real QUIC, in one process: a broadcaster R, its viewer
V, and attacker viewers sending R junk envelopes addressed to V, each link within R's
per-link DM rate. R relayed their sum to V, over V's control-message budget, and V banned
R. Scaled down: R takes 10 DMs/s a link, V's budget is 30 messages/s; 5 attacker links
at ~10/s for 8 s."""

from __future__ import annotations

from joined import junk, viewer
from procs import until

from oasis.core import peer as pp
from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node


async def test_junk_dms_relayed_from_many_links_do_not_make_a_viewer_ban_its_relay() -> None:
    r = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    r.messaging.dm.config.link_rate, r.messaging.dm.config.link_burst = 10.0, 20.0
    await r.start()
    sid = StreamId(r.identity.public, "live")
    r.add_stream(sid, is_source=True)
    nodes = [r]
    try:
        v = await viewer(sid, r, pp.PolicyConfig(msg_rate=30.0, msg_burst=60.0))
        nodes.append(v)
        xs = [await viewer(sid, r) for _ in range(5)]
        nodes += xs
        rkey, vkey = r.identity.public, v.identity.public
        for step in range(8):
            for x in xs:
                for _ in range(10):
                    x.send_to(rkey, junk(vkey))
            target = 50 * (step + 1)
            await until(lambda target=target: r.messaging.counters()["dm_received"] >= target - 20, 10,
                        what="R received the flood")
            t_step = r.clock()  # about one second of R's clock per step: its buckets refill
            await until(lambda t_step=t_step: r.clock() - t_step >= 1.0, 5, what="a second")
        rc = r.messaging.counters()
        assert rc["dm_received"] >= 380 and rc["dm_link_limited"] < 60  # R took nearly all
        assert not v.policy.is_banned(rkey, v.clock())  # was: banned
        assert v.counters["messages_over_budget"] == 0
        assert rkey in v.policy.peers  # V keeps its link to R
        assert rc["dm_relay_limited"] > 0  # R relayed V only its share
    finally:
        for n in nodes:
            await n.close()
