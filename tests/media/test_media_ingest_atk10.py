"""A broadcaster's sources fed hostile or unusual MPEG-TS (found 2026-12-06 by an outside
audit): PCRs that are noise, a PTS that wraps in a looped file, one bad PCR, a UDP flood, a
file no viewer could start, a process started with its standard descriptors closed."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from oasis.media.ingest import (
    UdpSource,
    _file_blocks,
    _paced,
    _Pacer,
    _PcrClock,
    _Retimer,
    open_source,
)
from oasis.media.tspackets import (
    PCR_HZ,
    PCR_WRAP,
    TS_PACKET_SIZE,
    ProgramTracker,
    adaptation_field,
    pes_timestamps,
    pid,
    shift_timestamps,
)
from tests.media.conftest import encode_test_stream
from tests.node.procs import until

PTS_WRAP = 1 << 33


def _packets(data: bytes) -> list[bytes]:
    return [data[i:i + TS_PACKET_SIZE] for i in range(0, len(data), TS_PACKET_SIZE)]


def _set_pcr(packet: bytes, pcr: int) -> bytes:
    """``packet`` with its PCR (27 MHz) replaced (the 6 bytes after the adaptation flags)."""
    base, ext = divmod(pcr, 300)
    base %= PTS_WRAP
    raw = bytes([base >> 25 & 0xFF, base >> 17 & 0xFF, base >> 9 & 0xFF, base >> 1 & 0xFF,
                 (base & 1) << 7 | 0x7E | ext >> 8, ext & 0xFF])
    return packet[:6] + raw + packet[12:]


@pytest.fixture(scope="module")
def clip() -> bytes:
    """2 s of the test pattern (1-s GOP) at 800 kbit/s."""
    return encode_test_stream(2.0, bitrate_kbps=800, width=320, height=180).data


class Recording(_Pacer):
    """Notes when each piece would go out; never sleeps. The byte rate is the clip's own."""

    rate = 1.0

    def byte_rate(self) -> float:
        return self.rate

    async def wait_until(self, due: float) -> float:
        self.last_due = due
        return 0.0


async def _span(data: bytes, tmp_path: Path, rate: float) -> float:
    path = tmp_path / "x.ts"
    path.write_bytes(data)
    pacer = Recording(asyncio.get_running_loop(), path)
    pacer.rate = rate
    t0 = pacer.last_due
    with path.open("rb") as f:
        out = [p async for p in _paced(_file_blocks(f), pacer, _PcrClock())]
    assert b"".join(out) == data
    return pacer.last_due - t0


async def test_pcrs_that_are_noise_are_paced_by_the_byte_rate(clip: bytes, tmp_path: Path) -> None:
    """Every PCR a random value: each one is a jump. They were anchored one PCR interval
    (0) after the last, so nothing waited: a 1 Mbit/s file went out at ~74 Mbit/s."""
    rng = random.Random(5)
    noisy = b"".join(_set_pcr(p, rng.randrange(PTS_WRAP) * 300)
                     if (af := adaptation_field(p)) is not None and af.pcr is not None else p
                     for p in _packets(clip))
    rate = len(clip) / 2.0  # the clip's own byte rate: 2 s
    assert await _span(clip, tmp_path, rate) > 1.5  # (its PCRs: ~2 s)
    assert await _span(noisy, tmp_path, rate) > 1.5  # was ~0


def _pass(retime: _Retimer, data: bytes) -> list[bytes]:
    return [retime.packet(p) for p in _packets(data)]


def _pts(packets: list[bytes]) -> list[int]:
    return [ts[0] for p in packets if (ts := pes_timestamps(p))]


def _seam(clip: bytes) -> int:
    """How far the first PTS of a looped clip's second pass is after the first pass's
    highest, 90 kHz (mod 2^33): small and positive when its clock runs on."""
    retime = _Retimer()
    first = _pass(retime, clip)
    retime.next_pass()
    second = _pass(retime, clip)
    return (min(_pts(second)[:3]) - max(_pts(first)[-8:])) % PTS_WRAP


