"""A stream link's tracker URL is a request a stranger makes this node send (docs/oftp.md §16,
§14.2). Found 2026-12-03 by an outside attacker: `t=` took any http(s) URL, so a link
with `t=http://127.0.0.3:18080/cgi-bin/admin?cmd=reboot&x=` (a query), or a user and
password, made the node request the attacker's own request line at any host -- the bare
URL (the reachability probe) and then `...&x=/descriptor/<id>` eleven more times in 5 s
-- and a link-local host (169.254.169.254, cloud metadata) was no different. Now a
tracker URL is http(s), a host, a port and a path: no user, query string or fragment, an
IP-literal host unicast and not link-local; else 400 `bad_tracker`, and nothing is
requested. The same held for a file link's origin (`oasis://file/<cid>?o=...`), whose
URL the node completes with `/origin/files/<cid>/...`, and a file link's tabs, line ends
and `#fragment` were dropped unseen. Real node, real API and file service, a real HTTP
server logging what reaches it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from procs import serve, until

from oasis.core import descriptor as descriptor_mod
from oasis.core import swarm as sw
from oasis.core.content import cid_text
from oasis.core.descriptor import Descriptor, DescriptorError, sign_descriptor, verify_descriptor
from oasis.core.filelink import parse as parse_file_link
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.core.streamlink import Bootstrap, LinkError, StreamLink, check_tracker
from oasis.core.streamlink import parse as parse_link
from oasis.node import api as napi
from oasis.node import outbound
from oasis.node.files import Files
from oasis.node.node import Node
from oasis.node.runtime import Common
from oasis.node.streaming import Streaming
from oasis.sdk import AsyncClient, OasisApiError

REFUSED = [
    "http://198.18.0.1:8000/cgi-bin/admin?cmd=reboot&x=",  # a query: the request line is the link's
    "http://198.18.0.1:8000/t#frag",
    "http://user:pass@198.18.0.1:8000/t",  # credentials
    "http://@198.18.0.1/t",
    "http://169.254.169.254/latest/meta-data",  # link-local: cloud metadata
    "http://[fe80::1]/t", "http://[fe80::1%25eth0]/t", "http://[::ffff:169.254.169.254]/t",
    "http://0.0.0.0:8000/t", "http://224.0.0.1/t", "http://255.255.255.255/t",
    "http://198.18.0.1:0/t", "http://198.18.0.1:99999/t", "http://198.18.0.1:x/t",
    "http:///t", "ftp://198.18.0.1/t", "http://198.18.0.1/a b",
]
KEPT = ["http://198.18.0.1:8000/tracker", "https://tracker.example/oasis/tracker",
        "http://127.0.0.1:7000/tracker", "http://[2001:db8::7]:8000/tracker", "http://10.1.2.3/t"]


def test_the_tracker_rule() -> None:
    for url in REFUSED:
        with pytest.raises(LinkError) as exc:
            check_tracker(url)
        assert exc.value.code == "bad_tracker", url
    for url in KEPT:
        assert check_tracker(url) == url


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Node, napi.Api, str]]:
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    streaming = Streaming(node, Common(data_dir=str(tmp_path)))
    runner, api = await napi.start_api(node, str(tmp_path), "127.0.0.1:0", streaming=streaming)
    try:
        yield node, api, api.url
    finally:
        await streaming.close()
        await runner.cleanup()
        await node.close()


async def test_a_link_cannot_make_the_node_request_a_url_of_its_choosing(
        served: tuple[Node, napi.Api, str]) -> None:
    node, api, url = served
    seen: list[str] = []

    async def log(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.json_response({}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", log)
    runner, base = await serve(app)  # the "internal service" the link points at
    sid = str(StreamId(Identity.generate().public, "live"))
    quoted = {"?": "%3F", "&": "%26", "=": "%3D", "#": "%23", "@": "%40", ":": "%3A", "/": "%2F"}
    try:
        async with AsyncClient(url, api.token) as c:
            hostile = [f"{base}/cgi-bin/admin?cmd=reboot&x=", f"{base}/t#x",
                       base.replace("http://", "http://user:pass@") + "/t"]
            for t in hostile:
                enc = "".join(quoted.get(ch, ch) for ch in t)
                for kw in ({"link": f"oasis://{sid}?t={enc}"}, {"stream_id": sid, "tracker": t}):
                    with pytest.raises(OasisApiError) as exc:
                        await c.watch(**kw)  # type: ignore[arg-type]
                    assert (exc.value.status, exc.value.code) == (400, "bad_tracker"), kw
            # the control: the same server as a plain tracker URL is asked (and has no stream)
            with pytest.raises(OasisApiError) as exc:
                await c.watch(stream_id=sid, tracker=f"{base}/tracker")
            assert (exc.value.status, exc.value.code) == (404, "not_found")
        assert seen and all(p.startswith("/tracker") for p in seen), seen  # nothing else reached it
        assert node.streams == {} and api.counters["internal_errors"] == 0
    finally:
        await runner.cleanup()


async def test_a_file_link_cannot_make_the_node_request_a_url_of_its_choosing(tmp_path: Path) -> None:
    cid = cid_text(bytes(range(32)))
    for o, code in (("http://198.18.0.1/x?cmd=reboot%26y%3D", "bad_origin"), ("http://u:p%40198.18.0.1/", "bad_origin"),
                    ("http://169.254.169.254/latest", "bad_origin"), ("http:", "bad_origin"),
                    ("ftp://198.18.0.1/", "bad_origin")):
        with pytest.raises(LinkError) as exc:
            parse_file_link(f"oasis://file/{cid}?o={o}")
        assert exc.value.code == code, o
    for text in (f"oasis://file/{cid}?o=http://198.18.0.1/#x", f"oasis://file/{cid}?o=http://198.18.0.1/\tx",
                 f"oasis://file/{cid}\n?o=http://198.18.0.1/"):
        with pytest.raises(LinkError) as exc:
            parse_file_link(text)
        assert exc.value.code == "not_a_link", text
    assert parse_file_link(f" oasis://file/{cid}?o=http://198.18.0.1:8080/base\n").origin == "http://198.18.0.1:8080/base"

    seen: list[str] = []
    asked = asyncio.Event()

    async def log(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        asked.set()
        return web.json_response({}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", log)
    runner, base = await serve(app)
    node = Node(Identity.generate(), sw.SwarmConfig())
    await node.start()
    files = Files(node, tmp_path / "files")
    node.files = files
    try:
        for o in (f"{base}/admin%3Fcmd%3Dreboot%26y%3D", base.replace("http://", "http://u:p%40")):
            with pytest.raises(LinkError) as exc:
                await files.fetch(f"oasis://file/{cid}?o={o}")
            assert exc.value.code == "bad_origin"
        assert files.list() == [] and seen == []
        # the control: a plain origin is asked, for the manifest at its canonical path
        await files.fetch(f"oasis://file/{cid}?o={base}")
        await asyncio.wait_for(asked.wait(), 15)
        assert seen and all(p.startswith(f"/origin/files/{cid}/") for p in seen), seen
    finally:
        files.close()
        await node.close()
        await runner.cleanup()


async def test_a_descriptor_cannot_make_viewers_request_a_url_of_its_choosing(
        served: tuple[Node, napi.Api, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone signs a descriptor for a stream of their own, and viewers request its origin,
    CDN and ticket URLs (paths appended: `<origin>/<id>/latest.json`, chunks). Found
    2026-12-03: a query there made every such request the signer's own request line, at any
    host, about once a second per viewer. Now a descriptor with such a URL does not verify
    (anywhere: links, trackers, the DHT, viewers), a broadcaster cannot sign one, and
    `--cdn-url` is checked before anything starts."""
    node, api, url = served
    seen: list[str] = []

    async def log(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.json_response({}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", log)
    runner, base = await serve(app)
    me = Identity.generate()
    sid = StreamId(me.public, "live")
    try:
        for kw in ({"origin": f"{base}/admin?cmd=reboot&x="}, {"cdn": (base.replace("http://", "http://u:p@"),)},
                   {"tickets": "http://169.254.169.254/latest/meta-data"}, {"origin": f"{base}/o#x"}):
            d = Descriptor(stream=sid, bitrate_kbps=500, chunk_ms=100, substreams=1,
                           issued_at_ms=int(time.time() * 1000), **kw)  # type: ignore[arg-type]
            with pytest.raises(DescriptorError) as exc:
                sign_descriptor(me, d)  # a broadcaster of ours cannot
            assert exc.value.code == "bad_url", kw
            # the attacker's own signer (without the rule): the signature is genuine ...
            with monkeypatch.context() as m:
                m.setattr(descriptor_mod, "base_url_problem", lambda *a: None)
                signed = sign_descriptor(me, d)
                assert verify_descriptor(signed, sid)
            assert not verify_descriptor(signed, sid)  # ... and still refused
            link = StreamLink(sid, signed, (Bootstrap(Identity.generate().public, "127.0.0.1", 9),), None)
            with monkeypatch.context() as m:
                m.setattr(descriptor_mod, "base_url_problem", lambda *a: None)
                text = link.format()
            with pytest.raises(LinkError) as lexc:
                parse_link(text)
            assert lexc.value.code == "bad_descriptor", kw
            async with AsyncClient(url, api.token) as c:
                with pytest.raises(OasisApiError) as aexc:
                    await c.watch(link=text)
                assert (aexc.value.status, aexc.value.code) == (400, "bad_descriptor"), kw
        assert seen == [] and node.streams == {}
    finally:
        await runner.cleanup()


def test_a_cdn_url_the_rule_refuses_stops_the_command_before_it_starts(tmp_path: Path) -> None:
    for cmd in (["broadcast", "test"], ["watch", f"{Identity.generate().peer_id}.live", "--tracker",
                                        "http://127.0.0.1:9/tracker"]):
        out = subprocess.run([sys.executable, "-m", "oasis", *cmd, "--cdn-url", "http://127.0.0.1:9/c?x=1",
                              "--data-dir", str(tmp_path / cmd[0])], capture_output=True, timeout=60)
        assert out.returncode == 2 and out.stdout == b"", out
        assert b"--cdn-url" in out.stderr and b"query string" in out.stderr, out.stderr
        assert b"Traceback" not in out.stderr and b"Unclosed" not in out.stderr, out.stderr


async def test_a_redirect_cannot_take_the_node_where_the_url_rule_would_not(
        served: tuple[Node, napi.Api, str], tmp_path: Path) -> None:
    """The URL rule above checks the URL a stranger gives; an answer of 302 or 307 named
    another, and aiohttp followed it: a file link's origin, a tracker, a descriptor's
    origin each sent the node's requests (a tracker's POSTs with their bodies) to a
    request line with a query at any host (found 2026-12-06 by an outside audit). Now the
    node's HTTP client follows no redirect (oasis.node.outbound), counted."""
    node, api, url = served
    seen: list[str] = []

    async def log(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.json_response({})

    sink = web.Application()
    sink.router.add_route("*", "/{tail:.*}", log)
    sink_runner, sink_base = await serve(sink)
    asked: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        asked.append(request.path_qs)
        to = f"{sink_base}/cgi-bin/x?cmd=reboot&y="
        if request.method == "POST" or len(asked) % 2:
            raise web.HTTPTemporaryRedirect(to)  # 307: the POST again, body and all
        raise web.HTTPFound(to)

    redir = web.Application()
    redir.router.add_route("*", "/{tail:.*}", redirect)
    redir_runner, redir_base = await serve(redir)
    files = Files(node, tmp_path / "files")
    node.files = files
    refused = outbound.COUNTERS["redirects_refused"]
    try:
        # the node's own client (origins' chunks, latest.json, tracker announces)
        for method in ("GET", "POST"):
            with pytest.raises(outbound.RedirectRefused, match="not followed"):
                async with node.http.request(method, f"{redir_base}/{method}", json={}):
                    pass
        # a file link's origin
        cid = cid_text(bytes(range(32)))
        before = outbound.COUNTERS["redirects_refused"]
        await files.fetch(f"oasis://file/{cid}?o={redir_base}")
        await until(lambda: outbound.COUNTERS["redirects_refused"] > before, 15)
        # a tracker, from a link and from the API
        sid = str(StreamId(Identity.generate().public, "live"))
        async with AsyncClient(url, api.token) as c:
            with pytest.raises(OasisApiError):
                await c.watch(stream_id=sid, tracker=f"{redir_base}/tracker")
        assert len(asked) >= 4 and outbound.COUNTERS["redirects_refused"] - refused >= 4
        assert seen == [], seen  # nothing reached the address the redirects named
        assert node.streams == {} and api.counters["internal_errors"] == 0
    finally:
        files.close()
        await redir_runner.cleanup()
        await sink_runner.cleanup()
