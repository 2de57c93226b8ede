"""Mail held over a linked recipient's relay rate (docs/oftp.md §14.7, §19.3; found
2026-12-03 by an outside attacker, ``bench/atk6_dm_held.py``). A relay hands a linked
recipient at most 20 envelopes a second and held the excess "for its next link": a viewer
that stays linked to its relay never got it. Four links at 19/s of junk addressed to V
filled V's 64 places at its relay, so honest messages to V sent during the flood were
refused or held for good (1-3 of 8 never delivered, the sender's state stuck at
``stored``), and the junk stayed held. Now held mail is relayed as the recipient's bucket
refills (``on_timer``), the parking neighbours served in turn, and a full box gives up
the heaviest neighbour's oldest envelope for another neighbour's (``relay_drained``,
``evicted``). The real ``DmRouter``, in virtual time."""

from __future__ import annotations

import random

from test_core_dm import T0, R, router, sends

from oasis.core import wire
from oasis.core.dm import SEND_MARGIN
from oasis.core.identity import Identity

V = Identity.generate()


def junk(rng: random.Random, to: bytes, t: float) -> wire.DmEnvelope:
    return wire.DmEnvelope(to=to, eph=rng.randbytes(32), prekey=bytes(32), expires_ms=int((t + 3600) * 1000),
                           box=rng.randbytes(100))


def linked_v(k: bytes) -> bool:
    return k == V.public


def test_an_honest_message_into_a_flood_reaches_a_recipient_that_stays_linked() -> None:
    r = router(R)  # link_rate 20/s, burst 40 per link; relayed to one recipient at 0.8 x that
    rng = random.Random(6)
    flooders = [bytes([0x70 + i]) * 32 for i in range(4)]
    honest = b"H" * 32
    mine = junk(rng, V.public, T0)
    to_v: list[wire.DmEnvelope] = []
    got_mine_at = None
    for step in range(100):  # 10 s: 4 links at 19/s each (within their own buckets), 76/s for V
        t = T0 + step / 10
        for i, ln in enumerate(flooders):
            for _ in range(2 if (step + i) % 10 != 0 else 1):
                r.on_envelope(ln, junk(rng, V.public, t), t, linked_v, lambda k, n: [])
        if step == 20:  # 2 s into the flood: V's share is long spent, its box full of junk
            assert len(r.mailbox.boxes[V.public]) == 64
            r.on_envelope(honest, mine, t, linked_v, lambda k, n: [])
        # the node runs the core's timer whenever it is due
        while (d := r.next_deadline()) is not None and d <= t + 0.1:
            r.on_timer(max(d, t), linked_v)
        for s in sends(r):
            assert s.peer == V.public
            to_v.append(s.message)  # type: ignore[arg-type]
            if s.message == mine and got_mine_at is None:
                got_mine_at = t
    assert got_mine_at is not None and got_mine_at - (T0 + 2.0) <= 0.5  # was: never (box full)
    assert r.counters.evicted >= 1 and r.counters.relay_drained > 0
    assert len(to_v) <= 40 + 20 * 10 + 1  # still no more than V's link takes
    # the flood ends: what is held drains to V within its rate, V still linked
    t = T0 + 10.0
    while (d := r.next_deadline()) is not None:
        t = max(d, t)
        r.on_timer(t, linked_v)
        to_v += [s.message for s in sends(r)]  # type: ignore[misc]
    assert r.mailbox.total == 0 and t - (T0 + 10.0) <= 64 / (20 * SEND_MARGIN) + 0.2  # was: never


def test_the_parking_neighbours_are_served_in_turn() -> None:
    r = router(R)
    rng = random.Random(7)
    a, b, f = b"A" * 32, b"B" * 32, b"F" * 32
    for _ in range(int(40 * SEND_MARGIN)):  # V's share spent (by a third link: one link takes 40 at once)
        r.on_envelope(f, junk(rng, V.public, T0), T0, linked_v, lambda k, n: [])
    sends(r)
    held_a = [junk(rng, V.public, T0) for _ in range(10)]
    for e in held_a:
        r.on_envelope(a, e, T0, linked_v, lambda k, n: [])
    mine = junk(rng, V.public, T0)
    r.on_envelope(b, mine, T0, linked_v, lambda k, n: [])
    assert sends(r) == [] and r.mailbox.total == 11
    d = r.next_deadline()
    assert d is not None and d <= T0 + 1 / (20 * SEND_MARGIN) + 0.001
    out: list[wire.Message] = []
    t = T0
    while len(out) < 2:
        t = max(t, r.next_deadline() or t)
        r.on_timer(t, linked_v)
        out += [s.message for s in sends(r)]
    assert mine in out[:2]  # b's one message does not wait behind a's ten


def test_mail_for_a_recipient_that_left_waits_for_its_next_link() -> None:
    r = router(R)
    rng = random.Random(8)
    for i in range(int(40 * SEND_MARGIN) + 5):  # V's share relayed, 5 held
        r.on_envelope(bytes([0x41 + i % 2]) * 32, junk(rng, V.public, T0), T0, linked_v, lambda k, n: [])
    sends(r)
    assert r.mailbox.total == 5 and r.next_deadline() is not None
    r.on_timer(T0 + 1.0, lambda k: False)  # V's link went down meanwhile
    assert sends(r) == [] and r.mailbox.total == 5 and r.next_deadline() is None
    r.on_link_up(V.public, T0 + 5.0, linked_v, lambda k, n: [])
    assert len([s for s in sends(r) if s.peer == V.public and isinstance(s.message, wire.DmEnvelope)]) == 5


def test_a_burst_of_our_own_messages_is_paced_to_what_the_relay_takes() -> None:
    """60 DMs posted at once for V, not linked, through relay R: R takes 40 from one link at
    once, then 20/s, and dropped the rest (``link_limited``) while our state said ``stored``.
    Now we send R our envelopes within its rate (``send_paced``) and R takes all 60."""
    from test_core_dm import A, B
    a, r = router(A), router(R, 2)
    now = T0
    for i in range(60):
        a.send(B.public, f"m{i}", now, lambda k: False, lambda k, n: [R.public])
    assert all(o.state == "stored" for o in a.outbox.values())
    while True:
        for s in sends(a):
            assert s.peer == R.public
            r.on_envelope(A.public, s.message, now, lambda k: False, lambda k, n: [])  # type: ignore[arg-type]
        d = a.next_deadline()
        if d is None:
            break
        now = max(now, d)
        a.on_timer(now, lambda k: False)
    # every one taken off the link (was: 20 dropped); what R keeps is its mailbox's business
    assert r.counters.received == 60 and r.counters.link_limited == 0
    assert a.counters.send_paced == 60 - int(40 * SEND_MARGIN)
    assert now - T0 <= (60 - 40 * SEND_MARGIN) / (20 * SEND_MARGIN) + 0.1
