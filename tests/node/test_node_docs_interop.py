"""docs/oftp.md is enough to speak OFTP: examples/oftp_viewer.py, written from the document
alone (it imports nothing from ``oasis``: qh3, msgspec and cryptography only), against a real
``oasis broadcast`` process on loopback. It checks the document's byte layouts against the
real bytes: the descriptor's signed layout (§10.1), TLS pinning and the AUTH transcript
(§3, §3.1), the frame and message encoding (§2, §5, §6), the chunk signing layout (§7), the
peer tag in STATUS paths (§3, §9.2), the error codes of §8 for inputs whose answer is
specified, the origin's chunk bytes and ETag (§10), and the signed announce (§11.1). Then it
relays (§9.2, §12) to a real ``oasis watch`` that knows only it: the doc is enough for a node
to feed a real viewer. The broadcaster runs on qh3 and on aioquic, whose listener checks the
viewer's certificate (built as §3 says). If one of these fails, the document (or the code)
changed a layout."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from procs import OasisProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _viewer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("oftp_viewer", ROOT / "examples" / "oftp_viewer.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["oftp_viewer"] = mod  # msgspec resolves the Structs' annotations through it
    spec.loader.exec_module(mod)
    return mod


def test_the_viewer_imports_nothing_from_oasis() -> None:
    text = (ROOT / "examples" / "oftp_viewer.py").read_text()
    assert "import oasis" not in text and "from oasis" not in text


@pytest.fixture(params=["qh3", "aioquic"])
def broadcaster(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A real broadcaster on either QUIC stack: an aioquic listener asks for the dialler's
    certificate and checks it against AUTH (§3), so the viewer's certificate, built as §3
    says, is checked too."""
    b = OasisProcess(["broadcast", "test", "--json", "--bitrate", "800", "--listen", "127.0.0.1:0",
                      "--http", "127.0.0.1:0", "--api-listen", "off", "--quic", request.param,
                      "--data-dir", str(tmp_path / "b")], str(tmp_path / "b.log"))
    try:
        yield b.wait_info()
    finally:
        assert b.stop() == 0  # SIGTERM: a clean stop (README)


async def test_a_viewer_built_from_the_document_verifies_the_broadcasters_chunks(broadcaster: dict[str, Any]) -> None:
    v = _viewer()
    out = await asyncio.wait_for(v.run(broadcaster["link"], seconds=20.0, probe=True, chunks=60), 30)
    assert out["descriptor_verified"] is True  # §10.1's layout, signed by the stream key
    assert out["parent_paths_are_its_tag"] is True  # §3's peer tag, a path [b] per substream
    assert out["k"] == 4 and out["accepted"] == 0b1111  # a viewer alone gets every substream (§9.2)
    assert out["verified"] >= 60 and out["bad"] == 0, out  # §7's 72-byte layout
    # JOIN(start) is answered with the latest keyframe (§9.1); since the broadcaster grants one
    # substream per SUBSCRIBE round (root_strict), pushes of older chunks of a substream granted
    # later can arrive before or below it, so the check is that a keyframe came, not which first
    assert out["keyframes"] >= 1
    # §8's codes for inputs whose answer §5/§6 specify
    assert out["probes"] == {
        "unknown_id": 0x2, "trailing_bytes": 0x4, "unknown_stream": 0xA, "hello_after_auth": 0x8,
        "wrong_channel_chunk": 0x1, "request_far_future": {"missing": True, "refused": True},
        "request_held_seq": "chunk"}, out
    assert out["origin_same_bytes"] is True and out["origin_etag_ok"] is True  # §10
    assert out["closed"] is None, out  # nothing we sent closed the link


@pytest.mark.parametrize("broadcaster", ["qh3"], indirect=True)
async def test_a_viewer_built_from_the_document_relays_to_a_real_viewer(
        broadcaster: dict[str, Any], tmp_path: Path) -> None:
    v = _viewer()
    sid = broadcaster["stream_id"]
    d = urllib.parse.parse_qs(urllib.parse.urlparse(broadcaster["link"]).query)["d"][0]
    watcher: OasisProcess | None = None
    relay_seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    real_print = print

    def catch_relay(*args: Any, **kwargs: Any) -> None:  # the viewer prints {"relay": ...} when it listens
        line = args[0] if args else ""
        if isinstance(line, str) and line.startswith('{"relay"') and not relay_seen.done():
            relay_seen.set_result(json.loads(line)["relay"])
        else:
            real_print(*args, **kwargs)

    v.print = catch_relay  # type: ignore[attr-defined]
    task = asyncio.ensure_future(v.run(broadcaster["link"], seconds=25.0, relay="127.0.0.1:0", pushed=60))
    try:
        relay = await asyncio.wait_for(relay_seen, 10)
        # the real viewer knows only our relay: the signed descriptor and one bootstrap peer (§16)
        watcher = OasisProcess(["watch", f"oasis://{sid}?d={d}&b={relay}", "--json", "--gateway", "127.0.0.1:0",
                                "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "w")],
                               str(tmp_path / "w.log"))
        info = await asyncio.to_thread(watcher.wait_info)
        out = await asyncio.wait_for(task, 30)
        assert out["pushed"] >= 60 and out["bad"] == 0, out
        # our announce of the relay address (§11.1's layout) was taken, and the records the
        # tracker answered with verify under the same layout
        assert out["announce_status"] == 200, out
        assert out["announce_peers"] >= 1 and out["announce_peers_verified"] == out["announce_peers"], out
        token = (tmp_path / "w" / "api.token").read_text().strip()
        req = urllib.request.Request(f"{info['api']}/streams/{sid}", headers={"Authorization": f"Bearer {token}"})

        def get() -> Any:
            with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - loopback only
                return json.loads(r.read())

        stream = await asyncio.to_thread(get)
        # what we pushed reached its player: bytes from a peer (we are its only one)
        assert stream["bytes"].get("p2p", 0) > 0 and stream["chunks"] > 0, stream
    finally:
        if not task.done():
            task.cancel()
        if watcher is not None:
            assert watcher.stop() == 0


@pytest.mark.parametrize("broadcaster", ["qh3"], indirect=True)
def test_a_viewer_built_from_the_document_takes_a_runs_first_chunk(broadcaster: dict[str, Any]) -> None:
    """A broadcaster signs the first chunk of its run with flag bit 2 (§7, §7.1): the
    document's rule takes it as any chunk with media. The example viewer refused every flag
    but bit 0, so ``make test`` failed whenever it got that chunk (found 2026-12-06 by a new
    user's first run). Fetched from the origin (§10), while it is still in the window."""
    v = _viewer()
    sid = broadcaster["stream_id"]
    got: list[bytes] = []

    def first() -> bool:  # (the start line comes before the source's first chunk)
        try:
            with urllib.request.urlopen(f"{broadcaster['origin']}/{sid}/0.chunk", timeout=10) as r:
                got.append(r.read())
            return True
        except urllib.error.HTTPError:
            return False

    wait_until(first, 30)
    c = v._chunk_decoder.decode(got[0])
    assert c.seq == 0 and c.flags & 0x04  # the run's first
    peer = sid.split(".", 1)[0]
    assert v.verify_chunk(v.Ed25519PublicKey.from_public_bytes(v.key_of(peer)), v.stream_key(sid), c)
