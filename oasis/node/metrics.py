"""Prometheus exposition of a node: one registry per node, read at scrape time.

:class:`NodeCollector` owns no counters: on each scrape it reads the ones the
node already keeps (``Node.counters``, ``node.endpoint.counters``, every
stream's ``SwarmCounters`` and upload counters, the tracker's and the HTTP
faces' counters, ``RewardsCounters`` when proof of relay is on) and yields one
metric family per kind, with a ``stream`` label where it is per stream, so
HELP/TYPE appear once however many streams a node carries. The delivery
latency is a histogram folded in incrementally: each scrape adds only the
latencies recorded since the previous one (a stream's record only grows).
"""

from __future__ import annotations

import bisect
import dataclasses
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from oasis import datafiles

from . import outbound

#: Node.counters entries that are levels, not counts (exported as gauges)
NODE_GAUGES = frozenset({"link_chunk_bytes_buffered", "nat_kind", "dht_contacts", "dht_records",
                         "dht_pending", "dm_held", "files_tracked", "files_bytes"})

#: upper bounds (seconds) of the delivery-latency histogram
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


_DISCOVERY: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()


def discovery_counters(node: Any) -> dict[str, int]:
    """The node's tracker-client counters (kept by the announce loop, exported here)."""
    c = _DISCOVERY.get(node)
    if c is None:
        c = _DISCOVERY[node] = {"tracker_errors": 0, "tracker_records_refused": 0,
                                "descriptors_refused": 0, "descriptors_accepted": 0,
                                "descriptor_rejoins": 0,  # a newer descriptor changed the chunking
                                "clock_rejoins": 0}  # the origin's clock came after the join: off
    return c


