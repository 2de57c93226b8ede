"""Unit tests of the TS packet helpers on hand-built and real packets."""

from __future__ import annotations

import pytest

from oasis.media.tspackets import (
    PAT_PID,
    STREAM_TYPE_H264,
    TS_PACKET_SIZE,
    ProgramTracker,
    TsError,
    adaptation_field,
    find_sync,
    parse_pat,
    parse_pmt,
    payload,
    payload_unit_start,
    pid,
    starts_decodable_picture,
)


def make_packet(
    packet_pid: int,
    body: bytes = b"",
    *,
    pusi: bool = False,
    random_access: bool = False,
    pcr: int | None = None,
) -> bytes:
    header = bytes([0x47, (0x40 if pusi else 0) | (packet_pid >> 8), packet_pid & 0xFF])
    af = b""
    if random_access or pcr is not None:
        flags = (0x40 if random_access else 0) | (0x10 if pcr is not None else 0)
        fields = bytes([flags])
        if pcr is not None:
            base, ext = divmod(pcr, 300)
            fields += bytes(
                [
                    (base >> 25) & 0xFF,
                    (base >> 17) & 0xFF,
                    (base >> 9) & 0xFF,
                    (base >> 1) & 0xFF,
                    ((base & 1) << 7) | 0x7E | (ext >> 8),
                    ext & 0xFF,
                ]
            )
        stuffing = TS_PACKET_SIZE - 4 - 1 - len(fields) - len(body)
        af = bytes([len(fields) + stuffing]) + fields + b"\xff" * stuffing
        control = 0x30
    else:
        body = body + b"\xff" * (TS_PACKET_SIZE - 4 - len(body))
        control = 0x10
    packet = header + bytes([control]) + af + body
    assert len(packet) == TS_PACKET_SIZE
    return packet


def pes(es: bytes) -> bytes:
    return b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05" + b"\x21\x00\x01\x00\x01" + es


def test_header_fields() -> None:
    packet = make_packet(0x100, b"abc", pusi=True)
    assert pid(packet) == 0x100
    assert payload_unit_start(packet)
    assert adaptation_field(packet) is None
    assert payload(packet).startswith(b"abc")


def test_adaptation_field_pcr_and_random_access() -> None:
    pcr = 123_456_789_012
    af = adaptation_field(make_packet(0x100, b"x", random_access=True, pcr=pcr))
    assert af is not None
    assert af.random_access and not af.discontinuity
    assert af.pcr == pcr


@pytest.mark.parametrize("bad", [b"\x00" * TS_PACKET_SIZE, b"\x47" * 10])
def test_bad_packets_raise_ts_error(bad: bytes) -> None:
    with pytest.raises(TsError):
        pid(bad)


def test_find_sync_requires_two_sync_bytes() -> None:
    packet = make_packet(0x100)
    data = b"\x47garbage" + packet + packet
    assert find_sync(data) == 8
    assert find_sync(packet) == -1  # cannot confirm with a single packet


def test_h264_idr_and_sps_detection() -> None:
    aud = b"\x00\x00\x00\x01\x09\xf0"
    idr = make_packet(0x100, pes(aud + b"\x00\x00\x01\x65\x88"), pusi=True)
    sps = make_packet(0x100, pes(aud + b"\x00\x00\x01\x67\x64\x00"), pusi=True)
    p_slice = make_packet(0x100, pes(aud + b"\x00\x00\x01\x41\x9a"), pusi=True)
    repeated_sps_p = make_packet(0x100, pes(b"\x00\x00\x01\x67\x64\x00\x00\x00\x01\x41"), pusi=True)
    continuation = make_packet(0x100, b"\x00\x00\x01\x65")
    assert starts_decodable_picture(idr, STREAM_TYPE_H264)
    assert starts_decodable_picture(sps, STREAM_TYPE_H264)
    assert not starts_decodable_picture(p_slice, STREAM_TYPE_H264)
    assert not starts_decodable_picture(repeated_sps_p, STREAM_TYPE_H264)
    assert not starts_decodable_picture(continuation, STREAM_TYPE_H264)


def test_program_tracker_on_real_stream(encoded_stream) -> None:
    data = encoded_stream.data
    packets = [data[i : i + TS_PACKET_SIZE] for i in range(0, len(data), TS_PACKET_SIZE)]
    assert parse_pat(packets[0]) or pid(packets[0]) != PAT_PID
    tracker = ProgramTracker()
    random_access_points = 0
    for packet in packets:
        tracker.observe(packet)
        random_access_points += tracker.is_random_access_point(packet)
    assert tracker.video_stream_type == STREAM_TYPE_H264
    assert tracker.video_pid is not None and tracker.pmt_pids
    pmt_packet = next(p for p in packets if pid(p) in tracker.pmt_pids)
    assert (STREAM_TYPE_H264, tracker.video_pid) in parse_pmt(pmt_packet)
    assert random_access_points == 3  # one IDR per second over 3 s
