"""The typed values: what each setting may be (pydantic models, strict, frozen), checked
once after merging, and what `Values` derives from them (public names, images)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
HOSTNAME = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(Strict):
    cpu: str = Field(pattern=QUANTITY, description="CPU request")
    memory: str = Field(pattern=QUANTITY, description="memory request, also the limit")
    cpu_limit: str | None = Field(default=None, pattern=QUANTITY)


def _pinned(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    if "@sha256:" not in image and (":" not in name or name.endswith(":latest")):
        raise ValueError("image must be pinned to a tag or digest (not latest)")
    return image


Image = Annotated[str, Field(min_length=1), AfterValidator(_pinned)]


class Component(Strict):
    image: Image
    replicas: int = Field(default=1, ge=0, le=20)
    resources: Resources


class StatefulComponent(Component):
    storage: str = Field(pattern=QUANTITY)


class Infra(Strict):
    zookeeper: StatefulComponent
    kafka: StatefulComponent
    mysql: StatefulComponent


class ScalaService(Component):
    java_heap: str = Field(pattern=r"^[0-9]+[mg]$", description="JVM -Xmx")


class StoredScalaService(ScalaService):
    """A service that keeps files on a PersistentVolumeClaim (treehub objects, targets)."""

    storage: str = Field(pattern=QUANTITY)


class Services(Strict):
    app: ScalaService
    campaigner: ScalaService
    campaigner_daemon: ScalaService
    device_registry: ScalaService
    device_registry_daemon: ScalaService
    director: ScalaService
    director_daemon: ScalaService
    tuf_keyserver: ScalaService
    tuf_keyserver_daemon: ScalaService
    tuf_reposerver: StoredScalaService
    web_events: ScalaService
    treehub: StoredScalaService


class Gateway(Component):
    service_type: ServiceType
    node_port: int | None = Field(default=None, ge=30000, le=32767)
    extra_dns_names: list[str] = []
    extra_ips: list[str] = []
    load_balancer_ip: str | None = None

    @field_validator("extra_dns_names")
    @classmethod
    def _hostnames(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.match(HOSTNAME, name.removeprefix("*.")):
                raise ValueError(f"{name!r} is not a DNS name")
        return v

    @field_validator("extra_ips", "load_balancer_ip")
    @classmethod
    def _ips(cls, v: Any) -> Any:
        for ip in [v] if isinstance(v, str) else v or []:
            ipaddress.ip_address(ip)
        return v


class ReverseProxy(Component):
    service_type: ServiceType
    node_port: int | None = Field(default=None, ge=30000, le=32767)
    user: str = Field(default="ota", pattern=r"^[A-Za-z0-9._-]{1,32}$")


class Ingress(Strict):
    enabled: bool = False
    class_name: str = "nginx"
    tls_secret: str | None = None


class NetworkPolicy(Strict):
    """NetworkPolicies derived from the rendered configuration (otactl.security)."""

    enabled: bool = True
    # Where the API server's service proxy connects from (`otactl health`); [] means no
    # such rule (then a CNI that enforces NetworkPolicy blocks the health checks).
    apiserver_cidrs: list[str] = []

    @field_validator("apiserver_cidrs")
    @classmethod
    def _cidrs(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:
            ipaddress.ip_network(cidr)  # ValueError: pydantic reports it with the key
        return cidrs


class Pki(Strict):
    key_type: Literal["ec", "rsa"] = "ec"
    ca_days: int = Field(default=3650, ge=1, le=36500)
    server_days: int = Field(default=825, ge=1, le=36500)
    device_days: int = Field(default=365, ge=1, le=36500)
    device_key_type: Literal["ec", "rsa"] | None = None  # None: as key_type


class Device(Strict):
    # implicit: the old name of legacy-2018 (otactl.devices.FORMATS has the releases)
    format: Literal["device-cred", "legacy-2018", "implicit"] = "device-cred"
    hardware_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,200}$")
    polling_sec: int = Field(default=10, ge=1)
    package_manager: Literal["ostree", "none"] = "ostree"
    ostree_server: str | None = None
    storage_path: str = "/var/sota/"


class Timeouts(Strict):
    infra: float = Field(gt=0)
    bootstrap: float = Field(gt=0)
    services: float = Field(gt=0)
    health: float = Field(gt=0)
    credentials: float = Field(gt=0)


class Gke(Strict):
    """`otactl gke create|credentials|delete` settings (the gke profile sets them); each
    has a flag of the same name that overrides it. None: GKE's own default."""

    project: str | None = None
    location: str | None = Field(default=None, pattern=r"^[a-z]+-[a-z]+[0-9]+(-[a-z])?$")
    machine_type: str = "e2-standard-4"
    nodes: int = Field(default=2, ge=1, description="nodes per zone")
    min_nodes: int | None = Field(default=None, ge=0, description="autoscaling, per zone")
    max_nodes: int | None = Field(default=None, ge=1)
    disk_size_gb: int | None = Field(default=None, ge=10)
    disk_type: Literal["pd-standard", "pd-balanced", "pd-ssd"] | None = None
    spot: bool = False
    node_zones: list[str] = []
    release_channel: Literal["rapid", "regular", "stable", "extended"] | None = None
    version: str | None = None
    network: str | None = None
    subnetwork: str | None = None
    service_account: str | None = None
    scopes: list[str] = []
    private_nodes: bool = False
    master_cidr: str | None = None
    authorized_networks: list[str] = []
    workload_identity: bool = False
    labels: dict[str, str] = {}
    autopilot: bool = False


class Values(Strict):
    namespace: str = Field(pattern=DNS_LABEL)
    server_name: str = Field(
        pattern=HOSTNAME, max_length=253, description="gateway host name devices use"
    )
    domain: str = Field(pattern=HOSTNAME, description="public names: app.<domain>, ...")
    tenant: str = Field(default="default", min_length=1, description="x-ats-namespace")
    storage_class: str = Field(pattern=DNS_LABEL)
    node_pool: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    gateway: Gateway
    reverse_proxy: ReverseProxy
    ingress: Ingress = Ingress()
    network_policy: NetworkPolicy = NetworkPolicy()
    infra: Infra
    services: Services
    bootstrap_image: Image
    init_image: Image
    pki: Pki = Pki()
    device: Device
    timeouts: Timeouts
    gke: Gke = Gke()

    def public_names(self) -> list[str]:
        """Host names behind the reverse proxy (or ingress): app, tuf-reposerver, ..."""
        return [
            f"{host}.{self.domain}" for host in ("app", "tuf-reposerver", "treehub", "web-events")
        ]

    def images(self) -> dict[str, str]:
        """Every image a deployment runs, by component (dashed names, as the manifests
        call them): the pinned set `otactl version` shows."""
        images = {
            "gateway": self.gateway.image,
            "reverse-proxy": self.reverse_proxy.image,
            "bootstrap": self.bootstrap_image,
            "init": self.init_image,
        }
        for group in (self.infra, self.services):
            for name in type(group).model_fields:
                images[name.replace("_", "-")] = getattr(group, name).image
        return images

    def server_dns_names(self) -> list[str]:
        """DNS names of the server certificate beyond `server_name`: the configured extra
        names, and the public names (the reverse proxy serves TLS with the same certificate)."""
        return [*self.gateway.extra_dns_names, *self.public_names()]
