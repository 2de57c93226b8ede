"""A small ledger world for tests: one chain, a stream, a broadcaster, relays, viewers."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from oasis.ledger import eip712
from oasis.ledger.chain import LedgerChain
from oasis.ledger.devnet import fund, open_funded_stream
from oasis.ledger.receipt_store import ReceiptStore
from oasis.ledger.receipts import Receipt, sign_receipt
from oasis.ledger.settlement import RelayLedger, pack_entry
from oasis.ledger.tickets import Ticket, TicketIssuer

EPOCH = 60
PRICE = 3_000_000_000_007  # odd price: rounding is visible to the unit
DEPOSIT = 10**24
ALLOWANCE = 5_000_000


@dataclass
class World:
    chain: LedgerChain
    faucet: bytes
    tmp: str
    broadcaster: bytes = field(default_factory=lambda: os.urandom(32))
    key: bytes = field(default_factory=lambda: os.urandom(32))
    now: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.stream = open_funded_stream(self.chain, self.faucet, self.broadcaster, self.key, DEPOSIT, PRICE, EPOCH)
        self.domain = self.chain.deployment.domain()
        self.bstore = ReceiptStore(os.path.join(self.tmp, "broadcaster.db"))
        self.issuer = TicketIssuer(self.broadcaster, self.domain, self.stream, ALLOWANCE, 3 * 3600,
                                   self.bstore.viewer_indexes(self.stream))
        self.epoch = self.now // EPOCH - 1  # the last finished epoch

    def relay(self, name: str = "r1", key: bytes | None = None) -> RelayLedger:
        key = key or os.urandom(32)
        fund(self.chain, self.faucet, eip712.address_of_key(key))
        store = ReceiptStore(os.path.join(self.tmp, f"{name}.db"))
        return RelayLedger(store, key, self.domain, self.chain, clock=lambda: self.now)

    def viewer(self) -> tuple[bytes, Ticket]:
        key = os.urandom(32)
        return key, self.issuer.issue(eip712.address_of_key(key), self.now - 2 * EPOCH)

    def receipt(self, vkey: bytes, ticket: Ticket, relay: RelayLedger | bytes, received: int,
                epoch: int | None = None) -> Receipt:
        addr = relay.address if isinstance(relay, RelayLedger) else relay
        return sign_receipt(vkey, self.domain, relay=addr, stream=self.stream,
                            epoch=self.epoch if epoch is None else epoch, index=ticket.index,
                            received=received)

    def entry(self, ticket: Ticket, receipt: Receipt) -> list[int]:
        return pack_entry(ticket, receipt.index, receipt.received, receipt.signature)

    def pay(self, nbytes: int) -> int:
        return nbytes * PRICE // 10**6

    def pool_balance(self) -> int:
        return int(self.chain.stream_info(self.stream)["balance"])
