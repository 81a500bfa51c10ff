"""Device bundles: key, certificate, `sota.toml` and the files aktualizr needs, one folder
per device under `generated/<server name>/devices/<uuid>/`, one at a time or by the
thousand, plus the manifest that maps names to uuids.

Atomicity of a batch (why no fsync per file): each worker writes its bundles into its own
hidden staging folder (`.tmp-<pid>/<uuid>/`) and hands them back. About twice a second
the main process commits what came back: one syncfs() (the data of every waiting bundle
reaches the disk), then one rename per bundle to `devices/<uuid>`, then their lines in
`manifest.jsonl`. A `<uuid>` folder therefore only ever appears complete: after a SIGKILL
(the rename follows the writes) and after a power cut (the data was on disk before the
rename). The next run removes leftover staging folders (never committed) and finds
`<uuid>` folders whose manifest line was lost. One syncfs per commit instead of seven
fsyncs per bundle, done by the main process while the workers go on generating, is what
makes thousands of bundles per second possible.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import functools
import io
import json
import os
import re
import shutil
import tarfile
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from otactl.errors import ConfigError, PkiError
from otactl.fsutil import ensure_private_dir
from otactl.locks import folder_lock

if TYPE_CHECKING:
    from concurrent.futures import Future

    from otactl.config import Device, Gateway
    from otactl.pki import Issuer, KeyType, PrivateKey, Revocation

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
HARDWARE_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MANIFEST = "manifest.jsonl"
ARCHIVE = "device-fs.tar.gz"
TMP_PREFIX = ".tmp-"  # per-worker staging folders: .tmp-<pid>/<uuid>/


# --- names, uuids, the gateway URL -------------------------------------------------------


def validate_name(name: str) -> str:
    """A device name: letters, digits, `.`, `_`, `-`, at most 64, no `..`."""
    if not NAME_RE.fullmatch(name) or ".." in name or set(name) == {"."}:
        raise ConfigError(
            f"device name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (no '..')"
        )
    return name


def validate_uuid(text: str) -> str:
    """A device uuid in canonical form; returned lowercase (it becomes the certificate CN)."""
    value = text.strip().lower()
    if not UUID_RE.fullmatch(value):
        raise ConfigError(f"uuid {text!r}: expected the form 123e4567-e89b-42d3-a456-426614174000")
    return value


def validate_hardware_id(text: str) -> str:
    """A primary ECU hardware id (it goes into sota.toml unescaped)."""
    if not HARDWARE_ID_RE.fullmatch(text):
        raise ConfigError(f"hardware id {text!r}: use 1-200 letters, digits, '.', '_' or '-'")
    return text


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
    )


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
class DeviceSpec:
    """One device to make; `row` is the CSV line it came from (for error messages)."""

    name: str
    uuid: str | None = None
    hardware_id: str | None = None
    row: int | None = None


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


@dataclass
class _Worker:
    """What each worker process holds for the whole run (set once by the initializer)."""

    issuer: Issuer
    root_pem: bytes
    intermediates_pem: bytes
    devices: Path
    opts: BundleOptions
    now: dt.datetime
    # This worker's own staging folder: workers do not contend for the lock of devices/.
    staging: str
    toml: dict[str, bytes] = field(default_factory=dict)
    # The same for every bundle of the run: computed once.
    target: dict[str, Any] = field(default_factory=dict)
    layout: dict[str, str] = field(default_factory=dict)


_worker: _Worker | None = None


def _init_worker(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    root_pem: bytes,
    devices: Path,
    opts: BundleOptions,
    now: dt.datetime,
) -> None:
    """Pool initializer: load the device CA once per process, not once per bundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from otactl.pki import Issuer, cert_pem

    global _worker
    ca, *chain = x509.load_pem_x509_certificates(ca_cert_pem)
    key: PrivateKey = serialization.load_pem_private_key(ca_key_pem, None)  # type: ignore[assignment]
    issuer = Issuer(ca, key, tuple(chain))
    staging = devices / f"{TMP_PREFIX}{os.getpid()}"
    staging.mkdir(mode=0o700, exist_ok=True)
    _worker = _Worker(
        issuer, root_pem, cert_pem(*issuer.intermediates()), devices, opts, now, str(staging)
    )


def _write_file(folder: str, name: str, data: bytes, mode: int) -> None:
    # O_EXCL: a bundle file is only ever created, never overwritten.
    fd = os.open(f"{folder}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    import ctypes

    return getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)


