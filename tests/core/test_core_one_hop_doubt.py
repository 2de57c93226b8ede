"""``one_hop_doubt`` (h-odoubt): a neighbour whose STATUS claims a one-hop path at zero lag on
at least ``one_hop_doubt`` substreams (what the simulator's withholders and liars advertise to
be taken as the best parent there is) is doubted, with the real ``Swarm``.

Parent choice (four substreams, threshold 3): W claims ``[broadcaster, W]`` at 0 ms on every
substream, H a path two relays deep at 60 ms. Off, W wins every substream; on, W is passed over
for H, taken only where nobody else is a candidate, and replaced at the next look once H is. A
claim on fewer substreams than the threshold, a lag of 1 ms (what an honest child of the
broadcaster on loopback or a LAN sends), the switch at 0 and the broadcaster itself change nothing.

Repair (``repairbench``, one substream, threshold 1): a doubted neighbour is asked only for the
chunks its ``have`` shows, and as our parent its claimed path does not set our depth.
"""

from __future__ import annotations

import random

import pytest
from repairbench import CHUNK_S, RepairBench

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId

K = 4
DEEP = b"\x01" * 8  # a relay above H
ALL_K = (1 << K) - 1


class Net:
    """A viewer on ``K`` substreams (the defaults but ``one_hop_doubt``), its neighbours W (the
    one-hop, zero-lag claimer), H (honest, two relays deep) and the broadcaster; every
    SUBSCRIBE is accepted 50 ms later. Time moves by the node's timer and scripted events."""

    def __init__(self, doubt: int, **config: object) -> None:
        rng = random.Random(11)
        self.b, self.w, self.h, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(4))
        self.sid = StreamId(self.b, "t")
        self.tb = peer_tag(self.b)
        cfg = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, substreams=K, one_hop_doubt=doubt, **config)  # type: ignore[arg-type]
        self.node = sw.Swarm(self.sid, me, cfg, rng=random.Random(1), now=0.0)
        self.now = 0.0
        self.subs: list[tuple[float, bytes, int]] = []
        self.acks: list[tuple[float, bytes, int]] = []

    def status(self, p: bytes, paths: list[list[bytes]], lags: list[int]) -> None:
        self.node.on_message(p, wire.Status(stream=self.sid.key, latest=40, have=0, keyframe=40, slots=8,
                                            paths=paths, lags=lags), self.now)
        self._drain()

    def claim_w(self, one_hop: int = K, lag: int = 0) -> None:
        """W's STATUS: one hop at ``lag`` ms on its first ``one_hop`` substreams, two hops at
        40 ms on the others."""
        tw = peer_tag(self.w)
        self.status(self.w, [[self.tb, tw] if j < one_hop else [self.tb, DEEP, tw] for j in range(K)],
                    [lag if j < one_hop else 40 for j in range(K)])

    def claim_h(self) -> None:
        self.status(self.h, [[self.tb, DEEP, peer_tag(self.h)]] * K, [60] * K)

    def _drain(self) -> None:
        for a in self.node.actions():
            if isinstance(a, sw.Send) and isinstance(a.message, wire.Subscribe):
                self.subs.append((self.now, a.peer, a.message.mask))
                self.acks.append((self.now + 0.05, a.peer, a.message.mask))

    def run(self, until: float) -> None:
        node = self.node
        while True:
            t = node.get_timer()
            nxt = min([t if t is not None else until] + [a[0] for a in self.acks])
            if nxt > until:
                self.now = until
                return
            self.now = max(self.now, nxt)
            for a in [a for a in self.acks if a[0] <= self.now]:
                self.acks.remove(a)
                node.on_message(a[1], wire.SubscribeAck(stream=self.sid.key, accepted=a[2], rejected=0), self.now)
            if t is not None and t <= self.now:
                node.handle_timer(self.now)
            self._drain()

    def mask_of(self, who: bytes) -> int:
        return sum(1 << j for j, p in enumerate(self.node.parents) if p == who)


def _both_heard(doubt: int, **claim: int) -> Net:
    """W and H heard within the newcomer's ``first_wait``: its first SUBSCRIBE chooses between them."""
    n = Net(doubt)
    n.node.add_peer(n.w, 0.0, rtt=0.05)
    n.node.add_peer(n.h, 0.0, rtt=0.05)
    n.claim_w(**claim)
    n.now = 0.05
    n.claim_h()
    n.run(1.0)
    return n


