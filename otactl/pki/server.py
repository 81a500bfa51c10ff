"""The server PKI of `new-server` and `up`: server CA, gateway certificate, device CA and
its CRL, each made when missing and never replaced.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from otactl.errors import ConfigError, PkiError
from otactl.fsutil import ensure_private_dir, write_atomic, write_private
from otactl.locks import folder_lock
from otactl.pki.ca import _load_pair, _signed_by, load_certs, load_issuer, write_new_ca
from otactl.pki.crl import _own_crl, _write_crl_file, make_crl
from otactl.pki.device_ca import _ensure_device_ca
from otactl.pki.files import ServerFiles
from otactl.pki.profiles import (
    SERVER_CA_CN,
    PkiSettings,
    cert_pem,
    key_pem,
    make_server_cert,
    utcnow,
)
from otactl.project import remember_server

if TYPE_CHECKING:
    from otactl.config import Values


# --- the server PKI ----------------------------------------------------------------------


@dataclass
class ServerPki:
    """What `ensure_server_pki` found or made."""

    files: ServerFiles
    created: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
