"""The broadcaster's end marker (docs/oftp.md §7, §9.5): a signed chunk with FLAG_END and
no payload, after the last chunk. Viewers that hold it want nothing after it, so they
skip nothing after it (before, a stopped broadcaster's viewers gave up chunk after chunk
that was never made: continuity 1.0 -> 0.42 in 8 s); a chunk after it (a restarted
broadcaster) undoes it; an old one replayed by a relay does not end a running stream, and
one not signed by the broadcaster is a bad chunk."""

from __future__ import annotations

import hashlib

import pytest
from swarmnet import SwarmNet

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import (
    FLAG_END,
    FLAG_KEYFRAME,
    FLAG_RUN_START,
    StreamId,
    chunk_signing_bytes,
    is_end,
    sign_chunk,
    sign_end,
    verify_chunk,
)
from oasis.core.wire import ChunkMsg

INTERVAL = 0.1


def _signed(ident: Identity, sid: StreamId, seq: int, flags: int, payload: bytes) -> ChunkMsg:
    sig = ident.sign(chunk_signing_bytes(sid.key, seq, 5_000_000, flags, hashlib.sha256(payload).digest()))
    return ChunkMsg(stream=sid.key, seq=seq, time_us=5_000_000, flags=flags, signature=sig, payload=payload)


def test_only_a_bare_signed_end_marker_verifies() -> None:
    b = Identity.generate()
    sid = StreamId(b.public, "live")
    end = sign_end(b, sid, 7, 5_000_000)
    assert verify_chunk(sid, end) and is_end(end) and end.payload == b""
    # the broadcaster's own signature, but not the marker's form: refused
    assert not verify_chunk(sid, _signed(b, sid, 7, FLAG_END, b"\x47" * 188))  # with media
    assert not verify_chunk(sid, _signed(b, sid, 7, FLAG_END | FLAG_KEYFRAME, b""))
    assert not verify_chunk(sid, _signed(b, sid, 7, 0x04, b""))  # an unknown bit
    assert verify_chunk(sid, _signed(b, sid, 7, FLAG_KEYFRAME, b"x"))
    # a run's first chunk (FLAG_RUN_START, with or without a keyframe): with media only
    assert verify_chunk(sid, _signed(b, sid, 7, FLAG_RUN_START, b"x"))
    assert verify_chunk(sid, _signed(b, sid, 7, FLAG_RUN_START | FLAG_KEYFRAME, b"x"))
    assert not verify_chunk(sid, _signed(b, sid, 7, FLAG_RUN_START | FLAG_END, b""))
    assert not verify_chunk(sid, _signed(b, sid, 7, 0x08, b"x"))  # an unknown bit
    # anyone else's end marker, or the broadcaster's moved to another seq: refused
    assert not verify_chunk(sid, sign_end(Identity.generate(), sid, 7, 5_000_000))
    moved = ChunkMsg(stream=end.stream, seq=3, time_us=end.time_us, flags=end.flags,
                     signature=end.signature, payload=b"")
    assert not verify_chunk(sid, moved)


class EndNet(SwarmNet):
    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self.run_until(self.now + INTERVAL)
            self.produce(self.next_seq % 10 == 0)

    def end(self) -> int:
        """The broadcaster ends the stream: its end marker at the next seq."""
        seq = self.next_seq
        self.next_seq += 1
        chunk = sign_end(self.bid, self.sid, seq, int(self.now * 1e6))
        if self.use_origin:
            self.origin_log[seq] = chunk
        self.source.publish(chunk, self.now)
        self._pump(self.bid.public)
        return seq


def _net(n: int = 8, seed: int = 41) -> EndNet:
    net = EndNet(n, seed=seed, config=sw.SwarmConfig(chunk_ms=100, upload_kbps=6000),
                 source_config=sw.SwarmConfig(chunk_ms=100, upload_kbps=3000))
    net.produce(True)
    net.tick(10)
    keys = [net.bid.public]
    for i, v in enumerate(net.viewers):
        net.join(v, keys[-3:] if i % 2 else keys[:3])
        keys.append(v)
        net.tick(2)
    net.tick(20)
    return net


