"""A viewer's start, traced (``LiveStream.start_trace``): real processes on loopback, a
broadcaster with its tracker and an ``oasis watch`` of it. The viewer looks for peers at its
join, before its player gateway is up (the gateway, the local API and the first line used to
come first: 0.15 s of a lone viewer's start, 0.3-0.66 s in a join burst), and reports each
step of its start on /stats and /metrics, so a slow start can be read step by step. Its local API, set up after the join now (h-join6:
the modules imported before it, the OpenAPI document built at the first request), still serves
that document whole, the same bytes at every request."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from procs import OasisProcess, start_broadcaster, wait_until

from oasis.node.api import load_or_create_token
from oasis.node.node import START_STEPS


def get(url: str, token: str | None = None) -> bytes:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
        return bytes(r.read())


def test_a_viewer_announces_at_its_join_and_reports_its_start(tmp_path: Path) -> None:
    procs: list[OasisProcess] = []
    try:
        b = start_broadcaster(tmp_path, procs)
        info = b.info
        v = OasisProcess(["watch", info["stream_id"], "--tracker", info["tracker"], "--json",
                          "--gateway", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "v")], str(tmp_path / "v.log"))
        procs.append(v)
        first = v.wait_info()
        gateway, api = first["gateway"], first["api"]
        assert api, first

        def stream() -> dict[str, Any]:
            return dict(json.loads(get(gateway + "/stats"))["streams"][0])

        wait_until(lambda: "start" in stream()["start_trace"], 60)
        s = stream()
        tr = s["start_trace"]
        # the tracker is asked at the join, not once the gateway is up
        assert tr["announce"] <= tr["gateway"], tr
        for step in ("announce", "gateway", "candidates", "start", "start_age", "start_gap"):
            assert step in tr, (step, tr)
        assert set(tr) <= set(START_STEPS) | {"start_age", "start_gap"}, tr
        # the steps that happened came in their order, and all before the first frame
        seen = [tr[k] for k in ("announce", "candidates", "dial", "link", "peer", "start") if k in tr]
        assert seen == sorted(seen), tr
        assert tr["start_gap"] >= 0 and s["start_source"] in ("broadcaster", "p2p", "origin")
        # the start keyframe was at most start_max_age (5 s) old when it came
        assert tr["start_age"] >= tr["start"] - 5.0
        metrics = get(gateway + "/metrics").decode()
        assert f'oasis_start_seconds{{step="start",stream="{info["stream_id"]}"}}' in metrics
        assert "oasis_start_gap_chunks{" in metrics
        # the broadcaster has no start to trace
        bs = json.loads(get(info["http"] + "/stats"))["streams"][0]
        assert bs["start_trace"] == {} and bs["start_source"] == ""
        # the local API's OpenAPI document, built at its first request, whole and the same at the next
        token = load_or_create_token(tmp_path / "v")
        base = api.rstrip("/")
        url = base + ("/openapi.json" if base.endswith("/v1") else "/v1/openapi.json")
        doc = get(url, token)
        parsed = json.loads(doc)
        assert parsed["openapi"].startswith("3.") and "/v1/openapi.json" in parsed["paths"], sorted(parsed)
        assert get(url, token) == doc
    finally:
        for p in procs:
            p.stop()
