"""A stream's descriptor record from the DHT goes to whoever carries that stream: the
command line's stream (``DhtDriver.on_descriptor``) or a stream the local API added
(``DhtDriver.descriptor_hooks``). Found 2026-12-06 from outside: a node watching a second
stream through the API logged that stream's records as a bad descriptor of its first (the
one callback checked every record against the command line's stream) and dropped them."""

from __future__ import annotations

import msgspec

from oasis.core import dhtdefs as dh
from oasis.core import swarm as sw
from oasis.core.descriptor import Descriptor, sign_descriptor
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.node import Node


def _done(driver: object, skey: bytes, lookup: int, raw: bytes) -> None:
    driver._finding[lookup] = skey  # type: ignore[attr-defined]  # (a find_providers under way)
    driver._done(dh.LookupDone(lookup=lookup, kind="providers", target=skey, ok=True,  # type: ignore[attr-defined]
                               nodes=(), providers=(), descriptor=raw))


async def test_each_streams_record_goes_to_its_own_taker() -> None:
    node = Node(Identity.generate(), sw.SwarmConfig())
    await node.start()
    try:
        dht = node.dht
        assert dht is not None
        a_id, b_id = Identity.generate(), Identity.generate()
        a, b = StreamId(a_id.public, "a"), StreamId(b_id.public, "b")
        raw_b = msgspec.json.encode(sign_descriptor(b_id, Descriptor(
            stream=b, bitrate_kbps=500, chunk_ms=100, substreams=1, issued_at_ms=1)).to_json())
        to_cli: list[bytes] = []
        to_b: list[bytes] = []
        dht.on_descriptor = lambda skey, raw: to_cli.append(skey)
        dht.descriptor_hooks[b.key] = to_b.append
        _done(dht, b.key, 9001, raw_b)
        assert to_b == [raw_b] and to_cli == []  # B's record to B's taker, not the CLI's
        _done(dht, a.key, 9002, raw_b)
        assert to_cli == [a.key]  # a stream with no hook: the command line's callback
        del dht.descriptor_hooks[b.key]
        _done(dht, b.key, 9003, raw_b)
        assert to_cli == [a.key, b.key] and to_b == [raw_b]
    finally:
        await node.close()
