"""Whom to dial, and when to ask for more candidates: the dialling half of the peer policy.

Theory of operation
-------------------
Sans-I/O, owned by :class:`~oasis.core.peer.PeerPolicy` (which adds what it knows of
links and bans). Candidates -- (peer key, host, port) -- come from verified sources
only (the tracker's answer, later signed records); each must name a unicast IP literal
(``dialable``: no name to resolve, no broadcast target). They wait in a bounded table
(``max_candidates``, oldest forgotten first; ``candidate_ttl``).

``plan`` dials, in random order, candidates not linked, not dialling, not banned and
not backed off, until ``target_neighbours`` links plus dials are under way, at most
``max_dials_per_round`` at once, one per address and ``max_dials_per_ip`` per IP (an IPv6
/64; loopback exempt) at a time. An address whose dial failed, or whose peer refused
or banned our link, waits ``backoff_base`` seconds, doubling per failure up to
``backoff_max`` (jittered by a quarter); a link that stayed up ``stable_link`` seconds
clears it. The backoff table is bounded (``max_backoff``, oldest first).

With ``dial_patience``, while the node has fewer than ``patience_links`` neighbours, a plain
dial still under way ``dial_patience`` after it began no longer counts against the target: the
next plan (a timer, ``patience_at``) dials more candidates, at most ``target_neighbours +
max_dials_per_round`` under way at once, and the slow dial may still complete. A NAT drops a
dial to the peer behind it without a word (the dialler waits out its connect timeout) where a
reachable listener has answered within 3 RTT.

Cadence: ``announce_at`` is when to ask the sources again -- ``announce_interval``
(or the source's wish) once linked enough, ``fast_interval`` while short,
``retry_interval`` after a source failed, ``relink_delay`` after a neighbour left;
``announce_timeout`` after asking if no answer came. While short, an answer that
names no peer we did not already know doubles the wait for the next (up to the
linked cadence): a small swarm has no more peers to give, and asking every second
cost a viewer an HTTP request and a signature check per named peer each time. An
answer with a new peer brings back ``fast_interval``; a neighbour leaving starts
the doubling over.
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

INF = float("inf")

if TYPE_CHECKING:
    from .peer import PeerCounters, PolicyConfig


def ban_active(bans: dict[bytes, float], peer: bytes, now: float) -> bool:
    """Is ``peer`` banned at ``now`` in ``bans`` (peer -> banned until)? An expired entry
    is dropped on the way (the peer policy's and the DHT's ban tables)."""
    until = bans.get(peer)
    if until is None:
        return False
    if until <= now:
        del bans[peer]
        return False
    return True


@dataclass(frozen=True, slots=True)
class Candidate:
    peer: bytes  #: the key to pin when dialling
    host: str  #: an IP literal
    port: int


@dataclass(frozen=True, slots=True)
class Dial:
    peer: bytes  #: dial and pin this key; report dial_failed() or link_up(dialled=True)
    host: str
    port: int


def dialable(host: str, port: int) -> bool:
    """An address a candidate may name: an IP literal (no name to resolve), unicast,
    not unspecified; a port in 1..65535."""
    return 0 < port < 65536 and _host_dialable(host)


@functools.lru_cache(maxsize=1 << 18)
def _host_dialable(host: str) -> bool:
    """:func:`dialable`'s test of the host (memoized: a pure function of the text, asked for
    every candidate of every tracker answer)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not (ip.is_unspecified or ip.is_multicast or (ip.version == 4 and host == "255.255.255.255"))


