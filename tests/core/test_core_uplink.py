"""The uplink probe: a relay's upload cap raised while its children's hop delay stays low,
cut back when it grows (oasis.core.uplink; SwarmConfig.upload_max_kbps; docs/oftp.md §9.7)."""

from __future__ import annotations

import random

import pytest

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId
from oasis.core.uplink import DELIVERED_SHARE, EARLY_DROPS, EARLY_MIN_S, MIN_SAMPLES, UplinkProbe
from oasis.core.upload import UploadScheduler

K = 4
BITRATE = 1000
FLOOR = 2500  #: 8 slots of 4 substreams at 0.8 headroom
MOST = 6000


def _probe(**kw: float) -> UplinkProbe:
    return UplinkProbe(FLOOR, MOST, BITRATE, interval=2.0, quiet=0.04, busy=0.08, now=0.0, **kw)


def test_the_cap_rises_one_bitrate_while_full_and_quiet_up_to_the_most() -> None:
    p = _probe()
    caps = []
    for i in range(6):
        for c, q in enumerate((0.0, 0.01, 0.03)):
            p.sample(bytes([c]), q)
        caps.append(p.decide(2.0 * (i + 1), full=True))
    assert caps == [3500, 4500, 5500, 6000, 6000, 6000]
    assert p.next_at == 12.0 + 2.0


def test_the_cap_stays_with_free_slots_a_middling_delay_or_too_few_samples() -> None:
    p = _probe()
    for c, q in enumerate((0.0, 0.0, 0.0)):
        p.sample(bytes([c]), q)
    assert p.decide(2.0, full=False) == FLOOR  # nobody waits for more slots
    for c, q in enumerate((0.05, 0.06, 0.07)):
        p.sample(bytes([c]), q)
    assert p.decide(4.0, full=True) == FLOOR  # between quiet and busy
    for c in range(MIN_SAMPLES - 1):
        p.sample(bytes([c]), 0.0)
    assert p.decide(6.0, full=True) == FLOOR  # too few to judge
    for _ in range(50):
        p.sample(b"x", 0.0)  # one child's fifty STATUS are one voice
    assert p.decide(8.0, full=True) == FLOOR
    assert p.samples == {}  # each interval judged on its own samples


def test_a_busy_median_cuts_half_way_to_the_floor_never_below() -> None:
    p = _probe()
    p.kbps = 5500
    for c, q in enumerate((0.1, 0.2, 0.09, 0.0)):
        p.sample(bytes([c]), q)
    assert p.decide(2.0, full=True) == 4000
    for c, q in enumerate((0.1, 0.2, 0.3)):
        p.sample(bytes([c]), q)
    assert p.decide(4.0, full=True) == 3250
    p.kbps = FLOOR
    for c, q in enumerate((0.5, 0.5, 0.5)):
        p.sample(bytes([c]), q)
    assert p.decide(6.0, full=True) == FLOOR


def test_below_its_start_the_cap_falls_half_way_to_the_floor_and_rises_back() -> None:
    p = UplinkProbe(FLOOR, MOST, BITRATE, interval=2.0, quiet=0.04, busy=0.08, now=0.0, floor_kbps=1000)
    busy = (0.1, 0.2, 0.3)
    caps = []
    for i in range(6):
        for c, q in enumerate(busy):
            p.sample(bytes([c]), q)
        caps.append(p.decide(2.0 * (i + 1), full=True))
    assert caps == [1750, 1375, 1187, 1093, 1046, 1023]  # never below the floor
    for c, q in enumerate((0.0, 0.0, 0.0)):
        p.sample(bytes([c]), q)
    assert p.decide(14.0, full=True) == 2023  # quiet and full: one bitrate up, past the start too
    p.kbps = 5500
    for c, q in enumerate(busy):
        p.sample(bytes([c]), q)
    assert p.decide(16.0, full=True) == 4000  # from above the start: half-way back to it
    with pytest.raises(ValueError):  # a floor above the start
        UplinkProbe(FLOOR, MOST, BITRATE, interval=2.0, quiet=0.04, busy=0.08, now=0.0, floor_kbps=FLOOR + 1)


