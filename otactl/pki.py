"""Keys and certificates: server CA, gateway certificate, device CA (created or imported),
device certificates, the device CRL and the expiry inventory.

Profiles follow the old OTA CE scripts (reference section 4) with what they lacked:
random serials, SKI/AKI, path length 0 on the CAs, IP SANs, timezone-aware validity.
Nothing here prints; files are written with `otactl.fsutil` (atomic, keys 0600).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otactl.errors import ConfigError, PkiError
from otactl.fsutil import ensure_private_dir, write_atomic, write_private
from otactl.locks import folder_lock, holding_folder
from otactl.project import remember_server

if TYPE_CHECKING:
    from otactl.config import Values

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

SERVER_CA_CN = "ota-server-CA"
GATEWAY_CN = "ota-gateway"
DEVICE_CA_CN = "ota-devices-CA"
RSA_BITS = 3072
# Issued certificates start a little in the past so a device whose clock lags by a few
# minutes does not reject a brand-new gateway certificate (and vice versa).
BACKDATE = dt.timedelta(minutes=5)


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC (what certificate validity is computed from)."""
    return dt.datetime.now(dt.UTC)


# --- file layout -----------------------------------------------------------------------


@dataclass(frozen=True)
class ServerFiles:
    """Where the server PKI lives under `generated/<server name>/`."""

    root: Path

    @property
    def server_ca(self) -> Path:
        return self.root / "server_ca.pem"

    @property
    def server_ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_chain(self) -> Path:
        """Gateway certificate followed by the server CA: nginx `ssl_certificate`."""
        return self.root / "server.chain.pem"

    @property
    def devices(self) -> Path:
        return self.root / "devices"

    @property
    def device_ca(self) -> Path:
        """Device CA, followed by the certificates above it when it was imported."""
        return self.devices / "ca.crt"

    @property
    def device_ca_key(self) -> Path:
        return self.devices / "ca.key"

    @property
    def crl(self) -> Path:
        """nginx `ssl_crl`: the device CA's CRL plus one CRL per CA above it."""
        return self.devices / "crl.pem"

    @property
    def upstream_crl(self) -> Path:
        """CRLs of the CAs above an imported device CA, as the user handed them in."""
        return self.devices / "upstream-crl.pem"

    def tls_secret_files(self) -> dict[str, Path]:
        """The files of the `gateway-tls` Secret, by key (what the gateway mounts)."""
        return {
            "server.chain.pem": self.server_chain,
            "server.key": self.server_key,
            "ca.crt": self.device_ca,
            "crl.pem": self.crl,
        }


# --- keys and the one certificate builder ------------------------------------------------


def generate_key(key_type: KeyType = "ec") -> PrivateKey:
    """A new P-256 key, or RSA 3072 when `key_type` is "rsa"."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (aktualizr and nginx both read it)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(*certs: x509.Certificate) -> bytes:
    """Certificates as one PEM file, in the given order (leaf first for a chain)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def cert_builder(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    issuer: x509.Certificate | None,
    days: int,
    now: dt.datetime,
) -> x509.CertificateBuilder:
    """Subject, issuer, random serial, validity and SKI/AKI: what every profile shares.

    `issuer` None means self-signed. Profiles add their own constraints and usages.
    """
    if now.tzinfo is None:
        raise ValueError("certificate validity needs a timezone-aware time")
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    if issuer is None:
        issuer_name = subject
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    else:
        issuer_name = issuer.subject
        aki = _authority_key_id(issuer)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
    )


