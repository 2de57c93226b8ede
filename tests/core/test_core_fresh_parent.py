"""``fresh_parent_lag`` (issue 8, h-p95h2) and its narrow form ``silent_parent_open``: a new parent that has not pushed yet is held to
what its STATUS claimed, with the real ``Swarm``.

The node's first parent A pushes every chunk 0.5 s after its time (a deep tree): the learnt
delay of the substream is ~0.5 s, so a chunk is repaired only after lag + 4 deviations. A
leaves; W, which claims a one-hop path and zero lag (what a withholder advertises), becomes
the parent and pushes nothing. Off, W's chunks are still asked of a holder only after A's
learnt delay; on, after W's own claim (at least ``repair_after``), so the chunks W withholds
come from the holder ~0.3 s sooner. Once a new parent pushes, its own record rules again.
"""

from __future__ import annotations

from repairbench import ALL, CHUNK_S, RepairBench

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import peer_tag

A_DELAY = 0.5
ANSWER_S = 0.02
LEAVE_AT = 4.0


def _run(fresh: bool, *, w_pushes: bool = False, stale: bool = False, seconds: float = 7.0,
         seed: int = 5, **cfg: object) -> dict:
    cfg.setdefault("silent_parent_open", False)  # (on by default: the tests above are of the timer)
    b = RepairBench(seed, seconds, fresh_parent_lag=fresh, **cfg)
    a_key, wh, holder = b.peers
    node, sid, tb = b.node, b.sid, b.tb

    def status(p: bytes, path: list[bytes], latest: int, lag_ms: int, slots: int, now: float) -> None:
        b.status(p, path, latest, now, have=ALL if latest > 0 else 1, lag_ms=lag_ms, slots=slots)

    node.add_peer(a_key, 0.0, rtt=0.02)
    status(a_key, [tb, b"x" * 8, b"y" * 8, peer_tag(a_key)], 0, int(A_DELAY * 1000), 8, 0.0)
    events: list[tuple[float, bytes, int]] = [(A_DELAY, a_key, 0)]
    asked: list[tuple[int, float, bytes]] = []
    delivered: dict[int, float] = {}
    now = 0.0
    w_added = False
    while now < seconds:
        now, latest = b.step(now, events)
        if a_key in node.peers:
            # A pushes each chunk A_DELAY after its time
            for s in range(latest + 1):
                if (A_DELAY + s * CHUNK_S, a_key, s) not in events and s not in node.log \
                        and s * CHUNK_S + A_DELAY > now:
                    events.append((s * CHUNK_S + A_DELAY, a_key, s))
        if now >= LEAVE_AT - 1.0 and not w_added:
            w_added = True
            node.add_peer(wh, now, rtt=0.02)
            node.add_peer(holder, now, rtt=0.02)
        if w_added:
            # W: the best parent there is (one hop, zero lag); the holder claims every chunk,
            # with a deep path (no parent candidate against W), and answers REQUESTs
            status(wh, [tb, peer_tag(wh)], max(latest - 1, 1), 0, 16, now)
            # (``stale``: its STATUS is 2 s old, so it never shows the chunks we lack)
            status(holder, [tb, b"x" * 8, b"y" * 8, b"z" * 8, peer_tag(holder)],
                   max(latest - 20, 1) if stale else latest, 700, 1, now)
        if now >= LEAVE_AT and a_key in node.peers:
            node.remove_peer(a_key, now)
        for act in node.actions():
            if isinstance(act, sw.Send):
                m = act.message
                if isinstance(m, wire.Subscribe) and act.peer in (wh, a_key):
                    node.on_message(act.peer, wire.SubscribeAck(stream=sid.key, accepted=m.mask, rejected=0),
                                    now + 0.01)
                elif isinstance(m, wire.Request):
                    asked.append((m.seq, now, act.peer))
                    if act.peer == holder:
                        events.append((now + ANSWER_S, holder, m.seq))
            elif isinstance(act, sw.Deliver):
                delivered.setdefault(act.chunk.seq, act.at)
        if w_pushes and node.tree.parents[0] == wh:
            for s in range(latest + 1):
                if s not in node.log and s * CHUNK_S + 0.05 <= now:
                    events.append((now, wh, s))
    # chunks made after W became the parent: how long after its time each was first asked
    took = node.tree.changed_at[0]
    first_ask: dict[int, float] = {}
    for seq, at, _ in asked:
        first_ask.setdefault(seq, at - seq * CHUNK_S)
    after = [first_ask[s] for s in first_ask if s * CHUNK_S >= took]
    holder_asked = [seq for seq, _, p in asked if p == holder and seq * CHUNK_S >= took]
    return {"node": node, "wh": wh, "after": after, "took": took, "delivered": delivered,
            "holder_asked": holder_asked}


