"""Network model of the simulator, grounded in public measurements.

Sources (docs/simulation.md lists them with links and what each number is):

* country-pair RTT: RIPE Atlas pings (RIPE NCC), 2025-03/04, aggregated per
  country pair by the Ouroboros Leios project; trimmed copy in
  ``data/country_rtt.csv``.  Pairs missing there (or with < 10 pings) fall back
  on great-circle distance at 2/3 c times 2.1 route inflation (Bozkurt et al.,
  PAM 2017).
* peer placement: population (UN WPP 2023, rounded) x internet use of the
  country's ITU region (ITU Facts and Figures 2023) -> ``data/countries.csv``.
* access capacities and idle latencies: Ookla Speedtest Global Index medians
  (fixed 97.6/52.8 Mbit/s at 9 ms, Jan 2025; mobile idle latency about 28 ms;
  5G 203 down / 21 up); spreads lognormal (an assumption; see the docs).
* session lengths: lognormal body with a Pareto tail, as measured for live
  streaming sessions.
"""

from __future__ import annotations

import csv
import functools
import math
import random
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).with_name("data")
LIGHT_KM_PER_MS = 299_792.458 / 1000 * 2 / 3  # 2/3 c in fibre, km per ms
ROUTE_INFLATION = 2.1
MIN_PINGS = 10

#: ITU Facts and Figures 2023: share of the population using the internet
ITU_INTERNET_USE = {"Africa": 0.37, "Americas": 0.87, "Arab States": 0.69,
                    "Asia-Pacific": 0.66, "CIS": 0.89, "Europe": 0.91}


@dataclass(frozen=True)
class Access:
    name: str
    down_mbps: float  #: median download
    up_mbps: float  #: median upload
    sigma: float  #: lognormal spread of capacities (ln units)
    rtt_ms: float  #: last-mile idle RTT (median)
    loss: float  #: per-transfer probability that a packet is lost (costs one RTT)


#: medians: Ookla Speedtest Global Index (see docs/simulation.md for which are
#: measured and which are assumptions derived from them)
ACCESS: dict[str, Access] = {
    "fibre": Access("fibre", 300.0, 150.0, 0.6, 5.0, 0.001),
    "broadband": Access("broadband", 97.6, 52.8, 0.8, 9.0, 0.001),
    "wifi": Access("wifi", 60.0, 30.0, 0.8, 14.0, 0.005),
    "5g": Access("5g", 203.0, 21.0, 0.8, 20.0, 0.005),
    "4g": Access("4g", 30.0, 8.0, 0.8, 35.0, 0.01),
}


#: Share of the viewers behind a NAT per access kind, as measured (``oasis sim --nat
#: published``; docs/simulation.md, "NATs"). Fixed lines: more than 90 % of residential DSL
#: lines reach the internet through a NAT gateway (Maier, Schneider and Feldmann, "NAT usage
#: in residential broadband networks", PAM 2011, 20,000 lines), taken for every fixed kind;
#: cellular: carrier-grade NATs in more than 92 % of cellular networks (Richter et al., "A
#: multi-perspective analysis of carrier-grade NAT deployment", IMC 2016), a share of
#: networks taken as the share of users. Whether a mapping is symmetric is not known per
#: kind: the scenario's ``nat_symmetric`` (Ford et al., USENIX 2005) applies to all.
PUBLISHED_NAT_SHARE: dict[str, float] = {"fibre": 0.90, "broadband": 0.90, "wifi": 0.90, "4g": 0.92, "5g": 0.92}


def _great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(min(1.0, a)))


def distance_rtt_ms(km: float) -> float:
    """Fallback: great-circle distance, route inflation 2.1, at 2/3 c, both ways."""
    return 2 * km * ROUTE_INFLATION / LIGHT_KM_PER_MS


