"""Attack: hand-made HTTP requests at a real broadcaster's origin face (docs/oftp.md §10):
range and conditional requests, odd spellings, methods and headers a CDN in front would
pass through, and what each answer would leave in a CDN's cache.

A broadcaster ``Node`` publishes signed chunks; its origin routes are served by the real
``start_http`` (every guard on). Each request goes over a raw TCP connection (no client
library rewriting it). For each: the status, the caching headers, the body's length and
the time; at the end, the error log records the node wrote (a traceback is a finding), and
whether any answer a CDN may store (anything but ``no-store``) is other than the
canonical chunk's 200/304.

PYTHONPATH=. python bench/atk5_origin_http.py
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.node import http
from oasis.node.node import Node
from oasis.node.runtime import start_http


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()[:120]}")


async def raw(port: int, request: bytes, timeout: float = 5.0) -> dict[str, Any]:
    t = time.perf_counter()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(request)
        await w.drain()
        data = b""
        try:
            while len(data) < 8 << 20:
                got = await asyncio.wait_for(r.read(65536), timeout)
                if not got:
                    break
                data += got
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep:
                    hdrs = _headers(head)
                    n = int(hdrs.get("content-length", "-1"))
                    if n >= 0 and len(body) >= n:
                        break
                    if request.startswith(b"HEAD") or head.split(b" ")[1:2] in ([b"304"], [b"204"]):
                        break
        except TimeoutError:
            pass
    finally:
        w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1]) if lines and len(lines[0].split(b" ")) > 1 else 0
    hdrs = _headers(head)
    return {"status": status, "cache": hdrs.get("cache-control"), "etag": hdrs.get("etag"),
            "content_range": hdrs.get("content-range"), "vary": hdrs.get("vary"),
            "len": len(body), "ms": round((time.perf_counter() - t) * 1000, 1),
            "error": _error(body)}


def _headers(head: bytes) -> dict[str, str]:
    out = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        out[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return out


def _error(body: bytes) -> str | None:
    try:
        return str(json.loads(body).get("error"))
    except Exception:
        return None


async def main() -> None:
    log = _Count()
    logging.getLogger().addHandler(log)
    b = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1", target_neighbours=0, dht=False)
    await b.start()
    sid = StreamId(b.identity.public, "live")
    ls = b.add_stream(sid, is_source=True)
    for seq in range(40):
        ls.swarm.publish(sign_chunk(b.identity, sid, seq, int(time.time() * 1e6) + seq, seq % 10 == 0,
                                    b"\x47" * 5000), time.time())
    ls.pump()
    app = web.Application()
    http.add_origin_routes(app, b)
    runner, port = await start_http(app, "127.0.0.1", 0)
    s = str(sid)
    c = f"/origin/{s}/7.chunk"
    etag = (await raw(port, f"GET {c} HTTP/1.1\r\nHost: x\r\n\r\n".encode()))["etag"]
    big = 2 ** 64 - 1
    cases: dict[str, bytes] = {
        "canonical": f"GET {c} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "range_0_0": f"GET {c} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\n\r\n".encode(),
        "range_suffix": f"GET {c} HTTP/1.1\r\nHost: x\r\nRange: bytes=-1\r\n\r\n".encode(),
        "range_many": (f"GET {c} HTTP/1.1\r\nHost: x\r\nRange: bytes="
                       + ",".join(f"{i}-{i}" for i in range(1200)) + "\r\n\r\n").encode(),
        "range_past_end": f"GET {c} HTTP/1.1\r\nHost: x\r\nRange: bytes=999999-\r\n\r\n".encode(),
        "range_huge": f"GET {c} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-{big}\r\n\r\n".encode(),
        "if_range_weak": f"GET {c} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\nIf-Range: W/{etag}\r\n\r\n".encode(),
        "inm_match": f"GET {c} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n".encode(),
        "inm_star": f"GET {c} HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n".encode(),
        "inm_8k_tags": (f"GET {c} HTTP/1.1\r\nHost: x\r\nIf-None-Match: "
                        + ", ".join('"aaaaaaaaaaaaaaaaaaaaaaaa"' for _ in range(290)) + "\r\n\r\n").encode(),
        "inm_unterminated": (f"GET {c} HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"" + "a" * 8000
                             + "\r\n\r\n").encode(),
        "im_other": f"GET {c} HTTP/1.1\r\nHost: x\r\nIf-Match: \"00\"\r\n\r\n".encode(),
        "ims_future": f"GET {c} HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n\r\n".encode(),
        "head": f"HEAD {c} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "options": f"OPTIONS {c} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "seq_2_64": f"GET /origin/{s}/{big}.chunk HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "seq_19_nines": f"GET /origin/{s}/{'9' * 19}.chunk HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "future_seq": f"GET /origin/{s}/41.chunk HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "fragment": f"GET {c}#x HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "trailing_slash": f"GET {c}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "double_slash": f"GET /origin//{s}/7.chunk HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "dot_segment": f"GET /origin/x/../{s}/7.chunk HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "absolute_other_host": f"GET http://evil.example{c} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "accept_gzip": f"GET {c} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, br\r\n\r\n".encode(),
        "get_with_body": f"GET {c} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".encode(),
        "latest": f"GET /origin/{s}/latest.json HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "latest_inm": f"GET /origin/{s}/latest.json HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n".encode(),
        "latest_range": f"GET /origin/{s}/latest.json HTTP/1.1\r\nHost: x\r\nRange: bytes=0-3\r\n\r\n".encode(),
        "http10_no_host": f"GET {c} HTTP/1.0\r\n\r\n".encode(),
    }
    out: dict[str, Any] = {}
    for name, req in cases.items():
        try:
            out[name] = await raw(port, req)
        except Exception as exc:  # the connection reset: a finding too
            out[name] = {"exception": repr(exc)[:100]}
    # an If-None-Match list parse in a loop: the cost of the worst header (µs per request)
    t = time.perf_counter()
    for _ in range(50):
        await raw(port, cases["inm_8k_tags"])
    inm_ms = (time.perf_counter() - t) / 50 * 1000
    t = time.perf_counter()
    for _ in range(50):
        await raw(port, cases["canonical"])
    plain_ms = (time.perf_counter() - t) / 50 * 1000
    await runner.cleanup()
    await b.close()
    cacheable_odd = {k: v for k, v in out.items() if isinstance(v, dict) and v.get("cache")
                     and "no-store" not in str(v.get("cache")) and v.get("status") not in (200, 304)}
    print(json.dumps({"answers": out, "error_log_records": log.records[:20],
                      "error_log_count": len(log.records), "server_errors":
                      sorted(k for k, v in out.items() if v.get("status", 0) >= 500),
                      "cacheable_non_200": cacheable_odd,
                      "ms_per_request": {"canonical": round(plain_ms, 2), "inm_290_tags": round(inm_ms, 2)},
                      "loadavg": open("/proc/loadavg").read().split()[:3]}, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