def test_off_the_new_parent_inherits_the_old_parents_delay() -> None:
    r = _run(False)
    node = r["node"]
    # W's first chunks asked after A's learnt delay (until W is dropped as a withholder,
    # FRESH_GRACE + withhold_run chunks later)
    assert len(r["after"]) > 10 and min(r["after"][:10]) > A_DELAY
    assert node.counters.parents_withholding >= 1


def test_on_a_new_parent_is_held_to_its_claim() -> None:
    off, on = _run(False), _run(True)
    assert on["after"]
    # asked at W's claim (zero lag + half the RTT + a margin: repair_after), not A's delay
    cfg = on["node"].config
    assert max(on["after"][:3]) <= cfg.repair_after + 0.06
    assert max(on["after"][:10]) < min(off["after"][:10]) - 0.3
    # still judged a withholder and dropped as parent (no push while a holder gave them)
    assert on["node"].counters.parents_withholding >= 1


def test_once_the_new_parent_pushes_its_record_rules() -> None:
    r = _run(True, w_pushes=True)
    d = r["node"].delay
    assert d.fresh[0] < 0
    assert r["node"].counters.parents_withholding == 0


def test_a_new_parents_claimed_path_does_not_hide_the_relays() -> None:
    """W's one-hop path made us two hops deep: no neighbour was "two hops closer", so a chunk
    was asked only once a STATUS showed it (up to ``status_interval`` later). A parent that
    has not pushed yet is no evidence of our depth: with the switch the relay fed on the
    substream (its STATUS 2 s old) is asked at once and answers."""
    off, on = _run(False, stale=True), _run(True, stale=True)
    assert len(on["holder_asked"]) > len(off["holder_asked"]) + 5
    assert on["after"] and max(on["after"][:5]) <= on["node"].config.repair_after + 0.06


def test_a_silent_new_parent_past_its_claim_does_not_hide_the_relays() -> None:
    """``silent_parent_open``, the narrow form: the repair timer is left alone (A's learnt
    delay), but once W is overdue with its first push by its own claim, its one-hop path no
    longer sets our depth, so the relay fed on the substream is asked and answers."""
    off = _run(False, stale=True)
    on = _run(False, stale=True, silent_parent_open=True)
    node = on["node"]
    assert node.counters.repairs_past_silent_parent > 0
    assert off["node"].counters.repairs_past_silent_parent == 0
    assert len(on["holder_asked"]) > len(off["holder_asked"]) + 5
    assert node.delay.fresh[0] < 0  # the timer part (``fresh_parent_lag``) stays off
    # W is still judged a withholder and dropped as parent
    assert node.counters.parents_withholding >= 1


def test_a_new_parent_that_pushes_within_its_claim_is_not_passed() -> None:
    r = _run(False, w_pushes=True, silent_parent_open=True)
    assert r["node"].tree.parent_pushed_any[0]
    assert r["node"].counters.repairs_past_silent_parent == 0
    assert r["node"].counters.parents_withholding == 0