def test_off_the_one_hop_zero_lag_claimer_takes_every_substream() -> None:
    n = _both_heard(0)
    assert n.mask_of(n.w) == ALL_K
    assert not n.node.peers[n.w].doubted
    assert n.node.counters.statuses_one_hop_doubted == 0 and n.node.counters.parents_doubt_passed == 0


def test_a_doubted_claimer_is_passed_over_for_an_honest_candidate() -> None:
    n = _both_heard(3)
    node = n.node
    assert node.peers[n.w].doubted and not node.peers[n.h].doubted
    assert n.mask_of(n.h) == ALL_K
    assert not [s for s in n.subs if s[1] == n.w]  # never asked
    assert node.counters.statuses_one_hop_doubted >= 1
    assert node.counters.parents_doubt_passed >= 1


@pytest.mark.parametrize("claim", [{"one_hop": 2}, {"lag": 1}], ids=["two-substreams", "lag-1ms"])
def test_below_the_threshold_or_at_a_lag_nothing_changes(claim: dict[str, int]) -> None:
    off, on = _both_heard(0, **claim), _both_heard(3, **claim)
    assert not on.node.peers[on.w].doubted
    assert [(t, p, m) for t, p, m in on.subs] == [(t, p, m) for t, p, m in off.subs]
    assert on.mask_of(on.w) == off.mask_of(off.w) != 0
    assert on.node.counters.statuses_one_hop_doubted == 0 and on.node.counters.parents_doubt_passed == 0


def test_a_near_claimer_is_judged_by_its_lag_alone() -> None:
    """On loopback or a LAN an honest child of the broadcaster measures under 1 ms and sends
    1 (``DelayEstimator.status_lags``, tests/core/test_core_status_lags.py): not doubted,
    however near; a 0 ms claim is doubted however near (no RTT exempts it)."""
    n = Net(3)
    n.node.add_peer(n.w, 0.0, rtt=0.0005)
    n.claim_w(lag=1)
    assert not n.node.peers[n.w].doubted
    n.claim_w()
    assert n.node.peers[n.w].doubted  # judged at each STATUS
    n.claim_w(lag=1)
    assert not n.node.peers[n.w].doubted


def _alone_with_w(doubt: int) -> Net:
    """W is heard first and alone; H comes at 0.6 s, after W was taken."""
    n = Net(doubt)
    n.node.add_peer(n.w, 0.0, rtt=0.05)
    n.claim_w()
    n.run(0.6)
    n.node.add_peer(n.h, n.now, rtt=0.05)
    n.claim_h()
    return n


def test_a_doubted_claimer_is_a_last_resort_and_replaced_at_the_next_look() -> None:
    n = _alone_with_w(3)
    node = n.node
    # nobody else: W is taken
    assert [(p, m) for _, p, m in n.subs] == [(n.w, ALL_K)]
    n.run(6.0)
    to_h = [t for t, p, m in n.subs if p == n.h]
    # replaced at the first look after H's STATUS (``start_look``: 0.5 s after W's ACK; the
    # periodic look at 2 s at the latest), within the 2 s dwell
    assert to_h and to_h[0] <= 2.0
    assert n.mask_of(n.h) == ALL_K
    assert node.counters.parents_doubt_passed >= 1
    assert not [s for s in n.subs if s[1] == n.w and s[0] > 0.5]  # and not taken back


def test_off_a_parent_claiming_one_hop_at_zero_lag_keeps_its_substreams() -> None:
    n = _alone_with_w(0)
    n.run(6.0)
    assert n.mask_of(n.w) == ALL_K
    assert not [s for s in n.subs if s[1] == n.h]


def test_the_broadcaster_is_never_doubted() -> None:
    n = Net(1)
    node = n.node
    node.add_peer(n.b, 0.0, rtt=0.05)
    st = node.peers[n.b]
    assert st.is_broadcaster
    n.status(n.b, [[n.tb]] * K, [0] * K)  # its own STATUS: the root, at zero lag
    # (even a claim shaped like a relay's one hop, from the broadcaster's key)
    node.tree.judge_doubt(st, wire.Status(stream=n.sid.key, latest=40, have=0, keyframe=40, slots=8,
                                          paths=[[DEEP, n.tb]] * K, lags=[0] * K))
    assert not st.doubted and node.counters.statuses_one_hop_doubted == 0
    n.run(1.0)
    assert n.mask_of(n.b) != 0


