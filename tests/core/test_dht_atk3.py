"""A liar's referrals (docs/oftp.md §14.5): answers naming made-up keys at addresses of the
liar's choosing draw dials there. Found 2026-12-03 by an outside attacker on loopback: two
answers of ~1.8 kB, each naming 20 made-up keys at 20 networks (/24s) of a victim, drew
230 datagrams (280 kB, x106) to 15 of those networks, and the same again at every lookup.
Here the real Dht core, driven in virtual time: once a node's referrals have failed
``referral_failures`` times more than they answered, what it names is no longer dialled,
in the running lookup and in later ones, counted; an honest node whose referrals answer
keeps being followed; the liar's distrust ages out."""

from __future__ import annotations

import random

from dhtkit import T0, host, sends

from oasis.core import dht as dh
from oasis.core import wire
from oasis.core.dhtrecord import node_id, sign_record, stream_key
from oasis.core.identity import Identity
from oasis.core.stream import StreamId

RNG = random.Random(2026_12_03)
ME = Identity.from_private_bytes(RNG.randbytes(32))


def new(config: dh.DhtConfig | None = None) -> dh.Dht:
    return dh.Dht(ME.public, identity=ME, config=config or dh.DhtConfig(), rng=random.Random(5), now=T0)


def nearer(target: bytes, than: bytes, n: int) -> list[bytes]:
    """``n`` made-up keys whose ids are nearer ``target`` than ``than``'s (an answer's
    entries must be, or they are dropped as not closer)."""
    t, limit = int.from_bytes(target, "big"), node_id(than) ^ int.from_bytes(target, "big")
    out: list[bytes] = []
    while len(out) < n:
        k = RNG.randbytes(32)
        if node_id(k) ^ t < limit:
            out.append(k)
    return out


def far_key(target: bytes) -> bytes:
    """A key whose id is far from ``target`` (so 20 keys nearer it are easy to find)."""
    t = int.from_bytes(target, "big")
    while True:
        k = RNG.randbytes(32)
        if (node_id(k) ^ t) >> 254:
            return k


def victim_nodes(target: bytes, liar: bytes) -> list[wire.DhtNode]:
    # 20 made-up keys, each at a different /24 of the victim (198.18.0.0/15, benchmarking)
    return [wire.DhtNode(key=k, host=f"198.18.{i}.7", port=443)
            for i, k in enumerate(nearer(target, liar, 20))]


def run_lookup(d: dh.Dht, target: bytes, liar: bytes, now: float,
               honest: dict[bytes, list[wire.DhtNode]] | None = None) -> tuple[list[dh.Send], float]:
    """One nodes lookup of ``target``: the liar answers every request at once with 20
    made-up keys at victim addresses (nobody answers there: each such request times out);
    ``honest`` keys answer with what they map to. Returns the requests sent to the victim's
    addresses and the time the lookup ended."""
    honest = honest or {}
    lid = d.find_node(target, now)
    victim_sends: list[dh.Send] = []
    t = now
    while t < now + 15:
        done = False
        for a in d.actions():
            if isinstance(a, dh.LookupDone) and a.lookup == lid:
                done = True
            if not isinstance(a, dh.Send) or not isinstance(a.message, wire.DhtFindNode):
                continue
            q = a.message.qid
            if a.peer == liar:
                d.on_message(liar, "203.0.113.5", 4433,
                             wire.DhtNodesMsg(qid=q, nodes=victim_nodes(target, liar)), t + 0.05)
            elif a.peer in honest:
                d.on_message(a.peer, a.host, a.port, wire.DhtNodesMsg(qid=q, nodes=honest[a.peer]), t + 0.05)
            elif a.host.startswith("198.18."):
                victim_sends.append(a)
        if done:
            return victim_sends, t
        t += 0.25
        d.handle_timer(t)
    raise AssertionError("the lookup did not end")


def test_a_liars_made_up_referrals_stop_being_dialled_after_a_few_failures() -> None:
    d = new()
    target = RNG.randbytes(32)
    liar = far_key(target)
    d.on_message(liar, "203.0.113.5", 4433, wire.DhtPing(qid=1), T0)  # a contact, like any
    sends(d)
    per_lookup = []
    now = T0
    for _ in range(6):  # a lookup every 5 s, as a viewer's node makes them
        got, end = run_lookup(d, target, liar, now)
        per_lookup.append(len(got))
        now = max(end, now + 5.0)
    # without the rule: every one of the 20 named (3 per lookup at each /24 allows them all)
    # was dialled at every lookup, 120 dials; now a handful, in the first lookup only
    first, rest = per_lookup[0], per_lookup[1:]
    cfg = d.config
    assert first <= int(cfg.referral_failures) + cfg.alpha * cfg.paths, per_lookup
    assert sum(rest) == 0, per_lookup
    assert d.counters.referrers_distrusted == 1
    assert d.counters.entries_referrer_failed >= 20 * 5  # every later answer's 20, counted
    # the liar itself is no offender: it stays a contact, its requests are still answered
    assert liar not in d.bans
    d.on_message(liar, "203.0.113.5", 4433, wire.DhtPing(qid=7), now)
    assert any(isinstance(a, dh.Send) and isinstance(a.message, wire.DhtPong) for a in d.actions())
    # the failures age out (1 per 15 s): a minute or so later its referrals are tried again
    later = now + 120
    got, end = run_lookup(d, target, liar, later)
    assert 1 <= len(got) <= int(cfg.referral_failures) + cfg.alpha * cfg.paths
    assert d.counters.referrers_distrusted == 2
    # distrusted again, it is held longer (the first distrust aged out within 30 s of its
    # last failure; this one adds a minute, the next three, then seven, then fifteen)
    got, _ = run_lookup(d, target, liar, end + 60)
    assert got == []
    got, _ = run_lookup(d, target, liar, end + 400)  # and then it is tried again
    assert 1 <= len(got) <= int(cfg.referral_failures) + cfg.alpha * cfg.paths


