"""A relay made to flood a recipient with direct messages (docs/oftp.md §14.7, found
2026-12-03 by an outside attacker, ``bench/atk4_dm_relay.py``): R hands an envelope for a
linked peer over at once. Junk envelopes (R cannot open them) addressed to V from 16
links, each within R's per-link DM rate, reached V at their sum -- past V's
control-message budget -- and V's peer policy banned R, its source of video. R now relays
to one recipient at most what V's link bucket takes, counted ``relay_limited``."""

from __future__ import annotations

import random

from test_core_dm import T0, R, router, sends

from oasis.core import wire
from oasis.core.identity import Identity

V = Identity.generate()


def junk(rng: random.Random, to: bytes, t: float) -> wire.DmEnvelope:
    return wire.DmEnvelope(to=to, eph=rng.randbytes(32), prekey=bytes(32), expires_ms=int((t + 3600) * 1000),
                           box=rng.randbytes(100))


def test_a_relay_hands_one_recipient_no_more_than_its_link_takes() -> None:
    r = router(R)  # link_rate 20/s, burst 40
    rng = random.Random(3)
    links = [bytes([0x60 + i]) * 32 for i in range(16)]
    for step in range(150):  # 15 s, each link at 18/s (within its own bucket of 20/s)
        t = T0 + step / 10
        for ln in links:
            for _ in range(2 if step % 10 != 9 else 0):
                r.on_envelope(ln, junk(rng, V.public, t), t, lambda k: k == V.public, lambda k, n: [])
    to_v = [s for s in sends(r) if s.peer == V.public]
    assert r.counters.received == 16 * 18 * 15 and r.counters.link_limited == 0  # within each link's bucket
    assert len(to_v) <= 40 + 20 * 15 + 1  # was: every one, 4,320
    assert r.counters.relay_limited == r.counters.received - r.counters.link_limited - len(to_v)
    # an envelope for another linked peer still goes through at once
    other = Identity.generate().public
    r.on_envelope(links[0], junk(rng, other, T0 + 16), T0 + 16, lambda k: True, lambda k, n: [])
    assert [s.peer for s in sends(r)] == [other]


def test_an_envelope_over_the_recipients_share_is_held_and_handed_over_at_its_next_link() -> None:
    r = router(R)
    rng = random.Random(4)
    flooders = [bytes([0x70 + i]) * 32 for i in range(4)]
    for ln in flooders:  # 4 x 40: the recipient's share (burst 40) is spent
        for _ in range(40):
            r.on_envelope(ln, junk(rng, V.public, T0), T0, lambda k: k == V.public, lambda k, n: [])
    sends(r)
    honest = b"H" * 32
    mine = junk(rng, V.public, T0)
    r.on_envelope(honest, mine, T0, lambda k: k == V.public, lambda k, n: [])
    assert sends(r) == [] and r.counters.relay_limited >= 1  # not now ...
    r.on_link_up(V.public, T0 + 60, lambda k: k == V.public, lambda k, n: [])
    got = [s.message for s in sends(r) if s.peer == V.public]
    while (d := r.next_deadline()) is not None:  # (handed over within V's rate: test_core_dm_atk6.py)
        r.on_timer(d, lambda k: k == V.public)
        got += [s.message for s in sends(r) if s.peer == V.public]
    assert mine in got  # ... but at V's next link