def test_a_dropped_copy_is_its_childs_vote_for_busy_whatever_its_status_says() -> None:
    p = UplinkProbe(FLOOR, MOST, BITRATE, interval=2.0, quiet=0.04, busy=0.08, now=0.0, floor_kbps=1000)
    p.dropped(b"a")
    p.dropped(b"b")
    for c in (b"a", b"b", b"c"):  # the copies a child got in time say nothing of the others
        p.sample(c, 0.0)
    # two of three: the uplink does not carry the start at all: straight to the floor
    assert p.decide(2.0, full=True) == 1000
    p.dropped(b"a")
    for c in (b"a", b"b", b"c"):
        p.sample(c, 0.0)
    assert p.decide(4.0, full=True) == 2000  # one of three: the others are quiet (and full)
    for c, q in enumerate((0.1, 0.2, 0.3)):
        p.sample(bytes([c]), q)
    assert p.decide(6.0, full=True) == 1500  # late but nothing dropped: half-way to the floor
    p.kbps = FLOOR + 3 * BITRATE
    p.dropped(b"a")
    p.dropped(b"b")
    p.sample(b"c", 0.0)
    assert p.decide(8.0, full=True) == FLOOR + 3 * BITRATE // 2  # above the start: half-way back to it
    p.dropped(b"a")
    p.sample(b"b", 0.0)
    assert p.decide(10.0, full=True) == FLOOR + 3 * BITRATE // 2  # one of two: no majority, too few to judge
    p.kbps = FLOOR
    p.dropped(b"a")
    assert p.decide(12.0, full=True) == 1000  # a lone child, every copy dropped: fewer than MIN_SAMPLES will do
    p.kbps = FLOOR
    for i in range(10_000):
        p.dropped(i.to_bytes(2, "big"))
    assert len(p.samples) <= 256 and len(p.drops) <= 256
    assert p.decide(14.0, full=True) == 1000


def test_samples_are_bounded_and_bad_settings_refused() -> None:
    p = _probe()
    for i in range(10_000):
        p.sample(i.to_bytes(2, "big"), 0.0)
    assert len(p.samples) <= 256
    with pytest.raises(ValueError):
        UplinkProbe(FLOOR, FLOOR - 1, BITRATE, interval=2.0, quiet=0.04, busy=0.08, now=0.0)
    with pytest.raises(ValueError):
        UplinkProbe(FLOOR, MOST, BITRATE, interval=2.0, quiet=0.09, busy=0.08, now=0.0)
    with pytest.raises(ValueError):
        UplinkProbe(FLOOR, MOST, 0, interval=2.0, quiet=0.04, busy=0.08, now=0.0)


def test_a_new_rate_refills_at_the_old_rate_until_then() -> None:
    up = UploadScheduler(8000, 0.0)  # 1 MB/s, depth 250 kB
    up.tokens = 0.0
    up.set_rate(16000, 0.1)  # 0.1 s at 1 MB/s, then 2 MB/s
    assert up.tokens == pytest.approx(100_000)
    assert up.rate == 2_000_000 and up.depth == 500_000
    up.set_rate(800, 0.2)  # the depth shrinks; the tokens with it
    assert up.depth == 64 * 1024 and up.tokens == up.depth


# ---- in the swarm: a broadcaster's children say their lags in their STATUS ----------------

def _source(max_kbps: int = MOST) -> tuple[sw.Swarm, StreamId, list[bytes]]:
    rng = random.Random(5)
    b = Identity.from_private_bytes(rng.randbytes(32)).public
    kids = [Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(12)]
    sid = StreamId(b, "t")
    cfg = sw.SwarmConfig(chunk_ms=100, substreams=K, bitrate_kbps=BITRATE, upload_kbps=FLOOR,
                         upload_max_kbps=max_kbps)
    node = sw.Swarm(sid, b, cfg, is_source=True, rng=random.Random(1), now=0.0)
    node.handle_timer(0.0)
    node.actions()
    return node, sid, kids


