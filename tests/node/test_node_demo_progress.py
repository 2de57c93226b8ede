"""The demo's progress line (oasis.demo._Progress.tick): its offload share counts only once
a chunk is verified (the bytes of chunks still arriving came first and showed a share of
peers' bytes beside 'chunks 0')."""
import io

from rich.console import Console

from oasis.demo import _Progress


def _stats(chunks: int, p2p: int, http: int) -> dict:
    return {"streams": [{"chunks": chunks, "bytes": {"p2p": p2p, "http": http}, "latency_p50_ms": 300.0}]}


def _line(stats: list) -> str:
    p = _Progress(quiet_json=False)
    out = io.StringIO()
    p.console = Console(file=out, width=200)
    p.live = False
    p.tick(0.0, 30, stats)
    return out.getvalue()


def test_no_share_before_a_chunk_is_verified():
    line = _line([_stats(0, 5000, 0), None])
    assert "chunks received 0 (all viewers)" in line and "offload -" in line, line


def test_the_share_of_peers_bytes_once_chunks_play():
    line = _line([_stats(10, 750, 250), _stats(5, 0, 0)])
    assert "viewers 2 chunks received 15 (all viewers)" in line and "offload 75.0%" in line, line
    assert "latency p50 300 ms" in line, line


def test_no_latency_before_any_is_measured():
    line = _line([{"streams": [{"chunks": 0, "bytes": {}, "latency_p50_ms": None}]}])
    assert "latency p50 - " in line and "0 ms" not in line, line


def test_a_tick_is_one_line_whatever_the_width():
    """Off a terminal rich wrapped at 80 columns: a log got each tick as two lines. On a
    narrow terminal the overwritten line is cut to its width (its wrapped tail stayed)."""
    stats = [_stats(123456, 750, 250) for _ in range(20)]
    p = _Progress(quiet_json=False)
    out = io.StringIO()
    p.console = Console(file=out, width=80)
    p.live = False
    p.tick(12.5, 60, stats)
    text = out.getvalue()
    assert text.count("\n") == 1 and len(text) > 81 and "offload 75.0%" in text, text
    p.console = Console(file=(out := io.StringIO()), width=40)
    p.live = True
    p.tick(13.0, 60, stats)
    text = out.getvalue()
    assert "\n" not in text and text.endswith("\r") and len(text) == 40, repr(text)
