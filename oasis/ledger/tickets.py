"""Viewer tickets: the broadcaster's signed admission of one viewer wallet.

Theory of operation: when a broadcaster admits a viewer it signs (EIP-712,
with its secp256k1 *wallet* key, so the contract can ``ecrecover`` it) a
:class:`Ticket` naming the viewer's wallet, the stream, a small dense
``index`` for that viewer, a byte allowance per epoch and a validity window
``[not_before, expiry)`` in unix seconds. Receipts are only worth anything
for epochs that overlap the window and only up to the allowance per epoch
(summed over every relay), so the most a colluding viewer and relay can ever
draw from a pool is ``allowance x epochs in the window``: keep windows short
and renew tickets.

The ``index`` picks the viewer's 48-bit lane in the contract's packed
storage; it must be stable per (stream, viewer) -- re-admitting a viewer
under a new index would give it a second allowance. :class:`TicketIssuer`
guarantees that given a persistent ``indexes`` mapping (the broadcaster passes
:meth:`ReceiptStore.viewer_indexes`). Wire form: 139 bytes, fixed layout.
Pure: no I/O, the clock is an argument.
"""

from __future__ import annotations

import struct
from collections.abc import MutableMapping
from dataclasses import dataclass

from . import eip712
from .eip712 import Domain

TICKET_LEN = 20 + 32 + 4 + 8 + 5 + 5 + 65  # 139
SAFETY_MARGIN = 1.25


class TicketError(ValueError):
    """A ticket that is malformed, not signed by the broadcaster, or out of date."""


@dataclass(frozen=True)
class Ticket:
    viewer: bytes  # 20-byte wallet address
    stream: bytes  # 32-byte stream id
    index: int
    allowance: int  # bytes per epoch
    not_before: int  # unix seconds
    expiry: int  # unix seconds, exclusive
    signature: bytes = b""

    def digest(self, domain: Domain) -> bytes:
        return eip712.typed_digest(
            domain,
            eip712.ticket_struct_hash(
                self.viewer, self.stream, self.index, self.allowance, self.not_before, self.expiry
            ),
        )

    def covers_epoch(self, epoch: int, epoch_length: int) -> bool:
        """Same window rule as the contract: the epoch overlaps [not_before, expiry)."""
        start = epoch * epoch_length
        return self.not_before < start + epoch_length and self.expiry > start

    def encode(self) -> bytes:
        return (
            self.viewer
            + self.stream
            + struct.pack(">IQ", self.index, self.allowance)
            + self.not_before.to_bytes(5, "big")
            + self.expiry.to_bytes(5, "big")
            + self.signature
        )

    @classmethod
    def decode(cls, data: bytes) -> Ticket:
        if len(data) != TICKET_LEN:
            raise TicketError(f"ticket must be {TICKET_LEN} bytes, got {len(data)}")
        index, allowance = struct.unpack(">IQ", data[52:64])
        return cls(
            viewer=bytes(data[:20]),
            stream=bytes(data[20:52]),
            index=index,
            allowance=allowance,
            not_before=int.from_bytes(data[64:69], "big"),
            expiry=int.from_bytes(data[69:74], "big"),
            signature=bytes(data[74:]),
        )


def allowance_for(bitrate_bps: int, epoch_length: int, margin: float = SAFETY_MARGIN) -> int:
    """Bytes per epoch for a stream of ``bitrate_bps`` bits/s, with a small margin."""
    return int(bitrate_bps * epoch_length * margin) // 8


def sign_ticket(broadcaster_key: bytes, domain: Domain, ticket: Ticket) -> Ticket:
    sig = eip712.sign_digest(broadcaster_key, ticket.digest(domain))
    return Ticket(**{**ticket.__dict__, "signature": sig})


def verify_ticket(
    domain: Domain, ticket: Ticket, broadcaster: bytes, now: int | None = None
) -> None:
    """Raise TicketError unless ``broadcaster`` signed ``ticket`` (and, given
    ``now``, it has not expired)."""
    try:
        signer = eip712.recover(ticket.digest(domain), ticket.signature)
    except (eip712.SignatureError, ValueError) as exc:
        raise TicketError(str(exc)) from None
    if signer != broadcaster:
        raise TicketError("ticket not signed by the stream's broadcaster")
    if now is not None and now >= ticket.expiry:
        raise TicketError("ticket expired")


class TicketIssuer:
    """Broadcaster side: signs tickets with a stable index per viewer."""

    def __init__(
        self,
        broadcaster_key: bytes,
        domain: Domain,
        stream: bytes,
        allowance: int,
        lifetime: int,
        indexes: MutableMapping[bytes, int],
    ) -> None:
        if len(stream) != 32:
            raise ValueError("stream id must be 32 bytes")
        self.key, self.domain, self.stream = broadcaster_key, domain, stream
        self.allowance, self.lifetime, self.indexes = allowance, lifetime, indexes
        self.address = eip712.address_of_key(broadcaster_key)

    def index_of(self, viewer: bytes) -> int:
        idx = self.indexes.get(viewer)
        if idx is None:
            idx = len(self.indexes)
            self.indexes[viewer] = idx
        return idx

    def issue(self, viewer: bytes, now: int, not_before: int | None = None) -> Ticket:
        """A ticket valid from ``now`` (or an earlier ``not_before``: a renewal that keeps
        its window's start) until ``now + lifetime``."""
        if len(viewer) != 20:
            raise ValueError("viewer wallet address must be 20 bytes")
        t = Ticket(
            viewer=viewer,
            stream=self.stream,
            index=self.index_of(viewer),
            allowance=self.allowance,
            not_before=now if not_before is None else min(not_before, now),
            expiry=now + self.lifetime,
        )
        return sign_ticket(self.key, self.domain, t)
