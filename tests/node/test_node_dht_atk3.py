"""Real nodes on loopback (in-process, real QUIC): a liar's DHT answers cannot keep a node
dialling made-up keys at addresses of the liar's choosing (docs/oftp.md §14.5).

An outside attacker (2026-12-03) linked to a node, became its DHT contact (one PING) and
was given as a stream link's bootstrap; it answered every FIND_NODE/GET_PROVIDERS with 20
made-up keys at UDP sinks in 20 /24s of 127/8. Two answers (~1.8 kB each) drew 230
datagrams (280 kB, x106) to 15 of the sinks, and every later lookup did the same. Here the
same liar (a real node whose DHT answers are replaced by the lie) bootstraps a victim
node, which then runs two more lookups: the victim dials a handful of the made-up keys,
distrusts the liar, counts it on /metrics, no longer dials what it names, and still
answers it.
"""

from __future__ import annotations

import asyncio
import socket
import time

from procs import until

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.dhtrecord import node_id, sign_record
from oasis.core.identity import Identity
from oasis.core.peer import Candidate
from oasis.core.stream import StreamId
from oasis.node.metrics import NodeCollector
from oasis.node.node import Node

SINKS = 20


async def _node() -> Node:
    n = Node(Identity.generate(), sw.SwarmConfig(chunk_ms=100, bitrate_kbps=200))
    await n.start()
    return n


def _sinks() -> list[socket.socket]:
    out = []
    for i in range(SINKS):  # one per /24 of 127/8: the victim's "networks"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.{i + 1}.0.1", 0))
        s.setblocking(False)
        out.append(s)
    return out


def _read(sinks: list[socket.socket]) -> int:
    n = 0
    for s in sinks:
        while True:
            try:
                s.recv(65536)
                n += 1
            except BlockingIOError:
                break
    return n


def _lie(liar: Node, sinks: list[socket.socket]) -> list[int]:
    """Replace the liar's DHT answers: 20 fresh made-up keys, nearer the target than the
    liar (so the victim takes them), each at one sink. Returns a list counting its answers."""
    answers = [0]
    mine = node_id(liar.identity.public)

    def on_message(link, peer: bytes, msg: wire.Message) -> None:  # type: ignore[no-untyped-def]
        if isinstance(msg, wire.DhtPing):
            link.send(wire.DhtPong(qid=msg.qid))
            return
        if not isinstance(msg, (wire.DhtFindNode, wire.DhtGetProviders)):
            return
        target = msg.target if isinstance(msg, wire.DhtFindNode) else msg.key
        t = int.from_bytes(target, "big")
        nodes: list[wire.DhtNode] = []
        while len(nodes) < SINKS:
            k = Identity.generate().public
            if node_id(k) ^ t < mine ^ t:
                host, port = sinks[len(nodes)].getsockname()
                nodes.append(wire.DhtNode(key=k, host=host, port=port))
        answers[0] += 1
        if isinstance(msg, wire.DhtFindNode):
            link.send(wire.DhtNodesMsg(qid=msg.qid, nodes=nodes))
        else:
            link.send(wire.DhtProviders(qid=msg.qid, records=[], descriptor=b"", nodes=nodes))

    assert liar.dht is not None
    liar.dht.on_message = on_message  # type: ignore[method-assign]
    return answers


async def test_a_liars_made_up_referrals_are_dialled_a_few_times_then_not_at_all() -> None:
    v, liar = await _node(), await _node()
    sinks = _sinks()
    try:
        answers = _lie(liar, sinks)
        assert v.dht is not None
        c0 = dict(v.counters)

        def delta(k: str) -> int:
            return v.counters[k] - c0.get(k, 0)

        # the liar is the bootstrap a stream link named (as `oasis watch 'oasis://...?b=LIAR@...'`)
        host, port = liar.endpoint.address
        v.dht.seed([Candidate(liar.identity.public, host, port)])
        await asyncio.wait_for(v.dht.joined.wait(), 30)
        target = Identity.generate().public
        for _ in range(2):  # and the victim looks up as it does every few seconds
            await v.dht.find_nodes(target, 15)
        assert answers[0] >= 3  # boot, join, two lookups: the liar answered each
        drawn = _read(sinks)
        bound = 4 + 3 * 2  # referral_failures, then what is in flight (alpha per path)
        # before: 20 dials per answer (one per /24), ~10 datagrams each, at every lookup
        assert 1 <= delta("dht_dials") <= bound, (delta("dht_dials"), drawn)
        assert delta("dht_referrers_distrusted") == 1
        assert delta("dht_entries_referrer_failed") >= SINKS  # a later answer's 20, not dialled
        events = {s.labels["event"]: s.value for m in NodeCollector(v).collect()
                  if m.name == "oasis_node_events" for s in m.samples}
        assert events["dht_referrers_distrusted"] >= 1 and events["dht_entries_referrer_failed"] >= SINKS
        # no offence: the liar keeps its link and is answered
        link = liar.links_by_peer[v.identity.public]
        before = v.counters["dht_requests_in"]
        link.send(wire.DhtPing(qid=77))
        await until(lambda: v.counters["dht_requests_in"] > before, 10)
        assert not link.closed and liar.identity.public not in v.dht.dht.bans
    finally:
        for s in sinks:
            s.close()
        for n in (v, liar):
            await n.close()


