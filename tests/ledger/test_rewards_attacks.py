"""Attacks on a node's proof-of-relay face, mounted against the real parts: real Node
objects linked over QUIC on 127.0.0.1, the real rewards HTTP routes served by aiohttp
on 127.0.0.1, the real Rewards object and the real contracts on the embedded EVM.

* ``POST /tickets`` handed a ticket to anyone who asked (200 in 1.2 s, 24 h each).
* A viewer took a ticket's terms unverified (``epoch_length: 0`` crashed its media path).
* The relay's ledger queue was unbounded (65,100 junk receipts: RSS doubled, shutdown hung).
* ``POST /rewards/settle`` was open to anyone.
"""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp
import pytest
from aiohttp import web
from node.procs import serve, until  # tests/node/procs.py: the node tests' helpers

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId
from oasis.ledger import eip712
from oasis.ledger.receipts import sign_receipt
from oasis.node.node import Node
from oasis.node.rewards import (
    MAX_PENDING_RECEIPTS,
    TICKET_LIFETIME,
    Rewards,
    RewardsConfig,
    TicketRefused,
    settle_token,
    ticket_request_message,
)
from oasis.node.rewards_http import SETTLE_TOKEN_HEADER, add_rewards_routes


class Broadcaster:
    """A real broadcaster node with rewards on an embedded chain and its HTTP routes."""

    async def start(self, tmp) -> Broadcaster:
        self.ident = Identity.generate()
        self.sid = StreamId(self.ident.public, "live")
        self.node = Node(self.ident, sw.SwarmConfig())
        await self.node.start()
        self.node.add_stream(self.sid, is_source=True)
        self.chain_dir = str(tmp / "chain")
        cfg = RewardsConfig(data_dir=str(tmp / "b"), chain_dir=self.chain_dir, epoch_length=10)
        self.rewards = Rewards(cfg, self.ident, stream_text_id=str(self.sid))
        self.node.rewards = self.rewards
        await self.rewards.start_broadcaster(800)
        app = web.Application()
        add_rewards_routes(app, self.node, broadcaster=True)
        self.runner, self.url = await serve(app)
        return self

    async def close(self) -> None:
        await self.runner.cleanup()
        await self.node.close()
        self.rewards.close()


async def viewer_node(b: Broadcaster, tmp, name: str) -> tuple[Node, Rewards]:
    ident = Identity.generate()
    node = Node(ident, sw.SwarmConfig())
    await node.start()
    node.add_stream(b.sid, is_source=False)
    cfg = RewardsConfig(data_dir=str(tmp / name), chain_dir=b.chain_dir)
    r = Rewards(cfg, ident, stream_text_id=str(b.sid))
    node.rewards = r
    await r.open()
    return node, r


