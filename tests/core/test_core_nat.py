"""Reachability behind NATs (oasis.core.nat) through the real PeerPolicy: the mapping a
node learns from OBSERVED, introductions from NEIGHBOURS, and the four PUNCH stages,
with the attacks on each stage."""

from __future__ import annotations

import random

from oasis.core import peer as pp
from oasis.core import wire
from oasis.core.nat import MappingObserver, NatConfig, NatKind, Phase
from oasis.core.wire import ErrorCode

TEXT = "s" * 52 + ".live"
SKEY = b"streamk8"


def key(i: int) -> bytes:
    return bytes([i]) * 32


# ---- the mapping ------------------------------------------------------------------

def test_public_mapping_needs_two_observers_in_different_networks() -> None:
    m = MappingObserver(listen=("10.0.0.2", 4000))
    assert m.observe(key(1), "198.18.1.1", "198.19.0.7", 4000)
    assert m.public is None and m.kind == NatKind.UNKNOWN  # one observer: nothing decided
    m.observe(key(2), "198.18.1.9", "198.19.0.7", 4000)  # same /24 as the first
    assert m.public is None
    m.observe(key(3), "203.0.113.5", "198.19.0.7", 4000)
    assert m.public == ("198.19.0.7", 4000) and m.kind == NatKind.EIM


def test_a_minority_of_other_ports_does_not_make_a_mapping_symmetric() -> None:
    # a Linux NAT that saw a punching peer's packet first maps the flow to that peer to
    # another port; towards everyone else the mapping stays
    m = MappingObserver(listen=("10.0.0.2", 4000))
    m.observe(key(1), "198.18.1.1", "198.19.0.7", 4000)
    m.observe(key(2), "203.0.113.5", "198.19.0.7", 4000)
    m.observe(key(3), "192.0.2.8", "198.19.0.7", 17470)
    assert m.kind == NatKind.EIM and m.public == ("198.19.0.7", 4000)


def test_listening_address_seen_from_outside_is_public() -> None:
    m = MappingObserver(listen=("198.18.0.5", 4000))
    m.observe(key(1), "198.18.1.1", "198.18.0.5", 4000)
    m.observe(key(2), "203.0.113.5", "198.18.0.5", 4000)
    assert m.kind == NatKind.PUBLIC


def test_one_ip_with_a_port_per_observer_is_symmetric() -> None:
    m = MappingObserver(listen=("10.0.0.2", 4000))
    m.observe(key(1), "198.18.1.1", "198.19.0.7", 50001)
    m.observe(key(2), "203.0.113.5", "198.19.0.7", 50002)
    # two networks that disagree may be a remapped flow or a rebinding: not decided yet
    assert m.kind == NatKind.UNKNOWN and m.public is None
    m.observe(key(3), "192.0.2.8", "198.19.0.7", 50003)
    assert m.kind == NatKind.SYMMETRIC and m.public is None


def test_a_rebinding_before_the_mapping_was_learnt_is_not_symmetric() -> None:
    # one observer saw the old port, then the home router rebound and the next observer
    # saw the new one; a third agrees with the new port: endpoint-independent after all
    m = MappingObserver(listen=("10.0.0.2", 4000))
    m.observe(key(1), "198.18.1.1", "198.19.0.7", 4000)
    m.observe(key(2), "203.0.113.5", "198.19.0.7", 31337)
    assert m.kind == NatKind.UNKNOWN
    m.observe(key(3), "192.0.2.8", "198.19.0.7", 31337)
    assert m.kind == NatKind.EIM and m.public == ("198.19.0.7", 31337)


