"""Real nodes on loopback (in-process, real QUIC): a flood of valid direct messages to a node
(docs/oftp.md §14.7, §19.3).

An outside attacker (2026-12-03) sent a broadcaster validly sealed DMs from 8 identities,
each on its own link at the per-link rate (20/s, burst 40): every one was written to
`<data-dir>/dm_inbox` and fsync'd on the event loop before its ack, and the broadcaster's
API went from 0.4 ms to 364 ms (p50, 713 ms max) while its CPU stayed near 10 %. Now the
inbox is written off the event loop by group commit: the DMs that arrive while a write
is under way go into the next one (one fsync for all), and each ack still goes out only
once its message is at rest. Here 4 senders' 160 DMs arrive at once: all are kept and
acked, in fewer writes than messages, and at every send the victim makes, every DM it
received is on disk unless it is still waiting for its write (so no ack precedes its
message's write).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from procs import until

from oasis.core import dm, wire
from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.node.metrics import NodeCollector
from oasis.node.node import Node

SENDERS = 4
EACH = 40  #: the per-link burst: all accepted at once


async def _node() -> Node:
    n = Node(Identity.generate(), sw.SwarmConfig(chunk_ms=100, bitrate_kbps=200))
    await n.start()
    return n


def _ids_in(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["id"] for line in path.read_bytes().splitlines() if line}


async def test_a_dm_flood_is_kept_by_group_commit_and_every_ack_follows_its_write(tmp_path: Path) -> None:
    v = await _node()
    nodes = [v]
    inbox = tmp_path / "dm_inbox"
    v.messaging.keep_inbox(inbox)
    violations: list[set[str]] = []
    sends = [0]
    real_send = v.messaging._send_dm

    def checked_send(a: dm.SendDm) -> None:
        # every DM received so far is at rest, except those whose write is still to come
        # (their acks wait behind it): an ack never leaves before its message's write
        waiting = {json.loads(line)["id"] for line in v.messaging._unwritten}
        missing = {r["id"] for r in v.messaging.inbox} - waiting - _ids_in(inbox)
        if missing:
            violations.append(missing)
        sends[0] += 1
        real_send(a)

    v.messaging._send_dm = checked_send  # type: ignore[method-assign]
    try:
        links = []
        for _ in range(SENDERS):
            s = await _node()
            nodes.append(s)
            assert await s.connect(v.peer_id, *v.endpoint.address)
            links.append((s, s.links_by_peer[v.identity.public]))
        c0 = dict(v.counters)
        for s, link in links:
            for i in range(EACH):
                env, _ = dm.seal(s.identity, v.identity.public, f"flood {i} " + "x" * 800,
                                 v.clock(), os.urandom)
                link.send(env)
        total = SENDERS * EACH

        def delta(k: str) -> int:
            return v.counters[k] - c0.get(k, 0)

        # every ack made (dm_acks_sent) and sent, through the checked path
        await until(lambda: delta("dm_acks_sent") >= total and sends[0] >= total, 30, what="every DM acked")
        assert delta("dm_received") == total and delta("dm_link_limited") == 0
        assert violations == []
        assert len(_ids_in(inbox)) == total == len(v.messaging.inbox)
        # group commit: fewer writes (each one fsync) than messages
        assert 1 <= delta("dm_inbox_writes") < total
        events = {s.labels["event"]: s.value for m in NodeCollector(v).collect()
                  if m.name == "oasis_node_events" for s in m.samples}
        assert events["dm_inbox_writes"] >= 1
        # the victim keeps serving: a DHT ping over a flooding link is answered
        before = v.counters["dht_requests_in"]
        links[0][1].send(wire.DhtPing(qid=5))
        await until(lambda: v.counters["dht_requests_in"] > before, 10)
    finally:
        for n in nodes:
            await n.close()