@functools.lru_cache(maxsize=1 << 18)
def ip_key(host: str) -> str | None:
    """What the per-address limits count by: an IPv4 address, an IPv6 /64 (one subscriber's
    prefix), an IPv4-mapped IPv6 address as IPv4; None for loopback and non-addresses.
    Memoized (a pure function of the text; ``ipaddress`` parsing was ~7 % of a simulated
    node's CPU: every inbound link counts its peers' addresses)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class DialPlan:
    """Candidates, per-address backoff, dials under way and the announce cadence."""

    def __init__(self, self_key: bytes, config: PolicyConfig, counters: PeerCounters,
                 rng: random.Random, now: float) -> None:
        self.self_key = self_key
        self.config = config
        self.counters = counters
        self.rng = rng
        self.candidates: dict[bytes, tuple[Candidate, float]] = {}  #: peer -> (cand, offered at)
        self.backoff: dict[tuple[str, int], tuple[int, float]] = {}  #: addr -> (failures, until)
        self.dialling: dict[bytes, float] = {}  #: peer -> report deadline
        self.dial_addr: dict[bytes, tuple[str, int]] = {}  #: peer -> address being dialled
        #: ``dial_patience``: peer -> when its plain dial began, for the dials :meth:`plan`
        #: made while the node was short of ``patience_links``
        self.dial_began: dict[bytes, float] = {}
        #: ``dial_patience``: when the oldest of those stops counting (INF: none; a timer)
        self.patience_at = INF
        self.announce_at = now  #: when to ask the sources for candidates
        #: the wait between announces while short of neighbours (see the module doc)
        self.short_every = config.fast_interval

    def offer(self, found: Iterable[Candidate], now: float, *, verified: bool,
              interval: float | None, linked: int, target: int | None = None) -> None:
        c = self.counters
        cfg = self.config
        c.announces += 1
        new = False
        for cand in found:
            if not verified:
                c.candidates_unverified += 1
                continue
            if cand.peer == self.self_key:
                continue
            if not dialable(cand.host, cand.port):
                c.candidates_invalid += 1
                continue
            c.candidates_offered += 1
            if self.candidates.pop(cand.peer, None) is None:  # re-insert: newest last
                new = True
            self.candidates[cand.peer] = (cand, now)
            if len(self.candidates) > cfg.max_candidates:
                del self.candidates[next(iter(self.candidates))]
                c.candidates_evicted += 1
        every = cfg.announce_interval if interval is None else max(cfg.fast_interval, interval)
        if linked < (cfg.target_neighbours if target is None else target):
            self.short_every = (cfg.fast_interval if new
                                else min(2 * self.short_every, max(every, cfg.fast_interval)))
            every = min(every, self.short_every)
        else:
            self.short_every = cfg.fast_interval
        self.announce_at = now + every

    def source_failed(self, now: float) -> None:
        self.counters.announce_failures += 1
        self.announce_at = now + self.config.retry_interval

    def asked(self, now: float) -> None:
        """An Announce went out: ask again after ``announce_timeout`` if no answer."""
        self.announce_at = now + self.config.announce_timeout

    def neighbour_left(self, now: float) -> None:
        self.announce_at = min(self.announce_at, now + self.config.relink_delay)
        self.short_every = self.config.fast_interval

    def may_dial(self, peer: bytes, host: str, port: int, now: float, *, blocked: bool) -> bool:
        """An executor-initiated dial: allowed? If so it is now dialling."""
        if (blocked or peer == self.self_key or peer in self.dialling or not dialable(host, port)
                or self.backed_off((host, port), now)):
            self.counters.dials_refused += 1
            return False
        self.candidates.setdefault(peer, (Candidate(peer, host, port), now))
        self.dialling[peer] = now + self.config.dial_timeout
        self.dial_addr[peer] = (host, port)
        self.counters.dial_attempts += 1
        return True

    def plan(self, now: float, linked: int, blocked: Callable[[bytes], bool],
             held: Callable[[Candidate], bool] | None = None, *,
             target: int | None = None) -> list[Dial]:
        """Dials to start now; ``blocked``: linked or banned; ``held``: not to be dialled
        at that address now (a punch with the peer there failed lately); ``target``: links
        to dial until (default ``target_neighbours``)."""
        cfg = self.config
        patient = cfg.dial_patience > 0 and linked < cfg.patience_links
        slow = self._slow_dials(now) if patient else 0
        if not patient and self.dial_began:
            self.dial_began.clear()
            self.patience_at = INF
        need = (cfg.target_neighbours if target is None else target) - linked - len(self.dialling) + slow
        if need <= 0 or not self.candidates:
            return []
        eligible = []
        for peer, (cand, at) in list(self.candidates.items()):
            if at + cfg.candidate_ttl <= now:
                del self.candidates[peer]
            elif (peer not in self.dialling and not blocked(peer)
                  and not self.backed_off((cand.host, cand.port), now)
                  and (held is None or not held(cand))):
                eligible.append(cand)
        self.rng.shuffle(eligible)
        out: list[Dial] = []
        # One dial per address and ``max_dials_per_ip`` per IP at once: candidates are
        # signed by their own keys, which are free, so one answer could name a host (not
        # an Oasis node, perhaps) under many keys and ports, and each was dialled at once.
        busy = set(self.dial_addr.values())
        per_ip: dict[str, int] = {}
        for host, _port in busy:
            k = ip_key(host)
            if k is not None:
                per_ip[k] = per_ip.get(k, 0) + 1
        room = min(need + cfg.dial_extra, cfg.max_dials_per_round)
        if patient:
            # the slow dials' places go to new ones, but no more than a round beyond the target
            # is under way at once
            room = min(room, cfg.target_neighbours + cfg.max_dials_per_round - len(self.dialling))
        for cand in eligible:
            if len(out) >= room:
                break
            addr = (cand.host, cand.port)
            k = ip_key(cand.host)
            if addr in busy or (k is not None and per_ip.get(k, 0) >= cfg.max_dials_per_ip):
                self.counters.dials_held_per_ip += 1
                continue
            busy.add(addr)
            if k is not None:
                per_ip[k] = per_ip.get(k, 0) + 1
            self.dialling[cand.peer] = now + cfg.dial_timeout
            self.dial_addr[cand.peer] = addr
            self.counters.dial_attempts += 1
            out.append(Dial(cand.peer, cand.host, cand.port))
            if patient:
                self.dial_began[cand.peer] = now
                if now + cfg.dial_patience < self.patience_at:
                    self.patience_at = now + cfg.dial_patience
        return out

    def _slow_dials(self, now: float) -> int:
        """``dial_patience``: how many of the dials :meth:`plan` made while short are still under
        way ``dial_patience`` after they began (they count against the target no more); arms
        ``patience_at`` for the next one to become slow."""
        wait = self.config.dial_patience
        slow = 0
        nxt = INF
        for peer, began in list(self.dial_began.items()):
            if peer not in self.dialling or peer not in self.dial_addr:
                del self.dial_began[peer]  # (linked, failed, or turned into a punch)
            elif began + wait <= now:
                slow += 1
            elif began + wait < nxt:
                nxt = began + wait
        self.patience_at = nxt
        return slow

    def connected(self, peer: bytes) -> None:
        self.dialling.pop(peer, None)
        self.dial_addr.pop(peer, None)

    def failed(self, peer: bytes, now: float, *, back_off: bool = True) -> None:
        """A dial did not authenticate the peer: the address that was dialled backs off
        (not the peer's candidate address, which may be another one) -- unless not
        ``back_off`` (a punched address: the peer policy holds off the peer there)."""
        if self.dialling.pop(peer, None) is None:
            return
        self.counters.dial_failures += 1
        addr = self.dial_addr.pop(peer, None)
        if back_off:
            self.back_off(peer, now, addr)

    def stable(self, peer: bytes) -> None:
        """A link we dialled stayed up: its address is good again."""
        addr = self._address_of(peer)
        if addr is not None:
            self.backoff.pop(addr, None)

    def forget(self, peer: bytes) -> None:
        self.candidates.pop(peer, None)

    def backed_off(self, addr: tuple[str, int], now: float) -> bool:
        entry = self.backoff.get(addr)
        return entry is not None and entry[1] > now

    def back_off(self, peer: bytes, now: float, addr: tuple[str, int] | None = None) -> None:
        if addr is None:
            addr = self._address_of(peer)
        if addr is None:
            return
        cfg = self.config
        failures = self.backoff.pop(addr, (0, 0.0))[0] + 1
        wait = min(cfg.backoff_max, cfg.backoff_base * 2 ** min(failures - 1, 30))
        self.backoff[addr] = (failures, now + wait * (1.0 + 0.25 * self.rng.random()))
        if len(self.backoff) > cfg.max_backoff:  # oldest entry first (insertion order)
            del self.backoff[next(iter(self.backoff))]
            self.counters.backoff_evicted += 1

    def overdue(self, now: float) -> list[bytes]:
        """Dials the executor never reported on, past their deadline."""
        return [k for k, t in self.dialling.items() if t <= now]

    def get_timer(self) -> float:
        t = self.announce_at if self.announce_at < self.patience_at else self.patience_at
        for deadline in self.dialling.values():
            if deadline < t:
                t = deadline
        return t

    def backed_off_until(self, peer: bytes) -> float:
        """When the back-off of ``peer``'s candidate address ends (0.0: none)."""
        addr = self._address_of(peer)
        entry = None if addr is None else self.backoff.get(addr)
        return 0.0 if entry is None else entry[1]

    def _address_of(self, peer: bytes) -> tuple[str, int] | None:
        entry = self.candidates.get(peer)
        return None if entry is None else (entry[0].host, entry[0].port)
