"""Tracker rules, sans-I/O: who is in which stream's swarm, and whom to tell a joiner.

Peers announce (stream, peer id, address) periodically; entries expire
``ttl`` seconds after their last announce. A joiner gets a random sample of
the others, always including the broadcaster while it is alive (it holds the
live edge first). A peer may name its *area* (a short locality label: the
simulator uses the country); up to ``locality`` (0.8) of the sample then
comes from peers of the same area, the rest from everyone. Neighbours close by
make each tree hop short (docs/simulation.md has the measured effect).

Theory of operation
-------------------
* **Cost.** Each stream keeps its peers in :class:`StreamPeers`: a dict plus
  indexable "bags" (all peers, and one per area) with swap-remove, so joining,
  leaving and drawing a sample cost O(1) and O(sample), never O(peers).
* **Expiry on time.** Every entry sits in one insertion-ordered table by last
  announce; :meth:`Tracker.sweep` pops the stale head, so each entry is expired
  exactly once (amortised O(1) per announce). The announce path sweeps, and a
  node also calls ``sweep(now)`` on a cadence so a quiet tracker empties too.
* **Caps, each with a counter** (``Tracker.counters``): streams, peers per
  stream, entries in total, and announces per source address (a token bucket
  per IPv4 address or IPv6 /64, in a bounded table). A refused announce raises
  :class:`TrackerRefused` with a stable ``code``.
* **Sybils.** Identities cost nothing (a key pair), so the rate limit alone let
  one address register hundreds of peer ids in a stream and crowd the real
  peers out of every sample. Two rules: (1) at most ``max_ids_per_address``
  (8) distinct peer ids per source address (IPv4, or IPv6 /64) per stream are
  admitted through :meth:`Tracker.submit` (a new id beyond the cap is refused
  429 ``too_many_ids``, counted in ``refused_ids_per_address``); loopback is
  exempt unless ``cap_loopback`` (a tracker on 127.0.0.1 serves the operator's
  own machine: the demo and tests run many peers there). (2) A peer that has
  been announced without a gap for ``establish_after`` seconds is
  *established*; after the broadcaster and the area share, up to
  ``established_share`` (0.5) of the rest of a sample is drawn from the
  established peers, the remainder from everyone. A burst of fresh ids (from
  any number of addresses) therefore cannot push the peers with history out
  of the samples, and a sybil must keep re-announcing (rate, cap) for
  ``establish_after`` before it is preferred.
* **Trust.** :meth:`Tracker.submit` takes a *signed* announce
  (:mod:`oasis.core.announce`): signature, freshness, no replay (the time must
  grow per peer and stream, leaves leave a tombstone), and the announced host
  must be the address the request came from. Broadcaster-only facts (origin,
  tickets, parameters) come only from a descriptor signed with the stream key
  (:mod:`oasis.core.descriptor`). :meth:`Tracker.announce` is the unsigned
  rule underneath, for trusted callers (the simulator).

The HTTP face is in ``oasis.node.http``.
"""

from __future__ import annotations

import ipaddress
import random
from collections import OrderedDict
from dataclasses import dataclass, field

from .announce import SKEW, WINDOW, Announce, is_fresh, verify_announce
from .descriptor import Descriptor, verify_descriptor

MAX_STREAMS = 10_000
MAX_PEERS_PER_STREAM = 100_000
MAX_TOTAL = 200_000  #: entries over all streams
MAX_AREA = 32  #: characters of an area label kept
MAX_SOURCES = 50_000  #: source addresses with a rate bucket at once
SOURCE_RATE = 50.0  #: announces per second a source address may sustain (viewers behind a NAT)
SOURCE_BURST = 500.0  #: ... and in a burst
MAX_IDS_PER_ADDRESS = 8  #: distinct peer ids per source address per stream (viewers behind a NAT)
ESTABLISH_AFTER = 10.0  #: seconds of continuous presence before a peer counts as established
#: (the nodes' announce interval: one refresh, which a one-shot sybil id never sends)
ESTABLISHED_SHARE = 0.5  #: share of a sample (after the area share) drawn from established peers


