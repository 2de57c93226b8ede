"""The DHT routing table: k-buckets, long-lived contacts first, diversity, XOR order."""

from __future__ import annotations

import random

from dhtkit import T0, host, keys_in_bucket

from oasis.core.dhtrecord import node_id, prefix_of
from oasis.core.dhttable import RoutingTable

ME = random.Random(1).randbytes(32)


def test_a_full_bucket_keeps_its_long_lived_contacts_and_caches_newcomers() -> None:
    t = RoutingTable(ME, k=4, replacements=2, ping_after=60.0)
    old = keys_in_bucket(ME, 0, 4)
    for i, k in enumerate(old):
        assert t.seen(k, host(i), 1, T0) is None
    new = keys_in_bucket(ME, 0, 3)
    # the head was heard just now: the newcomer waits in the cache, nobody is pinged
    assert t.seen(new[0], host(10), 1, T0 + 1) is None
    assert new[0] not in t.index and len(t) == 4
    # the head has been silent for ping_after: ask to ping it before any eviction
    head = t.seen(new[1], host(11), 1, T0 + 61)
    assert head is not None and head.key == old[0]
    assert t.seen(new[2], host(12), 1, T0 + 62) is None  # one ping at a time
    # it answers: it stays (moved to the tail), the newcomers stay cached
    t.seen(old[0], host(0), 1, T0 + 63)
    assert old[0] in t.index and new[1] not in t.index
    assert t.buckets[0].contacts[-1].key == old[0]
    # a contact that fails is replaced at once by the newest cached newcomer
    t.failed(old[1])
    assert old[1] not in t.index and new[2] in t.index
    assert t.counters.contacts_replaced == 1
    assert len(t.buckets[0].replacements) == 1  # capped at 2, one used


def test_a_failing_contact_without_replacement_goes_after_max_fails() -> None:
    t = RoutingTable(ME, k=4, max_fails=3)
    k = keys_in_bucket(ME, 1, 1)[0]
    t.seen(k, host(1), 1, T0)
    t.failed(k)
    t.failed(k)
    assert k in t.index
    t.seen(k, host(1), 1, T0 + 1)  # an answer clears the count
    t.failed(k)
    t.failed(k)
    assert k in t.index
    t.failed(k)
    assert k not in t.index and not t.buckets


def test_at_most_two_contacts_of_one_network_per_bucket_and_ten_per_table() -> None:
    t = RoutingTable(ME, k=20, per_bucket_prefix=2, per_table_prefix=10)
    same = keys_in_bucket(ME, 0, 3)
    t.seen(same[0], "198.51.100.1", 1, T0)
    t.seen(same[1], "198.51.100.2", 1, T0)
    t.seen(same[2], "198.51.100.3", 1, T0)  # third of that /24 in bucket 0
    assert same[2] not in t.index and t.counters.diversity_refused == 1
    # across buckets, at most 10 of one /24 in the table
    added = 2
    for b in range(1, 12):
        for k in keys_in_bucket(ME, b, 2):
            t.seen(k, f"198.51.100.{10 + added}", 1, T0)
            added += 1
    assert t.prefixes[prefix_of("198.51.100.1")] == 10
    # IPv6 by /48; IPv4-mapped IPv6 counts as its IPv4 network
    assert prefix_of("2001:db8:1:2::1") == prefix_of("2001:db8:1:ffff::9")
    assert prefix_of("2001:db8:2::1") != prefix_of("2001:db8:1::1")
    assert prefix_of("::ffff:198.51.100.7") == prefix_of("198.51.100.1")


def test_a_contact_that_moves_to_a_full_network_keeps_its_old_address() -> None:
    t = RoutingTable(ME, per_table_prefix=1)
    a, b = keys_in_bucket(ME, 0, 2)
    t.seen(a, "198.51.100.1", 1, T0)
    t.seen(b, "203.0.113.1", 1, T0)
    t.seen(b, "198.51.100.2", 7, T0 + 1)
    c = t.get(b)
    assert c is not None and (c.host, c.port) == ("203.0.113.1", 1)
    t.seen(b, "192.0.2.5", 9, T0 + 2)
    assert (c.host, c.port) == ("192.0.2.5", 9)


def test_closest_is_the_xor_order_without_sorting_everything() -> None:
    rng = random.Random(5)
    t = RoutingTable(ME, k=20)
    for i in range(600):
        t.seen(rng.randbytes(32), host(i), 1, T0)
    everyone = list(t.index.values())
    for _ in range(50):
        target = rng.getrandbits(256) if rng.random() < 0.5 else node_id(ME) ^ rng.getrandbits(200)
        want = sorted(everyone, key=lambda c: c.nid ^ target)
        assert [c.key for c in t.closest(target, 20)] == [c.key for c in want[:20]]
        limit = want[7].nid ^ target
        assert [c.key for c in t.closest(target, 20, closer_than=limit)] == \
            [c.key for c in want[:7]]
        assert want[0].key not in [c.key for c in t.closest(target, 5, exclude=want[0].key)]
    # bounded: at most k per bucket
    assert all(len(b.contacts) <= 20 for b in t.buckets.values())
    assert len(t) <= 20 * len(t.buckets)
