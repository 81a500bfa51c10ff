"""Creating and deleting a cluster: the create request built from a `ClusterSpec`, an
existing cluster adopted when its settings match, a busy one waited out before a delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from otactl.errors import GkeConflict, GkeError, GkeNotFound, WaitTimeout
from otactl.gke.errors import _one_line
from otactl.gke.operations import (
    REQUEST_TIMEOUT,
    Progress,
    Waiting,
    _call,
    _Clock,
    _find_cluster,
    _follow,
    _get,
    _wait_resting,
)
from otactl.gke.spec import ClusterRef, ClusterSpec

if TYPE_CHECKING:
    from google.cloud.container_v1 import Cluster, ClusterManagerClient


@dataclass(frozen=True)
class ClusterInfo:
    """What `create` found or made (`operation` is set when it did not wait: --async)."""

    ref: ClusterRef
    status: str
    endpoint: str
    created: bool
    operation: str | None = None


@dataclass(frozen=True)
class Deletion:
    """What `delete_cluster` did: `existed` is False when there was nothing to delete."""

    ref: ClusterRef
    existed: bool
    operation: str | None = None  # set with --async: the delete goes on in Google Cloud
    waited_for: str | None = None  # the status of the busy cluster it waited out


def _differences(cluster: Cluster, spec: ClusterSpec) -> list[str]:
    if spec.autopilot != cluster.autopilot.enabled:
        mode = "an Autopilot" if cluster.autopilot.enabled else "a Standard"
        return [f"{mode} cluster"]
    if spec.autopilot:
        return []
    pools = {pool.name: pool for pool in cluster.node_pools}
    pool = pools.get(spec.node_pool)
    if pool is None:
        return [f"no node pool {spec.node_pool} (has: {', '.join(sorted(pools)) or 'none'})"]
    diffs = []
    if pool.config.machine_type != spec.machine_type:
        diffs.append(f"machine type {pool.config.machine_type}, not {spec.machine_type}")
    if pool.initial_node_count != spec.nodes:
        diffs.append(f"{pool.initial_node_count} nodes per zone, not {spec.nodes}")
    if spec.spot and not pool.config.spot:
        diffs.append("standard nodes, not spot")
    if spec.min_nodes is not None:
        scaling = pool.autoscaling
        have = f"{scaling.min_node_count}..{scaling.max_node_count}" if scaling.enabled else "off"
        if have != f"{spec.min_nodes}..{spec.max_nodes}":
            diffs.append(f"autoscaling {have}, not {spec.min_nodes}..{spec.max_nodes}")
    if spec.node_zones and set(cluster.locations) != set(spec.node_zones):
        diffs.append(f"node zones {','.join(sorted(cluster.locations))}")
    return diffs


def _adopt(
    client: ClusterManagerClient, spec: ClusterSpec, cluster: Cluster, clock: _Clock
) -> ClusterInfo:
    """Accept an existing cluster when it has the settings asked for."""
    from google.cloud.container_v1 import Cluster

    diffs = _differences(cluster, spec)
    if diffs:
        raise GkeConflict(
            f"{spec}: exists with other settings ({'; '.join(diffs)}); "
            "pass matching options or delete it first"
        )
    if cluster.status == Cluster.Status.STOPPING:
        raise GkeConflict(f"{spec}: is being deleted; run the command again once it is gone")
    found = _wait_resting(client, spec, cluster, clock)
    if found is None:
        raise GkeConflict(f"{spec}: was deleted while otactl waited; run the command again")
    if found.status not in (Cluster.Status.RUNNING, Cluster.Status.DEGRADED):
        why = f": {_one_line(found.status_message)}" if found.status_message else ""
        raise GkeError(
            f"{spec}: exists but is {found.status.name}{why}; "
            "delete it (otactl gke delete) and create it again"
        )
    return ClusterInfo(spec, found.status.name, found.endpoint, created=False)


def cluster_body(spec: ClusterSpec) -> Cluster:
    """The `Cluster` message of a create request (google.cloud.container_v1 types)."""
    from google.cloud import container_v1 as c

    body = c.Cluster(
        name=spec.name,
        resource_labels=dict(spec.labels),
        # VPC-native (alias IPs): gcloud's default, and what private nodes require.
        ip_allocation_policy=c.IPAllocationPolicy(use_ip_aliases=True),
    )
    if spec.network:
        body.network = spec.network
    if spec.subnetwork:
        body.subnetwork = spec.subnetwork
    if spec.release_channel:
        body.release_channel = c.ReleaseChannel(
            channel=getattr(c.ReleaseChannel.Channel, spec.release_channel.upper())
        )
    if spec.version:
        body.initial_cluster_version = spec.version
    if spec.private_nodes:
        body.private_cluster_config = c.PrivateClusterConfig(
            enable_private_nodes=True, master_ipv4_cidr_block=spec.master_cidr or ""
        )
    if spec.authorized_networks:
        body.master_authorized_networks_config = c.MasterAuthorizedNetworksConfig(
            enabled=True,
            cidr_blocks=[
                c.MasterAuthorizedNetworksConfig.CidrBlock(cidr_block=cidr)
                for cidr in spec.authorized_networks
            ],
        )
    if spec.workload_identity:
        body.workload_identity_config = c.WorkloadIdentityConfig(
            workload_pool=f"{spec.project}.svc.id.goog"
        )
    if spec.autopilot:
        body.autopilot = c.Autopilot(enabled=True)
        return body
    body.locations = list(spec.node_zones)
    config = c.NodeConfig(
        machine_type=spec.machine_type, oauth_scopes=spec.oauth_scopes, spot=spec.spot
    )
    if spec.disk_size_gb is not None:
        config.disk_size_gb = spec.disk_size_gb
    if spec.disk_type is not None:
        config.disk_type = spec.disk_type
    if spec.service_account:
        config.service_account = spec.service_account
    pool = c.NodePool(name=spec.node_pool, initial_node_count=spec.nodes, config=config)
    if spec.min_nodes is not None and spec.max_nodes is not None:
        pool.autoscaling = c.NodePoolAutoscaling(
            enabled=True, min_node_count=spec.min_nodes, max_node_count=spec.max_nodes
        )
    body.node_pools = [pool]
    return body


def create_cluster(
    client: ClusterManagerClient,
    spec: ClusterSpec,
    wait: Waiting | None = None,
    *,
    follow: bool = True,
) -> ClusterInfo:
    """Create the cluster and follow the operation (not with `follow=False`: --async);
    an existing cluster with the same settings is kept."""
    spec.check()
    clock = _Clock(wait or Waiting())
    existing = _find_cluster(client, spec, clock)
    if existing is not None:
        return _adopt(client, spec, existing, clock)
    body = cluster_body(spec)
    try:
        op = _call(
            spec,
            client,
            clock,
            lambda: client.create_cluster(
                parent=spec.parent, cluster=body, retry=None, timeout=REQUEST_TIMEOUT
            ),
        )
    except GkeConflict:
        # Someone created it between our look and our request, or our own first attempt
        # did before its answer was lost: judge that cluster like any other.
        existing = _find_cluster(client, spec, clock)
        if existing is None:
            raise
        return _adopt(client, spec, existing, clock)
    if not follow:
        return ClusterInfo(spec, "PROVISIONING", "", created=True, operation=op.name)
    _follow(client, spec, op, clock)
    done = _get(client, spec, clock)
    return ClusterInfo(spec, done.status.name, done.endpoint, created=True)


def delete_cluster(
    client: ClusterManagerClient,
    ref: ClusterRef,
    wait: Waiting | None = None,
    *,
    follow: bool = True,
) -> Deletion:
    """Delete the cluster with its nodes and follow the operation to the end.

    A cluster that is already gone is no error. One that is busy (being created, upgraded,
    repaired: GKE refuses a delete then) is waited for until it rests, then deleted; one
    being deleted already (an earlier run that timed out) is followed until it is gone.
    """
    clock = _Clock(wait or Waiting())
    cluster = _find_cluster(client, ref, clock)
    if cluster is None:
        return Deletion(ref, existed=False)
    waited = None
    while True:
        if cluster.status.name in ("PROVISIONING", "RECONCILING", "STOPPING"):
            waited = waited or cluster.status.name
            if cluster.status.name == "STOPPING" and not follow:
                return Deletion(ref, existed=True, waited_for=waited)
            resting = _wait_resting(client, ref, cluster, clock)
            if resting is None:
                return Deletion(ref, existed=True, waited_for=waited)
            cluster = resting
        try:
            op = _call(
                ref,
                client,
                clock,
                lambda: client.delete_cluster(name=ref.path, retry=None, timeout=REQUEST_TIMEOUT),
            )
        except GkeNotFound:
            return Deletion(ref, existed=True, waited_for=waited)
        except GkeConflict as e:
            # An operation the cluster's status does not show (a node pool upgrade, an
            # auto-repair): ask again after a poll interval, within the deadline.
            if clock.remaining() <= 0:
                raise WaitTimeout(
                    f"{e}; still busy after {clock.elapsed():.0f}s: run the command again"
                ) from e
            clock.wait.report(Progress(ref, "cluster", "BUSY", str(e), clock.elapsed()))
            waited = waited or "BUSY"
            clock.sleep(clock.wait.poll_interval)
            found = _find_cluster(client, ref, clock)
            if found is None:
                return Deletion(ref, existed=True, waited_for=waited)
            cluster = found
            continue
        if not follow:
            return Deletion(ref, existed=True, operation=op.name, waited_for=waited)
        _follow(client, ref, op, clock)
        return Deletion(ref, existed=True, waited_for=waited)
