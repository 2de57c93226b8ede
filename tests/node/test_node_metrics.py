"""/metrics over real HTTP: valid exposition, one HELP/TYPE per family, a stream label per stream."""

from __future__ import annotations

import collections

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.core.tracker import Tracker
from oasis.node.http import add_gateway_routes, add_tracker_routes
from oasis.node.node import Node


async def test_metrics_parse_and_each_family_appears_once_with_several_streams() -> None:
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    tracker = Tracker()
    tracker.counters["refused_signature"] = 3
    streams = [node.add_stream(StreamId(Identity.generate().public, f"s{i}"), is_source=False)
               for i in range(3)]
    for i, ls in enumerate(streams):
        for seq in range(5 * (i + 1)):
            ls.record.delivered(seq, ls.record.joined_at + seq, ls.record.joined_at + seq + 0.15 * (i + 1),
                                "peer", 1000, seq == 0)
    app = web.Application()
    add_gateway_routes(app, node, tracker=tracker)
    add_tracker_routes(app, tracker)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as s:
            async def scrape() -> tuple[str, dict]:
                async with s.get(f"http://127.0.0.1:{server.port}/metrics") as r:
                    assert r.status == 200
                    text = await r.text()
                fams = list(text_string_to_metric_families(text))
                return text, {f.name: f for f in fams}

            text, fams = await scrape()
            # HELP and TYPE exactly once per family, however many streams.
            helps = collections.Counter(line.split()[2] for line in text.splitlines()
                                        if line.startswith("# HELP"))
            assert helps and max(helps.values()) == 1
            ids = {ls.text_id for ls in streams}
            for name in ("oasis_chunks_verified", "oasis_latest_seq", "oasis_swarm_events",
                         "oasis_delivery_latency_seconds", "oasis_upload_cap_kbps"):
                assert {smp.labels["stream"] for smp in fams[name].samples} == ids, name
            verified = {smp.labels["stream"]: smp.value for smp in fams["oasis_chunks_verified"].samples}
            assert verified == {ls.text_id: 5.0 * (i + 1) for i, ls in enumerate(streams)}
            assert any(smp.labels == {"event": "refused_signature"} and smp.value == 3
                       for smp in fams["oasis_tracker_events"].samples)
            # A level is a gauge, not a counter that could go down; data-file events are there.
            assert fams["oasis_link_chunk_bytes_buffered"].type == "gauge"
            assert not any(smp.labels.get("event") == "link_chunk_bytes_buffered"
                           for smp in fams["oasis_node_events"].samples)
            assert {smp.labels["event"] for smp in fams["oasis_data_file_events"].samples} >= {
                "journal_torn_tails_truncated", "data_modes_fixed"}

            def latency_count(fams: dict, sid: str) -> float:
                return next(smp.value for smp in fams["oasis_delivery_latency_seconds"].samples
                            if smp.name.endswith("_count") and smp.labels["stream"] == sid)
            assert latency_count(fams, streams[2].text_id) == 15
            # Incremental: new latencies are added on the next scrape, old ones not twice.
            ls = streams[0]
            ls.record.delivered(100, ls.record.joined_at + 100, ls.record.joined_at + 100.2,
                                "peer", 1000, False)
            _, fams = await scrape()
            assert latency_count(fams, ls.text_id) == 6
            assert latency_count(fams, streams[2].text_id) == 15
    finally:
        await server.close()
        await node.close()