def _ints(obj: Any) -> Iterable[tuple[str, float]]:
    """(name, value) of the plain numeric fields of a counter dict or dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items: Iterable[tuple[str, Any]] = ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
    elif isinstance(obj, dict):
        items = obj.items()
    else:
        return ()
    return [(str(k), v) for k, v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


class _Latency:
    """A histogram of one stream's delivery latencies, fed only the new ones on each scrape."""

    __slots__ = ("counts", "seen", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.seen = 0
        self.total = 0.0

    def update(self, latencies: Sequence[float]) -> None:
        """``latencies``: the record's latencies in arrival order (``ViewerRecord.lat``);
        only those past the ones already counted are read."""
        n = len(latencies)
        if n < self.seen:  # the record was replaced or pruned: start over
            self.__init__()  # type: ignore[misc]
        if n == self.seen:
            return
        for i in range(self.seen, n):
            v = latencies[i]
            self.counts[bisect.bisect_left(LATENCY_BUCKETS, v)] += 1
            self.total += v
        self.seen = n

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        acc = 0
        for bound, c in zip((*(str(b) for b in LATENCY_BUCKETS), "+Inf"), self.counts, strict=True):
            acc += c
            out.append((bound, acc))
        return out


class NodeCollector(Collector):
    def __init__(self, node: Any, tracker: Any = None, http_counters: dict[str, int] | None = None
                 ) -> None:
        self.node = node
        self.tracker = tracker
        self.http_counters = http_counters
        self._latency: dict[str, _Latency] = {}

    def collect(self) -> Iterator[Metric]:
        if self.node is not None:
            yield from self._node(self.node)
        if self.tracker is not None:
            t = CounterMetricFamily("oasis_tracker_events", "Tracker counters by event "
                                    "(announces, refusals by reason, expiries).", labels=["event"])
            for k, v in _ints(self.tracker.counters):
                t.add_metric([k], v)
            yield t
            yield GaugeMetricFamily("oasis_tracker_entries", "Peers held by the tracker.",
                                    value=self.tracker.entries())
            yield GaugeMetricFamily("oasis_tracker_streams", "Streams held by the tracker.",
                                    value=len(self.tracker.streams))
        if self.http_counters is not None:
            h = CounterMetricFamily("oasis_http_errors", "HTTP requests refused, by status "
                                    "(http_4xx) and handler bugs (http_internal_errors).",
                                    labels=["event"])
            for k, v in _ints(self.http_counters):
                h.add_metric([k], v)
            yield h
        o = CounterMetricFamily("oasis_http_client_events", "The HTTP client's requests to outside "
                                "URLs refused on our side (redirects_refused: a redirect answer, "
                                "not followed).", labels=["event"])
        for k, v in _ints(outbound.COUNTERS):
            o.add_metric([k], v)
        yield o
        rewards = getattr(self.node, "rewards", None)
        if rewards is not None and getattr(rewards, "counters", None) is not None:
            r = CounterMetricFamily("oasis_rewards_events", "Proof-of-relay counters by event.",
                                    labels=["event"])
            for k, v in _ints(rewards.counters):
                r.add_metric([k], v)
            yield r

    def _node(self, node: Any) -> Iterator[Metric]:
        traffic = CounterMetricFamily("oasis_traffic_bytes", "Bytes on OFTP links by layer "
                                      "(sent+received).", labels=["layer"])
        for k, v in node.traffic().items():
            traffic.add_metric([k], v)
        yield traffic
        yield GaugeMetricFamily("oasis_neighbours", "Authenticated peer links.",
                                value=node.neighbour_count())
        yield from loop_lag_family("oasis_loop_lag_seconds", getattr(node, "loop_lag", None))
        ev = CounterMetricFamily("oasis_node_events", "Node counters (Node.counters) by event.",
                                 labels=["event"])
        for k, v in _ints(node.counters):
            if k not in NODE_GAUGES:
                ev.add_metric([k], v)
        yield ev
        yield GaugeMetricFamily("oasis_link_chunk_bytes_buffered", "Chunk-stream bytes the live "
                                "links hold now (capped per link).",
                                value=node.counters.get("link_chunk_bytes_buffered", 0))
        yield GaugeMetricFamily("oasis_nat_kind", "What peers' OBSERVED reports say of this node's "
                                "address: 0 unknown, 1 public, 2 EIM mapping, 3 symmetric "
                                "(docs/oftp.md section 15.1).", value=node.counters.get("nat_kind", 0))
        for name, text in (("dht_contacts", "Contacts in the DHT routing table."),
                           ("dht_records", "Provider records this node stores for others."),
                           ("dht_pending", "DHT requests awaiting an answer.")):
            yield GaugeMetricFamily(f"oasis_{name}", text, value=node.counters.get(name, 0))
        yield GaugeMetricFamily("oasis_dm_held", "Direct-message envelopes held for recipients "
                                "not linked (docs/oftp.md section 19).", value=node.counters.get("dm_held", 0))
        files = CounterMetricFamily("oasis_data_file_events", "Data files: modes tightened, key "
                                    "files upgraded, journal tails dropped.", labels=["event"])
        for k, v in _ints(datafiles.COUNTERS):
            files.add_metric([k], v)
        yield files
        ep = CounterMetricFamily("oasis_endpoint_events", "QUIC endpoint counters by event.",
                                 labels=["event"])
        for k, v in _ints(getattr(node.endpoint, "counters", {})):
            ep.add_metric([k], v)
        yield ep
        udp = CounterMetricFamily("oasis_udp_socket_events", "The endpoint's UDP socket: reads "
                                  "(batches: wake-ups with data), datagrams, sends (GSO ones too), "
                                  "backlog drops, send errors.", labels=["event"])
        for k, v in _ints(getattr(getattr(node.endpoint, "transport", None), "counters", {})):
            udp.add_metric([k], v)
        yield udp
        disc = CounterMetricFamily("oasis_discovery_events", "Tracker client counters: errors, "
                                   "peer records and descriptors refused.", labels=["event"])
        for k, v in _ints(discovery_counters(node)):
            disc.add_metric([k], v)
        yield disc
        violations = CounterMetricFamily("oasis_protocol_violations",
                                         "Malformed or unexpected input from peers.")
        violations.add_metric([], node.counters.get("violations", 0))
        yield violations
        yield from self._streams()

    def _streams(self) -> Iterator[Metric]:
        streams = list(self.node.streams.values())
        fam: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "verified": CounterMetricFamily("oasis_chunks_verified", "Verified chunks completed "
                                            "after this node joined.", labels=["stream"]),
            "skipped": CounterMetricFamily("oasis_chunks_skipped", "Chunks given up at their "
                                           "deadline.", labels=["stream"]),
            "bad": CounterMetricFamily("oasis_bad_chunks", "Chunks that failed verification.",
                                       labels=["stream"]),
            "unopened": CounterMetricFamily("oasis_chunks_unopened", "An encrypted stream's verified "
                                            "chunks whose media did not open with this node's "
                                            "content key (never played).", labels=["stream"]),
            "media": CounterMetricFamily("oasis_media_bytes", "Media bytes received by source.",
                                         labels=["stream", "source"]),
            "origin": CounterMetricFamily("oasis_origin_fetches", "Chunks fetched from the origin "
                                          "or CDN (result=ok|failed).", labels=["stream", "result"]),
            "swarm": CounterMetricFamily("oasis_swarm_events", "Swarm counters (SwarmCounters) by "
                                         "event.", labels=["stream", "event"]),
            "upload": CounterMetricFamily("oasis_upload_events", "Upload scheduler counters by "
                                          "event.", labels=["stream", "event"]),
            "latest": GaugeMetricFamily("oasis_latest_seq", "Highest chunk sequence number held.",
                                        labels=["stream"]),
            "cap": GaugeMetricFamily("oasis_upload_cap_kbps", "The stream's upload cap now, kbit/s "
                                     "(0: none): --upload-kbps, or where the node guessed it, what its "
                                     "uplink probe reached (docs/oftp.md section 9.7).", labels=["stream"]),
            "start": GaugeMetricFamily("oasis_start_seconds", "A viewer's start: seconds from its "
                                       "join to the first of each step (start: the first frame; "
                                       "start_age: the start keyframe's time - the join).",
                                       labels=["stream", "step"]),
            "start_gap": GaugeMetricFamily("oasis_start_gap_chunks", "Chunks made after the join "
                                           "whose deadline passed before the first frame and that "
                                           "were not held then (lost to a late start).",
                                           labels=["stream"]),
        }
        lat = HistogramMetricFamily("oasis_delivery_latency_seconds", "Broadcaster complete to "
                                    "verified here.", labels=["stream"])
        live = set()
        for ls in streams:
            s = ls.text_id
            live.add(s)
            rec, swarm = ls.record, ls.swarm
            fam["verified"].add_metric([s], rec.verified)
            fam["skipped"].add_metric([s], rec.given_up)
            fam["bad"].add_metric([s], getattr(swarm.counters, "bad_chunks", 0))
            fam["unopened"].add_metric([s], getattr(ls, "unopened", 0))
            for src, n in list(rec.bytes_by_source.items()):
                fam["media"].add_metric([s, str(src)], n)
            fam["origin"].add_metric([s, "ok"], getattr(ls, "origin_fetches", 0))
            fam["origin"].add_metric([s, "failed"], getattr(ls, "origin_failures", 0))
            for k, v in _ints(swarm.counters):
                fam["swarm"].add_metric([s, k], v)
            for k, v in _ints(getattr(swarm.upload, "counters", None)):
                fam["upload"].add_metric([s, k], v)
            fam["latest"].add_metric([s], swarm.log.latest)
            fam["cap"].add_metric([s], swarm.upload_kbps)
            for step, v in list(getattr(ls, "start_trace", {}).items()):
                if step == "start_gap":
                    fam["start_gap"].add_metric([s], v)
                else:
                    fam["start"].add_metric([s, step], v)
            h = self._latency.setdefault(s, _Latency())
            h.update(rec.lat)
            lat.add_metric([s], h.buckets(), h.total)
        for gone in set(self._latency) - live:
            del self._latency[gone]
        yield from fam.values()
        yield lat


