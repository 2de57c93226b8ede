"""PeerPolicy: the node's policy towards peers, driven in virtual time (no sockets, no clock).

Links are plain strings here (the node passes its Link objects); peers are 32-byte keys.
Every attack is mounted against the real core object and the outcome asserted: dropped,
counted, banned, bounded; honest peers unaffected.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from oasis.core import peer as pp
from oasis.core import wire
from oasis.core.wire import ErrorCode

LOW = b"\x01" * 32  # the smaller key
HIGH = b"\x09" * 32
SKEY = b"\x07" * 32  # a stream key
TEXT = "stream-a"


def key(i: int) -> bytes:
    return i.to_bytes(2, "big") + b"\x55" * 30


def policy(self_key: bytes = LOW, **cfg) -> pp.PeerPolicy[str]:
    cfg.setdefault("sweep_interval", 1e9)  # idle-link sweeps only where a test asks for them
    p: pp.PeerPolicy[str] = pp.PeerPolicy(self_key, pp.PolicyConfig(**cfg), rng=random.Random(7), now=0.0)
    assert p.add_stream(TEXT, SKEY)
    return p


def of(actions: list, kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def status(skey: bytes = SKEY) -> wire.Status:
    return wire.Status(stream=skey, latest=1, have=0, keyframe=0, slots=0, paths=[])


def joined_peer(p: pp.PeerPolicy[str], peer: bytes, link: str, now: float = 0.0) -> None:
    assert p.link_up(link, peer, dialled=False, now=now)
    assert p.on_message(link, peer, wire.Join(stream=TEXT), now) is None
    acts = p.actions()
    assert pp.AddPeer(peer, SKEY) in acts
    assert SKEY in p.joined(peer)


# ---- admission ------------------------------------------------------------------

def test_one_address_with_many_keys_gets_a_quarter_of_the_inbound_slots():
    """Keys are free: 40 keys from one address (an attacker's machine) get 6 of a viewer's
    24 inbound slots (service links included); another address and an IPv6 /64 are counted
    apart; loopback is exempt; a link that left frees its slot; our own dials are not
    counted."""
    p = policy()  # max_neighbours 24, service_links 8
    took = [i for i in range(40) if p.link_up(f"a{i}", key(i), dialled=False, now=0,
                                               addr=("198.18.0.66", 40000 + i))]
    assert len(took) == 6
    refused = [c for c in of(p.actions(), pp.CloseLink) if c.reason == "too many links from this address"]
    assert len(refused) == 34 and all(c.code == ErrorCode.OVERLOADED for c in refused)
    assert p.counters.links_refused_per_ip == 34
    assert p.link_up("other", key(100), dialled=False, now=0, addr=("198.18.0.67", 5000))
    for i in range(6):  # one /64: the same subscriber whatever the interface id
        assert p.link_up(f"v6-{i}", key(200 + i), dialled=False, now=0,
                         addr=(f"2001:db8:0:1::{i + 1}", 5000))
    assert not p.link_up("v6-7", key(207), dialled=False, now=0, addr=("2001:db8:0:1::99", 5000))
    assert p.link_up("v6-other", key(208), dialled=False, now=0, addr=("2001:db8:0:2::1", 5000))
    assert p.link_up("mine", key(300), dialled=True, now=0, addr=("198.18.0.66", 7000))
    p.link_down("a0", key(took[0]), now=1)
    assert p.link_up("again", key(400), dialled=False, now=1, addr=("198.18.0.66", 41000))
    lo = policy()
    assert all(lo.link_up(f"l{i}", key(i), dialled=False, now=0, addr=("127.0.0.1", 40000 + i))
               for i in range(24))  # a demo's viewers all come from loopback
    assert lo.counters.links_refused_per_ip == 0


def test_inbound_links_beyond_the_limit_are_refused_dialled_ones_are_not():
    p = policy(max_neighbours=2, service_links=0)
    assert p.link_up("a", key(1), dialled=False, now=0)
    assert p.link_up("b", key(2), dialled=False, now=0)
    assert not p.link_up("c", key(3), dialled=False, now=0)
    closes = of(p.actions(), pp.CloseLink)
    assert closes == [pp.CloseLink("c", key(3), ErrorCode.OVERLOADED, "neighbour limit reached")]
    assert p.counters.links_refused == 1
    # a link we dialled ourselves is ours to keep (dials stop at target_neighbours)
    assert p.link_up("d", key(4), dialled=True, now=0)
    assert p.neighbour_count() == 3
    # the dialler joins every stream the node carries
    assert pp.SendTo("d", wire.Join(stream=TEXT, short=True)) in p.actions()


def _simultaneous(first_dialled_by_low: bool) -> tuple[str | None, str | None]:
    """LOW and HIGH dial each other at once: link "L" dialled by LOW, "H" by HIGH.
    Each side sees the two links authenticate in some order; return what each keeps."""
    lo, hi = policy(LOW), policy(HIGH)
    order = [("L", True), ("H", False)] if first_dialled_by_low else [("H", False), ("L", True)]
    for link, lo_dialled in order:
        lo.link_up(link, HIGH, dialled=lo_dialled, now=0)
    for link, lo_dialled in reversed(order):
        hi.link_up(link, LOW, dialled=not lo_dialled, now=0)
    for side in (lo, hi):
        closed = [a.link for a in of(side.actions(), pp.CloseLink)]
        assert len(closed) == 1 and closed[0] == "H"  # the other link is closed, NO_ERROR
        assert side.counters.links_duplicate == 1
    return lo.link_of(HIGH), hi.link_of(LOW)


def test_duplicate_links_keep_the_one_dialled_by_the_smaller_key_in_either_order():
    assert _simultaneous(True) == ("L", "L")
    assert _simultaneous(False) == ("L", "L")


def test_duplicate_swap_keeps_joins_and_the_old_links_close_is_ignored():
    p = policy(LOW)
    joined_peer(p, HIGH, "H")  # HIGH dialled us first
    assert p.link_up("L", HIGH, dialled=True, now=1)  # then our own dial completes: ours wins
    assert SKEY in p.joined(HIGH)
    p.link_down("H", HIGH, now=1)  # the losing link's close must not unlink the peer
    assert p.link_of(HIGH) == "L"
    assert not of(p.actions(), pp.RemovePeer)


def test_a_linked_peer_that_dials_again_later_gets_its_new_link_whatever_the_keys():
    """A viewer restarted (same key, a new process): it dials us again while our side still
    holds its dead link. Its new link wins, whatever the keys (the smaller-key rule kept the
    dead link and the restarted viewer had no neighbour for 14-18 s; found 2026-12-06 from
    outside). Both orders of the keys; within DUPLICATE_WINDOW the crossing rule holds."""
    for me, them in ((LOW, HIGH), (HIGH, LOW)):
        p = policy(me)
        joined_peer(p, them, "old")
        p.actions()
        t = pp.DUPLICATE_WINDOW + 1.0
        assert p.link_up("new", them, dialled=False, now=t)
        assert p.link_of(them) == "new"
        closes = of(p.actions(), pp.CloseLink)
        assert [c.link for c in closes] == ["old"] and p.counters.links_redialled == 1
        p.link_down("old", them, now=t)  # the old link's close unlinks nothing
        assert p.link_of(them) == "new" and not of(p.actions(), pp.RemovePeer)
    # within the window, a crossing: the smaller key's dial wins (as above)
    p = policy(LOW)
    assert p.link_up("L", HIGH, dialled=True, now=0.0)
    assert not p.link_up("H", HIGH, dialled=False, now=1.0)
    assert p.link_of(HIGH) == "L" and p.counters.links_redialled == 0


def test_a_dial_that_completes_late_is_the_new_link_at_both_ends():
    """Found 2026-12-06 by an outside audit: A's dial of B came up at t=0; B's own dial of A
    completed at t=5.5 (a slow handshake). The listener (A) applied the redial rule and kept
    B's new link; the dialler (B), for one key order, applied the smaller-key rule and
    closed it: both links closed. Both ends keep the new link now, whatever the keys."""
    for a_key, b_key in ((LOW, HIGH), (HIGH, LOW)):
        a, b = policy(a_key), policy(b_key)
        assert a.link_up("L1", b_key, dialled=True, now=0.0)
        assert b.link_up("L1", a_key, dialled=False, now=0.0)
        a.actions(), b.actions()
        t = pp.DUPLICATE_WINDOW + 0.5
        kept_a = a.link_up("L2", b_key, dialled=False, now=t)
        kept_b = b.link_up("L2", a_key, dialled=True, now=t)
        closed_a = [c.link for c in of(a.actions(), pp.CloseLink)]
        closed_b = [c.link for c in of(b.actions(), pp.CloseLink)]
        assert kept_a and kept_b, (a_key == LOW, closed_a, closed_b)
        assert a.link_of(b_key) == b.link_of(a_key) == "L2"
        assert closed_a == closed_b == ["L1"]



def test_a_peer_that_says_it_does_not_carry_a_stream_leaves_it_here():
    """Found 2026-12-06 from outside: a broadcaster restarted without a stream its API had
    published answered its viewer's JOIN with ERROR unknown_stream; the viewer ignored it
    and kept sending STATUS for the stream, each an offence there, and was banned after
    40 s (cut off its other stream too). It takes the peer out of that stream now."""
    p = policy(LOW)
    joined_peer(p, HIGH, "L")
    p.actions()
    other = wire.Error(code=int(ErrorCode.UNKNOWN_STREAM), reason="stream-b")  # not ours: nothing
    assert p.on_message("L", HIGH, other, 1.0) is None and SKEY in p.joined(HIGH)
    gone = wire.Error(code=int(ErrorCode.UNKNOWN_STREAM), reason=TEXT)
    assert p.on_message("L", HIGH, gone, 1.1) is None
    assert SKEY not in p.joined(HIGH) and pp.RemovePeer(HIGH, SKEY) in p.actions()
    assert p.counters.errors_unknown_stream == 1 and p.link_of(HIGH) == "L"  # still linked
    # another kind of error about it changes nothing
    p2 = policy(LOW)
    joined_peer(p2, HIGH, "L")
    p2.actions()
    p2.on_message("L", HIGH, wire.Error(code=int(ErrorCode.OVERLOADED), reason=TEXT), 1.0)
    assert SKEY in p2.joined(HIGH) and not of(p2.actions(), pp.RemovePeer)

# ---- bans and scores ----------------------------------------------------------------

def test_violations_past_the_score_ban_close_and_refuse_until_expiry():
    p = policy(ban_score=5.0, ban_seconds=30.0)
    bad = key(9)
    joined_peer(p, bad, "x")
    for _ in range(4):
        p.on_violation("x", bad, now=1.0, detail="malformed")
    assert not p.is_banned(bad, 1.0)
    p.on_violation("x", bad, now=1.0, detail="malformed")
    acts = p.actions()
    assert p.is_banned(bad, 1.0)
    assert of(acts, pp.Ban)[0].until == 31.0
    assert of(acts, pp.CloseLink) == [pp.CloseLink("x", bad, ErrorCode.TOO_MANY_ERRORS,
                                                   "score 5.0: malformed")]
    assert p.counters.peers_dropped_score == 1 and p.counters.violations == 5
    # nothing more is routed from the closing link
    assert p.on_message("x", bad, status(), 1.1) is None
    p.link_down("x", bad, 1.2)
    assert pp.RemovePeer(bad, SKEY) in p.actions()
    # it comes back: refused while banned, and our dials to it are refused
    assert not p.link_up("y", bad, dialled=False, now=10)
    assert p.counters.links_refused_banned == 1
    assert not p.may_dial(bad, "127.0.0.1", 9, now=10)
    # after the ban it is admitted again, with a clean score
    assert p.link_up("z", bad, dialled=False, now=31.5)
    assert p.score(bad, 31.5) == 0.0


def test_score_decays_so_rare_errors_never_ban_an_honest_peer():
    p = policy(ban_score=5.0, score_decay=0.1)
    honest = key(3)
    joined_peer(p, honest, "h")
    for i in range(200):  # one error every 20 s for over an hour
        p.on_violation("h", honest, now=i * 20.0)
    assert not p.is_banned(honest, 4000.0) and p.counters.peers_banned == 0


def test_swarm_drop_peer_bans_at_once():
    p = policy()
    liar = key(4)
    joined_peer(p, liar, "l")
    p.on_drop_peer(liar, ErrorCode.BAD_CHUNK, "3 chunks failed verification", now=2.0)
    acts = p.actions()
    assert of(acts, pp.CloseLink)[0].code == ErrorCode.BAD_CHUNK
    assert p.counters.peers_dropped_bad_chunks == 1 and p.is_banned(liar, 2.0)
    assert not p.on_chunk("l", liar, SKEY, 2.1)


def test_ban_table_is_bounded_and_evicts_the_entry_expiring_first():
    p = policy(max_bans=4, ban_seconds=100.0)
    for i in range(10):
        p.ban(key(i), now=float(i))
    assert len(p.bans) == 4 and p.counters.bans_evicted == 6
    assert set(p.bans) == {key(6), key(7), key(8), key(9)}
    # expired entries are purged before anything live is evicted
    p.ban(key(20), now=200.0)
    assert p.bans == {key(20): 300.0} and p.counters.bans_evicted == 6


# ---- budgets and routing ------------------------------------------------------------------

def test_control_message_flood_is_dropped_counted_and_banned():
    p = policy(msg_rate=50.0, msg_burst=100.0, ban_score=20.0)
    flood, honest = key(5), key(6)
    joined_peer(p, flood, "f")
    joined_peer(p, honest, "h")
    routed = sum(p.on_message("f", flood, status(), 1.0) == SKEY for _ in range(1000))
    assert 80 <= routed <= 100  # the bucket (less the JOIN), then nothing
    assert p.counters.messages_over_budget >= 80
    assert p.is_banned(flood, 1.0)
    assert of(p.actions(), pp.CloseLink)[0].link == "f"
    # an honest peer at 40 messages/s (under the 50/s budget) for 100 s: all routed
    t = 1.0
    for _ in range(4000):
        t += 0.025
        assert p.on_message("h", honest, status(), t) == SKEY
    assert not p.is_banned(honest, t)


def test_messages_for_unjoined_streams_are_counted_and_past_a_limit_banned():
    p = policy(ban_score=10.0)
    m = key(8)
    assert p.link_up("m", m, dialled=False, now=0)  # linked, but joined nothing
    other = b"\x08" * 32
    for i in range(9):
        assert p.on_message("m", m, status(SKEY if i % 2 else other), 0.5) is None
    assert p.counters.messages_unjoined == 9 and p.counters.violations == 9
    # each is reported with its context (the first REPORTS of them), for the log
    reports = [a for a in p.actions() if isinstance(a, pp.Report)]
    assert len(reports) == 9 and all(r.peer == m for r in reports)
    assert reports[0].text.startswith("Status for stream") and "accepted" in reports[0].text
    assert not p.is_banned(m, 0.5)
    p.on_message("m", m, status(), 0.5)
    assert p.is_banned(m, 0.5)
    assert not p.on_chunk("m", m, SKEY, 0.5)


def test_ledger_messages_go_to_the_node_and_errors_are_counted():
    p = policy()
    joined_peer(p, key(1), "a")
    assert p.on_message("a", key(1), wire.WalletBind(binding=b"x"), 1) == pp.TO_NODE
    assert p.on_message("a", key(1), wire.Error(code=1, reason="r"), 1) is None
    assert p.counters.errors_received == 1
    # a link that is not the peer's admitted link routes nothing
    assert p.on_message("stale", key(1), status(), 1) is None


# ---- JOIN routing ---------------------------------------------------------------------

def test_join_unknown_stream_and_per_peer_limit_and_leave():
    p = policy(max_streams_per_peer=2, max_streams=3)
    for i in range(2):
        assert p.add_stream(f"s{i}", bytes([0x10 + i]) * 32)
    assert not p.add_stream("s9", b"\x20" * 32)
    assert p.counters.streams_refused == 1
    peer = key(2)
    assert p.link_up("a", peer, dialled=False, now=0)
    p.on_message("a", peer, wire.Join(stream="nope"), 0)
    assert of(p.actions(), pp.SendTo) == [pp.SendTo("a", wire.Error(code=int(ErrorCode.UNKNOWN_STREAM),
                                                                    reason="nope"))]
    p.on_message("a", peer, wire.Join(stream=TEXT), 0)
    acts = p.actions()  # the listener joins back, and the swarm gets the peer
    assert pp.SendTo("a", wire.Join(stream=TEXT, short=True)) in acts and pp.AddPeer(peer, SKEY) in acts
    p.on_message("a", peer, wire.Join(stream=TEXT), 0)
    # a repeat: answered with our JOIN again (the dialler may have started afresh), no AddPeer
    assert p.actions() == [pp.SendTo("a", wire.Join(stream=TEXT, short=True))] and p.counters.joins_repeated == 1
    p.on_message("a", peer, wire.Join(stream="s0"), 0)
    p.on_message("a", peer, wire.Join(stream="s1"), 0)  # third stream: over the limit
    err = of(p.actions(), pp.SendTo)[-1].message
    assert err == wire.Error(code=int(ErrorCode.OVERLOADED), reason="stream limit per peer")
    assert p.counters.joins_over_limit == 1 and len(p.joined(peer)) == 2
    # LEAVE frees the stream: the swarm drops the peer, and it may join again
    assert p.on_message("a", peer, wire.Leave(stream=SKEY), 0) is None
    assert p.actions() == [pp.RemovePeer(peer, SKEY)]
    p.on_message("a", peer, wire.Join(stream=TEXT), 0)
    assert pp.AddPeer(peer, SKEY) in p.actions()


def test_dialler_does_not_join_back():
    p = policy()
    assert p.link_up("a", key(1), dialled=True, now=0)
    p.actions()
    p.on_message("a", key(1), wire.Join(stream=TEXT), 0)
    assert p.actions() == [pp.AddPeer(key(1), SKEY)]


def test_joins_ask_for_a_start_until_the_stream_plays():
    """While the node has not started a stream its JOINs carry ``start``; the peer's
    AddPeer says whether its JOIN asked us for one and whether ours asked it."""
    p = policy()
    p.set_starting(SKEY, True)
    assert p.link_up("a", key(1), dialled=True, now=0)
    assert wire.Join(stream=TEXT, start=True, short=True) in [a.message for a in of(p.actions(), pp.SendTo)]
    p.on_message("a", key(1), wire.Join(stream=TEXT, start=False), 0)
    assert p.actions() == [pp.AddPeer(key(1), SKEY, start=False, asked=True)]
    # a listener answers a JOIN that asks for a start with its own (it plays: no start)
    p.set_starting(SKEY, False)
    assert p.link_up("b", key(2), dialled=False, now=0)
    p.actions()
    p.on_message("b", key(2), wire.Join(stream=TEXT, start=True), 0)
    acts = p.actions()
    assert wire.Join(stream=TEXT, start=False, short=True) in [a.message for a in of(acts, pp.SendTo)]
    assert pp.AddPeer(key(2), SKEY, start=True, asked=False) in acts
    p.remove_stream(TEXT)
    assert not p.starting


def test_a_stream_added_while_linked_is_joined_on_every_neighbour_link():
    """A link is JOINed when it comes up; a stream added later is JOINed at once on every
    neighbour link, the ones we dialled and the inbound ones (asking for a start while it
    does not play), and the peer's answering JOIN adds it to the swarm; we do not answer the
    answer. Watched again after a stop (our LEAVE ended the old joins), the stream gets the
    peer again. Before, the node neither JOINed a linked peer nor dialled it (linked
    already): a second stream of the broadcaster it watched, or the same one watched again,
    played from the origin alone."""
    p = policy()
    assert p.link_up("out", key(1), dialled=True, now=0)
    assert p.link_up("in", key(2), dialled=False, now=0)
    assert p.link_up("idle", key(3), dialled=False, now=0)  # inbound, joined nothing: no neighbour
    p.actions()
    p.on_message("out", key(1), wire.Join(stream=TEXT), 0)
    p.on_message("in", key(2), wire.Join(stream=TEXT), 0)
    p.actions()
    two, skey2 = "stream-b", b"\x08" * 32
    assert p.add_stream(two, skey2, starting=True)
    assert sorted(of(p.actions(), pp.SendTo), key=lambda a: a.link) == [
        pp.SendTo("in", wire.Join(stream=two, start=True, short=True)), pp.SendTo("out", wire.Join(stream=two, start=True, short=True))]
    p.on_message("out", key(1), wire.Join(stream=two), 1)  # the listener joins back
    assert p.actions() == [pp.AddPeer(key(1), skey2, start=False, asked=True)]
    p.on_message("in", key(2), wire.Join(stream=two), 1)  # so does the dialler, now
    assert p.actions() == [pp.AddPeer(key(2), skey2, start=False, asked=True)]  # no JOIN back
    # stopped (the node sends LEAVE to its swarm peers), then watched again
    p.remove_stream(two)
    assert skey2 in p.joined(key(1))  # kept: its messages in flight are no offence
    assert p.add_stream(two, skey2, starting=True)
    assert len(of(p.actions(), pp.SendTo)) == 2
    p.on_message("out", key(1), wire.Join(stream=two), 2)
    assert p.actions() == [pp.AddPeer(key(1), skey2, start=False, asked=True)]
    assert p.counters.joins_repeated == 0


def test_a_listener_that_joins_first_is_taken_at_the_dialler_and_at_its_status():
    """A listener that starts carrying a stream after the link came up JOINs first. The
    dialler JOINed that stream at link-up (refused then: UNKNOWN_STREAM), so it takes the
    JOIN without answering; its STATUS is the listener's answer, taken as its JOIN (no
    offence), also for a chunk that comes first (a start's keyframe). So is a dialler from
    before 2026-12-03, which never answers a listener's JOIN."""
    two, skey2 = "stream-b", b"\x08" * 32
    d = policy()  # the dialler, carrying both
    assert d.add_stream(two, skey2)
    assert d.link_up("l", key(1), dialled=True, now=0)
    assert len(of(d.actions(), pp.SendTo)) == 2  # JOIN of each (two is refused: not carried there)
    d.on_message("l", key(1), wire.Join(stream=two), 1)  # the listener's, later
    assert d.actions() == [pp.AddPeer(key(1), skey2)]  # no JOIN back: it sent one
    lst = policy()  # the listener: it JOINs first ...
    assert lst.link_up("d", key(2), dialled=False, now=0)
    lst.on_message("d", key(2), wire.Join(stream=TEXT), 0)
    lst.actions()
    assert lst.add_stream(two, skey2)
    assert of(lst.actions(), pp.SendTo) == [pp.SendTo("d", wire.Join(stream=two, short=True))]
    # ... and an older dialler answers with STATUS only: taken as its JOIN, routed
    assert lst.on_message("d", key(2), status(skey2), 1) == skey2
    assert lst.actions() == [pp.AddPeer(key(2), skey2, start=False, asked=False)]
    assert lst.counters.messages_unjoined == 0 and lst.score(key(2), 1) == 0
    lst2 = policy()
    assert lst2.link_up("d", key(2), dialled=False, now=0)
    lst2.on_message("d", key(2), wire.Join(stream=TEXT), 0)
    assert lst2.add_stream(two, skey2, starting=True)
    lst2.actions()
    assert lst2.on_chunk("d", key(2), skey2, 1)  # the start's keyframe before the STATUS
    assert lst2.counters.chunks_unjoined == 0
    # a stream we did not JOIN on that link stays an offence
    assert lst2.on_message("d", key(2), status(b"\x09" * 32), 1) is None
    assert lst2.counters.messages_unjoined == 1


def test_two_nodes_that_add_a_stream_in_either_order_take_each_other():
    """Both ends of a link start carrying a stream later, the listener first: its JOIN is
    refused (not carried yet), the dialler's later JOIN is taken without an answer (the
    listener sent one), and the listener's STATUS is the dialler's answer. Both swarms
    take the other; no message is unjoined (the refused JOIN costs the listener ½ point
    at the dialler, as any JOIN of a stream not carried, which decays in 5 s)."""
    two, skey2 = "stream-b", b"\x08" * 32
    a, b = policy(LOW), policy(HIGH)  # a listens, b dials
    assert b.link_up("to-a", LOW, dialled=True, now=0)
    assert a.link_up("to-b", HIGH, dialled=False, now=0)

    def deliver(src: pp.PeerPolicy[str], dst: pp.PeerPolicy[str], link: str, sender: bytes, now: float) -> None:
        for act in of(src.actions(), pp.SendTo):
            dst.on_message(link, sender, act.message, now)

    deliver(b, a, "to-b", HIGH, 0)  # b's JOIN of TEXT
    deliver(a, b, "to-a", LOW, 0)  # a's answer
    b.actions()
    assert a.add_stream(two, skey2)
    deliver(a, b, "to-a", LOW, 1)  # a JOINs its inbound neighbour first: refused by b
    assert b.counters.joins_unknown_stream == 1
    deliver(b, a, "to-b", HIGH, 1)  # (b's ERROR)
    assert b.add_stream(two, skey2)
    deliver(b, a, "to-b", HIGH, 2)  # b's JOIN: a takes it, and sends no JOIN (it sent one)
    assert a.actions() == [pp.AddPeer(HIGH, skey2)]
    assert b.on_message("to-a", LOW, status(skey2), 2) == skey2  # a's STATUS: b's answer
    assert b.actions() == [pp.AddPeer(LOW, skey2)]
    assert b.counters.messages_unjoined == 0 and a.counters.messages_unjoined == 0
    assert skey2 in a.joined(HIGH) and skey2 in b.joined(LOW)


# ---- dialling and cadence -------------------------------------------------------------------

def cands(n: int, port0: int = 4000) -> list[pp.Candidate]:
    """``n`` peers, each at its own address (one host's many ports are dialled
    ``max_dials_per_ip`` at a time: test_core_dialplan_atk7.py)."""
    return [pp.Candidate(key(100 + i), f"10.0.{i // 250}.{1 + i % 250}", port0 + i) for i in range(n)]


def test_dials_are_bounded_per_round_and_stop_at_target():
    p = policy(target_neighbours=4, dial_extra=2, max_dials_per_round=5, dial_patience=0.0)
    assert p.get_timer() == 0.0  # announce at once
    p.handle_timer(0.0)
    assert of(p.actions(), pp.Announce)
    p.on_candidates(cands(30), 0.1, verified=True, interval=10.0)
    dials = of(p.actions(), pp.Dial)
    assert len(dials) == 5 and len({d.peer for d in dials}) == 5  # min(need+2, 5)
    assert p.get_timer() == 0.1 + 1.0  # short of neighbours: announce again soon
    for i, d in enumerate(dials[:4]):
        assert p.link_up(f"d{i}", d.peer, dialled=True, now=0.5)
    p.dial_failed(dials[4].peer, 0.6)
    p.on_candidates(cands(30), 1.1, verified=True, interval=10.0)
    assert of(p.actions(), pp.Dial) == []  # at target: nobody more
    assert p.dials.announce_at == 1.1 + 10.0  # (the timer also wakes for NEIGHBOURS)


def test_short_of_neighbours_the_announces_slow_down_while_the_answers_name_nobody_new():
    """A small swarm has no more peers to name: each answer with nobody new doubles the
    wait for the next announce, up to the linked cadence; a new peer brings back the fast
    cadence, a neighbour leaving an announce at once and the doubling from the start."""
    p = policy(target_neighbours=12, fast_interval=1.0, announce_interval=10.0)
    known = cands(3)
    now = 0.0
    waits = []
    for _ in range(6):
        p.on_candidates(known, now, verified=True)
        waits.append(round(p.dials.announce_at - now, 6))
        now = p.dials.announce_at
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]  # the first answer named them all first
    p.on_candidates([*known, pp.Candidate(key(200), "10.0.0.2", 4000)], now, verified=True)
    assert p.dials.announce_at == now + 1.0  # somebody new: ask again soon
    p.on_candidates(known, now + 1.0, verified=True)
    assert p.dials.announce_at == now + 1.0 + 2.0
    d = of(p.actions(), pp.Dial)[0]
    p.link_up("l0", d.peer, dialled=True, now=now + 1.5)
    p.link_down("l0", d.peer, now=now + 2.0)
    assert p.dials.announce_at == now + 2.0 + 0.05  # a neighbour left: soon
    p.on_candidates(known, now + 2.1, verified=True)
    assert p.dials.announce_at == now + 2.1 + 2.0  # the doubling starts over


