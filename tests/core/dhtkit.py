"""Helpers for the DHT tests: keys in chosen buckets, distinct networks, a driven Dht."""

from __future__ import annotations

import random

from oasis.core import dht as dh
from oasis.core import wire
from oasis.core.dhtrecord import cpl, node_id

T0 = 1_800_000_000.0  #: the DHT's clock is wall-clock seconds
RNG = random.Random(2026)


def host(i: int) -> str:
    """A distinct IPv4 /24 per ``i``."""
    return f"{11 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.1"


def keys_in_bucket(self_key: bytes, bucket: int, n: int, rng: random.Random = RNG) -> list[bytes]:
    """``n`` random keys whose ids share exactly ``bucket`` leading bits with ``self_key``'s
    (bucket 0: half of all keys; 1: a quarter...)."""
    me = node_id(self_key)
    out: list[bytes] = []
    while len(out) < n:
        k = rng.randbytes(32)
        if cpl(me, node_id(k)) == bucket:
            out.append(k)
    return out


def sends(d: dh.Dht) -> list[dh.Send]:
    return [a for a in d.actions() if isinstance(a, dh.Send)]


def split(actions: list[dh.DhtAction]) -> tuple[list[dh.Send], list[dh.LookupDone]]:
    return ([a for a in actions if isinstance(a, dh.Send)],
            [a for a in actions if isinstance(a, dh.LookupDone)])


def node_of(key: bytes, i: int, port: int = 4433) -> wire.DhtNode:
    return wire.DhtNode(key=key, host=host(i), port=port)
