"""Benchmark: the cost of the peer policy core (oasis/core/peer.py) per input, in virtual time.

    nice -n 10 .venv/bin/python bench/peer_policy.py --messages 200000

Prints one JSON object: microseconds per routed control message (the hot path every
STATUS/SUBSCRIBE/REQUEST takes in the node, and would take in the simulator), per
flooded message (over budget: dropped, scored), per chunk admission check, per
dial-plan round over a full candidate table, and per link up/down pair; plus the
machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time

from oasis.core import peer as pp
from oasis.core import wire

SKEY = b"\x07" * 32


def key(i: int) -> bytes:
    return i.to_bytes(4, "big") + b"\x55" * 28


def fresh(**cfg: object) -> pp.PeerPolicy[int]:
    p: pp.PeerPolicy[int] = pp.PeerPolicy(b"\x00" * 32, pp.PolicyConfig(**cfg),  # type: ignore[arg-type]
                                          rng=random.Random(1), now=0.0)
    p.add_stream("s", SKEY)
    for i in range(12):
        p.link_up(i, key(i), dialled=False, now=0.0)
        p.on_message(i, key(i), wire.Join(stream="s"), 0.0)
    p.actions()
    return p


def per_call_us(n: int, fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn(n)
    return round((time.perf_counter() - t0) / n * 1e6, 3)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200_000)
    args = ap.parse_args()
    n = args.messages
    status = wire.Status(stream=SKEY, latest=1, have=0, keyframe=0, slots=0, paths=[])

    p = fresh()

    keys = [key(i) for i in range(12)]

    def routed(n: int) -> None:
        on = p.on_message
        for i in range(n):
            on(i % 12, keys[i % 12], status, i * 1e-3)  # 83 messages/s per peer: within budget

    def flooded(n: int) -> None:
        q = fresh(ban_score=1e12)  # never banned: measure the drop path itself
        on, k0 = q.on_message, key(0)
        for _ in range(n):
            on(0, k0, status, 1.0)

    def chunks(n: int) -> None:
        ok = p.on_chunk
        for i in range(n):
            ok(i % 12, keys[i % 12], SKEY, 1.0)

    def plans(n: int) -> None:
        q = fresh(target_neighbours=40, max_candidates=256)
        found = [pp.Candidate(key(1000 + i), "10.0.0.1", 1000 + i) for i in range(256)]
        for i in range(n):
            q.on_candidates(found, float(i), verified=True)
            for a in q.actions():
                if isinstance(a, pp.Dial):
                    q.dial_failed(a.peer, float(i))

    def churn(n: int) -> None:
        q = fresh(max_neighbours=10**9)
        for i in range(n):
            q.link_up(100 + i, key(100 + i), dialled=False, now=float(i))
            q.link_down(100 + i, key(100 + i), float(i))
            q.actions()

    out = {
        "routed_message_us": per_call_us(n, routed),
        "flooded_message_us": per_call_us(n, flooded),
        "chunk_check_us": per_call_us(n, chunks),
        "dial_round_256_candidates_us": per_call_us(max(1, n // 200), plans),
        "link_up_down_us": per_call_us(max(1, n // 10), churn),
        "counters_routed": {"messages_over_budget": p.counters.messages_over_budget},
        "bench": {"python": platform.python_version(), "machine": platform.machine(),
                  "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
