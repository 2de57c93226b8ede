"""Strangers in the swarm: attacks mounted against real Swarm cores (swarmnet, virtual time).

Each test plays a hostile peer against real cores and checks the defence: the
attacker gets at most its due, is counted and cut off, and honest viewers keep playing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from test_core_swarm import RecNet, assert_complete, build

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.core.wire import ChunkMsg, ErrorCode

# Viewers whose nominal bitrate matches the test chunks (~1.1 KB per 100 ms), so the
# pull budget (1x the stream rate, 4 s of burst) is small next to a flood.
SMALL = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, bitrate_kbps=100)


def _stranger(seed: int) -> bytes:
    return Identity.from_private_bytes(random.Random(seed).randbytes(32)).public


def _children(net: RecNet) -> list[tuple[bytes, bytes]]:
    return [(v, p) for v in net.viewers for p in net.nodes[v].parents
            if p is not None and p != net.bid.public]


# ---- 1. REQUEST floods ------------------------------------------------------------

def test_request_flood_gets_at_most_its_budget_and_is_dropped() -> None:
    net = build(10, seed=31, config=SMALL)
    net.tick(20)
    # a relay with children: the flood must not starve them
    victim = next(p for _, p in _children(net))
    node = net.nodes[victim]
    mallory = _stranger(1)
    node.add_peer(mallory, net.now)
    start, sent_before = net.now, len(net.log[victim])
    asked = 0
    for _ in range(30):  # 3 s: every 100 ms, REQUEST every chunk of the window, twice
        lo = max(0, node.log.latest - 40)
        for _twice in range(2):
            for seq in range(lo, node.log.latest + 5):
                node.on_message(mallory, wire.Request(stream=net.sid.key, seq=seq), net.now)
                asked += 1
        net._pump(victim)
        net.tick()
    pushed = sum(len(a.chunk.payload) for _, a in net.log[victim][sent_before:]
                 if isinstance(a, sw.Push) and a.peer == mallory)
    rate = node.stream_rate()
    budget = node.config.request_burst * rate + node.config.request_share * rate * (net.now - start)
    assert asked > 1000
    assert 0 < pushed <= budget, (pushed, budget)
    c = node.counters
    assert c.requests_refused > 0 and c.flooders_dropped == 1
    assert (victim, mallory, ErrorCode.TOO_MANY_ERRORS) in net.dropped
    assert mallory not in node.peers
    # the victim's children kept their pushes: every viewer is complete, from peers
    net.tick(20)
    for v in net.viewers:
        assert_complete(net, v, net.now, {"p2p", "broadcaster", "origin"})
        assert net.nodes[v].counters.origin_fetches <= 3


def test_requests_in_flight_behind_a_refusal_are_no_strikes() -> None:
    """An honest asker far away (RTT 0.3 s) whose repair round sent a burst of
    REQUESTs past its pull budget: every refusal says ``refused``, but only the one
    that opens an episode is a strike, since the rest were sent before the asker
    could hear it. Asking again only after the back-off, in 10 bursts it earns 10
    strikes and keeps its link (each refusal a strike cut off 183 honest links in
    the testbed on a saturated machine). The same bursts without the back-off, every
    0.1 s, still cut it off: those inside an episode but after the in-flight time
    are strikes."""
    for heeds in (True, False):
        net = build(6, seed=41, config=SMALL)
        net.tick(20)
        node = net.nodes[net.viewers[0]]
        asker = _stranger(7)
        node.add_peer(asker, net.now)
        node.set_rtt(asker, 0.3)
        sent_before = len(net.log[net.viewers[0]])
        for _ in range(10 if heeds else 40):
            lo = max(0, node.log.latest - 30)
            for seq in range(lo, node.log.latest + 1):  # ~3 s of chunks: past the budget
                node.on_message(asker, wire.Request(stream=net.sid.key, seq=seq), net.now)
            net._pump(net.viewers[0])
            net.run_until(net.now + (1.0 if heeds else 0.1), produce_every=0.1)
            if asker not in node.peers:
                break
        c = node.counters
        answers = [a.message for _, a in net.log[net.viewers[0]][sent_before:]
                   if isinstance(a, sw.Send) and a.peer == asker and isinstance(a.message, wire.Missing)]
        if heeds:
            assert c.requests_refused > 100 and c.flooders_dropped == 0, c
            assert asker in node.peers
            assert answers and all(m.refused for m in answers)
            # one strike per burst that was refused at all, the rest in flight
            assert 1 <= c.requests_refused - c.refusals_in_flight <= 10, c
        else:
            assert c.flooders_dropped == 1 and asker not in node.peers


def test_requests_for_chunks_the_asker_claims_are_refused_and_it_is_dropped() -> None:
    """A relay that floods REQUESTs for the chunks its own STATUS says it holds (the
    simulator's ``flood`` mode): not one is served (an honest node never asks for what
    it has), each is a strike, and it is cut off; an honest asker is still served."""
    net = build(10, seed=37, config=SMALL)
    net.tick(20)
    victim = next(p for _, p in _children(net))
    node = net.nodes[victim]
    mallory, honest = _stranger(3), _stranger(4)
    node.add_peer(mallory, net.now)
    node.add_peer(honest, net.now)
    sent_before = len(net.log[victim])
    asked = 0
    for _ in range(20):  # 2 s
        latest = node.log.latest
        # mallory claims everything up to the live edge, as a relay that has it
        node.on_message(mallory, wire.Status(stream=net.sid.key, latest=latest, have=(1 << 63) - 1,
                                             keyframe=latest, slots=0, paths=[]), net.now)
        if mallory not in node.peers:
            break
        for seq in range(latest - 14, latest + 1):
            node.on_message(mallory, wire.Request(stream=net.sid.key, seq=seq), net.now)
            asked += 1
        net._pump(victim)
        net.tick()
    # the honest asker claims nothing and asks for one chunk: served
    node.on_message(honest, wire.Request(stream=net.sid.key, seq=node.log.latest - 1), net.now)
    net._pump(victim)
    pushes = [a for _, a in net.log[victim][sent_before:] if isinstance(a, sw.Push)]
    assert not [a for a in pushes if a.peer == mallory]
    assert [a for a in pushes if a.peer == honest]
    c = node.counters
    assert asked >= node.config.flood_limit
    assert c.requests_claimed >= node.config.flood_limit and c.flooders_dropped == 1
    assert (victim, mallory, ErrorCode.TOO_MANY_ERRORS) in net.dropped
    assert mallory not in node.peers


def test_held_requests_are_capped_and_the_timer_uses_a_heap() -> None:
    """30,000 REQUESTs for chunks just ahead of the live edge (holdable) from 500
    peers: the held table stays within its caps (so get_timer/handle_timer work on
    a bounded heap), every refusal is counted, and the viewers keep playing."""
    net = build(6, seed=33, config=SMALL)
    net.tick(10)
    victim = net.viewers[2]
    node = net.nodes[victim]
    cfg = node.config
    sybils = [_stranger(100 + i) for i in range(500)]
    for k in sybils:
        node.add_peer(k, net.now)
    net._pump(victim)
    for i, k in enumerate(sybils):
        base = node.log.latest + 1
        for n in range(60):
            node.on_message(k, wire.Request(stream=net.sid.key, seq=base + (i + n) % 10), net.now)
        assert len(node.held) <= cfg.max_held_total
        assert node.held.held_for(k) <= cfg.max_held_per_peer
    assert len(node.held) == cfg.max_held_total
    assert node.counters.held_refused > 0
    # the timer is the earliest held deadline (or earlier), found without a scan
    earliest = min(d for h in node.held.by_peer.values() for d in h.values())
    t = node.get_timer()
    assert t is not None and t <= earliest
    net._pump(victim)
    net.tick(30)
    assert len(node.held) <= cfg.max_held_total
    for v in net.viewers:
        assert_complete(net, v, net.now, {"p2p", "broadcaster", "origin"})


def test_request_outside_the_live_window_is_refused_not_held() -> None:
    net = build(4, seed=35, config=SMALL)
    net.tick(100)  # seq 0 is now older than request_horizon
    node = net.nodes[net.viewers[1]]
    mallory = _stranger(2)
    node.add_peer(mallory, net.now)
    node.actions()
    for seq in (0x7FFF_FFFF_FFFF_FFFE, node.log.latest + 500, 0):
        node.on_message(mallory, wire.Request(stream=net.sid.key, seq=seq), net.now)
    acts = node.actions()
    assert len(node.held) == 0
    assert node.counters.requests_out_of_window == 3
    assert sorted(a.message.seq for a in acts if isinstance(a, sw.Send)
                  and isinstance(a.message, wire.Missing)) == [0, node.log.latest + 500,
                                                                0x7FFF_FFFF_FFFF_FFFE]


# ---- 2. start poisoning -------------------------------------------------------------

U64_MAX = 0x7FFF_FFFF_FFFF_FFFF


class LiarNet(RecNet):
    """A real Swarm core whose STATUS lies about what it holds and that sends no chunk."""

    liar: bytes | None = None
    variant = "max"

    def actions_from(self, key: bytes, node: sw.Swarm) -> list:
        out = node.actions()
        if key == self.liar:
            lied = []
            for a in out:
                if isinstance(a, sw.Push):
                    continue
                if isinstance(a, sw.Send) and isinstance(a.message, wire.Status):
                    m = a.message
                    if self.variant == "max":
                        latest = keyframe = U64_MAX - 1
                    else:
                        latest = keyframe = m.latest + 50
                    a = sw.Send(a.peer, wire.Status(stream=m.stream, latest=latest, have=m.have,
                                                    keyframe=keyframe, slots=m.slots,
                                                    paths=m.paths, lags=[0] * len(m.lags)))
                lied.append(a)
            out = lied
        self.log.setdefault(key, []).extend((self.now, a) for a in out)
        return out


@pytest.mark.parametrize("variant", ["max", "ahead"])
def test_start_poisoning_liar_cannot_stop_newcomers(variant: str) -> None:
    cfg = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000)
    net = LiarNet(44, seed=41, delay=0.01, config=cfg,
                  source_config=sw.SwarmConfig(chunk_ms=100, upload_kbps=3000))
    net.variant = variant
    net.produce(True)
    net.tick(10)
    rng = random.Random(41)
    base, liar, newcomers = net.viewers[:7], net.viewers[7], net.viewers[8:]
    keys = [net.bid.public]
    for v in base:
        net.join(v, rng.sample(keys, min(4, len(keys))))
        keys.append(v)
        net.tick(2)
    net.liar = liar
    net.join(liar, rng.sample(keys, 4))
    net.tick(5)
    for v in newcomers:
        # the liar is the first neighbour every newcomer hears from
        net.join(v, [liar] + rng.sample(keys, 3))
        net.tick(2)
    net.tick(100)  # 10 s
    for v in newcomers:
        node = net.nodes[v]
        assert node.start_seq is not None and node.start_seq < net.next_seq
        got = net.delivers(v)
        due = [s for s, t in net.produced.items() if net.joined_at[v] + 2.0 <= t <= net.now - 1.0]
        assert sum(s in got for s in due) >= 0.95 * len(due), (variant, len(due))
        # only chunks that exist were fetched from the origin
        assert all(a.seq < net.next_seq for _, a in net.actions_of(v, sw.FetchOrigin))
        assert node.counters.claims_implausible + node.counters.claims_broken >= 1
        assert (v, liar, ErrorCode.TOO_MANY_ERRORS) in net.dropped, "liar not dropped"
        assert liar not in node.peers
    # nobody repeats a lie: every integer an honest node sends is a real seq
    for k, entries in net.log.items():
        if k == liar:
            continue
        for _, a in entries:
            if isinstance(a, sw.Send):
                m = a.message
                if isinstance(m, (wire.Request, wire.Missing)):
                    assert m.seq <= U64_MAX and (m.seq < net.next_seq + 30 or k != net.bid.public)
                if isinstance(m, wire.Status):
                    assert m.latest < net.next_seq and m.keyframe < net.next_seq
    # the liar leaves: nobody is stuck
    net.leave(liar)
    mark = net.now
    net.tick(30)
    for v in newcomers:
        got = net.delivers(v)
        due = [s for s, t in net.produced.items() if mark <= t <= net.now - 1.0]
        assert all(s in got for s in due)


def test_start_comes_from_a_verified_keyframe_not_a_status() -> None:
    """A lone liar is a newcomer's only neighbour: the newcomer never starts on its
    word, sends no absurd integer, drops it, and starts once an honest peer appears.
    (The start from the origin is off here: it would start the newcomer without peers,
    test_core_swarm.py::test_a_viewer_no_peer_reaches_starts_from_the_origin.)"""
    net = LiarNet(2, seed=43, delay=0.01,
                  config=sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, origin_start_after=1e9),
                  source_config=sw.SwarmConfig(chunk_ms=100, upload_kbps=3000))
    net.produce(True)
    net.tick(10)
    honest, newcomer = net.viewers
    net.join(honest, [net.bid.public])
    net.tick(5)
    liar = _stranger(3)
    liar_node = sw.Swarm(net.sid, liar, net.config, rng=random.Random(3), now=net.now)
    net.nodes[liar] = liar_node
    net.delivered[liar], net.skipped[liar] = {}, []
    liar_node.add_peer(honest, net.now)
    net.nodes[honest].add_peer(liar, net.now)
    net.liar = liar
    net.tick(5)
    net.join(newcomer, [liar])
    net.tick(100)  # 10 s
    node = net.nodes[newcomer]
    assert node.start_seq is None and not net.delivers(newcomer)
    assert not net.actions_of(newcomer, sw.FetchOrigin)
    assert (newcomer, liar, ErrorCode.TOO_MANY_ERRORS) in net.dropped
    for _, a in net.log[newcomer]:
        if isinstance(a, sw.Send) and isinstance(a.message, wire.Request):
            assert a.message.seq <= U64_MAX
    # an honest neighbour appears: the newcomer starts at a real keyframe and plays
    node.add_peer(honest, net.now)
    net.nodes[honest].add_peer(newcomer, net.now)
    net._pump(honest)
    net._pump(newcomer)
    mark = net.now
    net.tick(50)
    assert node.start_seq is not None and node.start_seq < net.next_seq
    got = net.delivers(newcomer)
    due = [s for s, t in net.produced.items() if mark + 2.0 <= t <= net.now - 1.0]
    assert due and all(s in got for s in due)


# ---- 3. forged copies of held chunks ------------------------------------------------

def test_forged_copies_of_held_chunks_get_the_forger_dropped() -> None:
    net = build(4, seed=37)
    net.tick(5)
    victim = net.viewers[3]
    node = net.nodes[victim]
    forger = next(iter(node.peers))
    held = sorted(node.log.chunks)[-3:]
    dups = node.counters.duplicates
    for i, seq in enumerate(held):
        real = node.log.get(seq)
        assert real is not None
        forged = ChunkMsg(stream=real.stream, seq=seq, time_us=real.time_us, flags=real.flags,
                          signature=real.signature, payload=b"evil" + real.payload[4:])
        node.on_chunk(forger, forged, net.now)
        assert node.counters.bad_chunks == i + 1
        assert node.log.get(seq) == real  # the held copy is untouched
    net._pump(victim)
    assert node.counters.duplicates == dups  # a forgery is not a duplicate
    assert (victim, forger, ErrorCode.BAD_CHUNK) in net.dropped
    assert forger not in node.peers
    # a byte-identical copy is a duplicate, verified or not
    other = next(iter(node.peers))
    seq = held[0]
    same = node.log.get(seq)
    assert same is not None
    copy = ChunkMsg(stream=same.stream, seq=seq, time_us=same.time_us, flags=same.flags,
                    signature=same.signature, payload=bytes(same.payload))
    node.on_chunk(other, copy, net.now)
    assert node.counters.duplicates == dups + 1 and node.counters.bad_chunks == 3
    net.tick(20)
    for v in net.viewers:
        assert_complete(net, v, net.now, {"p2p", "broadcaster", "origin"})


def test_chunks_before_the_start_are_bounded_and_told_at_the_start() -> None:
    """A newcomer fed only non-keyframes (its keyframe probe is slow) keeps at most a
    window of them; when the keyframe arrives it starts there and delivers the chunks
    it already holds after it, in order."""
    rng = random.Random(51)
    b = Identity.from_private_bytes(rng.randbytes(32))
    me, peer = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(2))
    sid = StreamId(b.public, "t")
    cfg = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, window_chunks=20)
    node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=100.0)
    node.add_peer(peer, 100.0)
    now = 100.0
    for seq in range(1, 80):
        if seq == 75:
            continue
        now = 100.0 + seq * 0.1
        node.on_chunk(peer, sign_chunk(b, sid, seq, int(now * 1e6), False, b"p%d" % seq), now)
        assert len(node.claims.early) <= cfg.window_chunks
    assert node.start_seq is None and not [a for a in node.actions() if isinstance(a, sw.Deliver)]
    kf = sign_chunk(b, sid, 75, int(107.5 * 1e6), True, b"key")
    node.on_chunk(peer, kf, now)
    assert node.start_seq == 75
    delivered = [a.chunk.seq for a in node.actions() if isinstance(a, sw.Deliver)]
    assert delivered == [75, 76, 77, 78, 79]
    assert node.counters.early_unrecorded == 0


# ---- 5. Withholding parents ----------------------------------------------------------

# Withholding is judged quickly here: a short cool-down, so the withholder (which looks
# like the best parent there is) is picked again and struck again within seconds.
#: (``root_giveback`` off: in this 10-viewer net with 6 broadcaster slots, the viewers that
#: give their second substreams from the broadcaster back make thinner trees, and after the
#: defector's cut-off 8.5 % of the chunks came from the origin against 7.8 % while it was a
#: parent: still under the 20 % bound, but the comparison below is of the cut-off, not of
#: the tree's shape; ``switch_dwell`` 5 s, the default before 2026-12-03, for the same reason:
#: with 2 s the children also swap away from the defector for faster parents between
#: strikes, and the origin's share while it was a parent (6.1 %) fell below the share after
#: its cut-off (7.0 %))
WITHHOLD_CFG = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, withhold_backoff=1.0, withhold_limit=3,
                              root_giveback=False, switch_dwell=5.0)


def _withholder(net: RecNet, w: bytes, since: float) -> None:
    """From ``since`` on, ``w`` pushes nothing and answers nothing (no chunk, no
    MISSING), and advertises a one-hop path with a 5 ms lag and free slots (the
    simulator's withholders claim zero lag, oasis.sim.adversary; that claim on every
    substream is doubted, ``one_hop_doubt``, and such a peer is then never a parent while
    another is a candidate: 5 ms keeps it the best parent there is, so this test is of the
    withholding rules, not of the doubt)."""
    from oasis.core.identity import peer_tag
    k = net.config.substreams
    src, me = peer_tag(net.bid.public), peer_tag(w)

    def keep(key: bytes, a: object) -> bool:
        if key != w or net.now < since:
            return True
        if isinstance(a, sw.Push):
            return False
        if isinstance(a, sw.Send):
            m = a.message
            if isinstance(m, wire.Missing):
                return False
            if isinstance(m, wire.Status):
                object.__setattr__(a, "message", wire.Status(
                    stream=m.stream, latest=m.latest, have=m.have, keyframe=m.keyframe,
                    slots=max(m.slots, 16), paths=[[src, me]] * k, lags=[5] * k))
        return True
    net.keep = keep


def _busiest_withholds() -> tuple[RecNet, bytes, list[bytes]]:
    """A built swarm whose relay with the most children turns withholder now: the net, it,
    and the viewers it is a parent of."""
    net = build(10, seed=41, config=WITHHOLD_CFG)
    counts: dict[bytes, int] = {}
    for _, p in _children(net):
        counts[p] = counts.get(p, 0) + 1
    w = max(counts, key=lambda p: counts[p])
    _withholder(net, w, net.now)
    victims = [v for v in net.viewers if v != w and w in net.nodes[v].parents]
    assert victims
    return net, w, victims


def _fed_by(net: RecNet, w: bytes, victims: list[bytes], ticks: int = 250
            ) -> Iterator[tuple[bytes, sw.Swarm, int]]:
    """Each chunk tick (250: 25 s of 100-ms chunks), every (victim, its core, substream) that
    ``w`` is still the parent of."""
    for _ in range(ticks):
        net.tick(1)
        for v in victims:
            node = net.nodes[v]
            if w not in node.peers:
                continue
            for j, p in enumerate(node.parents):
                if p == w:
                    yield v, node, j


def _assert_struck_and_cut(net: RecNet, w: bytes, victims: list[bytes]) -> None:
    """Its victims struck ``w`` (at least ``withhold_limit``) and cut it off."""
    assert sum(net.nodes[v].counters.withhold_strikes for v in victims) >= 3
    cut = [v for v in victims if (v, w, ErrorCode.TOO_MANY_ERRORS) in net.dropped]
    assert cut, [(net.nodes[v].counters.parents_withholding, net.nodes[v].counters.withhold_strikes,
                  net.nodes[v].counters.withhold_cleared) for v in victims]
    assert all(w not in net.nodes[v].parents for v in cut)


def test_a_parent_pushing_only_stale_copies_is_judged_withholding() -> None:
    """A parent that pushes nothing new, only copies of chunks its children already hold, past
    their deadline and older than the pushes it is suspected of withholding (found by an
    attack audit, 2026-12-07: real processes, a copy every 0.2 s per substream): such a copy
    serves nobody. Before, each one cleared the
    suspicion of withholding and taught the delay model that the parent's pushes come late
    (so no miss was counted), and the attacker kept its substreams while its children took
    the stream from the origin. Now its children drop it as they drop a silent one."""
    net, w, victims = _busiest_withholds()
    k = net.config.substreams
    copies = 0
    for v, node, j in _fed_by(net, w, victims):  # a stale copy a substream each chunk
        # 3 s old: past its 0.5 s deadline, and older than the pushes it is suspected
        # of withholding (a loss may hold those back: their late copies still count;
        # the audit's copies were ~1 s old at 33-ms chunks, 7 a substream's misses)
        seq = net.next_seq - 30
        seq -= (seq - j) % k
        chunk = node.log.get(seq)
        if chunk is not None:
            net._deliver(w, sw.Push(v, chunk, net.now + 1.0))
            copies += 1
    assert copies > 0
    assert sum(net.nodes[v].counters.parent_stale_copies for v in victims) > 0
    # judged and struck as a silent parent is, and cut off (before: kept, never struck)
    _assert_struck_and_cut(net, w, victims)


def test_a_parent_echoing_the_chunks_it_withheld_is_still_judged_withholding() -> None:
    """A withholding parent that, once suspected, REQUESTs of its child the very chunks it
    withheld and pushes them back (late copies of the pushes it is suspected of: left open by
    the stale-copy rule above, docs/oftp.md §9.2): the child's own chunk, echoed. Before, each
    echo cleared the suspicion (a late copy of a suspected push is what a loss leaves), and the
    attacker kept its substreams for the price of a pull; now such a copy is no push
    (``parent_echoes``) and the child drops it as any withholder."""
    net, w, victims = _busiest_withholds()
    echoed = 0
    skey = net.sid.key
    for v, node, j in _fed_by(net, w, victims):
        first = node.tree.miss_first[j]
        if node.tree.miss_run[j] == 0 or first < 0:
            continue
        chunk = node.log.get(first)
        if chunk is None:
            continue
        # the pull, then the "push": our chunk back, a suspected one, past nothing
        net._deliver(w, sw.Send(v, wire.Request(stream=skey, seq=first)))
        net._deliver(w, sw.Push(v, chunk, net.now + 1.0))
        echoed += 1
    assert echoed > 0
    assert sum(net.nodes[v].counters.parent_echoes for v in victims) > 0
    _assert_struck_and_cut(net, w, victims)


def _sources(net: RecNet, key: bytes, since: float) -> dict[str, int]:
    out: dict[str, int] = {}
    for t, a in net.actions_of(key, sw.Deliver):
        if t >= since:
            out[a.source] = out.get(a.source, 0) + 1
    return out


@pytest.mark.parametrize("mode", ["never", "defect"])
def test_withholding_parent_is_replaced_struck_and_dropped(mode: str) -> None:
    """A parent that accepts SUBSCRIBE and never pushes (``never``: from its first
    STATUS on), or relays honestly and then stops (``defect``), while claiming the
    chunks in its STATUS: its children drop it as parent within a few chunks, pick
    another, strike it each time and, past ``withhold_limit``, cut it off. Their
    chunks come from peers again, not the origin."""
    net = build(10, seed=41, config=WITHHOLD_CFG) if mode == "defect" else None
    if net is None:
        net = RecNet(10, seed=41, delay=0.01, config=WITHHOLD_CFG,
                     source_config=sw.SwarmConfig(chunk_ms=100, upload_kbps=3000))
        w = net.viewers[0]
        _withholder(net, w, 0.0)
        net.produce(True)
        net.tick(10)
        rng = random.Random(41)
        keys = [net.bid.public]
        for v in net.viewers:
            net.join(v, rng.sample(keys, min(4, len(keys))) + ([w] if w in net.nodes and w
                                                              not in keys else []))
            keys.append(v)
            net.tick(2)
    else:
        # the relay with the most children defects
        counts: dict[bytes, int] = {}
        for _, p in _children(net):
            counts[p] = counts.get(p, 0) + 1
        w = max(counts, key=lambda p: counts[p])
        _withholder(net, w, net.now)
    honest = [v for v in net.viewers if v != w]
    victims = [v for v in honest if w in net.nodes[v].peers]
    assert victims
    start = net.now
    net.tick(250)  # 25 s
    cut = [v for v in victims if (v, w, ErrorCode.TOO_MANY_ERRORS) in net.dropped]
    assert cut, "no neighbour cut the withholder off"
    total = sw.SwarmCounters()
    for v in honest:
        c = net.nodes[v].counters
        total.parents_withholding += c.parents_withholding
        total.withhold_strikes += c.withhold_strikes
        total.withholders_dropped += c.withholders_dropped
    assert total.parents_withholding >= total.withhold_strikes >= 3
    assert total.withholders_dropped == len(cut)
    for v in honest:
        assert w not in net.nodes[v].parents
    # after detection: every honest viewer plays everything, and from peers
    mark = net.now
    net.tick(50)
    for v in honest:
        assert_complete(net, v, net.now, {"p2p", "broadcaster", "origin"})
    got = {s: 0 for s in ("p2p", "broadcaster", "origin")}
    for v in honest:
        for s, n in _sources(net, v, mark).items():
            got[s] += n
    during = {s: 0 for s in got}
    for v in honest:
        for s, n in _sources(net, v, start).items():
            during[s] += n
    for s in got:
        during[s] -= got[s]  # [start, mark): while the withholder was a parent somewhere
    share_after = got["origin"] / sum(got.values())
    share_during = during["origin"] / sum(during.values())
    # At the default 0.5 s playout a viewer whose parent's pushes come later than a repair
    # round would repairs only from holders with free slots, or neighbours whose lag says
    # they will have the chunk in time (DelayEstimator.late, repair_by_lag). In this small
    # net with a tight source (6 substream slots: 1.5 copies) trees stay thin after the
    # recovery: 9.2 % ('never') and 2.2 % ('defect') of the chunks still come from the
    # origin after the cut-off, 0 % in the same net without a withholder. While the
    # withholder was a parent: 7.3 % and 9.2 % (20 % and 19.4 % before 2026-12-02, when a
    # late repair round asked only holders: 'never' now loses less during than after).
    # The 10,000-peer simulation (docs/benchmarks.md) is the measure; the run is seeded,
    # in virtual time: exact. 'defect' used to assert after < during too (a defector held
    # places in settled trees: its cut-off showed). With ``silent_parent_open`` and
    # ``deep_look`` on (2026-12-04) the share *during* fell to 7.7 % (the relays past a
    # silent new parent are asked at once) and after is 8.0 %: in this tight net the two
    # are within its noise (during 7.7-15.9 % over the four on/off combinations), so the
    # comparison no longer measures the cut-off; the bound below and the cut-off above do.
    assert share_after <= 0.2, (got, during)
    assert share_during <= 0.2, (got, during)


def test_slow_overloaded_honest_parents_are_not_cut_off() -> None:
    """All honest, upload caps so tight that relays drop late pushes and repairs do
    much of the work: parents may be swapped, but no one is struck or dropped as a
    withholder, and everyone keeps playing."""
    tight = sw.SwarmConfig(chunk_ms=100, upload_kbps=90, bitrate_kbps=100, withhold_limit=3)
    net = build(15, seed=43, config=tight)
    net.tick(200)
    drops = [d for d in net.dropped if d[2] == ErrorCode.TOO_MANY_ERRORS]
    assert not drops
    strikes = sum(net.nodes[v].counters.withhold_strikes for v in net.viewers)
    dropped = sum(net.nodes[v].counters.withholders_dropped for v in net.viewers)
    swaps = sum(net.nodes[v].counters.parents_withholding for v in net.viewers)
    assert dropped == 0, (strikes, swaps)
    for v in net.viewers:
        assert_complete(net, v, net.now, {"p2p", "broadcaster", "origin"})
