"""When each certificate and CRL of a server stops being usable (`certs check`)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from otactl.pki.build_tools import BuildToolsFiles
from otactl.pki.ca import load_certs
from otactl.pki.crl import load_crls, revoked_serials
from otactl.pki.files import ServerFiles

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