def test_failed_addresses_back_off_exponentially_and_banned_peers_are_not_dialled():
    p = policy(target_neighbours=1, dial_extra=0, backoff_base=1.0)
    c = cands(1)
    p.ban(key(100 + 1), 0.0)  # not among c: harmless
    waits = []
    now = 0.0
    for _ in range(4):
        p.on_candidates(c, now, verified=True)
        dial = of(p.actions(), pp.Dial)
        assert dial == [pp.Dial(c[0].peer, "10.0.0.1", 4000)]
        p.dial_failed(c[0].peer, now)
        until = p.dials.backoff[("10.0.0.1", 4000)][1]
        waits.append(until - now)
        p.on_candidates(c, now + 0.01, verified=True)
        assert of(p.actions(), pp.Dial) == []  # backed off
        now = until + 0.001
    assert all(2 ** i <= w <= 1.25 * 2 ** i for i, w in enumerate(waits)), waits  # doubling, jittered
    assert p.counters.dial_failures == 4
    p.ban(c[0].peer, now)
    p.on_candidates(c, now, verified=True)
    assert of(p.actions(), pp.Dial) == []


def test_a_failed_dial_backs_off_the_address_dialled_not_the_candidate_address():
    p = policy(target_neighbours=0, backoff_base=1.0)
    c = cands(1)
    p.on_candidates(c, 0.0, verified=True)
    assert p.may_dial(c[0].peer, "10.9.9.9", 5000, 0.0)  # the executor dials another address
    p.dial_failed(c[0].peer, 0.1)
    assert p.dials.backed_off(("10.9.9.9", 5000), 0.2)
    assert not p.dials.backed_off(("10.0.0.1", 4000), 0.2)  # the candidate's own address is fine
    assert p.dials.dial_addr == {}  # nothing left behind


