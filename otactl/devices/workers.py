"""What each worker process of a batch does: load the device CA once, then write whole
bundles into its own staging folder; and the one syncfs that makes a commit durable.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otactl.devices.files import (
    ARCHIVE,
    TMP_PREFIX,
    BundleOptions,
    _archive,
    _device_fs,
    _write_file,
)
from otactl.devices.formats import aktualizr_target, canonical_format, sota_toml

if TYPE_CHECKING:
    from otactl.pki import Issuer, PrivateKey


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
    staging folder; the main process makes them final (see `otactl.devices.batch`)."""
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
