"""``bench/testbed.py`` / ``oasis testbed``: real Oasis nodes in a namespace world.

Builds the topology's network (:mod:`oasis.testbed.netns`), starts the delayer in the
core namespace, the broadcaster (embedded tracker and origin at its public address),
then the viewers, each in its own namespace listening on its own address, with its
player gateway on 127.0.0.1 inside that namespace. It runs ``--duration`` seconds
after the last viewer started, collects every node's ``/stats`` (the demo's
collector and summary: :func:`oasis.demo._summary`), and adds figures per NAT kind.
Whatever happens -- an error, SIGINT, SIGTERM -- every process it started is stopped
and every namespace it made is removed before it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from oasis.core.identity import key_of_peer_id, peer_tag
from oasis.core.metrics import SETTLE_S, judged_until, missed_by_phase, start_figures, summarize
from oasis.core.streamlink import StreamLink
from oasis.core.streamlink import parse as parse_link
from oasis.demo import Proc, _first_line, _stop_all, _summary, _violation_lines, die_with_parent
from oasis.node.edge import HOLD_S as EDGE_HOLD_S
from oasis.node.runtime import UPLOAD_X
from oasis.sim.netmodel import CDN_EDGE_RTT_MS
from oasis.zygote import Zygote

from . import netns
from .delayer import TICK_S
from .topology import NodeSpec, Topology, build

REPO = Path(__file__).resolve().parents[2]
OFTP_PORT, HTTP_PORT, GATEWAY_PORT, EDGE_PORT = 4433, 8000, 8080, 8090
START_TIMEOUT = 90.0  #: seconds a node may take to print its first line (a loaded machine)
#: s the viewers' joins wait at most for the CDN edges to hold a keyframe of the stream
#: (``--cold-edges`` off); their /stats is read every EDGE_WARM_POLL s meanwhile
EDGE_WARM_TIMEOUT, EDGE_WARM_POLL = 15.0, 0.1
REBIND_PORT = 40000  #: a rebound node's new public port is this + its port % 1000
DISCOVERY = ("tracker", "link")  #: how viewers find peers (--discovery)
#: a viewer offers at most this share of its access uplink to relay (``--upload-share``; the
#: simulator's scenario default ``upload_share``)
UPLOAD_SHARE = 0.8
START_CONCURRENCY = 4  #: viewers starting at once (imports are CPU-heavy on 2 cores)
#: The broadcaster's scheduling group runs at this nice (``--broadcaster-nice``; 0: as every
#: node). In the world it has a machine of its own; here it shares two cores with 29
#: viewers and 11 edges, and each wait for a core delays a chunk for the whole swarm. At -5
#: the edges' feed lag fell to near the network's (China p95 ~100 -> ~30 ms) and four pairs
#: went 3 up, 1 down, but four more on a busier machine went the other way: the mean of
#: eight fell 0.9881 -> 0.9806 once playing (docs/benchmarks.md, session 35). Off.
BROADCASTER_NICE = 0


class Interrupted(Exception):
    """SIGTERM or SIGINT: stop, clean up, exit."""


def _on_signal(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _delayer_preexec() -> None:
    """The delayer is the testbed's wires: in the world they share no CPU with the
    nodes. On a machine the nodes saturate, a delayer scheduled like them released
    packets late by p99 0.3-1.8 s (30 nodes, 2 cores), which no network does; so it
    runs at real-time round-robin priority 1 (it takes ~13 % of a core; the kernel
    keeps 5 % of each second for everyone else). Without the privilege it runs as
    before (the JSON says which: ``delayer.realtime``)."""
    die_with_parent()
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    except (OSError, AttributeError):
        pass


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used so far (None: it is gone). Read
    from ``/proc/<pid>/stat`` (fields 14 and 15, in clock ticks; the name in field 2 may hold
    spaces and parentheses, so the fields are counted after its closing one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def cpu_by_role(cpu: dict[str, float | None]) -> dict[str, Any]:
    """The nodes' CPU seconds (``process_cpu_s`` by process name: ``b``, ``v<i>``,
    ``edge-<country>``) by role: the broadcaster's, the viewers' sum, median and most, the
    edges' sum; the names whose figure could not be read are counted, not guessed."""
    viewers = sorted(x for n, x in cpu.items() if n.startswith("v") and x is not None)
    edges = [x for n, x in cpu.items() if n.startswith("edge-") and x is not None]
    b = cpu.get("b")
    return {"broadcaster": None if b is None else round(b, 1),
            "viewers_sum": round(sum(viewers), 1),
            "viewer_p50": round(viewers[len(viewers) // 2], 2) if viewers else None,
            "viewer_max": round(viewers[-1], 2) if viewers else None,
            "edges_sum": round(sum(edges), 1),
            "unread": sum(1 for x in cpu.values() if x is None)}


def prioritise(pid: int, nice: int) -> int | None:
    """Give process ``pid`` the scheduling weight of ``nice``; returns the nice its
    scheduling group has afterwards (None if it could not be read). Every node is a
    session of its own, so with the kernel's autogroups (on here) the group's nice, in
    ``/proc/<pid>/autogroup``, is what weighs against the other nodes; the process's own
    is set too, for a kernel without autogroups."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    except OSError:
        pass
    path = Path(f"/proc/{pid}/autogroup")
    try:
        path.write_text(str(nice))
        got = path.read_text().split()
        return int(got[-1]) if len(got) >= 3 and got[-2] == "nice" else None
    except (OSError, ValueError):
        try:
            return os.getpriority(os.PRIO_PROCESS, pid)
        except OSError:
            return None


def _spawn(name: str, ns: str, args: list[str], log_dir: str, trace: bool = False) -> Proc:
    """``python -m <args>`` inside namespace ``ns``, from this source tree. ``trace``: the
    node logs its hole punching and dials (``OASIS_TRACE_PUNCH``, oasis.node.node.trace)."""
    err = open(os.path.join(log_dir, f"{name}.log"), "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if trace:
        env["OASIS_TRACE_PUNCH"] = "1"
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", *args],
                         stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                         start_new_session=True, env=env, preexec_fn=die_with_parent)
    err.close()
    return Proc(name, p)


async def http_json(ns: str, host: str, port: int, path: str, timeout: float = 10.0) -> Any:
    """GET ``path`` from ``host:port`` inside namespace ``ns``; the JSON body, or None."""
    body = await http_get(ns, host, port, path, timeout)
    try:
        return None if body is None else json.loads(body)
    except ValueError:
        return None


async def http_get(ns: str, host: str, port: int, path: str, timeout: float = 10.0) -> bytes | None:
    """GET ``path`` from ``host:port`` inside namespace ``ns`` (HTTP/1.0); the body of a
    200 answer, or None."""
    try:
        sock = netns.ns_socket(ns)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()

        async def get() -> bytes:
            with sock:
                await loop.sock_connect(sock, (host, port))
                reader, writer = await asyncio.open_connection(sock=sock)
                writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                data = await reader.read()
                writer.close()
                return data

        raw = await asyncio.wait_for(get(), timeout)
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
            return None
        return body
    except (OSError, TimeoutError):
        return None


class Testbed:
    """One run: network, delayer, nodes; :meth:`close` undoes all of it."""

    def __init__(self, topo: Topology, *, prefix: str, duration: float, chunk_ms: int,
                 delay_scale: float, progress: Any, keep: bool = False,
                 discovery: str = "tracker", rebind_at: float | None = None,
                 rebind: int = 0, playout_delay: float = 0.5, trace: bool = False,
                 fresh: bool = False, cdn: bool = True, upload_share: float = UPLOAD_SHARE,
                 shield: bool = False, delayer_tick_ms: float = TICK_S * 1000,
                 broadcaster_nice: int = BROADCASTER_NICE, edge_hold: float | None = None,
                 warm_edges: bool = True, far_edges: bool = False, probe: bool = True) -> None:
        if discovery not in DISCOVERY:
            raise ValueError(f"discovery must be one of {', '.join(DISCOVERY)}")
        self.discovery = discovery
        self.trace = trace  #: nodes log hole punching and dials (kept logs: read them)
        self.rebind_at, self.rebind = rebind_at, rebind
        self.rebound: dict[str, float] = {}  #: viewer -> wall-clock time its NAT rebound
        self.playout_delay = playout_delay  #: every node's (the node's default: 0.5 s)
        self.topo, self.prefix, self.duration = topo, prefix, duration
        self.chunk_ms, self.delay_scale, self.progress, self.keep = chunk_ms, delay_scale, progress, keep
        self.root = tempfile.mkdtemp(prefix=f"{prefix}testbed-")
        #: a CDN edge in each viewer country, fed by the origin, the viewers' fallback
        #: (``oasis edge``; without: the fallback asks the broadcaster's origin itself)
        self.cdn = cdn
        #: the edge in the broadcaster's country follows the origin and the others follow it
        #: (a CDN's shield tier: one far feed over the origin's lossy access link, not one per
        #: PoP); without, every edge follows the origin itself
        self.shield = shield
        self.upload_share = upload_share
        self.upload_caps_x: list[float] = []  #: (filled at the end of the run)
        #: the viewers' links' chunk copies reset at their deadline, summed (:data:`CHUNK_DROP_EVENTS`)
        self.chunk_drops: dict[str, int] = {}
        #: False (``--fixed-upload``): every viewer is given its cap, 4 x at most (no probe)
        self.probe = probe
        #: s an edge holds a request for a chunk just ahead of its feed (None: the edge's default)
        self.edge_hold = edge_hold
        #: the edges follow the stream from their start (``oasis edge --follow``, a CDN warmed
        #: for a broadcast) and the viewers join once each has its first keyframe; without,
        #: each edge follows it from its first viewer's request (that viewer waits for it)
        self.warm_edges = warm_edges
        self.edges_warm_s: float | None = None  #: s from the edges' start until all were warm
        self.edges_cold: list[str] = []  #: edges not warm by EDGE_WARM_TIMEOUT (the run goes on)
        self.delayer_tick_ms = delayer_tick_ms  #: the delayer wakes at most this often (0: each packet)
        self.broadcaster_nice = broadcaster_nice  #: its scheduling group's nice (BROADCASTER_NICE)
        self.broadcaster_nice_got: int | None = None  #: what the kernel holds after setting it
        self.cpu_s: dict[str, float | None] = {}  #: each node's CPU seconds at the end of the run
        self.net = netns.Network(topo, prefix, on_progress=progress.status, edges=cdn,
                                 shield=cdn and shield,
                                 pop_rtt_ms=None if far_edges else CDN_EDGE_RTT_MS)
        self.edge_procs: dict[str, Proc] = {}  #: country -> its edge
        self.procs: list[Proc] = []
        self.delayer: subprocess.Popen[str] | None = None
        self.delayer_stats: dict[str, Any] | None = None
        self.started: dict[str, float] = {}
        #: viewers as fresh interpreters (``ip netns exec python -m oasis``), not forked from
        #: the launcher: 29 interpreters importing at once kept both cores busy through the
        #: joins (each ~0.6 CPU-s), which no viewer on a device of its own pays
        self.fresh = fresh
        self.zygote: Zygote | None = None

    def build(self) -> None:
        t0 = time.monotonic()
        self.net.build()
        self.setup_s = time.monotonic() - t0
        table = os.path.join(self.root, "delays.json")
        Path(table).write_text(json.dumps(self.net.delay_table()))
        Path(self.root, "topology.json").write_text(self.topo.dumps())
        self.delayer = subprocess.Popen(
            ["ip", "netns", "exec", self.net.core, sys.executable, "-m", "oasis.testbed.delayer",
             table, "--scale", str(self.delay_scale), "--tick-ms", str(self.delayer_tick_ms)],
            stdout=subprocess.PIPE, stderr=open(os.path.join(self.root, "delayer.log"), "wb"),  # noqa: SIM115
            stdin=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True, preexec_fn=_delayer_preexec)
        assert self.delayer.stdout is not None
        line = self.delayer.stdout.readline()  # bounded: it prints at once or exits
        if not line.startswith('{"ready"'):
            raise RuntimeError(f"the delayer did not start; see {self.root}/delayer.log")

    async def run(self) -> dict[str, Any]:
        topo, net = self.topo, self.net
        b = topo.broadcaster
        bp = net.placement[b.name]
        bitrate = topo.bitrate_kbps
        self.progress.status("starting the broadcaster…")
        bproc = _spawn("b", bp.ns, ["oasis", "broadcast", "test", "--bitrate", str(bitrate),
                                    "--chunk-ms", str(self.chunk_ms), "--json",
                                    "--playout-delay", str(self.playout_delay),
                                    "--listen", f"{bp.addr}:{OFTP_PORT}", "--http", f"{bp.addr}:{HTTP_PORT}",
                                    # its /stats and /metrics are read at {bp.addr}, not loopback
                                    "--public-metrics",
                                    "--upload-kbps", str(2 * bitrate), "--area", b.country,
                                    "--data-dir", os.path.join(self.root, "b")], self.root, self.trace)
        self.procs.append(bproc)
        if self.broadcaster_nice:
            self.broadcaster_nice_got = prioritise(bproc.popen.pid, self.broadcaster_nice)
        if not self.fresh:  # the launcher imports while the broadcaster starts
            env = {"PYTHONPATH": str(REPO)} | ({"OASIS_TRACE_PUNCH": "1"} if self.trace else {})
            self.zygote = Zygote(env=env)
        binfo = await _first_line(bproc, START_TIMEOUT)
        self.started[b.name] = time.monotonic()
        if self.zygote is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.zygote.wait_ready, START_TIMEOUT)
            except (OSError, RuntimeError) as exc:
                self.progress.status(f"viewers start as fresh interpreters (the launcher failed: {exc})")
                self.zygote = None
        self.progress.status(f"broadcaster up: tracker {binfo['tracker']}")
        await self._start_edges(binfo["origin"], binfo["stream_id"])
        t0 = time.monotonic()
        gate = asyncio.Semaphore(START_CONCURRENCY)
        vprocs: dict[str, Proc] = {}

        if self.discovery == "link":
            # the broadcaster's link without its tracker: the DHT (bootstrapped at the
            # broadcaster) and NEIGHBOURS are the viewers' only discovery
            lk = parse_link(binfo["link"])
            join = [StreamLink(lk.sid, lk.descriptor, lk.bootstrap, None).format()]
        else:
            join = [binfo["stream_id"], "--tracker", binfo["tracker"]]

        async def start(v: NodeSpec) -> None:
            wait = t0 + v.join_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the topology's join schedule, not a synchronisation
            async with gate:
                p = net.placement[v.name]
                argv = [
                    "watch", *join,
                    # a port of its own: behind a shared CGN, nodes on one port would make
                    # the NAT remap all but one (real phones pick random ports)
                    "--gateway", f"127.0.0.1:{GATEWAY_PORT}",
                    "--listen", f"{p.addr}:{OFTP_PORT + 1 + topo.viewers.index(v)}",
                    *self.upload_args(v), "--area", v.country, "--json",
                    "--playout-delay", str(self.playout_delay),
                    "--data-dir", os.path.join(self.root, v.name)]
                edge = net.edge_placement.get(v.country)
                if edge is not None:  # its country's CDN edge (as a CDN's DNS would name)
                    argv += ["--cdn-url", f"http://{edge.addr}:{EDGE_PORT}/origin"]
                if self.zygote is not None:  # forked inside its namespace: imports done
                    proc = Proc(v.name, self.zygote.spawn(argv, os.path.join(self.root, f"{v.name}.log"),
                                                          netns=p.ns))
                else:
                    proc = _spawn(v.name, p.ns, ["oasis", *argv], self.root, self.trace)
                self.procs.append(proc)
                vprocs[v.name] = proc
                await _first_line(proc, START_TIMEOUT)
                self.started[v.name] = time.monotonic()
                self.progress.status(f"viewers started {len(self.started) - 1}/{len(topo.viewers)}")

        await asyncio.gather(*[start(v) for v in topo.viewers])
        startup_all_s = time.monotonic() - t0
        viewers = topo.viewers
        t_run = time.monotonic()
        t_end = t_run + self.duration
        movers = [v.name for v in viewers if v.nat == "eim"][:self.rebind]
        if self.rebind_at is not None and len(movers) < self.rebind:
            self.progress.status(f"--rebind {self.rebind}: only {len(movers)} viewers sit behind a home "
                                 "router (eim), the only kind a new public port applies to; moving those")
        while (left := t_end - time.monotonic()) > 0:
            if (movers and not self.rebound and self.rebind_at is not None
                    and time.monotonic() - t_run >= self.rebind_at):
                for name in movers:
                    port = OFTP_PORT + 1 + [v.name for v in viewers].index(name)
                    net.rebind(name, port, REBIND_PORT + port % 1000)
                    self.rebound[name] = time.time()
                self.progress.status(f"rebound the NAT of {', '.join(movers)}")
            stats = await asyncio.gather(*[self._stats(v) for v in viewers])
            self.progress.tick(self.duration - left, self.duration, stats)
            for p in self.procs:
                if p.popen.poll() is not None:
                    raise RuntimeError(f"{p.name} exited early with code {p.popen.returncode}; "
                                       f"see {self.root}/{p.name}.log")
            nap = min(2.0, left)
            if movers and not self.rebound and self.rebind_at is not None:
                nap = max(0.0, min(nap, t_run + self.rebind_at - time.monotonic()))
            await asyncio.sleep(nap)  # the run's length, not a synchronisation
        final = await asyncio.gather(*[self._stats(v, detail=True) for v in viewers])
        # each node's CPU so far (from its start: imports, joins and the run): where the
        # machine's two cores went, by role
        self.cpu_s = {p.name: process_cpu_s(p.popen.pid) for p in self.procs}
        if self.trace:
            self._dump_conntrack()
        vmetrics = await asyncio.gather(*[http_get(net.placement[v.name].ns, "127.0.0.1", GATEWAY_PORT,
                                                   "/metrics") for v in viewers])
        caps: list[float] = []  # each viewer's upload cap at the end, x the bitrate (§9.7)
        self.chunk_drops = dict.fromkeys(CHUNK_DROP_EVENTS, 0)
        for s, m in zip(final, vmetrics, strict=True):
            text = (m or b"").decode(errors="replace")
            if s is not None:
                s["discovery"] = metric_events(text, "oasis_discovery_events_total")
            ep = metric_events(text, "oasis_endpoint_events_total")
            for k in CHUNK_DROP_EVENTS:
                self.chunk_drops[k] += ep.get(k, 0)
            cap = metric_gauge(text, "oasis_upload_cap_kbps")
            if cap is not None:
                caps.append(round(cap / topo.bitrate_kbps, 2))
        self.upload_caps_x = sorted(caps)
        bstats = await http_json(bp.ns, bp.addr, HTTP_PORT, "/stats?detail=1")
        edge_stats = {c: await http_json(net.edge_placement[c].ns, net.edge_placement[c].addr, EDGE_PORT,
                                         "/stats") for c in self.edge_procs}
        metrics = await http_get(bp.ns, bp.addr, HTTP_PORT, "/metrics") or b""
        # every node's /stats?detail=1 beside its log (kept with them: --keep, or a failure)
        for name, s in [*((v.name, s) for v, s in zip(viewers, final, strict=True)), (b.name, bstats)]:
            if s is not None:
                Path(self.root, f"{name}.stats.json").write_text(json.dumps(s))
        now = time.time()
        args = argparse.Namespace(viewers=len(viewers), duration=self.duration, chunk_ms=self.chunk_ms,
                                  playout_delay=self.playout_delay)
        result = _summary(args, bitrate, list(final), bstats, now)
        if result.get("errors"):  # what the nodes logged of it (the logs go at close)
            result["error_detail"]["violation_lines"] = _violation_lines(self.root)
        result["by_nat"] = by_nat(topo, list(final), bstats, now, self.playout_delay)
        result["by_viewer"] = viewer_table(topo, list(final), bstats, now, self.playout_delay)
        # the viewers' starts, step by step from each join (LiveStream.start_trace)
        result["start"] = start_figures(result.get("per_viewer", []))
        # how long before the judgement each viewer's /stats was taken: the chunks due in
        # between are judged in a later record or not at all (metrics.judged_until)
        taken = sorted(now - 1.0 - s["streams"][0]["record"]["at"] for s in final
                       if s is not None and s.get("streams") and "at" in s["streams"][0]["record"])
        result["stats_before_judged_s"] = ({"p50": round(taken[len(taken) // 2], 3), "max": round(taken[-1], 3)}
                                           if taken else None)
        result["tracker"] = _tracker_view(topo, metrics.decode(errors="replace"), net)
        result["dht"] = dht_view(list(final))
        result["cdn"] = cdn_view(edge_stats) if self.cdn else None
        if result["cdn"] is not None:
            # what the CDN answered with a chunk against what the viewers took from the origin
            # first: the rest came after a peer's copy (offload counts first copies only)
            cdn = result["cdn"]
            cdn["chunks_served"] = cdn["hits"] + cdn["hold_hits"] + cdn["pulls"]
            cdn["chunks_taken_first"] = sum(sum((v.get("origin_chunks") or {}).values())
                                            for v in result["by_viewer"].values())
        if self.rebound:
            result["migration"] = migration_view(topo, list(final), bstats, self.rebound,
                                                 self.chunk_ms)
        # per viewer: its NAT, what it learnt, its neighbours and punches (GET /stats?detail=1)
        result["nat_detail"] = {v.name: {"nat": v.nat, "peer": key_of_peer_id(s["peer_id"]).hex()[:16],
                                         **s.get("nat", {})}
                                for v, s in zip(viewers, final, strict=True) if s is not None}
        result["testbed"] = {"nodes": len(topo.nodes), "setup_s": round(self.setup_s, 1),
                             "cpu_s_by_role": cpu_by_role(self.cpu_s),
                             "loop_lag_ms": loop_lag_view(bstats, list(final)),
                             "viewers_started_in_s": round(startup_all_s, 1),
                             "viewers_forked": self.zygote is not None,
                             "cdn_edges": len(self.edge_procs),
                             "cdn_shield": self.topo.broadcaster.country if self.shield and self.edge_procs
                             else None,
                             "upload_share": self.upload_share,
                             # each viewer's cap at the end, x the bitrate (its probe's, or fixed)
                             "upload_caps_x": self.upload_caps_x, "upload_probe": self.probe,
                             # copies the viewers' links reset at their deadline, summed
                             "chunk_drops": self.chunk_drops,
                             "edge_hold_s": self.edge_hold if self.edge_hold is not None else EDGE_HOLD_S,
                             "edges_warm": self.warm_edges and self.cdn, "edges_warm_s": self.edges_warm_s,
                             "edges_cold": self.edges_cold,
                             # a PoP's round trip to its viewers' metro (ms; None: --far-edges)
                             "edge_rtt_ms": self.net.pop_rtt_ms if self.cdn else None,
                             "broadcaster_nice": self.broadcaster_nice_got if self.broadcaster_nice else 0,
                             "delayer_tick_ms": self.delayer_tick_ms,
                             "discovery": self.discovery, "playout_delay": self.playout_delay,
                             "delay_scale": self.delay_scale, "seed": topo.seed,
                             "nat_share": topo.notes.get("nat_share"),
                             "countries": sorted({n.country for n in topo.nodes})}
        return result

    def upload_kbps(self, v: NodeSpec) -> int | None:
        """What viewer ``v`` offers to relay (``--upload-kbps``): None (no flag, the node's
        default: 4 x the bitrate, probed between 1 x and 8 x against its children's hop delay,
        :mod:`oasis.core.uplink`) unless :attr:`probe` is off (``--fixed-upload``); then
        ``upload_share`` of its access link's uplink, at most 4 x the bitrate, fixed, as a user
        who knows their link sets it (``upload_share`` 0: 4 x whatever the link; before
        2026-12-04 a 4G viewer with 1.3 Mbit/s up was asked for 6 and its uplink's queue held
        every packet it sent ~200 ms: the probe now cuts such a cap, as the simulator models
        every viewer: ``Scenario.upload_floor_x``). Session 62's testbed gave the flag to the
        viewers whose link was short of 4 x and probed only the others."""
        if self.probe:
            return None
        full = UPLOAD_X * self.topo.bitrate_kbps
        if self.upload_share <= 0 or self.upload_share * v.up_kbps >= full:
            return full
        return max(1, int(self.upload_share * v.up_kbps))

    def upload_args(self, v: NodeSpec) -> list[str]:
        """``--upload-kbps`` for viewer ``v``, or nothing (:meth:`upload_kbps`)."""
        kbps = self.upload_kbps(v)
        return [] if kbps is None else ["--upload-kbps", str(kbps)]

    async def _start_edges(self, origin: str, stream_id: str) -> None:
        """One ``oasis edge`` in each viewer country's PoP (forked by the launcher when there
        is one, as the viewers), each following ``origin``. With :attr:`shield` there is one
        in the broadcaster's country too, started first: it follows ``origin`` and the
        others follow it, over the core. With :attr:`warm_edges` each follows ``stream_id``
        from its start, and this returns once each holds a keyframe of it (at most
        ``EDGE_WARM_TIMEOUT`` s: a cold one is named in the result, not waited for)."""
        home = self.topo.broadcaster.country
        order = sorted(self.net.edge_placement.items(), key=lambda cp: (cp[0] != home, cp[0]))
        for country, p in order:
            upstream = origin
            if self.shield and country != home:
                upstream = f"http://{self.net.edge_placement[home].addr}:{EDGE_PORT}/origin"
            argv = ["edge", "--origin", upstream, "--listen", f"{p.addr}:{EDGE_PORT}",
                    "--public-metrics"]  # its /stats is read at its address, not loopback
            if self.edge_hold is not None:
                argv += ["--hold", f"{self.edge_hold:g}"]
            if self.warm_edges:
                argv += ["--follow", stream_id]
            name = f"edge-{country}"
            if self.zygote is not None:
                proc = Proc(name, self.zygote.spawn(argv, os.path.join(self.root, f"{name}.log"), netns=p.ns))
            else:
                proc = _spawn(name, p.ns, ["oasis", *argv], self.root, self.trace)
            self.procs.append(proc)
            self.edge_procs[country] = proc
            if country == home:  # the shield answers before an edge asks it for a feed
                await _first_line(proc, START_TIMEOUT)
        for country, proc in self.edge_procs.items():
            if country != home:
                await _first_line(proc, START_TIMEOUT)
        if self.edge_procs:
            self.progress.status(f"{len(self.edge_procs)} CDN edges up "
                                 f"({', '.join(sorted(self.edge_procs))}"
                                 f"{f'; {home} the shield' if self.shield else ''})")
        if self.warm_edges and self.edge_procs:
            await self._edges_warm(stream_id)

    async def _edges_warm(self, stream_id: str) -> None:
        """Wait until every edge's feed of ``stream_id`` is up and has brought a keyframe (its
        ``/stats``), at most ``EDGE_WARM_TIMEOUT`` s; the edges still cold then are kept in
        :attr:`edges_cold` (and the result), and the run goes on."""
        t0 = time.monotonic()
        left = set(self.edge_procs)
        for _ in range(int(EDGE_WARM_TIMEOUT / EDGE_WARM_POLL) + 1):  # (bounded in count and time)
            for country in sorted(left):
                p = self.net.edge_placement[country]
                st = await http_json(p.ns, p.addr, EDGE_PORT, "/stats", timeout=2.0)
                f = (st or {}).get("streams", {}).get(stream_id) if isinstance(st, dict) else None
                if isinstance(f, dict) and f.get("connected") and f.get("latest", -1) >= 0:
                    left.discard(country)
            if not left or time.monotonic() - t0 > EDGE_WARM_TIMEOUT:
                break
            await asyncio.sleep(EDGE_WARM_POLL)  # a poll of the edges' /stats, not a synchronisation
        self.edges_warm_s = round(time.monotonic() - t0, 2)
        self.edges_cold = sorted(left)
        self.progress.status(f"CDN edges warm in {self.edges_warm_s:.1f} s"
                             + (f" (still cold: {', '.join(self.edges_cold)})" if left else ""))

    def _dump_conntrack(self) -> None:
        """Each NAT namespace's conntrack table (``/proc/net/nf_conntrack``, per namespace)
        beside the logs as ``<router>.conntrack``: which flows a NAT mapped to which port (a
        punch's far NAT holding an entry for the peer's early packet shows here)."""
        for ns in self.net.namespaces:
            short = ns[len(self.net.prefix):]
            if not (short.startswith("r") or short.startswith("g")):
                continue
            try:
                text = netns.run(["ip", "netns", "exec", ns, "cat", "/proc/net/nf_conntrack"], check=False)
            except (OSError, subprocess.SubprocessError, netns.NetError):
                continue
            Path(self.root, f"{short}.conntrack").write_text(text)

    async def _stats(self, v: NodeSpec, detail: bool = False) -> dict[str, Any] | None:
        if v.name not in self.started:
            return None
        path = "/stats?detail=1" if detail else "/stats"
        s: dict[str, Any] | None = await http_json(self.net.placement[v.name].ns, "127.0.0.1",
                                                   GATEWAY_PORT, path)
        return s

    def close(self, keep_logs: bool = False) -> list[str]:
        """Stop every process, then remove the network. Returns what went wrong.
        ``keep_logs``: the run failed, keep its directory (the logs an error points to)."""
        problems = []
        failed = _stop_all(self.procs)
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None
        if failed:
            problems.append(f"{failed} node processes exited with an error or had to be killed")
        if self.delayer is not None:
            if self.delayer.poll() is None:
                self.delayer.send_signal(signal.SIGTERM)
            try:
                out, _ = self.delayer.communicate(timeout=10)
                self.delayer_stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
            except (subprocess.TimeoutExpired, ValueError):
                self.delayer.kill()
                self.delayer.communicate()
        claimed = self.net.lock is not None  # (else what has the prefix is another run's)
        problems += self.net.teardown()
        left = netns.leftovers(self.prefix) if claimed else []
        if left:
            problems.append(f"left behind: {left}")
        if self.keep or keep_logs:
            try:
                os.makedirs(self.root, exist_ok=True)  # (removed under a live run by older code)
                with open(os.path.join(self.root, KEPT_MARK), "w") as f:  # --cleanup leaves it
                    f.write("kept on purpose: " + ("--keep" if self.keep else "the run failed") + "\n")
            except OSError as exc:
                problems.append(f"its log directory {self.root} cannot be kept: {exc.strerror}")
            self.progress.status(f"logs and topology kept in {self.root}"
                                 + ("" if self.keep else " (the run failed; remove it when done)"))
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        return problems


KEPT_MARK = "KEPT"  #: in a run's directory that was kept on purpose (--keep, or it failed)


def cleanup_logs(tmp: str | None = None) -> tuple[list[str], list[str]]:
    """Remove the directories of runs that were killed outright (their process is gone and
    they never reached ``close``); keep those a run kept on purpose. Returns (removed, kept)."""
    tmp = tmp or tempfile.gettempdir()
    removed, kept = [], []
    for name in sorted(os.listdir(tmp)):
        m = netns.PREFIX_RE.match(name)
        path = os.path.join(tmp, name)
        if not (m and name[m.end():].startswith("testbed-") and os.path.isdir(path)):
            continue
        if netns.prefix_live(m.group(0)):
            continue
        if os.path.exists(os.path.join(path, KEPT_MARK)):
            kept.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed, kept


def cdn_view(edge_stats: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The CDN edges' counters summed, and each edge's (None: its /stats did not answer)."""
    keys = ("hits", "misses_ahead", "holds", "hold_hits", "hold_timeouts", "holds_refused", "cold_feed_hits", "pulls", "pull_failures", "passed", "pass_failures",
            "feed_connects", "feed_failures", "feed_bad_chunks", "feed_refused", "feed_copies", "feeds_out")
    ok = [s for s in edge_stats.values() if s is not None]
    return {"edges": len(edge_stats), "answered": len(ok),
            **{k: sum(int(s.get(k, 0)) for s in ok) for k in keys},
            "per_edge": {c: None if s is None else {k: s.get(k) for k in keys} | {
                         "streams": s.get("streams"), "loop_lag_ms": s.get("loop_lag_ms")}
                         for c, s in sorted(edge_stats.items())}}


