"""OFTP v1 wire messages and their strict codec.

This module is the single declaration of every OFTP message; the table in
``docs/oftp.md`` mirrors it. Messages are msgspec Structs encoded as MessagePack
arrays whose first element is the numeric message id (``tag``).

Decoding is strict:

* a frame larger than the cap for its channel is refused before decoding;
* every field has a type and, for bytes/strings/lists, a length limit;
* leftover bytes after the message are an error;
* an unknown message id is an error with its own code.

Every failure raises :class:`WireError` carrying a stable :class:`ErrorCode`,
which the session turns into a counted protocol error (never a crash).

Framing: on the control stream each message is preceded by a 4-byte big-endian
length. A chunk travels alone on its own unidirectional QUIC stream, so the
stream's end delimits it and no length prefix is needed.
"""

from __future__ import annotations

import enum
import struct
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

OFTP_VERSION = 2
#: 1: each chunk stream carries one CHUNK, unframed, ended by FIN. 2: each chunk stream
#: carries a *run* of one or more CHUNKs, each framed as a control frame is (4-byte length +
#: body), ended by FIN on a frame boundary (docs/oftp.md §2, "Chunk streams")
SUPPORTED_VERSIONS = (1, 2)
#: the first version whose chunk streams are runs of framed chunks
CHUNK_RUNS_VERSION = 2
ALPN = "oftp/1"

# Caps (bytes). A control frame carries small messages only; a chunk stream
# carries one CHUNK message.
MAX_CONTROL_FRAME = 64 * 1024
MAX_CHUNK_PAYLOAD = 2 * 1024 * 1024
MAX_CHUNK_MESSAGE = MAX_CHUNK_PAYLOAD + 1024
MAX_LEDGER_BLOB = 512

Key32 = Annotated[bytes, Meta(min_length=32, max_length=32)]
Sig64 = Annotated[bytes, Meta(min_length=64, max_length=64)]
Nonce = Annotated[bytes, Meta(min_length=16, max_length=16)]
StreamKey = Annotated[bytes, Meta(min_length=8, max_length=8)]
PeerTag = Annotated[bytes, Meta(min_length=8, max_length=8)]
U8 = Annotated[int, Meta(ge=0, le=0xFF)]
U16 = Annotated[int, Meta(ge=0, le=0xFFFF)]
U32 = Annotated[int, Meta(ge=0, le=0xFFFF_FFFF)]
U64 = Annotated[int, Meta(ge=0, le=0x7FFF_FFFF_FFFF_FFFF)]  # msgspec bounds are int64
ShortText = Annotated[str, Meta(max_length=256)]
StreamIdText = Annotated[str, Meta(min_length=1, max_length=128)]

MAX_SUBSTREAMS = 16
MAX_PATH = 32
LAG_UNKNOWN = 0xFFFF  #: STATUS.lags entry: delay not measured


class ErrorCode(enum.IntEnum):
    """Stable error codes, used in ERROR/GOODBYE messages and QUIC close codes."""

    NO_ERROR = 0x0
    MALFORMED = 0x1  # bytes are not a valid message of the claimed id
    UNKNOWN_MESSAGE = 0x2  # message id not in this version's table
    TOO_LARGE = 0x3  # frame exceeds its cap
    TRAILING_BYTES = 0x4  # leftover bytes after a message
    VERSION_MISMATCH = 0x5  # no common protocol version
    AUTH_FAILED = 0x6  # identity challenge signature does not verify
    WRONG_PEER = 0x7  # peer's key is not the one dialled
    UNEXPECTED = 0x8  # message not allowed in the current state
    BAD_CHUNK = 0x9  # chunk fails hash or signature verification
    UNKNOWN_STREAM = 0xA  # stream not served here
    OVERLOADED = 0xB  # no upload capacity left
    TOO_MANY_ERRORS = 0xC  # peer exceeded its error budget
    SHUTDOWN = 0xD  # node is going away
    TIMEOUT = 0xE  # handshake or liveness timeout


