# pragma version 0.4.3
# pragma evm-version cancun
"""
@title Oasis rewards pool: proof-of-relay batch settlement
@notice A broadcaster opens a stream (price per megabyte, epoch length) and
        anybody deposits tokens for it. The stream id is
        keccak256(abi_encode(opener, key)): it is bound to the opener's
        wallet, so nobody can open (squat) the id another wallet will use.
        The owner may close a stream; after REFUND_DELAY seconds (time for
        relays to settle the last epochs) settlement stops and every
        depositor withdraws its share of what is left, pro rata to what it
        deposited. A relay settles once per epoch by
        submitting, in one transaction, the latest receipt of every viewer it
        served, each carried with that viewer's ticket.

        Ticket  (signed by the stream's broadcaster wallet, EIP-712):
            Ticket(address viewer,bytes32 stream,uint32 index,uint48 allowance,
                   uint40 notBefore,uint40 expiry)
        Receipt (signed by the viewer wallet, EIP-712):
            Receipt(address relay,bytes32 stream,uint64 epoch,uint32 index,
                    uint48 received)
        `received` is cumulative bytes from `relay` in `epoch`. The viewer is
        never sent: it is the address recovered from the receipt signature, and
        the ticket must then recover to the stream's broadcaster.

        Storage per receipt: the broadcaster gives every viewer of a stream a
        small dense `index`; paid bytes live in 48-bit lanes, five viewers to a
        slot, keyed (relay, stream, epoch) for what this relay was paid and
        (stream, epoch) for what the viewer's allowance has used over all
        relays. A batch of 256 receipts thus writes 52 + 52 fresh slots.
        (48 bits of bytes is 281 TB per viewer per epoch.)

        Entry layout (uint256[5]): [packed, ticket_r, ticket_s, receipt_r, receipt_s]
            packed bits   0..47   received (cumulative bytes)
                         48..95   allowance (bytes per epoch)
                         96..135  notBefore (unix seconds)
                        136..175  expiry    (unix seconds)
                        176..207  index
                        208       ticket v - 27
                        209       receipt v - 27
        An entry that fails a check is skipped with a Rejected event, so one
        bad receipt cannot sink a batch. Reason codes: 1 window (ticket
        expired / not yet valid), 2 malleable (high-s), 3 no valid ticket
        (forged ticket, unknown viewer or forged receipt), 4 replay (not
        above what this relay was paid), 5 allowance used up, 6 pool empty,
        7 relay cap (this relay already has its share of the viewer's
        allowance: one relay is paid at most RELAY_SHARE_NUM/RELAY_SHARE_DEN
        of a viewer's allowance per epoch, i.e. the stream's bitrate x epoch
        length when the allowance carries the usual 1.25 margin, so a viewer
        and one relay of its own can never take the whole allowance),
        8 closed (the stream was closed before the epoch began, or its
        REFUND_DELAY is over: the entry can never pay). A settle call
        reverts only for a stream that does not exist or an epoch that has
        not begun; nothing a viewer signs can make it revert.
        Prices are bounded (MAX_PRICE_PER_MB) so no payment can overflow and
        revert a batch.
"""

from ethereum.ercs import IERC20

MAX_BATCH: constant(uint256) = 256
MB: constant(uint256) = 10 ** 6
M48: constant(uint256) = 2 ** 48 - 1
LANES: constant(uint256) = 5
M40: constant(uint256) = 2 ** 40 - 1
M32: constant(uint256) = 2 ** 32 - 1
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168

DOMAIN_TYPEHASH: constant(bytes32) = keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
TICKET_TYPEHASH: constant(bytes32) = keccak256("Ticket(address viewer,bytes32 stream,uint32 index,uint48 allowance,uint40 notBefore,uint40 expiry)")
RECEIPT_TYPEHASH: constant(bytes32) = keccak256("Receipt(address relay,bytes32 stream,uint64 epoch,uint32 index,uint48 received)")

R_WINDOW: constant(uint8) = 1
R_MALLEABLE: constant(uint8) = 2
R_NO_TICKET: constant(uint8) = 3
R_REPLAY: constant(uint8) = 4
R_ALLOWANCE: constant(uint8) = 5
R_UNFUNDED: constant(uint8) = 6
R_RELAY_CAP: constant(uint8) = 7
R_CLOSED: constant(uint8) = 8

MAX_PRICE_PER_MB: constant(uint256) = 10 ** 24
MAX_EPOCH_LENGTH: constant(uint256) = 86400
REFUND_DELAY: constant(uint256) = 86400
RELAY_SHARE_NUM: constant(uint256) = 4
RELAY_SHARE_DEN: constant(uint256) = 5

struct Stream:
    broadcaster: address
    price_per_mb: uint256
    epoch_length: uint256
    balance: uint256
    closed_at: uint256
    deposited: uint256
    refund_base: uint256

