"""``oasis demo``: a live swarm on one machine, with real processes and real QUIC.

Starts a broadcaster (test source, embedded tracker and HTTP origin) and N
viewer processes on loopback, all at once (each forked from a launcher that has
done the imports, :mod:`oasis.zygote`; a fresh interpreter each if it cannot
start), shows live progress in the terminal, runs ``--duration`` seconds after
the last viewer joined, then collects every viewer's per-chunk record and
prints a summary (a table, or one JSON object with ``--json``). Every process it
starts is stopped, and its temporary directory removed (unless ``--keep``), before it
returns -- also when SIGINT, SIGTERM or SIGHUP stops it early: then the summary is of what
it measured until then, marked ``"interrupted": "<signal>"``, and the exit status 128 + the
signal's number. A second signal skips that summary.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from oasis.core.metrics import missed_by_phase, summarize
from oasis.zygote import ForkedProcess, Zygote, die_with_parent

START_TIMEOUT = 60.0
REPO = Path(__file__).resolve().parents[1]


class DevChain:
    """The demo's chain: a local anvil node (npm registry binary) with fresh contracts.

    All demo processes share it over JSON-RPC, the same code path as any EVM
    node in production. Wallets are funded from anvil's dev accounts.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.keys: list[bytes] = []
        self.deployment: Any = None

    def start(self) -> None:
        from oasis.ledger.chain import RpcChain

        inst = subprocess.run(["bash", str(REPO / "scripts" / "install_anvil.sh")], capture_output=True,
                              text=True, timeout=600)
        if inst.returncode != 0:
            raise RuntimeError(f"anvil is not installable: {inst.stderr.strip()[-300:]}")
        binary = inst.stdout.strip().splitlines()[-1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = Path(self.root) / "anvil.json"
        self.proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--accounts", "3",
                                      "--config-out", str(cfg), "--silent"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if cfg.exists() and RpcChain(self.url, timeout=2).w3.eth.chain_id:
                    break
            except Exception:  # not up yet
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("anvil did not start")
            time.sleep(0.1)
        self.keys = [bytes.fromhex(k[2:]) for k in json.loads(cfg.read_text())["private_keys"]]
        self.chain = RpcChain(self.url)
        self.deployment = self.chain.deploy(self.keys[0])

    def prepare(self, data_dir: str, *, fund: bool) -> None:
        """Give a node the deployment, and (viewers) ETH for settlement gas."""
        from oasis.ledger import devnet
        from oasis.ledger.wallet import Wallet, ledger_dir

        ledger_dir(data_dir).mkdir(parents=True, exist_ok=True)
        (ledger_dir(data_dir) / "deployment.json").write_text(self.deployment.to_json())
        if fund:
            devnet.fund(self.chain, self.keys[1], Wallet.load_or_create(data_dir).address)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes] | ForkedProcess
    info: dict[str, Any] = field(default_factory=dict)
    log: str = ""  #: its stderr's file


def _why_not_started(proc: Proc) -> str:
    """What a process that ended before its start line said: its exit status and its log's
    last error line (the demo said "exit None", and never why)."""
    try:
        code = proc.popen.wait(5)  # (its stdout ended a moment before it exited)
    except subprocess.TimeoutExpired:
        code = None
    said = ""
    try:
        with open(proc.log, errors="replace") as f:
            lines = [x.strip() for x in f.read()[-4000:].splitlines() if x.strip()]
        said = next((x for x in reversed(lines) if "error" in x.lower() or x.startswith("oasis ")),
                    lines[-1] if lines else "")
    except OSError:
        pass
    status = "still running" if code is None else f"exit {code}"
    return f"{proc.name} exited before it started ({status}){': ' + said[:300] if said else ''}"


