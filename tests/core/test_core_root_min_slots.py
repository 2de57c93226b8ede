"""``root_min_slots`` (off by default): a viewer that can feed fewer children than that (its
substream slots, from its upload cap) does not ask the broadcaster for a substream while another
neighbour is a candidate, so the broadcaster's few slots go to viewers that feed more children.
Alone with the broadcaster it still asks it; a strong viewer asks it as before."""

from __future__ import annotations

import random

from swarmnet import subscribes as _subscribes

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId


def _status(skey: bytes, path: list[bytes], lag: int, slots: int) -> wire.Status:
    return wire.Status(stream=skey, latest=40, have=0, keyframe=40, slots=slots,
                       paths=[path], lags=[lag])


def _newcomer(root_min_slots: int, upload_kbps: int, *, relay: bool = True) -> tuple[sw.Swarm, dict[bytes, int],
                                                                                     bytes, bytes]:
    """A newcomer on one substream (1.5 Mbit/s) hears the broadcaster (10 free slots) and,
    with ``relay``, a relay one hop below it (100 ms lag); returns its SUBSCRIBEs."""
    rng = random.Random(9)
    b, r, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(3))
    sid = StreamId(b, "t")
    cfg = sw.SwarmConfig(first_wait=0.25, start_look=0.0, chunk_ms=100, upload_kbps=upload_kbps, substreams=1,
                         playout_delay=0.5, root_min_slots=root_min_slots)
    node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=0.0)
    tb = peer_tag(b)
    node.add_peer(b, 0.0, is_broadcaster=True, rtt=0.1)
    node.on_message(b, _status(sid.key, [tb], 0, 10), 0.0)
    if relay:
        node.add_peer(r, 0.0, rtt=0.1)
        node.on_message(r, _status(sid.key, [tb, peer_tag(r)], 100, 8), 0.05)
    assert not _subscribes(node)
    node.handle_timer(0.3)
    return node, _subscribes(node), b, r


def test_a_viewer_with_few_slots_leaves_the_broadcaster_to_others() -> None:
    node, asked, b, r = _newcomer(3, 3000)  # 0.8 x 3,000 / 1,500: one slot
    assert node.total_slots() == 1
    assert asked == {r: 1}
    assert node.counters.root_left_to_stronger >= 1


def test_a_strong_viewer_or_one_alone_with_the_broadcaster_asks_it_and_off_nothing_changes() -> None:
    node, asked, b, r = _newcomer(3, 12000)  # six slots
    assert asked == {b: 1} and node.counters.root_left_to_stronger == 0
    node, asked, b, r = _newcomer(3, 3000, relay=False)  # nobody else: the broadcaster
    assert asked == {b: 1}
    node, asked, b, r = _newcomer(0, 3000)
    assert asked == {b: 1} and node.counters.root_left_to_stronger == 0
    assert sw.SwarmConfig().root_min_slots == 0