def _adopt(node: sw.Swarm, sid: StreamId, kids: list[bytes], now: float) -> None:
    for i, c in enumerate(kids):
        node.add_peer(c, now, rtt=0.02)
        node.on_message(c, wire.Subscribe(stream=sid.key, mask=1 << (i % K), substreams=K), now)
    node.actions()


def _lags(node: sw.Swarm, sid: StreamId, kids: list[bytes], lag_ms, now: float, *,
          via_us: bool = True) -> None:
    """Each child's STATUS: ``lag_ms(i)`` on the substream it has from us."""
    tb = peer_tag(sid.broadcaster)
    other = peer_tag(b"\x07" * 32)
    for i, c in enumerate(kids):
        j = i % K
        paths: list[list[bytes]] = [[] for _ in range(K)]
        paths[j] = [tb, peer_tag(c)] if via_us else [tb, other, peer_tag(c)]
        lags = [wire.LAG_UNKNOWN] * K
        lags[j] = lag_ms(i)
        node.on_message(c, wire.Status(stream=sid.key, latest=10, have=0, keyframe=0, slots=0,
                                       paths=paths, lags=lags), now)
    node.actions()


def _tick(node: sw.Swarm, now: float) -> list[int]:
    """The periodic STATUS at ``now``: the slots it advertises."""
    node.handle_timer(now)
    return [a.message.slots for a in node.actions()
            if isinstance(a, sw.Send) and isinstance(a.message, wire.Status)]


def test_a_full_relay_whose_children_keep_their_pace_offers_more_and_says_so() -> None:
    node, sid, kids = _source()
    _adopt(node, sid, kids[:8], 0.1)
    assert node.free_slots() == 0 and node.upload_kbps == FLOOR
    _lags(node, sid, kids[:8], lambda i: 30 + i, 0.5)
    _lags(node, sid, kids[:8], lambda i: 35 + i, 1.5)
    slots = _tick(node, 2.0)
    assert node.upload_kbps == FLOOR + BITRATE and node.counters.upload_raised == 1
    assert node.upload.rate == (FLOOR + BITRATE) * 1000 / 8
    assert node.total_slots() == 11 and slots and set(slots) == {3}  # told at once
    # the new slots taken, the children's hop delay grows past probe_busy: half-way back
    _adopt(node, sid, kids[8:11], 2.1)
    _lags(node, sid, kids[:11], lambda i: 150, 3.0)
    _lags(node, sid, kids[:11], lambda i: 160, 3.5)
    _tick(node, 4.0)
    assert node.upload_kbps == FLOOR and node.counters.upload_cut == 1  # (half-way is within a step)
    assert node.free_slots() == 0  # no child is shed: the late ones move by themselves


def _floored_source(n: int) -> tuple[sw.Swarm, StreamId, bytes, list[bytes]]:
    """A broadcaster probing from FLOOR (its start) down to 1000 and up to MOST, and ``n``
    peers to be its children."""
    rng = random.Random(5)
    b = Identity.from_private_bytes(rng.randbytes(32)).public
    kids = [Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(n)]
    sid = StreamId(b, "t")
    cfg = sw.SwarmConfig(chunk_ms=100, substreams=K, bitrate_kbps=BITRATE, upload_kbps=FLOOR,
                         upload_max_kbps=MOST, upload_min_kbps=1000)
    node = sw.Swarm(sid, b, cfg, is_source=True, rng=random.Random(1), now=0.0)
    node.handle_timer(0.0)
    node.actions()
    return node, sid, b, kids