def test_a_looped_clip_whose_pts_wraps_runs_on(clip: bytes) -> None:
    """Its PTSs pass 2^33 within the clip: the span was taken as ~0.5 s instead of 2, and
    each pass went back ~1.5 s (a 12-s clip: 7 s)."""
    assert _seam(clip) < 0.2 * 90_000
    first = min(_pts(_packets(clip)))
    to_wrap = (PTS_WRAP - first - 45_000) * 300  # half a second before the wrap
    wrapped = b"".join(shift_timestamps(p, to_wrap) for p in _packets(clip))
    assert max(_pts(_packets(wrapped))) > PTS_WRAP - 90_000 and min(_pts(_packets(wrapped))) < 90_000
    assert _seam(wrapped) < 0.2 * 90_000


@pytest.mark.parametrize("before_wrap", [1, 2, 3, 100, 299, None])
def test_a_wrap_among_b_frames_is_read_as_one(before_wrap: int | None) -> None:
    """In decode order a B-frame stamped before the wrap comes after a P-frame stamped past
    it: that one was read as a wrap too (~26.5 h ahead), the span went over a day and was
    dropped, and every pass went back by the whole file (a re-audit of session 50). 300
    frames at 30 fps, decode order P B B (stamped +2, +0, +1), the wrap at several places."""
    order = [n for g in range(0, 300, 3) for n in ([0, 2, 1] if g == 0 else [g + 2, g, g + 1])]
    start = 1000 if before_wrap is None else PTS_WRAP - before_wrap * 3000 - 1500
    retime = _Retimer()
    for n in order:
        retime._see((256, "pts"), (start + n * 3000) % PTS_WRAP * 300)
    retime.next_pass()
    assert retime.span == 300 * 3000 * 300  # 10 s: the 300 frames and one more


