"""Per-source caps count an IPv6 /64 as one address, on real sockets (docs/oftp.md §14).

An IPv6 subscriber is routed a whole /64: counting exact addresses gave one attacker as
many shares as it cared to configure (found 2026-12-06; the tracker, the peer policy and
the dial plan already grouped by /64, the HTTP faces and the endpoint's half-open table
did not). The attack runs in a network namespace this test creates (root and ``ip netns``
needed; skipped otherwise): ``ipv6_prefix_probe.py`` runs there with 30 attacker
addresses in one /64 and one address in another, against the node's real HTTP face
(``runtime.start_http``) and a real node's endpoint, and prints what it saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a network namespace)"
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns` is unavailable here: {exc}"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")


def _ns(ns: str, *cmd: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True, timeout=30)


def test_many_addresses_in_one_ipv6_64_get_one_share_of_connections_and_half_open_links() -> None:
    ns = f"oasis-v6p-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=30)
    try:
        _ns(ns, "ip", "link", "set", "lo", "up")
        _ns(ns, "ip", "-6", "addr", "add", "fd00:5eed::1/64", "dev", "lo", "nodad")
        _ns(ns, "ip", "-6", "addr", "add", "fd00:beef::1/64", "dev", "lo", "nodad")
        for i in range(0x10, 0x10 + 30):
            _ns(ns, "ip", "-6", "addr", "add", f"fd00:5eed::{i:x}/128", "dev", "lo", "nodad")
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(HERE)))
        run = subprocess.run(["ip", "netns", "exec", ns, sys.executable,
                              os.path.join(HERE, "ipv6_prefix_probe.py")],
                             capture_output=True, text=True, timeout=180, env=env)
        assert run.returncode == 0, run.stderr[-3000:]
        out = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=30)
    h, q = out["http"], out["oftp"]
    # 300 connections from 30 addresses of one /64 (10 each): the /64's share is 256
    assert h["refused"] == h["connections"] - h["per_ip"], h  # was 0: each address held 10
    assert h["other_status"].startswith("HTTP/1.1 200"), h  # another /64 is served
    assert h["refused_after_other"] == h["refused"], h
    # 100 silent QUIC handshakes from the same 30 addresses: the /64 holds at most its
    # share of the half-open table (was: the whole table, 32, 8 per address)
    assert q["waited"] and q["halfopen_refused"] >= 1, q
    assert q["most_halfopen"] <= q["per_ip"] < q["cap"], q
    assert q["other_linked"], q  # and a node in another /64 links
