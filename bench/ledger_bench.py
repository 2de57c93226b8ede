"""Proof-of-relay ledger benchmark; prints one JSON object.

* ``verify_per_s``: receipts verified off-chain per second (decode + EIP-712
  digest + strict secp256k1 recovery + ticket checks), one core.
* ``ingest_per_s``: the relay's full arrival path (verify + durable SQLite upsert).
* ``gas_per_receipt``: gas of one settle transaction / receipts it paid, for
  batches of 1, 32 and 256 fresh receipts (embedded py-evm; same bytecode and
  rules as any EVM node), and the wall time py-evm took per batch.
* ``settle_txs_per_relay_epoch``: transactions a relay sends at an epoch end
  for a given number of viewers served (one stream).

Usage: python bench/ledger_bench.py [--verify N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from scratch import scratch_dir  # bench/ is on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oasis.ledger import eip712  # noqa: E402
from oasis.ledger.chain import EmbeddedChain  # noqa: E402
from oasis.ledger.devnet import fund, open_funded_stream  # noqa: E402
from oasis.ledger.receipt_store import ReceiptStore  # noqa: E402
from oasis.ledger.receipts import Receipt, sign_receipt, verify_receipt  # noqa: E402
from oasis.ledger.settlement import RelayLedger  # noqa: E402
from oasis.ledger.tickets import TicketIssuer, allowance_for  # noqa: E402

EPOCH = 60


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep-logs", action="store_true", help="keep the nodes' data and logs")
    ap.add_argument("--verify", type=int, default=3000, help="receipts for the off-chain rate")
    args = ap.parse_args()
    tmp = scratch_dir("ledger-bench-", args.keep_logs)
    chain = EmbeddedChain(Path(tmp) / "chain")
    bkey = os.urandom(32)
    stream = os.urandom(32)
    stream = open_funded_stream(chain, chain.faucet_key, bkey, stream, 10**27, 10**15, EPOCH)
    domain = chain.deployment.domain()
    now = int(time.time())
    epoch = now // EPOCH - 1
    bstore = ReceiptStore(Path(tmp) / "b.db")
    issuer = TicketIssuer(bkey, domain, stream, allowance_for(6_000_000, EPOCH), 3600,
                          bstore.viewer_indexes(stream))

    def new_relay(name: str) -> RelayLedger:
        key = os.urandom(32)
        fund(chain, chain.faucet_key, eip712.address_of_key(key))
        return RelayLedger(ReceiptStore(Path(tmp) / f"{name}.db"), key, domain, chain,
                           clock=lambda: now)

    def feed(relay: RelayLedger, n: int) -> list[bytes]:
        wire = []
        for _ in range(n):
            vk = os.urandom(32)
            t = issuer.issue(eip712.address_of_key(vk), now - 2 * EPOCH)
            relay.accept_ticket(t.encode())
            wire.append(sign_receipt(vk, domain, relay=relay.address, stream=stream, epoch=epoch,
                                     index=t.index, received=3_000_000).encode())
        return wire

    # off-chain verification rate
    relay = new_relay("verify")
    wire = feed(relay, min(args.verify, 500))
    wire = (wire * (args.verify // len(wire) + 1))[: args.verify]
    tickets = {}
    from oasis.ledger.tickets import Ticket

    for w in wire[:500]:
        r = Receipt.decode(w)
        raw = relay.store.ticket(eip712.recover(r.digest(domain), r.signature), stream)
        assert raw is not None
        tickets[w] = Ticket.decode(raw)
    t0 = time.perf_counter()
    for w in wire:
        r = Receipt.decode(w)
        verify_receipt(domain, r, relay=relay.address, ticket=tickets[w], epoch_length=EPOCH, now=now)
    verify_rate = len(wire) / (time.perf_counter() - t0)
    ingest_relay = new_relay("ingest2")
    fresh = feed(ingest_relay, 500)
    t0 = time.perf_counter()
    for w in fresh:
        assert ingest_relay.accept_receipt(w).accepted
    ingest_rate = len(fresh) / (time.perf_counter() - t0)

    # gas per receipt by batch size
    gas = {}
    for n in (1, 32, 256):
        relay = new_relay(f"gas{n}")
        for w in feed(relay, n):
            relay.accept_receipt(w)
        t0 = time.perf_counter()
        res = relay.settle_due()
        wall = time.perf_counter() - t0
        assert len(res) == 1 and len(res[0].paid) == n
        gas[str(n)] = {"gas_per_receipt": round(res[0].gas_used / n), "tx_gas": res[0].gas_used,
                       "pyevm_seconds": round(wall, 3)}

    # settle transactions per relay per epoch
    txs = {}
    for viewers in (20, 300):
        relay = new_relay(f"epoch{viewers}")
        for w in feed(relay, viewers):
            relay.accept_receipt(w)
        txs[str(viewers)] = len(relay.settle_due())

    print(json.dumps({
        "verify_per_s": round(verify_rate),
        "ingest_per_s": round(ingest_rate),
        "gas_per_receipt": gas,
        "settle_txs_per_relay_epoch": txs,
        "max_batch": 256,
    }, indent=1))


if __name__ == "__main__":
    main()
