"""A peer that pushes forged chunks is caught: counted, dropped and banned (refused when it
comes back).

The viewer is a real process; the forger is an in-process node speaking real
OFTP over QUIC on loopback, with its own valid identity, that joins the stream
and pushes chunks signed with its own key instead of the broadcaster's.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from procs import OasisProcess, until, wait_until

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import FLAG_END, StreamId, sign_chunk, sign_end
from oasis.node.node import Node

pytestmark = pytest.mark.integration


def origin_chunk(origin: str, sid: StreamId, seq: int) -> wire.ChunkMsg:
    """Chunk ``seq`` as the origin serves it (anyone can fetch it)."""
    with urllib.request.urlopen(f"{origin}/{sid}/{seq}.chunk", timeout=10) as r:
        return wire.decode_chunk(r.read())


def stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/stats", timeout=10) as r:
        return json.loads(r.read())


async def test_forged_chunks_are_caught(tmp_path):
    b = OasisProcess(["broadcast", "test", "--json", "--bitrate", "800",
                      "--data-dir", str(tmp_path / "b")], str(tmp_path / "b.log"))
    procs = [b]
    try:
        info = b.wait_info()
        v = OasisProcess(["watch", info["stream_id"], "--tracker", info["tracker"], "--json",
                          "--gateway", "127.0.0.1:0", "--data-dir", str(tmp_path / "v")],
                         str(tmp_path / "v.log"))
        procs.append(v)
        vinfo = v.wait_info()
        await asyncio.to_thread(wait_until, lambda: stats(vinfo["gateway"])["streams"][0]["latest"] > 5, 30)

        sid = StreamId.parse(info["stream_id"])
        forger = Identity.generate()
        # it dials nobody of its own (no NEIGHBOURS-driven punches): only the viewer
        node = Node(forger, sw.SwarmConfig(), target_neighbours=0)
        await node.start()
        node.add_stream(sid, is_source=False)
        try:
            host, port = vinfo["oftp"].rsplit(":", 1)
            assert await node.connect(vinfo["peer_id"], host, int(port))
            link = next(iter(node.links_by_peer.values()))
            # Wait until the viewer has accepted our JOIN for the stream.
            await until(lambda: sid.key in next(iter(node.joined.values()), set()), 30,
                        what="the viewer accepting the JOIN")
            latest = stats(vinfo["gateway"])["streams"][0]["latest"]
            # an end marker signed by the forger, and one made of a real chunk's signature
            # with its flags set to the end and its payload dropped: neither ends the stream
            link.send_chunk(sign_end(forger, sid, latest + 2, int(time.time() * 1e6)), time.time() + 2)
            real = await asyncio.to_thread(origin_chunk, info["origin"], sid, latest)
            link.send_chunk(wire.ChunkMsg(stream=real.stream, seq=latest + 1, time_us=real.time_us,
                                          flags=FLAG_END, signature=real.signature, payload=b""),
                            time.time() + 2)
            for i in range(5):
                forged = sign_chunk(forger, sid, latest + 3 + i, int(time.time() * 1e6), False, b"\x47" * 188)
                link.send_chunk(forged, time.time() + 2)
            await asyncio.to_thread(
                wait_until, lambda: stats(vinfo["gateway"])["counters"]["peers_dropped_bad_chunks"] >= 1, 15)
            # Banned: the forger's link is closed, and when it comes back it is refused.
            await until(lambda: not node.links_by_peer, 30, what="the forger's link closed")
            await node.connect(vinfo["peer_id"], host, int(port))
            await asyncio.to_thread(
                wait_until, lambda: stats(vinfo["gateway"])["counters"]["links_refused_banned"] >= 1, 15)
        finally:
            await node.close()
        await asyncio.to_thread(  # the stream goes on past the forged end markers
            wait_until, lambda: stats(vinfo["gateway"])["streams"][0]["latest"] > latest + 30, 15)
        s = stats(vinfo["gateway"])
        assert s["streams"][0]["swarm_counters"]["bad_chunks"] >= 3
        assert s["counters"]["peers_dropped_bad_chunks"] == 1
        assert s["counters"]["peers_banned"] == 1
        # The viewer kept receiving the real stream without gaps, and it did not end.
        assert s["streams"][0]["skipped"] == 0
        assert s["streams"][0]["end"] is None and s["streams"][0]["swarm_counters"]["ends"] == 0
    finally:
        codes = [p.stop() for p in procs]
    assert all(c in (0, -15) for c in codes), codes