async def test_tickets_only_for_swarm_members_fresh_and_rate_limited(tmp_path):
    b = await Broadcaster().start(tmp_path)
    vnode, vr = await viewer_node(b, tmp_path, "v")
    outsider = Rewards(RewardsConfig(data_dir=str(tmp_path / "x"), chain_dir=b.chain_dir), Identity.generate(),
                       stream_text_id=str(b.sid))
    c = b.rewards.counters
    try:
        async with aiohttp.ClientSession() as http:
            async def post(body) -> int:
                async with http.post(b.url + "/tickets", json=body) as r:
                    return r.status

            # 1. A stranger with a valid identity and binding but not in the swarm: refused.
            assert await post(outsider.ticket_request(time.time())) == 403
            assert c.ticket_requests_not_member == 1
            # 2. Forged, stale and replayed requests.
            req = outsider.ticket_request(time.time())
            assert await post({**req, "sig": "00" * 64}) == 400
            assert await post(outsider.ticket_request(time.time() - 3600)) == 403
            assert await post({"binding": "zz"}) == 400
            assert c.ticket_requests_bad == 2 and c.ticket_requests_stale == 1
            # 3. The viewer links to the broadcaster and joins the stream: it gets a ticket.
            host, port = b.node.host, b.node.port
            assert await vnode.connect(b.node.peer_id, host, port)
            await until(lambda: b.sid.key in b.node.joined.get(vnode.identity.public, set()), 20.0)
            await vr.start_viewer(http, b.url + "/tickets")
            assert vr.ticket is not None and vr.disabled is None
            assert vr.ticket.expiry - vr.ticket.not_before <= TICKET_LIFETIME
            assert vr.ticket.viewer == vr.wallet.address and vr.ticket.stream == b.rewards.stream
            assert c.ticket_requests_ok == 1
            # ... but the same signed request cannot be replayed, even by the member itself.
            req = vr.ticket_request(time.time())
            assert await post(req) == 200
            assert await post(req) == 403
            # 3b. Someone else sends requests in the member's name (its binding is public) with
            # bad signatures: refused as forged, and its own next renewal still goes through.
            forged = [await post({**vr.ticket_request(time.time()), "sig": "00" * 64}) for _ in range(8)]
            assert forged == [400] * 8
            assert await post(vr.ticket_request(time.time())) == 200
            # 3c. An on-path observer replays a captured request six times: each is refused as
            # a replay and none is charged to the member's rate (it was, before the nonce
            # check: the member's own next renewal was then refused, 429). The replays go
            # to the broadcaster's admission itself, the check behind POST /tickets (over
            # HTTP they would first have to be paced under the per-address limit, 2/s).
            captured = vr.ticket_request(time.time())
            assert await post(captured) == 200
            for _ in range(6):
                with pytest.raises(TicketRefused) as refused:
                    b.rewards.admit(captured, time.time())
                assert (refused.value.status, refused.value.counter) == (403, "ticket_requests_stale")
            # the member's own next renewal is not refused (429): asked from another loopback
            # address, whose per-address budget the requests above did not spend
            other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            async with aiohttp.ClientSession(connector=other) as http2, http2.post(
                    b.url + "/tickets", json=vr.ticket_request(time.time())) as r:
                assert r.status == 200
            # 4. One identity hammering: rate-limited (burst of 5, then 1 per 10 s).
            hammer = [await post(vr.ticket_request(time.time())) for _ in range(10)]
            assert hammer.count(429) >= 6 and set(hammer) <= {200, 429}
            # 5. One address hammering with fresh identities: rate-limited per address.
            codes = []
            for _ in range(40):
                o = Rewards.__new__(Rewards)  # just enough of a Rewards to sign a request
                o.identity = Identity.generate()
                w = eip712.address_of_key(os.urandom(32))
                o.stream_key = b.rewards.stream_key
                o.binding = _binding(o.identity, w)
                codes.append(await post(o.ticket_request(time.time())))
            assert codes.count(429) >= 15 and 200 not in codes
            assert c.ticket_requests_rate_limited >= 21
            # Nobody outside the swarm got a ticket: only the member, within its limit.
            assert c.ticket_requests_ok == 5 + hammer.count(200) <= 5
            assert list(b.rewards._issued) == [vr.wallet.address]
            # 6. Junk bodies are charged to the address before they are read: a flood of them
            # from one address is rate-limited like well-formed requests (429, not 400s for ever)
            junk = [await post({}) for _ in range(30)]
            assert junk.count(429) >= 15, junk
    finally:
        await vnode.close()
        vr.close()
        outsider.close()
        await b.close()


def _binding(identity: Identity, wallet_addr: bytes) -> bytes:
    """A binding-shaped blob for a stranger (its wallet signature is not checked before
    the rate limits, which is the point of the test)."""
    from oasis.ledger.wallet import BINDING_LEN

    return (identity.public + wallet_addr).ljust(BINDING_LEN, b"\x01")


@pytest.mark.parametrize("attack", ["epoch-zero", "other-chain", "other-pool", "other-stream",
                                    "other-broadcaster", "not-hex", "huge-price"])