def test_unverified_candidates_are_ignored_and_the_table_is_bounded():
    p = policy(target_neighbours=0, max_candidates=10)
    p.on_candidates(cands(5), 0, verified=False)
    assert p.candidates == {} and p.counters.candidates_unverified == 5
    p.on_candidates(cands(50), 0, verified=True)
    assert len(p.candidates) == 10 and p.counters.candidates_evicted == 40


def test_a_neighbour_leaving_redials_from_known_candidates_and_announces_soon():
    p = policy(target_neighbours=2, dial_extra=0)
    p.on_candidates(cands(5), 0, verified=True, interval=10.0)
    d = of(p.actions(), pp.Dial)
    for i, x in enumerate(d):
        p.link_up(f"l{i}", x.peer, dialled=True, now=0.2)
    p.on_candidates(cands(5), 1.0, verified=True, interval=10.0)
    assert p.dials.announce_at == 11.0
    p.link_down("l0", d[0].peer, now=3.0)
    again = of(p.actions(), pp.Dial)
    assert len(again) == 1 and again[0].peer not in {d[1].peer}
    assert p.get_timer() == 3.0 + 0.05


def test_a_peer_that_refuses_us_is_backed_off():
    p = policy(target_neighbours=1, dial_extra=0)
    p.on_candidates(cands(1), 0, verified=True)
    (d,) = of(p.actions(), pp.Dial)
    p.link_up("x", d.peer, dialled=True, now=0.1)
    p.link_down("x", d.peer, now=0.2, code=ErrorCode.OVERLOADED)
    assert of(p.actions(), pp.Dial) == []  # not re-dialled at once
    assert p.dials.backed_off(("10.0.0.1", 4000), 0.3)


