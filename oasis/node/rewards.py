"""Proof of relay inside a running node: wallets on links, tickets, receipts, settlement.

Theory of operation
-------------------
* **Links.** Right after authentication each side sends WALLET: its
  secp256k1 wallet bound to its Ed25519 identity. A binding that does not
  verify against the link's proven key is a counted violation.
* **Broadcaster.** Opens its stream on chain (the id is bound to its wallet)
  with a deposit and a price per MB, and admits viewers over HTTP
  (``POST /tickets``). A request carries the viewer's binding, a timestamp
  and a nonce, signed by the viewer's Ed25519 identity; it is refused unless
  fresh, not replayed, within the per-address and per-identity rate limits,
  and the identity is in the swarm (a linked neighbour that joined the
  stream, or accepted by :attr:`Rewards.member_hook`). Tickets live
  ``TICKET_LIFETIME`` seconds; viewers renew them.
* **Viewer.** Fetches its ticket, checks every term before using it (the
  ticket names our wallet and the stream id bound to the broadcaster's
  wallet, which the broadcaster's binding ties to the identity in the stream
  id; the terms read from our chain are in range; chain id and pool are
  ours) -- bad terms disable rewards for the stream, counted and logged, and
  never touch the media path. It counts the media bytes each relay delivered
  (a :class:`~oasis.ledger.receipts.ViewerMeter`) and every
  ``receipt_interval`` seconds sends each relay its TICKET (once per ticket)
  and a signed cumulative RECEIPT for the current epoch.
* **Relay.** Takes tickets and receipts only for the stream it carries
  (``carried``: the on-chain ids it verified -- its own as broadcaster, its own
  ticket's, the one made from the broadcaster's wallet binding on a link), so an
  outsider's own streams never reach its store or its settle transactions.
  Rate-limits TICKETs and RECEIPTs per peer, drops malformed ones
  at once, and queues the rest in bounded tables that keep only the newest
  receipt per (peer, stream, index, epoch); the worker verifies them and
  keeps the latest per (viewer, stream, epoch) in SQLite (WAL). When an
  epoch has ended it submits one settlement transaction per stream (batches
  of ≤256). ``close()`` never waits for a backlog: queued items are dropped
  (counted) and the running job stops between items.

All ledger work that touches SQLite or the chain runs on one worker thread,
so the event loop never waits on a transaction and the store is used from
one thread only. CPU spent on receipts (signing, verifying, storing,
settling) is measured with ``time.thread_time`` on that thread plus the
signing on the loop, so the demo can report its share of the process CPU.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from oasis.core import wire
from oasis.core.identity import Identity, verify
from oasis.core.stream import StreamId
from oasis.datafiles import DataFileError, read_small, refuse_exposed, write_new
from oasis.ledger import devnet
from oasis.ledger.chain import LedgerChain, open_chain, stream_id
from oasis.ledger.receipt_store import ReceiptStore
from oasis.ledger.receipts import MAX_RECEIVED, Receipt, ReceiptError, ViewerMeter
from oasis.ledger.settlement import RelayLedger, Terms, TermsError, check_terms, epoch_of
from oasis.ledger.tickets import Ticket, TicketError, TicketIssuer, allowance_for, verify_ticket
from oasis.ledger.wallet import (
    WALLET_FILE,
    BindingError,
    Wallet,
    bind_wallet,
    ledger_dir,
    verify_binding,
)

from .http import read_reply

log = logging.getLogger("oasis.rewards")

STORE_FILE = "ledger.db"
SETTLE_TOKEN_FILE = "settle.token"
TICKET_REQUEST_TAG = b"oasis/ticket-request/v1\x00"
TICKET_LIFETIME = 600  #: seconds a ticket is valid; viewers renew at a third left
TICKET_MAX_SKEW = 60  #: a ticket request's timestamp must be this close to ours
MAX_NONCES = 8192  #: ticket-request nonces remembered (replay cache)
MAX_TICKET_BODY = 2048
MAX_PENDING_RECEIPTS = 4096  #: receipts queued for the worker (coalesced per key)
MAX_PENDING_TICKETS = 1024
DRAIN_BUDGET_S = 0.25  #: worker time per drain job, so settlement is never starved
CLOSE_TIMEOUT_S = 10.0
MAX_RATE_KEYS = 4096  #: rate-limit buckets kept (oldest evicted)


class TokenBuckets:
    """One token bucket per key (peer, identity, address), at most ``cap`` keys."""

    def __init__(self, rate: float, burst: float, cap: int = MAX_RATE_KEYS) -> None:
        self.rate, self.burst, self.cap = rate, burst, cap
        self.buckets: dict[Any, list[float]] = {}

    def allow(self, key: Any, now: float) -> bool:
        b = self.buckets.pop(key, None)
        if b is None:
            b = [self.burst, now]
            while len(self.buckets) >= self.cap:
                self.buckets.pop(next(iter(self.buckets)))
        b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        self.buckets[key] = b  # most recently used last
        if b[0] < 1.0:
            return False
        b[0] -= 1.0
        return True


class TicketRefused(Exception):
    """A ticket request the broadcaster refuses: HTTP ``status`` and a counter name."""

    def __init__(self, status: int, counter: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.counter, self.reason = status, counter, reason


def ticket_request_message(stream: bytes, ts: int, nonce: bytes, binding: bytes) -> bytes:
    """What a viewer's identity signs to ask for a ticket for on-chain ``stream``."""
    return TICKET_REQUEST_TAG + stream + ts.to_bytes(8, "big") + nonce + binding


