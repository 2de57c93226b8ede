"""Chat over the swarm at 10,000 peers, in the simulator, printed as JSON (issue 11).

Every peer runs the real ``oasis.core.chat.ChatRoom`` (``oasis.sim.chat_run``) on the
world model (country-pair RTTs, access last miles, uplink serialisation), over a swarm-like
neighbour graph (12 links per viewer, at most 24). Two runs:

* ``honest``: ``--messages`` from distinct viewers at ``--rate``/s in total: delivery time
  to *all* viewers per message (p50/p95/max), per-viewer delivery, bytes per message per peer;
* ``spam``: a modified client floods ``--spam-rate``/s for 10 s while 20 honest viewers
  speak: how much spam any viewer saw (the rule allows burst + rate x seconds), and the
  honest messages' coverage and delay.

    python bench/chat_sim.py --peers 10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oasis.sim.chat_run import honest_run, spam_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=int, nargs="+", default=[10_000])
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--spam-rate", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    out = []
    for n in args.peers:
        t0 = time.perf_counter()
        h = honest_run(n, messages=args.messages, rate=args.rate, seed=args.seed)
        h["wall_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        s = spam_run(n, spam_rate=args.spam_rate, seed=args.seed + 1)
        s["wall_s"] = round(time.perf_counter() - t0, 1)
        out.append({"honest": h, "spam": s})
    print(json.dumps({"bench": "chat_sim", "python": platform.python_version(),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                      "load": os.getloadavg()[0], "runs": out}, indent=1))


if __name__ == "__main__":
    main()
