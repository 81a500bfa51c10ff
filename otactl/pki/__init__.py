"""Keys and certificates: server CA, gateway certificate, device CA (created or imported),
device certificates, the device CRL and the expiry inventory.

Profiles follow the old OTA CE scripts (reference section 4) with what they lacked:
random serials, SKI/AKI, path length 0 on the CAs, IP SANs, timezone-aware validity.
Nothing here prints; files are written with `otactl.fsutil` (atomic, keys 0600).

`profiles` (keys, the one certificate builder and each profile), `files` (where the files
are), `ca` (load or make a CA), `crl`, `device_ca` (made, or a fleet CA imported),
`server` (the server PKI of `new-server`/`up`), `build_tools` (the build tools' client CA),
`expiry` (`certs check`). This package re-exports what callers use: `pki.load_certs`.
"""

from __future__ import annotations

from otactl.pki.build_tools import (
    BUILD_TOOLS_CA_CN,
    DEFAULT_CLIENT,
    BuildToolsClient,
    BuildToolsFiles,
    check_client_name,
    ensure_build_tools_ca,
    ensure_build_tools_client,
    revoke_build_tools_client,
)
from otactl.pki.ca import Issuer, load_certs, load_issuer, load_key, write_new_ca
from otactl.pki.crl import Revocation, crl_pem, load_crls, make_crl, revoke, revoked_serials
from otactl.pki.device_ca import _check_upstream_crls, _refresh_upstream_crls
from otactl.pki.expiry import Expiry, common_name, inventory
from otactl.pki.files import ServerFiles
from otactl.pki.profiles import (
    BACKDATE,
    BUILD_TOOLS_OU,
    DEVICE_CA_CN,
    GATEWAY_CN,
    RSA_BITS,
    SERVER_CA_CN,
    KeyType,
    PkiSettings,
    PrivateKey,
    cert_builder,
    cert_pem,
    fingerprint,
    generate_key,
    key_pem,
    make_ca,
    make_client_cert,
    make_device_cert,
    make_server_cert,
    utcnow,
)
from otactl.pki.server import ServerPki, ensure_server_pki, ensure_server_pki_for

__all__ = [
    "BACKDATE",
    "BUILD_TOOLS_CA_CN",
    "BUILD_TOOLS_OU",
    "DEFAULT_CLIENT",
    "DEVICE_CA_CN",
    "GATEWAY_CN",
    "RSA_BITS",
    "SERVER_CA_CN",
    "BuildToolsClient",
    "BuildToolsFiles",
    "Expiry",
    "Issuer",
    "KeyType",
    "PkiSettings",
    "PrivateKey",
    "Revocation",
    "ServerFiles",
    "ServerPki",
    "_check_upstream_crls",
    "_refresh_upstream_crls",
    "cert_builder",
    "cert_pem",
    "check_client_name",
    "common_name",
    "crl_pem",
    "ensure_build_tools_ca",
    "ensure_build_tools_client",
    "ensure_server_pki",
    "ensure_server_pki_for",
    "fingerprint",
    "generate_key",
    "inventory",
    "key_pem",
    "load_certs",
    "load_crls",
    "load_issuer",
    "load_key",
    "make_ca",
    "make_client_cert",
    "make_crl",
    "make_device_cert",
    "make_server_cert",
    "revoke",
    "revoke_build_tools_client",
    "revoked_serials",
    "utcnow",
    "write_new_ca",
]