def test_unreported_dials_time_out_and_announce_watchdog():
    p = policy(target_neighbours=1, dial_extra=0, dial_timeout=10.0, announce_timeout=10.0,
               dial_patience=0.0)  # (its own timer: tests/core/test_core_dial_patience.py)
    p.on_candidates(cands(1), 0, verified=True, interval=30.0)
    p.actions()
    assert p.get_timer() == 1.0  # fast interval while short
    p.handle_timer(1.0)
    assert of(p.actions(), pp.Announce)
    assert p.get_timer() == 10.0  # the dial's deadline comes before the announce watchdog
    p.handle_timer(10.0)
    assert p.counters.dial_failures == 1 and not p.dialling
    assert p.get_timer() == 11.0
    assert p.may_dial(key(3), "10.0.0.2", 1, 11.0)
    assert not p.may_dial(key(3), "10.0.0.2", 1, 11.0)  # already dialling
    assert p.counters.dials_refused == 1


# ---- never crash, always bounded -----------------------------------------------------------------

OPS = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 15), st.booleans(),
                         st.floats(0, 5, allow_nan=False)), max_size=300)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_any_event_sequence_keeps_tables_bounded(ops):
    p = policy(max_neighbours=4, max_bans=3, max_candidates=5, max_backoff=4, max_streams_per_peer=1,
               max_scores=3, sweep_interval=1.0, join_timeout=2.0, silence_timeout=4.0)
    now = 0.0
    for op, i, flag, dt in ops:
        now += dt
        peer, link = key(i), f"l{i}{flag}"
        if op == 0:
            p.link_up(link, peer, dialled=flag, now=now)
        elif op == 1:
            p.link_down(link, peer, now, code=ErrorCode.OVERLOADED if flag else ErrorCode.NO_ERROR)
        elif op == 2:
            p.on_message(link, peer, wire.Join(stream=TEXT if flag else "x"), now)
        elif op == 3:
            p.on_message(link, peer, status(), now)
        elif op == 4:
            p.on_violation(link, peer if flag else None, now)
        elif op == 5:
            p.on_drop_peer(peer, ErrorCode.BAD_CHUNK, "bad", now)
        elif op == 6:
            p.on_candidates(cands(i, 5000 + i), now, verified=flag)
        elif op == 7:
            p.dial_failed(key(100 + i), now)
        elif op == 8:
            t = p.get_timer()
            if t is not None:
                now = max(now, t)
                p.handle_timer(now)
        else:
            p.on_message(link, peer, wire.Leave(stream=SKEY), now)
        p.actions()
        assert len(p.bans) <= 3 and len(p.candidates) <= 5 and len(p.dials.backoff) <= 4 and len(p.scores) <= 3
        assert all(len(x.joined) <= 1 for x in p.peers.values())
        assert len(p.dialling) <= p.config.max_dials_per_round + p.config.target_neighbours


