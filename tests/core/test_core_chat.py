"""Stream chat core (oasis/core/chat.py): every rule mounted against ChatRoom on a virtual clock."""

from __future__ import annotations

import pytest

from oasis.core import chat, wire
from oasis.core.chat import ChatConfig, ChatRoom, Delivered, Moderated, SendChat
from oasis.core.identity import Identity, verify

B = Identity.generate()  # broadcaster
A = Identity.generate()
S = Identity.generate()  # spammer
SK = b"\x01" * 8
T0 = 1_800_000_000.0


def room(**kw: float) -> ChatRoom:
    return ChatRoom(SK, B.public, verify, ChatConfig(**kw))  # type: ignore[arg-type]


def msg(ident: Identity, seq: int, text: str = "hi", t: float = T0, stream: bytes = SK) -> wire.ChatMsg:
    ms = int(t * 1000)
    sig = ident.sign(chat.chat_signing_bytes(stream, ident.public, seq, ms, text))
    return wire.ChatMsg(stream=stream, sender=ident.public, seq=seq, time_ms=ms, text=text, signature=sig)


def delivered(r: ChatRoom) -> list[Delivered]:
    return [a for a in r.actions() if isinstance(a, Delivered)]


N1, N2, N3 = b"1" * 32, b"2" * 32, b"3" * 32


def test_a_new_message_is_delivered_and_forwarded_once_to_every_other_neighbour() -> None:
    r = room()
    r.on_message(N1, msg(A, 1), T0, [N1, N2, N3])
    acts = r.actions()
    assert [a.peer for a in acts if isinstance(a, SendChat)] == [N2, N3]
    assert len([a for a in acts if isinstance(a, Delivered)]) == 1
    r.on_message(N2, msg(A, 1), T0, [N1, N2, N3])  # the same message by another path
    assert r.actions() == [] and r.counters.duplicates == 1


def test_forgery_wrong_stream_and_tampered_text_are_dropped() -> None:
    r = room()
    m = msg(A, 1)
    r.on_message(N1, wire.ChatMsg(stream=SK, sender=A.public, seq=1, time_ms=m.time_ms, text="evil",
                                  signature=m.signature), T0, [N2])
    r.on_message(N1, wire.ChatMsg(stream=SK, sender=B.public, seq=1, time_ms=m.time_ms, text="hi",
                                  signature=m.signature), T0, [N2])  # claims the broadcaster sent it
    r.on_message(N1, msg(A, 2, stream=b"\x02" * 8), T0, [N2])
    assert r.actions() == [] and r.counters.bad_signature == 2


def test_replay_old_time_and_below_window_are_dropped() -> None:
    r = room(dedup_window=4)
    r.on_message(N1, msg(A, 1, t=T0 - 60), T0, [])  # a minute old: replay of an old message
    assert r.counters.bad_time == 1
    r.on_message(N1, msg(A, 100), T0, [])
    r.on_message(N1, msg(A, 96), T0 + 0.1, [])  # below the window
    assert r.counters.too_old == 1
    r.on_message(N1, msg(A, 100), T0 + 0.2, [])
    assert r.counters.duplicates == 1


def test_reordered_message_is_delivered_with_the_late_flag() -> None:
    r = room()
    r.on_message(N1, msg(A, 10), T0, [])
    r.on_message(N1, msg(A, 9), T0, [])
    d = delivered(r)
    assert [(x.message.seq, x.late) for x in d] == [(10, False), (9, True)]
    r.on_message(N1, msg(A, 9), T0, [])
    assert r.counters.duplicates == 1


def test_oversize_text_is_refused_by_post_and_by_relays() -> None:
    r = room()
    with pytest.raises(ValueError):
        r.post(A.public, A.sign, "é" * 251, T0, [])  # 502 bytes
    r.on_message(N1, msg(A, 1, "é" * 251), T0, [N2])
    assert r.counters.oversize == 1 and r.actions() == []