def test_a_liar_cannot_set_the_mapping_and_reports_are_bounded() -> None:
    m = MappingObserver(listen=("10.0.0.2", 4000), max_observers=4)
    m.observe(key(1), "198.18.1.1", "198.19.0.7", 4000)
    m.observe(key(2), "203.0.113.5", "198.19.0.7", 4000)
    for i in range(10, 20):  # liars, all in one network, repeat another address
        m.observe(key(i), "192.0.2.1", "6.6.6.6", 6666)
    assert len(m.reports) == 3  # one report per network: the liars' newest
    assert m.public != ("6.6.6.6", 6666)  # one network is one vote
    assert not m.observe(key(30), "not-an-ip", "198.19.0.7", 4000)
    assert not m.observe(key(31), "198.18.1.1", "example.com", 4000)
    assert not m.observe(key(32), "198.18.1.1", "198.19.0.7", 0)


# ---- three real policies -------------------------------------------------------------

NETS = ["192.0.2", "198.51.100", "203.0.113", "198.18.0", "198.19.0"]  # documentation/benchmark ranges


def public(i: int) -> str:
    """Node ``i``'s address as others see it (each in its own /24 but 1 and 6)."""
    return f"{NETS[i % 5]}.{i}"


class Net:
    """Policies joined by links, messages delivered at once; the addresses each link's
    packets come from are given (as a NAT would show them). ``target``: neighbours each
    policy looks for (1: no dialling of its own beyond what a test makes)."""

    def __init__(self, n: int, target: int = 1, **nat: float) -> None:
        self.now = 0.0
        # (nat_target_neighbours off: behind their NATs they would look for 20 neighbours)
        cfg = pp.PolicyConfig(target_neighbours=target, nat_target_neighbours=0)
        self.p = {i: pp.PeerPolicy(key(i), cfg, rng=random.Random(i), listen=(f"10.0.0.{i}", 4000),
                                   nat=NatConfig(**nat)) for i in range(1, n + 1)}
        for p in self.p.values():
            p.add_stream(TEXT, SKEY)
        self.dials: list[tuple[int, pp.Dial]] = []
        self.primes: list[tuple[int, pp.Prime]] = []
        self.sent: list[tuple[int, int, wire.Message]] = []

    def link(self, a: int, b: int, rtt: float = 0.04) -> None:
        la = ("L", a, b)
        assert self.p[a].link_up(la, key(b), dialled=True, now=self.now, addr=(public(b), 4000), rtt=rtt)
        assert self.p[b].link_up(la, key(a), dialled=False, now=self.now, addr=(public(a), 4000), rtt=rtt)
        self.run()

    def run(self) -> None:
        for _ in range(100):
            moved = False
            for i, p in self.p.items():
                for a in p.actions():
                    moved = True
                    if isinstance(a, pp.SendTo):
                        _, x, y = a.link
                        j = y if x == i else x
                        self.sent.append((i, j, a.message))
                        self.p[j].on_message(a.link, key(i), a.message, self.now)
                    elif isinstance(a, pp.Dial):
                        self.dials.append((i, a))
                    elif isinstance(a, pp.Prime):
                        self.primes.append((i, a))
            if not moved:
                return
        raise AssertionError("messages never settled")

    def tick(self, t: float) -> None:
        self.now = t
        for p in self.p.values():
            timer = p.get_timer()
            if timer is not None and timer <= t:
                p.handle_timer(t)
        self.run()

    def punches(self, phase: Phase) -> list[tuple[int, int, wire.Punch]]:
        return [(i, j, m) for i, j, m in self.sent if isinstance(m, wire.Punch) and m.phase == phase]


def test_observed_addresses_are_exchanged_on_link_up() -> None:
    net = Net(3)
    net.link(1, 2)
    net.link(1, 3)
    obs = [(i, j, m) for i, j, m in net.sent if isinstance(m, wire.Observed)]
    assert (2, 1, wire.Observed(host=public(1), port=4000)) in obs
    assert net.p[1].nat.counters.observed == 2


def test_neighbours_name_who_can_introduce_whom() -> None:
    net = Net(3)
    net.link(1, 3)
    net.link(2, 3)  # 3 tells 2 about 1 on link-up
    assert key(3) in net.p[2].nat.introducers(key(1))
    assert key(2) not in net.p[1].nat.via
    net.tick(10.0)  # and everyone again every pex_interval
    assert key(3) in net.p[1].nat.introducers(key(2))