async def test_viewer_refuses_bad_ticket_terms(tmp_path, attack):
    """A hostile ticket server: every bad term turns rewards off for the stream (counted,
    logged); the media path keeps working (on_media never raises)."""
    b = await Broadcaster().start(tmp_path)
    vnode, vr = await viewer_node(b, tmp_path, "v")
    try:
        await vnode.connect(b.node.peer_id, b.node.host, b.node.port)
        await until(lambda: b.sid.key in b.node.joined.get(vnode.identity.public, set()), 20.0)
        good = b.rewards.issue_ticket(vr.wallet.address)
        mallory = Identity.generate()
        from oasis.ledger.wallet import Wallet, bind_wallet

        mw = Wallet.load_or_create(str(tmp_path / "m"))
        bad = {
            "epoch-zero": {**good, "epoch_length": 0},
            "other-chain": {**good, "chain_id": good["chain_id"] + 1},
            "other-pool": {**good, "pool": "0x" + "11" * 20},
            "other-stream": {**good, "ticket": good["ticket"][:40] + "22" * 32 + good["ticket"][104:]},
            "other-broadcaster": {**good, "broadcaster_binding":
                                  bind_wallet(mallory.private_bytes(), mallory.public, mw).encode().hex()},
            "not-hex": {**good, "ticket": "xyz"},
            "huge-price": {**good, "price_per_mb": str(2**255)},
        }[attack]

        async def tickets(request: web.Request) -> web.Response:
            return web.json_response(bad)

        app = web.Application()
        app.router.add_post("/tickets", tickets)
        runner, url = await serve(app)
        try:
            async with aiohttp.ClientSession() as http:
                await vr.start_viewer(http, url + "/tickets")
        finally:
            await runner.cleanup()
        assert vr.ticket is None and vr.meter is None
        assert vr.disabled and vr.counters.ticket_terms_bad == 1
        for i in range(1000):  # media keeps flowing: no ZeroDivisionError, nothing metered
            vr.on_media(b.ident.public, 1316, time.time() + i)
        assert vr.due_messages(time.time()) == []
        assert not vr._ticket_due(time.time() + 3600)  # and no more ticket requests
    finally:
        await vnode.close()
        vr.close()
        await b.close()