class WireError(Exception):
    """Raised by the codec; ``code`` says which rule the input broke."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code.name}: {detail}")
        self.code = code
        self.detail = detail


class Message(Struct, array_like=True, frozen=True, tag_field="id", forbid_unknown_fields=True):
    """Base of all OFTP messages (never sent itself)."""


class Hello(Message, tag=1, frozen=True):
    """First message of each side on the control stream."""

    versions: Annotated[list[U16], Meta(min_length=1, max_length=8)]
    key: Key32  #: sender's Ed25519 public key (its identity)
    nonce: Nonce  #: fresh random challenge for the other side to sign
    agent: ShortText = ""  #: software name/version, informational


class Auth(Message, tag=2, frozen=True):
    """Answer to the other side's HELLO: proves possession of ``Hello.key``."""

    version: U16  #: the version this side selected (highest common)
    signature: Sig64  #: Ed25519 over the auth transcript (see identity.py)


class Join(Message, tag=3, frozen=True):
    """Sender is in the swarm of ``stream``; asks for STATUS updates. ``start``: the
    sender has not started playing it: a receiver holding a fresh keyframe sends its
    latest one at once, as if REQUESTed (§9.1; saves the round trip of a probe).
    Optional (older senders omit it)."""

    stream: StreamIdText
    start: bool = False
    #: the sender has fewer than half the neighbours it dials for (``PeerPolicy.short``): a
    #: receiver over its limit admits it in ``start_room`` as it admits a start. Optional
    short: bool = False


class Leave(Message, tag=4, frozen=True):
    """Sender leaves the swarm of ``stream``; drop its subscriptions."""

    stream: StreamKey


class Status(Message, tag=5, frozen=True):
    """Availability summary of the sender for one stream."""

    stream: StreamKey
    latest: U64  #: highest sequence number held (0 with have=0: nothing)
    have: U64  #: bit i set = holds ``latest - 1 - i`` (i < 63)
    keyframe: U64  #: latest random-access chunk held
    slots: U16  #: push subscriptions it can still accept
    #: per substream, the path from the broadcaster to the sender
    #: (8-byte peer tags, sender last); empty list = sender has no feed.
    paths: Annotated[list[Annotated[list[PeerTag], Meta(max_length=MAX_PATH)]], Meta(max_length=MAX_SUBSTREAMS)]
    #: per substream, the sender's smoothed delay (ms) from a chunk's time to its
    #: arrival at the sender; ``LAG_UNKNOWN`` = not measured. Receivers pick parents by
    #: this plus their RTT to the sender. Optional (older senders omit it).
    lags: Annotated[list[U16], Meta(max_length=MAX_SUBSTREAMS)] = msgspec.field(default_factory=list)


class Subscribe(Message, tag=6, frozen=True):
    """Ask the receiver to push every chunk of the substreams in ``mask``."""

    stream: StreamKey
    mask: U16  #: bit j = substream j (seq % substreams == j)
    substreams: U8  #: substream count the sender assumes


class SubscribeAck(Message, tag=7, frozen=True):
    """Which of the requested substreams the receiver accepted."""

    stream: StreamKey
    accepted: U16
    rejected: U16


class Unsubscribe(Message, tag=8, frozen=True):
    stream: StreamKey
    mask: U16


class Request(Message, tag=9, frozen=True):
    """Pull one chunk (repair/backfill)."""

    stream: StreamKey
    seq: U64


class Missing(Message, tag=10, frozen=True):
    """Answer to REQUEST when the chunk is not held (or already too late).
    ``refused``: the request was refused (the sender's pull budget for us is spent,
    the seq is outside its window, or over a cap) and cost us a strike there; false:
    a held request whose deadline passed. Optional (older senders omit it)."""

    stream: StreamKey
    seq: U64
    refused: bool = False


class Cancel(Message, tag=24, frozen=True):
    """The sender holds ``seq`` now (it came from another peer or the origin): forget
    its REQUEST for it, held or with the answer still queued (§9.4)."""

    stream: StreamKey
    seq: U64


class ChunkMsg(Message, tag=11, frozen=True):
    """A signed media chunk. Sent on a unidirectional QUIC stream (OFTP 1: alone; 2: framed,
    one of a run), and as the body of the HTTP origin's chunk URL."""

    stream: StreamKey
    seq: U64
    time_us: U64  #: broadcaster wall-clock (µs since epoch) when complete
    flags: U8  #: bit 0 = random-access point (starts with a keyframe); 1 = end marker; 2 = run start
    signature: Sig64
    payload: Annotated[bytes, Meta(max_length=MAX_CHUNK_PAYLOAD)]