def test_a_punch_through_a_common_neighbour_makes_both_ends_dial() -> None:
    net = Net(3)
    net.link(1, 3, rtt=0.05)  # 1 = A, 3 = R, 2 = B
    net.link(2, 3, rtt=0.03)
    net.tick(10.0)
    net.sent.clear()
    a = net.p[1]
    assert a.nat.introducer_for(key(2), a.peers, net.now) == key(3)
    assert a.nat.introduce(key(2), key(3), net.now)
    a._take_nat_actions(net.now)
    net.run()
    (_, _, offer), = net.punches(Phase.OFFER)
    assert offer.peer == key(1) and (offer.host, offer.port) == (public(1), 4000)
    assert offer.delay_ms == 50  # R's RTT to A
    (_, _, go), = net.punches(Phase.GO)
    assert go.peer == key(2) and (go.host, go.port) == (public(2), 4000)
    # each end primes its NAT towards the other (B on the OFFER, A on the GO) with a
    # datagram that dies before the far NAT ...
    assert [(i, p.peer, p.host, p.port, p.ttl) for i, p in net.primes] == [
        (2, key(1), public(1), 4000, 2), (1, key(2), public(2), 4000, 2)]
    # ... A dials B at once; B, primed, after twice (RTT B-R + RTT R-A) / 2 = 80 ms: its
    # Initial must not reach A's NAT before A has sent (A's passes B's primed NAT)
    assert [(i, d.peer, d.host) for i, d in net.dials] == [(1, key(2), public(2))]
    assert net.p[2].get_timer() == 10.08
    assert key(1) in net.p[2].dialling  # meanwhile nothing else dials A (plan, connect, DHT)
    assert not net.p[2].may_dial(key(1), public(1), 4000, net.now)
    net.tick(10.08)
    assert (2, key(1), public(1)) in [(i, d.peer, d.host) for i, d in net.dials]
    # both links come up: the simultaneous-dial rule keeps the one the smaller key dialled
    a_dialled, b_dialled = ("P", 1, 2), ("P", 2, 1)
    assert net.p[1].link_up(a_dialled, key(2), dialled=True, now=10.1, addr=(public(2), 4000))
    assert net.p[2].link_up(a_dialled, key(1), dialled=False, now=10.1, addr=(public(1), 4000))
    assert not net.p[1].link_up(b_dialled, key(2), dialled=False, now=10.1)
    assert not net.p[2].link_up(b_dialled, key(1), dialled=True, now=10.1)
    assert net.p[1].link_of(key(2)) == net.p[2].link_of(key(1)) == a_dialled


def test_without_priming_both_ends_dial_half_a_round_trip_apart() -> None:
    """``prime_ttl=0``: no priming datagram, and B dials when A should (the two Initials
    must cross within the one-way delay)."""
    net = Net(3, prime_ttl=0)
    net.link(1, 3, rtt=0.05)
    net.link(2, 3, rtt=0.03)
    net.tick(10.0)
    a = net.p[1]
    assert a.nat.introduce(key(2), key(3), net.now)
    a._take_nat_actions(net.now)
    net.run()
    assert net.primes == []
    assert [(i, d.peer) for i, d in net.dials] == [(1, key(2))]
    assert net.p[2].get_timer() == 10.04


def test_no_prime_to_a_peer_held_off_or_backed_off() -> None:
    """A prime goes only where the punch would dial: not to a peer held off after a failed
    punch, nor to a backed-off address (a hostile introducer's OFFERs name a victim)."""
    net = Net(3)
    net.link(1, 3, rtt=0.05)
    net.link(2, 3, rtt=0.03)
    net.tick(10.0)
    net.p[2].nat.hold(key(1), (public(1), 4000), net.now)  # B's punch with A there failed lately
    a = net.p[1]
    assert a.nat.introduce(key(2), key(3), net.now)
    a._take_nat_actions(net.now)
    net.run()
    assert net.primes == [] and net.dials == []
    assert net.p[2].nat.counters.punch_held == 1
    net.p[2].nat.release(key(1))
    net.p[2].dials.back_off(key(1), net.now, (public(1), 4000))
    net.tick(11.0)
    assert a.nat.introduce(key(2), key(3), net.now)
    a._take_nat_actions(net.now)
    net.run()
    assert [i for i, _ in net.primes] == [1]  # A's, on the GO; none from B
    assert net.p[2].nat.counters.punch_primed == 0


