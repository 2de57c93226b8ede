"""``oasis chat`` and ``oasis dm`` as a user runs them: what is wrong with the command line
(a ``--send`` text, a peer id) is refused before any node starts, with a one-line error and
exit status 2; a send that fails later exits non-zero with an ``error`` line whose code is
stable snake_case (docs/oftp.md §19.5)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oasis.core.descriptor import Descriptor, sign_descriptor
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.core.streamlink import Bootstrap, StreamLink
from oasis.node.keystore import load_or_create
from oasis.node.msgcli import ERROR_CODES, SendError, parse_line


@pytest.fixture
def quiet_link() -> Iterator[str]:
    """A valid stream link (signed descriptor, no tracker) whose only bootstrap peer is a UDP
    socket that never answers: a chat or dm process joins, and no peer ever links."""
    ident = Identity.generate()
    sid = StreamId(ident.public, "live")
    desc = sign_descriptor(ident, Descriptor(sid, 300, 200, 4, int(time.time() * 1000)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:
        mute.bind(("127.0.0.1", 0))
        yield StreamLink(sid, desc, (Bootstrap(ident.public, "127.0.0.1", mute.getsockname()[1]),),
                         None).format()


def oasis(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oasis", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_a_bad_send_text_or_peer_id_is_refused_before_the_node_starts(tmp_path: Path, quiet_link: str) -> None:
    """Until now each of these joined the swarm first (a start line, ``[linked]``), then printed
    ``{"error": "ValueError", ...}`` and exited 0 (chat) or 2 (dm)."""
    d = str(tmp_path / "me")
    other = load_or_create(str(tmp_path / "other")).peer_id
    own = load_or_create(d).peer_id
    cases = [
        (["chat", quiet_link, "--send", "y" * 600], "chat text must be 1..500 UTF-8 bytes (this one has 600)"),
        (["chat", quiet_link, "--send", ""], "chat text must be 1..500 UTF-8 bytes (this one has 0)"),
        (["chat", quiet_link, "--send", "é" * 251], "this one has 502"),  # bytes, not characters
        (["chat", quiet_link, "--send", "/dn someone secret"], "unknown command '/dn'"),
        (["chat", quiet_link, "--send", "/dm C3PEER hi"], "bad peer id 'C3PEER': peer id must have 52"),
        (["chat", quiet_link, "--send", "/mute " + other + " soon"], "SECONDS must be a number"),
        (["dm", "C3PEER", "--via", quiet_link, "--send", "x"], "bad peer id 'C3PEER': peer id must have 52"),
        (["dm", other, "--via", quiet_link, "--send", "z" * 1001], "direct message text must be 1..1000"),
        (["dm", other, "--via", quiet_link, "--send", ""], "direct message text must be 1..1000"),
        (["dm", own, "--via", quiet_link, "--send", "x"], "this node's own peer id"),
        (["chat", quiet_link, "--send", f"/dm {own} hi"], "this node's own peer id"),  # (was: exit 1, after start)
        (["chat", quiet_link, "--send", "   "], "only white space"),  # (was sent)
    ]
    for args, why in cases:
        t0 = time.monotonic()
        r = oasis(*args, "--wait", "3", "--data-dir", d)
        assert r.returncode == 2, (args[:2], r.returncode, r.stdout, r.stderr)
        assert r.stdout == "", (args[:2], r.stdout)  # no start line: nothing was started
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"oasis {args[0]}: error: ") and why in lines[0], r.stderr
        assert time.monotonic() - t0 < 20  # not after --wait (3 s) of trying to link


def test_a_send_that_finds_no_peer_exits_1_with_a_stable_code(tmp_path: Path, quiet_link: str) -> None:
    """A well-formed message that cannot go out: ``not_linked`` (was the class-like
    ``NotLinked``), exit status 1, nothing left open."""
    other = load_or_create(str(tmp_path / "other")).peer_id
    for args in (["chat", quiet_link, "--send", "hello"], ["dm", other, "--via", quiet_link, "--send", "hi"]):
        r = oasis(*args, "--wait", "1", "--json", "--data-dir", str(tmp_path / args[0]))
        assert r.returncode == 1, r.stderr
        events = [json.loads(line) for line in r.stdout.splitlines()]
        assert "peer_id" in events[0]  # the start line: it did join
        errors = [e for e in events if e.get("event") == "error"]
        assert [e["error"] for e in errors] == ["not_linked"], events
        assert "Unclosed" not in r.stderr and "Traceback" not in r.stderr
    r = oasis("chat", quiet_link, "--send", "hello", "--wait", "1", "--data-dir", str(tmp_path / "chat"))
    assert r.returncode == 1 and "[error not_linked] no peer of the stream linked within 1 s" in r.stdout


def test_a_taken_listen_address_leaves_nothing_open(tmp_path: Path, quiet_link: str) -> None:
    """The OFTP socket cannot bind: the error, and the node's HTTP client closed (it printed
    ``asyncio ERROR Unclosed client session``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        r = oasis("chat", quiet_link, "--listen", f"127.0.0.1:{taken.getsockname()[1]}",
                  "--data-dir", str(tmp_path / "c"))
    assert r.returncode == 2 and "already in use" in r.stderr.lower(), r.stderr
    assert "Unclosed" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_lines_are_checked_with_stable_codes() -> None:
    """What a typed line (or ``--send``) asks for, and the code of each refusal: every code
    used is one documented in ERROR_CODES."""
    peer = Identity.generate().peer_id
    assert parse_line("hello", None).kind == "chat"
    assert parse_line("//slash", None).text == "/slash"
    assert parse_line("/stats", None).kind == "stats"
    dm = parse_line(f"/dm {peer} hi there", None)
    assert (dm.kind, dm.peer, dm.text) == ("dm", peer, "hi there")
    mute = parse_line(f"/mute {peer} 30", None)
    assert (mute.kind, mute.action, mute.seconds) == ("moderate", "mute", 30.0)
    assert parse_line("/anything goes", peer).text == "/anything goes"  # oasis dm: every line is text
    for line, dm_to, code in [
        ("", None, "bad_text"), ("x" * 501, None, "bad_text"), ("//" + "x" * 500, None, "bad_text"),
        ("\udcff", None, "bad_text"),  # a byte that was not UTF-8 in argv
        ("   ", None, "bad_text"), ("\t \u3000", peer, "bad_text"),  # only white space (was sent)
        ("y" * 1001, peer, "bad_text"), ("/dm", None, "usage"), (f"/dm {peer}", None, "usage"),
        ("/dm nobody hi", None, "bad_peer_id"), ("/ban", None, "usage"),
        (f"/ban {peer} -5", None, "usage"), (f"/ban {peer} 9999999", None, "usage"),
        ("/mute short", None, "bad_peer_id"), ("/dn x", None, "unknown_command"),
        (f"/dm {'a' * 52} hi", None, "bad_peer_id"),  # the all-zero key: nothing can be sealed to it
    ]:
        with pytest.raises(SendError) as err:
            parse_line(line, dm_to)
        assert err.value.code == code, (line, err.value)
        assert err.value.code in ERROR_CODES
    assert all(c.islower() and " " not in c for c in ERROR_CODES)
