"""A viewer node joined to a broadcaster's stream over real QUIC, and a junk DM envelope:
shared by the in-process attack tests (chat replay, DM relay, held DMs)."""

from __future__ import annotations

import os
import time

from procs import until

from oasis.core import peer as pp
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node


async def viewer(sid: StreamId, b: Node, policy: pp.PolicyConfig | None = None) -> Node:
    """A started node that linked to ``b`` and whose JOIN of ``sid`` ``b`` has taken."""
    v = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0, policy=policy)
    await v.start()
    v.add_stream(sid, is_source=False)
    assert await v.connect(b.peer_id, b.host, b.port)
    await until(lambda: sid.key in b.joined.get(v.identity.public, set()), 10, what="join")
    return v


def junk(to: bytes) -> wire.DmEnvelope:
    """An envelope addressed to ``to`` that nobody can open (random box), valid for 1 h."""
    return wire.DmEnvelope(to=to, eph=os.urandom(32), prekey=bytes(32),
                           expires_ms=int(time.time() * 1000) + 3_600_000, box=os.urandom(200))