def test_behind_a_nat_a_planned_dial_becomes_a_punch() -> None:
    net = Net(4)
    net.link(1, 3)
    net.link(2, 3)
    net.link(1, 4)
    net.tick(10.0)
    a = net.p[1]
    assert a.mapping.kind == NatKind.EIM  # observed at public(1), listening on 10.0.0.1
    assert a.mapping.public == (public(1), 4000)
    net.dials.clear()
    a.config.target_neighbours = 3
    a.on_candidates([pp.Candidate(key(2), public(2), 4000)], net.now, verified=True)
    net.run()
    assert net.punches(Phase.GO) and net.dials[0] == (1, pp.Dial(key(2), public(2), 4000))
    assert a.link_up(("P", 1, 2), key(2), dialled=True, now=net.now + 0.25, addr=(public(2), 4000))
    assert a.nat.counters.punch_linked == 1 and list(a.punch_connect_s) == [(key(2), 0.25)]


def test_behind_a_nat_a_node_dials_until_nat_target_neighbours() -> None:
    # nobody can dial a NATed node: it makes all its links itself, so it looks for more
    net = Net(6)
    net.p[1].config.nat_target_neighbours = 4  # (one config shared by the six policies)
    net.link(1, 3)
    net.link(1, 4)
    a = net.p[1]
    assert a.mapping.kind == NatKind.EIM and a.neighbour_count() == 2
    assert a.target() == 4
    assert net.p[5].mapping.kind == NatKind.UNKNOWN and net.p[5].target() == 1
    cands = [pp.Candidate(key(i), public(i), 4000) for i in (2, 5, 6)]
    a.on_candidates(cands, net.now, verified=True)
    net.run()
    assert sorted(d.peer for i, d in net.dials if i == 1) == [key(2), key(5), key(6)]
    # the same node at the plain target (0: off) is linked enough and dials nobody
    net.dials.clear()
    a.config.nat_target_neighbours = 0
    assert a.target() == 1
    b = net.p[2]
    net.link(2, 3)
    net.link(2, 4)
    assert b.mapping.kind == NatKind.EIM
    b.on_candidates([pp.Candidate(key(i), public(i), 4000) for i in (5, 6)], net.now, verified=True)
    net.run()
    assert not [d for i, d in net.dials if i == 2]


def test_intro_flood_is_cut_by_the_relay_budget() -> None:
    net = Net(3, relay_rate=1.0, relay_burst=4.0)
    net.link(1, 3)
    net.link(2, 3)
    r = net.p[3]
    for n in range(50):
        r.on_message(("L", 1, 3), key(1), wire.Punch(phase=Phase.INTRO, peer=key(2), nonce=n + 1), 0.0)
    net.run()
    assert len(net.punches(Phase.OFFER)) <= 4  # B gets the burst, not the flood
    assert r.nat.counters.punch_relay_refused >= 46


def test_intro_for_a_stranger_or_oneself_is_refused() -> None:
    net = Net(3)
    net.link(1, 3)
    r = net.p[3]
    r.on_message(("L", 1, 3), key(1), wire.Punch(phase=Phase.INTRO, peer=key(9), nonce=1), 0.0)
    r.on_message(("L", 1, 3), key(1), wire.Punch(phase=Phase.INTRO, peer=key(1), nonce=2), 0.0)
    net.run()
    assert net.punches(Phase.OFFER) == [] and r.nat.counters.punch_relay_refused == 2


