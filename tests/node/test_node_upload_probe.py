"""Where the node probes its upload cap (docs/oftp.md §9.7): only where it is its own guess.

The command line, the demo and the testbed give ``--upload-kbps`` only when the user (or the
link's known uplink, with the testbed's ``--fixed-upload``) says it; without it ``oasis watch``
runs the uplink probe from 4x, between 1x and 8x the bitrate, and its cap is on ``/metrics``."""

from __future__ import annotations

from types import SimpleNamespace

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.node import runtime as rt
from oasis.node.http import add_gateway_routes
from oasis.node.node import Node
from oasis.testbed import runner as testbed


def test_no_upload_given_is_probed_from_4x_between_1x_and_8x_and_a_given_one_is_fixed() -> None:
    own = rt.swarm_config(rt.Common(data_dir="/nonexistent", upload_kbps=None, bitrate_kbps=2000))
    assert (own.upload_kbps, own.upload_max_kbps, own.upload_min_kbps) == (8000, 16000, 2000)
    given = rt.swarm_config(rt.Common(data_dir="/nonexistent", upload_kbps=9000, bitrate_kbps=2000))
    assert (given.upload_kbps, given.upload_max_kbps, given.upload_min_kbps) == (9000, 0, 0)
    none = rt.swarm_config(rt.Common(data_dir="/nonexistent", upload_kbps=0, bitrate_kbps=2000))
    assert (none.upload_kbps, none.upload_max_kbps) == (0, 0)


def test_the_testbed_leaves_every_viewer_the_default_unless_told_to_fix_caps() -> None:
    bed = SimpleNamespace(topo=SimpleNamespace(bitrate_kbps=1500), upload_share=0.8, probe=True)
    fibre, phone = SimpleNamespace(up_kbps=50_000), SimpleNamespace(up_kbps=5_000)
    assert testbed.Testbed.upload_kbps(bed, fibre) is None  # type: ignore[arg-type]
    assert testbed.Testbed.upload_kbps(bed, phone) is None  # type: ignore[arg-type]  # the probe finds it
    bed.probe = False  # --fixed-upload: a cap from the link, as a user who knows it
    assert testbed.Testbed.upload_kbps(bed, fibre) == 6000  # type: ignore[arg-type]
    assert testbed.Testbed.upload_kbps(bed, phone) == 4000  # type: ignore[arg-type]
    bed.upload_share = 0.0
    assert testbed.Testbed.upload_kbps(bed, phone) == 6000  # type: ignore[arg-type]


async def test_a_viewer_without_a_cap_shows_its_probed_cap_on_metrics() -> None:
    cfg = rt.swarm_config(rt.Common(data_dir="/nonexistent", upload_kbps=None, bitrate_kbps=1500))
    node = Node(Identity.generate(), cfg, host="127.0.0.1")
    await node.start()
    ls = node.add_stream(StreamId(Identity.generate().public, "s"), is_source=False, config=cfg)
    app = web.Application()
    add_gateway_routes(app, node)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async def cap() -> float:
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{server.port}/metrics") as r:
                text = await r.text()
            fam = next(f for f in text_string_to_metric_families(text) if f.name == "oasis_upload_cap_kbps")
            value = next(smp.value for smp in fam.samples if smp.labels["stream"] == ls.text_id)
            assert testbed.metric_gauge(text, "oasis_upload_cap_kbps") == value  # (as the testbed reads it)
            return value
        assert ls.swarm.uplink is not None and await cap() == 6000
        ls.swarm.tree.cap_kbps = 7500  # (as the probe moves it)
        assert await cap() == 7500
    finally:
        await server.close()
        await node.close()
