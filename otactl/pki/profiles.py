"""Keys and the certificate profiles: one builder (subject, issuer, serial, validity,
SKI/AKI), then what each kind of certificate adds: CA, gateway, device, build-tools
client. Nothing here reads or writes files.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from otactl.pki.ca import Issuer


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


# The OU of every build-tools client certificate (their CA is in `build_tools`).
BUILD_TOOLS_OU = "build-tools"


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