def _run_quiet(net: EndNet, seconds: float) -> None:
    """Run ``seconds`` with nothing produced."""
    for _ in range(round(seconds / INTERVAL)):
        net.run_until(net.now + INTERVAL)


def _asks(net: EndNet, above: int) -> dict[str, int]:
    """From now on: REQUESTs and origin fetches of seqs above ``above``, by kind (a hook on
    the harness's action drain)."""
    asks = {"request": 0, "origin": 0}
    drain = net.actions_from

    def record(key: bytes, node: sw.Swarm) -> list:
        acts = drain(key, node)
        for a in acts:
            if isinstance(a, sw.Send) and isinstance(a.message, wire.Request) and a.message.seq > above:
                asks["request"] += 1
            elif isinstance(a, sw.FetchOrigin) and a.seq > above:
                asks["origin"] += 1
        return acts

    net.actions_from = record  # type: ignore[method-assign]
    return asks


def test_viewers_skip_nothing_after_the_end_and_ask_for_nothing() -> None:
    net = _net()
    end = net.end()
    asks = _asks(net, end)
    _run_quiet(net, 8.0)
    for v in net.viewers:
        node = net.nodes[v]
        assert node.end_seq == end, v.hex()[:6]
        assert not [s for s in net.skipped[v] if s >= end], (v.hex()[:6], net.skipped[v][-5:])
        got = net.delivered[v]
        assert all(s in got for s in range(node.start_seq or 0, end)), "the chunks before it all came"
        assert not node.repair.wants and node.repair.stall_latest < 0
        assert node.counters.ends == 1
        # no repair timer is left (one in the past would wake the node over and over)
        assert node.repair.next_timer(float("inf")) == float("inf")
        timer = node.get_timer()
        assert timer is not None and timer > net.now
    assert asks == {"request": 0, "origin": 0}  # neither the peers nor the origin asked


def test_without_the_marker_the_same_stop_is_skipped_chunk_after_chunk() -> None:
    """The old behaviour, kept for a broadcaster that dies without a word (a crash, a lost
    network): the viewers' clocks expect chunks that never come; they ask their peers and
    the origin for them and give them up. This is what the marker is for: the test above
    differs only by the net.end() call."""
    net = _net()
    last = net.next_seq - 1
    asks = _asks(net, last)
    _run_quiet(net, 8.0)
    assert all(net.nodes[v].end_seq == -1 for v in net.viewers)
    assert sum(len([s for s in net.skipped[v] if s > last]) for v in net.viewers) > 0
    assert asks["request"] > 0 and asks["origin"] > 0


def test_a_dead_broadcaster_s_expected_chunks_are_not_counted_lost() -> None:
    """The same stop without a marker: the seqs the viewers' clocks expected after the last
    chunk are given up (the player moves on) as *not made*: no neighbour ever held or
    claimed them, so they are not counted as lost. Before, each viewer's continuity fell
    from 1.0 towards 0 for as long as it watched a dead stream. The chunks before the stop
    that did not arrive still count."""
    net = _net()
    last = net.next_seq - 1
    before = {v: net.nodes[v].counters.skipped for v in net.viewers}
    _run_quiet(net, 8.0)
    for v in net.viewers:
        node = net.nodes[v]
        after = [s for s in net.skipped[v] if s > last]
        assert len(after) >= 40, (v.hex()[:6], len(after))  # ~5.5 s of the clock's seqs
        assert sorted(net.unmade[v]) == after, v.hex()[:6]
        assert node.counters.skipped_unmade == len(after)
        assert node.counters.skipped == before[v], v.hex()[:6]


