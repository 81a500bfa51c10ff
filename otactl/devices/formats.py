"""The sota.toml formats: which aktualizr releases read which layout, and the sota.toml
of each, plus the gateway URL the devices are given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from otactl.errors import ConfigError

if TYPE_CHECKING:
    from otactl.config import Device, Gateway


def default_gateway_port(gateway: Gateway) -> int:
    """The port devices reach when the deploy code does not say: the NodePort when the
    gateway is a NodePort Service, else the gateway's own 8443 (LoadBalancer)."""
    if gateway.service_type == "NodePort" and gateway.node_port:
        return gateway.node_port
    return 8443


def gateway_url(server_name: str, port: int) -> str:
    """The URL devices use; the deploy code passes the port the gateway is really exposed on."""
    return f"https://{server_name}:{port}"


# --- formats: which aktualizr reads which sota.toml --------------------------------------

# What "master" means in the release ranges below: the uptane/aktualizr commit the formats
# were checked against (its config loading and provisioning code).
AKTUALIZR_MASTER = "e5118a748 (2025-10-07)"


@dataclass(frozen=True)
class Format:
    """A sota.toml layout and the aktualizr releases that provision with it."""

    name: str
    first: str  # first aktualizr release (git tag) that provisions with it
    last: str | None  # last one; None: up to current master
    summary: str

    @property
    def releases(self) -> str:
        return f"aktualizr {self.first} to {self.last or 'master'}"


FORMATS = {
    f.name: f
    for f in (
        Format(
            "device-cred",
            "2018.6",
            None,
            "sqlite storage, credentials imported from <storage>/import/",
        ),
        Format(
            "legacy-2018",
            "2018.1",
            "2018.7",
            "filesystem storage, credentials in the storage folder (the seed's /var/sota)",
        ),
    )
}
DEFAULT_FORMAT = "device-cred"
# Old names still accepted (with a warning): `implicit` was the seed's name for legacy-2018.
FORMAT_ALIASES = {"implicit": "legacy-2018"}


def canonical_format(name: str) -> str:
    """The format a name (or an old alias) stands for; unknown names are refused."""
    name = FORMAT_ALIASES.get(name, name)
    if name not in FORMATS:
        raise ConfigError(f"device format {name!r}: expected {' or '.join(FORMATS)}")
    return name


def format_help() -> str:
    """One line per format with the releases it is for (for `--help` and errors)."""
    return "; ".join(f"{f.name}: {f.releases}" for f in FORMATS.values())


def aktualizr_target(fmt: str, device: Device) -> dict[str, Any]:
    """What info.json says about the aktualizr a bundle is for."""
    f = FORMATS[canonical_format(fmt)]
    return {
        "format": f.name,
        "releases": f.releases,
        "first": f.first,
        "last": f.last,
        "built_with_ostree": device.package_manager == "ostree",
    }


def fit_warnings(fmt: str, device: Device) -> list[str]:
    """One line for each way the chosen format and device options may not fit the device's
    aktualizr (nothing here stops a run: otactl cannot see the device's build)."""
    out = []
    if fmt in FORMAT_ALIASES:
        target = FORMATS[FORMAT_ALIASES[fmt]]
        out.append(
            f"device format {fmt!r} is the old name of {target.name!r} ({target.releases}); "
            f"current aktualizr needs {DEFAULT_FORMAT!r}, the default"
        )
    if device.package_manager == "ostree":
        # aktualizr registers the ostree package manager only when built with BUILD_OSTREE
        # (uptane/aktualizr src/libaktualizr/package_manager/CMakeLists.txt); otherwise it
        # stops at start-up: "Unsupported package manager: ostree" (2020.3 and later,
        # packagemanagerfactory.cc), "aktualizr was compiled without OStree support!" before.
        out.append(
            "device.package_manager ostree: the device's aktualizr must be built with OSTree "
            "(BUILD_OSTREE=ON, as meta-updater images are); for other builds set "
            "device.package_manager=none"
        )
    elif device.ostree_server:
        out.append("device.ostree_server is ignored: device.package_manager is none")
    return out


# --- sota.toml ---------------------------------------------------------------------------

TomlValue = str | int | bool
Sections = list[tuple[str, list[tuple[str, TomlValue]]]]
# Paths go through boost::filesystem::path's quoted stream extraction (`&` escapes) in some
# releases and through plain quote stripping in others: keep them to what both read alike.
PATH_RE = re.compile(r"/[A-Za-z0-9._/-]*")


