"""Proof of relay wired into the node, under attack (real Node objects over QUIC on 127.0.0.1,
the real rewards routes on aiohttp, the real Rewards object on the embedded EVM).

* Membership: a viewer the broadcaster's own tracker holds a fresh signed announce for gets
  a ticket without a direct link (``member_hook``); a stranger, or an announce that expired,
  does not.
* JSON: a nesting bomb posted to ``/tickets``, or answered by a ticket server, with the
  recursion limit py_ecc sets (``json.loads`` segfaulted CPython on it): a counted refusal,
  the server keeps serving, the viewer retries.
* Receipts: a linked peer flooding RECEIPTs does not use up an honest peer's rate limit
  (limits are per peer: the node hands rewards the sending peer).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import aiohttp
import pytest
from aiohttp import web
from procs import serve, until

from oasis.core import peer as pp
from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.announce import sign_announce
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.core.tracker import Tracker
from oasis.datafiles import DataFileError
from oasis.ledger import eip712
from oasis.ledger.devnet import fund
from oasis.ledger.receipts import sign_receipt
from oasis.ledger.tickets import Ticket, sign_ticket
from oasis.node.node import Node
from oasis.node.rewards import Rewards, RewardsConfig
from oasis.node.rewards_http import add_rewards_routes
from oasis.node.runtime import tracker_member

BOMB = b"[" * 70_000






class Broadcaster:
    async def start(self, tmp, tracker: Tracker | None = None) -> Broadcaster:
        self.ident = Identity.generate()
        self.sid = StreamId(self.ident.public, "live")
        self.node = Node(self.ident, sw.SwarmConfig())
        await self.node.start()
        self.node.add_stream(self.sid, is_source=True)
        self.chain_dir = str(tmp / "chain")
        cfg = RewardsConfig(data_dir=str(tmp / "b"), chain_dir=self.chain_dir, epoch_length=10)
        self.rewards = Rewards(cfg, self.ident, stream_text_id=str(self.sid))
        self.node.rewards = self.rewards
        if tracker is not None:
            self.rewards.member_hook = tracker_member(tracker, self.sid)  # as runtime.broadcast
        await self.rewards.start_broadcaster(800)
        app = web.Application()
        add_rewards_routes(app, self.node, broadcaster=True)
        self.runner, self.url = await serve(app)
        return self

    async def close(self) -> None:
        await self.runner.cleanup()
        await self.node.close()
        self.rewards.close()


async def rewards_node(b: Broadcaster, tmp, name: str, **kw) -> tuple[Node, Rewards]:
    ident = Identity.generate()
    node = Node(ident, sw.SwarmConfig(), **kw)
    await node.start()
    node.add_stream(b.sid, is_source=False)
    r = Rewards(RewardsConfig(data_dir=str(tmp / name), chain_dir=b.chain_dir), ident,
                stream_text_id=str(b.sid))
    node.rewards = r
    await r.open()
    return node, r


async def test_tracker_membership_gets_a_ticket_and_json_bombs_are_refused(tmp_path):
    tracker = Tracker()
    b = await Broadcaster().start(tmp_path, tracker)
    vnode, vr = await rewards_node(b, tmp_path, "v")
    snode, stranger = await rewards_node(b, tmp_path, "s")
    c = b.rewards.counters
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # py_ecc's; Rewards.open restores it, an attacker's input must not need it
    try:
        async with aiohttp.ClientSession() as http:
            # The viewer is in the swarm (a fresh signed announce at the broadcaster's
            # tracker) but not linked to the broadcaster: it gets a ticket.
            assert vnode.identity.public not in b.node.links_by_peer
            tracker.submit(sign_announce(vnode.identity, b.sid, "127.0.0.1", vnode.port,
                                         int(time.time() * 1000)), "127.0.0.1", time.time())
            await vr.start_viewer(http, b.url + "/tickets")
            assert vr.ticket is not None and vr.disabled is None
            assert c.ticket_requests_ok == 1
            # A stranger who announced another stream only: refused.
            tracker.submit(sign_announce(snode.identity, StreamId(snode.identity.public, "x"),
                                         "127.0.0.1", snode.port, int(time.time() * 1000)),
                           "127.0.0.1", time.time())
            async with http.post(b.url + "/tickets", json=stranger.ticket_request(time.time())) as r:
                assert r.status == 403 and (await r.json())["error"] == "not_member"
            assert c.ticket_requests_not_member == 1
            # The viewer's announce expires: no new ticket.
            tracker.ttl = 0.2
            await until(lambda: not tracker_member(tracker, b.sid)(vnode.identity.public), 5)
            async with http.post(b.url + "/tickets", json=vr.ticket_request(time.time())) as r:
                assert r.status == 403
            # Nesting bombs and wrong shapes: 400 with a JSON error, counted; still serving.
            bad = c.ticket_requests_bad
            for body in (BOMB, b'{"binding": ' + BOMB, b"[]", b'{"binding": "00", "ts": "now"}',
                         b'{"binding":"00","ts":1,"nonce":"00","sig":"00","extra":1}'):
                async with http.post(b.url + "/tickets", data=body,
                                     headers={"Content-Type": "application/json"}) as r:
                    assert r.status in (400, 413), await r.text()
                    assert "error" in await r.json()
            assert c.ticket_requests_bad == bad + 5
            async with http.post(b.url + "/tickets", json=stranger.ticket_request(time.time())) as r:
                assert r.status == 403  # the route still answers on its merits

            # A hostile ticket server answering a bomb: a counted fetch error, retried later.
            async def bomb(request: web.Request) -> web.Response:
                return web.Response(body=BOMB, content_type="application/json")

            app = web.Application()
            app.router.add_post("/tickets", bomb)
            runner, url = await serve(app)
            try:
                errors = stranger.counters.ticket_fetch_errors
                await stranger.start_viewer(http, url + "/tickets")
                assert stranger.counters.ticket_fetch_errors == errors + 1
                assert stranger.ticket is None and stranger.disabled is None
            finally:
                await runner.cleanup()
    finally:
        sys.setrecursionlimit(old_limit)
        await vnode.close()
        await snode.close()
        vr.close()
        stranger.close()
        await b.close()


async def test_a_receipt_flooder_does_not_use_up_an_honest_peers_rate_limit(tmp_path):
    b = await Broadcaster().start(tmp_path)
    # The relay's own message budget is opened wide so the flood reaches the rewards intake.
    rnode, relay = await rewards_node(b, tmp_path, "relay",
                                      policy=pp.PolicyConfig(msg_rate=1e6, msg_burst=1e6))
    flooder = Node(Identity.generate(), sw.SwarmConfig())
    honest = Node(Identity.generate(), sw.SwarmConfig())
    await flooder.start()
    await honest.start()
    # an attacker keeps no cap of ours on what it queues: with it, a loaded machine's relay
    # read the flood slowly, the flooder's own link closed at 256 KiB unsent (session 47's
    # cap on what waits for credit) and the flood stopped short of the count (a clean-clone
    # run, 2026-12-06)
    flooder.endpoint.control_unsent_max = 1 << 30
    stop = asyncio.Event()
    try:
        assert await flooder.connect(rnode.peer_id, rnode.host, rnode.port)
        assert await honest.connect(rnode.peer_id, rnode.host, rnode.port)
        flink = flooder.links_by_peer[rnode.identity.public]
        hlink = honest.links_by_peer[rnode.identity.public]
        domain = relay.chain.deployment.domain()
        epoch = int(time.time()) // 10 - 1
        junk = [sign_receipt(os.urandom(32), domain, relay=relay.wallet.address, stream=b.rewards.stream,
                             epoch=epoch, index=i, received=1 + i).encode() for i in range(200)]
        c = relay.counters

        async def flood() -> None:
            i = 0
            while not stop.is_set():
                for _ in range(200):
                    flink.send(wire.ReceiptMsg(receipt=junk[i % len(junk)]))
                    i += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(flood())
        await until(lambda: c.receipts_rate_limited >= 1000, 30)
        # Twenty receipts from the honest peer (naming another relay, so they are told
        # apart once past the rate limit): all pass its own bucket, despite the flood.
        other = sign_receipt(os.urandom(32), domain, relay=os.urandom(20), stream=b.rewards.stream,
                             epoch=epoch, index=0, received=1).encode()
        for _ in range(20):
            hlink.send(wire.ReceiptMsg(receipt=other))
        await until(lambda: c.reasons.get("wrong-relay", 0) >= 20, 30)
        assert c.reasons["wrong-relay"] == 20
        stop.set()
        await task
    finally:
        stop.set()
        await flooder.close()
        await honest.close()
        await rnode.close()
        relay.close()
        await b.close()


async def test_a_relay_takes_tickets_only_for_the_stream_it_carries(tmp_path):
    """An outsider linked to a relay sends a ticket it signed for a stream of its own (the
    first step of the settle wedge and of the gas drain): refused at intake. The relay
    learned the real stream's on-chain id from the broadcaster's wallet binding on their
    link; a ticket for that stream is taken."""
    b = await Broadcaster().start(tmp_path)
    rnode, relay = await rewards_node(b, tmp_path, "relay")
    outsider = Node(Identity.generate(), sw.SwarmConfig())
    await outsider.start()
    try:
        assert await rnode.connect(b.node.peer_id, b.node.host, b.node.port)
        await until(lambda: b.rewards.stream in relay.carried, 30)
        assert await outsider.connect(rnode.peer_id, rnode.host, rnode.port)
        link = outsider.links_by_peer[rnode.identity.public]
        chain, domain = relay.chain, relay.chain.deployment.domain()
        kb, key = os.urandom(32), os.urandom(32)

        def own_stream() -> bytes:
            fund(chain, chain.faucet_key, eip712.address_of_key(kb))
            return chain.open_stream(kb, key, 1, 1)

        sa = await relay.run(own_stream)
        now = int(time.time())
        t = sign_ticket(kb, domain, Ticket(os.urandom(20), sa, 0, 10**6, now - 300, now + 300))
        link.send(wire.TicketMsg(ticket=t.encode()))
        await until(lambda: relay.counters.tickets_bad >= 1, 30)
        assert relay.counters.tickets_ok == 0
        real = await b.rewards.run(b.rewards.issue_ticket, os.urandom(20))
        link.send(wire.TicketMsg(ticket=bytes.fromhex(real["ticket"])))
        await until(lambda: relay.counters.tickets_ok >= 1, 30)
    finally:
        await outsider.close()
        await rnode.close()
        relay.close()
        await b.close()


async def test_a_broadcaster_with_its_ledger_db_moved_away_does_not_reuse_ticket_indexes(tmp_path):
    """Ticket indexes (the viewers' lanes on chain) were numbered len(indexes) from
    ledger.db: a broadcaster restarted without it (as the docs advised for a damaged
    store) gave the next viewer index 0 again, so two viewers shared a lane and a relay
    serving both was paid for one. Now the start is refused while the stream is open on
    chain and the store does not know it; with the store back, indexes go on."""
    ident = Identity.generate()
    sid = StreamId(ident.public, "live")

    def broadcaster() -> Rewards:
        cfg = RewardsConfig(data_dir=str(tmp_path / "b"), chain_dir=str(tmp_path / "chain"), epoch_length=10)
        return Rewards(cfg, ident, stream_text_id=str(sid))

    r = broadcaster()
    await r.start_broadcaster(800)
    first = await r.run(r.issue_ticket, os.urandom(20))
    r.close()
    ledger = tmp_path / "b" / "ledger"
    aside = tmp_path / "aside"
    aside.mkdir()
    for f in ledger.glob("ledger.db*"):
        f.rename(aside / f.name)
    r = broadcaster()
    with pytest.raises(DataFileError, match="ticket indexes"):
        await r.start_broadcaster(800)
    r.close()
    for f in ledger.glob("ledger.db*"):
        f.unlink()
    for f in aside.iterdir():
        f.rename(ledger / f.name)
    r = broadcaster()
    await r.start_broadcaster(800)
    second = await r.run(r.issue_ticket, os.urandom(20))
    r.close()
    assert Ticket.decode(bytes.fromhex(first["ticket"])).index == 0
    assert Ticket.decode(bytes.fromhex(second["ticket"])).index == 1


async def test_a_wallet_key_that_is_not_the_ledger_s_is_refused_not_settled_from(tmp_path):
    """Found 2026-12-06 from outside: another node's (valid) wallet.key put beside a
    ledger.db with unsettled receipts -- a wrong backup restored -- was taken without a word;
    the receipts were submitted from an address they do not pay, paid 0 and marked settled:
    written off for good. Now the node and ``oasis wallet`` refuse it, naming both addresses,
    and nothing in the store moves; the right key works again."""
    from oasis.ledger.wallet import STORE_FILE, WALLET_FILE, Wallet, ledger_dir, wallet_report

    b = await Broadcaster().start(tmp_path)
    try:
        node, r = await rewards_node(b, tmp_path, "v")
        own = r.wallet.address
        r.close()
        await node.close()
        other = Wallet.load_or_create(tmp_path / "other")
        key = ledger_dir(tmp_path / "v") / WALLET_FILE
        kept = key.read_bytes()
        key.write_bytes((ledger_dir(tmp_path / "other") / WALLET_FILE).read_bytes())
        store = ledger_dir(tmp_path / "v") / STORE_FILE
        before = store.read_bytes()
        with pytest.raises(DataFileError, match=f"0x{other.address.hex()}.*made out to 0x{own.hex()}"):
            await rewards_node(b, tmp_path, "v")
        with pytest.raises(DataFileError, match="Restore the wallet.key that goes with this ledger.db"):
            wallet_report(tmp_path / "v", None)
        assert store.read_bytes() == before
        key.write_bytes(kept)
        assert wallet_report(tmp_path / "v", None)["address"].lower() == "0x" + own.hex()
    finally:
        await b.close()
