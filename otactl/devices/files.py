"""A bundle's files: the options every bundle of a run shares, what a bundle on disk is
(`info.json`), where each file goes on the device, the `--archive` tarball, and the
staging folders a killed run leaves.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from otactl.devices.formats import _storage_path, canonical_format
from otactl.errors import ConfigError, PkiError

if TYPE_CHECKING:
    from otactl.config import Device
    from otactl.pki import KeyType


MANIFEST = "manifest.jsonl"
ARCHIVE = "device-fs.tar.gz"
TMP_PREFIX = ".tmp-"  # per-worker staging folders: .tmp-<pid>/<uuid>/
REPLACED = ".replaced"  # old bundles of replaced devices: .replaced/<uuid>-<serial>/
# While a device's bundle is replaced (`--reissue`, `renew-device`): "<uuid>\n<old bundle
# moved aside, relative to devices/>\n", so that a kill between the two renames is undone.
REPLACING = ".replacing"


# --- bundles -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleOptions:
    """What every bundle of a run shares."""

    gateway_url: str
    device: Device
    days: int
    archive: bool = False
    # The device keys: P-256 ("ec") or RSA 3072 ("rsa"), from pki.device_key_type (which
    # follows pki.key_type unless set).
    key_type: KeyType = "ec"


@dataclass(frozen=True)
class BundleInfo:
    """A bundle on disk, as the manifest and `info.json` describe it."""

    name: str
    uuid: str
    serial: str
    fingerprint: str
    not_before: str
    not_after: str
    hardware_id: str
    path: Path
    created: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uuid": self.uuid,
            "serial": self.serial,
            "fingerprint": self.fingerprint,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "hardware_id": self.hardware_id,
            "path": str(self.path),
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, created: bool) -> BundleInfo:
        fields = {k: data[k] for k in INFO_KEYS if k != "path"}
        return cls(**fields, path=Path(data["path"]), created=created)


# What every info.json holds (and the manifest needs to describe a bundle).
INFO_KEYS = (
    "name",
    "uuid",
    "serial",
    "fingerprint",
    "not_before",
    "not_after",
    "hardware_id",
    "path",
)


Hook = Callable[[BundleInfo], None]
Progress = Callable[[int], None]


def device_layout(fmt: str, storage_path: str) -> dict[str, str]:
    """Bundle file → its absolute path on the device, where the format's sota.toml points
    aktualizr (the storage folder for legacy-2018, its import/ folder for device-cred)."""
    sp = storage_path.rstrip("/") + "/"
    fmt = canonical_format(fmt)
    creds = sp if fmt == "legacy-2018" else f"{sp}import/"
    out = {"sota.toml": f"{sp}sota.toml"}
    out |= {f: f"{creds}{f}" for f in ("root.crt", "client.pem", "pkey.pem")}
    if fmt == "device-cred":
        out["gateway.url"] = f"{creds}gateway.url"
    return out


def _device_fs(fmt: str, device: Device) -> dict[str, str]:
    """Bundle file → its path on the device (relative to /), for the archive."""
    layout = device_layout(fmt, _storage_path(device))
    return {name: path.lstrip("/") for name, path in layout.items()}


def _archive(files: dict[str, bytes], layout: dict[str, str], mtime: float) -> bytes:
    """A tar.gz laid out as the device's file system, owned by root, keys 0600."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted(
            {
                str(p)
                for dest in layout.values()
                for p in PurePosixPath(dest).parents
                if str(p) != "."
            }
        )
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            # /var stays world-readable; the credentials folders are root's only.
            info.mode = 0o755 if d.count("/") == 0 else 0o700
            info.mtime = int(mtime)
            tar.addfile(info)
        for src, dest in layout.items():
            info = tarfile.TarInfo(dest)
            info.size = len(files[src])
            info.mode = 0o600 if src == "pkey.pem" else 0o644
            info.mtime = int(mtime)
            tar.addfile(info, io.BytesIO(files[src]))
    return buf.getvalue()


def _write_file(folder: str, name: str, data: bytes, mode: int) -> None:
    # O_EXCL: a bundle file is only ever created, never overwritten.
    fd = os.open(f"{folder}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _read_info(path: Path) -> dict[str, Any]:
    """A bundle's info.json; unreadable or not JSON is one line naming it."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise PkiError(f"{path}: cannot read: {e.strerror}") from e
    except ValueError as e:
        raise ConfigError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict) or not all(k in data for k in INFO_KEYS):
        raise ConfigError(f"{path}: not a bundle's info.json")
    return data


def _remove_partial(devices: Path) -> None:
    """Staging folders hold bundles a run never committed (killed): drop them."""
    with os.scandir(devices) as it:
        for entry in it:
            if entry.name.startswith(TMP_PREFIX) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
