"""The batch writer: a bundle for each device spec, made by a pool of worker processes
and committed (made final, written to the manifest) about twice a second.

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

import contextlib
import datetime as dt
import os
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otactl.devices.files import (
    MANIFEST,
    BundleInfo,
    BundleOptions,
    Hook,
    Progress,
    _remove_partial,
)
from otactl.devices.formats import sota_toml
from otactl.devices.manifest import Manifest
from otactl.devices.specs import DeviceSpec, validate_hardware_id, validate_name
from otactl.devices.workers import _build_chunk, _init_worker, _sync_filesystem
from otactl.errors import ConfigError, PkiError
from otactl.fsutil import ensure_private_dir
from otactl.locks import folder_lock

if TYPE_CHECKING:
    from concurrent.futures import Future


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
    from otactl.pki import utcnow

    now = now or utcnow()
    initargs = _prepare(server_dir, opts, now)
    devices = initargs[3]
    workers = workers or os.cpu_count() or 1
    summary = BatchSummary(manifest=devices / MANIFEST)

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

            chunks = _chunks(_plan(specs, manifest, opts, skip), chunk_size)
            if workers == 1:
                _build_here(chunks, committer, initargs)
            else:
                _build_in_pool(chunks, committer, initargs, workers)
    except OSError as e:
        # Disk full, permissions: one line, and the bundles already made stay valid.
        raise PkiError(f"{devices}: cannot write bundles: {e}") from e
    return summary


def _prepare(server_dir: Path, opts: BundleOptions, now: dt.datetime) -> tuple[Any, ...]:
    """Check the device CA and the options before any bundle is made; the `_init_worker`
    arguments (the device CA's files, the devices folder, created 0700 if missing)."""
    from otactl.pki import ServerFiles, load_issuer

    sf = ServerFiles(server_dir)
    # Not while another run writes the PKI (a key without its certificate yet).
    with folder_lock(server_dir, "device CA", create=False):
        files_ca, files_key, root = _load_device_ca(server_dir)
        # Fail early and in one line on a broken CA rather than in every worker.
        load_issuer(sf.device_ca, sf.device_ca_key, now=now)
    validate_hardware_id(opts.device.hardware_id)
    sota_toml(opts.device.format, opts.gateway_url, opts.device, opts.device.hardware_id)
    devices = ensure_private_dir(sf.devices)
    return (files_ca, files_key, root, devices, opts, now)


def _build_here(
    chunks: Iterator[list[tuple[str, str, str]]], committer: _Committer, initargs: tuple[Any, ...]
) -> None:
    """One worker: the bundles are made in this process."""
    _init_worker(*initargs)
    try:
        for chunk in chunks:
            committer.add(_build_chunk(chunk))
    except BaseException:
        committer.abandon()
        raise
    committer.finish()


def _build_in_pool(
    chunks: Iterator[list[tuple[str, str, str]]],
    committer: _Committer,
    initargs: tuple[Any, ...],
    workers: int,
) -> None:
    """A pool of `workers` processes makes the bundles; this one commits them."""
    import multiprocessing as mp

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
    # Enough chunks in flight that the workers go on while this process waits for
    # a commit's syncfs; few enough that nothing is read far ahead.
    inflight = 4 * workers
    with ctx.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
        pending: deque[Any] = deque()
        try:
            for chunk in chunks:
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
