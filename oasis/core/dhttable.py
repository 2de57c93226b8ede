"""The DHT's routing table: k-buckets over the XOR metric, with address diversity.

Theory of operation
-------------------
Bucket ``i`` holds contacts whose id shares exactly ``i`` leading bits with ours (a flat
array of buckets as in libp2p, created on first use). A bucket holds at most ``k``
contacts, least recently seen first, and a small *replacement cache* of newcomers that
found it full (most recent last).

* **Long-lived contacts win** (Kademlia): a newcomer to a full bucket goes to the
  replacement cache; if the bucket's least recently seen contact has not been heard for
  ``ping_after`` seconds the table asks for it to be pinged (:meth:`RoutingTable.seen`
  returns it). A contact that fails (no answer in time) is replaced by the newest cached
  newcomer at once when one waits, else dropped after ``max_fails`` failures in a row.
* **Diversity** (libp2p's diversity filter, discv5): at most ``per_bucket_prefix``
  contacts of one IPv4 /24 (IPv6 /48) in a bucket and ``per_table_prefix`` in the table,
  so an attacker needs many networks, not many keys, to fill a victim's table.
* **Closest**: contacts ordered by XOR distance to a target without sorting the whole
  table: the bucket at the target's prefix length first, then all deeper buckets, then
  the shallower ones one by one (each band is farther than the one before).

The table holds only contacts whose key a link authenticated and whose address was
observed on that link: :class:`~oasis.core.dht.Dht` adds a contact when it answered us or
sent us a request, never from what a third node said.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .dhtrecord import cpl, node_id, prefix_of


@dataclass(slots=True)
class Contact:
    key: bytes  #: Ed25519 public key (authenticated by a link)
    nid: int  #: node_id(key)
    host: str  #: address observed on the link
    port: int
    prefix: str  #: prefix_of(host)
    added: float  #: in the table since
    seen: float  #: last answer or request from it
    srtt: float = 0.0  #: smoothed request -> answer time, 0 = not measured
    rttvar: float = 0.0
    fails: int = 0  #: requests in a row it did not answer


@dataclass(slots=True)
class _Bucket:
    contacts: list[Contact] = field(default_factory=list)  #: least recently seen first
    replacements: list[Contact] = field(default_factory=list)  #: most recent last
    pinging: bytes | None = None  #: key of the head being pinged before an eviction


@dataclass
class TableCounters:
    contacts_added: int = 0
    contacts_removed: int = 0  #: failed or banned
    contacts_replaced: int = 0  #: a failed contact replaced from the cache
    diversity_refused: int = 0  #: too many contacts of one /24 (/48)
    replacements_cached: int = 0
    evict_pings: int = 0


class RoutingTable:
    def __init__(self, self_key: bytes, *, k: int = 20, replacements: int = 8,
                 per_bucket_prefix: int = 2, per_table_prefix: int = 10,
                 ping_after: float = 60.0, max_fails: int = 3) -> None:
        self.self_key = self_key
        self.self_id = node_id(self_key)
        self.k = k
        self.replacements = replacements
        self.per_bucket_prefix = per_bucket_prefix
        self.per_table_prefix = per_table_prefix
        self.ping_after = ping_after
        self.max_fails = max_fails
        self.buckets: dict[int, _Bucket] = {}
        self.index: dict[bytes, Contact] = {}
        self.prefixes: dict[str, int] = {}  #: contacts per prefix in the table
        self.counters = TableCounters()

    def __len__(self) -> int:
        return len(self.index)

    def get(self, key: bytes) -> Contact | None:
        return self.index.get(key)

    def bucket_sizes(self) -> dict[int, int]:
        return {i: len(b.contacts) for i, b in sorted(self.buckets.items()) if b.contacts}

    # ---- updates -------------------------------------------------------------
    def seen(self, key: bytes, host: str, port: int, now: float,
             rtt: float | None = None) -> Contact | None:
        """``key`` answered us or asked us something, from ``host:port``.

        Returns a contact to ping (the head of a full bucket not heard for ``ping_after``
        seconds; :meth:`failed` evicts it if it does not answer), else None."""
        c = self.index.get(key)
        if c is not None:
            c.seen = now
            c.fails = 0
            if rtt is not None:
                _rtt_sample(c, rtt)
            if (c.host, c.port) != (host, port):
                self._readdress(c, host, port)
            home = self.buckets[cpl(self.self_id, c.nid)]
            if home.contacts[-1] is not c:
                home.contacts.remove(c)
                home.contacts.append(c)
            if home.pinging == key:
                home.pinging = None  # it answered: the newcomer waits in the cache
            return None
        nid = node_id(key)
        i = cpl(self.self_id, nid)
        if i == 256:
            return None
        b = self.buckets.get(i)
        if b is None:
            b = self.buckets[i] = _Bucket()
        prefix = prefix_of(host)
        new = Contact(key, nid, host, port, prefix, now, now)
        if rtt is not None:
            _rtt_sample(new, rtt)
        if not self._diverse(b, prefix):
            self.counters.diversity_refused += 1
            return None
        if len(b.contacts) < self.k:
            self._insert(b, new)
            return None
        self._cache(b, new)
        head = b.contacts[0]
        if b.pinging is None and now - head.seen >= self.ping_after:
            b.pinging = head.key
            self.counters.evict_pings += 1
            return head
        return None

    def rtt_sample(self, key: bytes, rtt: float) -> None:
        c = self.index.get(key)
        if c is not None:
            _rtt_sample(c, rtt)

    def failed(self, key: bytes) -> None:
        """``key`` did not answer a request in time."""
        c = self.index.get(key)
        if c is None:
            return
        c.fails += 1
        b = self.buckets[cpl(self.self_id, c.nid)]
        if b.pinging == key:
            b.pinging = None
        if b.replacements or c.fails >= self.max_fails:
            self.remove(key)

    def remove(self, key: bytes) -> None:
        """Drop ``key`` (failed, banned); the newest diverse newcomer takes its place."""
        c = self.index.pop(key, None)
        if c is None:
            return
        i = cpl(self.self_id, c.nid)
        b = self.buckets[i]
        b.contacts.remove(c)
        if b.pinging == key:
            b.pinging = None
        self._uncount(c.prefix)
        self.counters.contacts_removed += 1
        while b.replacements:
            r = b.replacements.pop()
            if self._diverse(b, r.prefix):
                self._insert(b, r)
                self.counters.contacts_replaced += 1
                break
        if not b.contacts and not b.replacements:
            del self.buckets[i]

    def forget_replacement(self, key: bytes) -> None:
        """Drop a cached newcomer (banned)."""
        for b in self.buckets.values():
            b.replacements = [r for r in b.replacements if r.key != key]

    # ---- queries -------------------------------------------------------------
    def closest(self, target: int, n: int, *, closer_than: int | None = None,
                exclude: bytes | None = None) -> list[Contact]:
        """Up to ``n`` contacts nearest ``target`` (XOR), nearest first; with
        ``closer_than``, only those strictly nearer the target than that distance."""
        out: list[Contact] = []
        start = cpl(self.self_id, target)
        buckets = self.buckets
        bands: list[list[Contact]] = []
        if start in buckets:
            bands.append(buckets[start].contacts)
        deeper = [c for i, b in buckets.items() if i > start for c in b.contacts]
        if deeper:
            bands.append(deeper)
        for i in range(min(start, 255), -1, -1):
            if i != start and i in buckets:
                bands.append(buckets[i].contacts)
        for band in bands:
            ranked = sorted(band, key=lambda c: c.nid ^ target)
            for c in ranked:
                if closer_than is not None and c.nid ^ target >= closer_than:
                    return out
                if c.key != exclude:
                    out.append(c)
                    if len(out) >= n:
                        return out
        return out

    # ---- internals -----------------------------------------------------------
    def _diverse(self, b: _Bucket, prefix: str) -> bool:
        if self.prefixes.get(prefix, 0) >= self.per_table_prefix:
            return False
        return sum(1 for c in b.contacts if c.prefix == prefix) < self.per_bucket_prefix

    def _insert(self, b: _Bucket, c: Contact) -> None:
        b.contacts.append(c)
        self.index[c.key] = c
        self.prefixes[c.prefix] = self.prefixes.get(c.prefix, 0) + 1
        self.counters.contacts_added += 1

    def _cache(self, b: _Bucket, c: Contact) -> None:
        b.replacements = [r for r in b.replacements if r.key != c.key]
        b.replacements.append(c)
        self.counters.replacements_cached += 1
        if len(b.replacements) > self.replacements:
            del b.replacements[0]

    def _uncount(self, prefix: str) -> None:
        left = self.prefixes[prefix] - 1
        if left:
            self.prefixes[prefix] = left
        else:
            del self.prefixes[prefix]

    def _readdress(self, c: Contact, host: str, port: int) -> None:
        """A known key now speaks from another address (moved, NAT rebinding)."""
        prefix = prefix_of(host)
        if prefix != c.prefix:
            if self.prefixes.get(prefix, 0) >= self.per_table_prefix:
                self.counters.diversity_refused += 1
                return  # keep the old address
            self._uncount(c.prefix)
            self.prefixes[prefix] = self.prefixes.get(prefix, 0) + 1
        c.host, c.port, c.prefix = host, port, prefix


def _rtt_sample(c: Contact, rtt: float) -> None:
    """RFC 6298's estimator (gains 1/8, 1/4)."""
    if c.srtt == 0.0:
        c.srtt, c.rttvar = rtt, rtt / 2
    else:
        c.rttvar += (abs(c.srtt - rtt) - c.rttvar) / 4
        c.srtt += (rtt - c.srtt) / 8
