"""The public HTTP faces as an outside client sees them, each case against a real aiohttp
server (``start_http``) and real HTTP requests. Found 2026-12-02 by an outside attacker (LOW):

* ``/metrics``, ``/stats`` and ``GET /rewards`` (wallet, earnings) were public on a node's
  public face; the embedded tracker listed every stream announced to it to anyone.

(The parser's refusals, also found then, are in ``test_node_http_guard.py``.)
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from procs import OasisProcess

from oasis.core import swarm as sw
from oasis.core.announce import sign_announce
from oasis.core.descriptor import Descriptor, sign_descriptor
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.core.tracker import Tracker
from oasis.node import http, rewards_http
from oasis.node.node import Node
from oasis.node.runtime import start_http

BC = Identity.generate()
SID = StreamId(BC.public, "live")


def _outward_ipv4() -> str | None:
    """A non-loopback IPv4 address of this machine (the route to a TEST-NET address; no
    packet is sent), or None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            ip = str(s.getsockname()[0])
        except OSError:
            return None
    try:
        with socket.socket() as probe:
            probe.bind((ip, 0))
    except OSError:
        return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


@pytest.fixture
def stranger(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(address the face binds, address a stranger's requests come from): this machine's
    outward address for both when it has one (a client there is not loopback); else the
    face on 127.0.0.1 and the stranger at 127.0.0.2, which the test then does not count as
    loopback (only ``is_loopback`` is replaced, and only for that address)."""
    ip = _outward_ipv4()
    if ip is not None:
        return ip, ip
    real = http.is_loopback
    monkeypatch.setattr(http, "is_loopback", lambda a: a != "127.0.0.2" and real(a))
    return "127.0.0.1", "127.0.0.2"


class _Rewards:
    """What ``GET /rewards`` reads of a node's proof of relay (the route and server are real)."""

    node: Any = None

    async def report(self) -> dict[str, Any]:
        return {"wallet": "0x" + "ab" * 20, "earned": 12345}


async def _node() -> Node:
    node = Node(BC, sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    ls = node.add_stream(SID, is_source=True)
    for seq in range(12):
        ls.swarm.publish(sign_chunk(BC, SID, seq, int(time.time() * 1e6), seq == 0, bytes([seq]) * 188),
                         time.time())
    node.add_stream(StreamId(Identity.generate().public, "watched"), is_source=False)  # not ours
    node.rewards = _Rewards()
    return node


def _app(node: Node, tracker: Tracker, *, public: bool = False) -> web.Application:
    app = web.Application()
    d = sign_descriptor(BC, Descriptor(SID, 1000, 100, 4, 1, origin="http://127.0.0.1:1/origin"))
    http.add_origin_routes(app, node, {str(SID): d})
    http.add_gateway_routes(app, node, tracker=tracker)
    http.add_tracker_routes(app, tracker, own=http.own_streams(node))
    rewards_http.add_rewards_routes(app, node, broadcaster=False)
    http.set_public_views(app, public)
    return app


def _tracker_with_a_strangers_stream() -> Tracker:
    tracker = Tracker()
    now = time.time()
    for sid in (SID, StreamId(Identity.generate().public, "someone-else")):
        me = Identity.generate()
        tracker.submit(sign_announce(me, sid, "127.0.0.1", 4433, int(now * 1000)), "127.0.0.1", now)
    return tracker


@pytest.fixture
async def faces(stranger: tuple[str, str]) -> AsyncIterator[dict[str, Any]]:
    """One node behind two faces: the default one on ``stranger``'s address and one run with
    ``--public-metrics`` (both on the address a stranger reaches), and a loopback face."""
    bind, _ = stranger
    node = await _node()
    tracker = _tracker_with_a_strangers_stream()
    runners = []
    try:
        urls = {}
        for name, host, public in (("private", bind, False), ("public", bind, True),
                                   ("local", "127.0.0.1", False)):
            app = _app(node, tracker, public=public)
            runner, port = await start_http(app, host, port=0)
            runners.append(runner)
            urls[name] = (f"http://{host}:{port}", app[http.HTTP_COUNTERS])
        yield urls
    finally:
        for r in runners:
            await r.cleanup()
        await node.close()


def _session(local_addr: str | None = None) -> aiohttp.ClientSession:
    conn = aiohttp.TCPConnector(local_addr=(local_addr, 0) if local_addr else None, force_close=True)
    return aiohttp.ClientSession(connector=conn)


VIEWS = ("/metrics", "/stats", "/stats?detail=1", "/rewards")


async def test_metrics_stats_and_rewards_answer_only_this_machine_unless_public_metrics(
        faces: dict[str, Any], stranger: tuple[str, str]) -> None:
    _, client = stranger
    private, counters = faces["private"]
    async with _session(client) as s:
        for path in VIEWS:
            async with s.get(private + path) as r:
                body = await r.json()
                assert r.status == 403 and body["error"] == "local_only", (path, body)
                assert "--public-metrics" in body["message"] and r.headers["Cache-Control"] == "no-store"
        # the rest of the face is the stranger's: the player list shows only our own stream,
        # the tracker's listing only the streams this node broadcasts, a lookup by id works
        async with s.get(private + "/streams") as r:
            assert r.status == 200 and [x["stream_id"] for x in await r.json()] == [str(SID)]
        async with s.get(private + "/tracker/streams") as r:
            assert r.status == 200 and await r.json() == {str(SID): 1}
        async with s.get(f"{private}/tracker/descriptor/{SID}") as r:
            assert r.status == 404  # (no descriptor announced here; the route answers)
        async with s.get(f"{private}/origin/{SID}/latest.json") as r:
            assert r.status == 200 and (await r.json())["latest"] == 11
    assert counters["http_local_only_refused"] == len(VIEWS)
    # with --public-metrics, anyone gets them, never cached
    public, _ = faces["public"]
    async with _session(client) as s:
        for path in VIEWS:
            async with s.get(public + path) as r:
                assert r.status == 200 and r.headers["Cache-Control"] == "no-store", path
                if path == "/metrics":
                    assert r.content_type == "text/plain" and "oasis_" in await r.text()
        async with s.get(public + "/rewards") as r:
            assert (await r.json())["earned"] == 12345
        async with s.get(public + "/streams") as r:
            assert len(await r.json()) == 2
        async with s.get(public + "/tracker/streams") as r:
            assert len(await r.json()) == 2


async def test_this_machines_operator_reads_the_views_but_not_through_a_proxy(
        faces: dict[str, Any]) -> None:
    """Over loopback the operator reads them all; a request relayed by a proxy on this
    machine (a reverse proxy or CDN edge reaching the node over loopback) is a stranger's."""
    local, counters = faces["local"]
    async with _session() as s:
        for path in VIEWS:
            async with s.get(local + path) as r:
                assert r.status == 200, path
        async with s.get(local + "/tracker/streams") as r:
            assert len(await r.json()) == 2
        for header in ("X-Forwarded-For", "Forwarded", "Via", "X-Real-IP"):
            async with s.get(local + "/metrics", headers={header: "203.0.113.9"}) as r:
                assert r.status == 403 and (await r.json())["error"] == "local_only", header
            async with s.get(local + "/tracker/streams", headers={header: "203.0.113.9"}) as r:
                assert await r.json() == {str(SID): 1}
    assert counters["http_local_only_refused"] == 4


async def test_the_tracker_command_serves_metrics_to_a_proxy_only_with_public_metrics(
        tmp_path: Path) -> None:
    """The flag as a user gives it: ``oasis tracker`` with and without ``--public-metrics``
    (a request through a proxy stands for a stranger's, as it does on loopback)."""
    procs = [OasisProcess(["tracker", "--listen", "127.0.0.1:0", *extra], str(tmp_path / f"t{i}.log"))
             for i, extra in enumerate(([], ["--public-metrics"]))]
    try:
        urls = [p.wait_info(60)["tracker"].removesuffix("/tracker") for p in procs]
        async with _session() as s:
            statuses = []
            for url in urls:
                async with s.get(url + "/metrics", headers={"X-Forwarded-For": "203.0.113.9"}) as r:
                    statuses.append(r.status)
                async with s.get(url + "/metrics") as r:
                    assert r.status == 200  # the operator, always
            assert statuses == [403, 200]
    finally:
        for p in procs:
            p.stop()
