"""Bandwidth receipts: a viewer's signed count of bytes received from a relay.

Theory of operation: every few seconds a viewer signs (EIP-712) a
:class:`Receipt` for each relay feeding it: the relay's wallet, the stream,
the epoch, the viewer's ticket ``index`` and the CUMULATIVE bytes it received
from that relay in that epoch. Cumulative counts make receipts idempotent: a
later receipt supersedes an earlier one, a lost one costs nothing, and the
relay keeps only the latest per (viewer, stream, epoch). The viewer's address
is not carried: it is recovered from the signature, which binds the receipt
to the viewer's ticket (same stream and index).

:func:`verify_receipt` is the relay's check on arrival and mirrors the
contract: strict low-s signature, addressed to this relay, the signer holds a
valid ticket for the stream, the ticket window covers the epoch and the epoch
has started. Counts above the ticket's allowance are accepted (the contract
caps payment). Wire form: 1 version byte + 136 bytes, exact length.
Pure: no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from . import eip712
from .eip712 import Domain
from .tickets import Ticket

WIRE_VERSION = 1
RECEIPT_LEN = 1 + 20 + 32 + 8 + 4 + 8 + 65  # 138
MAX_RECEIVED = (1 << 48) - 1


class ReceiptError(ValueError):
    """A receipt that must be dropped; ``reason`` is a short machine tag."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Receipt:
    relay: bytes  # 20-byte relay wallet
    stream: bytes  # 32-byte stream id
    epoch: int
    index: int  # viewer's ticket index
    received: int  # cumulative bytes from `relay` in `epoch`
    signature: bytes = b""

    def digest(self, domain: Domain) -> bytes:
        return eip712.typed_digest(
            domain,
            eip712.receipt_struct_hash(
                self.relay, self.stream, self.epoch, self.index, self.received
            ),
        )

    def encode(self) -> bytes:
        return (
            bytes([WIRE_VERSION])
            + self.relay
            + self.stream
            + struct.pack(">QIQ", self.epoch, self.index, self.received)
            + self.signature
        )

    @classmethod
    def decode(cls, data: bytes) -> Receipt:
        if len(data) != RECEIPT_LEN:
            raise ReceiptError("malformed", f"receipt must be {RECEIPT_LEN} bytes")
        if data[0] != WIRE_VERSION:
            raise ReceiptError("malformed", f"unknown receipt version {data[0]}")
        epoch, index, received = struct.unpack(">QIQ", data[53:73])
        return cls(
            relay=bytes(data[1:21]),
            stream=bytes(data[21:53]),
            epoch=epoch,
            index=index,
            received=received,
            signature=bytes(data[73:]),
        )


def sign_receipt(
    viewer_key: bytes,
    domain: Domain,
    *,
    relay: bytes,
    stream: bytes,
    epoch: int,
    index: int,
    received: int,
) -> Receipt:
    """Viewer side: a signed cumulative receipt for ``relay``."""
    r = Receipt(relay=relay, stream=stream, epoch=epoch, index=index, received=received)
    return Receipt(**{**r.__dict__, "signature": eip712.sign_digest(viewer_key, r.digest(domain))})


def recover_viewer(domain: Domain, receipt: Receipt) -> bytes:
    try:
        return eip712.recover(receipt.digest(domain), receipt.signature)
    except (eip712.SignatureError, ValueError) as exc:
        raise ReceiptError("bad-signature", str(exc)) from None


def verify_receipt(
    domain: Domain,
    receipt: Receipt,
    *,
    relay: bytes,
    ticket: Ticket | None,
    epoch_length: int,
    now: int,
) -> bytes:
    """Relay side: the viewer address if ``receipt`` is worth storing, else ReceiptError.

    ``ticket`` is the viewer's ticket the relay already verified against the
    stream's broadcaster (see :func:`tickets.verify_ticket`), or None.
    """
    if receipt.relay != relay:
        raise ReceiptError("wrong-relay")
    if receipt.received == 0:
        raise ReceiptError("empty")
    if receipt.epoch * epoch_length > now:
        raise ReceiptError("future-epoch")
    viewer = recover_viewer(domain, receipt)
    if ticket is None or ticket.viewer != viewer or ticket.stream != receipt.stream:
        raise ReceiptError("no-ticket")
    if ticket.index != receipt.index:
        raise ReceiptError("wrong-index")
    if not ticket.covers_epoch(receipt.epoch, epoch_length):
        raise ReceiptError("ticket-window")
    return viewer


class ViewerMeter:
    """Viewer side: counts bytes per (relay, epoch) and signs cumulative receipts.

    Call :meth:`on_bytes` as media arrives and :meth:`due` every few seconds;
    send each returned receipt's ``encode()`` to its relay. Pure: the clock is
    an argument.
    """

    def __init__(self, viewer_key: bytes, domain: Domain, ticket: Ticket, epoch_length: int) -> None:
        self.key, self.domain, self.ticket, self.epoch_length = viewer_key, domain, ticket, epoch_length
        self.counts: dict[tuple[bytes, int], int] = {}
        self.sent: dict[tuple[bytes, int], int] = {}

    def on_bytes(self, relay: bytes, nbytes: int, now: float) -> None:
        key = (relay, int(now) // self.epoch_length)
        self.counts[key] = min(self.counts.get(key, 0) + nbytes, MAX_RECEIVED)

    def due(self, now: float) -> list[Receipt]:
        """Signed receipts for every (relay, epoch) whose count grew since last sent;
        older epochs are forgotten once their final receipt is out."""
        current = int(now) // self.epoch_length
        out = []
        for (relay, epoch), count in list(self.counts.items()):
            if count > self.sent.get((relay, epoch), 0):
                out.append(sign_receipt(self.key, self.domain, relay=relay, stream=self.ticket.stream,
                                        epoch=epoch, index=self.ticket.index, received=count))
                self.sent[(relay, epoch)] = count
            if epoch < current:
                del self.counts[(relay, epoch)]
                self.sent.pop((relay, epoch), None)
        return out