event StreamOpened:
    stream: indexed(bytes32)
    broadcaster: indexed(address)
    price_per_mb: uint256
    epoch_length: uint256

event Deposited:
    stream: indexed(bytes32)
    sponsor: indexed(address)
    amount: uint256

event Closed:
    stream: indexed(bytes32)
    closed_at: uint256

event Withdrawn:
    stream: indexed(bytes32)
    sponsor: indexed(address)
    amount: uint256

event Paid:
    viewer: indexed(address)
    index: uint256
    bytes_paid: uint256
    amount: uint256

event Rejected:
    relay: indexed(address)
    stream: indexed(bytes32)
    epoch: uint256
    position: uint256
    reason: uint8

event Settled:
    relay: indexed(address)
    stream: indexed(bytes32)
    epoch: uint256
    receipts: uint256
    bytes_paid: uint256
    amount: uint256

token: public(immutable(IERC20))
DOMAIN_SEPARATOR: public(immutable(bytes32))
streams: public(HashMap[bytes32, Stream])
relay_lanes: HashMap[bytes32, HashMap[uint256, uint256]]
viewer_lanes: HashMap[bytes32, HashMap[uint256, uint256]]
deposits: public(HashMap[bytes32, HashMap[address, uint256]])


@deploy
def __init__(_token: IERC20):
    token = _token
    DOMAIN_SEPARATOR = keccak256(abi_encode(
        DOMAIN_TYPEHASH, keccak256("Oasis"), keccak256("1"), chain.id, self))


@pure
@external
def stream_id(owner: address, key: bytes32) -> bytes32:
    return keccak256(abi_encode(owner, key))


@external
def open_stream(key: bytes32, price_per_mb: uint256, epoch_length: uint256) -> bytes32:
    """Open the caller's stream ``keccak256(abi_encode(caller, key))``; the
    caller is its broadcaster: the key that signs tickets."""
    stream: bytes32 = keccak256(abi_encode(msg.sender, key))
    assert self.streams[stream].broadcaster == empty(address), "exists"
    assert epoch_length > 0 and epoch_length <= MAX_EPOCH_LENGTH, "epoch"
    assert price_per_mb <= MAX_PRICE_PER_MB, "price"
    self.streams[stream] = Stream(
        broadcaster=msg.sender, price_per_mb=price_per_mb,
        epoch_length=epoch_length, balance=0, closed_at=0, deposited=0, refund_base=0)
    log StreamOpened(stream=stream, broadcaster=msg.sender,
                     price_per_mb=price_per_mb, epoch_length=epoch_length)
    return stream


@external
def deposit(stream: bytes32, amount: uint256):
    """Broadcaster or sponsor funds an open stream (needs token approval first)."""
    assert self.streams[stream].broadcaster != empty(address), "no stream"
    assert self.streams[stream].closed_at == 0, "closed"
    assert extcall token.transferFrom(msg.sender, self, amount), "transfer"
    self.streams[stream].balance += amount
    self.streams[stream].deposited += amount
    self.deposits[stream][msg.sender] += amount
    log Deposited(stream=stream, sponsor=msg.sender, amount=amount)


@external
def close_stream(stream: bytes32):
    """Owner only: no more deposits, no epochs that start from now on; refunds
    open REFUND_DELAY seconds later."""
    assert self.streams[stream].broadcaster == msg.sender, "not owner"
    assert self.streams[stream].closed_at == 0, "closed"
    self.streams[stream].closed_at = block.timestamp
    log Closed(stream=stream, closed_at=block.timestamp)


@external
def withdraw(stream: bytes32) -> uint256:
    """A depositor takes back its share of what is left of a closed stream."""
    s: Stream = self.streams[stream]
    assert s.closed_at != 0 and block.timestamp >= s.closed_at + REFUND_DELAY, "not refundable yet"
    mine: uint256 = self.deposits[stream][msg.sender]
    assert mine > 0, "nothing deposited"
    if s.refund_base == 0:
        s.refund_base = s.balance + 1  # +1: "frozen" even when nothing is left
        self.streams[stream].refund_base = s.refund_base
    amount: uint256 = (s.refund_base - 1) * mine // s.deposited
    self.deposits[stream][msg.sender] = 0
    self.streams[stream].balance = s.balance - amount
    if amount > 0:
        assert extcall token.transfer(msg.sender, amount), "transfer"
    log Withdrawn(stream=stream, sponsor=msg.sender, amount=amount)
    return amount


