"""Attack: connection migration against the per-address cap on inbound links
(docs/oftp.md §2.2, §14.1, §15.4). Keys are free, so a node takes at most a quarter of its
inbound slots from one address (an IPv6 /64). QUIC lets a client move its connection to
another address; the node then counted the link at the new address. An attacker with two
addresses (here two of this machine's own: ``fd00::2`` and its link-local
``fe80::...%eth0``, two /64s, not loopback, so the cap applies; all traffic stays on the
machine) dials from one, hops each authenticated link to the other, dials again, and at
the end hops them all back. (qh3, the default stack, follows a move to another IPv6 /64
but not from IPv6 to an IPv4-mapped address; aioquic follows both.)

Prints JSON: the attacker links the victim still holds, by address, whether an honest
viewer could still link, and the victim's counters. Needs two local non-loopback
addresses in different /64s (``--first``, ``--second``; the victim listens on ``::``).

PYTHONPATH=. python bench/atk4_migrate_slots.py [--keys 40] [--no-back]
    [--first fd00::2] [--second fe80::fc:ff:fe00:1%eth0]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

from oasis.core import peer as pp
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node
from oasis.tools.hostile import Victim, dial, hang_up, migrate, move_back, ping


async def wait_for(pred: Any, timeout: float, pinging: Any = ()) -> bool:
    """Poll ``pred`` (bounded); meanwhile PING every 0.1 s on each of ``pinging`` (the
    victim's stack follows a path once it validated it)."""
    t = time.monotonic() + timeout
    n = 0
    while not pred():
        if time.monotonic() > t:
            return False
        await asyncio.sleep(0.02)
        n += 1
        if n % 5 == 0:
            for c in pinging:
                if not c.terminated.is_set():
                    ping(c)
    return True


def held(b: Node, keys: set[bytes]) -> Counter[str]:
    return Counter(pp.ip_key(p.addr[0]) or "loopback" for k, p in b.policy.peers.items()
                   if k in keys and not p.closing and p.addr is not None)


async def attack(b: Node, sid: StreamId, first: str, second: str, keys: int, back: bool) -> dict[str, Any]:
    victim = Victim(first, b.port, b.identity.public)
    conns: list[Any] = []

    # an honest-looking empty STATUS: the victim closes a peer silent for 30 s
    empty = wire.Status(stream=sid.key, latest=0, have=0, keyframe=0, slots=0, paths=[], lags=[])

    async def keepalive() -> None:  # the victim's QUIC idle timer runs on what it receives
        while True:
            await asyncio.sleep(3.0)
            for c in conns:
                if not c.terminated.is_set():
                    c.send_msg(empty)
    pinger = asyncio.ensure_future(keepalive())
    olds: list[Any] = []
    mine: set[bytes] = set()
    refused = migrated = not_joined = 0
    for _ in range(keys):
        c = await dial(victim, auth=True, identity=Identity.generate())
        if not c.authed.is_set() or c.terminated.is_set():
            refused += 1
            await hang_up(c)
            continue
        c.send_msg(wire.Join(stream=str(sid)))
        # The victim's answers to a link-local address without its scope id do not leave
        # (qh3 drops the scope): the attacker does not need them, only to keep sending.
        c._quic._configuration.idle_timeout, c._quic._remote_max_idle_timeout = 300.0, None
        key = c.identity.public
        mine.add(key)
        conns.append(c)
        # (a client may migrate once the handshake is confirmed: wait for the JOIN to land)
        if not await wait_for(lambda k=key: sid.key in b.joined.get(k, set()), 3.0):
            olds.append(None)
            not_joined += 1
            continue
        olds.append(await migrate(c, second, (second, b.port)))  # hop to the second address
        if await wait_for(lambda k=key: (p := b.policy.peers.get(k)) is None or p.closing
                          or (p.addr is not None and pp.ip_key(p.addr[0]) == pp.ip_key(second)), 3.0, [c]):
            migrated += 1
    if back:  # and all back to the first
        for c, old in zip(conns, olds, strict=True):
            if old is not None and not c.terminated.is_set():
                move_back(c, old)
        await wait_for(lambda: all((p := b.policy.peers.get(c.identity.public)) is None or p.closing
                                   or (p.addr is not None and pp.ip_key(p.addr[0]) == pp.ip_key(first))
                                   for c in conns), 5.0, conns)
    await asyncio.sleep(1.0)  # the victim closes what it closes
    pinger.cancel()
    alive = sum(1 for c in conns if not c.terminated.is_set())
    ends = Counter(f"{c.closed_by}:{c.close_code}:{c.close_reason[:40]}" for c in conns
                   if c.terminated.is_set())
    by_addr = held(b, mine)
    vp = [b.policy.peers[k] for k in mine if k in b.policy.peers]
    victim_view = {"links": len(vp), "closing": sum(1 for p in vp if p.closing),
                   "neighbours": sum(1 for p in vp if not p.closing and not p.service)}
    honest = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0)
    await honest.start()
    try:
        honest.add_stream(sid, is_source=False)
        linked = await honest.connect(b.peer_id, "127.0.0.1", b.port)
        honest_ok = linked and await wait_for(
            lambda: sid.key in b.joined.get(honest.identity.public, set()), 5.0)
    finally:
        await honest.close()
    for c in conns:
        await hang_up(c)
    c_ = b.policy.counters
    return {"quic": b.endpoint.stack.name, "keys": keys, "hop_back": back, "attacker_links_alive": alive,
            "attacker_links_by_address": dict(by_addr), "attacker_links_ended": dict(ends), "victim_holds": victim_view, "dials_refused": refused, "not_joined": not_joined,
            "migrations_followed": migrated, "honest_viewer_linked": bool(honest_ok),
            "max_neighbours": b.policy.config.max_neighbours,
            "service_links": b.policy.config.service_links,
            "links_refused_per_ip": c_.links_refused_per_ip, "links_refused": c_.links_refused,
            "links_closed_per_ip_migrated": getattr(c_, "links_closed_per_ip_migrated", None)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=40)
    ap.add_argument("--first", default="fd00::2", help="a local address (not loopback)")
    ap.add_argument("--second", default="fe80::fc:ff:fe00:1%eth0",
                    help="another local address, in another /64 (not loopback)")
    ap.add_argument("--no-back", action="store_true", help="hop out only, not back")
    a = ap.parse_args()
    b = Node(Identity.generate(), sw.SwarmConfig(), host="::", target_neighbours=0)
    await b.start()
    try:
        sid = StreamId(b.identity.public, "live")
        b.add_stream(sid, is_source=True)
        out = await attack(b, sid, a.first, a.second, a.keys, not a.no_back)
    finally:
        await b.close()
    out["loadavg"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