def test_chunks_a_neighbour_claims_are_lost_not_unmade() -> None:
    """A seq a neighbour claims (its STATUS names it or a later one) was made: given up, it
    is a loss even with nothing newer held here. A viewer whose neighbours' chunks stop
    reaching it (their STATUSes still do) and whose origin fetches fail counts them skipped."""
    net = _net(6, seed=45)
    v = net.viewers[-1]
    drain = net.actions_from

    def no_chunks_to_v(key: bytes, node: sw.Swarm) -> list:
        out = []
        for a in drain(key, node):
            if isinstance(a, sw.FetchOrigin) and key == v:  # fails
                net._at(net.now + 2 * net.delay, net._origin_done, key, a.seq, None)
            elif not (isinstance(a, (sw.Push, sw.Send)) and a.peer == v
                      and (isinstance(a, sw.Push) or isinstance(a.message, ChunkMsg))):
                out.append(a)
        return out

    net.actions_from = no_chunks_to_v  # type: ignore[method-assign]
    node = net.nodes[v]
    before = node.counters.skipped
    net.tick(40)
    assert node.counters.skipped - before >= 20, node.counters.skipped - before
    assert net.unmade[v] == [] and node.counters.skipped_unmade == 0


def test_a_chunk_after_the_end_runs_the_stream_again() -> None:
    net = _net(6, seed=43)
    end = net.end()
    _run_quiet(net, 2.0)
    net.next_seq = end + 25  # a restart numbers on from the stream's clock (a gap)
    net.tick(40)
    for v in net.viewers:
        node = net.nodes[v]
        assert node.end_seq == -1
        got = net.delivered[v]
        assert all(s in got for s in range(end + 30, net.next_seq - 5)), v.hex()[:6]


def test_without_the_signed_run_start_the_downtime_counts_lost() -> None:
    """Only the run's first chunk, signed as such (``FLAG_RUN_START``), bounds the downtime:
    a chunk above the marker that is not it (the first ones lost, the viewer asleep; a
    re-audit of session 50 counted 199 chunks made while a viewer slept as not made) leaves
    the gap counted as lost, as before session 50."""
    net = _net(6, seed=43)
    end = net.end()
    _run_quiet(net, 2.5)
    net.next_seq = first = end + 26  # no run-start flag on it
    net.tick(40)
    for v in net.viewers:
        lost = [s for s in net.skipped[v] if s not in net.unmade[v]]
        assert [s for s in lost if end < s < first] == list(range(end + 1, first)), v.hex()[:6]


def test_a_run_whose_start_was_not_seen_leaves_no_downtime() -> None:
    """A marker, then chunks of a run whose first chunk this node never got (here: signed
    without the flag), which dies; then a run that starts with the flag. The seqs between the
    marker and that start are not all downtime -- the middle run made some -- so none is
    taken for unmade; and the marker is used up by the start it bounded (a later start
    after a crash bounds nothing)."""
    net = _net(6, seed=43)
    end = net.end()
    _run_quiet(net, 1.0)
    net.next_seq = end + 11
    net.tick(10)  # a run we did not see start, which then dies without a marker
    _run_quiet(net, 1.0)
    net.next_seq += 10
    net.run_start_next = True
    net.tick(20)
    for v in net.viewers:
        repair = net.nodes[v].repair
        assert (repair.end_gap_lo, repair.end_gap_hi) == (-1, -1), v.hex()[:6]
        assert repair.last_end == -1  # used up
    # and one that did bound a downtime is used up too
    net2 = _net(6, seed=44)
    end2 = net2.end()
    _run_quiet(net2, 1.0)
    net2.next_seq, net2.run_start_next = end2 + 11, True
    net2.tick(10)
    v = net2.viewers[0]
    assert (net2.nodes[v].repair.end_gap_lo, net2.nodes[v].repair.end_gap_hi) == (end2, end2 + 11)
    _run_quiet(net2, 1.0)  # a crash: no marker
    net2.next_seq += 10
    net2.run_start_next = True
    net2.tick(10)
    assert (net2.nodes[v].repair.end_gap_lo, net2.nodes[v].repair.end_gap_hi) == (end2, end2 + 11)


