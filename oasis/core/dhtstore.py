"""The DHT's record store: provider records held for others, with every cap counted.

A storer keeps, per stream key, the newest record of each provider and the stream's
descriptor (only from the broadcaster's own record). :meth:`RecordStore.add` takes an
``ADD_PROVIDER`` as it came off a link (key, observed host) and returns the score its
sender earns (0 for an honest refusal such as a full store or a stale ``seq``, 1 for input
no honest node sends); :meth:`RecordStore.sweep` drops expired records. Caps: keys,
records, records per key, records of one /24 (/48) per key, keys per publisher, bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import wire
from .descriptor import DescriptorError, descriptor_from_json, verify_descriptor
from .dhtdefs import DhtConfig, DhtCounters
from .dhtrecord import ProviderRecord, RecordError, Verify, check_record, prefix_of


@dataclass(slots=True)
class _Stored:
    records: dict[bytes, ProviderRecord] = field(default_factory=dict)  #: provider -> record
    descriptor: bytes = b""
    issued_ms: int = -1


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
        if old is None:
            if st is None and len(self.keys) >= cfg.max_keys:
                self.sweep(now)
                if len(self.keys) >= cfg.max_keys:
                    c.records_refused_full += 1
                    return 0.0
            if (self.records >= cfg.max_records
                    or (st is not None and len(st.records) >= cfg.max_records_per_key)
                    or self._by_publisher.get(peer, 0) >= cfg.max_records_per_publisher
                    or self.bytes + grow + len(desc) > cfg.max_store_bytes):
                c.records_refused_full += 1
                return 0.0
            if st is not None:
                pfx = prefix_of(host)
                same = sum(1 for r in st.records.values()
                           if any(prefix_of(h) == pfx for h, _ in r.addrs))
                if same >= cfg.per_key_prefix:
                    c.records_refused_prefix += 1
                    return 0.0
        if st is None:
            st = self.keys[key] = _Stored()
        st.records[rec.provider] = rec
        self.bytes += grow
        if old is None:
            self.records += 1
            self._by_publisher[peer] = self._by_publisher.get(peer, 0) + 1
            c.records_stored += 1
        else:
            c.records_refreshed += 1
        if desc and issued > st.issued_ms and self.bytes + len(desc) - len(st.descriptor) \
                <= cfg.max_store_bytes:
            self.bytes += len(desc) - len(st.descriptor)
            st.descriptor, st.issued_ms = desc, issued
        return 0.0

    def sweep(self, now: float) -> None:
        ms = now * 1000
        for key in list(self.keys):
            st = self.keys[key]
            for prov in [p for p, r in st.records.items() if r.expires_ms <= ms]:
                r = st.records.pop(prov)
                self.records -= 1
                self.bytes -= len(r.raw)
                left = self._by_publisher[prov] - 1
                if left:
                    self._by_publisher[prov] = left
                else:
                    del self._by_publisher[prov]
                self.counters.records_evicted_expired += 1
            if not st.records:
                self.bytes -= len(st.descriptor)
                del self.keys[key]
