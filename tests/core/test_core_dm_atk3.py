"""Replayed direct messages (docs/oftp.md §14.7, §19.3). Found 2026-12-03 by an outside
attacker: the recipient remembered the ids it had opened in one 8,192-entry memory shared
with the ephemeral keys of envelopes it relayed or held, so a storer that kept a message
for B flooded B with junk envelopes for made-up recipients (no crypto needed, the per-link
rate of 20/s over a few links), B forgot the id, and the same message, replayed, was shown
to B again as new (and acked again). Now opened ids have their own memory, forgotten
oldest signed time first, and nothing as old as an id forgotten is taken again
(``replays_refused``); across a restart, what the inbox file kept is remembered
(``tests/node/test_node_dm_replay_atk3.py``)."""

from __future__ import annotations

import os

from oasis.core import dm, wire
from oasis.core.dm import DmConfig, DmReceived, DmRouter, SendDm
from oasis.core.identity import Identity, verify

T0 = 1_800_000_000.0
A, B, S = (Identity.generate() for _ in range(3))  #: sender, recipient, the hostile storer


def router(**kw: int) -> DmRouter:
    return DmRouter(B, verify, os.urandom, DmConfig(**kw), now=T0)  # type: ignore[arg-type]


def deliver(b: DmRouter, peer: bytes, env: wire.DmEnvelope, now: float) -> list[dm.DmAction]:
    b.on_envelope(peer, env, now, {peer}.__contains__, lambda t, k: [])
    return b.actions()


def received(acts: list[dm.DmAction]) -> list[DmReceived]:
    return [a for a in acts if isinstance(a, DmReceived)]


def test_junk_envelopes_relayed_cannot_make_an_opened_message_new_again() -> None:
    b = router()
    env, _ = dm.seal(A, B.public, "the transfer is done", T0, os.urandom)
    assert len(received(deliver(b, S.public, env, T0))) == 1  # the storer hands it over ...
    # ... and kept a copy; then floods B with junk for made-up recipients, link after link
    now = T0 + 1
    for _ in range(260):
        link = Identity.generate().public
        for _i in range(40):  # the per-link burst
            deliver(b, link, wire.DmEnvelope(to=os.urandom(32), eph=os.urandom(32), prekey=bytes(32),
                                             expires_ms=int((now + 3600) * 1000), box=os.urandom(64)), now)
        now += 0.01
    assert len(b.seen) == b.config.max_seen  # the relays' memory turned over (10,400 junk)
    acks = b.counters.acks_sent
    acts = deliver(b, S.public, env, now)  # the replay
    assert received(acts) == [] and b.counters.duplicates == 1
    assert b.counters.acks_sent == acks + 1  # acknowledged again, as a lost ack needs


def test_a_flood_of_valid_messages_cannot_make_an_old_one_new_again() -> None:
    b = router(max_opened=64)
    old, _ = dm.seal(A, B.public, "yes", T0, os.urandom)
    assert len(received(deliver(b, S.public, old, T0))) == 1
    now = T0 + 10
    for i in range(100):  # newer messages from sybils, more than B remembers
        sybil = Identity.generate()
        env, _ = dm.seal(sybil, B.public, f"spam {i}", now, os.urandom)
        assert len(received(deliver(b, sybil.public, env, now))) == 1
        now += 0.1
    assert len(b.opened) == 64 and b.replay_floor_ms >= int(T0 * 1000)
    acts = deliver(b, S.public, old, now)  # the replay of a message B forgot
    assert received(acts) == [] and not any(isinstance(a, SendDm) for a in acts)
    assert b.counters.replays_refused == 1 and b.counters.acks_sent == 100 + 1  # none for it
    # A's new messages still arrive, and so does mail held a while (newer than what was forgotten)
    fresh, _ = dm.seal(A, B.public, "and again", now, os.urandom)
    assert [r.text for r in received(deliver(b, A.public, fresh, now))] == ["and again"]
    held, _ = dm.seal(A, B.public, "sent a moment ago", T0 + 15, os.urandom)
    assert [r.text for r in received(deliver(b, S.public, held, now + 1))] == ["sent a moment ago"]
    # the memory stays bounded
    assert len(b.opened) == 64 and len(b._opened_heap) == 64