def test_a_spammer_is_cut_at_the_first_relay_and_honest_messages_still_pass() -> None:
    r = room(rate=1.0, burst=5.0)
    t = T0
    for i in range(1, 201):  # 200 messages in 2 s from one identity
        t = T0 + i * 0.01
        r.on_message(N1, msg(S, i, t=t), t, [N2])
        if i % 50 == 0:
            r.on_message(N3, msg(A, i, t=t), t, [N2])  # an honest viewer, 2 per second
    fwd = [a for a in r.actions() if isinstance(a, SendChat)]
    spam = [a for a in fwd if a.message.sender == S.public]
    honest = [a for a in fwd if a.message.sender == A.public]
    assert len(spam) <= 5 + r.config.jitter_burst + 2  # burst (+ the jitter's) + 2 s of refill
    assert len(honest) == 4
    assert r.counters.rate_limited >= 190


def test_a_sender_keeping_to_its_own_rate_loses_nothing_to_jitter_at_a_relay() -> None:
    """A sender that posts as fast as its own bucket lets it (5 at once, then 1 a second:
    ``oasis chat < file`` does) reaches a relay with the network's jitter: its first burst
    0.6 s late (a busy relay, a link coming up), the paced ones on time, so the relay sees
    them closer together than the sender sent them. Every message passes (with the relay's
    bucket no deeper than the sender's, one in the suite's paced test was dropped on a loaded
    machine); a sender faster than its rate is still cut."""
    own = room()
    relay = room()
    sent = []
    t = T0
    for _ in range(40):  # what post() lets out, polled every 0.25 s as the chat command does
        try:
            sent.append((own.post(A.public, A.sign, f"line {len(sent)}", t, []), t))
        except chat.RateLimited:
            pass
        t += 0.25
    assert len(sent) == 5 + 10 - 1 and own.counters.rate_limited > 0  # 5, then 1 a second
    for m, at in sent:
        relay.on_message(N1, m, at + 0.1 + (0.6 if at < T0 + 1.5 else 0.0), [N2])
    assert relay.counters.rate_limited == 0
    assert [d.message.text for d in delivered(relay)] == [f"line {i}" for i in range(len(sent))]
    flood = room()
    for i in range(1, 21):  # 20 at once: past burst + jitter_burst
        flood.on_message(N1, msg(S, i), T0, [N2])
    assert flood.counters.rate_limited == 20 - 5 - int(flood.config.jitter_burst)


def test_identities_minted_behind_one_link_are_bounded_by_the_link_bucket() -> None:
    r = room(link_rate=10.0, link_burst=10.0)
    sybils = [Identity.generate() for _ in range(30)]
    for s in sybils:
        r.on_message(N1, msg(s, 1), T0, [N2])
    assert r.counters.link_limited == 20 and r.counters.delivered == 10


def test_broadcaster_mute_is_enforced_by_relays_and_forgery_by_others_is_not() -> None:
    relay = room()
    rec = room().moderate(B.sign, A.public, chat.MUTE, 60, T0, [])
    fake_sig = S.sign(chat.mod_signing_bytes(SK, A.public, chat.BAN, rec.until_ms, rec.issued_ms + 1))
    fake = wire.ChatMod(stream=SK, target=A.public, action=chat.BAN, until_ms=rec.until_ms,
                        issued_ms=rec.issued_ms + 1, signature=fake_sig)
    relay.on_message(N1, fake, T0, [N2])
    assert relay.counters.mods_bad == 1
    relay.on_message(N1, rec, T0, [N2, N3])
    acts = relay.actions()
    assert any(isinstance(a, Moderated) for a in acts)
    assert [a.peer for a in acts if isinstance(a, SendChat)] == [N2, N3]  # spread on
    relay.on_message(N1, msg(A, 1, t=T0 + 1), T0 + 1, [N2])
    assert relay.actions() == [] and relay.counters.muted_dropped == 1
    with pytest.raises(PermissionError):
        relay.post(A.public, A.sign, "let me talk", T0 + 2, [])
    relay.on_message(N1, msg(A, 2, t=T0 + 61), T0 + 61, [N2])  # the mute ran out
    assert len(delivered(relay)) == 1


