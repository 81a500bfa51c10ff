"""`otactl gke create|credentials|delete`: a GKE cluster through the Container API, no gcloud."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from otactl import gke
from otactl.cli._common import Output, echo, emit_json, info, is_tty, state
from otactl.errors import ConfigError

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud.container_v1 import ClusterManagerClient

app = typer.Typer(
    help="Create, connect to and delete a GKE cluster (Google credentials, no gcloud CLI).",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Cluster name.")]
ProjectOpt = Annotated[
    str,
    typer.Option("--project", "-p", envvar="GOOGLE_CLOUD_PROJECT", help="Google Cloud project ID."),
]
LocationOpt = Annotated[
    str,
    typer.Option(
        "--location",
        "-l",
        help="Zone (europe-west1-b: one zone of nodes) or region (europe-west1: three).",
    ),
]
CredentialsOpt = Annotated[
    Path | None,
    typer.Option(
        "--credentials",
        help="Service-account JSON key (default: Application Default Credentials).",
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for the operation.")
]
PollOpt = Annotated[
    float, typer.Option("--poll-interval", min=0.01, help="Seconds between status checks.")
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o")]


def _client(credentials_file: Path | None) -> tuple[Credentials, ClusterManagerClient]:
    credentials = gke.load_credentials(credentials_file)
    return credentials, gke.make_client(credentials, os.environ.get(gke.ENDPOINT_ENV) or None)


@contextmanager
def _progress() -> Iterator[gke.ProgressFn]:
    """A live line on a terminal; otherwise one log line per change of state."""
    tty = is_tty()
    last: tuple[str, str, str] | None = None

    def show(p: gke.Progress) -> None:
        nonlocal last
        detail = f" ({p.detail})" if p.detail else ""
        line = f"{p.ref.name}: {p.operation} {p.status}{detail}, {p.elapsed:.0f}s"
        if tty:
            # A line that wraps could not be redrawn in place: keep it to the terminal width.
            width = shutil.get_terminal_size().columns - 1
            typer.echo(f"\r\033[K{line[:width]}", err=True, nl=False)
        elif (p.operation, p.status, p.detail) != last:
            info(line)
        last = (p.operation, p.status, p.detail)

    try:
        yield show
    finally:
        if tty and last is not None:
            typer.echo(err=True)


@app.command()
def create(
    ctx: typer.Context,
    name: NameArg,
    project: ProjectOpt,
    location: LocationOpt,
    machine_type: Annotated[
        str, typer.Option("--machine-type", help="Compute Engine machine type of the nodes.")
    ] = gke.DEFAULT_MACHINE_TYPE,
    nodes: Annotated[
        int, typer.Option("--nodes", min=1, help="Nodes per zone of the location.")
    ] = gke.DEFAULT_NODES,
    node_pool: Annotated[
        str | None,
        typer.Option(
            "--node-pool",
            help=f"Node pool name (default: values node_pool, else {gke.DEFAULT_NODE_POOL}).",
        ),
    ] = None,
    credentials: CredentialsOpt = None,
    timeout: TimeoutOpt = gke.DEFAULT_TIMEOUT,
    poll_interval: PollOpt = gke.DEFAULT_POLL_INTERVAL,
    output: OutputOpt = Output.text,
) -> None:
    """Create the cluster and wait until it runs; an identical existing cluster is kept."""
    # The pool the deployment pins its pods to (values node_pool) is the one to create.
    pool = node_pool or state(ctx).values().node_pool or gke.DEFAULT_NODE_POOL
    spec = gke.ClusterSpec(project, location, name, machine_type, nodes, pool)
    _, client = _client(credentials)
    with _progress() as progress:
        result = gke.create_cluster(client, spec, gke.Waiting(timeout, poll_interval, progress))
    if output is Output.json:
        emit_json(
            {
                "name": name,
                "project": project,
                "location": location,
                "path": spec.path,
                "status": result.status,
                "endpoint": result.endpoint,
                "created": result.created,
                "node_pool": pool,
                "machine_type": machine_type,
                "nodes": nodes,
            }
        )
        return
    verb = "created" if result.created else "already there, same settings:"
    echo(f"{verb} {spec} ({result.status}, endpoint {result.endpoint})")
    info(f"next: otactl gke credentials {name} --project {project} --location {location}")


@app.command()
def credentials(
    name: NameArg,
    project: ProjectOpt,
    location: LocationOpt,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig", help="File to merge into (default: $KUBECONFIG, ~/.kube/config)."
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option("--context", help="Context name (default: gke_PROJECT_LOCATION_NAME)."),
    ] = None,
    credentials: CredentialsOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Write the cluster's endpoint, CA and user to a kubeconfig context and make it current.

    The user runs gke-gcloud-auth-plugin when it is on PATH; otherwise it holds an access
    token from the Google credentials, valid for about an hour (run this again to renew).
    """
    ref = gke.ClusterRef(project, location, name)
    creds, client = _client(credentials)
    entry = gke.write_kubeconfig(
        client,
        ref,
        kubeconfig=kubeconfig,
        context=context,
        credentials=creds,
        credentials_file=credentials,
        auth_plugin=shutil.which(gke.AUTH_PLUGIN) is not None,
    )
    # google-auth keeps expiry as a naive UTC datetime.
    expiry = f"{entry.token_expiry.isoformat(timespec='seconds')}Z" if entry.token_expiry else None
    if expiry is not None:
        info(
            f"{gke.AUTH_PLUGIN} not on PATH: the context holds a token that expires at "
            f"{expiry}; run this command again to renew it"
        )
    if output is Output.json:
        emit_json(
            {
                "context": entry.context,
                "kubeconfig": str(entry.kubeconfig),
                "endpoint": entry.server,
                "auth": entry.auth,
                "token_expiry": expiry,
            }
        )
    else:
        echo(f"context {entry.context} written to {entry.kubeconfig} (server {entry.server})")


@app.command()
def delete(
    name: NameArg,
    project: ProjectOpt,
    location: LocationOpt,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    credentials: CredentialsOpt = None,
    timeout: TimeoutOpt = gke.DEFAULT_TIMEOUT,
    poll_interval: PollOpt = gke.DEFAULT_POLL_INTERVAL,
) -> None:
    """Delete the cluster with its nodes and disks (asks first unless --yes)."""
    ref = gke.ClusterRef(project, location, name)
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"{ref}: refusing to delete without --yes in a non-interactive run")
        typer.confirm(f"Delete {ref} with all its nodes and disks?", abort=True, err=True)
    _, client = _client(credentials)
    with _progress() as progress:
        gke.delete_cluster(client, ref, gke.Waiting(timeout, poll_interval, progress))
    echo(f"deleted {ref}")