def _spawn(name: str, args: list[str], log_dir: str, env: dict[str, str] | None = None,
           zygote: Zygote | None = None) -> Proc:
    log = os.path.join(log_dir, f"{name}.log")
    if zygote is not None:  # forked from the launcher: the imports are done already
        return Proc(name, zygote.spawn(args, log, env), log=log)
    err = open(os.path.join(log_dir, f"{name}.log"), "wb")  # noqa: SIM115 - closed with the process
    p = subprocess.Popen([sys.executable, "-m", "oasis", *args], stdout=subprocess.PIPE, stderr=err,
                         stdin=subprocess.DEVNULL, start_new_session=True,
                         env={**os.environ, **(env or {})}, preexec_fn=die_with_parent)
    err.close()
    return Proc(name, p, log=log)


async def _exited(proc: Proc, every: float = 0.2) -> None:
    """Returns when ``proc`` has ended (a bounded poll: its exit has no event here)."""
    while proc.popen.poll() is None:
        await asyncio.sleep(every)


async def _first_line(proc: Proc, timeout: float,
                      executor: concurrent.futures.Executor | None = None) -> dict[str, Any]:
    """The process's first stdout line (its JSON start-up record), read in ``executor``
    (one thread per process started together: the loop's default pool has few)."""
    assert proc.popen.stdout is not None
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(executor, proc.popen.stdout.readline), timeout)
    if not line:
        raise RuntimeError(_why_not_started(proc))
    info: dict[str, Any] = json.loads(line)
    proc.info = info
    return info


def _stop_all(procs: list[Proc], interrupted: bool = False) -> int:
    """SIGTERM, wait, then SIGKILL. Returns how many exited with an error. ``interrupted``:
    the demo was stopped by a signal, which a shell sends to the whole process group
    (closing the terminal, ``kill -TERM -PGID``): a child that ended by such a signal did not
    fail (5-7 such were counted as errors)."""
    stopped_by = {0, -signal.SIGTERM}
    if interrupted:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            stopped_by |= {-sig, 128 + sig}
    failed = 0
    for p in procs:
        if p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.popen.pid, signal.SIGKILL)
            p.popen.wait()
            failed += 1
            continue
        if p.popen.returncode not in stopped_by:
            failed += 1
        if p.popen.stdout is not None:
            p.popen.stdout.close()
    return failed


async def _stats(session: aiohttp.ClientSession, url: str, detail: bool = False) -> dict[str, Any] | None:
    try:
        async with session.get(f"{url}/stats" + ("?detail=1" if detail else ""),
                               timeout=aiohttp.ClientTimeout(total=10)) as r:
            data: dict[str, Any] = await r.json()
            return data
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
INTERRUPTED_STATS_TIMEOUT = 5.0  #: s the final /stats of an interrupted demo may take


@dataclass
class _Run:
    """How far the demo got (what an interrupted one can still summarise)."""

    binfo: dict[str, Any] | None = None
    viewers: list[Proc] = field(default_factory=list)
    joined: int = 0
    running_since: float | None = None  #: monotonic time all viewers had joined
    signals: list[int] = field(default_factory=list)
    first_signal_at: float = 0.0  #: loop time of the first stop signal


#: a stop signal this soon after the first is the same stop said twice (a terminal's Ctrl-C
#: reaches the whole process group, and a wrapper in it such as `timeout` passes it on to
#: the demo again): without it the demo took the copy for a second Ctrl-C and gave up its
#: figures (found 2026-12-06 from outside)
SAME_STOP = 1.0


