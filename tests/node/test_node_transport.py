"""Real QUIC on loopback: identity pinning and the listener learning who dialled."""

from __future__ import annotations

from procs import until

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.node.node import Node


async def _node() -> Node:
    n = Node(Identity.generate(), sw.SwarmConfig())
    await n.start()
    return n


async def test_listener_learns_the_dialler_identity() -> None:
    a, b = await _node(), await _node()
    try:
        assert await a.connect(b.peer_id, *b.endpoint.address)
        # The dialler pinned b's key; b learned a's key from the signed challenge.
        assert list(a.links_by_peer) == [b.identity.public]
        await until(lambda: bool(b.links_by_peer), 30, what="b's side of the handshake")
        assert list(b.links_by_peer) == [a.identity.public]
    finally:
        await a.close()
        await b.close()


async def test_a_wrong_key_aborts_the_connection() -> None:
    a, b = await _node(), await _node()
    impostor = Identity.generate()  # the id we think is at b's address
    try:
        ok = await a.connect(impostor.peer_id, *b.endpoint.address, timeout=5.0)
        assert not ok
        assert a.counters["dial_failures"] == 1
        assert a.links_by_peer == {}
        assert impostor.public not in b.links_by_peer and a.identity.public not in b.links_by_peer
    finally:
        await a.close()
        await b.close()