def settle_token(data_dir: str | Path) -> str:
    """The secret ``POST /rewards/settle`` wants (``X-Oasis-Settle-Token``); created 0600."""
    path = ledger_dir(data_dir) / SETTLE_TOKEN_FILE
    if not path.exists():  # written whole (temp + link) or not at all: never an empty token
        write_new(path, secrets.token_hex(32).encode() + b"\n")
    refuse_exposed(path, "the settle token")
    token = read_small(path, "the settle token").decode("ascii", "replace").strip()
    if len(token) != 64 or any(ch not in "0123456789abcdef" for ch in token):
        # an empty token would let anyone on this machine settle with an empty header
        raise DataFileError(path, "does not hold a settle token (64 hex digits)",
                            "delete it: the node writes a new one at its next start")
    return token


class TicketReply(msgspec.Struct):
    """The broadcaster's answer to a ticket request, as a viewer decodes it (every term is
    then checked against our chain and the signed descriptor in :meth:`Rewards._check_reply`)."""

    ticket: str
    broadcaster_binding: str
    epoch_length: int | None = None
    price_per_mb: str | int | None = None
    chain_id: int | None = None
    pool: str | None = None
    stream: str | None = None


@dataclass
class RewardsConfig:
    data_dir: str
    chain_rpc: str | None = None
    chain_dir: str | None = None  #: shared embedded chain directory
    epoch_length: int = 10
    price_per_mb: int = devnet.DEFAULT_PRICE_PER_MB
    deposit: int = 10**24
    receipt_interval: float = 2.0
    dev_faucet_key: bytes | None = None  #: dev chains only: fund wallets with gas


@dataclass
class RewardsCounters:
    bindings_ok: int = 0
    bindings_bad: int = 0
    tickets_ok: int = 0
    tickets_bad: int = 0
    tickets_rate_limited: int = 0
    tickets_queue_full: int = 0
    receipts_sent: int = 0
    receipts_ok: int = 0
    receipts_stale: int = 0
    receipts_bad: int = 0
    receipts_malformed: int = 0  #: dropped before queueing (length, version, relay, empty)
    receipts_rate_limited: int = 0
    receipts_queue_full: int = 0
    receipts_coalesced: int = 0  #: replaced in the queue by a newer one of the same key
    receipts_dropped_on_close: int = 0
    ticket_requests_ok: int = 0
    ticket_requests_bad: int = 0  #: malformed, bad binding or signature
    ticket_requests_stale: int = 0  #: timestamp too far off, or nonce replayed
    ticket_requests_not_member: int = 0
    ticket_requests_rate_limited: int = 0
    ticket_fetch_errors: int = 0  #: viewer: broadcaster unreachable or refused (retried)
    ticket_terms_bad: int = 0  #: viewer: ticket or terms failed a check (rewards off)
    settle_requests_refused: int = 0
    settle_errors: int = 0
    settle_entries_retry: int = 0  #: refused as unfunded: kept for a later resubmission
    settle_entries_given_up: int = 0
    streams_bad_terms: int = 0  #: relay: streams whose on-chain terms are out of range
    receipts_store_failed: int = 0  #: relay: verified but not stored (ledger.db: disk full, I/O error)
    settle_batches_failed: int = 0  #: relay: settle txs that reverted (batch backed off)
    settle_batches_given_up: int = 0
    settle_batches_closed: int = 0  #: relay: written off: the stream closed before the epoch
    settle_batches_worthless: int = 0  #: relay: written off: could pay nothing (no tx sent)
    settle_batches_unfunded: int = 0  #: relay: held back, the pool was empty (no tx sent)
    cpu_s: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


