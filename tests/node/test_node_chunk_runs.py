"""OFTP 2 chunk runs on real nodes (loopback, both QUIC stacks): several framed chunks on one
QUIC stream, a new stream per run; a stale chunk still unsent resets its run and the next
chunk opens another; a peer's oversized or truncated frame is refused on the real path; a
node that offers only OFTP 1 still gets every chunk (docs/oftp.md §2, "Chunk streams")."""

from __future__ import annotations

import pytest
from procs import chunks_received
from procs import until as _wait

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.node.link import RUN_HOL_RTTS, RUN_LANES, Link
from oasis.node.node import Node
from oasis.node.quicstack import STACKS

SLACK = 10.0


async def _pair(stack: str | None, monkeypatch: pytest.MonkeyPatch,
                run: int | None, hol: float | None = 0.0) -> tuple[Node, Node, Link, Link]:
    """Two started nodes on ``stack`` (None: the default) linked; ``run`` chunks a run
    (None: no ``$OASIS_CHUNK_RUN``, the node's default); ``hol``: the endpoints'
    ``run_hol_rtts`` (0: a chunk always continues its lane's run, however close behind the
    last; None: the default)."""
    if run is None:
        monkeypatch.delenv("OASIS_CHUNK_RUN", raising=False)
    else:
        monkeypatch.setenv("OASIS_CHUNK_RUN", str(run))
    a = Node(Identity.generate(), sw.SwarmConfig(), quic=stack)
    b = Node(Identity.generate(), sw.SwarmConfig(), quic=stack)
    if hol is not None:
        a.endpoint.run_hol_rtts = b.endpoint.run_hol_rtts = hol
    await a.start()
    await b.start()
    assert await a.connect(b.peer_id, *b.endpoint.address)
    await _wait(lambda: a.identity.public in b.links_by_peer, SLACK)
    return a, b, a.links_by_peer[b.identity.public], b.links_by_peer[a.identity.public]


def _chunks(name: str, n: int, size: int = 6000, step: int = RUN_LANES) -> list[wire.ChunkMsg]:
    """``n`` signed chunks, seqs ``step`` apart (by default all of one lane: one run)."""
    bc = Identity.generate()
    sid = StreamId(bc.public, name)
    return [sign_chunk(bc, sid, step * k, 1_000_000 + k, k == 0, bytes([k % 251]) * size)
            for k in range(n)]


