"""`credentials.zip` for the build tools (garage-push, garage-sign): its entries, the same
bytes for the same inputs, written only when they change, and the PKCS#12 files of the
build-tools client certificate it carries.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from otactl.fsutil import write_private

if TYPE_CHECKING:
    from otactl.credentials import RepoKeys
    from otactl.pki import PkiSettings


CREDENTIALS_ZIP = "credentials.zip"
# Zip entries carry a timestamp; a fixed one makes the file depend on its contents only.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class PublicUrls:
    """Where the build tools and devices reach the server."""

    gateway: str  # the device gateway as really exposed (https://<server name>:<port>)
    tuf_reposerver: str  # garage-sign appends /api/v1/user_repo/
    treehub: str  # garage-push talks to <treehub>/api/v3/

    @classmethod
    def for_domain(cls, domain: str, gateway: str, https_port: int = 443) -> PublicUrls:
        """The reverse proxy's names over TLS, on the port it is really exposed on (both
        tools use the URLs as written)."""
        port = "" if https_port == 443 else f":{https_port}"
        return cls(
            gateway, f"https://tuf-reposerver.{domain}{port}", f"https://treehub.{domain}{port}"
        )


@dataclass(frozen=True)
class ClientTls:
    """The PKCS#12 files of one build-tools client (see `otactl.pkcs12`)."""

    name: str
    client_p12: bytes  # its certificate and key
    server_p12: bytes  # the server CA, as garage-sign's trust store


def treehub_json(treehub_url: str) -> bytes:
    """treehub.json: `ostree.server` for garage-push, and `no_auth` for garage-sign.

    Neither tool authenticates from this file here: both use `client_auth.p12` when the zip
    has it (aktualizr `src/sota_tools/server_credentials.cc` then ignores `oauth2` and
    `basic_auth`; ota-tuf `ZipRepoInitialization.init` in `RepoManagement.scala` then skips
    `buildOauth`). `no_auth` (a Boolean, `CliReads.scala` `treehubConfigDecoder`) keeps
    garage-sign from asking for OAuth2 if the certificate is taken out of the zip.
    """
    data = {"no_auth": True, "ostree": {"server": treehub_url.rstrip("/") + "/api/v3/"}}
    return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"


def build_zip(keys: RepoKeys, urls: PublicUrls, server_ca_pem: bytes, tls: ClientTls) -> bytes:
    """The flat `credentials.zip`, identical bytes for identical inputs. Entry names are
    the ones the readers look up: garage-push (`server_credentials.cc`: treehub.json,
    client_auth.p12, tufrepo.url; `CanSignOffline`: root.json, targets.pub, targets.sec)
    and garage-sign (`ZipRepoInitialization.init`: treehub.json, client_auth.p12,
    server.p12, tufrepo.url, root.json, targets.pub, targets.sec)."""
    entries = {
        "autoprov.url": urls.gateway.encode() + b"\n",
        "server_ca.pem": server_ca_pem,
        # garage-sign builds its URLs as tufrepo.url + "/api/v1/user_repo/..." (libtuf
        # TufServerHttpClient.scala): no trailing slash here.
        "tufrepo.url": urls.tuf_reposerver.rstrip("/").encode() + b"\n",
        "targets.pub": keys.targets_pub(),
        "targets.sec": keys.targets_sec(),
        "treehub.json": treehub_json(urls.treehub),
        "root.json": keys.root_json,
        "client_auth.p12": tls.client_p12,
        "server.p12": tls.server_p12,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the mode below is honoured by unzip
            info.external_attr = (stat.S_IFREG | 0o600) << 16  # a regular file, 0600
            zf.writestr(info, data)
    return buf.getvalue()


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` 0600 atomically unless the file holds exactly these bytes already."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_private(path, data)
    return True


def zip_name(client: str) -> str:
    """credentials.zip for the default client, credentials-<name>.zip for the others."""
    from otactl.pki import DEFAULT_CLIENT

    return CREDENTIALS_ZIP if client == DEFAULT_CLIENT else f"credentials-{client}.zip"


def client_tls(
    server_dir: Path, client: str, settings: PkiSettings, server_ca_pem: bytes
) -> tuple[ClientTls, bool]:
    """The client's PKCS#12 files (its certificate issued when missing, revoked or expired)
    and whether a certificate was issued now."""
    from cryptography import x509

    from otactl import pkcs12
    from otactl.pki import SERVER_CA_CN, ensure_build_tools_client

    made = ensure_build_tools_client(server_dir, client, settings)
    server_ca = x509.load_pem_x509_certificate(server_ca_pem)
    tls = ClientTls(
        client,
        pkcs12.key_store(client, made.key, made.cert),
        pkcs12.trust_store([(SERVER_CA_CN, server_ca)]),
    )
    return tls, made.issued