async def _stoppable_demo(args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    """:func:`demo` as ``oasis demo`` runs it: SIGINT, SIGTERM and SIGHUP stop it the same
    way (every process stopped, the directory removed, the summary marked interrupted)."""
    loop = asyncio.get_running_loop()
    run = _Run()
    me = asyncio.current_task()

    def stop(signum: int) -> None:  # the first: stop and summarise; the next: stop summarising
        now = loop.time()
        if run.signals and now - run.first_signal_at < SAME_STOP:
            return
        if not run.signals:
            run.first_signal_at = now
        run.signals.append(signum)
        if me is not None:
            me.cancel()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await demo(args, progress, run)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def demo(args: argparse.Namespace, progress: Any, run: _Run | None = None) -> dict[str, Any]:
    """Run the demo; its summary. ``run``: where :func:`_stoppable_demo` records the stop
    signals (without one, a cancellation is raised through, after the clean-up)."""
    run = run or _Run()
    bitrate = args.bitrate
    # the viewers' cap: the user's, fixed, or none given: the node's own (4x, probed to 8x)
    up = [] if args.upload_kbps is None else ["--upload-kbps", str(args.upload_kbps)]
    bup = args.broadcaster_upload_kbps if args.broadcaster_upload_kbps is not None else 2 * bitrate
    root = tempfile.mkdtemp(prefix="oasis-demo-")
    procs: list[Proc] = []
    zygote: Zygote | None = None
    result: dict[str, Any] = {}
    process_failures = 0
    chain: DevChain | None = None
    pool: concurrent.futures.ThreadPoolExecutor | None = None
    try:
        common = ["--bitrate", str(bitrate), "--chunk-ms", str(args.chunk_ms), "--json"]
        ledger: list[str] = []
        benv: dict[str, str] = {}
        if args.rewards:
            chain = DevChain(root)
            progress.note("starting the demo chain (anvil) and deploying the contracts…")
            await asyncio.get_running_loop().run_in_executor(None, chain.start)
            chain.prepare(os.path.join(root, "broadcaster"), fund=False)
            ledger = ["--rewards", "--chain-rpc", chain.url]
            benv = {"OASIS_DEV_FAUCET_KEY": chain.keys[0].hex()}
        # Testing: per-process emulated one-way delay (broadcaster first, then viewers).
        delays = list(getattr(args, "link_delays_ms", None) or [])

        def delay(i: int) -> list[str]:
            return ["--link-delay-ms", str(delays[i])] if i < len(delays) and delays[i] else []

        # Testing: per-viewer clock skew (a viewer's clock off the broadcaster's), ms.
        skews = list(getattr(args, "clock_skews_ms", None) or [])

        def skew(i: int) -> list[str]:
            return ["--clock-skew-ms", str(skews[i])] if i < len(skews) and skews[i] else []

        encrypt = bool(getattr(args, "encrypt", False))
        b = _spawn("broadcaster", ["broadcast", args.source, *common, "--upload-kbps", str(bup), *ledger,
                                   *delay(0), *(["--encrypt"] if encrypt else []),
                                   *(["--epoch", str(args.epoch)] if args.rewards else []),
                                   "--data-dir", os.path.join(root, "broadcaster")], root, benv)
        procs.append(b)
        # The viewers are forked from one launcher that has done the imports (0.8 CPU-s a
        # process, and the EVM stack's seconds with proof of relay: twenty at once kept two
        # cores busy for ~10 s); it loads while the broadcaster starts. ``fork=False`` (a
        # Namespace attribute, not a CLI option): each viewer a fresh interpreter.
        if getattr(args, "fork", True):
            zygote = Zygote(preload=("oasis.node.rewards", "oasis.node.rewards_http") if args.rewards else ())
        binfo = run.binfo = await _first_line(b, START_TIMEOUT)
        progress.started(binfo)
        if zygote is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, zygote.wait_ready, START_TIMEOUT)
            except (OSError, RuntimeError) as exc:
                progress.note(f"viewers start as separate interpreters (the launcher failed: {exc})")
                zygote = None
        viewers = run.viewers
        vdirs: list[str] = []
        started = time.monotonic()
        for i in range(args.viewers):
            vdir = os.path.join(root, f"viewer{i}")
            vdirs.append(vdir)
            if chain is not None:
                chain.prepare(vdir, fund=True)
        # All viewers start at once (each its own process); one reader thread each. Testing:
        # ``join_spacing_s`` (a Namespace attribute) starts them that many seconds apart.
        spacing = float(getattr(args, "join_spacing_s", 0.0) or 0.0)
        for i, vdir in enumerate(vdirs):
            if i and spacing > 0:
                await asyncio.sleep(spacing)
            # Bitrate, chunking and substreams come from the stream's signed descriptor.
            # (an encrypted stream: its link, which carries the content key; else id + tracker)
            joins = [binfo["link"]] if encrypt else [binfo["stream_id"], "--tracker", binfo["tracker"]]
            v = _spawn(f"viewer{i}", ["watch", *joins,
                                      "--gateway", "127.0.0.1:0", *up, "--json",
                                      *ledger, *delay(i + 1), *skew(i), "--data-dir", vdir], root,
                         zygote=zygote)
            procs.append(v)
            viewers.append(v)
        # (shut down in ``finally`` without waiting: a reader stuck on a viewer that never
        # started ends when that viewer is stopped)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(viewers)))

        async def join_all() -> None:
            firsts = [asyncio.ensure_future(_first_line(v, START_TIMEOUT, pool)) for v in viewers]
            try:
                for fut in asyncio.as_completed(firsts):
                    await fut
                    run.joined += 1
                    if run.joined == len(viewers):
                        # running from here: a signal right after the "joined" line is a stop of
                        # a running demo, with figures (it was set a few statements later, and
                        # a loaded machine's signal in between gave none; found 2026-12-06)
                        run.running_since = time.monotonic()
                    progress.joined(run.joined, args.viewers)
            finally:  # (given up: each one's outcome retrieved, no "never retrieved" traceback)
                for f in firsts:
                    f.cancel()
                await asyncio.gather(*firsts, return_exceptions=True)

        # A broadcaster that ends meanwhile (a stdin source with nothing in it) is the cause:
        # the demo waited START_TIMEOUT and blamed the first viewer (found 2026-12-06)
        joining = asyncio.ensure_future(join_all())
        gone = asyncio.ensure_future(_exited(b))
        try:
            await asyncio.wait((joining, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not joining.done():
                joining.cancel()
                await asyncio.gather(joining, return_exceptions=True)
        if not joining.done() or joining.cancelled():
            raise RuntimeError(_why_not_started(b).replace("exited before it started", "ended while the "
                                                            "viewers started"))
        joining.result()  # (a viewer that failed to start: its error)
        joined_in_s = time.monotonic() - started
        if run.running_since is None:
            run.running_since = time.monotonic()
        t_end = time.monotonic() + args.duration
        async with aiohttp.ClientSession() as session:
            while (left := t_end - time.monotonic()) > 0:
                stats = await asyncio.gather(*[_stats(session, v.info["gateway"]) for v in viewers])
                progress.tick(args.duration - left, args.duration, stats)
                for p in procs:
                    if p.popen.poll() is not None:
                        raise RuntimeError(f"{p.name} exited early with code {p.popen.returncode}; "
                                           f"see {root}/{p.name}.log")
                await asyncio.sleep(min(1.0, left))
            final = await asyncio.gather(*[_stats(session, v.info["gateway"], detail=True) for v in viewers])
            bstats = await _stats(session, binfo["http"], detail=True)
            now = time.time()
            rewards = None
            if chain is not None:
                progress.note("\nsettling the last epoch…")
                rewards = [await _settle(session, v.info["gateway"], d) for v, d in zip(viewers, vdirs,
                                                                                         strict=True)]
        result = _summary(args, bitrate, final, bstats, now)
        result["viewers_joined_in_s"] = round(joined_in_s, 2)  # all processes up, from the first start
        if rewards is not None:
            result["rewards"] = _rewards(rewards, result, args)
    except asyncio.CancelledError:
        if not run.signals:  # not our signal handler's: somebody else's cancellation
            raise
        _uncancel()
        result = await _interrupted(args, bitrate, run, progress)
    finally:
        process_failures = _stop_all(procs, interrupted=bool(run.signals))
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if zygote is not None:
            zygote.close()
        if chain is not None:
            chain.stop()
        if result.get("errors"):  # what the nodes logged of it, before the logs go
            result.setdefault("error_detail", {})["violation_lines"] = _violation_lines(root)
        if args.keep:
            progress.note(f"data and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["errors"] += process_failures
    result["error_detail"]["process_failures"] = process_failures
    return result


def _uncancel() -> None:
    """The cancellation a stop signal made is handled: later waits are not cancelled."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _interrupted(args: argparse.Namespace, bitrate: int, run: _Run, progress: Any) -> dict[str, Any]:
    """The summary of a demo a signal stopped: what the viewers measured until now (their
    final /stats, within a few seconds) once they all run, else how far it got. A second
    signal gives up the figures."""
    name = signal.Signals(run.signals[0]).name
    ran = round(time.monotonic() - run.running_since, 1) if run.running_since is not None else 0.0
    when = f"after {ran:g} s of {args.duration:g}" if run.running_since is not None else "while starting"
    progress.note(f"\ninterrupted ({name}) {when}: stopping every process…")
    out: dict[str, Any] = {"interrupted": name, "viewers": args.viewers, "viewers_joined": run.joined,
                           "ran_s": ran, "errors": 0, "error_detail": {}}
    joined = [v for v in run.viewers if v.info]
    if run.binfo is None or run.running_since is None or len(run.signals) > 1:
        return out
    try:
        async with aiohttp.ClientSession() as session:
            asks = [asyncio.ensure_future(_stats(session, v.info["gateway"], detail=True)) for v in joined]
            asks.append(asyncio.ensure_future(_stats(session, run.binfo["http"], detail=True)))
            try:
                *final, bstats = await asyncio.wait_for(asyncio.gather(*asks), INTERRUPTED_STATS_TIMEOUT)
            finally:  # (cancelled ones awaited: no "exception was never retrieved" traceback)
                for a in asks:
                    a.cancel()
                await asyncio.shield(asyncio.gather(*asks, return_exceptions=True))
        summary = _summary(args, bitrate, list(final), bstats, time.time())
    except asyncio.CancelledError:  # a second signal: no figures, stop now
        _uncancel()
        return out
    except (TimeoutError, RuntimeError) as exc:  # the broadcaster did not answer
        progress.note(f"no summary: {exc or 'the nodes did not answer in time'}")
        return out
    return summary | out | {"duration_s": ran, "errors": summary["errors"], "error_detail": summary["error_detail"]}


def _violation_lines(root: str, most: int = 20) -> list[str]:
    """The first ``most`` protocol-violation lines the nodes logged (``<node>: <line>``)."""
    out: list[str] = []
    for name in sorted(os.listdir(root)):
        if not name.endswith(".log"):
            continue
        try:
            with open(os.path.join(root, name), errors="replace") as f:
                for line in f:
                    if "protocol violation" in line:
                        out.append(f"{name[:-4]}: {line.strip()[:300]}")
                        if len(out) >= most:
                            return out
        except OSError:
            continue
    return out


async def _settle(session: aiohttp.ClientSession, url: str, data_dir: str) -> dict[str, Any] | None:
    """Settle a viewer now (``POST /rewards/settle``: loopback, with the token from its data
    dir); its rewards report, or None (a refusal is logged to stderr, not hidden)."""
    from oasis.node.rewards import settle_token
    from oasis.node.rewards_http import SETTLE_TOKEN_HEADER

    try:
        async with session.post(f"{url}/rewards/settle", headers={SETTLE_TOKEN_HEADER: settle_token(data_dir)},
                                timeout=aiohttp.ClientTimeout(total=60)) as r:
            if r.status != 200:
                print(f"oasis demo: settle at {url}: HTTP {r.status} {(await r.text())[:200]}",
                      file=sys.stderr)
                return None
            data: dict[str, Any] = await r.json()
            return data
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError):
        return None


def _rewards(reports: list[dict[str, Any] | None], result: dict[str, Any],
             args: argparse.Namespace) -> dict[str, Any]:
    """The demo's ``rewards`` object: receipts, settlement txs, tokens, gas, CPU share."""
    ok = [r for r in reports if r is not None]
    relays = [r for r in ok if r.get("settle_txs")]
    receipts = sum(r.get("receipts", 0) for r in ok)
    paid = sum(r.get("receipts_paid", 0) for r in ok)
    for pv, r in zip(result["per_viewer"], reports, strict=False):
        if r is not None:
            pv["tokens_earned"] = r.get("tokens_paid", 0)
            pv["receipts"] = r.get("receipts", 0)
    cpu = sum(r.get("process_cpu_s", 0) for r in ok)
    return {
        "receipts": receipts,
        "settle_txs": sum(r.get("settle_txs", 0) for r in ok),
        "tokens_paid": sum(int(r.get("tokens_paid", 0)) for r in ok),
        "gas_per_receipt": round(sum(r.get("gas_used", 0) for r in ok) / paid) if paid else None,
        "relays_paid": sum(1 for r in ok if r.get("tokens_paid")),
        # Transactions per (relay, epoch it settled): 1.0 = one transaction per epoch.
        "settle_txs_per_relay_epoch": round(sum(r["settle_txs"] for r in relays)
                                            / sum(r["epochs_settled"] for r in relays), 3) if relays else 0.0,
        "receipts_rejected": sum(r.get("receipts_rejected", 0) for r in ok),
        "settle_errors": sum(r.get("settle_errors", 0) for r in ok),
        "receipt_cpu_share": round(sum(r.get("ledger_cpu_s", 0) for r in ok) / cpu, 4) if cpu else 0.0,
        "missing_reports": len(reports) - len(ok),
    }


def _summary(args: argparse.Namespace, bitrate: int, final: list[dict[str, Any] | None],
             bstats: dict[str, Any] | None, now: float) -> dict[str, Any]:
    if bstats is None:
        raise RuntimeError("broadcaster did not answer its final /stats")
    bstream = bstats["streams"][0]
    produced = {int(k): v for k, v in bstream["produced"].items()}
    records, per_viewer = [], []
    media = overhead = wire = 0
    violations = bad = missing_stats = unopened = 0
    for s in [*final, bstats]:
        if s is None:
            missing_stats += 1
            continue
        t = s["traffic"]
        media += t["media"]
        overhead += t["control"] + t["chunk_stream"] - t["media"]
        wire += t["wire"]
        violations += s["counters"]["violations"]
        for st in s["streams"]:
            bad += st["swarm_counters"]["bad_chunks"]
            unopened += st.get("unopened", 0)  # (an encrypted stream's media that did not open)
    judged = now - 1.0
    pd = getattr(args, "playout_delay", 0.5)
    missed: dict[str, int] = {}
    for i, s in enumerate(final):
        if s is None:
            continue
        st = s["streams"][0]
        records.append(st["record"])
        # where the chunks counted missed from the join fall (before the start, before the
        # first frame, its first seconds, later), with the node's own trace of its start
        phases = missed_by_phase(st["record"], produced, judged, pd, st.get("start"))
        for k, n in phases.items():
            missed[k] = missed.get(k, 0) + n
        per_viewer.append({"viewer": i, "joined_at": st["record"]["joined_at"],
                           "start_trace": st.get("start_trace", {}), "start_source": st.get("start_source"),
                           "fed_s": st.get("fed_s"),
                           "missed": phases,
                           "peer_id": s["peer_id"][:12], "depth": st["depth"], "bytes": st["bytes"],
                           "latency_p50_ms": st["latency_p50_ms"], "skipped": st["skipped"],
                           "origin_fetches": st["origin_fetches"],
                           "origin_failures": st["origin_failures"],
                           "origin_error": st.get("origin_error", ""),
                           "late": st["swarm_counters"]["late"]})
    # A chunk is judged once its deadline passed; the last ones are still in flight.
    summary = summarize(records, produced, judged, playout_delay=pd)
    errors = violations + bad + missing_stats + unopened
    return {
        "viewers": args.viewers,
        "duration_s": args.duration,
        "bitrate_kbps": bitrate,
        "chunk_ms": args.chunk_ms,
        "encrypted": bool(bstream.get("encrypted", False)),  # (--encrypt: docs/oftp.md §7.2)
        "chunks_produced": len(produced),
        "first_chunk_at": min(produced.values()) if produced else None,
        "judged_at": now - 1.0,
        "latency_ms": summary["latency_ms"],
        "continuity": summary["continuity"],
        # the same from each viewer's first frame on (its start-up is startup_ms)
        "continuity_playing": summary["continuity_playing"],
        "offload_ratio": summary["offload_ratio"],
        "startup_ms": summary["startup_ms"],
        "missed": missed,
        "bytes": summary["bytes"],
        "overhead_ratio": round(overhead / media, 5) if media else 0.0,
        "wire_overhead_ratio": round((wire - media) / media, 5) if media else 0.0,
        "errors": errors,
        "error_detail": {"protocol_violations": violations, "bad_chunks": bad,
                         "viewers_without_stats": missing_stats, "unopened": unopened},
        "viewers_started": summary["viewers_started"],
        "per_viewer": per_viewer,
    }


def player_url(binfo: dict[str, Any]) -> str:
    """The broadcaster's own player gateway for its stream (MPEG-TS over HTTP)."""
    return f"{binfo['http']}/live/{binfo['stream_id']}.ts"


def web_url(binfo: dict[str, Any]) -> str:
    """The broadcaster's own web player page for its stream (a browser)."""
    return f"{binfo['http']}/watch/{binfo['stream_id']}"


class _Progress:
    """Terminal progress with rich (stderr when --json, so stdout stays one JSON object)."""

    def __init__(self, quiet_json: bool) -> None:
        from rich.console import Console
        self.console = Console(stderr=quiet_json)
        # on a terminal each line overwrites the last; in a log file or CI, whole lines (the
        # joins as one line at the end, the ticks every 10 s)
        self.live = self.console.is_terminal
        self._last_tick = -10.0

    def started(self, info: dict[str, Any]) -> None:
        self.console.print(f"[bold]broadcaster[/] {info['stream_id']}\n  tracker {info['tracker']}"
                           f"\n  origin  {info['origin']}\n  oftp    {info['oftp']}"
                           f"\n  player  {player_url(info)}  (ffplay, mpv or VLC; while the demo runs)"
                           f"\n  web     {web_url(info)}  (a browser)"
                           + ("\n  encrypted end to end: the viewers join with the link, which carries "
                              f"the content key (k=)\n  link    {info['link']}" if info.get("encrypted") else ""),
                           highlight=False, soft_wrap=True)  # a URL is not cut across lines

    def joined(self, n: int, total: int) -> None:
        if self.live:
            self.console.print(f"viewer {n}/{total} joined", end="\r")
        elif n == total:
            self.console.print(f"{total} viewers joined")

    def tick(self, elapsed: float, total: float, stats: list[dict[str, Any] | None]) -> None:
        chunks = p2p = allb = 0
        for s in stats:
            if not s:
                continue
            st = s["streams"][0]
            chunks += st["chunks"]
            b = st["bytes"]
            p2p += b.get("p2p", 0)
            allb += sum(b.values())
        lat = sorted(s["streams"][0]["latency_p50_ms"] for s in stats
                     if s and s["streams"][0]["latency_p50_ms"] is not None)
        med = f"{lat[len(lat) // 2]:.0f} ms" if lat else "-"
        # (bytes of chunks still arriving count before the first chunk is verified: no
        # share is shown until one is)
        off = f"{100 * p2p / allb:.1f}%" if allb and chunks else "-"
        line = (f"[{elapsed:5.1f}/{total:.0f}s] viewers {sum(1 for s in stats if s)} "
                f"chunks received {chunks} (all viewers) latency p50 {med} offload {off}")
        # (rich wraps at the console's width, 80 columns off a terminal: a log got each tick
        # as two lines, and a narrow terminal's overwritten line left its wrapped tail behind)
        if self.live:
            width = max(20, self.console.width - 1)
            self.console.print(line[:width].ljust(width), end="\r", soft_wrap=True, highlight=False)
        elif elapsed - self._last_tick >= 10.0:
            self._last_tick = elapsed
            self.console.print(line, soft_wrap=True, highlight=False)

    def note(self, text: str) -> None:
        try:
            self.console.print(text)
        except OSError:  # the terminal is gone (SIGHUP): the demo still cleans up
            pass


def _table(result: dict[str, Any], progress: _Progress) -> None:
    from rich.table import Table
    title = "Oasis demo summary"
    if result.get("interrupted"):
        title += f" (interrupted by {result['interrupted']} after {result['ran_s']:g} s)"
    t = Table(title=title, caption="continuity: the share of chunks played on time; offload: the share "
              "of the viewers' media bytes that came from other viewers (not from the broadcaster or "
              "the origin); latency: from the broadcaster's chunk to the viewer's verified copy")
    t.add_column("figure")
    t.add_column("value", justify="right")
    lat = result["latency_ms"]
    rows = [
        ("viewers", result["viewers"]), ("duration", f"{result['duration_s']} s"),
        ("chunks produced", result["chunks_produced"]),
        ("latency p50/p95/p99/max", f"{lat['p50']}/{lat['p95']}/{lat['p99']}/{lat['max']} ms"),
        ("continuity (from join / once playing)",
         f"{100 * result['continuity']:.2f} % / {100 * result['continuity_playing']:.2f} %"),
        ("offload (peer bytes)", f"{100 * result['offload_ratio']:.1f} %"),
        ("startup p50/p95", f"{result['startup_ms']['p50']}/{result['startup_ms']['p95']} ms"),
        ("bytes p2p/broadcaster/origin",
         f"{result['bytes']['p2p']}/{result['bytes']['broadcaster']}/{result['bytes']['origin']}"),
        ("protocol overhead", f"{100 * result['overhead_ratio']:.2f} %"),
        ("wire overhead (QUIC+UDP/IP)", f"{100 * result['wire_overhead_ratio']:.2f} %"),
        ("errors", result["errors"]),
    ]
    rw = result.get("rewards")
    if rw:
        rows += [("receipts / settle txs", f"{rw['receipts']} / {rw['settle_txs']}"),
                 ("tokens paid (wei)", rw["tokens_paid"]), ("gas per receipt", rw["gas_per_receipt"]),
                 ("receipt CPU share", f"{100 * rw['receipt_cpu_share']:.2f} %")]
    for k, v in rows:
        t.add_row(k, str(v))
    progress.console.print()
    progress.console.print(t)
    if rw:
        e = Table(title="What each relay earned")
        for col in ("viewer", "depth (hops from the broadcaster, per substream)", "receipts", "tokens (OAS)"):
            e.add_column(col)
        for pv in sorted(result["per_viewer"], key=lambda p: -int(p.get("tokens_earned", 0))):
            e.add_row(pv["peer_id"], str(pv["depth"]), str(pv.get("receipts", 0)),
                      f"{int(pv.get('tokens_earned', 0)) / 1e18:.6f}")
        progress.console.print(e)


def run_demo(args: argparse.Namespace) -> int:
    progress = _Progress(args.json)
    try:
        import uvloop
        result = uvloop.run(_stoppable_demo(args, progress))
    except ImportError:
        result = asyncio.run(_stoppable_demo(args, progress))
    except RuntimeError as exc:
        print(f"oasis demo: error: {exc}", file=sys.stderr)
        return 1
    if "rewards" in result:
        rw = result["rewards"]
        result["errors"] += rw["receipts_rejected"] + rw["settle_errors"] + rw["missing_reports"]
    try:
        if args.json:
            print(json.dumps({k: v for k, v in result.items() if k != "per_viewer"}), flush=True)
        elif "latency_ms" in result:
            _table(result, progress)
        else:  # interrupted before the viewers ran: nothing measured
            progress.note(f"interrupted by {result['interrupted']} before the viewers ran "
                          f"({result['viewers_joined']} of {result['viewers']} had joined)")
    except OSError:  # stdout gone with the terminal (SIGHUP)
        pass
    if result.get("interrupted"):
        return 128 + signal.Signals[result["interrupted"]].value
    return 0 if result["errors"] == 0 else 1
