"""A short playout delay (0.5 s, the node's default) must not tear the push trees
apart: a slow parent is not taken for a withholder (oasis.core.delay, .tree)."""

from __future__ import annotations

import random

from repairbench import late_relay

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId, sign_chunk

K = 4


def _fed_node(cfg: sw.SwarmConfig, seed: int) -> tuple[sw.Swarm, StreamId, Identity]:
    rng = random.Random(seed)
    bid = Identity.from_private_bytes(rng.randbytes(32))
    sid = StreamId(bid.public, "t")
    me = Identity.from_private_bytes(rng.randbytes(32)).public
    node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=0.0)
    node.add_peer(bid.public, 0.0, rtt=0.02)
    tb = peer_tag(bid.public)
    node.on_message(bid.public, wire.Status(stream=sid.key, latest=10, have=0, keyframe=10, slots=8,
                                            paths=[[tb]] * K, lags=[0] * K), 0.0)
    node.on_message(bid.public, wire.SubscribeAck(stream=sid.key, accepted=(1 << K) - 1, rejected=0),
                    0.05)
    node.actions()
    assert all(p == bid.public for p in node.parents)
    return node, sid, bid


def test_a_slow_parent_is_not_taken_for_a_withholder_one_that_stops_is() -> None:
    node, sid, bid = _fed_node(sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5, withhold_run=2), 9)
    parent = bid.public
    # the parent pushed chunk 0 of substream 0 0.28 s after its time: its usual delay
    node.on_chunk(parent, sign_chunk(bid, sid, 0, 1_000_000, True, b"a"), 1.28)
    assert node.tree.parent_pushed_any[0]
    # chunks 4 and 8 came from the origin before the parent's usual push: no evidence
    for seq in (4, 8):
        t = 1.0 + seq * 0.1
        node.on_origin(seq, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"b"), t + 0.2)
    assert node.tree.miss_run[0] == 0 and node.parents[0] == parent
    # after its usual push time they count: two in a row and it is suspected; having pushed
    # nothing of the substream ``withhold_confirm`` + the RTT later, it is dropped as parent
    for seq in (12, 16):
        t = 1.0 + seq * 0.1
        node.on_origin(seq, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"c"), t + 0.32)
    verdict = 2.6 + 0.32 + node.config.withhold_confirm + 0.02
    assert node.parents[0] == parent and abs(node.tree.suspect_at[0] - verdict) < 1e-9
    assert node.get_timer() is not None and node.get_timer() <= verdict
    node.handle_timer(verdict - 0.001)
    assert node.parents[0] == parent
    node.handle_timer(verdict)
    assert node.parents[0] is None and node.counters.parents_withholding == 1


def test_a_parent_whose_pushes_a_loss_held_back_is_kept() -> None:
    """On a lossy link QUIC holds the chunks behind a lost packet until it is repaired
    (a run of chunks rides one stream), and the origin may cover several in a row. Their
    pushes, late duplicates, come within the RTT: the parent is not taken for a withholder
    (in the 30-node testbed honest relays were cut off for it). One that never pushes is."""
    node, sid, bid = _fed_node(sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5), 11)
    parent = bid.public
    node.on_chunk(parent, sign_chunk(bid, sid, 0, 1_000_000, True, b"a"), 1.28)
    chunks = {seq: sign_chunk(bid, sid, seq, int((1.0 + seq * 0.1) * 1e6), False, b"c") for seq in (4, 8, 12)}
    for seq, c in chunks.items():  # the origin covers three in a row, after the usual push
        node.on_origin(seq, c, 1.0 + seq * 0.1 + 0.32)
    assert node.parents[0] == parent and node.tree.suspect_at[0] < sw.INF
    verdict = node.tree.suspect_at[0]
    # the loss repaired: the held-back pushes arrive, duplicates now
    node.on_chunk(parent, chunks[4], verdict - 0.05)
    assert node.tree.suspect_at[0] == sw.INF and node.counters.withhold_cleared == 1
    node.handle_timer(verdict + 1.0)
    assert node.parents[0] == parent and node.counters.parents_withholding == 0
    # ``withhold_confirm`` 0: judged at the third chunk, as before
    node0, sid0, bid0 = _fed_node(sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5,
                                                 withhold_confirm=0.0), 11)
    node0.on_chunk(bid0.public, sign_chunk(bid0, sid0, 0, 1_000_000, True, b"a"), 1.28)
    for seq in (4, 8, 12):
        t = 1.0 + seq * 0.1
        node0.on_origin(seq, sign_chunk(bid0, sid0, seq, int(t * 1e6), False, b"c"), t + 0.32)
    assert node0.parents[0] is None and node0.counters.parents_withholding == 1


