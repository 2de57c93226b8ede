"""A sybil flood that evicts an honest sender's dedup record, then a replay (docs/oftp.md
§14.7, §19.2; the known issue of 2026-12-03, fixed the same day): a relay remembers
``max_senders`` senders, least recently heard evicted. Past that many fresh keys within
the 30 s clock window, an honest sender's record was gone and a neighbour that kept its
last message could have every relay deliver and forward it again."""

from __future__ import annotations

from test_core_chat import N1, N2, T0, A, delivered, msg, room

from oasis.core.chat import SendChat
from oasis.core.identity import Identity


def test_a_replay_after_a_sybil_flood_evicted_its_sender_is_refused() -> None:
    r = room(max_senders=8, link_burst=1000.0, link_rate=1000.0)
    m = msg(A, 7, text="honest", t=T0)
    r.on_message(N1, m, T0, [N2])
    assert [d.message.text for d in delivered(r)] == ["honest"]
    for i in range(8):  # a flood of fresh, validly signed keys: A's record is evicted
        t = T0 + 1 + i / 10
        r.on_message(N2, msg(Identity.generate(), 1, text="sybil", t=t), t, [N1])
    r.actions()
    assert A.public not in r.senders and r.counters.senders_evicted >= 1
    r.on_message(N2, m, T0 + 3, [N1])  # the attacker replays A's message, 3 s old
    assert delivered(r) == [] and r.counters.forgotten_refused == 1
    assert not [a for a in r.actions() if isinstance(a, SendChat)]  # not forwarded either
    # A itself goes on (a newer message: a new record) and so does a newcomer
    r.on_message(N1, msg(A, 8, text="again", t=T0 + 4), T0 + 4, [N2])
    r.on_message(N1, msg(Identity.generate(), 1, text="new", t=T0 + 4), T0 + 4, [N2])
    assert [d.message.text for d in delivered(r)] == ["again", "new"]


def test_sybils_signed_ahead_of_our_clock_do_not_shut_new_senders_out() -> None:
    r = room(max_senders=4, link_burst=1000.0, link_rate=1000.0)
    for i in range(12):  # 29 s in the future: inside the skew, evicted in turn
        r.on_message(N2, msg(Identity.generate(), 1, text="ahead", t=T0 + 29), T0 + i / 100, [])
    r.actions()
    assert r.forgotten_ms <= (T0 + 0.12) * 1000  # capped at the eviction time
    r.on_message(N1, msg(A, 1, text="hello", t=T0 + 1), T0 + 1, [])
    assert [d.message.text for d in delivered(r)] == ["hello"]


def test_a_relay_forwards_each_neighbour_no_more_than_its_link_takes() -> None:
    """Sybil senders on several links, each within its link's chat bucket: the relay
    forwarded their sum to every neighbour, over the neighbours' control-message budget
    (200/s), and every honest viewer banned its relay (found 2026-12-03 on real nodes:
    6 links at 45/s). It now forwards each neighbour at most ``link_rate`` (burst
    ``link_burst``), counted ``forward_limited``."""
    r = room()  # link_rate 50/s, burst 100; 1 s per sender is no limit on fresh keys
    links = [bytes([0x40 + i]) * 32 for i in range(6)]
    viewer = b"V" * 32
    sent = 0
    for step in range(100):  # 10 s at 45/s from each of 6 links
        t = T0 + step / 10
        for ln in links:
            for j in range(4 if step % 2 else 5):
                r.on_message(ln, msg(Identity.generate(), 1, text=f"s{step}.{j}", t=t), t, [*links, viewer])
    to_viewer = [a for a in r.actions() if isinstance(a, SendChat) and a.peer == viewer]
    sent = len(to_viewer)
    assert r.counters.delivered >= 2500  # the relay itself took them all
    assert sent <= 100 + 50 * 10 + 1  # burst + rate x 10 s (was: all ~2,700)
    assert r.counters.forward_limited > 0


def test_our_own_first_post_during_a_flood_is_never_taken_for_a_replay() -> None:
    r = room(max_senders=4, link_burst=1000.0, link_rate=1000.0)
    for _ in range(8):  # evictions at T0 + 1
        r.on_message(N2, msg(Identity.generate(), 1, text="sybil", t=T0 + 1), T0 + 1, [])
    r.actions()
    assert r.forgotten_ms == (T0 + 1) * 1000
    r.post(A.public, A.sign, "mine", T0 + 1, [N1])  # the same millisecond: still ours to send
    assert [d.message.text for d in delivered(r)] == ["mine"]
