"""`otactl gke create|credentials|delete|list|describe|token`: GKE clusters through the
Container API, no gcloud. Google's libraries are imported inside the commands (by
otactl.gke), never at start-up."""

from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from otactl import gke
from otactl.cli._common import (
    Output,
    OutputOpt,
    command_set,
    echo,
    emit,
    emit_json,
    info,
    print_table,
)
from otactl.cli._gke import (
    AsyncOpt,
    CredentialsOpt,
    KubeconfigOpt,
    LocationOpt,
    NameArg,
    PollOpt,
    ProjectOpt,
    TimeoutOpt,
    cluster_ref,
    connect_google,
    google_warnings,
    progress_lines,
)
from otactl.cli.gke_create import create
from otactl.errors import ConfigError

if TYPE_CHECKING:
    from google.cloud.container_v1 import Cluster

app = command_set()
gke_app = typer.Typer(
    help="Create, connect to, list and delete GKE clusters (Google credentials, no gcloud CLI).",
    no_args_is_help=True,
)
app.add_typer(gke_app, name="gke")
gke_app.command()(create)


@gke_app.command()
def credentials(
    ctx: typer.Context,
    name: NameArg,
    project: ProjectOpt = None,
    location: LocationOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: Annotated[
        str | None,
        typer.Option("--context", help="Context name (default: gke_PROJECT_LOCATION_NAME)."),
    ] = None,
    internal_ip: Annotated[
        bool,
        typer.Option("--internal-ip", help="Use the control plane's private address."),
    ] = False,
    dns_endpoint: Annotated[
        bool, typer.Option("--dns-endpoint", help="Use the control plane's DNS endpoint.")
    ] = False,
    credentials: CredentialsOpt = None,
    timeout: TimeoutOpt = gke.DEFAULT_TIMEOUT,
    poll_interval: PollOpt = gke.DEFAULT_POLL_INTERVAL,
    output: OutputOpt = Output.text,
) -> None:
    """Write the cluster's endpoint, CA and user to a kubeconfig context and make it current.

    The user runs gke-gcloud-auth-plugin when it is on PATH, otherwise `otactl gke token`:
    either gets a fresh token whenever kubectl needs one, as the identity used here.
    A cluster still being created is waited for.
    """
    if internal_ip and dns_endpoint:
        raise ConfigError("--internal-ip and --dns-endpoint exclude each other")
    with google_warnings():
        client, ref = cluster_ref(ctx, name, project, location, credentials)
        with progress_lines() as progress:
            entry = gke.write_kubeconfig(
                client,
                ref,
                kubeconfig=kubeconfig,
                context=context,
                credentials_file=credentials,
                auth_plugin=shutil.which(gke.AUTH_PLUGIN) is not None,
                internal_ip=internal_ip,
                dns_endpoint=dns_endpoint,
                wait=gke.Waiting(timeout, poll_interval, progress),
            )
    if output.structured:
        emit(
            output,
            {
                "context": entry.context,
                "kubeconfig": str(entry.kubeconfig),
                "endpoint": entry.server,
                "auth": entry.auth,
            },
        )
    else:
        echo(f"context {entry.context} written to {entry.kubeconfig} (server {entry.server})")
        if entry.auth != gke.AUTH_PLUGIN:
            info(f"{gke.AUTH_PLUGIN} not on PATH: kubectl gets its tokens from `otactl gke token`")


@gke_app.command()
def delete(
    ctx: typer.Context,
    name: NameArg,
    project: ProjectOpt = None,
    location: LocationOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    kubeconfig: KubeconfigOpt = None,
    context: Annotated[
        str | None,
        typer.Option("--context", help="Context to remove (default: gke_PROJECT_LOCATION_NAME)."),
    ] = None,
    credentials: CredentialsOpt = None,
    timeout: TimeoutOpt = gke.DEFAULT_TIMEOUT,
    poll_interval: PollOpt = gke.DEFAULT_POLL_INTERVAL,
    run_async: AsyncOpt = False,
) -> None:
    """Delete the cluster with its nodes and disks (asks first unless --yes), and its
    kubeconfig context. A cluster busy with another operation is waited for, one already
    gone is no error, and a delete that timed out goes on when run again."""
    with google_warnings():
        client, ref = cluster_ref(ctx, name, project, location, credentials)
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"{ref}: refusing to delete without --yes in a non-interactive run")
        typer.confirm(f"Delete {ref} with all its nodes and disks?", abort=True, err=True)
    with google_warnings(), progress_lines() as progress:
        done = gke.delete_cluster(
            client, ref, gke.Waiting(timeout, poll_interval, progress), follow=not run_async
        )
    removed = gke.forget_kubeconfig(ref, kubeconfig=kubeconfig, context=context)
    if removed:
        info(f"removed kubeconfig context {', '.join(removed)}")
    if not done.existed:
        echo(f"{ref} does not exist (already deleted)")
    elif done.operation is not None:
        echo(f"deleting {ref}: operation {done.operation} started (--async)")
    elif run_async:
        echo(f"deleting {ref}: already under way (--async)")
    else:
        echo(f"deleted {ref}")


@gke_app.command()
def token(
    credentials: CredentialsOpt = None,
) -> None:
    """Print an ExecCredential with a fresh Google access token: the kubeconfig's exec
    plugin when gke-gcloud-auth-plugin is absent (kubectl runs it, not you)."""
    with google_warnings():
        creds, _ = gke.load_credentials(credentials, scopes=gke.TOKEN_SCOPES)
        credential = gke.exec_credential(creds)
    emit_json(credential)


def _summary(cluster: Cluster) -> dict[str, Any]:
    pools = list(cluster.node_pools)
    return {
        "name": cluster.name,
        "location": cluster.location,
        "status": cluster.status.name,
        "version": cluster.current_master_version,
        "nodes": cluster.current_node_count,
        "endpoint": cluster.endpoint,
        "mode": "autopilot" if cluster.autopilot.enabled else "standard",
        "node_zones": list(cluster.locations),
        "machine_type": pools[0].config.machine_type if pools else None,
    }


@gke_app.command("list")
def list_(
    ctx: typer.Context,
    project: ProjectOpt = None,
    location: Annotated[
        str | None, typer.Option("--location", "-l", help="Zone or region (default: all).")
    ] = None,
    credentials: CredentialsOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """The project's clusters: name, location, status, version, nodes."""
    with google_warnings():
        client, project_id, _ = connect_google(ctx, project, None, credentials)
        clusters = gke.list_clusters(client, project_id, location)
    if output.structured:
        emit(output, [_summary(c) for c in clusters])
        return
    print_table(
        ["name", "location", "status", "version", "nodes", "mode"],
        [
            [c.name, c.location, c.status.name, c.current_master_version,
             str(c.current_node_count), "autopilot" if c.autopilot.enabled else "standard"]
            for c in clusters
        ],
    )  # fmt: skip


@gke_app.command()
def describe(
    ctx: typer.Context,
    name: NameArg,
    project: ProjectOpt = None,
    location: LocationOpt = None,
    credentials: CredentialsOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """One cluster: the API's whole description with -o json, a summary otherwise."""
    with google_warnings():
        client, ref = cluster_ref(ctx, name, project, location, credentials)
        cluster = gke.get_cluster(client, ref, gke.Waiting(timeout=120))
    if output.structured:
        emit(output, gke.cluster_json(cluster))
        return
    for key, value in _summary(cluster).items():
        shown = ", ".join(value) if isinstance(value, list) else value
        echo(f"{key + ':':14}{'' if shown is None else shown}")
