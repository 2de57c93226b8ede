"""Receipts against a relay's ledger and the pool (issue 8, h-atk7): replayed receipts,
receipts signed for another relay, stream or epoch, double redemption across settle
batches and across relays, inflated counts. Prints JSON.

The real ``RelayLedger`` (the relay's intake and settlement, SQLite store) and the real
``RewardsPool`` contract on the embedded chain (``tests/ledger/world.py``: one stream, its
broadcaster's tickets). Each case says what the relay's intake answered and what the pool
paid, in bytes, against what an honest relay is owed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from oasis.ledger.chain import EmbeddedChain  # noqa: E402
from oasis.ledger.devnet import open_funded_stream  # noqa: E402
from oasis.ledger.tickets import TicketIssuer  # noqa: E402
from tests.ledger.world import ALLOWANCE, DEPOSIT, EPOCH, PRICE, World  # noqa: E402


def paid_bytes(world: World, relay, viewer_index: int, epoch: int) -> int:
    return int(world.chain.relay_paid(relay.address, world.stream, epoch, viewer_index))


def main() -> None:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        chain = EmbeddedChain(os.path.join(tmp, "chain"))
        w = World(chain, chain.faucet_key, tmp)
        r1, r2 = w.relay("r1"), w.relay("r2")
        r1.carried = r2.carried = {w.stream}
        vk, t = w.viewer()
        for r in (r1, r2):
            r.accept_ticket(t.encode())
        # 1. honest: 1 MB relayed by r1
        v = r1.accept_receipt(w.receipt(vk, t, r1, 1_000_000).encode())
        out["honest_receipt"] = v.reason
        # 2. a receipt the viewer signed for r2, sent to r1 (or replayed by r2's operator)
        out["receipt_for_another_relay"] = r1.accept_receipt(w.receipt(vk, t, r2, 5_000_000).encode()).reason
        # 3. a receipt for another stream of the same chain (another broadcaster's)
        other_b, other_k = os.urandom(32), os.urandom(32)
        other = open_funded_stream(chain, chain.faucet_key, other_b, other_k, DEPOSIT, PRICE, EPOCH)
        oi = TicketIssuer(other_b, w.domain, other, ALLOWANCE, 3600, {})
        ot = oi.issue(t.viewer, w.now - 2 * EPOCH)
        from oasis.ledger.receipts import sign_receipt
        orc = sign_receipt(vk, w.domain, relay=r1.address, stream=other, epoch=w.epoch,
                           index=ot.index, received=4_000_000)
        out["receipt_for_another_stream"] = r1.accept_receipt(orc.encode()).reason
        try:
            r1.accept_ticket(ot.encode())
            out["ticket_for_another_stream"] = "accepted"
        except ValueError as exc:
            out["ticket_for_another_stream"] = f"refused: {exc}"
        # 4. the epoch: a receipt for an epoch that has not begun, and for one before the ticket
        out["receipt_future_epoch"] = r1.accept_receipt(
            w.receipt(vk, t, r1, 2_000_000, epoch=w.epoch + 10).encode()).reason
        out["receipt_epoch_before_ticket"] = r1.accept_receipt(
            w.receipt(vk, t, r1, 2_000_000, epoch=w.epoch - 1000).encode()).reason
        # 5. settle, then replay the same receipt and settle again
        res1 = r1.settle_due(now=w.now + EPOCH, include_current=True)
        first = sum(x.amount for x in res1)
        out["replay_after_settle_intake"] = r1.accept_receipt(w.receipt(vk, t, r1, 1_000_000).encode()).reason
        res2 = r1.settle_due(now=w.now + EPOCH, include_current=True)
        out["settle_1_tokens"] = first
        out["settle_1_expected"] = 1_000_000 * PRICE // 10**6
        out["settle_2_after_replay_tokens"] = sum(x.amount for x in res2)
        out["settle_2_txs"] = len(res2)
        # 6. the same entry sent by the relay straight to the pool twice in two batches
        e = w.entry(t, w.receipt(vk, t, r1, 1_500_000))
        a = chain.settle(r1.key, w.stream, w.epoch, [e])
        b = chain.settle(r1.key, w.stream, w.epoch, [e])
        out["direct_batches"] = {"first_paid_tokens": a.amount, "first_expected": 500_000 * PRICE // 10**6,
                                 "second_paid_tokens": b.amount, "second_rejected": b.rejected}
        # 7. r2 submits r1's receipt as its own (the signature names r1)
        c = chain.settle(r2.key, w.stream, w.epoch, [e])
        out["other_relay_submits_it"] = {"paid_tokens": c.amount, "rejected": c.rejected}
        # 8. inflated: the viewer signs its whole allowance x 10 to a relay of its own
        big = w.receipt(vk, t, r2, ALLOWANCE * 10)
        out["inflated_intake"] = r2.accept_receipt(big.encode()).reason
        d = r2.settle_due(now=w.now + EPOCH, include_current=True)
        out["inflated_paid_bytes"] = paid_bytes(w, r2, t.index, w.epoch)
        out["inflated_cap_bytes"] = ALLOWANCE * 4 // 5
        out["inflated_settles"] = len(d)
        out["viewer_used_bytes"] = int(chain.pool.functions.viewer_used(w.stream, w.epoch, t.index).call())
        out["allowance"] = ALLOWANCE
    print(json.dumps(out))


if __name__ == "__main__":
    main()
