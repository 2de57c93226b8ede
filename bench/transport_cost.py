"""Benchmark: what the transport costs per relayed byte (issue 9, item 2).

Two measurements, both real processes on loopback, CPU time read from /proc:

``--mode relay`` (the transport alone, no swarm core): a *source* process
pushes signed chunks (``--mbps`` of media, ``--chunk-ms`` chunks) over one OFTP
link to a *relay* process, which verifies each chunk's Ed25519 signature and
pushes it on over ``--sinks`` links to a *sink* process (M endpoints in one
process). Over ``--window`` seconds we read the relay's CPU seconds and the
media bytes it pushed and print Mbit/s of media per busy core. The relay runs
the node's own :class:`~oasis.node.transport.Endpoint` and
:class:`~oasis.node.link.Link` (same QUIC stack, same session framing);
``--stack aioquic`` runs every process on aioquic instead of qh3 (the default).
``--profile FILE`` writes a cProfile of the relay (costs CPU itself: use it
for *where*, not *how much*).

``--mode viewer``: real ``oasis`` nodes (tracker, broadcaster, swarm core):
a 1.5 Mbit/s viewer with ``--children`` children that may not relay. The
viewer's CPU as a share of one core, and CPU seconds per viewing minute.

Usage::

    python bench/transport_cost.py --mode relay --mbps 100 --sinks 8 --window 15
    python bench/transport_cost.py --mode viewer --bitrate 1500 --children 4 --window 30
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "node"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def udp_counters(gateway: str) -> dict[str, float]:
    """The node's UDP socket counters (``oasis_udp_socket_events`` on its /metrics)."""
    import re
    import urllib.request
    with urllib.request.urlopen(gateway + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m[1]: float(m[2]) for m in
            re.finditer(r'^oasis_udp_socket_events_total\{event="(\w+)"\} (\S+)$', text, re.M)}


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# ---- child roles (each its own process, uvloop) ----------------------------------

def _run(coro: Any) -> None:
    import uvloop
    uvloop.run(coro)


def _endpoint(identity: Any, on_event: Any, mds: int) -> Any:
    from oasis.node.transport import Endpoint
    kw: dict[str, Any] = {} if os.environ.get("OASIS_BENCH_GSO") is None else {
        "gso": os.environ["OASIS_BENCH_GSO"] == "1"}
    return Endpoint(identity, on_event=on_event, clock=time.time, max_datagram_size=mds,
                    max_links=256, **kw)


async def _role_sink(args: argparse.Namespace) -> None:
    from oasis.core import session as ss
    from oasis.core.identity import Identity
    received = [0]

    def on_event(link: Any, ev: Any) -> None:
        if isinstance(ev, ss.ChunkReceived):
            received[0] += len(ev.chunk.payload)

    eps = []
    out = []
    for _ in range(args.n):
        ident = Identity.generate()
        ep = _endpoint(ident, on_event, args.mds)
        host, port = await ep.listen("127.0.0.1", 0)
        eps.append(ep)
        out.append({"host": host, "port": port, "key": ident.public.hex()})
    print(json.dumps(out), flush=True)
    await _until_stdin_closes(lambda: {"received": received[0]})


