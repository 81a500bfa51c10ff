"""`otactl gke create|credentials|delete|list|describe|token`: GKE clusters through the
Container API, no gcloud. Google's libraries are imported inside the commands (by
otactl.gke), never at start-up."""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from otactl import gke
from otactl.cli._common import (
    Output,
    duration_option,
    echo,
    emit,
    emit_json,
    info,
    is_tty,
    print_table,
    state,
)
from otactl.errors import ConfigError

if TYPE_CHECKING:
    from google.cloud.container_v1 import Cluster, ClusterManagerClient

    from otactl.config import Gke

app = typer.Typer(
    help="Create, connect to, list and delete GKE clusters (Google credentials, no gcloud CLI).",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Cluster name.")]
ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        help="Google Cloud project ID (default: values gke.project, $GOOGLE_CLOUD_PROJECT, "
        "the credentials' project).",
    ),
]
LocationOpt = Annotated[
    str | None,
    typer.Option(
        "--location",
        "-l",
        help="Zone (europe-west1-b: nodes in one zone) or region (europe-west1: nodes in "
        "three zones, replicated control plane). Default: values gke.location.",
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
    float,
    duration_option("--timeout", help="How long to wait for the cluster (30m, 90s, seconds)."),
]
PollOpt = Annotated[
    float, duration_option("--poll-interval", help="Between status checks (5s, 250ms, seconds).")
]
AsyncOpt = Annotated[
    bool,
    typer.Option("--async", help="Return once Google accepted the request; do not wait."),
]
KubeconfigOpt = Annotated[
    Path | None,
    typer.Option("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)."),
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o")]


@contextmanager
def _google() -> Iterator[None]:
    """google-auth's warnings (several lines each) as one `warning:` line on stderr."""

    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        info(f"warning: {gke._one_line(str(message), 400)}")

    saved = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = saved


def _settings(ctx: typer.Context) -> Gke:
    return state(ctx).values().gke


def _connect(
    ctx: typer.Context,
    project: str | None,
    location: str | None,
    credentials: Path | None,
) -> tuple[ClusterManagerClient, str, str | None]:
    """The client, and the project and location each command works in."""
    values = _settings(ctx)
    creds, creds_project = gke.load_credentials(credentials)
    project = gke.resolve_project(project or values.project, creds_project)
    client = gke.make_client(creds, os.environ.get(gke.ENDPOINT_ENV) or None)
    return client, project, location or values.location


def _ref(
    ctx: typer.Context,
    name: str,
    project: str | None,
    location: str | None,
    credentials: Path | None,
) -> tuple[ClusterManagerClient, gke.ClusterRef]:
    client, project, where = _connect(ctx, project, location, credentials)
    if not where:
        raise ConfigError("no location: pass --location (a zone or region) or set gke.location")
    return client, gke.ClusterRef(project, where, name)


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


def _where(ref: gke.ClusterRef) -> str:
    return f"--project {ref.project} --location {ref.location}"


@app.command()
def create(
    ctx: typer.Context,
    name: NameArg,
    project: ProjectOpt = None,
    location: LocationOpt = None,
    machine_type: Annotated[
        str | None,
        typer.Option("--machine-type", help="Compute Engine machine type of the nodes."),
    ] = None,
    nodes: Annotated[
        int | None, typer.Option("--nodes", min=1, help="Nodes per zone of the location.")
    ] = None,
    node_pool: Annotated[
        str | None,
        typer.Option(
            "--node-pool",
            help=f"Node pool name (default: values node_pool, else {gke.DEFAULT_NODE_POOL}).",
        ),
    ] = None,
    min_nodes: Annotated[
        int | None,
        typer.Option("--min-nodes", min=0, help="Autoscaling: fewest nodes per zone."),
    ] = None,
    max_nodes: Annotated[
        int | None, typer.Option("--max-nodes", min=1, help="Autoscaling: most nodes per zone.")
    ] = None,
    disk_size: Annotated[
        int | None, typer.Option("--disk-size", min=10, help="Boot disk of each node, GB.")
    ] = None,
    disk_type: Annotated[
        str | None,
        typer.Option("--disk-type", help="pd-standard, pd-balanced or pd-ssd."),
    ] = None,
    spot: Annotated[
        bool | None, typer.Option("--spot/--no-spot", help="Spot VMs (cheaper, preemptible).")
    ] = None,
    node_zones: Annotated[
        str | None,
        typer.Option("--node-zones", help="Zones of the nodes, comma-separated."),
    ] = None,
    release_channel: Annotated[
        str | None,
        typer.Option("--release-channel", help="rapid, regular, stable or extended."),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--cluster-version", help="Initial Kubernetes version.")
    ] = None,
    network: Annotated[
        str | None, typer.Option("--network", help="VPC network (default: default).")
    ] = None,
    subnetwork: Annotated[str | None, typer.Option("--subnetwork", help="Subnetwork.")] = None,
    service_account: Annotated[
        str | None,
        typer.Option("--service-account", help="Nodes' service account (e-mail)."),
    ] = None,
    scopes: Annotated[
        str | None,
        typer.Option(
            "--scopes", help="Nodes' OAuth scopes, comma-separated (default: gke-default)."
        ),
    ] = None,
    private_nodes: Annotated[
        bool | None,
        typer.Option("--private-nodes/--no-private-nodes", help="Nodes without public IPs."),
    ] = None,
    master_cidr: Annotated[
        str | None,
        typer.Option("--master-cidr", help="Control plane's /28 range (private nodes)."),
    ] = None,
    authorized_networks: Annotated[
        str | None,
        typer.Option(
            "--authorized-networks",
            help="CIDR blocks allowed to reach the control plane, comma-separated.",
        ),
    ] = None,
    workload_identity: Annotated[
        bool | None,
        typer.Option(
            "--workload-identity/--no-workload-identity",
            help="Workload Identity (pool PROJECT.svc.id.goog).",
        ),
    ] = None,
    labels: Annotated[
        str | None, typer.Option("--labels", help="Cluster labels: key=value,key=value.")
    ] = None,
    autopilot: Annotated[
        bool | None,
        typer.Option("--autopilot/--standard", help="Autopilot mode: Google runs the nodes."),
    ] = None,
    credentials: CredentialsOpt = None,
    timeout: TimeoutOpt = gke.DEFAULT_TIMEOUT,
    poll_interval: PollOpt = gke.DEFAULT_POLL_INTERVAL,
    run_async: AsyncOpt = False,
    output: OutputOpt = Output.text,
) -> None:
    """Create the cluster and wait until it runs; an existing one with the same settings
    is kept. Options default to the values' gke section (the gke profile)."""
    v = _settings(ctx)
    with _google():
        client, ref = _ref(ctx, name, project, location, credentials)
    # The pool the deployment pins its pods to (values node_pool) is the one to create.
    pool = node_pool or state(ctx).values().node_pool or gke.DEFAULT_NODE_POOL
    spec = gke.ClusterSpec(
        ref.project,
        ref.location,
        name,
        machine_type=machine_type or v.machine_type,
        nodes=nodes if nodes is not None else v.nodes,
        node_pool=pool,
        release_channel=release_channel or v.release_channel,
        version=version or v.version,
        min_nodes=min_nodes if min_nodes is not None else v.min_nodes,
        max_nodes=max_nodes if max_nodes is not None else v.max_nodes,
        disk_size_gb=disk_size if disk_size is not None else v.disk_size_gb,
        disk_type=disk_type or v.disk_type,
        spot=v.spot if spot is None else spot,
        node_zones=_list(node_zones) if node_zones is not None else tuple(v.node_zones),
        network=network or v.network,
        subnetwork=subnetwork or v.subnetwork,
        service_account=service_account or v.service_account,
        scopes=_list(scopes) if scopes is not None else tuple(v.scopes),
        private_nodes=v.private_nodes if private_nodes is None else private_nodes,
        master_cidr=master_cidr or v.master_cidr,
        authorized_networks=(
            _list(authorized_networks)
            if authorized_networks is not None
            else tuple(v.authorized_networks)
        ),
        workload_identity=v.workload_identity if workload_identity is None else workload_identity,
        labels=_labels(labels) if labels is not None else dict(v.labels),
        autopilot=v.autopilot if autopilot is None else autopilot,
    )
    with _google(), _progress() as progress:
        result = gke.create_cluster(
            client, spec, gke.Waiting(timeout, poll_interval, progress), follow=not run_async
        )
    if output.structured:
        emit(
            output,
            {
                "name": name,
                "project": ref.project,
                "location": ref.location,
                "path": spec.path,
                "status": result.status,
                "endpoint": result.endpoint,
                "created": result.created,
                "operation": result.operation,
                "autopilot": spec.autopilot,
                "node_pool": None if spec.autopilot else pool,
                "machine_type": None if spec.autopilot else spec.machine_type,
                "nodes": None if spec.autopilot else spec.nodes,
            },
        )
        return
    if result.operation is not None:
        echo(f"creating {spec}: operation {result.operation} started (--async)")
        info(f"otactl gke describe {name} {_where(ref)} shows its status")
        return
    verb = "created" if result.created else "already there, same settings:"
    echo(f"{verb} {spec} ({result.status}, endpoint {result.endpoint})")
    info(f"next: otactl gke credentials {name} {_where(ref)}")


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _labels(text: str) -> dict[str, str]:
    out = {}
    for item in _list(text):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--labels {text}: expected key=value,key=value")
        out[key] = value
    return out


@app.command()
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
    with _google():
        client, ref = _ref(ctx, name, project, location, credentials)
        with _progress() as progress:
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


@app.command()
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
    with _google():
        client, ref = _ref(ctx, name, project, location, credentials)
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"{ref}: refusing to delete without --yes in a non-interactive run")
        typer.confirm(f"Delete {ref} with all its nodes and disks?", abort=True, err=True)
    with _google(), _progress() as progress:
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


@app.command()
def token(
    credentials: CredentialsOpt = None,
) -> None:
    """Print an ExecCredential with a fresh Google access token: the kubeconfig's exec
    plugin when gke-gcloud-auth-plugin is absent (kubectl runs it, not you)."""
    with _google():
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


@app.command("list")
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
    with _google():
        client, project_id, _ = _connect(ctx, project, None, credentials)
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


@app.command()
def describe(
    ctx: typer.Context,
    name: NameArg,
    project: ProjectOpt = None,
    location: LocationOpt = None,
    credentials: CredentialsOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """One cluster: the API's whole description with -o json, a summary otherwise."""
    with _google():
        client, ref = _ref(ctx, name, project, location, credentials)
        cluster = gke.get_cluster(client, ref, gke.Waiting(timeout=120))
    if output.structured:
        emit(output, gke.cluster_json(cluster))
        return
    for key, value in _summary(cluster).items():
        shown = ", ".join(value) if isinstance(value, list) else value
        echo(f"{key + ':':14}{'' if shown is None else shown}")
