"""`otactl new-device`: device bundles, one NAME, a numbered batch or a CSV's rows
(registration and --push: otactl/cli/service_cmd.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from otactl.cli._common import (
    Common,
    Output,
    OutputOpt,
    State,
    cluster_options,
    command_set,
    echo,
    emit,
    info,
    is_tty,
)
from otactl.cli.devices_cmd import bundle_options
from otactl.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from otactl import devices
    from otactl.devices import BatchSummary, BundleInfo, BundleOptions, DeviceSpec, Hook
    from otactl.kube import Cluster
    from otactl.pki import Revocation

app = command_set()


# The options of new-device.
NameArg = Annotated[str | None, typer.Argument(help="Device name (one device).")]
UuidOpt = Annotated[str | None, typer.Option("--uuid", help="Device uuid (one device).")]
CountOpt = Annotated[int | None, typer.Option("--count", help="Make N devices.")]
PrefixOpt = Annotated[
    str | None, typer.Option("--prefix", help="Names <prefix>-0001... with --count.")
]
StartOpt = Annotated[int, typer.Option("--start", help="First number with --count.")]
FromCsvOpt = Annotated[
    Path | None,
    typer.Option("--from-csv", help="CSV of name[,uuid][,hardware_id] rows."),
]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="sota.toml for the device's aktualizr: device-cred (default; aktualizr "
        "2018.6 to master) or legacy-2018 (aktualizr 2018.1 to 2018.7; old name: "
        "implicit).",
    ),
]
HardwareIdOpt = Annotated[
    str | None, typer.Option("--hardware-id", help="Primary ECU hardware id.")
]
PortOpt = Annotated[
    int | None,
    typer.Option("--port", help="Gateway port devices reach (default: from values)."),
]
ArchiveOpt = Annotated[
    bool, typer.Option("--archive", help="Also write a tar.gz of the device's files.")
]
ReissueOpt = Annotated[
    bool,
    typer.Option(
        "--reissue",
        help="NAME exists: make it a new key and certificate (same uuid, the options "
        "given here) and revoke the old certificate.",
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=1, max=256, help="Processes (default: every core)."),
]
# Registration and --push (otactl/cli/service_cmd.py holds the glue).
RegisterOpt = Annotated[
    bool,
    typer.Option(
        "--register/--no-register",
        help="Register each device in device-registry (needs the cluster).",
    ),
]
PushOpt = Annotated[
    str | None,
    typer.Option("--push", help="Copy the bundle to a device: root@HOST[:PORT]."),
]
SshKeyOpt = Annotated[
    Path | None,
    typer.Option("--ssh-key", help="Key for --push (default: ssh-agent, ~/.ssh)."),
]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure-accept-host-key",
        help="--push to a host not in known_hosts (a changed key is still refused).",
    ),
]


@app.command("new-device")
@cluster_options
def new_device(
    name: NameArg = None,
    uuid: UuidOpt = None,
    count: CountOpt = None,
    prefix: PrefixOpt = None,
    start: StartOpt = 1,
    from_csv: FromCsvOpt = None,
    fmt: FormatOpt = None,
    hardware_id: HardwareIdOpt = None,
    port: PortOpt = None,
    archive: ArchiveOpt = False,
    reissue: ReissueOpt = False,
    workers: WorkersOpt = None,
    register_: RegisterOpt = True,
    push: PushOpt = None,
    ssh_key: SshKeyOpt = None,
    insecure_accept_host_key: InsecureOpt = False,
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """Make device bundles: one NAME, --count N --prefix P, or --from-csv FILE.

    Device keys are P-256 unless pki.device_key_type (or pki.key_type) says rsa.
    """
    from otactl import devices
    from otactl.cli import service_cmd

    st = common.state()
    _check_modes(name, uuid, count, prefix, from_csv, reissue)
    opts = bundle_options(st, fmt, hardware_id, port, archive)
    asked = _asked(fmt, hardware_id, port, archive)
    existing = None
    if name is not None:
        existing = devices.existing_device(st.server_dir(), devices.validate_name(name))
        if existing is not None:
            _check_existing(existing, opts, asked, reissue, uuid)
    # Said once the bundles are made, so that a refused argument stays a one-line error.
    warnings = devices.fit_warnings(opts.device.format, opts.device)
    service_cmd.check_push_options(name is not None, push)
    cluster = None
    if register_:
        cluster = service_cmd.connect_for_registration(common)
        if port is None:  # the gateway as the cluster really exposes it
            from otactl.deploy import exposed_gateway_url

            url = exposed_gateway_url(cluster, st.values())
            opts = dataclasses.replace(opts, gateway_url=url)

    if name is not None:
        spec = devices.DeviceSpec(
            devices.validate_name(name), devices.validate_uuid(uuid) if uuid else None
        )
        if existing is not None and reissue:
            # the port as the cluster exposes it applies too (opts has it by now)
            opts = devices.options_for(existing, opts, asked)
        made = _make_one(st, cluster, spec, existing if reissue else None, opts)
        pushed = (
            service_cmd.push_device(made.result, push, ssh_key, insecure_accept_host_key)
            if push
            else {}
        )
        _report_one(output, made, register_, push, pushed)
    else:
        if from_csv is not None:
            specs: Iterable[devices.DeviceSpec] = devices.specs_from_csv(from_csv)
            total = devices.count_csv_rows(from_csv)
        else:
            assert count is not None and prefix is not None
            specs = devices.specs_from_count(prefix, count, start)
            total = count
        summary, registered = _make_batch(st, cluster, specs, opts, workers, total, output)
        _report_batch(output, summary, register_, registered)
    for w in warnings:
        info(f"warning: {w}")


def _check_modes(
    name: str | None,
    uuid: str | None,
    count: int | None,
    prefix: str | None,
    from_csv: Path | None,
    reissue: bool,
) -> None:
    """new-device makes one NAME, --count N --prefix P, or the rows of --from-csv."""
    modes = sum(x is not None for x in (name, count, from_csv))
    if modes != 1:
        raise ConfigError("give exactly one of NAME, --count N --prefix P, --from-csv FILE")
    if (count is None) != (prefix is None):
        raise ConfigError("--count and --prefix go together")
    if uuid is not None and name is None:
        raise ConfigError("--uuid goes with a single NAME")
    if reissue and name is None:
        raise ConfigError("--reissue goes with a single NAME")


def _asked(fmt: str | None, hardware_id: str | None, port: int | None, archive: bool) -> set[str]:
    """The bundle options the command was given (an existing device must have the same)."""
    return {
        option
        for option, given in (
            ("format", fmt is not None),
            ("hardware_id", hardware_id is not None),
            ("archive", archive),
            ("port", port is not None),
        )
        if given
    }


@dataclasses.dataclass
class _Made:
    """One device's bundle as new-device made it."""

    result: BundleInfo
    revocation: Revocation | None  # the old certificate's, with --reissue
    registered: int


