"""Inbound service links are capped (docs/oftp.md §17.8; found 2026-12-03 by an outside
attacker, ``bench/atk6_service_links.py``). A link that carries DHT messages only takes no
neighbour slot, and below ``max_neighbours`` nothing capped how many such links a node held:
87 links from a stranger, each sending a DHT_PING every 10 s, filled a viewer's endpoint
(``max_links + 32``) and honest viewers could not link to it. Now at most
``inbound_service_links`` (16) are held; a newer one closes the oldest, without blame
(``links_service_evicted``). The real ``PeerPolicy``."""

from __future__ import annotations

from test_core_peer_service import PING, SKEY, TEXT, key, of, policy

from oasis.core import peer as pp
from oasis.core import wire
from oasis.core.wire import ErrorCode


def test_a_crowd_of_dht_links_keeps_at_most_its_cap_and_newcomers_still_join() -> None:
    p = policy(max_neighbours=24, inbound_service_links=16)
    for i in range(60):  # 60 strangers' DHT links, one after another, each pinging
        assert p.link_up(f"s{i}", key(100 + i), dialled=False, now=i * 0.1)
        assert p.on_message(f"s{i}", key(100 + i), PING, i * 0.1 + 0.05) == pp.TO_NODE
    closes = of(p.actions(), pp.CloseLink)
    assert len(closes) == 44 and p.counters.links_service_evicted == 44  # was: 0, all 60 held
    assert {c.code for c in closes} == {ErrorCode.NO_ERROR}  # no blame: DHT users come back
    assert [c.peer for c in closes] == [key(100 + i) for i in range(44)]  # the oldest went
    for c in closes:
        p.link_down(c.link, c.peer, 7.0, code=ErrorCode.NO_ERROR)
    assert p._n_service == 16
    # an honest viewer links and joins; our own DHT dials are not counted against the cap
    assert p.link_up("h", key(1), dialled=False, now=7.0)
    p.on_message("h", key(1), wire.Join(stream=TEXT), 7.1)
    assert SKEY in p.joined(key(1)) and p.neighbour_count() == 1
    assert p.link_up("d", key(2), dialled=True, now=7.2, service=True)
    assert of(p.actions(), pp.CloseLink) == [] and p._n_service == 17