def test_reconnecting_does_not_wipe_a_score_and_timeouts_add_to_it():
    p = policy(ban_score=10.0, score_decay=0.1, max_scores=2)
    m = key(11)
    assert p.link_up("a", m, dialled=False, now=0)
    for _ in range(8):
        p.on_violation("a", m, now=0.0)
    p.link_down("a", m, now=0.0)
    assert p.score(m, 0.0) == 8.0  # remembered while unlinked
    assert p.link_up("b", m, dialled=False, now=1.0)  # comes back a second later
    assert abs(p.score(m, 1.0) - 7.9) < 1e-9
    p.link_down("b", m, now=1.0, code=ErrorCode.TIMEOUT)  # and its link times out
    assert abs(p.score(m, 1.0) - 9.9) < 1e-9
    assert p.link_up("c", m, dialled=False, now=1.0)
    p.on_violation("c", m, now=1.0)
    assert p.is_banned(m, 1.0)  # the three links' offences added up
    # the remembered table is bounded
    for i in range(5):
        assert p.link_up(f"x{i}", key(20 + i), dialled=False, now=2.0)
        p.on_violation(f"x{i}", key(20 + i), now=2.0)
        p.link_down(f"x{i}", key(20 + i), now=2.0)
    assert len(p.scores) == 2 and p.counters.scores_evicted == 3


def test_candidates_must_name_a_unicast_ip_literal():
    p = policy(target_neighbours=0)
    bad = [pp.Candidate(key(1), "example.com", 4000), pp.Candidate(key(2), "0.0.0.0", 4000),
           pp.Candidate(key(3), "224.0.0.1", 4000), pp.Candidate(key(4), "255.255.255.255", 4000),
           pp.Candidate(key(5), "10.0.0.1", 0), pp.Candidate(key(6), "::", 1)]
    p.on_candidates(bad + [pp.Candidate(key(7), "::1", 4000)], 0, verified=True)
    assert list(p.candidates) == [key(7)] and p.counters.candidates_invalid == 6
    assert not p.may_dial(key(8), "localhost", 4000, 0)


