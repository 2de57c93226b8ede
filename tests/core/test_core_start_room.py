"""``start_room`` (issue 10, h-nat9): a full node admits links beyond ``max_neighbours`` for
the DHT only and refuses a JOIN on them (OVERLOADED). 70 % behind NATs the public nodes are
the only ones a newcomer can dial, and the NATed nodes' own dials fill them: a newcomer's
first links were refused there. With ``start_room`` a JOIN that asks for a start on such a
link is admitted while the node has fewer than ``max_neighbours + start_room`` neighbours,
and so is a JOIN that says its sender is short of neighbours (``short``: fewer than half
its target), whose links came up after it had started (2026-12-05)."""

from __future__ import annotations

import random

from oasis.core import peer as pp
from oasis.core import wire
from oasis.core.wire import ErrorCode

SKEY = b"\x07" * 32
TEXT = "stream-a"


def key(i: int) -> bytes:
    return i.to_bytes(2, "big") + b"\x55" * 30


def full_node(**cfg: int) -> pp.PeerPolicy[str]:
    p: pp.PeerPolicy[str] = pp.PeerPolicy(b"\x01" * 32, pp.PolicyConfig(max_neighbours=2, **cfg),
                                          rng=random.Random(7), now=0.0)
    assert p.add_stream(TEXT, SKEY)
    for i, link in ((1, "a"), (2, "b")):
        assert p.link_up(link, key(i), dialled=False, now=0.0)
        p.on_message(link, key(i), wire.Join(stream=TEXT), 0.1)
    p.actions()
    return p


def closes(p: pp.PeerPolicy[str]) -> list[pp.CloseLink]:
    return [a for a in p.actions() if isinstance(a, pp.CloseLink)]


def test_a_newcomer_asking_for_a_start_is_admitted_beyond_the_limit() -> None:
    p = full_node(start_room=1)
    assert p.link_up("c", key(3), dialled=False, now=1.0) and p.is_service(key(3))
    assert p.on_message("c", key(3), wire.Join(stream=TEXT, start=True), 1.1) is None
    acts = p.actions()
    assert [a for a in acts if isinstance(a, pp.AddPeer)] == [pp.AddPeer(key(3), SKEY, start=True, asked=False)]
    assert not [a for a in acts if isinstance(a, pp.CloseLink)]
    assert p.neighbour_count() == 3 and not p.is_service(key(3)) and SKEY in p.joined(key(3))
    assert p.counters.joins_start_room == 1
    # the room is one: the next newcomer is refused, as is a JOIN that asks for no start
    assert p.link_up("d", key(4), dialled=False, now=1.2)
    p.on_message("d", key(4), wire.Join(stream=TEXT, start=True), 1.3)
    assert [c.code for c in closes(p)] == [ErrorCode.OVERLOADED]
    q = full_node(start_room=1)
    assert q.link_up("c", key(3), dialled=False, now=1.0)
    q.on_message("c", key(3), wire.Join(stream=TEXT), 1.1)
    assert [c.code for c in closes(q)] == [ErrorCode.OVERLOADED]


def test_off_a_newcomer_is_refused_like_any_join_beyond_the_limit() -> None:
    p = full_node(start_room=0)
    assert p.link_up("c", key(3), dialled=False, now=1.0)
    p.on_message("c", key(3), wire.Join(stream=TEXT, start=True), 1.1)
    assert [c.code for c in closes(p)] == [ErrorCode.OVERLOADED]
    assert p.counters.joins_refused_service == 1 and p.neighbour_count() == 2


