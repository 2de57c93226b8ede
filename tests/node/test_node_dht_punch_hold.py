"""The DHT does not dial a peer whose punch failed lately (oasis.core.nat: punch_retry_after).

In the testbed a pair of NATed viewers whose first punch had failed retried after the
hold-off with two dials 4 ms apart and failed again: one node's DHT had dialled the other's
mapping meanwhile, an unsolicited packet that left the far NAT's state in place (as a punch
packet that arrives first does). The node's DHT driver now asks the policy first."""

from __future__ import annotations

import asyncio
import random
import types

from oasis.core import dhtdefs as dd
from oasis.core import peer as pp
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.nat import Phase
from oasis.node.dhtnode import DhtDriver


def key(i: int) -> bytes:
    return bytes([i]) * 32


def _node() -> tuple[list[float], list[tuple[tuple[str, int], bytes]], pp.PeerPolicy[object], types.SimpleNamespace]:
    """A node's policy and a DHT's view of the node, whose endpoint records each dial and
    fails it (no network here), on a clock the test moves."""
    clock = [100.0]
    dials: list[tuple[tuple[str, int], bytes]] = []

    class Endpoint:
        def dial(self, addr: tuple[str, int], peer: bytes) -> object:
            dials.append((addr, peer))
            raise ConnectionError("no network here")

    ident = Identity.generate()
    policy: pp.PeerPolicy[object] = pp.PeerPolicy(ident.public, rng=random.Random(1), now=clock[0])
    node = types.SimpleNamespace(identity=ident, rng=random.Random(2), policy=policy, closing=False,
                                 loop=asyncio.get_running_loop(), endpoint=Endpoint(),
                                 clock=lambda: clock[0])
    return clock, dials, policy, node


async def _settle() -> None:
    """Every task the driver started has ended (its dials fail at once here): waited on,
    bounded by a timeout, not by loop turns."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=10)
        assert not pending, pending


def test_no_dht_dial_to_a_peer_held_off_after_a_failed_punch() -> None:
    async def run() -> None:
        clock, dials, policy, node = _node()
        driver = DhtDriver(node)  # type: ignore[arg-type]
        ping = wire.DhtPing(qid=1)
        # a punch with 7 elsewhere (a stranger's OFFER named a dead address) holds nothing here
        policy.nat.hold(key(7), ("198.18.9.9", 4436), clock[0])
        assert not driver._held(key(7), "198.18.3.1", 4436)
        policy.nat.hold(key(7), ("198.18.3.1", 4436), clock[0])  # our punched dial failed there
        driver._send(dd.Send(key(7), "198.18.3.1", 4436, ping))  # type: ignore[arg-type]
        await _settle()
        assert dials == [] and driver.counters["dht_dials"] == 0
        assert not driver.open_link(key(7), "198.18.3.1", 4436)
        clock[0] += policy.nat.config.punch_retry_after  # the NATs forgot the failed punch
        driver._send(dd.Send(key(7), "198.18.3.1", 4436, ping))  # type: ignore[arg-type]
        await _settle()  # the dial runs as a task
        assert driver.counters["dht_dials"] == 1 and dials == [(("198.18.3.1", 4436), key(7))]

    asyncio.run(run())


def test_the_dht_waits_for_the_punch_an_accepted_offer_scheduled() -> None:
    """An OFFER we accepted makes us dial the peer a round trip later (oasis.core.nat): a DHT
    dial to it meanwhile would reach its NAT before its own packets left (a testbed pair's
    punch failed so, the DHT's dial just before it). The DHT waits for the punch's link."""
    async def run() -> None:
        clock, dials, policy, node = _node()
        r = ("L", 3)
        assert policy.link_up(r, key(3), dialled=True, now=clock[0], addr=("198.18.1.1", 4434), rtt=0.06)
        policy.on_message(r, key(3), wire.Punch(phase=Phase.OFFER, peer=key(7), nonce=1,
                                                host="198.18.3.1", port=4436, delay_ms=134), clock[0])
        assert [a for a in policy.actions() if isinstance(a, pp.Prime)]  # primed; dials later
        assert key(7) in policy.dialling
        driver = DhtDriver(node)  # type: ignore[arg-type]
        driver._send(dd.Send(key(7), "198.18.3.1", 4436, wire.DhtPing(qid=1)))  # type: ignore[arg-type]
        await _settle()  # a dial would run as a task
        assert dials == [] and driver.counters["dht_dials"] == 0
        assert key(7) in driver._waiting  # the ping goes on the punch's link when it is up

    asyncio.run(run())
