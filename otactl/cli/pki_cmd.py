"""`otactl new-server`, `revoke-device`, `certs check`: the server's PKI and the
certificates' expiry."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from otactl.cli._common import (
    Common,
    Output,
    OutputOpt,
    command_set,
    echo,
    emit,
    info,
    print_table,
    values_options,
)
from otactl.errors import ConfigError

app = command_set()


def _parse_within(text: str) -> float:
    """`30d`, `12h`, `2w` or a plain number of days → days."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hdw]?)\s*", text)
    if not m:
        raise ConfigError(f"--within {text}: expected a duration such as 30d, 12h or 2w")
    return float(m.group(1)) * {"h": 1 / 24, "d": 1, "": 1, "w": 7}[m.group(2)]


@app.command("new-server")
@values_options
def new_server(
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
    *,
    common: Common,
) -> None:
    """Create the server CA, gateway certificate, device CA and CRL (keeps existing CAs)."""
    from otactl.pki import ensure_server_pki_for

    st = common.state()
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


@app.command("revoke-device")
@values_options
def revoke_device(
    device: Annotated[str, typer.Argument(metavar="UUID|NAME", help="Device to revoke.")],
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """Add a device's certificate to the device CRL the gateway checks."""
    from otactl import devices

    st = common.state()
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


certs_app = typer.Typer(help="Certificates of the server and its devices.", no_args_is_help=True)
app.add_typer(certs_app, name="certs")


@certs_app.command("check")
@values_options
def check(
    within: Annotated[
        str, typer.Option("--within", help="Fail when something expires this soon (30d).")
    ] = "30d",
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """List every certificate and CRL with its expiry; exit 1 if one expires --within."""
    from otactl.pki import inventory, utcnow

    st = common.state()
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