def test_unsolicited_go_and_accept_make_nobody_dial() -> None:
    net = Net(3)
    net.link(1, 3)
    net.link(2, 3)
    a, r = net.p[1], net.p[3]
    a.on_message(("L", 1, 3), key(3), wire.Punch(phase=Phase.GO, peer=key(2), nonce=7,
                                                host="192.0.2.99", port=80), 0.0)
    r.on_message(("L", 2, 3), key(2), wire.Punch(phase=Phase.ACCEPT, peer=key(1), nonce=7), 0.0)
    net.run()
    assert net.dials == [] and net.punches(Phase.GO) == []
    assert a.nat.counters.punch_unexpected == 1 and r.nat.counters.punch_unexpected == 1


def test_a_go_from_another_neighbour_than_the_introducer_is_refused() -> None:
    net = Net(4)
    net.link(1, 3)
    net.link(1, 4)
    a = net.p[1]
    assert a.nat.introduce(key(2), key(3), 0.0)
    nonce = next(iter(a.nat.pending))
    a.on_message(("L", 1, 4), key(4), wire.Punch(phase=Phase.GO, peer=key(2), nonce=nonce,
                                                host="192.0.2.99", port=80), 0.0)
    net.run()
    assert net.dials == [] and a.nat.counters.punch_unexpected == 1


def test_offer_flood_dials_at_most_the_accept_budget() -> None:
    net = Net(5, accept_rate=0.5, accept_burst=6.0)
    for r in (3, 4, 5):
        net.link(2, r)
    b = net.p[2]
    for n in range(99):  # hostile introducers name victims to dial
        r = 3 + n % 3
        b.on_message(("L", 2, r), key(r), wire.Punch(phase=Phase.OFFER, peer=key(50 + n),
                                                    nonce=n, host=f"192.0.2.{n % 250 + 1}", port=80), 0.0)
    net.tick(1.0)
    assert len(net.dials) <= 6  # the node-wide budget; each introducer at most 4 under way
    assert b.nat.counters.punch_refused + b.nat.counters.punch_introducer_refused >= 93


def test_a_punched_address_that_failed_is_backed_off_and_gos_share_the_dial_budget() -> None:
    """A hostile introducer names one victim address in OFFER after OFFER (40 dials, 360
    Initials, none backed off) or answers every INTRO with a GO naming it (60 dials in 20 s,
    outside the OFFER budget). An introducer whose punches failed ``introducer_failures``
    (4) times within ``punch_retry_after`` (35 s) has its OFFERs refused until they age out
    (this replaced the per-address backoff of punched addresses, which port variation
    dodged and which a made-up key at a real node's address turned against that node), and
    GOs spend the same node-wide budget of punch dials."""
    net = Net(3, accept_rate=0.5, accept_burst=6.0)
    net.link(2, 3)
    b = net.p[2]
    t = 0.0
    for n in range(40):  # one OFFER a second, each naming the victim under a new key
        b.on_message(("L", 2, 3), key(3), wire.Punch(phase=Phase.OFFER, peer=key(50 + n), nonce=n,
                                                    host="192.0.2.7", port=4433), t)
        net.tick(t + 0.5)
        for _, d in [x for x in net.dials if x[0] == 2 and x[1].peer == key(50 + n)]:
            b.dial_failed(d.peer, t + 0.9)  # nobody answers there
        t += 1.0
    victim = [d for i, d in net.dials if i == 2 and d.host == "192.0.2.7"]
    assert len(victim) == 8, len(victim)  # 4, then 4 more once the first failures aged out
    assert b.nat.counters.punch_introducer_refused == 32 and b.nat.counters.punch_failed == 8
    # GOs: A asks R for introductions; R answers each with a GO naming a fresh victim port
    net2 = Net(3, accept_rate=0.5, accept_burst=6.0)
    net2.link(1, 3)
    a = net2.p[1]
    for n in range(16):  # (at most 16 introductions wait at once)
        assert a.nat.introduce(key(60 + n), key(3), 0.0)
    nonces = sorted(a.nat.pending)
    for k, nonce in enumerate(nonces):
        a.on_message(("L", 1, 3), key(3), wire.Punch(phase=Phase.GO, peer=a.nat.pending[nonce].target,
                                                    nonce=nonce, host="192.0.2.8", port=5000 + k), 0.1)
    a._take_nat_actions(0.1)
    assert len([d for i, d in net2.dials if i == 1]) + len(a._punch_dials) <= 6
    assert a.nat.counters.punch_refused >= 10