def test_a_flood_of_start_joins_takes_at_most_the_room() -> None:
    """An attacker with many keys fills a full node through start JOINs: it gets
    ``start_room`` neighbours beyond the limit (each start paid from its pull budget, as
    any), never more; the rest are refused OVERLOADED and their links closed."""
    p = full_node()  # the default room
    room = p.config.start_room
    assert room > 0
    admitted = refused = 0
    for i in range(3, 60):
        link = f"x{i}"
        if not p.link_up(link, key(i), dialled=False, now=1.0 + i / 100):
            refused += 1
            continue
        p.on_message(link, key(i), wire.Join(stream=TEXT, start=True), 1.0 + i / 100)
        acts = p.actions()
        if [a for a in acts if isinstance(a, pp.AddPeer)]:
            admitted += 1
        else:
            refused += 1
    assert admitted == room and p.neighbour_count() == 2 + room
    assert refused == 57 - room
    assert p.counters.joins_start_room == room


def test_a_node_short_of_neighbours_is_admitted_beyond_the_limit_and_says_so() -> None:
    """A viewer that joined late, behind a NAT: its links to the full public nodes came up
    after it had started from the origin, so its JOINs asked for no start and each was
    refused (the 30-node testbed's Brazilian CGN viewer kept 2-6 neighbours and took its
    stream from the CDN edge). Its JOINs say ``short`` while it has fewer than half its
    target; a full node admits them in ``start_room`` as it admits a start."""
    p = full_node(start_room=1)
    assert p.link_up("c", key(3), dialled=False, now=1.0) and p.is_service(key(3))
    p.on_message("c", key(3), wire.Join(stream=TEXT, short=True), 1.1)
    acts = p.actions()
    assert [a for a in acts if isinstance(a, pp.AddPeer)] == [pp.AddPeer(key(3), SKEY, start=False, asked=False)]
    assert not [a for a in acts if isinstance(a, pp.CloseLink)]
    assert p.counters.joins_short_room == 1 and p.counters.joins_start_room == 0
    # the same room: the next one short of neighbours is refused
    assert p.link_up("d", key(4), dialled=False, now=1.2)
    p.on_message("d", key(4), wire.Join(stream=TEXT, short=True), 1.3)
    assert [c.code for c in closes(p)] == [ErrorCode.OVERLOADED]
    # the sender: short below half its target (12 -> 6), not from there on
    v: pp.PeerPolicy[str] = pp.PeerPolicy(b"\x02" * 32, pp.PolicyConfig(target_neighbours=12),
                                          rng=random.Random(8), now=0.0)
    assert v.add_stream(TEXT, SKEY)
    sent = []
    for i in range(10, 18):
        link = f"n{i}"
        assert v.link_up(link, key(i), dialled=True, now=0.0)
        sent += [a.message for a in v.actions() if isinstance(a, pp.SendTo) and isinstance(a.message, wire.Join)]
    assert [j.short for j in sent] == [True] * 5 + [False] * 3
    # a node that dials nobody (a broadcaster) is never short
    b: pp.PeerPolicy[str] = pp.PeerPolicy(b"\x03" * 32, pp.PolicyConfig(target_neighbours=0),
                                          rng=random.Random(9), now=0.0)
    assert b.add_stream(TEXT, SKEY)
    assert b.link_up("x", key(20), dialled=False, now=0.0)
    b.on_message("x", key(20), wire.Join(stream=TEXT), 0.1)
    assert [a.message.short for a in b.actions() if isinstance(a, pp.SendTo) and isinstance(a.message, wire.Join)] == [False]


def test_a_flood_of_short_joins_takes_at_most_the_room() -> None:
    """Saying ``short`` costs nothing, so many keys saying it get the room and no more: the
    same ``start_room`` a start's JOINs share."""
    p = full_node()
    room = p.config.start_room
    admitted = 0
    for i in range(3, 40):
        link = f"y{i}"
        if p.link_up(link, key(i), dialled=False, now=1.0 + i / 100):
            p.on_message(link, key(i), wire.Join(stream=TEXT, short=True, start=i % 2 == 0), 1.0 + i / 100)
            admitted += bool([a for a in p.actions() if isinstance(a, pp.AddPeer)])
    assert admitted == room and p.neighbour_count() == 2 + room
    assert p.counters.joins_short_room + p.counters.joins_start_room == room
