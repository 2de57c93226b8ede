"""``repair_guard`` (issue 8): a repair sink — a neighbour whose STATUS claims every chunk up to
the live edge and that takes our REQUESTs and never answers them (or answers after the
deadline) — is distrusted after a clear record and not asked, with the real ``Swarm``.

The node's parent stops pushing after the start, so every chunk is a repair. Two neighbours
claim every chunk: the sink holds every REQUEST (or answers it late), the honest one answers
in 20 ms. Without the guard, each chunk asked of the sink first costs a repair round (150 ms);
with it, after ``SINK_MISSES`` misses the sink is not asked for ``SINK_BACKOFF``, and one more
miss on probation distrusts it again, twice as long. Nobody is cut off for it.
"""

from __future__ import annotations

import random

from repairbench import CHUNK_S, RepairBench

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import peer_tag
from oasis.core.repair import SINK_BACKOFF, SINK_MISSES


def _run(guard: bool, *, late: float = -1.0, honest_answers: bool = True, seconds: float = 8.0,
         seed: int = 3, drop_rate: float = 0.0, sink_is_broadcaster: bool = False) -> dict:
    """A node (playout 1.0 s) repaired by ``sink`` and ``honest``. ``late`` >= 0: the sink
    answers that long after the chunk's deadline; ``drop_rate``: the share of REQUESTs the
    honest peer loses (its answer dropped at its upload's deadline)."""
    b = RepairBench(seed, seconds, repair_guard=guard)
    parent, sink, honest = b.peers
    node, cfg, tb = b.node, b.cfg, b.tb
    lose = random.Random(seed + 1)

    for p in (parent, sink, honest):
        node.add_peer(p, 0.0, rtt=0.02, is_broadcaster=sink_is_broadcaster and p == sink)
    b.start_then_silent(parent)
    asked = {sink: 0, honest: 0}
    first: dict[int, bytes] = {}
    delivered: dict[int, float] = {0: 0.05}
    skipped: list[int] = []
    dropped: list[sw.DropPeer] = []
    answers: list[tuple[float, bytes, int]] = []
    now = 0.05
    while now < seconds:
        now, latest = b.step(now, answers)
        for p in (sink, honest):
            if p in node.peers:  # both claim every chunk up to the live edge
                b.status(p, [tb, peer_tag(parent), peer_tag(p)], latest, now)
        for a in node.actions():
            if isinstance(a, sw.Send) and isinstance(a.message, wire.Request):
                seq = a.message.seq
                first.setdefault(seq, a.peer)
                asked[a.peer] = asked.get(a.peer, 0) + 1
                if a.peer == honest and honest_answers and lose.random() >= drop_rate:
                    answers.append((now + 0.02, honest, seq))
                elif a.peer == sink and late >= 0:
                    answers.append((node.deadline_of(seq) + late, sink, seq))
            elif isinstance(a, sw.Deliver):
                delivered.setdefault(a.chunk.seq, a.at)
            elif isinstance(a, sw.Skip):
                skipped.append(a.seq)
            elif isinstance(a, sw.DropPeer):
                dropped.append(a)
                node.remove_peer(a.peer, now)
    settled = [s for s in range(1, int((seconds - 1.5) / CHUNK_S))]
    late_n = sum(1 for s in settled if s not in delivered or delivered[s] > CHUNK_S * s + cfg.playout_delay)
    wait = [delivered[s] - CHUNK_S * s for s in settled if s in delivered]
    return {"node": node, "sink": sink, "honest": honest, "asked": asked, "first": first,
            "dropped": dropped, "skipped": skipped, "late_or_missed": late_n,
            "mean_wait": sum(wait) / len(wait), "settled": len(settled)}


