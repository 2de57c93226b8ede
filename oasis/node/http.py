"""HTTP faces of a node (aiohttp): player gateway, origin, tracker, metrics.

* ``GET /live/<stream-id>.ts`` — continuous MPEG-TS for a player (ffplay, VLC,
  mpv), starting at a keyframe, chunks in order; a chunk given up on is skipped.
* ``GET /streams`` — JSON list of streams with their live figures.
* ``GET /metrics`` — Prometheus text format.
* ``GET /stats`` — JSON with the per-chunk record the demo aggregates.
* Origin (broadcaster): ``GET /origin/<stream-id>/<seq>.chunk`` — the signed
  chunk (the same bytes as an OFTP CHUNK message), immutable and cacheable, so
  any HTTP cache or CDN can sit in front; ``GET /origin/<stream-id>/latest.json``.
* Tracker: ``POST /tracker/announce`` with JSON ``{stream, peer_id, host, port,
  [broadcaster], [origin], [leaving]}`` → ``{peers: [...], origin, interval}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from typing import Any

from aiohttp import web

from oasis.core import wire
from oasis.core.identity import key_of_peer_id
from oasis.core.stream import StreamId, StreamIdError
from oasis.core.tracker import MAX_AREA, Tracker

from .node import LiveStream, Node

ANNOUNCE_INTERVAL = 10.0
MAX_ANNOUNCE_BODY = 4096
_SEQ_RE = re.compile(r"^[0-9]{1,19}$")


def _stream(node: Node, text: str) -> LiveStream:
    try:
        sid = StreamId.parse(text)
    except StreamIdError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    ls = node.streams.get(sid.key)
    if ls is None:
        raise web.HTTPNotFound(text=f"stream {text} is not carried by this node\n")
    return ls


def add_gateway_routes(app: web.Application, node: Node) -> None:
    async def live(request: web.Request) -> web.StreamResponse:
        ls = _stream(node, request.match_info["sid"])
        resp = web.StreamResponse(headers={"Content-Type": "video/mp2t", "Cache-Control": "no-store"})
        await resp.prepare(request)
        pl = ls.playout
        deadline = time.monotonic() + 30
        while pl.start is None:
            if time.monotonic() > deadline:
                return resp
            try:
                await asyncio.wait_for(pl.changed.wait(), 1.0)
            except TimeoutError:
                pass
        # Start at the newest keyframe held, so the player begins near the live edge.
        seq = max((s for s in pl.chunks if s >= pl.start and node_keyframe(ls, s)), default=pl.start)
        if request.query.get("from") == "start":
            seq = pl.start
        while True:
            if seq in pl.chunks:
                await resp.write(pl.chunks[seq])
                seq += 1
                continue
            if seq in pl.skipped or (pl.chunks and seq < min(pl.chunks)):
                seq += 1
                continue
            changed = pl.changed
            try:
                await asyncio.wait_for(changed.wait(), 5.0)
            except TimeoutError:
                if ls.swarm.log.latest < seq:
                    continue
                seq += 1

    async def streams(request: web.Request) -> web.Response:
        return web.json_response([stream_summary(ls) for ls in node.streams.values()])

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(node_stats(node, detail=request.query.get("detail") == "1"))

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=prometheus(node), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    app.router.add_get(r"/live/{sid:[a-z2-7]{52}\.[a-z0-9_-]{1,32}}.ts", live)
    app.router.add_get("/streams", streams)
    app.router.add_get("/stats", stats)
    app.router.add_get("/metrics", metrics)


def node_keyframe(ls: LiveStream, seq: int) -> bool:
    c = ls.swarm.log.get(seq)
    return c is not None and bool(c.flags & 1)


def add_origin_routes(app: web.Application, node: Node) -> None:
    async def chunk(request: web.Request) -> web.Response:
        ls = _stream(node, request.match_info["sid"])
        seq_text = request.match_info["seq"]
        if not _SEQ_RE.match(seq_text):
            raise web.HTTPBadRequest(text="sequence number must be a decimal integer\n")
        c = ls.swarm.log.get(int(seq_text))
        if c is None:
            return web.Response(status=404, text="chunk not (or no longer) available\n",
                                headers={"Cache-Control": "no-store"})
        body = wire.encode(c)
        return web.Response(body=body, content_type="application/x-oftp-chunk", headers={
            "Cache-Control": "public, max-age=86400, immutable",
            "ETag": f'"{c.signature[:12].hex()}"'})

    async def latest(request: web.Request) -> web.Response:
        ls = _stream(node, request.match_info["sid"])
        log = ls.swarm.log
        return web.json_response({"latest": log.latest, "keyframe": log.latest_keyframe,
                                  "time": log.time_of(log.latest) if log.latest >= 0 else None},
                                 headers={"Cache-Control": "no-cache"})

    app.router.add_get(r"/origin/{sid}/{seq}.chunk", chunk)
    app.router.add_get(r"/origin/{sid}/latest.json", latest)


def add_tracker_routes(app: web.Application, tracker: Tracker) -> None:
    async def announce(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_ANNOUNCE_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_ANNOUNCE_BODY,
                                                actual_size=request.content_length)
        raw = await request.content.read(MAX_ANNOUNCE_BODY + 1)
        if len(raw) > MAX_ANNOUNCE_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_ANNOUNCE_BODY, actual_size=len(raw))
        try:
            body = json.loads(raw)
            stream = str(body["stream"])
            StreamId.parse(stream)
            peer_id = str(body["peer_id"])
            key_of_peer_id(peer_id)
            host = str(body["host"])
            port = int(body["port"])
            if not 0 < port < 65536 or len(host) > 64:
                raise ValueError("bad address")
            area = body.get("area") or ""
            if not isinstance(area, str) or len(area) > MAX_AREA:
                raise ValueError(f"area: a string of at most {MAX_AREA} characters")
        except (ValueError, KeyError, TypeError, StreamIdError) as exc:
            raise web.HTTPBadRequest(text=f"bad announce: {exc}\n") from None
        try:
            peers = tracker.announce(stream, peer_id, host, port, time.time(),
                                     is_broadcaster=bool(body.get("broadcaster")),
                                     origin=_url(body.get("origin")), tickets=_url(body.get("tickets")),
                                     leaving=bool(body.get("leaving")), area=area)
        except OverflowError as exc:
            raise web.HTTPServiceUnavailable(text=f"{exc}\n") from None
        return web.json_response({
            "peers": [{"peer_id": p.peer_id, "host": p.host, "port": p.port} for p in peers],
            "origin": tracker.origins.get(stream), "tickets": tracker.tickets.get(stream),
            "interval": ANNOUNCE_INTERVAL})

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({s: len(p) for s, p in tracker.streams.items()})

    app.router.add_post("/tracker/announce", announce)
    app.router.add_get("/tracker/streams", listing)


def _url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("http://", "https://")) and len(value) <= 512:
        return value
    return None


# ---- reports -----------------------------------------------------------------

def stream_summary(ls: LiveStream) -> dict[str, Any]:
    sw = ls.swarm
    rec = ls.record
    lat = sorted(rec.latencies.values())
    return {
        "stream_id": ls.text_id,
        "role": "broadcaster" if ls.is_source else "viewer",
        "latest": sw.log.latest,
        "start": sw.start_seq,
        "neighbours": len(sw.peers),
        "depth": [len(p) - 1 if p else None for p in sw.paths],
        "bytes": rec.bytes_by_source,
        "latency_p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
        "chunks": len(rec.latencies),
        "skipped": len(rec.skipped),
        "player_url": f"/live/{ls.text_id}.ts",
    }


def node_stats(node: Node, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "peer_id": node.peer_id,
        "traffic": node.traffic(),
        "counters": dict(node.counters) | {f"endpoint_{k}": v for k, v in node.endpoint.counters.items()},
        "streams": [],
    }
    for ls in node.streams.values():
        s = stream_summary(ls)
        s["swarm_counters"] = dataclasses.asdict(ls.swarm.counters)
        s["upload"] = dataclasses.asdict(ls.swarm.upload.counters)
        s["origin_fetches"] = ls.origin_fetches
        s["origin_failures"] = ls.origin_failures
        if detail:
            s["record"] = ls.record.to_json()
            if ls.is_source:
                s["produced"] = {str(k): v for k, v in ls.produced.items()}
        out["streams"].append(s)
    return out


def prometheus(node: Node) -> str:
    lines = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP oasis_{name} {help_}")
        lines.append(f"# TYPE oasis_{name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"oasis_{name}{{{lab}}} {value}" if lab else f"oasis_{name} {value}")

    traffic = node.traffic()
    metric("traffic_bytes_total", "counter", "Bytes on OFTP links by layer (sent+received).",
           [({"layer": k}, v) for k, v in traffic.items()])
    metric("neighbours", "gauge", "Authenticated peer links.", [({}, node.neighbour_count())])
    metric("protocol_violations_total", "counter", "Malformed or unexpected input from peers.",
           [({}, node.counters["violations"])])
    for ls in node.streams.values():
        lab = {"stream": ls.text_id}
        metric("chunks_verified_total", "counter", "Verified chunks completed after this node joined.",
               [(lab, len(ls.record.latencies))])
        metric("media_bytes_total", "counter", "Media bytes received by source.",
               [(lab | {"source": k}, v) for k, v in ls.record.bytes_by_source.items()])
        metric("chunks_skipped_total", "counter", "Chunks given up at their deadline.",
               [(lab, len(ls.record.skipped))])
        metric("bad_chunks_total", "counter", "Chunks that failed verification.",
               [(lab, ls.swarm.counters.bad_chunks)])
        lat = sorted(ls.record.latencies.values())
        if lat:
            metric("delivery_latency_seconds", "summary", "Broadcaster complete to verified here.",
                   [(lab | {"quantile": q}, lat[min(len(lat) - 1, int(float(q) * len(lat)))])
                    for q in ("0.5", "0.95", "0.99")])
        metric("latest_seq", "gauge", "Highest chunk sequence number held.", [(lab, ls.swarm.log.latest)])
    return "\n".join(lines) + "\n"