@pytest.mark.parametrize("down_s", [2.5, 40.0])
def test_a_restarted_broadcasters_downtime_is_not_made_not_lost(down_s: float) -> None:
    """The seqs between the end marker and a restarted broadcaster's first chunk (its clock
    numbers on over the downtime) were never made: each viewer gives them up as not made,
    not skipped, whether they lie within its wanting window (2.5 s down: wanted, then given
    up one by one) or fall below it (40 s: one counted run). Before (session 49), they
    counted as lost: ~30 a second of downtime off every viewer's continuity."""
    net = _net(6, seed=43)
    end = net.end()
    _run_quiet(net, down_s)
    before = {v: net.nodes[v].counters.skipped for v in net.viewers}
    net.next_seq = end + 1 + round(down_s / INTERVAL)  # the stream's clock over the downtime
    first = net.next_seq
    net.run_start_next = True  # (its first chunk is signed as the run's first)
    net.tick(40)
    for v in net.viewers:
        node = net.nodes[v]
        got = net.delivered[v]
        assert all(s in got for s in range(first + 5, net.next_seq - 5)), v.hex()[:6]
        lost = [s for s in net.skipped[v] if s not in net.unmade[v]]
        assert not [s for s in lost if end < s < first], (v.hex()[:6], lost[:5])
        assert node.counters.skipped_unmade >= first - end - 1 - len([s for s in got if end < s < first])
        assert node.counters.skipped - before[v] <= 3, v.hex()[:6]  # (a new chunk lost, at most)


def test_an_old_end_marker_replayed_does_not_end_a_running_stream() -> None:
    """A relay that kept the marker of an earlier run sends it to a viewer that joined the
    restarted stream (it lacks that seq): verified, held, but not the newest: no end."""
    net = _net(4, seed=47)
    end = net.end()
    old = net.source.log.get(end)
    assert old is not None and is_end(old)
    _run_quiet(net, 1.0)
    net.next_seq = end + 10
    net.tick(20)
    late = Identity.generate().public
    net.viewers.append(late)
    net.join(late, [net.viewers[0]])
    net.tick(20)
    node = net.nodes[late]
    assert node.start_seq is not None and node.start_seq > end
    node.on_chunk(net.viewers[0], old, net.now)  # (a neighbour's replay)
    assert node.end_seq == -1 and node.counters.ends == 0 and node.counters.ends_ignored == 1
    net.tick(10)
    assert not [s for s in net.skipped[late] if s > node.start_seq]


def test_a_chunk_below_the_window_is_counted_and_dropped_before_its_signature_is_checked() -> None:
    """Found 2026-12-06 from outside: chunks of an earlier run replayed by a neighbour were
    dropped without a trace, each after an Ed25519 check. Below the log's window a chunk is
    now counted (``chunks_too_old``) and dropped before the check: a forged one there costs
    nothing and is not a bad chunk either."""
    net = EndNet(3, seed=49, config=sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, window_chunks=40),
                 source_config=sw.SwarmConfig(chunk_ms=100, upload_kbps=3000, window_chunks=40))
    net.produce(True)
    net.tick(5)
    first = net.source.log.get(1)
    assert first is not None
    keys = [net.bid.public]
    for v in net.viewers:
        net.join(v, keys[:2])
        keys.append(v)
    net.tick(80)  # seq 1 is far below every node's window of 40 now
    v = net.viewers[-1]
    node = net.nodes[v]
    assert node.log.latest - node.log.window > 1
    before = (node.counters.chunks_too_old, node.counters.bad_chunks, node.counters.duplicates)
    node.on_chunk(net.viewers[0], first, net.now)  # a neighbour's replay of a genuine old chunk
    forged = ChunkMsg(stream=first.stream, seq=1, time_us=first.time_us, flags=0, signature=b"\0" * 64,
                      payload=b"junk")
    node.on_chunk(net.viewers[0], forged, net.now)
    assert (node.counters.chunks_too_old, node.counters.bad_chunks, node.counters.duplicates) \
        == (before[0] + 2, before[1], before[2])
    assert node.log.get(1) is None