class TrackerRefused(ValueError):
    """An announce the tracker will not take; ``code`` is stable, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class TrackerFull(TrackerRefused, OverflowError):
    """A cap is reached (streams, peers in a stream, all entries, source addresses)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, 429)


@dataclass
class TrackedPeer:
    peer_id: str
    host: str
    port: int
    seen: float
    is_broadcaster: bool = False
    area: str = ""
    record: Announce | None = None  #: the signed announce, handed to joiners as proof
    since: float = 0.0  #: first announce of this continuous presence
    source: str = ""  #: source-address key it was admitted from (signed path), for the id cap


class _Bag:
    """A set with O(1) add, remove and uniform random pick."""

    __slots__ = ("ids", "pos")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}

    def add(self, x: str) -> None:
        if x not in self.pos:
            self.pos[x] = len(self.ids)
            self.ids.append(x)

    def remove(self, x: str) -> None:
        i = self.pos.pop(x, None)
        if i is not None:
            last = self.ids.pop()
            if last != x:
                self.ids[i] = last
                self.pos[last] = i

    def pick(self, rng: random.Random, want: int, seen: set[str], out: list[str]) -> None:
        """Append up to ``want`` members not in ``seen`` (bounded tries)."""
        n = len(self.ids)
        if n - len(seen) <= want * 2:  # small: filter
            avail = [p for p in self.ids if p not in seen]
            got = avail if len(avail) <= want else rng.sample(avail, want)
            seen.update(got)
            out += got
            return
        added = 0
        for _ in range(8 * want + 16):
            if added >= want:
                break
            p = self.ids[rng.randrange(n)]
            if p not in seen:
                seen.add(p)
                out.append(p)
                added += 1


class StreamPeers:
    """One stream's membership: O(1) join/leave, O(sample) draws (the sampling rule)."""

    def __init__(self) -> None:
        self.peers: dict[str, TrackedPeer] = {}
        self.broadcaster: str | None = None
        self._all = _Bag()
        self._areas: dict[str, _Bag] = {}
        self._area_of: dict[str, str] = {}
        self._est = _Bag()  #: peers with history (see Tracker.establish_after)

    def __len__(self) -> int:
        return len(self.peers)

    def join(self, peer_id: str, *, is_broadcaster: bool = False, area: str = "") -> None:
        if is_broadcaster:
            self.broadcaster = peer_id
        elif peer_id not in self._all.pos:
            self._all.add(peer_id)
            if area:
                self._area_of[peer_id] = area
                self._areas.setdefault(area, _Bag()).add(peer_id)

    def establish(self, peer_id: str) -> None:
        """Mark a (non-broadcaster) member as established: preferred in draws."""
        if peer_id in self._all.pos:
            self._est.add(peer_id)

    def leave(self, peer_id: str) -> None:
        self._all.remove(peer_id)
        self._est.remove(peer_id)
        a = self._area_of.pop(peer_id, None)
        if a is not None:
            bag = self._areas[a]
            bag.remove(peer_id)
            if not bag.ids:
                del self._areas[a]
        if peer_id == self.broadcaster:
            self.broadcaster = None

    def draw(self, rng: random.Random, peer_id: str, area: str, sample: int,
             locality: float, established: float = 0.0) -> list[str]:
        """The broadcaster (unless asking), then ``locality`` of the rest from ``area``, then
        ``established`` of what is left from the established peers, then anyone."""
        out = [self.broadcaster] if self.broadcaster and self.broadcaster != peer_id else []
        seen = {peer_id}
        seen.update(out)
        want = sample - len(out)
        near = self._areas.get(area) if area else None
        if near is not None:
            near.pick(rng, int(want * locality), seen, out)
        if established > 0.0 and self._est.ids:
            self._est.pick(rng, int((sample - len(out)) * established), seen, out)
        self._all.pick(rng, sample - len(out), seen, out)
        return out