def test_one_bad_pcr_does_not_move_every_pass_on(clip: bytes) -> None:
    """One PCR 5 h ahead (its PTSs untouched): every pass was moved on by 5 h."""
    packets = _packets(clip)
    with_pcr = [i for i, p in enumerate(packets) if (af := adaptation_field(p)) is not None and af.pcr is not None]
    i = with_pcr[len(with_pcr) // 2]
    af = adaptation_field(packets[i])
    assert af is not None and af.pcr is not None
    packets[i] = _set_pcr(packets[i], (af.pcr + 5 * 3600 * PCR_HZ) % PCR_WRAP)
    assert _seam(b"".join(packets)) < 0.2 * 90_000


async def _blast(source: UdpSource, n: int, size: int) -> None:
    """Send ``n`` datagrams of ``size`` bytes to ``source`` at once; wait (bounded) until it
    has counted them all."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(n):
            sender.sendto(b"\x47" * size, source.local_address)
        await until(lambda: source.datagrams >= n, 20.0, what=f"{n} datagrams counted")
    finally:
        sender.close()


async def test_a_udp_source_queues_bounded_bytes() -> None:
    async with UdpSource("127.0.0.1", 0, max_queued_bytes=200_000) as source:
        await _blast(source, 10, 60_000)
        assert source.drops == 7 and source.queued_bytes == 180_000
        assert len(await asyncio.wait_for(source.read(), 1.0)) == 180_000
        assert source.queued_bytes == 0


def test_a_file_in_which_no_keyframe_can_be_found_is_refused(clip: bytes, tmp_path: Path) -> None:
    """Its PAT names a PMT that is not there (every PMT packet dropped): no video stream is
    known, so no keyframe. It was broadcast for ever, and no viewer could start."""
    tracker = ProgramTracker()
    for p in _packets(clip):
        tracker.observe(p)
    assert tracker.pmt_pids
    bad = tmp_path / "nopmt.ts"
    bad.write_bytes(b"".join(p for p in _packets(clip) if pid(p) not in tracker.pmt_pids))
    with pytest.raises(ValueError, match="no video keyframe in it"):
        open_source(str(bad), 1500)
    good = tmp_path / "good.ts"
    good.write_bytes(clip)
    source = open_source(str(good), 1500)  # the control: accepted
    asyncio.run(source.aclose())  # type: ignore[attr-defined]


def test_m2ts_is_named(clip: bytes, tmp_path: Path) -> None:
    m2ts = tmp_path / "a.m2ts"
    m2ts.write_bytes(b"".join(b"\0\0\0\0" + p for p in _packets(clip)))
    with pytest.raises(ValueError, match="M2TS"):
        open_source(str(m2ts), 1500)


def test_closed_standard_descriptors_do_not_abort_the_process(tmp_path: Path) -> None:
    """`oasis broadcast - <&-`: the event loop's descriptor took fd 0 and libuv aborted at
    its close (exit 134). A closed stdin is now an empty one: exit 1, saying so."""
    run = subprocess.run([sys.executable, "-m", "oasis", "broadcast", "-", "--data-dir", str(tmp_path / "b")],
                         preexec_fn=lambda: os.close(0), capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr[-1500:]
    assert "stdin ended before a first chunk" in run.stderr


async def test_a_udp_source_takes_no_more_than_its_rate_cap() -> None:
    """A flood of 64-KiB datagrams at 1.9 Gbit/s held ~1.3 GB in chunks (the chunk window
    and the broadcaster's own player buffer): a UDP source now takes at most 8x its stream's
    bitrate (at least 50 Mbit/s), a one-second bucket; the rest is dropped and counted."""
    from oasis.media.ingest import udp_rate_cap

    assert udp_rate_cap(1500) == 50e6 / 8 and udp_rate_cap(20_000) == 8 * 20e6 / 8
    async with UdpSource("127.0.0.1", 0, max_rate=100_000) as source:
        await _blast(source, 10, 30_000)
        # a second's bucket (100 kB) takes 3 at once, and what refilled while they came
        assert 3 <= 10 - source.rate_drops <= 5 and source.drops == source.rate_drops


@pytest.mark.parametrize("b_shift_s", [0.0, 100.0, -30.0])
def test_a_spliced_pipe_runs_on_one_clock(clip: bytes, b_shift_s: float) -> None:
    """`cat a.ts b.ts | oasis broadcast -`: b's timestamps start where a's did (or 100 s
    later, or 30 s before): at the join every PID's PCR and PTS went back (or leapt ahead)
    by that much, with no discontinuity flagged. Spliced, each runs on from a's: one step
    after its last, nothing back, and b's own timing kept."""
    from oasis.media.ingest import _Splicer

    b = clip if not b_shift_s else b"".join(
        shift_timestamps(p, round(b_shift_s * 90_000) * 300 % PCR_WRAP) for p in _packets(clip))
    splicer = _Splicer()
    out = [splicer.packet(p) for p in _packets(clip + b)]
    assert splicer.splices >= 1
    half = len(out) // 2
    assert out[:half] == _packets(clip)  # a: untouched
    for key_pid in {pid(p) for p in out if pes_timestamps(p)}:
        pts = [(i, pes_timestamps(p)[0]) for i, p in enumerate(out) if pid(p) == key_pid and pes_timestamps(p)]
        first_a = [v for i, v in pts if i < half]
        first_b = [v for i, v in pts if i >= half]
        gap = (min(first_b) - max(first_a)) % PTS_WRAP
        assert 0 < gap < 0.2 * 90_000, (key_pid, gap)  # on from a's last, a frame or so after
        assert max(first_b) - min(first_b) == max(first_a) - min(first_a)  # b's own timing kept
    pcrs = [af.pcr for p in out if (af := adaptation_field(p)) is not None and af.pcr is not None]
    assert all(0 < (y - x) % PCR_WRAP < PCR_HZ for x, y in zip(pcrs, pcrs[1:], strict=False))


def test_an_unspliced_pipe_is_left_as_it_is(clip: bytes) -> None:
    from oasis.media.ingest import _Splicer

    splicer = _Splicer()
    assert [splicer.packet(p) for p in _packets(clip)] == _packets(clip) and splicer.splices == 0
