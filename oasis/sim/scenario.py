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
    #: each link's congestion control and pacer (``oasis.sim.oasis_run``): "oasis", the node's
    #: own controller, which only the aioquic stack runs (warm: 64 datagrams, never below), or
    #: "qh3", the default stack's CUBIC (10 datagrams, down to 2; docs/simulation.md)
    quic: str = "oasis"
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
    #: above ``upload_max_x``: every viewer runs the node's default, the uplink probe, whatever
    #: its uplink (the node does not know it): the cap starts at ``upload_max_x`` and moves
    #: between ``upload_floor_x`` and this multiple of the bitrate (``SwarmConfig.upload_max_kbps``
    #: and ``upload_min_kbps``, the node's ``UPLOAD_PROBE_X`` and ``UPLOAD_MIN_X``); at most
    #: ``upload_max_x``: no probe (each viewer's cap fixed at ``upload_share`` of its uplink,
    #: at most ``upload_max_x``: as a user who knows their link sets ``--upload-kbps``)
    upload_probe_x: float = 8.0
    #: the probe's floor (x the bitrate); 0: the probe only raises, and a viewer whose uplink
    #: is short of ``upload_max_x`` is given its cap, fixed (session 62's model)
    upload_floor_x: float = 1.0
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


QUIC_MODELS = ("oasis", "qh3")  #: Scenario.quic
#: the largest swarm and the longest stream a scenario may ask for: 100,000 peers x 60 s takes
#: 7-16 CPU-hours here (docs/benchmarks.md); a trillion was taken and hung building its joins
MAX_PEERS = 1_000_000
MAX_DURATION_S = 86_400


