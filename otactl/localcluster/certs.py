"""The local cluster's certificates: a throwaway CA, the API server's serving certificate, the
admin client certificate and service-account keys, and the kubeconfigs that use them."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otactl.fsutil import ensure_private_dir, write_atomic, write_private
from otactl.localcluster.network import NODE_IP, SERVICE_CIDR


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _cert(
    cn: str,
    public_key: Any,
    issuer_key: Any,
    issuer_cert: Any | None,
    *,
    org: str | None = None,
    ca: bool = False,
    server_names: Sequence[str] = (),
    client: bool = False,
    days: int = 90,
) -> Any:
    """One builder for every certificate here; each profile adds its own extensions."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from otactl.pki import cert_builder

    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    b = cert_builder(x509.Name(attrs), public_key, issuer_cert, days, _now())
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_names:
        sans: list[x509.GeneralName] = []
        for n in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class _Pki:
    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def server_crt(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def admin_crt(self) -> Path:
        return self.dir / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.dir / "admin.key"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"


def _make_pki(pki_dir: Path) -> _Pki:
    """A throwaway CA, the API server's serving cert, an admin client cert and SA keys.

    The cluster is disposable: `up` refuses to run over a live one and `down` removes
    these, so a fresh set per `up` never overwrites keys anything else depends on.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ensure_private_dir(pki_dir)
    pki = _Pki(pki_dir)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def pem_cert(cert: Any) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("otactl-local-cluster-ca", ca_key.public_key(), ca_key, None, ca=True, days=365)
    write_private(pki.ca_key, pem_key(ca_key))
    write_atomic(pki.ca_crt, pem_cert(ca))

    server_key = ec.generate_private_key(ec.SECP256R1())
    names = [
        "127.0.0.1",
        NODE_IP,
        str(next(ipaddress.ip_network(SERVICE_CIDR).hosts())),
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    server = _cert("kube-apiserver", server_key.public_key(), ca_key, ca, server_names=names)
    write_private(pki.server_key, pem_key(server_key))
    write_atomic(pki.server_crt, pem_cert(server))

    # system:masters: the admin identity every component and the user share here.
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _cert(
        "otactl-admin", admin_key.public_key(), ca_key, ca, org="system:masters", client=True
    )
    write_private(pki.admin_key, pem_key(admin_key))
    write_atomic(pki.admin_crt, pem_cert(admin))

    sa_key = ec.generate_private_key(ec.SECP256R1())
    write_private(pki.sa_key, pem_key(sa_key))
    write_atomic(
        pki.sa_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return pki


def _kubeconfig(pki: _Pki, server: str) -> str:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "otactl-local",
                "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_crt)},
            }
        ],
        "users": [
            {
                "name": "otactl-admin",
                "user": {
                    "client-certificate-data": b64(pki.admin_crt),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {"name": "otactl-local", "context": {"cluster": "otactl-local", "user": "otactl-admin"}}
        ],
        "current-context": "otactl-local",
    }
    # JSON is valid YAML; every kubeconfig reader accepts it.
    return json.dumps(cfg, indent=2) + "\n"