# ---- repair ------------------------------------------------------------------------------

HOLE = 5  # every HOLE-th chunk is never pushed: a repair


def _repair_run(doubt: int, *, w_parent: bool, w_shows: bool = False, seconds: float = 6.0) -> dict:
    """One substream. ``w_parent`` False: the node's parent A (three relays deep, 100 ms) pushes
    every chunk but every ``HOLE``-th; W (one hop, zero lag, full: no parent candidate) shows only
    chunks 2 s old (``w_shows``: every chunk). ``w_parent`` True: W is the only parent candidate
    and pushes as A did; R (three relays deep, full, its STATUS 2 s old) answers REQUESTs in 20 ms."""
    b = RepairBench(4, seconds, one_hop_doubt=doubt)
    a_key, wh, r_key = b.peers
    node, sid, tb = b.node, b.sid, b.tb
    feeder = wh if w_parent else a_key
    for p in (a_key, wh, r_key):
        if p != a_key or not w_parent:
            node.add_peer(p, 0.0, rtt=0.02)
    asked: list[tuple[bytes, int]] = []
    events: list[tuple[float, bytes, int]] = [(0.05, feeder, 0)]
    now = 0.0
    pushed = 0
    while now < seconds:
        latest = int(now / CHUNK_S)
        stale = max(latest - 20, 1)
        b.status(wh, [tb, peer_tag(wh)], latest if w_shows else stale, now, lag_ms=0,
                 slots=8 if w_parent else 0)
        if w_parent:
            b.status(r_key, [tb, b"x" * 8, b"y" * 8, peer_tag(r_key)], stale, now, slots=0)
        else:
            b.status(a_key, [tb, b"x" * 8, b"y" * 8, peer_tag(a_key)], latest, now)
        for act in node.actions():
            if isinstance(act, sw.Send):
                m = act.message
                if isinstance(m, wire.Subscribe) and act.peer == feeder:
                    node.on_message(feeder, wire.SubscribeAck(stream=sid.key, accepted=m.mask, rejected=0),
                                    now + 0.01)
                elif isinstance(m, wire.Request):
                    asked.append((act.peer, m.seq))
                    if act.peer == r_key:
                        events.append((now + 0.02, r_key, m.seq))
        if node.tree.parents[0] == feeder:
            for s in range(pushed + 1, latest + 1):
                if s % HOLE and s * CHUNK_S + 0.1 <= now + 0.05:
                    events.append((s * CHUNK_S + 0.1, feeder, s))
                    pushed = s
        now, _ = b.step(now, events)
    holes = {s for s in range(HOLE, int(seconds / CHUNK_S) - 10, HOLE)}
    return {"node": node, "w": wh, "r": r_key, "asked": asked, "holes": holes}


def _asked(r: dict, who: str) -> set[int]:
    return {s for p, s in r["asked"] if p == r[who]}


def test_off_a_one_hop_claimer_is_asked_for_chunks_it_does_not_show() -> None:
    r = _repair_run(0, w_parent=False)
    assert len(_asked(r, "w") & r["holes"]) >= 5


def test_a_doubted_neighbour_is_asked_only_for_what_its_have_shows() -> None:
    r = _repair_run(1, w_parent=False)
    assert r["node"].peers[r["w"]].doubted
    assert not _asked(r, "w") & r["holes"]
    # what it shows, it is asked for
    r = _repair_run(1, w_parent=False, w_shows=True)
    assert len(_asked(r, "w") & r["holes"]) >= 5


def test_a_doubted_parents_path_does_not_set_our_depth() -> None:
    """Under W we are "two hops deep": no relay is closer, so off, R (three relays deep, its
    STATUS 2 s old) is never asked; on, W's path is no evidence of our depth and R answers."""
    off, on = _repair_run(0, w_parent=True), _repair_run(1, w_parent=True)
    for r in (off, on):
        assert r["node"].tree.parents[0] == r["w"] and r["node"].tree.parent_pushed_any[0]
    assert not _asked(off, "r") & off["holes"]
    assert len(_asked(on, "r") & on["holes"]) >= 5
    assert not _asked(on, "w") & on["holes"]