def _make_one(
    st: State,
    cluster: Cluster | None,
    spec: DeviceSpec,
    reissued: devices.Existing | None,
    opts: BundleOptions,
) -> _Made:
    """One device's bundle (a new one, or `reissued`'s with a new key), registered when
    `cluster` is given."""
    from otactl import devices
    from otactl.cli import service_cmd

    revocation = None
    with service_cmd.registering(st, cluster) as registrar:
        hook = service_cmd.registration_hook(registrar)
        if reissued is not None:
            result, revocation = devices.replace_device(
                st.server_dir(), reissued.info.name, opts, keep_key=False, hook=hook
            )
        else:
            result = devices.new_device(st.server_dir(), spec, opts, hook=hook)
    return _Made(result, revocation, registrar.registered if registrar else 0)


def _report_one(
    output: Output, made: _Made, register_: bool, push: str | None, pushed: dict[str, str]
) -> None:
    result, revocation, registered = made.result, made.revocation, made.registered
    if output.structured:
        # Keys only for what was asked, so --no-register output is the bundle's.
        extra: dict[str, object] = {"registered": bool(registered)} if register_ else {}
        if revocation is not None:
            extra["reissued"] = True
            extra["revoked_serial"] = format(revocation.serial, "x")
        emit(output, result.as_json() | extra | ({"pushed": pushed} if push else {}))
        return
    if revocation is not None and revocation.already:
        info(f"the old certificate, serial {revocation.serial:x}, was revoked already")
    elif revocation is not None:
        info(
            f"revoked the old certificate, serial {revocation.serial:x}: run "
            "`otactl up` to put it on the gateway's CRL"
        )
    verb = "reissued" if revocation else "created" if result.created else "exists"
    info(f"{verb}: {result.name} ({result.uuid}), valid until {result.not_after}")
    if registered:
        info(f"registered in device-registry as {result.uuid}")
    if pushed:
        info(f"pushed to {push}")
    echo(str(result.path))


def _make_batch(
    st: State,
    cluster: Cluster | None,
    specs: Iterable[DeviceSpec],
    opts: BundleOptions,
    workers: int | None,
    total: int | None,
    output: Output,
) -> tuple[BatchSummary, int]:
    """The bundles of `specs` (registered when `cluster` is given) and how many were
    registered."""
    from otactl.cli import service_cmd

    with service_cmd.registering(st, cluster) as registrar:
        hook = service_cmd.registration_hook(registrar)
        summary = _run_batch(st, specs, opts, workers, total, output, hook)
    return summary, registrar.registered if registrar else 0


def _report_batch(output: Output, summary: BatchSummary, register_: bool, registered: int) -> None:
    if output.structured:
        emit(output, summary.as_json() | ({"registered": registered} if register_ else {}))
        return
    info(f"created {summary.created}, skipped {summary.skipped} (existing)")
    if register_:
        info(f"registered {registered} in device-registry")
    echo(str(summary.manifest))


def _check_existing(
    existing: devices.Existing,
    opts: BundleOptions,
    asked: set[str],
    reissue: bool,
    uuid: str | None,
) -> None:
    """new-device NAME on a device that has a bundle: the same options keep it (exit 0);
    other ones, or a revoked device, need --reissue."""
    from otactl import devices
    from otactl.errors import PkiError

    dev = existing.info
    if uuid is not None and devices.validate_uuid(uuid) != dev.uuid:
        raise ConfigError(f"{dev.name} exists with uuid {dev.uuid}, not {uuid}")
    if reissue:
        return
    if existing.revoked:
        raise PkiError(
            f"{dev.name} ({dev.uuid}) is revoked: `otactl new-device {dev.name} --reissue` "
            "makes a new key and certificate"
        )
    changed = devices.changed_options(existing, opts, asked)
    if changed:
        raise ConfigError(
            f"{dev.name} exists with other settings: {'; '.join(changed)}; add --reissue "
            "for a new key and certificate with them (the old certificate is revoked)"
        )


def _run_batch(
    st: State,
    specs: Iterable[DeviceSpec],
    opts: BundleOptions,
    workers: int | None,
    total: int | None,
    output: Output,
    hook: Hook | None = None,
) -> BatchSummary:
    from otactl import devices

    if not is_tty() or output.structured:
        return devices.new_devices(st.server_dir(), specs, opts, workers=workers, hook=hook)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task("bundles", total=total)
        return devices.new_devices(
            st.server_dir(),
            specs,
            opts,
            workers=workers,
            progress=lambda n: bar.advance(task, n),
            hook=hook,
        )