async def test_a_liars_made_up_provider_records_are_dialled_a_few_times_then_not_taken() -> None:
    """The same liar answers GET_PROVIDERS with 20 records signed by throw-away keys, each
    naming a sink (found 2026-12-03: a viewer's node dialled them at every lookup, 884
    datagrams at the 20 sinks in 40 s). The viewer reports each dial's outcome to its DHT,
    which charges the answerer: a few dials, then its records are no longer taken."""
    v, liar = await _node(), await _node()
    sinks = _sinks()
    sid = StreamId(Identity.generate().public, "live")
    answers = [0]
    made_up: set[bytes] = set()

    def on_message(link, peer: bytes, msg: wire.Message) -> None:  # type: ignore[no-untyped-def]
        if isinstance(msg, wire.DhtPing):
            link.send(wire.DhtPong(qid=msg.qid))
        elif isinstance(msg, wire.DhtFindNode):
            link.send(wire.DhtNodesMsg(qid=msg.qid, nodes=[]))
        elif isinstance(msg, wire.DhtGetProviders):
            now_ms = int(time.time() * 1000)
            keys = [Identity.generate() for _ in sinks]
            made_up.update(k.public for k in keys)
            recs = [sign_record(k, sid, now_ms, now_ms + 600_000, [s.getsockname()]).raw
                    for k, s in zip(keys, sinks, strict=True)]
            answers[0] += 1
            link.send(wire.DhtProviders(qid=msg.qid, records=recs, descriptor=b"", nodes=[]))

    try:
        assert liar.dht is not None and v.dht is not None
        liar.dht.on_message = on_message  # type: ignore[method-assign]
        v.add_stream(sid, is_source=False)  # a viewer: its node looks the stream's providers up
        c0 = dict(v.counters)

        def delta(k: str) -> int:
            return v.counters[k] - c0.get(k, 0)

        host, port = liar.endpoint.address
        v.dht.seed([Candidate(liar.identity.public, host, port)])
        await asyncio.wait_for(v.dht.joined.wait(), 30)
        for n in range(1, 7):  # a lookup each time the policy wants candidates (here: at once)
            v.dht._find_at.clear()
            v.dht.want_candidates()
            await until(lambda n=n: sum(d.kind == "providers" for d in v.dht.lookups) >= n, 15)  # type: ignore[misc]
            if delta("dht_referrers_distrusted"):
                await until(lambda: delta("dht_records_referrer_failed") >= 20, 15)
                break
            await until(lambda: v.policy.dials.dialling == {}, 20, what="the dials ended")
        assert answers[0] >= 2
        assert delta("dht_referrers_distrusted") == 1
        assert delta("dht_records_referrer_failed") >= 20  # a whole answer's records, not taken
        dials = delta("dial_attempts")
        assert 4 <= dials <= 40, dials  # before: 20 offered at every lookup, and dialled
        # what the liar's records named is withdrawn from the dial candidates (before, each
        # was dialled again after its backoff, 1 s doubling, for the candidates' 120 s)
        assert delta("dht_candidates_withdrawn") >= 1
        await until(lambda: not v.policy.dials.dialling, 20, what="the dials ended")
        assert not made_up & set(v.policy.dials.candidates)
        _read(sinks)
        # later lookups offer nothing of the liar's: no dial more
        for _ in range(2):
            v.dht._find_at.clear()
            before = sum(d.kind == "providers" for d in v.dht.lookups)
            v.dht.want_candidates()
            await until(lambda b=before: sum(d.kind == "providers" for d in v.dht.lookups) > b, 15)  # type: ignore[misc]
        assert delta("dial_attempts") == dials
        assert not made_up & set(v.policy.dials.candidates)
        events = {s.labels["event"]: s.value for m in NodeCollector(v).collect()
                  if m.name == "oasis_node_events" for s in m.samples}
        assert events["dht_records_referrer_failed"] >= 40 and events["dht_candidates_withdrawn"] >= 1
    finally:
        for s in sinks:
            s.close()
        for n in (v, liar):
            await n.close()