def test_a_parent_that_never_pushed_gets_no_benefit_of_the_doubt() -> None:
    """It pushed nothing since we subscribed: a lag learnt through an earlier parent does
    not excuse it; chunks the origin had to give us count (a repair before the origin
    time does not: a fresh QUIC link paces its first chunks over an RTT or more)."""
    node, sid, bid = _fed_node(sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5, withhold_run=2), 10)
    node.delay.sample(0, 0.28, True)  # a lag learnt from an earlier parent on substream 0
    # the start: a keyframe of substream 1, pushed by the parent
    node.on_chunk(bid.public, sign_chunk(bid, sid, 1, 1_100_000, True, b"k"), 1.15)
    assert node.start_seq == 1 and not node.tree.parent_pushed_any[0]
    for seq in (4, 8):
        t = 1.0 + seq * 0.1
        node.on_origin(seq, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"b"), t + 0.31)
    node.handle_timer(node.tree.suspect_at[0])  # (``withhold_confirm``: nothing pushed since)
    assert node.parents[0] is None and node.counters.parents_withholding == 1


def test_a_late_substream_is_repaired_from_holders_only() -> None:
    """Playout 0.5 s: the origin is asked 0.3 s after a chunk's time and a repair at most
    0.15 s after it. A parent whose pushes come ~0.25 s after the chunk's time is beaten
    by every repair: a request to a peer still waiting for the chunk fetches one already
    on its way (a duplicate, and upload taken from the relays that carry the trees). So
    such a *late* substream gets one repair round, at the cap, and only from a peer
    whose STATUS says it holds the chunk and has free push slots (a withheld push is
    then covered by a peer, not by the origin)."""
    from oasis.core.delay import DelayEstimator

    d = DelayEstimator(K, repair_after=0.15, playout_delay=0.5, origin_margin=0.2)
    for _ in range(20):
        d.sample(0, 0.25, True)
        d.sample(1, 0.06, True)
    assert d.late[0] and not d.late[1]
    assert d.repair[0] == d.cap == 0.15  # one round, before the origin fallback (0.3 s)
    assert d.repair[1] == 0.15  # a fast parent: repaired after repair_after, as before
    assert abs(d.usual_push(0) - 0.28) < 1e-9 and abs(d.usual_push(1) - 0.09) < 1e-9
    d.update(0, False)  # no parent: repaired after repair_after, from anyone closer
    assert d.repair[0] == 0.15 and not d.late[0]

    # A node 4 hops deep whose parent's pushes come 0.25 s late; F is fed 2 hops from
    # the broadcaster (closer than us: asked for a timely substream) but lacks the
    # chunk; H holds it and has free push slots; B holds it with none (busy).
    rng = random.Random(5)
    bid = Identity.from_private_bytes(rng.randbytes(32))
    sid = StreamId(bid.public, "t")
    me, par, f, h, b = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(5))
    # (100 ms chunks; the origin margin of 0.2 s the docstring's times assume)
    node = sw.Swarm(sid, me, sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5,
                                            origin_margin=0.2), rng=random.Random(1), now=0.0)
    tb, t1, t2 = peer_tag(bid.public), b"\x01" * 8, b"\x02" * 8
    for k in (par, f, h, b):
        node.add_peer(k, 0.0, rtt=0.02)

    def status(k: bytes, latest: int, have: int, paths: list[list[bytes]], slots: int) -> None:
        node.on_message(k, wire.Status(stream=sid.key, latest=latest, have=have, keyframe=0, slots=slots,
                                       paths=paths, lags=[250] * len(paths)), node_now[0])

    node_now = [0.0]
    status(par, 10, 0, [[tb, t1, t2, peer_tag(par)]] * K, 8)
    node.on_message(par, wire.SubscribeAck(stream=sid.key, accepted=(1 << K) - 1, rejected=0), 0.05)
    assert all(p == par for p in node.parents)
    # the parent pushes seqs 0..39 each 0.25 s after its time (time(seq) = 1 + seq/10)
    for seq in range(40):
        t = 1.0 + seq * 0.1
        node.on_chunk(par, sign_chunk(bid, sid, seq, int(t * 1e6), seq == 0, b"x"), t + 0.25)
    assert all(node.delay.late)
    node.actions()
    gap = 40  # its push does not come; at time + 0.15 F is fed closer, H holds it
    t = 1.0 + gap * 0.1
    node_now[0] = t + 0.1
    status(f, 39, (1 << 39) - 1, [[tb, peer_tag(f)]] * K, 0)
    status(b, gap, (1 << 40) - 1, [], 0)
    status(h, gap, (1 << 40) - 1, [], 2)
    now = t + 0.16
    node.handle_timer(now)
    asked = [a.peer for a in node.actions() if isinstance(a, sw.Send) and isinstance(a.message, wire.Request)
             and a.message.seq == gap]
    assert asked == [h]
    # with no holder (with spare upload) the late substream is not repaired: the origin covers it
    gap2 = 44
    t2 = 1.0 + gap2 * 0.1
    node.on_chunk(par, sign_chunk(bid, sid, gap, int(t * 1e6), False, b"x"), t2 - 0.2)
    for seq in range(41, 44):
        node.on_chunk(par, sign_chunk(bid, sid, seq, int((1.0 + seq * 0.1) * 1e6), False, b"x"), t2 - 0.1)
    node.actions()
    node.handle_timer(t2 + 0.16)
    node.handle_timer(t2 + 0.25)
    acts = node.actions()
    assert not [a for a in acts if isinstance(a, sw.Send) and isinstance(a.message, wire.Request)
                and a.message.seq == gap2]
    node.handle_timer(t2 + 0.31)
    assert [a for a in node.actions() if isinstance(a, sw.FetchOrigin) and a.seq == gap2]


