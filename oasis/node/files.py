"""Files on a node: publish, fetch from many peers, store within a disk cap, serve.

Theory of operation
-------------------
:class:`Files` (``node.files``) executes one sans-I/O :class:`~oasis.core.fileswarm.FileSwarm`
per content id: it feeds it the file messages the node routes here, the links that close,
the player's read position and origin answers, and executes its actions -- send a message,
read a block from disk and serve it, write a verified block, fetch from the HTTP origin,
drop a lying peer (through the node's peer policy, which bans it). One timer per file is
re-armed at the core's deadline.

Store: ``<data dir>/files/<cid>/`` holds ``manifest`` (the bytes the cid hashes),
``data`` (the file, written block by block at its offset -- only verified blocks),
``done`` once every block is there and the whole file re-hashed to the manifest's root,
and ``pin`` for files published here. The sum of the files' sizes stays under
``cap_bytes``: before a new file's data is allocated, complete files that are not pinned
and not being read are evicted, least recently used first; if that is not enough the
fetch stops (``disk_cap_refused``). A partial download does not survive a restart.

Discovery: peers come from the caller (``fetch(cid, peers)``, a file link), from peer
exchange (FILE_PEERS: a peer tells a newcomer up to 16 others of the same file; the
newcomer dials a few, key pinned) and from :meth:`discovered` -- the hook a DHT or
tracker lookup calls with the peers it found for a cid.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import logging
import mimetypes
import os
import random
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from oasis.core import content, wire
from oasis.core import fileswarm as fs
from oasis.core.content import BLOCK_SIZE, ContentError, Manifest, cid_text, parse_cid
from oasis.core.dialplan import Candidate
from oasis.core.filelink import FileLink, parse_peer
from oasis.core.filelink import parse as parse_file_link
from oasis.core.identity import peer_id_of
from oasis.core.stream import StreamId
from oasis.core.streamlink import LinkError, is_link
from oasis.core.wire import ErrorCode
from oasis.datafiles import private_dir

from .http import read_capped

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("oasis.files")
DEFAULT_CAP = 4 * 1024 ** 3  #: bytes of files kept (seeded after watching)
MAX_FILES = 256  #: files a node tracks at once
PEX_DIALS = 6  #: peers dialled from one FILE_PEERS
MAX_DISCOVERED = 24  #: peers dialled from one discovery
#: peers a discovery named beyond those, kept to dial while the download stands still: 24
#: silent sybils listed before the publisher stopped ``oasis get`` for good, the publisher
#: never dialled (found 2026-12-06 by an outside audit)
MAX_RESERVE = 64
RESERVE_AFTER = 2.0  #: s without a block from a peer before the reserve is dialled (a batch)
RESERVE_BATCH = 8
TARGET_PEERS = 8  #: a fetching file dials peers from FILE_PEERS only while it has fewer than this
PROGRESS_EVERY = 0.25  #: s between file.progress events of one file (at most 4/s)
READ_WAIT = 15.0  #: s a gateway reader waits for one block before giving up



#: a stored block's proof: its length (≤ content.MAX_DEPTH hashes) and the hashes, at
#: ``index * PROOF_SLOT`` in ``proofs`` beside ``data``: what a resumed download re-verifies
PROOF_SLOT = 1 + 32 * content.MAX_DEPTH
DHT_FIND_TIMEOUT = 10.0  #: s a download's DHT lookup of the file's providers may take
_ZERO_KEY = bytes(32)


def file_sid(cid: bytes) -> StreamId:
    """The DHT name of a file (docs/oftp.md §18.6): records of its seeders live under
    ``StreamId(32 zero bytes, the first 32 base32 characters of the CID)`` -- no key signs
    a file's "stream", so no record under it is a stream record (nobody's descriptor)."""
    return StreamId(_ZERO_KEY, base64.b32encode(cid).decode().lower()[:32])

MAX_FAILURES = 64  #: fetch failures remembered (Files.failures)


class StoredBlockDamaged(OSError):
    """A stored block no longer matches the manifest (see :meth:`FileEntry.read_block`)."""


class FileEntry:
    def __init__(self, files: Files, cid: bytes, swarm: fs.FileSwarm, *, pinned: bool,
                 origin: str | None) -> None:
        self.files = files
        self.cid = cid
        self.text = cid_text(cid)
        self.swarm = swarm
        self.pinned = pinned
        self.origin = origin
        self.dir = files.root / self.text
        self.last_used = files.node.clock()
        self.readers = 0
        self.wanted: dict[bytes, None] = {}  #: peers to add to the swarm once linked (dial under way)
        #: peers named beyond ``MAX_DISCOVERED``: dialled ``RESERVE_BATCH`` at a time while no
        #: peer sends a block (``RESERVE_AFTER``), and when they were last
        self.reserve: dict[bytes, tuple[str, int]] = {}
        self._reserve_at = files.node.clock()
        self.changed = asyncio.Event()
        self.done = False
        self.stopped = False
        self.damaged = False  #: a stored block was found changed on disk (said once)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._progress_at = 0.0
        self._fd: int | None = None
        self._proofs_fd: int | None = None

    @property
    def manifest(self) -> Manifest | None:
        return self.swarm.manifest

    def fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.dir / "data", os.O_RDWR)
        return self._fd

    def proofs_fd(self) -> int:
        if self._proofs_fd is None:
            self._proofs_fd = os.open(self.dir / "proofs", os.O_RDWR)
        return self._proofs_fd

    def read_block(self, index: int) -> bytes:
        """Block ``index`` as stored, checked against the manifest (a leaf hash and its
        proof: ~40 µs a block). A block changed on disk since it was verified (a failing
        disk, a user editing the stored copy) is never served: :class:`StoredBlockDamaged`,
        counted, and the swarm no longer holds it (a downloader fetches it again)."""
        m = self.manifest
        assert m is not None
        data = os.pread(self.fd(), m.block_len(index), index * BLOCK_SIZE)
        proof = self.swarm.proof_of(index)
        if proof is None or not content.verify_block(m, index, data, proof):
            self.files.damaged(self, index)
            raise StoredBlockDamaged(f"block {index} of {self.text} changed on disk since it was verified")
        return data

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fd in (self._fd, self._proofs_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._proofs_fd = None
        self.notify()


class Files:
    """The node's file service (contract: publish, fetch, status, list, remove, counters)."""

    def __init__(self, node: Node, data_dir: str | os.PathLike[str], *, cap_bytes: int = DEFAULT_CAP,
                 origin_url: str | None = None, config: fs.FileSwarmConfig | None = None,
                 gateway_url: str = "") -> None:
        self.node = node
        self.root = private_dir(Path(data_dir) / "files")  # 0700, like every data directory
        self.cap_bytes = cap_bytes
        self.origin_url = origin_url
        self.config = config or fs.FileSwarmConfig()
        #: one serving budget for all the node's files (the config's rate and burst)
        self.budget = fs.UploadBudget.of(self.config, node.clock())
        self.gateway_url = gateway_url  #: set by the runtime once the gateway listens
        self.entries: dict[bytes, FileEntry] = {}
        #: why a fetch ended without the file (newest last, at most MAX_FAILURES): a getter
        #: waiting on it says so and exits instead of waiting for ever
        self.failures: dict[bytes, str] = {}
        self.rng = random.Random(node.rng.random())
        self.c: dict[str, int] = {k: 0 for k in (
            "files_unknown_cid", "files_dht_providers", "files_peers_dialled", "files_pex_received", "files_disk_cap_refused",
            "files_evicted", "files_origin_fetches", "files_origin_failures", "files_bad_stored",
            "files_read_timeouts", "files_resumed", "files_resumed_blocks", "files_resume_bad_blocks",
            "files_stored_damaged", "files_write_failed", "files_reserve_dialled")}
        #: totals of files no longer tracked (removed, evicted)
        self._closed = fs.FileCounters()
        #: downloads left unfinished by an earlier run: cid -> bytes on disk (counted against
        #: the cap, evicted first); ``fetch`` of one resumes it
        self.partials: dict[bytes, int] = {}
        #: called with (cid, peers) by a lookup (DHT, tracker) that found holders
        self.on_lookup: Callable[[bytes], None] | None = None
        self._load()

    # ---- the contract ------------------------------------------------------------
    async def publish(self, path: str) -> dict[str, Any]:
        """Store and seed a local file (pinned). ValueError: not a readable file or too large."""
        src = Path(path)
        if not src.is_file():
            raise ValueError(f"{path}: not a readable file")
        size = src.stat().st_size
        if size > content.MAX_FILE:
            raise ValueError(f"{path}: {size:,} bytes ({size / 2**20:.1f} MiB); files are at most "
                             f"{content.MAX_FILE // 2**20} MiB ({content.MAX_FILE:,} bytes)")
        self._make_room(size, keep=None)
        mime = mimetypes.guess_type(src.name)[0] or "application/octet-stream"
        mime = content.safe_mime(content.MIME_BY_EXT.get(src.suffix.lower(), mime))
        tmp = self.root / f".publish-{os.getpid()}-{self.rng.getrandbits(32):08x}"
        stop = threading.Event()
        try:
            m, tree = await asyncio.to_thread(_copy_and_hash, src, tmp, size, mime, stop)
        except (OSError, ContentError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ValueError(f"{path}: {exc}") from None
        except BaseException:  # cancelled (the user stopped): the copy ends at its next block
            stop.set()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        cid = m.cid()
        old = self.entries.get(cid)
        if old is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            old.pinned = True
            (old.dir / "pin").touch()
        else:
            dest = self.root / cid_text(cid)
            shutil.rmtree(dest, ignore_errors=True)
            (tmp / "pin").touch()
            (tmp / "done").touch()
            os.rename(tmp, dest)
            self._add(cid, m, tree, pinned=True, origin=None)
        out = m.to_json(cid)
        self.node.events.publish("file.published", dict(out))
        return out

    async def fetch(self, cid: str, peers: list[str] | None = None) -> dict[str, Any]:
        """Start (or join) the download of ``cid`` (a CID or an ``oasis://file/`` link) from
        ``peers`` (``PEER_ID@HOST:PORT``) and the origin; returns its status at once."""
        link = parse_target(cid)
        extra = [parse_peer(p) for p in (peers or [])]  # LinkError (a ValueError) with its code
        if any(key == self.node.identity.public for key, _, _ in extra):
            raise LinkError("bad_peer", "a peer given is this node itself: give the peers that hold the file")
        e = self.entries.get(link.cid)
        if e is None:
            if len(self.entries) >= MAX_FILES:
                raise ValueError(f"this node tracks at most {MAX_FILES} files")
            origin = link.origin or self.origin_url
            sw = fs.FileSwarm(link.cid, self.config, origin=origin is not None, budget=self.budget,
                              rng=random.Random(self.rng.random()), now=self.node.clock())
            e = FileEntry(self, link.cid, sw, pinned=False, origin=origin)
            self.entries[link.cid] = e
            if self.partials.pop(link.cid, None) is None or not await self._resume(e):
                shutil.rmtree(e.dir, ignore_errors=True)
                e.dir.mkdir(parents=True)
            self._pump(e)
            if e.swarm.complete:
                self.node.spawn(self._finish(e))
            if self.on_lookup is not None:
                self.on_lookup(link.cid)
            self.node.spawn(self._dht_find(link.cid))
        e.last_used = self.node.clock()
        self.discovered(link.cid, list(link.peers) + extra)
        return self.status(e.text)

    def status(self, cid: str) -> dict[str, Any]:
        e = self._entry(cid)
        m = e.manifest
        c = e.swarm.counters
        state = "seeding" if e.done and e.pinned else "complete" if e.done else "fetching"
        return {"cid": e.text, "name": m.name if m else "", "size": m.size if m else 0,
                "blocks": m.blocks if m else 0, "have_blocks": len(e.swarm.have), "state": state,
                "from_peers": c.bytes_from_peers, "from_origin": c.bytes_from_origin,
                "url": f"{self.gateway_url}/files/{e.text}", "mime": m.mime if m else "",
                "peers": len(e.swarm.peers), "served": c.bytes_served,
                # what the fetch refused: blocks that failed verification (peers or the
                # origin) and peers dropped as hostile (a getter's summary says so)
                "bad_blocks": c.bad_blocks, "peers_dropped": c.peers_dropped}

    def list(self) -> list[dict[str, Any]]:
        return [self.status(e.text) for e in self.entries.values()]

    async def remove(self, cid: str) -> None:
        e = self._entry(cid)
        self._drop(e)

    def counters(self) -> dict[str, int]:
        tot = {f"files_{k}": v for k, v in vars(self._closed).items()}
        for e in self.entries.values():
            for k, v in vars(e.swarm.counters).items():
                tot[f"files_{k}"] += v
        return tot | dict(self.c) | {"files_tracked": len(self.entries), "files_bytes": self.used()}

    # ---- discovery ---------------------------------------------------------------------
    def discovered(self, cid: bytes, peers: builtins.list[tuple[bytes, str, int]]) -> None:
        """Peers found holding ``cid`` (a link, FILE_PEERS, a DHT or tracker lookup): dial
        them, key pinned; each link that comes up joins the file's swarm."""
        e = self.entries.get(cid)
        if e is None or e.done:
            return
        for key, host, port in peers[:MAX_DISCOVERED]:
            if key == self.node.identity.public or key in e.swarm.peers:
                continue
            e.reserve.pop(key, None)
            self.node.spawn(self._link(e, key, host, port))
        for key, host, port in peers[MAX_DISCOVERED:MAX_DISCOVERED + MAX_RESERVE]:
            if key != self.node.identity.public and key not in e.swarm.peers and key not in e.wanted:
                e.reserve[key] = (host, port)
                while len(e.reserve) > MAX_RESERVE:
                    del e.reserve[next(iter(e.reserve))]
        if e.reserve:
            self._arm(e)

    def _dial_reserve(self, e: FileEntry) -> None:
        """The download stands still (no block from a peer for ``RESERVE_AFTER``): dial the
        next ``RESERVE_BATCH`` peers a discovery named beyond the first ``MAX_DISCOVERED``."""
        now = self.node.clock()
        if e.done or e.stopped or not e.reserve or now < self._reserve_due(e):
            return
        e._reserve_at = now
        for _ in range(min(RESERVE_BATCH, len(e.reserve))):
            key, (host, port) = next(iter(e.reserve.items()))
            del e.reserve[key]
            if key in e.swarm.peers:
                continue
            self.c["files_reserve_dialled"] += 1
            self.node.spawn(self._link(e, key, host, port))

    @staticmethod
    def _reserve_due(e: FileEntry) -> float:
        return max(e.swarm.last_peer_block, e._reserve_at) + RESERVE_AFTER

    async def _link(self, e: FileEntry, key: bytes, host: str, port: int) -> None:
        node = self.node
        if node.policy.link_of(key) is None:
            self.c["files_peers_dialled"] += 1
            e.wanted[key] = None  # joins the swarm when a link to it comes up, whoever dialled
            while len(e.wanted) > MAX_DISCOVERED:
                del e.wanted[next(iter(e.wanted))]
            await node.connect(peer_id_of(key), host, port)
        dht = node.dht
        if dht is not None and not dht.seeded and node.policy.link_of(key) is not None:
            dht.seed([Candidate(key, host, port)])  # a file getter's way into the DHT, once linked
            if node.policy.link_of(key) is None and key not in node.policy.dialling:
                e.wanted.pop(key, None)  # the dial failed (nobody else is dialling it)
        if node.policy.link_of(key) is not None and not e.stopped:
            e.wanted.pop(key, None)
            e.swarm.add_peer(key, node.clock())
            self._pump(e)

    def link_up(self, peer: bytes) -> None:
        for e in self.entries.values():
            if e.wanted.pop(peer, 1) is None and not e.stopped and not e.done:
                e.swarm.add_peer(peer, self.node.clock())
                self._pump(e)

    # ---- input from the node ------------------------------------------------------------
    def on_message(self, link: Any, peer: bytes, msg: wire.Message) -> None:
        cid = getattr(msg, "cid", b"")
        e = self.entries.get(cid)
        if e is None:
            self.c["files_unknown_cid"] += 1
            if isinstance(msg, wire.FileWant):  # we hold nothing: say so (no manifest)
                link.send(wire.FileHave(cid=cid, manifest=b"", have=b""))
            return
        if isinstance(msg, wire.FilePeers):
            self.c["files_pex_received"] += 1
            if e.done or peer not in e.swarm.peers:
                return
            room = TARGET_PEERS - len(e.swarm.peers) - len(e.wanted)
            if room <= 0:
                return
            found = [(n.key, n.host, n.port) for n in msg.peers]
            self.rng.shuffle(found)
            self.discovered(cid, found[:min(PEX_DIALS, room)])
            return
        new = peer not in e.swarm.peers
        e.swarm.on_message(peer, msg, self.node.clock())
        if new and peer in e.swarm.peers:
            self._send_pex(e, peer, link)
        self._pump(e)

    def _send_pex(self, e: FileEntry, peer: bytes, link: Any) -> None:
        others = []
        for k in e.swarm.peers:
            p = self.node.policy.peers.get(k)
            if k != peer and p is not None and p.addr is not None and len(p.addr[0]) >= 2:
                others.append(wire.DhtNode(key=k, host=p.addr[0], port=p.addr[1]))
        self.rng.shuffle(others)
        if others:
            link.send(wire.FilePeers(cid=e.cid, peers=others[: wire.MAX_FILE_PEERS]))

    def link_down(self, peer: bytes) -> None:
        if self.node.policy.link_of(peer) is not None:
            # another link to it is up (duplicate dial): what went over the closed one is
            # gone both ways -- our FILE_WANT and requests, its HAVE and blocks, what we
            # were serving it -- so the peer starts afresh on the link left (FILE_WANT,
            # requests asked again). Found 2026-12-06: a getter whose two dials to the
            # publisher crossed sent everything on the link that closed, and waited the
            # 4-s request timeout with the publisher idle (1 run in 5: 4.5 s, not 1.5)
            now = self.node.clock()
            for e in list(self.entries.values()):
                if peer in e.swarm.peers:
                    e.swarm.remove_peer(peer, now)
                    if not e.done and not e.stopped:  # fetching: ask again (a seeder waits for its FILE_WANT)
                        e.swarm.add_peer(peer, now)
                    self._pump(e)
            return
        for e in self.entries.values():
            if peer in e.swarm.peers:
                e.swarm.remove_peer(peer, self.node.clock())
                self._pump(e)

    # ---- the core's actions ----------------------------------------------------------------
    def _pump(self, e: FileEntry) -> None:
        for _ in range(4):  # a damaged block served makes more actions (BLOCK_MISSING, a fetch)
            actions = e.swarm.actions()
            if not actions:
                break
            self._do(e, actions)
        self._arm(e)

    def _do(self, e: FileEntry, actions: builtins.list[fs.Action]) -> None:
        node = self.node
        for a in actions:
            if isinstance(a, fs.SendFile):
                node.send_to(a.peer, a.message)
            elif isinstance(a, fs.ServeBlock):
                link = node.policy.link_of(a.peer)
                try:
                    if link is None:
                        raise LookupError
                    data = e.read_block(a.index)
                except (OSError, LookupError) as exc:
                    if isinstance(exc, StoredBlockDamaged):
                        e.swarm.lost(a.index, node.clock(), a.peer)  # it asks elsewhere at once
                    elif isinstance(exc, OSError):
                        log.warning("cannot read block %d of %s: %s", a.index, e.text, exc)
                    e.swarm.on_drained(a.peer, 0, node.clock())  # nothing went out: free its slot
                    continue
                # the swarm hands out serve_in_flight blocks per peer; the link says when
                # they have left its buffer (at most one block unsent), and the swarm refills
                link.on_drain = self._drained
                link.drain_below = BLOCK_SIZE
                link.send(wire.BlockMsg(cid=e.cid, index=a.index, data=data, proof=a.proof))
            elif isinstance(a, fs.StoreBlock):
                self._store(e, a)
            elif isinstance(a, fs.ManifestKnown):
                self._allocate(e, a.manifest)
            elif isinstance(a, fs.FetchOrigin):
                node.spawn(self._fetch_origin(e, a.index))
            elif isinstance(a, fs.DropFilePeer):
                node.policy.on_drop_peer(a.peer, ErrorCode.BAD_CHUNK, a.reason, node.clock())
                node._run_policy()

    def _drained(self, link: Any) -> None:
        peer = link.peer_key
        if peer is None:
            return
        unsent = -(-link.control_unsent() // BLOCK_SIZE)
        now = self.node.clock()
        for e in list(self.entries.values()):
            if e.swarm.serving(peer):
                e.swarm.on_drained(peer, unsent, now)
                self._pump(e)

    async def _resume(self, e: FileEntry) -> bool:
        """Pick up an earlier run's download of ``e``: the manifest checked against the cid,
        then every block with a stored proof verified again (in a thread); the swarm fetches
        only the rest. False: nothing usable (the caller starts afresh)."""
        try:
            m = content.decode_manifest((e.dir / "manifest").read_bytes(), e.cid)
            blocks = await asyncio.to_thread(_verified_blocks, e.dir, m)
        except (ContentError, OSError) as exc:
            log.info("not resuming %s: %s", e.text, exc)
            return False
        good = {i: p for i, p in blocks.items() if p is not None}
        self.c["files_resumed"] += 1
        self.c["files_resumed_blocks"] += len(good)
        self.c["files_resume_bad_blocks"] += len(blocks) - len(good)
        e.swarm.resume(m, good, self.node.clock())
        return True

    def _allocate(self, e: FileEntry, m: Manifest) -> None:
        if e.done:
            return
        try:
            self._make_room(m.size, keep=e.cid)
        except ValueError as exc:
            self.c["files_disk_cap_refused"] += 1
            log.warning("not fetching %s: %s", e.text, exc)
            self.fail(e, f"not fetched: {exc}")
            return
        try:
            (e.dir / "manifest").write_bytes(m.encode())
            for name, size in (("data", m.size), ("proofs", m.blocks * PROOF_SLOT)):
                fd = os.open(e.dir / name, os.O_WRONLY | os.O_CREAT, 0o600)  # a resumed file keeps its bytes
                try:
                    os.ftruncate(fd, size)
                finally:
                    os.close(fd)
        except OSError as exc:  # a full or read-only disk, a file size limit: said, not raised
            self.c["files_write_failed"] += 1
            self.fail(e, f"cannot write to {e.dir}: {exc.strerror or exc}")
            return
        e.notify()

    def _store(self, e: FileEntry, a: fs.StoreBlock) -> None:
        if e.stopped:
            return
        try:
            os.pwrite(e.fd(), a.data, a.index * BLOCK_SIZE)
            if e.swarm.tree is None:  # (a whole file's block found damaged and fetched again: no proofs file)
                # then its proof: a slot is written only after its block, so a resume trusts nothing unwritten
                slot = bytes([len(a.proof)]) + b"".join(a.proof)
                os.pwrite(e.proofs_fd(), slot.ljust(PROOF_SLOT, b"\0"), a.index * PROOF_SLOT)
        except OSError as exc:
            # a full disk (or a store gone read-only): the fetch ends saying so, and what was
            # written stays for a resume -- it was a traceback per block from the socket's
            # callback, and blocks never written counted as kept (found 2026-12-05 from outside)
            self.c["files_write_failed"] += 1
            why = f"cannot write to {e.dir}: {exc.strerror or exc}"
            log.warning("%s: %s", e.text, why)
            self.fail(e, f"{why}; what was written is kept, the same command resumes once there is room",
                      keep=True)
            return
        m = e.manifest
        assert m is not None
        now = self.node.clock()
        done = e.swarm.complete
        if done or now - e._progress_at >= PROGRESS_EVERY:
            e._progress_at = now
            self.node.events.publish("file.progress", {"cid": e.text, "have_blocks": len(e.swarm.have),
                                                       "blocks": m.blocks})
        e.notify()
        if done:
            self.node.spawn(self._finish(e))

    async def _finish(self, e: FileEntry) -> None:
        """Every block is verified and written: re-hash the file (what is on disk is what we
        serve), then serve from the full tree."""
        m = e.manifest
        assert m is not None
        try:
            got, tree = await asyncio.to_thread(_hash_file, e.dir / "data", m)
        except OSError as exc:
            log.warning("cannot re-read %s: %s", e.text, exc)
            return
        if got.cid() != e.cid or e.stopped:
            self.c["files_bad_stored"] += 1
            return
        e.swarm.set_tree(tree)
        (e.dir / "done").touch()
        if e._proofs_fd is not None:
            os.close(e._proofs_fd)
            e._proofs_fd = None
        (e.dir / "proofs").unlink(missing_ok=True)  # the tree serves the proofs from now on
        e.done = True
        e.notify()
        self._provide(e.cid)  # seeded after watching (within the disk cap)
        self.node.events.publish("file.complete", self.status(e.text))

    async def _fetch_origin(self, e: FileEntry, index: int) -> None:
        base = f"{(e.origin or '').rstrip('/')}/origin/files/{e.text}"
        url = f"{base}/manifest" if index < 0 else f"{base}/{index}.blk"
        body: bytes | None = None
        self.c["files_origin_fetches"] += 1
        try:
            async with self.node.http.get(url, timeout=aiohttp.ClientTimeout(total=fs.ORIGIN_TIMEOUT)) as r:
                if r.status == 200:
                    body = await read_capped(r.content, wire.MAX_CONTROL_FRAME)  # to its end
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("origin %s failed: %s", url, exc)
        if body is None:
            self.c["files_origin_failures"] += 1
        if e.stopped:
            return
        now = self.node.clock()
        if index < 0:
            e.swarm.on_origin_manifest(body, now)
        else:
            block = None
            if body is not None:
                try:
                    msg = wire.decode_control(body)
                    block = msg if isinstance(msg, wire.BlockMsg) else None
                except wire.WireError:
                    block = None
            e.swarm.on_origin_block(index, block, now)
        self._pump(e)

    def _arm(self, e: FileEntry) -> None:
        t = e.swarm.get_timer()
        if e.reserve and not e.done:  # (the reserve's turn, if the download stands still)
            due = self._reserve_due(e)
            t = due if t is None else min(t, due)
        if t is None or self.node.closing or e.stopped or (e._timer is not None and e._timer_at == t):
            return
        if e._timer is not None:
            e._timer.cancel()
        e._timer_at = t
        e._timer = self.node.loop.call_later(max(0.0, t - self.node.clock()), self._on_timer, e)

    def _on_timer(self, e: FileEntry) -> None:
        e._timer = None
        e._timer_at = None
        e.swarm.handle_timer(self.node.clock())
        self._dial_reserve(e)
        self._pump(e)

    # ---- reading (the gateway) -------------------------------------------------------------
    def entry(self, cid: str) -> FileEntry:
        return self._entry(cid)

    async def wait_manifest(self, e: FileEntry, timeout: float) -> Manifest:
        loop = self.node.loop
        end = loop.time() + timeout
        while e.manifest is None or not (e.dir / "data").exists():
            if e.stopped or loop.time() >= end:
                raise TimeoutError("manifest not known yet")
            await asyncio.wait_for(e.changed.wait(), max(0.01, end - loop.time()))
        return e.manifest

    async def block(self, e: FileEntry, index: int) -> bytes:
        """Block ``index``, waiting (bounded) for it: the swarm fetches from here first.
        A stored block found damaged is fetched again, within the same wait."""
        e.last_used = self.node.clock()
        loop = self.node.loop
        end = loop.time() + READ_WAIT
        while True:
            if index not in e.swarm.have:
                e.swarm.want_from(index, self.node.clock())
                self._pump(e)
            while index not in e.swarm.have:
                if e.stopped or loop.time() >= end:
                    self.c["files_read_timeouts"] += 1
                    raise TimeoutError(f"block {index} did not arrive")
                try:
                    await asyncio.wait_for(e.changed.wait(), max(0.01, end - loop.time()))
                except TimeoutError:
                    continue
            try:
                return e.read_block(index)
            except StoredBlockDamaged:
                e.swarm.lost(index, self.node.clock())
                self._pump(e)

    def damaged(self, e: FileEntry, index: int) -> None:
        """Block ``index`` of ``e`` changed on disk since it was verified: counted, said
        once per file (the caller tells the swarm, which no longer holds it)."""
        if not e.damaged:
            log.warning("stored copy of %s is damaged (block %d no longer matches its hash): "
                        "not served; fetched again from peers where they hold it", e.text, index)
        e.damaged = True
        self.c["files_stored_damaged"] += 1

    def origin_block(self, cid: str, index: int) -> bytes:
        """The origin's answer for block ``index``: an encoded BLOCK message. LookupError if
        not held (with its proof)."""
        e = self._entry(cid)
        m = e.manifest
        proof = e.swarm.proof_of(index) if m is not None and 0 <= index < m.blocks else None
        if proof is None or index not in e.swarm.have:
            raise LookupError(f"block {index} not held")
        try:
            data = e.read_block(index)
        except StoredBlockDamaged:
            e.swarm.lost(index, self.node.clock())
            self._pump(e)
            raise LookupError(f"block {index} not held (the stored copy is damaged)") from None
        return wire.encode(wire.BlockMsg(cid=e.cid, index=index, data=data, proof=proof))

    def origin_manifest(self, cid: str) -> bytes:
        m = self._entry(cid).manifest
        if m is None:
            raise LookupError("manifest not known")
        return m.encode()

    # ---- store --------------------------------------------------------------------------------
    def used(self) -> int:
        return (sum(e.manifest.size for e in self.entries.values() if e.manifest is not None)
                + sum(self.partials.values()))

    def _make_room(self, size: int, keep: bytes | None) -> None:
        if size > self.cap_bytes:
            raise ValueError(f"{size} bytes is over the disk cap of {self.cap_bytes}")
        used = sum(e.manifest.size for k, e in self.entries.items() if e.manifest is not None and k != keep)
        used += sum(n for k, n in self.partials.items() if k != keep)
        if used + size <= self.cap_bytes:
            return
        for k in [k for k in self.partials if k != keep]:  # unfinished downloads of earlier runs first
            shutil.rmtree(self.root / cid_text(k), ignore_errors=True)
            used -= self.partials.pop(k)
            self.c["files_evicted"] += 1
            if used + size <= self.cap_bytes:
                return
        old = sorted((e for k, e in self.entries.items()
                      if e.done and not e.pinned and not e.readers and k != keep), key=lambda e: e.last_used)
        for e in old:
            m = e.manifest
            assert m is not None
            self._drop(e)
            self.c["files_evicted"] += 1
            used -= m.size
            if used + size <= self.cap_bytes:
                return
        raise ValueError(f"{size} more bytes do not fit the disk cap of {self.cap_bytes}")

    def _add(self, cid: bytes, m: Manifest, tree: content.MerkleTree, *, pinned: bool,
             origin: str | None) -> FileEntry:
        sw = fs.FileSwarm(cid, self.config, manifest=m, tree=tree, rng=random.Random(self.rng.random()),
                          budget=self.budget, now=self.node.clock())
        sw.actions()  # ManifestKnown: already stored
        e = FileEntry(self, cid, sw, pinned=pinned, origin=origin)
        e.done = True
        self.entries[cid] = e
        self._provide(cid)
        return e

    def _provide(self, cid: bytes) -> None:
        """Seeding ``cid``: announce it in the DHT (docs/oftp.md §18), so getters that know
        only its id and one peer find us."""
        if self.node.dht is not None:
            self.node.dht.provide_key(file_sid(cid))

    async def _dht_find(self, cid: bytes) -> None:
        """A download began: the DHT's providers of ``cid`` join the ones the link named."""
        if self.node.dht is None:
            return
        peers = await self.node.dht.find_providers(file_sid(cid), DHT_FIND_TIMEOUT)
        self.c["files_dht_providers"] += len(peers)
        self.discovered(cid, peers)

    def _load(self) -> None:
        """Complete files kept from earlier runs are seeded again; partial ones (with their
        manifest) are kept for ``fetch`` to resume, the rest removed."""
        for d in sorted(self.root.iterdir()):
            if d.name.startswith(".publish-"):
                shutil.rmtree(d, ignore_errors=True)
                continue
            try:
                cid = parse_cid(d.name)
                if not (d / "done").exists():
                    if not (d / "manifest").exists():
                        raise ContentError("partial", "no manifest yet")
                    content.decode_manifest((d / "manifest").read_bytes(), cid)  # checked again on resume
                    self.partials[cid] = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
                    continue
                m, tree = _hash_file(d / "data", content.decode_manifest((d / "manifest").read_bytes(), cid))
                if m.cid() != cid:
                    raise ContentError("bad_stored", "data does not match its manifest")
            except (ContentError, OSError) as exc:
                # said, not only logged at INFO: a file the user published or fetched is gone
                # (found 2026-12-05 from outside: one changed byte removed a whole file unsaid)
                self.c["files_stored_damaged"] += 1
                log.warning("dropping stored file %s: %s (fetch it again to have it)", d.name, exc)
                shutil.rmtree(d, ignore_errors=True)
                continue
            if len(self.entries) < MAX_FILES:
                self._add(cid, m, tree, pinned=(d / "pin").exists(), origin=None)

    def fail(self, e: FileEntry, reason: str, *, keep: bool = False) -> None:
        """End ``e``'s fetch without the file: remember why, tell the event feed, drop it
        (``keep``: its directory stays, a partial download a fetch resumes)."""
        self.failures.pop(e.cid, None)
        self.failures[e.cid] = reason
        while len(self.failures) > MAX_FAILURES:
            del self.failures[next(iter(self.failures))]
        self.node.events.publish("file.failed", {"cid": e.text, "error": reason})
        self._drop(e, keep=keep)

    def failure(self, cid: str) -> str | None:
        """Why the fetch of ``cid`` ended without the file, if it did."""
        try:
            raw = parse_cid(cid)
        except ContentError:
            return None
        return self.failures.get(raw)

    def _drop(self, e: FileEntry, *, keep: bool = False) -> None:
        e.stopped = True
        if self.node.dht is not None:
            self.node.dht.stop_key(file_sid(e.cid))
        e.close()
        for k, v in vars(e.swarm.counters).items():
            setattr(self._closed, k, getattr(self._closed, k) + v)
        self.entries.pop(e.cid, None)
        if keep and (e.dir / "manifest").exists():
            try:
                self.partials[e.cid] = sum(f.stat().st_size for f in e.dir.iterdir() if f.is_file())
                return
            except OSError:
                pass
        shutil.rmtree(e.dir, ignore_errors=True)

    def _entry(self, cid: str) -> FileEntry:
        try:
            raw = parse_cid(cid)
        except ContentError as exc:
            raise ValueError(str(exc)) from None
        e = self.entries.get(raw)
        if e is None:
            raise LookupError(f"file {cid} is not here")
        return e

    def holds(self, cid: bytes) -> bool:
        """Whether this node has the whole file ``cid`` already."""
        e = self.entries.get(cid)
        return e is not None and e.done

    def close(self) -> None:
        for e in self.entries.values():
            e.close()


def parse_target(text: str) -> FileLink:
    """A CID or an ``oasis://file/`` link (ValueError, a LinkError with its code, if not): a
    link in any case, either around spaces (a pasted line end)."""
    try:
        if is_link(text):
            return parse_file_link(text)
        return FileLink(parse_cid(text.strip()))
    except LinkError:
        raise  # a ValueError with its code
    except ContentError as exc:
        raise ValueError(str(exc)) from None


def _verified_blocks(d: Path, m: Manifest) -> dict[int, list[bytes] | None]:
    """Blocks of a partial download with a stored proof: index -> proof if the block on
    disk verifies against the manifest, None if it does not (re-fetched)."""
    out: dict[int, list[bytes] | None] = {}
    with open(d / "data", "rb") as data, open(d / "proofs", "rb") as proofs:
        for i in range(m.blocks):
            slot = proofs.read(PROOF_SLOT)
            if len(slot) < PROOF_SLOT:
                break
            n = slot[0]
            if n == 0 or n > content.MAX_DEPTH:
                continue  # never written
            proof = [slot[1 + 32 * k: 33 + 32 * k] for k in range(n)]
            data.seek(i * BLOCK_SIZE)
            block = data.read(m.block_len(i))
            out[i] = proof if content.verify_block(m, i, block, proof) else None
    return out


def _copy_and_hash(src: Path, dest_dir: Path, size: int, mime: str,
                   stop: threading.Event | None = None) -> tuple[Manifest, content.MerkleTree]:
    dest_dir.mkdir(parents=True)
    leaves = []
    got = 0  # bytes read: a /proc file's size is 0 whatever it holds
    with open(src, "rb") as f, open(dest_dir / "data", "wb") as out:
        i = 0
        while True:
            if stop is not None and stop.is_set():
                out.close()
                shutil.rmtree(dest_dir, ignore_errors=True)
                raise ContentError("stopped", "stopped while copying")
            block = f.read(BLOCK_SIZE)
            if not block and i > 0:
                break
            leaves.append(content.leaf_hash(i, block))
            out.write(block)
            got += len(block)
            i += 1
            if len(block) < BLOCK_SIZE or got > size:
                break
    if got != size or len(leaves) != content.blocks_of(size):
        # (/proc/self/environ was published as a 0-byte file holding its bytes: its store
        # entry then failed its check at the next start)
        raise ContentError("changed", f"{got:,} bytes read, not its size {size:,}: a file that "
                           "changed while it was read, or one whose size is not known (/proc, /sys)")
    tree = content.MerkleTree(leaves)
    m = Manifest(content.MANIFEST_VERSION, content.safe_name(src.name), size, BLOCK_SIZE, mime, tree.root)
    (dest_dir / "manifest").write_bytes(m.encode())
    return m, tree


def _hash_file(path: Path, m: Manifest) -> tuple[Manifest, content.MerkleTree]:
    """Re-hash a stored file: the manifest it really has (same name/mime as ``m``) and its tree."""
    if path.stat().st_size != m.size:
        raise ContentError("bad_stored", "stored size differs from the manifest")
    with open(path, "rb") as f:
        leaves = [content.leaf_hash(i, f.read(m.block_len(i))) for i in range(m.blocks)]
    tree = content.MerkleTree(leaves)
    return Manifest(m.version, m.name, m.size, m.block_size, m.mime, tree.root), tree
