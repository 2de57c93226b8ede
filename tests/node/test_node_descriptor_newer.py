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

from tests.node.procs import OasisProcess, wait_until

pytestmark = pytest.mark.integration
SLACK = 30.0


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stream(gateway: str) -> dict:
    with urllib.request.urlopen(gateway + "/stats", timeout=10) as r:
        return json.loads(r.read())["streams"][0]


def test_a_viewer_with_an_old_descriptor_rejoins_with_the_newer_one(tmp_path: Path) -> None:
    udp, tcp = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
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
        s = _stream(gw)
        assert s["skipped"] <= s["chunks"] // 10, s
        with urllib.request.urlopen(gw + "/metrics", timeout=10) as r:
            assert 'event="descriptor_rejoins"} 1.0' in r.read().decode()
    finally:
        for p in procs:
            p.stop()
