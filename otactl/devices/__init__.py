"""Device bundles: key, certificate, `sota.toml` and the files aktualizr needs, one folder
per device under `generated/<server name>/devices/<uuid>/`, one at a time or by the
thousand, plus the manifest that maps names to uuids.

`formats` (which sota.toml for which aktualizr), `specs` (the devices to make, from a
count or a CSV), `files` (what a bundle holds and where it goes on the device), `batch`
with `workers` and `manifest` (the parallel writer), `existing` (find, revoke, renew).
This package re-exports what callers use: `from otactl import devices; devices.new_device`.
"""

from __future__ import annotations

from otactl.devices.batch import BatchSummary, new_device, new_devices
from otactl.devices.existing import (
    Existing,
    changed_options,
    existing_device,
    find_device,
    list_devices,
    options_for,
    replace_device,
    revoke_device,
)
from otactl.devices.files import (
    ARCHIVE,
    INFO_KEYS,
    MANIFEST,
    TMP_PREFIX,
    BundleInfo,
    BundleOptions,
    Hook,
    Progress,
    device_layout,
)
from otactl.devices.formats import (
    AKTUALIZR_MASTER,
    DEFAULT_FORMAT,
    FORMAT_ALIASES,
    FORMATS,
    Format,
    aktualizr_target,
    canonical_format,
    default_gateway_port,
    fit_warnings,
    format_help,
    gateway_url,
    sota_toml,
)
from otactl.devices.manifest import Manifest
from otactl.devices.specs import (
    HARDWARE_ID_RE,
    NAME_RE,
    UUID_RE,
    DeviceSpec,
    count_csv_rows,
    specs_from_count,
    specs_from_csv,
    validate_hardware_id,
    validate_name,
    validate_uuid,
)

__all__ = [
    "AKTUALIZR_MASTER",
    "ARCHIVE",
    "DEFAULT_FORMAT",
    "FORMATS",
    "FORMAT_ALIASES",
    "HARDWARE_ID_RE",
    "INFO_KEYS",
    "MANIFEST",
    "NAME_RE",
    "TMP_PREFIX",
    "UUID_RE",
    "BatchSummary",
    "BundleInfo",
    "BundleOptions",
    "DeviceSpec",
    "Existing",
    "Format",
    "Hook",
    "Manifest",
    "Progress",
    "aktualizr_target",
    "canonical_format",
    "changed_options",
    "count_csv_rows",
    "default_gateway_port",
    "device_layout",
    "existing_device",
    "find_device",
    "fit_warnings",
    "format_help",
    "gateway_url",
    "list_devices",
    "new_device",
    "new_devices",
    "options_for",
    "replace_device",
    "revoke_device",
    "sota_toml",
    "specs_from_count",
    "specs_from_csv",
    "validate_hardware_id",
    "validate_name",
    "validate_uuid",
]
