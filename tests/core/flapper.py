"""A flapping parent (issue 8, h-atk7): a neighbour that makes viewers take it as parent
and drop it again, over and over. Mounted against real ``Swarm`` cores in virtual time
(:mod:`swarmnet`); used by ``test_core_swarm_flap_atk7.py`` and ``bench/atk7_parent_flap.py``
(whose docstring describes the modes).
"""

from __future__ import annotations

import random

from test_core_swarm import INTERVAL, RecNet

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import peer_tag


def run(mode: str, *, viewers: int, seed: int, attack_at: float, duration: float,
        status_every: float, claim_lag_ms: int = 0, **config: object) -> dict:
    """``claim_lag_ms``: the lag F's STATUS claims on every substream (0, what the simulator's
    adversaries claim, is doubted with its one-hop paths: ``one_hop_doubt``)."""
    cfg = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, **config)  # type: ignore[arg-type]
    net = RecNet(viewers, seed=seed, delay=0.01, config=cfg,
                 source_config=sw.SwarmConfig(chunk_ms=100, upload_kbps=3000))
    net.produce(True)
    net.tick(10)
    rng = random.Random(seed)
    keys = [net.bid.public]
    for v in net.viewers:
        net.join(v, rng.sample(keys, min(4, len(keys))))
        keys.append(v)
        net.tick(2)
    f = net.viewers[0]
    fcore = net.nodes[f]
    victims = [v for v in net.viewers[1:]]
    for v in victims:  # F links to everyone (one neighbour slot at each)
        if v not in fcore.peers:
            net.nodes[v].add_peer(f, net.now, rtt=2 * net.delay)
            fcore.add_peer(v, net.now, rtt=2 * net.delay)
            net._pump(v)
            net._pump(f)
    net.tick(int(attack_at / INTERVAL))
    t0 = net.now
    k = cfg.substreams
    src, me = peer_tag(net.bid.public), peer_tag(f)

    if mode == "absent":  # F takes part in nothing: the floor the attacks are judged by
        def keep_absent(key: bytes, a: object) -> bool:
            if key != f:
                return True
            if isinstance(a, sw.Push):
                return False
            if isinstance(a, sw.Send) and isinstance(a.message, wire.Status):
                m = a.message
                object.__setattr__(a, "message", wire.Status(
                    stream=m.stream, latest=m.latest, have=0, keyframe=m.keyframe, slots=0,
                    paths=[[] for _ in m.paths], lags=m.lags))
            return not (isinstance(a, sw.Send) and isinstance(a.message, wire.Missing))
        net.keep = keep_absent
    elif mode != "honest":
        def keep(key: bytes, a: object) -> bool:
            if key != f:
                return True
            if isinstance(a, sw.Push):
                return False
            return not (isinstance(a, sw.Send) and isinstance(a.message, (wire.Missing, wire.Status)))
        net.keep = keep

    poked: dict[bytes, int] = {v: 0 for v in victims}
    last_status = -1e9
    samples = as_parent = 0
    subs_to_f = 0
    n_status = n_pokes = 0
    mark = t0 + 2.0
    base: dict[bytes, dict[str, int]] = {}
    while net.now < t0 + duration:
        net.tick(1)
        if net.now >= mark and not base:
            base = {v: _snap(net.nodes[v].counters) for v in victims}
        if net.now >= mark:
            for v in victims:
                for j in range(k):
                    samples += 1
                    as_parent += net.nodes[v].parents[j] == f
        if mode in ("honest", "absent") or net.now - last_status < status_every - 1e-9:
            continue
        last_status = net.now
        st_base = fcore.status()
        for v in victims:
            pst = fcore.peers.get(v)
            if pst is None:
                continue
            sub = pst.children_mask
            poked[v] &= sub
            paths: list[list[bytes]] = []
            for j in range(k):
                if mode == "sink":  # no path: never a parent; its STATUS claims every chunk
                    paths.append([])
                    continue
                if not sub >> j & 1:
                    paths.append([src, me])
                    continue
                if not poked[v] >> j & 1:
                    chunk = _latest_of(fcore, j, k)
                    if chunk is not None:
                        net._at(net.now + net.delay, net._deliver, f, sw.Push(v, chunk, 0.0))
                        n_pokes += 1
                    poked[v] |= 1 << j
                if mode == "unfed":
                    paths.append([])
                elif mode == "loop":
                    paths.append([src, peer_tag(v), me])
                else:  # withhold
                    paths.append([src, me])
            msg = wire.Status(stream=st_base.stream, latest=st_base.latest, have=st_base.have,
                              keyframe=st_base.keyframe, slots=max(st_base.slots, 16),
                              paths=paths, lags=[claim_lag_ms] * k)
            net._at(net.now + net.delay, net._deliver, f, sw.Send(v, msg))
            n_status += 1
    # SUBSCRIBEs the victims sent F after the mark
    for v in victims:
        for t, a in net.actions_of(v, sw.Send):
            if t >= mark and a.peer == f and isinstance(a.message, wire.Subscribe):
                subs_to_f += bin(a.message.mask).count("1")
    got = {"p2p": 0, "broadcaster": 0, "origin": 0}
    missed = late = due_n = 0
    for v in victims:
        d = net.delivers(v)
        for s, t in net.produced.items():
            if not (mark <= t <= net.now - 1.0):
                continue
            due_n += 1
            a = d.get(s)
            if a is None:
                missed += 1
                continue
            got[a.source] = got.get(a.source, 0) + 1
            if a.at > t + cfg.playout_delay + 1e-9:
                late += 1
    total = sum(got.values())
    diff = {n: sum(_snap(net.nodes[v].counters)[n] - base[v][n] for v in victims)
            for n in base[victims[0]]}
    cut = sum(1 for v in victims if (v, f, wire.ErrorCode.TOO_MANY_ERRORS) in net.dropped)
    f_flaps = sum(getattr(net.nodes[v].peers[f], "flaps", 0) for v in victims if f in net.nodes[v].peers)
    return {
        "mode": mode, "seed": seed, "victims": len(victims), "seconds": round(net.now - mark, 1),
        "chunks_due": due_n, "by_source": got,
        "origin_share": round(got["origin"] / total, 4) if total else None,
        "missed": missed, "late": late,
        "f_parent_share": round(as_parent / samples, 4) if samples else 0.0,
        "subscribes_to_f": subs_to_f, "statuses_sent": n_status, "pokes": n_pokes,
        "victims_cut_f": cut, "f_flaps": f_flaps, "counters": diff,
    }


def _latest_of(core: sw.Swarm, j: int, k: int) -> wire.ChunkMsg | None:
    s = core.log.latest
    while s >= 0 and s % k != j:
        s -= 1
    for _ in range(8):
        if s < 0:
            return None
        c = core.log.get(s)
        if c is not None:
            return c
        s -= k
    return None


COUNTERS = ("parent_switches", "parents_withholding", "withhold_strikes", "withholders_dropped",
            "parents_silent", "parents_flapping")


def _snap(c: sw.SwarmCounters) -> dict[str, int]:
    return {n: getattr(c, n) for n in COUNTERS if hasattr(c, n)}
