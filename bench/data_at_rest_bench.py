"""Cost of the data-at-rest checks: journal scan, resync after damage, ledger.db open, key load.

Prints one JSON object. Usage: python bench/data_at_rest_bench.py [--records N] [--receipts N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from oasis.datafiles import DataFileError
from oasis.ledger.journal import (
    FILE_HEADER_SIZE,
    Journal,
    JournalCorruptError,
    Record,
    encode_record,
)
from oasis.ledger.receipt_store import ReceiptStore
from oasis.ledger.wallet import Wallet


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--receipts", type=int, default=50_000)
    args = ap.parse_args()
    out: dict[str, object] = {"machine": platform.machine(), "python": platform.python_version(),
                              "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "chain"
        j = Journal(d)
        raw = os.urandom(600)  # about a settle transaction with a few entries
        with open(j.path, "ab") as f:  # bulk build; the format is the one append() writes
            for i in range(args.records):
                f.write(encode_record(Record(1_700_000_000 + i, raw, 1)))
        size = j.path.stat().st_size
        scan_s = _best(lambda: Journal(d).read_from(0))
        out["journal_bytes"] = size
        out["journal_records"] = args.records
        out["journal_scan_s"] = round(scan_s, 4)
        out["journal_scan_mb_per_s"] = round(size / scan_s / 1e6, 1)
        # damage in the first record: the error needs a resync scan over the rest
        with open(j.path, "r+b") as f:
            f.seek(FILE_HEADER_SIZE + 30)
            b = f.read(1)
            f.seek(FILE_HEADER_SIZE + 30)
            f.write(bytes([b[0] ^ 1]))

        def damaged() -> None:
            try:
                Journal(d).read_from(0)
            except JournalCorruptError:
                return
            raise AssertionError("damage not detected")

        out["journal_damage_detect_s"] = round(_best(damaged), 4)

        db = Path(tmp) / "ledger.db"
        s = ReceiptStore(db)
        with s.lock:
            s.db.execute("BEGIN")
            for i in range(args.receipts):
                s.db.execute("INSERT INTO receipts (viewer, stream, epoch, idx, received, sig, ticket) "
                             "VALUES (?,?,?,?,?,?,?)", (os.urandom(32), b"s" * 32, i, i, 1000, os.urandom(65),
                                                        os.urandom(150)))
            s.db.execute("COMMIT")
        s.close()
        out["store_receipts"] = args.receipts
        out["store_bytes"] = db.stat().st_size
        out["store_open_checked_s"] = round(_best(lambda: ReceiptStore(db).close()), 4)

        Wallet.load_or_create(tmp)
        out["wallet_load_ms"] = round(_best(lambda: Wallet.load_or_create(tmp), 20) * 1e3, 3)
        try:
            (Path(tmp) / "ledger" / "wallet.key").write_bytes(b"junk")
            Wallet.load_or_create(tmp)
        except DataFileError:
            out["wallet_damage_detected"] = True
    print(json.dumps(out))


if __name__ == "__main__":
    main()
