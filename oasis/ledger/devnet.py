"""Dev-chain conveniences shared by the demo, the tests and the benchmark.

Theory of operation: on the embedded chain (and on a dev node such as anvil)
a faucet key holds ETH and is the token's minter. :func:`fund` gives a wallet
ETH for gas; :func:`open_funded_stream` has a broadcaster open its stream
(the on-chain id is bound to the broadcaster's wallet, see
:func:`chain.stream_id`), mints it tokens and deposits them, which is what a
demo broadcaster does at start.
Nothing here is used on a production chain, where wallets are funded and
tokens bought by their owners.
"""

from __future__ import annotations

import hashlib

from .chain import FAUCET_TOPUP, ChainError, LedgerChain, stream_id

DEFAULT_PRICE_PER_MB = 10**15  # 0.001 OAS per megabyte relayed


def stream_key(name: str | bytes) -> bytes:
    """A 32-byte stream key from any node-level stream name; the on-chain id is
    ``chain.stream_id(broadcaster wallet, key)``."""
    raw = name.encode() if isinstance(name, str) else name
    return hashlib.sha256(b"oasis/stream/v1\x00" + raw).digest()


def fund(chain: LedgerChain, faucet_key: bytes, address: bytes, wei: int = FAUCET_TOPUP) -> None:
    """Top up ``address`` to at least ``wei`` of ETH for gas."""
    have = chain.eth_balance(address)
    if have < wei:
        chain.send_eth(faucet_key, address, wei - have)


def open_funded_stream(
    chain: LedgerChain,
    faucet_key: bytes,
    broadcaster_key: bytes,
    key: bytes,
    deposit: int,
    price_per_mb: int = DEFAULT_PRICE_PER_MB,
    epoch_length: int = 10,
) -> bytes:
    """Open ``broadcaster_key``'s stream ``key`` (if not open), deposit ``deposit``
    tokens into it and return its on-chain id."""
    from . import eip712

    addr = eip712.address_of_key(broadcaster_key)
    fund(chain, faucet_key, addr)
    stream = stream_id(addr, key)
    info = chain.stream_info(stream)
    if int(info["broadcaster"], 16) == 0:
        chain.open_stream(broadcaster_key, key, price_per_mb, epoch_length)
    elif bytes.fromhex(info["broadcaster"][2:]) != addr:  # cannot happen: the id is bound to addr
        raise ChainError("stream opened by another wallet")
    if deposit:
        chain.mint(faucet_key, addr, deposit)
        chain.deposit(broadcaster_key, stream, deposit)
    return stream
