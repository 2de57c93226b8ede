"""The signed stream descriptor: a viewer needs only the stream id; forged descriptors are refused."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import urllib.error
import urllib.request

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from procs import OasisProcess, wait_until

from oasis.core.descriptor import Descriptor, sign_descriptor, verified_descriptor
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node.runtime import fetch_descriptor


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.integration
def test_a_viewer_with_only_the_stream_id_plays_by_the_descriptor(tmp_path) -> None:
    b = OasisProcess(["broadcast", "test", "--json", "--bitrate", "600", "--chunk-ms", "200",
                      "--substreams", "2", "--data-dir", str(tmp_path / "b")], str(tmp_path / "b.log"))
    procs = [b]
    try:
        info = b.wait_info()
        sid = StreamId.parse(info["stream_id"])
        d = verified_descriptor(get_json(info["descriptor"]), sid)  # GET /origin/<sid>/descriptor
        assert (d.bitrate_kbps, d.chunk_ms, d.substreams) == (600, 200, 2)
        assert d.origin == info["origin"]
        # A viewer given the stream id only (and one stale flag, for compatibility).
        v = OasisProcess(["watch", info["stream_id"], "--tracker", info["tracker"], "--json",
                          "--bitrate", "1500", "--gateway", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "v")], str(tmp_path / "v.log"))
        procs.append(v)
        vinfo = v.wait_info()
        assert vinfo["descriptor"]["chunk_ms"] == 200 and vinfo["descriptor"]["origin"] == d.origin
        assert len(vinfo["mismatch"]) == 1 and "--bitrate 1500" in vinfo["mismatch"][0]

        def playing() -> bool:
            s = get_json(vinfo["gateway"] + "/stats")["streams"][0]
            return s["start"] is not None and s["latest"] >= s["start"] + 10
        wait_until(playing, 60)
        # The origin serves no descriptor for a stream it does not carry.
        other = StreamId(Identity.generate().public, "live")
        with pytest.raises(urllib.error.HTTPError) as e:
            get_json(f"{info['http']}/origin/{other}/descriptor")
        assert e.value.code == 404 and json.loads(e.value.read())["error"] == "no_stream"
    finally:
        codes = [p.stop() for p in procs]
    assert all(c in (0, -15) for c in codes), codes


async def test_fetch_descriptor_refuses_a_wrong_signature_and_another_streams_key() -> None:
    """A tracker (real HTTP on 127.0.0.1) serving forged descriptors: the viewer will not start."""
    bc = Identity.from_private_bytes(random.Random(1).randbytes(32))
    mallory = Identity.from_private_bytes(random.Random(2).randbytes(32))
    sid = StreamId(bc.public, "live")
    real = sign_descriptor(bc, Descriptor(sid, 1000, 100, 4, 1, origin="http://127.0.0.1:1/origin"))
    wrong_sig = dataclasses.replace(real, origin="http://127.0.0.9/evil",
                                    signature=mallory.sign(dataclasses.replace(
                                        real, origin="http://127.0.0.9/evil").signing_bytes()))
    theirs = sign_descriptor(mallory, Descriptor(StreamId(mallory.public, "live"), 1000, 100, 4, 1,
                                                 origin="http://127.0.0.9/evil"))
    serve: list[dict] = []

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(serve[0])

    app = web.Application()
    app.router.add_get(r"/tracker/descriptor/{sid}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{server.port}/tracker"
            for forged in (wrong_sig, theirs):
                serve[:] = [forged.to_json()]
                with pytest.raises(RuntimeError, match="refused"):
                    await fetch_descriptor(session, url, sid, timeout=0.5)
            serve[:] = [real.to_json()]
            got = await asyncio.wait_for(fetch_descriptor(session, url, sid, timeout=5), 10)
            assert got.origin == "http://127.0.0.1:1/origin"
    finally:
        await server.close()