async def _until_stdin_closes(report: Any) -> None:
    """Print ``report()`` as a JSON line every 0.5 s until the parent closes our stdin."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not sys.stdin.readline() else None)
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), 0.5)
        except TimeoutError:
            print(json.dumps(report() | {"t": time.monotonic()}), flush=True)


def _relay_state(args: argparse.Namespace) -> tuple[Any, Any, list[Any], dict[str, int], Any]:
    """What both relay roles share: the sinks, an identity, the outgoing links, the
    counters, and ``forward(chunk, send)``: verify a chunk, then ``send(link, chunk)``
    it on every outgoing link."""
    from oasis.core.identity import Identity
    from oasis.core.stream import StreamId, verify_chunk
    sid = StreamId(bytes.fromhex(args.broadcaster), "bench")
    out_links: list[Any] = []
    stats = {"media_out": 0, "chunks_in": 0, "bad": 0}

    def forward(chunk: Any, send: Any) -> None:
        stats["chunks_in"] += 1
        if not verify_chunk(sid, chunk):
            stats["bad"] += 1
            return
        for lk in out_links:
            send(lk, chunk)
            stats["media_out"] += len(chunk.payload)

    return json.loads(args.sinks_json), Identity.generate(), out_links, stats, forward


async def _role_relay(args: argparse.Namespace) -> None:
    from oasis.core import session as ss
    sinks, ident, out_links, stats, forward = _relay_state(args)

    def on_event(link: Any, ev: Any) -> None:
        if isinstance(ev, ss.ChunkReceived):
            deadline = time.time() + 1.0
            forward(ev.chunk, lambda lk, c: lk.send_chunk(c, deadline))

    ep = _endpoint(ident, on_event, args.mds)
    host, port = await ep.listen("127.0.0.1", 0)
    links = [ep.dial((s["host"], s["port"]), bytes.fromhex(s["key"])) for s in sinks]
    await asyncio.wait_for(asyncio.gather(*(lk.handshake_done for lk in links)), 30)
    out_links.extend(links)
    await _serve_relay(args, host, port, ident, lambda: dict(stats) | {"counters": {
        k: v for k, v in (ep.counters | getattr(ep.transport, "counters", {})).items() if v}})


async def _serve_relay(args: argparse.Namespace, host: str, port: int, ident: Any,
                       report: Any) -> None:
    """A relay whose links are up: say where it listens, relay (profiled with
    ``--profile``) until stdin closes, then print ``report()``."""
    print(json.dumps({"host": host, "port": port, "key": ident.public.hex()}), flush=True)
    prof = cProfile.Profile() if args.profile else None
    if prof is not None:
        prof.enable()
    try:
        await _until_stdin_closes(report)
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile)


async def _role_source(args: argparse.Namespace) -> None:
    from oasis.core.identity import Identity
    from oasis.core.stream import StreamId, sign_chunk
    relay = json.loads(args.relay_json)
    ident = Identity.from_private_bytes(bytes.fromhex(args.broadcaster_private))
    sid = StreamId(ident.public, "bench")
    ep = _endpoint(Identity.generate(), lambda link, ev: None, args.mds)
    await ep.listen("127.0.0.1", 0)
    link = ep.dial((relay["host"], relay["port"]), bytes.fromhex(relay["key"]))
    await asyncio.wait_for(link.handshake_done, 30)
    period = args.chunk_ms / 1000
    size = int(args.mbps * 1e6 / 8 * period)
    payload = os.urandom(size)
    # Sign a few distinct chunks once; the relay verifies each (same cost as fresh ones).
    loop = asyncio.get_running_loop()
    t = loop.time()
    seq = 0
    sent = 0
    while True:
        chunk = sign_chunk(ident, sid, seq, int(time.time() * 1e6), seq % 10 == 0, payload)
        link.send_chunk(chunk, time.time() + 1.0)
        sent += size
        seq += 1
        t += period
        await asyncio.sleep(max(0.0, t - loop.time()))


# ---- parent ------------------------------------------------------------------------

def _child(role: str, extra: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", role,
                             "--stack", _STACK[0], *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _line(p: subprocess.Popen[str]) -> Any:
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line:
        raise RuntimeError(f"child exited early ({p.poll()})")
    return json.loads(line)


def _latest(p: subprocess.Popen[str], after: float) -> Any:
    """The first report line the child printed at or after monotonic time ``after``."""
    while True:
        rec = _line(p)
        if rec.get("t", 0) >= after:
            return rec


def relay_mode(args: argparse.Namespace) -> dict[str, Any]:
    from oasis.core.identity import Identity
    common = ["--mds", str(args.mds)]
    b = Identity.generate()
    procs: list[subprocess.Popen[str]] = []
    try:
        sink = _child("sink", ["--n", str(args.sinks), *common])
        procs.append(sink)
        sinks = _line(sink)
        relay = _child("relay", ["--sinks-json", json.dumps(sinks), "--broadcaster", b.public.hex(),
                                 *common, *(["--profile", args.profile] if args.profile else [])])
        procs.append(relay)
        rinfo = _line(relay)
        source = _child("source", ["--relay-json", json.dumps(rinfo), "--broadcaster-private",
                                   b.private_bytes().hex(), "--mbps", str(args.mbps),
                                   "--chunk-ms", str(args.chunk_ms), *common])
        procs.append(source)
        time.sleep(args.warmup)
        r0 = _latest(relay, time.monotonic())
        s0 = _latest(sink, time.monotonic())
        c0, t0, l0 = cpu_seconds(relay.pid), time.monotonic(), loadavg()
        k0 = cpu_seconds(sink.pid)
        time.sleep(args.window)
        r1 = _latest(relay, time.monotonic())
        s1 = _latest(sink, time.monotonic())
        c1, t1, l1 = cpu_seconds(relay.pid), time.monotonic(), loadavg()
        k1 = cpu_seconds(sink.pid)
    finally:
        for p in reversed(procs):
            if p.stdin:
                p.stdin.close()
        for p in reversed(procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    wall = t1 - t0
    cpu = c1 - c0
    out_mbps = (r1["media_out"] - r0["media_out"]) * 8 / wall / 1e6
    got_mbps = (s1["received"] - s0["received"]) * 8 / wall / 1e6
    return {
        "mode": "relay", "stack": _stack(), "mds": args.mds, "offered_in_mbps": args.mbps,
        "sinks": args.sinks, "chunk_ms": args.chunk_ms, "window_s": round(wall, 1),
        "relay_media_out_mbps": round(out_mbps, 1), "sinks_media_in_mbps": round(got_mbps, 1),
        "relay_cpu_cores": round(cpu / wall, 3), "sink_process_cpu_cores": round((k1 - k0) / wall, 3),
        "mbps_per_core": round(got_mbps / (cpu / wall), 1) if cpu else None,
        "loadavg": [l0, l1], "relay_counters": r1.get("counters", {}),
        "relay_chunks_in_per_s": round((r1["chunks_in"] - r0["chunks_in"]) / wall, 1),
    }


def viewer_mode(args: argparse.Namespace) -> dict[str, Any]:
    """A 1.5 Mbit/s viewer relaying to ``children`` viewers that may not relay (real nodes)."""
    import tempfile

    from procs import OasisProcess, wait_until
    from relay_throughput import start_broadcast, stats

    tmp = tempfile.mkdtemp(prefix="oasis-tcost-")
    procs: list[OasisProcess] = []
    try:
        info, common = start_broadcast(tmp, args.bitrate, procs, args.chunk_ms)
        relay = OasisProcess(["watch", info["stream_id"], "--tracker", info["tracker"], *common,
                              "--gateway", "127.0.0.1:0",
                              "--upload-kbps", str(int(args.bitrate * (args.children + 1))),
                              "--data-dir", f"{tmp}/r"], f"{tmp}/r.log")
        procs.append(relay)
        rinfo = relay.wait_info()
        wait_until(lambda: all(d == 1 for d in stats(rinfo["gateway"])["streams"][0]["depth"]), 30)
        kids = []
        for i in range(args.children):
            s = OasisProcess(["watch", info["stream_id"], "--tracker", info["tracker"], *common,
                              "--gateway", "127.0.0.1:0", "--upload-kbps", "1",
                              "--data-dir", f"{tmp}/s{i}"], f"{tmp}/s{i}.log")
            procs.append(s)
            s.wait_info()
            kids.append(s)
        wait_until(lambda: all(None not in stats(s.info["gateway"])["streams"][0]["depth"]
                               for s in kids), 30)
        time.sleep(3)  # settle (a benchmark, not a test)
        pid = relay.popen.pid
        u0 = udp_counters(rinfo["gateway"])
        s0, c0, t0, l0 = stats(rinfo["gateway"]), cpu_seconds(pid), time.monotonic(), loadavg()
        time.sleep(args.window)
        s1, c1, t1, l1 = stats(rinfo["gateway"]), cpu_seconds(pid), time.monotonic(), loadavg()
        u1 = udp_counters(rinfo["gateway"])
        kid_stats = [stats(s.info["gateway"])["streams"][0] for s in kids]
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # the nodes' data directories
    wall = t1 - t0
    sent = s1["streams"][0]["upload"]["released_bytes"] - s0["streams"][0]["upload"]["released_bytes"]
    cores = (c1 - c0) / wall
    return {
        "mode": "viewer", "stack": _stack(), "bitrate_kbps": args.bitrate, "children": args.children,
        "window_s": round(wall, 1), "viewer_media_out_mbps": round(sent * 8 / wall / 1e6, 2),
        "viewer_cpu_pct_of_core": round(cores * 100, 2),
        "cpu_s_per_viewing_minute": round(cores * 60, 2),
        "children_depths": [s["depth"] for s in kid_stats],
        "children_skipped_chunks": sum(s["skipped"] for s in kid_stats), "chunk_ms": args.chunk_ms,
        "loadavg": [l0, l1],
        # the viewer's UDP socket, per second: reads with data (wake-ups), datagrams, sends
        "viewer_udp_per_s": {k: round((u1[k] - u0.get(k, 0)) / wall, 1) for k in u1},
    }


_STACK = ["qh3"]


def _stack() -> str:
    return _STACK[0]


def main() -> int:
    from oasis.core.swarmdefs import DEFAULT_CHUNK_MS

    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("relay", "viewer"), default="relay")
    ap.add_argument("--role", choices=("sink", "relay", "source"))
    ap.add_argument("--stack", choices=("aioquic", "qh3"), default="qh3",
                    help="the node's QUIC stack (every process: $OASIS_QUIC)")
    ap.add_argument("--mbps", type=float, default=40.0, help="relay mode: media into the relay")
    ap.add_argument("--sinks", type=int, default=8)
    ap.add_argument("--chunk-ms", type=int, default=DEFAULT_CHUNK_MS)
    ap.add_argument("--mds", type=int, default=1350, help="QUIC max_datagram_size")
    ap.add_argument("--window", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", default=None, help="relay mode: cProfile output of the relay")
    ap.add_argument("--bitrate", type=int, default=1500, help="viewer mode: stream kbit/s")
    ap.add_argument("--children", type=int, default=4, help="viewer mode")
    # child-role plumbing
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--sinks-json", default="[]")
    ap.add_argument("--relay-json", default="{}")
    ap.add_argument("--broadcaster", default="")
    ap.add_argument("--broadcaster-private", default="")
    args = ap.parse_args()
    _STACK[0] = args.stack
    os.environ["OASIS_QUIC"] = args.stack  # the Endpoints here and every oasis process started
    if args.role:
        role = {"sink": _role_sink, "relay": _role_relay, "source": _role_source}[args.role]
        try:
            _run(role(args))
        except KeyboardInterrupt:
            pass
        return 0
    for _ in range(args.repeat):
        res = relay_mode(args) if args.mode == "relay" else viewer_mode(args)
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
