"""Parent flapping (issue 8): a neighbour that makes viewers take it as parent and drop
it again, over and over, without ever earning a back-off. Prints JSON.

Real ``Swarm`` cores in virtual time (``tests/core/swarmnet.py``, the harness the core's
attack tests use): a broadcaster and ``--viewers`` viewers joined as in
``tests/core/test_core_swarm.build``; then one viewer, the flapper F, links to every other
viewer and from ``--attack-at`` on pushes nothing and answers no REQUEST, and instead of its
own STATUS sends, every ``--status-every`` s, to each neighbour V:

* where V does not take substream ``j`` from it: a one-hop path, lag 0, free slots (the best
  parent there is, so V swaps to it at its next periodic look);
* where V takes ``j`` from it: first one chunk of ``j`` it holds (a push, so V releases its
  standby parent: make before break ends), then, by ``--mode``:

  - ``unfed``: path ``j`` empty ("I lost my feed"): V keeps it ``subscribe_timeout`` without
    counting what it withholds, then drops it, with no back-off and no strike;
  - ``loop``: path ``j`` through V itself: V drops it at once, no back-off, no strike;
  - ``withhold``: the one-hop path (a plain withholder, for comparison: struck, backed off);
  - ``honest``: F is an honest viewer (no filter at all);
  - ``sink``: F is never a parent (no path) but its STATUS claims every chunk it holds,
    and it answers no REQUEST (not even MISSING): what the others cost without the flapping;
  - ``absent``: F pushes and answers nothing and its STATUS offers no path and no chunk
    (nobody takes it as parent or asks it for a repair): the floor the attacks are judged by.

Reported for the victims (F's honest neighbours), from ``--attack-at`` + 2 s on: chunks by
source, chunks missed or late for the 0.5 s playout, the share of (viewer, substream, tick)
samples with F as parent, SUBSCRIBEs sent to F, and the tree's counters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "core"))

from flapper import run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["absent", "honest", "sink", "withhold", "unfed", "loop", "all"], nargs="+",
                    default=["all"])
    ap.add_argument("--viewers", type=int, default=15)
    ap.add_argument("--seeds", type=int, nargs="+", default=[3])
    ap.add_argument("--attack-at", type=float, default=5.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--status-every", type=float, default=0.2)
    ap.add_argument("--no-flap-backoff", action="store_true", help="SwarmConfig(flap_backoff=False)")
    args = ap.parse_args()
    modes = ["absent", "honest", "sink", "withhold", "unfed", "loop"] if "all" in args.mode else args.mode
    for seed in args.seeds:
        for mode in modes:
            print(json.dumps(run(mode, viewers=args.viewers, seed=seed, attack_at=args.attack_at,
                                 duration=args.duration, status_every=args.status_every,
                                 **({"flap_backoff": False} if args.no_flap_backoff else {}))), flush=True)


if __name__ == "__main__":
    main()
