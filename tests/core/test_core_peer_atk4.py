"""Connection migration against the per-address cap (docs/oftp.md §14.1, found
2026-12-03 by an outside attacker): QUIC lets a peer move its link to another address,
and the policy then counted the link at the new address without asking whether that
address already held its share. Links that hopped to a second address and back took all
32 inbound slots of a viewer (24 neighbours, 8 service links) from one address, where a
plain dial from there gets 6."""

from __future__ import annotations

from test_core_peer import key, of, policy

from oasis.core import peer as pp
from oasis.core.wire import ErrorCode

HOME, SECOND = "198.18.0.66", "198.18.0.77"


def live(p: pp.PeerPolicy[str]) -> dict[str, int]:
    n: dict[str, int] = {}
    for q in p.peers.values():
        if not q.closing and q.addr is not None:
            n[q.addr[0]] = n.get(q.addr[0], 0) + 1
    return n


def test_links_that_migrate_cannot_take_more_than_each_address_share():
    p = policy()  # max_neighbours 24, service_links 8: 6 inbound per address
    for i in range(40):
        if p.link_up(f"a{i}", key(i), dialled=False, now=0, addr=(HOME, 40000 + i)):
            p.address_changed(f"a{i}", key(i), (SECOND, 40000 + i), 0.1)  # hop out: frees HOME
    for i in range(40):
        p.address_changed(f"a{i}", key(i), (HOME, 40000 + i), 0.2)  # and back
    held = live(p)
    assert held.get(HOME, 0) <= 6 and held.get(SECOND, 0) <= 6, held  # was: 32 at HOME
    closes = [c for c in of(p.actions(), pp.CloseLink) if c.reason == "too many links from this address"]
    assert closes and all(c.code == ErrorCode.OVERLOADED for c in closes)
    assert p.counters.links_closed_per_ip_migrated == len(closes)
    for c in closes:  # the executor closes them
        p.link_down(c.link, c.peer, 0.3, code=c.code)
    # an honest newcomer from elsewhere finds a slot (was: none left)
    assert p.link_up("honest", key(500), dialled=False, now=1, addr=("198.18.5.5", 5000))


def test_a_migration_into_an_address_with_room_keeps_its_link_and_is_told_its_address():
    p = policy()
    for i in range(5):
        assert p.link_up(f"cgn{i}", key(i), dialled=False, now=0, addr=("203.0.113.9", 6000 + i))
    assert p.link_up("phone", key(99), dialled=False, now=0, addr=("198.51.100.4", 7000))
    p.actions()
    p.address_changed("phone", key(99), ("203.0.113.9", 7001), 1.0)  # 6th at that address: room
    assert not p.peers[key(99)].closing and p.peers[key(99)].addr == ("203.0.113.9", 7001)
    assert not of(p.actions(), pp.CloseLink)
    # a port change at the same address (a NAT rebinding) is never refused
    p.address_changed("phone", key(99), ("203.0.113.9", 7002), 2.0)
    assert not p.peers[key(99)].closing
    # the next phone moving there is over the share: closed, counted
    assert p.link_up("phone2", key(98), dialled=False, now=0, addr=("198.51.100.5", 7000))
    p.address_changed("phone2", key(98), ("203.0.113.9", 7003), 3.0)
    assert p.peers[key(98)].closing and p.counters.links_closed_per_ip_migrated == 1
    # a link we dialled is ours: it follows its peer wherever it goes
    assert p.link_up("mine", key(97), dialled=True, now=0, addr=("198.51.100.6", 7000))
    p.address_changed("mine", key(97), ("203.0.113.9", 7004), 4.0)
    assert not p.peers[key(97)].closing and p.peers[key(97)].addr == ("203.0.113.9", 7004)
