"""Which GKE cluster and what `otactl gke create` asks for: the cluster's name and place,
its options, and the checks that refuse what GKE would refuse before any request."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from otactl.errors import ConfigError

DEFAULT_MACHINE_TYPE = "e2-standard-4"
DEFAULT_NODES = 2
DEFAULT_NODE_POOL = "ota-pool"
RELEASE_CHANNELS = ("rapid", "regular", "stable", "extended")
DISK_TYPES = ("pd-standard", "pd-balanced", "pd-ssd")
SCOPE_PREFIX = "https://www.googleapis.com/auth/"
# gcloud's `--scopes gke-default` (its default when --scopes is absent): what nodes need to
# pull images, write logs and metrics (gcloud container clusters create --help).
GKE_DEFAULT_SCOPES = tuple(
    SCOPE_PREFIX + s
    for s in (
        "devstorage.read_only",
        "logging.write",
        "monitoring",
        "service.management.readonly",
        "servicecontrol",
        "trace.append",
    )
)


@dataclass(frozen=True)
class ClusterRef:
    """Which cluster: `projects/<project>/locations/<location>/clusters/<name>`."""

    project: str
    location: str
    name: str

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def path(self) -> str:
        return f"{self.parent}/clusters/{self.name}"

    @property
    def regional(self) -> bool:
        """A region (europe-west1) rather than a zone (europe-west1-b)."""
        return is_region(self.location)

    def __str__(self) -> str:
        return f"gke cluster {self.path}"


def is_region(location: str) -> bool:
    """Zones end in a letter after the region's number: europe-west1-b; regions do not."""
    return re.fullmatch(r"[a-z]+-[a-z]+\d+", location) is not None


@dataclass(frozen=True)
class ClusterSpec(ClusterRef):
    """What `otactl gke create` asks for. `nodes`, `min_nodes` and `max_nodes` count per
    zone, as the API does. None means "GKE's default"."""

    machine_type: str = DEFAULT_MACHINE_TYPE
    nodes: int = DEFAULT_NODES
    node_pool: str = DEFAULT_NODE_POOL
    release_channel: str | None = None
    version: str | None = None
    min_nodes: int | None = None
    max_nodes: int | None = None
    disk_size_gb: int | None = None
    disk_type: str | None = None
    spot: bool = False
    node_zones: tuple[str, ...] = ()
    network: str | None = None
    subnetwork: str | None = None
    service_account: str | None = None
    scopes: tuple[str, ...] = ()
    private_nodes: bool = False
    master_cidr: str | None = None
    authorized_networks: tuple[str, ...] = ()
    workload_identity: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    autopilot: bool = False

    @property
    def oauth_scopes(self) -> list[str]:
        """Full scope URLs: gcloud's aliases (gke-default) and short names expanded."""
        out: list[str] = []
        for scope in self.scopes or ("gke-default",):
            if scope == "gke-default":
                out += GKE_DEFAULT_SCOPES
            else:
                out.append(scope if "://" in scope else SCOPE_PREFIX + scope)
        return list(dict.fromkeys(out))

    def check(self) -> None:
        """Refuse combinations GKE would refuse, before any request (ConfigError)."""
        where = f"{self}"
        if self.release_channel is not None and self.release_channel not in RELEASE_CHANNELS:
            raise ConfigError(
                f"{where}: release channel {self.release_channel!r} is not one of "
                f"{', '.join(RELEASE_CHANNELS)}"
            )
        if self.disk_type is not None and self.disk_type not in DISK_TYPES:
            raise ConfigError(f"{where}: disk type {self.disk_type!r} is not one of {DISK_TYPES}")
        if (self.min_nodes is None) != (self.max_nodes is None):
            raise ConfigError(f"{where}: autoscaling needs both --min-nodes and --max-nodes")
        low, high = self.min_nodes, self.max_nodes
        if low is not None and high is not None and not 0 <= low <= high:
            raise ConfigError(
                f"{where}: autoscaling needs 0 <= min-nodes <= max-nodes (got {low}..{high})"
            )
        for cidr in (*self.authorized_networks, *([self.master_cidr] if self.master_cidr else [])):
            try:
                ipaddress.ip_network(cidr)
            except ValueError:
                raise ConfigError(f"{where}: {cidr!r} is not a CIDR block") from None
        if self.master_cidr and not self.master_cidr.endswith("/28"):
            raise ConfigError(f"{where}: the control plane range must be a /28")
        if self.master_cidr and not self.private_nodes:
            raise ConfigError(f"{where}: a control plane range is for private nodes only")
        region = self.location if self.regional else self.location.rsplit("-", 1)[0]
        for zone in self.node_zones:
            if zone.rsplit("-", 1)[0] != region or is_region(zone):
                raise ConfigError(f"{where}: node zone {zone!r} is not a zone of {region}")
        if self.node_zones and not self.regional and self.location not in self.node_zones:
            raise ConfigError(f"{where}: the node zones of a zonal cluster include its zone")
        if self.autopilot:
            if not self.regional:
                raise ConfigError(f"{where}: Autopilot clusters are regional: pass a region")
            nodes = (
                self.min_nodes is not None
                or self.disk_size_gb is not None
                or self.disk_type is not None
                or self.spot
                or self.node_zones
                or self.machine_type != DEFAULT_MACHINE_TYPE
                or self.nodes != DEFAULT_NODES
            )
            if nodes:
                raise ConfigError(
                    f"{where}: Autopilot manages the nodes: drop the node options "
                    "(machine type, nodes, autoscaling, disks, spot, node zones)"
                )
