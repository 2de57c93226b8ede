"""``oasis chat`` between real processes: a broadcaster relays chat among viewers, and a
direct message to a viewer that is not running yet is held by peers and delivered (and
acknowledged) when it starts."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from procs import OasisProcess

from oasis.demo import die_with_parent
from oasis.node.keystore import load_or_create


class Talker:
    """An ``oasis chat`` process whose stdin the test writes and whose JSON lines it reads."""

    def __init__(self, args: list[str], log: Path, stdin: Any = subprocess.PIPE) -> None:
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        # unbuffered: select() on the pipe must see every line (a buffered reader may hold
        # the next line already, and select would wait for more that never comes)
        self.p = subprocess.Popen([sys.executable, "-m", "oasis", *args], stdin=stdin,
                                  stdout=subprocess.PIPE, stderr=self.log, start_new_session=True,
                                  preexec_fn=die_with_parent, bufsize=0)
        self.seen: list[dict[str, Any]] = []
        self.info = self.next(lambda e: "peer_id" in e, 30)

    def say(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def next(self, pred: Any, timeout: float) -> dict[str, Any]:
        assert self.p.stdout is not None
        for e in self.seen:
            if pred(e):
                self.seen.remove(e)
                return e
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            ready, _, _ = select.select([self.p.stdout], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError(f"no matching line within {timeout} s (seen {self.seen[-5:]})")
            raw = self.p.stdout.readline()
            if not raw:
                raise RuntimeError(f"process exited with {self.p.poll()}")
            e = json.loads(raw)
            if pred(e):
                return e
            self.seen.append(e)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        for f in (self.p.stdin, self.p.stdout):
            if f is not None:
                f.close()
        self.log.close()


def _broadcaster(tmp_path: Path, procs: list[Any]) -> str:
    """A broadcaster of a test stream (stopped with ``procs``); its link."""
    b = OasisProcess(["broadcast", "test", "--json", "--bitrate", "300", "--data-dir", str(tmp_path / "b")],
                     str(tmp_path / "b.log"))
    procs.append(b)
    return str(b.wait_info(60)["link"])


def test_chat_relayed_between_processes_and_a_dm_waits_for_its_offline_recipient(tmp_path: Path) -> None:
    procs: list[Any] = []
    try:
        link = _broadcaster(tmp_path, procs)

        def chat(name: str) -> Talker:
            t = Talker(["chat", link, "--json", "--data-dir", str(tmp_path / name)], tmp_path / f"{name}.log")
            procs.append(t)
            return t

        a, c = chat("a"), chat("c")
        for t in (a, c):  # chat has no backlog: speak once the swarm links us
            t.next(lambda e: e.get("event") == "linked", 20)
        a.say("hello from a")
        got = c.next(lambda e: e.get("event") == "chat.message" and e["sender"] == a.info["peer_id"], 20)
        assert got["text"] == "hello from a"
        c.say("hi a")
        assert a.next(lambda e: e.get("event") == "chat.message" and e["text"] == "hi a", 20)

        # d is not running; its key exists (it has been online before)
        d_id = load_or_create(str(tmp_path / "d")).peer_id
        a.say(f"/dm {d_id} are you there?")
        sent = a.next(lambda e: e.get("event") == "dm.sent", 20)
        assert sent["state"] == "stored"  # handed to peers close to d's id
        d = chat("d")  # links to peers that hold the envelope, which hand it over
        got = d.next(lambda e: e.get("event") == "dm.received", 30)
        assert got["text"] == "are you there?" and got["sender"] == a.info["peer_id"]
        assert a.next(lambda e: e.get("event") == "dm.acked", 20)["id"] == sent["id"]
    finally:
        for p in reversed(procs):
            p.stop()


def test_chat_reads_lines_from_a_file_or_dev_null_and_refuses_unknown_commands(tmp_path: Path) -> None:
    """``oasis chat LINK < lines.txt`` sends the file's lines, a mistyped ``/command`` is
    refused rather than sent as public chat, and ``< /dev/null`` (a script's background
    job) listens on. (uvloop aborted the process on both kinds of stdin.)"""
    procs: list[Any] = []
    try:
        link = _broadcaster(tmp_path, procs)
        a = Talker(["chat", link, "--json", "--data-dir", str(tmp_path / "a")], tmp_path / "a.log")
        procs.append(a)
        a.next(lambda e: e.get("event") == "linked", 20)
        with open(os.devnull, "rb") as null:
            n = Talker(["chat", link, "--json", "--data-dir", str(tmp_path / "n")], tmp_path / "n.log",
                       stdin=null)
        procs.append(n)
        n.next(lambda e: e.get("event") == "linked", 20)
        lines = tmp_path / "lines.txt"
        # "/dn" is a typo of "/dm": a private text that must not reach the chat
        lines.write_text("/dn somebody my secret\n//slash first\nhello from a file\n")
        with open(lines, "rb") as f:
            t = Talker(["chat", link, "--json", "--data-dir", str(tmp_path / "f")], tmp_path / "f.log", stdin=f)
        procs.append(t)
        err = t.next(lambda e: e.get("event") == "error", 30)
        assert "unknown command '/dn'" in err["message"]
        got = a.next(lambda e: e.get("event") == "chat.message" and e["sender"] == t.info["peer_id"], 30)
        assert got["text"] == "/slash first"
        got = a.next(lambda e: e.get("event") == "chat.message" and e["sender"] == t.info["peer_id"], 30)
        assert got["text"] == "hello from a file"
        a.say("are you still there?")  # both keep listening once their stdin has ended
        for listener in (n, t):
            assert listener.next(lambda e: e.get("event") == "chat.message"
                                 and e["text"] == "are you still there?", 20)
            assert listener.p.poll() is None
        assert not [e for e in a.seen if "secret" in json.dumps(e)]
    finally:
        for p in reversed(procs):
            p.stop()
