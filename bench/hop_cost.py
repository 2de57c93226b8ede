"""Benchmark: what one hop costs on the real node (the simulator's processing model).

    nice -n 10 .venv/bin/python bench/hop_cost.py --viewers 20 --duration 30

Runs the fidelity swarm (``oasis.sim.fidelity.run_real``: ``oasis demo`` processes on
loopback, 20-60 ms ``--link-delay-ms`` per process) with every node process
instrumented: a ``sitecustomize`` put on the children's ``PYTHONPATH`` patches
``oasis.node`` classes (no change to the node itself) and records, per process,

* per received chunk: thread CPU and wall time from the start of the datagram that
  completed it (QUIC decrypt + stream reassembly, Session decode) to the node's
  session event handler, through the handler (policy, swarm core with its Ed25519
  verify, pump) to the first copy handed to QUIC for a child;
* per copy sent (``Link.send_chunk``): CPU and wall (Session encode, aioquic stream +
  packetize + encrypt, the datagrams into the delay queue) and whether aioquic's
  congestion window / pacer held back part of it; if so, when the last of it left
  (with cwnd, ssthresh and smoothed RTT at the send);
* per control message: CPU in (``Node._on_message``: policy + core) and out
  (``Link.send``); per datagram received: CPU;
* the event loop's lateness releasing the emulated delay queue (a timer firing late
  delays every datagram of the hop);
* the process's CPU (``/proc``-backed ``resource.getrusage``) over the run.

Prints one JSON object: medians / p90 of each cost, and the fitted constants the
simulator uses (``oasis/sim/oasis_run.py``: ``CPU_*``). Every process runs on aioquic
(``OASIS_QUIC=aioquic``, whatever the node's default): the hooks read its congestion state.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import dataclasses
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_REC: list[dict[str, Any]] = []
_OUT: str | None = None


# ---------------------------------------------------------------------------
# The probe: runs inside each node process (installed by sitecustomize)
# ---------------------------------------------------------------------------
def install() -> None:
    """Patch the node's classes to record per-message costs (child processes only)."""
    global _OUT
    from aioquic.quic.connection import QuicConnection  # noqa: F401 - imported before patching

    from oasis.core import session as ss
    from oasis.node import link as lk
    from oasis.node import node as nd
    from oasis.node import transport as tp

    if os.environ.get("OASIS_HOPCOST_CC"):  # --cc: another registered algorithm (e.g. reno)
        from oasis.node import congestion
        congestion.NAME = os.environ["OASIS_HOPCOST_CC"]
    _OUT = os.path.join(os.environ["OASIS_HOPTRACE"], f"{os.getpid()}.jsonl")
    pc, tt = time.perf_counter, time.thread_time
    cur: dict[str, Any] = {"dg": None, "chunk": None}
    pending: dict[tuple[int, int], dict[str, Any]] = {}  # (id(link), sid) -> copy record
    agg: dict[str, Any] = {"late": []}
    stack: list[list[float]] = []  # [thread CPU at entry, CPU of nested probes]

    def timed(kind: Any, fn: Any) -> Any:
        """Wrap ``fn``: count calls and *exclusive* thread CPU (nested probes excluded)
        under ``kind`` (a name, or a function of the arguments giving one)."""
        def w(*a: Any, **k: Any) -> Any:
            c0 = tt()
            stack.append([c0, 0.0])
            try:
                return fn(*a, **k)
            finally:
                _, child = stack.pop()
                d = tt() - c0
                name = kind if isinstance(kind, str) else kind(*a)
                agg[name + "_n"] = agg.get(name + "_n", 0) + 1
                agg[name + "_cpu"] = agg.get(name + "_cpu", 0.0) + d - child
                if stack:
                    stack[-1][1] += d
        return w

    orig_dr = lk.Link.datagram_received

    def datagram_received(self: Any, data: bytes, now: float, addr: Any = None) -> None:
        cur["dg"] = (pc(), tt())
        if len(data) >= 1000 and getattr(self, "_hop_first", None) is None:
            self._hop_first = cur["dg"][0]  # the first datagram of the next chunk
        try:
            orig_dr(self, data, now, addr)
        finally:
            cur["dg"] = None

    # QUIC decrypt, ACK processing, stream reassembly, Session decode (full-size
    # datagrams carry chunk data; small ones ACKs and control messages)
    lk.Link.datagram_received = timed(  # type: ignore[method-assign]
        lambda self, data, now, addr=None: "dg_big" if len(data) >= 1000 else "dg_small", datagram_received)
    lk.Link._on_timer = timed("quic_timer", lk.Link._on_timer)  # type: ignore[method-assign]
    nd.LiveStream._on_timer = timed("swarm_timer", nd.LiveStream._on_timer)  # type: ignore[method-assign]
    nd.Node._on_timer = timed("policy_timer", nd.Node._on_timer)  # type: ignore[method-assign]
    nd.Node._on_message = timed("msg_in", nd.Node._on_message)  # type: ignore[method-assign]
    lk.Link.send = timed("msg_out", lk.Link.send)  # type: ignore[method-assign]
    tp.Endpoint._release_delayed = timed("release", tp.Endpoint._release_delayed)  # type: ignore[method-assign]

    orig_ev = nd.Node._on_event

    def on_event(self: Any, link: Any, ev: Any) -> None:
        if not isinstance(ev, ss.ChunkReceived):
            orig_ev(self, link, ev)
            return
        cur["node"] = self
        t0, c0 = pc(), tt()
        dg = cur["dg"] or (t0, c0)
        rec = {"k": "rx", "seq": ev.chunk.seq, "dg_t": dg[0], "dg_c": dg[1], "ev_t": t0, "ev_c": c0,
               "copies": [], "me": self.identity.public.hex()[:16],
               "from": (link.peer_key or b"").hex()[:16], "first_dg_t": getattr(link, "_hop_first", None)}
        link._hop_first = None
        prev, cur["chunk"] = cur["chunk"], rec
        try:
            chunk_in(self, link, ev)
        finally:
            cur["chunk"] = prev
            rec["end_t"], rec["end_c"] = pc(), tt()
            _REC.append(rec)

    chunk_in = timed("chunk_in", orig_ev)  # policy, swarm core (Ed25519 verify), pump
    nd.Node._on_event = on_event  # type: ignore[method-assign]

    def _cc(link: Any) -> tuple[int, int, float, int]:
        loss = getattr(link.quic, "_loss", None)
        cc = getattr(loss, "_cc", None)
        cwnd = int(getattr(cc, "congestion_window", -1))
        ssth = getattr(cc, "ssthresh", None)
        return cwnd, -1 if ssth is None else int(ssth), float(getattr(loss, "_rtt_smoothed", -1.0)), \
            int(getattr(cc, "bytes_in_flight", -1))

    def _sent_all(link: Any, sid: int) -> bool:
        st = link.quic._streams.get(sid)
        return st is None or (st.sender.buffer_is_empty and not st.sender._pending_eof)

    orig_sc = timed("copy", lk.Link.send_chunk)

    def send_chunk(self: Any, chunk: Any, deadline: float) -> None:
        sid = self.quic.get_next_available_stream_id(is_unidirectional=True)
        cwnd, ssth, srtt, infl = _cc(self)
        t0, c0 = pc(), tt()
        d0 = self.datagrams_out
        orig_sc(self, chunk, deadline)
        t1, c1 = pc(), tt()
        rec = {"k": "tx", "seq": chunk.seq, "t0": t0, "t1": t1, "cpu": c1 - c0, "dg": self.datagrams_out - d0,
               "cwnd": cwnd, "ssth": ssth, "srtt": srtt, "infl": infl, "link": id(self),
               "n_on_link": getattr(self, "_hop_n", 0), "wall": time.time(), "time_us": chunk.time_us,
               "size": len(chunk.payload), "me": self.endpoint.identity.public.hex()[:16],
               "to": (self.peer_key or b"").hex()[:16], "delay": self.endpoint.link_delay}
        self._hop_n = rec["n_on_link"] + 1
        if _sent_all(self, sid):
            rec["done_t"] = t1
            _REC.append(rec)
        else:
            pending[(id(self), sid)] = rec
        parent = cur["chunk"]
        if parent is not None:
            parent["copies"].append((t0, t1, c1 - c0))

    lk.Link.send_chunk = send_chunk  # type: ignore[method-assign]

    orig_flush = lk.Link._flush

    def _flush(self: Any) -> None:
        orig_flush(self)
        if pending:
            me = id(self)
            for key in [k for k in pending if k[0] == me]:
                if _sent_all(self, key[1]):
                    rec = pending.pop(key)
                    rec["done_t"] = pc()
                    _REC.append(rec)

    lk.Link._flush = _flush  # type: ignore[method-assign]

    orig_rel = tp.Endpoint._release_delayed

    def _release_delayed(self: Any) -> None:
        if self._delayed:
            agg["late"].append(self.loop.time() - self._delayed[0][0])
        orig_rel(self)

    tp.Endpoint._release_delayed = _release_delayed  # type: ignore[method-assign]

    def dump() -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        late = sorted(agg["late"])
        lat = {"n": len(late), "p50": late[len(late) // 2] if late else None,
               "p90": late[int(len(late) * 0.9)] if late else None}
        agg_out = {k: v for k, v in agg.items() if k != "late"}
        node = cur.get("node")
        if node is not None:  # the policy's verdicts (e.g. parents dropped by the swarm)
            agg_out["policy"] = {k: v for k, v in dataclasses.asdict(node.policy.counters).items()
                                if isinstance(v, int)}
        with open(_OUT, "w") as f:  # type: ignore[arg-type]
            for r in _REC:
                f.write(json.dumps(r) + "\n")
            f.write(json.dumps({"k": "agg", **agg_out, "release_late": lat,
                                "cpu_s": ru.ru_utime + ru.ru_stime, "argv": sys.argv[1:3]}) + "\n")

    atexit.register(dump)


SITECUSTOMIZE = """\
import os
if os.environ.get("OASIS_HOPTRACE"):
    import importlib.util
    _spec = importlib.util.spec_from_file_location("_hop_cost", {path!r})
    _m = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_m)
    _m.install()
"""


# ---------------------------------------------------------------------------
# The benchmark: run the instrumented swarm, aggregate
# ---------------------------------------------------------------------------
def _q(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def _ms(xs: list[float]) -> dict[str, Any]:
    return {"n": len(xs), "p10": _r(_q(xs, 0.1)), "p50": _r(_q(xs, 0.5)), "p90": _r(_q(xs, 0.9)),
            "mean": _r(sum(xs) / len(xs)) if xs else None}


def _r(x: float | None) -> float | None:
    return None if x is None else round(1000 * x, 3)


def analyse(trace_dir: str) -> dict[str, Any]:
    rx: list[dict[str, Any]] = []
    tx: list[dict[str, Any]] = []
    aggs: list[dict[str, Any]] = []
    for p in Path(trace_dir).glob("*.jsonl"):
        for line in p.read_text().splitlines():
            r = json.loads(line)
            {"rx": rx, "tx": tx, "agg": aggs}[r["k"]].append(r)
    # receive: datagram start -> first copy handed to QUIC (only chunks that were relayed)
    relayed = [r for r in rx if r["copies"]]
    recv_cpu = [r["copies"][0][0] - r["dg_t"] for r in relayed]  # wall, the handler runs straight
    recv_cpu_thread = [(r["ev_c"] - r["dg_c"]) for r in relayed]
    handler_cpu = [(r["end_c"] - r["ev_c"]) - sum(c[2] for c in r["copies"]) for r in rx]
    # per copy: CPU in send_chunk; the k-th copy's start after the first
    copy_cpu = [t["cpu"] for t in tx]
    copy_wall = [t["t1"] - t["t0"] for t in tx]
    gap = [(r["copies"][-1][0] - r["copies"][0][0]) / (len(r["copies"]) - 1)
           for r in relayed if len(r["copies"]) > 1]
    held = [t for t in tx if t["done_t"] > t["t1"] + 1e-4]
    held_wait = [t["done_t"] - t["t0"] for t in held]
    by_n: dict[str, list[float]] = {}
    for t in tx:
        b = "0" if t["n_on_link"] == 0 else "1-3" if t["n_on_link"] < 4 else "4-19" \
            if t["n_on_link"] < 20 else "20+"
        by_n.setdefault(b, []).append(t["done_t"] - t["t0"])
    # a hop on the real node: the child handles the chunk (its session event) this long
    # after the parent handed the copy to QUIC, less the parent's emulated egress delay
    # (perf_counter is CLOCK_MONOTONIC: one clock for all processes)
    got = {(r["me"], r["from"], r["seq"]): r["ev_t"] for r in rx}
    first_dg = {(r["me"], r["from"], r["seq"]): r["first_dg_t"] for r in rx if r.get("first_dg_t")}
    got_at = {(r["me"], r["seq"]): r["ev_t"] for r in rx}
    hop: dict[str, list[float]] = {}
    for t in tx:
        ev_t = got.get((t["to"], t["me"], t["seq"]))
        if ev_t is None:
            continue
        b = "0" if t["n_on_link"] == 0 else "1-3" if t["n_on_link"] < 4 else "4-19" \
            if t["n_on_link"] < 20 else "20+"
        hop.setdefault(b, []).append(ev_t - t["t0"] - t["delay"])
        hop.setdefault("all", []).append(ev_t - t["t0"] - t["delay"])
        f = first_dg.get((t["to"], t["me"], t["seq"]))
        if f is not None and t["n_on_link"] >= 20:
            # warm links: copy handed to QUIC -> the child reads its first datagram (sender
            # CPU, delay-queue timer, the child's wake-up), then -> the chunk is whole
            hop.setdefault("warm_to_first_datagram", []).append(f - t["t0"] - t["delay"])
            hop.setdefault("warm_first_datagram_to_chunk", []).append(ev_t - f)
        # relay to child: the relay's own handler start to the child's
        src_t = got_at.get((t["me"], t["seq"]))
        if src_t is not None:
            hop.setdefault("relay_handler_to_child_handler", []).append(ev_t - src_t - t["delay"])
    n_rx = len(rx)
    n_tx = len(tx)
    cpu = sum(a["cpu_s"] for a in aggs)
    tot: dict[str, float] = {}
    for a in aggs:
        for k, v in a.items():
            if k.endswith(("_n", "_cpu")):
                tot[k] = tot.get(k, 0) + v
    per_call = {k[:-4]: round(1000 * tot[k] / tot[k[:-4] + "_n"], 4)
                for k in sorted(tot) if k.endswith("_cpu") and tot.get(k[:-4] + "_n")}
    counts = {k[:-2]: int(v) for k, v in sorted(tot.items()) if k.endswith("_n")}
    policy: dict[str, int] = {}
    for a in aggs:
        for k, v in a.get("policy", {}).items():
            policy[k] = policy.get(k, 0) + v
    late = [a["release_late"]["p50"] for a in aggs if a["release_late"]["p50"] is not None]
    late90 = [a["release_late"]["p90"] for a in aggs if a["release_late"]["p90"] is not None]
    return {
        "processes": len(aggs),
        "chunks_received": n_rx, "copies_sent": n_tx, "relayed_chunks": len(relayed),
        "cpu_ms_per_call": per_call, "calls": counts,
        "fit": fit(aggs, rx, tx),
        "hop_overhead_ms_by_copy_index_on_link": {k: _ms(v) for k, v in sorted(hop.items())},
        "recv_dgram_to_first_copy_wall_ms": _ms(recv_cpu),
        "recv_dgram_to_handler_cpu_ms": _ms(recv_cpu_thread),
        "handler_cpu_ms_excl_copies": _ms(handler_cpu),
        "copy_cpu_ms": _ms(copy_cpu),
        "copy_wall_ms": _ms(copy_wall),
        "copy_start_gap_ms": _ms(gap),
        "copies_held_by_cwnd_or_pacer": len(held),
        "held_copy_send_to_last_byte_ms": _ms(held_wait),
        "send_to_last_byte_ms_by_copy_index_on_link": {k: _ms(v) for k, v in sorted(by_n.items())},
        "first_copy_on_link": first_copy(tx),
        "delay_queue_release_late_ms_p50_of_procs": _ms(late),
        "delay_queue_release_late_ms_p90_of_procs": _ms(late90),
        "process_cpu_s": round(cpu, 2),
        "policy_counters": {k: v for k, v in sorted(policy.items()) if v},
    }


def first_copy(tx: list[dict[str, Any]]) -> dict[str, Any]:
    """The first copy on each link: how many were held back by the window or the pacer,
    the window and smoothed RTT when it was sent, and links that saw a loss (ssthresh set)."""
    first = [t for t in tx if t["n_on_link"] == 0]
    cwnd = sorted(t["cwnd"] for t in first)
    srtt = [t["srtt"] for t in first if t["srtt"] > 0]
    return {"n": len(first), "held": sum(1 for t in first if t["done_t"] > t["t1"] + 1e-4),
            "cwnd_bytes_p10_p50_p90": [_q(cwnd, 0.1), _q(cwnd, 0.5), _q(cwnd, 0.9)] if cwnd else None,
            "srtt_ms": _ms(srtt),
            "copies_after_a_loss": sum(1 for t in tx if t["ssth"] >= 0),
            "copies": len(tx)}


def fit(aggs: list[dict[str, Any]], rx: list[dict[str, Any]], tx: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-event costs: the exclusive CPU of each probe, attributed.

    Receiving a chunk = its full-size datagrams (decrypt, reassembly, decode) + the
    handler (policy, core, verify); sending a copy = ``Link.send_chunk`` (encode,
    packetize, encrypt) + its share of the delay queue's sendto calls, of aioquic's
    timers (paced and delayed sends) and of the small datagrams (mostly the ACKs of
    what we sent); a control message = its handler in + out.
    """
    def t(k: str) -> float:
        return sum(a.get(k, 0) for a in aggs)

    n_rx = max(1, len(rx))
    n_tx = max(1, len(tx))
    n_msg = max(1, t("msg_in_n") + t("msg_out_n"))
    rx_ms = 1000 * (t("dg_big_cpu") + t("chunk_in_cpu")) / n_rx
    # small datagrams and timers serve both directions; split by the bytes each moves
    # (a copy sent and a chunk received are the same size): ACKs we receive are for
    # what we sent, ACKs we send ride the timer or our own datagrams
    shared = t("dg_small_cpu") + t("quic_timer_cpu") + t("release_cpu")
    tx_ms = 1000 * (t("copy_cpu") + shared * n_tx / (n_tx + n_rx)) / n_tx
    rx_ms_shared = rx_ms + 1000 * shared * n_rx / (n_tx + n_rx) / n_rx
    msg_ms = 1000 * (t("msg_in_cpu") + t("msg_out_cpu")) / n_msg
    probed = sum(t(k) for k in ("dg_big_cpu", "dg_small_cpu", "quic_timer_cpu", "release_cpu", "copy_cpu",
                                "chunk_in_cpu", "msg_in_cpu", "msg_out_cpu", "swarm_timer_cpu",
                                "policy_timer_cpu"))
    return {"recv_chunk_ms": round(rx_ms_shared, 3), "recv_chunk_ms_excl_shared": round(rx_ms, 3),
            "copy_ms": round(tx_ms, 3), "control_msg_ms": round(msg_ms, 3),
            "dg_big_per_chunk": round(t("dg_big_n") / n_rx, 2),
            "probed_cpu_share_of_process_cpu": round(probed / max(1e-9, sum(a["cpu_s"] for a in aggs)), 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", help="keep the raw traces in this directory")
    ap.add_argument("--cc", help="congestion control for every link (default: the node's, "
                    "oasis.node.congestion; 'reno' for aioquic's default, the before)")
    args = ap.parse_args()
    from oasis.sim.fidelity import link_delays_ms, run_real

    tmp = tempfile.mkdtemp(prefix="oasis-hopcost-")
    trace = args.keep or os.path.join(tmp, "trace")
    os.makedirs(trace, exist_ok=True)
    site = os.path.join(tmp, "site")
    os.makedirs(site)
    Path(site, "sitecustomize.py").write_text(SITECUSTOMIZE.format(path=str(Path(__file__).resolve())))
    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "OASIS_HOPTRACE", "OASIS_HOPCOST_CC",
                                          "OASIS_QUIC", "OASIS_PURE_TRANSPORT")}
    # The probe patches the link's and the endpoint's methods: compiled ones cannot be
    # (oasis/node/__init__.py), so the transport runs from source here.
    os.environ["OASIS_PURE_TRANSPORT"] = "1"
    # The instrumentation reads aioquic's congestion state, and the simulator's CPU_*
    # constants were fitted to aioquic: the processes run on it (not the node's default).
    os.environ["OASIS_QUIC"] = "aioquic"
    if args.cc:
        os.environ["OASIS_HOPCOST_CC"] = args.cc
    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (site, old["PYTHONPATH"]) if x)
    os.environ["OASIS_HOPTRACE"] = trace
    t0 = time.monotonic()
    try:
        res = asyncio.run(run_real(link_delays_ms(args.seed, args.viewers), args.duration))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out = {"viewers": args.viewers, "duration_s": args.duration, "seed": args.seed,
           "congestion_control": args.cc or "oasis", "quic": "aioquic",
           "real": {"p50_ms": res["latency_ms"]["p50"], "p95_ms": res["latency_ms"]["p95"],
                    "offload": res["offload_ratio"], "continuity": res["continuity"]},
           "costs": analyse(trace),
           "bench": {"wall_s": round(time.monotonic() - t0, 1), "cores": os.cpu_count(),
                     "load_avg_1m": round(os.getloadavg()[0], 2),
                     "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