def test_copies_the_transport_dropped_cut_the_cap_below_its_start() -> None:
    """An uplink that carries less than the default: the children's STATUS say nothing (the
    copies that came in time came at the usual pace), the copies dropped unsent at their
    deadline do (``on_push_dropped``, where they had more than ``probe_busy`` to go when
    sent): the cap falls towards ``upload_min_kbps``; a peer not our child, or copies that
    reached us too late to make their deadline, are counted and move nothing."""
    node, sid, b, kids = _floored_source(9)
    _adopt(node, sid, kids[:8], 0.1)
    stranger = kids[8]
    node.add_peer(stranger, 0.1, rtt=0.02)
    for _ in range(5):
        node.on_push_dropped(stranger, 0.6, 0.3)
    _lags(node, sid, kids[:8], lambda i: 30, 0.5)
    _tick(node, 2.0)
    assert node.counters.pushes_dropped == 5 and node.upload_kbps == FLOOR + BITRATE  # quiet, full
    for c in kids[:8]:  # copies sent with less than probe_busy to go: late to us, not our queue
        node.on_push_dropped(c, 2.1, 0.05)
    _lags(node, sid, kids[:8], lambda i: 30, 2.2)
    _tick(node, 4.0)
    assert node.counters.pushes_dropped == 13 and node.counters.upload_raised == 2
    for t in (4.5, 6.5, 8.5):
        for c in kids[:5]:
            node.on_push_dropped(c, t, 0.3)
        _lags(node, sid, kids[:8], lambda i: 30, t + 0.2)
        _tick(node, t + 1.5)
    # 4500 -> 3500 -> the start (half-way is within a step of it) -> most children had
    # copies dropped there: the floor
    assert node.counters.upload_cut == 3 and node.upload_kbps == 1000
    assert node.upload.rate == node.upload_kbps * 1000 / 8
    fixed = sw.Swarm(sid, b, sw.SwarmConfig(chunk_ms=100, substreams=K, bitrate_kbps=BITRATE,
                                            upload_kbps=FLOOR, upload_min_kbps=1000),
                     is_source=True, rng=random.Random(1), now=0.0)
    _adopt(fixed, sid, kids[:8], 0.1)
    for c in kids[:8]:
        fixed.on_push_dropped(c, 0.5, 0.3)
    _tick(fixed, 2.0)
    assert fixed.uplink is None and fixed.upload_kbps == FLOOR  # the user's cap: fixed


def test_lags_through_another_parent_or_a_fixed_cap_move_nothing() -> None:
    node, sid, kids = _source()
    _adopt(node, sid, kids[:8], 0.1)
    # its STATUS path says another relay feeds it (a swap under way): not our hop
    _lags(node, sid, kids[:8], lambda i: 500, 0.5, via_us=False)
    _lags(node, sid, kids[:8], lambda i: 500, 1.5, via_us=False)
    _tick(node, 2.0)
    assert node.upload_kbps == FLOOR and node.uplink is not None and node.uplink.last_median == -1.0
    fixed, sid2, kids2 = _source(max_kbps=0)
    assert fixed.uplink is None
    _adopt(fixed, sid2, kids2[:8], 0.1)
    _lags(fixed, sid2, kids2[:8], lambda i: 30, 0.5)
    _tick(fixed, 2.0)
    assert fixed.upload_kbps == FLOOR and fixed.counters.upload_raised == 0


