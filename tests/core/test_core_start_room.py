"""``start_room`` (issue 10, h-nat9): a full node admits links beyond ``max_neighbours`` for
the DHT only and refuses a JOIN on them (OVERLOADED). 70 % behind NATs the public nodes are
the only ones a newcomer can dial, and the NATed nodes' own dials fill them: a newcomer's
first links were refused there. With ``start_room`` a JOIN that asks for a start on such a
link is admitted while the node has fewer than ``max_neighbours + start_room`` neighbours."""

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
