"""Direct messages to a recipient offline for 10 minutes: the share delivered (issue 11).

Runs the real ``oasis.core.dm.DmRouter`` of the sender, the storing peers and the
recipient on a virtual clock (real X25519/ChaCha20-Poly1305, real mailbox rules). What is
modelled: a swarm of ``--peers`` (ids random), the sender's ``--degree`` neighbours, the
storing peers' sessions (heavy-tailed, ``netmodel.session_length_s``, mean ``--session``
s: a store that leaves within the 10 min loses what it held) and whom the recipient
links to when it comes back. Two placements of the k=3 copies:

* ``linked``: the sender's linked peers closest to the recipient's id; the recipient
  comes back to ``--degree`` random peers of the swarm;
* ``known`` (what the node does, ``Messaging._closest_known``): the closest among the
  sender's linked peers and its tracker candidates (the tracker names ``--known`` random
  peers of the swarm, all of them in a small one), dialled if need be; the recipient,
  back, also dials the peers closest to its own id among its candidates;
* ``dht`` (the plug-in point ``Messaging.closest`` with a DHT lookup): the k online peers
  closest to the recipient's id, which the recipient also looks up when it comes back.

    python bench/dm_offline.py --trials 300
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oasis.core import dm  # noqa: E402
from oasis.core.identity import Identity, verify  # noqa: E402
from oasis.sim.netmodel import session_length_s  # noqa: E402

T0 = 1_800_000_000.0


def trial(rng: random.Random, placement: str, peers: list[bytes], degree: int, offline: float,
          session: float) -> tuple[bool, bool]:
    ids = {k: Identity.from_private_bytes(rng.randbytes(32)) for k in ("s", "r")}
    ent = rng.randbytes
    s = dm.DmRouter(ids["s"], verify, ent, now=T0)
    r = dm.DmRouter(ids["r"], verify, ent, now=T0)
    rkey = ids["r"].public
    neigh = rng.sample(peers, degree)
    known = min(len(peers), 50)
    pool = {"linked": neigh, "known": list(set(neigh) | set(rng.sample(peers, known))),
            "dht": peers}[placement]
    store_keys = dm.closest(rkey, pool, 3)
    stores = {k: dm.DmRouter(Identity.from_private_bytes(rng.randbytes(32)), verify, ent, now=T0)
              for k in store_keys}
    s.send(rkey, "are you there?", T0, lambda k: False, lambda t, k: store_keys)
    for a in s.actions():
        if isinstance(a, dm.SendDm) and a.peer in stores:
            stores[a.peer].on_envelope(ids["s"].public, a.message, T0, lambda k: False, lambda t, k: [])  # type: ignore[arg-type]
    now = T0 + offline
    alive = [k for k in store_keys if session_length_s(rng, session) > offline]
    back = set(rng.sample(peers, degree))
    if placement == "dht":
        back |= set(dm.closest(rkey, peers, 3))
    elif placement == "known":
        back |= set(dm.closest(rkey, rng.sample(peers, known), 3))
    got = acked = False
    for k in alive:
        if k not in back:
            continue
        st = stores[k]
        st.on_link_up(rkey, now, lambda q: q == rkey, lambda t, kk: [])
        for a in st.actions():
            if isinstance(a, dm.SendDm) and a.peer == rkey and isinstance(a.message, dm.wire.DmEnvelope):
                r.on_envelope(k, a.message, now, lambda q, k=k: q == k, lambda t, kk, k=k: [k])
        for a in r.actions():
            if isinstance(a, dm.DmReceived):
                got = True
            elif isinstance(a, dm.SendDm):  # the ACK, via the store, to the sender (still linked)
                st.on_envelope(rkey, a.message, now, lambda q: q == ids["s"].public, lambda t, kk: [])  # type: ignore[arg-type]
                for b in st.actions():
                    if isinstance(b, dm.SendDm) and b.peer == ids["s"].public:
                        s.on_envelope(k, b.message, now, lambda q: False, lambda t, kk: [])  # type: ignore[arg-type]
                acked = acked or any(isinstance(x, dm.DmAcked) for x in s.actions())
    return got, acked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--peers", type=int, default=10_000)
    ap.add_argument("--degree", type=int, default=12)
    ap.add_argument("--offline", type=float, default=600.0)
    ap.add_argument("--session", type=float, default=1800.0, help="mean session of a storing peer, s")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    peers = [rng.randbytes(32) for _ in range(args.peers)]
    out = {}
    t0 = time.perf_counter()
    for placement in ("linked", "known", "dht"):
        res = [trial(rng, placement, peers, args.degree, args.offline, args.session)
               for _ in range(args.trials)]
        out[placement] = {"delivered_share": round(sum(g for g, _ in res) / len(res), 3),
                          "acked_share": round(sum(a for _, a in res) / len(res), 3)}
    print(json.dumps({"bench": "dm_offline", "python": platform.python_version(), "trials": args.trials,
                      "peers": args.peers, "offline_s": args.offline, "store_session_mean_s": args.session,
                      "load": os.getloadavg()[0], "wall_s": round(time.perf_counter() - t0, 1),
                      **out}, indent=1))


if __name__ == "__main__":
    main()
