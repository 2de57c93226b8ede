"""``slot_weight`` (off by default): a candidate parent costs ``slot_weight / max(slots, 1)``
over the free slots its STATUS shows, so a newcomer prefers a parent with room over a nearly
full hub a little faster on paper. Our own parent on the substream and the broadcaster are not
charged."""

from __future__ import annotations

from newcomer import two_candidates
from swarmnet import subscribes as _subscribes

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import peer_tag


def _status(skey: bytes, path: list[bytes], lag: int, slots: int) -> wire.Status:
    return wire.Status(stream=skey, latest=40, have=0, keyframe=40, slots=slots,
                       paths=[path], lags=[lag])


def _newcomer(slot_weight: float, *, hub_slots: int = 1) -> tuple[dict[bytes, int], bytes, bytes]:
    """A newcomer on one substream hears ``hub`` (100 ms lag, ``hub_slots`` free) and ``room``
    (110 ms lag, 8 free), both one relay deep and 50 ms away; returns its SUBSCRIBEs."""
    node, sid, tb, hub, room, _ = two_candidates(5, slot_weight=slot_weight)
    # (both heard within the newcomer's first wait)
    node.on_message(room, _status(sid.key, [tb, peer_tag(room)], 110, 8), 0.0)
    node.on_message(hub, _status(sid.key, [tb, peer_tag(hub)], 100, hub_slots), 0.05)
    asked = _subscribes(node)
    assert not asked
    node.handle_timer(0.3)
    asked = _subscribes(node)
    return asked, hub, room


def test_a_newcomer_prefers_a_parent_with_room_over_a_nearly_full_one() -> None:
    asked, hub, room = _newcomer(0.03)
    assert asked == {room: 1}


def test_off_or_with_room_at_both_the_faster_one_is_asked() -> None:
    asked, hub, room = _newcomer(0.0)
    assert asked == {hub: 1}
    assert sw.SwarmConfig().slot_weight == 0.0
    # 8 free slots at the faster one too: 0.03 / 8 is less than the 10 ms it gains
    asked, hub, room = _newcomer(0.03, hub_slots=8)
    assert asked == {hub: 1}