class Goodbye(Message, tag=12, frozen=True):
    code: U16
    reason: ShortText = ""


class Error(Message, tag=13, frozen=True):
    """A counted complaint about the receiver's last input; not fatal."""

    code: U16
    reason: ShortText = ""


class WalletBind(Message, tag=14, frozen=True):
    """The sender's secp256k1 wallet, bound to its Ed25519 identity (proof of relay)."""

    binding: Annotated[bytes, Meta(max_length=MAX_LEDGER_BLOB)]  #: oasis.ledger.wallet.WalletBinding


class TicketMsg(Message, tag=15, frozen=True):
    """A viewer's admission ticket signed by the broadcaster's wallet."""

    ticket: Annotated[bytes, Meta(max_length=MAX_LEDGER_BLOB)]  #: oasis.ledger.tickets.Ticket


class ReceiptMsg(Message, tag=16, frozen=True):
    """Cumulative bytes received from the relay, signed by the viewer (EIP-712)."""

    receipt: Annotated[bytes, Meta(max_length=MAX_LEDGER_BLOB)]  #: oasis.ledger.receipts.Receipt


# ---- DHT (oasis/core/dht.py; docs/oftp.md § 17) ------------------------------

MAX_DHT_NODES = 20  #: contacts in one NODES/PROVIDERS answer (the bucket size k)
MAX_DHT_RECORDS = 20  #: provider records in one PROVIDERS answer
MAX_DHT_RECORD = 384  #: bytes of one encoded provider record (dhtrecord.MAX_RECORD fits)
MAX_DHT_DESCRIPTOR = 4096  #: bytes of a stream descriptor's JSON (descriptor.MAX_JSON)
QueryId = Annotated[int, Meta(ge=0, le=0xFFFF_FFFF)]
HostText = Annotated[str, Meta(min_length=2, max_length=45)]
Port = Annotated[int, Meta(ge=1, le=0xFFFF)]
DhtRecordBytes = Annotated[bytes, Meta(max_length=MAX_DHT_RECORD)]
DescriptorBytes = Annotated[bytes, Meta(max_length=MAX_DHT_DESCRIPTOR)]


