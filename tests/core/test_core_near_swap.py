"""``near_swap`` (a prototype, off by default): a full node takes a JOIN on a link admitted
beyond ``max_neighbours`` (DHT only) from a peer much nearer than its farthest inbound
neighbour, closing that neighbour (OVERLOADED, "replaced by a nearer peer"). In the 30-node
testbed the Brazilian public viewer was full of far peers' dials and refused the one near
viewer behind a carrier-grade NAT that could dial it."""

from __future__ import annotations

import random

from oasis.core import peer as pp
from oasis.core import wire
from oasis.core.wire import ErrorCode

SKEY = b"\x07" * 32
TEXT = "stream-a"
FAR, MID = 0.300, 0.120  #: the full node's inbound neighbours' link RTTs (s)


def key(i: int) -> bytes:
    return i.to_bytes(2, "big") + b"\x55" * 30


def full_node(**cfg: object) -> pp.PeerPolicy[str]:
    """Full at two inbound neighbours: ``a`` far (300 ms), ``b`` nearer (120 ms); no room
    for a start beyond the limit (``start_room`` 0), so a JOIN there is refused unless swapped."""
    conf = pp.PolicyConfig(max_neighbours=2, start_room=0, **cfg)  # type: ignore[arg-type]
    p: pp.PeerPolicy[str] = pp.PeerPolicy(b"\x01" * 32, conf, rng=random.Random(7), now=0.0)
    assert p.add_stream(TEXT, SKEY)
    for i, link, rtt in ((1, "a", FAR), (2, "b", MID)):
        assert p.link_up(link, key(i), dialled=False, now=0.0, rtt=rtt)
        p.on_message(link, key(i), wire.Join(stream=TEXT), 0.1)
    p.actions()
    return p


def newcomer(p: pp.PeerPolicy[str], link: str, i: int, rtt: float, now: float) -> list[pp.Action[str]]:
    """An inbound link beyond the limit (a DHT-only link until it JOINs), then its JOIN."""
    assert p.link_up(link, key(i), dialled=False, now=now, rtt=rtt) and p.is_service(key(i))
    p.on_message(link, key(i), wire.Join(stream=TEXT), now + 0.05)
    return p.actions()


def closes(acts: list[pp.Action[str]]) -> list[tuple[str, ErrorCode, str]]:
    return [(a.link, a.code, a.reason) for a in acts if isinstance(a, pp.CloseLink)]


def added(acts: list[pp.Action[str]]) -> list[bytes]:
    return [a.peer for a in acts if isinstance(a, pp.AddPeer)]


def test_a_near_newcomer_replaces_the_farthest_inbound_neighbour() -> None:
    p = full_node(near_swap=True)
    acts = newcomer(p, "c", 3, 0.030, 1.0)
    assert closes(acts) == [("a", ErrorCode.OVERLOADED, "replaced by a nearer peer")]
    assert added(acts) == [key(3)]
    assert p.is_neighbour(key(3)) and SKEY in p.joined(key(3)) and not p.is_neighbour(key(1))
    assert p.counters.links_replaced_nearer == 1 and p.counters.joins_refused_service == 0
    # the far one's close: it leaves the swarm, the node is at its limit again
    p.link_down("a", key(1), 1.1, code=ErrorCode.OVERLOADED)
    assert pp.RemovePeer(key(1), SKEY) in p.actions()
    assert p.neighbour_count() == 2


