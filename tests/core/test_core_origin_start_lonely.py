"""``origin_start_lonely`` (issue 10, h-nat10): a viewer with no neighbour in the stream that
long after its join asks the origin for its start then, instead of at ``origin_start_after``.

Behind NATs a newcomer's first dials may all go to peers that cannot answer; with no JOIN
answered no peer can be sending it a start, and waiting out ``origin_start_after`` (1 s)
costs the chunks made in its first half second (their deadlines pass before the first
frame). A viewer with a neighbour waits as before: a start may be on its way."""

from __future__ import annotations

import dataclasses

from swarmnet import SwarmNet

from oasis.core import swarm as sw
from oasis.core.identity import Identity

CFG = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, origin_start_after=0.5)  # (lonely: 0.4 < 0.5)


class _Net(SwarmNet):
    """Records when each node asked the origin for a start."""

    def __init__(self, *args, **kw) -> None:
        self.start_asked: dict[bytes, list[float]] = {}
        super().__init__(*args, **kw)

    def fetch_origin(self, key: bytes, a: sw.FetchOrigin) -> None:
        if a.seq == sw.ORIGIN_LATEST:
            self.start_asked.setdefault(key, []).append(self.now)
        super().fetch_origin(key, a)


def _net(lonely: float) -> tuple[_Net, bytes, bytes]:
    """A broadcaster making 100 ms chunks for 3 s; then a viewer ``mute`` with no neighbour
    and ``lone`` with none, 0.2 s apart (``mute`` cannot start anyone: it has nothing)."""
    cfg = dataclasses.replace(CFG, origin_start_lonely=lonely)
    net = _Net(0, seed=7, config=cfg, source_config=CFG)
    net.run_until(net.now + 3.0, produce_every=0.1)
    lone = Identity.from_private_bytes(bytes([5]) * 32).public
    mute = Identity.from_private_bytes(bytes([6]) * 32).public
    return net, lone, mute


def test_a_viewer_with_no_neighbour_asks_the_origin_at_origin_start_lonely() -> None:
    net, lone, _mute = _net(0.4)
    joined = net.now
    net.join(lone, [])
    net.run_until(joined + 0.35, produce_every=0.1)
    assert lone not in net.start_asked
    net.run_until(joined + 2.0, produce_every=0.1)
    node = net.nodes[lone]
    assert net.start_asked[lone] == [joined + 0.4]  # once: it started from that answer
    assert node.counters.origin_starts == 1 and node.counters.origin_lonely_starts == 1
    assert node.start_seq is not None
    first = min(t for t, src in net.delivered[lone].values() if src == "origin")
    assert first - joined < 0.5


def test_a_viewer_with_a_neighbour_waits_for_origin_start_after() -> None:
    net, lone, mute = _net(0.4)
    net.join(mute, [])
    joined = net.now
    net.join(lone, [mute])  # a neighbour, with nothing to give: no start from it
    net.run_until(joined + 2.0, produce_every=0.1)
    node = net.nodes[lone]
    assert net.start_asked[lone] == [joined + CFG.origin_start_after]
    assert node.counters.origin_lonely_starts == 0 and node.start_seq is not None


def test_off_a_lonely_viewer_waits_for_origin_start_after() -> None:
    net, lone, _mute = _net(0.0)
    joined = net.now
    net.join(lone, [])
    net.run_until(joined + 2.0, produce_every=0.1)
    assert net.start_asked[lone] == [joined + CFG.origin_start_after]
    assert net.nodes[lone].counters.origin_lonely_starts == 0
