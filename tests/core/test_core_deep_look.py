"""``deep_look`` (4 by default since 2026-12-07, 6 before): a substream at ``deep_look`` or deeper is looked at again
soon (``start_look``, or ``DEEP_DWELL`` when that is 0), not after ``switch_dwell``, and a
parent's STATUS that makes our path that deep arms such a look: a deep path moves up as soon
as a shallower, faster neighbour is a candidate."""

from __future__ import annotations

import random

from swarmnet import subscribes as _subscribes

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId


def _status(skey: bytes, path: list[bytes], lag: int, slots: int = 8) -> wire.Status:
    return wire.Status(stream=skey, latest=40, have=0, keyframe=40, slots=slots,
                       paths=[path], lags=[lag])


def _swarm(deep_look: int) -> tuple[sw.Swarm, StreamId, list[bytes], list[bytes]]:
    rng = random.Random(33)
    keys = [Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(4)]
    relays = [peer_tag(Identity.from_private_bytes(rng.randbytes(32)).public) for _ in range(5)]
    sid = StreamId(keys[0], "t")
    cfg = sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, substreams=1, playout_delay=0.5,
                         start_look=0.0,  # (the first parent's early look: its own tests)
                         deep_look=deep_look)
    node = sw.Swarm(sid, keys[3], cfg, rng=random.Random(1), now=0.0)
    return node, sid, keys, relays


def _first_asked(node: sw.Swarm, start: float, until: float) -> tuple[float, dict[bytes, int]]:
    now = start
    while now < until:
        now = round(now + 0.05, 2)
        node.handle_timer(now)
        asked = _subscribes(node)
        if asked:
            return now, asked
    return now, {}


def _deep_first_parent(deep_look: int) -> tuple[float, dict[bytes, int], bytes, float]:
    """A newcomer's only candidate ``p`` puts it at depth 6; 0.1 s after its ACK a neighbour
    ``q`` two levels deep and faster is heard. Returns when (and whom) it asks next, q, and
    the end of the switch dwell."""
    node, sid, (b, p, q, _), relays = _swarm(deep_look)
    tb = peer_tag(b)
    node.add_peer(p, 0.0, rtt=0.1)
    node.on_message(p, _status(sid.key, [tb, *relays[:4], peer_tag(p)], 100), 0.0)
    assert _subscribes(node) == {p: 1}
    node.on_message(p, wire.SubscribeAck(stream=sid.key, accepted=1, rejected=0), 0.1)
    assert node.parents[0] == p and len(node.tree.paths[0]) - 1 == 6
    node.add_peer(q, 0.2, rtt=0.1)
    node.on_message(q, _status(sid.key, [tb, peer_tag(q)], 30), 0.2)
    node.actions()
    when, asked = _first_asked(node, 0.2, 0.1 + 2 * node.config.switch_dwell + node.config.status_interval)
    return when, asked, q, 0.1 + node.config.switch_dwell


def test_a_deep_first_parent_is_left_for_a_shallower_one_soon() -> None:
    for deep in (6, sw.SwarmConfig().deep_look):  # at depth 6 exactly, and the default (4)
        when, asked, q, dwell_end = _deep_first_parent(deep)
        assert asked == {q: 1}
        assert when <= 0.1 + 0.5 + 0.1 < dwell_end  # DEEP_DWELL after the ACK, not the dwell


def test_off_or_not_deep_enough_the_switch_dwell_holds() -> None:
    assert sw.SwarmConfig().deep_look == 4
    for deep in (0, 7):  # off; on, but depth 6 is not deep enough for 7
        when, asked, q, dwell_end = _deep_first_parent(deep)
        assert asked == {q: 1}  # (it still climbs at a periodic look)
        assert when >= dwell_end


def _ancestor_moves(deep_look: int) -> tuple[sw.Swarm, float, dict[bytes, int], bytes]:
    """We feed from ``p`` two levels deep; ``q`` (three levels) is slower. At 3.0 s ``p``'s
    STATUS says its own path moved five levels down (we are at depth 7 now, q is faster).
    Returns the swarm, when and whom it asks next, and q."""
    node, sid, (b, p, q, _), relays = _swarm(deep_look)
    tb = peer_tag(b)
    node.add_peer(p, 0.0, rtt=0.1)
    node.add_peer(q, 0.0, rtt=0.1)
    node.on_message(p, _status(sid.key, [tb, peer_tag(p)], 20), 0.0)
    node.on_message(q, _status(sid.key, [tb, relays[0], peer_tag(q)], 60), 0.0)
    assert _subscribes(node) == {p: 1}
    node.on_message(p, wire.SubscribeAck(stream=sid.key, accepted=1, rejected=0), 0.1)
    _first_asked(node, 0.1, 2.95)  # (the periodic looks keep p: it is faster)
    node.on_message(p, _status(sid.key, [tb, *relays, peer_tag(p)], 300), 3.0)
    assert len(node.tree.paths[0]) - 1 == 7 and node.parents[0] == p
    node.actions()
    when, asked = _first_asked(node, 3.0, 3.0 + 2 * node.config.status_interval)
    return node, when, asked, q


def test_a_path_made_deep_by_an_ancestor_is_looked_at_soon() -> None:
    node, when, asked, q = _ancestor_moves(6)
    assert asked == {q: 1} and when <= 3.0 + 0.5 + 0.1
    assert node.counters.deep_looks == 1


def test_off_a_path_made_deep_waits_for_the_periodic_look() -> None:
    node, when, asked, q = _ancestor_moves(0)
    assert node.counters.deep_looks == 0
    on = _ancestor_moves(6)[1]
    assert asked == {q: 1} and when > on
