"""`devices/manifest.jsonl`: the name → uuid map of every bundle, read back after a kill."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from otactl.devices.files import MANIFEST, REPLACED, REPLACING, BundleInfo, _read_info
from otactl.devices.specs import UUID_RE
from otactl.errors import ConfigError

# --- the manifest: name → uuid -----------------------------------------------------------


def _finish_replacement(devices: Path) -> None:
    """A replacement killed after moving the old bundle aside and before the new one took
    its place left the device without a folder: the old bundle goes back (the user runs the
    command again). Killed later, the new bundle is in place and only the journal goes."""
    journal = devices / REPLACING
    try:
        lines = journal.read_text().splitlines()
    except FileNotFoundError:
        return
    dev_uuid, aside = [*lines, "", ""][:2]
    if not UUID_RE.fullmatch(dev_uuid) or not aside.startswith(f"{REPLACED}/"):
        raise ConfigError(f"{journal}: not otactl's replacement journal; remove it")
    if not (devices / dev_uuid).exists() and (devices / aside).is_dir():
        os.rename(devices / aside, devices / dev_uuid)
    journal.unlink()


class Manifest:
    """`devices/manifest.jsonl`: one JSON line per bundle. Its name → uuid map is how a
    re-run skips what exists and how `revoke-device NAME` finds a device."""

    def __init__(self, devices: Path):
        self.devices = devices
        self.path = devices / MANIFEST
        self.by_name: dict[str, str] = {}
        self.names_by_uuid: dict[str, str] = {}

    def load(self) -> Manifest:
        """Read the manifest, drop a line cut short by a kill, put back a bundle a killed
        replacement had moved aside, and add bundle folders the manifest missed (killed
        between the rename and the manifest write)."""
        _finish_replacement(self.devices)
        if self.path.exists():
            with open(self.path, "rb+") as f:
                data = f.read()
                end = data.rfind(b"\n") + 1
                if end != len(data):
                    f.truncate(end)
            for n, line in enumerate(data[:end].splitlines(), 1):
                try:
                    rec = json.loads(line)
                    self._add(rec["name"], rec["uuid"])
                except (ValueError, KeyError, TypeError) as e:
                    raise ConfigError(
                        f"{self.path}:{n}: not a manifest line ({e}); fix or remove that line"
                    ) from None
        missed = []
        with os.scandir(self.devices) as it:
            for entry in it:
                if UUID_RE.fullmatch(entry.name) and entry.name not in self.names_by_uuid:
                    info = Path(entry.path) / "info.json"
                    if info.is_file():
                        missed.append(_read_info(info))
        if missed:
            self.append(missed)
        return self

    def _add(self, name: str, dev_uuid: str) -> None:
        if not isinstance(name, str) or not isinstance(dev_uuid, str):
            raise TypeError("name and uuid must be strings")
        self.by_name[name] = dev_uuid
        self.names_by_uuid[dev_uuid] = name

    def append(self, records: list[dict[str, Any]]) -> None:
        """Add committed bundles: one write of whole lines (O_APPEND)."""
        lines = b"".join(
            json.dumps(
                {k: r[k] for k in ("name", "uuid", "serial", "fingerprint", "path", "not_after")}
            ).encode()
            + b"\n"
            for r in records
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, lines)
        finally:
            os.close(fd)
        for r in records:
            self._add(r["name"], r["uuid"])

    def info(self, dev_uuid: str) -> BundleInfo:
        """The bundle's own `info.json` (the manifest keeps only name → uuid in memory)."""
        data = _read_info(self.devices / dev_uuid / "info.json")
        # The folder is where it is now, whatever the working directory was at creation.
        return BundleInfo.from_json(data | {"path": str(self.devices / dev_uuid)}, created=False)

    def find(self, ident: str) -> BundleInfo:
        """A device by uuid or by name."""
        key = ident.lower()
        if key in self.names_by_uuid:
            return self.info(key)
        if ident in self.by_name:
            return self.info(self.by_name[ident])
        raise ConfigError(f"no device named or numbered {ident!r} in {self.path}")
