"""The node's messaging service: stream chat and direct messages over its links.

A thin executor of the sans-I/O cores :class:`~oasis.core.chat.ChatRoom` (one per
stream the node carries, created on first use) and :class:`~oasis.core.dm.DmRouter`:
the node hands it chat and DM messages (``on_chat``, ``on_dm``) and link/join events;
it gives the cores the node's clock and routing view (a stream's neighbours are the
peers that JOINed it with us, per the peer policy), sends what they ask, keeps bounded
histories and publishes bus events (``chat.message``, ``chat.moderation``,
``dm.received``, ``dm.acked``). Its public methods are the local API's backend:
``ValueError`` = bad input, ``LookupError`` = unknown id, ``PermissionError`` = not
allowed; results are JSON-serialisable dicts.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from oasis.core import chat as ch
from oasis.core import dm, wire
from oasis.core.identity import Identity, key_of_peer_id, peer_id_of, verify
from oasis.core.metrics import counter_dict

if TYPE_CHECKING:
    from .node import Node

MAX_HISTORY = 500  #: chat messages kept per stream
MAX_INBOX = 1000  #: direct messages kept
MAX_SENT = 1000  #: states of our direct messages kept
MAX_WAITING_PEERS = 32  #: known-but-unlinked peers we are dialling to hand envelopes to
MAX_WAITING_PER_PEER = 16
log = logging.getLogger(__name__)
PREKEY_FILE = "dm_prekeys"  #: in the data dir: our prekeys, private halves included (0600)
INBOX_FILE = "dm_inbox"  #: in the data dir: the direct messages received (JSON lines, 0600)
MAX_INBOX_FILE = 8 * 1024 * 1024  #: bytes of it read at start (1,000 messages are < 7 MB)

LOCATE_TIMEOUT = 3.0  #: s a DM waits for the DHT lookup of its recipient's nearest nodes
MAX_NEAR = 64  #: recipients whose nearest nodes are remembered


class _InboxRecord(msgspec.Struct, forbid_unknown_fields=True):
    """One line of the inbox file (decoded strictly: a damaged line is skipped)."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    sender: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    text: Annotated[str, msgspec.Meta(max_length=4096)]
    time: float


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=").lower()


def _ms(t: float) -> int:
    """An inbox record's time in ms, clamped (a damaged line may hold 1e308 or NaN)."""
    return int(t * 1000) if math.isfinite(t) and 0 <= t < 2**40 else 0


def _unb32(text: str) -> bytes | None:
    """A message id from its inbox text (None: not one, e.g. a hand-edited line)."""
    try:
        raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except (ValueError, TypeError):
        return None
    return raw if len(raw) == 16 else None


def read_prekeys(data_dir: str | os.PathLike[str], identity: Identity) -> tuple[Path, bytes | None]:
    """``<data_dir>/dm_prekeys`` and what it holds (None: no file yet), checked against
    ``identity`` before the node starts: a damaged or foreign file is a one-line error
    naming it, never silently replaced (the mail held under its prekeys would be lost)."""
    from oasis.datafiles import DataFileError, private_dir, read_small

    path = private_dir(data_dir) / PREKEY_FILE
    if not path.exists():
        return path, None
    blob = read_small(path, "the DM prekey file", limit=64 * 1024)
    try:
        dm.DmRouter(identity, verify, os.urandom).import_prekeys(blob, time.time())
    except ValueError as exc:
        raise DataFileError(path, f"not a DM prekey file of this identity ({exc})",
                            "move it away to start without the old prekeys (direct messages "
                            "held for this node under them will not open)") from None
    return path, blob


