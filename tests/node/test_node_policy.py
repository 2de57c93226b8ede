"""Real nodes on loopback (in-process, real QUIC): the policy core cuts off abusive peers.

A broadcaster streams to an honest viewer. Two attackers with valid identities link
to the broadcaster: one sends STATUS for a stream it never joined, the other joins
and then floods control messages past its message budget. Each is counted, its link is
closed, it is banned (a new link from it is refused), and the honest viewer keeps
receiving the stream throughout.
"""

from __future__ import annotations

import asyncio

from procs import produce, until

from oasis.core import peer as pp
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node


async def _node(**kw) -> Node:
    n = Node(Identity.generate(), sw.SwarmConfig(chunk_ms=100, bitrate_kbps=200), **kw)
    await n.start()
    return n


def status(skey: bytes, i: int) -> wire.Status:
    return wire.Status(stream=skey, latest=i, have=0, keyframe=0, slots=0, paths=[])


async def test_unjoined_and_flooding_peers_are_cut_off_while_an_honest_viewer_streams():
    b = await _node(max_neighbours=8)
    nodes = [b]
    sid = StreamId(b.identity.public, "live")
    src = b.add_stream(sid, is_source=True)

    producer = produce(b, src, sid)
    try:
        v = await _node()
        nodes.append(v)
        view = v.add_stream(sid, is_source=False)
        assert await v.connect(b.peer_id, *b.endpoint.address)
        await until(lambda: len(view.record.latencies) >= 10, 20)

        # Attacker 1: linked, joined nothing, sends STATUS for the stream anyway.
        a1 = await _node()
        nodes.append(a1)
        assert await a1.connect(b.peer_id, *b.endpoint.address)
        link1 = a1.links_by_peer[b.identity.public]
        for i in range(40):
            link1.send(status(sid.key, i))
        await until(lambda: a1.identity.public in b.banned, 15)
        assert b.counters["messages_unjoined"] >= 20
        assert b.counters["violations"] >= 20
        await until(lambda: link1.closed or not a1.links_by_peer, 15)
        assert a1.identity.public not in b.links_by_peer

        # Attacker 2: joins properly, then floods control messages past its budget.
        a2 = await _node()
        nodes.append(a2)
        a2.add_stream(sid, is_source=False)
        assert await a2.connect(b.peer_id, *b.endpoint.address)
        await until(lambda: sid.key in b.joined.get(a2.identity.public, set()), 15)
        link2 = a2.links_by_peer[b.identity.public]
        for _ in range(3000):  # each one harmless (unsubscribe nothing): only the rate is abusive
            link2.send(wire.Unsubscribe(stream=sid.key, mask=0))
            if link2.closed:
                break
        await until(lambda: a2.identity.public in b.banned, 15)
        assert b.counters["messages_over_budget"] >= 80
        assert b.counters["peers_dropped_score"] == 2
        assert a2.identity.public not in b.links_by_peer

        # A banned peer that comes back is refused at admission.
        refused = b.counters["links_refused_banned"]
        await a1.connect(b.peer_id, *b.endpoint.address)
        await until(lambda: b.counters["links_refused_banned"] > refused, 15)
        assert a1.identity.public not in b.links_by_peer

        # The honest viewer kept its link and keeps streaming.
        assert v.identity.public in b.links_by_peer and v.identity.public not in b.banned
        got = len(view.record.latencies)
        await until(lambda: len(view.record.latencies) >= got + 10, 20)
        assert b.counters["links_accepted"] >= 3
    finally:
        producer.cancel()
        for n in nodes:
            await n.close()


async def test_simultaneous_dials_leave_one_link_the_one_the_smaller_key_dialled():
    a, b = await _node(), await _node()
    try:
        await asyncio.gather(a.connect(b.peer_id, *b.endpoint.address),
                             b.connect(a.peer_id, *a.endpoint.address))
        await until(lambda: a.neighbour_count() == 1 and b.neighbour_count() == 1
                    and len([lk for lk in a.endpoint.links if not lk.closed]) == 1
                    and len([lk for lk in b.endpoint.links if not lk.closed]) == 1, 15)
        la, lb = a.links_by_peer[b.identity.public], b.links_by_peer[a.identity.public]
        small_is_a = a.identity.public < b.identity.public
        assert la.session.is_dialler == small_is_a and lb.session.is_dialler == (not small_is_a)
        # both links authenticated on both sides, or one side's dial lost the race at once
        assert a.counters["links_duplicate"] == b.counters["links_duplicate"] <= 1
    finally:
        await a.close()
        await b.close()


async def test_offered_peers_are_dialled_by_the_policy_and_a_dead_address_backs_off():
    b = await _node()
    v = await _node(target_neighbours=2)
    dead = Identity.generate()
    try:
        sid = StreamId(b.identity.public, "live")
        b.add_stream(sid, is_source=True)
        v.add_stream(sid, is_source=False)
        host, port = b.endpoint.address
        v.offer_peers([{"peer_id": b.peer_id, "host": host, "port": port},
                       {"peer_id": dead.peer_id, "host": "127.0.0.1", "port": 9},  # nobody there
                       {"peer_id": "not a peer id", "host": host, "port": port},
                       {"host": host}], interval=10.0)
        assert v.counters["dial_attempts"] == 2
        await until(lambda: sid.key in v.joined.get(b.identity.public, set()), 15)
        await until(lambda: v.counters["dial_failures"] == 1, 15)
        # the dead address is backed off: offered again at once, it is not re-dialled
        v.offer_peers([{"peer_id": dead.peer_id, "host": "127.0.0.1", "port": 9}])
        assert v.counters["dial_attempts"] == 2 and v.policy.dialling == {}
        # the policy's cadence: short of neighbours, it asks for candidates again within 1 s
        await asyncio.wait_for(v.announce_due(), 5)
    finally:
        await v.close()
        await b.close()


async def test_a_peer_that_takes_a_slot_and_joins_nothing_is_closed():
    b = await _node(policy=pp.PolicyConfig(join_timeout=1.0, sweep_interval=0.2))
    b.add_stream(StreamId(b.identity.public, "live"), is_source=True)
    # carries no stream: it will never JOIN; dials only when told (no re-dial after the
    # close, which made "no link left" a race with the next link)
    squatter = await _node(target_neighbours=0)
    try:
        assert await squatter.connect(b.peer_id, *b.endpoint.address)
        await until(lambda: b.counters["links_idle_closed"] == 1, 15)
        await until(lambda: not squatter.links_by_peer and not b.links_by_peer, 15)
        assert b.policy.score(squatter.identity.public, b.clock()) > 0  # TIMEOUT remembered
    finally:
        await squatter.close()
        await b.close()
