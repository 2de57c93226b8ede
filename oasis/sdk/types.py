"""The local API's request and response bodies (``/v1``), shared by the node and the SDK.

One declaration of every shape: the node decodes request bodies into these Structs
(strictly: unknown fields, wrong types and out-of-range values are refused), encodes
its answers from them, and generates its OpenAPI document from them
(``msgspec.json.schema_components``); the SDK decodes answers into the same types.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

MAX_TEXT = 2000  #: characters of a chat message or DM
MAX_PATH = 4096  #: characters of a local file path
MAX_URL = 2048
MAX_LINK = 16384  #: characters of an ``oasis://`` link (it carries a signed descriptor)

StreamName = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="stream name")]
StreamIdText = Annotated[str, Meta(max_length=100, description="stream id: <peer id>.<name>")]
PeerIdText = Annotated[str, Meta(min_length=1, max_length=64, description="base32 peer id")]
PeerAddrText = Annotated[str, Meta(min_length=1, max_length=128)]  #: PEER_ID@HOST:PORT
Cid = Annotated[str, Meta(min_length=1, max_length=128, description="content id of a file")]
Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]


class _Req(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


# ---- requests -------------------------------------------------------------------------

class PublishRequest(_Req):
    """Start broadcasting a stream from this node."""

    name: StreamName
    #: ``test`` (a generated test pattern), a local media file path (looped) or ``udp://HOST:PORT``
    source: Annotated[str, Meta(min_length=1, max_length=MAX_PATH)] = "test"
    bitrate_kbps: Annotated[int, Meta(ge=10, le=1_000_000)] | None = None
    chunk_ms: Annotated[int, Meta(ge=10, le=10_000)] | None = None
    #: end-to-end encrypt the stream: its media sealed with a content key that only the
    #: returned link carries (``k=``); relays, the origin and CDNs see ciphertext
    encrypt: bool = False


class WatchRequest(_Req):
    """Join a stream: an ``oasis://`` link, or a stream id and a tracker URL."""

    link: Annotated[str, Meta(max_length=MAX_LINK)] | None = None
    stream_id: StreamIdText | None = None
    tracker: Annotated[str, Meta(max_length=MAX_URL)] | None = None
    #: an encrypted stream with no content key (no ``k=`` in the link, or a stream id):
    #: join and relay its ciphertext without playing it (otherwise 400 ``no_key``)
    relay_only: bool = False


class ChatSendRequest(_Req):
    text: Text


class ModerationRequest(_Req):
    peer_id: PeerIdText
    action: Literal["mute", "ban", "unmute"]
    seconds: Annotated[float, Meta(gt=0, le=7 * 86400)] = 600.0  # (the chat core's max_mod_seconds)


class DmSendRequest(_Req):
    text: Text


class FilePublishRequest(_Req):
    """Publish a local regular file (the API is local: the path is on this machine)."""

    path: Annotated[str, Meta(min_length=1, max_length=MAX_PATH)]


class FileFetchRequest(_Req):
    #: peers to fetch from, ``PEER_ID@HOST:PORT`` (the key is pinned when dialling)
    peers: Annotated[list[PeerAddrText], Meta(max_length=16)] | None = None


# ---- responses ------------------------------------------------------------------------

class ErrorDetail(msgspec.Struct):
    code: str  #: stable, e.g. ``unauthorized``, ``not_found``, ``not_available``
    message: str  #: what went wrong and what to do


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class NodeInfo(msgspec.Struct):
    peer_id: str
    version: str
    oftp: str  #: HOST:PORT of the node's QUIC endpoint
    http: str | None  #: the node's gateway / origin base URL
    api: str  #: this API's base URL
    uptime_s: float
    streams: int
    neighbours: int
    services: list[str]  #: which optional services this node runs (messaging, files, rewards)
    counters: dict[str, int]  #: the API's refusals (unauthorized, bad_host, ...)


