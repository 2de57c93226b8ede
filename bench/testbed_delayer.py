"""Benchmark: what the testbed's NFQUEUE delayer costs (packets/s, CPU, lateness).

Two public sites (DE and US, world delays) in a fresh namespace testbed; a UDP sender
in one offers 1,200-byte datagrams at each rate for a few seconds, a receiver in the
other counts them; the delayer reports its CPU time, packet rate and how late it
released packets. Root only. Prints one JSON line per offered rate.

Usage: python bench/testbed_delayer.py --rates 2000 5000 10000 20000 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oasis.testbed import netns, runner  # noqa: E402
from oasis.testbed.topology import NodeSpec, Topology  # noqa: E402


class _Quiet:
    def status(self, _text: str) -> None:
        pass


def one(rate: int, seconds: float) -> dict[str, object]:
    topo = Topology(seed=0, bitrate_kbps=1500, nodes=(
        NodeSpec("b", "broadcaster", "DE", "fibre", 1_000_000, 1_000_000, 0.0, 2.5),
        NodeSpec("v0", "viewer", "US", "fibre", 1_000_000, 1_000_000, 0.0, 2.5)))
    tb = runner.Testbed(topo, prefix=f"oas{os.getpid()}-", duration=0, chunk_ms=33, delay_scale=1.0,
                        progress=_Quiet())
    try:
        tb.build()
        b, v = tb.net.placement["b"], tb.net.placement["v0"]
        rx = netns.ns_socket(b.ns, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        rx.bind((b.addr, 9100))
        rx.settimeout(1.0)
        got = [0]

        def count() -> None:
            while True:
                try:
                    rx.recv(2048)
                except OSError:
                    return
                got[0] += 1

        t = threading.Thread(target=count, daemon=True)
        t.start()
        tx = netns.ns_socket(v.ns, socket.SOCK_DGRAM)
        payload = b"x" * 1200
        sent, t0 = 0, time.monotonic()
        while (el := time.monotonic() - t0) < seconds:
            while sent < el * rate:
                tx.sendto(payload, (b.addr, 9100))
                sent += 1
        t.join(5)  # the receiver stops 1 s after the last datagram
        tx.close()
        rx.close()
    finally:
        tb.close()
    return {"offered_pps": rate, "sent": sent, "received": got[0],
            "delivered_share": round(got[0] / sent, 4) if sent else None, "delayer": tb.delayer_stats}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", type=int, nargs="+", default=[2000, 5000, 10000, 20000])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    for r in args.rates:
        print(json.dumps(one(r, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