def test_a_peer_that_keeps_refusing_backs_off_longer_each_time_and_a_stable_link_clears_it():
    p = policy(target_neighbours=1, dial_extra=0, backoff_base=1.0, stable_link=30.0)
    c = cands(1)
    addr = ("10.0.0.1", 4000)
    now = 0.0
    for i in range(3):  # admitted, then refused by the peer, three times over
        p.on_candidates(c, now, verified=True)
        (d,) = of(p.actions(), pp.Dial)
        p.link_up(f"x{i}", d.peer, dialled=True, now=now)
        p.link_down(f"x{i}", d.peer, now=now, code=ErrorCode.OVERLOADED)
        failures, until = p.dials.backoff[addr]
        assert failures == i + 1 and until - now >= 2 ** i
        now = until + 0.01
    p.on_candidates(c, now, verified=True)
    (d,) = of(p.actions(), pp.Dial)
    p.link_up("ok", d.peer, dialled=True, now=now)
    p.link_down("ok", d.peer, now=now + 31.0)  # a normal close after a long life
    assert addr not in p.dials.backoff


def test_a_peer_closed_for_silence_is_not_dialled_again_at_once():
    """A relay we dialled claims a feed, then says nothing: the sweep closes it (TIMEOUT)
    after 30 s. It used to be re-dialled 0.1 s later (its 30 s link counted as stable), and
    the cycle went on; now its address backs off like a refusing peer's, longer each time."""
    p = policy(target_neighbours=1, dial_extra=0, backoff_base=1.0, stable_link=30.0,
               sweep_interval=1.0, silence_timeout=30.0)
    c = cands(1)
    addr = ("10.0.0.1", 4000)
    now = 0.0
    for i in range(3):
        p.on_candidates(c, now, verified=True)
        (d,) = of(p.actions(), pp.Dial)
        p.link_up(f"s{i}", d.peer, dialled=True, now=now)
        p.handle_timer(now + 31.0)  # the sweep: silent for 30 s
        (close,) = [a for a in of(p.actions(), pp.CloseLink) if a.link == f"s{i}"]
        assert close.code == ErrorCode.TIMEOUT
        now += 31.0
        p.link_down(f"s{i}", d.peer, now=now, code=ErrorCode.TIMEOUT)
        failures, until = p.dials.backoff[addr]
        assert failures == i + 1 and until - now >= 2 ** i
        p.on_candidates(c, now + 0.1, verified=True)
        assert of(p.actions(), pp.Dial) == []  # not at once
        now = until + 0.01


def test_links_that_join_nothing_or_go_silent_are_closed_and_scored():
    p = policy(sweep_interval=1.0, join_timeout=10.0, silence_timeout=30.0)
    idle, quiet, talker = key(1), key(2), key(3)
    assert p.link_up("i", idle, dialled=False, now=0)  # takes a slot, joins nothing
    joined_peer(p, quiet, "q")  # joins, then says nothing
    joined_peer(p, talker, "t")
    t = 0.0
    closes: list = []
    while t < 40.0:
        t = p.get_timer()
        p.handle_timer(t)
        p.on_message("t", talker, status(), t)  # an honest peer: STATUS every second or so
        closes += of(p.actions(), pp.CloseLink)
    assert [(c.link, c.code) for c in closes] == [("i", ErrorCode.TIMEOUT), ("q", ErrorCode.TIMEOUT)]
    assert closes[0].reason == "no stream joined in 10 s" and closes[1].reason == "silent for 30 s"
    assert p.counters.links_idle_closed == 2
    p.link_down("i", idle, t, code=ErrorCode.TIMEOUT)
    assert p.score(idle, t) > 0  # the timeout is remembered against it
    assert p.link_of(talker) == "t"


def test_a_new_link_from_a_peer_whose_old_link_is_closing_starts_afresh():
    p = policy(sweep_interval=1.0, join_timeout=5.0)
    peer = key(4)
    assert p.link_up("old", peer, dialled=False, now=0)
    p.handle_timer(5.0)  # joined nothing: its link is closed TIMEOUT
    assert of(p.actions(), pp.CloseLink)[0].link == "old"
    assert p.link_up("new", peer, dialled=False, now=5.1)  # back before the old close landed
    p.on_message("new", peer, wire.Join(stream=TEXT), 5.2)
    assert pp.AddPeer(peer, SKEY) in p.actions()
    assert p.on_message("new", peer, status(), 5.3) == SKEY  # routed, not a zombie
    p.link_down("old", peer, 5.4, code=ErrorCode.TIMEOUT)  # the old close lands: ignored
    assert p.link_of(peer) == "new"


# ---- many policies on a virtual network (a reference executor, as the simulator would be) ------

class PolicyNet:
    """N policies linked over a virtual network: a Dial becomes a link after 1.5 RTT
    (QUIC + HELLO/AUTH; the listener admits first, then the dialler), messages take RTT/2,
    a close reaches the other side RTT/2 later; an Announce is answered by a tracker that
    names 8 random others. Every node sends STATUS on each joined link every 2 s (what
    the swarm does). Events on one heap, in virtual time."""

    RTT = 0.04

    def __init__(self, n: int, seed: int, **cfg) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.q: list = []
        self.n_ev = 0
        self.keys = [key(i) for i in range(n)]
        self.nodes = {}
        self.addr = {}
        for i, k in enumerate(self.keys):
            p = pp.PeerPolicy(k, pp.PolicyConfig(**cfg), rng=random.Random(seed * 1000 + i), now=0.0)
            p.add_stream(TEXT, SKEY)
            self.nodes[k] = p
            self.addr[(f"10.0.0.{i + 1}", 4000)] = k
        self.dead: set[int] = set()  #: closed links
        self.next_link = 0
        self.armed: dict[bytes, float] = {}
        self.swarm_peers = {k: set() for k in self.keys}  #: what AddPeer/RemovePeer told each swarm
        self.flooder: bytes | None = None
        for k in self.keys:
            self.apply(k)
            self.at(self.rng.random() * 2.0, self.statuses, k)

    def at(self, t: float, fn, *args) -> None:
        import heapq
        self.n_ev += 1
        heapq.heappush(self.q, (t, self.n_ev, fn, args))

    def run(self, until: float) -> None:
        import heapq
        while self.q and self.q[0][0] <= until:
            t, _, fn, args = heapq.heappop(self.q)
            self.now = max(self.now, t)
            fn(*args)
        self.now = until

    def timer(self, k: bytes, t: float) -> None:
        if self.armed.get(k) != t:
            return  # stale
        del self.armed[k]
        self.nodes[k].handle_timer(self.now)
        self.apply(k)

    def apply(self, k: bytes) -> None:
        p = self.nodes[k]
        for a in p.actions():
            if isinstance(a, pp.Dial):
                other = self.addr.get((a.host, a.port))
                if other != a.peer:
                    self.at(self.now + 5.0, self.dial_failed, k, a.peer)
                else:
                    self.next_link += 1
                    self.at(self.now + 1.5 * self.RTT, self.link_up, self.next_link, k, other)
            elif isinstance(a, pp.SendTo):
                link, src, dst = a.link
                other = dst if src == k else src
                self.at(self.now + self.RTT / 2, self.deliver, a.link, k, other, a.message)
            elif isinstance(a, pp.CloseLink):
                link, src, dst = a.link
                if link in self.dead:
                    continue
                self.dead.add(link)
                self.at(self.now, self.down, k, a.link, a.peer, a.code)
                self.at(self.now + self.RTT / 2, self.down, a.peer, a.link, k, a.code)
            elif isinstance(a, pp.AddPeer):
                self.swarm_peers[k].add(a.peer)
            elif isinstance(a, pp.RemovePeer):
                self.swarm_peers[k].discard(a.peer)
            elif isinstance(a, pp.Announce):
                self.at(self.now + self.RTT, self.answer, k)
        t = p.get_timer()
        if t is not None and self.armed.get(k) != t:
            self.armed[k] = t
            self.at(t, self.timer, k, t)

    def answer(self, k: bytes) -> None:
        others = [x for x in self.keys if x != k]
        found = [pp.Candidate(x, f"10.0.0.{self.keys.index(x) + 1}", 4000)
                 for x in self.rng.sample(others, 8)]
        self.nodes[k].on_candidates(found, self.now, verified=True, interval=5.0)
        self.apply(k)

    def dial_failed(self, k: bytes, peer: bytes) -> None:
        self.nodes[k].dial_failed(peer, self.now)
        self.apply(k)

    def link_up(self, link: int, dialler: bytes, listener: bytes) -> None:
        h = (link, dialler, listener)
        self.nodes[listener].link_up(h, dialler, dialled=False, now=self.now)
        self.apply(listener)
        # The dialler authenticates too; a refusal reaches it as a close RTT/2 later.
        self.nodes[dialler].link_up(h, listener, dialled=True, now=self.now)
        self.apply(dialler)

    def down(self, k: bytes, h: tuple, peer: bytes, code: ErrorCode) -> None:
        self.nodes[k].link_down(h, peer, self.now, code=code)
        self.apply(k)

    def deliver(self, h: tuple, src: bytes, dst: bytes, msg: wire.Message) -> None:
        if h[0] in self.dead:
            return
        self.nodes[dst].on_message(h, src, msg, self.now)
        self.apply(dst)

    def statuses(self, k: bytes) -> None:
        p = self.nodes[k]
        n = 300 if k == self.flooder else 1
        for peer in list(self.swarm_peers[k]):
            h = p.link_of(peer)
            if h is not None:
                for _ in range(n):
                    self.at(self.now + self.RTT / 2, self.deliver, h, k, peer, status())
        self.at(self.now + 2.0, self.statuses, k)

    def check_links(self) -> None:
        for k, p in self.nodes.items():
            for peer, entry in p.peers.items():
                if entry.closing:
                    continue
                mine = entry.link
                theirs = self.nodes[peer].link_of(k)
                assert theirs == mine, "both ends keep the same link"
                dialler = mine[1]
                assert (dialler == k) == entry.dialled