def loop_lag_family(name: str, lag: Any) -> Iterator[Metric]:
    """How late the event loop ran a timer due every 50 ms, its last minute (``LoopLag``,
    ``/stats`` ``loop_lag_ms``): a gauge per ``stat`` (``p50``, ``p95``, ``max``), seconds;
    nothing before the first sample."""
    figs = lag.figures() if lag is not None else None
    if figs is None:
        return
    fam = GaugeMetricFamily(name, "How late the event loop ran a timer due every 50 ms, the last "
                            "minute (/stats loop_lag_ms), s.", labels=["stat"])
    for stat in ("p50", "p95", "max"):
        fam.add_metric([stat], figs[stat] / 1000)
    yield fam


def make_registry(node: Any, *, tracker: Any = None,
                  http_counters: dict[str, int] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node, tracker, http_counters))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class EdgeCollector(Collector):
    """A CDN edge's (``oasis edge``, node/edge.py) counters and, per stream it follows, the
    newest seq, the chunks held and the feed links up; read at scrape time, as the node's."""

    def __init__(self, edge: Any) -> None:
        self.edge = edge

    def collect(self) -> Iterator[Metric]:
        edge = self.edge
        ev = CounterMetricFamily("oasis_edge_events", "Edge counters by event (/stats has them too).",
                                 labels=["event"])
        for k, v in list(edge.counters.items()):
            if isinstance(v, int) and not isinstance(v, bool):
                ev.add_metric([k], v)
        yield ev
        yield GaugeMetricFamily("oasis_edge_holding", "Requests held for a chunk just ahead of the feed.",
                                value=edge.holding)
        latest = GaugeMetricFamily("oasis_edge_latest_seq", "Newest chunk seq the feed brought.",
                                   labels=["stream"])
        held = GaugeMetricFamily("oasis_edge_chunks_held", "Chunks held for the origin's URLs.",
                                 labels=["stream"])
        links = GaugeMetricFamily("oasis_edge_feed_links", "Feed connections to the origin up.",
                                  labels=["stream"])
        pinned = GaugeMetricFamily("oasis_edge_pinned", "1: followed from its start by --follow, "
                                   "never dropped for want of requests.", labels=["stream"])
        for text, f in list(edge.streams.items()):
            latest.add_metric([text], f.latest)
            held.add_metric([text], len(f.chunks))
            links.add_metric([text], f.links)
            pinned.add_metric([text], 1 if f.pinned else 0)
        yield latest
        yield held
        yield links
        yield pinned
        yield from loop_lag_family("oasis_edge_loop_lag_seconds", edge.loop_lag)
