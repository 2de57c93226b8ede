"""A node command while it is still starting, and the options it checks before it starts.

Found 2026-12-05 by an outside audit (a new user and programs written from the docs):
`oasis watch STREAM_ID --tracker URL` whose tracker did not answer ignored Ctrl-C and SIGTERM
for ~28 s (its signal handlers were installed, but the 30 s descriptor wait never looked at
them) and then exited 2; `--tracker file:///etc/passwd` was retried for 30 s where the API and
a link's `t=` refuse it at once; `--playout-delay inf` filled stderr with tracebacks from the
fallback's timers, `nan` and `-1` were taken, `--upload-kbps -1` too. Real processes where a
node starts (the refusals before any start run the command line's `main` in this process);
the tracker is a closed loopback port (nothing is sent off the machine).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import stderr_lines_until

from oasis import cli
from oasis.core.identity import Identity

pytestmark = pytest.mark.integration

DEAD_TRACKER = "http://127.0.0.1:9/tracker"  # the discard port: nothing listens on loopback


@pytest.mark.parametrize("cmd,sig", [("watch", signal.SIGTERM), ("watch", signal.SIGINT),
                                     ("chat", signal.SIGTERM)])
def test_a_stop_signal_while_the_descriptor_is_awaited_is_a_clean_stop(
        tmp_path: Path, cmd: str, sig: signal.Signals) -> None:
    sid = f"{Identity.generate().peer_id}.live"
    extra = ["--gateway", "127.0.0.1:0"] if cmd == "watch" else []
    p = subprocess.Popen([sys.executable, "-m", "oasis", cmd, sid, "--tracker", DEAD_TRACKER,
                          "--data-dir", str(tmp_path / cmd), "--listen", "127.0.0.1:0", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # waiting: the tracker refuses, the node says it retries (for up to 30 s)
        seen = stderr_lines_until(p, r"no descriptor for .* retrying", 60)
        sent = time.monotonic()
        p.send_signal(sig)
        out, err = p.communicate(timeout=20)
        took = time.monotonic() - sent
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, (p.returncode, seen, err)
    assert took < 10, took  # (before: ~28 s, the rest of the descriptor's 30 s, then exit 2)
    assert b"Traceback" not in err and b"Unclosed" not in err and f"oasis {cmd}: error".encode() not in err, err
    assert out == b"", out  # no start line: it never started


@pytest.mark.parametrize("flags,says", [
    (["--tracker", "file:///etc/passwd"], b"--tracker 'file:///etc/passwd': an http(s) URL"),
    (["--tracker", "http://127.0.0.1:9/t?x=1"], b"query string"),
    (["--tracker", "http://169.254.169.254/t"], b"link-local"),
    (["--playout-delay", "inf"], b"--playout-delay must be between"),
    (["--playout-delay", "nan"], b"--playout-delay must be between"),
    (["--playout-delay", "-1"], b"--playout-delay must be between"),
    (["--playout-delay", "0"], b"--playout-delay must be between"),
    (["--upload-kbps", "-1"], b"--upload-kbps must be between"),
])
def test_what_a_node_command_refuses_before_it_starts(tmp_path: Path, flags: list[str], says: bytes,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    # (the command line's own main, in this process: it refuses before any node or loop)
    sid = f"{Identity.generate().peer_id}.live"
    tracker = [] if "--tracker" in flags else ["--tracker", DEAD_TRACKER]
    t0 = time.monotonic()
    code = cli.main(["watch", sid, *tracker, *flags, "--data-dir", str(tmp_path / "w"),
                     "--gateway", "127.0.0.1:0"])
    out, err = capfd.readouterr()
    assert code == 2 and out == "", (code, out, err)
    assert says.decode() in err, err
    assert "Traceback" not in err and "retrying" not in err, err
    assert time.monotonic() - t0 < 20  # refused, not retried for the descriptor's 30 s


@pytest.mark.parametrize("flags,says", [
    (["--name", "A B/.."], b"stream name 'A B/..'"),
    (["--http", "127.0.0.1:70000"], b"--http '127.0.0.1:70000': the port must be 0-65535"),
])
def test_a_broadcast_refused_at_its_start_leaves_nothing_open(tmp_path: Path, flags: list[str], says: bytes) -> None:
    """(Both printed asyncio's "Unclosed client session" after the error: the node was made
    before its name and --http were checked.)"""
    out = subprocess.run([sys.executable, "-m", "oasis", "broadcast", "test", *flags, "--data-dir",
                          str(tmp_path / "b"), "--listen", "127.0.0.1:0"], capture_output=True, timeout=60)
    assert out.returncode == 2 and out.stdout == b"", out
    assert says in out.stderr, out.stderr
    assert b"Unclosed" not in out.stderr and b"Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("argv,says", [
    (["chat", "STREAM", "--wait", "nan"], b"--wait must be"),
    (["dm", "PEER", "--via", "STREAM", "--send", "hi", "--wait", "-1"], b"--wait must be"),
    (["get", "CID", "--timeout", "inf"], b"--timeout must be"),
    (["get", "CID", "--timeout", "nan"], b"--timeout must be"),
    (["get", "CID", "--origin", "http://127.0.0.1:9/?x=1"], b"query string or fragment in an origin URL"),
    (["get", "CID", "--origin", "127.0.0.1:9"], b"an http(s) URL"),
])
def test_what_the_other_commands_refuse_before_they_start(tmp_path: Path, argv: list[str], says: bytes,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    """(`dm --wait nan` sent the DM and then failed converting the wait; `get --timeout nan`
    or `inf` waited for ever; `get --origin` took a query string or no scheme and waited out
    its timeout: found 2026-12-05 from outside.)"""
    sid = f"{Identity.generate().peer_id}.live"
    subst = {"STREAM": f"oasis://{sid}?b={Identity.generate().peer_id}@127.0.0.1:9",
             "PEER": Identity.generate().peer_id, "CID": "of1" + "a" * 52}
    code = cli.main([*[subst.get(a, a) for a in argv], "--data-dir", str(tmp_path / "d")])
    out, err = capfd.readouterr()
    assert code == 2 and out == "", (code, out, err)
    assert says.decode() in err, err
    assert "Traceback" not in err and "never awaited" not in err, err


def test_an_ipv6_listen_address_is_printed_as_a_url_that_works(tmp_path: Path) -> None:
    """`oasis tracker --listen [::1]:0` printed http://::1:PORT/tracker (and `oasis edge`,
    the broadcaster's and the gateway's URLs the same): no URL a client can use."""
    import json
    import socket
    import urllib.request

    from oasis.node.runtime import url_host

    assert url_host("::1") == "[::1]" and url_host("127.0.0.1") == "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    p = subprocess.Popen([sys.executable, "-m", "oasis", "tracker", "--listen", "[::1]:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        url = json.loads(p.stdout.readline())["tracker"]
        assert url.startswith("http://[::1]:"), url
        with urllib.request.urlopen(f"{url}/streams", timeout=10) as r:
            assert r.status == 200 and json.loads(r.read()) == {}
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=20)
    assert p.returncode == 0


def test_a_broadcaster_on_every_interface_is_refused_saying_which_address_to_give(tmp_path: Path) -> None:
    """``--http 0.0.0.0:P`` names no origin a viewer can reach (the signed descriptor carries
    it): refused before anything starts, in one line that says what to give. Found
    2026-12-07 from outside: it was refused only once the node and its HTTP server ran, by
    the descriptor's check (``origin: 'http://0.0.0.0:P/origin': not a unicast address, or
    link-local``), and left them open: a second error line, ``Unclosed client session``."""
    out = subprocess.run([sys.executable, "-m", "oasis", "broadcast", "test", "--http", "0.0.0.0:0",
                          "--listen", "127.0.0.1:0", "--api-listen", "off", "--data-dir", str(tmp_path / "b")],
                         capture_output=True, timeout=60)
    err = out.stderr.decode()
    assert out.returncode == 2 and out.stdout == b"", (out.returncode, out.stdout, err)
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "--http 0.0.0.0:0" in errors[0] and "address they reach" in errors[0], err
    assert "Unclosed" not in err and "Traceback" not in err, err


def test_a_viewer_whose_listen_address_reaches_none_of_the_link_s_peers_says_so(tmp_path: Path) -> None:
    """Found 2026-12-07 from outside: a broadcaster on IPv6 ([::1]) and a viewer on the
    default --listen 127.0.0.1 (as a viewer on the default loopback --listen given a link
    to another machine): the viewer linked to no peer and played from the origin alone,
    relaying nothing, and said not a word. It says so now, naming --listen; a viewer that
    can reach them says nothing of the kind."""
    import socket

    from oasis.core.streamlink import Bootstrap
    from oasis.node.runtime import unreachable_boots_warning

    peer = bytes(32)
    assert unreachable_boots_warning("127.0.0.1:0", (Bootstrap(peer, "192.0.2.7", 4433),)) is not None
    assert unreachable_boots_warning("127.0.0.1:0", (Bootstrap(peer, "192.0.2.7", 4433),
                                                     Bootstrap(peer, "127.0.0.1", 4433))) is None
    assert unreachable_boots_warning("0.0.0.0:0", (Bootstrap(peer, "192.0.2.7", 4433),)) is None
    assert unreachable_boots_warning("[::]:0", (Bootstrap(peer, "192.0.2.7", 4433),)) is None
    assert unreachable_boots_warning("192.0.2.9:0", (Bootstrap(peer, "2001:db8::1", 4433),)) is not None
    assert unreachable_boots_warning("127.0.0.1:0", ()) is None
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    from procs import OasisProcess

    procs: list[OasisProcess] = []
    try:
        b = OasisProcess(["broadcast", "test", "--bitrate", "300", "--data-dir", str(tmp_path / "b"),
                          "--listen", "[::1]:0", "--http", "[::1]:0", "--api-listen", "off"],
                         str(tmp_path / "b.log"))
        procs.append(b)
        link = b.wait_info()["link"]
        for name, listen in (("v4", "127.0.0.1:0"), ("v6", "[::1]:0")):
            v = OasisProcess(["watch", link, "--gateway", "127.0.0.1:0", "--listen", listen,
                              "--data-dir", str(tmp_path / name), "--api-listen", "off"],
                             str(tmp_path / f"{name}.log"))
            procs.append(v)
            v.wait_info()  # (said before the node starts: before its start line)
        said = (tmp_path / "v4.log").read_text()
        assert "oasis watch: warning: this node's --listen 127.0.0.1:0 cannot reach the link's peers ([::1]:" \
            in said and "play from the origin alone" in said, said
        assert "cannot reach" not in (tmp_path / "v6.log").read_text()
    finally:
        for p in procs:
            p.stop()