def _sync_filesystem(path: Path) -> None:
    """syncfs(2) on the file system of `path`: one flush for a whole commit of bundles
    (sync(2), everything, where the C library has no syncfs)."""
    syncfs = _syncfs()
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def _build_chunk(jobs: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Worker: write the bundles of `jobs` (name, uuid, hardware id) into this worker's
    staging folder; the main process makes them final (see the module docstring)."""
    return [_build_one(name, dev_uuid, hardware_id) for name, dev_uuid, hardware_id in jobs]


def _build_one(
    name: str, dev_uuid: str, hardware_id: str, key: PrivateKey | None = None
) -> dict[str, Any]:
    """One bundle in the staging folder: a new key unless `key` (a renewal) is given."""
    from otactl.pki import cert_pem, fingerprint, generate_key, key_pem, make_device_cert

    w = _worker
    assert w is not None, "the pool initializer did not run"
    fmt = canonical_format(w.opts.device.format)
    if not w.target:
        w.target = aktualizr_target(fmt, w.opts.device)
        w.layout = _device_fs(fmt, w.opts.device)
    if key is None:
        key = generate_key(w.opts.key_type)
    cert = make_device_cert(w.issuer, dev_uuid, key.public_key(), days=w.opts.days, now=w.now)
    client = cert_pem(cert)
    toml = w.toml.get(hardware_id)
    if toml is None:
        text = sota_toml(w.opts.device.format, w.opts.gateway_url, w.opts.device, hardware_id)
        w.toml[hardware_id] = toml = text.encode()
    tmp = f"{w.staging}/{dev_uuid}"
    meta = {
        "name": name,
        "uuid": dev_uuid,
        "serial": format(cert.serial_number, "x"),
        "fingerprint": fingerprint(cert),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "hardware_id": hardware_id,
        "path": str(w.devices / dev_uuid),
    }
    files = {
        "sota.toml": toml,
        "root.crt": w.root_pem,
        "client.pem": client,
        "pkey.pem": key_pem(key),
        "client.chain.pem": client + w.intermediates_pem,
        "gateway.url": w.opts.gateway_url.encode(),
        # No indent: json's C encoder, a tenth of the cost of the pretty one.
        "info.json": json.dumps(
            meta | {"gateway_url": w.opts.gateway_url, "format": fmt, "aktualizr": w.target}
        ).encode()
        + b"\n",
    }
    os.mkdir(tmp, 0o700)
    for fname, data in files.items():
        _write_file(tmp, fname, data, 0o600 if fname == "pkey.pem" else 0o644)
    if w.opts.archive:
        _write_file(tmp, ARCHIVE, _archive(files, w.layout, w.now.timestamp()), 0o600)
    return meta | {"staging": tmp}


class _Committer:
    """Main process: makes finished staged bundles final, many at a time. A helper thread
    does the file system part (one syncfs, the renames) while the main thread goes on
    feeding the workers; the main thread then writes the manifest lines and calls progress
    and the hook, so those never run concurrently with anything of the caller's."""

    def __init__(
        self,
        devices: Path,
        manifest: Manifest,
        summary: BatchSummary,
        progress: Progress | None,
        hook: Hook | None,
        every: float = 0.5,
    ):
        from concurrent.futures import ThreadPoolExecutor

        self.devices = devices
        self.manifest = manifest
        self.summary = summary
        self.progress = progress
        self.hook = hook
        self.every = every
        self.waiting: list[dict[str, Any]] = []
        self.last = time.monotonic()
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="otactl-commit")
        self.running: tuple[Future[None], list[dict[str, Any]]] | None = None

    def _make_final(self, batch: list[dict[str, Any]]) -> None:
        # syncfs and rename release the GIL: the main thread runs meanwhile.
        _sync_filesystem(self.devices)
        for r in batch:
            os.rename(r["staging"], self.devices / r["uuid"])

    def _record(self, *, call_hook: bool) -> None:
        """Wait for the running commit and record it (raises what the commit raised)."""
        if self.running is None:
            return
        future, batch = self.running
        self.running = None
        future.result()
        self.manifest.append(batch)
        self.summary.created += len(batch)
        if self.progress:
            self.progress(len(batch))
        if self.hook and call_hook:
            for r in batch:
                self.hook(BundleInfo.from_json(r, created=True))

    def _start(self) -> None:
        batch, self.waiting = self.waiting, []
        self.last = time.monotonic()
        if batch:
            self.running = (self.thread.submit(self._make_final, batch), batch)

    def add(self, results: list[dict[str, Any]]) -> None:
        self.waiting += results
        if self.running is not None and self.running[0].done():
            self._record(call_hook=True)
        if self.running is None and time.monotonic() - self.last >= self.every:
            self._start()

    def finish(self) -> None:
        """Commit everything; on disk before the run reports success."""
        self._record(call_hook=True)
        self._start()
        self._record(call_hook=True)
        self.thread.shutdown()
        _remove_partial(self.devices)  # the staging folders, empty now
        _sync_filesystem(self.devices)  # the last renames and manifest lines

    def abandon(self) -> None:
        """The run failed: still commit what is complete, without the hook (a re-run
        calls it for these bundles, as skipped ones)."""
        with contextlib.suppress(Exception):
            self._record(call_hook=False)
        self._start()
        self._record(call_hook=False)
        self.thread.shutdown()


