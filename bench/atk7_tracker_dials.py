"""A hostile tracker makes a viewer dial hosts that are not Oasis nodes (issue 8, h-atk7).
Prints JSON.

A real viewer ``Node`` (QUIC on 127.0.0.1) runs the real announce loop
(``runtime.announce_loop``) against a tracker of the attacker's (an aiohttp server on
loopback). Every answer names ``--records`` peer records, validly signed and fresh, under
throw-away keys (``--keys fresh``: new keys each answer; ``same``: the same ones), at UDP
sinks on ``--sink-host`` (one port each; none of them answers). Counted: the answers' bytes
the tracker sent, the dials the viewer made, and the datagrams and bytes that reached the
sinks: what one answer's byte draws to a victim's host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web
from atk3_file_peers import Sink  # the same counting UDP sink (run from bench/)

from oasis.core import swarm as sw
from oasis.core.announce import sign_announce
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node import runtime
from oasis.node.node import Node
from oasis.node.runtime import start_http


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sink-host", default="192.0.2.2")
    ap.add_argument("--records", type=int, default=50)
    ap.add_argument("--keys", choices=["fresh", "same"], default="fresh")
    ap.add_argument("--seconds", type=float, default=30.0)
    a = ap.parse_args()
    loop = asyncio.get_running_loop()
    sinks, ports, transports = [], [], []
    for _ in range(a.records):
        tr, proto = await loop.create_datagram_endpoint(Sink, local_addr=(a.sink_host, 0))
        sinks.append(proto)
        transports.append(tr)
        ports.append(tr.get_extra_info("sockname")[1])
    bc = Identity.generate()
    sid = StreamId(bc.public, "live")
    same = [Identity.generate() for _ in range(a.records)]
    sent = {"answers": 0, "bytes": 0}

    async def announce(request: web.Request) -> web.Response:
        await request.read()
        ids = same if a.keys == "same" else [Identity.generate() for _ in range(a.records)]
        now_ms = int(time.time() * 1000)
        peers = [sign_announce(i, sid, a.sink_host, port, now_ms).record() for i, port in zip(ids, ports, strict=True)]
        body = json.dumps({"peers": peers, "interval": 1.0}).encode()
        sent["answers"] += 1
        sent["bytes"] += len(body)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/tracker/announce", announce)
    runner, tport = await start_http(app, "127.0.0.1", 0)
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    ls = node.add_stream(sid, is_source=False)
    task = asyncio.create_task(runtime.announce_loop(node, ls, f"http://127.0.0.1:{tport}/tracker"))
    t0 = time.monotonic()
    await asyncio.sleep(a.seconds)
    task.cancel()
    c = node.policy.counters
    out = {
        "seconds": round(time.monotonic() - t0, 1), "records_per_answer": a.records, "keys": a.keys,
        "answers": sent["answers"], "answer_bytes": sent["bytes"],
        "dials": c.dial_attempts, "dial_failures": c.dial_failures,
        "candidates_offered": c.candidates_offered,
        "sinks_reached": sum(1 for s in sinks if s.n), "sink_datagrams": sum(s.n for s in sinks),
        "sink_bytes": sum(s.bytes for s in sinks),
    }
    out["amplification"] = round(out["sink_bytes"] / max(1, out["answer_bytes"]), 3)
    await node.close()
    await runner.cleanup()
    for tr in transports:
        tr.close()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
