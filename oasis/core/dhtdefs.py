"""The DHT's configuration, counters and actions (``oasis.core.dht`` re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass

from . import wire
from .dhtrecord import ProviderRecord


@dataclass
class DhtConfig:
    k: int = 20  #: bucket size, answer size, replication factor
    alpha: int = 3  #: requests in flight per lookup path
    paths: int = 2  #: disjoint lookup paths (S/Kademlia's d)
    per_bucket_prefix: int = 2  #: contacts of one IPv4 /24 (IPv6 /48) per bucket
    per_table_prefix: int = 10  #: ... per table
    replacements: int = 8  #: replacement cache per bucket
    ping_after: float = 60.0  #: a full bucket's head unheard this long is pinged for a newcomer
    max_fails: int = 3  #: unanswered requests in a row before a contact with no replacement goes
    rtt_floor: float = 0.25  #: request timeout: measured srtt + 4 rttvar, at least this
    rtt_cap: float = 3.0  #: ... at most this
    initial_rtt: float = 1.0  #: first-contact estimate before any sample (covers a dial)
    lookup_time: float = 10.0  #: a lookup ends by then, done or not
    max_queries: int = 60  #: requests one lookup may send
    max_hops: int = 12  #: candidates named more than this many answers away are not asked
    max_candidates: int = 64  #: per lookup path
    lookup_per_prefix: int = 3  #: candidates of one /24 (/48) in one lookup
    want_providers: int = 8  #: a providers lookup ends once it holds this many
    max_lookups: int = 16  #: lookups at once (more: refused, LookupDone ok=False)
    max_pending: int = 256  #: requests awaiting an answer
    record_ttl: float = 600.0  #: lifetime of the records we sign
    republish: float = 240.0  #: we re-announce this often (well before record_ttl)
    max_record_ttl: float = 1800.0  #: records expiring later than now + this are refused
    clock_skew: float = 60.0  #: ... plus this
    max_keys: int = 1024  #: stream keys stored
    max_records: int = 8192  #: records stored
    #: besides the stream record (the broadcaster's own); when full, a newcomer from a less
    #: crowded /16 (/32) displaces the most crowded block's least recently stored record
    max_records_per_key: int = 64
    max_records_per_publisher: int = 8  #: keys one provider may hold records under here
    per_key_prefix: int = 2  #: records of one /24 (/48) under one key (the stream record apart)
    max_store_bytes: int = 4 << 20  #: records + descriptors held
    answer_records: int = 20  #: records in one answer (wire.MAX_DHT_RECORDS)
    request_rate: float = 20.0  #: requests per second per peer (bucket refill)
    request_burst: float = 60.0
    max_rate_buckets: int = 4096
    ban_score: float = 10.0
    score_decay: float = 0.05  #: points forgiven per second
    ban_seconds: float = 600.0
    max_bans: int = 1024
    max_scores: int = 4096  #: also: referrers whose referrals failed, remembered
    #: a node whose answers named this many more nodes that failed than answered (decaying
    #: by ``referral_decay`` a second) has what it names no longer dialled (§14.5)
    referral_failures: float = 4.0
    referral_decay: float = 1.0 / 15.0
    #: a node named in answers that never answered us is not asked again for this long
    dead_hold: float = 60.0
    #: table upkeep: a lookup of a random id every 0.5-1.5 x this, skipped when we started a
    #: lookup of our own within it (Kademlia refreshes buckets no lookup touched for an hour)
    refresh_interval: float = 600.0
    sweep_interval: float = 30.0  #: expired records swept this often


@dataclass
class DhtCounters:
    requests_in: int = 0
    requests_over_budget: int = 0
    requests_out: int = 0
    answers_in: int = 0
    answers_unsolicited: int = 0  #: unknown query id, or answered by another key than asked
    answers_late: int = 0  #: answers after their request timed out (not scored)
    timeouts: int = 0
    send_failures: int = 0
    pending_full: int = 0  #: a request not sent: max_pending reached
    entries_not_closer: int = 0  #: answer entries not nearer the target than the answerer
    entries_bad_address: int = 0
    entries_duplicate: int = 0
    entries_same_network: int = 0  #: beyond a lookup's share of one /24 (/48): not asked
    #: named by a node whose referrals kept failing (made-up keys at chosen addresses): not asked
    entries_referrer_failed: int = 0
    records_referrer_failed: int = 0  #: third parties' records from a distrusted answerer: not taken
    entries_failed_recently: int = 0  #: named nodes that failed a request of ours within ``dead_hold``: not asked
    referrers_distrusted: int = 0  #: nodes whose referrals failed ``referral_failures`` times more than they answered
    records_rejected: int = 0  #: parse or signature failures, wrong key (scored)
    records_expired: int = 0  #: expired or too long-lived (counted, not scored)
    records_stored: int = 0
    records_refreshed: int = 0
    records_stale: int = 0  #: seq not above the stored one
    records_wrong_source: int = 0  #: ADD_PROVIDER not from the provider at its address
    records_refused_full: int = 0  #: a cap (keys, records, per key, per publisher, bytes)
    records_refused_prefix: int = 0  #: too many records of one /24 under one key
    records_evicted_expired: int = 0
    #: dropped to make room: for the stream record when a storer-wide cap binds, or under a
    #: full key for a newcomer from a block (/16, /32) holding 2 fewer than the most crowded
    records_evicted_crowded: int = 0
    #: whole keys dropped for a key new to a storer full of keys, from a block (/16, /32)
    #: that started 2 fewer keys than the block that started the most
    keys_evicted_crowded: int = 0
    descriptors_rejected: int = 0
    descriptors_stale: int = 0  #: verified descriptors older than one a lookup already has (kept the newer)
    from_banned: int = 0
    peers_banned: int = 0
    lookups_started: int = 0
    lookups_refused: int = 0
    lookups_timed_out: int = 0
    publishes: int = 0


# ---- actions ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Send:
    peer: bytes | None  #: pin this key when dialling (None: a bootstrap address, unpinned)
    host: str
    port: int
    message: wire.Message


@dataclass(frozen=True, slots=True)
class LookupDone:
    lookup: int
    kind: str  #: "join" | "nodes" | "providers" | "publish" | "refresh"
    target: bytes  #: 32 bytes
    ok: bool  #: providers: a valid record found; others: some node answered
    nodes: tuple[tuple[bytes, str, int], ...]  #: the k nearest nodes that answered
    providers: tuple[ProviderRecord, ...] = ()
    descriptor: bytes = b""  #: the stream's verified descriptor JSON, if a storer had it
    hops: int = 0
    elapsed: float = 0.0
    first_found: float | None = None  #: seconds to the first valid record
    queries: int = 0  #: requests sent
    answers: int = 0


DhtAction = Send | LookupDone
