"""CAs that sign: loaded (and checked: key, CA:TRUE, chain, expiry) or made and written,
never replaced.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from otactl.errors import PkiError
from otactl.fsutil import write_atomic, write_private
from otactl.pki.profiles import PkiSettings, PrivateKey, cert_pem, key_pem, make_ca, utcnow

# --- loading CAs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    """A CA that signs: its certificate, key, and the certificates above it (nearest first,
    empty for a self-signed CA)."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    def chain_pem(self) -> bytes:
        """The CA and the certificates above it: the gateway's `ssl_client_certificate`."""
        return cert_pem(self.cert, *self.chain)

    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """What a leaf should send with itself: the CA and any non-root above it."""
        return tuple(c for c in (self.cert, *self.chain) if not _self_signed(c))


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _signed_by(cert, cert)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise PkiError(f"{path}: cannot read: {e.strerror}") from e


def load_certs(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file, in file order."""
    try:
        certs = x509.load_pem_x509_certificates(_read(path))
    except ValueError as e:
        raise PkiError(f"{path}: not a PEM certificate file") from e
    return certs


def load_key(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as e:
        raise PkiError(f"{path}: not an unencrypted PEM private key") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"{path}: only EC and RSA keys are supported")
    return key


def _same_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    return cert.public_key() == key.public_key()


def load_issuer(cert_path: Path, key_path: Path, *, now: dt.datetime | None = None) -> Issuer:
    """Load a CA certificate (first in the file, the certificates above it after) and its
    key; refuse a key that does not match, a certificate that is no CA, a broken chain."""
    certs = load_certs(cert_path)
    key = load_key(key_path)
    ca, chain = certs[0], tuple(certs[1:])
    if not _same_key(ca, key):
        raise PkiError(f"{key_path}: the key does not belong to {cert_path}")
    try:
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise PkiError(f"{cert_path}: {ca.subject.rfc4514_string()} is not a CA (CA:FALSE)")
    try:
        ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_cert_sign:
            raise PkiError(f"{cert_path}: the CA lacks keyCertSign")
    except x509.ExtensionNotFound:
        pass
    below = ca
    for upper in chain:
        if not _signed_by(below, upper):
            raise PkiError(
                f"{cert_path}: {below.subject.rfc4514_string()} is not signed by the next "
                f"certificate in the file ({upper.subject.rfc4514_string()})"
            )
        below = upper
    if not _self_signed(below):
        raise PkiError(
            f"{cert_path}: the chain ends at {below.subject.rfc4514_string()}, which is not a "
            "self-signed root; append the certificates up to the root"
        )
    when = now or utcnow()
    for c in (ca, *chain):
        if c.not_valid_after_utc <= when:
            raise PkiError(f"{cert_path}: {c.subject.rfc4514_string()} has expired")
    return Issuer(ca, key, chain)


def write_new_ca(
    cert_path: Path,
    key_path: Path,
    cn: str,
    eku: x509.ObjectIdentifier,
    settings: PkiSettings,
    now: dt.datetime,
) -> Issuer:
    """`make_ca` with the settings' key type and CA lifetime, its key written 0600 before
    its certificate (a certificate on disk always has its key)."""
    cert, key = make_ca(cn, eku, key_type=settings.key_type, days=settings.ca_days, now=now)
    write_private(key_path, key_pem(key))
    write_atomic(cert_path, cert_pem(cert))
    return Issuer(cert, key)


def _load_pair(cert_path: Path, key_path: Path, what: str) -> bool:
    """True when both files exist, False when neither; refuse half a pair rather than
    create a new CA next to a surviving certificate or key."""
    has_cert, has_key = cert_path.exists(), key_path.exists()
    if has_cert != has_key:
        present, missing = (cert_path, key_path) if has_cert else (key_path, cert_path)
        raise PkiError(
            f"{what}: {present} exists but {missing} is missing; restore {missing} from "
            f"your backup (otactl makes no new {what} next to the old one's files: what "
            "trusts the old one would break)"
        )
    return has_cert