def test_a_better_looking_parent_that_withholds_starves_no_one() -> None:
    """Make before break: a peer that claims the best path (one hop, 5 ms) draws
    our switch from a working parent, then never pushes. The old parent stays
    subscribed until the new one pushes, so every chunk still comes from it (no repair,
    no origin); after ``withhold_run`` chunks the new one is dropped as parent and the
    old one is ours again, without a new SUBSCRIBE. (5 ms, not 0: a one-hop claim at zero
    lag on every substream is doubted, ``one_hop_doubt``, and would never draw the switch
    this test is of while the old parent is a candidate.)"""
    rng = random.Random(11)
    bid = Identity.from_private_bytes(rng.randbytes(32))
    sid = StreamId(bid.public, "t")
    me, par, w = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(3))
    node = sw.Swarm(sid, me, sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5),
                    rng=random.Random(1), now=0.0)
    tb, t1 = peer_tag(bid.public), b"\x01" * 8
    node.add_peer(par, 0.0, rtt=0.02)
    node.on_message(par, wire.Status(stream=sid.key, latest=10, have=0, keyframe=0, slots=8,
                                     paths=[[tb, t1, peer_tag(par)]] * K, lags=[150] * K), 0.0)
    node.on_message(par, wire.SubscribeAck(stream=sid.key, accepted=(1 << K) - 1, rejected=0), 0.05)
    assert all(p == par for p in node.parents)
    acts: list[sw.SwarmAction] = []
    subscribed_w = False
    for seq in range(120):  # 12 s of chunks, each pushed by par 0.18 s after its time
        t = 1.0 + seq * 0.1
        now = t + 0.18
        node.handle_timer(now)
        node.on_chunk(par, sign_chunk(bid, sid, seq, int(t * 1e6), seq == 0, b"x"), now)
        if seq == 20:  # w appears, claiming the best path there is
            mark = len(acts)
            node.add_peer(w, now, rtt=0.02)
            node.on_message(w, wire.Status(stream=sid.key, latest=seq, have=(1 << 20) - 1, keyframe=0,
                                           slots=8, paths=[[tb, peer_tag(w)]] * K, lags=[5] * K), now)
        new = node.actions()
        acts += new
        asked = 0
        for a in new:
            if isinstance(a, sw.Send) and a.peer == w and isinstance(a.message, wire.Subscribe):
                asked |= a.message.mask
        if asked:
            subscribed_w = True
            node.on_message(w, wire.SubscribeAck(stream=sid.key, accepted=asked, rejected=0), now + 0.02)
            assert all(p in (par, w) for p in node.parents)
    assert subscribed_w and node.counters.parent_switches >= 1
    after = acts[mark:]  # since w appeared: no chunk had to be fetched elsewhere
    assert not [a for a in after if isinstance(a, sw.FetchOrigin)]
    assert not [a for a in after if isinstance(a, sw.Send) and isinstance(a.message, wire.Request)]
    assert not [a for a in acts if isinstance(a, sw.Send) and a.peer == par
                and isinstance(a.message, wire.Unsubscribe)]
    assert [a for a in acts if isinstance(a, sw.Send) and a.peer == w and isinstance(a.message, wire.Unsubscribe)]
    assert node.counters.parents_withholding >= 1
    assert node.parents == [par] * K
    assert len([a for a in acts if isinstance(a, sw.Deliver)]) == 120


