"""OFTP codec: round trips, framing, and the strict decoding rules of oasis.core.wire."""

from __future__ import annotations

import random
import struct

import msgspec
import pytest

from oasis.core import wire
from oasis.core.wire import ErrorCode, WireError

SK = b"streamk8"
TAG = b"peertag8"
NODE4 = wire.DhtNode(key=b"k" * 32, host="203.0.113.7", port=4433)
NODE6 = wire.DhtNode(key=b"K" * 32, host="2001:db8::1", port=65535)


def sample(cls: type) -> wire.Message:
    """A valid, non-trivial instance of every message class."""
    samples: dict[type, wire.Message] = {
        wire.Hello: wire.Hello(versions=[1, 2, 0xFFFF], key=b"k" * 32, nonce=b"n" * 16,
                               agent="oasis/test é"),
        wire.Auth: wire.Auth(version=1, signature=b"s" * 64),
        wire.Join: wire.Join(stream="a" * 52 + ".live", start=True),
        wire.Leave: wire.Leave(stream=SK),
        wire.Status: wire.Status(stream=SK, latest=2**63 - 1, have=(1 << 63) - 1, keyframe=40,
                                 slots=0xFFFF,
                                 paths=[[TAG] * wire.MAX_PATH] + [[]] * (wire.MAX_SUBSTREAMS - 1),
                                 lags=[0, wire.LAG_UNKNOWN] + [123] * (wire.MAX_SUBSTREAMS - 2)),
        wire.Subscribe: wire.Subscribe(stream=SK, mask=0b1011, substreams=4),
        wire.SubscribeAck: wire.SubscribeAck(stream=SK, accepted=0b11, rejected=0b1000),
        wire.Unsubscribe: wire.Unsubscribe(stream=SK, mask=1),
        wire.Request: wire.Request(stream=SK, seq=123456789),
        wire.Missing: wire.Missing(stream=SK, seq=0, refused=True),
        wire.Cancel: wire.Cancel(stream=SK, seq=2**63 - 1),
        wire.ChunkMsg: wire.ChunkMsg(stream=SK, seq=7, time_us=1_700_000_000_000_000, flags=1,
                                     signature=b"\x01" * 64, payload=bytes(range(256)) * 4),
        wire.Goodbye: wire.Goodbye(code=int(ErrorCode.SHUTDOWN), reason="bye"),
        wire.Error: wire.Error(code=int(ErrorCode.MALFORMED), reason="x" * 256),
        wire.WalletBind: wire.WalletBind(binding=b"b" * 181),
        wire.TicketMsg: wire.TicketMsg(ticket=b"t" * wire.MAX_LEDGER_BLOB),
        wire.ReceiptMsg: wire.ReceiptMsg(receipt=b"r" * 138),
        wire.DhtPing: wire.DhtPing(qid=0),
        wire.DhtPong: wire.DhtPong(qid=0xFFFF_FFFF),
        wire.DhtFindNode: wire.DhtFindNode(qid=7, target=b"t" * 32),
        wire.DhtNodesMsg: wire.DhtNodesMsg(qid=8, nodes=[NODE4, NODE6] * (wire.MAX_DHT_NODES // 2)),
        wire.DhtGetProviders: wire.DhtGetProviders(qid=9, key=b"s" * 32),
        wire.DhtProviders: wire.DhtProviders(
            qid=10, records=[b"r" * wire.MAX_DHT_RECORD] * wire.MAX_DHT_RECORDS,
            descriptor=b"{}", nodes=[NODE4]),
        wire.DhtAddProvider: wire.DhtAddProvider(record=b"r" * 200, descriptor=b""),
        wire.Observed: wire.Observed(host="2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", port=0xFFFF),
        wire.Neighbours: wire.Neighbours(keys=[bytes([i]) * 32 for i in range(wire.MAX_LISTED)]),
        wire.Punch: wire.Punch(phase=3, peer=b"p" * 32, nonce=2**63 - 1, host="198.18.0.1",
                               port=4433, delay_ms=0xFFFF),
        wire.ChatMsg: wire.ChatMsg(stream=SK, sender=b"s" * 32, seq=2**63 - 1, time_ms=1_700_000_000_000,
                                   text="é" * wire.MAX_CHAT_TEXT, signature=b"g" * 64),
        wire.ChatMod: wire.ChatMod(stream=SK, target=b"t" * 32, action=2, until_ms=2**40,
                                   issued_ms=2**40, signature=b"g" * 64),
        wire.DmEnvelope: wire.DmEnvelope(to=b"t" * 32, eph=b"e" * 32, prekey=bytes(32),
                                         expires_ms=2**41, box=b"b" * wire.MAX_DM_BOX),
        wire.DmPrekey: wire.DmPrekey(key=b"k" * 32, prekey=b"p" * 32, expires_ms=2**41,
                                     signature=b"g" * 64),
        wire.FileWant: wire.FileWant(cid=b"c" * 32),
        wire.FileHave: wire.FileHave(cid=b"c" * 32, manifest=b"m" * wire.MAX_FILE_MANIFEST,
                                     have=b"\xff" * wire.MAX_FILE_BITMAP),
        wire.BlockRequest: wire.BlockRequest(cid=b"c" * 32, indices=list(range(wire.MAX_BLOCK_REQUEST)), urgent=True),
        wire.BlockMsg: wire.BlockMsg(cid=b"c" * 32, index=8191, data=b"d" * wire.MAX_FILE_BLOCK,
                                     proof=[b"p" * 32] * wire.MAX_FILE_DEPTH),
        wire.BlockMissing: wire.BlockMissing(cid=b"c" * 32, index=0xFFFF_FFFF),
        wire.BlockCancel: wire.BlockCancel(cid=b"c" * 32, indices=[0xFFFF_FFFF] * wire.MAX_BLOCK_REQUEST),
        wire.FilePeers: wire.FilePeers(cid=b"c" * 32, peers=[NODE4, NODE6] * (wire.MAX_FILE_PEERS // 2)),
    }
    return samples[cls]


def decode(cls: type, body: bytes) -> wire.Message:
    return wire.decode_chunk(body) if cls is wire.ChunkMsg else wire.decode_control(body)


def code_of(fn, *args) -> ErrorCode:
    with pytest.raises(WireError) as info:
        fn(*args)
    return info.value.code


def test_message_table_is_complete_and_ids_unique() -> None:
    assert len(wire.MESSAGE_IDS) == len(wire.ALL_MESSAGES) == 38
    # 17-23 DHT, 24 CANCEL, 30-32 reachability, 40-46 files, 50-53 messaging
    assert set(wire.MESSAGE_IDS) == (set(range(1, 25)) | {30, 31, 32} | set(range(40, 47))
                                     | {50, 51, 52, 53})


@pytest.mark.parametrize("cls", wire.ALL_MESSAGES, ids=lambda c: c.__name__)
def test_round_trip_every_message(cls: type) -> None:
    msg = sample(cls)
    body = wire.encode(msg)
    # MessagePack array whose first element is the numeric id.
    assert msgspec.msgpack.decode(body)[0] == cls.__struct_config__.tag
    out = decode(cls, body)
    assert type(out) is cls
    assert out == msg


@pytest.mark.parametrize("msg", [
    wire.Hello(versions=[1], key=b"k" * 32, nonce=b"n" * 16),
    wire.Goodbye(code=0),
    wire.Error(code=0),
    wire.Missing(stream=SK, seq=5),
    wire.Join(stream="a" * 52 + ".live"),
], ids=["Hello", "Goodbye", "Error", "Missing", "Join"])
def test_default_fields_round_trip(msg: wire.Message) -> None:
    assert wire.decode_control(wire.encode(msg)) == msg
    # The default may also be omitted on the wire.
    short = msgspec.msgpack.encode(list(msgspec.msgpack.decode(wire.encode(msg)))[:-1])
    assert wire.decode_control(short) == msg


def test_frame_reader_one_byte_at_a_time() -> None:
    msgs = [sample(c) for c in wire.CONTROL_MESSAGES]
    stream = b"".join(wire.frame(m) for m in msgs)
    reader = wire.FrameReader()
    out: list[wire.Message] = []
    for i in range(len(stream)):
        for body in reader.feed(stream[i : i + 1]):
            out.append(wire.decode_control(body))
    assert out == msgs
    assert reader.pending == 0


def test_frame_reader_whole_stream_and_partial_tail() -> None:
    msgs = [sample(c) for c in wire.CONTROL_MESSAGES]
    stream = b"".join(wire.frame(m) for m in msgs)
    reader = wire.FrameReader()
    bodies = reader.feed(stream[:-3])
    assert [wire.decode_control(b) for b in bodies] == msgs[:-1]
    assert reader.pending == len(wire.frame(msgs[-1])) - 3
    assert [wire.decode_control(b) for b in reader.feed(stream[-3:])] == msgs[-1:]


def test_frame_has_big_endian_length_prefix() -> None:
    msg = sample(wire.Request)
    framed = wire.frame(msg)
    (n,) = struct.unpack(">I", framed[:4])
    assert n == len(framed) - 4
    assert framed[4:] == wire.encode(msg)


@pytest.mark.parametrize("cls", wire.ALL_MESSAGES, ids=lambda c: c.__name__)
def test_every_truncation_is_malformed(cls: type) -> None:
    body = wire.encode(sample(cls))
    step = max(1, len(body) // 200)  # the chunk sample is ~1 KB; sample its prefixes
    for n in range(0, len(body), step):
        assert code_of(decode, cls, body[:n]) == ErrorCode.MALFORMED, n


@pytest.mark.parametrize("cls", wire.ALL_MESSAGES, ids=lambda c: c.__name__)
def test_trailing_garbage(cls: type) -> None:
    body = wire.encode(sample(cls))
    for junk in (b"\x00", b"\xc0", wire.encode(sample(wire.Missing))):
        assert code_of(decode, cls, body + junk) == ErrorCode.TRAILING_BYTES


def test_oversize_frame_refused_from_length_prefix_alone() -> None:
    reader = wire.FrameReader()
    # Only the 4-byte prefix: the reader must refuse before any body byte arrives.
    prefix = struct.pack(">I", wire.MAX_CONTROL_FRAME + 1)
    assert reader.feed(prefix[:3]) == []
    assert code_of(reader.feed, prefix[3:]) == ErrorCode.TOO_LARGE
    assert reader.pending == 4  # nothing beyond the prefix was buffered


def test_frame_at_cap_is_accepted() -> None:
    reader = wire.FrameReader(cap=10)
    assert reader.feed(struct.pack(">I", 10) + b"z" * 10) == [b"z" * 10]
    assert code_of(wire.FrameReader(cap=10).feed, struct.pack(">I", 11)) == ErrorCode.TOO_LARGE


def test_oversize_control_body_is_too_large() -> None:
    body = b"\x00" * (wire.MAX_CONTROL_FRAME + 1)
    assert code_of(wire.decode_control, body) == ErrorCode.TOO_LARGE


def test_oversize_chunk_payload_is_refused() -> None:
    big = wire.ChunkMsg(stream=SK, seq=1, time_us=1, flags=0, signature=b"s" * 64,
                        payload=b"p" * (wire.MAX_CHUNK_PAYLOAD + 1))
    body = wire.encode(big)
    assert len(body) <= wire.MAX_CHUNK_MESSAGE  # fits the stream cap; the field cap catches it
    assert code_of(wire.decode_chunk, body) == ErrorCode.MALFORMED
    at_cap = wire.ChunkMsg(stream=SK, seq=1, time_us=1, flags=0, signature=b"s" * 64,
                           payload=b"p" * wire.MAX_CHUNK_PAYLOAD)
    assert wire.decode_chunk(wire.encode(at_cap)) == at_cap


def test_oversize_chunk_message_is_too_large() -> None:
    assert code_of(wire.decode_chunk, b"\x00" * (wire.MAX_CHUNK_MESSAGE + 1)) == ErrorCode.TOO_LARGE


@pytest.mark.parametrize("mid", [0, 25, 99, 0xFFFF, 2**40])
def test_unknown_message_id(mid: int) -> None:
    body = msgspec.msgpack.encode([mid, SK, 1])
    assert code_of(wire.decode_control, body) == ErrorCode.UNKNOWN_MESSAGE
    assert code_of(wire.decode_chunk, body) == ErrorCode.UNKNOWN_MESSAGE


def test_known_id_on_the_wrong_channel_is_refused() -> None:
    chunk = wire.encode(sample(wire.ChunkMsg))
    assert code_of(wire.decode_control, chunk) == ErrorCode.MALFORMED
    assert code_of(wire.decode_chunk, wire.encode(sample(wire.Request))) == ErrorCode.MALFORMED


BAD_FIELDS = [
    ("7-byte stream key", [9, b"x" * 7, 1]),
    ("9-byte stream key", [9, b"x" * 9, 1]),
    ("stream key as str", [9, "x" * 8, 1]),
    ("negative seq", [9, SK, -1]),
    ("seq as float", [9, SK, 1.0]),
    ("seq as bool", [9, SK, True]),
    ("missing field", [9, SK]),
    ("63-byte signature", [2, 1, b"s" * 63]),
    ("65-byte signature", [2, 1, b"s" * 65]),
    ("u16 overflow", [2, 0x10000, b"s" * 64]),
    ("31-byte key", [1, [1], b"k" * 31, b"n" * 16, ""]),
    ("15-byte nonce", [1, [1], b"k" * 32, b"n" * 15, ""]),
    ("no versions", [1, [], b"k" * 32, b"n" * 16, ""]),
    ("9 versions", [1, [1] * 9, b"k" * 32, b"n" * 16, ""]),
    ("agent too long", [1, [1], b"k" * 32, b"n" * 16, "a" * 257]),
    ("empty stream id", [3, ""]),
    ("u8 overflow", [6, SK, 1, 256]),
    ("17 substream paths", [5, SK, 1, 0, 0, 1, [[]] * 17]),
    ("33-hop path", [5, SK, 1, 0, 0, 1, [[TAG] * 33]]),
    ("7-byte peer tag", [5, SK, 1, 0, 0, 1, [[b"t" * 7]]]),
    ("u64 over int64", [5, SK, 2**63, 0, 0, 1, []]),
    ("dht qid over u32", [17, 2**32]),
    ("dht negative qid", [18, -1]),
    ("dht 31-byte target", [19, 1, b"t" * 31]),
    ("dht 21 nodes", [20, 1, [[b"k" * 32, "203.0.113.7", 1]] * 21]),
    ("dht node port 0", [20, 1, [[b"k" * 32, "203.0.113.7", 0]]]),
    ("dht node port over u16", [20, 1, [[b"k" * 32, "203.0.113.7", 65536]]]),
    ("dht node host too long", [20, 1, [[b"k" * 32, "1" * 46, 1]]]),
    ("dht node extra field", [20, 1, [[b"k" * 32, "203.0.113.7", 1, 0]]]),
    ("dht node as map", [20, 1, [{"key": b"k" * 32, "host": "203.0.113.7", "port": 1}]]),
    ("dht 21 records", [22, 1, [b"r"] * 21, b"", []]),
    ("dht record too long", [22, 1, [b"r" * (wire.MAX_DHT_RECORD + 1)], b"", []]),
    ("dht descriptor too long", [23, b"r", b"d" * (wire.MAX_DHT_DESCRIPTOR + 1)]),
    ("dht record as str", [23, "r", b""]),
    ("observed host too long", [30, "1" * 46, 1]),
    ("observed port over u16", [30, "198.18.0.1", 0x10000]),
    ("33 neighbours", [31, [b"k" * 32] * 33]),
    ("31-byte neighbour key", [31, [b"k" * 31]]),
    ("punch phase over u8", [32, 256, b"p" * 32, 1]),
    ("punch negative nonce", [32, 0, b"p" * 32, -1]),
    ("punch host too long", [32, 1, b"p" * 32, 1, "1" * 46, 1, 0]),
    ("not an array", {"id": 9, "stream": SK, "seq": 1}),
    ("bare int", 9),
]


@pytest.mark.parametrize("raw", [r for _, r in BAD_FIELDS], ids=[n for n, _ in BAD_FIELDS])
def test_wrong_field_types_and_lengths_are_malformed(raw: object) -> None:
    assert code_of(wire.decode_control, msgspec.msgpack.encode(raw)) == ErrorCode.MALFORMED


@pytest.mark.parametrize("raw", [
    [11, b"x" * 7, 1, 1, 0, b"s" * 64, b""],
    [11, SK, -1, 1, 0, b"s" * 64, b""],
    [11, SK, 1, 1, 256, b"s" * 64, b""],
    [11, SK, 1, 1, 0, b"s" * 63, b""],
    [11, SK, 1, 1, 0, b"s" * 64, "text payload"],
])
def test_bad_chunk_fields_are_malformed(raw: list) -> None:
    assert code_of(wire.decode_chunk, msgspec.msgpack.encode(raw)) == ErrorCode.MALFORMED


def test_frame_refuses_oversize_control_message() -> None:
    # No valid control message reaches the cap, so build one that skips validation.
    huge = wire.Error(code=0, reason="x" * (wire.MAX_CONTROL_FRAME + 1))
    assert code_of(wire.frame, huge) == ErrorCode.TOO_LARGE


def _check_decoders(data: bytes, escaped: dict[str, bytes]) -> None:
    """Feed ``data`` to every decoder; record any exception that is not a WireError."""
    for fn in (wire.decode_control, wire.decode_chunk):
        try:
            out = fn(data)
        except WireError as exc:
            assert isinstance(exc.code, ErrorCode)
        except Exception as exc:  # noqa: BLE001 - this is what the fuzz looks for
            escaped.setdefault(type(exc).__name__, data)
        else:
            assert isinstance(out, wire.Message)
    reader = wire.FrameReader(cap=4096)
    try:
        reader.feed(data)
    except WireError as exc:
        assert exc.code == ErrorCode.TOO_LARGE


def test_fuzz_random_bytes_only_raise_wire_error() -> None:
    rng = random.Random(20240601)
    escaped: dict[str, bytes] = {}
    for _ in range(2000):
        _check_decoders(rng.randbytes(rng.randrange(0, 64)), escaped)
    assert escaped == {}


def _mutate(rng: random.Random, data: bytearray) -> bytes:
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[pos % len(data)] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = rng.randbytes(rng.randint(1, 3))
        elif op == 2:
            del data[pos : pos + rng.randint(1, 3)]
        else:
            data[pos:] = b""
    return bytes(data)


def test_fuzz_mutated_valid_encodings_only_raise_wire_error() -> None:
    rng = random.Random(7)
    bodies = [wire.encode(sample(c)) for c in wire.ALL_MESSAGES]
    bodies[-1] = wire.encode(wire.ChunkMsg(stream=SK, seq=1, time_us=2, flags=0,
                                           signature=b"s" * 64, payload=b"abc"))
    escaped: dict[str, bytes] = {}
    for _ in range(3000):
        _check_decoders(_mutate(rng, bytearray(rng.choice(bodies))), escaped)
    assert escaped == {}


@pytest.mark.parametrize("body", [
    b"\x92\x03\xa2\xff\xfe",  # JOIN with a 2-byte non-UTF-8 stream id
    b"\x93\x0c\x00\xa1\xff",  # GOODBYE(code=0, reason=<0xff>)
])
def test_invalid_utf8_in_text_field_is_malformed(body: bytes) -> None:
    assert code_of(wire.decode_control, body) == ErrorCode.MALFORMED


def test_extra_trailing_array_elements_are_rejected() -> None:
    # Strict decoding: a message with more fields than its id declares is malformed.
    body = msgspec.msgpack.encode([9, SK, 1, "future", [1, 2]])
    with pytest.raises(wire.WireError) as err:
        wire.decode_control(body)
    assert err.value.code == wire.ErrorCode.MALFORMED


# ---- nesting bombs: classification must never decode peer bytes untyped -----

def nesting_bombs(depth: int) -> list[bytes]:
    """Deeply nested MessagePack arrays, bare and hidden in fields of real messages."""
    bomb = b"\x91" * depth + b"\x01"
    return [
        bomb,
        b"\xdc\x00\x01" + bomb,  # array16 header
        b"\x92\x63" + bomb,  # unknown id 99, then the bomb
        b"\x92\x0b" + bomb,  # CHUNK id, bomb as its stream
        b"\x97\x0b" + bomb,
        b"\x92\x03" + bomb,  # JOIN
        b"\x93\x0c\x01\xa0" + bomb,  # GOODBYE + a trailing bomb
        b"\x97\x05\xa8streamk8\x01\x01\x01\x01\x91" + bomb,  # STATUS.paths[0] = bomb
    ]


@pytest.mark.parametrize("depth", [40_000, 60_000])
def test_nesting_bomb_is_a_coded_error(depth: int) -> None:
    for body in nesting_bombs(depth):
        for decode in (wire.decode_control, wire.decode_chunk):
            with pytest.raises(WireError) as err:
                decode(body)
            assert err.value.code in (ErrorCode.MALFORMED, ErrorCode.UNKNOWN_MESSAGE,
                                      ErrorCode.TRAILING_BYTES), body[:8]


def test_nesting_bomb_does_not_crash_with_a_high_recursion_limit() -> None:
    """msgspec's untyped decoder segfaulted on a 40 KB nested frame once the recursion
    limit was raised (the web3 stack does that). Mount it in a fresh interpreter."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import random, sys
        sys.setrecursionlimit(100_000)
        from oasis.core import session as ss, wire
        from oasis.core.identity import Identity
        sys.path.insert(0, "tests/core")
        from test_core_wire import nesting_bombs
        a_id = Identity.from_private_bytes(bytes(32))
        b_id = Identity.from_private_bytes(bytes([1]) * 32)
        n = 0
        for depth in (40_000, 60_000):
            for body in nesting_bombs(depth):
                for decode in (wire.decode_control, wire.decode_chunk):
                    try:
                        decode(body)
                    except wire.WireError:
                        n += 1
                for authed in (False, True):
                    a = ss.Session(a_id, True, rng=random.Random(1))
                    b = ss.Session(b_id, False, rng=random.Random(2))
                    a.start(0.0); b.start(0.0)
                    if authed:
                        for _ in range(3):
                            for x, y in ((a, b), (b, a)):
                                for act in x.actions():
                                    y.receive_control(act.data, 0.0)
                        assert a.authenticated and b.authenticated
                    b.receive_control(len(body).to_bytes(4, "big") + body, 1.0)
                    b.receive_chunk_stream(3, body, True, 1.0)
                    assert b.counters.violations >= 1
        print("ok", n)
    """)
    root = __file__.rsplit("/tests/", 1)[0]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.split() == ["ok", str(2 * 2 * len(nesting_bombs(1)))]


@pytest.mark.parametrize("body", [
    b"\xdc\x00\x02\x63\x01",  # array16, id 99
    b"\xdd\x00\x00\x00\x02\xcd\x01\x00\x01",  # array32, uint16 id 256
    b"\x92\xd0\xff\x01",  # int8 id -1
    b"\x92\xff\x01",  # negative fixint id -1
    b"\x92\xcf" + (2**63).to_bytes(8, "big") + b"\x01",  # uint64 id
    b"\x92\x63" + b"\xc1",  # unknown id then bytes that are not MessagePack at all
])
def test_unknown_id_is_found_by_peeking_headers(body: bytes) -> None:
    assert code_of(wire.decode_control, body) == ErrorCode.UNKNOWN_MESSAGE
    assert code_of(wire.decode_chunk, body) == ErrorCode.UNKNOWN_MESSAGE


@pytest.mark.parametrize("body", [b"", b"\x90", b"\xdc\x00\x00", b"\xdc\x00", b"\x91", b"\x91\xcd\x01",
                                  b"\x91\xc3", b"\x91\xa1x", b"\x81\x01\x02", b"\x63"])
def test_no_id_to_peek_is_malformed(body: bytes) -> None:
    assert code_of(wire.decode_control, body) == ErrorCode.MALFORMED
    assert code_of(wire.decode_chunk, body) == ErrorCode.MALFORMED
