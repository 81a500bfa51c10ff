"""The build tools' own client CA and one client certificate per CI pipeline (what
garage-push and garage-sign show the reverse proxy), revoked on its own CRL.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from otactl.errors import ConfigError, PkiError
from otactl.fsutil import ensure_private_dir, write_atomic, write_private
from otactl.locks import holding_folder
from otactl.pki.ca import (
    Issuer,
    _load_pair,
    _same_key,
    _signed_by,
    load_certs,
    load_issuer,
    load_key,
    write_new_ca,
)
from otactl.pki.crl import Revocation, crl_pem, load_crls, make_crl
from otactl.pki.profiles import (
    PkiSettings,
    PrivateKey,
    cert_pem,
    generate_key,
    key_pem,
    make_client_cert,
    utcnow,
)

# --- build tools: their own client CA, one certificate per CI pipeline ----------------------
#
# The reverse proxy asks garage-push and garage-sign for a client certificate from this CA
# (templates/reverse-proxy/nginx.conf.j2). It is not the device CA, in both directions: the
# gateway trusts only the device CA, the reverse proxy only this one.

BUILD_TOOLS_CA_CN = "ota-build-tools-CA"


DEFAULT_CLIENT = "default"
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class BuildToolsFiles:
    """`generated/<server name>/build-tools/`: CA, CRL, and `clients/<name>/`."""

    root: Path

    @classmethod
    def of(cls, server_dir: Path) -> BuildToolsFiles:
        return cls(server_dir / "build-tools")

    @property
    def ca(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def crl(self) -> Path:
        """The reverse proxy's `ssl_crl`: revoked build-tools certificates."""
        return self.root / "crl.pem"

    def client_cert(self, name: str) -> Path:
        return self.root / "clients" / name / "client.crt"

    def client_key(self, name: str) -> Path:
        return self.root / "clients" / name / "client.key"

    def secret_files(self) -> dict[str, Path]:
        """The files of the `build-tools-ca` Secret the reverse proxy mounts."""
        return {"ca.crt": self.ca, "crl.pem": self.crl}


def check_client_name(name: str) -> str:
    """A build-tools client name (a CI pipeline): it names a folder and a certificate CN."""
    if not _CLIENT_NAME.match(name):
        raise ConfigError(
            f"client name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


@holding_folder
def ensure_build_tools_ca(
    server_dir: Path, settings: PkiSettings, *, now: dt.datetime | None = None
) -> tuple[Issuer, list[str]]:
    """Load the build-tools CA, or create it (and its empty CRL) when missing; never
    replace it. Returns the CA and what was created."""
    now = now or utcnow()
    files = BuildToolsFiles.of(server_dir)
    ensure_private_dir(files.root)
    created = []
    if _load_pair(files.ca, files.ca_key, "build-tools CA"):
        issuer = load_issuer(files.ca, files.ca_key, now=now)
    else:
        issuer = write_new_ca(
            files.ca, files.ca_key, BUILD_TOOLS_CA_CN, ExtendedKeyUsageOID.CLIENT_AUTH,
            settings, now,
        )  # fmt: skip
        created.append("build-tools CA")
    if not files.crl.exists():
        write_atomic(files.crl, crl_pem(make_crl(issuer, [], now=now)))
        created.append("build-tools CRL")
    return issuer, created


@dataclass(frozen=True)
class BuildToolsClient:
    name: str
    cert: x509.Certificate
    key: PrivateKey
    issued: bool  # False when the existing certificate was kept
    ca: Issuer


def _build_tools_crl(files: BuildToolsFiles, issuer: Issuer) -> x509.CertificateRevocationList:
    for crl in load_crls(files.crl):
        if crl.issuer == issuer.cert.subject and crl.is_signature_valid(
            issuer.cert.public_key()  # type: ignore[arg-type]
        ):
            return crl
    raise PkiError(f"{files.crl}: holds no CRL signed by the build-tools CA")


@holding_folder
def ensure_build_tools_client(
    server_dir: Path, name: str, settings: PkiSettings, *, now: dt.datetime | None = None
) -> BuildToolsClient:
    """The client certificate `name`: kept while it is valid and not revoked, otherwise
    (missing, revoked, expired) a new key and certificate. Lifetime: `pki.device_days`."""
    now = now or utcnow()
    check_client_name(name)
    issuer, _ = ensure_build_tools_ca(server_dir, settings, now=now)
    files = BuildToolsFiles.of(server_dir)
    cert_path, key_path = files.client_cert(name), files.client_key(name)
    if _load_pair(cert_path, key_path, f"build-tools client {name}"):
        cert, key = load_certs(cert_path)[0], load_key(key_path)
        revoked = {e.serial_number for e in _build_tools_crl(files, issuer)}
        if (
            _same_key(cert, key)
            and _signed_by(cert, issuer.cert)
            and cert.serial_number not in revoked
            and cert.not_valid_after_utc > now
        ):
            return BuildToolsClient(name, cert, key, issued=False, ca=issuer)
    key = generate_key(settings.key_type)
    cert = make_client_cert(issuer, name, key.public_key(), days=settings.device_days, now=now)
    # Key first: a certificate on disk always has its key next to it.
    write_private(key_path, key_pem(key))
    write_atomic(cert_path, cert_pem(cert))
    return BuildToolsClient(name, cert, key, issued=True, ca=issuer)


@holding_folder
def revoke_build_tools_client(
    server_dir: Path, name: str, *, now: dt.datetime | None = None
) -> Revocation:
    """Put the client certificate `name` on the build-tools CRL (re-signed, atomically).
    Revoking twice reports the first revocation. The next `otactl up` rolls the reverse
    proxy with the new CRL."""
    now = now or utcnow()
    check_client_name(name)
    files = BuildToolsFiles.of(server_dir)
    if not files.client_cert(name).exists():
        raise ConfigError(f"no build-tools client {name!r} in {files.root / 'clients'}")
    issuer = load_issuer(files.ca, files.ca_key, now=now)
    cert = load_certs(files.client_cert(name))[0]
    if not _signed_by(cert, issuer.cert):
        raise PkiError(f"{files.client_cert(name)} was not issued by the build-tools CA")
    entries = list(_build_tools_crl(files, issuer))
    for entry in entries:
        if entry.serial_number == cert.serial_number:
            return Revocation(cert.serial_number, entry.revocation_date_utc, already=True)
    entry = (
        x509.RevokedCertificateBuilder()
        .serial_number(cert.serial_number)
        .revocation_date(now)
        .build()
    )
    write_atomic(files.crl, crl_pem(make_crl(issuer, [*entries, entry], now=now)))
    return Revocation(cert.serial_number, now, already=False)
