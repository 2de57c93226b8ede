"""Attacks on NAT traversal and peer exchange (docs/oftp.md §15), mounted against the real
PeerPolicy (oasis.core.peer, oasis.core.nat) in virtual time.

An outside attacker found (2026-12-02, /tmp/atk-nat/REPORT.md) that any authenticated link
-- even a DHT-only service link that takes no neighbour slot -- could send PUNCH OFFERs (the
victim dialled any address, 0.0.0.0 and its own included, ~200x reflection; a forged OFFER
held a chosen peer off 35 s; a made-up key at a real address backed that address off), set
the victim's public address with OBSERVED (the newest 16 observers were kept, so a flood
evicted the honest ones), and flush its table of introductions with oversized NEIGHBOURS,
then make it dial any address through GOs. Each test mounts one of them, and checks it is
refused and counted, that the node keeps serving and that honest peers are unaffected.

:class:`World` is one victim policy with links to scripted peers: every dial fails after
the node's dial timeout unless a live node of that key is at that address, then it links.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable

from oasis.core import peer as pp
from oasis.core import wire
from oasis.core.nat import NatConfig, NatKind, Phase

TEXT = "s" * 52 + ".live"
SKEY = b"streamk8"
DIAL_TIMEOUT = 5.0  #: the node's (oasis.node.node: _dial(..., 5.0))
ME = ("198.18.0.1", 4433)  #: the victim's listening address (public: no NAT)
PING = wire.DhtPing(qid=1)


def key(i: int) -> bytes:
    return i.to_bytes(2, "big") + b"\x55" * 30


def offer(peer: bytes, host: str, port: int, nonce: int = 1) -> wire.Punch:
    return wire.Punch(phase=Phase.OFFER, peer=peer, nonce=nonce, host=host, port=port)


class World:
    def __init__(self, *, target: int = 2, listen: tuple[str, int] = ME, **nat: float) -> None:
        cfg = pp.PolicyConfig(target_neighbours=target, max_neighbours=max(24, 2 * target),
                              silence_timeout=1e9, join_timeout=1e9, service_idle=1e9)
        self.p: pp.PeerPolicy[str] = pp.PeerPolicy(key(1), cfg, rng=random.Random(1), now=0.0,
                                                   listen=listen, nat=NatConfig(**nat))
        self.p.add_stream(TEXT, SKEY)
        self.now = 0.0
        self.dials: list[tuple[float, pp.Dial]] = []
        self.primes: list[pp.Prime] = []
        self.sent: list[tuple[str, wire.Message]] = []
        self.live: dict[tuple[str, int], bytes] = {}  #: address -> the key of the node there
        self.reply: dict[str, Callable[[wire.Message], None]] = {}  #: a scripted peer's answers
        self.events: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = itertools.count()

    @property
    def c(self):  # the victim's nat_* counters
        return self.p.nat.counters

    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self.events, (t, next(self.seq), fn))

    def run(self) -> None:
        for _ in range(10_000):
            acts = self.p.actions()
            if not acts:
                return
            for a in acts:
                if isinstance(a, pp.SendTo):
                    self.sent.append((a.link, a.message))
                    cb = self.reply.get(a.link)
                    if cb is not None:
                        cb(a.message)
                elif isinstance(a, pp.Dial):
                    self.dials.append((self.now, a))
                    d = a
                    if self.live.get((d.host, d.port)) == d.peer:
                        self.at(self.now + 0.1, lambda d=d: self.p.link_up(
                            f"P{d.peer.hex()}", d.peer, dialled=True, now=self.now, addr=(d.host, d.port)))
                    else:
                        self.at(self.now + DIAL_TIMEOUT, lambda d=d: self.p.dial_failed(d.peer, self.now))
                elif isinstance(a, pp.Prime):
                    self.primes.append(a)
                elif isinstance(a, pp.Announce):
                    self.at(self.now + 0.01, lambda: self.p.announce_failed(self.now))
        raise AssertionError("actions never settled")

    def until(self, t_end: float) -> None:
        for _ in range(1_000_000):
            timer = self.p.get_timer()
            ev = self.events[0][0] if self.events else float("inf")
            nxt = min(ev, timer if timer is not None else float("inf"))
            if nxt > t_end:
                self.now = t_end
                return
            self.now = max(self.now, nxt)
            if ev <= self.now:
                heapq.heappop(self.events)[2]()
            else:
                self.p.handle_timer(self.now)
            self.run()
        raise AssertionError("time never advanced")

    # ---- links -----------------------------------------------------------------------
    def neighbour(self, i: int, host: str, port: int = 4433, *, observed: tuple[str, int] | None = None) -> None:
        """Peer ``i`` dials us from ``host:port`` and joins the stream (a neighbour)."""
        link = f"L{i}"
        assert self.p.link_up(link, key(i), dialled=False, now=self.now, addr=(host, port))
        if observed is not None:
            self.p.on_message(link, key(i), wire.Observed(host=observed[0], port=observed[1]), self.now)
        self.p.on_message(link, key(i), wire.Join(stream=TEXT), self.now)
        self.run()
        assert self.p.is_neighbour(key(i))

    def service(self, i: int, host: str, port: int = 4433) -> None:
        """Peer ``i`` dials us from ``host:port`` for the DHT only (a service link)."""
        link = f"L{i}"
        assert self.p.link_up(link, key(i), dialled=False, now=self.now, addr=(host, port))
        assert self.p.on_message(link, key(i), PING, self.now) == pp.TO_NODE
        self.run()
        assert self.p.is_service(key(i)) and not self.p.is_neighbour(key(i))

    def send(self, i: int, msg: wire.Message) -> object:
        out = self.p.on_message(f"L{i}", key(i), msg, self.now)
        self.run()
        return out

    def dialled(self, since: float = 0.0) -> list[pp.Dial]:
        return [d for t, d in self.dials if t >= since]

    def to(self, i: int, kind: type, phase: int | None = None) -> list[wire.Message]:
        return [m for link, m in self.sent if link == f"L{i}" and isinstance(m, kind)
                and (phase is None or getattr(m, "phase", None) == phase)]


# ---- 1. PUNCH OFFER --------------------------------------------------------------------

def test_offers_from_a_stranger_on_a_service_link_are_ignored() -> None:
    """1a: one DHT-only link sent 60 OFFERs, each naming another port of a UDP sink (the
    per-address backoff never applied): all were dialled, 708 kB to the sink, x203."""
    w = World()
    w.neighbour(2, "192.0.2.2")  # an honest neighbour (an introducer)
    w.service(9, "203.0.113.9")  # the stranger
    for n in range(60):
        w.send(9, offer(key(100 + n), "198.51.100.80", 20000 + n, nonce=n))
        w.until(w.now + 0.5)
    w.until(w.now + 10)
    assert w.dialled() == [] and w.primes == []  # (was: 60 dials)
    assert w.c.punch_not_neighbour == 60 and w.c.punch_accepted == 0
    # the node keeps serving the stranger's DHT requests, and an honest introducer's OFFER
    w.live[("198.51.100.3", 4433)] = key(3)
    assert w.send(9, PING) == pp.TO_NODE
    w.send(2, offer(key(3), "198.51.100.3", 4433))
    w.until(w.now + 1)
    assert [(d.peer, d.host) for d in w.dialled()] == [(key(3), "198.51.100.3")]
    assert w.p.is_neighbour(key(2)) and w.p.link_of(key(3)) is not None


def test_a_neighbours_forged_offers_at_many_ports_are_cut_after_a_few_failures() -> None:
    """1a from a neighbour (anyone may join the stream): OFFERs at the accept rate (2/s),
    each at another port of one host. An introducer whose punches keep failing has its
    OFFERs refused (``introducer_failures``), and it may have ``introducer_dials`` under
    way: a handful of dials in 30 s instead of 60. Another introducer is unaffected."""
    w = World()
    w.neighbour(2, "192.0.2.2")
    w.neighbour(9, "203.0.113.9")  # the attacker, joined
    w.live[("198.51.100.4", 4433)] = key(4)
    for n in range(60):
        w.send(9, offer(key(100 + n), "198.51.100.80", 20000 + n, nonce=n))
        if n == 40:  # an honest OFFER meanwhile: dialled at once, and links
            w.send(2, offer(key(4), "198.51.100.4", 4433, nonce=1))
        w.until(w.now + 0.5)
    w.until(w.now + 10)
    sink = [d for d in w.dialled() if d.host == "198.51.100.80"]
    cfg = w.p.nat.config
    assert len(sink) <= cfg.introducer_dials + cfg.introducer_failures, len(sink)  # (was 60)
    assert w.c.punch_introducer_refused >= 50
    assert w.c.punch_failed == len(sink)
    assert w.p.link_of(key(4)) is not None  # the honest punch linked
    assert not w.p.is_banned(key(9), w.now) and w.p.is_neighbour(key(9))  # (refused, not banned)


def test_a_forged_offer_does_not_hold_the_peer_it_names_off() -> None:
    """1b: an OFFER naming key K at a dead address made the victim refuse, for 35 s, every
    punch with K -- an honest introducer's OFFER at K's true address was refused
    (``punch_held``). One stranger kept ~70 chosen peers held off at each victim. The
    hold-off is now of K *at that address* (the NATs' state it waits out is of that
    address pair)."""
    w = World()
    w.neighbour(2, "192.0.2.2")
    w.neighbour(9, "203.0.113.9")
    k = key(50)
    w.live[("198.51.100.50", 4433)] = k
    w.send(9, offer(k, "198.51.100.66", 4433, nonce=1))  # K at a dead address
    w.until(w.now + DIAL_TIMEOUT + 1)
    assert w.c.punch_failed == 1
    w.send(9, offer(k, "198.51.100.66", 4433, nonce=2))  # there again: held off
    assert w.c.punch_held == 1
    w.send(2, offer(k, "198.51.100.50", 4433, nonce=3))  # K at its true address
    w.until(w.now + 1)
    assert [d.host for d in w.dialled() if d.peer == k] == ["198.51.100.66", "198.51.100.50"]
    assert w.p.link_of(k) is not None  # (was: refused, punch_held)


def test_a_made_up_key_at_a_real_address_does_not_back_that_address_off() -> None:
    """1c: an OFFER naming a random key at a real node's address failed at once (wrong
    key) and backed the address off for punches (``punch_backed_off``): the real node
    could not be punched to. Now only the made-up key is held off at that address."""
    w = World()
    w.neighbour(2, "192.0.2.2")
    w.neighbour(9, "203.0.113.9")
    real = ("198.51.100.3", 4433)
    w.live[real] = key(3)
    w.send(9, offer(key(77), *real, nonce=1))
    w.until(w.now + DIAL_TIMEOUT + 1)
    assert w.c.punch_failed == 1 and not w.p.dials.backed_off(real, w.now)
    w.send(2, offer(key(3), *real, nonce=2))
    w.until(w.now + 1)
    assert w.p.link_of(key(3)) is not None and w.c.punch_backed_off == 0
    assert not w.p.may_dial(key(77), *real, w.now)  # the made-up key stays held off there


def test_offer_and_go_addresses_are_checked_as_the_dht_checks_them() -> None:
    """1d, 4: OFFER and GO hosts 0.0.0.0 (delivered to the host itself), 255.255.255.255
    and the victim's own address were dialled. Now an OFFER or GO must name a canonical
    unicast IP literal (the DHT's rule), not our own listening address or public mapping,
    and loopback only from an introducer on loopback."""
    w = World()
    w.neighbour(2, "192.0.2.2", observed=("198.18.0.1", 4433))
    w.neighbour(3, "198.51.100.3", observed=("198.18.0.1", 4433))
    assert w.p.mapping.kind == NatKind.PUBLIC
    bad = ["0.0.0.0", "255.255.255.255", "224.0.0.251", "::", "ff02::1", "fe80::1%eth0",
           "::ffff:127.0.0.1", "0177.0.0.1", " 198.51.100.9", "localhost", "127.0.0.1", "::1"]
    for n, host in enumerate(bad):
        w.send(2, offer(key(100 + n), host, 19392, nonce=n))
    w.send(2, offer(key(150), *ME, nonce=99))  # ourselves
    w.until(w.now + 5)
    assert w.dialled() == [] and w.primes == []
    assert w.c.punch_bad_address == len(bad) + 1 and w.c.punch_accepted == 0
    # a GO answering our own INTRO is checked the same way
    assert w.p.nat.introduce(key(60), key(2), w.now)
    w.p._take_nat_actions(w.now)
    w.run()
    (intro,) = w.to(2, wire.Punch, Phase.INTRO)
    w.send(2, wire.Punch(phase=Phase.GO, peer=key(60), nonce=intro.nonce, host="0.0.0.0", port=4433))
    w.until(w.now + 1)
    assert w.dialled() == [] and w.c.punch_bad_address == len(bad) + 2
    # on loopback (a demo, the tests) an introducer on loopback may name loopback
    lo = World(listen=("127.0.0.1", 4000))
    lo.neighbour(2, "127.0.0.1", 4002)
    lo.live[("127.0.0.1", 4003)] = key(3)
    lo.send(2, offer(key(3), "127.0.0.1", 4003))
    lo.until(1.0)
    assert lo.p.link_of(key(3)) is not None and lo.c.punch_bad_address == 0


# ---- 2. OBSERVED -----------------------------------------------------------------------

def _public_victim() -> World:
    """A public node confirmed by neighbours in three networks."""
    w = World(target=64)
    for i, host in ((2, "192.0.2.2"), (3, "198.51.100.3"), (4, "203.0.113.4")):
        w.neighbour(i, host, observed=ME)
    assert w.p.mapping.kind == NatKind.PUBLIC and w.p.mapping.public == ME
    return w


def test_strangers_service_links_cannot_set_our_address() -> None:
    """2: 16 DHT-only links from two /24s reported a false address: the node kept the
    newest 16 observers, the honest three were evicted, and a PUBLIC node took the lie
    for an EIM mapping (the tracker then listed it at a dead port). OBSERVED from an
    inbound link now counts only once it joins a stream (a service link's never)."""
    w = _public_victim()
    lie = wire.Observed(host="198.18.0.1", port=41414)
    for n in range(16):
        i = 100 + n
        host = f"100.64.{1 + n % 2}.{1 + n}"
        link = f"L{i}"
        assert w.p.link_up(link, key(i), dialled=False, now=w.now, addr=(host, 5000 + n))
        if n % 2:  # before its first DHT message (it waits) or after (never counted)
            w.p.on_message(link, key(i), lie, w.now)
            w.p.on_message(link, key(i), PING, w.now)
        else:
            w.p.on_message(link, key(i), PING, w.now)
            w.p.on_message(link, key(i), lie, w.now)
        w.run()
    assert w.p.mapping.kind == NatKind.PUBLIC and w.p.mapping.public == ME  # (was EIM :41414)
    assert w.c.observed_unused == 16
    assert {key(2), key(3), key(4)} <= set(w.p.mapping.reports)
    assert w.send(100, PING) == pp.TO_NODE  # and they are still served


def test_liars_that_join_count_once_per_network_and_cannot_evict_honest_reports() -> None:
    """2: the same 16 liars as neighbours (they JOIN): one report per /24 counts, so two
    networks of liars are two votes against three honest ones -- and a mapping someone
    still sees changes only on a strict majority of the networks reporting. Liars from
    more networks than the table holds are refused, not swapped for honest reports."""
    w = _public_victim()
    for n in range(16):
        w.neighbour(100 + n, f"100.64.{1 + n % 2}.{1 + n}", 5000 + n, observed=("198.18.0.1", 41414))
    assert w.p.mapping.kind == NatKind.PUBLIC and w.p.mapping.public == ME
    assert len(w.p.mapping.reports) == 5  # three honest networks, two liars' networks
    w.neighbour(200, "100.64.3.1", observed=("198.18.0.1", 41414))  # a third: a tie, no change
    assert w.p.mapping.public == ME
    # a full table (16 networks) refuses further networks: the honest reports stay
    for n in range(20):
        w.neighbour(300 + n, f"100.65.{n}.1", observed=("198.51.100.200", 41414))
    assert len(w.p.mapping.networks) == w.p.nat.config.max_observers
    assert w.c.observed_table_full == 20 - (16 - 6)
    assert {key(2), key(3), key(4)} <= set(w.p.mapping.reports)


def test_a_lying_observer_that_leaves_frees_its_networks_place() -> None:
    w = World(target=64, max_observers=4)
    for i, host in ((2, "192.0.2.2"), (3, "198.51.100.3"), (4, "203.0.113.4")):
        w.neighbour(i, host, observed=ME)
    w.neighbour(9, "100.64.1.9", observed=("198.18.0.1", 41414))
    w.neighbour(10, "100.64.2.10", observed=ME)
    assert w.c.observed_table_full == 1 and key(10) not in w.p.mapping.reports
    w.p.link_down("L9", key(9), w.now)
    w.send(10, wire.Observed(host=ME[0], port=ME[1]))  # (it reports again, say on migration)
    assert key(10) in w.p.mapping.reports and w.p.mapping.kind == NatKind.PUBLIC


# ---- 3. NEIGHBOURS ---------------------------------------------------------------------

def test_a_stranger_is_neither_listed_nor_taught_nor_introduced() -> None:
    """3: a service link's NEIGHBOURS (32 keys) were taken; the broadcaster listed the
    stranger in NEIGHBOURS to its viewers, sent it NEIGHBOURS, relayed viewers' INTROs to
    it as OFFERs carrying their observed addresses (NATed ones too), and forwarded its
    INTROs. Service links are now out of peer exchange and punching altogether."""
    w = World(target=64)
    w.neighbour(2, "192.0.2.2")
    w.neighbour(3, "198.51.100.3")
    w.service(9, "203.0.113.9")
    fake = [bytes([7, n]) * 16 for n in range(32)]
    w.send(9, wire.Neighbours(keys=fake))
    assert w.c.pex_not_neighbour == 1 and not any(k in w.p.nat.via for k in fake)
    w.until(w.p.nat.config.pex_interval + 1)  # NEIGHBOURS to every neighbour
    lists = w.to(2, wire.Neighbours) + w.to(3, wire.Neighbours)
    assert lists and not any(key(9) in m.keys for m in lists)
    assert w.to(9, wire.Neighbours) == []
    # a viewer asks us (R) to introduce it to the stranger: no OFFER with its address goes out
    w.send(2, wire.Punch(phase=Phase.INTRO, peer=key(9), nonce=5))
    assert w.to(9, wire.Punch) == [] and w.c.punch_relay_refused == 1
    # the stranger asks us to introduce it to a viewer: nothing forwarded
    w.send(9, wire.Punch(phase=Phase.INTRO, peer=key(3), nonce=6))
    assert w.to(3, wire.Punch) == [] and w.c.punch_not_neighbour == 1
    # between neighbours all of it still works
    w.send(2, wire.Punch(phase=Phase.INTRO, peer=key(3), nonce=7))
    (o,) = w.to(3, wire.Punch, Phase.OFFER)
    assert o.peer == key(2) and (o.host, o.port) == ("192.0.2.2", 4433)


def test_one_neighbour_cannot_flush_the_table_of_introductions() -> None:
    """3: 100 NEIGHBOURS of 32 fresh keys from one neighbour evicted 2,208 entries, the
    honest introducers' too, in a second. Now a message gives at most 16 keys and one
    introducer holds at most 64 (its own oldest go)."""
    w = World(target=64)
    w.neighbour(2, "192.0.2.2")
    w.neighbour(3, "198.51.100.3")
    honest = [bytes([8, n]) * 16 for n in range(16)]
    w.send(2, wire.Neighbours(keys=honest))
    w.send(3, wire.Neighbours(keys=honest[:8]))
    w.neighbour(9, "203.0.113.9")
    for m in range(100):
        w.send(9, wire.Neighbours(keys=[bytes([9, m, n]) + b"\0" * 29 for n in range(32)]))
    c, cfg = w.c, w.p.nat.config
    assert c.pex_keys_dropped == 100 * 16 and c.introducers_evicted == 0  # (was 2,208)
    assert len(w.p.nat.taught[key(9)]) == cfg.max_per_introducer
    assert c.pex_keys_capped == 100 * 16 - cfg.max_per_introducer
    assert all(key(2) in w.p.nat.introducers(k) for k in honest)
    assert all(key(3) in w.p.nat.introducers(k) for k in honest[:8])
    assert len(w.p.nat.via) == 16 + cfg.max_per_introducer
    w.p.link_down("L9", key(9), w.now)  # what it listed goes with it
    assert len(w.p.nat.via) == 16 and key(9) not in w.p.nat.taught


def test_gos_from_a_lying_introducer_stop_after_a_few_failures() -> None:
    """3: a neighbour listed made-up keys; the victim, short of neighbours, asked it to
    introduce them (INTRO) and it answered every INTRO with a GO naming a port of a sink:
    25 dials, 280 kB in 20 s. Now its failures stop its GOs and its introductions; an
    honest introducer still introduces."""
    w = World(target=12)
    w.neighbour(2, "192.0.2.2")
    w.neighbour(9, "203.0.113.9")
    gos = itertools.count()

    def answer(m: wire.Message) -> None:
        if isinstance(m, wire.Punch) and m.phase == Phase.INTRO:
            port = 30000 + next(gos)
            w.at(w.now + 0.05, lambda: w.send(9, wire.Punch(phase=Phase.GO, peer=m.peer, nonce=m.nonce,
                                                           host="198.51.100.80", port=port)))
    w.reply["L9"] = answer
    fake = [bytes([6, n]) * 16 for n in range(32)]
    t = 0.0
    while t < 20:  # re-listed every 10 s, as the attack did
        w.send(9, wire.Neighbours(keys=fake[:16]))
        w.send(9, wire.Neighbours(keys=fake[16:]))
        t += 10
        w.until(t)
    sink = [d for d in w.dialled() if d.host == "198.51.100.80"]
    cfg = w.p.nat.config
    assert len(sink) <= cfg.introducer_failures + 2, len(sink)  # (was 25)
    intros = w.to(9, wire.Punch, Phase.INTRO)
    assert len(intros) <= len(sink) + cfg.max_pending, len(intros)
    assert w.c.punch_failed == len(sink)
    # an honest introducer's introduction still goes through
    real = bytes([5]) * 32
    w.live[("198.51.100.5", 4433)] = real
    w.reply["L2"] = lambda m: (isinstance(m, wire.Punch) and m.phase == Phase.INTRO and m.peer == real
                               and w.at(w.now + 0.05, lambda: w.send(2, wire.Punch(
                                   phase=Phase.GO, peer=real, nonce=m.nonce, host="198.51.100.5", port=4433))))
    w.send(2, wire.Neighbours(keys=[real]))
    w.until(w.now + 3)
    assert w.p.link_of(real) is not None
