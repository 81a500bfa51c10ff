"""`otactl gke create`: a GKE cluster from the options and the values' gke section."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import typer

from otactl import gke
from otactl.cli._common import Output, OutputOpt, echo, emit, info, state
from otactl.cli._gke import (
    AsyncOpt,
    CredentialsOpt,
    LocationOpt,
    NameArg,
    PollOpt,
    ProjectOpt,
    TimeoutOpt,
    cluster_ref,
    gke_settings,
    google_warnings,
    progress_lines,
    where_flags,
)
from otactl.errors import ConfigError

# The options of create (with the ones every gke command has, from _gke).
MachineTypeOpt = Annotated[
    str | None,
    typer.Option("--machine-type", help="Compute Engine machine type of the nodes."),
]
NodesOpt = Annotated[
    int | None, typer.Option("--nodes", min=1, help="Nodes per zone of the location.")
]
NodePoolOpt = Annotated[
    str | None,
    typer.Option(
        "--node-pool",
        help=f"Node pool name (default: values node_pool, else {gke.DEFAULT_NODE_POOL}).",
    ),
]
MinNodesOpt = Annotated[
    int | None,
    typer.Option("--min-nodes", min=0, help="Autoscaling: fewest nodes per zone."),
]
MaxNodesOpt = Annotated[
    int | None, typer.Option("--max-nodes", min=1, help="Autoscaling: most nodes per zone.")
]
DiskSizeOpt = Annotated[
    int | None, typer.Option("--disk-size", min=10, help="Boot disk of each node, GB.")
]
DiskTypeOpt = Annotated[
    str | None,
    typer.Option("--disk-type", help="pd-standard, pd-balanced or pd-ssd."),
]
SpotOpt = Annotated[
    bool | None, typer.Option("--spot/--no-spot", help="Spot VMs (cheaper, preemptible).")
]
NodeZonesOpt = Annotated[
    str | None,
    typer.Option("--node-zones", help="Zones of the nodes, comma-separated."),
]
ReleaseChannelOpt = Annotated[
    str | None,
    typer.Option("--release-channel", help="rapid, regular, stable or extended."),
]
VersionOpt = Annotated[
    str | None, typer.Option("--cluster-version", help="Initial Kubernetes version.")
]
NetworkOpt = Annotated[
    str | None, typer.Option("--network", help="VPC network (default: default).")
]
SubnetworkOpt = Annotated[str | None, typer.Option("--subnetwork", help="Subnetwork.")]
ServiceAccountOpt = Annotated[
    str | None,
    typer.Option("--service-account", help="Nodes' service account (e-mail)."),
]
ScopesOpt = Annotated[
    str | None,
    typer.Option("--scopes", help="Nodes' OAuth scopes, comma-separated (default: gke-default)."),
]
PrivateNodesOpt = Annotated[
    bool | None,
    typer.Option("--private-nodes/--no-private-nodes", help="Nodes without public IPs."),
]
MasterCidrOpt = Annotated[
    str | None,
    typer.Option("--master-cidr", help="Control plane's /28 range (private nodes)."),
]
AuthorizedNetworksOpt = Annotated[
    str | None,
    typer.Option(
        "--authorized-networks",
        help="CIDR blocks allowed to reach the control plane, comma-separated.",
    ),
]
WorkloadIdentityOpt = Annotated[
    bool | None,
    typer.Option(
        "--workload-identity/--no-workload-identity",
        help="Workload Identity (pool PROJECT.svc.id.goog).",
    ),
]
LabelsOpt = Annotated[
    str | None, typer.Option("--labels", help="Cluster labels: key=value,key=value.")
]
AutopilotOpt = Annotated[
    bool | None,
    typer.Option("--autopilot/--standard", help="Autopilot mode: Google runs the nodes."),
]


def create(
    ctx: typer.Context,
    name: NameArg,
    project: ProjectOpt = None,
    location: LocationOpt = None,
    machine_type: MachineTypeOpt = None,
    nodes: NodesOpt = None,
    node_pool: NodePoolOpt = None,
    min_nodes: MinNodesOpt = None,
    max_nodes: MaxNodesOpt = None,
    disk_size: DiskSizeOpt = None,
    disk_type: DiskTypeOpt = None,
    spot: SpotOpt = None,
    node_zones: NodeZonesOpt = None,
    release_channel: ReleaseChannelOpt = None,
    version: VersionOpt = None,
    network: NetworkOpt = None,
    subnetwork: SubnetworkOpt = None,
    service_account: ServiceAccountOpt = None,
    scopes: ScopesOpt = None,
    private_nodes: PrivateNodesOpt = None,
    master_cidr: MasterCidrOpt = None,
    authorized_networks: AuthorizedNetworksOpt = None,
    workload_identity: WorkloadIdentityOpt = None,
    labels: LabelsOpt = None,
    autopilot: AutopilotOpt = None,
    credentials: CredentialsOpt = None,
    timeout: TimeoutOpt = gke.DEFAULT_TIMEOUT,
    poll_interval: PollOpt = gke.DEFAULT_POLL_INTERVAL,
    run_async: AsyncOpt = False,
    output: OutputOpt = Output.text,
) -> None:
    """Create the cluster and wait until it runs; an existing one with the same settings
    is kept. Options default to the values' gke section (the gke profile)."""
    v = gke_settings(ctx)
    with google_warnings():
        client, ref = cluster_ref(ctx, name, project, location, credentials)
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
        node_zones=_listed(node_zones, v.node_zones),
        network=network or v.network,
        subnetwork=subnetwork or v.subnetwork,
        service_account=service_account or v.service_account,
        scopes=_listed(scopes, v.scopes),
        private_nodes=v.private_nodes if private_nodes is None else private_nodes,
        master_cidr=master_cidr or v.master_cidr,
        authorized_networks=_listed(authorized_networks, v.authorized_networks),
        workload_identity=v.workload_identity if workload_identity is None else workload_identity,
        labels=_labels(labels) if labels is not None else dict(v.labels),
        autopilot=v.autopilot if autopilot is None else autopilot,
    )
    with google_warnings(), progress_lines() as progress:
        result = gke.create_cluster(
            client, spec, gke.Waiting(timeout, poll_interval, progress), follow=not run_async
        )
    _report_created(output, ref, spec, result, pool)


def _report_created(
    output: Output,
    ref: gke.ClusterRef,
    spec: gke.ClusterSpec,
    result: gke.ClusterInfo,
    pool: str,
) -> None:
    """The cluster made (or kept), or the operation started with --async."""
    if output.structured:
        emit(
            output,
            {
                "name": spec.name,
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
        info(f"otactl gke describe {spec.name} {where_flags(ref)} shows its status")
        return
    verb = "created" if result.created else "already there, same settings:"
    echo(f"{verb} {spec} ({result.status}, endpoint {result.endpoint})")
    info(f"next: otactl gke credentials {spec.name} {where_flags(ref)}")


def _listed(text: str | None, default: Iterable[str]) -> tuple[str, ...]:
    """A comma-separated option, or the values' list when it was not given."""
    return _list(text) if text is not None else tuple(default)


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
