"""Scenarios: TOML files under scenarios/, plus quick command-line overrides."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from oasis.core.peer import PolicyConfig
from oasis.core.swarm import DEFAULT_CHUNK_MS, SwarmConfig

DEFAULT_MIX = {"broadband": 0.35, "wifi": 0.25, "fibre": 0.1, "4g": 0.2, "5g": 0.1}


@dataclass
class Scenario:
    name: str = "quick"
    peers: int = 100
    duration_s: float = 60.0  #: stream seconds simulated (viewers are measured over this)
    seed: int = 1
    # stream
    bitrate_kbps: int = 1500
    chunk_ms: int = DEFAULT_CHUNK_MS  #: the node's default
    gop_chunks: int = 60  #: a keyframe (random-access point) every this many chunks (2 s)
    # network
    access_mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    broadcaster_country: str = "DE"
    broadcaster_access: str = "fibre"
    #: 0 = 16x the bitrate: a broadcaster on fibre (median 150 Mbit/s up) seeding 16
    #: first-level relays spends 16 % of its uplink; the root's fanout sets every tree's depth
    broadcaster_upload_kbps: int = 0
    # joins and churn
    join_pattern: str = "steady"  #: steady | flash
    ramp_s: float = 10.0  #: steady: initial viewers join uniformly over this
    flash_start_s: float = 5.0
    flash_window_s: float = 30.0
    churn_per_min: float = 0.0  #: departures per minute as a share of the swarm (replaced)
    # protocol (SwarmConfig fields; anything else stays at its default)
    protocol: dict[str, Any] = field(default_factory=dict)
    #: a joiner dials up to this many (the node's PolicyConfig.target_neighbours)
    neighbours: int = PolicyConfig.target_neighbours
    #: the node's default (PolicyConfig); the broadcaster takes twice as many
    max_neighbours: int = PolicyConfig.max_neighbours
    upload_share: float = 0.8  #: share of a viewer's measured upload the node may use
    upload_max_x: float = 4.0  #: ... capped at this multiple of the bitrate (demo default)
    tracker: str = "auto"  #: core | fast | auto (core Tracker up to 2000 peers)
    #: share of a tracker answer drawn from the joiner's own area (here: its country, as if
    #: every node ran with ``--area COUNTRY``); the node's tracker default; 0 = uniform
    tracker_locality: float = 0.8
    # NATs (oasis/core/nat.py): a share of the viewers accepts no unsolicited inbound
    # link; of those, a share has a symmetric mapping (punching to it fails). Ford et al.
    # (USENIX 2005) found 82 % of NATs allow UDP hole punching: nat_symmetric 0.2.
    nat_share: float = 0.0  #: share of the viewers behind a NAT (0 = all public)
    nat_symmetric: float = 0.2  #: share of the NATed viewers whose mapping is symmetric
    #: per access kind, overriding ``nat_share`` for the kinds it names (``--nat published``:
    #: netmodel.PUBLISHED_NAT_SHARE, from measurements)
    nat_by_access: dict[str, float] = field(default_factory=dict)
    # hostile peers (oasis/sim/adversary.py): a share of the viewers, a mix of modes
    hostile: float = 0.0  #: share of the viewers that are adversaries (0 = none)
    hostile_mix: dict[str, float] = field(default_factory=dict)  #: mode -> weight; {} = all equal
    hostile_rate: float = 2.0  #: injection ticks per second per adversary (forge, replay, flood)
    hostile_defect_s: float = -1.0  #: when sybils stop forwarding (s); < 0 = half the duration
    #: a repair sink answers a REQUEST this long after the asker's deadline (s); < 0 = never
    hostile_sink_late: float = -1.0
    # baselines
    baselines: list[str] = field(default_factory=lambda: ["cdn_only", "segment_mesh", "pull_mesh"])
    segment_s: float = 4.0
    live_delay_segments: int = 3
    http_threshold_s: float = 4.0  #: segment_mesh: fetch over HTTP when play is this close
    pull_period_s: float = 1.0
    pull_playout_s: float = 6.0
    pull_origin_margin_s: float = 1.0

    def nat_for(self, access: str) -> float:
        """The share of viewers on ``access`` that sit behind a NAT."""
        return self.nat_by_access.get(access, self.nat_share)

    def has_nats(self) -> bool:
        return self.nat_share > 0 or any(v > 0 for v in self.nat_by_access.values())

    def broadcaster_kbps(self) -> int:
        return self.broadcaster_upload_kbps or 16 * self.bitrate_kbps

    def swarm_config(self) -> SwarmConfig:
        known = {f.name for f in fields(SwarmConfig)}
        extra = {k: v for k, v in self.protocol.items() if k in known}
        return replace(SwarmConfig(), chunk_ms=self.chunk_ms, bitrate_kbps=self.bitrate_kbps,
                       **extra)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_TABLES = {"stream", "network", "join", "churn", "baseline", "run", "adversary", "nat"}


def load(path: str | Path) -> Scenario:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    flat: dict[str, Any] = {}
    for k, v in data.items():
        if k in _TABLES and isinstance(v, dict):
            flat.update(v)
        else:
            flat[k] = v
    if "name" not in flat:
        flat["name"] = Path(path).stem
    return from_dict(flat)


def from_dict(d: dict[str, Any]) -> Scenario:
    known = {f.name for f in fields(Scenario)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown scenario keys: {', '.join(unknown)}")
    s = Scenario(**d)
    total = sum(s.access_mix.values())
    if total <= 0:
        raise ValueError("access_mix must have a positive total")
    s.access_mix = {k: v / total for k, v in s.access_mix.items()}
    if not (0.0 <= s.nat_share <= 1.0 and 0.0 <= s.nat_symmetric <= 1.0):
        raise ValueError("nat_share and nat_symmetric are shares in [0, 1]")
    from .netmodel import ACCESS
    for kind, share in s.nat_by_access.items():
        if kind not in ACCESS:
            raise ValueError(f"nat_by_access: unknown access kind {kind!r} (known: {', '.join(ACCESS)})")
        if not (isinstance(share, (int, float)) and 0.0 <= share <= 1.0):
            raise ValueError(f"nat_by_access[{kind!r}] = {share!r}: a share in [0, 1]")
    if not 0.0 <= s.hostile < 1.0:
        raise ValueError(f"hostile = {s.hostile}: a share in [0, 1)")
    from .adversary import check_mix
    check_mix(s.hostile_mix)
    if s.join_pattern not in ("steady", "flash"):
        raise ValueError(f"join_pattern {s.join_pattern!r}: use steady or flash")
    if not (isinstance(s.peers, int) and s.peers >= 1):
        raise ValueError(f"peers = {s.peers!r}: a whole number, at least 1")
    if not (isinstance(s.duration_s, (int, float)) and s.duration_s > 0):
        raise ValueError(f"duration_s = {s.duration_s!r}: seconds, more than 0")
    if not (isinstance(s.bitrate_kbps, int) and s.bitrate_kbps > 0 and isinstance(s.chunk_ms, int)
            and 10 <= s.chunk_ms <= 10_000):
        raise ValueError("bitrate_kbps is a positive integer and chunk_ms an integer in 10..10000")
    if s.churn_per_min < 0 or s.flash_window_s <= 0 or s.ramp_s < 0:
        raise ValueError("churn_per_min and ramp_s are not negative, flash_window_s is positive")
    if s.flash_start_s < 0 or (s.join_pattern == "flash"
                               and s.flash_start_s + s.flash_window_s > s.duration_s):
        raise ValueError(f"the flash crowd joins from {s.flash_start_s:g} to "
                         f"{s.flash_start_s + s.flash_window_s:g} s, after the stream's "
                         f"{s.duration_s:g} s: shorten flash_window_s (--flash) or lengthen duration_s (--duration)")
    from .netmodel import country_codes
    if s.broadcaster_country not in country_codes():
        raise ValueError(f"broadcaster_country {s.broadcaster_country!r}: an ISO code of "
                         "oasis/sim/data/countries.csv")
    bad = [k for k in s.access_mix if k not in ACCESS]
    if bad or s.broadcaster_access not in ACCESS:
        raise ValueError(f"unknown access kind {(bad or [s.broadcaster_access])[0]!r} "
                         f"(one of {', '.join(ACCESS)})")
    from .baselines import RUNNERS
    bad = [b for b in s.baselines if b not in RUNNERS]
    if bad:
        raise ValueError(f"unknown baseline {bad[0]!r} (one of {', '.join(RUNNERS)}, or none)")
    known = {f.name for f in fields(SwarmConfig)} | PROTOCOL_EXTRA
    bad = sorted(k for k in s.protocol if k not in known)
    if bad:
        raise ValueError(f"unknown [protocol] keys: {', '.join(bad)} (SwarmConfig fields, or session)")
    pd = s.protocol.get("playout_delay", SwarmConfig().playout_delay)
    if not (isinstance(pd, (int, float)) and 0.05 <= pd <= 60):
        raise ValueError(f"playout_delay = {pd!r}: seconds between 0.05 and 60")
    return s


#: [protocol] keys the simulator reads besides SwarmConfig's fields
PROTOCOL_EXTRA = {"session"}
