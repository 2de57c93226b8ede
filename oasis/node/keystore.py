"""Node identity on disk and the QUIC/TLS certificate made from it.

The Ed25519 key lives in ``<data-dir>/identity.key`` (raw 32 bytes, mode 0600),
created on first start. The TLS certificate is self-signed by that same key, so
the certificate's public key *is* the peer id; dialling a peer pins it.
"""

from __future__ import annotations

import datetime
import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from oasis.core.identity import Identity

KEY_FILE = "identity.key"


class KeystoreError(Exception):
    """The key file exists but is unusable; the message says what to do."""


def load_or_create(data_dir: str | os.PathLike[str]) -> Identity:
    path = Path(data_dir) / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raw = path.read_bytes()
        if len(raw) != 32:
            raise KeystoreError(f"{path} holds {len(raw)} bytes, not a 32-byte Ed25519 key: "
                                "move it away to create a new identity")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise KeystoreError(f"{path} has mode {mode:o}; run: chmod 600 {path}")
        return Identity.from_private_bytes(raw)
    ident = Identity.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(ident.private_bytes())
    return ident


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
