"""`otactl renew-device`, `devices list`: the devices that have a bundle (new-device:
otactl/cli/new_device_cmd.py)."""

from __future__ import annotations

import dataclasses
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
    print_table,
)
from otactl.errors import ConfigError

if TYPE_CHECKING:
    from otactl.devices import BundleOptions

app = command_set()


@app.command("renew-device")
@cluster_options
def renew_device(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Device to renew.")],
    register_: Annotated[
        bool,
        typer.Option(
            "--register/--no-register",
            help="Give device-registry the new certificate (needs the cluster).",
        ),
    ] = True,
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """A new certificate (pki.device_days) for a device's existing key: copy the new
    client.pem to the device. The old certificate is not revoked and works until it
    expires; for a new key, `new-device NAME --reissue`."""
    from otactl import devices
    from otactl.cli import service_cmd

    st = common.state()
    existing = devices.existing_device(st.server_dir(), devices.validate_name(name))
    if existing is None:
        raise ConfigError(f"no device named {name!r} under {st.server_dir()}")
    opts = devices.options_for(existing, bundle_options(st, None, None, None, False), set())
    opts = dataclasses.replace(opts, gateway_url=existing.gateway_url or opts.gateway_url)
    cluster = service_cmd.connect_for_registration(common) if register_ else None
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
@cluster_options
def devices_list(
    registered: Annotated[
        bool,
        typer.Option(
            "--registered/--offline",
            help="Ask device-registry which are registered (--offline: do not; "
            "REGISTERED shows -).",
        ),
    ] = True,
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """Name, uuid, certificate expiry, revoked, registered in device-registry."""
    from otactl.devices import Existing, list_devices

    st = common.state()
    devices = list_devices(st.server_dir())
    known: dict[str, str] | None = None
    if registered:
        from otactl import registry

        try:
            cluster = common.connect()
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


def bundle_options(
    st: State, fmt: str | None, hardware_id: str | None, port: int | None, archive: bool
) -> BundleOptions:
    """The bundle options of the values in force, with what the command was given."""
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
