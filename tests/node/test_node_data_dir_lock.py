"""One node per data directory, with real processes: a second ``oasis`` command on a data
directory a running node holds exits at once with a message naming the holder (it used to
run as a second node with the same identity, starved of neighbours, and overwrote the first
one's ``api.json``); the running node is untouched; once it stops, ``api.json`` is gone (a
client hears "no node", not "unreachable") and the directory is free again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from oasis.sdk import AsyncClient, OasisApiError
from tests.node.procs import OasisProcess

pytestmark = pytest.mark.integration


def _second(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oasis", *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_a_second_node_on_a_data_directory_is_refused_and_api_json_follows_the_holder(
        tmp_path: Path) -> None:
    d = str(tmp_path / "n")
    first = OasisProcess(["node", "--data-dir", d, "--api-listen", "127.0.0.1:0", "--listen",
                          "127.0.0.1:0", "--http", "127.0.0.1:0"], str(tmp_path / "first.log"))
    try:
        info = first.wait_info(60)
        for args in (["node", "--api-listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                     ["broadcast", "test", "--http", "127.0.0.1:0"],
                     ["watch", "oasis://not-even-a-link"],
                     ["chat", "oasis://not-even-a-link", "--send", "hi"],
                     ["get", "of1" + "a" * 52, "--origin", "http://127.0.0.1:9", "--http", "127.0.0.1:0"]):
            r = _second(*args, "--data-dir", d, "--listen", "127.0.0.1:0")
            assert r.returncode != 0, (args, r.stdout, r.stderr)
            assert f"is in use by `oasis node` (pid {first.popen.pid})" in r.stderr, (args, r.stderr)
            assert "Traceback" not in r.stderr
        assert first.popen.poll() is None  # the holder runs on

        async def health() -> dict:
            async with AsyncClient.from_data_dir(d) as api:
                return msgspec.to_builtins(await api.node())

        assert asyncio.run(health())["peer_id"] == info["peer_id"]  # api.json still names it
        assert first.stop() == 0
        assert not os.path.exists(os.path.join(d, "api.json"))
        with pytest.raises(OasisApiError) as e:
            asyncio.run(health())
        assert e.value.code == "no_node"
        again = OasisProcess(["node", "--data-dir", d, "--api-listen", "127.0.0.1:0", "--listen",
                              "127.0.0.1:0", "--http", "127.0.0.1:0"], str(tmp_path / "again.log"))
        try:
            assert again.wait_info(60)["peer_id"] == info["peer_id"]  # free again, same identity
        finally:
            again.stop()
    finally:
        first.stop()


def test_sighup_stops_a_node_cleanly(tmp_path: Path) -> None:
    # closing the terminal (SIGHUP) killed the process at once: exit 129, api.json left
    import signal

    d = str(tmp_path / "n")
    p = OasisProcess(["node", "--data-dir", d, "--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                      "--http", "127.0.0.1:0"], str(tmp_path / "n.log"))
    try:
        p.wait_info(60)
        assert os.path.exists(os.path.join(d, "api.json"))
        p.popen.send_signal(signal.SIGHUP)
        assert p.popen.wait(30) == 0
        assert not os.path.exists(os.path.join(d, "api.json"))
    finally:
        p.stop()


def test_an_address_that_is_a_name_or_not_this_machines_is_named(tmp_path: Path) -> None:
    for args, want in ((["--http", "nosuchhost.invalid:8000"], "--http 'nosuchhost.invalid:8000': HOST must be an IP address"),
                       (["--http", "192.0.2.77:8000"], "192.0.2.77:8000 (TCP) is not an address of this machine"),
                       (["--listen", "192.0.2.77:0"], "192.0.2.77:0 (UDP) is not an address of this machine")):
        r = _second("node", *args, "--api-listen", "off", "--data-dir", str(tmp_path / "x"))
        assert r.returncode == 2 and want in r.stderr, (args, r.stderr)
        assert "Unclosed" not in r.stderr and "Traceback" not in r.stderr


def test_a_data_directory_no_file_can_be_made_in_is_named_not_a_raw_error() -> None:
    """Found 2026-12-06: ``--data-dir /proc/1`` (a directory that exists but takes no new
    file: /proc, a read-only mount) ended in "[Errno 2] No such file or directory:
    '/proc/1/node.lock'"."""
    r = _second("watch", "x", "--data-dir", "/proc/self")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "/proc/self: a file cannot be created in this data directory" in r.stderr, r.stderr
    assert "--data-dir you can write to" in r.stderr and "node.lock" not in r.stderr, r.stderr