def test_a_newcomer_not_much_nearer_is_refused_as_before() -> None:
    p = full_node(near_swap=True)
    # 200 ms: more than half the farthest (300 ms); the JOIN beyond the limit is refused
    acts = newcomer(p, "c", 3, 0.200, 1.0)
    assert closes(acts) == [("c", ErrorCode.OVERLOADED, "neighbour limit reached")]
    assert not added(acts)
    assert p.counters.links_replaced_nearer == 0 and p.counters.joins_refused_service == 1
    # ... and so is one under half but by less than near_swap_gain (12 ms against 30 ms)
    r: pp.PeerPolicy[str] = pp.PeerPolicy(b"\x01" * 32, pp.PolicyConfig(
        max_neighbours=1, start_room=0, near_swap=True), rng=random.Random(7), now=0.0)
    r.add_stream(TEXT, SKEY)
    r.link_up("a", key(1), dialled=False, now=0.0, rtt=0.030)
    r.on_message("a", key(1), wire.Join(stream=TEXT), 0.1)
    r.actions()
    assert closes(newcomer(r, "c", 3, 0.012, 1.0)) == [("c", ErrorCode.OVERLOADED, "neighbour limit reached")]


def test_switch_off_a_near_newcomer_is_refused_as_before() -> None:
    p = full_node()
    assert p.config.near_swap is False  # the default
    acts = newcomer(p, "c", 3, 0.010, 1.0)
    assert closes(acts) == [("c", ErrorCode.OVERLOADED, "neighbour limit reached")]
    assert not added(acts) and p.neighbour_count() == 2
    assert p.counters.links_replaced_nearer == 0 and p.counters.joins_refused_service == 1


def test_tree_peers_our_dials_and_unknown_rtts_are_kept() -> None:
    # the farthest carries our tree: the next farthest goes
    p = full_node(near_swap=True)
    p.tree_peer = lambda k: k == key(1)
    assert closes(newcomer(p, "c", 3, 0.030, 1.0)) == [("b", ErrorCode.OVERLOADED, "replaced by a nearer peer")]
    # every inbound neighbour in the tree: refused as before
    q = full_node(near_swap=True)
    q.tree_peer = lambda k: True
    assert closes(newcomer(q, "c", 3, 0.010, 1.0)) == [("c", ErrorCode.OVERLOADED, "neighbour limit reached")]
    # a link we dialled is our choice, kept; a newcomer with no RTT estimate swaps nothing
    r: pp.PeerPolicy[str] = pp.PeerPolicy(b"\x01" * 32, pp.PolicyConfig(
        max_neighbours=1, start_room=0, near_swap=True), rng=random.Random(7), now=0.0)
    r.add_stream(TEXT, SKEY)
    assert r.link_up("a", key(1), dialled=True, now=0.0, rtt=FAR)
    r.actions()
    assert closes(newcomer(r, "c", 3, 0.010, 1.0)) == [("c", ErrorCode.OVERLOADED, "neighbour limit reached")]
    s = full_node(near_swap=True)
    assert s.link_up("c", key(3), dialled=False, now=1.0)  # rtt None
    s.on_message("c", key(3), wire.Join(stream=TEXT), 1.05)
    assert closes(s.actions()) == [("c", ErrorCode.OVERLOADED, "neighbour limit reached")]


def test_at_most_one_swap_per_interval_and_none_for_a_dht_link() -> None:
    p = full_node(near_swap=True, near_swap_interval=10.0)
    assert closes(newcomer(p, "c", 3, 0.030, 1.0))[0][0] == "a"
    p.link_down("a", key(1), 1.1, code=ErrorCode.OVERLOADED)
    p.actions()
    # 5 s later a second near newcomer: "b" (120 ms) is far enough, but the interval holds
    assert closes(newcomer(p, "d", 4, 0.020, 6.0)) == [("d", ErrorCode.OVERLOADED, "neighbour limit reached")]
    # past the interval it may
    assert closes(newcomer(p, "e", 5, 0.020, 11.5)) == [("b", ErrorCode.OVERLOADED, "replaced by a nearer peer")]
    assert p.counters.links_replaced_nearer == 2
    # a near link that only uses the DHT never displaces a neighbour
    q = full_node(near_swap=True)
    assert q.link_up("c", key(3), dialled=False, now=1.0, rtt=0.010)
    assert q.on_message("c", key(3), wire.DhtPing(qid=1), 1.1) == pp.TO_NODE
    assert not closes(q.actions()) and q.neighbour_count() == 2
    assert q.counters.links_replaced_nearer == 0
