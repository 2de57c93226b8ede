"""Typed-data hashing agrees with eth_account and with the deployed contract."""

from __future__ import annotations

import os

import pytest
from eth_account.messages import encode_typed_data

from oasis.ledger import eip712
from oasis.ledger.receipts import RECEIPT_LEN, Receipt, ReceiptError, sign_receipt
from oasis.ledger.tickets import TICKET_LEN, Ticket, TicketError, sign_ticket

DOMAIN = eip712.Domain(1337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
STREAM = bytes(range(32))


def _domain_dict(d):
    return {"name": "Oasis", "version": "1", "chainId": d.chain_id, "verifyingContract": "0x" + d.pool.hex()}


def _eth_account_digest(primary, types, message):
    full = {
        "types": {"EIP712Domain": [
            {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
            {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}],
            **types},
        "primaryType": primary, "domain": _domain_dict(DOMAIN), "message": message,
    }
    m = encode_typed_data(full_message=full)
    from eth_hash.auto import keccak
    return keccak(b"\x19" + m.version + m.header + m.body)


def test_ticket_digest_matches_eth_account():
    t = Ticket(os.urandom(20), STREAM, 7, 123_456_789, 1_700_000_000, 1_700_003_600)
    types = {"Ticket": [{"name": "viewer", "type": "address"}, {"name": "stream", "type": "bytes32"},
                        {"name": "index", "type": "uint32"}, {"name": "allowance", "type": "uint48"},
                        {"name": "notBefore", "type": "uint40"}, {"name": "expiry", "type": "uint40"}]}
    msg = {"viewer": "0x" + t.viewer.hex(), "stream": t.stream, "index": 7, "allowance": 123_456_789,
           "notBefore": 1_700_000_000, "expiry": 1_700_003_600}
    assert t.digest(DOMAIN) == _eth_account_digest("Ticket", types, msg)


def test_receipt_digest_matches_eth_account():
    r = Receipt(os.urandom(20), STREAM, 28_000_000, 3, 987_654_321)
    types = {"Receipt": [{"name": "relay", "type": "address"}, {"name": "stream", "type": "bytes32"},
                         {"name": "epoch", "type": "uint64"}, {"name": "index", "type": "uint32"},
                         {"name": "received", "type": "uint48"}]}
    msg = {"relay": "0x" + r.relay.hex(), "stream": STREAM, "epoch": 28_000_000, "index": 3,
           "received": 987_654_321}
    assert r.digest(DOMAIN) == _eth_account_digest("Receipt", types, msg)


def test_contract_agrees_on_domain(chain):
    d = chain.deployment.domain()
    assert chain.pool.functions.DOMAIN_SEPARATOR().call() == d.separator
    # and a coincurve signature over our digest is accepted by the contract's
    # ecrecover: covered end to end by test_rejections.test_valid_receipts_pay_exactly


def test_signatures_are_strict():
    key = os.urandom(32)
    digest = os.urandom(32)
    sig = eip712.sign_digest(key, digest)
    assert eip712.recover(digest, sig) == eip712.address_of_key(key)
    with pytest.raises(eip712.SignatureError, match="high s"):
        eip712.recover(digest, eip712.high_s_twin(sig))
    with pytest.raises(eip712.SignatureError):
        eip712.recover(digest, sig[:64] + b"\x01")
    with pytest.raises(eip712.SignatureError):
        eip712.recover(digest, sig[:64])
    assert eip712.recover(os.urandom(32), sig) != eip712.address_of_key(key)


def test_wire_forms_are_strict():
    key = os.urandom(32)
    t = sign_ticket(key, DOMAIN, Ticket(os.urandom(20), STREAM, 1, 10, 5, 6))
    assert len(t.encode()) == TICKET_LEN and Ticket.decode(t.encode()) == t
    r = sign_receipt(key, DOMAIN, relay=os.urandom(20), stream=STREAM, epoch=9, index=1, received=99)
    assert len(r.encode()) == RECEIPT_LEN and Receipt.decode(r.encode()) == r
    with pytest.raises(TicketError):
        Ticket.decode(t.encode() + b"\x00")
    with pytest.raises(ReceiptError):
        Receipt.decode(r.encode()[:-1])
    with pytest.raises(ReceiptError):
        Receipt.decode(b"\x02" + r.encode()[1:])
    with pytest.raises(ValueError):
        sign_receipt(key, DOMAIN, relay=os.urandom(20), stream=STREAM, epoch=9, index=1, received=1 << 48)