def test_an_introduction_without_go_expires_and_frees_the_dial_slot() -> None:
    net = Net(3, punch_timeout=6.0)
    net.link(1, 3)
    a = net.p[1]
    a.on_candidates([], 0.0, verified=True)
    assert a.nat.introduce(key(2), key(3), 0.0)
    a.dials.dialling[key(2)] = 6.0
    a._take_nat_actions(0.0)
    net.run()  # R refuses: B is not its neighbour
    net.tick(6.0)
    assert key(2) not in a.dials.dialling and a.nat.pending == {}
    assert a.nat.counters.punch_intros_failed == 1


def test_neighbours_tables_are_bounded() -> None:
    net = Net(2, max_targets=10, max_introducers=2)
    net.link(1, 2)
    p = net.p[1]
    for n in range(40):
        p.nat.listed(key(2), [bytes([n + 10, 1]) * 16], 0.0)
    assert len(p.nat.via) == 10 and p.nat.counters.introducers_evicted == 30
    p.nat.listed(key(2), [key(1), key(2)], 0.0)  # itself and the lister are not targets
    assert key(1) not in p.nat.via and key(2) not in p.nat.via


def test_introducers_are_kept_newest_last_bounded_and_expire() -> None:
    net = Net(2, max_introducers=2)
    nat = net.p[1].nat
    target = bytes([99, 1]) * 16
    for n, at in ((2, 0.0), (3, 1.0), (4, 2.0)):
        nat.listed(key(n), [target], at)
    assert nat.introducers(target) == [key(3), key(4)]  # the oldest (2) went
    assert target not in nat.taught.get(key(2), {})  # ... and no longer counts as its key
    nat.listed(key(3), [target], 3.0)  # re-listed: moves to the end, listed anew
    assert nat.introducers(target) == [key(4), key(3)]
    ttl = nat.config.via_ttl
    assert nat.introducer_for(target, {key(3), key(4)}, 2.0 + ttl - 0.5) == key(3)
    assert nat.introducer_for(target, {key(4)}, 2.0 + ttl + 0.5) is None  # 4 expired: 3 is not linked
    assert nat.introducers(target) == [key(3)]
    nat.forget_introducer(key(3))  # its link went down: what it listed goes
    assert target not in nat.via


def test_a_mapping_survives_one_remapped_flow_and_follows_a_rebinding() -> None:
    from oasis.core.nat import MappingObserver, NatKind
    m = MappingObserver(("192.168.1.2", 4434))
    a, b, c = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32
    m.observe(a, "198.18.1.1", "198.18.9.1", 4434)
    m.observe(b, "198.18.2.1", "198.18.9.1", 4434)
    assert (m.kind, m.public) == (NatKind.EIM, ("198.18.9.1", 4434))
    m.observe(b, "198.18.2.1", "198.18.9.1", 1025)  # b's flow remapped, its link migrated
    assert (m.kind, m.public) == (NatKind.EIM, ("198.18.9.1", 4434))  # a still sees the mapping
    m.observe(a, "198.18.1.1", "198.18.9.1", 40434)  # a rebinding: everyone sees a new port
    m.observe(c, "198.18.3.1", "198.18.9.1", 40434)
    assert (m.kind, m.public) == (NatKind.EIM, ("198.18.9.1", 40434))


