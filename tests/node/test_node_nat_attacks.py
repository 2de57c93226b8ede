"""Real nodes on loopback (in-process, real QUIC): a stranger's DHT-only link takes no part in
NAT traversal (docs/oftp.md §15).

An outside attacker (2026-12-02) opened a service link to a broadcaster -- it never JOINs and
takes no neighbour slot -- and sent PUNCH OFFERs naming the ports of a UDP sink (every one
was dialled: ~200x the bytes it sent), OBSERVED with a false address, and NEIGHBOURS of 32
made-up keys. Here the same messages over a real link are refused and counted, the
broadcaster dials nothing for them, its announced address does not move, an honest
viewer keeps streaming, and a neighbour's OFFER (the control) is still dialled.
"""

from __future__ import annotations

import os

from procs import drain, produce, udp_receiver, until

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.nat import Phase
from oasis.core.stream import StreamId
from oasis.node.metrics import NodeCollector
from oasis.node.node import Node


async def _node(**kw) -> Node:
    n = Node(Identity.generate(), sw.SwarmConfig(chunk_ms=100, bitrate_kbps=200), **kw)
    await n.start()
    return n


async def test_a_strangers_service_link_cannot_make_a_node_dial_or_set_its_address():
    b = await _node()
    nodes = [b]
    sid = StreamId(b.identity.public, "live")
    src = b.add_stream(sid, is_source=True)
    producer = produce(b, src, sid)
    sink, control = udp_receiver(), udp_receiver()
    try:
        v = await _node()
        nodes.append(v)
        view = v.add_stream(sid, is_source=False)
        assert await v.connect(b.peer_id, *b.endpoint.address)
        await until(lambda: len(view.record.latencies) >= 10, 20)
        announced = b.announce_address()

        s = await _node()  # the stranger: links, uses the DHT, joins nothing
        nodes.append(s)
        assert await s.connect(b.peer_id, *b.endpoint.address)
        link = s.links_by_peer[b.identity.public]
        link.send(wire.DhtPing(qid=1))
        await until(lambda: b.policy.is_service(s.identity.public), 10)
        c0 = dict(b.counters)
        host, port = sink.getsockname()
        for n in range(20):
            link.send(wire.Punch(phase=Phase.OFFER, peer=os.urandom(32), nonce=n, host=host, port=port))
        link.send(wire.Punch(phase=Phase.OFFER, peer=os.urandom(32), nonce=99, host="0.0.0.0", port=port))
        link.send(wire.Observed(host="198.51.100.7", port=41414))
        link.send(wire.Neighbours(keys=[os.urandom(32) for _ in range(32)]))

        def delta(k: str) -> int:
            return b.counters[k] - c0[k]

        await until(lambda: (delta("nat_punch_not_neighbour"), delta("nat_observed_unused"),
                             delta("nat_pex_not_neighbour")) == (21, 1, 1), 10)
        assert delta("nat_punch_accepted") == 0 and delta("dial_attempts") == 0
        # on /metrics: oasis_node_events{event="nat_punch_not_neighbour"} and the others
        events = {s.labels["event"]: s.value for m in NodeCollector(b).collect()
                  if m.name == "oasis_node_events" for s in m.samples}
        assert events["nat_punch_not_neighbour"] >= 21 and events["nat_observed_unused"] >= 1
        assert events["nat_pex_not_neighbour"] >= 1
        assert b.announce_address() == announced and s.identity.public not in b.policy.mapping.reports

        # the control: a neighbour's OFFER (the same path) is dialled -- after the stranger's
        a = await _node()
        nodes.append(a)
        a.add_stream(sid, is_source=False)
        assert await a.connect(b.peer_id, *b.endpoint.address)
        await until(lambda: sid.key in b.joined.get(a.identity.public, set()), 15)
        chost, cport = control.getsockname()
        a.links_by_peer[b.identity.public].send(
            wire.Punch(phase=Phase.OFFER, peer=os.urandom(32), nonce=1, host=chost, port=cport))
        assert await drain(control, 1, 10)  # the neighbour's OFFER drew a dial ...
        assert await drain(sink, 0, 1) == []  # ... the stranger's 21 drew nothing
        assert delta("nat_punch_accepted") == 1

        # the broadcaster keeps serving: the viewer streams, the stranger's DHT is answered
        got = len(view.record.latencies)
        await until(lambda: len(view.record.latencies) >= got + 10, 20)
        before = b.counters["dht_requests_in"]
        link.send(wire.DhtPing(qid=2))
        await until(lambda: b.counters["dht_requests_in"] > before, 10)
        assert not link.closed and s.identity.public not in b.banned
    finally:
        producer.cancel()
        sink.close()
        control.close()
        for n in nodes:
            await n.close()