class DhtNode(Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """A contact in a DHT answer: the node's key (its id is hashed from it) and address."""

    key: Key32
    host: HostText  #: IP literal (checked canonical and unicast by the receiver)
    port: Port


DhtNodes = Annotated[list[DhtNode], Meta(max_length=MAX_DHT_NODES)]


class DhtPing(Message, tag=17, frozen=True):
    """Is the receiver alive? Answered by DHT_PONG with the same ``qid``."""

    qid: QueryId


class DhtPong(Message, tag=18, frozen=True):
    qid: QueryId


class DhtFindNode(Message, tag=19, frozen=True):
    """Ask for contacts nearer ``target`` (a 256-bit id) than the receiver."""

    qid: QueryId
    target: Key32


class DhtNodesMsg(Message, tag=20, frozen=True):
    """Answer to DHT_FIND_NODE: up to k contacts strictly nearer the target than the sender."""

    qid: QueryId
    nodes: DhtNodes


class DhtGetProviders(Message, tag=21, frozen=True):
    """Ask for provider records stored under ``key`` (dhtrecord.stream_key)."""

    qid: QueryId
    key: Key32


class DhtProviders(Message, tag=22, frozen=True):
    """Answer to DHT_GET_PROVIDERS: records held for the key, the stream's signed
    descriptor (JSON, empty = none) and contacts nearer the key than the sender."""

    qid: QueryId
    records: Annotated[list[DhtRecordBytes], Meta(max_length=MAX_DHT_RECORDS)]
    descriptor: DescriptorBytes
    nodes: DhtNodes


class DhtAddProvider(Message, tag=23, frozen=True):
    """Store the sender's own signed provider record; ``descriptor`` only with the
    broadcaster's (stream) record. Not answered."""

    record: DhtRecordBytes
    descriptor: DescriptorBytes = b""


DHT_MESSAGES = (DhtPing, DhtPong, DhtFindNode, DhtNodesMsg, DhtGetProviders, DhtProviders,
                DhtAddProvider)


# ---- reachability (oasis/core/nat.py; docs/oftp.md § 15) ---------------------

IpText = Annotated[str, Meta(min_length=2, max_length=45)]  #: an IP literal (checked by the receiver)
MAX_LISTED = 32  #: keys in one NEIGHBOURS message


class Observed(Message, tag=30, frozen=True):
    """The address the receiver's packets come from, as the sender sees it (NAT traversal)."""

    host: IpText
    port: U16


class Neighbours(Message, tag=31, frozen=True):
    """Keys of the sender's other neighbours: peers it can introduce (hole punching)."""

    keys: Annotated[list[Key32], Meta(max_length=MAX_LISTED)]


class Punch(Message, tag=32, frozen=True):
    """One stage of a hole-punching introduction (oasis.core.nat.Phase)."""

    phase: U8  #: 0 INTRO, 1 OFFER, 2 ACCEPT, 3 GO
    peer: Key32  #: the other end of the introduction
    nonce: U64  #: chosen by the peer that asked (INTRO), echoed by every stage
    host: Annotated[str, Meta(max_length=45)] = ""  #: OFFER/GO: ``peer``'s address as the introducer sees it
    port: U16 = 0
    delay_ms: U16 = 0  #: OFFER: the introducer's RTT to ``peer`` (B times its dial by it)


# ---- messaging (oasis/core/chat.py, oasis/core/dm.py; docs/oftp.md § 19) ------

MAX_CHAT_TEXT = 500  #: characters of a chat message (the core also caps its UTF-8 bytes)
MAX_DM_BOX = 2048  #: bytes of a direct message's ciphertext (inner record + 16-byte tag)


class ChatMsg(Message, tag=50, frozen=True):
    """A chat message of a stream, signed by its sender (chat.chat_signing_bytes)."""

    stream: StreamKey
    sender: Key32
    seq: U64  #: per sender, strictly increasing (starts at the sender's clock in ms)
    time_ms: U64  #: sender's wall clock, ms since the epoch
    text: Annotated[str, Meta(min_length=1, max_length=MAX_CHAT_TEXT)]
    signature: Sig64


class ChatMod(Message, tag=51, frozen=True):
    """A moderation record signed by the stream's broadcaster (chat.mod_signing_bytes)."""

    stream: StreamKey
    target: Key32
    action: U8  #: 0 unmute (lift), 1 mute, 2 ban
    until_ms: U64  #: the action holds until then
    issued_ms: U64  #: the newest record per target wins
    signature: Sig64


class DmEnvelope(Message, tag=52, frozen=True):
    """An end-to-end encrypted direct message (or its ACK); relays see only these fields."""

    to: Key32  #: the recipient's identity key
    eph: Key32  #: the sender's fresh X25519 public key (one per message)
    prekey: Key32  #: the recipient's signed prekey used, or 32 zero bytes: none
    expires_ms: U64  #: relays drop it after this (at most 24 h after it is stored)
    box: Annotated[bytes, Meta(min_length=17, max_length=MAX_DM_BOX)]  #: ChaCha20-Poly1305


class DmPrekey(Message, tag=53, frozen=True):
    """The sender's signed X25519 prekey (dm.prekey_signing_bytes), told to each neighbour."""

    key: Key32
    prekey: Key32
    expires_ms: U64
    signature: Sig64


CHAT_MESSAGES = (ChatMsg, ChatMod)
DM_MESSAGES = (DmEnvelope, DmPrekey)
# ---- files (oasis/core/fileswarm.py; docs/oftp.md § 18) ----------------------

MAX_FILE_BLOCK = 32 * 1024  #: content.BLOCK_SIZE: a block with its proof fits a control frame
MAX_FILE_DEPTH = 13  #: content.MAX_DEPTH
MAX_FILE_BITMAP = 1024  #: bytes of a HAVE bitmap (content.MAX_BLOCKS / 8)
MAX_FILE_MANIFEST = 1024  #: content.MAX_MANIFEST
MAX_BLOCK_REQUEST = 32  #: block indices in one BLOCK_REQUEST
Cid = Annotated[bytes, Meta(min_length=32, max_length=32)]


class FileWant(Message, tag=40, frozen=True):
    """The sender wants (or holds) file ``cid``: answer with FILE_HAVE."""

    cid: Cid


class FileHave(Message, tag=41, frozen=True):
    """The sender's manifest of ``cid`` (empty: it has none) and the blocks it holds
    (bit i of byte i//8, most significant first, set = holds block i)."""

    cid: Cid
    manifest: Annotated[bytes, Meta(max_length=MAX_FILE_MANIFEST)]
    have: Annotated[bytes, Meta(max_length=MAX_FILE_BITMAP)]


class BlockRequest(Message, tag=42, frozen=True):
    """Send these blocks of ``cid`` (each answered by BLOCK or BLOCK_MISSING); ``urgent``:
    a player waits for them (served before every non-urgent request)."""

    cid: Cid
    indices: Annotated[list[U32], Meta(min_length=1, max_length=MAX_BLOCK_REQUEST)]
    urgent: bool = False


class BlockMsg(Message, tag=43, frozen=True):
    """One block of ``cid`` with its Merkle path (content.verify_block)."""

    cid: Cid
    index: U32
    data: Annotated[bytes, Meta(max_length=MAX_FILE_BLOCK)]
    proof: Annotated[list[Key32], Meta(max_length=MAX_FILE_DEPTH)]


class BlockMissing(Message, tag=44, frozen=True):
    """Answer to BLOCK_REQUEST: block ``index`` is not held (or over the sender's budget)."""

    cid: Cid
    index: U32


class BlockCancel(Message, tag=46, frozen=True):
    """Forget these requests of ``cid`` (they came from elsewhere, or went elsewhere):
    not answered; a block already on its way still arrives (and is not a strike)."""

    cid: Cid
    indices: Annotated[list[U32], Meta(min_length=1, max_length=MAX_BLOCK_REQUEST)]


MAX_FILE_PEERS = 16  #: addresses in one FILE_PEERS


class FilePeers(Message, tag=45, frozen=True):
    """Other peers the sender has in the swarm of ``cid`` (peer exchange): key pinned
    when dialled, so a wrong address never becomes a link."""

    cid: Cid
    peers: Annotated[list[DhtNode], Meta(max_length=MAX_FILE_PEERS)]


FILE_MESSAGES = (FileWant, FileHave, BlockRequest, BlockMsg, BlockMissing, FilePeers, BlockCancel)


CONTROL_MESSAGES = (
    Hello, Auth, Join, Leave, Status, Subscribe, SubscribeAck, Unsubscribe,
    Request, Missing, Cancel, Goodbye, Error, WalletBind, TicketMsg, ReceiptMsg, *DHT_MESSAGES,
    Observed, Neighbours, Punch, *FILE_MESSAGES, *CHAT_MESSAGES, *DM_MESSAGES,
)
ALL_MESSAGES = (*CONTROL_MESSAGES, ChunkMsg)
MESSAGE_IDS = {cls.__struct_config__.tag: cls for cls in ALL_MESSAGES}

_encoder = msgspec.msgpack.Encoder()
_control_decoder = msgspec.msgpack.Decoder(
    Hello | Auth | Join | Leave | Status | Subscribe | SubscribeAck | Unsubscribe
    | Request | Missing | Cancel | Goodbye | Error | WalletBind | TicketMsg | ReceiptMsg
    | DhtPing | DhtPong | DhtFindNode | DhtNodesMsg | DhtGetProviders | DhtProviders
    | DhtAddProvider | Observed | Neighbours | Punch
    | FileWant | FileHave | BlockRequest | BlockMsg | BlockMissing | FilePeers | BlockCancel
    | ChatMsg | ChatMod | DmEnvelope | DmPrekey
)
_chunk_decoder = msgspec.msgpack.Decoder(ChunkMsg)
_LEN = struct.Struct(">I")


def encode(msg: Message) -> bytes:
    """Encode one message body (no framing)."""
    return _encoder.encode(msg)


def frame(msg: Message) -> bytes:
    """Encode a control message with its 4-byte length prefix."""
    body = _encoder.encode(msg)
    if len(body) > MAX_CONTROL_FRAME:
        raise WireError(ErrorCode.TOO_LARGE, f"control message of {len(body)} bytes")
    return _LEN.pack(len(body)) + body


def frame_chunk(body: bytes) -> bytes:
    """An encoded CHUNK (:func:`encode`) as one frame of an OFTP 2 chunk run."""
    return _LEN.pack(len(body)) + body


def chunk_frame_length(data: bytes | bytearray, pos: int) -> int:
    """The body length a chunk-run frame header at ``data[pos:pos + 4]`` announces."""
    n: int = _LEN.unpack_from(data, pos)[0]
    return n


def _peek_id(data: bytes | memoryview) -> int | None:
    """The message id a body claims: the first element of its top-level array.

    A bounded look at two MessagePack headers, no recursion and no allocation
    proportional to the input, so a deeply nested or huge body costs nothing here
    (an untyped decode of peer bytes would recurse as deep as the peer nests, and
    msgspec crashes the process when the recursion limit is high). ``None`` when
    the body does not start with an array whose first element is an integer.
    """
    if not data:
        return None
    head = data[0]
    if 0x90 <= head <= 0x9F:
        if head == 0x90:
            return None
        pos = 1
    elif head == 0xDC and len(data) >= 3:
        if data[1] == data[2] == 0:
            return None
        pos = 3
    elif head == 0xDD and len(data) >= 5:
        if data[1:5] == b"\0\0\0\0":
            return None
        pos = 5
    else:
        return None
    if pos >= len(data):
        return None
    first = data[pos]
    if first <= 0x7F:
        return first
    if first >= 0xE0:
        return first - 0x100
    size = _INT_SIZES.get(first)
    if size is None or pos + 1 + size > len(data):
        return None
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "big", signed=first >= 0xD0)


