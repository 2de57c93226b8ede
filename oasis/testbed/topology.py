"""The testbed's topology: who sits where, behind what, on which access link.

A :class:`Topology` is plain data (frozen dataclasses, a JSON dump and load) so the
same description can drive the namespace testbed (:mod:`oasis.testbed.netns`) and,
later, the simulator (issue 10, item 5). :func:`build` draws one from a seed with the
simulator's own network model (:mod:`oasis.sim.netmodel`): countries weighted by
internet users, access kinds with their capacities and last-mile delays, and the
RIPE Atlas country-pair RTTs of :class:`~oasis.sim.netmodel.World`.

NAT kinds (``NodeSpec.nat``):

* ``public``: the node's own address is on the internet (198.18.0.0/15 here).
* ``eim``: a home router, MASQUERADE that keeps the source port (endpoint-independent
  mapping, address-and-port-dependent filtering: the Linux default).
* ``symmetric``: a home router with ``MASQUERADE --random-fully`` (a new external port
  per destination).
* ``cgn``: a mobile subscriber on 100.64.0.0/10 behind a carrier-grade NAT shared by
  all mobile nodes of one country and access kind (port-preserving MASQUERADE, the
  endpoint-independent mapping RFC 6888 asks of a CGN).
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from oasis.sim.netmodel import ACCESS, World, country_codes

NAT_KINDS = ("public", "eim", "symmetric", "cgn")
MOBILE = ("4g", "5g")
#: the default access mix of a testbed viewer (shares, as the simulator's scenarios)
DEFAULT_MIX = {"fibre": 0.15, "broadband": 0.35, "wifi": 0.2, "4g": 0.15, "5g": 0.15}
MIN_CAP_KBPS = 1_000  #: no access link below this (a 1.5 Mbit/s stream must fit downstream)
MAX_CAP_KBPS = 200_000  #: above this a tbf on this machine costs more CPU than it shows


#: a topology file's most nodes (the broadcaster and its viewers; runner.MAX_VIEWERS)
MAX_NODES = 401
#: a node's name: its namespace's (and its router's) name after the run's prefix
NAME_RE = re.compile(r"[a-z0-9]{1,12}")


@dataclass(frozen=True)
class NodeSpec:
    """One node of the testbed."""

    name: str  #: short and unique: "b" for the broadcaster, "v0", "v1", ... for viewers
    role: str  #: "broadcaster" | "viewer"
    country: str  #: ISO 3166 alpha-2, a row of oasis/sim/data/countries.csv
    access: str  #: a key of ``oasis.sim.netmodel.ACCESS``
    up_kbps: int  #: access link cap, node to internet
    down_kbps: int  #: access link cap, internet to node
    loss: float  #: probability that a packet is dropped, each direction, on the access link
    lastmile_ms: float  #: one-way last-mile delay, added by the delayer to every packet
    nat: str = "public"  #: one of ``NAT_KINDS``
    join_s: float = 0.0  #: when the node starts, seconds after the broadcaster


@dataclass(frozen=True)
class Topology:
    """A testbed run's network: its nodes and where the delays come from."""

    seed: int
    bitrate_kbps: int
    nodes: tuple[NodeSpec, ...]
    #: one-way core delay between countries = RTT / 2 of this table (World.rtt_ms)
    delay_source: str = "ripe-atlas country RTT (oasis/sim/data/country_rtt.csv)"
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def broadcaster(self) -> NodeSpec:
        return next(n for n in self.nodes if n.role == "broadcaster")

    @property
    def viewers(self) -> list[NodeSpec]:
        return [n for n in self.nodes if n.role == "viewer"]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Topology:
        try:
            nodes = tuple(NodeSpec(**n) for n in data["nodes"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a topology ({exc}): see --dump-topology for the format") from None
        if not 2 <= len(nodes) <= MAX_NODES:
            raise ValueError(f"{len(nodes)} nodes: a broadcaster and 1 to {MAX_NODES - 1} viewers")
        if not (isinstance(data.get("seed"), int) and isinstance(data.get("bitrate_kbps"), int)
                and not isinstance(data["bitrate_kbps"], bool) and 10 <= data["bitrate_kbps"] <= 1_000_000):
            # (the node's range: --bitrate's, so that --dump-topology's file is taken back)
            raise ValueError("seed and bitrate_kbps are whole numbers (bitrate_kbps 10 to 1,000,000)")
        countries = country_codes()
        for n in nodes:
            if not (isinstance(n.name, str) and NAME_RE.fullmatch(n.name)):
                # (a node's name names its namespace and its NAT router's: "../x" was taken)
                raise ValueError(f"node name {str(n.name)[:40]!r}: 1 to 12 lower-case letters and digits")
            if n.role not in ("broadcaster", "viewer"):
                raise ValueError(f"node {n.name}: role {n.role!r} (broadcaster or viewer)")
            if n.nat not in NAT_KINDS:
                raise ValueError(f"node {n.name}: unknown nat {n.nat!r} (one of {', '.join(NAT_KINDS)})")
            if n.access not in ACCESS:
                raise ValueError(f"node {n.name}: unknown access {n.access!r} (one of {', '.join(ACCESS)})")
            if n.country not in countries:
                raise ValueError(f"node {n.name}: unknown country {n.country!r} (ISO codes of "
                                 "oasis/sim/data/countries.csv)")
            if not (isinstance(n.up_kbps, int) and isinstance(n.down_kbps, int)
                    and not isinstance(n.up_kbps, bool) and not isinstance(n.down_kbps, bool)
                    and 0 < n.up_kbps <= 10_000_000 and 0 < n.down_kbps <= 10_000_000):
                raise ValueError(f"node {n.name}: up_kbps and down_kbps are whole numbers, 1 to 10,000,000")
            if not (all(isinstance(x, (int, float)) and not isinstance(x, bool)
                        for x in (n.loss, n.lastmile_ms, n.join_s))
                    and 0.0 <= n.loss < 1.0 and 0 <= n.lastmile_ms <= 1000 and 0 <= n.join_s <= 3600):
                # (NaN fails these too: a NaN last mile or join time was taken)
                raise ValueError(f"node {n.name}: loss in [0, 1), lastmile_ms 0 to 1,000, join_s 0 to 3,600")
        if sum(1 for n in nodes if n.role == "broadcaster") != 1:
            raise ValueError("a topology has exactly one broadcaster")
        b = next(n for n in nodes if n.role == "broadcaster")
        if b.nat != "public":  # (its origin and tracker: every viewer dials them; a run
            # behind a NAT was built, then failed ~30 s later with "cannot connect")
            raise ValueError(f"node {b.name}: the broadcaster is public (nat \"public\"): its origin "
                             "and tracker are what every viewer reaches first")
        if len({n.name for n in nodes}) != len(nodes):
            raise ValueError("node names must be unique")
        return cls(seed=data["seed"], bitrate_kbps=data["bitrate_kbps"], nodes=nodes,
                   delay_source=data.get("delay_source", cls.delay_source),
                   notes=data.get("notes", {}))


def one_way_ms(world: World, a: NodeSpec, b: NodeSpec) -> float:
    """One-way delay a -> b, ms: half the countries' RTT plus both last miles -- the
    simulator's ``netmodel.link_s`` without egress delay."""
    return world.rtt_ms[world.index(a.country)][world.index(b.country)] / 2 \
        + a.lastmile_ms + b.lastmile_ms


def _cap(mbps: float) -> int:
    return int(min(MAX_CAP_KBPS, max(MIN_CAP_KBPS, mbps * 1000)))


def build(seed: int, viewers: int, *, bitrate_kbps: int = 1500, nat_share: float = 0.7,
          symmetric_share: float = 0.2, countries: list[str] | None = None,
          mix: dict[str, float] | None = None, loss: float | None = None,
          join_spread_s: float = 0.0, world: World | None = None) -> Topology:
    """A topology drawn from ``seed``: one public broadcaster and ``viewers`` viewers.

    Countries are drawn by internet users (or uniformly from ``countries``); access kinds
    from ``mix``, capacities lognormal around the kind's medians (``netmodel.ACCESS``),
    clamped to [MIN_CAP_KBPS, MAX_CAP_KBPS]; last mile = half the kind's median idle RTT;
    loss = the kind's (or ``loss``). Exactly ``round(nat_share * viewers)`` viewers sit
    behind a NAT, ``round(symmetric_share * that)`` of them symmetric; of the other
    NATed ones, mobile viewers sit behind their carrier's CGN, the rest behind an EIM
    home router.
    """
    if not 0.0 <= nat_share <= 1.0 or not 0.0 <= symmetric_share <= 1.0:
        raise ValueError("--nat-share and --symmetric-share are shares within [0, 1]")
    world = world or World()
    rng = random.Random(seed)
    mix = mix or DEFAULT_MIX
    kinds = list(mix)
    if viewers < 1:
        raise ValueError(f"--viewers {viewers}: at least 1")
    if loss is not None and not 0.0 <= loss < 1.0:
        raise ValueError(f"--loss {loss}: a probability in [0, 1)")
    if join_spread_s < 0:
        raise ValueError(f"--join-spread {join_spread_s}: not negative")
    if countries is not None:
        countries = [c.strip().upper() for c in countries]
        if "" in countries:
            raise ValueError("--countries: an empty name (comma-separated ISO codes, e.g. DE,US,BR)")
        unknown = [c for c in countries if c not in world.cc]
        if unknown:
            raise ValueError(f"--countries: unknown {', '.join(unknown)} (ISO codes of "
                             "oasis/sim/data/countries.csv, e.g. DE,US,BR)")

    def draw(name: str, role: str, access: str | None = None) -> NodeSpec:
        cc = rng.choice(countries) if countries else world.cc[world.pick_country(rng)]
        kind = access or rng.choices(kinds, weights=[mix[k] for k in kinds])[0]
        a = ACCESS[kind]
        down = a.down_mbps * math.exp(rng.gauss(0.0, a.sigma))
        up = a.up_mbps * math.exp(rng.gauss(0.0, a.sigma))
        return NodeSpec(name, role, cc, kind, _cap(up), _cap(down),
                        a.loss if loss is None else loss, round(a.rtt_ms / 2, 1))

    nodes = [draw("b", "broadcaster", "fibre")]
    vs = [draw(f"v{i}", "viewer") for i in range(viewers)]
    natted = rng.sample(range(viewers), round(nat_share * viewers))
    symmetric = set(natted[:round(symmetric_share * len(natted))])
    for i in natted:
        v = vs[i]
        kind = "symmetric" if i in symmetric else "cgn" if v.access in MOBILE else "eim"
        vs[i] = _replace(v, nat=kind)
    for i, v in enumerate(vs):
        vs[i] = _replace(v, join_s=round(join_spread_s * i / max(1, viewers), 2))
    return Topology(seed=seed, bitrate_kbps=bitrate_kbps, nodes=tuple(nodes + vs),
                    notes={"nat_share": nat_share, "symmetric_share": symmetric_share})


def _replace(n: NodeSpec, **kw: Any) -> NodeSpec:
    return NodeSpec(**(asdict(n) | kw))
