"""Chat and direct messages between real processes on loopback, printed as JSON (issue 11).

A broadcaster (``oasis broadcast test``, low bitrate) and ``--viewers`` ``oasis chat``
processes (real QUIC, real swarm links from the broadcaster's tracker). The harness
writes lines to the viewers' stdin and reads their JSON lines, stamping each with its
wall-clock arrival (all processes share this machine's clock):

* chat: ``--messages`` lines from random viewers, ``--gap`` s apart; per message, the
  time until *every* viewer printed it (p50/p95/max), and per viewer;
* bytes: chat copies forwarded (the processes' counters at exit) x the message size,
  per message per process;
* direct messages: ``--dms`` from random viewers to random others, send -> received
  and send -> ACK back (p50/p95);
* spam (``--spam``): a modified client (``bench/chat_spammer.py``, its own process)
  joins and sends ``--spam-rate`` signed messages/s for 10 s while honest viewers talk.

    python bench/chat_live.py --viewers 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import subprocess
import sys
import time
from typing import Any

from scratch import scratch_dir  # bench/ is on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ENV = {**os.environ, "PYTHONPATH": ROOT}


class Proc:
    def __init__(self, args: list[str], log: str, stdin: bool = True) -> None:
        self.logf = open(log, "wb")  # noqa: SIM115
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=self.logf, env=ENV, start_new_session=True)
        self.buf = b""
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self.info: dict[str, Any] = {}

    def say(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def pump(procs: list[Proc], timeout: float) -> None:
    """Read whatever the processes printed within ``timeout`` s, stamped on arrival."""
    fds = {p.p.stdout.fileno(): p for p in procs if p.p.stdout is not None}
    ready, _, _ = select.select(list(fds), [], [], timeout)
    now = time.time()
    for fd in ready:
        p = fds[fd]
        data = os.read(fd, 1 << 16)
        if not data:
            continue
        p.buf += data
        while b"\n" in p.buf:
            raw, p.buf = p.buf.split(b"\n", 1)
            try:
                p.lines.append((now, json.loads(raw)))
            except ValueError:
                pass


def wait_for(procs: list[Proc], pred: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        pump(procs, 0.05)
    return pred()


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep-logs", action="store_true", help="keep the nodes' data and logs")
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--messages", type=int, default=40)
    ap.add_argument("--gap", type=float, default=0.25)
    ap.add_argument("--dms", type=int, default=20)
    ap.add_argument("--spam", action="store_true")
    ap.add_argument("--spam-rate", type=float, default=100.0)
    args = ap.parse_args()
    rng = random.Random(1)
    tmp = scratch_dir("chat-live-", args.keep_logs)
    py = sys.executable
    load0 = os.getloadavg()
    procs: list[Proc] = []
    out: dict[str, Any] = {"bench": "chat_live", "viewers": args.viewers, "load_before": load0}
    try:
        b = Proc([py, "-m", "oasis", "broadcast", "test", "--json", "--bitrate", "100", "--data-dir",
                  f"{tmp}/b"], f"{tmp}/b.log", stdin=False)
        procs.append(b)
        wait_for([b], lambda: bool(b.lines), 60)
        link = b.lines[0][1]["link"]
        vs = []
        for i in range(args.viewers):
            v = Proc([py, "-m", "oasis", "chat", link, "--json", "--wait", "60", "--data-dir", f"{tmp}/v{i}"],
                     f"{tmp}/v{i}.log")
            vs.append(v)
            procs.append(v)
        t_start = time.time()
        ok = wait_for(procs, lambda: all(any(e.get("event") == "linked" for _, e in v.lines) for v in vs), 120)
        out["all_linked_s"] = round(time.time() - t_start, 1)
        if not ok:
            out["error"] = "not every viewer linked in 120 s"
        for v in vs:
            v.info = v.lines[0][1]
        wait_for(procs, lambda: False, 3.0)  # let the swarm's links settle (more than the first)
        # ---- chat ----
        sent: dict[str, tuple[float, int]] = {}
        for k in range(args.messages):
            i = rng.randrange(len(vs))
            text = f"m{k} " + "x" * rng.randint(10, 120)
            sent[text] = (time.time(), i)
            vs[i].say(text)
            wait_for(procs, lambda: False, args.gap)
        wait_for(procs, lambda: all(sum(1 for _, e in v.lines if e.get("event") == "chat.message"
                                        and e["text"] in sent) >= len(sent) for v in vs), 30)
        per_msg: list[float] = []
        per_view: list[float] = []
        missing = 0
        for text, (t0, i) in sent.items():
            times = []
            for j, v in enumerate(vs):
                if j == i:
                    continue
                got = [t for t, e in v.lines if e.get("event") == "chat.message" and e["text"] == text]
                if got:
                    times.append(got[0] - t0)
                else:
                    missing += 1
            per_view += times
            if len(times) == len(vs) - 1:
                per_msg.append(max(times))
        out["chat"] = {"messages": len(sent), "missing_deliveries": missing,
                       "all_viewers_p50_ms": pct(per_msg, 0.5), "all_viewers_p95_ms": pct(per_msg, 0.95),
                       "all_viewers_max_ms": pct(per_msg, 1.0),
                       "per_viewer_p50_ms": pct(per_view, 0.5), "per_viewer_p95_ms": pct(per_view, 0.95),
                       "load": os.getloadavg()}
        # ---- direct messages ----
        dms: dict[str, tuple[float, int, int]] = {}
        for k in range(args.dms):
            i, j = rng.sample(range(len(vs)), 2)
            text = f"dm{k} secret"
            dms[text] = (time.time(), i, j)
            vs[i].say(f"/dm {vs[j].info['peer_id']} {text}")
            wait_for(procs, lambda: False, args.gap)
        wait_for(procs, lambda: all(any(e.get("event") == "dm.received" and e["text"] == t for _, e in vs[j].lines)
                                    for t, (_, _, j) in dms.items()), 30)
        recv, acks = [], []
        for text, (t0, i, j) in dms.items():
            got = [t for t, e in vs[j].lines if e.get("event") == "dm.received" and e["text"] == text]
            if got:
                recv.append(got[0] - t0)
            sid = [e["id"] for _, e in vs[i].lines if e.get("event") == "dm.sent" and e.get("to") == vs[j].info["peer_id"]]
            ack = [t for t, e in vs[i].lines if e.get("event") == "dm.acked" and e["id"] in sid]
            if ack:
                acks.append(ack[0] - t0)
        out["dm"] = {"sent": len(dms), "received": len(recv), "acked": len(acks),
                     "received_p50_ms": pct(recv, 0.5), "received_p95_ms": pct(recv, 0.95),
                     "ack_p50_ms": pct(acks, 0.5), "ack_p95_ms": pct(acks, 0.95), "load": os.getloadavg()}
        # ---- spam ----
        if args.spam:
            sp = Proc([py, os.path.join(ROOT, "bench", "chat_spammer.py"), link, f"{tmp}/spam",
                       str(args.spam_rate), "10"], f"{tmp}/spam.log", stdin=False)
            procs.append(sp)
            wait_for(procs, lambda: any(e.get("event") == "spamming" for _, e in sp.lines), 60)
            honest: dict[str, tuple[float, int]] = {}
            t_end = time.time() + 10
            k = 0
            while time.time() < t_end:
                i = rng.randrange(len(vs))
                text = f"honest{k}"
                honest[text] = (time.time(), i)
                vs[i].say(text)
                k += 1
                wait_for(procs, lambda: False, 0.5)
            wait_for(procs, lambda: any(e.get("event") == "done" for _, e in sp.lines), 30)
            wait_for(procs, lambda: False, 3.0)
            spam_seen = [sum(1 for _, e in v.lines if e.get("event") == "chat.message"
                             and e["text"].startswith("SPAM")) for v in vs]
            hl, hmiss = [], 0
            for text, (t0, i) in honest.items():
                for j, v in enumerate(vs):
                    if j == i:
                        continue
                    got = [t for t, e in v.lines if e.get("event") == "chat.message" and e["text"] == text]
                    if got:
                        hl.append(got[0] - t0)
                    else:
                        hmiss += 1
            done = [e for _, e in sp.lines if e.get("event") == "done"]
            out["spam"] = {"spam_sent": done[0]["sent"] if done else None, "spam_rate": args.spam_rate,
                           "allowed_by_rule": 5 + 10 * 1.0,
                           "spam_seen_per_viewer_max": max(spam_seen),
                           "spam_seen_per_viewer_mean": round(sum(spam_seen) / len(spam_seen), 1),
                           "honest_sent": len(honest), "honest_missing": hmiss,
                           "honest_p95_ms": pct(hl, 0.95), "load": os.getloadavg()}
    finally:
        for p in procs[1:]:
            p.stop()
        pump(procs, 2.0)
        procs[0].stop() if procs else None
    counters = [e for p in procs[1:] for _, e in p.lines if e.get("event") == "counters"]
    if counters and "chat" in out:
        fwd = sum(c.get("chat_forwarded", 0) for c in counters)
        n_msgs = out["chat"]["messages"] + (out.get("spam", {}).get("honest_sent") or 0)
        out["chat"]["copies_forwarded_per_message_per_process"] = round(fwd / max(1, n_msgs) / len(counters), 2)
        out["chat"]["bytes_per_message_per_process"] = round(
            sum(c.get("chat_bytes_sent", 0) for c in counters) / max(1, n_msgs) / len(counters), 1)
        out["relay_counters"] = {k: sum(c.get(k, 0) for c in counters) for k in
                                 ("chat_rate_limited", "chat_link_limited", "chat_duplicates", "dm_relayed",
                                  "dm_stored", "dm_handed_over")}
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
