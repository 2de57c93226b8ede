"""A viewer's player gateway ends a ``/live`` response when the media's clock goes back
(docs/oftp.md §7.1). A broadcaster restarted after a crash (no end marker, which ends the
response after a clean stop) numbers its chunks on, but a file's or a pipe's timestamps
start afresh: a player carried on over the new run saw them go back ~9 s with no
discontinuity flagged (found 2026-12-07 from outside). A real node and gateway; the chunks
are added with the node's own ``Playout.add`` as the swarm adds them, each one TS packet
carrying a PCR; the player reads from a thread, with a timeout."""

from __future__ import annotations

import asyncio
import http.client

from aiohttp import web
from aiohttp.test_utils import TestServer
from procs import until

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.media.tspackets import PCR_WRAP, TS_PACKET_SIZE, first_pcr, pcr_went_back
from oasis.node import http as gateway
from oasis.node.node import Node

S = 27_000_000  # PCR ticks a second


def pcr_packet(pcr: int, mark: int) -> bytes:
    """One TS packet (PID 0x100) whose adaptation field carries ``pcr``; ``mark`` in its stuffing."""
    base, ext = divmod(pcr, 300)
    field = bytes([0x10, (base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF, (base >> 1) & 0xFF,
                   ((base & 1) << 7) | 0x7E | (ext >> 8), ext & 0xFF])
    body = field + mark.to_bytes(4, "big")
    body += b"\xff" * (183 - len(body))
    return bytes([0x47, 0x01, 0x00, 0x20, 183]) + body


def plain_packet(mark: int) -> bytes:
    return bytes([0x47, 0x01, 0x00, 0x10]) + mark.to_bytes(4, "big") + b"\x00" * 180


def test_first_pcr_reads_the_first_pcr_and_passes_over_what_carries_none() -> None:
    data = plain_packet(1) + pcr_packet(5 * S + 123, 2) + pcr_packet(9 * S, 3)
    assert len(data) == 3 * TS_PACKET_SIZE
    assert first_pcr(data) == 5 * S + 123
    assert first_pcr(plain_packet(1)) is None and first_pcr(b"") is None
    assert first_pcr(b"\x00" + pcr_packet(S, 1)[1:]) is None  # no sync byte: not read
    assert first_pcr(pcr_packet(S, 1)[:100]) is None  # a cut packet: not read


def test_the_clock_goes_back_only_by_more_than_the_step_and_across_the_wrap_it_goes_on() -> None:
    assert pcr_went_back(9 * S, 0, S)
    assert not pcr_went_back(9 * S, 9 * S - S // 2, S)  # less than the step
    assert not pcr_went_back(9 * S, 20 * S, S)  # forward (a pause)
    assert not pcr_went_back(PCR_WRAP - S // 10, S // 10, S)  # across the wrap: forward
    assert pcr_went_back(S // 10, PCR_WRAP - 5 * S, S)  # across the wrap: back 5 s


def read_all(url: str, got: bytearray) -> bool:
    """The player: reads the response until it ends; True if it ended as a response ends."""
    conn = http.client.HTTPConnection("127.0.0.1", int(url.split(":")[2].split("/")[0]), timeout=60)
    try:
        conn.request("GET", "/" + url.split("/", 3)[3])
        r = conn.getresponse()
        while chunk := r.read1(65536):
            got.extend(chunk)
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


async def test_a_player_response_ends_where_the_media_clock_goes_back_not_where_it_jumps_on() -> None:
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    ls = node.add_stream(StreamId(Identity.generate().public, "live"), is_source=False)
    pl = ls.playout
    app = web.Application()
    gateway.add_gateway_routes(app, node)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    got = bytearray()
    try:
        # the first run: 3 s of clock, then a pause of the source (its clock jumps on 10 s),
        # a chunk that carries no PCR, and more of the same clock
        for seq in range(30):
            pl.add(seq, pcr_packet(S + seq * S // 10, seq), 0)
        player = asyncio.create_task(asyncio.to_thread(
            read_all, f"http://127.0.0.1:{server.port}/live/{ls.text_id}.ts?from=start", got))
        pl.add(30, pcr_packet(14 * S, 30), 0)
        pl.add(31, plain_packet(31), 0)
        for seq in range(32, 40):
            pl.add(seq, pcr_packet(14 * S + (seq - 30) * S // 10, seq), 0)
        await until(lambda: len(got) >= 40 * TS_PACKET_SIZE, 20, what="the first run played")
        assert not player.done()  # a clock that jumps on plays on
        # the restarted broadcaster's run: the same seqs numbered on, its clock from 0.1 s
        pl.add(40, plain_packet(40), 0)  # (no PCR: played; the next one tells)
        pl.add(41, pcr_packet(S // 10, 41), 0)
        pl.add(42, pcr_packet(2 * S // 10, 42), 0)
        assert await asyncio.wait_for(player, 20), "the response was cut, not ended"
    finally:
        await server.close()
        await node.close()
    marks = [int.from_bytes(got[at + 12:at + 16] if got[at + 3] == 0x20 else got[at + 4:at + 8], "big")
             for at in range(0, len(got), TS_PACKET_SIZE)]
    assert marks == list(range(41)), marks  # everything up to the clock's step back, nothing after
    assert app[gateway.HTTP_COUNTERS].get("live_clock_back_ended") == 1