def test_a_virtual_network_of_policies_links_up_without_duplicates_and_cuts_a_flooder():
    net = PolicyNet(30, seed=5, target_neighbours=3, max_neighbours=5, msg_rate=20.0, msg_burst=40.0)
    net.run(20.0)
    net.check_links()
    for k, p in net.nodes.items():
        assert p.neighbour_count() >= 3, "everyone reached its target"
        inbound = sum(not e.dialled for e in p.peers.values())
        assert inbound <= 5
        assert net.swarm_peers[k] == set(p.peers), "every link joined the stream on both sides"
        assert p.counters.peers_banned == 0 and p.counters.links_idle_closed == 0
    # Node 0 turns flooder: 300 STATUS per neighbour every 2 s (budget 20/s, burst 40).
    bad = net.keys[0]
    victims = set(net.nodes[bad].peers)
    net.flooder = bad
    net.run(40.0)
    for v in victims:
        assert net.nodes[v].is_banned(bad, net.now) or bad not in net.nodes[v].peers
        assert net.nodes[v].counters.messages_over_budget > 0
    assert sum(net.nodes[v].counters.peers_banned for v in victims) >= len(victims)
    net.check_links()
    for k, p in net.nodes.items():
        if k != bad:
            assert bad not in p.peers or p.peers[bad].closing  # nobody keeps it
            assert p.neighbour_count() >= 3, "the victims relinked to others"
            assert p.counters.links_idle_closed == 0


def test_a_peer_whose_address_changed_is_told_its_new_address() -> None:
    p = policy()
    assert p.link_up("a", key(1), dialled=False, now=0, addr=("198.18.0.1", 4000))
    assert pp.SendTo("a", wire.Observed(host="198.18.0.1", port=4000)) in p.actions()
    p.address_changed("a", key(1), ("198.18.0.1", 4000), 1.0)  # the same: nothing
    assert not p.actions()
    p.address_changed("b", key(1), ("198.18.0.1", 40001), 1.0)  # not its link: nothing
    assert not p.actions()
    p.address_changed("a", key(1), ("198.18.0.1", 40001), 1.0)  # QUIC migrated the link
    assert p.actions() == [pp.SendTo("a", wire.Observed(host="198.18.0.1", port=40001))]
    assert p.nat.counters.observed_resent == 1


def _deliver(src: pp.PeerPolicy[str], src_key: bytes, dst: pp.PeerPolicy[str], now: float,
             links: set[str]) -> list[pp.Action[str]]:
    """Hand ``src``'s SendTo actions on ``links`` to ``dst``; the other actions back."""
    rest = []
    for a in src.actions():
        if isinstance(a, pp.SendTo) and a.link in links:
            dst.on_message(a.link, src_key, a.message, now)
        else:
            rest.append(a)
    return rest


def test_a_peer_that_closed_our_link_as_idle_and_dialled_again_gets_our_join() -> None:
    """R (the smaller key) closes its link to S as silent (S's process starved, or the
    close crosses S's traffic) and dials S again; S, whose end of the old link is still
    up, keeps the new link by the simultaneous-dial rule with its joins. R's JOIN on it
    is a repeat to S, and S used not to answer repeats: R, its state started afresh,
    never had S joined again, and took every STATUS of S for a message on a stream not
    joined (a counted violation; past the ban score, a ban of an honest peer)."""
    r, s = policy(LOW, sweep_interval=1.0), policy(HIGH, sweep_interval=1.0)
    assert r.link_up("L1", HIGH, dialled=False, now=0.0)
    assert s.link_up("L1", LOW, dialled=True, now=0.0)
    _deliver(s, HIGH, r, 0.1, {"L1"})  # S's JOIN: R joins S and answers JOIN
    _deliver(r, LOW, s, 0.2, {"L1"})  # R's answer: S joins R
    assert SKEY in r.joined(HIGH) and SKEY in s.joined(LOW)
    r.handle_timer(31.0)  # S silent for silence_timeout at R: closed (the close still on its way)
    assert any(isinstance(a, pp.CloseLink) and a.link == "L1" for a in r.actions())
    assert r.link_up("L2", HIGH, dialled=True, now=31.5)  # R dials again: a fresh start
    assert s.link_up("L2", LOW, dialled=False, now=31.5)  # S: a duplicate; R's key is smaller
    _deliver(r, LOW, s, 31.6, {"L2"})  # R's JOIN: a repeat at S
    _deliver(s, HIGH, r, 31.7, {"L2"})  # S answers it with its JOIN
    assert SKEY in r.joined(HIGH) and SKEY in s.joined(LOW)
    assert r.on_message("L2", HIGH, status(), 32.0) == SKEY
    assert r.counters.messages_unjoined == 0 and r.counters.violations == 0


