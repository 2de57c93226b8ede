"""A broadcaster that stops ends its stream for its viewers (docs/oftp.md §7, the end marker).

Real processes: ``oasis broadcast`` and ``oasis watch`` on loopback, a player reading the
viewer's gateway and a program on the viewer's local API. Found 2026-12-06 from outside:
when the broadcaster stopped, its viewers went on expecting chunks. Each one that never came
was counted as skipped (continuity 1.0 -> 0.42 in 8 s), the API said only
``stream.stalled``, and the player's response stayed open for 20 s.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from procs import OasisProcess, start_broadcaster, wait_until

from oasis.sdk import Client

pytestmark = pytest.mark.integration


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats", timeout=10) as r:
        stream: dict[str, Any] = json.loads(r.read())["streams"][0]
        return stream


def _play(url: str, out: dict[str, Any]) -> None:
    """A player: reads the live MPEG-TS until the response ends (or 30 s)."""
    started = time.monotonic()
    n = 0
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            while block := r.read(65536):
                n += len(block)
        out["eof_after"] = time.monotonic() - started
    except OSError as exc:
        out["error"] = repr(exc)
    out["bytes"] = n


def _events(api: Client, kinds: list[str], got: list[Any], ready: threading.Event) -> None:
    for ev in api.events(kinds, reconnect=False):
        if ev.kind == "subscribed":
            ready.set()
            continue
        got.append(ev)
        if ev.kind == "stream.ended":
            return


async def test_a_stopped_broadcaster_ends_its_stream_for_its_viewers(tmp_path: Path) -> None:
    procs: list[OasisProcess] = []
    try:
        b = start_broadcaster(tmp_path, procs)
        info = b.info
        v = OasisProcess(["watch", info["link"], "--json", "--gateway", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "v")], str(tmp_path / "v.log"))
        procs.append(v)
        vinfo = v.wait_info()
        gw = vinfo["gateway"]
        await asyncio.to_thread(wait_until, lambda: _stats(gw)["latest"] > 10, 30)
        api = Client.from_data_dir(tmp_path / "v")
        got: list[Any] = []
        ready = threading.Event()
        listener = threading.Thread(target=_events, args=(api, ["stream"], got, ready), daemon=True)
        listener.start()
        assert await asyncio.to_thread(ready.wait, 10), "no subscription to the viewer's events"
        played: dict[str, Any] = {}
        player = threading.Thread(target=_play, args=(f"{gw}/live/{info['stream_id']}.ts", played),
                                  daemon=True)
        player.start()
        await asyncio.to_thread(wait_until, lambda: _stats(gw)["chunks"] > 20, 30)
        latest = _stats(gw)["latest"]
        stopped_at = time.monotonic()
        assert b.stop() in (0, -15)  # SIGTERM: the broadcaster says the end, then exits
        await asyncio.to_thread(wait_until, lambda: _stats(gw)["end"] is not None, 10)
        s = _stats(gw)
        end = s["end"]
        assert end > latest and s["latest"] == end
        # the player's response ends at the end marker, not after the gateway's 20 s stall
        await asyncio.to_thread(player.join, 15)
        assert not player.is_alive() and "error" not in played, played
        assert played["bytes"] > 0 and time.monotonic() - stopped_at < 15, played
        # the viewer's program is told, with the reason and the seq
        await asyncio.to_thread(listener.join, 10)
        ended = [e for e in got if e.kind == "stream.ended"]
        assert [e.data for e in ended] == [{"stream_id": info["stream_id"], "seq": end,
                                            "reason": "the broadcaster ended the stream"}], got
        assert not [e for e in got if e.kind == "stream.stalled"], got
        [stream] = api.streams()
        assert stream.end == end
        skipped = s["skipped"]
        api.close()
        # nothing more is given up: before the marker a stopped stream's viewer skipped
        # ~30 chunks a second from about 2 s after the stop (the seqs its clock expected)
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(wait_until, lambda: _stats(gw)["skipped"] > skipped, 4)
        # the person at the terminal is told too (the health check looks each second)
        log_path = tmp_path / "v.log"
        await asyncio.to_thread(wait_until, lambda: b"broadcaster ended the stream" in log_path.read_bytes(), 5)
        said = (tmp_path / "b.log").read_text()  # and the broadcaster's, at its stop
        assert f"oasis broadcast: stopped after chunk {end - 1}; the end of the stream was sent to 1 neighbour" \
            in said, said
    finally:
        codes = [p.stop() for p in procs]
    assert all(c in (0, -15) for c in codes), codes