# --- the manifest: name → uuid -----------------------------------------------------------


class Manifest:
    """`devices/manifest.jsonl`: one JSON line per bundle. Its name → uuid map is how a
    re-run skips what exists and how `revoke-device NAME` finds a device."""

    def __init__(self, devices: Path):
        self.devices = devices
        self.path = devices / MANIFEST
        self.by_name: dict[str, str] = {}
        self.names_by_uuid: dict[str, str] = {}

    def load(self) -> Manifest:
        """Read the manifest, drop a line cut short by a kill, and add bundle folders the
        manifest missed (killed between the rename and the manifest write)."""
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


# --- device lists ------------------------------------------------------------------------


def specs_from_count(prefix: str, count: int, start: int = 1) -> Iterator[DeviceSpec]:
    """`<prefix>-0001`, `<prefix>-0002`, ... : names that stay the same when a run is
    repeated, so a re-run skips what it made."""
    if count < 1 or start < 0:
        raise ConfigError("--count must be at least 1 and --start at least 0")
    validate_name(f"{prefix}-{start + count - 1:04d}")
    for i in range(start, start + count):
        yield DeviceSpec(f"{prefix}-{i:04d}")


def _utf8_lines(path: Path, f: BinaryIO) -> Iterator[str]:
    """The lines of a binary file as text, each decoded on its own, so that a byte that is
    not UTF-8 is reported at its offset in the file (a text-mode file only knows the
    offset in its read buffer). A leading byte order mark (Excel's "CSV UTF-8") is dropped.
    Splitting at CR and LF is safe: those bytes never occur inside a UTF-8 sequence."""
    offset = 0
    n = 0
    for chunk in f:
        # A bare CR ends a line too (as in a text file opened with newline="").
        for raw in chunk.splitlines(keepends=True):
            n += 1
            data = raw[3:] if offset == 0 and raw.startswith(codecs.BOM_UTF8) else raw
            skipped = len(raw) - len(data)
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ConfigError(
                    f"{path}: not UTF-8 text: byte 0x{data[e.start]:02x} at offset "
                    f"{offset + skipped + e.start} (line {n}); save it as UTF-8"
                ) from None
            offset += len(raw)


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of each non-blank CSV row; a file that cannot be read,
    is not UTF-8 or is not CSV raises one line naming it."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed by the generator)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    with f:
        # strict: a stray or unterminated quote is refused, not folded into a name.
        reader = csv.reader(_utf8_lines(path, f), strict=True)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise ConfigError(f"{path}:{max(reader.line_num, 1)}: not CSV: {e}") from None
            except OSError as e:
                raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
            cells = [c.strip() for c in row]
            if any(cells):
                yield reader.line_num, cells


def count_csv_rows(path: Path) -> int:
    """Data rows of a device CSV (for a progress total); the rows are not validated, but a
    file that is not UTF-8 CSV is refused here, before any bundle is made."""
    return sum(1 for _ in _csv_rows(path))