class StreamInfo(msgspec.Struct):
    stream_id: str
    role: Literal["broadcaster", "viewer"]
    latest: int
    start: int | None
    neighbours: int
    depth: list[int | None]
    bytes: dict[str, int]  #: bytes delivered, by source (p2p, origin, ...)
    latency_p50_ms: float | None
    chunks: int
    skipped: int  #: chunks given up on: not received by their deadline (a loss)
    player_url: str  #: absolute URL of the MPEG-TS a player opens
    continuity: float | None  #: chunks / (chunks + skipped + unopened); None before the first
    offload: float | None  #: share of bytes from peers (not the origin); None before the first
    managed: bool  #: started through this API (so it may be stopped through it)
    link: str | None = None  #: ``oasis://`` link of a stream this node broadcasts; None if watched
    #: a viewer's start: seconds from its join to each step (announce, gateway, candidates,
    #: dial, link, peer, status, chunk, origin_latest, start) and, once playing,
    #: ``start_age`` / ``start_gap``; {} at a broadcaster
    start_trace: dict[str, float] = msgspec.field(default_factory=dict)
    start_source: str = ""  #: where a viewer's start keyframe came from (p2p, broadcaster, origin)
    #: a viewer's clock minus its broadcaster's, s (its stream runs on the broadcaster's)
    clock_offset: float = 0.0
    #: the seq of the broadcaster's end marker once the stream ended (no chunk at or after
    #: it will come); None while it runs
    end: int | None = None
    #: seqs the stream's clock expected that no neighbour held or claimed 2 s past their
    #: deadline, nothing newer arriving (a stalled or dead broadcaster did not make them):
    #: given up, but not a loss, so not in ``skipped`` or ``continuity``
    unmade: int = 0
    web_url: str = ""  #: absolute URL of the page that plays it in a browser (``/watch/<id>``)
    encrypted: bool = False  #: end-to-end encrypted: its media sealed (docs/oftp.md §7.2)
    #: false for an encrypted stream relayed here without its content key: its player URLs
    #: answer 403 ``no_key``
    playable: bool = True
    #: an encrypted stream's chunks whose media did not open with the content key given (a
    #: wrong ``k=``): never played
    unopened: int = 0


class PublishResult(msgspec.Struct):
    stream_id: str
    link: str  #: for an encrypted stream it carries the content key: whoever holds it can play
    player_url: str
    tracker: str
    web_url: str = ""  #: the browser's page for it
    encrypted: bool = False
    #: the short link (the stream id and this node as bootstrap peer, as ``oasis broadcast``
    #: prints it): a viewer takes the descriptor from the DHT; None from an older node
    short_link: str | None = None


class WatchResult(msgspec.Struct):
    stream_id: str
    player_url: str
    web_url: str = ""  #: the browser's page for it
    encrypted: bool = False
    playable: bool = True  #: false: an encrypted stream relayed without its content key


class ChatMessage(msgspec.Struct):
    id: str
    stream: str
    sender: str
    seq: int
    text: str
    time: float


ModerationResult = dict[str, Any]


class DmResult(msgspec.Struct):
    id: str
    to: str
    state: Literal["delivered", "stored", "pending"]


class DmMessage(msgspec.Struct):
    id: str
    sender: str
    text: str
    time: float


class FileInfo(msgspec.Struct):
    cid: str
    name: str
    size: int
    block_size: int
    blocks: int
    mime: str
    #: the ``oasis://file/`` link to share, as ``oasis publish`` prints: this node as a peer
    #: (``b=``) and its gateway as the origin (``o=``); None from a node without either
    link: str | None = None


class FileStatus(msgspec.Struct):
    cid: str
    name: str
    size: int
    blocks: int
    have_blocks: int
    state: Literal["fetching", "complete", "seeding"]
    from_peers: int
    from_origin: int
    url: str  #: gateway URL of the file (``/files/<cid>``)
    bad_blocks: int = 0  #: blocks that failed verification (from peers or the origin)
    peers_dropped: int = 0  #: peers dropped as hostile (bad blocks, lies)


class Deleted(msgspec.Struct):
    deleted: str


class Event(msgspec.Struct):
    """One event of the feed (``GET /v1/events``, a WebSocket of JSON text messages)."""

    seq: int  #: node-wide order; 0 for ``lagged`` (events were dropped: ``data.dropped``)
    time: float
    kind: str  #: ``stream.started``, ``stream.stopped``, ``stream.stalled``, ``chat.message`` ...
    data: dict[str, Any]


Wallet = dict[str, Any]
Rewards = dict[str, Any]
