"""Who is in the swarm when: peers, their networks, join and leave times.

Generated once per (scenario, seed) and shared by Oasis and every baseline,
so all systems see exactly the same viewers on exactly the same links.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .netmodel import PeerNet, World, residual_session_s, sample_peer, session_length_s
from .scenario import Scenario

INF = float("inf")


@dataclass
class Viewer:
    idx: int
    key: bytes
    net: PeerNet
    join: float  #: seconds after the stream started
    leave: float = INF


def build(s: Scenario, world: World, seed: int) -> tuple[PeerNet, list[Viewer]]:
    rng = random.Random(f"population/{seed}")
    from .netmodel import ACCESS
    bnet = sample_peer(world, random.Random(f"broadcaster/{seed}"),
                       {s.broadcaster_access: 1.0}, world.index(s.broadcaster_country))
    # the broadcaster runs on a median link of its access type
    a = ACCESS[s.broadcaster_access]
    bnet.up_bps, bnet.down_bps = a.up_mbps * 1e6 / 8, a.down_mbps * 1e6 / 8
    viewers: list[Viewer] = []
    end = s.duration_s
    mean_session = 60.0 / s.churn_per_min if s.churn_per_min > 0 else INF

    nat_rng = random.Random(f"nat/{seed}")  # its own stream: the rest of the population is unchanged

    def new(join: float, initial: bool) -> Viewer:
        v = Viewer(len(viewers), rng.randbytes(32), sample_peer(world, rng, s.access_mix), join)
        share = s.nat_for(v.net.access)
        if share > 0 and nat_rng.random() < share:
            v.net.nat = 3 if nat_rng.random() < s.nat_symmetric else 2
        if mean_session < INF:
            # already watching for a while: the residual of a size-biased session
            length = residual_session_s(rng, mean_session) if initial else session_length_s(rng, mean_session)
            v.leave = join + max(1.0, length)
        viewers.append(v)
        return v

    for _ in range(s.peers):
        if s.join_pattern == "flash":
            t = s.flash_start_s + rng.random() * s.flash_window_s
        else:
            t = rng.random() * min(s.ramp_s, s.duration_s)  # nobody joins after the stream
        new(t, initial=s.join_pattern == "steady")
    # churn: every departure before the end is replaced by a newcomer at once
    i = 0
    while i < len(viewers):
        v = viewers[i]
        if v.leave < end:
            new(v.leave, initial=False)
        i += 1
    viewers.sort(key=lambda v: (v.join, v.idx))
    for i, v in enumerate(viewers):
        v.idx = i
    return bnet, viewers
