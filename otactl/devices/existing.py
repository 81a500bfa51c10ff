"""Devices that have a bundle: find, revoke, list, compare with new options, and replace
(`new-device --reissue`, `renew-device`).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otactl.devices.batch import _load_device_ca
from otactl.devices.files import (
    ARCHIVE,
    REPLACED,
    REPLACING,
    BundleInfo,
    BundleOptions,
    Hook,
    _read_info,
    _remove_partial,
)
from otactl.devices.formats import canonical_format
from otactl.devices.manifest import Manifest
from otactl.devices.workers import _build_one, _init_worker, _sync_filesystem
from otactl.errors import ConfigError, PkiError
from otactl.fsutil import ensure_private_dir, write_private
from otactl.locks import folder_lock

if TYPE_CHECKING:
    from otactl.pki import Revocation


def find_device(server_dir: Path, ident: str) -> BundleInfo:
    """A bundle by device name or uuid."""
    from otactl.pki import ServerFiles

    devices = ServerFiles(server_dir).devices
    if not devices.is_dir():
        raise ConfigError(f"{devices}: no devices yet")
    with folder_lock(devices, "device bundles"):  # load may repair what a kill left
        return Manifest(devices).load().find(ident)


def revoke_device(
    server_dir: Path, ident: str, *, now: dt.datetime | None = None
) -> tuple[BundleInfo, Revocation]:
    """Put a device's certificate on the device CRL (`devices/crl.pem`)."""
    from cryptography import x509

    from otactl.pki import ServerFiles, revoke

    info = find_device(server_dir, ident)
    cert = x509.load_pem_x509_certificate((info.path / "client.pem").read_bytes())
    return info, revoke(ServerFiles(server_dir), cert, now=now)


# --- existing devices: compare, re-issue, renew, list -----------------------------------


@dataclass(frozen=True)
class Existing:
    """A device that has a bundle, with what its bundle was made with."""

    info: BundleInfo
    format: str
    gateway_url: str
    archive: bool
    revoked: bool

    def as_json(self) -> dict[str, Any]:
        return self.info.as_json() | {
            "format": self.format,
            "gateway_url": self.gateway_url,
            "archive": self.archive,
            "revoked": self.revoked,
        }


def _existing(devices: Path, info: BundleInfo, revoked: set[int]) -> Existing:
    data = _read_info(info.path / "info.json")
    return Existing(
        info,
        canonical_format(str(data.get("format", "device-cred"))),
        str(data.get("gateway_url", "")),
        (info.path / ARCHIVE).exists(),
        int(info.serial, 16) in revoked,
    )


def existing_device(server_dir: Path, name: str) -> Existing | None:
    """The device `name` if it has a bundle, else None."""
    from otactl.pki import ServerFiles, revoked_serials

    sf = ServerFiles(server_dir)
    if not sf.devices.is_dir():
        return None
    with folder_lock(sf.devices, "device bundles"):
        manifest = Manifest(sf.devices).load()
        if name not in manifest.by_name:
            return None
        return _existing(sf.devices, manifest.info(manifest.by_name[name]), revoked_serials(sf))


def list_devices(server_dir: Path) -> list[Existing]:
    """Every device with a bundle, by name."""
    from otactl.pki import ServerFiles, revoked_serials

    sf = ServerFiles(server_dir)
    if not sf.devices.is_dir():
        return []
    with folder_lock(sf.devices, "device bundles"):
        manifest = Manifest(sf.devices).load()
        revoked = revoked_serials(sf)
        return [
            _existing(sf.devices, manifest.info(manifest.by_name[name]), revoked)
            for name in sorted(manifest.by_name)
        ]


