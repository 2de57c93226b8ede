"""A lean discrete-event driver of the chat core (``oasis.core.chat``) on the world model.

Every peer runs the real :class:`~oasis.core.chat.ChatRoom`; what is modelled is the
network between them, as ``dht_run`` does for the DHT:

* peers are placed in countries and access kinds by ``netmodel`` (``World``,
  ``sample_peer``); a message takes ``one_way_s`` between two peers plus its
  serialisation on the sender's uplink (a FIFO per peer: a relay sending a message to 12
  neighbours sends 12 copies one after the other);
* the neighbour graph is the swarm's: each viewer links to ``degree`` random others
  (``PolicyConfig.target_neighbours`` = 12), accepting at most ``max_degree`` (24), the
  broadcaster up to twice that; links are already up (chat runs on the swarm's links);
* every message is encoded by ``oasis.core.wire`` (its size is what the uplink carries;
  the 4-byte frame header is added, QUIC/UDP headers are not);
* signatures are checked for real, memoised per message (``MemoVerify``): every one of
  N peers checks the same bytes;
* the spammer is a modified client: it sends its messages straight to its neighbours at
  ``spam_rate``/s, bypassing its own room's limit. Honest senders use ``ChatRoom.post``.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from oasis.core import chat as ch
from oasis.core import wire
from oasis.core.identity import Identity

from .dht_run import MemoVerify
from .netmodel import PeerNet, World, one_way_s, sample_peer
from .scenario import DEFAULT_MIX

T0 = 1_800_000_000.0
SKEY = b"chat-sim"
FRAME = 4  #: the control stream's length prefix


@dataclass
class ChatPeer:
    idx: int
    key: bytes
    net: PeerNet
    room: ch.ChatRoom
    neighbours: list[int] = field(default_factory=list)
    busy_until: float = 0.0
    sent_bytes: int = 0


class ChatSim:
    def __init__(self, n: int, *, seed: int = 1, degree: int = 12, max_degree: int = 24,
                 config: ch.ChatConfig | None = None) -> None:
        self.rng = random.Random(f"chat/{seed}")
        self.world = World()
        self.rtt = self.world.rtt_ms
        self.verify = MemoVerify()
        self.broadcaster = Identity.from_private_bytes(self.rng.randbytes(32))
        self.config = config or ch.ChatConfig()
        self.peers: list[ChatPeer] = []
        for i in range(n):
            key = self.broadcaster.public if i == 0 else self.rng.randbytes(32)
            room = ch.ChatRoom(SKEY, self.broadcaster.public, self.verify, self.config)
            self.peers.append(ChatPeer(i, key, sample_peer(self.world, self.rng, DEFAULT_MIX), room))
        self.by_key = {p.key: p.idx for p in self.peers}
        self._graph(degree, max_degree)
        self.heap: list[tuple[float, int, int, int, Any]] = []
        self._seq = 0
        self.now = T0
        #: (sender key, seq) -> {peer idx: delivery time}
        self.delivered: dict[tuple[bytes, int], dict[int, float]] = {}
        self.sent_at: dict[tuple[bytes, int], float] = {}

    def _graph(self, degree: int, max_degree: int) -> None:
        n = len(self.peers)
        cap = [max_degree] * n
        cap[0] = 2 * max_degree
        adj: list[set[int]] = [set() for _ in range(n)]
        order = list(range(n))
        self.rng.shuffle(order)
        for i in order:
            tries = 0
            while len(adj[i]) < min(degree, n - 1) and tries < 20 * degree:
                tries += 1
                j = self.rng.randrange(n)
                if j != i and j not in adj[i] and len(adj[j]) < cap[j]:
                    adj[i].add(j)
                    adj[j].add(i)
        for p in self.peers:
            p.neighbours = sorted(adj[p.idx])

    def _keys(self, p: ChatPeer) -> list[bytes]:
        return [self.peers[j].key for j in p.neighbours]

    # ---- events ----------------------------------------------------------------
    def _push(self, t: float, dst: int, src: int, msg: Any) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (t, self._seq, dst, src, msg))

    def _send(self, p: ChatPeer, dst: int, msg: wire.ChatMsg | wire.ChatMod, t: float) -> None:
        size = len(wire.encode(msg)) + FRAME
        start = max(t, p.busy_until)
        p.busy_until = start + size / p.net.up_bps
        p.sent_bytes += size
        q = self.peers[dst]
        self._push(p.busy_until + one_way_s(self.rtt, p.net, q.net), dst, p.idx, msg)

    def _run_actions(self, p: ChatPeer, t: float) -> None:
        for a in p.room.actions():
            if isinstance(a, ch.SendChat):
                self._send(p, self.by_key[a.peer], a.message, t)
            elif isinstance(a, ch.Delivered):
                m = a.message
                self.delivered.setdefault((m.sender, m.seq), {})[p.idx] = t

    def post(self, idx: int, ident: Identity, text: str, t: float) -> None:
        """An honest viewer types a message at ``t`` (scheduled)."""
        self._push(t, idx, -1, ("post", ident, text))

    def inject(self, idx: int, msg: wire.ChatMsg, t: float) -> None:
        """A modified client sends ``msg`` to all its neighbours at ``t`` (no local rules)."""
        self._push(t, idx, -2, msg)

    def run(self, until: float) -> None:
        while self.heap and self.heap[0][0] <= until:
            t, _, dst, src, msg = heapq.heappop(self.heap)
            self.now = t
            p = self.peers[dst]
            if src == -1:
                _, ident, text = msg
                try:
                    m = p.room.post(ident.public, ident.sign, text, t, self._keys(p))
                except (PermissionError, ValueError):
                    continue
                self.sent_at[(m.sender, m.seq)] = t
                self._run_actions(p, t)
                continue
            if src == -2:
                self.sent_at.setdefault((msg.sender, msg.seq), t)
                for j in p.neighbours:
                    self._send(p, j, msg, t)
                continue
            p.room.on_message(self.peers[src].key, msg, t, self._keys(p))
            self._run_actions(p, t)


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def honest_run(n: int, *, messages: int = 50, rate: float = 5.0, seed: int = 1) -> dict[str, Any]:
    """``messages`` from random viewers at ``rate``/s in total (each sender speaks once
    per message slot, within its own limit); delivery to every peer of the swarm."""
    sim = ChatSim(n, seed=seed)
    rng = random.Random(f"chat-honest/{seed}")
    senders = []
    for idx in rng.sample(range(1, n), min(messages, 64, n - 1)):
        ident = Identity.from_private_bytes(rng.randbytes(32))
        del sim.by_key[sim.peers[idx].key]
        sim.peers[idx].key = ident.public  # this viewer is that identity (it signs)
        sim.by_key[ident.public] = idx
        senders.append((idx, ident))
    t = T0 + 1.0
    for k in range(messages):
        idx, ident = senders[k % len(senders)]
        sim.post(idx, ident, f"message {k} " + "x" * rng.randint(10, 120), t)
        t += 1.0 / rate
    sim.run(t + 30.0)
    per_msg_all: list[float] = []
    per_peer: list[float] = []
    coverage: list[float] = []
    for mid, at in sim.sent_at.items():
        got = sim.delivered.get(mid, {})
        lat = [tt - at for tt in got.values()]
        per_peer.extend(lat)
        coverage.append(len(got) / n)
        if len(got) == n:
            per_msg_all.append(max(lat))
    total_bytes = sum(p.sent_bytes for p in sim.peers)
    counters: dict[str, int] = {}
    for p in sim.peers:
        for name, v in vars(p.room.counters).items():
            counters[name] = counters.get(name, 0) + v
    return {
        "peers": n, "messages": len(sim.sent_at), "degree_mean": sum(len(p.neighbours) for p in sim.peers) / n,
        "all_viewers_p50_ms": round(1000 * _pct(per_msg_all, 0.5), 1),
        "all_viewers_p95_ms": round(1000 * _pct(per_msg_all, 0.95), 1),
        "all_viewers_max_ms": round(1000 * max(per_msg_all), 1) if per_msg_all else None,
        "per_viewer_p50_ms": round(1000 * _pct(per_peer, 0.5), 1),
        "per_viewer_p95_ms": round(1000 * _pct(per_peer, 0.95), 1),
        "coverage_min": round(min(coverage), 4) if coverage else 0.0,
        "bytes_sent_per_message_per_peer": round(total_bytes / max(1, len(sim.sent_at)) / n, 1),
        "copies_received_per_message_per_peer": round(
            (counters.get("received", 0)) / max(1, len(sim.sent_at)) / n, 2),
        "duplicates": counters.get("duplicates", 0),
    }


def spam_run(n: int, *, seconds: float = 10.0, spam_rate: float = 100.0, honest: int = 20,
             seed: int = 2) -> dict[str, Any]:
    """One modified client floods ``spam_rate`` signed messages/s for ``seconds``; ``honest``
    viewers send one message each, spread over the same time."""
    sim = ChatSim(n, seed=seed)
    rng = random.Random(f"chat-spam/{seed}")
    spammer = Identity.from_private_bytes(rng.randbytes(32))
    s_idx = rng.randrange(1, n)
    del sim.by_key[sim.peers[s_idx].key]
    sim.peers[s_idx].key = spammer.public
    sim.by_key[spammer.public] = s_idx
    k = int(seconds * spam_rate)
    for i in range(k):
        t = T0 + 1.0 + i / spam_rate
        ms = int(t * 1000)
        seq = ms * 1000 + i
        text = f"SPAM {i}"
        sig = spammer.sign(ch.chat_signing_bytes(SKEY, spammer.public, seq, ms, text))
        sim.inject(s_idx, wire.ChatMsg(stream=SKEY, sender=spammer.public, seq=seq, time_ms=ms, text=text,
                                       signature=sig), t)
    picks = [i for i in rng.sample(range(1, n), honest + 1) if i != s_idx][:honest]
    for j, idx in enumerate(picks):
        ident = Identity.from_private_bytes(rng.randbytes(32))
        del sim.by_key[sim.peers[idx].key]
        sim.peers[idx].key = ident.public
        sim.by_key[ident.public] = idx
        sim.post(idx, ident, f"honest {j}", T0 + 1.0 + (j + 0.5) * seconds / honest)
    sim.run(T0 + seconds + 30.0)
    spam_got = [0] * n
    honest_lat: list[float] = []
    honest_cov: list[float] = []
    for (sender, _seq), got in sim.delivered.items():
        if sender == spammer.public:
            for i in got:
                spam_got[i] += 1
        else:
            at = sim.sent_at[(sender, _seq)]
            honest_cov.append(len(got) / n)
            honest_lat.extend(tt - at for tt in got.values())
    others = [spam_got[i] for i in range(n) if i != s_idx]
    allowed = sim.config.burst + seconds * sim.config.rate
    limited = sum(p.room.counters.rate_limited for p in sim.peers)
    first_hop = sum(sim.peers[j].room.counters.rate_limited for j in sim.peers[s_idx].neighbours)
    return {
        "peers": n, "spam_sent": k, "spam_rate": spam_rate, "seconds": seconds,
        "spam_allowed_by_rule": allowed,
        "spam_delivered_per_viewer_max": max(others), "spam_delivered_per_viewer_mean": round(sum(others) / len(others), 1),
        "rate_limited_total": limited, "rate_limited_at_first_hop": first_hop,
        "honest_messages": len(honest_cov), "honest_coverage_min": round(min(honest_cov), 4),
        "honest_per_viewer_p95_ms": round(1000 * _pct(honest_lat, 0.95), 1),
    }