def test_a_lying_child_moves_the_cap_neither_way() -> None:
    """One child's STATUS is its own word: a median over the children outvotes it (and the
    cap stays within the floor and the most whatever they say)."""
    node, sid, kids = _source()
    _adopt(node, sid, kids[:8], 0.1)
    # a liar claims its chunks come ever later: the seven honest ones keep their pace
    for t, base in ((0.5, 30), (1.5, 31), (2.5, 30), (3.5, 32)):
        _lags(node, sid, kids[:8], lambda i, base=base, t=t: 9000 if i == 0 and t > 1 else base, t)
        if t in (1.5, 3.5):
            _tick(node, t + 0.5)
    assert node.upload_kbps == FLOOR + 2 * BITRATE and node.counters.upload_cut == 0
    # now the honest ones are late and a liar says its chunks come ever sooner: no raise
    node2, sid2, kids2 = _source()
    _adopt(node2, sid2, kids2[:8], 0.1)
    _lags(node2, sid2, kids2[:8], lambda i: 30, 0.5)
    _lags(node2, sid2, kids2[:8], lambda i: 1 if i == 0 else 200, 1.0)
    _lags(node2, sid2, kids2[:8], lambda i: 1 if i == 0 else 200, 1.5)
    _tick(node2, 2.0)
    assert node2.upload_kbps == FLOOR and node2.counters.upload_raised == 0
    # ... and saying so in a flood of STATUS (one vote, however many it sends)
    liar = kids2[0]
    tb = peer_tag(sid2.broadcaster)
    for n in range(200):
        node2.on_message(liar, wire.Status(stream=sid2.key, latest=10, have=0, keyframe=0, slots=0,
                                           paths=[[tb, peer_tag(liar)], [], [], []],
                                           lags=[1, wire.LAG_UNKNOWN, wire.LAG_UNKNOWN, wire.LAG_UNKNOWN]),
                         2.1 + n * 0.005)
    _lags(node2, sid2, kids2[:8], lambda i: 1 if i == 0 else 200, 3.5)
    assert len(node2.uplink.samples) == 8
    _tick(node2, 4.0)
    assert node2.upload_kbps == FLOOR and node2.counters.upload_raised == 0


def test_a_far_child_or_a_clock_offset_is_no_queue() -> None:
    """A child across an ocean (a constant 250-320 ms hop), or whose clock is off by as
    much, is judged against its own lowest hop delay: only what our relaying adds counts."""
    node, sid, kids = _source()
    _adopt(node, sid, kids[:8], 0.1)
    _lags(node, sid, kids[:8], lambda i: 250 + 10 * i, 0.5)
    _lags(node, sid, kids[:8], lambda i: 255 + 10 * i, 1.5)
    _tick(node, 2.0)
    assert node.upload_kbps == FLOOR + BITRATE and node.counters.upload_cut == 0


def test_a_relay_judges_its_own_hop_not_the_delay_above_it() -> None:
    """A viewer relaying: its children's lags less its own. Its parent slowing by 200 ms makes
    every child 200 ms later, and that is not its uplink's doing."""
    rng = random.Random(9)
    b, p, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(3))
    kids = [Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(8)]
    sid = StreamId(b, "t")
    cfg = sw.SwarmConfig(first_wait=0.0, chunk_ms=100, substreams=K, bitrate_kbps=BITRATE,
                         upload_kbps=FLOOR, upload_max_kbps=MOST)
    node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=0.0)
    node.handle_timer(0.0)
    tb, tp, tme = peer_tag(b), peer_tag(p), peer_tag(me)
    node.add_peer(p, 0.0, rtt=0.02)
    node.on_message(p, wire.Status(stream=sid.key, latest=10, have=0, keyframe=0, slots=8,
                                   paths=[[tb, tp]] * K, lags=[50] * K), 0.0)
    node.on_message(p, wire.SubscribeAck(stream=sid.key, accepted=(1 << K) - 1, rejected=0), 0.05)
    assert all(q == p for q in node.parents)
    _adopt(node, sid, kids, 0.1)
    assert node.free_slots() == 0

    def round_(own_ms: int, now: float) -> None:
        for j in range(K):
            node.delay.lag[j], node.delay.known[j] = own_ms / 1000, True
        for i, c in enumerate(kids):
            j = i % K
            paths: list[list[bytes]] = [[] for _ in range(K)]
            paths[j] = [tb, tp, tme, peer_tag(c)]
            lags = [wire.LAG_UNKNOWN] * K
            lags[j] = own_ms + 20 + i
            node.on_message(c, wire.Status(stream=sid.key, latest=10, have=0, keyframe=0, slots=0,
                                           paths=paths, lags=lags), now)
        node.actions()

    round_(100, 0.5)
    round_(300, 1.5)
    _tick(node, 2.0)
    assert node.upload_kbps == FLOOR + BITRATE and node.counters.upload_cut == 0


def _unsubs(acts: list) -> dict[bytes, int]:
    return {a.peer: a.message.mask for a in acts
            if isinstance(a, sw.Send) and isinstance(a.message, wire.Unsubscribe)}


