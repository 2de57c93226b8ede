"""The node on either QUIC stack (aioquic, qh3), and the two stacks talking to each other.

Real QUIC on loopback, real nodes: a link comes up with both keys proven, a signed
chunk crosses it, pinning refuses a wrong key, and a node on one stack serves a
viewer on the other (a swarm mixes versions and platforms).
"""

from __future__ import annotations

import itertools

import pytest
from procs import chunks_received
from procs import until as _wait

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.core.wire import ErrorCode
from oasis.node.link import Link
from oasis.node.node import Node
from oasis.node.quicstack import STACKS, make_stack, stack_name

SLACK = 10.0
PAIRS = list(itertools.product(STACKS, STACKS))


async def _node(stack: str) -> Node:
    n = Node(Identity.generate(), sw.SwarmConfig(), quic=stack)
    await n.start()
    return n


def test_the_stack_comes_from_the_argument_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OASIS_QUIC", raising=False)
    assert stack_name() == "qh3" and make_stack().name == "qh3"
    monkeypatch.setenv("OASIS_QUIC", "aioquic")
    assert stack_name() == "aioquic" and make_stack().name == "aioquic"
    assert stack_name("qh3") == "qh3"
    monkeypatch.setenv("OASIS_QUIC", "quiche")
    with pytest.raises(ValueError, match="unknown QUIC stack 'quiche'"):
        stack_name()


@pytest.mark.parametrize(("dialler", "listener"), PAIRS)
async def test_a_link_authenticates_and_carries_a_signed_chunk(dialler: str, listener: str) -> None:
    a, b = await _node(dialler), await _node(listener)
    got = chunks_received(b)
    try:
        assert a.endpoint.stack.name == dialler and b.endpoint.stack.name == listener
        assert await a.connect(b.peer_id, *b.endpoint.address)
        await _wait(lambda: a.identity.public in b.links_by_peer, SLACK)
        la, lb = a.links_by_peer[b.identity.public], b.links_by_peer[a.identity.public]
        assert la.peer_key == b.identity.public and lb.peer_key == a.identity.public
        # Only aioquic's TLS server asks the dialler for its certificate; it then holds
        # the key AUTH proved. qh3's cannot: the listener has AUTH alone.
        assert lb.tls_key == (a.identity.public if listener == "aioquic" else None)
        # past the handshake a qh3 link drives qh3's native core directly (its flushes,
        # timer): the chunk below crosses that path
        assert (la._core is not None) == (dialler == "qh3")
        assert (lb._core is not None) == (listener == "qh3")
        await _wait(lambda: la.rtt > 0 and lb.rtt > 0, SLACK)
        assert la.rtt < 1.0 and lb.rtt < 1.0
        broadcaster = Identity.generate()
        sid = StreamId(broadcaster.public, "stack-test")
        chunk = sign_chunk(broadcaster, sid, 7, 1_000_000, True, b"\x47" * 20_000)
        la.send_chunk(chunk, deadline=a.clock() + 5.0)
        await _wait(lambda: bool(got), SLACK)
        assert got[0].seq == 7 and got[0].payload == chunk.payload
        assert la.control_unsent() == 0
    finally:
        await a.close()
        await b.close()


async def test_a_chunk_comes_to_the_session_in_pieces_of_many_packets() -> None:
    """qh3 hands a chunk stream over one event per QUIC packet; the link gives the session
    the consecutive pieces of one stream in one call (not ~15 calls a chunk), and every
    chunk still arrives whole and in order."""
    a, b = await _node("qh3"), await _node("qh3")
    got = chunks_received(b)
    try:
        assert await a.connect(b.peer_id, *b.endpoint.address)
        await _wait(lambda: a.identity.public in b.links_by_peer, SLACK)
        la, lb = a.links_by_peer[b.identity.public], b.links_by_peer[a.identity.public]
        pieces: list[int] = []
        real = lb.session.receive_chunk_stream

        def counted(sid: int, data: bytes, end: bool, now: float) -> None:
            pieces.append(len(data))
            real(sid, data, end, now)

        lb.session.receive_chunk_stream = counted  # type: ignore[method-assign,assignment]
        broadcaster = Identity.generate()
        sid = StreamId(broadcaster.public, "pieces")
        sent = [sign_chunk(broadcaster, sid, n, 1_000_000 + n, n == 0, bytes([n]) * 20_000)
                for n in range(3)]
        for c in sent:
            la.send_chunk(c, deadline=a.clock() + 5.0)
        await _wait(lambda: len(got) == 3, SLACK)
        assert got == sent
        # ~16 packets a chunk: the session saw far fewer calls, most of many packets each
        assert len(pieces) < 3 * 16 and max(pieces) > 5 * 1400 and sum(pieces) > 3 * 20_000
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize(("dialler", "listener"), PAIRS)
async def test_a_wrong_pinned_key_aborts_on_every_stack(dialler: str, listener: str) -> None:
    a, b = await _node(dialler), await _node(listener)
    impostor = Identity.generate()  # the id we think is at b's address
    try:
        assert not await a.connect(impostor.peer_id, *b.endpoint.address, timeout=5.0)
        assert a.counters["dial_failures"] == 1
        assert a.links_by_peer == {} and a.identity.public not in b.links_by_peer
    finally:
        await a.close()
        await b.close()


