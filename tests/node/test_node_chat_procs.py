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
    """``oasis chat LINK < lines.txt`` sends all the file's lines (those over the chat's rate
    limit wait their turn: only the first 5 went out before), a mistyped ``/command`` is
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
        # "/dn" is a typo of "/dm": a private text that must not reach the chat; a line that is
        # not UTF-8 is skipped (it was sent with U+FFFD for its bytes; --send refuses it)
        lines.write_bytes(b"/dn somebody my secret\n//slash first\nbad utf8 \xff\xfe end\nhello from a file\n"
                          + "".join(f"paced {i}\n" for i in range(8)).encode())  # 10 messages: over the burst of 5
        with open(lines, "rb") as f:
            t = Talker(["chat", link, "--json", "--data-dir", str(tmp_path / "f")], tmp_path / "f.log", stdin=f)
        procs.append(t)
        err = t.next(lambda e: e.get("event") == "error", 30)
        assert err["error"] == "unknown_command" and "unknown command '/dn'" in err["message"]
        got = a.next(lambda e: e.get("event") == "chat.message" and e["sender"] == t.info["peer_id"], 30)
        assert got["text"] == "/slash first"
        got = a.next(lambda e: e.get("event") == "chat.message" and e["sender"] == t.info["peer_id"], 30)
        assert got["text"] == "hello from a file"  # (not the line that is not UTF-8)
        # the lines over the rate limit's burst wait their turn (1 a second), none is dropped
        for i in range(8):
            got = a.next(lambda e: e.get("event") == "chat.message" and e["sender"] == t.info["peer_id"], 30)
            assert got["text"] == f"paced {i}"
        assert not [e for e in t.seen if e.get("event") == "error" and "rate" in json.dumps(e).lower()]
        a.say("are you still there?")  # both keep listening once their stdin has ended
        for listener in (n, t):
            assert listener.next(lambda e: e.get("event") == "chat.message"
                                 and e["text"] == "are you still there?", 20)
            assert listener.p.poll() is None
        assert not [e for e in a.seen if "secret" in json.dumps(e)]
    finally:
        for p in reversed(procs):
            p.stop()


def test_text_from_peers_cannot_drive_the_terminal(capsys: Any) -> None:
    """Plain output of ``oasis chat``/``oasis dm``: a peer's escape sequences (clear screen,
    window title, OSC 52 clipboard write), C1 codes, BEL, CR and newlines (a forged line under
    another sender's name) and bidi overrides are shown as escapes; joiners and other
    scripts pass."""
    from oasis.node.msgcli import _print

    evil = "hi\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07\rmallory\n<a1b2c3d4> fake line \u202eevil\x9b"
    _print("chat.message", {"sender": "b" * 52, "text": evil}, False)
    _print("dm.received", {"sender": "c" * 52, "text": "\x1b[31mred 👨\u200d👩\u200d👧 日本"}, False)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\u202e" not in out
    assert "\x9b" not in out and out.count("\n") == 2  # one line per message, whatever the text
    assert "\\x1b[2J" in out and "\\x0a<a1b2c3d4> fake line" in out and "\\u202eevil" in out
    assert "👨\u200d👩\u200d👧 日本" in out


def test_escapes_of_characters_past_u_ffff_cannot_be_mistaken_for_others() -> None:
    # \u and five digits: U+E0041 (a tag character) read like U+E004 then "1" (found
    # 2026-12-06 by an outside audit); past U+FFFF the escape is \U and eight digits
    from oasis.node.msgcli import shown

    assert shown("\U000e0041") == "\\U000e0041" and shown("\ue0041") == "\\ue0041"
    assert shown("\U000f0000") != shown("\uf0000")
    assert shown("\U0001f600 ok") == "\U0001f600 ok"  # an emoji is no escape