def load(path: str | Path) -> Scenario:
    """A scenario file, checked whole; ValueError (naming the file) for one that cannot be read
    or parsed (a directory, not UTF-8, TOML nested past the parser's recursion)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text (a TOML file is)") from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deep") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for k, v in data.items():
        if k in _TABLES:
            if not isinstance(v, dict):  # ([[stream]] or stream = 5 read as an unknown key)
                raise ValueError(f"[{k}] is a table of settings, not {type(v).__name__} "
                                 f"({'[[' + k + ']]' if isinstance(v, list) else k + ' = ...'})")
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
    for name in ("protocol", "nat_by_access", "hostile_mix"):  # (a list or a number here was an
        # AttributeError traceback, exit 1: found 2026-12-06 from outside)
        if not isinstance(getattr(s, name), dict):
            raise ValueError(f"{name} = {getattr(s, name)!r}: a table of settings ({name} = {{ ... }} "
                             f"or [{name}])"[:200])
    if not isinstance(s.access_mix, dict) or not s.access_mix:
        raise ValueError("access_mix: a table of access kind = weight")
    for kind, share in s.access_mix.items():
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1e9:
            raise ValueError(f"access_mix[{kind!r}] = {share!r}: a weight, 0 or more")
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
    if s.quic not in QUIC_MODELS:
        raise ValueError(f"quic {s.quic!r}: the link model, one of {', '.join(QUIC_MODELS)}")
    if s.join_pattern not in ("steady", "flash"):
        raise ValueError(f"join_pattern {s.join_pattern!r}: use steady or flash")
    if not (isinstance(s.peers, int) and not isinstance(s.peers, bool) and 1 <= s.peers <= MAX_PEERS):
        raise ValueError(f"peers = {s.peers!r}: a whole number, 1 to {MAX_PEERS:,}")
    if not (isinstance(s.duration_s, (int, float)) and 0 < s.duration_s <= MAX_DURATION_S):
        raise ValueError(f"duration_s = {s.duration_s!r}: seconds, more than 0 and at most {MAX_DURATION_S:,}")
    if not (isinstance(s.bitrate_kbps, int) and not isinstance(s.bitrate_kbps, bool)
            and 10 <= s.bitrate_kbps <= 1_000_000 and isinstance(s.chunk_ms, int)
            and 10 <= s.chunk_ms <= 10_000):
        # (the node's and a descriptor's range: 10^9 ran out of memory, unsaid)
        raise ValueError("bitrate_kbps is an integer in 10..1000000 and chunk_ms an integer in 10..10000")
    if s.duration_s * 1000 < s.chunk_ms:
        raise ValueError(f"duration_s = {s.duration_s:g}: shorter than one chunk ({s.chunk_ms} ms): "
                         "the broadcaster would make none")
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
    if not isinstance(s.baselines, list) or not all(isinstance(b, str) for b in s.baselines):
        # (a string was read letter by letter; a nested list was "unhashable type: 'list'")
        raise ValueError(f"baselines: a list of names, e.g. [\"cdn_only\"] (one of {', '.join(RUNNERS)})")
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
    _check_protocol(s.protocol)
    _check_numbers(s)
    return s


#: (least, most) of the scenario's other numbers, each of its default's type: 0 for
#: gop_chunks or segment_s divided by zero, a NaN ramp or share failed deep in the run,
#: 10**7 neighbours hung, -1 max_neighbours failed sampling (found 2026-12-06 by setting
#: each to 0, -1, NaN and a huge value)
SCENARIO_RANGES: dict[str, tuple[float, float]] = {
    "seed": (-(2**63), 2**63 - 1), "gop_chunks": (1, 100_000), "broadcaster_upload_kbps": (0, 100_000_000),
    "ramp_s": (0, MAX_DURATION_S), "flash_start_s": (0, MAX_DURATION_S),
    "flash_window_s": (0.001, MAX_DURATION_S), "churn_per_min": (0, 60),
    "neighbours": (1, 1000), "max_neighbours": (1, 1000), "upload_share": (0, 1),
    "upload_max_x": (0, 1000), "upload_probe_x": (0, 1000), "upload_floor_x": (0, 1000), "tracker_locality": (0, 1), "hostile_rate": (0, 1000),
    "hostile_defect_s": (-1, MAX_DURATION_S), "hostile_sink_late": (-1, MAX_DURATION_S),
    "segment_s": (0.1, 60), "live_delay_segments": (1, 100), "http_threshold_s": (0, 3600),
    "pull_period_s": (0.01, 60), "pull_playout_s": (0.05, 3600), "pull_origin_margin_s": (0, 3600),
}
TRACKERS = ("core", "fast", "auto")


def _check_numbers(s: Scenario) -> None:
    """The numbers :func:`from_dict` does not check one by one: type and range (ValueError)."""
    defaults = Scenario()
    for k, (lo, hi) in SCENARIO_RANGES.items():
        v = getattr(s, k)
        whole = isinstance(getattr(defaults, k), int)
        ok_type = not isinstance(v, bool) and isinstance(v, int if whole else (int, float))
        if not (ok_type and lo <= v <= hi):  # (a NaN fails the comparison)
            what = "a whole number" if whole else "a number"
            raise ValueError(f"{k} = {v!r}: {what}, {lo:g} to {hi:,}")
    if s.tracker not in TRACKERS:
        raise ValueError(f"tracker = {s.tracker!r}: one of {', '.join(TRACKERS)}")
    if not isinstance(s.name, str) or not 1 <= len(s.name) <= 100:
        raise ValueError(f"name = {s.name!r}: a text of 1 to 100 characters")


#: [protocol] values a run cannot take: 0 substreams divided by zero, a 0 s repair or
#: STATUS interval re-armed its timer at the same instant for ever, 10**7 substreams or a
#: window of 10**7 chunks hung building their tables (found 2026-12-06 by setting each
#: field to 0 and to 10**7 / 1e9). (least, most) per field; any other number is 0 to
#: PROTOCOL_MAX, finite, of its default's type
PROTOCOL_RANGES: dict[str, tuple[float, float]] = {
    "substreams": (1, 16), "window_chunks": (1, 100_000),
    "repair_after": (0.001, 3600), "status_interval": (0.01, 3600), "probe_interval": (0.01, 3600),
}
PROTOCOL_MAX = 1_000_000
#: set in [stream], which the [protocol] table would contradict
PROTOCOL_FROM_STREAM = ("chunk_ms", "bitrate_kbps")


def _check_protocol(protocol: dict[str, Any]) -> None:
    """Every [protocol] value of its SwarmConfig field's type and in range (ValueError)."""
    defaults = SwarmConfig()
    for k, v in protocol.items():
        if k in PROTOCOL_FROM_STREAM:
            raise ValueError(f"[protocol] {k}: set it in [stream] (the stream's, which the node uses too)")
        if k in PROTOCOL_EXTRA:
            if not isinstance(v, bool):
                raise ValueError(f"[protocol] {k} = {v!r}: true or false")
            continue
        d = getattr(defaults, k)
        lo, hi = PROTOCOL_RANGES.get(k, (0, PROTOCOL_MAX))
        if isinstance(d, bool):
            if not isinstance(v, bool):
                raise ValueError(f"[protocol] {k} = {v!r}: true or false")
        elif isinstance(d, int):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"[protocol] {k} = {v!r}: a whole number, {lo:g} to {hi:,}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            # (a NaN fails the comparison too)
            raise ValueError(f"[protocol] {k} = {v!r}: a number, {lo:g} to {hi:,}")
    quiet = protocol.get("probe_quiet", defaults.probe_quiet)
    busy = protocol.get("probe_busy", defaults.probe_busy)
    if quiet > busy:  # (the uplink probe refused it at the first viewer's join, mid-run)
        raise ValueError(f"[protocol] probe_quiet = {quiet!r} is above probe_busy = {busy!r}")


#: [protocol] keys the simulator reads besides SwarmConfig's fields
PROTOCOL_EXTRA = {"session"}