def test_a_stale_end_marker_does_not_end_a_newcomers_stream() -> None:
    """The same replay to a newcomer before its first chunk (its log empty, so the marker
    would be the newest seq it holds): older than END_MAX_AGE, it ends nothing."""
    net = _net(2, seed=59)
    end = net.end()
    old = net.source.log.get(end)
    assert old is not None
    _run_quiet(net, sw.END_MAX_AGE + 1)
    fresh = sw.Swarm(net.sid, Identity.generate().public, net.config, now=net.now)
    fresh.add_peer(net.viewers[0], net.now)
    fresh.on_chunk(net.viewers[0], old, net.now)
    assert fresh.log.latest == end and fresh.end_seq == -1 and fresh.counters.ends_ignored == 1
    young = sw.Swarm(net.sid, Identity.generate().public, net.config, now=old.time_us / 1e6 + 1)
    young.add_peer(net.viewers[0], old.time_us / 1e6 + 1)
    young.on_chunk(net.viewers[0], old, old.time_us / 1e6 + 1)  # (while it was fresh: taken)
    assert young.end_seq == end


def test_an_end_marker_not_signed_by_the_broadcaster_is_a_bad_chunk() -> None:
    net = _net(3, seed=53)
    v, forger = net.viewers[0], net.viewers[1]
    node = net.nodes[v]
    before = node.counters.bad_chunks
    forged = sign_end(Identity.generate(), net.sid, net.next_seq, int(net.now * 1e6))
    node.on_chunk(forger, forged, net.now)
    assert node.counters.bad_chunks == before + 1 and node.end_seq == -1
    # nor can a relay turn a real chunk into an end marker
    real = sign_chunk(net.bid, net.sid, net.next_seq, int(net.now * 1e6), False, b"x" * 100)
    stripped = ChunkMsg(stream=real.stream, seq=real.seq, time_us=real.time_us, flags=FLAG_END,
                        signature=real.signature, payload=b"")
    node.on_chunk(forger, stripped, net.now)
    assert node.counters.bad_chunks == before + 2 and node.end_seq == -1


def test_the_end_reaches_a_neighbour_no_tree_feeds_and_nobody_is_asked_for_it() -> None:
    """A viewer that joined the broadcaster a moment before the end (not yet a child on the
    marker's substream: a viewer started from the origin looks the same) is told too: the
    marker goes to every neighbour, once per node. Found 2026-12-06 under load: such a viewer
    never learnt the end, its broadcaster gone a moment later."""
    net = _net(4, seed=61)
    late = Identity.generate().public
    net.viewers.append(late)
    net.join(late, [net.bid.public])  # its SUBSCRIBE not even answered yet
    node = net.nodes[late]
    assert not any(st.children_mask for st in net.source.peers.values() if st.key == late)
    asks = _asks(net, -1)
    others = net.viewers[:-1]  # (the late one's own join may see a push before its answer)
    before = {v: net.nodes[v].counters.pushes_unsolicited for v in others}
    end = net.end()
    net.run_until(net.now + 0.2)  # a few one-way delays: no repair timer yet
    assert node.end_seq == end
    assert all(net.nodes[v].end_seq == end for v in net.viewers)
    assert asks["origin"] == 0
    # nobody took the marker's copies from its other neighbours for pushes out of turn
    assert {v: net.nodes[v].counters.pushes_unsolicited for v in others} == before
    # once a node: each viewer sent it on to each neighbour at most once
    assert all(net.nodes[v].counters.ends == 1 for v in net.viewers)
