"""A node dials only addresses a valid signed announce gave, whatever its tracker says.

The tracker here is hostile (a real aiohttp server on 127.0.0.1): it hands out
unsigned records, records whose address it changed, records signed for another
stream, and a descriptor with another key's signature. The real announce loop
of a real node runs against it; UDP sinks on the bad addresses must receive
nothing, and the one honest record must be dialled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time

from aiohttp import web
from aiohttp.test_utils import TestServer

from oasis.core import swarm as sw
from oasis.core.announce import sign_announce
from oasis.core.descriptor import Descriptor
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.metrics import discovery_counters
from oasis.node.node import Node
from oasis.node.runtime import announce_loop


class Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got = 0

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.got += 1


async def test_node_never_dials_an_address_no_valid_signed_announce_gave() -> None:
    loop = asyncio.get_running_loop()
    sinks = []
    for _ in range(3):
        tr, proto = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
        sinks.append((tr, proto, tr.get_extra_info("sockname")[1]))
    bc = Identity.from_private_bytes(random.Random(1).randbytes(32))
    mallory = Identity.from_private_bytes(random.Random(2).randbytes(32))
    sid = StreamId(bc.public, "live")
    honest_peer = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await honest_peer.start()
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    ls = node.add_stream(sid, is_source=False, origin_url="http://127.0.0.1:1/origin")

    now_ms = int(time.time() * 1000)
    honest = sign_announce(honest_peer.identity, sid, "127.0.0.1", honest_peer.port, now_ms).record()
    moved = dict(sign_announce(mallory, sid, "127.0.0.1", 4000, now_ms).record(), port=sinks[0][2])
    unsigned = {"peer_id": mallory.peer_id, "host": "127.0.0.1", "port": sinks[1][2],
                "time_ms": now_ms, "sig": "00" * 64}
    other = sign_announce(mallory, StreamId(mallory.public, "x"), "127.0.0.1", sinks[2][2],
                          now_ms).record()
    d = Descriptor(sid, 1000, 100, 4, now_ms, origin="http://127.0.0.9/evil")
    forged = dataclasses.replace(d, signature=mallory.sign(d.signing_bytes()))
    rounds = asyncio.Queue[int]()
    served = 0

    async def announce(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        rounds.put_nowait(served)
        return web.json_response({"peers": [moved, unsigned, other, honest, "junk", {"port": 1e300}],
                                  "descriptor": forged.to_json(), "interval": 0})

    app = web.Application()
    app.router.add_post("/tracker/announce", announce)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    seen: list[Descriptor] = []
    task = asyncio.create_task(announce_loop(node, ls, f"http://127.0.0.1:{server.port}/tracker",
                                             on_descriptor=seen.append))
    try:
        # Each round dials before it announces again: after the 3rd request, 2 rounds dialled.
        while await asyncio.wait_for(rounds.get(), 20) < 3:
            pass
        assert [proto.got for _, proto, _ in sinks] == [0, 0, 0]
        counters = discovery_counters(node)
        assert counters["tracker_records_refused"] >= 2 * 5
        assert counters["descriptors_refused"] >= 2 and seen == []
        assert ls.origin_url == "http://127.0.0.1:1/origin"
        assert honest_peer.identity.public in node.links_by_peer  # the honest one was dialled
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await node.close()
        await honest_peer.close()
        await server.close()
        for tr, _, _ in sinks:
            tr.close()
