"""The device CA: made here, or a fleet CA imported (an intermediate comes with the CRLs
of the CAs above it, checked and refreshed here).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from otactl.errors import ConfigError, PkiError
from otactl.fsutil import write_atomic, write_private
from otactl.pki.ca import Issuer, _load_pair, load_certs, load_issuer, write_new_ca
from otactl.pki.crl import _own_crl, _write_crl_file, crl_pem, load_crls, make_crl
from otactl.pki.files import ServerFiles
from otactl.pki.profiles import DEVICE_CA_CN, PkiSettings, key_pem

if TYPE_CHECKING:
    from otactl.pki.server import ServerPki


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
