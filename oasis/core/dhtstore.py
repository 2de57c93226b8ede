"""The DHT's record store: provider records held for others, with every cap counted.

A storer keeps, per stream key, the newest record of each provider and the stream's
descriptor (only from the broadcaster's own record). :meth:`RecordStore.add` takes an
``ADD_PROVIDER`` as it came off a link (key, observed host) and returns the score its
sender earns (0 for an honest refusal such as a full store or a stale ``seq``, 1 for input
no honest node sends); :meth:`RecordStore.sweep` drops expired records. Caps: keys,
records, records per key, records of one /24 (/48) per key, keys per publisher, bytes.

The *stream record* (the broadcaster's own, the only one that may carry the descriptor) has
a place of its own under its key: it is not counted towards, nor refused by, the per-key
caps (records per key, per network) -- the key is computable from the public stream id, so
others' records could otherwise fill it in advance and keep the descriptor from every
newcomer holding a short link. When a storer-wide cap (records, bytes) binds, it takes the
room from its own key's other records, the most crowded block's least recently stored
first. Only a broadcaster over its keys per publisher, or a key new to a storer full of
keys that none gives way to (below), still refuses it.

A storer full of keys is not first come, first kept either: each key remembers the block
its first record came from, and a key new to the storer from a block that started at least
2 fewer keys than the block that started the most takes the place of that block's oldest
key (all its records go). So one host's flood of throw-away keys gives way to streams from
elsewhere, and filling the keys takes as many blocks as there are keys.

A key full of other records (``max_records_per_key``) is not first come, first kept: a
newcomer from a block (IPv4 /16, IPv6 /32) holding at least 2 fewer of its records than
the most crowded block takes the place of that block's least recently stored record. So
records pre-filled from few blocks (32 /48s of one /32 fill 64 places) give way to
viewers from elsewhere, and holding a key's places takes as many blocks as there are
places. Each such move lowers the sum of the squared block counts, so they cannot chase
each other round: records move only as networks arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import wire
from .descriptor import DescriptorError, descriptor_from_json, verify_descriptor
from .dhtdefs import DhtConfig, DhtCounters
from .dhtrecord import ProviderRecord, RecordError, Verify, block_of, check_record, prefix_of


@dataclass(slots=True)
class _Stored:
    #: provider -> record, least recently stored (or refreshed) first
    records: dict[bytes, ProviderRecord] = field(default_factory=dict)
    descriptor: bytes = b""
    issued_ms: int = -1
    block: str = ""  #: the block (/16, /32) the key's first record came from


class RecordStore:
    def __init__(self, config: DhtConfig, counters: DhtCounters, verify: Verify) -> None:
        self.config = config
        self.counters = counters
        self.verify = verify
        self.keys: dict[bytes, _Stored] = {}
        self._by_publisher: dict[bytes, int] = {}
        self.records = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: bytes) -> bool:
        return key in self.keys

    def get(self, key: bytes, now: float) -> list[ProviderRecord]:
        st = self.keys.get(key)
        if st is None:
            return []
        return [r for r in st.records.values() if r.expires_ms > now * 1000]

    def descriptor(self, key: bytes) -> bytes:
        st = self.keys.get(key)
        return st.descriptor if st is not None else b""

    def add(self, peer: bytes, host: str, msg: wire.DhtAddProvider, now: float) -> float:
        """Store ``msg``'s record if every rule allows; returns the sender's score."""
        cfg, c = self.config, self.counters
        try:
            rec = check_record(msg.record, now, self.verify, max_ttl=cfg.max_record_ttl,
                               skew=cfg.clock_skew)
        except RecordError as exc:
            if exc.code in ("expired", "too_long"):
                c.records_expired += 1
                return 0.0
            c.records_rejected += 1
            return 1.0
        if rec.provider != peer or any(h != host for h, _ in rec.addrs):
            c.records_wrong_source += 1
            return 1.0
        key = rec.key
        st = self.keys.get(key)
        old = st.records.get(rec.provider) if st is not None else None
        if old is not None and rec.seq <= old.seq:
            c.records_stale += 1
            return 0.0
        desc = b""
        issued = -1
        if msg.descriptor:
            if not rec.is_stream_record:
                c.descriptors_rejected += 1
                return 1.0
            try:
                d = descriptor_from_json(msg.descriptor)
            except DescriptorError:
                d = None
            if d is None or not verify_descriptor(d, rec.stream):
                c.descriptors_rejected += 1
                return 1.0
            desc, issued = msg.descriptor, d.issued_at_ms
        grow = len(rec.raw) - (len(old.raw) if old is not None else 0)
        if old is None and self._by_publisher.get(peer, 0) >= cfg.max_records_per_publisher:
            c.records_refused_full += 1
            return 0.0
        if st is None and len(self.keys) >= cfg.max_keys:
            self.sweep(now)
            st = self.keys.get(key)
            if st is None and len(self.keys) >= cfg.max_keys and not self._make_key_room(
                    block_of(host), len(rec.raw)):
                c.records_refused_full += 1
                return 0.0
        if rec.is_stream_record:
            return self._add_stream_record(st, rec, old, desc, issued)
        if old is None and (self.records >= cfg.max_records
                            or self.bytes + grow > cfg.max_store_bytes):
            c.records_refused_full += 1
            return 0.0
        pfx = prefix_of(host)
        # a refresh from another network counts there as a newcomer would: else a record
        # stored from a network with room could be moved into a full one
        if st is not None and (old is None or prefix_of(old.addrs[0][0]) != pfx):
            same = sum(1 for r in st.records.values() if not r.is_stream_record
                       and r.provider != peer and prefix_of(r.addrs[0][0]) == pfx)
            if same >= cfg.per_key_prefix:
                c.records_refused_prefix += 1
                return 0.0
        if old is None and st is not None and _others(st) >= cfg.max_records_per_key:
            victim = _crowded(st, block_of(host))
            if victim is None:
                c.records_refused_full += 1
                return 0.0
            self._drop(st, victim)
            c.records_evicted_crowded += 1
        self._put(key, st, rec, old)
        return 0.0

    def _add_stream_record(self, st: _Stored | None, rec: ProviderRecord,
                           old: ProviderRecord | None, desc: bytes, issued: int) -> float:
        """Store the broadcaster's record (and descriptor), making room in its key if need be."""
        c = self.counters
        grow = len(rec.raw) - (len(old.raw) if old is not None else 0)
        new_desc = bool(desc) and issued > (st.issued_ms if st is not None else -1)
        more = len(desc) - (len(st.descriptor) if st is not None else 0) if new_desc else 0
        need = 1 if old is None else 0
        drop = self._room(st, rec.provider, need, grow + more)
        if drop is None:  # not with the descriptor: the record alone
            new_desc, drop = False, self._room(st, rec.provider, need, grow)
            if drop is None:
                c.records_refused_full += 1
                return 0.0
        if st is not None:
            for prov in drop:
                self._drop(st, prov)
                c.records_evicted_crowded += 1
        st = self._put(rec.key, st, rec, old)
        if new_desc:
            self.bytes += len(desc) - len(st.descriptor)
            st.descriptor, st.issued_ms = desc, issued
        return 0.0

    def _room(self, st: _Stored | None, keep: bytes, records: int,
              nbytes: int) -> list[bytes] | None:
        """Providers of ``st`` (not ``keep``) to drop so that ``records`` more records and
        ``nbytes`` more bytes fit the storer's caps: the most crowded block's least recently
        stored first. None if dropping them all would not do."""
        cfg = self.config
        over_r = self.records + records - cfg.max_records
        over_b = self.bytes + nbytes - cfg.max_store_bytes
        if over_r <= 0 and over_b <= 0:
            return []
        cands = [r for p, r in st.records.items() if p != keep] if st is not None else []
        counts = _blocks(cands)
        out: list[bytes] = []
        while over_r > 0 or over_b > 0:
            if not cands:
                return None
            top = max(counts.values())
            victim = next(r for r in cands if counts[block_of(r.addrs[0][0])] == top)
            cands.remove(victim)
            counts[block_of(victim.addrs[0][0])] -= 1
            out.append(victim.provider)
            over_r -= 1
            over_b -= len(victim.raw)
        return out

    def _put(self, key: bytes, st: _Stored | None, rec: ProviderRecord,
             old: ProviderRecord | None) -> _Stored:
        """Store ``rec`` (its room already checked) as the newest under ``key``."""
        if st is None:
            st = self.keys[key] = _Stored(block=block_of(rec.addrs[0][0]))
        st.records.pop(rec.provider, None)  # a refresh moves to the end too
        st.records[rec.provider] = rec
        self.bytes += len(rec.raw) - (len(old.raw) if old is not None else 0)
        if old is None:
            self.records += 1
            self._by_publisher[rec.provider] = self._by_publisher.get(rec.provider, 0) + 1
            self.counters.records_stored += 1
        else:
            self.counters.records_refreshed += 1
        return st

    def _drop(self, st: _Stored, prov: bytes) -> None:
        r = st.records.pop(prov)
        self.records -= 1
        self.bytes -= len(r.raw)
        left = self._by_publisher[prov] - 1
        if left:
            self._by_publisher[prov] = left
        else:
            del self._by_publisher[prov]

    def _make_key_room(self, block: str, nbytes: int) -> bool:
        """Drop a whole key for a key new to a storer full of keys, coming from ``block``:
        the oldest key of the block that started the most keys, if that block started at
        least 2 more than ``block`` and dropping it makes room for ``nbytes`` more."""
        counts: dict[str, int] = {}
        for st in self.keys.values():
            counts[st.block] = counts.get(st.block, 0) + 1
        top = max(counts.values(), default=0)
        if top < counts.get(block, 0) + 2:
            return False
        key, st = next((k, x) for k, x in self.keys.items() if counts[x.block] == top)
        held = sum(len(r.raw) for r in st.records.values()) + len(st.descriptor)
        if self.bytes - held + nbytes > self.config.max_store_bytes:
            return False
        for prov in list(st.records):
            self._drop(st, prov)
        self.bytes -= len(st.descriptor)
        del self.keys[key]
        self.counters.keys_evicted_crowded += 1
        return True

    def sweep(self, now: float) -> None:
        ms = now * 1000
        for key in list(self.keys):
            st = self.keys[key]
            for prov in [p for p, r in st.records.items() if r.expires_ms <= ms]:
                self._drop(st, prov)
                self.counters.records_evicted_expired += 1
            if not st.records:
                self.bytes -= len(st.descriptor)
                del self.keys[key]


def _others(st: _Stored) -> int:
    """Records under a key that count towards its caps: all but the stream record."""
    return len(st.records) - any(r.is_stream_record for r in st.records.values())


def _blocks(records: list[ProviderRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        b = block_of(r.addrs[0][0])  # every address of a stored record is its sender's host
        counts[b] = counts.get(b, 0) + 1
    return counts


def _crowded(st: _Stored, block: str) -> bytes | None:
    """The provider whose record a newcomer from ``block`` may displace under a full key:
    the least recently stored of the most crowded block, if that block holds at least 2 more
    records than ``block`` (fewer would only swap the two); else None."""
    others = [r for r in st.records.values() if not r.is_stream_record]
    counts = _blocks(others)
    top = max(counts.values(), default=0)
    if top < counts.get(block, 0) + 2:
        return None
    return next(r.provider for r in others if counts[block_of(r.addrs[0][0])] == top)