def specs_from_csv(path: Path) -> Iterator[DeviceSpec]:
    """Devices from a CSV file, streamed: `name[,uuid][,hardware_id]`, an optional header
    row starting with `name`, blank lines ignored. A bad row raises with its line number
    when the run reaches it."""
    seen_names: dict[str, int] = {}
    seen_uuids: dict[str, int] = {}
    first = True
    for line, cells in _csv_rows(path):
        if first and cells[0].lower() == "name":
            first = False
            continue
        first = False
        try:
            spec = _spec_from_cells(cells, line)
        except ConfigError as e:
            raise ConfigError(f"{path}:{line}: {e}") from None
        if spec.name in seen_names:
            raise ConfigError(
                f"{path}:{line}: name {spec.name!r} repeats line {seen_names[spec.name]}"
            )
        seen_names[spec.name] = line
        if spec.uuid:
            if spec.uuid in seen_uuids:
                raise ConfigError(
                    f"{path}:{line}: uuid {spec.uuid} repeats line {seen_uuids[spec.uuid]}"
                )
            seen_uuids[spec.uuid] = line
        yield spec


def _spec_from_cells(cells: list[str], line: int) -> DeviceSpec:
    if len(cells) > 3:
        raise ConfigError(f"{len(cells)} columns; expected name[,uuid][,hardware_id]")
    name = validate_name(cells[0])
    dev_uuid = validate_uuid(cells[1]) if len(cells) > 1 and cells[1] else None
    hw = validate_hardware_id(cells[2]) if len(cells) > 2 and cells[2] else None
    return DeviceSpec(name, dev_uuid, hw, row=line)


# --- making bundles ----------------------------------------------------------------------


@dataclass
class BatchSummary:
    """The outcome of a run; each bundle's details are in the manifest."""

    created: int = 0
    skipped: int = 0
    manifest: Path | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "skipped": self.skipped,
            "manifest": str(self.manifest) if self.manifest else None,
        }


def _load_device_ca(server_dir: Path) -> tuple[bytes, bytes, bytes]:
    from otactl.pki import ServerFiles
    from otactl.project import elsewhere_hint

    files = ServerFiles(server_dir)
    for path in (files.device_ca, files.device_ca_key, files.server_ca):
        if not path.exists():
            raise PkiError(
                f"{path.absolute()} is missing: run `otactl new-server` first"
                + elsewhere_hint(server_dir)
            )
    return (
        files.device_ca.read_bytes(),
        files.device_ca_key.read_bytes(),
        files.server_ca.read_bytes(),
    )


def new_devices(
    server_dir: Path,
    specs: Iterable[DeviceSpec],
    opts: BundleOptions,
    *,
    workers: int | None = None,
    chunk_size: int = 64,
    progress: Progress | None = None,
    hook: Hook | None = None,
    now: dt.datetime | None = None,
) -> BatchSummary:
    """Make a bundle for each spec, streaming: specs are read as the work goes, at most two
    chunks per worker are in flight, and finished bundles are committed (made final and
    written to the manifest) about twice a second.

    A name that already has a bundle is skipped (re-runs finish what a killed or failed run
    left). `hook` runs in this process for every bundle, made or skipped, once it is
    complete on disk (e.g. to register it); if `hook` or `specs` raise, the chunks already
    handed to the workers are finished and recorded first, then the error propagates.
    `progress` gets the number of bundles each step finished (made or skipped).
    """
    from otactl.pki import ServerFiles, load_issuer, utcnow

    now = now or utcnow()
    sf = ServerFiles(server_dir)
    # Not while another run writes the PKI (a key without its certificate yet).
    with folder_lock(server_dir, "device CA", create=False):
        files_ca, files_key, root = _load_device_ca(server_dir)
        # Fail early and in one line on a broken CA rather than in every worker.
        load_issuer(sf.device_ca, sf.device_ca_key, now=now)
    validate_hardware_id(opts.device.hardware_id)
    sota_toml(opts.device.format, opts.gateway_url, opts.device, opts.device.hardware_id)
    devices = ensure_private_dir(sf.devices)
    workers = workers or os.cpu_count() or 1
    summary = BatchSummary(manifest=devices / MANIFEST)
    initargs = (files_ca, files_key, root, devices, opts, now)

    try:
        # One batch at a time per server (two would hand the same name two uuids): a second
        # one waits, saying for whom, then skips the names the first one made.
        with folder_lock(devices, "device bundles"):
            _remove_partial(devices)
            manifest = Manifest(devices).load()

            committer = _Committer(devices, manifest, summary, progress, hook)

            def skip(dev_uuid: str) -> None:
                summary.skipped += 1
                if progress:
                    progress(1)
                if hook:
                    hook(manifest.info(dev_uuid))

            if workers == 1:
                _init_worker(*initargs)
                try:
                    for chunk in _chunks(_plan(specs, manifest, opts, skip), chunk_size):
                        committer.add(_build_chunk(chunk))
                except BaseException:
                    committer.abandon()
                    raise
                committer.finish()
                return summary

            import multiprocessing as mp

            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
            # Enough chunks in flight that the workers go on while this process waits for
            # a commit's syncfs; few enough that nothing is read far ahead.
            inflight = 4 * workers
            with ctx.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
                pending: deque[Any] = deque()
                try:
                    for chunk in _chunks(_plan(specs, manifest, opts, skip), chunk_size):
                        pending.append(pool.apply_async(_build_chunk, (chunk,)))
                        while len(pending) > inflight or (pending and pending[0].ready()):
                            committer.add(pending.popleft().get())
                    while pending:
                        committer.add(pending.popleft().get())
                    committer.finish()
                except BaseException:
                    # Whatever stopped the run, the bundles the workers finished are complete:
                    # make them final (without the hook: a re-run calls it for them).
                    while pending:
                        with contextlib.suppress(Exception):
                            committer.waiting += pending.popleft().get()
                    committer.abandon()
                    raise
    except OSError as e:
        # Disk full, permissions: one line, and the bundles already made stay valid.
        raise PkiError(f"{devices}: cannot write bundles: {e}") from e
    return summary


