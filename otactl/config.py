"""Values: shipped defaults, an optional profile, the user's file and `--set`, merged and
validated once into one typed `Values` object."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from otactl.errors import ConfigError

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


# --- loading ---------------------------------------------------------------------------


def project_root() -> Path:
    """Where `templates/` and `contrib/` live: the package (wheel) or the source checkout."""
    here = Path(__file__).resolve().parent
    return here if (here / "templates").is_dir() else here.parent


def templates_dir() -> Path:
    return project_root() / "templates"


def profiles() -> list[str]:
    """Profiles are values files shipped in `templates/profiles/`."""
    return sorted(p.stem for p in (templates_dir() / "profiles").glob("*.yaml"))


@dataclass(frozen=True)
class Layer:
    """One source of values, kept so an error can say where a bad key came from."""

    source: str
    data: dict[str, Any]
    text: str | None = None


def _load_yaml(path: Path) -> Layer:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read values file: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise ConfigError(f"{where}: malformed YAML: {problem}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: values must be a mapping at the top level")
    return Layer(str(path), data, text)


def parse_set(expr: str) -> Layer:
    """`a.b=value` into a layer: the value read as YAML (a scalar, `[x, y]`, `{k: v}`),
    `{x,y}` a list as helm reads it; keys may use the dashed names the CLI prints
    (`services.campaigner-daemon.replicas`)."""
    key, sep, raw = expr.partition("=")
    if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$", key):
        raise ConfigError(f"--set {expr}: expected KEY.PATH=VALUE")
    key = key.replace("-", "_")
    helm_list = re.fullmatch(r"\{([^:{}]*)\}", raw.strip())
    try:
        if helm_list:
            items = [i.strip() for i in helm_list.group(1).split(",")]
            value: Any = [yaml.safe_load(i) if i else "" for i in items if i] if any(items) else []
        else:
            value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {expr}: value is not valid YAML") from e
    data: dict[str, Any] = {}
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return Layer(f"--set {expr}", data)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _has_path(data: Any, path: tuple[Any, ...]) -> bool:
    for part in path:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if in_dict or in_list:
            data = data[part]
        else:
            return False
    return True


def _line_of(text: str, path: tuple[Any, ...]) -> int | None:
    """Line of `path` in a YAML document, from its node tree (marks survive there)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _explain(e: ValidationError, layers: list[Layer]) -> ConfigError:
    """Every error of the values, each as `where: key: message`, on one line."""
    problems = [_one_problem(err, layers) for err in e.errors()]
    if len(problems) == 1:
        return ConfigError(problems[0])
    return ConfigError(f"{len(problems)} problems in the values: " + "; ".join(problems))


def _one_problem(err: Any, layers: list[Layer]) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required value missing"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        if "input" in err and not isinstance(err["input"], dict | list):
            msg += f" (got {err['input']!r})"
    # The last layer that mentions the key (or its nearest parent) is where it came from.
    where = "values"
    layer = None
    for depth in range(len(loc), 0, -1):
        hits = [layer for layer in layers if _has_path(layer.data, loc[:depth])]
        if hits:
            layer = hits[-1]
            line = _line_of(layer.text, loc[:depth]) if layer.text else None
            where = f"{layer.source}:{line}" if line else layer.source
            break
    if err["type"] == "string_type" and "input" in err:
        # YAML read `1.10`, `007`, `yes` or `null` as something else than the text typed.
        if layer is not None and layer.source.startswith("--set "):
            typed = layer.source.partition("=")[2]
            msg += f"; to pass it as a string, quote it: --set '{key}=\"{typed}\"'"
        else:
            msg += "; to pass it as a string, quote it in YAML"
    return f"{where}: {key}: {msg}"


def user_config_path(explicit: Path | None) -> Path | None:
    """`--config`, else `$OTACTL_CONFIG`, else `./otactl.yaml` when present."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("OTACTL_CONFIG")
    if env:
        return Path(env)
    from otactl.project import config_file

    return config_file()


def load_values(
    config: Path | None = None, sets: list[str] | None = None, profile: str | None = None
) -> Values:
    """Merge defaults → profile (`--profile`, else `$OTACTL_PROFILE`) → user file →
    `--set` and validate once."""
    layers = [_load_yaml(templates_dir() / "values.yaml")]
    flag = "--profile "
    if profile is None and os.environ.get("OTACTL_PROFILE"):
        profile, flag = os.environ["OTACTL_PROFILE"], "OTACTL_PROFILE="
    if profile is not None:
        if profile not in profiles():
            known = ", ".join(profiles())
            raise ConfigError(f"{flag}{profile}: unknown profile (known: {known})")
        layers.append(_load_yaml(templates_dir() / "profiles" / f"{profile}.yaml"))
    user = user_config_path(config)
    if user is not None:
        layers.append(_load_yaml(user))
    layers += [parse_set(s) for s in sets or []]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer.data)
    try:
        return Values.model_validate(merged)
    except ValidationError as e:
        raise _explain(e, layers) from None
