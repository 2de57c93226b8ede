"""Benchmark: a live swarm of real processes under attack, and the simulator's figure.

    python bench/hostile_swarm.py --viewers 20 --hostile 5 --attack 60
    python bench/hostile_swarm.py --sim scenarios/hostile-10k.toml   # simulator only

Real side (loopback): a broadcaster (test source) and ``--viewers`` honest
viewers; after a warm-up, ``--hostile`` processes of ``python -m
oasis.tools.hostile`` (victims from the tracker, every mode, each in its own
order so different attacks overlap) attack the swarm for ``--attack`` seconds;
during the attack ``--newcomers`` viewers join one at a time; every other one
is dialled at once by a liar and a withholder (``--mode liar``, ``--mode
withhold``), the others are the control, and their startup is measured. Throughout,
every honest viewer's player output (``/live/...ts?from=start``) is read and
matched byte for byte against the broadcaster's chunks (fetched from its
origin as they are made): a byte sequence that is not a genuine chunk is a
forged chunk played. Printed (one JSON object): processes alive and exit codes,
forged chunks played (must be 0), chunks verified, honest continuity (whole
run and during the attack), startup p50/p95 of the first viewers and of the
newcomers with a liar and without, the honest nodes' defence counters, and each hostile
process's summary.

Simulator side (``--sim``): the scenario as given and with ``hostile = 0``
(the same viewers, all honest), one after the other; continuity, offload, p95
and their ratios to the honest run (targets: continuity >= 0.99, offload >=
90 % and p95 <= 1.2x the honest run's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
from scratch import scratch_dir  # bench/ is on sys.path

from oasis.core import wire
from oasis.core.metrics import percentile, summarize
from oasis.core.swarmdefs import DEFAULT_CHUNK_MS
from oasis.demo import die_with_parent

START_TIMEOUT = 60.0
#: chunks a player may have skipped in a row (30 s at the default chunk size) before bytes
#: that match no genuine chunk count as forged
LOOKAHEAD = 30_000 // DEFAULT_CHUNK_MS
TOOL_MODES = ["bomb", "junk", "silent", "prechunk", "flood", "liar", "forge", "replay", "withhold",
              "tracker", "receipts"]


class Proc:
    """A child process; a tool's stdout goes to a file (its report can be long)."""

    def __init__(self, name: str, argv: list[str], log_dir: str, tool: bool = False) -> None:
        self.name = name
        err = open(os.path.join(log_dir, f"{name}.log"), "wb")  # noqa: SIM115 - closed below
        self.out_path = os.path.join(log_dir, f"{name}.json")
        out: Any = open(self.out_path, "wb") if tool else subprocess.PIPE  # noqa: SIM115
        self.popen = subprocess.Popen([sys.executable, *argv], stdout=out, stderr=err,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=die_with_parent)
        err.close()
        if tool:
            out.close()
        self.info: dict[str, Any] = {}
        self.report: dict[str, Any] | None = None

    def finish_tool(self, timeout: float) -> int | None:
        """Let a tool end on its own (its --duration), then read its JSON report."""
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            with open(self.out_path, "rb") as f:
                lines = f.read().splitlines()
            self.report = _hostile_summary(json.loads(lines[-1])) if lines else None
        except (OSError, ValueError):
            self.report = None
        return self.stop()

    async def first_line(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        assert self.popen.stdout is not None
        loop = asyncio.get_running_loop()
        line = await asyncio.wait_for(loop.run_in_executor(None, self.popen.stdout.readline), timeout)
        if not line:
            raise RuntimeError(f"{self.name} exited before it started (exit {self.popen.poll()})")
        self.info = json.loads(line)
        return self.info

    def stop(self) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.popen.returncode


class Origin:
    """Every chunk the broadcaster makes, fetched from its origin as it appears."""

    def __init__(self, base: str, sid: str) -> None:
        self.base, self.sid = base, sid
        self.payloads: dict[int, bytes] = {}
        self.next = 0
        self.missed = 0

    async def _get(self, http: aiohttp.ClientSession, seq: int) -> bytes | None:
        try:
            async with http.get(f"{self.base}/{self.sid}/{seq}.chunk") as r:
                return await r.read() if r.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def run(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        waiting_since = time.monotonic()
        while not stop.is_set():
            body = await self._get(http, self.next)
            if body is not None:
                self.payloads[self.next] = wire.decode_chunk(body).payload
                self.next += 1
                waiting_since = time.monotonic()
            elif time.monotonic() - waiting_since > 2.0 and await self._get(http, self.next + 1):
                self.missed += 1  # not at the origin while a later one is: never coming
                self.next += 1
            else:
                await asyncio.sleep(0.03)


class PlayerCheck:
    """Matches one viewer's player output against the genuine chunks, in order."""

    def __init__(self, name: str, url: str, origin: Origin) -> None:
        self.name, self.url, self.origin = name, url, origin
        self.buf = bytearray()
        self.seq: int | None = None
        self.verified = 0
        self.skipped = 0
        self.forged: list[int] = []  #: seqs at which bytes matched no genuine chunk
        self.bytes = 0
        self.error: str | None = None

    async def run(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        try:
            async with http.get(self.url + "?from=start",
                                timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as r:
                while not stop.is_set():
                    try:
                        data = await asyncio.wait_for(r.content.readany(), 1.0)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    self.bytes += len(data)
                    self.buf += data
                    self.match()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.error = repr(exc)

    def match(self) -> None:
        pay = self.origin.payloads
        buf = self.buf
        if self.seq is None:
            for s in sorted(pay, reverse=True):  # where did the player start?
                if buf.startswith(pay[s]):
                    self.seq = s
                    break
            else:
                return
        pos = 0
        while not self.forged:
            p = pay.get(self.seq)
            if p is None:
                break  # not fetched yet
            if buf.startswith(p, pos):
                pos += len(p)
                self.verified += 1
                self.seq += 1
                continue
            if len(buf) - pos < len(p) and p.startswith(bytes(buf[pos:])):
                break  # this chunk is still arriving
            # the gateway skips chunks given up on: does a later genuine chunk fit here?
            for k in range(1, LOOKAHEAD):
                q = pay.get(self.seq + k)
                if q is not None and (buf.startswith(q, pos) or (len(buf) - pos < len(q)
                                                                and q.startswith(bytes(buf[pos:])))):
                    self.skipped += k
                    self.seq += k
                    break
            else:
                if len(buf) - pos >= max(len(x) for x in list(pay.values())[-LOOKAHEAD:]) \
                        and (self.seq + LOOKAHEAD) in pay:
                    self.forged.append(self.seq)  # bytes that are no genuine chunk
                break
        del buf[:pos]


async def stats(http: aiohttp.ClientSession, base: str, detail: bool = False) -> dict[str, Any] | None:
    try:
        async with http.get(base + "/stats" + ("?detail=1" if detail else "")) as r:
            return await r.json()  # type: ignore[no-any-return]
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


def _sum_counters(all_stats: list[dict[str, Any] | None]) -> dict[str, dict[str, int]]:
    node: Counter[str] = Counter()
    swarm: Counter[str] = Counter()
    for s in all_stats:
        if s is None:
            continue
        for k, v in s.get("counters", {}).items():
            if isinstance(v, int) and v:
                node[k] += v
        for st in s.get("streams", []):
            for k, v in st.get("swarm_counters", {}).items():
                if isinstance(v, int) and v:
                    swarm[k] += v
    return {"node": dict(sorted(node.items())), "swarm": dict(sorted(swarm.items()))}


def _victim_closes(x: Any, codes: Counter[str]) -> None:
    if isinstance(x, dict):
        if x.get("closed_by") == "victim" and x.get("close_code"):
            codes[str(x["close_code"])] += 1
        for v in x.values():
            _victim_closes(v, codes)
    elif isinstance(x, list):
        for v in x:
            _victim_closes(v, codes)


def _hostile_summary(rep: dict[str, Any]) -> dict[str, Any]:
    """Per mode: victims alive after it, and the close codes the victims used."""
    out: dict[str, Any] = {}
    for mode, m in rep.get("modes", {}).items():
        codes: Counter[str] = Counter()
        _victim_closes(m.get("result"), codes)
        out[mode] = {"victims_dead_after": len(m.get("victims_dead_after", [])),
                     "victims_refusing_after": len(m.get("victims_refusing_after", {})),
                     "victim_closes": dict(codes)}
        if mode == "tracker":
            out[mode]["tracker"] = m.get("result")
    return {"victims": len(rep.get("victims", [])), "sends": rep.get("sends"),
            "alive_at_end": rep.get("victims_alive_at_end"), "modes": out}


async def real(args: argparse.Namespace) -> dict[str, Any]:
    root = scratch_dir("oasis-hostile-", args.keep_logs)
    common = ["--bitrate", str(args.bitrate), "--json"]
    procs: list[Proc] = []
    hostile: list[Proc] = []
    viewers: list[Proc] = []
    newcomers: list[Proc] = []
    stop = asyncio.Event()
    died: list[str] = []
    out: dict[str, Any] = {"logs": root if args.keep_logs else None}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        try:
            b = Proc("broadcaster", ["-m", "oasis", "broadcast", "test", *common,
                                     "--data-dir", os.path.join(root, "b")], root)
            procs.append(b)
            binfo = await b.first_line()
            sid = binfo["stream_id"]
            origin = Origin(binfo["origin"], sid)
            tasks = [asyncio.create_task(origin.run(http, stop))]
            checks: list[PlayerCheck] = []

            async def viewer(name: str) -> Proc:
                v = Proc(name, ["-m", "oasis", "watch", sid, "--tracker", binfo["tracker"],
                                "--gateway", "127.0.0.1:0", *common,
                                "--data-dir", os.path.join(root, name)], root)
                procs.append(v)
                info = await v.first_line()
                pc = PlayerCheck(name, info["player_url"], origin)
                checks.append(pc)
                tasks.append(asyncio.create_task(pc.run(http, stop)))
                return v

            for i in range(args.viewers):
                viewers.append(await viewer(f"v{i}"))
            await asyncio.sleep(args.warmup)
            attack_t0 = time.time()
            for i in range(args.hostile):
                order = TOOL_MODES[2 * i % len(TOOL_MODES):] + TOOL_MODES[:2 * i % len(TOOL_MODES)]
                argv = ["-m", "oasis.tools.hostile", "--tracker", binfo["tracker"], "--stream", sid,
                        "--duration", str(args.attack), "--rate", str(args.rate),
                        "--max-victims", str(args.max_victims), "--seed", str(i)]
                for m in order:
                    argv += ["--mode", m]
                hostile.append(Proc(f"hostile{i}", argv, root, tool=True))
            # newcomers during the attack: the even ones dialled at once by a liar and a
            # withholder, the odd ones not (the control: same swarm, same load)
            liars: list[Proc] = []
            gap = args.attack / (args.newcomers + 1)
            for i in range(args.newcomers):
                await asyncio.sleep(gap)
                v = await viewer(f"new{i}")
                newcomers.append(v)
                target = f"{v.info['oftp']}:{v.info['peer_id']}" if "oftp" in v.info else None
                if target is None or i % 2 == 1:
                    continue
                for mode in ("liar", "withhold"):
                    liars.append(Proc(f"{mode}{i}", ["-m", "oasis.tools.hostile", "--victim", target,
                                                     "--stream", sid, "--mode", mode,
                                                     "--duration", "10", "--rate", "20"],
                                      root, tool=True))
            hostile += liars
            # the attack runs out; every second: is every honest process alive?
            t_end = attack_t0 + args.attack + 5
            while time.time() < t_end or any(h.popen.poll() is None for h in hostile):
                for p in procs:
                    if p.popen.poll() is not None and p.name not in died:
                        died.append(p.name)
                if time.time() > t_end + 60:
                    break  # a hostile process overran its --duration: reported below
                await asyncio.sleep(1.0)
            attack_t1 = time.time()
            await asyncio.sleep(3.0)  # the last chunks reach the players
            final = await asyncio.gather(*(stats(http, p.info["gateway"], True)
                                           for p in viewers + newcomers))
            bstats = await stats(http, binfo["http"], True)
            now = time.time()
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            stop.set()
            hcodes = {p.name: p.finish_tool(args.attack + 60) for p in hostile}
            codes = {p.name: p.stop() for p in procs}
    produced = {int(k): v for k, v in (bstats or {}).get("streams", [{}])[0].get("produced", {}).items()}
    recs = [s["streams"][0]["record"] for s in final if s is not None]
    first_recs, new_recs = recs[: len(viewers)], recs[len(viewers):]
    liar_recs, control_recs = new_recs[0::2], new_recs[1::2]
    whole = summarize(recs, produced, now - 1.0, args.playout_delay)
    during = summarize(recs, {k: t for k, t in produced.items() if attack_t0 <= t <= attack_t1},
                       now - 1.0, args.playout_delay)

    def startups(rs: list[dict[str, Any]]) -> dict[str, Any]:
        xs = [r["started_at"] - r["joined_at"] for r in rs if r.get("started_at") is not None]
        return {"n": len(rs), "started": len(xs), "p50_ms": round(percentile(xs, 50) * 1000, 1),
                "p95_ms": round(percentile(xs, 95) * 1000, 1), "max_ms": round(max(xs, default=0) * 1000, 1),
                "each_ms": [round(x * 1000, 1) for x in xs] if len(xs) <= 10 else None}

    out.update({
        "viewers": args.viewers, "newcomers": args.newcomers, "hostile_processes": args.hostile,
        "attack_s": args.attack, "rate_per_hostile": args.rate,
        "crashes": len([n for n, c in codes.items() if c not in (0, -15)]),
        "honest_died_during_run": died,
        "honest_exit_codes": codes,
        "hostile_exit_codes": hcodes,
        "forged_played": sum(len(c.forged) for c in checks),
        "forged_at": {c.name: c.forged for c in checks if c.forged},
        "chunks_verified_in_players": sum(c.verified for c in checks),
        "chunks_skipped_in_players": sum(c.skipped for c in checks),
        "player_errors": {c.name: c.error for c in checks if c.error},
        "origin_chunks": len(origin.payloads), "origin_missed": origin.missed,
        "continuity": whole["continuity"], "continuity_during_attack": during["continuity"],
        "offload": whole["offload_ratio"], "latency_ms": whole["latency_ms"],
        "startup_first_viewers": startups(first_recs),
        "startup_newcomers_with_liar": startups(liar_recs),
        "startup_newcomers_control": startups(control_recs),
        "defence_counters": _sum_counters([*final, bstats]),
        "hostile_reports": {h.name: h.report for h in hostile},
    })
    return out


def sim(path: str) -> dict[str, Any]:
    from oasis.sim import runner
    from oasis.sim.scenario import from_dict, load
    s = load(path)
    res = {}
    for label, share in (("hostile", s.hostile), ("honest", 0.0)):
        t0 = time.monotonic()
        out = runner.run(from_dict(s.to_json() | {"hostile": share, "baselines": []}), progress=True)
        o = out["oasis"]
        res[label] = {"continuity": o["continuity"], "offload": o["offload_ratio"],
                      "latency_ms": o["latency_ms"], "startup_ms": o["startup_ms"],
                      "viewers_started": o["viewers_started"], "errors": o["errors"],
                      "wall_s": round(time.monotonic() - t0, 1), "hostile": o.get("hostile")}
        print(json.dumps({label: res[label]}), file=sys.stderr, flush=True)
    h, g = res["hostile"], res["honest"]
    res["ratios"] = {
        "continuity": h["continuity"],
        "offload_vs_honest": round(h["offload"] / g["offload"], 4) if g["offload"] else None,
        "p95_vs_honest": round(h["latency_ms"]["p95"] / g["latency_ms"]["p95"], 4)
        if g["latency_ms"]["p95"] else None,
    }
    res["targets_met"] = {"continuity_ge_0.99": h["continuity"] >= 0.99,
                          "offload_ge_90pct": (res["ratios"]["offload_vs_honest"] or 0) >= 0.9,
                          "p95_le_1.2x": (res["ratios"]["p95_vs_honest"] or 99) <= 1.2}
    return {"scenario": s.name, "peers": s.peers, "duration_s": s.duration_s, **res}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep-logs", action="store_true", help="keep the nodes' data and logs")
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--hostile", type=int, default=5)
    ap.add_argument("--newcomers", type=int, default=6, help="the even ones get a liar")
    ap.add_argument("--attack", type=float, default=60.0, help="seconds the hostile processes run")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=50.0, help="crafted sends/s per hostile process")
    ap.add_argument("--max-victims", type=int, default=8)
    ap.add_argument("--bitrate", type=int, default=1000)
    ap.add_argument("--playout-delay", type=float, default=0.5)
    ap.add_argument("--sim", default=None, help="run this scenario and its hostile = 0 twin instead")
    args = ap.parse_args()
    t0 = time.monotonic()
    cpu0 = os.times()
    if args.sim:
        out = sim(args.sim)
    else:
        out = asyncio.run(real(args))
    cpu1 = os.times()
    out["bench"] = {"wall_s": round(time.monotonic() - t0, 1), "cores": os.cpu_count(),
                    "cpu_s_children": round((cpu1.children_user + cpu1.children_system)
                                            - (cpu0.children_user + cpu0.children_system), 1),
                    "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