_KIND_NAMES = {0: "unknown", 1: "public", 2: "eim", 3: "symmetric"}  #: oasis.core.nat.NatKind


def loop_lag_view(bstats: dict[str, Any] | None, final: list[dict[str, Any] | None]) -> dict[str, Any]:
    """How late the nodes' event loops ran what was due, their last minute (``/stats``
    ``loop_lag_ms``, ms): the broadcaster's figures, and the viewers' p95 median and most."""
    p95 = sorted(lag["p95"] for s in final if s and isinstance(lag := s.get("loop_lag_ms"), dict))
    return {"broadcaster": (bstats or {}).get("loop_lag_ms"),
            "viewers_p95_median": p95[len(p95) // 2] if p95 else None,
            "viewers_p95_max": p95[-1] if p95 else None}


def by_nat(topo: Topology, final: list[dict[str, Any] | None], bstats: dict[str, Any] | None,
           now: float, playout_delay: float = 0.5) -> dict[str, Any]:
    """Figures per NAT kind: the demo's summary of that kind's viewers, and how many of
    them relayed to anyone, had a neighbour, or were refused by the tracker."""
    if bstats is None:
        return {}
    produced = {int(k): v for k, v in bstats["streams"][0]["produced"].items()}
    out: dict[str, Any] = {}
    for kind in sorted({v.nat for v in topo.viewers}):
        stats = [s for v, s in zip(topo.viewers, final, strict=True) if v.nat == kind]
        ok = [s for s in stats if s is not None]
        records = [s["streams"][0]["record"] for s in ok]
        summ = summarize(records, produced, now - 1.0, playout_delay=playout_delay)
        missed: dict[str, int] = {}  # where this kind's missed chunks fall (demo's phases)
        for st in ok:
            for k, n in missed_by_phase(st["streams"][0]["record"], produced, now - 1.0, playout_delay,
                                        st["streams"][0].get("start")).items():
                missed[k] = missed.get(k, 0) + n
        out[kind] = {
            "viewers": len(stats),
            "continuity": summ["continuity"],
            "continuity_playing": summ["continuity_playing"],
            "offload_ratio": summ["offload_ratio"],
            "latency_ms_p50": summ["latency_ms"]["p50"], "latency_ms_p95": summ["latency_ms"]["p95"],
            "startup_ms_p50": summ["startup_ms"]["p50"],
            "relaying": sum(1 for s in ok if s["streams"][0]["upload"]["released_bytes"] > 0),
            "with_neighbours": sum(1 for s in ok if s["streams"][0]["neighbours"] > 0),
            "with_tracker_errors": sum(1 for s in ok if s.get("discovery", {}).get("tracker_errors", 0)),
            "bytes": summ["bytes"],
            "missed": missed,
            # the origin fallback: fetches, those not answered in time, and the viewers'
            # last failures by kind
            "origin_fetches": sum(s["streams"][0].get("origin_fetches", 0) for s in ok),
            "origin_failures": sum(s["streams"][0].get("origin_failures", 0) for s in ok),
            "origin_last_errors": dict(collections.Counter(
                (s["streams"][0].get("origin_error") or "?").split(" after ")[0][:80]
                for s in ok if s["streams"][0].get("origin_failures", 0)).most_common(3)),
            # what the node learnt of its own address (OBSERVED, docs/oftp.md §15.1) and
            # its hole punches (§15.3): nat_kind 0 unknown, 1 public, 2 EIM, 3 symmetric
            "mapping_learnt": dict(sorted(collections.Counter(
                _KIND_NAMES.get(s.get("counters", {}).get("nat_kind", 0), "unknown") for s in ok).items())),
            "punches_sent": sum(s.get("counters", {}).get("nat_punch_intros_sent", 0) for s in ok),
            "punches_answered": sum(s.get("counters", {}).get("nat_punch_go_received", 0) for s in ok),
            "punches_accepted": sum(s.get("counters", {}).get("nat_punch_accepted", 0) for s in ok),
            # direct dials, and candidates held back because two dials to their IP were under
            # way (``max_dials_per_ip``: viewers behind one carrier-grade NAT share an IP)
            **{k: sum(s.get("counters", {}).get(k, 0) for s in ok)
               for k in ("dial_attempts", "dial_failures", "dials_held_per_ip", "links_duplicate",
                         "links_redialled")},
        }
    return out


def viewer_table(topo: Topology, final: list[dict[str, Any] | None], bstats: dict[str, Any] | None,
                 now: float, playout_delay: float = 0.5) -> dict[str, Any]:
    """One row per viewer, to find where a run's missed chunks are: its link (country,
    access, NAT), continuity once playing, its misses while playing (after ``SETTLE_S``) as
    runs of consecutive chunks (``miss_runs``: how many, ``longest``: chunks; many short
    runs are losses, one long run a stall), its misses in the first ``SETTLE_S`` s of
    playback (``missed_settling``) and where its start keyframe came from, p95 latency, the
    origin fallback's fetches and failures, and the bytes by source."""
    if bstats is None or not bstats.get("streams"):
        return {}
    produced = {int(k): v for k, v in bstats["streams"][0]["produced"].items()}
    names = tag_names(topo, final, bstats)
    out: dict[str, Any] = {}
    for v, s in zip(topo.viewers, final, strict=True):
        if s is None or not s.get("streams"):
            out[v.name] = None
            continue
        st = s["streams"][0]
        rec = st["record"]
        summ = summarize([rec], produced, now - 1.0, playout_delay=playout_delay)
        on_time = set(rec["on_time"])
        runs: list[int] = []
        run = 0
        settling = 0  # missed in the first SETTLE_S s of playback
        until = judged_until(rec, now - 1.0)  # (due after its /stats: undecided in it)
        if rec["started_at"] is not None:
            t0 = rec["started_at"] + SETTLE_S
            settling = sum(1 for k, t in produced.items() if rec["started_at"] <= t < t0
                           and t + playout_delay <= until and k not in on_time)
            for seq in sorted(k for k, t in produced.items() if t0 <= t and t + playout_delay <= until):
                if seq in on_time:
                    if run:
                        runs.append(run)
                    run = 0
                else:
                    run += 1
            if run:
                runs.append(run)
        out[v.name] = {"country": v.country, "access": v.access, "nat": v.nat,
                       "continuity_playing": summ["continuity_playing"],
                       "miss_runs": len(runs), "missed_playing": sum(runs),
                       "longest": max(runs, default=0),
                       "missed_settling": settling,
                       "start_source": st.get("start_source", ""),
                       "latency_ms_p95": summ["latency_ms"]["p95"],
                       "origin_fetches": st.get("origin_fetches", 0),
                       "origin_failures": st.get("origin_failures", 0),
                       "origin_late": st.get("origin_late", 0),
                       "origin_refused": st.get("origin_refused", 0),
                       # chunks that arrived after their deadline, by the source that brought
                       # them (a late one is a miss; an origin fetch may deliver late)
                       "late_by_source": rec.get("late_by_source", {}),
                       # how long its fetches took (ms, less an edge's hold), and the late ones
                       "origin_fetch_ms": st.get("origin_fetch_ms"),
                       "origin_fetch_late_ms": st.get("origin_fetch_late_ms"),
                       # TCP connections its HTTP client opened (a fetch on a fresh one pays a
                       # handshake first)
                       "http_connects": s.get("counters", {}).get("http_connects"),
                       # s from its join until a parent had pushed it a chunk on every substream
                       "fed_s": st.get("fed_s"),
                       # chunks it took from the origin before fed_s and after
                       "origin_chunks": st.get("origin_chunks"),
                       # parents it dropped for a substream as withholding, the suspicions their
                       # pushes cleared (``withhold_confirm``), strikes, and peers it cut off for it
                       "withholding": _withholding(st.get("swarm_counters", {})),
                       # per substream, the relays between the broadcaster and it at the end
                       # (topology names; "?" a tag of no node here)
                       "paths": [[names.get(t, "?") for t in p[1:-1]] if p else None
                                 for p in st.get("paths", [])],
                       "bytes": summ["bytes"]}
    return out


def _withholding(counters: dict[str, Any]) -> dict[str, int]:
    """A viewer's withholding verdicts, from its swarm counters (zeros if it has none)."""
    return {name: int(counters.get(key, 0)) for name, key in (
        ("dropped", "parents_withholding"), ("cleared", "withhold_cleared"),
        ("strikes", "withhold_strikes"), ("cut_off", "withholders_dropped"))}


def tag_names(topo: Topology, final: list[dict[str, Any] | None],
              bstats: dict[str, Any] | None) -> dict[str, str]:
    """Each node's tree-path tag (hex, ``identity.peer_tag``) -> its topology name."""
    out: dict[str, str] = {}
    for spec, s in zip([topo.broadcaster, *topo.viewers], [bstats, *final], strict=True):
        if s is None:
            continue
        try:
            out[peer_tag(key_of_peer_id(s["peer_id"])).hex()] = spec.name
        except (KeyError, TypeError, ValueError):
            continue
    return out


def longest_gap(on_time: set[int], produced: dict[int, float], t0: float, t1: float) -> int:
    """The longest run of consecutive chunks produced in [t0, t1] that did not play on time."""
    best = run = 0
    for seq in sorted(k for k, t in produced.items() if t0 <= t <= t1):
        run = 0 if seq in on_time else run + 1
        best = max(best, run)
    return best


def migration_view(topo: Topology, final: list[dict[str, Any] | None], bstats: dict[str, Any] | None,
                   rebound: dict[str, float], chunk_ms: int, window: float = 10.0) -> dict[str, Any]:
    """Playback gaps around a NAT rebinding (``--rebind-at``): for each rebound viewer and,
    as the control group, every other viewer, the longest run of chunks produced from 0.5 s
    before the rebinding to ``window`` s after it that did not play on time, in seconds;
    and the links peers migrated (``link_migrations``, all viewers)."""
    if bstats is None or not bstats.get("streams"):
        return {}
    produced = {int(k): v for k, v in bstats["streams"][0].get("produced", {}).items()}
    t = min(rebound.values())
    gaps: dict[str, float] = {}
    for v, s in zip(topo.viewers, final, strict=True):
        if s is None or not s.get("streams"):
            continue
        on_time = set(s["streams"][0].get("record", {}).get("on_time", []))
        gaps[v.name] = round(longest_gap(on_time, produced, t - 0.5, t + window) * chunk_ms / 1000, 3)
    movers = sorted(rebound)
    others = sorted(g for k, g in gaps.items() if k not in rebound)
    return {"rebound": movers, "gap_s": {k: gaps.get(k) for k in movers},
            "control_gap_s_median": others[len(others) // 2] if others else None,
            "control_gap_s_max": others[-1] if others else None,
            "link_migrations": sum(s["counters"].get("link_migrations", 0) for s in [*final, bstats] if s),
            "link_probes": sum(s["counters"].get("link_probes", 0) for s in [*final, bstats] if s)}


def dht_view(final: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The viewers' DHT at the end (docs/oftp.md §17.8): how many found providers by it,
    contacts and neighbours (medians), service links, lookups and failures (sums)."""
    cs = [s["counters"] for s in final if s is not None]
    if not cs:
        return {}

    def med(xs: list[int]) -> float:
        xs = sorted(xs)
        return float(xs[len(xs) // 2])

    return {"viewers": len(cs),
            "found_providers": sum(1 for c in cs if c.get("dht_providers_offered", 0) > 0),
            "contacts_median": med([c.get("dht_contacts", 0) for c in cs]),
            "neighbours_median": med([len(s.get("nat", {}).get("neighbours", []))
                                      for s in final if s is not None]),
            **{k: sum(c.get(k, 0) for c in cs) for k in (
                "dht_lookups_started", "dht_lookups_timed_out", "dht_timeouts",
                "dht_providers_offered", "dht_dials", "dht_dial_failures", "dht_records_rejected",
                "links_service", "links_service_closed", "links_service_promoted")}}


def _tracker_view(topo: Topology, metrics: str, net: netns.Network) -> dict[str, Any]:
    """What the tracker saw: its event counters (from the broadcaster's /metrics) and the
    addresses NATed viewers announce (their own, not their NAT's)."""
    events = metric_events(metrics, "oasis_tracker_events_total")
    natted = [v for v in topo.viewers if v.nat != "public"]
    return {"events": events, "viewers_behind_nat": len(natted),
            "natted_listen_addresses": sorted({net.placement[v.name].addr for v in natted})}


def metric_gauge(text: str, family: str) -> float | None:
    """The first sample of a Prometheus gauge family (None: not there)."""
    for line in text.splitlines():
        if line.startswith(family + "{") or line.startswith(family + " "):
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


#: the viewers' endpoint counters of chunk copies not sent in time (docs/oftp.md §2)
CHUNK_DROP_EVENTS = ("chunk_streams_reset",)


def metric_events(text: str, family: str) -> dict[str, int]:
    """``{event: value}`` of a Prometheus counter family labelled by ``event``."""
    out = {}
    for line in text.splitlines():
        if line.startswith(family + "{") and 'event="' in line:
            out[line.split('event="', 1)[1].split('"', 1)[0]] = int(float(line.rsplit(" ", 1)[1]))
    return out


class Progress:
    """Terminal progress with rich (stderr when --json, so stdout stays one JSON object)."""

    def __init__(self, to_stderr: bool) -> None:
        from rich.console import Console
        self.console = Console(stderr=to_stderr)

    def status(self, text: str) -> None:
        self.console.print(text)

    def tick(self, elapsed: float, total: float, stats: list[dict[str, Any] | None]) -> None:
        up = [s for s in stats if s]
        p2p = sum(s["streams"][0]["bytes"].get("p2p", 0) for s in up)
        allb = sum(sum(s["streams"][0]["bytes"].values()) for s in up)
        relaying = sum(1 for s in up if s["streams"][0]["upload"]["released_bytes"] > 0)
        self.console.print(f"[{elapsed:5.1f}/{total:.0f}s] viewers answering {len(up)}/{len(stats)} "
                           f"relaying {relaying} offload {100 * p2p / allb if allb else 0:.1f}%")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/testbed.py", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return ap.parse_args(argv)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--viewers", type=int, default=29, help=f"1 to {MAX_VIEWERS} (default 29)")
    ap.add_argument("--duration", type=float, default=60,
                    help="seconds after the last viewer started, at most 86,400 (default 60)")
    ap.add_argument("--bitrate", type=int, default=1500, help="kbit/s, 10 to 1,000,000 (default 1500)")
    ap.add_argument("--chunk-ms", type=int, default=None,
                    help="chunk duration, 10 to 10,000 ms (default: the node's, 33)")
    ap.add_argument("--seed", type=int, default=1, help="draws the topology (default 1)")
    ap.add_argument("--playout-delay", type=float, default=0.5,
                    help="every node's playout delay, s (default 0.5, the node's)")
    ap.add_argument("--nat-share", type=float, default=0.7, help="share of viewers behind a NAT (default 0.7)")
    ap.add_argument("--symmetric-share", type=float, default=0.2,
                    help="share of the NATed that are symmetric (default 0.2)")
    ap.add_argument("--countries", default=None, help="comma-separated ISO codes to draw from "
                    "(default: all, weighted by internet users)")
    ap.add_argument("--loss", type=float, default=None, help="per-packet loss each way (default: the access kind's)")
    ap.add_argument("--join-spread", type=float, default=0.0,
                    help="viewers join over this many seconds, at most 3,600 (default 0: one after the other)")
    ap.add_argument("--delay-scale", type=float, default=1.0,
                    help="multiply every delay, 0 (none) to 100 (default 1)")
    ap.add_argument("--topology", default=None, help="a topology JSON file (instead of drawing one)")
    ap.add_argument("--dump-topology", action="store_true", help="print the topology's JSON and exit")
    ap.add_argument("--prefix", default=f"oas{os.getpid()}-",
                    help="name prefix of this run, oas<digits>- (default oas<pid>-)")
    ap.add_argument("--cleanup", action="store_true",
                    help="remove namespaces and links left by earlier runs that died, then exit")
    ap.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    ap.add_argument("--keep", action="store_true",
                    help="keep logs (hole punching and dials traced), /stats and the topology")
    ap.add_argument("--timeout", type=float, default=None,
                    help="hard limit for the run, seconds (default: the duration + the viewers' starts + 60)")
    ap.add_argument("--rebind-at", type=float, default=None,
                    help="this many seconds into the run, give --rebind viewers behind home routers "
                    "a new public port (a NAT rebinding; their links must migrate)")
    ap.add_argument("--rebind", type=int, default=1, help="how many viewers --rebind-at moves (default 1)")
    ap.add_argument("--fresh", action="store_true",
                    help="viewers as fresh interpreters importing at once (before 2026-12-04), "
                    "not forked from a launcher that has done the imports")
    ap.add_argument("--upload-share", type=float, default=UPLOAD_SHARE,
                    help="with --fixed-upload: a viewer relays at most this share of its access uplink, "
                    f"and at most 4 x the bitrate (default {UPLOAD_SHARE}; 0: 4 x the bitrate whatever "
                    "its link)")
    ap.add_argument("--fixed-upload", dest="probe", action="store_false",
                    help="give every viewer its cap (--upload-share of its uplink, 4 x the bitrate at "
                    "most), as a user who knows their link (default: no cap given; every viewer runs "
                    "the node's default, the uplink probe)")
    ap.add_argument("--no-cdn", dest="cdn", action="store_false",
                    help="no CDN edges: the viewers' fallback asks the broadcaster's origin, in its "
                    "country (by default a CDN edge in each viewer country follows the origin and "
                    "answers it: `oasis edge`)")
    ap.add_argument("--shield", action="store_true",
                    help="a CDN shield tier: the edge in the broadcaster's country follows the origin "
                    "and the others follow that edge (by default every edge follows the origin; "
                    "measured no better over six runs: docs/benchmarks.md, session 34)")
    ap.add_argument("--cold-edges", dest="warm_edges", action="store_false",
                    help="each CDN edge follows the stream from its first viewer's request, and that "
                    "viewer waits for the edge's round trips to the origin (by default the edges are "
                    "warmed for the broadcast, `oasis edge --follow`, before the viewers join)")
    ap.add_argument("--far-edges", action="store_true",
                    help="each CDN PoP at its country's RIPE Atlas same-country round trip from its "
                    "viewers, as before 2026-12-07 (by default in their metro, "
                    f"{CDN_EDGE_RTT_MS:g} ms round trip: the simulator's CDN_EDGE_RTT_MS)")
    ap.add_argument("--edge-hold", type=float, default=None, metavar="S",
                    help="seconds a CDN edge holds a request for a chunk just ahead of its feed "
                    f"(`oasis edge --hold`; default the edge's, {EDGE_HOLD_S:g}; 0: 404 at once)")
    ap.add_argument("--delayer-tick-ms", type=float, default=TICK_S * 1000,
                    help="the delayer wakes at most once this often, releasing what fell due "
                    f"meanwhile (default {TICK_S * 1000:g}; 0: once for each packet, as before "
                    "2026-12-05: 0.40 of a core in a 30-node run against 0.23)")
    ap.add_argument("--broadcaster-nice", type=int, default=BROADCASTER_NICE,
                    help="the broadcaster's scheduling group's nice against the other nodes sharing "
                    "this machine's cores (default 0: the same as every node; -5 measured no "
                    "better over eight pairs: docs/benchmarks.md, session 35)")
    ap.add_argument("--discovery", choices=DISCOVERY, default="tracker",
                    help="how viewers find peers: the broadcaster's tracker, or its oasis:// link "
                    "without a tracker (the DHT and NEIGHBOURS only)")


#: the most viewers a run takes: the core's address plan holds 512 sites (a node, a NAT
#: router or a CDN edge each; netns._site_pair), and 100,000 was taken and would have
#: built namespaces until the plan ran out (found 2026-12-06)
MAX_VIEWERS = 400
#: a topology file's most bytes (400 viewers' nodes take ~100 KB)
MAX_TOPOLOGY_BYTES = 1_000_000
#: a run's prefix names its namespaces and log directory, and ``--cleanup`` finds what a
#: dead run left by it (``oas<pid>-``): ``../x`` was taken as a namespace name
PREFIX_ARG_RE = re.compile(r"oas\d{1,10}-")


def check_args(args: argparse.Namespace) -> None:
    """Options no run can use: a clear error before anything is built (ValueError). (NaN
    fails every comparison here, so each range is written as what it must be within.)"""
    if not 0 < args.duration <= 86_400:
        raise ValueError(f"--duration {args.duration:g}: seconds of stream, more than 0 (at most 86,400)")
    if not 1 <= args.viewers <= MAX_VIEWERS:
        raise ValueError(f"--viewers {args.viewers}: 1 to {MAX_VIEWERS} (the testbed's address plan)")
    if not 10 <= args.bitrate <= 1_000_000:  # (the node's ranges: checked by its process
        # only, after the whole network was built, and named in its log alone)
        raise ValueError(f"--bitrate {args.bitrate}: 10 to 1,000,000 kbit/s")
    if args.chunk_ms is not None and not 10 <= args.chunk_ms <= 10_000:
        raise ValueError(f"--chunk-ms {args.chunk_ms}: 10 to 10,000")
    if not 0.05 <= args.playout_delay <= 60:
        raise ValueError(f"--playout-delay {args.playout_delay:g}: 0.05 to 60 s (the node's range)")
    if not 0 <= args.delay_scale <= 100:
        raise ValueError(f"--delay-scale {args.delay_scale:g}: 0 (no delays) to 100")
    if not 0 <= args.join_spread <= 3600:
        raise ValueError(f"--join-spread {args.join_spread:g}: 0 to 3,600 s")
    if not PREFIX_ARG_RE.fullmatch(args.prefix):
        raise ValueError(f"--prefix {args.prefix[:40]!r}: oas<digits>- (the default oas<pid>-; "
                         "--cleanup finds a dead run's namespaces by it)")
    if args.timeout is not None and not 0 < args.timeout <= 7 * 86_400:
        raise ValueError(f"--timeout {args.timeout:g}: seconds, more than 0")
    if args.rebind_at is not None and not 0 < args.rebind_at < args.duration:
        raise ValueError(f"--rebind-at {args.rebind_at:g}: within the run (0 < t < --duration)")
    if not -20 <= args.broadcaster_nice <= 0:
        raise ValueError(f"--broadcaster-nice {args.broadcaster_nice}: within [-20, 0]")
    if args.edge_hold is not None and not 0 <= args.edge_hold <= 10:
        raise ValueError(f"--edge-hold {args.edge_hold:g}: within [0, 10] s")
    if not 0 <= args.delayer_tick_ms <= 10:
        raise ValueError(f"--delayer-tick-ms {args.delayer_tick_ms:g}: within [0, 10]")
    if not 0 <= args.upload_share <= 1:
        raise ValueError(f"--upload-share {args.upload_share:g}: a share of the uplink, within [0, 1]")
    if args.rebind < 1:
        raise ValueError(f"--rebind {args.rebind}: at least 1")
    if args.rebind != 1 and args.rebind_at is None:
        raise ValueError("--rebind says how many viewers --rebind-at moves: give --rebind-at too")


def make_topology(args: argparse.Namespace) -> Topology:
    if args.topology:
        try:
            with open(args.topology, "rb") as f:
                raw = f.read(MAX_TOPOLOGY_BYTES + 1)
            if len(raw) > MAX_TOPOLOGY_BYTES:
                raise ValueError(f"--topology {args.topology}: over {MAX_TOPOLOGY_BYTES:,} bytes")
            data = json.loads(raw)
        except OSError as exc:
            raise ValueError(f"--topology {args.topology}: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"--topology {args.topology}: not JSON ({str(exc)[:120]})") from None
        if not isinstance(data, dict):
            raise ValueError(f"--topology {args.topology}: not a topology (see --dump-topology)")
        try:
            return Topology.from_json(data)
        except ValueError as exc:
            raise ValueError(f"--topology {args.topology}: {exc}") from None
    return build(args.seed, args.viewers, bitrate_kbps=args.bitrate, nat_share=args.nat_share,
                 symmetric_share=args.symmetric_share,
                 countries=args.countries.split(",") if args.countries else None,
                 loss=args.loss, join_spread_s=args.join_spread)


async def _guarded(tb: Testbed, limit: float) -> dict[str, Any]:
    """``tb.run()`` within ``limit``. SIGTERM/SIGINT cancel it through the event loop (an
    exception raised by a plain handler while asyncio runs a callback is caught and only
    logged by asyncio: a SIGTERM was lost that way). Cut short, the node processes are
    killed at once, so the threads reading their start-up lines see EOF and the loop's
    shutdown does not wait for viewers that are still starting."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    got: list[str] = []

    def stop(sig: signal.Signals) -> None:
        got.append(sig.name)
        if task is not None:
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await asyncio.wait_for(tb.run(), limit)
    except BaseException:
        for p in tb.procs:
            if p.popen.poll() is None:
                p.popen.kill()
        if got:
            raise Interrupted(got[0]) from None
        raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)  # (which leaves SIG_DFL: put ours back)
            signal.signal(sig, _on_signal)


def run_testbed(args: argparse.Namespace) -> int:
    if args.cleanup:
        errors = netns.cleanup(None)
        removed, kept = cleanup_logs()
        print(json.dumps({"cleaned": True, "errors": errors, "log_dirs_removed": removed,
                          "log_dirs_kept": kept}))
        return 1 if errors else 0
    try:
        check_args(args)
        topo = make_topology(args)
        if args.rebind_at is not None and not any(v.nat == "eim" for v in topo.viewers):
            raise ValueError("--rebind-at: no viewer of this topology sits behind a home router (eim), "
                             "the only kind a new public port applies to (raise --nat-share, or lower "
                             "--symmetric-share)")
    except ValueError as exc:
        print(f"oasis testbed: error: {exc}", file=sys.stderr)
        return 2
    if args.dump_topology:
        print(topo.dumps())
        return 0
    why = netns.available()
    if why:
        print(f"oasis testbed: cannot run: {why}", file=sys.stderr)
        return 2
    if netns.prefix_locked(args.prefix):
        print(f"oasis testbed: error: --prefix {args.prefix} is in use by a running testbed: give "
              "another, or leave the default (oas<pid>-)", file=sys.stderr)
        return 2
    from oasis.core import swarm as sw
    progress = Progress(args.json)
    chunk_ms = args.chunk_ms or sw.DEFAULT_CHUNK_MS
    limit = args.timeout or (args.duration + 4 * START_TIMEOUT + 10 * len(topo.nodes) + 60)
    t_start, load_before = time.monotonic(), round(os.getloadavg()[0], 2)
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    tb = Testbed(topo, prefix=args.prefix, duration=args.duration, chunk_ms=chunk_ms,
                 delay_scale=args.delay_scale, progress=progress, keep=args.keep,
                 discovery=args.discovery, rebind_at=args.rebind_at, rebind=args.rebind,
                 playout_delay=args.playout_delay, trace=args.keep, fresh=args.fresh,
                 cdn=args.cdn, upload_share=args.upload_share, shield=args.shield, probe=args.probe,
                 delayer_tick_ms=args.delayer_tick_ms, broadcaster_nice=args.broadcaster_nice,
                 edge_hold=args.edge_hold, warm_edges=args.warm_edges, far_edges=args.far_edges)
    result: dict[str, Any] = {}
    code = 0
    try:
        progress.status(f"building {len(topo.nodes)} nodes' network (prefix {args.prefix})…")
        tb.build()
        result = asyncio.run(_guarded(tb, limit))
    except (Interrupted, KeyboardInterrupt) as exc:
        progress.status(f"interrupted ({exc}): cleaning up")
        code = 143 if "SIGTERM" in str(exc) else 130
    except TimeoutError as exc:
        why = str(exc) or (f"the run did not finish within {limit:.0f} s (--timeout); its nodes "
                           "were stopped")
        print(f"oasis testbed: error: {why}", file=sys.stderr)
        code = 1
    except (RuntimeError, netns.NetError, OSError) as exc:
        print(f"oasis testbed: error: {exc}", file=sys.stderr)
        code = 1
    finally:
        for s in old:
            signal.signal(s, signal.SIG_IGN)  # the clean-up must not be cut short
        problems = tb.close(keep_logs=code == 1)
        for s, h in old.items():
            signal.signal(s, h)
    if code in (130, 143):  # stopped on purpose: their exit codes say nothing about the run
        problems = [p for p in problems if "node processes exited" not in p]
    if problems:
        print(f"oasis testbed: {'; '.join(problems)}", file=sys.stderr)
    if code or not result:
        return code or 1
    result["delayer"] = tb.delayer_stats
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - t_start
    result["testbed"] |= {"wall_s": round(wall, 1), "cpu_s_all_processes": round(cpu.ru_utime + cpu.ru_stime, 1),
                          "mean_cores_busy": round((cpu.ru_utime + cpu.ru_stime) / wall, 2),
                          "load_avg_1m_before": load_before, "cores": os.cpu_count()}
    result["cleanup_problems"] = problems
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "per_viewer"}))
    else:
        progress.console.print_json(json.dumps({k: v for k, v in result.items() if k != "per_viewer"}))
    return 0
