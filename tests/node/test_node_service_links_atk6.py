"""A crowd of DHT service links at a viewer (docs/oftp.md §17.8; found 2026-12-03 by an
outside attacker, ``bench/atk6_service_links.py``: 87 links, each sending a DHT_PING every
10 s, filled a viewer's endpoint and honest viewers could not link to it). Real nodes over
real QUIC; the attacker is ``oasis.tools.hostile``'s client. Now the viewer holds at most
``inbound_service_links`` (16) and closes the oldest without blame
(``links_service_evicted`` on /metrics); an honest viewer still links and joins."""

from __future__ import annotations

import random

from procs import until

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.metrics import NodeCollector
from oasis.node.node import Node
from oasis.tools.hostile import Victim, dial, hang_up


async def test_a_crowd_of_dht_links_is_capped_and_a_viewer_still_links() -> None:
    b = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    await b.start()
    sid = StreamId(b.identity.public, "live")
    b.add_stream(sid, is_source=True)
    v = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    nodes = [b, v]
    conns = []
    try:
        await v.start()
        v.add_stream(sid, is_source=False)
        assert await v.connect(b.peer_id, b.host, b.port)
        for _ in range(30):
            c = await dial(Victim("127.0.0.1", v.port, v.identity.public), auth=True)
            assert c.authed.is_set()
            c.send_msg(wire.DhtPing(qid=random.getrandbits(32)))
            conns.append(c)
        await until(lambda: v.policy.counters.links_service_evicted >= 14, 15, what="evictions")
        await until(lambda: sum(c.terminated.is_set() for c in conns) >= 14, 15, what="closes")
        alive = [c for c in conns if not c.terminated.is_set()]
        assert len(alive) <= 16  # was: all 30 held (87 filled the endpoint)
        gone = [c for c in conns if c.terminated.is_set()]
        assert all(c.closed_by == "victim" and c.close_code == "NO_ERROR" for c in gone)
        events = {s.labels["event"]: s.value for m in NodeCollector(v).collect()
                  if m.name == "oasis_node_events" for s in m.samples}
        assert events["links_service_evicted"] >= 14
        h = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
        nodes.append(h)
        await h.start()
        h.add_stream(sid, is_source=False)
        assert await h.connect(v.peer_id, v.host, v.port)
        await until(lambda: sid.key in v.joined.get(h.identity.public, set()), 10, what="the viewer joins")
    finally:
        for c in conns:
            await hang_up(c)
        for n in nodes:
            await n.close()
