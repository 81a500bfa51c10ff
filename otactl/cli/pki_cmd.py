"""`otactl new-server`, `new-device`, `revoke-device`, `certs check`."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from otactl.cli._common import (
    ConfigOpt,
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    Output,
    ProfileOpt,
    SetOpt,
    State,
    connect,
    echo,
    emit,
    info,
    is_tty,
    print_table,
    state,
)
from otactl.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from otactl import devices
    from otactl.devices import BatchSummary, BundleOptions, DeviceSpec, Hook

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json.")]


def _parse_within(text: str) -> float:
    """`30d`, `12h`, `2w` or a plain number of days → days."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hdw]?)\s*", text)
    if not m:
        raise ConfigError(f"--within {text}: expected a duration such as 30d, 12h or 2w")
    return float(m.group(1)) * {"h": 1 / 24, "d": 1, "": 1, "w": 7}[m.group(2)]


def register(app: typer.Typer) -> None:
    @app.command("new-server")
    def new_server(
        ctx: typer.Context,
        renew_server_cert: Annotated[
            bool,
            typer.Option(
                "--renew-server-cert",
                help="Re-issue the gateway certificate (new SANs) from the server CA.",
            ),
        ] = False,
        device_ca_cert: Annotated[
            Path | None,
            typer.Option(
                "--device-ca-cert",
                help="Import a fleet CA (PEM; an intermediate followed by its chain).",
            ),
        ] = None,
        device_ca_key: Annotated[
            Path | None, typer.Option("--device-ca-key", help="Key of --device-ca-cert.")
        ] = None,
        device_ca_crl: Annotated[
            Path | None,
            typer.Option(
                "--device-ca-crl",
                help="Current CRLs of the CAs above an imported intermediate (PEM).",
            ),
        ] = None,
        output: OutputOpt = Output.text,
        config: ConfigOpt = None,
        set_: SetOpt = None,
        profile: ProfileOpt = None,
    ) -> None:
        """Create the server CA, gateway certificate, device CA and CRL (keeps existing CAs)."""
        from otactl.pki import ensure_server_pki_for

        st = state(ctx, config, set_, profile)
        st.refuse_second_ca()
        result = ensure_server_pki_for(
            st.values(),
            st.server_dir(),
            renew_server_cert=renew_server_cert,
            device_ca_cert=device_ca_cert,
            device_ca_key=device_ca_key,
            device_ca_crl=device_ca_crl,
        )
        if output.structured:
            emit(
                output,
                {
                    "server_dir": str(result.files.root),
                    "created": result.created,
                    "notes": result.notes,
                },
            )
            return
        for what in result.created:
            info(f"created {what}")
        if not result.created:
            info("server PKI present, nothing to do")
        for note in result.notes:
            info(f"note: {note}")
        echo(str(result.files.root))

    @app.command("new-device")
    def new_device(
        ctx: typer.Context,
        name: Annotated[str | None, typer.Argument(help="Device name (one device).")] = None,
        uuid: Annotated[
            str | None, typer.Option("--uuid", help="Device uuid (one device).")
        ] = None,
        count: Annotated[int | None, typer.Option("--count", help="Make N devices.")] = None,
        prefix: Annotated[
            str | None, typer.Option("--prefix", help="Names <prefix>-0001... with --count.")
        ] = None,
        start: Annotated[int, typer.Option("--start", help="First number with --count.")] = 1,
        from_csv: Annotated[
            Path | None,
            typer.Option("--from-csv", help="CSV of name[,uuid][,hardware_id] rows."),
        ] = None,
        fmt: Annotated[
            str | None,
            typer.Option(
                "--format",
                help="sota.toml for the device's aktualizr: device-cred (default; aktualizr "
                "2018.6 to master) or legacy-2018 (aktualizr 2018.1 to 2018.7; old name: "
                "implicit).",
            ),
        ] = None,
        hardware_id: Annotated[
            str | None, typer.Option("--hardware-id", help="Primary ECU hardware id.")
        ] = None,
        port: Annotated[
            int | None,
            typer.Option("--port", help="Gateway port devices reach (default: from values)."),
        ] = None,
        archive: Annotated[
            bool, typer.Option("--archive", help="Also write a tar.gz of the device's files.")
        ] = False,
        reissue: Annotated[
            bool,
            typer.Option(
                "--reissue",
                help="NAME exists: make it a new key and certificate (same uuid, the options "
                "given here) and revoke the old certificate.",
            ),
        ] = False,
        workers: Annotated[
            int | None,
            typer.Option("--workers", min=1, max=256, help="Processes (default: every core)."),
        ] = None,
        # Registration and --push (otactl/cli/service_cmd.py holds the glue).
        register_: Annotated[
            bool,
            typer.Option(
                "--register/--no-register",
                help="Register each device in device-registry (needs the cluster).",
            ),
        ] = True,
        push: Annotated[
            str | None,
            typer.Option("--push", help="Copy the bundle to a device: root@HOST[:PORT]."),
        ] = None,
        ssh_key: Annotated[
            Path | None,
            typer.Option("--ssh-key", help="Key for --push (default: ssh-agent, ~/.ssh)."),
        ] = None,
        insecure_accept_host_key: Annotated[
            bool,
            typer.Option(
                "--insecure-accept-host-key",
                help="--push to a host not in known_hosts (a changed key is still refused).",
            ),
        ] = False,
        kubeconfig: KubeconfigOpt = None,
        context: ContextOpt = None,
        namespace: NamespaceOpt = None,
        output: OutputOpt = Output.text,
        config: ConfigOpt = None,
        set_: SetOpt = None,
        profile: ProfileOpt = None,
    ) -> None:
        """Make device bundles: one NAME, --count N --prefix P, or --from-csv FILE.

        Device keys are P-256 unless pki.device_key_type (or pki.key_type) says rsa.
        """
        from otactl import devices
        from otactl.cli import service_cmd

        st = state(ctx, config, set_, profile, namespace)
        modes = sum(x is not None for x in (name, count, from_csv))
        if modes != 1:
            raise ConfigError("give exactly one of NAME, --count N --prefix P, --from-csv FILE")
        if (count is None) != (prefix is None):
            raise ConfigError("--count and --prefix go together")
        if uuid is not None and name is None:
            raise ConfigError("--uuid goes with a single NAME")
        if reissue and name is None:
            raise ConfigError("--reissue goes with a single NAME")
        opts = _bundle_options(st, fmt, hardware_id, port, archive)
        asked = {
            option
            for option, given in (
                ("format", fmt is not None),
                ("hardware_id", hardware_id is not None),
                ("archive", archive),
                ("port", port is not None),
            )
            if given
        }
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
            cluster = service_cmd.connect_for_registration(kubeconfig, context)
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
            revocation = None
            with service_cmd.registering(st, cluster) as registrar:
                hook = service_cmd.registration_hook(registrar)
                if existing is not None and reissue:
                    result, revocation = devices.replace_device(
                        st.server_dir(), existing.info.name, opts, keep_key=False, hook=hook
                    )
                else:
                    result = devices.new_device(st.server_dir(), spec, opts, hook=hook)
            registered = registrar.registered if registrar else 0
            pushed = (
                service_cmd.push_device(result, push, ssh_key, insecure_accept_host_key)
                if push
                else {}
            )
            if output.structured:
                # Keys only for what was asked, so --no-register output is the bundle's.
                extra: dict[str, object] = {"registered": bool(registered)} if register_ else {}
                if revocation is not None:
                    extra["reissued"] = True
                    extra["revoked_serial"] = format(revocation.serial, "x")
                emit(output, result.as_json() | extra | ({"pushed": pushed} if push else {}))
            else:
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
            for w in warnings:
                info(f"warning: {w}")
            return

        if from_csv is not None:
            specs: Iterable[devices.DeviceSpec] = devices.specs_from_csv(from_csv)
            total = devices.count_csv_rows(from_csv)
        else:
            assert count is not None and prefix is not None
            specs = devices.specs_from_count(prefix, count, start)
            total = count
        with service_cmd.registering(st, cluster) as registrar:
            hook = service_cmd.registration_hook(registrar)
            summary = _run_batch(st, specs, opts, workers, total, output, hook)
        registered = registrar.registered if registrar else 0
        if output.structured:
            emit(output, summary.as_json() | ({"registered": registered} if register_ else {}))
        else:
            info(f"created {summary.created}, skipped {summary.skipped} (existing)")
            if register_:
                info(f"registered {registered} in device-registry")
            echo(str(summary.manifest))
        for w in warnings:
            info(f"warning: {w}")

    @app.command("revoke-device")
    def revoke_device(
        ctx: typer.Context,
        device: Annotated[str, typer.Argument(metavar="UUID|NAME", help="Device to revoke.")],
        output: OutputOpt = Output.text,
        config: ConfigOpt = None,
        set_: SetOpt = None,
        profile: ProfileOpt = None,
    ) -> None:
        """Add a device's certificate to the device CRL the gateway checks."""
        from otactl import devices

        st = state(ctx, config, set_, profile)
        from otactl.pki import ServerFiles

        dev, rev = devices.revoke_device(st.server_dir(), device)
        crl = ServerFiles(st.server_dir()).crl
        if output.structured:
            emit(
                output,
                {
                    "name": dev.name,
                    "uuid": dev.uuid,
                    "serial": format(rev.serial, "x"),
                    "revoked_at": rev.revoked_at.isoformat(),
                    "already": rev.already,
                    "crl": str(crl),
                },
            )
            return
        verb = "already revoked" if rev.already else "revoked"
        info(f"{verb}: {dev.name} ({dev.uuid}), serial {rev.serial:x}")
        info("run `otactl up`: it updates the gateway-tls Secret and restarts the gateway with it")
        echo(str(crl))

    @app.command("renew-device")
    def renew_device(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(metavar="NAME", help="Device to renew.")],
        register_: Annotated[
            bool,
            typer.Option(
                "--register/--no-register",
                help="Give device-registry the new certificate (needs the cluster).",
            ),
        ] = True,
        output: OutputOpt = Output.text,
        kubeconfig: KubeconfigOpt = None,
        context: ContextOpt = None,
        namespace: NamespaceOpt = None,
        config: ConfigOpt = None,
        set_: SetOpt = None,
        profile: ProfileOpt = None,
    ) -> None:
        """A new certificate (pki.device_days) for a device's existing key: copy the new
        client.pem to the device. The old certificate is not revoked and works until it
        expires; for a new key, `new-device NAME --reissue`."""
        from otactl import devices
        from otactl.cli import service_cmd

        st = state(ctx, config, set_, profile, namespace)
        existing = devices.existing_device(st.server_dir(), devices.validate_name(name))
        if existing is None:
            raise ConfigError(f"no device named {name!r} under {st.server_dir()}")
        opts = devices.options_for(existing, _bundle_options(st, None, None, None, False), set())
        opts = dataclasses.replace(opts, gateway_url=existing.gateway_url or opts.gateway_url)
        cluster = service_cmd.connect_for_registration(kubeconfig, context) if register_ else None
        with service_cmd.registering(st, cluster) as registrar:
            hook = service_cmd.registration_hook(registrar)
            result, _ = devices.replace_device(
                st.server_dir(), existing.info.name, opts, keep_key=True, hook=hook
            )
        if output.structured:
            extra = {"registered": bool(registrar and registrar.registered)} if register_ else {}
            emit(output, result.as_json() | {"previous_not_after": existing.info.not_after} | extra)
            return
        info(
            f"renewed: {result.name} ({result.uuid}), valid until {result.not_after} "
            f"(was {existing.info.not_after}); same key: copy client.pem to the device"
        )
        echo(str(result.path))

    devices_app = typer.Typer(help="The devices that have a bundle.", no_args_is_help=True)
    app.add_typer(devices_app, name="devices")

    @devices_app.command("list")
    def devices_list(
        ctx: typer.Context,
        registered: Annotated[
            bool,
            typer.Option(
                "--registered/--offline",
                help="Ask device-registry which are registered (--offline: do not; "
                "REGISTERED shows -).",
            ),
        ] = True,
        output: OutputOpt = Output.text,
        kubeconfig: KubeconfigOpt = None,
        context: ContextOpt = None,
        namespace: NamespaceOpt = None,
        config: ConfigOpt = None,
        set_: SetOpt = None,
        profile: ProfileOpt = None,
    ) -> None:
        """Name, uuid, certificate expiry, revoked, registered in device-registry."""
        from otactl.devices import Existing, list_devices

        st = state(ctx, config, set_, profile, namespace)
        devices = list_devices(st.server_dir())
        known: dict[str, str] | None = None
        if registered:
            from otactl import registry

            try:
                cluster = connect(kubeconfig, context)
            except ConfigError as e:
                raise ConfigError(f"{e} (or --offline: without the registered column)") from e
            cluster.on_notice(info)
            if devices:
                known = registry.list_devices(
                    cluster.service_caller(st.values().namespace), st.values().tenant
                )

        def is_registered(d: Existing) -> bool | None:
            if known is None:
                return None
            return known.get(d.info.name) == d.info.uuid

        if output.structured:
            emit(
                output,
                [
                    {
                        "name": d.info.name,
                        "uuid": d.info.uuid,
                        "not_after": d.info.not_after,
                        "revoked": d.revoked,
                        "registered": is_registered(d),
                        "hardware_id": d.info.hardware_id,
                        "format": d.format,
                        "path": str(d.info.path),
                    }
                    for d in devices
                ],
            )
            return
        if not devices:
            info(f"no devices under {st.server_dir()}")
            return
        yes_no = {True: "yes", False: "no", None: "-"}
        print_table(
            ["name", "uuid", "expires", "revoked", "registered"],
            [
                [
                    d.info.name,
                    d.info.uuid,
                    d.info.not_after[:16].replace("T", " ") + "Z",
                    yes_no[d.revoked],
                    yes_no[is_registered(d)],
                ]
                for d in devices
            ],
        )

    certs_app = typer.Typer(
        help="Certificates of the server and its devices.", no_args_is_help=True
    )
    app.add_typer(certs_app, name="certs")

    @certs_app.command("check")
    def check(
        ctx: typer.Context,
        within: Annotated[
            str, typer.Option("--within", help="Fail when something expires this soon (30d).")
        ] = "30d",
        output: OutputOpt = Output.text,
        config: ConfigOpt = None,
        set_: SetOpt = None,
        profile: ProfileOpt = None,
    ) -> None:
        """List every certificate and CRL with its expiry; exit 1 if one expires --within."""
        from otactl.pki import inventory, utcnow

        st = state(ctx, config, set_, profile)
        days = _parse_within(within)
        now = utcnow()
        items = inventory(st.server_dir())
        soon = [e for e in items if not e.revoked and e.days_left(now) <= days]
        if output.structured:
            emit(
                output,
                {
                    "within_days": days,
                    "expiring": len(soon),
                    "certificates": [e.as_json(now) for e in items],
                },
            )
        else:
            if items:
                print_table(
                    ["expires", "days", "kind", "subject", "name", "state"],
                    [
                        [
                            f"{e.not_after:%Y-%m-%d %H:%M}Z",
                            f"{e.days_left(now):.1f}",
                            e.kind,
                            e.subject,
                            e.name or "",
                            "revoked" if e.revoked else "EXPIRING" if e in soon else "",
                        ]
                        for e in items
                    ],
                )
            else:
                info(f"no certificates under {st.server_dir()}")
        if soon:
            info(f"{len(soon)} expire within {within}")
            raise typer.Exit(1)


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


def _bundle_options(
    st: State, fmt: str | None, hardware_id: str | None, port: int | None, archive: bool
) -> BundleOptions:
    from otactl import devices
    from otactl.pki import PkiSettings

    values = st.values()
    update: dict[str, object] = {}
    if fmt is not None:
        try:
            devices.canonical_format(fmt)
        except ConfigError:
            raise ConfigError(f"--format {fmt}: expected {devices.format_help()}") from None
        update["format"] = fmt
    if hardware_id is not None:
        update["hardware_id"] = devices.validate_hardware_id(hardware_id)
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected 1-65535")
    url = devices.gateway_url(
        values.server_name, port or devices.default_gateway_port(values.gateway)
    )
    return devices.BundleOptions(
        gateway_url=url,
        device=values.device.model_copy(update=update),
        days=values.pki.device_days,
        archive=archive,
        key_type=PkiSettings(**values.pki.model_dump()).device_keys,
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
