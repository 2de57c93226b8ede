"""LEAVE + JOIN again to refill the pull budget (docs/oftp.md §9.4, §14.1; found 2026-12-03 by
an outside attacker, ``bench/atk6_join_churn.py``). A real broadcaster over real QUIC; the
attacker is ``oasis.tools.hostile``'s client: it JOINs, REQUESTs held chunks at 150/s and
sends LEAVE + JOIN every 0.5 s. Before, each JOIN gave it a fresh pull budget and no strikes:
it drew 4.2x the stream rate and was never cut off. Now it keeps its account: it gets at most
its budget and is cut off as a flooder, counted ``peers_rejoined`` on /metrics."""

from __future__ import annotations

import asyncio
import time

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.node.metrics import NodeCollector
from oasis.node.node import Node
from oasis.tools.hostile import Victim, dial, hang_up

CHUNK = 6000
PERIOD = 0.033


async def test_leave_and_join_again_does_not_refill_a_flooders_pull_budget() -> None:
    loop = asyncio.get_running_loop()
    b = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0, dht=False)
    await b.start()
    sid = StreamId(b.identity.public, "live")
    src = b.add_stream(sid, is_source=True)
    seq = [0]

    def tick() -> None:
        src.swarm.publish(sign_chunk(b.identity, sid, seq[0], int(time.time() * 1e6), seq[0] % 30 == 0,
                                     b"\x47" * CHUNK), time.time())
        src.pump()
        seq[0] += 1
        handle[0] = loop.call_later(PERIOD, tick)
    handle = [loop.call_later(0.0, tick)]
    conn = None
    try:
        conn = await dial(Victim("127.0.0.1", b.port, b.identity.public), auth=True)
        assert conn.authed.is_set()
        conn.send_msg(wire.Join(stream=str(sid)))
        t0 = time.monotonic()
        next_churn, i, sent = t0 + 0.5, 0, 0
        while not conn.terminated.is_set() and time.monotonic() - t0 < 30.0:
            try:  # pace the attack on the victim's answer: its close ends the loop at once
                await asyncio.wait_for(conn.terminated.wait(), 0.02)
            except TimeoutError:
                pass
            top = int(src.swarm.log.latest)
            if time.monotonic() >= next_churn:
                next_churn += 0.5
                conn.send_msg(wire.Leave(stream=sid.key))
                conn.send_msg(wire.Join(stream=str(sid)))
            for _ in range(3):  # 150/s: held chunks inside the request horizon
                conn.send_msg(wire.Request(stream=sid.key, seq=max(0, top - (i % 200))))
                i += 1
                sent += 1
        elapsed = time.monotonic() - t0
        assert conn.terminated.is_set(), "the flooder was never cut off"  # was: never
        assert conn.close_code == "TOO_MANY_ERRORS" and "REQUESTs refused" in conn.close_reason
        c = src.swarm.counters
        assert c.peers_rejoined >= 1 and c.flooders_dropped == 1
        rate = src.swarm.stream_rate()
        budget = src.swarm.config.request_burst * rate + src.swarm.config.request_share * rate * elapsed
        assert sent > 200
        assert conn.got["CHUNK"] * CHUNK <= budget + CHUNK, (conn.got["CHUNK"], budget)
        events = {s.labels["event"]: s.value for m in NodeCollector(b).collect()
                  if m.name == "oasis_swarm_events" for s in m.samples}
        assert events["peers_rejoined"] >= 1
    finally:
        handle[0].cancel()
        if conn is not None:
            await hang_up(conn)
        await b.close()