def _plan(
    specs: Iterable[DeviceSpec],
    manifest: Manifest,
    opts: BundleOptions,
    skip: Callable[[str], None],
) -> Iterator[tuple[str, str, str]]:
    """(name, uuid, hardware id) for each spec that needs a bundle; `skip` for the rest."""
    planned: set[str] = set()
    for spec in specs:
        where = f"line {spec.row}: " if spec.row else ""
        name = validate_name(spec.name)
        existing = manifest.by_name.get(name)
        if existing is not None:
            if spec.uuid and spec.uuid != existing:
                raise ConfigError(f"{where}{name} exists with uuid {existing}, not {spec.uuid}")
            skip(existing)
            continue
        dev_uuid = spec.uuid or str(uuidlib.uuid4())
        # Only a given uuid can collide (random ones do not): remember just those.
        if spec.uuid:
            if dev_uuid in manifest.names_by_uuid or dev_uuid in planned:
                other = manifest.names_by_uuid.get(dev_uuid, "another device of this run")
                raise ConfigError(f"{where}uuid {dev_uuid} already belongs to {other}")
            planned.add(dev_uuid)
        yield name, dev_uuid, validate_hardware_id(spec.hardware_id or opts.device.hardware_id)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of `size` items; when `items` raises (a bad CSV row), the items before it are
    still handed out first, so every row above a bad one gets its bundle."""
    chunk: list[Any] = []
    it = iter(items)
    while True:
        try:
            item = next(it)
        except StopIteration:
            break
        except Exception:
            if chunk:
                yield chunk
            raise
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def new_device(
    server_dir: Path,
    spec: DeviceSpec,
    opts: BundleOptions,
    *,
    hook: Hook | None = None,
    now: dt.datetime | None = None,
) -> BundleInfo:
    """One bundle (or the existing one for that name), made in this process."""
    made: list[BundleInfo] = []

    def keep(info: BundleInfo) -> None:
        made.append(info)
        if hook:
            hook(info)

    new_devices(server_dir, [spec], opts, workers=1, hook=keep, now=now)
    return made[0]


def find_device(server_dir: Path, ident: str) -> BundleInfo:
    """A bundle by device name or uuid."""
    from otactl.pki import ServerFiles

    devices = ServerFiles(server_dir).devices
    if not devices.is_dir():
        raise ConfigError(f"{devices}: no devices yet")
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
            aside = ensure_private_dir(devices / ".replaced") / f"{old.uuid}-{old.serial}"
            os.rename(old.path, aside)
            os.rename(made["staging"], devices / old.uuid)
            manifest.append([made])
            _remove_partial(devices)
            _sync_filesystem(devices)
    except OSError as e:
        raise PkiError(f"{devices}: cannot write the bundle: {e}") from e
    info = BundleInfo.from_json(made, created=True)
    if hook:
        hook(info)
    return info, revocation
