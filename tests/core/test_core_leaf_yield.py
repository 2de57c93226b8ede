"""``leaf_yield`` (off by default): a leaf in time leaves a full parent's slot to a relay.

A viewer with no children on a substream (a *leaf* there) whose parent's expected arrival
keeps it ``leaf_yield`` before its origin fallback does not climb to a faster parent, and
when its parent is full (no free slot in its STATUS) it moves to the best other candidate
with free slots that keeps it in time. A relay (children on the substream) is not moved.
"""

from __future__ import annotations

import random

from swarmnet import subscribes as _subscribes

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId

YIELD = 0.08  #: at playout 0.5 s and origin margin 0.12: in time = expected arrival <= 0.30 s


def _status(skey: bytes, path: list[bytes], lag: int, slots: int) -> wire.Status:
    return wire.Status(stream=skey, latest=40, have=0, keyframe=40, slots=slots,
                       paths=[path], lags=[lag])


def _leaf(leaf_yield: float, *, other_lag: int, child: bool = False,
          parent_full: bool = True) -> tuple[sw.Swarm, bytes, bytes, float]:
    """A viewer on one substream whose parent ``p`` (100 ms lag, 50 ms away: 0.18 s with the
    hop penalty) is or becomes full; ``q`` (``other_lag`` ms, 50 ms away) has free slots.
    Returns the swarm, p, q and the time just after the switch dwell."""
    rng = random.Random(21)
    b, p, q, c, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(5))
    sid = StreamId(b, "t")
    cfg = sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, substreams=1, playout_delay=0.5,
                         origin_margin=0.12, leaf_yield=leaf_yield,
                         start_look=0.0)  # the looks at the dwell (start_look: its own tests)
    node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=0.0)
    tb = peer_tag(b)
    node.add_peer(p, 0.0, rtt=0.1)
    node.on_message(p, _status(sid.key, [tb, peer_tag(p)], 100, 8), 0.0)
    assert _subscribes(node) == {p: 1}
    node.on_message(p, wire.SubscribeAck(stream=sid.key, accepted=1, rejected=0), 0.1)
    assert node.parents[0] == p
    if child:
        node.add_peer(c, 0.2)
        node.on_message(c, wire.Subscribe(stream=sid.key, mask=1, substreams=1), 0.2)
        assert node.peers[c].children_mask == 1
    node.add_peer(q, 0.2, rtt=0.1)
    node.on_message(q, _status(sid.key, [tb, peer_tag(p), peer_tag(q)], other_lag, 8), 0.2)
    node.on_message(p, _status(sid.key, [tb, peer_tag(p)], 100, 0 if parent_full else 3), 0.3)
    node.actions()
    return node, p, q, 0.1 + cfg.switch_dwell


def _looks(node: sw.Swarm, start: float, until: float) -> dict[bytes, int]:
    asked: dict[bytes, int] = {}
    now = start
    while now < until:
        now += 0.25
        node.handle_timer(now)
        for k, m in _subscribes(node).items():
            asked[k] = asked.get(k, 0) | m
    return asked


def test_a_leaf_in_time_leaves_a_full_parent_for_one_with_free_slots() -> None:
    # q: 180 ms lag + 50 ms + two hops' penalty = 0.29 s, in time (<= 0.30 s)
    node, p, q, after = _leaf(YIELD, other_lag=180)
    now, asked = 0.3, {}
    while not asked and now < after + 2 * node.config.status_interval:
        now += 0.25
        node.handle_timer(now)
        asked = _subscribes(node)
    assert asked == {q: 1} and now >= after
    assert node.counters.leaf_yields == 1
    now += 0.1
    node.on_message(q, wire.SubscribeAck(stream=node.skey, accepted=1, rejected=0), now)
    assert node.parents[0] == q
    # in time under q, it does not climb back when p shows free slots again
    tb = node.peers[p].status.paths[0][0]
    node.on_message(p, _status(node.skey, [tb, peer_tag(p)], 100, 8), now)
    node.actions()
    assert p not in _looks(node, now, now + 3 * node.config.switch_dwell)
    assert node.parents[0] == q and node.counters.leaf_yields == 1


def test_off_or_a_slower_candidate_or_a_relay_does_not_move() -> None:
    for kw in ({"leaf_yield": 0.0, "other_lag": 180},        # off: q is slower, no gain
               {"leaf_yield": YIELD, "other_lag": 230},      # q would make us late (0.34 s)
               {"leaf_yield": YIELD, "other_lag": 180, "child": True},  # we relay j
               {"leaf_yield": YIELD, "other_lag": 180, "parent_full": False}):  # p has room
        leaf_yield = float(kw.pop("leaf_yield"))
        node, p, q, after = _leaf(leaf_yield, **kw)  # type: ignore[arg-type]
        asked = _looks(node, 0.3, after + 2 * node.config.status_interval)
        assert q not in asked, kw
        assert node.counters.leaf_yields == 0 and node.parents[0] == p


def test_a_leaf_in_time_does_not_climb_but_a_late_one_does() -> None:
    """A faster candidate with free slots: a leaf in time stays where it is (the slot is for
    a relay); off, or once the leaf's parent would make it late, it is taken."""
    rng = random.Random(22)
    b, p, r, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(4))
    sid = StreamId(b, "t")
    tb = peer_tag(b)
    for leaf_yield, p_lag, climbs in ((0.0, 150, True), (YIELD, 150, False), (YIELD, 250, True)):
        cfg = sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, substreams=1, playout_delay=0.5,
                             origin_margin=0.12, leaf_yield=leaf_yield,
                         start_look=0.0)  # the looks at the dwell (start_look: its own tests)
        node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=0.0)
        node.add_peer(p, 0.0, rtt=0.1)
        node.on_message(p, _status(sid.key, [tb, peer_tag(p)], p_lag, 8), 0.0)
        node.on_message(p, wire.SubscribeAck(stream=sid.key, accepted=1, rejected=0), 0.1)
        node.add_peer(r, 0.2, rtt=0.1)
        node.on_message(r, _status(sid.key, [tb, peer_tag(r)], 20, 8), 0.2)  # 0.10 s: far faster
        node.actions()
        asked = _looks(node, 0.2, 0.1 + cfg.switch_dwell + 2 * cfg.status_interval)
        assert (r in asked) == climbs, (leaf_yield, p_lag)
        assert node.counters.leaf_yields == 0
