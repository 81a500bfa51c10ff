"""Where the server PKI lives under `generated/<server name>/`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
