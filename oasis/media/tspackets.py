"""MPEG transport stream packet helpers (pure parsing, no I/O).

Theory of operation
-------------------
An MPEG-TS is a sequence of fixed 188-byte packets, each starting with the
sync byte 0x47.  The 4-byte header carries the PID (which elementary stream or
table the packet belongs to) and the ``payload_unit_start_indicator`` (PUSI:
a PES packet or PSI section begins in this packet).  An optional adaptation
field follows the header; it holds the ``random_access_indicator`` (RAI) and
the program clock reference (PCR, a 27 MHz clock used for pacing).

To find where a player can start decoding we need to know which PID carries
video.  That is learned from the tables: the PAT (always PID 0) lists the PMT
PID of every program, and each PMT lists its elementary streams with their
``stream_type``.  :class:`ProgramTracker` follows those tables packet by packet.

A *random-access point* (RAP) is a video packet with PUSI set that starts an
independently decodable picture: either the muxer flagged it with RAI, or the
start of the PES payload contains an H.264 IDR slice / SPS (or an HEVC IRAP /
VPS / SPS) before any non-IDR slice.  Only the first packet of the PES is
inspected, which is enough because encoders put parameter sets first.

Single-packet PSI sections only: PAT and PMT sections larger than one packet
are ignored (they do not occur for the few-stream programs Oasis carries).

Malformed input raises :class:`TsError`; callers that must survive garbage
(the chunker) catch it or pre-check with :func:`find_sync`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TS_PACKET_SIZE = 188
SYNC_BYTE = 0x47
PAT_PID = 0x0000
NULL_PID = 0x1FFF
PCR_HZ = 27_000_000

# ISO/IEC 13818-1 stream_type values for video elementary streams.
STREAM_TYPE_MPEG1_VIDEO = 0x01
STREAM_TYPE_MPEG2_VIDEO = 0x02
STREAM_TYPE_MPEG4_VIDEO = 0x10
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_HEVC = 0x24
VIDEO_STREAM_TYPES = frozenset(
    {
        STREAM_TYPE_MPEG1_VIDEO,
        STREAM_TYPE_MPEG2_VIDEO,
        STREAM_TYPE_MPEG4_VIDEO,
        STREAM_TYPE_H264,
        STREAM_TYPE_HEVC,
    }
)

H264_NAL_NON_IDR_SLICE = 1
H264_NAL_IDR_SLICE = 5
H264_NAL_SPS = 7


class TsError(ValueError):
    """A byte string is not a well-formed 188-byte TS packet (or table)."""


@dataclass(frozen=True)
class AdaptationField:
    discontinuity: bool
    random_access: bool
    pcr: int | None  # in 27 MHz ticks


def check_packet(packet: bytes | bytearray | memoryview) -> None:
    """Raise :class:`TsError` unless ``packet`` is one 188-byte packet with a sync byte."""
    if len(packet) != TS_PACKET_SIZE:
        raise TsError(f"TS packet must be {TS_PACKET_SIZE} bytes, got {len(packet)}")
    if packet[0] != SYNC_BYTE:
        raise TsError(f"bad TS sync byte 0x{packet[0]:02x} (expected 0x47)")


def pid(packet: bytes | memoryview) -> int:
    check_packet(packet)
    return ((packet[1] & 0x1F) << 8) | packet[2]


def payload_unit_start(packet: bytes | memoryview) -> bool:
    check_packet(packet)
    return bool(packet[1] & 0x40)


def _adaptation_field_control(packet: bytes | bytearray | memoryview) -> int:
    return (packet[3] >> 4) & 0x3


def adaptation_field(packet: bytes | memoryview) -> AdaptationField | None:
    """Decode the adaptation field, or ``None`` if the packet has none (or it is empty)."""
    check_packet(packet)
    if not _adaptation_field_control(packet) & 0x2:
        return None
    length = packet[4]
    if length == 0:
        return None
    if length > TS_PACKET_SIZE - 5:
        raise TsError(f"adaptation field length {length} overruns the packet")
    flags = packet[5]
    pcr: int | None = None
    if flags & 0x10:
        if length < 7:
            raise TsError("adaptation field too short for its PCR")
        b = packet[6:12]
        base = (b[0] << 25) | (b[1] << 17) | (b[2] << 9) | (b[3] << 1) | (b[4] >> 7)
        extension = ((b[4] & 0x01) << 8) | b[5]
        pcr = base * 300 + extension
    return AdaptationField(
        discontinuity=bool(flags & 0x80), random_access=bool(flags & 0x40), pcr=pcr
    )


def payload(packet: bytes | memoryview) -> bytes:
    """The bytes after the header and adaptation field (may be empty)."""
    check_packet(packet)
    control = _adaptation_field_control(packet)
    if not control & 0x1:
        return b""
    start = 4
    if control & 0x2:
        start = 5 + packet[4]
        if start > TS_PACKET_SIZE:
            raise TsError("adaptation field overruns the packet")
    return bytes(packet[start:])


def find_sync(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """Index of the first 0x47 at or after ``start`` that is followed by 0x47 188 bytes later.

    Returns -1 if there is no such position with both bytes present in ``data``.
    """
    end = len(data) - TS_PACKET_SIZE
    pos = start
    view = bytes(data) if isinstance(data, memoryview) else data
    while pos < end:
        pos = view.find(b"\x47", pos, end)
        if pos < 0:
            return -1
        if view[pos + TS_PACKET_SIZE] == SYNC_BYTE:
            return pos
        pos += 1
    return -1


def _psi_section(packet: bytes | memoryview, expected_table_id: int) -> bytes | None:
    """The section body (after the 8-byte long header, without CRC) of a single-packet section."""
    if not payload_unit_start(packet):
        return None
    data = payload(packet)
    if not data:
        return None
    pointer = data[0]
    section = data[1 + pointer :]
    if len(section) < 12 or section[0] != expected_table_id:
        return None
    section_length = ((section[1] & 0x0F) << 8) | section[2]
    if 3 + section_length > len(section) or section_length < 9:
        return None  # spans several packets (unsupported) or malformed
    return section[8 : 3 + section_length - 4]


def parse_pat(packet: bytes | memoryview) -> dict[int, int]:
    """Map program_number -> PMT PID from a PAT packet ({} if not a usable PAT)."""
    body = _psi_section(packet, 0x00)
    if body is None:
        return {}
    programs: dict[int, int] = {}
    for i in range(0, len(body) - 3, 4):
        program_number = (body[i] << 8) | body[i + 1]
        program_pid = ((body[i + 2] & 0x1F) << 8) | body[i + 3]
        if program_number != 0:  # 0 is the network information table
            programs[program_number] = program_pid
    return programs


def parse_pmt(packet: bytes | memoryview) -> list[tuple[int, int]]:
    """List of (stream_type, elementary PID) from a PMT packet ([] if not a usable PMT)."""
    body = _psi_section(packet, 0x02)
    if body is None or len(body) < 4:
        return []
    program_info_length = ((body[2] & 0x0F) << 8) | body[3]
    pos = 4 + program_info_length
    streams: list[tuple[int, int]] = []
    while pos + 5 <= len(body):
        stream_type = body[pos]
        es_pid = ((body[pos + 1] & 0x1F) << 8) | body[pos + 2]
        es_info_length = ((body[pos + 3] & 0x0F) << 8) | body[pos + 4]
        streams.append((stream_type, es_pid))
        pos += 5 + es_info_length
    return streams


def _pes_elementary_data(data: bytes) -> bytes:
    """Strip the PES header from the start of a PES packet ('' if it is not one)."""
    if len(data) < 9 or data[0:3] != b"\x00\x00\x01":
        return b""
    return data[9 + data[8] :]


def _nal_types(es: bytes, stream_type: int) -> list[int]:
    types: list[int] = []
    pos = es.find(b"\x00\x00\x01")
    while pos >= 0 and pos + 3 < len(es):
        header = es[pos + 3]
        types.append((header >> 1) & 0x3F if stream_type == STREAM_TYPE_HEVC else header & 0x1F)
        pos = es.find(b"\x00\x00\x01", pos + 3)
    return types


def starts_decodable_picture(packet: bytes | memoryview, stream_type: int) -> bool:
    """True if this packet starts a video PES whose first NAL units make it decodable alone."""
    if not payload_unit_start(packet):
        return False
    es = _pes_elementary_data(payload(packet))
    if stream_type in (STREAM_TYPE_MPEG1_VIDEO, STREAM_TYPE_MPEG2_VIDEO):
        return b"\x00\x00\x01\xb3" in es  # sequence header
    for nal in _nal_types(es, stream_type):
        if stream_type == STREAM_TYPE_HEVC:
            if 16 <= nal <= 23:  # IRAP picture
                return True
            if nal <= 9:  # a non-IRAP VCL NAL came first
                return False
        else:
            if nal == H264_NAL_IDR_SLICE:
                return True
            if nal == H264_NAL_NON_IDR_SLICE:
                return False
    parameter_sets = {32, 33} if stream_type == STREAM_TYPE_HEVC else {H264_NAL_SPS}
    return any(nal in parameter_sets for nal in _nal_types(es, stream_type))


@dataclass
class ProgramTracker:
    """Learns PMT and video PIDs from PAT/PMT packets and classifies packets."""

    pmt_pids: set[int] = field(default_factory=set)
    video_pid: int | None = None
    video_stream_type: int | None = None

    def observe(self, packet: bytes | memoryview) -> None:
        """Update the program map from a packet (PAT or PMT; others are ignored)."""
        packet_pid = pid(packet)
        if packet_pid == PAT_PID:
            programs = parse_pat(packet)
            if programs:
                self.pmt_pids = set(programs.values())
        elif packet_pid in self.pmt_pids:
            for stream_type, es_pid in parse_pmt(packet):
                if stream_type in VIDEO_STREAM_TYPES:
                    self.video_pid, self.video_stream_type = es_pid, stream_type
                    break

    def is_psi(self, packet: bytes | memoryview) -> bool:
        """PAT or PMT packet."""
        packet_pid = pid(packet)
        return packet_pid == PAT_PID or packet_pid in self.pmt_pids

    def is_random_access_point(self, packet: bytes | memoryview) -> bool:
        """Video packet where a decoder can start: RAI flag or IDR/SPS at the PES start."""
        if self.video_pid is None or pid(packet) != self.video_pid:
            return False
        if not payload_unit_start(packet):
            return False
        af = adaptation_field(packet)
        if af is not None and af.random_access:
            return True
        assert self.video_stream_type is not None
        return starts_decodable_picture(packet, self.video_stream_type)


PTS_WRAP = 1 << 33  #: PTS/DTS are 33-bit counts of a 90 kHz clock
PCR_WRAP = PTS_WRAP * 300  #: the PCR: a 33-bit 90 kHz base and a 9-bit 27 MHz extension
#: stream_ids whose PES packets have no optional header (no PTS): program stream map,
#: padding, private stream 2, ECM, EMM, directory, DSMCC, H.222.1 type E
_NO_PES_HEADER = frozenset({0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xFF, 0xF2, 0xF8})


def _payload_start(packet: bytes | bytearray | memoryview) -> int:
    """Where the payload starts (TS_PACKET_SIZE: none)."""
    control = _adaptation_field_control(packet)
    if not control & 0x1:
        return TS_PACKET_SIZE
    return 5 + packet[4] if control & 0x2 else 4


def _pes_ts_offsets(packet: bytes | bytearray | memoryview) -> list[int]:
    """Offsets in ``packet`` of the 5-byte PTS (and DTS) fields of the PES header it starts."""
    if not packet[1] & 0x40:
        return []
    p = _payload_start(packet)
    if p + 19 > TS_PACKET_SIZE or packet[p:p + 3] != b"\x00\x00\x01" or packet[p + 3] in _NO_PES_HEADER:
        return []
    if packet[p + 6] & 0xC0 != 0x80:  # not an MPEG-2 PES header
        return []
    flags = packet[p + 7] >> 6
    return [p + 9] if flags == 2 else [p + 9, p + 14] if flags == 3 else []


def _read_ts33(b: bytes | bytearray | memoryview, at: int) -> int:
    return (((b[at] >> 1) & 0x07) << 30) | (b[at + 1] << 22) | ((b[at + 2] >> 1) << 15) \
        | (b[at + 3] << 7) | (b[at + 4] >> 1)


def _write_ts33(b: bytearray, at: int, value: int) -> None:
    """A 33-bit timestamp in place, keeping the 4-bit prefix and the marker bits."""
    b[at] = (b[at] & 0xF1) | ((value >> 29) & 0x0E)
    b[at + 1] = (value >> 22) & 0xFF
    b[at + 2] = (b[at + 2] & 0x01) | ((value >> 14) & 0xFE)
    b[at + 3] = (value >> 7) & 0xFF
    b[at + 4] = (b[at + 4] & 0x01) | ((value << 1) & 0xFE)


def pes_timestamps(packet: bytes | bytearray | memoryview) -> list[int]:
    """The PTS (and DTS) of the PES packet that ``packet`` starts, 90 kHz ([]: none)."""
    check_packet(packet)
    return [_read_ts33(packet, at) for at in _pes_ts_offsets(packet)]


def shift_timestamps(packet: bytes | bytearray | memoryview, pcr_ticks: int) -> bytes:
    """``packet`` with its PCR, and the PTS and DTS of a PES packet it starts, moved
    ``pcr_ticks`` (27 MHz; a multiple of 300 keeps PTS exact) later, wrapping as the fields
    do. Everything else is left as it is."""
    check_packet(packet)
    out = bytearray(packet)
    if _adaptation_field_control(out) & 0x2 and out[4] >= 7 and out[5] & 0x10:
        b = out[6:12]
        pcr = ((b[0] << 25) | (b[1] << 17) | (b[2] << 9) | (b[3] << 1) | (b[4] >> 7)) * 300 \
            + (((b[4] & 0x01) << 8) | b[5])
        pcr = (pcr + pcr_ticks) % PCR_WRAP
        base, ext = divmod(pcr, 300)
        out[6:12] = bytes([(base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF,
                           (base >> 1) & 0xFF, ((base & 1) << 7) | (out[10] & 0x7E) | (ext >> 8),
                           ext & 0xFF])
    shift = pcr_ticks // 300
    for at in _pes_ts_offsets(out):
        _write_ts33(out, at, (_read_ts33(out, at) + shift) % PTS_WRAP)
    return bytes(out)


def first_pcr(data: bytes | bytearray | memoryview) -> int | None:
    """The first PCR (27 MHz ticks) carried in ``data``, whole TS packets (a chunk's payload),
    or None if none carries one. Packets that do not start with the sync byte, and adaptation
    fields too short for their PCR, are passed over (the chunk was verified, but its media is
    the broadcaster's to get right)."""
    mv = memoryview(data)
    for at in range(0, len(mv) - TS_PACKET_SIZE + 1, TS_PACKET_SIZE):
        if mv[at] != SYNC_BYTE or not (mv[at + 3] >> 4) & 0x2:
            continue
        if mv[at + 4] >= 7 and mv[at + 5] & 0x10:
            b = mv[at + 6:at + 12]
            base = (b[0] << 25) | (b[1] << 17) | (b[2] << 9) | (b[3] << 1) | (b[4] >> 7)
            return base * 300 + (((b[4] & 0x01) << 8) | b[5])
    return None


def pcr_went_back(before: int, after: int, by: int) -> bool:
    """``after`` is more than ``by`` ticks behind ``before`` on the PCR's wrapping clock (a
    difference of more than half the clock's span read as a step back across the wrap)."""
    back = (before - after) % PCR_WRAP
    return by < back < PCR_WRAP // 2