def test_a_peer_that_closed_our_link_and_dialled_again_for_the_dht_gets_our_join() -> None:
    """As above, but R's new dial is for the DHT only (a service link: no JOIN). S keeps
    its joins on the new link by the simultaneous-dial rule and sends STATUS and REQUESTs
    on it; R, started afresh with no stream joined, counted each as a violation (the
    30-node testbed, 2026-12-04: 22 in one run, "dialled, 0 streams joined, 5 duplicate
    links so far"). R had the stream joined with S on the old link: it JOINs on the new one."""
    r, s = policy(LOW, sweep_interval=1.0), policy(HIGH, sweep_interval=1.0)
    assert r.link_up("L1", HIGH, dialled=False, now=0.0)
    assert s.link_up("L1", LOW, dialled=True, now=0.0)
    _deliver(s, HIGH, r, 0.1, {"L1"})
    _deliver(r, LOW, s, 0.2, {"L1"})
    assert SKEY in r.joined(HIGH) and SKEY in s.joined(LOW)
    r.handle_timer(31.0)  # S silent at R: closed (the close still on its way)
    assert any(isinstance(a, pp.CloseLink) and a.link == "L1" for a in r.actions())
    assert r.link_up("L2", HIGH, dialled=True, now=31.5, service=True)  # a DHT contact
    assert s.link_up("L2", LOW, dialled=False, now=31.5)  # S: a duplicate, joins kept
    assert not [a for a in of(r.actions(), pp.SendTo) if isinstance(a.message, wire.Join)]
    s.actions()
    # S's swarm sends its STATUS on the link it keeps: R takes S back as a neighbour
    assert r.on_message("L2", HIGH, status(), 31.6) == SKEY
    acts = r.actions()
    assert pp.SendTo("L2", wire.Join(stream=TEXT, short=True)) in acts and pp.AddPeer(HIGH, SKEY) in acts
    for a in acts:  # R's JOIN reaches S: a repeat there, answered
        if isinstance(a, pp.SendTo) and a.link == "L2":
            s.on_message("L2", LOW, a.message, 31.7)
    _deliver(s, HIGH, r, 31.8, {"L2"})
    assert SKEY in r.joined(HIGH) and SKEY in s.joined(LOW)
    assert r.on_message("L2", HIGH, status(), 32.0) == SKEY
    assert r.counters.messages_unjoined == 0 and r.counters.violations == 0
    assert r.counters.links_rejoined == 1


def test_a_stranger_on_a_dht_link_gets_no_join_for_its_stream_messages() -> None:
    """Only a peer we had streams joined with, lately, is taken back that way: a DHT
    contact that sends STATUS out of the blue is still a message on a stream not joined."""
    r = policy(LOW)
    assert r.link_up("D", HIGH, dialled=True, now=0.0, service=True)
    r.actions()
    assert r.on_message("D", HIGH, status(), 0.5) is None
    assert r.counters.messages_unjoined == 1 and r.counters.links_rejoined == 0
    assert not [a for a in of(r.actions(), pp.SendTo) if isinstance(a.message, wire.Join)]


def test_chunks_of_a_stream_not_joined_are_scored_until_the_sender_is_banned():
    """A forger that names another stream key (one we do not carry, or one it has not
    joined with us) is never verified, so the bad-chunk rule never saw it: such chunks
    now score like any message for a stream not joined, and the sender is banned."""
    p = policy()
    joined_peer(p, key(1), "f")
    foreign = b"\x08" * 32  # a stream nobody here carries
    refused = 0
    for _ in range(40):
        if p.is_banned(key(1), 1.0):
            break
        assert not p.on_chunk("f", key(1), foreign, 1.0)
        refused += 1
    assert p.is_banned(key(1), 1.0) and refused == 20  # ban_score 20, weight 1
    assert p.counters.chunks_unjoined == 20 and p.counters.peers_dropped_score == 1
    assert pp.CloseLink("f", key(1), ErrorCode.TOO_MANY_ERRORS,
                        "score 20.0: CHUNK for a stream not joined") in p.actions()
    # an honest peer's chunks of the stream it joined are let through, unscored
    joined_peer(p, key(2), "h")
    assert all(p.on_chunk("h", key(2), SKEY, 2.0) for _ in range(100))
    assert not p.is_banned(key(2), 2.0)


def test_a_file_transfer_fits_the_message_budget_and_other_floods_do_not():
    """A download from one peer is one BLOCK_REQUEST and one BLOCK per 32 KiB block: at a
    full token each, ~440 of them in a second met the budget (burst 400, 200 a second) and
    the rest were dropped (a 20 MB file stalled ~12 s). They cost a tenth now: 1,500 of each
    in 1.5 s pass; 1,500 STATUS in the same time still go over."""
    p = policy()
    joined_peer(p, key(1), "f")
    cid = b"\x05" * 32
    for i in range(1500):
        t = 1.0 + i / 1000
        assert p.on_message("f", key(1), wire.BlockRequest(cid=cid, indices=[i]), t) == pp.TO_NODE
        assert p.on_message("f", key(1), wire.BlockMsg(cid=cid, index=i, data=b"x" * 100, proof=[]), t) == pp.TO_NODE
    assert p.counters.messages_over_budget == 0
    q = policy()
    joined_peer(q, key(2), "s")
    for i in range(1500):
        q.on_message("s", key(2), status(), 1.0 + i / 1000)
    assert q.counters.messages_over_budget > 0


def test_one_host_gets_at_most_four_addresses_from_one_answer():
    """Signed DHT provider records are cheap (keys are free): 20 naming ports of one host
    made a node dial 72 addresses there in 40 s. An answer now gives at most 4 per network
    (an IPv4 /24, an IPv6 /48); other networks and loopback (a demo on one machine) are
    not cut."""
    flood = [(key(i), "198.18.0.9", 4000 + i) for i in range(20)]
    honest = [(key(100), "198.18.1.10", 5000), (key(101), "2001:db8:0:1::5", 5000)]
    kept, dropped = pp.cap_per_network(flood + honest)
    assert kept == flood[:4] + honest and dropped == 16
    v6 = [(key(i), f"2001:db8:0:2::{i + 1}", 5000) for i in range(6)]
    assert len(pp.cap_per_network(v6)[0]) == 4
    # and per network: one record per IP of a victim's /24 (or per /64 of its /48) drew
    # ~20 x the answer's bytes to that network
    spray = [(key(i), f"203.0.113.{i + 1}", 9999) for i in range(20)]
    assert pp.cap_per_network(spray) == (spray[:4], 16)
    spray6 = [(key(i), f"2001:db8:7:{i:x}::1", 9999) for i in range(20)]
    assert pp.cap_per_network(spray6) == (spray6[:4], 16)
    local = [(key(i), "127.0.0.1", 4000 + i) for i in range(20)]
    assert pp.cap_per_network(local) == (local, 0)


def test_an_unknown_stream_error_costs_what_a_leave_does():
    """Found 2026-12-06 by an outside audit: ERROR unknown_stream leaves a stream as LEAVE
    does, at 1 token instead of ``join_cost``: ERROR + JOIN cycles were 1.8x the join churn a
    link could make before its budget cut it. An ERROR costs ``join_cost`` now."""
    p = policy(LOW)
    joined_peer(p, HIGH, "L")
    p.actions()
    gone = wire.Error(code=int(ErrorCode.UNKNOWN_STREAM), reason=TEXT)
    cfg = p.config
    cycles = 0
    while p.counters.messages_over_budget == 0 and cycles < 100:
        p.on_message("L", HIGH, gone, 1.0)
        p.on_message("L", HIGH, wire.Join(stream=TEXT), 1.0)
        cycles += 1
    # the burst pays for at most msg_burst / (2 join_cost) such cycles at one instant
    assert cycles <= cfg.msg_burst / (2 * cfg.join_cost) + 1, cycles