def _late_parent_node(wait: bool) -> tuple[sw.Swarm, StreamId, Identity]:
    """Playout 0.5 s, origin margin 0.15 s: the fixed fallback asks the origin 0.35 s
    after a chunk's time. The parent's pushes come 0.38 s after it (a deep tree): the
    substreams are late. Three chunks the parent never pushed came from the origin in
    40 ms each: this node has learnt what a fetch takes."""
    node, sid, bid = _fed_node(sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5,
                                              origin_margin=0.15, origin_wait=wait), 12)
    par = bid.public
    for seq in range(40):
        t = 1.0 + seq * 0.1
        node.handle_timer(t + 0.38)
        node.on_chunk(par, sign_chunk(bid, sid, seq, int(t * 1e6), seq == 0, b"x"), t + 0.38)
    assert all(node.delay.late)
    node.actions()
    for seq in (40, 41, 42):  # never pushed: fetched at the fixed fallback
        t = 1.0 + seq * 0.1
        node.handle_timer(t + 0.355)
        assert [a for a in node.actions() if isinstance(a, sw.FetchOrigin) and a.seq == seq]
        node.on_origin(seq, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"o"), t + 0.395)
    assert node.repair.origin_samples == 3 and abs(node.repair.origin_srtt - 0.04) < 1e-9
    node.actions()
    return node, sid, bid


def test_the_origin_waits_for_a_late_parents_push_while_a_fetch_still_fits() -> None:
    """A deep tree's push that comes just after the fixed origin fallback still carries
    the chunk: the fallback waits for it, but only as long as an origin fetch started
    then (the learnt fetch time, + 4 deviations + a pad; at least ``origin_wait_margin``)
    still arrives by the deadline."""
    node, sid, bid = _late_parent_node(wait=True)
    par = bid.public
    fetch = max(node.repair.fetch_time(), node.config.origin_wait_margin)
    assert 0.05 <= fetch < 0.15
    seq = 48  # pushed at its usual time, after the fixed fallback: no origin fetch
    t = 1.0 + seq * 0.1
    for now in (t + 0.3, t + 0.35, t + 0.37):
        node.handle_timer(now)
    assert not [a for a in node.actions() if isinstance(a, sw.FetchOrigin) and a.seq == seq]
    node.on_chunk(par, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"x"), t + 0.38)
    assert [a for a in node.actions() if isinstance(a, sw.Deliver) and a.chunk.seq == seq]
    assert node.counters.origin_waits >= 1
    seq = 52  # never pushed: the origin is asked when a fetch only just fits
    t = 1.0 + seq * 0.1
    fetched_at = None
    step = 0.005
    now = t
    while now < t + 0.5 and fetched_at is None:
        node.handle_timer(now)
        if [a for a in node.actions() if isinstance(a, sw.FetchOrigin) and a.seq == seq]:
            fetched_at = now
        now += step
    assert fetched_at is not None, "the origin was never asked"
    assert t + 0.35 < fetched_at <= t + 0.5 - fetch + step  # later than the fixed fallback, in time
    node.on_origin(seq, sign_chunk(bid, sid, seq, int(t * 1e6), False, b"o"), fetched_at + 0.04)
    assert [a for a in node.actions() if isinstance(a, sw.Deliver) and a.chunk.seq == seq]


