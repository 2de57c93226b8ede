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
