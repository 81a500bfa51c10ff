"""The command line: parses options and calls the core. No logic of its own."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from otactl import __version__
from otactl.cli._common import State
from otactl.errors import OtactlError

app = typer.Typer(
    name="otactl",
    help="Deploy and provision an OTA Community Edition server on Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"otactl {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Values file (default: $OTACTL_CONFIG, ./otactl.yaml)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override one value: a.b=value (repeatable)."),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Values profile: local or gke.")
    ] = None,
    generated: Annotated[
        Path,
        typer.Option("--generated", envvar="OTACTL_GENERATED", help="Output folder."),
    ] = Path("generated"),
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    ctx.obj = State(
        config=config, sets=set_ or [], profile=profile, generated=generated, debug=debug
    )


def _register() -> None:
    """Each area of commands lives in its own module; none imports a heavy library at the
    top (kubernetes, google.cloud), so `otactl --help` stays fast."""
    from otactl.cli import (
        config_cmd,
        credentials_cmd,
        deploy_cmd,
        gke,
        local_cluster,
        pki_cmd,
        rbac_cmd,
        render_cmd,
        service_cmd,
    )

    for module in (
        config_cmd, render_cmd, pki_cmd, deploy_cmd, service_cmd, credentials_cmd, rbac_cmd,
    ):  # fmt: skip
        module.register(app)
    app.add_typer(local_cluster.app, name="local-cluster")
    app.add_typer(gke.app, name="gke")


_register()


def main() -> None:
    """Console entry point: expected failures become one line on stderr and an exit code."""
    try:
        app()  # usage errors, --help and typer.Exit are handled by click itself
    except OtactlError as e:
        if "--debug" in sys.argv:
            traceback.print_exc()
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