def test_a_cut_sheds_the_children_past_the_slots_left_those_with_drops_first() -> None:
    """A cut that leaves fewer slots than the children take ends the substreams past them
    (UNSUBSCRIBE to the child): the relay's uplink would drop their copies, and a shed
    child asks another parent at once, where one it kept starves until it gives up on
    us. The children that had copies dropped go first."""
    node, sid, _, kids = _floored_source(8)
    _adopt(node, sid, kids, 0.1)
    assert node.free_slots() == 0
    # three children had copies dropped (too soon after the start for a decision at once),
    # four say their hop grew: at the interval's end a busy median, not a majority of drops
    for c in kids[4:7]:
        node.on_push_dropped(c, 0.3, 0.3)
    _lags(node, sid, kids[:4], lambda i: 30, 0.5)
    _lags(node, sid, kids[:4], lambda i: 200, 1.0)
    node.handle_timer(2.0)
    acts = node.actions()
    # busy median at the start: half-way to the floor (1750: 2 slots of the 8 taken)
    assert node.upload_kbps == 1750 and node.total_slots() == 5
    shed = _unsubs(acts)
    assert node.counters.children_shed == 3 and sum(bin(m).count("1") for m in shed.values()) == 3
    assert set(shed) == set(kids[4:7]), "the children whose copies were dropped go first"
    assert all(not node.peers[c].children_mask for c in shed) and node.free_slots() == 0
    # a cut that leaves room for every child sheds none; nor does a rise
    node.tree.cap_kbps = node.uplink.kbps = 6000
    _lags(node, sid, [k for k in kids if k not in shed], lambda i: 200, 2.5)
    node.handle_timer(4.0)
    assert node.upload_kbps < 6000 and not _unsubs(node.actions()) and node.counters.children_shed == 3


def test_drops_from_most_children_cut_at_once_to_a_share_of_what_the_uplink_delivered() -> None:
    """Where most children had copies dropped at or below the start, the uplink does not
    carry it: the cap goes to ``DELIVERED_SHARE`` of the rate it delivered since the last
    decision (bytes released less bytes dropped), and at once once ``EARLY_DROPS`` children
    did, not at the interval's end; never below the floor; the floor where the rate is
    not known (the first decision)."""
    start = 16_000

    def probe() -> UplinkProbe:
        return UplinkProbe(start, 32_000, 4000, interval=2.0, quiet=0.04, busy=0.08, now=0.0,
                           floor_kbps=4000)

    p = probe()
    for c in (b"a", b"b", b"c"):
        p.sample(c, 0.0)
    assert p.decide(2.0, full=False, released=1_000_000) == start  # quiet, room left: stays
    kids = [bytes([i]) for i in range(EARLY_DROPS)]
    p.sample(b"quiet", 0.0)  # one more child heard, with no drop
    # 2.5 MB released over the next second, 1 MB of it dropped: 12,000 kbit/s delivered
    assert not any(p.dropped(c, 1_000_000 // EARLY_DROPS, now=2.0 + EARLY_MIN_S / 2) for c in kids), \
        "not sooner than EARLY_MIN_S after the last decision"
    assert p.dropped(kids[0], 1_000_000 % EARLY_DROPS, now=3.0)  # time now: a decision is due
    assert p.decide(3.0, full=True, released=3_500_000) == int(12_000 * DELIVERED_SHARE)
    assert p.next_at == 5.0
    # what it delivered since is under the floor: the floor
    for c in kids:
        p.dropped(c, 3_000_000 // EARLY_DROPS, now=4.0)
    assert p.decide(4.0, full=True, released=3_600_000) == 4000
    # fewer children with drops than EARLY_DROPS: the interval's end decides, not the drops
    q = probe()
    q.kbps = 8000
    assert not any(q.dropped(c, 10, now=1.5) for c in kids[:-1])
    # and the first decision knows no rate: the floor
    assert q.decide(2.0, full=True, released=10**9) == 4000
