"""A tiny deterministic network of Swarm cores for tests: fixed one-way delay,
virtual clock. Every action is executed by the simulator's executor
(``oasis.sim.execute.execute``, the one the simulator's engine uses); this file
is only its network: what each action does here. A node has at most one pending
timer event, at ``get_timer()`` (a stale one is skipped), as in the engine
(``OasisSim.arm``) and the node's loop (``LiveStream._arm``): arming one per batch
of actions made every message start another chain of wake-ups that never ended,
which cost most of the CPU of the swarm tests that run tens of seconds."""

from __future__ import annotations

import heapq
import itertools
import random

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId, is_keyframe, sign_chunk
from oasis.sim.execute import execute


def subscribes(node: sw.Swarm) -> dict[bytes, int]:
    """The SUBSCRIBE masks among ``node``'s pending actions, by peer (the actions are taken)."""
    out: dict[bytes, int] = {}
    for a in node.actions():
        if isinstance(a, sw.Send) and isinstance(a.message, wire.Subscribe):
            out[a.peer] = out.get(a.peer, 0) | a.message.mask
    return out


class SwarmNet:
    def __init__(self, n_viewers: int, *, seed: int = 1, delay: float = 0.01,
                 config: sw.SwarmConfig | None = None, source_config: sw.SwarmConfig | None = None,
                 origin: bool = True) -> None:
        self.rng = random.Random(seed)
        self.now = 1000.0
        self.delay = delay
        self.q: list = []
        self.seq = itertools.count()
        self.bid = Identity.from_private_bytes(self.rng.randbytes(32))
        self.sid = StreamId(self.bid.public, "test")
        self.config = config or sw.SwarmConfig(chunk_ms=100, upload_kbps=6000)
        self.source = sw.Swarm(self.sid, self.bid.public, source_config or self.config,
                               is_source=True, rng=random.Random(seed), now=self.now)
        self.nodes: dict[bytes, sw.Swarm] = {self.bid.public: self.source}
        self.delivered: dict[bytes, dict[int, tuple[float, str]]] = {}
        self.skipped: dict[bytes, list[int]] = {}
        self.skip_actions: dict[bytes, int] = {}  #: Skip actions (a run of seqs is one)
        self.unmade: dict[bytes, list[int]] = {}  #: the skips given up as not made
        self.origin_log: dict[int, object] = {}
        self.origin_starts: list[bytes] = []  #: who asked the origin for a start
        self.use_origin = origin
        self.produced: dict[int, float] = {}
        self.next_seq = 0
        self.run_start_next = False  #: the next chunk produced is signed as a run's first
        self.dropped: list = []
        self.armed: dict[bytes, float] = {}  #: key -> its one pending timer event's time
        self.viewers = []
        for _i in range(n_viewers):
            ident = Identity.from_private_bytes(self.rng.randbytes(32))
            self.viewers.append(ident.public)

    def join(self, key: bytes, neighbours: list[bytes], *, start: bool = False) -> None:
        """``key`` joins ``neighbours``; ``start``: its JOINs ask them for a start (§9.1)."""
        node = sw.Swarm(self.sid, key, self.config, rng=random.Random(key), now=self.now)
        self.nodes[key] = node
        self.delivered[key] = {}
        self.skipped[key] = []
        self.skip_actions[key] = 0
        self.unmade[key] = []
        for other in neighbours:
            if other in self.nodes:
                node.add_peer(other, self.now, rtt=2 * self.delay, asked=start)
                self.nodes[other].add_peer(key, self.now, rtt=2 * self.delay, start=start)
                self._pump(other)
        self._pump(key)

    def leave(self, key: bytes) -> None:
        node = self.nodes.pop(key)
        for other in list(node.peers):
            if other in self.nodes:
                self.nodes[other].remove_peer(key, self.now)
                self._pump(other)

    def _at(self, t: float, fn, *args) -> None:
        heapq.heappush(self.q, (t, next(self.seq), fn, args))

    def _pump(self, key: bytes) -> None:
        if key in self.nodes:
            execute(self, key)

    def actions_from(self, key: bytes, node: sw.Swarm) -> list:
        """Drain a node's actions (a hook: tests record or filter them here; the
        core may be compiled, so its methods cannot be patched)."""
        return node.actions()

    # ---- the executor's network (oasis/sim/execute.py: Network) ----
    def actions(self, key: bytes) -> list:
        return self.actions_from(key, self.nodes[key])

    def send(self, key: bytes, a: sw.Send) -> None:
        self._at(self.now + self.delay, self._deliver, key, a)

    def push(self, key: bytes, a: sw.Push) -> None:
        self._at(self.now + self.delay, self._deliver, key, a)

    def deliver(self, key: bytes, a: sw.Deliver) -> None:
        if key in self.delivered:
            self.delivered[key][a.chunk.seq] = (a.at, a.source)

    def skip(self, key: bytes, a: sw.Skip) -> None:
        self.skipped[key].extend(range(a.seq - a.count + 1, a.seq + 1))  # (a run: Skip.count)
        self.skip_actions[key] = self.skip_actions.get(key, 0) + 1
        if a.unmade:
            self.unmade[key].extend(range(a.seq - a.count + 1, a.seq + 1))

    def fetch_origin(self, key: bytes, a: sw.FetchOrigin) -> None:
        seq = a.seq
        if seq == sw.ORIGIN_LATEST:  # latest.json, then that keyframe: two round trips
            kfs = [s for s, c in self.origin_log.items() if is_keyframe(c)]
            seq = max(kfs) if kfs else sw.ORIGIN_LATEST
            self.origin_starts.append(key)
            self._at(self.now + 4 * self.delay, self._origin_done, key, seq, self.origin_log.get(seq))
            return
        chunk = self.origin_log.get(seq)
        self._at(self.now + 2 * self.delay, self._origin_done, key, seq, chunk)

    def drop_peer(self, key: bytes, a: sw.DropPeer) -> bool:
        self.dropped.append((key, a.peer, a.code))
        self.nodes[key].remove_peer(a.peer, self.now)
        return False  # no policy here: the swarm's verdict is the drop

    def run_policy(self, key: bytes) -> None:
        pass

    def arm(self, key: bytes) -> None:
        t = self.nodes[key].get_timer()
        if t is None:
            return
        armed = self.armed.get(key)
        if armed is not None and armed <= t:
            return
        t = max(t, self.now)
        self.armed[key] = t
        self._at(t, self._timer, key, t)

    def _timer(self, key: bytes, t: float) -> None:
        if self.armed.get(key) != t:
            return
        del self.armed[key]
        node = self.nodes.get(key)
        if node is None:
            return
        nt = node.get_timer()
        if nt is not None and nt > t:  # the deadline moved later since: nothing is due
            self.armed[key] = nt
            self._at(nt, self._timer, key, nt)
            return
        node.handle_timer(self.now)
        self._pump(key)

    def _deliver(self, src: bytes, a) -> None:
        dst = self.nodes.get(a.peer)
        if dst is None or src not in dst.peers:
            return
        if isinstance(a, sw.Push):
            dst.on_chunk(src, a.chunk, self.now)
        else:
            dst.on_message(src, a.message, self.now)
        self._pump(a.peer)

    def _origin_done(self, key, seq, chunk) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        node.on_origin(seq, chunk, self.now)
        self._pump(key)

    def produce(self, keyframe: bool, payload: bytes = b"x" * 1000) -> None:
        seq = self.next_seq
        self.next_seq += 1
        chunk = sign_chunk(self.bid, self.sid, seq, int(self.now * 1e6), keyframe, payload,
                           run_start=self.run_start_next)
        self.run_start_next = False
        self.produced[seq] = self.now
        if self.use_origin:
            self.origin_log[seq] = chunk
        self.source.publish(chunk, self.now)
        self._pump(self.bid.public)

    def run_until(self, t_end: float, produce_every: float | None = None, gop: int = 10) -> None:
        next_prod = self.now if produce_every else None
        guard = 0
        while True:
            guard += 1
            assert guard < 2_000_000, "runaway event loop"
            t_next = self.q[0][0] if self.q else t_end
            if next_prod is not None and next_prod <= t_next and next_prod <= t_end:
                self.now = next_prod
                self.produce(self.next_seq % gop == 0)
                next_prod += produce_every
                continue
            if not self.q or self.q[0][0] > t_end:
                self.now = t_end
                return
            t, _, fn, args = heapq.heappop(self.q)
            self.now = max(self.now, t)
            fn(*args)


def fed_by_broadcaster(cfg: sw.SwarmConfig, seed: int = 5) -> tuple[sw.Swarm, StreamId, Identity]:
    """One viewer core whose only neighbour is the broadcaster, subscribed to every
    substream from it at 0.05 s (its STATUS at 0: chunk 10 the latest, no lag). Returns the
    viewer, the stream and the broadcaster's identity (to sign chunks with)."""
    rng = random.Random(seed)
    bid = Identity.from_private_bytes(rng.randbytes(32))
    sid = StreamId(bid.public, "t")
    me = Identity.from_private_bytes(rng.randbytes(32)).public
    k = cfg.substreams
    node = sw.Swarm(sid, me, cfg, rng=random.Random(1), now=0.0)
    node.add_peer(bid.public, 0.0, rtt=0.02)
    node.on_message(bid.public, wire.Status(stream=sid.key, latest=10, have=0, keyframe=10, slots=8,
                                            paths=[[peer_tag(bid.public)]] * k, lags=[0] * k), 0.0)
    node.on_message(bid.public, wire.SubscribeAck(stream=sid.key, accepted=(1 << k) - 1, rejected=0), 0.05)
    node.actions()
    return node, sid, bid