@pytest.mark.parametrize("stack", STACKS)
async def test_chunks_cross_in_runs_one_stream_per_run(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, la, lb = await _pair(stack, monkeypatch, 4)
    got = chunks_received(b)
    try:
        assert la.session.version == lb.session.version == 2
        sids: list[int] = []
        sent = _chunks("runs", 10)
        for c in sent:
            la.send_chunk(c, deadline=a.clock() + 30.0)
            if la.run_of(c.seq).sid >= 0:
                sids.append(la.run_of(c.seq).sid)
        await _wait(lambda: len(got) == 10, SLACK)
        # in order within a run; QUIC does not order one stream against another
        assert sorted(got, key=lambda c: c.seq) == sent
        for run in (sent[0:4], sent[4:8], sent[8:]):
            assert [c for c in got if c in run] == run
        # 4 + 4 + 2: two runs ended (FIN) and one open
        assert len(set(sids)) == 3 and la.run_of(0).chunks == 2 and la.runs_cut == 0
        assert lb.session.counters.chunks_in == 10 and lb.session.counters.violations == 0
        assert lb.session.counters.chunk_bytes_buffered == 0
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("stack", STACKS)
async def test_each_lane_has_its_own_run(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of different lanes (seq modulo RUN_LANES: a substream each) go on different
    runs, so a packet lost on one holds back none of the others; each lane's run goes on."""
    a, b, la, lb = await _pair(stack, monkeypatch, 16)
    got = chunks_received(b)
    try:
        sent = _chunks("lanes", 2 * RUN_LANES, step=1)
        for c in sent:
            la.send_chunk(c, deadline=a.clock() + 30.0)
        await _wait(lambda: len(got) == len(sent), SLACK)
        assert sorted(got, key=lambda c: c.seq) == sent
        sids = [la.run_of(k).sid for k in range(RUN_LANES)]
        assert -1 not in sids and len(set(sids)) == RUN_LANES
        assert all(la.run_of(k).chunks == 2 for k in range(RUN_LANES)) and la.runs_cut == 0
        assert lb.session.counters.violations == 0
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("stack", STACKS)
async def test_a_chunk_close_behind_its_lane_s_last_ends_its_run(
        stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk written within ``run_hol_rtts`` smoothed RTTs of its lane's last one (here
    any: a huge multiple) ends its run (FIN with it): the next, as close behind, goes on a
    stream of its own, which a loss on this one cannot hold back. Every chunk arrives, none
    is refused, the ended runs leave nothing buffered at the receiver, and a chunk far enough
    behind (the default, on loopback) continues a run again."""
    a, b, la, lb = await _pair(stack, monkeypatch, 16, hol=1e6)
    got = chunks_received(b)
    try:
        sent = _chunks("cut", 5)
        sids = []
        for c in sent:
            sids.append(la.run_of(c.seq).sid)  # the run open before it (-1: none)
            la.send_chunk(c, deadline=a.clock() + 30.0)
        await _wait(lambda: len(got) == 5, SLACK)
        assert sorted(got, key=lambda c: c.seq) == sent
        # the first opened a run, the second ended it, each later one went alone
        assert sids[1] >= 0 and sids[2:] == [-1, -1, -1] and la.run_of(0).sid == -1
        assert la.runs_cut == 4 and a.endpoint.counters["chunk_runs_cut"] == 4
        await _wait(lambda: lb.session.counters.chunk_bytes_buffered == 0, SLACK)
        assert lb.session.counters.violations == 0 and lb.session.counters.runs_ended_in_frame == 0
        a.endpoint.run_hol_rtts = RUN_HOL_RTTS
        written = a.endpoint.loop.time()
        await _wait(lambda: a.endpoint.loop.time() - written > RUN_HOL_RTTS * la.rtt + 0.002, SLACK)
        more = _chunks("again", 2)
        written = a.endpoint.loop.time()
        la.send_chunk(more[0], deadline=a.clock() + 30.0)
        await _wait(lambda: more[0] in got and a.endpoint.loop.time() - written > RUN_HOL_RTTS * la.rtt + 0.002,
                    SLACK)
        la.send_chunk(more[1], deadline=a.clock() + 30.0)
        assert la.run_of(0).sid >= 0 and la.run_of(0).chunks == 2 and la.runs_cut == 4
        await _wait(lambda: more[1] in got, SLACK)
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("stack", STACKS)
async def test_a_stale_unsent_chunk_resets_its_run_and_the_next_opens_another(
        stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk whose deadline passes before its bytes left is reset with its run (nothing
    stale is sent later); the chunk before it, on the wire, arrived; the chunk queued behind
    it, still in time, is written again on a new run and arrives, and so does the next; the
    receiver keeps no bytes of the reset run."""
    a, b, la, lb = await _pair(stack, monkeypatch, 16)
    got = chunks_received(b)
    try:
        first, behind, nxt = _chunks("stale", 3)
        stale = _chunks("stale2", 1, size=300_000)[0]  # far over QUIC's window: a tail waits
        la.send_chunk(first, deadline=a.clock() + 30.0)
        await _wait(lambda: got == [first], SLACK)
        lane = la.run_of(0)
        run = lane.sid
        la.send_chunk(stale, deadline=a.clock() - 0.01)
        la.send_chunk(behind, deadline=a.clock() + 30.0)
        assert la._run_sent(lane) < lane.bytes  # not all on the wire
        la._check_runs(a.clock())
        assert la.runs_reset == 1 and la.run_chunks_resent == 1
        assert a.endpoint.counters["chunk_streams_reset"] == 1
        assert lane.sid not in (-1, run) and lane.chunks == 1
        la.send_chunk(nxt, deadline=a.clock() + 30.0)
        await _wait(lambda: got == [first, behind, nxt], SLACK)
        await _wait(lambda: lb.session.counters.chunk_bytes_buffered == 0, SLACK)
        assert lb.session.counters.violations == 0
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("stack", STACKS)
async def test_the_link_resets_a_stuck_run_on_its_own_at_the_deadline(
        stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No one calls _check_run here: the link's deadline timer does, for a run whose chunk
    cannot leave (the peer stopped reading, QUIC's window is full)."""
    a, b, la, lb = await _pair(stack, monkeypatch, 16)
    try:
        assert b.endpoint.transport is not None
        b.endpoint.loop.remove_reader(b.endpoint.transport.sock.fileno())  # b hears nothing more
        for c in _chunks("deaf", 3, size=300_000):  # far over QUIC's first window
            la.send_chunk(c, deadline=a.clock() + 0.3)
        await _wait(lambda: la.runs_reset == 1, SLACK)
        assert la.run_of(0).sid == -1 and not la.run_of(0).due
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("stack", STACKS)
async def test_a_peer_s_oversized_or_truncated_run_frame_is_refused(
        stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile sender on the real path: a frame header over MAX_CHUNK_MESSAGE stops that run
    (TOO_LARGE, nothing buffered); a run whose FIN cuts a frame is MALFORMED and its bytes
    freed; the link stays up and carries the next chunk."""
    a, b, la, lb = await _pair(stack, monkeypatch, 16)
    got = chunks_received(b)
    try:
        huge = la.quic.get_next_available_stream_id(is_unidirectional=True)
        la.quic.send_stream_data(huge, (wire.MAX_CHUNK_MESSAGE + 1).to_bytes(4, "big") + b"x" * 5000,
                                 end_stream=False)
        la.transmit()
        await _wait(lambda: lb.session.counters.chunk_streams_stopped == 1, SLACK)
        cut = la.quic.get_next_available_stream_id(is_unidirectional=True)
        frame = wire.frame_chunk(wire.encode(_chunks("cut", 1)[0]))
        la.quic.send_stream_data(cut, frame[:3000], end_stream=True)
        la.transmit()
        await _wait(lambda: lb.session.counters.runs_ended_in_frame == 1, SLACK)
        assert lb.session.counters.violations == 2 and lb.session.authenticated
        assert lb.session.counters.chunk_bytes_buffered == 0 and not got
        ok = _chunks("after", 1)[0]
        la.send_chunk(ok, deadline=a.clock() + 30.0)
        await _wait(lambda: got == [ok], SLACK)
    finally:
        await a.close()
        await b.close()


async def test_a_node_left_at_its_defaults_sends_runs_of_the_default_length(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``$OASIS_CHUNK_RUN``, no ``chunk_run``: the node's default, runs of
    ``DEFAULT_CHUNK_RUN`` (16) chunks, one stream each, every chunk delivered in order."""
    from oasis.node.link import DEFAULT_CHUNK_RUN
    assert DEFAULT_CHUNK_RUN == 16 and RUN_HOL_RTTS == 2.0
    a, b, la, lb = await _pair(None, monkeypatch, None, hol=None)
    got = chunks_received(b)
    try:
        assert a.endpoint.chunk_run == b.endpoint.chunk_run == DEFAULT_CHUNK_RUN
        assert a.endpoint.run_hol_rtts == RUN_HOL_RTTS
        assert la.session.version == lb.session.version == 2
        n = DEFAULT_CHUNK_RUN + 3
        sent = _chunks("default", n)
        sids: list[int] = []
        loop = a.endpoint.loop
        for c in sent:
            # each chunk more than RUN_HOL_RTTS round trips after the last: it continues the run
            written = loop.time()
            la.send_chunk(c, deadline=a.clock() + 30.0)
            sids.append(la.run_of(c.seq).sid)
            await _wait(lambda c=c, written=written: c in got and loop.time() - written > RUN_HOL_RTTS * la.rtt + 0.002,
                        SLACK)
        assert la.runs_cut == 0
        assert sorted(got, key=lambda c: c.seq) == sent
        # one run ended (FIN) at its 16th chunk, the second open with the last three
        assert sids[DEFAULT_CHUNK_RUN - 1] == -1 and len(set(sids[:DEFAULT_CHUNK_RUN - 1])) == 1
        assert len(set(sids[DEFAULT_CHUNK_RUN:])) == 1 and la.run_of(0).chunks == 3
        assert lb.session.counters.violations == 0
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("old", ["dialler", "listener"])
async def test_a_node_offering_only_oftp_1_gets_every_chunk_a_stream_each(
        old: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OASIS_CHUNK_RUN", "16")
    a = Node(Identity.generate(), sw.SwarmConfig())
    b = Node(Identity.generate(), sw.SwarmConfig())
    (a if old == "dialler" else b).endpoint.oftp_versions = (1,)
    await a.start()
    await b.start()
    got = chunks_received(b)
    try:
        assert await a.connect(b.peer_id, *b.endpoint.address)
        await _wait(lambda: a.identity.public in b.links_by_peer, SLACK)
        la, lb = a.links_by_peer[b.identity.public], b.links_by_peer[a.identity.public]
        assert la.session.version == lb.session.version == 1
        sent = _chunks("old", 5)
        for c in sent:
            la.send_chunk(c, deadline=a.clock() + 30.0)
        assert all(r.sid == -1 for r in la._runs) and len(la._chunk_deadlines) >= 1
        await _wait(lambda: len(got) == 5, SLACK)
        assert got == sent and lb.session.counters.violations == 0
    finally:
        await a.close()
        await b.close()


def test_the_run_length_comes_from_the_argument_then_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from oasis.node.link import DEFAULT_CHUNK_RUN, chunk_run_length
    monkeypatch.delenv("OASIS_CHUNK_RUN", raising=False)
    assert chunk_run_length() == DEFAULT_CHUNK_RUN
    monkeypatch.setenv("OASIS_CHUNK_RUN", "3")
    assert chunk_run_length() == 3 and chunk_run_length(1) == 1
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="chunk run length"):
            chunk_run_length(bad)


@pytest.mark.parametrize("stack", STACKS)
async def test_a_burst_past_the_peer_s_stream_credit_keeps_the_link(
        stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """300 chunks written to one peer in one loop tick (a burst after a stall), each close
    behind its lane's last: each would end its run, a stream per chunk, past the peer's
    stream credit (100 at the start). qh3 refuses such a stream, and the link took the refusal
    for the connection's end (found by an attack audit, 2026-12-07). Now the runs go on while
    the credit is short: every chunk arrives and the link stays up."""
    from oasis.core import session as ss

    a, b, la, lb = await _pair(stack, monkeypatch, 16, hol=1e6)
    got: list[wire.ChunkMsg] = []
    closed: list[ss.Closed] = []
    on_event = b.endpoint.on_event

    def record(link: Link, ev: object) -> None:
        if isinstance(ev, ss.ChunkReceived):
            got.append(ev.chunk)  # swallowed: b has not joined this stream (its policy would score it)
            return
        if isinstance(ev, ss.Closed):
            closed.append(ev)
        on_event(link, ev)

    b.endpoint.on_event = record
    try:
        sent = _chunks("burst", 300, size=1000)
        for c in sent:
            la.send_chunk(c, deadline=a.clock() + 30.0)
        await _wait(lambda: len(got) == len(sent) or bool(closed) or la.closed, SLACK)
        assert not closed and not la.closed and not lb.closed, closed
        assert sorted(got, key=lambda c: c.seq) == sent
        assert a.endpoint.counters["quic_refused"] == 0 and a.endpoint.counters["chunk_no_stream"] == 0
        if la.stack.name == "qh3":  # cut while the credit lasted, then runs again (aioquic
            assert 0 < la.runs_cut < len(sent) // 2  # holds a stream past it: every one cut)
        assert lb.session.counters.violations == 0
    finally:
        await a.close()
        await b.close()


async def test_copies_reset_unsent_reach_the_uplink_probe_of_the_stream_whose_child_it_is(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path of the probe's drop signal (docs/oftp.md §9.7): a child that stops
    reading, a run reset at its deadline, and the stream's core hears that its copies to
    that child were dropped (its vote for busy at the next decision)."""
    a, b, la, lb = await _pair(None, monkeypatch, 16)
    try:
        cfg = sw.SwarmConfig(bitrate_kbps=1500, upload_kbps=6000, upload_max_kbps=12000,
                             upload_min_kbps=2250)
        ls = a.add_stream(StreamId(a.identity.public, "probe"), is_source=True, config=cfg)
        kid = b.identity.public
        if kid not in ls.swarm.peers:
            ls.swarm.add_peer(kid, a.clock(), rtt=0.01)
        ls.swarm.on_message(kid, wire.Subscribe(stream=ls.sid.key, mask=0b1111, substreams=4), a.clock())
        assert ls.swarm.uplink is not None and ls.swarm.peers[kid].children_mask
        assert b.endpoint.transport is not None
        b.endpoint.loop.remove_reader(b.endpoint.transport.sock.fileno())  # b hears nothing more
        for c in _chunks("deaf", 3, size=300_000):  # far over QUIC's first window
            la.send_chunk(c, deadline=a.clock() + 0.3)
        await _wait(lambda: la.runs_reset == 1, SLACK)
        assert ls.swarm.counters.pushes_dropped >= 1 and kid in ls.swarm.uplink.drops
        # with the bytes never sent (the probe's delivered rate leaves them out): most of the
        # 900 kB, past what QUIC's window let out before b went deaf
        assert 100_000 < ls.swarm.uplink.dropped_bytes <= 3 * 301_000
    finally:
        await a.close()
        await b.close()
