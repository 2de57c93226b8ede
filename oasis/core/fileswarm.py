"""One file's swarm, sans-I/O: who holds which block, what to ask whom, what to serve.

Theory of operation
-------------------
A :class:`FileSwarm` exists per content id on a node that fetches or seeds that file.
The executor feeds it peers (``add_peer``/``remove_peer``), wire messages
(``on_message``), origin answers (``on_origin_manifest``/``on_origin_block``) and
the player's read position (``want_from``), always with ``now``; it drains
:meth:`actions` and re-arms one timer at :meth:`get_timer`.

Fetching::

    us → peer   FILE_WANT(cid)
    peer → us   FILE_HAVE(cid, manifest, bitmap)        manifest checked against the cid
    us → peer   BLOCK_REQUEST(cid, [i, j, ...], urgent) at most ``max_inflight`` per peer
    peer → us   BLOCK(cid, i, data, proof)              verified alone (content.verify_block)
    us → peer   BLOCK_CANCEL(cid, [i])                  timed out, or got it elsewhere

The picker fills each peer's free request slots: first the blocks of the *urgent
window* (``window`` blocks from the player's read position) in order, so a player
reading through the gateway can start and seek while the file downloads; then the
rarest blocks among the peers (ties: nearest the read position). Requests for the urgent
window say so (``urgent``): a holder serves them before any other. A request not answered
by ``request_timeout`` is asked again elsewhere (the peer's request limit halves, and it
gets a BLOCK_CANCEL); a block that arrives while another peer still has it requested is
cancelled there. The urgent window is the first ``window`` blocks *missing* from the read
position on, so a getter with no player (read position 0) has the download's front, and at
the end its tail, in it; an urgent block one peer has not answered for ``reask_after`` is
asked of a second (a peer that claims everything and answers nothing held a tail for the
12-s ``bulk_timeout``).

Origin fallback (same idea as live chunks): an urgent block that no peer holds, or that
has been requested for ``origin_after`` seconds without arriving, is fetched from the
HTTP origin (``FetchOrigin``), at most ``origin_parallel`` at a time; with no peers at all
the whole file comes that way in order. The manifest too comes from the origin when no
peer gave it within ``origin_after``. A failed origin fetch backs the origin off (0.25 s,
doubling per failed round to 8 s; a success resets it); bytes from the origin that fail
verification strike it like a peer, and at ``max_strikes`` it is not asked again.

Hostile peers: a block that fails verification, a manifest that does not hash to the
cid, a BLOCK nobody asked for, a HAVE that lied (BLOCK_MISSING for an advertised
block) each add strikes; at ``max_strikes`` the peer is dropped (``DropFilePeer``).
Serving is bounded: each peer may queue ``serve_queue`` requests; the node-wide upload
budget (``upload_bytes_per_s``, token bucket) paces the answers (``ServeBlock``). At most
``serve_in_flight`` blocks per peer sit in its transport's send buffer; the executor calls
:meth:`FileSwarm.on_drained` when that buffer empties. So a newcomer's first requests are
answered at once on its own link, however much bulk the other links carry, and a request
that waited past ``request_timeout`` (the requester has asked elsewhere) is dropped here
instead of being sent as a duplicate.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from . import content, wire
from .content import ContentError, Manifest

INF = float("inf")
ORIGIN_TIMEOUT = 10.0  #: an origin fetch not reported by then is forgotten (asked again)
#: after a failed origin fetch the origin is asked again only this long after, doubling per
#: failed round up to ORIGIN_BACKOFF_MAX (a dead or wrong origin was asked 280-900 times a
#: second for as long as the getter ran); a success resets it
ORIGIN_BACKOFF = 0.25
ORIGIN_BACKOFF_MAX = 8.0
#: s: a peer's FILE_HAVE sooner than this after its last one read is not read (half the
#: ``have_every`` default; an answer to FILE_WANT and the periodic updates stay far apart)
HAVE_MIN_GAP = 0.25
#: s between re-rankings of the rarest-first order (counts over every peer's bitmap): a plan
#: per message re-ranked all of them (peers x missing blocks) each time
ORDER_EVERY = 0.1


@dataclass
class FileSwarmConfig:
    max_inflight: int = 8  #: requests outstanding per peer, at most (AIMD below it: see _Peer.limit)
    max_total_inflight: int = 32  #: requests outstanding in all (1 MiB): more only invites duplicates
    request_timeout: float = 4.0  #: an urgent request not answered by then goes elsewhere (no strike)
    #: the same for the other requests (prefetch: nobody waits on them): a loaded seeder's queue
    #: is then worked off instead of asked again elsewhere and answered twice
    bulk_timeout: float = 12.0
    window: int = 16  #: blocks from the read position fetched in order first
    #: blocks from the read position asked of the first peer with FILE_WANT, before its
    #: manifest arrives (it comes first on the same ordered stream, so they verify): a
    #: player's first frame one round trip sooner. 0: wait for the manifest
    first_request: int = 8
    origin_after: float = 0.25  #: an urgent block late this long (or held by none) → origin
    #: an urgent block asked of one peer this long ago is asked of a second one too (the
    #: first answer wins, the other is cancelled): a peer that claims blocks and then stalls,
    #: or answers each just inside ``request_timeout``, held a download's tail for
    #: ``bulk_timeout`` (12 s) or for ever (found 2026-12-06 by an outside audit)
    reask_after: float = 1.0
    origin_parallel: int = 8
    max_peers: int = 64
    max_strikes: int = 3
    have_every: float = 0.5  #: s between FILE_HAVE updates to peers while fetching
    serve_queue: int = 32  #: requests one peer may have queued with us
    #: blocks per peer handed to the transport and not yet on the wire (the executor reports
    #: the drain: :meth:`FileSwarm.on_drained`). The rest wait here, where a stale request can
    #: still be dropped, instead of in the transport's buffer behind megabytes of others
    serve_in_flight: int = 2
    #: serving budget (token bucket): of this file, or of every file of the node when the
    #: executor gives the swarms one shared :class:`UploadBudget`
    upload_bytes_per_s: float = 64e6
    upload_burst: float = 4e6


@dataclass
class UploadBudget:
    """A token bucket for serving blocks, shared by every file swarm of a node (so a peer
    that asks for many files gets no more upload than one file's budget)."""

    rate: float  #: bytes per second
    burst: float
    tokens: float = 0.0
    t: float = 0.0

    @classmethod
    def of(cls, config: FileSwarmConfig, now: float) -> UploadBudget:
        return cls(config.upload_bytes_per_s, config.upload_burst, config.upload_burst, now)

    def refill(self, now: float) -> None:
        if now > self.t:
            self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
            self.t = now


@dataclass(frozen=True, slots=True)
class SendFile:
    peer: bytes
    message: wire.Message


@dataclass(frozen=True, slots=True)
class ServeBlock:
    """Read block ``index`` from the store and send it (with ``proof``) to ``peer``."""

    peer: bytes
    index: int
    proof: list[bytes]


@dataclass(frozen=True, slots=True)
class StoreBlock:
    """A verified block: write it. ``peer`` None = from the origin."""

    index: int
    data: bytes
    peer: bytes | None
    proof: tuple[bytes, ...] = ()  #: its Merkle path (stored beside it: a resume re-verifies)


@dataclass(frozen=True, slots=True)
class ManifestKnown:
    manifest: Manifest


@dataclass(frozen=True, slots=True)
class FetchOrigin:
    index: int  #: -1 = the manifest


@dataclass(frozen=True, slots=True)
class DropFilePeer:
    peer: bytes
    reason: str


Action = SendFile | ServeBlock | StoreBlock | ManifestKnown | FetchOrigin | DropFilePeer


@dataclass
class FileCounters:
    blocks_from_peers: int = 0
    blocks_from_origin: int = 0
    bytes_from_peers: int = 0
    bytes_from_origin: int = 0
    blocks_served: int = 0
    bytes_served: int = 0
    bad_blocks: int = 0  #: failed verification (peer or origin)
    bad_manifests: int = 0
    unsolicited_blocks: int = 0
    have_lies: int = 0  #: BLOCK_MISSING for a block the peer's HAVE claimed
    request_timeouts: int = 0
    peers_dropped: int = 0
    peers_refused: int = 0  #: beyond max_peers
    serve_refused: int = 0  #: requests beyond a peer's queue or for blocks not held
    serve_expired: int = 0  #: queued requests dropped: older than request_timeout when their turn came
    serve_cancelled: int = 0  #: queued requests the requester cancelled (BLOCK_CANCEL)
    cancels_sent: int = 0  #: requests we cancelled: timed out, or the block came from elsewhere
    duplicate_blocks: int = 0
    reasked: int = 0  #: urgent blocks asked of a second peer (``reask_after``)
    origin_requests: int = 0
    origin_failures: int = 0
    origin_bad: int = 0  #: blocks or manifests from the origin that failed verification
    origin_dropped: int = 0  #: the origin given up after max_strikes of those (a lying origin)
    blocks_lost: int = 0  #: held blocks found damaged in the store: no longer held (fetched again)
    #: FILE_HAVEs not read: the same bitmap again, or sooner than ``HAVE_MIN_GAP`` after the
    #: peer's last (an honest peer sends one per ``have_every``; a flood of them was a full
    #: bitmap decode and a re-plan each, 15 ms with 23 peers, and stopped downloads)
    haves_ignored: int = 0


@dataclass
class _Peer:
    have: set[int] = field(default_factory=set)
    inflight: dict[int, tuple[float, float]] = field(default_factory=dict)  #: index -> (deadline, asked at)
    asked: set[int] = field(default_factory=set)  #: ever requested from it (late answers ok)
    strikes: int = 0
    #: requests it may have outstanding: +1 per block it answers, halved per timeout (AIMD), so a
    #: loaded seeder gets fewer requests and the rest of the swarm more
    limit: float = 4.0
    queue: deque[tuple[int, float]] = field(default_factory=deque)  #: its requests we owe, (index, asked at)
    urgent: deque[tuple[int, float]] = field(default_factory=deque)  #: the same, marked urgent: served first
    sending: int = 0  #: blocks served to it that its transport has not yet sent (serve_in_flight)
    #: asked since then and no block back yet (None: it answered, or was never asked); one
    #: waited on ``reask_after`` is *stuck*: see FileSwarm._pick
    waiting: float | None = None
    have_raw: bytes = b""  #: its last FILE_HAVE bitmap as read
    got: int = 0  #: verified blocks it sent us (0: unproven, see FileSwarm._pick)
    have_at: float = -INF  #: when that was read
    have_pending: bytes | None = None  #: a newer bitmap that came too soon, read at have_at + gap


class FileSwarm:
    def __init__(self, cid: bytes, config: FileSwarmConfig | None = None, *,
                 manifest: Manifest | None = None, tree: content.MerkleTree | None = None,
                 origin: bool = False, rng: random.Random | None = None, now: float = 0.0,
                 budget: UploadBudget | None = None) -> None:
        self.cid = cid
        self.config = config or FileSwarmConfig()
        self.budget = budget or UploadBudget.of(self.config, now)
        self.rng = rng or random.Random(0)
        self.origin = origin
        self.started = now
        self.counters = FileCounters()
        self.peers: dict[bytes, _Peer] = {}
        self.manifest: Manifest | None = None
        self.have: set[int] = set()
        self.proofs: dict[int, list[bytes]] = {}  #: proofs of blocks held (until the tree is known)
        self.tree = tree
        self.cursor = 0  #: the player's read position (block index)
        #: no block from the cursor up to this one is missing (where the urgent window starts)
        self._low = 0
        self._peer_block_at = now  #: the last block a peer sent us (or the start)
        self.origin_inflight: dict[int, float] = {}  #: index (-1: manifest) -> asked at
        self.origin_retry_at = 0.0  #: no origin fetch before this (back-off after failures)
        self.origin_backoff = ORIGIN_BACKOFF
        self.origin_strikes = 0
        self._actions: list[Action] = []
        self._have_dirty = False
        self._have_at = now
        self._serve_at = INF
        self._checked = now  #: handle_timer ran up to here
        #: the rarest-first order of the blocks peers hold that we miss, as ranked at
        #: ``_order_at`` from cursor ``_order_start`` (:meth:`_ranked`)
        self._order: list[int] = []
        self._order_at = -INF
        self._order_start = -1
        self._order_stale = True
        if manifest is not None:
            self._set_manifest(manifest)
        if tree is not None and self.manifest is not None:
            self.have = set(range(self.manifest.blocks))

    # ---- state ---------------------------------------------------------------
    @property
    def last_peer_block(self) -> float:
        """When a peer last sent us a block (the swarm's start, if none yet)."""
        return self._peer_block_at

    @property
    def complete(self) -> bool:
        return self.manifest is not None and len(self.have) == self.manifest.blocks

    def _set_manifest(self, m: Manifest) -> None:
        self.manifest = m
        self._actions.append(ManifestKnown(m))

    def bitmap(self) -> bytes:
        if self.manifest is None:
            return b""
        out = bytearray((self.manifest.blocks + 7) // 8)
        for i in self.have:
            out[i >> 3] |= 0x80 >> (i & 7)
        return bytes(out)

    def have_message(self) -> wire.FileHave:
        raw = self.manifest.encode() if self.manifest is not None else b""
        return wire.FileHave(cid=self.cid, manifest=raw, have=self.bitmap())

    def set_tree(self, tree: content.MerkleTree) -> None:
        """The whole file is stored and re-hashed: serve any block from the full tree."""
        self.tree = tree
        self.proofs.clear()

    # ---- peers -----------------------------------------------------------------
    def resume(self, manifest: Manifest, blocks: dict[int, list[bytes]], now: float) -> None:
        """A download resumed from the store: ``manifest`` (already checked against the cid)
        and the blocks the executor re-verified on disk with their proofs; only the rest is
        fetched. Emits ManifestKnown (the executor keeps the data file as it is)."""
        if self.manifest is None:
            self._set_manifest(manifest)
        for i, proof in blocks.items():
            if 0 <= i < manifest.blocks:
                self.have.add(i)
                if self.tree is None:
                    self.proofs[i] = proof
        self._have_dirty = bool(blocks)
        self._pick(now)

    def add_peer(self, peer: bytes, now: float) -> bool:
        if peer in self.peers:
            return True
        if len(self.peers) >= self.config.max_peers:
            self.counters.peers_refused += 1
            return False
        p = self.peers[peer] = _Peer()
        self._send(peer, wire.FileWant(cid=self.cid))
        if self.manifest is not None:
            self._send(peer, self.have_message())
        elif self.config.first_request > 0 and not any(q.inflight for q in self.peers.values()):
            first = list(range(self.cursor, self.cursor + min(self.config.first_request, wire.MAX_BLOCK_REQUEST)))
            for i in first:
                p.inflight[i] = (now + self.config.request_timeout, now)
                p.asked.add(i)
            p.waiting = now
            self._send(peer, wire.BlockRequest(cid=self.cid, indices=first, urgent=True))
        return True

    def remove_peer(self, peer: bytes, now: float) -> None:
        if self.peers.pop(peer, None) is not None:
            self._order_stale = True
            self._pick(now)

    def want_from(self, index: int, now: float) -> None:
        """A player reads from block ``index``: fetch from there first."""
        self.cursor = self._low = max(0, index)
        self._pick(now)

    # ---- input -------------------------------------------------------------------
    def on_message(self, peer: bytes, msg: wire.Message, now: float) -> None:
        p = self.peers.get(peer)
        if p is None:
            if not self.add_peer(peer, now):
                return
            p = self.peers[peer]
        if isinstance(msg, wire.FileWant):
            self._send(peer, self.have_message())
            return  # (nothing to plan: what we fetch did not change)
        elif isinstance(msg, wire.FileHave):
            if not self._on_have(peer, p, msg, now):
                return
            self._order_stale = True  # (what peers hold changed: ranked again, ORDER_EVERY)
        elif isinstance(msg, wire.BlockRequest):
            self._on_request(peer, p, msg, now)
            return
        elif isinstance(msg, wire.BlockCancel):
            self._on_cancel(p, msg)
            return
        elif isinstance(msg, wire.BlockMsg):
            self._on_block(peer, p, msg, now)
        elif isinstance(msg, wire.BlockMissing):
            if p.inflight.pop(msg.index, None) is not None and msg.index in p.have:
                self.counters.have_lies += 1
                p.have.discard(msg.index)
                self._strike(peer, p, 1, "BLOCK_MISSING for a block its HAVE claimed")
        self._pick(now)

    def _on_have(self, peer: bytes, p: _Peer, msg: wire.FileHave, now: float) -> bool:
        """Read a peer's FILE_HAVE; False if it was not read (nothing changed, or too soon:
        then the newest is kept and read ``HAVE_MIN_GAP`` after the last, by the timer)."""
        if self.manifest is not None and (msg.have == p.have_raw or now - p.have_at < HAVE_MIN_GAP):
            self.counters.haves_ignored += 1
            if msg.have != p.have_raw:
                p.have_pending = msg.have  # (its last word is not lost: a peer that completed)
            return False
        p.have_pending = None
        if self.manifest is None and msg.manifest:
            try:
                self._set_manifest(content.decode_manifest(msg.manifest, self.cid))
            except ContentError:
                self.counters.bad_manifests += 1
                self._strike(peer, p, self.config.max_strikes, "manifest does not match the cid")
                return False
            for q in self.peers:
                if q != peer:
                    self._send(q, self.have_message())
        m = self.manifest
        if m is None:
            return False
        p.have_raw, p.have_at = msg.have, now
        n = m.blocks
        have = set()
        for byte_i, b in enumerate(msg.have[: (n + 7) // 8]):
            if b:
                for bit in range(8):
                    if b & (0x80 >> bit):
                        i = byte_i * 8 + bit
                        if i < n:
                            have.add(i)
        p.have = have
        return True

    def _on_request(self, peer: bytes, p: _Peer, msg: wire.BlockRequest, now: float) -> None:
        q = p.urgent if msg.urgent else p.queue
        for i in msg.indices:
            if i not in self.have or len(p.queue) + len(p.urgent) >= self.config.serve_queue:
                self.counters.serve_refused += 1
                self._send(peer, wire.BlockMissing(cid=self.cid, index=i))
                continue
            q.append((i, now))
        self._serve(now)

    def _on_cancel(self, p: _Peer, msg: wire.BlockCancel) -> None:
        gone = set(msg.indices)
        for q in (p.urgent, p.queue):
            if q and gone:
                keep = [(i, at) for i, at in q if i not in gone]
                self.counters.serve_cancelled += len(q) - len(keep)
                q.clear()
                q.extend(keep)

    def _on_block(self, peer: bytes, p: _Peer, msg: wire.BlockMsg, now: float) -> None:
        p.inflight.pop(msg.index, None)
        if msg.index not in p.asked or self.manifest is None:
            self.counters.unsolicited_blocks += 1
            self._strike(peer, p, 1, "BLOCK not requested")
            return
        if msg.index in self.have:
            self.counters.duplicate_blocks += 1
            return
        if not content.verify_block(self.manifest, msg.index, msg.data, msg.proof):
            self.counters.bad_blocks += 1
            self._strike(peer, p, self.config.max_strikes, f"block {msg.index} fails verification")
            return
        self.counters.blocks_from_peers += 1
        self.counters.bytes_from_peers += len(msg.data)
        self._peer_block_at = now
        p.limit = min(float(self.config.max_inflight), p.limit + 1.0)
        p.waiting = now if p.inflight else None
        p.got += 1
        p.have.add(msg.index)
        self._got(msg.index, msg.data, list(msg.proof), peer)

    def on_origin_manifest(self, raw: bytes | None, now: float) -> None:
        self.origin_inflight.pop(-1, None)
        if raw is None:
            self._origin_failed(now)
        elif self.manifest is None:
            try:
                self._set_manifest(content.decode_manifest(raw, self.cid))
                self.origin_backoff = ORIGIN_BACKOFF
            except ContentError:
                self.counters.bad_manifests += 1
                self._origin_lied(now)
        self._pick(now)

    def on_origin_block(self, index: int, block: wire.BlockMsg | None, now: float) -> None:
        self.origin_inflight.pop(index, None)
        m = self.manifest
        if block is None or m is None or block.index != index or block.cid != self.cid:
            self._origin_failed(now)
        elif index not in self.have:
            if content.verify_block(m, index, block.data, block.proof):
                self.counters.blocks_from_origin += 1
                self.counters.bytes_from_origin += len(block.data)
                self.origin_backoff = ORIGIN_BACKOFF
                self._got(index, block.data, list(block.proof), None)
            else:
                self.counters.bad_blocks += 1
                self._origin_lied(now)
        self._pick(now)

    def _origin_failed(self, now: float) -> None:
        """A fetch failed (no answer, an error, a 404): back off, once per round of fetches."""
        self.counters.origin_failures += 1
        self._origin_back_off(now)

    def _origin_back_off(self, now: float) -> None:
        if now >= self.origin_retry_at:
            self.origin_retry_at = now + self.origin_backoff
            self.origin_backoff = min(2 * self.origin_backoff, ORIGIN_BACKOFF_MAX)

    def _origin_lied(self, now: float) -> None:
        """The origin sent bytes that do not verify: struck like a peer; at ``max_strikes``
        it is given up for this file (peers go on; the fetch fails if none has it)."""
        self.counters.origin_bad += 1
        self.origin_strikes += 1
        if self.origin_strikes >= self.config.max_strikes and self.origin:
            self.origin = False
            self.origin_inflight.clear()
            self.counters.origin_dropped += 1
        else:
            self._origin_back_off(now)  # (counted as bad, not also as failed)

    def _got(self, index: int, data: bytes, proof: list[bytes], peer: bytes | None) -> None:
        self.have.add(index)
        if self.tree is None:
            self.proofs[index] = proof
        for k, q in self.peers.items():
            if q.inflight.pop(index, None) is not None and k != peer:
                self._cancel(k, [index])  # asked twice (timeout, origin): the other need not send it
                # (q.waiting stays: a peer whose every request went elsewhere did not answer;
                # one that does answers its next request, a probe, and is a peer again)
        self._have_dirty = True
        self._actions.append(StoreBlock(index, data, peer, tuple(proof)))

    def _strike(self, peer: bytes, p: _Peer, n: int, reason: str) -> None:
        p.strikes += n
        if p.strikes >= self.config.max_strikes:
            self.counters.peers_dropped += 1
            del self.peers[peer]
            self._actions.append(DropFilePeer(peer, reason))

    # ---- output --------------------------------------------------------------------
    def _send(self, peer: bytes, msg: wire.Message) -> None:
        self._actions.append(SendFile(peer, msg))

    def _cancel(self, peer: bytes, indices: list[int]) -> None:
        for at in range(0, len(indices), wire.MAX_BLOCK_REQUEST):
            part = indices[at:at + wire.MAX_BLOCK_REQUEST]
            self.counters.cancels_sent += len(part)
            self._send(peer, wire.BlockCancel(cid=self.cid, indices=part))

    def on_drained(self, peer: bytes, unsent_blocks: int, now: float) -> None:
        """The transport to ``peer`` holds about ``unsent_blocks`` blocks not yet sent: serve
        it more (its queue, oldest first; requests older than ``request_timeout`` dropped)."""
        p = self.peers.get(peer)
        if p is None:
            return
        p.sending = min(p.sending, max(0, unsent_blocks))
        if (p.queue or p.urgent) and p.sending < self.config.serve_in_flight:
            self._serve(now)

    def serving(self, peer: bytes) -> bool:
        """Blocks to ``peer`` are in its transport: the executor owes :meth:`on_drained`."""
        p = self.peers.get(peer)
        return p is not None and p.sending > 0

    def lost(self, index: int, now: float, peer: bytes | None = None) -> None:
        """Block ``index`` was read back from the store and did not verify (the disk, or
        someone, changed the file): it is no longer held. ``peer``, whom it was being
        served to, is told BLOCK_MISSING (it asks elsewhere at once rather than after a
        timeout); every peer learns from the next HAVE; the block is fetched again like
        any missing one (a publisher with no other copy cannot: it stays missing)."""
        if index not in self.have:
            return
        self.have.discard(index)
        self.proofs.pop(index, None)
        if index >= self.cursor:
            self._low = min(self._low, index)
        self.counters.blocks_lost += 1
        self._have_dirty = True
        if peer is not None and peer in self.peers:
            self._send(peer, wire.BlockMissing(cid=self.cid, index=index))
        self._pick(now)

    def proof_of(self, index: int) -> list[bytes] | None:
        if self.tree is not None:
            return self.tree.proof(index)
        return self.proofs.get(index)

    def _serve(self, now: float) -> None:
        cfg = self.config
        bucket = self.budget
        bucket.refill(now)
        self._serve_at = INF
        m = self.manifest
        if m is None:
            return
        waiting = False
        for urgent in (True, False):  # every urgent request (a player waits) before any other
            busy = [k for k, p in self.peers.items()
                    if (p.urgent if urgent else p.queue) and p.sending < cfg.serve_in_flight]
            while busy and bucket.tokens > 0:
                for k in list(busy):
                    p = self.peers[k]
                    q = p.urgent if urgent else p.queue
                    i, asked = q.popleft()
                    proof = self.proof_of(i)
                    if now - asked > (cfg.request_timeout if urgent else cfg.bulk_timeout):  # asked elsewhere by now
                        self.counters.serve_expired += 1
                    elif i not in self.have:  # lost since it was queued (see lost)
                        self.counters.serve_refused += 1
                        self._send(k, wire.BlockMissing(cid=self.cid, index=i))
                    elif proof is not None:
                        bucket.tokens -= m.block_len(i)
                        self.counters.blocks_served += 1
                        self.counters.bytes_served += m.block_len(i)
                        p.sending += 1
                        self._actions.append(ServeBlock(k, i, proof))
                    if not q or p.sending >= cfg.serve_in_flight:
                        busy.remove(k)
                    if bucket.tokens <= 0:
                        break
            waiting = waiting or bool(busy)
        if waiting:
            self._serve_at = now + (-bucket.tokens + m.block_size) / bucket.rate

    def _pick(self, now: float) -> None:
        m = self.manifest
        cfg = self.config
        # peers had their chance to answer, and the origin is not backing off
        waited = now - self.started >= cfg.origin_after and now >= self.origin_retry_at
        if m is None:
            if self.origin and waited and -1 not in self.origin_inflight:
                self.origin_inflight[-1] = now
                self.counters.origin_requests += 1
                self._actions.append(FetchOrigin(-1))
            return
        if self.complete:
            return
        n = m.blocks
        # stuck: asked, and no block back for reask_after. What a stuck peer holds or was
        # asked for counts as held and asked by none (others and the origin take it), and it
        # gets one request at a time (a probe: an answer makes it a peer like the others).
        # A peer that claimed every block and answered none held oasis get's tail for the
        # 12-s prefetch timeout (found 2026-12-06 by an outside audit)
        stuck = {k for k, p in self.peers.items()
                 if p.waiting is not None and now - p.waiting >= cfg.reask_after}
        inflight: dict[int, float] = {}  # index -> earliest ask time
        asks: dict[int, int] = {}  # index -> peers it is asked of
        for k, p in self.peers.items():
            if k in stuck:
                continue
            for i, (_, at) in p.inflight.items():
                inflight[i] = min(inflight.get(i, INF), at)
                asks[i] = asks.get(i, 0) + 1
        start = min(self.cursor, n - 1)
        # the urgent window: the first ``window`` blocks missing from the cursor on (a getter
        # with no player has its cursor at 0, so it is the download's front, then its tail)
        low = max(self._low, start)
        while low < n and low in self.have:
            low += 1
        self._low = low
        urgent: list[int] = []
        i = low
        while i < n and len(urgent) < cfg.window:
            if i not in self.have:
                urgent.append(i)
            i += 1
        # origin: urgent blocks nobody holds, or late
        # past the player's window (a getter's front) the origin is for a swarm that stalls,
        # not for one that is merely busy: 50 getters of one clip took 6 % of their bytes
        # from it when it stood in for every busy seeder (download p50 0.6 s either way
        # within a second; 0.13 % before the re-asks, 7.3 s)
        stalled = now - self._peer_block_at >= cfg.reask_after
        if self.origin and waited:
            for i in urgent if self.peers else [i for i in range(start, n) if i not in self.have]:
                if len(self.origin_inflight) >= cfg.origin_parallel:
                    break
                if i in self.origin_inflight:
                    continue
                asked = inflight.get(i)
                # a player's window waits origin_after for a peer; a getter's front (no
                # player reads there) reask_after, as long as a second peer would be given
                if self.peers and i >= start + cfg.window and not stalled:
                    continue  # (with no peer at all the origin is the only source: all of it)
                patience = cfg.origin_after if i < start + cfg.window else cfg.reask_after
                late = asked is not None and now - asked >= patience
                if late or (asked is None and not any(i in p.have for k, p in self.peers.items()
                                                      if k not in stuck)):
                    self.origin_inflight[i] = now
                    self.counters.origin_requests += 1
                    self._actions.append(FetchOrigin(i))
        def limit(k: bytes, p: _Peer) -> int:
            return 1 if k in stuck else int(p.limit)

        peers = [(k, p) for k, p in self.peers.items() if len(p.inflight) < limit(k, p) and p.have]
        if not peers:
            return
        self.rng.shuffle(peers)
        peers.sort(key=lambda kp: len(kp[1].inflight))
        in_urgent = set(urgent)
        order = urgent + [i for i in self._ranked(now, start, n) if i not in in_urgent and i not in self.have]
        # A peer that never sent us a block (unproven) is not counted against
        # ``max_total_inflight`` (below), and what it was asked is not kept from a peer that
        # has sent blocks: 40 silent peers that claimed every block took every request for
        # their first second each, a few at a time, and the honest seeder waited its turn
        # (8 s for 41 blocks; found 2026-12-06). Unproven peers are not asked each other's
        # blocks (no duplicates at a start, when every peer is unproven).
        taken = set(inflight) | set(self.origin_inflight)
        # (an unproven peer's request younger than ``origin_after`` is left to it: the first
        # seeder to answer took the others' first requests and every start had duplicates)
        taken_proven = {i for k, p in self.peers.items() if k not in stuck
                        for i, (_, at) in p.inflight.items() if p.got or now - at < cfg.origin_after}
        taken_proven |= set(self.origin_inflight)
        # what a player waits for is asked as urgent (a holder serves it first); a getter's
        # front past the player's window is asked first but not as urgent: asked so, every
        # getter's every request was, and a newcomer's first frame waited behind them (TTFF
        # p50 0.15 -> 0.27 s for 50 getters)
        urgent_set = {i for i in urgent if i < start + cfg.window}
        # (a stuck peer's requests are no one's: counted, a few silent peers that claim every
        # block filled max_total_inflight with their probes and nothing was asked of the
        # honest one; 23 of them: 16.5 s for 8 MB, 0.6 s alone; found 2026-12-06)
        total = sum(len(p.inflight) for k, p in self.peers.items() if k not in stuck and p.got)
        for k, p in peers:
            batch: list[int] = []
            room = min(limit(k, p) - len(p.inflight), cfg.max_total_inflight - total)
            if room <= 0:
                break
            busy = taken_proven if p.got else taken
            for i in order:
                if len(batch) >= room:
                    break
                if i in busy or i not in p.have or i in p.inflight:
                    continue
                batch.append(i)
                taken.add(i)
                taken_proven.add(i)
            if len(batch) < room:  # the rest of its room: urgent blocks another peer sits on
                for i in urgent:
                    if len(batch) >= room:
                        break
                    if (asks.get(i) == 1 and i not in p.inflight and i in p.have and i not in batch
                            and i not in self.origin_inflight and now - inflight[i] >= cfg.reask_after):
                        batch.append(i)
                        asks[i] = 2
                        self.counters.reasked += 1
            if batch:
                total += len(batch)
                if p.waiting is None:
                    p.waiting = now
                for i in batch:
                    wait = cfg.request_timeout if i in urgent_set else cfg.bulk_timeout
                    p.inflight[i] = (now + wait, now)
                    p.asked.add(i)
                hot = [i for i in batch if i in urgent_set]
                cold = [i for i in batch if i not in urgent_set]
                if hot:
                    self._send(k, wire.BlockRequest(cid=self.cid, indices=hot, urgent=True))
                if cold:
                    self._send(k, wire.BlockRequest(cid=self.cid, indices=cold))

    def _ranked(self, now: float, start: int, n: int) -> list[int]:
        """The blocks peers hold that we miss, rarest first (then from the cursor on): ranked
        again when what peers hold changed, at most every ``ORDER_EVERY`` s (at once when
        there was none; the timer comes back for it), or the cursor moved. A block we got
        since is skipped by the caller."""
        if (self._order_stale and (now - self._order_at >= ORDER_EVERY or not self._order)) \
                or start != self._order_start:
            self._order_stale = False
            counts: dict[int, int] = {}
            for p in self.peers.values():
                for i in p.have:
                    if i not in self.have:
                        counts[i] = counts.get(i, 0) + 1
            self._order = sorted(counts, key=lambda i: (counts[i], (i - start) % n))
            self._order_at, self._order_start = now, start
        return self._order

    # ---- timer -----------------------------------------------------------------------
    def get_timer(self) -> float | None:
        t = self._serve_at
        for p in self.peers.values():
            for dl, _ in p.inflight.values():
                t = min(t, dl)
        if self._have_dirty:
            t = min(t, self._have_at + self.config.have_every)
        for p in self.peers.values():
            if p.have_pending is not None and p.have_at + HAVE_MIN_GAP > self._checked:
                t = min(t, p.have_at + HAVE_MIN_GAP)
        if self._order_stale and not self.complete and self._order_at + ORDER_EVERY > self._checked:
            t = min(t, self._order_at + ORDER_EVERY)  # (the new HAVEs ranked: see _ranked; once)
        if not self.complete and self.origin:
            # origin decisions that become due later (each checked once, after _checked)
            checks = [self.started + self.config.origin_after, self.origin_retry_at]
            checks += [at + ORIGIN_TIMEOUT for at in self.origin_inflight.values()]
            checks += [at + self.config.origin_after
                       for p in self.peers.values() for _, at in p.inflight.values()]
            for at in checks:
                if at > self._checked:
                    t = min(t, at)
        if not self.complete and (len(self.peers) > 1 or self.origin):  # re-asks due (see _pick)
            stall = self._peer_block_at + self.config.reask_after  # (the origin's turn, if so)
            if self.origin and stall > self._checked:
                t = min(t, stall)
            for p in self.peers.values():
                if p.waiting is not None and p.waiting + self.config.reask_after > self._checked:
                    t = min(t, p.waiting + self.config.reask_after)
                for _, at in p.inflight.values():
                    if at + self.config.reask_after > self._checked:
                        t = min(t, at + self.config.reask_after)
        return None if t == INF else t

    def handle_timer(self, now: float) -> None:
        self._checked = max(self._checked, now)
        for k, p in list(self.peers.items()):
            if p.have_pending is not None and now - p.have_at >= HAVE_MIN_GAP:
                raw, p.have_pending = p.have_pending, None
                if self._on_have(k, p, wire.FileHave(cid=self.cid, manifest=b"", have=raw), now):
                    self._order_stale = True
        for k, p in list(self.peers.items()):
            late = [i for i, (dl, _) in p.inflight.items() if dl <= now]
            for i in late:
                del p.inflight[i]
                self.counters.request_timeouts += 1
            if late:
                p.limit = max(1.0, p.limit / 2)
                self._cancel(k, late)  # asked elsewhere now: if still queued there, not sent
            # slow is not hostile: no strike (the requests go elsewhere; the origin backs up)
        for i, at in list(self.origin_inflight.items()):
            if now - at >= ORIGIN_TIMEOUT:
                del self.origin_inflight[i]
                self._origin_failed(now)
        if self._have_dirty and now >= self._have_at + self.config.have_every:
            self._have_dirty = False
            self._have_at = now
            msg = self.have_message()
            for k in self.peers:
                self._send(k, msg)
        if self._serve_at <= now:
            self._serve(now)
        self._pick(now)

    def actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out
