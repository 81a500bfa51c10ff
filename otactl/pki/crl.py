"""The device CRL (`devices/crl.pem`): made, read, and a certificate revoked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from otactl.errors import PkiError
from otactl.fsutil import write_atomic
from otactl.locks import folder_lock
from otactl.pki.ca import Issuer, _read, _signed_by, load_certs, load_issuer
from otactl.pki.files import ServerFiles
from otactl.pki.profiles import BACKDATE, utcnow

# --- CRL ---------------------------------------------------------------------------------


def make_crl(
    issuer: Issuer,
    revoked: Iterable[x509.RevokedCertificate],
    *,
    now: dt.datetime,
) -> x509.CertificateRevocationList:
    """A CRL signed by `issuer`, valid until the issuer itself expires.

    nginx rejects every client once `nextUpdate` is past, and nothing re-signs the CRL on
    a schedule, so a short nextUpdate would silently lock the whole fleet out. `certs
    check` lists the CRL's nextUpdate with the certificates.
    """
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(now - BACKDATE)
        .next_update(max(issuer.cert.not_valid_after_utc, now + dt.timedelta(days=1)))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(issuer.key, hashes.SHA256())


def load_crls(path: Path) -> list[x509.CertificateRevocationList]:
    """Every CRL of a PEM file (crl.pem holds one per CA of the device chain)."""
    data = _read(path)
    crls = []
    marker = b"-----BEGIN X509 CRL-----"
    for part in data.split(marker)[1:]:
        try:
            crls.append(x509.load_pem_x509_crl(marker + part))
        except ValueError as e:
            raise PkiError(f"{path}: not a PEM CRL file") from e
    if not crls:
        raise PkiError(f"{path}: no CRL in the file")
    return crls


def crl_pem(*crls: x509.CertificateRevocationList) -> bytes:
    """CRLs as one PEM file (nginx `ssl_crl` reads them all)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in crls)


def _write_crl_file(files: ServerFiles, own: x509.CertificateRevocationList) -> None:
    upstream = files.upstream_crl.read_bytes() if files.upstream_crl.exists() else b""
    write_atomic(files.crl, crl_pem(own) + upstream)


def _own_crl(files: ServerFiles, issuer: Issuer) -> x509.CertificateRevocationList | None:
    """The CRL in crl.pem that the device CA signed (the others belong to CAs above it)."""
    if not files.crl.exists():
        return None
    for crl in load_crls(files.crl):
        if crl.issuer == issuer.cert.subject and crl.is_signature_valid(
            issuer.cert.public_key()  # type: ignore[arg-type]
        ):
            return crl
    raise PkiError(f"{files.crl}: holds no CRL signed by the device CA")


@dataclass(frozen=True)
class Revocation:
    serial: int
    revoked_at: dt.datetime
    already: bool


def revoke(
    files: ServerFiles, cert: x509.Certificate, *, now: dt.datetime | None = None
) -> Revocation:
    """Add `cert` to the device CRL (re-signed, written atomically). Revoking twice is a
    no-op that reports the first revocation."""
    with folder_lock(files.root):
        return _revoke(files, cert, now or utcnow())


def _revoke(files: ServerFiles, cert: x509.Certificate, now: dt.datetime) -> Revocation:
    issuer = load_issuer(files.device_ca, files.device_ca_key, now=now)
    if not _signed_by(cert, issuer.cert):
        raise PkiError("the certificate was not issued by this server's device CA")
    current = _own_crl(files, issuer)
    entries = list(current) if current is not None else []
    for entry in entries:
        if entry.serial_number == cert.serial_number:
            return Revocation(cert.serial_number, entry.revocation_date_utc, already=True)
    entry = (
        x509.RevokedCertificateBuilder()
        .serial_number(cert.serial_number)
        .revocation_date(now)
        .build()
    )
    _write_crl_file(files, make_crl(issuer, [*entries, entry], now=now))
    return Revocation(cert.serial_number, now, already=False)


def revoked_serials(files: ServerFiles) -> set[int]:
    """Serials in the device CA's CRL (empty when there is no CRL yet)."""
    if not files.crl.exists():
        return set()
    cert = load_certs(files.device_ca)[0]
    return {
        e.serial_number for crl in load_crls(files.crl) if crl.issuer == cert.subject for e in crl
    }