def _toml_value(key: str, value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # aktualizr removes every double quote from a string value (Utils::stripQuotes) and
    # keeps the rest verbatim: no escapes.
    if any(c in value for c in '"\\') or any(ord(c) < 32 for c in value):
        raise ConfigError(f"sota.toml {key}: {value!r} holds a quote, backslash or control char")
    return f'"{value}"'


def _render_ini(sections: Sections) -> str:
    """Flat sections of `key = value`: the subset that both TOML and aktualizr's INI parser
    (boost::property_tree::read_ini) read the same way: no comments (`#` is no comment to
    boost), no arrays, no inline tables, no dotted names, each section and key once."""
    out = []
    for name, items in sections:
        out.append(f"[{name}]")
        out += [f"{k} = {_toml_value(k, v)}" for k, v in items]
        out.append("")
    return "\n".join(out)


def _storage_path(device: Device) -> str:
    path = device.storage_path
    if not PATH_RE.fullmatch(path) or ".." in PurePosixPath(path).parts:
        raise ConfigError(
            f"device.storage_path {path!r}: must be an absolute path of letters, digits, "
            "'.', '_', '-' and '/'"
        )
    return path.rstrip("/") + "/"


def sota_toml(fmt: str, url: str, device: Device, hardware_id: str) -> str:
    """aktualizr's configuration for one device (`fmt` as in FORMATS, or an alias).

    Unknown keys are ignored by every release, so a key one release range reads and
    another does not is written for both (the hardware id sits in [uptane] for 2018.1-2018.5
    and in [provision] from 2018.6 on).
    """
    fmt = canonical_format(fmt)
    sp = _storage_path(device)
    pacman: list[tuple[str, TomlValue]] = [("type", device.package_manager)]
    if fmt == "legacy-2018":
        return _legacy_2018(url, device, hardware_id, sp, pacman)
    # device-cred. The gateway URL comes from import/gateway.url (tls.server_url_path,
    # 2018.5 and later); director, repo and treehub are derived from it. The import paths
    # are absolute: 2018.6-2018.7 have no base_path and read them as written, later
    # releases resolve them against base_path only when relative. The database path is
    # absolute too: 2018.6-2018.7 do not place it under storage.path.
    if device.package_manager == "ostree" and device.ostree_server:
        pacman.append(("ostree_server", device.ostree_server))
    imp = f"{sp}import"
    return _render_ini(
        [
            ("tls", [("server_url_path", f"{imp}/gateway.url")]),
            (
                "provision",
                [
                    # Read from 2020.8 on; before, the empty provision_path means the same.
                    ("mode", "DeviceCred"),
                    ("provision_path", ""),
                    ("primary_ecu_hardware_id", hardware_id),
                ],
            ),
            ("uptane", [("polling_sec", device.polling_sec)]),
            ("pacman", pacman),
            ("storage", [("type", "sqlite"), ("path", sp), ("sqldb_path", f"{sp}sql.db")]),
            (
                "import",
                [
                    ("base_path", imp),
                    ("tls_cacert_path", f"{imp}/root.crt"),
                    ("tls_clientcert_path", f"{imp}/client.pem"),
                    ("tls_pkey_path", f"{imp}/pkey.pem"),
                ],
            ),
        ]
    )


# The sections of the seed's sota.toml that are the same for every device.
_LEGACY_FIXED: Sections = [
    ("gateway", [("http", True), ("socket", False)]),
    (
        "network",
        [
            ("socket_commands_path", "/tmp/sota-commands.socket"),
            ("socket_events_path", "/tmp/sota-events.socket"),
            ("socket_events", "DownloadComplete, DownloadFailed"),
        ],
    ),
    (
        "p11",
        [
            (k, "")
            for k in (
                "module",
                "pass",
                "uptane_key_id",
                "tls_cacert_id",
                "tls_pkey_id",
                "tls_clientcert_id",
            )
        ],
    ),
]


def _legacy_2018(
    url: str, device: Device, hardware_id: str, sp: str, pacman: list[tuple[str, TomlValue]]
) -> str:
    """The seed's `/var/sota/sota.toml`: filesystem storage holding the credentials, the
    server URLs written out. Keys of 2018.1-2018.5 and of 2018.6-2018.7 side by side."""
    ostree = device.ostree_server or f"{url}/treehub"
    if device.package_manager == "ostree":
        pacman += [("os", ""), ("sysroot", ""), ("ostree_server", ostree)]
    pacman.append(("packages_file", "/usr/package.manifest"))
    uptane: list[tuple[str, TomlValue]] = [
        ("polling", True),
        ("polling_sec", device.polling_sec),
        ("device_id", ""),
        ("primary_ecu_serial", ""),
        ("primary_ecu_hardware_id", hardware_id),
        ("director_server", f"{url}/director"),
        ("repo_server", f"{url}/repo"),
        ("key_source", "file"),
    ]
    if device.package_manager == "ostree":
        uptane.append(("ostree_server", ostree))  # 2018.1 reads it here, later [pacman]
    return _render_ini(
        [
            *_LEGACY_FIXED,
            (
                "tls",
                [
                    ("server", url),
                    ("ca_source", "file"),
                    ("pkey_source", "file"),
                    ("cert_source", "file"),
                ],
            ),
            (
                "provision",
                [
                    ("server", url),
                    ("p12_password", ""),
                    ("expiry_days", "36000"),
                    ("provision_path", ""),
                    # 2018.6-2018.7 read the device's identity here, not in [uptane].
                    ("device_id", ""),
                    ("primary_ecu_serial", ""),
                    ("primary_ecu_hardware_id", hardware_id),
                ],
            ),
            ("uptane", uptane),
            ("pacman", pacman),
            *_legacy_files(sp),
        ]
    )


def _legacy_files(sp: str) -> Sections:
    """Where legacy-2018 keeps the credentials: in the storage folder `sp`."""
    return [
        (
            "storage",
            [
                ("type", "filesystem"),
                ("path", sp),
                ("uptane_metadata_path", "metadata"),
                ("uptane_private_key_path", "ecukey.der"),
                ("uptane_public_key_path", "ecukey.pub"),
                ("tls_cacert_path", "root.crt"),
                ("tls_pkey_path", "pkey.pem"),
                ("tls_clientcert_path", "client.pem"),
            ],
        ),
        (
            "import",
            [
                ("uptane_private_key_path", ""),
                ("uptane_public_key_path", ""),
                ("tls_cacert_path", f"{sp}root.crt"),
                ("tls_pkey_path", ""),
                ("tls_clientcert_path", ""),
            ],
        ),
    ]
