"""``depth_weight`` (off by default): a candidate parent costs ``depth_weight`` per level
beyond ``DEPTH_FREE`` that taking it would put us at, so a newcomer prefers a shallower
parent over a deep one a little faster on paper."""

from __future__ import annotations

from newcomer import two_candidates
from swarmnet import subscribes as _subscribes

from oasis.core import swarm as sw
from oasis.core import tree, wire
from oasis.core.identity import Identity, peer_tag


def _status(skey: bytes, path: list[bytes], lag: int) -> wire.Status:
    return wire.Status(stream=skey, latest=40, have=0, keyframe=40, slots=8, paths=[path], lags=[lag])


def _newcomer(depth_weight: float, *, deep_relays: int = 4) -> tuple[dict[bytes, int], bytes, bytes]:
    """A newcomer on one substream hears ``deep`` (40 ms lag, ``deep_relays`` relays above it:
    we would sit at depth ``deep_relays`` + 2) and ``shallow`` (140 ms lag, one relay above
    it: depth 3), both 50 ms away; with the hop penalty the deep one is ~10 ms faster on
    paper at four relays. Returns its SUBSCRIBEs."""
    node, sid, tb, deep, shallow, rng = two_candidates(7, depth_weight=depth_weight)
    relays = [peer_tag(Identity.from_private_bytes(rng.randbytes(32)).public) for _ in range(deep_relays)]
    node.on_message(shallow, _status(sid.key, [tb, relays[0], peer_tag(shallow)], 140 - 30 * (4 - deep_relays)), 0.0)
    node.on_message(deep, _status(sid.key, [tb, *relays, peer_tag(deep)], 40), 0.05)
    assert not _subscribes(node)  # (both heard within the newcomer's first wait)
    node.handle_timer(0.3)
    return _subscribes(node), deep, shallow


def test_a_newcomer_prefers_a_shallower_parent_over_a_deep_one_a_little_faster() -> None:
    assert tree.DEPTH_FREE == 4
    asked, deep, shallow = _newcomer(0.03)
    assert asked == {shallow: 1}


def test_off_or_within_the_free_depth_the_faster_one_is_asked() -> None:
    assert sw.SwarmConfig().depth_weight == 0.0
    asked, deep, shallow = _newcomer(0.0)
    assert asked == {deep: 1}
    # two relays above the deep one: we would sit at depth 4, free of charge
    asked, deep, shallow = _newcomer(0.03, deep_relays=2)
    assert asked == {deep: 1}
