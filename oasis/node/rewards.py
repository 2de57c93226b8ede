"""Proof of relay inside a running node: wallets on links, tickets, receipts, settlement.

Theory of operation
-------------------
* **Links.** Right after authentication each side sends WALLET: its
  secp256k1 wallet bound to its Ed25519 identity. A binding that does not
  verify against the link's proven key is a counted violation.
* **Broadcaster.** Opens the stream on chain with a deposit and a price per
  MB, and admits viewers over HTTP (``POST /tickets`` with a binding): each
  gets a ticket (wallet, stream, validity, byte allowance per epoch).
* **Viewer.** Fetches its ticket from the broadcaster, counts the media bytes
  each relay delivered (a :class:`~oasis.ledger.receipts.ViewerMeter`), and
  every ``receipt_interval`` seconds sends each relay its TICKET (once) and a
  signed cumulative RECEIPT for the current epoch.
* **Relay.** Verifies every TICKET and RECEIPT on arrival and keeps the
  latest per (viewer, stream, epoch) in SQLite (WAL); when an epoch has
  ended it submits one settlement transaction per stream (batches of ≤256).

All ledger work that touches SQLite or the chain runs on one worker thread,
so the event loop never waits on a transaction and the store is used from
one thread only. CPU spent on receipts (signing, verifying, storing,
settling) is measured with ``time.thread_time`` on that thread plus the
signing on the loop, so the demo can report its share of the process CPU.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from oasis.core import wire
from oasis.core.identity import Identity
from oasis.ledger import devnet
from oasis.ledger.chain import LedgerChain, open_chain
from oasis.ledger.receipt_store import ReceiptStore
from oasis.ledger.receipts import ViewerMeter
from oasis.ledger.settlement import RelayLedger, epoch_of
from oasis.ledger.tickets import Ticket, TicketError, TicketIssuer, allowance_for
from oasis.ledger.wallet import BindingError, Wallet, bind_wallet, ledger_dir, verify_binding

log = logging.getLogger("oasis.rewards")

STORE_FILE = "ledger.db"


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
    receipts_sent: int = 0
    receipts_ok: int = 0
    receipts_stale: int = 0
    receipts_bad: int = 0
    settle_errors: int = 0
    cpu_s: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


class Rewards:
    """One node's part in proof of relay (see the module docstring)."""

    def __init__(self, cfg: RewardsConfig, identity: Identity, *, stream_text_id: str) -> None:
        self.cfg = cfg
        self.identity = identity
        self.wallet = Wallet.load_or_create(cfg.data_dir)
        self.binding = bind_wallet(identity.private_bytes(), identity.public, self.wallet).encode()
        self.stream = devnet.stream_key(stream_text_id)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self.counters = RewardsCounters()
        self.peer_wallets: dict[bytes, bytes] = {}  # Ed25519 key -> wallet address
        self.wallet_peers: dict[bytes, bytes] = {}
        self.ticket: Ticket | None = None
        self.meter: ViewerMeter | None = None
        self.ticket_sent: set[bytes] = set()
        self.chain: LedgerChain | None = None
        self.ledger: RelayLedger | None = None
        self.issuer: TicketIssuer | None = None
        self.grace = 2 * cfg.receipt_interval + 1.0

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
        self.ledger = RelayLedger(store, self.wallet.key, self.chain.deployment.domain(), self.chain)
        self.ledger.recover_pending()

    async def start_broadcaster(self, bitrate_kbps: int) -> None:
        def setup() -> None:
            self._open()
            assert self.chain is not None and self.ledger is not None
            faucet = self.cfg.dev_faucet_key or getattr(self.chain, "faucet_key", None)
            if faucet is None:
                raise RuntimeError("the stream's pool must be funded: no dev faucet on this chain")
            devnet.open_funded_stream(self.chain, faucet, self.wallet.key, self.stream, self.cfg.deposit,
                                      self.cfg.price_per_mb, self.cfg.epoch_length)
            info = self.chain.stream_info(self.stream)
            allowance = allowance_for(bitrate_kbps * 1000, int(info["epoch_length"]))
            self.issuer = TicketIssuer(self.wallet.key, self.chain.deployment.domain(), self.stream,
                                       allowance, 24 * 3600, self.ledger.store.viewer_indexes(self.stream))
        await self.run(setup)

    async def open(self) -> None:
        """Open wallet store and chain (slow: imports the EVM stack) before joining a swarm."""
        await self.run(self._open)

    async def start_viewer(self, http: aiohttp.ClientSession, ticket_url: str | None) -> None:
        """Fetch our ticket from the broadcaster; receipts can flow from then on."""
        if self.ledger is None:
            await self.open()
        if ticket_url is None:
            return
        async with http.post(ticket_url, json={"binding": self.binding.hex()},
                             timeout=aiohttp.ClientTimeout(total=30)) as r:
            if r.status != 200:
                raise RuntimeError(f"broadcaster refused a ticket: {r.status} {await r.text()}")
            body = await r.json()
        ticket = Ticket.decode(bytes.fromhex(body["ticket"]))
        assert self.chain is not None
        self.ticket = ticket
        self.cfg.epoch_length = int(body["epoch_length"])  # the stream's, as set on chain
        self.meter = ViewerMeter(self.wallet.key, self.chain.deployment.domain(), ticket,
                                 int(body["epoch_length"]))

    def issue_ticket(self, binding_hex: str) -> dict[str, Any]:
        """Broadcaster (worker thread): a ticket for the wallet a valid binding names."""
        if self.issuer is None:
            raise RuntimeError("not a broadcaster")
        b = verify_binding(bytes.fromhex(binding_hex))
        t = self.issuer.issue(b.address, int(time.time()))
        terms = self.ledger.terms(self.stream) if self.ledger else None
        return {"ticket": t.encode().hex(), "epoch_length": terms.epoch_length if terms else self.cfg.epoch_length}

    # ---- link messages (event loop) ---------------------------------------------------
    def hello(self) -> wire.WalletBind:
        return wire.WalletBind(binding=self.binding)

    def on_wallet(self, peer: bytes, msg: wire.WalletBind) -> bool:
        try:
            b = verify_binding(msg.binding, identity=peer)
        except BindingError as exc:
            self.counters.bindings_bad += 1
            log.warning("bad wallet binding from peer: %s", exc)
            return False
        self.counters.bindings_ok += 1
        self.peer_wallets[peer] = b.address
        self.wallet_peers[b.address] = peer
        return True

    def on_ticket(self, msg: wire.TicketMsg) -> None:
        def work() -> None:
            assert self.ledger is not None
            try:
                self.ledger.accept_ticket(bytes(msg.ticket))
                self.counters.tickets_ok += 1
            except (TicketError, ValueError) as exc:
                self.counters.tickets_bad += 1
                log.info("ticket refused: %s", exc)
        self.pool.submit(self._timed, work, ())

    def on_receipt(self, msg: wire.ReceiptMsg) -> None:
        def work() -> None:
            assert self.ledger is not None
            v = self.ledger.accept_receipt(bytes(msg.receipt))
            if v.accepted:
                self.counters.receipts_ok += 1
            elif v.reason == "stale":
                self.counters.receipts_stale += 1
            else:
                self.counters.receipts_bad += 1
                self.counters.reasons[v.reason] = self.counters.reasons.get(v.reason, 0) + 1
        self.pool.submit(self._timed, work, ())

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
        now = time.time() if include_current else time.time() - self.grace
        try:
            self.ledger.settle_due(now, include_current=include_current)
        except Exception as exc:  # chain unreachable, out of gas, …: retried next epoch
            self.counters.settle_errors += 1
            log.warning("settlement failed: %s", exc)

    async def settle(self, include_current: bool = False) -> None:
        await self.run(self._settle, include_current)

    async def loop(self, send: Any) -> None:
        """Receipts every ``receipt_interval``; settlement after each epoch ends."""
        last_epoch = epoch_of(time.time() - self.grace, self.cfg.epoch_length)
        while True:
            await asyncio.sleep(self.cfg.receipt_interval)
            now = time.time()
            for peer, msg in self.due_messages(now):
                send(peer, msg)
            epoch = epoch_of(now - self.grace, self.cfg.epoch_length)
            if epoch != last_epoch and self.ledger is not None and self.issuer is None:
                last_epoch = epoch
                await self.settle()

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
        }

    def close(self) -> None:
        if self.ledger is not None:
            self.pool.submit(self.ledger.store.close)
        self.pool.shutdown(wait=True)


def deployment_path(data_dir: str) -> Path:
    return ledger_dir(data_dir) / "deployment.json"