def test_ban_stops_relays_forwarding_to_the_banned_viewer_and_unmute_lifts() -> None:
    b = room()
    ban = b.moderate(B.sign, N3, chat.BAN, 60, T0, [N3])
    # the banned viewer is told (its own posts are then refused: the API's 403 muted); it got
    # no record of its ban, posted on and was answered 201 (found 2026-12-06 from outside)
    assert [a.peer for a in b.actions() if isinstance(a, SendChat)] == [N3]
    relay = room()
    relay.on_message(N1, ban, T0, [N3])
    assert [a.peer for a in relay.actions() if isinstance(a, SendChat)] == [N3]
    banned = room()
    banned.on_message(N1, ban, T0, [])
    with pytest.raises(chat.Silenced):
        banned.post(N3, lambda b: b"x" * 64, "hello", T0 + 1, [N1])
    relay.on_message(N1, msg(A, 1), T0, [N2, N3])
    assert [a.peer for a in relay.actions() if isinstance(a, SendChat)] == [N2]
    lift = b.moderate(B.sign, N3, chat.UNMUTE, 60, T0 + 1, [])
    relay.on_message(N1, lift, T0 + 1, [])
    relay.actions()
    relay.on_message(N1, msg(A, 2, t=T0 + 1), T0 + 1, [N2, N3])
    assert [a.peer for a in relay.actions() if isinstance(a, SendChat)] == [N2, N3]
    relay.on_message(N1, ban, T0 + 2, [])  # the old ban replayed: not newer
    assert relay.counters.mods_stale == 1


def test_the_broadcaster_cannot_silence_itself_and_a_record_that_would_is_dropped() -> None:
    """Found 2026-12-06 by a docs-only audit: the API took a ban of the broadcaster's own peer
    id (200), after which its own posts were refused ("muted", for a ban). Now moderate()
    refuses it, a record naming the broadcaster (validly signed: an older node's) is dropped
    as bad and not spread, and the broadcaster is never silenced; a banned viewer is told
    "banned", not "muted"."""
    b = room()
    with pytest.raises(ValueError, match="cannot moderate itself"):
        b.moderate(B.sign, B.public, chat.BAN, 60, T0, [N1])
    assert b.actions() == [] and b.mods == {}
    rec = room().moderate(B.sign, A.public, chat.BAN, 60, T0, [])  # a real ban, re-aimed below
    until, issued = rec.until_ms, rec.issued_ms
    self_ban = wire.ChatMod(stream=SK, target=B.public, action=chat.BAN, until_ms=until, issued_ms=issued,
                            signature=B.sign(chat.mod_signing_bytes(SK, B.public, chat.BAN, until, issued)))
    relay = room()
    relay.on_message(N1, self_ban, T0, [N2, N3])
    assert relay.actions() == [] and relay.counters.mods_bad == 1 and relay.mods == {}
    relay.on_message(N1, msg(B, 1), T0, [N2])
    assert len(delivered(relay)) == 1 and relay.silenced(B.public, T0) == chat.UNMUTE
    relay.on_message(N1, rec, T0, [])
    relay.actions()
    with pytest.raises(PermissionError, match="you are banned"):
        relay.post(A.public, A.sign, "let me talk", T0 + 1, [])


def test_tables_stay_bounded() -> None:
    r = room(max_senders=8, max_mods=4, link_burst=1000.0)
    for i in range(20):  # (each newer than the last: one no newer than an evicted sender's is refused)
        r.on_message(N1, msg(Identity.generate(), 1, t=T0 + i / 100), T0 + i / 100, [])
    assert len(r.senders) == 8 and r.counters.senders_evicted == 12
    b = room()
    for i in range(10):
        r.on_message(N1, b.moderate(B.sign, bytes([i]) * 32, chat.MUTE, 60 + i, T0, []), T0, [])
    assert len(r.mods) == 4 and r.counters.mods_evicted == 6


def test_a_new_neighbour_is_told_the_records_in_force() -> None:
    r = room()
    r.moderate(B.sign, A.public, chat.MUTE, 60, T0, [])
    r.actions()
    r.on_neighbour(N1, T0 + 1)
    assert [type(a.message) for a in r.actions() if isinstance(a, SendChat)] == [wire.ChatMod]
    r.on_neighbour(N2, T0 + 61)
    assert r.actions() == []
