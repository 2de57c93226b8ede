"""The node runs the DHT (docs/oftp.md §17): executes the sans-I/O :class:`~oasis.core.dht.Dht`.

Theory of operation
-------------------
:class:`DhtDriver` feeds the core the DHT messages that arrive on authenticated links
(with the link's proven key and the address its packets come from) and executes what
it returns:

* ``Send`` -- over the link to that key if the policy has one; else the key is dialled
  (pinned) as a **service link** (``PeerPolicy.link_up(service=True)``: no JOIN, not a
  neighbour, closed when idle) and the message waits, bounded, until the link is
  admitted. At most ``MAX_DIALS`` DHT dials run at once; a send that cannot be made
  (no key to pin, too many dials, the dial failed, a full queue) is reported to the
  core at once (``send_failed``), which fails that request and asks another node.
* ``LookupDone`` -- a providers lookup's verified records become candidates for the
  policy (``offer_candidates``: they are signed by their providers, so verified); the
  stream record's descriptor goes to whoever waits for it.

What the node asks of the DHT:

* **join** -- the first candidates any source offers (a tracker's answer, a stream
  link's bootstrap peers) bootstrap the DHT (``seed``);
* **provide** -- every stream the node carries is announced at the address the node
  announces (its EIM mapping behind a NAT), once it is playing (a viewer) or at once
  (the broadcaster, with the stream's signed descriptor); re-announced when that
  address changes;
* **find** -- whenever the policy wants candidates (its announce cadence), a providers
  lookup per stream, at most one at a time per stream and one per
  ``FIND_INTERVAL`` seconds.

The core's clock is the wall clock (records carry absolute expiry times), as the swarm's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from oasis.core import dht as dh
from oasis.core import peer as pp
from oasis.core import wire
from oasis.core.descriptor import descriptor_from_json
from oasis.core.dhtrecord import node_id
from oasis.core.metrics import counter_dict
from oasis.core.stream import StreamId

if TYPE_CHECKING:
    from .node import Node
    from .transport import Link

log = logging.getLogger("oasis.node.dht")
trace = logging.getLogger("oasis.punch")  #: DHT dials traced with the punches (OASIS_TRACE_PUNCH)

MAX_DIALS = 8  #: DHT dials at once
MAX_WAITING = 4  #: messages held for one peer while its link comes up
DIAL_TIMEOUT = 3.0  #: s for a DHT dial to authenticate (the core's timeout covers it too)
FIND_INTERVAL = 5.0  #: s between providers lookups of one stream
SEED_MAX = 8  #: candidates a bootstrap takes
#: s a short link's descriptor search goes on after its first descriptor (the newest wins)
DESCRIPTOR_GRACE = 0.5
MAX_KEYS = 256  #: non-stream names (files) provided at once (the store's per-publisher cap is 8)


class DhtDriver:
    """Executes one node's :class:`~oasis.core.dht.Dht`; see the module docstring."""

    def __init__(self, node: Node, config: dh.DhtConfig | None = None) -> None:
        self.node = node
        self.clock: Callable[[], float] = time.time  # records carry wall-clock expiries
        self.dht = dh.Dht(node.identity.public, identity=node.identity, config=config,
                          rng=node.rng, now=self.clock())
        self.counters = {"dht_dials": 0, "dht_dial_failures": 0, "dht_sends_failed": 0,
                         "dht_providers_offered": 0, "dht_providers_per_ip_dropped": 0, "dht_descriptors": 0, "dht_joins": 0,
                         "dht_candidates_withdrawn": 0}
        self._waiting: dict[bytes, list[wire.Message]] = {}
        self._dialling: dict[bytes, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.seeded = False
        self._find_at: dict[bytes, float] = {}  #: stream key -> next providers lookup allowed
        self._finding: dict[int, bytes] = {}  #: lookup id -> stream key (the node's stream)
        self._provided: dict[bytes, tuple[str, int]] = {}  #: stream key -> address announced
        self.descriptors: dict[bytes, bytes] = {}  #: our streams' descriptors (broadcaster)
        #: names provided that are not live streams (files we seed: node.files), by key
        self.keys: dict[bytes, StreamId] = {}
        #: called with (stream key, descriptor JSON) when a lookup brings the stream record's
        self.on_descriptor: Callable[[bytes, bytes], None] | None = None
        #: per stream key, who takes that stream's descriptor records (a stream the API
        #: added); the rest go to ``on_descriptor`` (the command line's stream)
        self.descriptor_hooks: dict[bytes, Callable[[bytes], None]] = {}
        self.lookups: list[dh.LookupDone] = []  #: the latest finished lookups (bounded)
        self.joined = asyncio.Event()  #: the bootstrap's join lookup ended
        #: the nodes nearest our own id that answered our join (where our DM mail waits)
        self.near_self: tuple[tuple[bytes, str, int], ...] = ()
        #: called once the join ended (the node's messaging checks for mail there)
        self.on_joined: Callable[[], None] | None = None
        self._waiters: dict[int, asyncio.Future[dh.LookupDone]] = {}  #: lookup id -> waiter

    # ---- input -----------------------------------------------------------------
    def on_message(self, link: Link, peer: bytes, msg: wire.Message) -> None:
        host, port = str(link.addr[0]), int(link.addr[1])
        self.dht.on_message(peer, host, port, msg, self.clock())
        self.run()

    def provider_dialled(self, peer: bytes, ok: bool) -> None:
        """The node's dial of ``peer`` authenticated it (``ok``) or failed: if a lookup's
        record named it, the node whose answer carried that record is credited or charged
        (§14.5: made-up providers at a victim's addresses)."""
        self.dht.provider_dialled(peer, ok, self.clock())
        self.run()

    def is_dialling(self, peer: bytes) -> bool:
        """A link to ``peer`` being set up for the DHT (the node admits it as a service link)."""
        return peer in self._dialling

    def dial_in_flight(self, peer: bytes) -> asyncio.Task[None] | None:
        """The DHT's dial of ``peer`` while it is under way (the node waits for it rather
        than dialling the same peer a second time)."""
        return self._dialling.get(peer)

    def link_admitted(self, peer: bytes) -> None:
        """The policy admitted a link to ``peer``: hand it what waited for it."""
        msgs = self._waiting.pop(peer, None)
        link = self.node.policy.link_of(peer)
        if msgs and link is not None:
            for m in msgs:
                link.send(m)

    def seed(self, found: list[pp.Candidate]) -> None:
        """Candidates from a verified source: the DHT's bootstrap, once."""
        if self.seeded or not found:
            return
        self.seeded = True
        self.counters["dht_joins"] += 1
        self.dht.bootstrap([(c.host, c.port, c.peer) for c in found[:SEED_MAX]], self.clock())
        self.run()

    def want_candidates(self) -> None:
        """The policy wants candidates: look up the providers of the streams we carry."""
        if not self.seeded:
            return
        now = self.clock()
        for skey, ls in self.node.streams.items():
            if ls.is_source or skey in self._finding.values() or self._find_at.get(skey, 0.0) > now:
                continue
            self._find_at[skey] = now + FIND_INTERVAL
            self._finding[self.dht.find_providers(ls.sid, now)] = skey
        self.run()

    async def find_descriptor(self, sid: StreamId, boots: list[pp.Candidate],
                              timeout: float) -> bytes | None:
        """A short link's way to the stream's parameters: bootstrap at ``boots``, then look
        up ``sid``'s providers until one answer carries the stream record's descriptor
        (verified by the core against the stream key), for at most ``timeout`` s."""
        loop = self.node.loop
        deadline = loop.time() + timeout
        self.seed(boots)
        via = [(c.host, c.port, c.peer) for c in boots[:SEED_MAX]]  # (asked whatever the table)
        best: tuple[int, bytes] | None = None  # (issued_at_ms, descriptor JSON): the newest seen
        pause = 0.1
        while (left := deadline - loop.time()) > 0:
            d = await self._lookup(lambda: self.dht.find_providers(sid, self.clock(), via), left)
            if d is None:
                break
            if d.descriptor:
                self.counters["dht_descriptors"] += 1
                issued = descriptor_from_json(d.descriptor).issued_at_ms  # verified by the core
                if best is None or issued > best[0]:
                    best = (issued, d.descriptor)
                if deadline - loop.time() > DESCRIPTOR_GRACE:
                    # one more look, briefly: the first answer may be a liar's old descriptor
                    # (genuinely signed) while the newest is a round trip away
                    deadline = loop.time() + DESCRIPTOR_GRACE
            elif not d.ok and not d.nodes:
                break  # nobody to ask
            # a lookup that ended at once (a peer answering records but no descriptor) is not
            # run again back to back: ~1,450 requests a second went to one hostile peer
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(2 * pause, 1.0)
        return None if best is None else best[1]

    def update_provided(self) -> None:
        """Announce the streams we carry (once playing) at the address we announce."""
        if self.node.closing:
            return
        addr = self.node.announce_address()
        if not pp.dialable(*addr):
            return
        now = self.clock()
        for skey, ls in self.node.streams.items():
            if self._provided.get(skey) == addr:
                continue
            if not ls.is_source and ls.record.started_at is None:
                continue  # nothing to give yet
            self._provided[skey] = addr
            self.dht.provide(ls.sid, [addr], now, descriptor=self.descriptors.get(skey, b""))
        for key, sid in self.keys.items():
            if self._provided.get(key) != addr:
                self._provided[key] = addr
                self.dht.provide(sid, [addr], now)
        self.run()

    def provide_key(self, sid: StreamId) -> None:
        """Announce ``sid`` (not a live stream: a file we seed) like our streams."""
        if sid.key not in self.keys and len(self.keys) >= MAX_KEYS:
            return
        self.keys[sid.key] = sid
        self.update_provided()

    def stop_key(self, sid: StreamId) -> None:
        if self.keys.pop(sid.key, None) is not None:
            self.dht.stop_providing(sid)
            self._provided.pop(sid.key, None)

    async def find_providers(self, sid: StreamId, timeout: float) -> list[tuple[bytes, str, int]]:
        """The providers of ``sid`` a DHT lookup finds (verified records; not us), ≤ timeout s."""
        d = await self._lookup(lambda: self.dht.find_providers(sid, self.clock()), timeout)
        if d is None:
            return []
        me = self.node.identity.public
        kept, dropped = pp.cap_per_network((r.provider, h, p) for r in d.providers if r.provider != me
                                      for h, p in r.addrs[:1])
        self.counters["dht_providers_per_ip_dropped"] += dropped
        return kept

    def stream_removed(self, sid: StreamId) -> None:
        """We no longer carry ``sid``: stop announcing it (its records expire on their own)."""
        self.dht.stop_providing(sid)
        self._provided.pop(sid.key, None)
        self.descriptors.pop(sid.key, None)
        self._find_at.pop(sid.key, None)

    def set_descriptor(self, sid: StreamId, descriptor_json: bytes) -> None:
        """Our own stream's signed descriptor, published with our (the stream) record."""
        self.descriptors[sid.key] = descriptor_json
        self._provided.pop(sid.key, None)
        self.update_provided()

    # ---- executing the core ---------------------------------------------------------
    def run(self) -> None:
        for a in self.dht.actions():
            if isinstance(a, dh.Send):
                self._send(a)
            else:
                self._done(a)
        gone = self.dht.take_withdrawn()
        if gone:  # a distrusted answerer's providers: not dialled again (§14.5)
            self.counters["dht_candidates_withdrawn"] += self.node.policy.withdraw_candidates(gone)
        self._arm()

    def _send(self, a: dh.Send) -> None:
        node = self.node
        now = self.clock()
        if a.peer is None:  # a bare bootstrap address: we always pin keys
            self._failed(a.peer, a.host, a.port, now)
            return
        link = node.policy.link_of(a.peer)
        if link is not None and not link.closed:
            link.send(a.message)
            return
        q = self._waiting.get(a.peer)
        if q is not None:  # its link is coming up (our dial or the policy's)
            if len(q) < MAX_WAITING:
                q.append(a.message)
            else:
                self._failed(a.peer, a.host, a.port, now)
            return
        if node.closing or node.policy.is_banned(a.peer, now) or self._held(a.peer, a.host, a.port):
            self._failed(a.peer, a.host, a.port, now)
            return
        if a.peer in node.policy.dialling:  # the policy dials it already: wait for that link
            self._waiting[a.peer] = [a.message]
            node.loop.call_later(DIAL_TIMEOUT, self._give_up, a.peer, a.host, a.port)
            return
        if len(self._dialling) >= MAX_DIALS:
            self._failed(a.peer, a.host, a.port, now)
            return
        self._waiting[a.peer] = [a.message]
        self.counters["dht_dials"] += 1
        task = node.loop.create_task(self._dial(a.peer, a.host, a.port))
        self._dialling[a.peer] = task

    def open_link(self, peer: bytes, host: str, port: int) -> bool:
        """A service link to ``peer`` (pinned) for node-level traffic (DM hand-overs): True
        if it is up or coming up; the node's link hooks run when it is admitted."""
        node = self.node
        now = self.clock()
        link = node.policy.link_of(peer)
        if (link is not None and not link.closed) or peer in self._waiting:
            return True
        if (node.closing or node.policy.is_banned(peer, now) or len(self._dialling) >= MAX_DIALS
                or not pp.dialable(host, port) or self._held(peer, host, port)):
            return False
        self._waiting[peer] = []
        self.counters["dht_dials"] += 1
        self._dialling[peer] = node.loop.create_task(self._dial(peer, host, port))
        return True

    def address_of(self, peer: bytes) -> tuple[str, int] | None:
        """Where the DHT saw ``peer`` (its table, or the nodes of our latest lookups)."""
        c = self.dht.table.get(peer)
        if c is not None:
            return c.host, c.port
        for d in reversed(self.lookups):
            for k, h, p in d.nodes:
                if k == peer:
                    return h, p
        return None

    async def find_nodes(self, key: bytes, timeout: float) -> list[tuple[bytes, str, int]]:
        """The nodes nearest ``key``'s DHT id that answered a FIND_NODE lookup (≤ k)."""
        if not self.seeded:
            return []
        target = node_id(key).to_bytes(32, "big")
        d = await self._lookup(lambda: self.dht.find_node(target, self.clock()), timeout)
        return [] if d is None else list(d.nodes)

    async def _lookup(self, start: Callable[[], int], timeout: float) -> dh.LookupDone | None:
        """Once the DHT has joined: start a lookup (``start`` returns its id) and wait for its
        ``LookupDone``; None when ``timeout`` s pass first."""
        loop = self.node.loop
        deadline = loop.time() + timeout
        try:
            await asyncio.wait_for(self.joined.wait(), timeout)
            fut: asyncio.Future[dh.LookupDone] = loop.create_future()
            self._waiters[start()] = fut
            self.run()
            return await asyncio.wait_for(fut, max(0.0, deadline - loop.time()))
        except TimeoutError:
            return None

    def contacts(self) -> list[bytes]:
        """Keys in the DHT's routing table."""
        return list(self.dht.table.index)

    def _held(self, peer: bytes, host: str, port: int) -> bool:
        """Our punch with ``peer`` at ``host:port`` failed lately (oasis.core.nat:
        ``punch_retry_after``): a DHT dial to it there now would refresh the NATs' state
        that failed it and fail the retry too (a testbed pair's retry failed so, its two
        dials 4 ms apart)."""
        return self.node.policy.nat.is_held(peer, host, port, self.node.clock())

    def _give_up(self, peer: bytes, host: str, port: int) -> None:
        """The policy's dial of ``peer`` brought no admitted link in time."""
        if peer in self._dialling or self._waiting.pop(peer, None) is None:
            return
        self.counters["dht_dial_failures"] += 1
        self._failed(peer, host, port, self.clock())
        self.run()

    async def _dial(self, peer: bytes, host: str, port: int) -> None:
        node = self.node
        ok = False
        if trace.isEnabledFor(logging.INFO):
            trace.info("DHT dial %s at %s:%s", peer.hex()[:8], host, port)
        try:
            link = node.endpoint.dial((host, port), peer)
            await asyncio.wait_for(asyncio.shield(link.handshake_done), DIAL_TIMEOUT)
            ok = node.policy.link_of(peer) is link
        except (TimeoutError, ConnectionError, OSError) as exc:
            log.debug("DHT dial %s:%s failed: %s", host, port, exc)
        except Exception:  # a bug here must not end the node: counted as a failed dial
            log.exception("DHT dial %s:%s", host, port)
        finally:
            self._dialling.pop(peer, None)
        if ok:
            self.link_admitted(peer)
        else:
            self.counters["dht_dial_failures"] += 1
            self._waiting.pop(peer, None)
            self._failed(peer, host, port, self.clock())
            self.run()

    def _failed(self, peer: bytes | None, host: str, port: int, now: float) -> None:
        self.counters["dht_sends_failed"] += 1
        # The core re-plans inside send_failed; its actions are drained by the caller's run().
        self.dht.send_failed(peer, host, port, now)

    def _done(self, d: dh.LookupDone) -> None:
        self.lookups.append(d)
        del self.lookups[:-32]
        w = self._waiters.pop(d.lookup, None)
        if w is not None and not w.done():
            w.set_result(d)
        if d.kind == "join":
            self.near_self = d.nodes
            if not self.joined.is_set():
                self.joined.set()
                if self.on_joined is not None:
                    self.on_joined()
        if d.kind == "join" and d.ok:
            # what we provided before we had contacts reached nobody: publish it again now
            self._provided.clear()
            self.node.loop.call_soon(self.update_provided)
            return
        skey = self._finding.pop(d.lookup, None)
        if d.kind != "providers" or skey is None:
            return
        me = self.node.identity.public
        kept, dropped = pp.cap_per_network((r.provider, h, p) for r in d.providers if r.provider != me
                                      for h, p in r.addrs[:1])
        self.counters["dht_providers_per_ip_dropped"] += dropped
        found = [pp.Candidate(k, h, p) for k, h, p in kept]
        if found:
            self.counters["dht_providers_offered"] += len(found)
            self.node.offer_candidates(found, verified=True)
        hook = self.descriptor_hooks.get(skey)
        if d.descriptor and hook is not None:
            self.counters["dht_descriptors"] += 1
            hook(d.descriptor)
        elif d.descriptor and self.on_descriptor is not None:
            self.counters["dht_descriptors"] += 1
            self.on_descriptor(skey, d.descriptor)

    def _arm(self) -> None:
        t = self.dht.get_timer()
        if t is None or self.node.closing or (self._timer is not None and self._timer_at == t):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = t
        self._timer = self.node.loop.call_later(max(0.0, t - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.dht.handle_timer(self.clock())
        self.update_provided()  # runs the core's actions and re-arms

    # ---- reporting ------------------------------------------------------------------
    def counters_all(self) -> dict[str, int]:
        """The driver's and the core's counters (``dht_*``) and gauges, plain ints."""
        c = counter_dict(self.dht.counters)
        return {"dht_contacts": len(self.dht.table), "dht_records": self.dht.records,
                "dht_pending": self.dht.pending(), **self.counters,
                **{f"dht_{k}": v for k, v in c.items()}}

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in self._dialling.values():
            t.cancel()
        self._waiting.clear()