async def test_receipt_flood_is_bounded_and_shutdown_does_not_wait(tmp_path):
    """65,000 real signed receipts (5,001 distinct ones, resent) from many peers: the queue
    stays bounded, drops and coalescing are counted, an honest peer's receipt still gets
    through, and close() returns promptly with the backlog dropped."""
    b = await Broadcaster().start(tmp_path)
    rnode, relay = await viewer_node(b, tmp_path, "relay")
    try:
        # The relay carries the stream: it learns its on-chain id from the broadcaster's
        # wallet binding on their link (it takes tickets and receipts for no other stream).
        assert await rnode.connect(b.node.peer_id, b.node.host, b.node.port)
        await until(lambda: b.rewards.stream in relay.carried, 30)
        domain = relay.chain.deployment.domain()
        # An honest viewer of the stream, with a real ticket.
        vkey = os.urandom(32)
        ticket = b.rewards.issuer.issue(eip712.address_of_key(vkey), int(time.time()) - 30)
        honest_peer = b"\x42" * 32
        relay.on_ticket(wire.TicketMsg(ticket=ticket.encode()), honest_peer)
        epoch = int(time.time()) // 10 - 1
        # Junk: receipts signed by strangers (no ticket), addressed to this relay. Signing is
        # what costs (65,000 took ~9.5 s of the test's 11.6), so 5,001 are signed and sent
        # over and over: 5,001 is prime to the 40 peers, so no (peer, index) pair recurs in
        # the 65,000 (the relay's queue key is (peer, stream, index, epoch): nothing
        # coalesces that did not before), and the first 5,000, sent without a peer below,
        # are all distinct. A receipt the rate limit drops is not even decoded.
        keys = [os.urandom(32) for _ in range(50)]
        signed = []
        for i in range(5_001):
            r = sign_receipt(keys[i % 50], domain, relay=relay.wallet.address, stream=b.rewards.stream,
                             epoch=epoch, index=i, received=1000 + i)
            signed.append(wire.ReceiptMsg(receipt=r.encode()))
        junk = [signed[i % len(signed)] for i in range(65_000)]
        peers = [os.urandom(32) for _ in range(40)]
        for i, m in enumerate(junk):
            relay.on_receipt(m, peers[i % 40])
            assert relay.pending()["receipts"] <= MAX_PENDING_RECEIPTS
        # ... and as an older caller that does not name the peer (one shared bucket).
        for m in junk[:5000]:
            relay.on_receipt(m)
        c = relay.counters
        assert c.receipts_rate_limited > 60_000
        # Coalescing: one peer's cumulative receipts for one key keep only the newest.
        good = [sign_receipt(vkey, domain, relay=relay.wallet.address, stream=b.rewards.stream, epoch=epoch,
                             index=ticket.index, received=n) for n in (1000, 2000, 3000)]
        for r in good:
            relay.on_receipt(wire.ReceiptMsg(receipt=r.encode()), honest_peer)
        await until(lambda: c.receipts_ok >= 1, 60)
        assert relay.ledger is not None
        assert await relay.run(relay.ledger.store.latest, ticket.viewer, b.rewards.stream, epoch) == 3000
        # Malformed receipts are dropped before they are queued.
        before = relay.pending()["receipts"]
        relay.on_receipt(wire.ReceiptMsg(receipt=b"\x01" * 10), b"\x43" * 32)
        other = sign_receipt(vkey, domain, relay=b"\x09" * 20, stream=b.rewards.stream, epoch=epoch,
                             index=0, received=5)
        relay.on_receipt(wire.ReceiptMsg(receipt=other.encode()), b"\x43" * 32)
        assert c.receipts_malformed == 2 and relay.pending()["receipts"] <= before
        # Settlement is not starved by the backlog: the honest receipt is paid.
        await asyncio.wait_for(relay.settle(include_current=True), timeout=120)
        assert relay.chain.token_balance(relay.wallet.address) > 0
        # Shutdown with a backlog: bounded, backlog dropped and counted.
        for m in junk[:2000]:
            relay.on_receipt(m, os.urandom(32))
        t0 = time.monotonic()
        relay.close()
        assert time.monotonic() - t0 < 10
        assert relay.pending() == {"receipts": 0, "tickets": 0}
        assert c.receipts_dropped_on_close > 0
        relay.on_receipt(junk[0], peers[0])  # after close: ignored, no error
    finally:
        relay.close()
        await rnode.close()  # (its HTTP client session was left to the GC)
        await b.close()