def test_without_origin_wait_the_fixed_fallback_fetches_what_the_parent_would_push() -> None:
    node, sid, bid = _late_parent_node(wait=False)
    seq = 48
    t = 1.0 + seq * 0.1
    node.handle_timer(t + 0.3)
    assert not [a for a in node.actions() if isinstance(a, sw.FetchOrigin) and a.seq == seq]
    node.handle_timer(t + 0.355)
    assert [a for a in node.actions() if isinstance(a, sw.FetchOrigin) and a.seq == seq]
    assert node.counters.origin_waits == 0


def test_a_late_substream_asks_a_neighbour_whose_lag_says_it_has_the_chunk() -> None:
    """A STATUS is up to 2 s old, so its ``have`` bits never show a chunk 0.2 s old: on a
    late substream the repair round also asks a neighbour fed on it (not through us) with
    free slots whose advertised lag says it will have the chunk and answer before the
    origin fallback and before our parent's push; not one whose lag says it would not,
    nor one below us on the substream."""
    rng = random.Random(6)
    bid = Identity.from_private_bytes(rng.randbytes(32))
    sid = StreamId(bid.public, "t")
    me, par, fast, slow, below = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(5))
    node = sw.Swarm(sid, me, sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5),
                    rng=random.Random(1), now=0.0)
    tb, t1, t2 = peer_tag(bid.public), b"\x01" * 8, b"\x02" * 8
    for k in (par, fast, slow, below):
        node.add_peer(k, 0.0, rtt=0.02)

    def status(k: bytes, path: list[bytes], lag: int, slots: int, now: float) -> None:
        node.on_message(k, wire.Status(stream=sid.key, latest=10, have=0, keyframe=0, slots=slots,
                                       paths=[path] * K, lags=[lag] * K), now)

    status(par, [tb, t1, t2, peer_tag(par)], 250, 8, 0.0)
    node.on_message(par, wire.SubscribeAck(stream=sid.key, accepted=(1 << K) - 1, rejected=0), 0.05)
    assert all(p == par for p in node.parents)
    for seq in range(40):  # pushes 0.3 s after each chunk's time: every substream is late
        t = 1.0 + seq * 0.1
        node.on_chunk(par, sign_chunk(bid, sid, seq, int(t * 1e6), seq == 0, b"x"), t + 0.3)
    assert all(node.delay.late)
    my_path = node.paths[0]
    status(fast, [tb, peer_tag(fast)], 60, 3, 4.5)  # 60 ms behind the broadcaster
    status(slow, [tb, t1, peer_tag(slow)], 290, 3, 4.5)  # no sooner than our parent
    status(below, [*my_path, peer_tag(below)], 20, 3, 4.5)  # our child: gets it through us
    node.actions()
    gap = 40  # the parent's push of 40 does not come
    t = 1.0 + gap * 0.1
    node.handle_timer(t + node.delay.cap + 0.001)
    asked = [a.peer for a in node.actions() if isinstance(a, sw.Send) and isinstance(a.message, wire.Request)
             and a.message.seq == gap]
    assert asked == [fast]
    assert node.counters.requests_predicted == 1
    # without free slots it is not asked either (its upload carries its own children)
    status(fast, [tb, peer_tag(fast)], 60, 0, t + 0.25)
    node.actions()
    gap2 = 44
    tg2 = 1.0 + gap2 * 0.1
    node.handle_timer(tg2 + node.delay.cap + 0.001)
    assert not [a for a in node.actions() if isinstance(a, sw.Send) and isinstance(a.message, wire.Request)
                and a.message.seq == gap2]