def test_an_honest_referrer_whose_referrals_answer_is_followed() -> None:
    d = new()
    target = RNG.randbytes(32)
    helper = far_key(target)
    near = nearer(target, helper, 12)
    nodes = [wire.DhtNode(key=k, host=host(100 + i), port=4433) for i, k in enumerate(near)]
    # a few departed nodes among them (an honest table after churn): they never answer
    dead = nearer(target, helper, 3)
    nodes += [wire.DhtNode(key=k, host=host(200 + i), port=4433) for i, k in enumerate(dead)]
    d.on_message(helper, host(1), 4433, wire.DhtPing(qid=1), T0)
    sends(d)
    honest = {helper: nodes} | {k: [] for k in near}
    now = T0
    for _ in range(4):
        lid = d.find_node(target, now)
        t, done = now, None
        asked: set[bytes] = set()
        while done is None and t < now + 15:
            for a in d.actions():
                if isinstance(a, dh.LookupDone) and a.lookup == lid:
                    done = a
                elif isinstance(a, dh.Send) and isinstance(a.message, wire.DhtFindNode):
                    asked.add(a.peer or b"")
                    if a.peer in honest:
                        d.on_message(a.peer, a.host, a.port,
                                     wire.DhtNodesMsg(qid=a.message.qid, nodes=honest[a.peer]), t + 0.05)
            t += 0.25
            d.handle_timer(t)
        assert done is not None and done.ok
        assert set(near) <= asked  # everything it named that answers was asked, every time
        assert len(done.nodes) >= 12
        now = t + 5.0
    assert d.counters.referrers_distrusted == 0 and d.counters.entries_referrer_failed == 0


def _records(sid: StreamId, n: int, now: float) -> list[bytes]:
    """``n`` records of ``sid`` signed by made-up providers, each at a victim's /24."""
    return [sign_record(Identity.generate(), sid, 1, int((now + 600) * 1000), [(f"198.18.{i}.7", 443)]).raw
            for i in range(n)]


def test_a_liars_made_up_provider_records_stop_being_taken_after_their_dials_fail() -> None:
    # found 2026-12-03: 20 records signed by throw-away keys, each naming a victim's /24, in
    # every PROVIDERS answer: the node offered them all to its peer policy, which dialled
    # them, lookup after lookup (884 datagrams at 20 sinks in 40 s, x40 the answers' bytes)
    d = new()
    bc = Identity.generate()
    sid = StreamId(bc.public, "live")
    liar = far_key(stream_key(sid))
    d.on_message(liar, "203.0.113.5", 4433, wire.DhtPing(qid=1), T0)
    sends(d)
    stream_rec = sign_record(bc, sid, 1, int((T0 + 600) * 1000), [("203.0.113.9", 4433)])
    offered: list[int] = []
    now = T0
    for _ in range(4):
        lid = d.find_providers(sid, now)
        done = None
        for a in sends(d):
            assert a.peer == liar
            d.on_message(liar, "203.0.113.5", 4433, wire.DhtProviders(
                qid=a.message.qid, records=[stream_rec.raw, *_records(sid, 19, now)],  # type: ignore[attr-defined]
                descriptor=b"", nodes=[]), now + 0.05)
        for act in d.actions():
            if isinstance(act, dh.LookupDone) and act.lookup == lid:
                done = act
        assert done is not None and done.ok
        third = [r for r in done.providers if r.provider != bc.public]
        offered.append(len(third))
        # the node dials what it was offered (here: a few, as its policy wants); all fail
        for r in third[:3]:
            d.provider_dialled(r.provider, False, now + 1)
        now += 5.0
    assert offered[0] == 19 and offered[1] == 19 and offered[2:] == [0, 0], offered
    assert d.counters.referrers_distrusted == 1 and d.counters.records_referrer_failed == 2 * 19
    # the broadcaster's stream record still comes through the distrusted answerer
    assert d.counters.records_rejected == 0


def test_records_whose_providers_answer_keep_their_answerer_trusted() -> None:
    d = new()
    bc = Identity.generate()
    sid = StreamId(bc.public, "live")
    storer = far_key(stream_key(sid))
    d.on_message(storer, "203.0.113.5", 4433, wire.DhtPing(qid=1), T0)
    sends(d)
    now = T0
    for _ in range(6):
        lid = d.find_providers(sid, now)
        for a in sends(d):
            d.on_message(storer, "203.0.113.5", 4433, wire.DhtProviders(
                qid=a.message.qid, records=_records(sid, 10, now), descriptor=b"", nodes=[]),  # type: ignore[attr-defined]
                now + 0.05)
        done = next(x for x in d.actions() if isinstance(x, dh.LookupDone) and x.lookup == lid)
        # a viewer that left (2 of the 10 records are stale) fails; the others link
        for i, r in enumerate(done.providers):
            d.provider_dialled(r.provider, i >= 2, now + 1)
        now += 5.0
    assert d.counters.referrers_distrusted == 0 and d.counters.records_referrer_failed == 0
