"""Direct messages core (oasis/core/dm.py): encryption, routing, mailbox, ACKs on a virtual clock."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from oasis.core import dm, wire
from oasis.core.dm import DmAcked, DmConfig, DmReceived, DmRouter, SendDm
from oasis.core.identity import Identity, verify

T0 = 1_800_000_000.0


def entropy(seed: int):  # deterministic key material for tests only
    rng = random.Random(seed)
    return lambda n: rng.randbytes(n)


def router(ident: Identity, seed: int = 1, **kw: float) -> DmRouter:
    return DmRouter(ident, verify, entropy(seed), DmConfig(**kw), now=T0)  # type: ignore[arg-type]


def sends(r: DmRouter) -> list[SendDm]:
    return [a for a in r.actions() if isinstance(a, SendDm)]


def test_the_x25519_map_of_an_identity_matches_its_private_half() -> None:
    for _ in range(5):
        ident = Identity.generate()
        pub = dm.x25519_private_of(ident).public_key().public_bytes_raw()
        assert pub == dm.x25519_public_of(ident.public)


A, B, R, C = (Identity.generate() for _ in range(4))


def envelope(text: str = "hello", to: Identity = B, prekey: bytes | None = None) -> wire.DmEnvelope:
    env, _ = dm.seal(A, to.public, text, T0, entropy(7), prekey=prekey)
    return env


def test_seal_open_and_the_relay_sees_no_sender_or_text() -> None:
    env = envelope("secret words")
    raw = wire.encode(env)
    assert A.public not in raw and b"secret" not in raw
    inner = dm.open_box(B.public, dm.x25519_private_of(B), None, env, verify)
    assert inner.text == "secret words" and inner.sender == A.public


def test_tampered_ciphertext_header_and_wrong_recipient_fail() -> None:
    env = envelope()
    xb = dm.x25519_private_of(B)
    bad = bytearray(env.box)
    bad[20] ^= 1
    for e in (wire.DmEnvelope(to=env.to, eph=env.eph, prekey=env.prekey, expires_ms=env.expires_ms,
                              box=bytes(bad)),
              wire.DmEnvelope(to=env.to, eph=env.eph, prekey=env.prekey, expires_ms=env.expires_ms + 1,
                              box=env.box)):
        with pytest.raises(dm.OpenError) as info:
            dm.open_box(B.public, xb, None, e, verify)
        assert info.value.code == "decrypt_failed"
    with pytest.raises(dm.OpenError):  # C cannot open B's mail even if re-addressed to C
        dm.open_box(C.public, dm.x25519_private_of(C), None,
                    wire.DmEnvelope(to=C.public, eph=env.eph, prekey=env.prekey,
                                    expires_ms=env.expires_ms, box=env.box), verify)


def test_with_a_prekey_the_identity_key_alone_does_not_open_it() -> None:
    pk = X25519PrivateKey.generate()
    env = envelope(prekey=pk.public_key().public_bytes_raw())
    with pytest.raises(dm.OpenError) as info:
        dm.open_box(B.public, dm.x25519_private_of(B), None, env, verify)
    assert info.value.code == "unknown_prekey"
    assert dm.open_box(B.public, dm.x25519_private_of(B), pk, env, verify).text == "hello"


def test_direct_delivery_ack_and_duplicate() -> None:
    a, b = router(A, 1), router(B, 2)
    linked = {A.public, B.public}.__contains__
    out = a.send(B.public, "hi B", T0, linked, lambda t, k: [])
    (s,) = sends(a)
    assert s.peer == B.public and out.state == "pending"
    b.on_envelope(A.public, s.message, T0, linked, lambda t, k: [])  # type: ignore[arg-type]
    acts = b.actions()
    got = [x for x in acts if isinstance(x, DmReceived)]
    assert [(g.sender, g.text) for g in got] == [(A.public, "hi B")]
    (ack,) = [x for x in acts if isinstance(x, SendDm)]
    a.on_envelope(B.public, ack.message, T0 + 0.1, linked, lambda t, k: [])  # type: ignore[arg-type]
    assert [type(x) for x in a.actions()] == [DmAcked] and out.state == "delivered"
    b.on_envelope(A.public, s.message, T0 + 1, linked, lambda t, k: [])  # type: ignore[arg-type]
    acts = b.actions()
    assert not any(isinstance(x, DmReceived) for x in acts) and b.counters.duplicates == 1
    assert any(isinstance(x, SendDm) for x in acts)  # re-acknowledged


def test_stored_by_relays_while_offline_and_handed_over_on_link() -> None:
    a, r, b = router(A, 1), router(R, 3), router(B, 2)
    a_linked = {R.public}.__contains__
    out = a.send(B.public, "while you were away", T0, a_linked, lambda t, k: [R.public])
    (s,) = sends(a)
    assert s.peer == R.public and out.state == "stored"
    r.on_envelope(A.public, s.message, T0, {A.public}.__contains__, lambda t, k: [])  # type: ignore[arg-type]
    assert r.counters.stored == 1 and sends(r) == []
    # B links to R ten minutes later: R hands the envelope over with its prekey
    r.on_link_up(B.public, T0 + 600, {A.public, B.public}.__contains__, lambda t, k: [])
    handed = [x.message for x in sends(r) if isinstance(x.message, wire.DmEnvelope)]
    assert len(handed) == 1
    b.on_envelope(R.public, handed[0], T0 + 600, {R.public}.__contains__, lambda t, k: [R.public])
    acts = b.actions()
    assert [x.text for x in acts if isinstance(x, DmReceived)] == ["while you were away"]
    (ack,) = [x for x in acts if isinstance(x, SendDm)]
    assert ack.peer == R.public  # the ACK goes back through the relay
    r.on_envelope(B.public, ack.message, T0 + 600, {A.public, B.public}.__contains__, lambda t, k: [])  # type: ignore[arg-type]
    (fwd,) = sends(r)
    assert fwd.peer == A.public
    a.on_envelope(R.public, fwd.message, T0 + 600, a_linked, lambda t, k: [])  # type: ignore[arg-type]
    assert out.state == "delivered"


def test_held_mail_expires_after_24_hours() -> None:
    r = router(R, 3)
    r.on_envelope(A.public, envelope(), T0, lambda k: False, lambda t, k: [])
    assert r.mailbox.total == 1
    r.on_link_up(B.public, T0 + 86401, lambda k: True, lambda t, k: [])
    assert not any(isinstance(x.message, wire.DmEnvelope) for x in sends(r))
    assert r.counters.expired == 1 and r.mailbox.total == 0


def test_mailbox_caps_per_neighbour_per_recipient_and_total() -> None:
    r = router(R, 3, max_per_link_recipient=4, max_per_recipient=6, max_held=8, link_burst=100.0)
    for i in range(10):
        env, _ = dm.seal(A, B.public, f"m{i}", T0, entropy(100 + i))
        r.on_envelope(A.public, env, T0, lambda k: False, lambda t, k: [])
    assert r.mailbox.total == 4  # one neighbour parks at most 4 for B
    for i in range(10):
        env, _ = dm.seal(C, B.public, f"c{i}", T0, entropy(200 + i))
        r.on_envelope(C.public, env, T0, lambda k: False, lambda t, k: [])
    # B's box is full: C's mail evicts the oldest of the neighbour holding the most for B
    # (A) until A holds no more than one above C (since 2026-12-03: test_core_dm_atk6.py)
    assert r.mailbox.total == 6 and r.counters.evicted == 1
    for i in range(10):
        env, _ = dm.seal(A, C.public, f"x{i}", T0, entropy(300 + i))
        r.on_envelope(B.public, env, T0, lambda k: False, lambda t, k: [])
    # the mailbox is full: B's mail would evict the oldest of the heaviest neighbour, but
    # B holds 2 and nobody more than one above it: the rest refused
    assert r.mailbox.total == 8 and r.counters.evicted == 1
    assert {k: len(v) for k, v in r.mailbox.by_via.items()} == {A.public: 3, C.public: 3, B.public: 2}
    assert r.counters.mailbox_full == 6 + 7 + 8


def test_a_flooding_neighbour_cannot_crowd_honest_mail_out_of_a_full_mailbox() -> None:
    r = router(R, 3, max_held=100, link_burst=1e9)
    for i in range(300):  # one neighbour parks mail for 300 made-up recipients: fills the mailbox
        env, _ = dm.seal(A, Identity.generate().public, f"junk{i}", T0, entropy(1000 + i))
        r.on_envelope(A.public, env, T0 + i / 1000, lambda k: False, lambda t, k: [])
    assert r.mailbox.total == 100 and r.counters.mailbox_full == 200
    for i in range(10):  # an honest neighbour's mail still gets in, at the flooder's expense
        env, _ = dm.seal(C, B.public, f"real{i}", T0, entropy(5000 + i))
        r.on_envelope(C.public, env, T0 + 1, lambda k: False, lambda t, k: [])
    assert len(r.mailbox.by_via[C.public]) == 10 and len(r.mailbox.by_via[A.public]) == 90
    assert [x.box for x in r.mailbox.take(B.public, T0 + 2)] and r.mailbox.total == 90


def test_a_flooding_neighbour_is_rate_limited() -> None:
    r = router(R, 3, link_rate=1.0, link_burst=5.0)
    for i in range(50):
        env, _ = dm.seal(A, B.public, "x", T0, entropy(400 + i))
        r.on_envelope(A.public, env, T0, lambda k: False, lambda t, k: [])
    assert r.counters.link_limited == 45


def test_bad_prekey_records_are_refused() -> None:
    r = router(R, 3)
    good = router(B, 2).prekey(T0)
    r.on_prekey(A.public, good, T0)  # B's record from A's link
    forged = wire.DmPrekey(key=B.public, prekey=b"p" * 32, expires_ms=good.expires_ms,
                           signature=good.signature)
    r.on_prekey(B.public, forged, T0)
    assert r.counters.prekeys_bad == 2 and not r.peer_prekeys
    r.on_prekey(B.public, good, T0)
    assert r.peer_prekeys[B.public][0] == good.prekey


def test_prekeys_rotate_and_old_private_halves_are_deleted() -> None:
    b = router(B, 2)
    first = b.prekey(T0).prekey
    assert b.prekey(T0 + 86400 + 1).prekey != first
    b.prekey(T0 + 4 * 86400)
    assert first not in b.prekeys


def test_wrong_recipient_and_replayed_expired_envelopes() -> None:
    b = router(B, 2)
    env = envelope(to=C)
    b.on_envelope(A.public, wire.DmEnvelope(to=B.public, eph=env.eph, prekey=env.prekey,
                                            expires_ms=env.expires_ms, box=env.box),
                  T0, lambda k: False, lambda t, k: [])
    assert b.counters.open_failed == 1
    b.on_envelope(A.public, envelope(), T0 + 86401, lambda k: False, lambda t, k: [])
    assert b.counters.expired == 1


def test_mail_sealed_to_a_prekey_opens_after_the_recipient_restarts_with_its_saved_prekeys() -> None:
    """B told A its prekey, then went away; A's DM (sealed to that prekey) waits at R. B
    restarts: a new router makes a new prekey, and without the saved ones the held mail
    could not be opened (the report: dm_open_failed, the inbox empty, 'stored' for ever).
    With the prekeys its last run saved (export/import, kept 0600 by the node) it opens.
    A file of another identity, or damaged, is refused."""
    a, r, b = router(A, 1), router(R, 3), router(B, 2)
    a.on_prekey(B.public, b.prekey(T0), T0)
    saved, version = b.export_prekeys(), b.prekeys_version
    assert version >= 1
    out = a.send(B.public, "sealed to your prekey", T0, {R.public}.__contains__, lambda t, k: [R.public])
    (s,) = sends(a)
    assert out.state == "stored" and s.message.prekey == b.prekey(T0).prekey  # type: ignore[union-attr]
    r.on_envelope(A.public, s.message, T0, {A.public}.__contains__, lambda t, k: [])  # type: ignore[arg-type]
    r.on_link_up(B.public, T0 + 600, {A.public, B.public}.__contains__, lambda t, k: [])
    (held,) = [x.message for x in sends(r) if isinstance(x.message, wire.DmEnvelope)]

    forgetful = router(B, 9)  # restarted without the saved prekeys
    forgetful.on_envelope(R.public, held, T0 + 600, {R.public}.__contains__, lambda t, k: [R.public])
    assert not [x for x in forgetful.actions() if isinstance(x, DmReceived)]
    assert forgetful.counters.open_failed == 1

    restarted = router(B, 8)
    assert restarted.import_prekeys(saved, T0 + 600) == 1
    assert restarted.prekey(T0 + 600).prekey != b.prekey(T0).prekey  # its own stays current
    restarted.on_envelope(R.public, held, T0 + 600, {R.public}.__contains__, lambda t, k: [R.public])
    assert [x.text for x in restarted.actions() if isinstance(x, DmReceived)] == ["sealed to your prekey"]
    # a prekey file is only ever taken back by its own identity, whole
    with pytest.raises(ValueError, match="another identity"):
        router(A, 5).import_prekeys(saved, T0)
    with pytest.raises(ValueError):
        router(B, 6).import_prekeys(saved[:-3], T0)
    # expired past the keep time: not taken back (forward secrecy holds across restarts)
    assert router(B, 7).import_prekeys(saved, T0 + 10 * 86400) == 0
