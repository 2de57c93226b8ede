"""Command line: ``oasis demo | broadcast | watch | tracker``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any

from oasis.core.stream import StreamIdError


def _run(coro: Coroutine[Any, Any, Any]) -> None:
    try:
        import uvloop
        uvloop.run(coro)
    except ImportError:  # not Linux/macOS: plain asyncio
        asyncio.run(coro)


def _common(p: argparse.ArgumentParser, role: str) -> None:
    p.add_argument("--data-dir", help=f"key and state directory (default: ~/.local/share/oasis/{role})")
    p.add_argument("--listen", default="127.0.0.1:0", help="OFTP (UDP) address, HOST:PORT")
    p.add_argument("--upload-kbps", type=int, default=None,
                   help="upload cap for relaying, kbit/s (default: 4x the bitrate; 0 = none)")
    p.add_argument("--bitrate", type=int, default=1500, help="stream bitrate, kbit/s")
    p.add_argument("--chunk-ms", type=int, default=100, help="chunk duration, ms")
    p.add_argument("--substreams", type=int, default=4, help="push substreams per stream")
    p.add_argument("--playout-delay", type=float, default=0.5,
                   help="deadline after a chunk is complete, seconds")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("-v", "--verbose", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="oasis", description="Oasis live video over OFTP/QUIC")
    sub = ap.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="a live swarm on this machine: tracker, broadcaster, N viewers")
    d.add_argument("--viewers", type=int, default=10)
    d.add_argument("--duration", type=float, default=30, help="seconds to run after all viewers joined")
    d.add_argument("--bitrate", type=int, default=1500)
    d.add_argument("--chunk-ms", type=int, default=100)
    d.add_argument("--upload-kbps", type=int, default=None, help="viewers' upload cap (default 4x bitrate)")
    d.add_argument("--broadcaster-upload-kbps", type=int, default=None,
                   help="broadcaster's upload cap (default 2x bitrate)")
    d.add_argument("--source", default="test", help="test | FILE | - | udp://HOST:PORT")
    d.add_argument("--json", action="store_true", help="print one JSON summary object")
    d.add_argument("--keep", action="store_true", help="keep the temporary data directory")

    b = sub.add_parser("broadcast", help="publish a live stream")
    b.add_argument("source", help="test | FILE (looped) | - (stdin) | udp://HOST:PORT")
    b.add_argument("--name", default="live", help="stream name")
    b.add_argument("--http", default="127.0.0.1:0", help="HTTP origin/tracker address HOST:PORT")
    b.add_argument("--tracker", default=None, help="external tracker URL (default: embedded)")
    b.add_argument("--cdn-url", default=None, help="CDN base URL in front of this origin")
    _common(b, "broadcaster")

    w = sub.add_parser("watch", help="join a stream and serve it to a local player")
    w.add_argument("stream_id")
    w.add_argument("--tracker", required=True, help="tracker URL")
    w.add_argument("--gateway", default="127.0.0.1:8080", help="player gateway HOST:PORT")
    w.add_argument("--cdn-url", default=None, help="fetch late chunks from this CDN/origin base URL")
    _common(w, "viewer")

    t = sub.add_parser("tracker", help="run a stand-alone tracker")
    t.add_argument("--listen", default="127.0.0.1:7000")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
                        stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from oasis.node import runtime as rt

    try:
        if args.cmd == "demo":
            from oasis.demo import run_demo
            return run_demo(args)
        if args.cmd == "tracker":
            _run(rt.tracker_only(args.listen))
            return 0
        if not 1 <= args.substreams <= 16:
            raise ValueError("--substreams must be between 1 and 16")
        if args.chunk_ms < 10 or args.bitrate < 10:
            raise ValueError("--chunk-ms and --bitrate must be at least 10")
        upload = args.upload_kbps if args.upload_kbps is not None else 4 * args.bitrate
        c = rt.Common(data_dir=args.data_dir or rt.default_data_dir(args.cmd), listen=args.listen,
                      upload_kbps=upload, bitrate_kbps=args.bitrate, chunk_ms=args.chunk_ms,
                      substreams=args.substreams, playout_delay=args.playout_delay,
                      json_out=args.json, seed=args.seed)
        if args.cmd == "broadcast":
            _run(rt.broadcast(c, source=args.source, name=args.name, http_listen=args.http,
                              tracker_url=args.tracker, cdn_url=args.cdn_url))
        elif args.cmd == "watch":
            _run(rt.watch(c, stream_id=args.stream_id, tracker_url=args.tracker,
                          gateway=args.gateway, cdn_url=args.cdn_url))
    except (ValueError, StreamIdError, OSError) as exc:
        print(f"oasis {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
