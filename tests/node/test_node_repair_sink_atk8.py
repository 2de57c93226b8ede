"""A repair sink against a real viewer (issue 8, ``SwarmConfig.repair_guard``; the attack at
scale: ``bench/atk8_repair_sink.py``, ``bench/sim_hostile_variant.py --mix sink``).

A real broadcaster B and viewer V over real QUIC on loopback. B's upload cap gives V three of
the four substreams (its slots), so V repairs every chunk of the fourth from the neighbours
whose STATUS claims it. The attacker (``oasis.tools.hostile``'s OFTP client) JOINs V and
claims every chunk up to V's live edge, with no path and one free slot, and takes every
REQUEST without answering it. With the guard V distrusts it (reported on /stats with the
reason, counted on /metrics) and keeps playing from B.
"""

from __future__ import annotations

import asyncio
import time

from procs import until

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.node.http import node_stats
from oasis.node.metrics import NodeCollector
from oasis.node.node import Node
from oasis.tools.hostile import ALL_BITS, Victim, dial, hang_up

PERIOD = 0.1
CHUNK = 5000  #: 400 kbit/s at 100 ms chunks


async def test_a_repair_sink_is_distrusted_and_reported() -> None:
    loop = asyncio.get_running_loop()
    cfg = dict(chunk_ms=100, bitrate_kbps=400)
    # 300 kbit/s of upload for a 400 kbit/s stream: 3 substreams' worth, its slots (at 400
    # the broadcaster now seeds all four, whatever its slot headroom: docs/oftp.md §9.2)
    b = Node(Identity.generate(), sw.SwarmConfig(upload_kbps=300, **cfg),  # type: ignore[arg-type]
             host="127.0.0.1", target_neighbours=0, dht=False)
    await b.start()
    sid = StreamId(b.identity.public, "live")
    src = b.add_stream(sid, is_source=True)
    seq = [0]

    def tick() -> None:
        src.swarm.publish(sign_chunk(b.identity, sid, seq[0], int(time.time() * 1e6), seq[0] % 10 == 0,
                                     b"\x47" * CHUNK), time.time())
        src.pump()
        seq[0] += 1
        handle[0] = loop.call_later(PERIOD, tick)
    handle = [loop.call_later(0.0, tick)]
    vcfg = sw.SwarmConfig(repair_guard=True, **cfg)  # type: ignore[arg-type]
    v = Node(Identity.generate(), vcfg, host="127.0.0.1", target_neighbours=0, dht=False)
    conn = None
    claims = None
    try:
        await v.start()
        ls = v.add_stream(sid, is_source=False, config=vcfg)
        assert await v.connect(b.peer_id, "127.0.0.1", b.port)
        await until(lambda: ls.swarm.start_seq is not None, 20, what="V playing")
        conn = await dial(Victim("127.0.0.1", v.port, v.identity.public), auth=True)
        assert conn.authed.is_set()
        conn.send_msg(wire.Join(stream=str(sid)))
        taken = [0]
        conn.on_message = lambda m: taken.__setitem__(0, taken[0] + isinstance(m, wire.Request))

        async def claim() -> None:  # every chunk up to V's edge (+0.5 s), every 0.2 s
            while not conn.terminated.is_set():
                st = conn.status
                if st is not None and st.latest:
                    k = len(st.paths) or 4
                    conn.send_msg(wire.Status(stream=sid.key, latest=st.latest + 5, have=ALL_BITS,
                                              keyframe=st.keyframe, slots=1, paths=[[] for _ in range(k)],
                                              lags=[wire.LAG_UNKNOWN] * k))
                try:
                    await asyncio.wait_for(conn.terminated.wait(), 0.2)
                except TimeoutError:
                    pass
        claims = asyncio.ensure_future(claim())
        c = ls.swarm.counters
        await until(lambda: c.repair_sinks_distrusted >= 1, 60, what="the sink distrusted")
        assert taken[0] >= 4  # it took REQUESTs (the clear record) before it was distrusted
        s = node_stats(v)["streams"][0]
        reasons = s["repair_distrusted"]
        assert reasons[0]["peer"] == conn.identity.public.hex()[:16]
        assert "not asked for repairs" in reasons[0]["reason"] and "0 answers in time" in reasons[0]["reason"]
        events = {x.labels["event"]: x.value for m in NodeCollector(v).collect()
                  if m.name == "oasis_swarm_events" for x in m.samples}
        assert events["repair_sinks_distrusted"] >= 1 and events["repair_misses_judged"] >= 4
        # distrusted: V's repairs go to B meanwhile, and V keeps playing
        asked = taken[0]
        latest = ls.swarm.log.latest
        await until(lambda: ls.swarm.log.latest >= latest + 20, 20, what="V still playing")
        assert taken[0] <= asked + 4  # (REQUESTs in flight when it was judged)
        # never cut off for it (an honest relay with a full upload leaves the same record)
        assert not conn.terminated.is_set() and conn.identity.public in v.policy.peers
        assert b.identity.public in v.policy.peers
    finally:
        handle[0].cancel()
        if claims is not None:
            claims.cancel()
        if conn is not None:
            await hang_up(conn)
        await v.close()
        await b.close()