#: MessagePack integer headers -> payload size (0xcc-0xcf unsigned, 0xd0-0xd3 signed).
_INT_SIZES = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}


def _classify(data: bytes | memoryview, exc: Exception) -> WireError:
    text = str(exc)
    if "trailing" in text.lower():
        return WireError(ErrorCode.TRAILING_BYTES, text)
    msg_id = _peek_id(data)
    if msg_id is not None and msg_id not in MESSAGE_IDS:
        return WireError(ErrorCode.UNKNOWN_MESSAGE, f"message id {msg_id}")
    return WireError(ErrorCode.MALFORMED, text)


def decode_control(body: bytes) -> Message:
    """Decode one control message body (length prefix already removed)."""
    if len(body) > MAX_CONTROL_FRAME:
        raise WireError(ErrorCode.TOO_LARGE, f"control message of {len(body)} bytes")
    try:
        return _control_decoder.decode(body)  # type: ignore[no-any-return]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _classify(body, exc) from None
    except ValueError as exc:  # e.g. invalid UTF-8 in a text field
        raise WireError(ErrorCode.MALFORMED, str(exc)) from None


def decode_chunk(body: bytes | memoryview) -> ChunkMsg:
    """Decode the content of one chunk stream (or an origin HTTP body)."""
    if len(body) > MAX_CHUNK_MESSAGE:
        raise WireError(ErrorCode.TOO_LARGE, f"chunk message of {len(body)} bytes")
    try:
        return _chunk_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _classify(body, exc) from None
    except ValueError as exc:
        raise WireError(ErrorCode.MALFORMED, str(exc)) from None