@functools.cache
def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    # Computed once per CA, not once per device certificate of a batch.
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    cn: str, eku: x509.ObjectIdentifier, *, key_type: KeyType, days: int, now: dt.datetime
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed CA: CA:TRUE with path length 0 (it signs only leaves), keyCertSign and
    cRLSign, and the EKU of the certificates it issues (critical, as the old scripts did)."""
    key = generate_key(key_type)
    builder = (
        cert_builder(_name(cn), key.public_key(), None, days, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=True)
    )
    return _sign(builder, key), key


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


def make_server_cert(
    ca: Issuer,
    dns_names: Sequence[str],
    ips: Sequence[str],
    *,
    key_type: KeyType,
    days: int,
    now: dt.datetime,
) -> tuple[x509.Certificate, PrivateKey]:
    """The gateway certificate: CN=ota-gateway, SANs = server name + extra names and IPs."""
    key = generate_key(key_type)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(dns_names)]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
    builder = (
        cert_builder(_name(GATEWAY_CN), key.public_key(), ca.cert, days, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # keyEncipherment matters only for RSA key exchange, keyAgreement only for
                # ECDH; the old profile lists both and clients accept either.
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
    )
    return _sign(builder, ca.key), key


_DEVICE_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def make_device_cert(
    ca: Issuer,
    device_uuid: str,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    *,
    days: int,
    now: dt.datetime,
) -> x509.Certificate:
    """A device certificate: CN = the device uuid (the gateway forwards it upstream)."""
    builder = (
        cert_builder(_name(device_uuid), public_key, ca.cert, days, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_DEVICE_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True)
    )
    return _sign(builder, ca.key)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex (what `openssl x509 -fingerprint
    -sha256` shows, without colons)."""
    return cert.fingerprint(hashes.SHA256()).hex()


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


def _check_upstream_crls(
    issuer: Issuer, crls: list[x509.CertificateRevocationList], source: Path, now: dt.datetime
) -> None:
    """nginx (OpenSSL CRL_CHECK_ALL) wants a current CRL from every CA of the chain; we can
    sign only the device CA's, so each CA above it must come with its own."""
    for upper in issuer.chain:
        mine = [c for c in crls if c.issuer == upper.subject]
        if not mine:
            raise PkiError(
                f"{source}: no CRL issued by {upper.subject.rfc4514_string()}; the gateway "
                "checks a CRL for every CA of the chain (ssl_crl)"
            )
        for crl in mine:
            if not crl.is_signature_valid(upper.public_key()):  # type: ignore[arg-type]
                raise PkiError(
                    f"{source}: the CRL of {upper.subject.rfc4514_string()} has a bad signature"
                )
            if crl.next_update_utc is not None and crl.next_update_utc <= now:
                raise PkiError(
                    f"{source}: the CRL of {upper.subject.rfc4514_string()} expired on "
                    f"{crl.next_update_utc:%Y-%m-%d}; get a fresh one from the offline root"
                )


def _write_crl_file(files: ServerFiles, own: x509.CertificateRevocationList) -> None:
    upstream = files.upstream_crl.read_bytes() if files.upstream_crl.exists() else b""
    write_atomic(files.crl, crl_pem(own) + upstream)


def _refresh_upstream_crls(
    files: ServerFiles, issuer: Issuer, source: Path, now: dt.datetime
) -> None:
    """Replace the CRLs of the CAs above an imported device CA (the offline root publishes
    new ones before the old ones' nextUpdate); the device CA's own CRL is kept as is."""
    if not issuer.chain:
        raise ConfigError("the device CA is self-signed: there is no CRL above it to refresh")
    crls = load_crls(source)
    _check_upstream_crls(issuer, crls, source, now)
    own = _own_crl(files, issuer)
    write_atomic(files.upstream_crl, crl_pem(*crls))
    _write_crl_file(files, own if own is not None else make_crl(issuer, [], now=now))


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


# --- the server PKI ----------------------------------------------------------------------


@dataclass(frozen=True)
class PkiSettings:
    """Lifetimes and key types (from `values.pki`)."""

    key_type: KeyType = "ec"
    ca_days: int = 3650
    server_days: int = 825
    device_days: int = 365
    # Device keys follow key_type unless this says otherwise.
    device_key_type: KeyType | None = None

    @property
    def device_keys(self) -> KeyType:
        """The key type of device bundles."""
        return self.device_key_type or self.key_type


