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

import random

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity, peer_tag
from oasis.core.stream import StreamId, sign_chunk

GOP = 10
CHUNK_S = 0.1
ANSWER_S = 0.02


def _run(*, proven: bool = False, pair: bool = False, seconds: float = 8.0, seed: int = 3,
         withholder_is_broadcaster: bool = False) -> dict:
    rng = random.Random(seed)
    bid = Identity.from_private_bytes(rng.randbytes(32))
    parent, wh, honest, me = (Identity.from_private_bytes(rng.randbytes(32)).public for _ in range(4))
    sid = StreamId(bid.public, "t")
    cfg = sw.SwarmConfig(chunk_ms=100, upload_kbps=6000, substreams=1, playout_delay=1.0,
                         repair_proven=proven, repair_pair=pair)
    node = sw.Swarm(sid, me, cfg, rng=random.Random(seed), now=0.0)
    tb = peer_tag(bid.public)
    n = int(seconds / CHUNK_S) + 20
    chunks = {seq: sign_chunk(bid, sid, seq, int(round(CHUNK_S * seq * 1e6)), seq % GOP == 0, b"x" * 500)
              for seq in range(n)}

    def claim(p: bytes, path: list[bytes], latest: int, now: float) -> None:
        node.on_message(p, wire.Status(stream=sid.key, latest=latest, have=(1 << 63) - 1,
                                       keyframe=latest - latest % GOP, slots=8, paths=[path],
                                       lags=[100]), now)

    for p in (parent, wh, honest):
        node.add_peer(p, 0.0, rtt=0.02, is_broadcaster=withholder_is_broadcaster and p == wh)
    claim(parent, [tb, peer_tag(parent)], 1, 0.0)
    node.on_message(parent, wire.SubscribeAck(stream=sid.key, accepted=1, rejected=0), 0.01)
    node.on_chunk(parent, chunks[0], 0.05)  # the start (a keyframe); then the parent is silent
    asked: dict[bytes, list[tuple[int, float]]] = {wh: [], honest: []}
    first: dict[int, bytes] = {}
    first_at: dict[int, float] = {}
    delivered: dict[int, float] = {0: 0.05}
    answers: list[tuple[float, bytes, int]] = []
    now = 0.05
    while now < seconds:
        due = node.get_timer()
        nxt = min([due if due is not None else 9e9] + [t for t, _, _ in answers] + [now + 0.05])
        now = max(now, nxt)
        for a in [a for a in answers if a[0] <= now]:
            answers.remove(a)
            node.on_chunk(a[1], chunks[a[2]], now)
        if due is not None and due <= now:
            node.handle_timer(now)
        latest = int(now / CHUNK_S)
        for p in (wh, honest):  # both claim every chunk up to the live edge
            claim(p, [tb, peer_tag(parent), peer_tag(p)], latest, now)
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