@functools.cache
def country_codes() -> frozenset[str]:
    """The ISO codes of ``data/countries.csv`` (read once): what a scenario or a testbed
    topology may name, checked without building a :class:`World`."""
    with open(DATA / "countries.csv", newline="") as f:
        return frozenset(r["cc"] for r in csv.DictReader(f))


class World:
    """Countries, their placement weights and the core RTT matrix between them."""

    def __init__(self) -> None:
        self.cc: list[str] = []
        self.region: list[str] = []
        self.weight: list[float] = []
        self.latlon: list[tuple[float, float]] = []
        with open(DATA / "countries.csv", newline="") as f:
            for r in csv.DictReader(f):
                self.cc.append(r["cc"])
                self.region.append(r["itu_region"])
                self.weight.append(float(r["population_m"]) * ITU_INTERNET_USE[r["itu_region"]])
                self.latlon.append((float(r["lat"]), float(r["lon"])))
        idx = {c: i for i, c in enumerate(self.cc)}
        n = len(self.cc)
        measured: dict[tuple[int, int], tuple[float, float]] = {}
        with open(DATA / "country_rtt.csv", newline="") as f:
            for r in csv.DictReader(f):
                a, b = idx.get(r["cty1"]), idx.get(r["cty2"])
                if a is None or b is None or int(r["rtt_cnt"]) < MIN_PINGS:
                    continue
                measured[(a, b)] = measured[(b, a)] = (float(r["rtt_avg"]), float(r["rtt_min"]))
        self.measured_pairs = len({tuple(sorted(k)) for k in measured})
        rtt = [[0.0] * n for _ in range(n)]
        self.source = [[""] * n for _ in range(n)]
        for a in range(n):
            for b in range(n):
                if a == b:
                    continue
                if (a, b) in measured:
                    rtt[a][b], self.source[a][b] = measured[(a, b)][0], "ripe-atlas"
                else:
                    km = _great_circle_km(*self.latlon[a], *self.latlon[b])
                    rtt[a][b], self.source[a][b] = distance_rtt_ms(km), "distance"
        # Within a country the per-country mean is dominated by a heavy tail
        # (README of the data): use the measured mean, but no more than 60 %
        # of the RTT to the nearest foreign country, and at least 2 ms.
        for a in range(n):
            nearest = min(rtt[a][b] for b in range(n) if b != a)
            own = measured.get((a, a), (nearest, 0.0))[0]
            rtt[a][a] = max(2.0, min(own, 0.6 * nearest))
            self.source[a][a] = "ripe-atlas(capped)" if (a, a) in measured else "derived"
        self.rtt_ms = rtt

    def index(self, cc: str) -> int:
        return self.cc.index(cc)

    def pick_country(self, rng: random.Random) -> int:
        return rng.choices(range(len(self.cc)), weights=self.weight)[0]


@dataclass
class PeerNet:
    """Network facts of one simulated peer."""

    country: int
    access: str
    up_bps: float  #: bytes per second
    down_bps: float  #: bytes per second
    lastmile_s: float  #: one-way last-mile delay, seconds (both directions)
    loss: float
    #: extra delay on everything this peer sends over OFTP (not HTTP), seconds: the
    #: model of a node's user-space ``--link-delay-ms`` (used by the fidelity check)
    egress_s: float = 0.0
    #: mean wait of this node's process for a core of a host it shares with others
    #: (the fidelity check's 21 processes on one machine: measured there from
    #: /proc/<pid>/schedstat), paid per message received; 0 = a host of its own
    host_wait_s: float = 0.0
    #: behind what NAT (oasis.core.nat.NatKind): 1 public, 2 endpoint-independent
    #: mapping (a punch can reach it), 3 symmetric (a new mapping per destination)
    nat: int = 1


