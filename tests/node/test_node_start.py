"""A JOIN asks for a start (docs/oftp.md §9.1): real nodes on loopback, real QUIC, a
40 ms emulated delay each way. The newcomer's JOIN carries ``start``; the broadcaster
pushes its latest keyframe right after its STATUS, so the newcomer plays without a
probe (the REQUEST it would have sent after that STATUS), one round trip sooner."""

from __future__ import annotations

from procs import produce, until

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node


async def _node() -> Node:
    n = Node(Identity.generate(), sw.SwarmConfig(chunk_ms=100, bitrate_kbps=200, playout_delay=3.0),
             link_delay=0.04)
    await n.start()
    return n


async def test_a_viewer_starts_from_the_keyframe_its_join_asked_for_without_a_probe() -> None:
    b, v = await _node(), await _node()
    sid = StreamId(b.identity.public, "live")
    src = b.add_stream(sid, is_source=True)
    producer = produce(b, src, sid)
    try:
        await until(lambda: src.swarm.log.latest_keyframe >= 0, 10)
        view = v.add_stream(sid, is_source=False)
        assert sid.key in v.policy.starting  # not playing: its JOINs ask for a start
        assert await v.connect(b.peer_id, *b.endpoint.address)
        await until(lambda: view.swarm.start_seq is not None, 20)
        assert src.swarm.counters.starts_served == 1
        assert view.swarm.counters.probes_sent == 0  # the keyframe came without a REQUEST
        assert not v.policy.starting  # playing: JOINs ask no more
        await until(lambda: len(view.record.latencies) >= 10, 20)  # and it plays on
    finally:
        producer.cancel()
        await b.close()
        await v.close()


async def test_a_dial_while_the_dht_dials_the_same_peer_takes_its_link() -> None:
    """The DHT is dialling a peer when the policy (here ``connect``) wants it as a
    neighbour: the node takes the DHT's link, admitted as a neighbour, instead of dialling
    a second one. Two links dialled by one side can come up in opposite orders at the two
    ends, and the duplicate-link rule then kept a different link at each end (one end sent
    STATUS on a link the other had not joined)."""
    a, b = await _node(), await _node()
    try:
        assert a.dht is not None
        host, port = b.endpoint.address
        assert a.dht.open_link(b.identity.public, host, port)  # a DHT dial, under way
        assert a.dht.dial_in_flight(b.identity.public) is not None
        assert await a.connect(b.peer_id, host, port)
        await until(lambda: a.identity.public in b.links_by_peer, 10)
        assert a.policy.counters.links_duplicate == b.policy.counters.links_duplicate == 0
        assert len([ln for ln in a.endpoint.links if not ln.closed]) == 1
        assert not a.policy.is_service(b.identity.public)  # a neighbour: the policy wanted it
    finally:
        await a.close()
        await b.close()
