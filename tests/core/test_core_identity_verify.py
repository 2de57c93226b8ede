"""Ed25519 verification (``oasis.core.identity.verify``): the fast back-end (qh3's aws-lc)
gives the same answer as ``cryptography``'s OpenSSL one on valid, forged and malformed
signatures and keys -- a node must accept and refuse exactly what every other node does."""

from __future__ import annotations

import pytest

from oasis.core import identity
from oasis.core.identity import Identity, verify

L = 2**252 + 27742317777372353535851937790883648493  #: the group order
P = 2**255 - 19
IDENT = (1).to_bytes(32, "little")  #: the identity point (y = 1)


def _cases() -> dict[str, tuple[bytes, bytes, bytes]]:
    ident = Identity.generate()
    msg = b"oasis chunk"
    sig = ident.sign(msg)
    s_big = (int.from_bytes(sig[32:], "little") + L).to_bytes(32, "little")
    minus_zero = bytes(IDENT[:31]) + bytes([IDENT[31] | 0x80])
    return {
        "valid": (ident.public, sig, msg),
        "other message": (ident.public, sig, msg + b"!"),
        "other key": (Identity.generate().public, sig, msg),
        "flipped bit": (ident.public, sig[:5] + bytes([sig[5] ^ 1]) + sig[6:], msg),
        "S + L (malleated)": (ident.public, sig[:32] + s_big, msg),
        # small-order and non-canonical keys: both libraries accept these (RFC 8032 does
        # not ask to refuse them); what matters is that they agree
        "identity key, identity R, S = 0": (IDENT, IDENT + bytes(32), msg),
        "order-2 key": ((P - 1).to_bytes(32, "little"), IDENT + bytes(32), msg),
        "non-canonical key (y = p + 1)": ((P + 1).to_bytes(32, "little"), IDENT + bytes(32), msg),
        "non-canonical R": (IDENT, (P + 1).to_bytes(32, "little") + bytes(32), msg),
        "negative zero key": (minus_zero, IDENT + bytes(32), msg),
        "short signature": (ident.public, sig[:63], msg),
        "long signature": (ident.public, sig + b"\0", msg),
        "short key": (ident.public[:31], sig, msg),
        "long key": (ident.public + b"\0", sig, msg),
        "empty": (b"", b"", b""),
    }


VALID = {"valid", "identity key, identity R, S = 0", "order-2 key",
         "non-canonical key (y = p + 1)", "negative zero key"}


@pytest.mark.parametrize("name", sorted(_cases()))
def test_both_backends_give_the_same_answer(name: str) -> None:
    key, sig, msg = _cases()[name]
    assert identity._qh3_verify is not None  # the fast back-end is the one in use
    assert verify(key, sig, msg) == identity._verify_openssl(key, sig, msg) == (name in VALID)
