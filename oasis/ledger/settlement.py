"""Relay side: ingest tickets and receipts, settle each finished epoch once.

Theory of operation: :class:`RelayLedger` glues the pure rules to the durable
store and the chain adapter.

* Ingestion. ``accept_ticket`` checks the broadcaster's signature against the
  stream's on-chain terms and keeps the latest ticket per (viewer, stream).
  ``accept_receipt`` runs :func:`receipts.verify_receipt` against that ticket
  and stores the receipt iff it raises the cumulative count for its
  (viewer, stream, epoch). Bad input never raises: a :class:`Verdict` says why
  it was dropped, so the node can count or penalise the sender.
* Settlement. ``settle_due(now)`` first resolves settle transactions that were
  signed but not confirmed before a crash (look their receipt up; apply it if
  mined, else drop the mark so the rows are retried), then for every
  (stream, epoch) that has ended and holds unsettled receipts, sends batches
  of up to ``max_batch`` entries sorted by ticket index (neighbouring indexes
  share a storage slot on chain, which is cheaper). Each tx is recorded as
  pending *before* it is sent and marked mined after. A restart therefore
  settles what it had exactly once; and should the store be behind the chain,
  the contract pays a (relay, viewer, epoch) only for bytes above what it
  already paid, so a resubmission costs gas, never tokens.
* Refusals. An entry the contract refuses for good (forged, replayed,
  allowance or relay cap used up, out of the ticket's window) is marked
  settled: resending it could never pay. One refused because the pool was
  empty stays unsettled and is resubmitted after a backoff (30 s doubling, at
  most ``receipt_store.MAX_ATTEMPTS`` times), so a sponsor's top-up still
  pays it; ``counters`` says how many were kept and given up.
* Isolation. Batches are independent: a settle tx that reverts (or a batch
  that cannot be sent) never stops the pass; the next (stream, epoch) is
  settled all the same. A (stream, epoch) whose tx reverted waits out a
  backoff (30 s doubling) and after ``receipt_store.MAX_BATCH_ATTEMPTS``
  reverts is given up: its rows are written off, never sent again. The state
  is in the store, so a restart neither forgets nor retries it early.
* Worth sending. Before a batch is sent the relay reads the stream on chain:
  a stream closed before the epoch began (or past its refund delay) is
  written off as ``closed``; a batch that could pay nothing (price 0, or its
  new bytes worth 0 tokens) as ``worthless``; one for an empty pool waits out
  the backoff (as above) without a tx. No gas is spent on any of these.
* Intake. ``accept_ticket`` and ``accept_receipt`` refuse a stream that is
  not among ``carried`` (the streams this node relays; None: any), a ticket
  whose window starts at or after the stream's close and a receipt for an
  epoch that began at or after it, or after the refund delay (the close is
  read from the chain, at most every ``CLOSED_TTL_S`` while open).
* Terms. Stream terms read from the chain are checked against the bounds the
  contract enforces (:func:`check_terms`); a stream with terms out of range
  is treated as unknown.

Pure helpers :func:`pack_entry` and :func:`plan_batches` hold the calldata
layout and the batching rule.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import eip712
from .chain import (
    MAX_EPOCH_LENGTH,
    MAX_PRICE_PER_MB,
    REFUND_DELAY,
    RELAY_SHARE_DEN,
    RELAY_SHARE_NUM,
    RETRYABLE,
    ChainError,
    JournalWriteError,
    LedgerChain,
    SettleResult,
)
from .receipt_store import FINAL_BATCH_STATES, MAX_ATTEMPTS, ReceiptStore, StoredReceipt
from .receipts import Receipt, ReceiptError, recover_viewer, verify_receipt
from .tickets import Ticket, TicketError, verify_ticket

log = logging.getLogger("oasis.ledger.settlement")

MAX_BATCH = 256
CLOSED_TTL_S = 30.0  #: how long an "open" read of a stream's close is trusted at intake
MB = 10**6


@dataclass(frozen=True)
class Terms:
    broadcaster: bytes
    price_per_mb: int
    epoch_length: int


class TermsError(ValueError):
    """Stream terms out of the bounds the contract enforces."""


def check_terms(broadcaster: bytes, price_per_mb: int, epoch_length: int) -> None:
    """Raise TermsError unless the terms are what a RewardsPool can hold."""
    if not isinstance(broadcaster, bytes) or len(broadcaster) != 20 or not any(broadcaster):
        raise TermsError("broadcaster must be a 20-byte, non-zero address")
    if not isinstance(epoch_length, int) or not 1 <= epoch_length <= MAX_EPOCH_LENGTH:
        raise TermsError(f"epoch_length {epoch_length!r} not in 1..{MAX_EPOCH_LENGTH}")
    if not isinstance(price_per_mb, int) or not 0 <= price_per_mb <= MAX_PRICE_PER_MB:
        raise TermsError(f"price_per_mb {price_per_mb!r} not in 0..{MAX_PRICE_PER_MB}")


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str = "ok"  # "ok", "stale" (not above stored), or a ReceiptError reason
    viewer: bytes = b""


def epoch_of(now: float, epoch_length: int) -> int:
    return int(now) // epoch_length


def pack_entry(ticket: Ticket, index: int, received: int, receipt_sig: bytes) -> list[int]:
    """One settle entry: ``[packed, ticket_r, ticket_s, receipt_r, receipt_s]``
    (layout documented in ``contracts/RewardsPool.vy``)."""
    tr, ts, tv = _rsv(ticket.signature)
    rr, rs, rv = _rsv(receipt_sig)
    packed = (
        received
        | ticket.allowance << 48
        | ticket.not_before << 96
        | ticket.expiry << 136
        | index << 176
        | (tv - 27) << 208
        | (rv - 27) << 209
    )
    return [packed, tr, ts, rr, rs]


def _rsv(sig: bytes) -> tuple[int, int, int]:
    if len(sig) != 65:
        raise ValueError("signature must be 65 bytes")
    return int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]


def plan_batches(rows: list[StoredReceipt], max_batch: int = MAX_BATCH) -> list[list[StoredReceipt]]:
    """Group unsettled rows by (stream, epoch), order by index, cut into batches."""
    groups: dict[tuple[bytes, int], list[StoredReceipt]] = {}
    for r in rows:
        if r.received > r.settled:
            groups.setdefault((r.stream, r.epoch), []).append(r)
    out: list[list[StoredReceipt]] = []
    for key in sorted(groups):
        g = sorted(groups[key], key=lambda r: r.index)
        out.extend(g[i : i + max_batch] for i in range(0, len(g), max_batch))
    return out


class RelayLedger:
    def __init__(
        self,
        store: ReceiptStore,
        wallet_key: bytes,
        domain: eip712.Domain,
        chain: LedgerChain | None = None,
        clock: Callable[[], float] = time.time,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.store, self.key, self.domain, self.chain = store, wallet_key, domain, chain
        self.clock, self.max_batch = clock, max_batch
        self.address = eip712.address_of_key(wallet_key)
        self.results: list[SettleResult] = []
        self.counters = {"settle_entries_retry": 0, "settle_entries_given_up": 0, "streams_bad_terms": 0,
                         "settle_batches_failed": 0, "settle_batches_given_up": 0,
                         "settle_batches_closed": 0, "settle_batches_worthless": 0,
                         "settle_batches_unfunded": 0, "receipts_store_failed": 0,
                         "tickets_store_failed": 0, "receipts_rows_damaged": 0}
        #: the streams this relay carries (intake refuses others); None: any stream
        self.carried: set[bytes] | None = None
        self._closed: dict[bytes, tuple[int, float]] = {}  # stream -> (closed_at, monotonic read time)

    # -- stream terms --------------------------------------------------------
    def set_terms(self, stream: bytes, terms: Terms) -> None:
        self.store.put_stream(stream, terms.broadcaster, terms.price_per_mb, terms.epoch_length)

    def terms(self, stream: bytes) -> Terms | None:
        """Cached terms, else read from chain (None if the stream is not open)."""
        row = self.store.stream(stream)
        if row is not None:
            return Terms(*row)
        if self.chain is None:
            return None
        info = self.chain.stream_info(stream)
        if int(info["broadcaster"], 16) == 0:
            return None
        t = Terms(bytes.fromhex(info["broadcaster"][2:]), int(info["price_per_mb"]), int(info["epoch_length"]))
        try:
            check_terms(t.broadcaster, t.price_per_mb, t.epoch_length)
        except TermsError:
            self.counters["streams_bad_terms"] += 1
            return None
        self.set_terms(stream, t)
        return t

    def closed_at(self, stream: bytes) -> int:
        """When the stream was closed on chain (0: open). A close is final, so it is
        remembered; an open stream is re-read after CLOSED_TTL_S."""
        if self.chain is None:
            return 0
        got = self._closed.get(stream)
        if got is not None and (got[0] or time.monotonic() - got[1] < CLOSED_TTL_S):
            return got[0]
        closed = int(self.chain.stream_info(stream)["closed_at"])
        if len(self._closed) >= 4096:
            self._closed.pop(next(iter(self._closed)))
        self._closed[stream] = (closed, time.monotonic())
        return closed

    def _dead_epoch(self, stream: bytes, start: int, now: float, closed_at: int | None = None) -> bool:
        """True if nothing that starts at ``start`` can be paid on this stream any more."""
        closed = self.closed_at(stream) if closed_at is None else closed_at
        return closed != 0 and (start >= closed or now >= closed + REFUND_DELAY)

    # -- ingestion -----------------------------------------------------------
    def accept_ticket(self, data: bytes | Ticket) -> Ticket:
        """Verify and keep a viewer's ticket; raises TicketError."""
        t = Ticket.decode(data) if isinstance(data, bytes | bytearray) else data
        if self.carried is not None and t.stream not in self.carried:
            raise TicketError("not a stream this relay carries")
        terms = self.terms(t.stream)
        if terms is None:
            raise TicketError("unknown stream")
        if self._dead_epoch(t.stream, t.not_before, self.clock()):
            raise TicketError("stream closed")
        verify_ticket(self.domain, t, terms.broadcaster, int(self.clock()))
        try:
            self.store.put_ticket(t.viewer, t.stream, t.encode(), t.expiry)
        except (sqlite3.Error, OSError) as exc:  # a full disk, an I/O error
            self.counters["tickets_store_failed"] += 1
            raise TicketError(f"ticket not stored ({self.store.path}: {exc})") from None
        return t

    def accept_receipt(self, data: bytes | Receipt, viewer_hint: bytes | None = None) -> Verdict:
        """Verify a receipt on arrival and store it if it raises the count."""
        try:
            r = Receipt.decode(data) if isinstance(data, bytes | bytearray) else data
            if self.carried is not None and r.stream not in self.carried:
                raise ReceiptError("not-carried")
            terms = self.terms(r.stream)
            if terms is None:
                raise ReceiptError("unknown-stream")
            if self._dead_epoch(r.stream, r.epoch * terms.epoch_length, self.clock()):
                raise ReceiptError("closed")
            viewer = viewer_hint or recover_viewer(self.domain, r)
            raw = self.store.ticket(viewer, r.stream)
            ticket = Ticket.decode(raw) if raw is not None else None
            viewer = verify_receipt(self.domain, r, relay=self.address, ticket=ticket,
                                    epoch_length=terms.epoch_length, now=int(self.clock()))
        except ReceiptError as exc:
            return Verdict(False, exc.reason)
        assert ticket is not None
        try:
            stored = self.store.put_receipt(viewer, r.stream, r.epoch, r.index, r.received, r.signature,
                                            ticket.encode())
        except (sqlite3.Error, OSError) as exc:  # a full disk, an I/O error: not stored, and said so
            self.counters["receipts_store_failed"] += 1
            if self.counters["receipts_store_failed"] in (1, 10, 100) or self.counters["receipts_store_failed"] % 1000 == 0:
                log.warning("receipt not stored (%d so far): %s: %s", self.counters["receipts_store_failed"],
                            self.store.path, exc)
            return Verdict(False, "store-failed", viewer)
        return Verdict(stored, "ok" if stored else "stale", viewer)

    # -- settlement ----------------------------------------------------------
    def recover_pending(self) -> None:
        """Resolve settle txs signed before a crash: apply if mined, else forget."""
        assert self.chain is not None
        for tx_hash, stream, epoch, entries in self.store.pending_settlements():
            rc = self.chain.tx_receipt(tx_hash)
            if rc is None:
                self.store.drop_settlement(tx_hash)
            elif rc["status"] == 1:
                self._apply(tx_hash, stream, epoch, entries, self.chain.settle_result(rc))
            else:  # it reverted before we heard (a crash): counts as a failed attempt
                self.store.drop_settlement(tx_hash)
                self.counters["settle_batches_failed"] += 1
                if self.store.batch_failed(stream, epoch, self.clock()) == "given_up":
                    self.counters["settle_batches_given_up"] += 1

    def settle_due(self, now: float | None = None, include_current: bool = False) -> list[SettleResult]:
        """Settle every ended epoch with unsettled receipts (call at each epoch end).
        ``include_current`` also settles the running epoch (e.g. on shutdown)."""
        if self.chain is None:
            raise ChainError("no chain adapter")
        now = self.clock() if now is None else now
        self.recover_pending()
        done = []
        info: dict[bytes, dict[str, Any]] = {}
        due = self.store.unsettled(now=self.clock())
        self.counters["receipts_rows_damaged"] = len(self.store.bad_rows)
        for batch in plan_batches(due, self.max_batch):
            stream, epoch = batch[0].stream, batch[0].epoch
            terms = self.terms(stream)
            if terms is None:
                continue
            current = epoch_of(now, terms.epoch_length)
            if epoch > current or (epoch == current and not include_current):
                continue
            state = self.store.batch_state(stream, epoch)
            if state is not None and state[0] in FINAL_BATCH_STATES:
                self.store.write_off(stream, epoch, state[0], state[1])  # rows that came in since
                continue
            if state is not None and state[2] > self.clock():
                continue  # backing off
            if stream not in info:
                info[stream] = self.chain.stream_info(stream)
            why = self._not_worth_sending(batch, terms, info[stream])
            if why in ("closed", "worthless"):
                n = self.store.write_off(stream, epoch, why)
                self.counters[f"settle_batches_{why}"] += 1
                log.info("settle: %d receipts of stream %s epoch %d written off: %s", n, stream.hex()[:16],
                         epoch, why)
                continue
            if why == "unfunded":
                self.counters["settle_batches_unfunded"] += 1
                if self.store.batch_failed(stream, epoch, self.clock(), MAX_ATTEMPTS) == "given_up":
                    self.counters["settle_batches_given_up"] += 1
                continue
            try:
                res = self._settle_batch(stream, epoch, batch)
            except JournalWriteError:
                raise  # our own disk: nothing was sent; the pass stops and is retried
            except ChainError as exc:  # this batch's tx reverted: the others go on
                self.counters["settle_batches_failed"] += 1
                st = self.store.batch_failed(stream, epoch, self.clock())
                if st == "given_up":
                    self.counters["settle_batches_given_up"] += 1
                log.warning("settle of stream %s epoch %d failed (%s): %s", stream.hex()[:16], epoch,
                            "given up" if st == "given_up" else "retried after a backoff", exc)
                continue
            self.store.batch_ok(stream, epoch)
            done.append(res)
        return done

    def _not_worth_sending(self, batch: list[StoredReceipt], terms: Terms, info: dict[str, Any]) -> str | None:
        """Why a batch would pay nothing ("closed", "worthless", "unfunded"), or None."""
        start = batch[0].epoch * terms.epoch_length
        if self._dead_epoch(batch[0].stream, start, self.clock(), int(info["closed_at"])):
            return "closed"
        value = 0
        for r in batch:
            cap = Ticket.decode(r.ticket).allowance * RELAY_SHARE_NUM // RELAY_SHARE_DEN
            value += max(0, min(r.received, cap) - min(r.settled, cap)) * terms.price_per_mb // MB
        if value == 0:
            return "worthless"
        if int(info["balance"]) == 0:
            return "unfunded"
        return None

    def _settle_batch(self, stream: bytes, epoch: int, batch: list[StoredReceipt]) -> SettleResult:
        assert self.chain is not None
        entries = [(r.viewer, r.index, r.received) for r in batch]
        packed = [pack_entry(Ticket.decode(r.ticket), r.index, r.received, r.signature) for r in batch]

        signed: list[bytes] = []

        def mark(tx_hash: bytes) -> None:
            signed.append(tx_hash)
            self.store.begin_settlement(tx_hash, stream, epoch, entries)

        try:
            res = self.chain.settle(self.key, stream, epoch, packed, on_signed=mark)
        except ChainError:  # it reverted, or (JournalWriteError) never happened: not pending
            for h in signed:
                self.store.drop_settlement(h)
            raise
        self._apply(res.tx_hash, stream, epoch, entries, res)
        return res

    def _apply(self, tx_hash: bytes, stream: bytes, epoch: int,
               entries: list[tuple[bytes, int, int]], res: SettleResult) -> None:
        paid = {int(ev["index"]): int(ev["amount"]) for ev in res.paid}
        retry = frozenset(pos for pos, reason in res.rejected if reason in RETRYABLE)
        n = self.store.finish_settlement(tx_hash, stream, epoch, entries, paid, res.amount, res.gas_used,
                                         retry=retry, now=self.clock())
        self.counters["settle_entries_retry"] += n["kept"]
        self.counters["settle_entries_given_up"] += n["given_up"]
        self.results.append(res)

    def stats(self) -> dict[str, Any]:
        """The demo's ``"rewards"`` object for this relay."""
        t = self.store.totals()
        return {
            "receipts": self.store.count_receipts(),
            "settle_txs": t["settle_txs"],
            "tokens_paid": t["tokens_paid"],
            "gas_per_receipt": round(t["gas_used"] / t["receipts_paid"]) if t["receipts_paid"] else None,
            "epochs_settled": t["epochs_settled"], "receipts_paid": t["receipts_paid"],
            "gas_used": t["gas_used"], "settle_retry_pending": self.store.retry_count(),
            **self.counters,
            "settle_batches": self.store.batch_counts(),  # persisted, by state
        }