class Rewards:
    """One node's part in proof of relay (see the module docstring)."""

    def __init__(self, cfg: RewardsConfig, identity: Identity, *, stream_text_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        #: wall clock for tickets, epochs and retries (injectable: tests step it)
        self.clock = clock
        self.identity = identity
        self.wallet = Wallet.load_or_create(cfg.data_dir)
        self.binding = bind_wallet(identity.private_bytes(), identity.public, self.wallet).encode()
        self.sid = StreamId.parse(stream_text_id)
        self.stream_key = devnet.stream_key(stream_text_id)
        #: The on-chain id of this node's own stream (as a broadcaster): bound to our wallet.
        self.stream = stream_id(self.wallet.address, self.stream_key)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self.counters = RewardsCounters()
        self.peer_wallets: dict[bytes, bytes] = {}  # Ed25519 key -> wallet address
        self.wallet_peers: dict[bytes, bytes] = {}
        self.ticket: Ticket | None = None
        self.meter: ViewerMeter | None = None
        self.ticket_sent: set[bytes] = set()
        #: relay: the on-chain ids of the stream this node carries, as far as it has
        #: verified them (its own as broadcaster, its own ticket's, the broadcaster's
        #: bound wallet on a link); tickets and receipts for any other stream are refused
        self.carried: set[bytes] = set()
        self.chain: LedgerChain | None = None
        self.ledger: RelayLedger | None = None
        self.issuer: TicketIssuer | None = None
        self.grace = 2 * cfg.receipt_interval + 1.0
        self.node: Any = None  #: the Node, set by rewards_http.add_rewards_routes
        #: Broadcaster: extra admission test for identities that are not neighbours
        #: (e.g. peers announced to our tracker). Called on the event loop.
        self.member_hook: Callable[[bytes], bool] | None = None
        self.descriptor: Any = None  #: viewer: the verified stream descriptor, if the node has one
        self.settle_token = settle_token(cfg.data_dir)
        self.closing = False
        self.disabled: str | None = None  #: viewer: why rewards are off for this stream
        # broadcaster: admission state
        self.ticket_terms: dict[str, Any] = {}
        self._nonces: dict[bytes, float] = {}
        self._req_by_addr = TokenBuckets(rate=2.0, burst=20)
        self._req_by_identity = TokenBuckets(rate=1 / 10, burst=5)
        self._issued: dict[bytes, tuple[int, int]] = {}  # viewer wallet -> window of its last ticket
        # relay: bounded intake
        self._plock = threading.Lock()
        self._pending_receipts: dict[tuple[bytes, bytes, int, int], tuple[int, bytes]] = {}
        self._pending_tickets: dict[tuple[bytes, bytes], bytes] = {}
        self._drain_scheduled = False
        self._receipt_rate = TokenBuckets(rate=5.0, burst=20)
        self._global_rate = TokenBuckets(rate=200.0, burst=400, cap=1)
        self._ticket_rate = TokenBuckets(rate=1.0, burst=4)
        # viewer: ticket fetching
        self.ticket_url: str | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ticket_task: asyncio.Task[None] | None = None
        self._next_ticket_try = 0.0
        self._ticket_backoff = 1.0

    # ---- setup (worker thread) --------------------------------------------------
    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._timed, fn, args)

    def _timed(self, fn: Any, args: tuple[Any, ...]) -> Any:
        t0 = time.thread_time()
        try:
            return fn(*args)
        finally:
            self.counters.cpu_s += time.thread_time() - t0

    def _open(self) -> None:
        self.chain = open_chain(self.cfg.data_dir, rpc_url=self.cfg.chain_rpc, chain_dir=self.cfg.chain_dir)
        faucet = self.cfg.dev_faucet_key or getattr(self.chain, "faucet_key", None)
        if faucet is not None:
            devnet.fund(self.chain, faucet, self.wallet.address)
        store = ReceiptStore(ledger_dir(self.cfg.data_dir) / STORE_FILE)
        try:
            store.bind_wallet(self.wallet.address, ledger_dir(self.cfg.data_dir) / WALLET_FILE)
        except DataFileError:
            store.close()
            raise
        self.ledger = RelayLedger(store, self.wallet.key, self.chain.deployment.domain(), self.chain)
        self.ledger.carried = self.carried
        self.ledger.recover_pending()

    async def start_broadcaster(self, bitrate_kbps: int) -> None:
        def setup() -> None:
            self._open()
            assert self.chain is not None and self.ledger is not None
            faucet = self.cfg.dev_faucet_key or getattr(self.chain, "faucet_key", None)
            if faucet is None:
                raise RuntimeError("the stream's pool must be funded: no dev faucet on this chain")
            check_terms(self.wallet.address, self.cfg.price_per_mb, self.cfg.epoch_length)
            self.carried.add(self.stream)
            store = self.ledger.store
            # Ticket indexes pick the viewers' lanes on chain and live in ledger.db. A store
            # that does not know a stream this wallet already opened would start them at 0
            # again: two viewers would share a lane and their relays be paid for one.
            if int(self.chain.stream_info(self.stream)["broadcaster"], 16) != 0 \
                    and store.stream(self.stream) is None and len(store.viewer_indexes(self.stream)) == 0:
                raise DataFileError(store.path, f"holds no ticket indexes for stream {self.sid}, which this "
                                    "wallet already opened on chain (a fresh store would hand out indexes "
                                    "viewers already hold: two viewers would share one lane and their "
                                    "relays be paid for one)", "restore ledger.db from a backup, or "
                                    "broadcast under a new stream name")
            self.ledger.set_terms(self.stream, Terms(self.wallet.address, self.cfg.price_per_mb,
                                                     self.cfg.epoch_length))  # the store knows it now
            sid = devnet.open_funded_stream(self.chain, faucet, self.wallet.key, self.stream_key,
                                            self.cfg.deposit, self.cfg.price_per_mb, self.cfg.epoch_length)
            assert sid == self.stream
            info = self.chain.stream_info(self.stream)
            self.ledger.set_terms(self.stream, Terms(bytes.fromhex(info["broadcaster"][2:]),
                                                     int(info["price_per_mb"]), int(info["epoch_length"])))
            allowance = allowance_for(bitrate_kbps * 1000, int(info["epoch_length"]))
            self.issuer = TicketIssuer(self.wallet.key, self.chain.deployment.domain(), self.stream,
                                       allowance, TICKET_LIFETIME, self.ledger.store.viewer_indexes(self.stream))
            d = self.chain.deployment
            self.ticket_terms = {"epoch_length": int(info["epoch_length"]),
                                 "price_per_mb": str(info["price_per_mb"]), "chain_id": d.chain_id,
                                 "pool": d.pool, "stream": "0x" + self.stream.hex(),
                                 "broadcaster_binding": self.binding.hex()}
        await self.run(setup)

    async def open(self) -> None:
        """Open wallet store and chain (slow: imports the EVM stack) before joining a swarm."""
        await self.run(self._open)

    # ---- broadcaster: admitting viewers ----------------------------------------------
    def admit(self, body: Any, now: float) -> bytes:
        """Event loop: check a ticket request; the viewer's wallet address, or TicketRefused.
        Cheap checks first: the caller has charged :meth:`check_address` (before it read the
        body); rate limits before any signature is verified."""
        if self.issuer is None:
            raise TicketRefused(404, "ticket_requests_bad", "not a broadcaster")
        try:
            if not isinstance(body, dict):
                raise ValueError("a JSON object is expected")
            binding = bytes.fromhex(str(body["binding"]))
            ts = int(body["ts"])
            nonce = bytes.fromhex(str(body["nonce"]))
            sig = bytes.fromhex(str(body["sig"]))
            if len(nonce) != 16 or len(sig) != 64 or not 0 <= ts < 2**63:
                raise ValueError("nonce is 16 bytes, sig 64, ts an unsigned time")
            b = verify_binding(binding)
        except (ValueError, KeyError, TypeError, BindingError) as exc:
            raise TicketRefused(400, "ticket_requests_bad", f"bad ticket request: {exc}") from None
        if abs(ts - now) > TICKET_MAX_SKEW:
            raise TicketRefused(403, "ticket_requests_stale", "request timestamp too far from ours")
        if not verify(b.identity, sig, ticket_request_message(self.stream_key, ts, nonce, binding)):
            raise TicketRefused(400, "ticket_requests_bad", "request not signed by the binding's identity")
        for n, t in list(self._nonces.items()):  # oldest first; forget those out of the window
            if t >= now - 2 * TICKET_MAX_SKEW and len(self._nonces) < MAX_NONCES:
                break
            del self._nonces[n]
        if nonce in self._nonces:
            raise TicketRefused(403, "ticket_requests_stale", "request replayed")
        self._nonces[nonce] = now
        # charged only once the identity itself signed this very request (not a replay of
        # one): a binding is public and requests can be captured, and neither forged nor
        # replayed requests may use up the owner's renewals (the address limit above
        # bounds the signature checks)
        if not self._req_by_identity.allow(b.identity, now):
            raise TicketRefused(429, "ticket_requests_rate_limited", "too many ticket requests from this identity")
        if not self.is_member(b.identity):
            raise TicketRefused(403, "ticket_requests_not_member", "identity is not in the swarm")
        return b.address

    def check_address(self, remote: str, now: float) -> None:
        """The per-address limit (TicketRefused); the HTTP face charges it before it reads
        a request's body, so junk bodies are limited like good ones."""
        if not self._req_by_addr.allow(remote, now):
            raise TicketRefused(429, "ticket_requests_rate_limited", "too many ticket requests from this address")

    def is_member(self, identity: bytes) -> bool:
        """In the swarm: a linked neighbour that joined our stream, or the hook says so."""
        node = self.node
        if node is not None and identity in node.links_by_peer \
                and self.sid.key in node.joined.get(identity, ()):
            return True
        return self.member_hook is not None and bool(self.member_hook(identity))

    def issue_ticket(self, viewer: bytes) -> dict[str, Any]:
        """Broadcaster (worker thread): a short-lived ticket for an admitted viewer wallet.
        A renewal keeps the window's start, so receipts of the epoch in progress stay covered."""
        if self.issuer is None:
            raise RuntimeError("not a broadcaster")
        now = int(self.clock())
        last = self._issued.pop(viewer, None)
        start = last[0] if last is not None and last[1] > now else now
        t = self.issuer.issue(viewer, now, not_before=start)
        while len(self._issued) >= MAX_RATE_KEYS:
            self._issued.pop(next(iter(self._issued)))
        self._issued[viewer] = (t.not_before, t.expiry)
        return {"ticket": t.encode().hex(), **self.ticket_terms}

    # ---- viewer: getting and checking a ticket -----------------------------------------
    async def start_viewer(self, http: aiohttp.ClientSession, ticket_url: str | None) -> None:
        """Try once to fetch our ticket; :meth:`loop` retries (backoff) and renews it."""
        if self.ledger is None:
            await self.open()
        if ticket_url is None:
            return
        self.ticket_url, self._http = ticket_url, http
        await self._fetch_ticket()

    def ticket_request(self, now: float) -> dict[str, Any]:
        """The body of a ticket request for the stream's broadcaster (see :meth:`admit`)."""
        ts, nonce = int(now), os.urandom(16)
        sig = self.identity.sign(ticket_request_message(self.stream_key, ts, nonce, self.binding))
        return {"binding": self.binding.hex(), "ts": ts, "nonce": nonce.hex(), "sig": sig.hex()}

    async def _fetch_ticket(self) -> None:
        if self.ticket_url is None or self._http is None or self.disabled or self.closing:
            return
        now = self.clock()
        try:
            async with self._http.post(self.ticket_url, json=self.ticket_request(now),
                                       timeout=aiohttp.ClientTimeout(total=30)) as r:
                if r.status != 200:
                    raw = await r.content.read(200)
                    raise RuntimeError(f"broadcaster refused a ticket: {r.status} {raw[:200]!r}")
                # Strict: size-capped, nesting-bounded, typed (a bad shape is a ValueError).
                reply = await read_reply(r, MAX_TICKET_BODY, TicketReply)
            body = {k: v for k, v in msgspec.structs.asdict(reply).items() if v is not None}
            ticket, epoch_length = await self.run(self._check_reply, body)
        except _BadTerms as exc:
            self.counters.ticket_terms_bad += 1
            self.disabled = str(exc)
            log.error("rewards off for stream %s: the broadcaster's ticket or terms fail a check: %s",
                      self.sid, exc)
            return
        except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError) as exc:
            self.counters.ticket_fetch_errors += 1
            self._next_ticket_try = self.clock() + self._ticket_backoff
            self._ticket_backoff = min(self._ticket_backoff * 2, 15.0)
            log.info("no ticket yet (retry in %.0f s): %s", self._next_ticket_try - self.clock(), exc)
            return
        self._ticket_backoff = 1.0
        self.ticket = ticket
        self.carried.add(ticket.stream)  # checked against the broadcaster's binding above
        self.ticket_sent.clear()  # relays get the new ticket
        self.cfg.epoch_length = epoch_length
        if self.meter is None:
            assert self.chain is not None
            self.meter = ViewerMeter(self.wallet.key, self.chain.deployment.domain(), ticket, epoch_length)
        else:
            self.meter.ticket = ticket

    def _check_reply(self, body: Any) -> tuple[Ticket, int]:
        """Worker thread: every term of a ticket reply, or _BadTerms."""
        assert self.chain is not None
        try:
            if not isinstance(body, dict):
                raise TermsError("reply is not a JSON object")
            t = Ticket.decode(bytes.fromhex(str(body["ticket"])))
            if t.viewer != self.wallet.address:
                raise TermsError("ticket names another wallet")
            # The broadcaster's wallet, bound to the Ed25519 key inside the stream id;
            # the on-chain stream id is bound to that wallet.
            bb = verify_binding(bytes.fromhex(str(body["broadcaster_binding"])), identity=self.sid.broadcaster)
            if t.stream != stream_id(bb.address, self.stream_key):
                raise TermsError("ticket is for another stream than the broadcaster's own")
            dep = self.chain.deployment
            if "chain_id" in body and int(body["chain_id"]) != dep.chain_id:
                raise TermsError(f"chain id {body['chain_id']!r} is not ours ({dep.chain_id})")
            if "pool" in body and str(body["pool"]).lower() != dep.pool.lower():
                raise TermsError(f"pool {str(body['pool'])[:64]!r} is not ours ({dep.pool})")
            info = self.chain.stream_info(t.stream)
            onchain = bytes.fromhex(info["broadcaster"][2:])
            price, epoch_length = int(info["price_per_mb"]), int(info["epoch_length"])
            check_terms(onchain, price, epoch_length)
            if onchain != bb.address:
                raise TermsError("the stream on chain has another broadcaster")
            for k, v in (("epoch_length", epoch_length), ("price_per_mb", price)):
                if k in body and int(body[k]) != v:
                    raise TermsError(f"{k} {str(body[k])[:40]!r} differs from the chain's {v}")
            d = self.descriptor
            if d is not None:
                for k, v in (("epoch_length", epoch_length), ("price_per_mb", price), ("chain_id", dep.chain_id)):
                    if getattr(d, k, None) is not None and int(getattr(d, k)) != v:
                        raise TermsError(f"{k} differs from the signed stream descriptor")
                if getattr(d, "contract", None) and str(d.contract).lower() != dep.pool.lower():
                    raise TermsError("pool differs from the signed stream descriptor")
            if not 0 < t.allowance <= MAX_RECEIVED:
                raise TermsError(f"allowance {t.allowance} out of range")
            verify_ticket(dep.domain(), t, onchain, int(self.clock()))
            if t.expiry - t.not_before > 7 * 86_400:
                raise TermsError("ticket window longer than a week")
        except (TermsError, TicketError, BindingError, KeyError, TypeError, ValueError) as exc:
            raise _BadTerms(str(exc)) from None
        return t, epoch_length

    # ---- link messages (event loop) ---------------------------------------------------
    def hello(self) -> wire.WalletBind:
        return wire.WalletBind(binding=self.binding)

    def on_wallet(self, peer: bytes, msg: wire.WalletBind) -> bool:
        try:
            b = verify_binding(msg.binding, identity=peer)
        except BindingError as exc:
            self.counters.bindings_bad += 1
            if self.counters.bindings_bad <= 3 or self.counters.bindings_bad % 1000 == 0:
                # counted always; logged for the first few and then every 1,000th, so a peer
                # sending junk bindings cannot fill the log before it is banned
                log.warning("bad wallet binding from peer (%d so far): %s", self.counters.bindings_bad, exc)
            return False
        self.counters.bindings_ok += 1
        self.peer_wallets[peer] = b.address
        self.wallet_peers[b.address] = peer
        if peer == self.sid.broadcaster:  # its wallet, proven by the link: the stream's on-chain id
            self.carried.add(stream_id(b.address, self.stream_key))
        return True

    def on_ticket(self, msg: wire.TicketMsg, peer: bytes | None = None) -> None:
        """Relay: queue a viewer's ticket for the worker (rate-limited, bounded)."""
        if self.closing:
            return
        if not self._ticket_rate.allow(peer or b"", time.monotonic()):
            self.counters.tickets_rate_limited += 1
            return
        data = bytes(msg.ticket)
        try:
            t = Ticket.decode(data)
        except TicketError:
            self.counters.tickets_bad += 1
            return
        key = (peer or b"", t.viewer)
        with self._plock:
            if key not in self._pending_tickets and len(self._pending_tickets) >= MAX_PENDING_TICKETS:
                self.counters.tickets_queue_full += 1
                return
            self._pending_tickets[key] = data
        self._schedule_drain()

    def on_receipt(self, msg: wire.ReceiptMsg, peer: bytes | None = None) -> None:
        """Relay: cheap checks, then queue the receipt for the worker. Per peer at most
        ``5/s`` (burst 20); the queue keeps the newest (largest) cumulative count per
        (peer, stream, index, epoch) and holds at most MAX_PENDING_RECEIPTS keys."""
        if self.closing:
            return
        now = self.clock()
        # Without the sending peer (older callers) all receipts share one, larger bucket.
        if not (self._receipt_rate.allow(peer, now) if peer is not None else self._global_rate.allow(b"", now)):
            self.counters.receipts_rate_limited += 1
            return
        data = bytes(msg.receipt)
        try:
            r = Receipt.decode(data)
            if r.relay != self.wallet.address:
                raise ReceiptError("wrong-relay")
            if r.received == 0:
                raise ReceiptError("empty")
            if r.epoch > now:  # epoch_length >= 1: an epoch that cannot have started
                raise ReceiptError("future-epoch")
        except ReceiptError as exc:
            self.counters.receipts_malformed += 1
            self.counters.reasons[exc.reason] = self.counters.reasons.get(exc.reason, 0) + 1
            return
        key = (peer or b"", r.stream, r.index, r.epoch)
        with self._plock:
            old = self._pending_receipts.get(key)
            if old is None and len(self._pending_receipts) >= MAX_PENDING_RECEIPTS:
                self.counters.receipts_queue_full += 1
                return
            if old is not None:
                self.counters.receipts_coalesced += 1
                if old[0] >= r.received:
                    return
            self._pending_receipts[key] = (r.received, data)
        self._schedule_drain()

    def _schedule_drain(self) -> None:
        with self._plock:
            if self._drain_scheduled or self.closing:
                return
            self._drain_scheduled = True
        try:
            self.pool.submit(self._timed, self._drain, ())
        except RuntimeError:  # executor shut down
            pass

    def _drain(self) -> None:
        """Worker: verify queued tickets (first) and receipts, for at most DRAIN_BUDGET_S."""
        deadline = time.monotonic() + DRAIN_BUDGET_S
        try:
            while not self.closing and time.monotonic() < deadline:
                with self._plock:
                    if self._pending_tickets:
                        tdata: bytes | None = self._pending_tickets.pop(next(iter(self._pending_tickets)))
                        rdata = None
                    elif self._pending_receipts:
                        tdata = None
                        rdata = self._pending_receipts.pop(next(iter(self._pending_receipts)))[1]
                    else:
                        break
                if tdata is not None:
                    self._accept_ticket(tdata)
                elif rdata is not None:
                    self._accept_receipt(rdata)
        finally:
            with self._plock:
                self._drain_scheduled = False
                more = bool(self._pending_tickets or self._pending_receipts)
            if more:
                self._schedule_drain()

    def _accept_ticket(self, data: bytes) -> None:
        if self.ledger is None:
            return
        try:
            self.ledger.accept_ticket(data)
            self.counters.tickets_ok += 1
        except (TicketError, ValueError) as exc:
            self.counters.tickets_bad += 1
            log.info("ticket refused: %s", exc)

    def _accept_receipt(self, data: bytes) -> None:
        if self.ledger is None:
            return
        v = self.ledger.accept_receipt(data)
        if v.accepted:
            self.counters.receipts_ok += 1
        elif v.reason == "stale":
            self.counters.receipts_stale += 1
        elif v.reason == "store-failed":  # (logged by the ledger) a later, larger one may still land
            self.counters.receipts_store_failed += 1
        else:
            self.counters.receipts_bad += 1
            self.counters.reasons[v.reason] = self.counters.reasons.get(v.reason, 0) + 1

    def pending(self) -> dict[str, int]:
        with self._plock:
            return {"receipts": len(self._pending_receipts), "tickets": len(self._pending_tickets)}

    def on_media(self, peer: bytes, nbytes: int, now: float) -> None:
        """Viewer: ``nbytes`` of verified media arrived from relay ``peer``."""
        addr = self.peer_wallets.get(peer)
        if self.meter is not None and addr is not None:
            self.meter.on_bytes(addr, nbytes, now)

    def due_messages(self, now: float) -> list[tuple[bytes, wire.Message]]:
        """Viewer: (peer, message) pairs to send now: TICKET once per relay, then RECEIPTs."""
        if self.meter is None or self.ticket is None:
            return []
        t0 = time.thread_time()
        out: list[tuple[bytes, wire.Message]] = []
        for r in self.meter.due(now):
            peer = self.wallet_peers.get(r.relay)
            if peer is None:
                continue
            if peer not in self.ticket_sent:
                self.ticket_sent.add(peer)
                out.append((peer, wire.TicketMsg(ticket=self.ticket.encode())))
            out.append((peer, wire.ReceiptMsg(receipt=r.encode())))
            self.counters.receipts_sent += 1
        self.counters.cpu_s += time.thread_time() - t0
        return out

    # ---- settlement ------------------------------------------------------------------
    def _settle(self, include_current: bool) -> None:
        assert self.ledger is not None
        # An epoch is settled once its last receipts had time to arrive (they are
        # sent every receipt_interval), so each epoch takes one transaction.
        now = self.clock() if include_current else self.clock() - self.grace
        try:
            self.ledger.settle_due(now, include_current=include_current)
        except Exception as exc:  # chain unreachable, out of gas, …: retried next epoch
            self.counters.settle_errors += 1
            log.warning("settlement failed: %s", exc)
        for k, v in self.ledger.counters.items():  # mirrored where /metrics looks
            setattr(self.counters, k, v)

    async def settle(self, include_current: bool = False) -> None:
        await self.run(self._settle, include_current)

    def settle_allowed(self, remote: str | None, token: str | None) -> bool:
        """``POST /rewards/settle``: only from loopback and with the data dir's token."""
        ok = remote in ("127.0.0.1", "::1") and token is not None and \
            hmac.compare_digest(token.encode(), self.settle_token.encode())
        if not ok:
            self.counters.settle_requests_refused += 1
        return ok

    def _ticket_due(self, now: float) -> bool:
        if self.ticket_url is None or self.disabled or now < self._next_ticket_try:
            return False
        if self._ticket_task is not None and not self._ticket_task.done():
            return False
        t = self.ticket
        return t is None or t.expiry - now < (t.expiry - t.not_before) / 3

    async def loop(self, send: Any) -> None:
        """Receipts every ``receipt_interval``; settlement after each epoch ends; the
        ticket fetched (with backoff) until we have one, and renewed before it expires."""
        last_epoch = epoch_of(self.clock() - self.grace, self.cfg.epoch_length)
        try:
            while True:
                await asyncio.sleep(self.cfg.receipt_interval)
                now = self.clock()
                if self._ticket_due(now):
                    self._ticket_task = asyncio.create_task(self._fetch_ticket())
                for peer, msg in self.due_messages(now):
                    send(peer, msg)
                epoch = epoch_of(now - self.grace, self.cfg.epoch_length)
                if epoch != last_epoch and self.ledger is not None and self.issuer is None:
                    last_epoch = epoch
                    await self.settle()
        finally:
            if self._ticket_task is not None:
                self._ticket_task.cancel()

    async def report(self) -> dict[str, Any]:
        stats = await self.run(self.ledger.stats) if self.ledger else {}
        c = self.counters
        return {
            "wallet": self.wallet.checksum_address,
            **stats,
            "receipts_accepted": c.receipts_ok, "receipts_stale": c.receipts_stale,
            "receipts_rejected": c.receipts_bad, "rejection_reasons": dict(c.reasons),
            "receipts_sent": c.receipts_sent, "tickets_accepted": c.tickets_ok,
            "tickets_rejected": c.tickets_bad, "bindings_bad": c.bindings_bad,
            "settle_errors": c.settle_errors, "ledger_cpu_s": round(c.cpu_s, 3),
            "process_cpu_s": round(time.process_time(), 3),
            "counters": {k: v for k, v in c.__dict__.items() if isinstance(v, int)},
            "rewards_disabled": self.disabled,
            "pending": self.pending(),
        }

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop without waiting on a backlog: queued tickets and receipts are dropped
        (counted), the running job stops between items, the store is closed on the worker
        thread; at most ``timeout`` seconds are spent waiting for it."""
        with self._plock:
            self.closing = True
            self.counters.receipts_dropped_on_close += len(self._pending_receipts)
            self._pending_receipts.clear()
            self._pending_tickets.clear()
        if self._ticket_task is not None:
            self._ticket_task.cancel()
        # Queued jobs (drains, settlements) are cancelled; the running one ends between
        # items (drain) or when its chain call returns (bounded by the RPC timeouts).
        self.pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        for th in list(getattr(self.pool, "_threads", ())):
            th.join(max(0.0, deadline - time.monotonic()))
            if th.is_alive():
                log.warning("ledger worker still busy after %.0f s at shutdown; not waiting", timeout)
                return
        if self.ledger is not None:
            self.ledger.store.close()


class _BadTerms(Exception):
    """A ticket reply that fails a check: rewards are turned off for the stream."""


def deployment_path(data_dir: str) -> Path:
    return ledger_dir(data_dir) / "deployment.json"
