"""One iterative DHT lookup over disjoint paths (S/Kademlia), sans-I/O.

Theory of operation
-------------------
A lookup walks towards a 256-bit ``target``. Its seeds (our closest contacts) are dealt
round-robin to ``paths`` paths; each path keeps its own candidates ordered by XOR
distance (at most ``max_candidates``, farthest dropped) and asks up to ``alpha`` of them at
once, closest first. A node belongs to the first path that heard of it, so the paths
stay disjoint: a path captured by colluding nodes (which name only each other) cannot
pull the others in, and one path that reaches an honest node near the target suffices.

* A ``nodes`` lookup (FIND_NODE: join, publish) asks a candidate only while it is among
  the path's ``k`` closest not-failed candidates, and ends when those have all answered
  (Kademlia's rule). Its result is the ``k`` closest nodes that answered, over all paths.
* A ``providers`` lookup (GET_PROVIDERS) ends a path at the first valid record it gets,
  and otherwise keeps walking to farther candidates it already holds (an eclipse attempt
  pushes honest candidates out of the top ``k`` with sybils that hold no records), until
  the lookup holds ``want`` providers or the budget is spent.
* Bounds: ``max_queries`` requests per lookup, candidates no deeper than ``max_hops``
  answers from us are never asked, at most ``per_prefix`` candidates of one IPv4 /24
  (IPv6 /48) in the whole lookup, and the owner ends the lookup at ``deadline``.

Hops: our own contacts are hop 1, a node named by a hop-``h`` answer is hop ``h + 1``. The
lookup's hop count is the hop of the first node that returned a record (``providers``) or
of the closest node that answered (``nodes``).

The object never sends: :meth:`Lookup.next_queries` names candidates to ask, the owner
(:class:`oasis.core.dht.Dht`) sends and reports :meth:`answered` / :meth:`failed`.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field

from .dhtrecord import ProviderRecord, prefix_of

NEW, ASKED, ANSWERED, FAILED = 0, 1, 2, 3


@dataclass(slots=True)
class Candidate:
    dist: int  #: XOR distance to the target (sort key)
    key: bytes
    host: str
    port: int
    hop: int
    path: int
    state: int = NEW
    referrer: bytes | None = None  #: the node whose answer named it (None: our own contact)

    def __lt__(self, other: Candidate) -> bool:
        return self.dist < other.dist


@dataclass(slots=True)
class _Path:
    cands: list[Candidate] = field(default_factory=list)  #: nearest first
    inflight: int = 0
    best: int = 1 << 256  #: distance of the nearest node that answered
    stalled: bool = False  #: the last answer brought nothing nearer: ask all of the top k
    found: bool = False  #: got a record (providers lookups)
    done: bool = False


class Lookup:
    def __init__(self, lid: int, kind: str, target: int, now: float, *, k: int, alpha: int,
                 paths: int, max_candidates: int, max_queries: int, max_hops: int,
                 want: int, deadline: float, per_prefix: int = 3) -> None:
        self.lid = lid
        self.kind = kind  #: "nodes" | "providers"
        self.target = target
        self.started = now
        self.deadline = deadline
        self.k, self.alpha, self.max_candidates = k, alpha, max_candidates
        self.max_queries, self.max_hops, self.want = max_queries, max_hops, want
        self.paths = [_Path() for _ in range(max(1, paths))]
        self.owner: dict[bytes, Candidate] = {}  #: every node any path holds or held
        self.per_prefix = per_prefix
        self.prefixes: dict[str, int] = {}  #: candidates taken per /24 (/48), all paths
        self.refused_prefix = 0  #: candidates not taken: their network had its share
        self.queries = 0
        self.answers = 0
        self.first_found: float | None = None
        self.found_hop = 0
        self.providers: dict[bytes, ProviderRecord] = {}  #: provider key -> newest record
        self.descriptor: bytes = b""
        self.done = False

    # ---- inputs ----------------------------------------------------------------
    def seed(self, contacts: list[tuple[bytes, int, str, int]],
             referrers: dict[bytes, bytes] | None = None) -> None:
        """Our closest contacts ``(key, id, host, port)``, nearest first, dealt round-robin;
        ``referrers``: for seeds a bootstrap answer named, the key that named them."""
        refs = referrers or {}
        for n, (key, nid, host, port) in enumerate(contacts):
            self._add(n % len(self.paths), key, nid ^ self.target, host, port, 1, refs.get(key))

    def answered(self, key: bytes, entries: list[tuple[bytes, int, str, int]],
                 now: float) -> tuple[bool, bytes | None]:
        """``key`` answered with ``entries`` (already checked by the owner: nearer the
        target than ``key``, not us, dialable). Returns (whether it was asked here, the
        key that named it, if any): the owner credits that referrer."""
        c = self.owner.get(key)
        if c is None or c.state not in (ASKED, FAILED):
            return False, None
        p = self.paths[c.path]
        if c.state == ASKED:
            p.inflight -= 1
        c.state = ANSWERED  # a late answer (after its timeout) is used all the same
        self.answers += 1
        nearest = min((nid ^ self.target for _, nid, _, _ in entries), default=p.best)
        p.stalled = nearest >= p.best and c.dist >= p.best
        p.best = min(p.best, nearest, c.dist)
        for ekey, nid, host, port in entries:
            self._add(c.path, ekey, nid ^ self.target, host, port, c.hop + 1, key)
        return True, c.referrer

    def failed(self, key: bytes) -> tuple[bool, bytes | None]:
        """``key`` did not answer in time (or could not be reached): (whether it was
        awaited here, the key that named it, if any) -- the owner charges that referrer."""
        c = self.owner.get(key)
        if c is None or c.state != ASKED:
            return False, None
        c.state = FAILED
        self.paths[c.path].inflight -= 1
        return True, c.referrer

    def drop_referred(self, referrer: bytes) -> int:
        """Never ask the candidates ``referrer`` named that are not asked yet (its
        referrals keep failing: made-up keys at a victim's addresses); how many."""
        n = 0
        for c in self.owner.values():
            if c.state == NEW and c.referrer == referrer:
                c.state = FAILED
                n += 1
        return n

    def found(self, key: bytes, now: float) -> None:
        """``key`` returned at least one valid record (providers lookups)."""
        c = self.owner.get(key)
        if c is None:
            return
        self.paths[c.path].found = True
        if self.first_found is None:
            self.first_found = now
            self.found_hop = c.hop

    # ---- outputs ---------------------------------------------------------------
    def next_queries(self, room: int = 1 << 30) -> list[Candidate]:
        """At most ``room`` candidates to ask now (marked ASKED); sets ``done`` when
        nothing is left to ask or await."""
        out: list[Candidate] = []
        if self.done:
            return out
        if self.kind == "providers" and len(self.providers) >= self.want:
            self.done = True
            return out
        for p in self.paths:
            if p.done:
                continue
            if self.kind == "providers" and p.found:
                p.done = p.inflight == 0
                continue
            live = 0
            # Kademlia: a round that brought nothing nearer asks all of the top k at once
            width = self.k if p.stalled and self.kind == "nodes" else self.alpha
            for c in p.cands:
                if (p.inflight >= width or self.queries >= self.max_queries
                        or len(out) >= room):
                    break
                if c.state == FAILED:
                    continue
                live += 1
                if self.kind == "nodes" and live > self.k:
                    break
                if c.state == NEW and c.hop <= self.max_hops:
                    c.state = ASKED
                    p.inflight += 1
                    self.queries += 1
                    out.append(c)
            if p.inflight == 0:
                p.done = True
        self.done = all(p.done for p in self.paths)
        return out

    def closest_answered(self) -> list[Candidate]:
        """The ``k`` nearest nodes that answered, over all paths, nearest first."""
        got = sorted(c for c in self.owner.values() if c.state == ANSWERED)
        return got[:self.k]

    def hops(self) -> int:
        if self.kind == "providers":
            return self.found_hop
        best = self.closest_answered()
        return best[0].hop if best else 0

    # ---- internals -------------------------------------------------------------
    def _add(self, path: int, key: bytes, dist: int, host: str, port: int, hop: int,
             referrer: bytes | None = None) -> None:
        if key in self.owner:
            return  # held by this or another path: paths stay disjoint
        pfx = prefix_of(host)
        if self.prefixes.get(pfx, 0) >= self.per_prefix:
            # one network gets at most ``per_prefix`` dials per lookup, however many keys
            # answers name there (a victim's address under made-up keys: amplification)
            self.refused_prefix += 1
            return
        p = self.paths[path]
        c = Candidate(dist, key, host, port, hop, path, NEW, referrer)
        if len(p.cands) >= self.max_candidates:  # drop the farthest not yet asked
            for j in range(len(p.cands) - 1, -1, -1):
                x = p.cands[j]
                if x.dist <= dist:
                    return
                if x.state == NEW:
                    del p.cands[j]
                    del self.owner[x.key]
                    self.prefixes[prefix_of(x.host)] -= 1
                    break
            else:
                return
        self.owner[key] = c
        self.prefixes[pfx] = self.prefixes.get(pfx, 0) + 1
        insort(p.cands, c)
        p.done = False

