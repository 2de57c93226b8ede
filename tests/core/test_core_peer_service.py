"""Service links (docs/oftp.md §17.8): DHT traffic without taking neighbour slots.

A link that carries only DHT messages is not a neighbour: it does not count towards
the neighbour target or limit, it is closed without blame when idle, and the links
admitted beyond ``max_neighbours`` for it cannot be used to JOIN (the slot attack).
"""

from __future__ import annotations

import random

from oasis.core import peer as pp
from oasis.core import wire
from oasis.core.wire import ErrorCode

SKEY = b"\x07" * 32
TEXT = "stream-a"
PING = wire.DhtPing(qid=1)


def key(i: int) -> bytes:
    return i.to_bytes(2, "big") + b"\x55" * 30


def policy(**cfg) -> pp.PeerPolicy[str]:
    p: pp.PeerPolicy[str] = pp.PeerPolicy(b"\x01" * 32, pp.PolicyConfig(**cfg),
                                          rng=random.Random(7), now=0.0)
    assert p.add_stream(TEXT, SKEY)
    return p


def of(actions: list, kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def test_links_beyond_the_limit_serve_the_dht_only_and_cannot_join() -> None:
    p = policy(max_neighbours=2, service_links=1)
    assert p.link_up("a", key(1), dialled=False, now=0)
    assert p.link_up("b", key(2), dialled=False, now=0)
    assert p.link_up("c", key(3), dialled=False, now=0)  # over the limit: DHT only
    assert p.neighbour_count() == 2 and p.is_service(key(3))
    assert not p.link_up("d", key(4), dialled=False, now=0)  # no service slot left
    assert p.counters.links_refused == 1
    p.actions()
    assert p.on_message("c", key(3), PING, 1.0) == pp.TO_NODE  # its DHT requests are routed
    # the attack: take a neighbour slot through the DHT's extra room
    assert p.on_message("c", key(3), wire.Join(stream=TEXT), 1.0) is None
    assert of(p.actions(), pp.CloseLink) == [pp.CloseLink("c", key(3), ErrorCode.OVERLOADED,
                                                          "neighbour limit reached")]
    assert p.counters.joins_refused_service == 1 and SKEY not in p.joined(key(3))
    p.link_down("c", key(3), 1.0, code=ErrorCode.OVERLOADED)
    assert p.neighbour_count() == 2 and p._n_service == 0


def test_an_inbound_dht_user_is_no_neighbour_and_leaves_without_blame() -> None:
    p = policy(max_neighbours=4, service_idle=15.0, join_timeout=10.0, sweep_interval=1.0)
    assert p.link_up("a", key(1), dialled=False, now=0)
    assert p.neighbour_count() == 1
    assert p.on_message("a", key(1), PING, 0.5) == pp.TO_NODE
    assert p.neighbour_count() == 0 and p.counters.links_service == 1
    p.actions()
    for t in range(1, 13):  # still asking: kept past the join timeout
        assert p.on_message("a", key(1), PING, t + 0.5) == pp.TO_NODE
        p.handle_timer(t + 0.6)
        assert not of(p.actions(), pp.CloseLink)
    now = 12.5
    while now < 12.5 + 16:
        now += 1
        p.handle_timer(now)
        closes = of(p.actions(), pp.CloseLink)
        if closes:
            break
    assert closes == [pp.CloseLink("a", key(1), ErrorCode.NO_ERROR, "DHT link idle")]
    assert 12.5 + 15 <= now <= 12.5 + 17
    p.link_down("a", key(1), now, code=ErrorCode.NO_ERROR)
    assert p.score(key(1), now) == 0.0 and p.counters.links_service_closed == 1


def test_a_link_that_neither_joins_nor_uses_the_dht_still_times_out() -> None:
    p = policy(join_timeout=10.0, sweep_interval=1.0)
    assert p.link_up("a", key(1), dialled=False, now=0)
    closes = []
    now = 0.0
    while not closes and now < 20:
        now += 1
        p.handle_timer(now)
        closes = of(p.actions(), pp.CloseLink)
    assert closes and closes[0].code == ErrorCode.TIMEOUT and 10 <= now <= 12


def test_a_dht_dial_sends_no_join_until_a_verified_source_offers_the_peer() -> None:
    p = policy(target_neighbours=4)
    assert p.link_up("s", key(5), dialled=True, now=0, service=True)
    acts = p.actions()
    assert not [a for a in of(acts, pp.SendTo) if isinstance(a.message, wire.Join)]
    assert p.neighbour_count() == 0 and p.is_service(key(5))
    # an unverified offer does not promote it
    p.on_candidates([pp.Candidate(key(5), "192.0.2.5", 4000)], 1.0, verified=False)
    assert p.is_service(key(5))
    p.on_candidates([pp.Candidate(key(5), "192.0.2.5", 4000)], 1.0, verified=True)
    acts = p.actions()
    assert pp.SendTo("s", wire.Join(stream=TEXT, short=True)) in acts
    assert not of(acts, pp.Dial)  # no second link to it
    assert p.neighbour_count() == 1 and p.counters.links_service_promoted == 1
    # the listener joins back: now an ordinary neighbour
    assert p.on_message("s", key(5), wire.Join(stream=TEXT), 1.1) is None
    assert pp.AddPeer(key(5), SKEY) in p.actions()


def test_an_inbound_dht_user_that_joins_becomes_a_neighbour() -> None:
    p = policy()
    assert p.link_up("a", key(1), dialled=False, now=0)
    p.on_message("a", key(1), PING, 0.1)
    assert p.neighbour_count() == 0
    p.on_message("a", key(1), wire.Join(stream=TEXT), 0.2)
    assert p.neighbour_count() == 1 and not p.is_service(key(1))


def test_dht_only_links_made_early_cannot_join_past_the_limit_later() -> None:
    """Found 2026-12-06 by an outside audit: 16 keys linked while neighbour slots were free and
    sent one DHT message each (service links, not neighbours); once 60 others had filled the
    48 slots, those 16 dialled again (the redial rule) and JOINed: 64 neighbours. A service
    link's JOIN with the slots full is refused as one admitted beyond the limit, and a peer's
    inbound redial does not make its service link a neighbour."""
    p = policy(max_neighbours=2, service_links=4)
    assert p.link_up("s", key(9), dialled=False, now=0)
    assert p.on_message("s", key(9), PING, 0.1) == pp.TO_NODE  # DHT only: no neighbour
    assert p.link_up("a", key(1), dialled=False, now=0.2)
    assert p.link_up("b", key(2), dialled=False, now=0.2)
    assert p.neighbour_count() == 2 and p.is_service(key(9))
    p.actions()
    assert p.link_up("s2", key(9), dialled=False, now=6.0)  # its redial: still DHT only
    assert p.is_service(key(9)) and p.counters.links_redialled == 1 and p.neighbour_count() == 2
    p.actions()
    assert p.on_message("s2", key(9), wire.Join(stream=TEXT), 6.1) is None
    assert of(p.actions(), pp.CloseLink) == [pp.CloseLink("s2", key(9), ErrorCode.OVERLOADED,
                                                          "neighbour limit reached")]
    assert p.neighbour_count() == 2 and SKEY not in p.joined(key(9))
    # with a slot free, a DHT contact that joins is a neighbour, as before
    q = policy(max_neighbours=2, service_links=4)
    assert q.link_up("s", key(9), dialled=False, now=0)
    assert q.on_message("s", key(9), PING, 0.1) == pp.TO_NODE
    assert q.on_message("s", key(9), wire.Join(stream=TEXT), 0.2) is None
    assert q.neighbour_count() == 1 and SKEY in q.joined(key(9))