def test_a_late_relay_fetches_for_its_children_when_no_peer_can_repair() -> None:
    """With ``relay_origin_early``: a relay whose parent's pushes come 0.33 s after a
    chunk's time would pass them on after its children's own origin fallback (0.35 s),
    so every child would fetch the chunk too. When its repair round finds nobody to ask,
    it asks the origin then, for them; a failure then (not at the edge yet) is retried,
    not taken for a stall. A late node without children waits for the fallback."""
    def relay(children: bool) -> sw.Swarm:
        # one child here: ``relay_early_children`` 1 (the default 2 is tested in its own file)
        return late_relay(1 if children else 0, relay_origin_early=True, relay_early_children=1)

    gap = 40  # substream 0
    t = 1.0 + gap * 0.1
    for children in (True, False):
        node = relay(children)
        assert node.delay.late[0]
        node.handle_timer(t + node.delay.cap + 0.001)
        fetched = [a for a in node.actions() if isinstance(a, sw.FetchOrigin) and a.seq == gap]
        assert bool(fetched) == children
        assert node.counters.origin_early == (1 if children else 0)
    # (the relay with children) not at the edge yet: retried shortly, no stall begins
    node = relay(True)
    node.handle_timer(t + node.delay.cap + 0.001)
    node.actions()
    node.on_origin(gap, None, t + 0.22)
    assert node.repair.stall_latest < 0
    node.handle_timer(t + 0.28)
    assert [a for a in node.actions() if isinstance(a, sw.FetchOrigin) and a.seq == gap]


def test_an_overdue_push_is_repaired_from_a_neighbour_before_the_origin_fallback() -> None:
    """With ``repair_overdue``: on a late substream whose parent usually pushes 0.25 s after
    a chunk's time, the repair round at the cap (0.23 s) does not ask a neighbour that
    would answer later than that push (0.30 s); once this chunk's push is overdue, a second
    round asks it, since its answer still beats the origin fallback (0.38 s). Without it
    the next step is the origin."""
    rng = random.Random(9)
    bid = Identity.from_private_bytes(rng.randbytes(32))
    sid = StreamId(bid.public, "t")
    me, par, mid = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(3))
    tb, t1, t2 = peer_tag(bid.public), b"\x01" * 8, b"\x02" * 8
    gap = 40  # the parent's push of 40 does not come
    t = 1.0 + gap * 0.1

    def asked(overdue: bool) -> list[float]:
        node = sw.Swarm(sid, me, sw.SwarmConfig(first_wait=0.0, chunk_ms=100, upload_kbps=6000, playout_delay=0.5,
                                                repair_overdue=overdue), rng=random.Random(1), now=0.0)
        node.add_peer(par, 0.0, rtt=0.02)
        node.add_peer(mid, 0.0, rtt=0.02)
        node.on_message(par, wire.Status(stream=sid.key, latest=10, have=0, keyframe=0, slots=8,
                                         paths=[[tb, t1, peer_tag(par)]] * K, lags=[250] * K), 0.0)
        node.on_message(par, wire.SubscribeAck(stream=sid.key, accepted=(1 << K) - 1, rejected=0), 0.05)
        for seq in range(gap):
            ts = 1.0 + seq * 0.1
            node.on_chunk(par, sign_chunk(bid, sid, seq, int(ts * 1e6), seq == 0, b"x"), ts + 0.25)
        node.on_message(mid, wire.Status(stream=sid.key, latest=30, have=0, keyframe=0, slots=3,
                                         paths=[[tb, t2, peer_tag(mid)]] * K, lags=[260] * K), 4.0)
        node.actions()
        assert node.delay.late[0]
        out = []
        now = t + node.delay.cap + 0.001
        while now < t + 0.38:  # until the origin fallback
            node.handle_timer(now)
            if any(isinstance(a, sw.Send) and isinstance(a.message, wire.Request) and a.message.seq == gap
                   and a.peer == mid for a in node.actions()):
                out.append(round(now - t, 3))
            nt = node.get_timer()
            now = max(now + 0.001, nt if nt is not None else INF)
        return out

    INF = float("inf")
    got = asked(True)
    assert len(got) == 1 and 0.27 < got[0] < 0.36  # once, when the push was overdue
    assert asked(False) == []
