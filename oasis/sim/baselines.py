"""Baselines on the same network model, the same viewers and the same seed.

They are deliberately simple, event-driven models of other systems (not Oasis,
so they do not run the Swarm core):

* ``cdn_only`` — every viewer fetches every chunk from its CDN edge, with a
  request already waiting (LL-HLS-style blocking fetch): latency = the direct
  path broadcaster -> origin -> edge -> viewer; offload 0.
* ``segment_mesh`` — today's P2P video layers (p2p-media-loader style): HLS
  segments of ``segment_s``; the player plays ``live_delay_segments`` behind the
  live edge; a segment is fetched from a mesh neighbour that announced it when
  there is time, over HTTP when its playback is within ``http_threshold_s``.
* ``pull_mesh`` — CoolStreaming-style buffer-map pull mesh: every
  ``pull_period_s`` a peer looks at its neighbours' buffer maps (as of their
  last exchange, one one-way delay old) and requests each missing chunk from a
  holder; the holder sends requested chunks back to back on its upload link.
  Chunks still missing ``pull_origin_margin_s`` before their playback deadline
  (``pull_playout_s``) are fetched from the CDN edge, as hybrid deployments do.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from typing import Any

import numpy as np

from oasis.core.metrics import ViewerRecord, nearest_rank

from .netmodel import CDN_EDGE_RTT_MS, PeerNet, World, one_way_s
from .population import INF, Viewer
from .records import summarize
from .scenario import Scenario

MTU, OVH = 1200, 60


def _wire(n: int) -> int:
    return n + -(-n // MTU) * OVH


class _Base:
    def __init__(self, s: Scenario, world: World, bnet: PeerNet, viewers: list[Viewer],
                 seed: int, name: str) -> None:
        self.s, self.world, self.bnet, self.viewers = s, world, bnet, viewers
        self.rng = random.Random(f"{name}/{seed}")
        self.chunk_s = s.chunk_ms / 1000
        self.n = int(round(s.duration_s / self.chunk_s))
        self.t = np.arange(self.n) * self.chunk_s  # chunk completion times (stream clock)
        self.payload = int(s.bitrate_kbps * 1000 / 8 * self.chunk_s)
        self.csize = self.payload + 110  # signed chunk message
        self.rtt = world.rtt_ms
        self.records: list[ViewerRecord] = []
        self.stretch: list[np.ndarray] = []
        self.wall = time.perf_counter()

    def owd(self, a: PeerNet, b: PeerNet) -> float:
        return one_way_s(self.rtt, a, b)  # the baselines' peers have no egress delay

    def edge_avail(self, net: PeerNet) -> float:
        """Delay from chunk completion to its presence at the viewer's edge."""
        b = self.bnet
        return _wire(self.csize) / b.up_bps + b.lastmile_s + self.rtt[b.country][net.country] / 2000

    def http_s(self, net: PeerNet, nbytes: int) -> float:
        """A GET on the edge: request + response + transfer."""
        return 2 * (net.lastmile_s + CDN_EDGE_RTT_MS / 2000) + _wire(nbytes + 300) / net.down_bps

    def direct(self, net: PeerNet) -> float:
        return self.edge_avail(net) + net.lastmile_s + CDN_EDGE_RTT_MS / 2000 + _wire(self.csize + 300) / net.down_bps

    def record(self, v: Viewer, arrival: np.ndarray, from_p2p: np.ndarray, playout: float,
               start_at: float | None) -> None:
        """Fill a ViewerRecord from per-chunk arrival times (stream clock; inf = never)."""
        rec = ViewerRecord(v.join, playout)
        rec.left_at = v.leave
        lo = int(np.searchsorted(self.t, v.join, side="left"))
        hi = int(np.searchsorted(self.t, v.leave, side="left"))
        arr = arrival[lo:hi]
        got = np.isfinite(arr) & (arr <= v.leave)
        seqs = np.arange(lo, hi)[got]
        lat = (arr[got] - self.t[lo:hi][got])
        rec.lat_seq.frombytes(seqs.astype(np.int32).tobytes())
        rec.lat.frombytes(lat.astype(np.float32).tobytes())
        ok = seqs[lat <= playout]
        rec.on_time.frombytes(ok.astype(np.int32).tobytes())
        p2p = int(np.count_nonzero(from_p2p[lo:hi][got]))
        rec.bytes_by_source = {"p2p": p2p * self.payload,
                               "origin": (len(seqs) - p2p) * self.payload}
        rec.started_at = start_at
        self.records.append(rec)
        d = self.direct(v.net)
        if len(lat):
            self.stretch.append((lat / d).astype(np.float32))

    def result(self, playout: float, extra: dict[str, Any]) -> dict[str, Any]:
        s = self.s
        # judged like the Oasis run: every produced chunk's deadline has passed
        summ = summarize(self.records, self.t, s.duration_s + playout, playout)
        st = np.sort(np.concatenate(self.stretch)) if self.stretch else np.zeros(0)
        return {
            "viewers": len(self.viewers), "duration_s": s.duration_s,
            "bitrate_kbps": s.bitrate_kbps, "chunk_ms": s.chunk_ms, "chunks_produced": self.n,
            "latency_ms": summ["latency_ms"], "continuity": summ["continuity"],
            "offload_ratio": summ["offload_ratio"], "startup_ms": summ["startup_ms"],
            "bytes": summ["bytes"], "overhead_ratio": extra.pop("overhead_ratio", 0.0),
            "errors": 0,
            "latency_stretch": {"p50": round(nearest_rank(st, 50), 3),
                                "p95": round(nearest_rank(st, 95), 3)},
            "playout_delay_s": playout,
            "viewers_started": summ["viewers_started"],
            **extra,
            "wall_s": round(time.perf_counter() - self.wall, 2),
        }

    def latencies(self) -> np.ndarray:
        return np.concatenate([np.frombuffer(r.lat, dtype=np.float32) for r in self.records]) \
            if self.records else np.zeros(0)