def sample_peer(world: World, rng: random.Random, mix: dict[str, float],
                country: int | None = None) -> PeerNet:
    names = list(mix)
    access = rng.choices(names, weights=[mix[k] for k in names])[0]
    a = ACCESS[access]
    down = a.down_mbps * math.exp(rng.gauss(0.0, a.sigma))
    up = a.up_mbps * math.exp(rng.gauss(0.0, a.sigma))
    lm_rtt = a.rtt_ms * math.exp(rng.gauss(0.0, 0.3))
    c = world.pick_country(rng) if country is None else country
    return PeerNet(c, access, up * 1e6 / 8, down * 1e6 / 8, lm_rtt / 2000, a.loss)


def link_s(rtt_ms: list[list[float]], a: PeerNet, b: PeerNet) -> tuple[float, float]:
    """(one-way delay a -> b, round trip a -> b -> a) in seconds, propagation only:
    half the core RTT between the countries (``World.rtt_ms``), both last miles, and
    the sender's egress delay each way.  The one definition of a link's delay: the
    simulator's message transfer and session setup and the baselines all use it."""
    base = rtt_ms[a.country][b.country] / 2000 + a.lastmile_s + b.lastmile_s
    return base + a.egress_s, 2 * base + a.egress_s + b.egress_s


def one_way_s(rtt_ms: list[list[float]], a: PeerNet, b: PeerNet) -> float:
    """Propagation one-way delay from peer a to peer b, seconds (``link_s``)."""
    return link_s(rtt_ms, a, b)[0]


def rtt_s(rtt_ms: list[list[float]], a: PeerNet, b: PeerNet) -> float:
    """Propagation round trip a -> b -> a, seconds (``link_s``)."""
    return link_s(rtt_ms, a, b)[1]


#: a CDN edge in the viewer's metro: this RTT on top of the viewer's last mile
CDN_EDGE_RTT_MS = 10.0
#: a request for a chunk the edge will hold within this long waits for it there and is
#: answered when it comes (``oasis edge --hold``, :data:`oasis.node.edge.HOLD_S`); later, 404
CDN_EDGE_HOLD_S = 1.0
CDN_EDGE_HOLD_AHEAD = 64  #: ... for a chunk at most this many seqs past its newest (HOLD_AHEAD)


def session_length_s(rng: random.Random, mean_s: float) -> float:
    """Heavy-tailed session length: lognormal body (80 %) + Pareto tail (20 %),
    scaled so that the mixture's mean is ``mean_s``.

    Shape: lognormal sigma 1.5 (many very short sessions), Pareto alpha 1.5
    (finite mean, infinite variance), as in live-streaming measurement studies.
    """
    # body: lognormal(mu, 1.5), mean exp(mu + 1.125); tail: Pareto(xm, 1.5), mean 3 xm.
    # Choose body mean = 0.5 * mean_s, tail mean = 3 * mean_s  => 0.8*0.5 + 0.2*3 = 1.0
    if rng.random() < 0.8:
        mu = math.log(0.5 * mean_s) - 1.125
        return math.exp(rng.gauss(mu, 1.5))
    xm = mean_s
    return xm / float(rng.random() ** (1 / 1.5))


def residual_session_s(rng: random.Random, mean_s: float) -> float:
    """What is left of the session of a viewer found watching at a random instant, for
    :func:`session_length_s`'s mixture. The session it is in is drawn *size-biased*
    (a long session is more likely to be under way: density L f(L) / mean; for the
    lognormal body that is lognormal(mu + sigma^2, sigma), for the Pareto tail Pareto(xm,
    alpha - 1), weights 0.8 * 0.5 and 0.2 * 3), and the viewer is uniformly far into it.
    Then departures run at swarm / mean from the first second, as ``churn_per_min`` says;
    a plain (not size-biased) length times a uniform made the short sessions of the body
    leave at once: 2-7 times the rate in runs of 20-120 s."""
    if rng.random() < 0.4:
        mu = math.log(0.5 * mean_s) - 1.125 + 2.25
        length = math.exp(rng.gauss(mu, 1.5))
    else:
        length = mean_s / (rng.random() ** (1 / 0.5))
    return length * rng.random()