@view
@external
def relay_paid(relay: address, stream: bytes32, epoch: uint64, index: uint32) -> uint256:
    base: bytes32 = keccak256(abi_encode(relay, stream, epoch))
    i: uint256 = convert(index, uint256)
    return (self.relay_lanes[base][i // LANES] >> (i % LANES * 48)) & M48


@view
@external
def viewer_used(stream: bytes32, epoch: uint64, index: uint32) -> uint256:
    base: bytes32 = keccak256(abi_encode(stream, epoch))
    i: uint256 = convert(index, uint256)
    return (self.viewer_lanes[base][i // LANES] >> (i % LANES * 48)) & M48


@external
def settle(stream: bytes32, epoch: uint64, entries: DynArray[uint256[5], MAX_BATCH]) -> uint256:
    """Pay msg.sender for the verified, capped, not-yet-paid bytes of a batch."""
    s: Stream = self.streams[stream]
    assert s.broadcaster != empty(address), "no stream"
    e: uint256 = convert(epoch, uint256)
    start: uint256 = e * s.epoch_length
    finish: uint256 = start + s.epoch_length
    assert start <= block.timestamp, "future epoch"
    # A closed stream rejects every entry (reason 8) instead of reverting: a receipt for
    # an epoch after the close must not sink the relay's batch (or its settle loop).
    closed: bool = s.closed_at != 0 and (start >= s.closed_at or block.timestamp >= s.closed_at + REFUND_DELAY)
    base_r: bytes32 = keccak256(abi_encode(msg.sender, stream, epoch))
    base_v: bytes32 = keccak256(abi_encode(stream, epoch))
    funds: uint256 = s.balance
    total: uint256 = 0
    total_bytes: uint256 = 0
    paid_count: uint256 = 0
    for pos: uint256 in range(len(entries), bound=MAX_BATCH):
        en: uint256[5] = entries[pos]
        w: uint256 = en[0]
        received: uint256 = w & M48
        allowance: uint256 = (w >> 48) & M48
        not_before: uint256 = (w >> 96) & M40
        expiry: uint256 = (w >> 136) & M40
        index: uint256 = (w >> 176) & M32
        if closed:
            log Rejected(relay=msg.sender, stream=stream, epoch=e, position=pos, reason=R_CLOSED)
            continue
        if not_before >= finish or expiry <= start:
            log Rejected(relay=msg.sender, stream=stream, epoch=e, position=pos, reason=R_WINDOW)
            continue
        if en[2] > HALF_N or en[4] > HALF_N:
            log Rejected(relay=msg.sender, stream=stream, epoch=e, position=pos, reason=R_MALLEABLE)
            continue
        rdigest: bytes32 = keccak256(concat(b"\x19\x01", DOMAIN_SEPARATOR, keccak256(abi_encode(
            RECEIPT_TYPEHASH, msg.sender, stream, e, index, received))))
        viewer: address = ecrecover(rdigest, 27 + ((w >> 209) & 1), en[3], en[4])
        tdigest: bytes32 = keccak256(concat(b"\x19\x01", DOMAIN_SEPARATOR, keccak256(abi_encode(
            TICKET_TYPEHASH, viewer, stream, index, allowance, not_before, expiry))))
        signer: address = ecrecover(tdigest, 27 + ((w >> 208) & 1), en[1], en[2])
        if viewer == empty(address) or signer != s.broadcaster:
            log Rejected(relay=msg.sender, stream=stream, epoch=e, position=pos, reason=R_NO_TICKET)
            continue
        group: uint256 = index // LANES
        sh: uint256 = index % LANES * 48
        rslot: uint256 = self.relay_lanes[base_r][group]
        already: uint256 = (rslot >> sh) & M48
        cap: uint256 = allowance * RELAY_SHARE_NUM // RELAY_SHARE_DEN
        if received > cap:
            if already >= cap:
                log Rejected(relay=msg.sender, stream=stream, epoch=e, position=pos, reason=R_RELAY_CAP)
                continue
            received = cap
        if received <= already:
            log Rejected(relay=msg.sender, stream=stream, epoch=e, position=pos, reason=R_REPLAY)
            continue
        vslot: uint256 = self.viewer_lanes[base_v][group]
        used: uint256 = (vslot >> sh) & M48
        pay: uint256 = received - already
        if used >= allowance:
            log Rejected(relay=msg.sender, stream=stream, epoch=e, position=pos, reason=R_ALLOWANCE)
            continue
        if pay > allowance - used:
            pay = allowance - used
        amount: uint256 = pay * s.price_per_mb // MB
        if amount > funds:
            log Rejected(relay=msg.sender, stream=stream, epoch=e, position=pos, reason=R_UNFUNDED)
            continue
        self.relay_lanes[base_r][group] = (rslot & ~(M48 << sh)) | (received << sh)
        self.viewer_lanes[base_v][group] = (vslot & ~(M48 << sh)) | ((used + pay) << sh)
        funds -= amount
        total += amount
        total_bytes += pay
        paid_count += 1
        log Paid(viewer=viewer, index=index, bytes_paid=pay, amount=amount)
    self.streams[stream].balance = funds
    if total > 0:
        assert extcall token.transfer(msg.sender, total), "transfer"
    log Settled(relay=msg.sender, stream=stream, epoch=e, receipts=paid_count,
                bytes_paid=total_bytes, amount=total)
    return total
