"""The asyncio node: runs the sans-I/O swarm cores over real QUIC links.

Theory of operation
-------------------
A :class:`Node` owns one :class:`~oasis.node.transport.Endpoint` (one UDP
socket) and, per stream, a :class:`LiveStream`: the :class:`~oasis.core.swarm.Swarm`
core, the viewer's measurements and the ordered playout the gateway reads.
Session events from the endpoint become core inputs; core actions become
sends, chunk streams, HTTP origin fetches, deliveries and skips. After every
input the stream's timer is re-armed at the core's next deadline. The swarm
core sees wall-clock seconds (``time.time``) because chunk times are the
broadcaster's wall clock; aioquic runs on the loop's monotonic clock.

Links: a node dials peers the tracker names until it has ``target_neighbours``
and accepts incoming links up to ``max_neighbours``. When two nodes dial each
other at once, both keep the link dialled by the smaller key.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from oasis.core import session as ss
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, key_of_peer_id, peer_id_of
from oasis.core.metrics import ViewerRecord
from oasis.core.stream import StreamId, is_keyframe
from oasis.core.wire import ErrorCode

from .transport import Endpoint, Link

log = logging.getLogger("oasis.node")


@dataclass
class Playout:
    """Chunks in sequence order for the player gateway; skips mark gaps."""

    start: int | None = None
    chunks: dict[int, bytes] = field(default_factory=dict)
    skipped: set[int] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    keep: int = 600

    def add(self, seq: int, payload: bytes, start: int) -> None:
        """Add a verified chunk; ``start`` is the swarm's first sequence (a keyframe)."""
        if self.start is None:
            self.start = start
        if seq < self.start:
            return
        self.chunks[seq] = payload
        if len(self.chunks) > self.keep:
            for old in sorted(self.chunks)[: len(self.chunks) - self.keep]:
                del self.chunks[old]
        self._notify()

    def skip(self, seq: int) -> None:
        self.skipped.add(seq)
        if len(self.skipped) > self.keep:
            self.skipped = set(sorted(self.skipped)[-self.keep:])
        self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class LiveStream:
    """One stream inside a node: swarm core + measurements + playout."""

    def __init__(self, node: Node, sid: StreamId, *, is_source: bool, origin_url: str | None) -> None:
        self.node = node
        self.sid = sid
        self.text_id = str(sid)
        self.is_source = is_source
        self.origin_url = origin_url
        now = node.clock()
        self.swarm = sw.Swarm(sid, node.identity.public, node.config, is_source=is_source,
                              rng=random.Random(node.rng.random()), now=now)
        self.record = ViewerRecord(joined_at=now, playout_delay=node.config.playout_delay)
        self.playout = Playout()
        self.produced: dict[int, float] = {}  # source only: seq -> time
        self.origin_fetches = 0
        self.origin_failures = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def pump(self) -> None:
        node = self.node
        for a in self.swarm.actions():
            if isinstance(a, sw.Send):
                link = node.links_by_peer.get(a.peer)
                if link is not None:
                    link.send(a.message)
            elif isinstance(a, sw.Push):
                link = node.links_by_peer.get(a.peer)
                if link is not None:
                    link.send_chunk(a.chunk, a.deadline)
            elif isinstance(a, sw.Deliver):
                self._deliver(a)
            elif isinstance(a, sw.Skip):
                self.record.skip(a.seq)
                self.playout.skip(a.seq)
            elif isinstance(a, sw.FetchOrigin):
                node.spawn(self._fetch_origin(a.seq, a.deadline))
            elif isinstance(a, sw.DropPeer):
                node.counters["peers_dropped_bad_chunks"] += 1
                link = node.links_by_peer.get(a.peer)
                if link is not None:
                    link.close(a.code, a.reason)
                node.ban(a.peer)
        self._arm()

    def _deliver(self, a: sw.Deliver) -> None:
        c = a.chunk
        kf = is_keyframe(c)
        if not self.is_source:
            self.record.delivered(c.seq, c.time_us / 1e6, a.at, a.source, len(c.payload), kf)
        self.playout.add(c.seq, c.payload, self.swarm.start_seq if self.swarm.start_seq is not None else c.seq)
        rewards = self.node.rewards
        if rewards is not None and a.source == sw.SOURCE_P2P and a.peer is not None:
            rewards.on_media(a.peer, len(c.payload), a.at)

    def _arm(self) -> None:
        t = self.swarm.get_timer()
        if t is None:
            return
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= t:
                return
            self._timer.cancel()
        delay = max(0.0, t - self.node.clock())
        self._timer_at = t
        self._timer = self.node.loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.node.clock()
        t = self.swarm.get_timer()
        if t is not None and t > now:
            self._arm()  # the deadline moved later since this timer was set: nothing due
            return
        self.swarm.handle_timer(now)
        self.pump()

    async def _fetch_origin(self, seq: int, deadline: float) -> None:
        chunk: wire.ChunkMsg | None = None
        if self.origin_url:
            self.origin_fetches += 1
            url = f"{self.origin_url.rstrip('/')}/{self.text_id}/{seq}.chunk"
            timeout = max(0.05, deadline - self.node.clock())
            try:
                async with self.node.http.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                    if r.status == 200:
                        body = await r.content.read(wire.MAX_CHUNK_MESSAGE + 1)
                        chunk = wire.decode_chunk(body)
            except (aiohttp.ClientError, TimeoutError, wire.WireError) as exc:
                self.origin_failures += 1
                log.debug("origin fetch %s failed: %s", url, exc)
        self.swarm.on_origin(seq, chunk, self.node.clock())
        self.pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class Node:
    def __init__(self, identity: Identity, config: sw.SwarmConfig, *, host: str = "127.0.0.1",
                 port: int = 0, target_neighbours: int = 6, max_neighbours: int = 12,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 link_delay: float = 0.0) -> None:
        self.identity = identity
        self.config = config
        self.host, self.port = host, port
        self.target_neighbours = target_neighbours
        self.max_neighbours = max_neighbours
        self.clock = clock
        self.rng = rng or random.Random()
        self.loop = asyncio.get_running_loop()
        self.endpoint = Endpoint(identity, on_event=self._on_event, clock=clock, rng=self.rng,
                                 max_links=max_neighbours * 2 + 8, link_delay=link_delay)
        self.streams: dict[bytes, LiveStream] = {}
        self.links_by_peer: dict[bytes, Link] = {}
        self.joined: dict[bytes, set[bytes]] = {}  # peer -> stream keys it joined with us
        self.banned: dict[bytes, float] = {}
        self.dialling: set[bytes] = set()
        self.counters: dict[str, int] = {"violations": 0, "peers_dropped_bad_chunks": 0,
                                         "links_refused": 0, "dial_failures": 0}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.http: aiohttp.ClientSession = aiohttp.ClientSession()
        self.closed_links_stats = {"control": 0, "chunk_stream": 0, "media": 0, "wire": 0}
        self.rewards: Any = None  #: oasis.node.rewards.Rewards when proof of relay is on

    async def start(self) -> tuple[str, int]:
        self.host, self.port = await self.endpoint.listen(self.host, self.port)
        return self.host, self.port

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    def spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add_stream(self, sid: StreamId, *, is_source: bool, origin_url: str | None = None) -> LiveStream:
        ls = LiveStream(self, sid, is_source=is_source, origin_url=origin_url)
        self.streams[sid.key] = ls
        return ls

    def ban(self, peer: bytes, seconds: float = 60.0) -> None:
        self.banned[peer] = self.clock() + seconds

    def neighbour_count(self) -> int:
        return len(self.links_by_peer)

    # ---- dialling ------------------------------------------------------------
    async def connect(self, peer_id: str, host: str, port: int, timeout: float = 5.0) -> bool:
        try:
            key = key_of_peer_id(peer_id)
        except ValueError:
            return False
        if key == self.identity.public or key in self.links_by_peer or key in self.dialling:
            return False
        if self.banned.get(key, 0) > self.clock():
            return False
        self.dialling.add(key)
        try:
            link = self.endpoint.dial((host, port), key)
            await asyncio.wait_for(asyncio.shield(link.handshake_done), timeout)
            return True
        except (TimeoutError, ConnectionError, OSError) as exc:
            self.counters["dial_failures"] += 1
            log.debug("dial %s:%s failed: %s", host, port, exc)
            return False
        finally:
            self.dialling.discard(key)

    # ---- session events ------------------------------------------------------
    def _on_event(self, link: Link, ev: ss.Event) -> None:
        if isinstance(ev, ss.Authenticated):
            self._on_authenticated(link, ev.peer_key)
        elif isinstance(ev, ss.MessageReceived):
            self._on_message(link, ev.message)
        elif isinstance(ev, ss.ChunkReceived):
            peer = link.peer_key
            ls = self.streams.get(ev.chunk.stream)
            if ls is not None and peer is not None and ev.chunk.stream in self.joined.get(peer, ()):
                ls.swarm.on_chunk(peer, ev.chunk, self.clock())
                ls.pump()
        elif isinstance(ev, ss.Violation):
            self.counters["violations"] += 1
            log.warning("protocol violation from %s: %s %s", link.addr, ev.code.name, ev.detail)
        elif isinstance(ev, ss.Closed):
            self._on_closed(link)

    def _on_authenticated(self, link: Link, peer: bytes) -> None:
        if self.banned.get(peer, 0) > self.clock():
            link.close(ErrorCode.TOO_MANY_ERRORS, "banned")
            return
        existing = self.links_by_peer.get(peer)
        if existing is not None and existing is not link and not existing.closed:
            # Simultaneous dial: keep the link dialled by the smaller key.
            mine_dialled = link.session.is_dialler
            keep_new = (self.identity.public < peer) == mine_dialled
            if not keep_new:
                link.close(ErrorCode.NO_ERROR, "duplicate link")
                return
            self.links_by_peer[peer] = link
            existing.close(ErrorCode.NO_ERROR, "duplicate link")
        elif not link.session.is_dialler and len(self.links_by_peer) >= self.max_neighbours:
            self.counters["links_refused"] += 1
            link.close(ErrorCode.OVERLOADED, "neighbour limit reached")
            return
        self.links_by_peer[peer] = link
        self.joined.setdefault(peer, set())
        if self.rewards is not None:
            link.send(self.rewards.hello())
        if link.session.is_dialler:
            for ls in self.streams.values():
                link.send(wire.Join(stream=ls.text_id))

    def _on_message(self, link: Link, msg: wire.Message) -> None:
        peer = link.peer_key
        if peer is None or self.links_by_peer.get(peer) is not link:
            return
        now = self.clock()
        if isinstance(msg, wire.Join):
            ls = next((s for s in self.streams.values() if s.text_id == msg.stream), None)
            if ls is None:
                link.send(wire.Error(code=int(ErrorCode.UNKNOWN_STREAM), reason=msg.stream[:200]))
                return
            joined = self.joined.setdefault(peer, set())
            if ls.sid.key in joined:
                return
            joined.add(ls.sid.key)
            if not link.session.is_dialler:
                link.send(wire.Join(stream=ls.text_id))
            ls.swarm.add_peer(peer, now, rtt=link.rtt)
            ls.pump()
            return
        if isinstance(msg, wire.Error):
            log.info("peer %s reports error %s: %s", link.addr, msg.code, msg.reason)
            return
        if isinstance(msg, (wire.WalletBind, wire.TicketMsg, wire.ReceiptMsg)):
            self._on_ledger_message(peer, msg)
            return
        skey = getattr(msg, "stream", None)
        ls = self.streams.get(skey) if isinstance(skey, bytes) else None
        if ls is None or skey not in self.joined.get(peer, ()):
            self.counters["violations"] += 1
            log.warning("%s for a stream %s has not joined", type(msg).__name__, link.addr)
            return
        if isinstance(msg, wire.Status):
            ls.swarm.set_rtt(peer, link.rtt)  # parents are chosen on it: keep it current
        ls.swarm.on_message(peer, msg, now)
        ls.pump()

    def _on_ledger_message(self, peer: bytes, msg: wire.Message) -> None:
        r = self.rewards
        if r is None:
            return  # this node takes no part in proof of relay: ignore, not an error
        if isinstance(msg, wire.WalletBind):
            if not r.on_wallet(peer, msg):
                self.counters["violations"] += 1
        elif r.ledger is not None and r.issuer is None:  # relays verify; broadcasters are not paid
            if isinstance(msg, wire.TicketMsg):
                r.on_ticket(msg)
            elif isinstance(msg, wire.ReceiptMsg):
                r.on_receipt(msg)

    def send_to(self, peer: bytes, msg: wire.Message) -> None:
        link = self.links_by_peer.get(peer)
        if link is not None:
            link.send(msg)

    def _on_closed(self, link: Link) -> None:
        peer = link.peer_key
        c = link.session.counters
        self.closed_links_stats["control"] += c.control_in + c.control_out
        self.closed_links_stats["chunk_stream"] += c.chunk_stream_in + c.chunk_stream_out
        self.closed_links_stats["media"] += c.media_in + c.media_out
        self.closed_links_stats["wire"] += link.wire_in + link.wire_out
        if peer is None or self.links_by_peer.get(peer) is not link:
            return
        del self.links_by_peer[peer]
        now = self.clock()
        for skey in self.joined.pop(peer, set()):
            ls = self.streams.get(skey)
            if ls is not None:
                ls.swarm.remove_peer(peer, now)
                ls.pump()

    # ---- accounting ------------------------------------------------------------
    def traffic(self) -> dict[str, int]:
        """Bytes sent+received on all links (live and closed): OFTP and UDP level."""
        t = dict(self.closed_links_stats)
        for link in self.endpoint.links:
            c = link.session.counters
            t["control"] += c.control_in + c.control_out
            t["chunk_stream"] += c.chunk_stream_in + c.chunk_stream_out
            t["media"] += c.media_in + c.media_out
            t["wire"] += link.wire_in + link.wire_out
        return t

    def neighbours(self) -> list[str]:
        return [peer_id_of(k) for k in self.links_by_peer]

    async def close(self) -> None:
        for ls in self.streams.values():
            ls.close()
        self.endpoint.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.close()