def changed_options(existing: Existing, opts: BundleOptions, asked: set[str]) -> list[str]:
    """The options given on the command line (`asked`: format, hardware_id, archive,
    port) that differ from what the existing bundle was made with."""
    out = []
    fmt = canonical_format(opts.device.format)
    if "format" in asked and fmt != existing.format:
        out.append(f"--format {opts.device.format} (the bundle is {existing.format})")
    if "hardware_id" in asked and opts.device.hardware_id != existing.info.hardware_id:
        out.append(
            f"--hardware-id {opts.device.hardware_id} (the bundle has {existing.info.hardware_id})"
        )
    if "archive" in asked and opts.archive and not existing.archive:
        out.append("--archive (the bundle has none)")
    if "port" in asked and opts.gateway_url != existing.gateway_url:
        out.append(f"--port: {opts.gateway_url} (the bundle has {existing.gateway_url})")
    return out


def options_for(existing: Existing, opts: BundleOptions, asked: set[str]) -> BundleOptions:
    """A new bundle for an existing device keeps what the old one was made with, except
    the options given on the command line."""
    import dataclasses

    update: dict[str, Any] = {}
    if "format" not in asked:
        update["format"] = existing.format
    if "hardware_id" not in asked:
        update["hardware_id"] = existing.info.hardware_id
    return dataclasses.replace(
        opts,
        device=opts.device.model_copy(update=update),
        archive=opts.archive or existing.archive,
    )


def replace_device(
    server_dir: Path,
    name: str,
    opts: BundleOptions,
    *,
    keep_key: bool,
    hook: Hook | None = None,
    now: dt.datetime | None = None,
) -> tuple[BundleInfo, Revocation | None]:
    """A new certificate for the existing device `name`, same uuid.

    keep_key=False (`new-device --reissue`): a new key too, and the old certificate is
    revoked (on the device CRL) first. keep_key=True (`renew-device`): the device's key
    stays, only the certificate is new; the old one is not revoked (it expires), so a
    device keeps working until it gets the new one. The old bundle is moved to
    `devices/.replaced/<uuid>-<serial>/`; nothing is deleted."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from otactl.pki import ServerFiles, load_issuer, revoke, revoked_serials, utcnow

    now = now or utcnow()
    files_ca, files_key, root = _load_device_ca(server_dir)
    sf = ServerFiles(server_dir)
    load_issuer(sf.device_ca, sf.device_ca_key, now=now)
    devices = sf.devices
    if not devices.is_dir():
        raise ConfigError(f"{devices}: no devices yet")
    try:
        with folder_lock(devices, "device bundles"):
            _remove_partial(devices)
            manifest = Manifest(devices).load()
            old = manifest.find(name)
            cert = x509.load_pem_x509_certificate((old.path / "client.pem").read_bytes())
            key = None
            revocation = None
            if keep_key:
                if cert.serial_number in revoked_serials(sf):
                    raise PkiError(
                        f"{old.name} ({old.uuid}) is revoked: `otactl new-device {old.name} "
                        "--reissue` makes a new key and certificate"
                    )
                key = serialization.load_pem_private_key((old.path / "pkey.pem").read_bytes(), None)
            else:
                revocation = revoke(sf, cert, now=now)
            _init_worker(files_ca, files_key, root, devices, opts, now)
            made = _build_one(old.name, old.uuid, opts.device.hardware_id, key)  # type: ignore[arg-type]
            _sync_filesystem(devices)
            aside = ensure_private_dir(devices / REPLACED) / f"{old.uuid}-{old.serial}"
            # Between the two renames the device has no folder: the journal lets the next
            # run put the old bundle back (Manifest.load) if this one is killed there.
            write_private(devices / REPLACING, f"{old.uuid}\n{aside.relative_to(devices)}\n")
            os.rename(old.path, aside)
            os.rename(made["staging"], devices / old.uuid)
            manifest.append([made])
            (devices / REPLACING).unlink()
            _remove_partial(devices)
            _sync_filesystem(devices)
    except OSError as e:
        raise PkiError(f"{devices}: cannot write the bundle: {e}") from e
    info = BundleInfo.from_json(made, created=True)
    if hook:
        hook(info)
    return info, revocation