class Messaging:
    """Chat and direct messages of one node; see the module docstring."""

    def __init__(self, node: Node, *, chat_config: ch.ChatConfig | None = None,
                 dm_config: dm.DmConfig | None = None,
                 entropy: Callable[[int], bytes] = os.urandom) -> None:
        self.node = node
        self.chat_config = chat_config or ch.ChatConfig()
        self.rooms: dict[bytes, ch.ChatRoom] = {}
        self.history: dict[bytes, deque[dict[str, Any]]] = {}
        self.dm = dm.DmRouter(node.identity, verify, entropy, dm_config, now=node.clock())
        self.inbox: deque[dict[str, Any]] = deque(maxlen=MAX_INBOX)
        #: who to hand a DM to when its recipient is not linked: (recipient key, k) ->
        #: peers. Default: the peers closest to it (XOR) among those linked and the
        #: candidates the tracker/links named (dialled first); a DHT lookup plugs in here.
        self.closest: Callable[[bytes, int], list[bytes]] = self._closest_known
        self.unrouted = 0  #: chat/DM messages for a stream this node does not carry
        #: envelopes for known peers being dialled (sent when their link comes up)
        self.waiting: dict[bytes, list[wire.DmEnvelope | wire.DmPrekey]] = {}
        self.mail_checked = False  #: dialled the peers closest to us once (they may hold our mail)
        self.dials = 0
        self.unsendable = 0  #: envelopes for a peer neither linked nor dialable (dropped)
        self.chat_bytes = 0  #: OFTP bytes of chat/moderation messages sent (frames, not QUIC)
        #: recipient -> the nodes nearest its DHT id a lookup found (bounded, newest last)
        self.near: dict[bytes, list[tuple[bytes, str, int]]] = {}
        self._prekey_path: Path | None = None  #: where our prekeys are kept (keep_prekeys)
        self._inbox_path: Path | None = None  #: where received DMs are kept (keep_inbox)
        self._inbox_ids: set[str] = set()  #: ids in the inbox (a re-delivery is not shown twice)
        self._inbox_lines = 0  #: records in the inbox file (compacted at 2 x MAX_INBOX)
        self.inbox_bad_lines = 0  #: damaged lines skipped when the inbox file was loaded
        #: received DMs not yet at rest, and the sends (acks) that wait for them (§19.3)
        self._unwritten: list[bytes] = []
        self._after_write: list[dm.SendDm] = []
        self._writing = False  #: a write of the inbox is under way (off the event loop)
        self.inbox_writes = 0  #: writes (each one fsync) that kept received DMs
        self._prekeys_saved = -1  #: the DmRouter.prekeys_version last saved
        #: the DM core's timer (mail held over a linked recipient's rate, relayed as it refills)
        self._dm_timer: asyncio.TimerHandle | None = None
        self._dm_timer_at = 0.0
        if node.dht is not None:
            node.dht.on_joined = self.dht_joined

    # ---- routing views ------------------------------------------------------------
    def _linked(self, peer: bytes) -> bool:
        p = self.node.policy.peers.get(peer)
        return p is not None and not p.closing

    def _closest_linked(self, target: bytes, k: int) -> list[bytes]:
        return dm.closest(target, [q for q, p in self.node.policy.peers.items() if not p.closing], k)

    def _closest_known(self, target: bytes, k: int) -> list[bytes]:
        known = {q for q, p in self.node.policy.peers.items() if not p.closing}
        known.update(self.node.policy.candidates)
        dht = self.node.dht
        if dht is not None:  # the DHT's contacts, and the nodes a lookup of target found
            known.update(dht.contacts())
            known.update(k_ for k_, _, _ in self.near.get(target, ()))
        known.discard(self.node.identity.public)
        return dm.closest(target, known, k)

    def _address(self, peer: bytes) -> tuple[str, int] | None:
        entry = self.node.policy.candidates.get(peer)
        if entry is not None:
            return entry[0].host, entry[0].port
        for nodes in self.near.values():
            for k_, h, p in nodes:
                if k_ == peer:
                    return h, p
        dht = self.node.dht
        return dht.address_of(peer) if dht is not None else None

    def _dial_known(self, peer: bytes) -> bool:
        """Link to a peer we know an address of (a candidate, a DHT contact) to hand it
        envelopes; False if unknown. Through the DHT's service links when the node runs the
        DHT (no JOIN, not a neighbour), else an ordinary dial."""
        addr = self._address(peer)
        if addr is None or len(self.waiting) >= MAX_WAITING_PEERS:
            return False
        self.dials += 1
        self.waiting.setdefault(peer, [])
        dht = self.node.dht
        if dht is not None:
            if not dht.open_link(peer, *addr):
                self.waiting.pop(peer, None)
                return False
            return True
        self.node.spawn(self._dial(peer, *addr))
        return True

    def dht_joined(self) -> None:
        """The DHT's join ended: the nodes nearest our id are where senders left our mail
        (§19.3); link to them so they hand it over."""
        dht = self.node.dht
        if dht is None:
            return
        for key, _h, _p in dht.near_self[: self.dm.config.k]:
            if not self._linked(key):
                self._dial_known(key)

    async def locate(self, to: bytes) -> None:
        """Before handing a DM for an unlinked recipient to storers: look up the nodes
        nearest its id in the DHT (the same nodes its own join reaches), bounded."""
        dht = self.node.dht
        if dht is None or self._linked(to):
            return
        nodes = await dht.find_nodes(to, LOCATE_TIMEOUT)
        if nodes:
            self.near.pop(to, None)
            self.near[to] = nodes
            while len(self.near) > MAX_NEAR:
                del self.near[next(iter(self.near))]

    async def _dial(self, peer: bytes, host: str, port: int) -> None:
        if not await self.node.connect(peer_id_of(peer), host, port):
            self.waiting.pop(peer, None)  # its envelopes went nowhere: the ACK never comes

    def _neighbours(self, skey: bytes) -> list[bytes]:
        return [q for q, p in self.node.policy.peers.items() if skey in p.joined and not p.closing]

    def _room(self, skey: bytes) -> ch.ChatRoom | None:
        room = self.rooms.get(skey)
        if room is None:
            ls = self.node.streams.get(skey)
            if ls is None:
                return None
            room = self.rooms[skey] = ch.ChatRoom(skey, ls.sid.broadcaster, verify, self.chat_config)
            self.history[skey] = deque(maxlen=MAX_HISTORY)
        return room

    def _stream_key(self, stream_id: str) -> bytes:
        if not isinstance(stream_id, str) or not stream_id:
            raise ValueError("stream id must be a non-empty string")
        for skey, ls in self.node.streams.items():
            if ls.text_id == stream_id:
                return skey
        raise LookupError(f"this node does not carry stream {stream_id[:140]!r}")

    # ---- node hooks ---------------------------------------------------------------
    def on_chat(self, peer: bytes, msg: wire.ChatMsg | wire.ChatMod) -> None:
        room = self._room(msg.stream)
        if room is None:
            self.unrouted += 1
            return
        room.on_message(peer, msg, self.node.clock(), self._neighbours(msg.stream))
        self._run_chat(room)

    def on_join(self, peer: bytes, skey: bytes) -> None:
        """``peer`` joined stream ``skey`` with us (the policy's AddPeer)."""
        room = self._room(skey)
        if room is not None:
            room.on_neighbour(peer, self.node.clock())
            self._run_chat(room)

    def on_dm(self, peer: bytes, msg: wire.DmEnvelope | wire.DmPrekey) -> None:
        now = self.node.clock()
        if isinstance(msg, wire.DmPrekey):
            self.dm.on_prekey(peer, msg, now)
        else:
            self.dm.on_envelope(peer, msg, now, self._linked, self.closest)
        self._run_dm()

    def on_link_up(self, peer: bytes) -> None:
        for msg in self.waiting.pop(peer, []):
            self.node.send_to(peer, msg)
        self.dm.on_link_up(peer, self.node.clock(), self._linked, self.closest)
        self._run_dm()
        if not self.mail_checked and self.node.policy.candidates:
            # Back online: the peers closest to our id (among those we know) are where
            # senders left our mail; link to them so they hand it over.
            self.mail_checked = True
            for q in self._closest_known(self.node.identity.public, self.dm.config.k):
                if not self._linked(q):
                    self._dial_known(q)

    # ---- executing the cores' actions ------------------------------------------------
    def _run_chat(self, room: ch.ChatRoom) -> None:
        for a in room.actions():
            if isinstance(a, ch.SendChat):
                self.chat_bytes += len(wire.encode(a.message)) + 4
                self.node.send_to(a.peer, a.message)
            elif isinstance(a, ch.Delivered):
                rec = self._record(a.message, a.late)
                self.history[room.stream].append(rec)
                self.node.events.publish("chat.message", rec)
            elif isinstance(a, ch.Moderated):
                r = a.record
                self.node.events.publish("chat.moderation", {
                    "stream": str(self.node.streams[room.stream].sid) if room.stream in self.node.streams else "",
                    "target": peer_id_of(r.target),
                    "action": {v: k for k, v in ch.ACTIONS.items()}[r.action],
                    "until": r.until_ms / 1000, "issued": r.issued_ms / 1000})

    def _record(self, m: wire.ChatMsg, late: bool = False) -> dict[str, Any]:
        ls = self.node.streams.get(m.stream)
        return {"id": f"{peer_id_of(m.sender)}:{m.seq}", "stream": ls.text_id if ls else "",
                "sender": peer_id_of(m.sender), "seq": m.seq, "text": m.text,
                "time": m.time_ms / 1000, "late": late}

    # ---- our prekeys at rest ------------------------------------------------------
    def keep_prekeys(self, path: Path, blob: bytes | None) -> None:
        """Keep our DM prekeys in ``path`` (0600; :func:`read_prekeys` read and checked what
        the last run saved there): mail held for us while we were away was sealed to them.
        They are saved again whenever they change."""
        if blob is not None:
            self.dm.import_prekeys(blob, self.node.clock())
        self._prekey_path = path
        self._prekeys_saved = -1
        self._save_prekeys()
        self.keep_inbox(path.parent / INBOX_FILE)  # and what they opened, beside them

    def keep_inbox(self, path: Path) -> None:
        """Keep the DMs received in ``path`` (JSON lines, 0600) and load what an earlier run
        kept there: the inbox lived in memory only, and a message received (and so acked:
        the sender's and the storing peers' copies released) was gone after a restart.
        Each is written (and fsync'd) before its acknowledgement is sent. A damaged line is
        skipped and counted (``dm_inbox_bad_lines``)."""
        from oasis.datafiles import private_file

        self._inbox_path = path
        if path.exists():
            private_file(path)
            with open(path, "rb") as f:
                raw = f.read(MAX_INBOX_FILE + 1)
            if len(raw) > MAX_INBOX_FILE:
                raw = raw[-MAX_INBOX_FILE:]
                raw = raw[raw.find(b"\n") + 1:]  # from the first whole line
            dec = msgspec.json.Decoder(_InboxRecord)
            floor = 0  #: the newest signed time (ms) among records no longer kept
            for line in raw.splitlines():
                if not line.strip():
                    continue
                try:
                    r = dec.decode(line)
                except ValueError:  # (msgspec's errors, and UnicodeDecodeError: a damaged line)
                    self.inbox_bad_lines += 1
                    continue
                self._inbox_lines += 1
                if r.id not in self._inbox_ids:
                    if len(self.inbox) == MAX_INBOX:
                        floor = max(floor, _ms(self.inbox[0]["time"]))
                    self.inbox.append(msgspec.structs.asdict(r))
                    self._inbox_ids.add(r.id)
            if self.inbox_bad_lines:
                log.warning("%s: %d damaged lines skipped", path, self.inbox_bad_lines)
            if len(self.inbox) == MAX_INBOX or len(raw) >= MAX_INBOX_FILE:
                # older records may have been dropped (compaction): nothing older is taken
                floor = max(floor, min(_ms(r["time"]) for r in self.inbox) - 1)
            # the messages received before are not taken again as new (a replay by a storer
            # that kept one), across the restart too (docs/oftp.md §19.3)
            ids = ((_unb32(r["id"]), _ms(r["time"])) for r in self.inbox)
            self.dm.remember_opened([(m, t) for m, t in ids if m is not None], floor)
        self._inbox_ids = {r["id"] for r in self.inbox}

    def _write_lines(self, lines: list[bytes], snapshot: bytes | None) -> None:
        """Keep received DMs at rest: append ``lines`` (one fsync), or, to compact, write
        ``snapshot`` (what the inbox holds) in their place. Runs in a worker thread."""
        from oasis.datafiles import replace

        assert self._inbox_path is not None
        try:
            if snapshot is not None:
                replace(self._inbox_path, snapshot)
            else:
                fd = os.open(self._inbox_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, b"".join(lines))
                    os.fsync(fd)
                finally:
                    os.close(fd)  # (created 0600; an older file was tightened at load)
        except OSError as exc:  # a full disk: the messages are shown this run; say so
            log.warning("could not keep %d received DMs in %s: %s", len(lines), self._inbox_path, exc)

    def _compact_snapshot(self, n: int) -> bytes | None:
        if self._inbox_lines + n <= 2 * MAX_INBOX:
            return None
        return b"".join(msgspec.json.encode(r) + b"\n" for r in self.inbox)

    async def _write_inbox(self) -> None:
        """Group commit: every DM received while a write is under way goes into the next
        one, and the sends that waited for them (their acks) go out once it is done. Until
        2026-12-03 each received DM was written and fsync'd on the event loop: an outside
        attacker's valid DMs over 8 links (the per-link rate, 20/s each) took a
        broadcaster's API from 0.4 ms to 364 ms (p50) while its CPU stayed at 10 %."""
        try:
            while self._unwritten:
                lines, self._unwritten = self._unwritten, []
                sends, self._after_write = self._after_write, []
                snapshot = self._compact_snapshot(len(lines))
                await asyncio.to_thread(self._write_lines, lines, snapshot)
                self._inbox_lines = len(self.inbox) if snapshot is not None else self._inbox_lines + len(lines)
                self.inbox_writes += 1
                for a in sends:
                    self._send_dm(a)
        finally:
            self._writing = False
            if not self._unwritten:  # sends deferred behind the last write, none of their own
                sends, self._after_write = self._after_write, []
                for a in sends:
                    self._send_dm(a)

    def _save_prekeys(self) -> None:
        if self._prekey_path is None or self._prekeys_saved == self.dm.prekeys_version:
            return
        from oasis.datafiles import replace

        try:
            replace(self._prekey_path, self.dm.export_prekeys())
            self._prekeys_saved = self.dm.prekeys_version
        except OSError as exc:  # a full disk: DMs still work this run; say so once
            if self._prekeys_saved != -2:
                log.warning("could not save DM prekeys to %s: %s", self._prekey_path, exc)
            self._prekeys_saved = -2

    def _arm_dm_timer(self) -> None:
        at = self.dm.next_deadline()
        if at is None or self.node.closing or (self._dm_timer is not None and self._dm_timer_at <= at):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a unit test driving the core)
            return
        if self._dm_timer is not None:
            self._dm_timer.cancel()
        self._dm_timer_at = at
        self._dm_timer = loop.call_later(max(0.0, at - self.node.clock()), self._on_dm_timer)

    def _on_dm_timer(self) -> None:
        self._dm_timer = None
        if self.node.closing:
            return
        self.dm.on_timer(self.node.clock(), self._linked)
        self._run_dm()

    def _run_dm(self) -> None:
        self._save_prekeys()
        self._arm_dm_timer()
        actions = self.dm.actions()
        # what we received is kept at rest before any acknowledgement of it goes out
        actions.sort(key=lambda a: not isinstance(a, dm.DmReceived))
        sends: list[dm.SendDm] = []
        for a in actions:
            if isinstance(a, dm.SendDm):
                sends.append(a)
            elif isinstance(a, dm.DmReceived):
                mid = _b32(a.id)
                if mid in self._inbox_ids:
                    continue  # delivered again after a restart (its ack was lost): shown once
                rec: dict[str, Any] = {"id": mid, "sender": peer_id_of(a.sender), "text": a.text, "time": a.time}
                self.inbox.append(rec)
                self._inbox_ids.add(mid)
                if len(self._inbox_ids) > 2 * MAX_INBOX:  # bounded: the ids the inbox still holds
                    self._inbox_ids = {r["id"] for r in self.inbox}
                if self._inbox_path is not None:
                    self._unwritten.append(msgspec.json.encode(rec) + b"\n")
                self.node.events.publish("dm.received", rec)
            elif isinstance(a, dm.DmAcked):
                self.node.events.publish("dm.acked", {"id": _b32(a.id), "to": peer_id_of(a.to)})
        if not self._unwritten and not self._writing:
            for a in sends:
                self._send_dm(a)
            return
        self._after_write.extend(sends)
        if not self._writing:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a unit test driving the core): write here
                lines, self._unwritten = self._unwritten, []
                snapshot = self._compact_snapshot(len(lines))
                self._write_lines(lines, snapshot)
                self._inbox_lines = len(self.inbox) if snapshot is not None else self._inbox_lines + len(lines)
                self.inbox_writes += 1
                sends, self._after_write = self._after_write, []
                for a in sends:
                    self._send_dm(a)
                return
            self._writing = True
            task = loop.create_task(self._write_inbox())
            self.node._tasks.add(task)  # cancelled and awaited by Node.close
            task.add_done_callback(self.node._tasks.discard)

    def _send_dm(self, a: dm.SendDm) -> None:
        if self._linked(a.peer):
            self.node.send_to(a.peer, a.message)
        elif a.peer in self.waiting or self._dial_known(a.peer):
            box = self.waiting.setdefault(a.peer, [])
            if len(box) < MAX_WAITING_PER_PEER:
                box.append(a.message)
            else:
                self.unsendable += 1
        else:
            self.unsendable += 1  # neither linked nor a candidate we can dial now

    # ---- public API (the local API's backend) ---------------------------------------
    async def chat_send(self, stream_id: str, text: str) -> dict[str, Any]:
        skey = self._stream_key(stream_id)
        room = self._room(skey)
        assert room is not None
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        msg = room.post(self.node.identity.public, self.node.identity.sign, text, self.node.clock(),
                        self._neighbours(skey))
        self._run_chat(room)
        rec = self._record(msg)
        rec.pop("late")
        return rec

    def chat_history(self, stream_id: str, limit: int = 100,
                     after_time: float | None = None) -> list[dict[str, Any]]:
        skey = self._stream_key(stream_id)
        if not isinstance(limit, int) or limit < 1:
            raise ValueError("limit must be a positive integer")
        limit = min(limit, MAX_HISTORY)  # no more are kept
        self._room(skey)
        items = [r for r in self.history.get(skey, ()) if after_time is None or r["time"] > after_time]
        return [dict(r) for r in items[-limit:]]

    async def chat_moderate(self, stream_id: str, peer_id: str, action: str,
                            seconds: float = 600) -> dict[str, Any]:
        skey = self._stream_key(stream_id)
        room = self._room(skey)
        assert room is not None
        if action not in ch.ACTIONS:
            raise ValueError("action must be mute, ban or unmute")
        try:
            target = key_of_peer_id(peer_id)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad peer id: {exc}") from None
        if room.broadcaster != self.node.identity.public:
            raise PermissionError("only the stream's broadcaster moderates its chat")
        if not isinstance(seconds, (int, float)):
            raise ValueError("seconds must be a number")
        rec = room.moderate(self.node.identity.sign, target, ch.ACTIONS[action], float(seconds),
                            self.node.clock(), self._neighbours(skey))
        self._run_chat(room)
        return {"stream": stream_id, "target": peer_id, "action": action,
                "until": rec.until_ms / 1000, "issued": rec.issued_ms / 1000}

    async def dm_send(self, peer_id: str, text: str) -> dict[str, Any]:
        try:
            to = key_of_peer_id(peer_id)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad peer id: {exc}") from None
        if not dm.can_seal_to(to):
            raise ValueError("bad peer id: no message can be sealed to this key (a low-order point)")
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        await self.locate(to)  # the DHT's nodes nearest the recipient: its stores
        out = self.dm.send(to, text, self.node.clock(), self._linked, self.closest)
        self._run_dm()
        mid = next(k for k, v in reversed(self.dm.outbox.items()) if v is out)
        return {"id": _b32(mid), "to": peer_id_of(to), "state": out.state}

    def dm_state(self, msg_id: str) -> dict[str, Any]:
        for k, v in self.dm.outbox.items():
            if _b32(k) == msg_id:
                return {"id": msg_id, "to": peer_id_of(v.to), "state": v.state}
        raise LookupError(f"no direct message {msg_id[:40]!r} sent by this node")

    def dm_inbox(self, limit: int = 100, after_time: float | None = None) -> list[dict[str, Any]]:
        if not isinstance(limit, int) or not 1 <= limit <= MAX_INBOX:
            raise ValueError(f"limit must be 1..{MAX_INBOX}")
        items = [r for r in self.inbox if after_time is None or r["time"] > after_time]
        return [dict(r) for r in items[-limit:]]

    def counters(self) -> dict[str, int]:
        out: dict[str, int] = {f"dm_{k}": v for k, v in counter_dict(self.dm.counters).items()}
        out["dm_inbox_bad_lines"] = self.inbox_bad_lines
        out["dm_inbox_writes"] = self.inbox_writes  # each one fsync, for all DMs received meanwhile
        total: dict[str, int] = {}
        for room in self.rooms.values():
            for k, v in counter_dict(room.counters).items():
                total[k] = total.get(k, 0) + v
        for k in counter_dict(ch.ChatCounters()):
            out[f"chat_{k}"] = total.get(k, 0)
        out["dm_held"] = self.dm.mailbox.total
        out["messaging_unrouted"] = self.unrouted
        out["dm_store_dials"] = self.dials
        out["dm_unsendable"] = self.unsendable
        out["chat_bytes_sent"] = self.chat_bytes
        return out
