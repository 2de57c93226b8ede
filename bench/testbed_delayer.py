"""Benchmark: what the testbed's NFQUEUE delayer costs (packets/s, CPU, lateness).

Two public sites (DE and US, world delays) in a fresh namespace testbed; a UDP sender
in one offers 1,200-byte datagrams at each rate for a few seconds, a receiver in the
other counts them; the delayer reports its CPU time, packet rate and how late it
released packets. Root only. Prints one JSON line per offered rate.

Usage: python bench/testbed_delayer.py --rates 2000 5000 10000 20000 --seconds 5 [--tick-ms 0]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oasis.testbed import netns, runner  # noqa: E402
from oasis.testbed.delayer import TICK_S  # noqa: E402
from oasis.testbed.topology import NodeSpec, Topology  # noqa: E402


class _Quiet:
    def status(self, _text: str) -> None:
        pass


def one(rate: int, seconds: float, tick_ms: float) -> dict[str, object]:
    topo = Topology(seed=0, bitrate_kbps=1500, nodes=(
        NodeSpec("b", "broadcaster", "DE", "fibre", 1_000_000, 1_000_000, 0.0, 2.5),
        NodeSpec("v0", "viewer", "US", "fibre", 1_000_000, 1_000_000, 0.0, 2.5)))
    tb = runner.Testbed(topo, prefix=f"oas{os.getpid()}-", duration=0, chunk_ms=33, delay_scale=1.0,
                        progress=_Quiet(), delayer_tick_ms=tick_ms)
    try:
        tb.build()
        b, v = tb.net.placement["b"], tb.net.placement["v0"]
        rx = netns.ns_socket(b.ns, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)  # (capped at rmem_max)
        rx.bind((b.addr, 9100))
        rx.settimeout(1.0)
        # The receiver is a process of its own: a thread of this one waited for the GIL
        # behind the sender's loop and its socket overflowed (UdpRcvbufErrors), which
        # read as the delayer losing packets.
        r_end, w_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child counts and exits
            os.close(r_end)
            n = 0
            while True:
                try:
                    rx.recv(2048)
                except OSError:
                    break
                n += 1
            os.write(w_end, str(n).encode())
            os._exit(0)
        os.close(w_end)
        rx.close()
        tx = netns.ns_socket(v.ns, socket.SOCK_DGRAM)
        payload = b"x" * 1200
        sent, t0 = 0, time.monotonic()
        while (el := time.monotonic() - t0) < seconds:
            while sent < el * rate:
                tx.sendto(payload, (b.addr, 9100))
                sent += 1
        with os.fdopen(r_end) as f:  # the receiver stops 1 s after the last datagram
            got = int(f.read() or 0)
        os.waitpid(child, 0)
        tx.close()
    finally:
        tb.close()
    return {"offered_pps": rate, "sent": sent, "received": got,
            "delivered_share": round(got / sent, 4) if sent else None, "delayer": tb.delayer_stats}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", type=int, nargs="+", default=[2000, 5000, 10000, 20000])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--tick-ms", type=float, default=TICK_S * 1000,
                    help="the delayer's tick (0: woken for each packet, the old way)")
    args = ap.parse_args()
    for r in args.rates:
        print(json.dumps(one(r, args.seconds, args.tick_ms)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