def test_liars_who_left_no_longer_set_the_mapping() -> None:
    # two neighbours in different networks report an address of their choosing: while
    # linked they are two votes (the design's bound); once their links are down their
    # reports no longer count -- they used to outlive the links until 16 newer
    # observers displaced them, and kept the node's mapping (and so whether it punches)
    net = Net(5)
    for liar in (2, 3):
        net.link(1, liar)
    net.link(1, 4)
    me = net.p[1]
    for liar in (2, 3):
        me.on_message(("L", 1, liar), key(liar), wire.Observed(host="6.6.6.6", port=6666), net.now)
    assert me.mapping.public == ("6.6.6.6", 6666) and me.mapping.kind == NatKind.EIM
    for liar in (2, 3):
        me.link_down(("L", 1, liar), key(liar), net.now + 1)
        net.p[liar].link_down(("L", 1, liar), key(1), net.now + 1)
    assert me.mapping.public is None and me.mapping.kind == NatKind.UNKNOWN
    assert set(me.mapping.reports) == {key(4)}
    net.link(1, 5)  # a second honest network decides
    assert me.mapping.public == (public(1), 4000) and me.mapping.kind == NatKind.EIM
    # and a mapping stays while one linked observer still sees it
    me.link_down(("L", 1, 4), key(4), net.now + 2)
    assert me.mapping.public == (public(1), 4000) and me.mapping.kind == NatKind.EIM


def test_a_peer_that_refused_us_as_full_is_not_punched_while_backed_off() -> None:
    """A NATed node's plain dial reached a peer that closed it OVERLOADED (full): the peer's
    address backs off, and it is not introduced meanwhile either -- its OFFER would be
    refused for want of room, and the introduction held a dial slot for ``punch_timeout``
    (found in the 30-node testbed: half of a CGN viewer's INTROs). A peer whose dial merely
    failed (it may sit behind a NAT) is still punched."""
    net = Net(5)
    net.link(1, 3)
    net.link(2, 3)
    net.link(5, 3)
    net.link(1, 4)
    net.tick(10.0)
    a = net.p[1]
    assert a.mapping.kind == NatKind.EIM
    assert a.nat.introducer_for(key(2), a._neighbours, net.now) == key(3)
    a.on_candidates([pp.Candidate(key(i), public(i), 4000) for i in (2, 5)], net.now, verified=True)
    net.run()
    # the executor's plain dial to 2 linked, and 2 closed it: full
    assert a.link_up(("D", 1, 2), key(2), dialled=True, now=net.now, addr=(public(2), 4000))
    a.link_down(("D", 1, 2), key(2), net.now, code=ErrorCode.OVERLOADED)
    # the dial to 5 failed outright (no answer: NATed, perhaps)
    a.dials.dialling[key(5)] = net.now + 5.0
    a.dials.dial_addr[key(5)] = (public(5), 4000)
    a.dial_failed(key(5), net.now)
    until = a.dials.backed_off_until(key(2))
    assert until > net.now
    net.sent.clear()
    a.config.target_neighbours = 4  # short of neighbours: the plan punches what it can
    a._plan(net.now)
    net.run()
    intros = {m.peer for i, _, m in net.punches(Phase.INTRO) if i == 1}
    assert key(5) in intros  # may sit behind a NAT: punched
    assert key(2) not in intros  # full: not punched while its back-off lasts
    # once the back-off is over it may be tried again (here: punched through 3)
    net.sent.clear()
    a.nat.pending.clear()
    a.dials.dialling.clear()
    net.tick(until + 0.1)
    a._plan(net.now)
    net.run()
    assert key(2) in {m.peer for i, _, m in net.punches(Phase.INTRO) if i == 1} or \
        key(2) in {d.peer for i, d in net.dials if i == 1}


def test_a_plain_dials_link_is_not_counted_as_a_punch() -> None:
    """An INTRO for a peer was out when a plain dial to it linked: no punch made that link,
    so no punch connect time is counted (a public peer's redial read as a 7 s punch)."""
    net = Net(4)
    net.link(1, 3)
    net.link(2, 3)
    net.link(1, 4)
    net.tick(10.0)
    a = net.p[1]
    assert a.nat.introduce(key(2), key(3), net.now)
    a._intro_at[key(2)] = net.now  # as _introduce records it
    assert a.link_up(("D", 1, 2), key(2), dialled=True, now=net.now + 7.0, addr=(public(2), 4000))
    assert a.nat.counters.punch_linked == 0 and not a.punch_connect_s