@dataclass
class ServerPki:
    """What `ensure_server_pki` found or made."""

    files: ServerFiles
    created: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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


def _gateway_names(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(san.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def ensure_server_pki(
    server_dir: Path,
    server_name: str,
    settings: PkiSettings,
    *,
    extra_dns_names: Sequence[str] = (),
    extra_ips: Sequence[str] = (),
    renew_server_cert: bool = False,
    device_ca_cert: Path | None = None,
    device_ca_key: Path | None = None,
    device_ca_crl: Path | None = None,
    now: dt.datetime | None = None,
) -> ServerPki:
    """Make whatever of the server PKI is missing; never replace an existing CA.

    - server CA (`server_ca.pem`, `ca.key`) and device CA (`devices/ca.crt`, `ca.key`)
      are loaded when present, created otherwise;
    - `device_ca_cert`/`device_ca_key` import a fleet CA instead of creating one (an
      intermediate needs its chain up to the root in the same file, and `device_ca_crl`
      with a current CRL from each CA above it); `device_ca_crl` alone later replaces
      those CRLs before they expire;
    - the gateway certificate is issued when missing or when `renew_server_cert` (fresh
      key, current SANs), from the existing server CA;
    - `devices/crl.pem` starts as an empty CRL of the device CA.

    Holds the folder's lock: concurrent runs never see half of what another one makes.
    """
    files = ServerFiles(server_dir)
    if (device_ca_cert is None) != (device_ca_key is None):
        raise ConfigError("--device-ca-cert and --device-ca-key go together")
    if device_ca_crl is not None and device_ca_cert is None and not files.device_ca.exists():
        raise ConfigError("--device-ca-crl needs --device-ca-cert and --device-ca-key")
    with folder_lock(server_dir, "server PKI"):
        return _ensure_server_pki(
            files, server_name, settings, extra_dns_names, extra_ips, renew_server_cert,
            device_ca_cert, device_ca_key, device_ca_crl, now or utcnow(),
        )  # fmt: skip


def _ensure_server_pki(
    files: ServerFiles,
    server_name: str,
    settings: PkiSettings,
    extra_dns_names: Sequence[str],
    extra_ips: Sequence[str],
    renew_server_cert: bool,
    device_ca_cert: Path | None,
    device_ca_key: Path | None,
    device_ca_crl: Path | None,
    now: dt.datetime,
) -> ServerPki:
    server_dir = files.root
    out = ServerPki(files)
    ensure_private_dir(files.root)
    ensure_private_dir(files.devices)

    if _load_pair(files.server_ca, files.server_ca_key, "server CA"):
        server_ca = load_issuer(files.server_ca, files.server_ca_key, now=now)
    else:
        server_ca = write_new_ca(
            files.server_ca, files.server_ca_key, SERVER_CA_CN,
            ExtendedKeyUsageOID.SERVER_AUTH, settings, now,
        )  # fmt: skip
        out.created.append("server CA")
        remember_server(server_dir)

    dns_names = [server_name, *extra_dns_names]
    have_gateway = _load_pair(files.server_cert, files.server_key, "gateway certificate")
    if have_gateway and not renew_server_cert:
        current = load_certs(files.server_cert)[0]
        if not _signed_by(current, server_ca.cert):
            raise PkiError(
                f"{files.server_cert} was not issued by {files.server_ca}; "
                "re-issue it with --renew-server-cert"
            )
        names, ips = _gateway_names(current)
        missing = sorted(set(dns_names) - names) + sorted(set(extra_ips) - ips)
        if missing:
            out.notes.append(
                f"the gateway certificate lacks {', '.join(missing)}: "
                "run `otactl new-server --renew-server-cert`"
            )
    else:
        cert, key = make_server_cert(
            server_ca,
            dns_names,
            list(extra_ips),
            key_type=settings.key_type,
            days=settings.server_days,
            now=now,
        )
        write_private(files.server_key, key_pem(key))
        write_atomic(files.server_cert, cert_pem(cert))
        out.created.append(
            "gateway certificate (renewed)" if have_gateway else "gateway certificate"
        )
    # Rewritten each time: it must pair the current gateway certificate with the CA.
    chain = cert_pem(load_certs(files.server_cert)[0], server_ca.cert)
    if not files.server_chain.exists() or files.server_chain.read_bytes() != chain:
        write_atomic(files.server_chain, chain)

    device_ca = _ensure_device_ca(
        files, settings, out, device_ca_cert, device_ca_key, device_ca_crl, now
    )
    if _own_crl(files, device_ca) is None:
        _write_crl_file(files, make_crl(device_ca, [], now=now))
        out.created.append("device CRL")
    return out


def ensure_server_pki_for(values: Values, server_dir: Path, **options: Any) -> ServerPki:
    """`ensure_server_pki` with what the values say: the gateway names (server name, extra
    names and the public names the reverse proxy serves with the same certificate), IPs,
    key type and lifetimes. What `new-server` and `up` both call, so they agree."""
    return ensure_server_pki(
        server_dir,
        values.server_name,
        PkiSettings(**values.pki.model_dump()),
        extra_dns_names=values.server_dns_names(),
        extra_ips=values.gateway.extra_ips,
        **options,
    )


def _ensure_device_ca(
    files: ServerFiles,
    settings: PkiSettings,
    out: ServerPki,
    import_cert: Path | None,
    import_key: Path | None,
    import_crl: Path | None,
    now: dt.datetime,
) -> Issuer:
    if _load_pair(files.device_ca, files.device_ca_key, "device CA"):
        current = load_issuer(files.device_ca, files.device_ca_key, now=now)
        if import_cert is not None and load_certs(import_cert)[0] != current.cert:
            raise PkiError(
                f"{files.device_ca} exists already; refusing to replace the device CA "
                "(every device certificate depends on it)"
            )
        if import_crl is not None:
            _refresh_upstream_crls(files, current, import_crl, now)
            out.created.append("upstream CRL (refreshed)")
        return current
    if import_cert is None or import_key is None:
        made = write_new_ca(
            files.device_ca, files.device_ca_key, DEVICE_CA_CN,
            ExtendedKeyUsageOID.CLIENT_AUTH, settings, now,
        )  # fmt: skip
        out.created.append("device CA")
        return made

    issuer = load_issuer(import_cert, import_key, now=now)
    if issuer.chain:
        if import_crl is None:
            raise PkiError(
                f"{import_cert}: an intermediate CA needs --device-ca-crl with a current CRL "
                "from each CA above it (the gateway checks CRLs for the whole chain)"
            )
        crls = load_crls(import_crl)
        _check_upstream_crls(issuer, crls, import_crl, now)
        write_atomic(files.upstream_crl, crl_pem(*crls))
    elif import_crl is not None:
        raise ConfigError(f"{import_cert} is a self-signed CA: there is no CRL above it to add")
    write_private(files.device_ca_key, key_pem(issuer.key))
    write_atomic(files.device_ca, issuer.chain_pem())
    out.created.append("device CA (imported)")
    return issuer


# --- expiry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expiry:
    """One certificate or CRL and when it stops being usable."""

    kind: str  # server-ca, gateway, device-ca, device-ca-chain, crl, device
    subject: str
    path: Path
    not_after: dt.datetime
    name: str | None = None
    revoked: bool = False

    def days_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def as_json(self, now: dt.datetime) -> dict[str, object]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "name": self.name,
            "path": str(self.path),
            "not_after": self.not_after.isoformat(),
            "days_left": round(self.days_left(now), 1),
            "revoked": self.revoked,
        }


def common_name(cert: x509.Certificate) -> str:
    """The subject CN (the whole subject when there is none)."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert.subject.rfc4514_string()


def inventory(server_dir: Path) -> list[Expiry]:
    """Every certificate of the server (CAs, gateway, every device bundle) and the CRLs'
    nextUpdate, soonest first. Revoked device certificates are flagged."""
    files = ServerFiles(server_dir)
    found: list[Expiry] = []

    def add(kind: str, path: Path, cert: x509.Certificate, **kw: object) -> None:
        found.append(Expiry(kind, common_name(cert), path, cert.not_valid_after_utc, **kw))  # type: ignore[arg-type]

    for kind, path in (("server-ca", files.server_ca), ("gateway", files.server_cert)):
        if path.exists():
            add(kind, path, load_certs(path)[0])
    if files.device_ca.exists():
        ca, *chain = load_certs(files.device_ca)
        add("device-ca", files.device_ca, ca)
        for c in chain:
            add("device-ca-chain", files.device_ca, c)
    if files.crl.exists():
        for crl in load_crls(files.crl):
            if crl.next_update_utc is not None:
                found.append(
                    Expiry("crl", crl.issuer.rfc4514_string(), files.crl, crl.next_update_utc)
                )
    revoked = revoked_serials(files)
    if files.devices.is_dir():
        for entry in sorted(files.devices.iterdir()):
            client = entry / "client.pem"
            if entry.name.startswith(".") or not client.is_file():
                continue
            cert = x509.load_pem_x509_certificate(client.read_bytes())
            name = None
            info = entry / "info.json"
            if info.is_file():
                name = json.loads(info.read_bytes()).get("name")
            add("device", client, cert, name=name, revoked=cert.serial_number in revoked)
    found += _build_tools_inventory(server_dir)
    found.sort(key=lambda e: e.not_after)
    return found


# --- build tools: their own client CA, one certificate per CI pipeline ----------------------
#
# The reverse proxy asks garage-push and garage-sign for a client certificate from this CA
# (templates/reverse-proxy/nginx.conf.j2). It is not the device CA, in both directions: the
# gateway trusts only the device CA, the reverse proxy only this one.

BUILD_TOOLS_CA_CN = "ota-build-tools-CA"
BUILD_TOOLS_OU = "build-tools"
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


def make_client_cert(
    ca: Issuer,
    name: str,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    *,
    days: int,
    now: dt.datetime,
) -> x509.Certificate:
    """A build-tools client certificate: CN = the client name, OU = build-tools."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, BUILD_TOOLS_OU),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    builder = (
        cert_builder(subject, public_key, ca.cert, days, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_DEVICE_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True)
    )
    return _sign(builder, ca.key)


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


def _build_tools_inventory(server_dir: Path) -> list[Expiry]:
    """The build-tools CA, its CRL and every client certificate (revoked ones flagged)."""
    files = BuildToolsFiles.of(server_dir)
    if not files.ca.exists():
        return []
    ca = load_certs(files.ca)[0]
    found = [Expiry("build-tools-ca", common_name(ca), files.ca, ca.not_valid_after_utc)]
    revoked: set[int] = set()
    if files.crl.exists():
        for crl in load_crls(files.crl):
            revoked |= {e.serial_number for e in crl}
            if crl.next_update_utc is not None:
                found.append(
                    Expiry("build-tools-crl", common_name(ca), files.crl, crl.next_update_utc)
                )
    clients = files.root / "clients"
    for entry in sorted(clients.iterdir()) if clients.is_dir() else []:
        path = files.client_cert(entry.name)
        if path.is_file():
            cert = load_certs(path)[0]
            found.append(
                Expiry("build-tools", common_name(cert), path, cert.not_valid_after_utc,
                       name=entry.name, revoked=cert.serial_number in revoked)
            )  # fmt: skip
    return found
