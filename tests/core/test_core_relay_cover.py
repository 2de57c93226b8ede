"""``relay_cover`` (on by default, ``relay_cover_hop`` 0.02 s): a relay that feeds at least ``relay_early_children``
children on a substream asks the origin for a chunk of it still missing at the last moment its
copy can reach them before their own fallback, even where its substream is not late.

A chunk lost above a relay is missing in its whole subtree: without the switch the relay
and every child fall back to the origin at the same moment (the chunk's time + playout -
``origin_margin``), and the relay's copy comes too late to spare its children theirs."""

from __future__ import annotations

from repairbench import relay_under

from oasis.core import repair as rp
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.stream import sign_chunk

LOST = 40  # substream 0 (4 substreams): its push never comes


def _first_fetch(children: int, lag: float = 0.1, kid_rtt: float = 0.02,
                 **config: object) -> tuple[float, sw.Swarm]:
    """A relay (playout 0.5 s, 100 ms chunks) whose parent pushes every chunk ``lag`` after its
    time (not late) but chunk LOST, with ``children`` children on substream 0: how long after
    LOST's time the relay first asks the origin for it."""
    r = relay_under(children, int(lag * 1000) - 20, kid_rtt=kid_rtt, **config)
    node, bid, sid, par, kids, k = r.node, r.bid, r.sid, r.par, r.kids, 4
    for kid in kids:
        node.on_message(kid, wire.Subscribe(stream=sid.key, mask=1, substreams=k), 0.5)
    pushes = {seq: 1.0 + seq * 0.1 + lag for seq in range(60) if seq != LOST}
    now = 1.0
    while now < 1.0 + LOST * 0.1 + 0.5:
        due = node.get_timer()
        nxt = min([p for p in pushes.values() if p > now] + [now + 0.01] + ([due] if due is not None and due > now else []))
        now = nxt
        for seq in [s for s, p in pushes.items() if p <= now]:
            del pushes[seq]
            node.on_chunk(par, sign_chunk(bid, sid, seq, int((1.0 + seq * 0.1) * 1e6), seq % 20 == 0, b"x"), now)
        if due is not None and due <= now:
            node.handle_timer(now)
        for a in node.actions():
            if isinstance(a, sw.FetchOrigin) and a.seq == LOST:
                return now - (1.0 + LOST * 0.1), node
    raise AssertionError("no origin fetch")


def test_a_relay_covers_its_children_before_their_fallback() -> None:
    at, node = _first_fetch(2, relay_cover=True, relay_cover_hop=rp.RELAY_HOP)
    fallback = node.delay.origin_at  # 0.38: the children's own fallback (and ours without it)
    # our copy must reach the children (a hop, RELAY_HOP) before their fallback, with the
    # fetch's time (no sample yet: the floor)
    assert at <= fallback - rp.RELAY_HOP - rp.ORIGIN_FLOOR + 0.011
    assert at >= fallback - rp.RELAY_HOP - rp.ORIGIN_FLOOR - 0.011
    assert node.counters.origin_cover == 1
    assert node.counters.origin_early == 0  # (not the late relay's early fetch)


def test_without_the_switch_or_with_too_few_children_the_fetch_is_at_the_fallback() -> None:
    at, node = _first_fetch(2, relay_cover=False)
    assert at >= node.delay.origin_at - 0.001
    assert node.counters.origin_cover == 0
    at, node = _first_fetch(1, relay_cover=True)  # relay_early_children = 2
    assert at >= node.delay.origin_at - 0.001
    assert node.counters.origin_cover == 0
    at, node = _first_fetch(1, relay_cover=True, relay_early_children=1)
    assert at < node.delay.origin_at - rp.RELAY_HOP
    assert sw.SwarmConfig().relay_cover is True


def test_with_overdue_the_cover_waits_for_a_chunk_our_parent_is_late_with() -> None:
    """``relay_cover_overdue``: a relay whose parent usually pushes 0.27 s after a chunk's time
    (after the cover's moment) does not fetch then: a chunk missing at 0.28 s is on its way.
    Where the usual push comes well before (0.1 s), the cover fetches as without it."""
    at, node = _first_fetch(2, lag=0.27, relay_cover=True, relay_cover_hop=rp.RELAY_HOP)
    assert at < node.delay.origin_at - rp.RELAY_HOP  # (without ``overdue``: the cover)
    assert node.counters.origin_cover == 1
    at, node = _first_fetch(2, lag=0.27, relay_cover=True, relay_cover_hop=rp.RELAY_HOP,
                            relay_cover_overdue=True)
    assert at >= node.delay.origin_at - 0.001
    assert node.counters.origin_cover == 0
    at, node = _first_fetch(2, lag=0.1, relay_cover=True, relay_cover_overdue=True)
    assert at < node.delay.origin_at - rp.RELAY_HOP
    assert node.counters.origin_cover == 1
    assert sw.SwarmConfig().relay_cover_overdue is False


def test_the_cover_leaves_relay_cover_hop_for_the_children() -> None:
    """The cover comes ``relay_cover_hop`` + the fetch time before the children's fallback."""
    for hop in (0.02, 0.1):
        at, node = _first_fetch(2, relay_cover=True, relay_cover_hop=hop)
        want = node.delay.origin_at - hop - rp.ORIGIN_FLOOR
        assert want - 0.011 <= at <= want + 0.011
    assert sw.SwarmConfig().relay_cover_hop == 0.02


def test_relay_cover_children_sets_the_cover_threshold_apart_from_the_early_fetch() -> None:
    """``relay_cover_children`` 1: a relay with one child on the substream covers too (a chunk
    lost above it otherwise costs two fetches at the fallback, its own and its child's), while
    ``relay_early_children`` (2) still rules the late relay's early fetch; 0 (the default)
    follows ``relay_early_children``."""
    at, node = _first_fetch(1, relay_cover=True, relay_cover_children=1)
    want = node.delay.origin_at - node.config.relay_cover_hop - rp.ORIGIN_FLOOR
    assert want - 0.011 <= at <= want + 0.011
    assert node.counters.origin_cover == 1
    assert node.config.relay_early_children == 2
    at, node = _first_fetch(1, relay_cover=True, relay_cover_children=0)
    assert at >= node.delay.origin_at - 0.001
    assert node.counters.origin_cover == 0
    at, node = _first_fetch(2, relay_cover=True, relay_cover_children=3)
    assert at >= node.delay.origin_at - 0.001
    assert sw.SwarmConfig().relay_cover_children == 0
