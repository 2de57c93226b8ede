"""The demo's node launcher (oasis.zygote): real forks of the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from oasis.zygote import Zygote

pytestmark = pytest.mark.integration


@pytest.fixture
def zygote():
    z = Zygote()
    z.wait_ready(60)
    yield z
    z.close()


def test_forked_nodes_are_separate_processes_with_their_own_output(zygote, tmp_path):
    a = zygote.spawn(["tracker", "--listen", "127.0.0.1:0"], str(tmp_path / "a.log"))
    b = zygote.spawn(["tracker", "--listen", "127.0.0.1:0"], str(tmp_path / "b.log"))
    try:
        assert a.pid != b.pid and zygote.proc.pid not in (a.pid, b.pid)
        la, lb = json.loads(a.stdout.readline()), json.loads(b.stdout.readline())
        assert la["tracker"] != lb["tracker"]  # each bound its own port
        assert os.getpgid(a.pid) == a.pid  # a session of its own: the demo signals the group
        assert a.poll() is None
    finally:
        for p in (a, b):
            p.send_signal(signal.SIGTERM)
    assert a.wait(20) in (0, -signal.SIGTERM)
    assert b.wait(20) in (0, -signal.SIGTERM)


def test_exit_codes_and_errors_come_back(zygote, tmp_path):
    ok = zygote.spawn(["--help"], str(tmp_path / "ok.log"))
    assert b"usage" in ok.stdout.read()
    assert ok.wait(20) == 0
    bad = zygote.spawn(["watch"], str(tmp_path / "bad.log"))  # no stream: argparse error
    assert bad.wait(20) == 2
    assert "usage" in (tmp_path / "bad.log").read_text()
    with pytest.raises(subprocess.TimeoutExpired):
        zygote.spawn(["tracker", "--listen", "127.0.0.1:0"], str(tmp_path / "t.log")).wait(0.2)


def test_closing_the_launcher_stops_its_nodes(tmp_path):
    z = Zygote()
    z.wait_ready(60)
    p = z.spawn(["tracker", "--listen", "127.0.0.1:0"], str(tmp_path / "t.log"))
    assert json.loads(p.stdout.readline())["tracker"]
    z.close()  # the launcher SIGTERMs what is left, reaps it, and exits
    assert z.proc.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(p.pid, 0)


def test_a_bad_request_is_refused_not_fatal(zygote, tmp_path):
    import socket
    r, w = os.pipe()
    try:
        socket.send_fds(zygote.sock, [b'{"argv": "not a list"}'], [w, w])
    finally:
        os.close(w)
        os.close(r)
    msg = zygote._recv(10)
    assert msg is not None and "bad spawn request" in msg["error"]
    ok = zygote.spawn(["--help"], str(tmp_path / "ok.log"))
    assert ok.wait(20) == 0


def test_a_node_forked_into_a_network_namespace_sees_only_that_namespace(zygote, tmp_path):
    """The testbed's viewers: forked, then moved into their namespace (``setns``) before
    the CLI runs. A name that is not a namespace's is refused before any fork."""
    with pytest.raises(RuntimeError, match="bad spawn request"):
        zygote.spawn(["--help"], str(tmp_path / "bad.log"), netns="../etc")
    if os.geteuid() != 0 or subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        pytest.skip("needs root and iproute2 (the testbed's)")
    ns = f"oasz{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        # a tracker on 127.0.0.1 inside the namespace: reachable there, not from here
        p = zygote.spawn(["tracker", "--listen", "127.0.0.1:0"], str(tmp_path / "t.log"), netns=ns)
        try:
            port = int(json.loads(p.stdout.readline())["tracker"].rsplit(":", 1)[1].split("/")[0])
            with open(f"/proc/{p.pid}/ns/net") as f_child, open("/proc/self/ns/net") as f_me:
                assert os.fstat(f_child.fileno()).st_ino != os.fstat(f_me.fileno()).st_ino
            out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-ltnH"], capture_output=True, text=True)
            assert f":{port}" in out.stdout  # listening inside the namespace
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(20)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
