"""Connection migration against the per-address cap, on real QUIC (docs/oftp.md §14.1,
found 2026-12-03 by an outside attacker, ``bench/atk4_migrate_slots.py``).

A node takes at most a quarter of its inbound slots from one address (an IPv6 /64); a
QUIC client may move its connection to another address and the node followed it and
counted the link there without asking whether that address held its share. An attacker
with two addresses dialled from the first, moved each link to the second, dialled again,
and moved them all back: 24 of a viewer's 24 neighbour slots from one /64 (cap 6), and an
honest viewer was refused. Here the victim listens on ``::`` and the attacker uses two of
this machine's own non-loopback addresses (all traffic stays on the machine); the stack
is aioquic, which follows a move from IPv6 to IPv4 (qh3 follows one between /64s).
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

import pytest
from procs import until

from oasis.core import peer as pp
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node
from oasis.tools.hostile import Victim, dial, hang_up, migrate, move_back, ping

FIRST, SECOND = "fd00::2", "192.0.2.2"  # this machine's own addresses (not loopback)


def _bindable(host: str) -> bool:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not (_bindable(FIRST) and _bindable(SECOND)),
                                reason=f"needs local addresses {FIRST} and {SECOND}")


def _pinging(conns: list[Any], pred: Any) -> Any:
    """``pred``, pinging every link now and then meanwhile (the victim's QUIC moves a path
    on a packet it gets from there)."""
    n = [0]

    def check() -> bool:
        n[0] += 1
        if n[0] % 5 == 0:
            for c in conns:
                if not c.terminated.is_set():
                    ping(c)
        return bool(pred())
    return check


async def test_links_hopping_between_two_addresses_get_no_more_than_each_address_share() -> None:
    b = Node(Identity.generate(), sw.SwarmConfig(), host="::", target_neighbours=0, max_neighbours=8,
             quic="aioquic")
    await b.start()
    sid = StreamId(b.identity.public, "live")
    b.add_stream(sid, is_source=True)
    cap = max(4, 8 // 4)
    conns: list[Any] = []
    honest: Node | None = None
    try:
        for _ in range(12):
            c = await dial(Victim(FIRST, b.port, b.identity.public), auth=True)
            conns.append(c)
            if not c.authed.is_set() or c.terminated.is_set():
                continue
            c.send_msg(wire.Join(stream=str(sid)))
            key = c.identity.public
            try:  # a JOIN the victim refuses (full) ends the link: then go on
                await until(lambda k=key, c=c: sid.key in b.joined.get(k, set()) or c.terminated.is_set(),
                            10, what="join")
            except TimeoutError:
                continue
            if c.terminated.is_set():
                continue
            c.old = await migrate(c, SECOND, (SECOND, b.port))  # type: ignore[attr-defined]
            await until(_pinging([c], lambda k=key: (p := b.policy.peers.get(k)) is None or p.closing
                                 or pp.ip_key(p.addr[0]) == SECOND), 10, what="migration")
        hopped = [c for c in conns if hasattr(c, "old") and not c.terminated.is_set()]
        assert len(hopped) > cap  # the victim followed more links to the second address than its share
        for c in hopped:
            move_back(c, c.old)  # type: ignore[attr-defined]
        mine = {c.identity.public for c in conns}

        def settled() -> bool:
            return all((p := b.policy.peers.get(c.identity.public)) is None or p.closing
                       or pp.ip_key(p.addr[0]) == "fd00::/64" for c in hopped)
        await until(_pinging(hopped, settled), 15, what="moved back")
        await until(lambda: not any(p.closing for k, p in b.policy.peers.items() if k in mine), 10,
                    what="closes done")
        held = Counter(pp.ip_key(p.addr[0]) for k, p in b.policy.peers.items()
                       if k in mine and p.addr is not None)
        assert all(n <= cap for n in held.values()), held  # was: 8 of 8 at fd00::/64
        assert b.counters["links_closed_per_ip_migrated"] >= len(hopped) - cap
        # the node keeps serving: an honest viewer links and joins
        honest = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
        await honest.start()
        honest.add_stream(sid, is_source=False)
        assert await honest.connect(b.peer_id, "127.0.0.1", b.port)
        await until(lambda: sid.key in b.joined.get(honest.identity.public, set()), 10, what="honest join")
    finally:
        for c in conns:
            await hang_up(c)
        if honest is not None:
            await honest.close()
        await b.close()
