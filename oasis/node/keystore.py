"""Node identity on disk and the QUIC/TLS certificate made from it.

The Ed25519 key lives in ``<data-dir>/identity.key`` (mode 0600, the data
directory 0700), created whole on first start. Its format (see
:mod:`oasis.datafiles`) records the public key and a check value, so a damaged
file is a clear :class:`~oasis.datafiles.DataFileError`, never a silently new
identity; a legacy raw 32-byte file is still read and rewritten in that
format. The TLS certificate is self-signed by that same key, so the
certificate's public key *is* the peer id; dialling a peer pins it.
"""

from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from oasis.core.identity import Identity
from oasis.datafiles import DataFileError, encode_key, load_key, private_dir, write_new

KEY_FILE = "identity.key"


KeystoreError = DataFileError  # old name
KEY_KIND = "ed25519"
ADVICE = ("restore it from your backup; only if you have none, move it away and a new identity "
          "(a new peer id: streams you broadcast get new ids) is created on the next start")


def _public_of(secret: bytes) -> bytes:
    return Identity.from_private_bytes(secret).public


def _legacy(data: bytes) -> bytes | None:
    return data if len(data) == 32 else None  # raw key: unchecked, upgraded on load


def load_or_create(data_dir: str | os.PathLike[str]) -> Identity:
    """The node's identity; a damaged or unreadable key file raises DataFileError."""
    path = private_dir(data_dir) / KEY_FILE
    if not path.exists():
        ident = Identity.generate()
        if write_new(path, encode_key(KEY_KIND, ident.private_bytes(), ident.public)):
            return ident
    return Identity.from_private_bytes(load_key(path, KEY_KIND, "the identity key", _public_of, _legacy, ADVICE))


def make_certificate(identity: Identity) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.peer_id)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(identity.private.public_key())
        .serial_number(int.from_bytes(identity.tag, "big") >> 1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(identity.private, None)
    )


def certificate_key(cert: x509.Certificate) -> bytes | None:
    """Raw Ed25519 public key of a certificate, or None if it is another kind."""
    key = cert.public_key()
    if not isinstance(key, Ed25519PublicKey):
        return None
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