def test_a_sink_that_never_answers_is_distrusted_and_again_on_probation() -> None:
    r = _run(True, seconds=SINK_BACKOFF + 6)
    node, sink = r["node"], r["sink"]
    c = node.counters
    st = node.peers[sink]
    # a clear record first: SINK_MISSES in a row; then, after the back-off, one more miss on
    # probation distrusts it again, twice as long
    assert r["asked"][sink] >= SINK_MISSES + 1
    assert c.repair_sinks_distrusted == 2 and st.distrusts == 2
    assert c.repair_misses_judged >= SINK_MISSES + 1
    reasons = [why for key, _, why in node.repair.distrust_log if key == sink]
    assert reasons[0].startswith(f"not asked for repairs for {SINK_BACKOFF:g} s")
    assert reasons[1].startswith(f"not asked for repairs for {2 * SINK_BACKOFF:g} s")
    assert "0 answers in time" in reasons[1]
    # never cut off (a full honest relay leaves the same record)
    assert r["dropped"] == []
    # the honest peer was never judged: it answered every REQUEST in time
    hst = node.peers[r["honest"]]
    assert hst.distrusted_until < 0 and hst.sink_answers > 0 and hst.sink_misses == 0
    # the viewer's chunks came from the honest peer, in time
    assert r["late_or_missed"] == 0


def test_without_the_guard_the_sink_is_asked_to_the_end_and_costs_rounds() -> None:
    off, on = _run(False), _run(True)
    assert off["node"].counters.repair_misses_judged == 0 and not off["dropped"]
    # it keeps getting first asks by chance (half of them), each a 150 ms round lost
    later = [p for seq, p in off["first"].items() if seq >= 40]
    assert sum(p == off["sink"] for p in later) >= len(later) // 4
    assert sum(p == on["sink"] for seq, p in on["first"].items() if seq >= 40) == 0
    assert on["mean_wait"] < off["mean_wait"] - 0.03


def test_a_sink_that_answers_after_the_deadline_is_distrusted_too() -> None:
    r = _run(True, late=0.05)
    node, sink = r["node"], r["sink"]
    assert node.counters.repair_sinks_distrusted >= 1
    assert any("after its deadline" in why or "unanswered" in why
               for key, _, why in node.repair.distrust_log if key == sink)
    assert sum(p == sink for seq, p in r["first"].items() if seq >= 40) == 0


def test_an_honest_peer_that_loses_some_answers_is_not_distrusted() -> None:
    """An honest peer whose upload drops a third of our REQUESTs (past their deadline) keeps
    answering most of them: it is asked throughout, and the sink is distrusted."""
    r = _run(True, drop_rate=0.3, seconds=SINK_BACKOFF + 6, seed=4)
    node, honest = r["node"], r["honest"]
    hst = node.peers.get(honest)
    assert hst is not None and hst.sink_answers > 10
    assert node.peers[r["sink"]].distrusts >= 1
    assert hst.distrusts <= 1 and r["asked"][honest] > 3 * r["asked"][r["sink"]]


def test_the_record_survives_a_rejoin() -> None:
    """A sink that leaves and joins again gets its record back (``Swarm._departed``), with
    the REQUESTs it left unanswered counted as misses."""
    r = _run(True, seconds=3.0)
    node, sink = r["node"], r["sink"]
    st = node.peers[sink]
    assert st.distrusted_until > 3.0
    before = st.sink_missed + len(st.sink_asked)
    until = st.distrusted_until
    node.remove_peer(sink, 3.0)
    node.add_peer(sink, 3.1, rtt=0.02)
    st2 = node.peers[sink]
    assert st2.sink_missed == before and st2.distrusted_until == until


def test_a_peer_that_answers_late_is_distrusted_again_and_again() -> None:
    """Late answers are as useless as none: each probation ends in a longer distrust."""
    r = _run(True, late=0.05, seconds=2 * SINK_BACKOFF + 6)
    node, sink = r["node"], r["sink"]
    st = node.peers[sink]
    assert st.distrusts >= 2 and st.sink_late >= SINK_MISSES
    assert r["dropped"] == []


def test_the_broadcaster_is_never_judged() -> None:
    """The source is no stranger: however it answers, it is not distrusted."""
    r = _run(True, sink_is_broadcaster=True)
    st = r["node"].peers[r["sink"]]
    assert r["asked"][r["sink"]] >= SINK_MISSES
    assert st.sink_missed == 0 and st.distrusts == 0 and not st.sink_asked
    assert r["node"].counters.repair_sinks_distrusted == 0