async def test_a_closed_link_is_forgotten_on_qh3() -> None:
    """qh3's connection ends in TERMINATED like aioquic's: both endpoints drop the link."""
    a, b = await _node("qh3"), await _node("qh3")
    try:
        assert await a.connect(b.peer_id, *b.endpoint.address)
        await _wait(lambda: a.identity.public in b.links_by_peer, SLACK)
        a.links_by_peer[b.identity.public].close(ErrorCode.OVERLOADED, "test")
        await _wait(lambda: not a.endpoint.links and not b.endpoint.links, SLACK)
    finally:
        await a.close()
        await b.close()


async def test_calls_on_a_closed_qh3_connection_are_counted_not_raised() -> None:
    """qh3 raises for any call on a closed connection (aioquic is silent): a chunk pushed,
    a PING or a close on such a link must not escape into the node (a broadcaster died of
    it under the hostile tool) -- the link counts it and ends."""
    a, b = await _node("qh3"), await _node("qh3")
    try:
        assert await a.connect(b.peer_id, *b.endpoint.address)
        la = a.links_by_peer[b.identity.public]
        la.quic.close(error_code=0x100, reason_phrase="closed under the link")
        broadcaster = Identity.generate()
        chunk = sign_chunk(broadcaster, StreamId(broadcaster.public, "s"), 1, 1, True, b"x" * 5000)
        la.send_chunk(chunk, deadline=a.clock() + 5.0)
        la.probe(a.loop.time())
        la.close(ErrorCode.SHUTDOWN, "done")
        la.transmit_now()
        assert a.endpoint.counters["quic_refused"] >= 1
        assert la.session.closed
        await _wait(lambda: la not in a.endpoint.links, SLACK)  # forgotten once QUIC terminates
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("stack", STACKS)
async def test_a_chunk_stream_is_reset_at_its_deadline_until_it_is_acknowledged(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk stream not acknowledged at its deadline is reset, so QUIC stops
    retransmitting a stale chunk; one the peer acknowledged is left alone. qh3 tells only
    what is queued, not what is acknowledged: a stream it sent once must still be reset."""
    monkeypatch.setenv("OASIS_CHUNK_RUN", "1")  # a stream per chunk (runs: test_node_chunk_runs.py)
    a, b = await _node(stack), await _node(stack)
    seen = chunks_received(b)
    try:
        assert await a.connect(b.peer_id, *b.endpoint.address)
        la = a.links_by_peer[b.identity.public]
        bc = Identity.generate()
        sid = StreamId(bc.public, "resets")
        la.send_chunk(sign_chunk(bc, sid, 1, 1, True, b"a" * 6000), deadline=a.clock() + 60.0)
        s1 = max(la._chunk_deadlines)
        la.transmit_now()  # on the wire; its ACK cannot have come back yet
        assert la.control_unsent() == 0
        drops: list[float] = []
        a.endpoint.on_chunks_dropped = lambda link, slack, nbytes: drops.append(slack)
        la.expire_chunk(s1)
        assert a.endpoint.counters["chunk_streams_reset"] == 1
        assert drops == []  # all of it went out: reset, but no drop for the uplink probe
        la.send_chunk(sign_chunk(bc, sid, 2, 1, True, b"b" * 6000), deadline=a.clock() + 60.0)
        s2 = max(la._chunk_deadlines)
        await _wait(lambda: any(c.seq == 2 for c in seen), SLACK)
        await _wait(lambda: _acknowledged(la, s2), SLACK)
        la.expire_chunk(s2)
        assert a.endpoint.counters["chunk_streams_reset"] == 1  # acknowledged: left alone
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("stack", STACKS)
async def test_the_link_resets_a_chunk_stream_on_its_own_once_the_deadline_passes(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No one calls expire_chunk here: the link's one deadline timer does, for a chunk the
    peer never acknowledges (it stopped reading its socket)."""
    monkeypatch.setenv("OASIS_CHUNK_RUN", "1")  # a stream per chunk (runs: test_node_chunk_runs.py)
    a, b = await _node(stack), await _node(stack)
    try:
        assert await a.connect(b.peer_id, *b.endpoint.address)
        la = a.links_by_peer[b.identity.public]
        assert b.endpoint.transport is not None
        b.endpoint.loop.remove_reader(b.endpoint.transport.sock.fileno())  # b hears nothing more
        bc = Identity.generate()
        sid = StreamId(bc.public, "deaf")
        drops: list[float] = []
        sizes: list[int] = []
        a.endpoint.on_chunks_dropped = lambda link, slack, nbytes: (drops.append(slack), sizes.append(nbytes))
        la.send_chunk(sign_chunk(bc, sid, 1, 1, True, b"a" * 6000), deadline=a.clock() + 0.2)
        la.transmit_now()  # on the wire whole (QUIC's first window), before the next shares it
        assert la.stack.unsent(la.quic, max(la._chunk_deadlines)) == 0
        la.send_chunk(sign_chunk(bc, sid, 2, 1, True, b"b" * 300_000), deadline=a.clock() + 0.3)
        assert len(la._chunk_deadlines) == 2
        await _wait(lambda: a.endpoint.counters["chunk_streams_reset"] == 2, SLACK)
        assert not la._chunk_deadlines
        # the second, far over QUIC's window, had bytes never sent: a drop, with the time it
        # had when written. The first went out whole: on qh3 (whose "unsent" is bytes never
        # sent) no drop; aioquic counts bytes it declared lost and will send again (b never
        # acknowledges) as unsent, so its first is a drop too
        assert any(0.25 < d <= 0.3 for d in drops)
        assert len(drops) == (1 if stack == "qh3" else 2)
        # with the bytes it dropped: the part of the 300-kB chunk QUIC's window kept back
        big = sizes[drops.index(next(d for d in drops if 0.25 < d <= 0.3))]
        assert 100_000 < big < 300_200
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("stack", STACKS)
async def test_acknowledged_chunk_streams_are_forgotten_at_the_next_push(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk stream QUIC is done with needs no deadline: the next push forgets it, so the
    link's deadline timer waits only for streams still open, and none is reset."""
    monkeypatch.setenv("OASIS_CHUNK_RUN", "1")  # a stream per chunk (runs: test_node_chunk_runs.py)
    a, b = await _node(stack), await _node(stack)
    seen = chunks_received(b)
    try:
        assert await a.connect(b.peer_id, *b.endpoint.address)
        la = a.links_by_peer[b.identity.public]
        bc = Identity.generate()
        sid = StreamId(bc.public, "acked")
        la.send_chunk(sign_chunk(bc, sid, 1, 1, True, b"a" * 6000), deadline=a.clock() + 0.3)
        s1 = max(la._chunk_deadlines)
        await _wait(lambda: any(c.seq == 1 for c in seen), SLACK)
        await _wait(lambda: _acknowledged(la, s1) and la.stack.finished(la.quic, s1), SLACK)
        la.send_chunk(sign_chunk(bc, sid, 2, 1, True, b"b" * 6000), deadline=a.clock() + 60.0)
        assert s1 not in la._chunk_deadlines and len(la._chunk_deadlines) == 1
        await _wait(lambda: any(c.seq == 2 for c in seen), SLACK)
        assert a.endpoint.counters["chunk_streams_reset"] == 0
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("stack", STACKS)
async def test_a_quic_timer_fired_early_waits_for_its_deadline_instead_of_spinning(stack: str) -> None:
    """uvloop fires timers on a millisecond grid, up to a millisecond early. A QUIC timer
    that fires before its deadline does not call QUIC (nothing is due) and is armed past
    the deadline, not for the same instant (that fired at once, again and again)."""
    a, b = await _node(stack), await _node(stack)
    try:
        assert await a.connect(b.peer_id, *b.endpoint.address)
        la = a.links_by_peer[b.identity.public]
        calls: list[float] = []
        real, real_timer = la.quic.handle_timer, la.quic.get_timer
        at = a.loop.time() + 0.05

        def counted(now: float) -> None:
            calls.append(now)
            real(now)

        # QUIC's deadline is ``at`` until it is called (a STATUS arriving meanwhile must
        # not move the timer elsewhere), then its own again
        la.quic.handle_timer = counted
        la.quic.get_timer = lambda: real_timer() if calls else at
        la._core = None  # through the connection's (patched) methods, not qh3's core directly
        la.cancel_timers()
        la._timer_at = at
        la._on_timer()  # early
        assert calls == [] and la._timer is not None and la._timer_at == at
        await _wait(lambda: bool(calls), SLACK)
        assert calls[0] >= at  # QUIC is called once the deadline has passed
    finally:
        await a.close()
        await b.close()


def _acknowledged(link: Link, sid: int) -> bool:
    """Stream ``sid`` acknowledged: aioquic says so; qh3 does not, but nothing in flight will do."""
    core = getattr(link.quic, "_core", None)
    if core is not None:  # qh3
        return int(core.bytes_in_flight) == 0
    return link.stack.finished(link.quic, sid)