# ---- cdn_only -----------------------------------------------------------------
def run_cdn_only(s: Scenario, world: World, bnet: PeerNet, viewers: list[Viewer],
                 seed: int) -> tuple[dict[str, Any], _Base]:
    b = _Base(s, world, bnet, viewers, seed, "cdn_only")
    playout = s.swarm_config().playout_delay
    pk = -(-(b.csize + 300) // MTU)
    nof = np.zeros(b.n, dtype=bool)
    for v in viewers:
        d = b.direct(v.net)
        arr = b.t + d
        if v.net.loss:
            p = 1 - (1 - v.net.loss) ** pk
            lost = np.array([b.rng.random() < p for _ in range(b.n)])
            arr = arr + lost * 2 * (v.net.lastmile_s + CDN_EDGE_RTT_MS / 2000)
        # on join: GET the newest keyframe chunk, then follow the live edge
        start = v.join + b.http_s(v.net, b.csize)
        b.record(v, arr, nof, playout, start)
    return b.result(playout, {"http_requests": sum(1 for _ in viewers)}), b


# ---- segment_mesh ---------------------------------------------------------------
def run_segment_mesh(s: Scenario, world: World, bnet: PeerNet, viewers: list[Viewer],
                     seed: int) -> tuple[dict[str, Any], _Base]:
    b = _Base(s, world, bnet, viewers, seed, "segment_mesh")
    per = max(1, int(round(s.segment_s / b.chunk_s)))
    nseg = -(-b.n // per)
    seg_bytes = b.csize * per
    L = s.live_delay_segments * s.segment_s  # playback offset behind the live edge
    nv = len(viewers)
    # mesh: each viewer links to up to `neighbours` earlier viewers (and they to it)
    nbrs: list[list[int]] = [[] for _ in range(nv)]
    for i in range(1, nv):
        for j in {b.rng.randrange(i) for _ in range(s.neighbours // 2 + 1)}:
            nbrs[i].append(j)
            nbrs[j].append(i)
    seg_arr = np.full((nv, nseg), INF)
    seg_p2p = np.zeros((nv, nseg), dtype=bool)
    up_busy = np.zeros(nv)
    ready = [(k + 1) * per * b.chunk_s for k in range(nseg)]  # segment complete (stream clock)
    ev: list[tuple[float, int, int, int]] = []
    cnt = 0
    poll = [b.rng.random() * s.segment_s / 2 for _ in range(nv)]
    # players sit at different positions behind the edge (join time, stalls)
    jit = [b.rng.random() * s.segment_s for _ in range(nv)]
    for i, v in enumerate(viewers):
        first = max(0, int((v.join - L - jit[i]) // s.segment_s))
        for k in range(first, nseg):
            d = max(v.join, ready[k] + b.edge_avail(v.net) + poll[i])
            if d >= v.leave:
                break
            cnt += 1
            ev.append((d, cnt, i, k))
    heapq.heapify(ev)
    http_fetches = p2p_fetches = 0
    while ev:
        d, _, i, k = heapq.heappop(ev)
        v = viewers[i]
        if d >= v.leave:
            continue
        play = k * s.segment_s + L + jit[i]
        if play - d > s.http_threshold_s:
            best, best_t = -1, INF
            for j in nbrs[i]:
                w = viewers[j]
                if not (w.join <= d < w.leave):
                    continue
                owd = b.owd(v.net, w.net)
                if seg_arr[j, k] + owd <= d:  # announced to us by now
                    t0 = max(d + owd, up_busy[j])
                    t_arr = t0 + _wire(seg_bytes) / w.net.up_bps + owd + _wire(seg_bytes) / v.net.down_bps
                    if t_arr < best_t:
                        best, best_t = j, t_arr
            if best >= 0 and best_t <= play - 0.5:
                w = viewers[best]
                up_busy[best] = max(d + b.owd(v.net, w.net), up_busy[best]) + _wire(seg_bytes) / w.net.up_bps
                seg_arr[i, k] = best_t
                seg_p2p[i, k] = True
                p2p_fetches += 1
                continue
            # nobody has it yet: look again in 0.5 s, HTTP once play is near
            nxt = min(d + 0.5, play - s.http_threshold_s)
            cnt += 1
            heapq.heappush(ev, (max(nxt, d + 1e-3), cnt, i, k))
            continue
        seg_arr[i, k] = d + b.http_s(v.net, seg_bytes)
        http_fetches += 1
    for i, v in enumerate(viewers):
        arr = np.repeat(seg_arr[i], per)[: b.n]
        p2p = np.repeat(seg_p2p[i], per)[: b.n]
        fin = seg_arr[i][np.isfinite(seg_arr[i])]
        start = float(fin.min()) if len(fin) else None
        b.record(v, arr, p2p, L + jit[i], start)
    return b.result(L + s.segment_s, {"segment_s": s.segment_s, "http_fetches": http_fetches,
                        "p2p_fetches": p2p_fetches}), b


# ---- pull_mesh --------------------------------------------------------------------
def run_pull_mesh(s: Scenario, world: World, bnet: PeerNet, viewers: list[Viewer],
                  seed: int) -> tuple[dict[str, Any], _Base]:
    b = _Base(s, world, bnet, viewers, seed, "pull_mesh")
    nv = len(viewers)
    P, tau, margin = s.pull_playout_s, s.pull_period_s, s.pull_origin_margin_s
    src = nv  # index of the broadcaster
    from dataclasses import replace
    bup = s.broadcaster_kbps() * 1000 / 8
    nets = [v.net for v in viewers] + [replace(bnet, up_bps=min(bnet.up_bps, bup))]
    join = np.array([v.join for v in viewers] + [-INF])
    leave = np.array([v.leave for v in viewers] + [INF])
    nbrs: list[list[int]] = [[] for _ in range(nv + 1)]
    for i in range(1, nv):
        for j in {b.rng.randrange(i) for _ in range(s.neighbours // 2 + 1)}:
            nbrs[i].append(j)
            nbrs[j].append(i)
    for i in b.rng.sample(range(nv), min(nv, 2 * s.max_neighbours)):
        nbrs[i].append(src)
        nbrs[src].append(i)
    arr = np.full((nv + 1, b.n), INF, dtype=np.float64)
    arr[src] = b.t
    p2p = np.zeros((nv, b.n), dtype=bool)
    up_busy = np.zeros(nv + 1)
    phase = np.array([b.rng.random() * tau for _ in range(nv + 1)])
    per_chunk_up = _wire(b.csize)
    ev: list[tuple[float, int]] = [(max(v.join, 0.0) + phase[i], i) for i, v in enumerate(viewers)]
    heapq.heapify(ev)
    end = s.duration_s
    win = int(math.ceil(P / b.chunk_s)) + 1
    http = pulled = 0
    bm_msgs = 0
    while ev:
        T, i = heapq.heappop(ev)
        if T >= leave[i] or T > end + P:
            continue
        v = nets[i]
        newest = min(b.n - 1, int(T / b.chunk_s))
        lo = max(0, newest - win + 1, int(np.searchsorted(b.t, join[i] - 2.0)))
        if newest >= lo:
            mine = arr[i, lo:newest + 1]
            missing = ~np.isfinite(mine)
            # CoolStreaming: prefer the supplier that can send soonest
            for j in sorted(nbrs[i], key=lambda j: up_busy[j]):
                if not missing.any():
                    break
                if not (join[j] <= T < leave[j]):
                    continue
                owd = b.owd(v, nets[j])
                # j's buffer map as of its last exchange tick, heard one owd later
                x = T - owd
                bm_t = phase[j] + math.floor((x - phase[j]) / tau) * tau
                has = (arr[j, lo:newest + 1] <= bm_t) & missing
                idx = np.nonzero(has)[0]
                if len(idx) == 0:
                    continue
                bm_msgs += 1
                # j sends them back to back, newest first... CoolStreaming: in order
                t0 = max(T + owd, up_busy[j])
                upr = nets[j].up_bps
                times = t0 + (np.arange(1, len(idx) + 1) * per_chunk_up) / upr
                # ask only for what this supplier can deliver before the deadline
                # ... and within one period (re-scheduled at the next buffer map)
                ok = (times + owd <= b.t[lo + idx] + P - margin) & (times <= T + owd + tau)
                idx = idx[ok]
                if len(idx) == 0:
                    continue
                times = t0 + (np.arange(1, len(idx) + 1) * per_chunk_up) / upr
                up_busy[j] = times[-1]
                got = times + owd + per_chunk_up / v.down_bps
                arr[i, lo + idx] = got
                p2p[i, lo + idx] = True
                missing[idx] = False
                pulled += len(idx)
            # CDN fallback for what will be due before the next chance
            due = b.t[lo:newest + 1] + P - margin
            need = missing & (due <= T + tau)
            k = np.nonzero(need)[0]
            if len(k):
                arr[i, lo + k] = T + b.http_s(v, b.csize) + np.arange(len(k)) * per_chunk_up / v.down_bps
                http += len(k)
        heapq.heappush(ev, (T + tau, i))
    for i, viewer in enumerate(viewers):
        a = arr[i]
        fin = a[np.isfinite(a)]
        start = float(fin.min()) if len(fin) else None
        b.record(viewer, a, p2p[i], P, start)
    ov = (bm_msgs * 80) / max(1, pulled * b.payload)
    return b.result(P, {"buffer_map_period_s": tau, "http_chunks": http, "pulled_chunks": pulled,
                        "overhead_ratio": round(ov, 5)}), b


RUNNERS = {"cdn_only": run_cdn_only, "segment_mesh": run_segment_mesh, "pull_mesh": run_pull_mesh}
