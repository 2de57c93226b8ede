"""Watch a stream's health through a node's local API; exit non-zero when it is unhealthy.

    python examples/stream_health.py --data-dir ~/.local/share/oasis/viewer [STREAM_ID]

Every ``--every`` seconds it prints one JSON line: chunks delivered and skipped in the
interval, continuity (delivered / (delivered + skipped)), latency p50 and offload (the
share of bytes that came from peers rather than the origin). It exits 1 as soon as the
stream is unhealthy -- continuity below ``--min-continuity``, no new chunk for
``--max-stall`` seconds, or the stream gone from the node -- and 0 after ``--duration``
seconds of good health (0: watch forever) or when the broadcaster ended the stream (its
signed end marker came: the last line says ``"ended": true``); Ctrl-C ends it quietly
(130). Uses the blocking :class:`oasis.sdk.Client`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from oasis.sdk import Client, OasisApiError


def main(argv: list[str] | None = None) -> int:
    try:
        return watch(argv)
    except KeyboardInterrupt:  # Ctrl-C: the usual way to stop watching, no traceback
        return 130


def watch(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stream_id", nargs="?", help="stream id (default: the node's only stream)")
    ap.add_argument("--data-dir", required=True, help="the node's data directory (api.json, api.token)")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between reports")
    ap.add_argument("--duration", type=float, default=0.0, help="exit 0 after this many healthy seconds")
    ap.add_argument("--min-continuity", type=float, default=0.95)
    ap.add_argument("--max-stall", type=float, default=5.0, help="seconds without a new chunk")
    ap.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the first chunk")
    args = ap.parse_args(argv)

    with Client.from_data_dir(args.data_dir) as api:
        try:
            sid = args.stream_id or _only_stream(api)
            first = api.stream(sid)
        except OasisApiError as exc:
            print(json.dumps({"healthy": False, "error": exc.code, "reason": exc.message}))
            return 1
        start = time.monotonic()
        last, last_at = first, start
        deadline_first = start + args.wait
        while True:
            time.sleep(args.every)  # the report period
            now = time.monotonic()
            try:
                s = api.stream(sid)
            except OasisApiError as exc:
                print(json.dumps({"healthy": False, "reason": f"stream gone: {exc.message}"}))
                return 1
            got, lost = s.chunks - last.chunks, s.skipped - last.skipped
            progressed = s.latest > last.latest
            if progressed:
                last_at = now
            continuity = got / (got + lost) if got + lost else None
            report = {"stream_id": sid, "chunks": got, "skipped": lost, "continuity": continuity,
                      "latency_p50_ms": s.latency_p50_ms, "offload": s.offload,
                      "neighbours": s.neighbours, "latest": s.latest}
            if s.end is not None and s.latest == s.end:  # its end marker: not a fault
                report |= {"healthy": True, "ended": True,
                           "reason": f"the broadcaster ended the stream after chunk {s.end - 1}"}
                print(json.dumps(report), flush=True)
                return 0
            reason = None
            if continuity is not None and continuity < args.min_continuity:
                reason = f"continuity {continuity:.3f} below {args.min_continuity}"
            elif not progressed and now - last_at > args.max_stall and (s.latest >= 0 or now > deadline_first):
                reason = f"no new chunk for {now - last_at:.1f} s"
            report["healthy"] = reason is None
            if reason:
                report["reason"] = reason
            print(json.dumps(report), flush=True)
            if reason:
                return 1
            last = s
            if args.duration and now - start >= args.duration:
                return 0


def _only_stream(api: Client) -> str:
    streams = api.streams()
    if len(streams) != 1:
        raise OasisApiError(0, "which_stream", f"the node carries {len(streams)} streams; name one")
    return str(streams[0].stream_id)


if __name__ == "__main__":
    sys.exit(main())
