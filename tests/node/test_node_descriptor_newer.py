"""The newest signed descriptor wins in full, with real processes: a viewer handed an old
link (an old descriptor, genuinely signed: a liar's DHT answer or a link copied yesterday)
rejoins with the stream's current parameters as soon as it hears the newer descriptor.
Before, only the origin URL followed; the viewer kept the old chunking for its whole
session (67-205 chunks skipped a minute, 400+ failed origin fetches)."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest

from tests.node.procs import OasisProcess, free_port, wait_until

pytestmark = pytest.mark.integration
SLACK = 30.0



def _stream(gateway: str) -> dict:
    with urllib.request.urlopen(gateway + "/stats", timeout=10) as r:
        return json.loads(r.read())["streams"][0]


def test_a_viewer_with_an_old_descriptor_rejoins_with_the_newer_one(tmp_path: Path) -> None:
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    common = ["--data-dir", str(tmp_path / "b"), "--listen", f"127.0.0.1:{udp}", "--http", f"127.0.0.1:{tcp}",
              "--bitrate", "300"]
    first = OasisProcess(["broadcast", "test", *common, "--chunk-ms", "100"], str(tmp_path / "b1.log"))
    procs = [first]
    try:
        old_link = first.wait_info()["link"]  # 100 ms chunks in its descriptor
        first.stop()
        # the same broadcaster (same key, same addresses) again, with 33 ms chunks
        second = OasisProcess(["broadcast", "test", *common, "--chunk-ms", "33"], str(tmp_path / "b2.log"))
        procs.append(second)
        assert second.wait_info()["link"] != old_link
        v = OasisProcess(["watch", old_link, "--gateway", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "v")], str(tmp_path / "v.log"))
        procs.append(v)
        vinfo = v.wait_info()
        assert json.loads(json.dumps(vinfo["descriptor"]))["chunk_ms"] == 100  # what the link said
        log = tmp_path / "v.log"
        wait_until(lambda: "rejoining with it" in log.read_text(errors="replace"), SLACK)
        assert "33 ms chunks" in log.read_text(errors="replace")
        gw = vinfo["gateway"]
        wait_until(lambda: _stream(gw)["chunks"] > 100, SLACK)  # playing the new chunking
        # judged once started (a loaded machine skips a few at the rejoin's start): the
        # next 150 chunks play. With the old chunking the chunk clock is wrong for good.
        s1 = _stream(gw)
        wait_until(lambda: _stream(gw)["chunks"] >= s1["chunks"] + 150, SLACK)
        s2 = _stream(gw)
        assert s2["skipped"] - s1["skipped"] <= 15, (s1, s2)
        with urllib.request.urlopen(gw + "/metrics", timeout=10) as r:
            assert 'event="descriptor_rejoins"} 1.0' in r.read().decode()
    finally:
        for p in procs:
            p.stop()


def test_a_restarted_broadcaster_goes_on_with_its_viewers(tmp_path: Path) -> None:
    # it numbered from 0 again: its running viewers' STATUS (seq 575) read as false claims
    # (the stream near 57), it banned every one of them, and they dropped its new chunks as
    # duplicates of the old until the numbering passed 575
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    common = ["broadcast", "test", "--data-dir", str(tmp_path / "b"), "--listen", f"127.0.0.1:{udp}",
              "--http", f"127.0.0.1:{tcp}", "--bitrate", "300"]
    first = OasisProcess(common, str(tmp_path / "b1.log"))
    procs = [first]
    try:
        link = first.wait_info()["link"]
        v = OasisProcess(["watch", link, "--gateway", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "v")], str(tmp_path / "v.log"))
        procs.append(v)
        gw = v.wait_info()["gateway"]
        wait_until(lambda: _stream(gw)["latest"] > 150, SLACK)  # ~5 s: well ahead of a new 0
        first.stop()
        before = _stream(gw)["latest"]
        second = OasisProcess(common, str(tmp_path / "b2.log"))
        procs.append(second)
        second.wait_info()
        # the viewer goes on: newer chunks than any it held, soon
        wait_until(lambda: _stream(gw)["latest"] > before + 60, SLACK)
        b2 = (tmp_path / "b2.log").read_text(errors="replace")
        assert "false claims" not in b2 and "banned" not in b2, b2[-2000:]
        s = _stream(gw)
        assert s["neighbours"] >= 1
    finally:
        for p in procs:
            p.stop()


def test_the_sequence_clock_goes_on_across_a_restart(tmp_path: Path) -> None:
    from oasis.core.identity import Identity
    from oasis.core.stream import StreamId
    from oasis.node.streaming import _save_seq, first_seq, seq_file

    path = seq_file(tmp_path, StreamId(Identity.generate().public, "live"))
    assert first_seq(path, 33, 1000.0) == 0  # the first run
    _save_seq(path, 500, 1000.0, 33)
    assert first_seq(path, 33, 1000.0) == 501
    assert first_seq(path, 33, 1010.0) == 501 + 304  # 10 s of 33 ms periods, rounded up
    assert first_seq(path, 100, 1010.0) == 501 + 304  # the shorter chunk length counts
    path.write_bytes(b"{garbage")
    assert first_seq(path, 33, 1010.0) == 0  # unreadable: said, and from 0
    path.write_bytes(b'{"\xb6": 1, "seq": 5, "time": 1.0, "chunk_ms": 33}')  # a key not UTF-8
    assert first_seq(path, 33, 1010.0) == 0  # (msgspec's UnicodeDecodeError escaped the start)