def same_address(a: str, b: str) -> bool:
    """Whether two IP literals name one address (IPv4-mapped IPv6 equals its IPv4)."""
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    if isinstance(x, ipaddress.IPv6Address) and x.ipv4_mapped is not None:
        x = x.ipv4_mapped
    if isinstance(y, ipaddress.IPv6Address) and y.ipv4_mapped is not None:
        y = y.ipv4_mapped
    return x == y


def is_loopback(source: str) -> bool:
    """Whether a request address is loopback (127/8, ::1, or IPv4-mapped 127/8)."""
    try:
        ip = ipaddress.ip_address(source)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def source_key(source: str) -> str:
    """The rate-limit key of a request address: the IPv4 address, or the IPv6 /64 it is in."""
    try:
        ip = ipaddress.ip_address(source)
    except ValueError:
        return source[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


COUNTERS = ("announces", "leaves", "expired", "descriptors_accepted", "refused_rate",
            "refused_stale", "refused_address", "refused_signature", "refused_replay",
            "refused_descriptor", "refused_streams_full", "refused_peers_full",
            "refused_total_full", "refused_sources_full", "refused_ids_per_address",
            "bad_requests", "answered_unlisted")


@dataclass
class Tracker:
    ttl: float = 30.0
    sample: int = 20
    locality: float = 0.8  #: share of the sample taken from the joiner's area
    rng: random.Random = field(default_factory=random.Random)
    max_streams: int = MAX_STREAMS
    max_peers_per_stream: int = MAX_PEERS_PER_STREAM
    max_total: int = MAX_TOTAL
    max_sources: int = MAX_SOURCES
    source_rate: float = SOURCE_RATE
    source_burst: float = SOURCE_BURST
    #: distinct peer ids one source address may hold in one stream (signed path; 0: no cap)
    max_ids_per_address: int = MAX_IDS_PER_ADDRESS
    cap_loopback: bool = False  #: apply that cap to loopback sources too (off: the operator's box)
    establish_after: float = ESTABLISH_AFTER
    established_share: float = ESTABLISHED_SHARE
    streams: dict[str, StreamPeers] = field(default_factory=dict)
    descriptors: dict[str, Descriptor] = field(default_factory=dict)  #: stream -> newest signed
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    #: (stream, peer) -> last announce time, oldest first: the expiry queue
    _order: OrderedDict[tuple[str, str], float] = field(default_factory=OrderedDict)
    #: (stream, peer) -> (signed time of its leave, keep until): replays of older announces fail
    _tombs: OrderedDict[tuple[str, str], tuple[int, float]] = field(default_factory=OrderedDict)
    #: source address -> (tokens, last refill), least recently used first
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)
    #: (stream, source key) -> live peer ids admitted from it (entries with a ``source``)
    _ids_at: dict[tuple[str, str], int] = field(default_factory=dict)

    # ---- the rule ------------------------------------------------------------
    def announce(self, stream: str, peer_id: str, host: str, port: int, now: float, *,
                 is_broadcaster: bool = False, leaving: bool = False, area: str = "",
                 record: Announce | None = None, source: str = "") -> list[TrackedPeer]:
        """Record (or remove) a peer and return a sample of the others. Unsigned: trusted callers.

        ``is_broadcaster`` is ignored: the broadcaster is the peer whose id the
        stream id starts with (whatever a request claims). ``source``: the
        source-address key the announce came from (counted for the id cap; the
        cap itself is checked in :meth:`submit`). Raises TrackerFull.
        """
        self.sweep(now)
        sp = self.streams.get(stream)
        key = (stream, peer_id)
        if leaving:
            self.counters["leaves"] += 1
            if sp is not None and peer_id in sp.peers:
                self._remove(stream, sp, peer_id)
            return []
        if sp is None:
            if len(self.streams) >= self.max_streams:
                self.counters["refused_streams_full"] += 1
                raise TrackerFull("streams_full", "tracker is full: too many streams")
        old = sp.peers.get(peer_id) if sp is not None else None
        if old is None:
            if sp is not None and len(sp.peers) >= self.max_peers_per_stream:
                self.counters["refused_peers_full"] += 1
                raise TrackerFull("peers_full", "tracker is full for this stream")
            if len(self._order) >= self.max_total:
                self.counters["refused_total_full"] += 1
                raise TrackerFull("total_full", "tracker is full")
        if sp is None:
            sp = self.streams[stream] = StreamPeers()
        area = area[:MAX_AREA]
        bcast = stream.startswith(peer_id + ".")
        if old is not None and old.area != area and not bcast:
            sp.leave(peer_id)
        self.counters["announces"] += 1
        since = old.since if old is not None else now
        if (old.source if old is not None else "") != source:
            if old is not None:
                self._uncount(stream, old.source)
            if source:
                k = (stream, source)
                self._ids_at[k] = self._ids_at.get(k, 0) + 1
        sp.peers[peer_id] = TrackedPeer(peer_id, host, port, now, bcast, area, record, since,
                                        source)
        sp.join(peer_id, is_broadcaster=bcast, area=area)
        if not bcast and now - since >= self.establish_after:
            sp.establish(peer_id)
        self._order[key] = now
        self._order.move_to_end(key)
        picked = sp.draw(self.rng, peer_id, area, self.sample, self.locality,
                         self.established_share)
        return [sp.peers[p] for p in picked]

    def _uncount(self, stream: str, source: str) -> None:
        if source:
            k = (stream, source)
            n = self._ids_at.get(k, 0) - 1
            if n > 0:
                self._ids_at[k] = n
            else:
                self._ids_at.pop(k, None)

    def ids_at(self, stream: str, source: str) -> int:
        """Live peer ids in ``stream`` admitted from ``source`` (an address; keyed like the cap)."""
        return self._ids_at.get((stream, source_key(source)), 0)

    def _remove(self, stream: str, sp: StreamPeers, peer_id: str) -> None:
        self._uncount(stream, sp.peers.pop(peer_id).source)
        sp.leave(peer_id)
        self._order.pop((stream, peer_id), None)
        if not sp.peers:
            del self.streams[stream]
            self.descriptors.pop(stream, None)

    def sweep(self, now: float) -> int:
        """Expire entries not announced within ``ttl`` (and old tombstones); returns how many."""
        n = 0
        order = self._order
        limit = now - self.ttl
        while order:
            (stream, pid), seen = next(iter(order.items()))
            if seen >= limit:
                break
            order.popitem(last=False)
            sp = self.streams.get(stream)
            if sp is not None and pid in sp.peers:
                self._remove(stream, sp, pid)
            n += 1
        self.counters["expired"] += n
        tombs = self._tombs
        while tombs and next(iter(tombs.values()))[1] < now:
            tombs.popitem(last=False)
        return n

    # ---- signed announces ----------------------------------------------------
    def admit_request(self, source: str, now: float) -> None:
        """Charge one request from address ``source`` (before its body is read or decoded:
        a malformed body costs its sender a token too); TrackerRefused (429) if it has none."""
        if not self.admit(source_key(source), now):
            raise TrackerRefused("rate_limited", "too many announces from this address", 429)

    def admit(self, source: str, now: float) -> bool:
        """Take one token from ``source``'s bucket; False (counted) when it has none."""
        b = self._buckets
        tokens, last = b.pop(source, (self.source_burst, now))
        tokens = min(self.source_burst, tokens + max(0.0, now - last) * self.source_rate)
        if len(b) >= self.max_sources:
            # Forget the least recently seen source if its bucket would be full again anyway.
            old_src, (old_tokens, old_last) = next(iter(b.items()))
            if old_tokens + (now - old_last) * self.source_rate >= self.source_burst:
                b.popitem(last=False)
            else:
                self.counters["refused_sources_full"] += 1
                return False
        if tokens < 1.0:
            b[source] = (tokens, now)
            self.counters["refused_rate"] += 1
            return False
        b[source] = (tokens - 1.0, now)
        return True

    def submit(self, a: Announce, source: str, now: float,
               descriptor: Descriptor | None = None, *, admitted: bool = False) -> list[TrackedPeer]:
        """Check a signed announce from address ``source`` and apply it; raises TrackerRefused.
        ``admitted``: the caller already took this request's token (:meth:`admit_request`,
        before reading its body)."""
        c = self.counters
        skey = source_key(source)
        if not admitted:
            self.admit_request(source, now)
        if not is_fresh(a.time_ms, now):
            c["refused_stale"] += 1
            raise TrackerRefused("stale", f"announce time is not within {WINDOW:g} s before "
                                 f"or {SKEW:g} s after the tracker's clock (check the clock)", 400)
        listed = same_address(a.host, source)
        if not listed and a.leaving:
            c["refused_address"] += 1
            raise TrackerRefused("address_mismatch",
                                 f"announced host {a.host} is not the request's address {source}")
        if not verify_announce(a):
            c["refused_signature"] += 1
            raise TrackerRefused("bad_signature", "announce signature does not verify for peer_id")
        stream, pid = str(a.stream), a.peer_id
        if not listed:
            # Behind a NAT a node announces its private address until peers told it the
            # one they see (OBSERVED): it gets peers to dial, but no address of another
            # host is ever stored or handed out.
            c["answered_unlisted"] += 1
            self.sweep(now)
            sp0 = self.streams.get(stream)
            if sp0 is None:
                return []
            picked = sp0.draw(self.rng, pid, a.area[:MAX_AREA], self.sample, self.locality,
                              self.established_share)
            return [sp0.peers[p] for p in picked]
        sp = self.streams.get(stream)
        live = sp.peers.get(pid) if sp is not None else None
        last = live.record.time_ms if live is not None and live.record is not None else -1
        tomb = self._tombs.get((stream, pid))
        if tomb is not None:
            last = max(last, tomb[0])
        if a.time_ms <= last:
            c["refused_replay"] += 1
            raise TrackerRefused("replay", "announce is not newer than the last one from this peer",
                                 409)
        held = self.descriptors.get(stream)
        if held is not None and descriptor is not None and descriptor.signature == held.signature \
                and descriptor == held:
            descriptor = None  # the one held, again (the broadcaster's every announce): no news
        if descriptor is not None and not verify_descriptor(descriptor, a.stream):
            c["refused_descriptor"] += 1
            raise TrackerRefused("bad_descriptor",
                                 "descriptor is not signed by this stream's key")
        if not a.leaving and self.max_ids_per_address > 0 and (live is None or live.source != skey) \
                and self._ids_at.get((stream, skey), 0) >= self.max_ids_per_address \
                and (self.cap_loopback or not is_loopback(source)):
            c["refused_ids_per_address"] += 1
            raise TrackerRefused("too_many_ids", f"this address already has "
                                 f"{self.max_ids_per_address} peer ids in this stream", 429)
        if a.leaving:
            self._tombs[(stream, pid)] = (a.time_ms, now + WINDOW + SKEW)
            self._tombs.move_to_end((stream, pid))
            while len(self._tombs) > self.max_total:
                self._tombs.popitem(last=False)
            return self.announce(stream, pid, a.host, a.port, now, leaving=True)
        peers = self.announce(stream, pid, a.host, a.port, now, area=a.area, record=a, source=skey)
        if descriptor is not None:
            self.offer_descriptor(descriptor)
        return peers

    def offer_descriptor(self, d: Descriptor) -> bool:
        """Keep ``d`` if it is validly signed, for a live stream, and newer than the one held."""
        stream = str(d.stream)
        if stream not in self.streams or not verify_descriptor(d):
            return False
        held = self.descriptors.get(stream)
        if held is None or d.issued_at_ms > held.issued_at_ms:
            self.descriptors[stream] = d
            self.counters["descriptors_accepted"] += 1
            return True
        return False

    # ---- reports -------------------------------------------------------------
    def stream_ids(self) -> list[str]:
        return list(self.streams)

    def entries(self) -> int:
        return len(self._order)
