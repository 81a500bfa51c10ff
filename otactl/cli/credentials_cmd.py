"""`otactl credentials` (credentials.zip, one build-tools client certificate per CI
pipeline with `--new-client`) and `otactl revoke-credentials`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from otactl.cli._common import (
    Common,
    Output,
    OutputOpt,
    cluster_options,
    command_set,
    duration_option,
    echo,
    emit,
    info,
    values_options,
)

app = command_set()


@app.command("credentials")
@cluster_options
def credentials_cmd(
    new_client: Annotated[
        str | None,
        typer.Option(
            "--new-client",
            metavar="NAME",
            help="Build-tools client (one per CI pipeline): issues its certificate when it has "
            "none (or a revoked or expired one) and writes credentials-NAME.zip.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write (default: generated/<server>/...)."),
    ] = None,
    timeout: Annotated[
        float | None,
        duration_option("--timeout", help="5m, 90s, seconds (default: timeouts.credentials)."),
    ] = None,
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """TUF repositories, credentials.zip for garage-push and garage-sign (client
    certificate for the reverse proxy's mutual TLS), the user-keys Secret."""
    from otactl import deploy
    from otactl.pki import check_client_name

    if new_client is not None:
        check_client_name(new_client)  # before any cluster call
    st = common.state()
    values = st.values()
    cluster = common.connect()
    made = deploy.publish_credentials(
        cluster,
        values,
        st.server_dir(),
        deploy.exposed_gateway_url(cluster, values),
        client=new_client,
        out=out,
        timeout=timeout,
        progress=info,
    )
    if output.structured:
        emit(
            output,
            {
                "path": str(made.path),
                "repo_id": made.repo_id,
                "changed": made.changed,
                "created": list(made.created),
                "client": made.client,
                "client_issued": made.client_issued,
            },
        )
        return
    for what in made.created:
        info(f"created {what}")
    if made.client_issued:
        info(f"issued a build-tools certificate for client {made.client}")
    info(f"{'wrote' if made.changed else 'unchanged'}: {made.path} (repo {made.repo_id})")
    echo(str(made.path))


@app.command("revoke-credentials")
@values_options
def revoke_credentials(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Build-tools client to revoke.")],
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """Put a build-tools client's certificate on the CRL the reverse proxy checks."""
    from otactl.pki import BuildToolsFiles, revoke_build_tools_client

    st = common.state()
    rev = revoke_build_tools_client(st.server_dir(), name)
    crl = BuildToolsFiles.of(st.server_dir()).crl
    if output.structured:
        emit(
            output,
            {
                "name": name,
                "serial": format(rev.serial, "x"),
                "revoked_at": rev.revoked_at.isoformat(),
                "already": rev.already,
                "crl": str(crl),
            },
        )
        return
    info(f"{'already revoked' if rev.already else 'revoked'}: {name}, serial {rev.serial:x}")
    info(
        "run `otactl up`: it updates the build-tools-ca Secret and restarts the reverse proxy "
        "with it"
    )
    echo(str(crl))