class FrameReader:
    """Reassembles length-prefixed control frames from a byte stream.

    ``feed`` returns the complete bodies; a frame announcing more than ``cap``
    raises at once, before its bytes are buffered. ``push``/``pop`` do the same
    one frame at a time, so a caller can change ``cap`` between frames (the
    session allows only small frames before authentication). Work is linear in
    the bytes fed: consumed bytes are dropped once per ``push``, not per frame.
    """

    def __init__(self, cap: int = MAX_CONTROL_FRAME) -> None:
        self._buf = bytearray()
        self._pos = 0  #: start of the first unconsumed byte in ``_buf``
        self.cap = cap

    def push(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def pop(self) -> bytes | None:
        """The next complete body, or ``None`` if it has not all arrived yet."""
        pos = self._pos
        if len(self._buf) - pos < 4:
            return None
        (n,) = _LEN.unpack_from(self._buf, pos)
        if n > self.cap:
            raise WireError(ErrorCode.TOO_LARGE, f"frame announces {n} bytes (cap {self.cap})")
        if len(self._buf) - pos < 4 + n:
            return None
        self._pos = pos + 4 + n
        return bytes(self._buf[pos + 4 : self._pos])

    def feed(self, data: bytes) -> list[bytes]:
        self.push(data)
        out: list[bytes] = []
        while (body := self.pop()) is not None:
            out.append(body)
        return out

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf) - self._pos
