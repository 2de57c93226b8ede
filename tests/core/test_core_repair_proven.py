"""``repair_proven`` and ``repair_pair`` (issue 8, h-p95h2): a neighbour whose STATUS claims the
chunks it holds and that answers no REQUEST (a withholder) costs a repair round each time it is
asked first, with the real ``Swarm``.

The node's parent stops pushing after the start, so every chunk is a repair. Two neighbours
claim every chunk: the withholder takes every REQUEST and answers none, the honest one answers
in 20 ms. Off, the withholder is asked first about half the time (a claimed holder scores
0-1), each a 150 ms round lost. ``repair_proven`` ranks a claimed holder that never gave us a
chunk after those that did; ``repair_pair`` sends the REQUEST to the runner-up too when the
peer picked never gave us a chunk.
"""

from __future__ import annotations

from repairbench import CHUNK_S, RepairBench

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import peer_tag

ANSWER_S = 0.02


def _run(*, proven: bool = False, pair: bool = False, seconds: float = 8.0, seed: int = 3,
         withholder_is_broadcaster: bool = False) -> dict:
    b = RepairBench(seed, seconds, repair_proven=proven, repair_pair=pair)
    parent, wh, honest = b.peers
    node, cfg, tb = b.node, b.cfg, b.tb
    for p in (parent, wh, honest):
        node.add_peer(p, 0.0, rtt=0.02, is_broadcaster=withholder_is_broadcaster and p == wh)
    b.start_then_silent(parent)
    asked: dict[bytes, list[tuple[int, float]]] = {wh: [], honest: []}
    first: dict[int, bytes] = {}
    first_at: dict[int, float] = {}
    delivered: dict[int, float] = {0: 0.05}
    answers: list[tuple[float, bytes, int]] = []
    now = 0.05
    while now < seconds:
        now, latest = b.step(now, answers)
        for p in (wh, honest):  # both claim every chunk up to the live edge
            b.status(p, [tb, peer_tag(parent), peer_tag(p)], latest, now)
        for a in node.actions():
            if isinstance(a, sw.Send) and isinstance(a.message, wire.Request):
                seq = a.message.seq
                first.setdefault(seq, a.peer)
                first_at.setdefault(seq, now)
                asked.setdefault(a.peer, []).append((seq, now))
                if a.peer == honest or (a.peer == wh and withholder_is_broadcaster):
                    answers.append((now + ANSWER_S, a.peer, seq))
            elif isinstance(a, sw.Deliver):
                delivered.setdefault(a.chunk.seq, a.at)
    settled = list(range(1, int((seconds - 1.5) / CHUNK_S)))
    late_n = sum(1 for s in settled if s not in delivered or delivered[s] > CHUNK_S * s + cfg.playout_delay)
    # how long after its first REQUEST each chunk came: one round is the answer's 20 ms
    after_ask = [delivered[s] - first_at[s] for s in settled if s in delivered and s in first_at]
    return {"node": node, "wh": wh, "honest": honest, "asked": asked, "first": first,
            "late_or_missed": late_n, "after_ask": after_ask, "settled": settled}


def _first_to(r: dict, who: bytes, from_seq: int = 10) -> int:
    return sum(1 for seq, p in r["first"].items() if seq >= from_seq and p == who)


def test_off_the_withholder_is_asked_first_and_costs_rounds() -> None:
    r = _run()
    node = r["node"]
    assert node.peers[r["wh"]].given == 0 and node.peers[r["honest"]].given > 30
    later = [seq for seq in r["first"] if seq >= 10]
    assert _first_to(r, r["wh"]) >= len(later) // 4  # about half, by the coin
    # each chunk asked of it first waited a repair round (150 ms) for the honest answer
    slow = [x for x in r["after_ask"] if x > 0.1]
    assert len(slow) >= len(later) // 4
    assert node.counters.requests_paired == 0


def test_proven_holders_are_asked_first() -> None:
    off, on = _run(), _run(proven=True)
    node = on["node"]
    # once the honest peer has answered once, the withholder (it never gave us a chunk) is
    # asked first no more
    assert _first_to(on, on["wh"]) == 0
    assert _first_to(on, on["honest"]) == len([s for s in on["first"] if s >= 10])
    assert on["late_or_missed"] == 0
    assert max(on["after_ask"][10:]) <= ANSWER_S + 0.06
    assert sum(on["after_ask"]) < sum(off["after_ask"]) - 0.5
    assert node.counters.requests_paired == 0


def test_a_pair_is_asked_when_the_pick_never_gave_us_a_chunk() -> None:
    r = _run(pair=True)
    node, wh, honest = r["node"], r["wh"], r["honest"]
    # every REQUEST to the withholder went with one to the honest peer in the same round
    to_honest = set(r["asked"][honest])
    assert r["asked"][wh] and all(x in to_honest for x in r["asked"][wh])
    # (and at the start, before the honest peer had given us a chunk, the other way round)
    assert len(r["asked"][wh]) <= node.counters.requests_paired <= len(r["asked"][wh]) + 2
    # so no chunk waited a second round
    assert max(r["after_ask"]) <= ANSWER_S + 0.06
    assert r["late_or_missed"] == 0
    # a REQUEST to the honest peer picked first (it gave us chunks) goes alone
    to_wh = set(r["asked"][wh])
    alone = [(s, t) for s, t in r["asked"][honest] if s >= 10 and r["first"][s] == honest]
    assert alone and not any(x in to_wh for x in alone)


def test_the_broadcaster_is_not_held_to_it() -> None:
    """The source that has not pushed us is still a trusted repair source: no pair, no cost."""
    r = _run(proven=True, pair=True, withholder_is_broadcaster=True)
    node = r["node"]
    assert node.peers[r["wh"]].is_broadcaster
    assert _first_to(r, r["wh"]) > 0
    paired = [seq for seq, p in r["first"].items() if p == r["wh"]
              and any(s == seq for s, _ in r["asked"][r["honest"]])]
    assert paired == []