async def test_settle_route_needs_loopback_and_the_token(tmp_path):
    b = await Broadcaster().start(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            async def settle(headers) -> int:
                async with http.post(b.url + "/rewards/settle", headers=headers) as r:
                    return r.status

            assert await settle({}) == 403
            assert await settle({SETTLE_TOKEN_HEADER: "0" * 64}) == 403
            token = settle_token(str(tmp_path / "b"))
            assert (tmp_path / "b" / "ledger" / "settle.token").stat().st_mode & 0o077 == 0
            assert await settle({SETTLE_TOKEN_HEADER: token}) == 200
        assert b.rewards.counters.settle_requests_refused == 2
        # From another host, even with the token: refused.
        assert not b.rewards.settle_allowed("192.0.2.7", token)
    finally:
        await b.close()


def test_ticket_request_signature_covers_stream_time_nonce_and_binding():
    ident = Identity.generate()
    m = ticket_request_message(b"\x01" * 32, 5, b"\x02" * 16, b"\x03" * 181)
    assert len(m) == len(b"oasis/ticket-request/v1\x00") + 32 + 8 + 16 + 181
    assert m != ticket_request_message(b"\x01" * 32, 6, b"\x02" * 16, b"\x03" * 181)
    assert ident.sign(m)


async def test_receipt_flood_over_a_real_link(tmp_path):
    """The same flood sent over QUIC by a linked peer to a real relay node: the node's
    intake stays bounded and counted, and the node and its rewards shut down promptly."""
    b = await Broadcaster().start(tmp_path)
    rnode, relay = await viewer_node(b, tmp_path, "relay")
    anode = Node(Identity.generate(), sw.SwarmConfig())
    await anode.start()
    anode.add_stream(b.sid, is_source=False)
    try:
        assert await anode.connect(rnode.peer_id, rnode.host, rnode.port)
        link = next(iter(anode.links_by_peer.values()))
        domain = relay.chain.deployment.domain()
        key = os.urandom(32)
        epoch = int(time.time()) // 10 - 1
        n = 20_000
        for i in range(n):
            r = sign_receipt(key, domain, relay=relay.wallet.address, stream=b.rewards.stream,
                             epoch=epoch, index=i, received=1 + i)
            link.send(wire.ReceiptMsg(receipt=r.encode()))
            if i % 500 == 0:
                await asyncio.sleep(0)
                assert relay.pending()["receipts"] <= MAX_PENDING_RECEIPTS
        c = relay.counters
        # Either every receipt is accounted for by the rewards intake, or the node's own
        # peer policy cut the flooder off first (message budget): both are bounded.
        await until(lambda: not rnode.links_by_peer or c.receipts_rate_limited + c.receipts_bad
                       + c.receipts_queue_full + relay.pending()["receipts"] >= n * 0.9, timeout=60)
        assert c.receipts_ok == 0
        assert relay.pending()["receipts"] <= MAX_PENDING_RECEIPTS
        # What reached the worker is what the rate limits let through, not the flood.
        assert c.receipts_bad <= 400 + 200 * 60 and c.receipts_bad < n
        t0 = time.monotonic()
        await rnode.close()
        relay.close()
        assert time.monotonic() - t0 < 15
    finally:
        await anode.close()
        await rnode.close()
        relay.close()
        await b.close()


async def test_a_renewed_ticket_keeps_its_window_start(tmp_path):
    """Short-lived tickets are renewed before they expire; the renewal keeps the window's
    start so the epoch in progress stays covered, and relays are sent the new ticket."""
    b = await Broadcaster().start(tmp_path)
    vnode, vr = await viewer_node(b, tmp_path, "v")
    try:
        assert await vnode.connect(b.node.peer_id, b.node.host, b.node.port)
        await until(lambda: b.sid.key in b.node.joined.get(vnode.identity.public, set()), 20.0)
        async with aiohttp.ClientSession() as http:
            await vr.start_viewer(http, b.url + "/tickets")
            first = vr.ticket
            assert first is not None and not vr._ticket_due(time.time())
            assert vr._ticket_due(first.expiry - TICKET_LIFETIME / 3 + 1)
            vr.ticket_sent.add(b"\x01" * 32)
            b.rewards.clock = lambda: time.time() + 2  # a later second: a new window would start later
            await vr._fetch_ticket()
            assert vr.ticket is not None and vr.ticket != first
            assert vr.ticket.not_before == first.not_before and vr.ticket.expiry > first.expiry
            assert vr.ticket.index == first.index and vr.ticket_sent == set()
    finally:
        await vnode.close()
        vr.close()
        await b.close()


def test_the_settle_token_is_never_empty_nor_exposed(tmp_path) -> None:
    """An empty settle.token (a crash mid-write, or a user's `: > settle.token`) would let
    anyone on the machine settle with an empty header: it is refused, as is one others can
    read; a fresh one is 64 hex digits, 0600."""
    import stat

    from oasis.datafiles import DataFileError, DataFilePermissionError
    from oasis.ledger.wallet import ledger_dir
    from oasis.node.rewards import SETTLE_TOKEN_FILE, settle_token

    token = settle_token(tmp_path)
    path = ledger_dir(tmp_path) / SETTLE_TOKEN_FILE
    assert len(token) == 64 and int(token, 16) >= 0 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settle_token(tmp_path) == token  # read back, not replaced
    path.write_text("")
    with pytest.raises(DataFileError, match="64 hex digits"):
        settle_token(tmp_path)
    path.write_text(token + "\n")
    path.chmod(0o644)
    with pytest.raises(DataFilePermissionError):
        settle_token(tmp_path)
