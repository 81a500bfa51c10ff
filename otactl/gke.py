"""Google Kubernetes Engine: create, delete, list and connect to clusters through the Container API.

The client is `google.cloud.container_v1.ClusterManagerClient` on its REST transport, built
by `make_client` from Application Default Credentials or a service-account file. Every core
function takes that client, so a caller (or a test) can point it at any endpoint. Google's
errors become one-line `GkeError`s naming the cluster; progress goes through a callback.
Reads and polls that fail in a way that can pass (connection reset, 429, 5xx) are retried
with backoff until the operation's deadline.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from otactl.errors import (
    ConfigError,
    GkeConflict,
    GkeCredentialsError,
    GkeError,
    GkeForbidden,
    GkeInvalid,
    GkeNotFound,
    GkeQuota,
    GkeUnreachable,
    WaitTimeout,
)
from otactl.fsutil import write_atomic

if TYPE_CHECKING:
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.credentials import Credentials
    from google.cloud.container_v1 import Cluster, ClusterManagerClient, Operation

T = TypeVar("T")

# Testing and emulator knob: send every Container API call to this base URL
# (e.g. http://127.0.0.1:8080) instead of https://container.googleapis.com.
ENDPOINT_ENV = "OTACTL_GKE_ENDPOINT"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# What gke-gcloud-auth-plugin asks for: the API server maps the token to an account by its
# e-mail (tokeninfo), which needs userinfo.email next to cloud-platform.
TOKEN_SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
)
AUTH_PLUGIN = "gke-gcloud-auth-plugin"
EXEC_API_VERSION = "client.authentication.k8s.io/v1"
DEFAULT_MACHINE_TYPE = "e2-standard-4"
DEFAULT_NODES = 2
DEFAULT_NODE_POOL = "ota-pool"
DEFAULT_TIMEOUT = 1800.0  # creating a cluster takes 5-15 minutes, deleting one a few
DEFAULT_POLL_INTERVAL = 5.0
# One HTTP request (not an operation) that hangs this long is a network problem.
REQUEST_TIMEOUT = 60.0
# Backoff between retries of a transient failure: doubling from FIRST_PAUSE, capped.
FIRST_PAUSE = 0.5
MAX_PAUSE = 30.0
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

# google.rpc.Code values found in a failed operation's `error.code`.
_RPC_ERRORS: dict[int, tuple[str, type[GkeError]]] = {
    3: ("invalid argument", GkeInvalid),
    5: ("not found", GkeNotFound),
    6: ("already exists", GkeConflict),
    7: ("permission denied", GkeForbidden),
    8: ("quota exhausted", GkeQuota),
    9: ("failed precondition", GkeError),
    10: ("aborted", GkeConflict),
    16: ("credentials rejected", GkeCredentialsError),
}
# google.rpc.ErrorInfo reasons that mean a quota ran out (google/api/error_reason.proto,
# plus GKE's own StatusCondition code GCE_QUOTA_EXCEEDED).
_QUOTA_REASONS = {"RATE_LIMIT_EXCEEDED", "RESOURCE_QUOTA_EXCEEDED", "GCE_QUOTA_EXCEEDED"}
# Compute Engine has no capacity for the machine type in the zone: not a quota, and it
# passes by itself or in another zone.
_STOCKOUT = re.compile(r"ZONE_RESOURCE_POOL_EXHAUSTED|GCE_STOCKOUT|does not have enough resources")


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


@dataclass(frozen=True)
class Progress:
    """One look at a long-running operation (or at the cluster while it changes)."""

    ref: ClusterRef
    operation: str
    status: str
    detail: str
    elapsed: float


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class Waiting:
    """How to wait for an operation: deadline (seconds), poll interval, progress callback."""

    timeout: float = DEFAULT_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    progress: ProgressFn | None = None

    def report(self, progress: Progress) -> None:
        if self.progress is not None:
            self.progress(progress)


class _Clock:
    """One deadline shared by every request and poll of a command."""

    def __init__(self, wait: Waiting) -> None:
        self.wait = wait
        self.start = time.monotonic()
        self.end = self.start + wait.timeout

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self.remaining())))


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


@dataclass(frozen=True)
class KubeconfigEntry:
    """What `write_kubeconfig` wrote."""

    context: str
    kubeconfig: Path
    server: str
    auth: str  # "gke-gcloud-auth-plugin" or "otactl gke token"


# --- client, credentials and project -------------------------------------------------------


def load_credentials(
    credentials_file: Path | None = None, scopes: Sequence[str] = SCOPES
) -> tuple[Credentials, str | None]:
    """Credentials from a service-account JSON key, else Application Default Credentials,
    with the project they name (the key's project_id, ADC's project), if any."""
    import google.auth
    from google.auth import exceptions as auth_exceptions

    if credentials_file is not None:
        return _service_account(Path(credentials_file), scopes)
    try:
        creds, project = google.auth.default(scopes=list(scopes))
    except auth_exceptions.DefaultCredentialsError as e:
        raise GkeCredentialsError(
            "no Google Cloud credentials found: pass --credentials FILE (service-account JSON) "
            "or set GOOGLE_APPLICATION_CREDENTIALS (Application Default Credentials)"
        ) from e
    return creds, project


def _service_account(path: Path, scopes: Sequence[str]) -> tuple[Credentials, str | None]:
    # Only service-account keys here: google-auth warns that its generic loader would also
    # run whatever an "external account" file names. Other kinds go through ADC.
    from google.oauth2 import service_account

    try:
        text = path.read_text()
    except FileNotFoundError as e:
        raise GkeCredentialsError(f"--credentials {path}: no such file") from e
    except OSError as e:
        raise GkeCredentialsError(f"--credentials {path}: cannot read: {e.strerror}") from e
    try:
        info = json.loads(text)
    except ValueError as e:
        raise GkeCredentialsError(f"--credentials {path}: not JSON") from e
    if not isinstance(info, dict) or info.get("type") != "service_account":
        kind = info.get("type") if isinstance(info, dict) else None
        raise GkeCredentialsError(
            f"--credentials {path}: not a service-account key (type {kind!r}); "
            "point GOOGLE_APPLICATION_CREDENTIALS at other kinds of credentials"
        )
    try:
        creds = service_account.Credentials.from_service_account_info(info, scopes=list(scopes))
    except ValueError as e:
        raise GkeCredentialsError(
            f"--credentials {path}: unusable service-account key: {_one_line(str(e))}"
        ) from e
    project = info.get("project_id")
    return creds, project if isinstance(project, str) and project else None


def resolve_project(explicit: str | None, credentials_project: str | None) -> str:
    """The project as gcloud and google-auth find it: --project, else $GOOGLE_CLOUD_PROJECT,
    else the project the credentials name (a key file's project_id, ADC's project)."""
    project = explicit or os.environ.get("GOOGLE_CLOUD_PROJECT") or credentials_project
    if not project:
        raise ConfigError(
            "no Google Cloud project: pass --project, set GOOGLE_CLOUD_PROJECT, "
            "or use credentials that name one (a service-account key's project_id)"
        )
    return project


def make_client(credentials: Credentials, endpoint: str | None = None) -> ClusterManagerClient:
    """A Container API client on the REST transport; `endpoint` may carry a scheme (http://)."""
    from google.cloud import container_v1

    options = {"api_endpoint": endpoint} if endpoint else None
    return container_v1.ClusterManagerClient(
        credentials=credentials, transport="rest", client_options=options
    )


# --- errors --------------------------------------------------------------------------------


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _numbered(text: str) -> list[str]:
    """The items of GKE's "(1) ... (2) ..." lists, or the whole text when it is not one."""
    parts = [p.strip() for p in re.split(r"(?:^|\s)\(\d+\)\s+", text.strip()) if p.strip()]
    return parts or [text.strip()]


def _quota_message(text: str) -> str:
    """Every quota GKE names, then each item shortened: a long list must not lose (2)."""
    items = _numbered(" ".join(text.split()))
    names = re.findall(r'(?:resource|Quota) [\\"\']*([A-Z][A-Z0-9_]+)', text)
    shown = "; ".join(_one_line(item, 200) for item in items)
    if names:
        return f"{', '.join(dict.fromkeys(names))}: {shown}"
    return shown


def _server_message(e: GoogleAPICallError) -> str:
    """The API's own message, without the method and URL api_core puts in front of it."""
    message = e.message
    # The body holds only the error here; its message field is all that is shown.
    with suppress(AttributeError, ValueError, KeyError, TypeError):
        message = e.response.json()["error"]["message"]
    return str(message)


def _status(e: GoogleAPICallError) -> str:
    """The error's canonical status name (FAILED_PRECONDITION, ...) from the body."""
    with suppress(AttributeError, ValueError, KeyError, TypeError):
        return str(e.response.json()["error"]["status"])
    return ""


def _is_busy(e: GoogleAPICallError) -> bool:
    """GKE's answer to a change while another operation runs on the cluster: 400
    FAILED_PRECONDITION ("... is currently creating cluster ...", "incompatible operation")."""
    from google.api_core import exceptions as api

    return isinstance(e, api.BadRequest | api.FailedPrecondition) and (
        _status(e) == "FAILED_PRECONDITION"
    )


def _api_error(ref: ClusterRef, e: GoogleAPICallError) -> GkeError:
    from google.api_core import exceptions as api

    raw = _server_message(e)
    reason = f" [{e.reason}]" if e.reason else ""  # ErrorInfo reason, e.g. SERVICE_DISABLED
    # Quota is what the ErrorInfo says it is. GKE answers a cluster beyond the regional
    # quota with 403 and the sentence "insufficient regional quota to satisfy request",
    # sometimes with no ErrorInfo: that sentence counts too, a stray word "quota" does not.
    quota = (
        e.reason in _QUOTA_REASONS
        or isinstance(e, api.TooManyRequests)
        or re.search(r"insufficient \w+ quota to satisfy request", raw, re.IGNORECASE)
    )
    if quota:
        return GkeQuota(f"{ref}: quota exhausted: {_quota_message(raw)}{reason}")
    message = _one_line(raw) + reason
    if _is_busy(e):
        return GkeConflict(f"{ref}: busy with another operation: {message}")
    if isinstance(e, api.Unauthorized):
        return GkeCredentialsError(f"{ref}: credentials rejected: {message}")
    kinds: tuple[tuple[type[Exception], str, type[GkeError]], ...] = (
        (api.Forbidden, "permission denied", GkeForbidden),
        (api.NotFound, "not found", GkeNotFound),
        (api.Conflict, "conflict", GkeConflict),
        (api.BadRequest, "invalid request", GkeInvalid),
    )
    for cls, kind, error in kinds:
        if isinstance(e, cls):
            return error(f"{ref}: {kind}: {message}")
    return GkeError(f"{ref}: GKE API error {e.code}: {message}")


def _connection_reason(e: BaseException) -> str:
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(e))
    if match:
        return match.group(1).strip()
    if "RemoteDisconnected" in str(e) or "Connection aborted" in str(e):
        return "connection closed by the server"
    return type(e).__name__


def _transient(cause: BaseException | None) -> bool:
    """What can pass by itself: no connection or a reset one, 429, and the server's 5xx."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth_exceptions

    if isinstance(cause, api.GoogleAPICallError):
        return cause.code in (429, 500, 502, 503, 504)
    return isinstance(
        cause, requests.ConnectionError | requests.Timeout | auth_exceptions.TransportError
    )


@contextmanager
def _calling(ref: ClusterRef, client: ClusterManagerClient | None = None) -> Iterator[None]:
    """Turn what Google's libraries raise into one-line errors that name the cluster."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth_exceptions

    try:
        yield
    except api.GoogleAPICallError as e:
        raise _api_error(ref, e) from e
    except auth_exceptions.RefreshError as e:
        # args[0] is the token endpoint's "error: description"; args[1] its whole answer.
        reason = str(e.args[0]) if e.args else str(e)
        raise GkeCredentialsError(
            f"{ref}: Google refused the credentials: {_one_line(reason)}"
        ) from e
    except auth_exceptions.TransportError as e:
        raise GkeUnreachable(
            f"{ref}: cannot reach Google's token endpoint: {_connection_reason(e)}"
        ) from e
    except (api.RetryError, requests.RequestException) as e:
        where = f" at {client.api_endpoint}" if client is not None else ""
        raise GkeUnreachable(
            f"{ref}: cannot reach the GKE API{where}: {_connection_reason(e)}"
        ) from e


def _call(
    ref: ClusterRef, client: ClusterManagerClient, clock: _Clock | None, fn: Callable[[], T]
) -> T:
    """One API call; a transient failure is retried with backoff until the clock's
    deadline (none: at once an error), then raised as it came. The calls pass retry=None:
    api_core's own retry (503 only, its own 20 s deadline) would not know this one."""
    attempt = 0
    while True:
        try:
            with _calling(ref, client):
                return fn()
        except GkeError as e:
            pause = min(FIRST_PAUSE * 2**attempt, MAX_PAUSE)
            if clock is None or not _transient(e.__cause__) or clock.remaining() <= pause:
                raise
            clock.wait.report(
                Progress(ref, "retry", "RETRYING", _one_line(str(e), 120), clock.elapsed())
            )
            clock.sleep(pause)
            attempt += 1


def _operation_error(ref: ClusterRef, op: Operation) -> GkeError | None:
    """The error a finished operation carries, if it failed."""
    from google.cloud.container_v1 import StatusCondition

    code = op.error.code
    message = op.error.message or op.status_message
    if not code and not message:
        return None
    verb = op.operation_type.name.lower().replace("_", " ")
    head = f"{ref}: {verb} operation {op.name} failed"
    conditions = {c.code for c in op.cluster_conditions}
    texts = " ".join([message, *(c.message for c in op.cluster_conditions)])
    if StatusCondition.Code.GCE_STOCKOUT in conditions or _STOCKOUT.search(texts):
        return GkeError(
            f"{head}: Google Cloud has no capacity for these nodes in this zone now "
            f"(stockout, not a quota): {_one_line(message)}; delete the cluster and try "
            "another zone (--node-zones), another machine type, or later"
        )
    if code == 8 or StatusCondition.Code.GCE_QUOTA_EXCEEDED in conditions:
        return GkeQuota(f"{head}: quota exhausted: {_quota_message(message)}")
    kind, error = _RPC_ERRORS.get(code, ("failed", GkeError))
    return error(f"{head}: {kind}: {_one_line(message)}")


# --- operations ----------------------------------------------------------------------------


def _stage(op: Operation) -> str:
    """The stage an operation is in, from `progress.stages` (the API's own step names)."""
    from google.cloud.container_v1 import Operation

    for stage in op.progress.stages:
        if stage.status == Operation.Status.RUNNING:
            return stage.name
    return op.detail


def _follow(client: ClusterManagerClient, ref: ClusterRef, op: Operation, clock: _Clock) -> None:
    """Poll an operation until DONE; raise its error, or WaitTimeout at the deadline.

    The Container API offers no watch or blocking wait on operations, so this polls.
    """
    from google.cloud.container_v1 import Operation

    name = f"{ref.parent}/operations/{op.name}"
    while True:
        clock.wait.report(Progress(ref, op.name, op.status.name, _stage(op), clock.elapsed()))
        if op.status == Operation.Status.DONE:
            error = _operation_error(ref, op)
            if error is not None:
                raise error
            return
        if clock.remaining() <= 0:
            raise WaitTimeout(
                f"{ref}: operation {op.name} still {op.status.name} after "
                f"{clock.elapsed():.0f}s; it goes on in Google Cloud: run the command again "
                "to wait for it"
            )
        clock.sleep(clock.wait.poll_interval)
        op = _call(
            ref,
            client,
            clock,
            lambda: client.get_operation(name=name, retry=None, timeout=REQUEST_TIMEOUT),
        )


def _wait_resting(
    client: ClusterManagerClient, ref: ClusterRef, cluster: Cluster | None, clock: _Clock
) -> Cluster | None:
    """Wait while the cluster changes (PROVISIONING, RECONCILING, STOPPING) until it rests
    (RUNNING, DEGRADED, ERROR) or is gone (None), as Terraform does before a delete."""
    from google.cloud.container_v1 import Cluster

    busy = (Cluster.Status.PROVISIONING, Cluster.Status.RECONCILING, Cluster.Status.STOPPING)
    while cluster is not None and cluster.status in busy:
        clock.wait.report(
            Progress(ref, "cluster", cluster.status.name, cluster.status_message, clock.elapsed())
        )
        if clock.remaining() <= 0:
            raise WaitTimeout(
                f"{ref}: still {cluster.status.name} after {clock.elapsed():.0f}s; "
                "it goes on in Google Cloud: run the command again to wait for it"
            )
        clock.sleep(clock.wait.poll_interval)
        cluster = _find_cluster(client, ref, clock)
    return cluster


def get_cluster(
    client: ClusterManagerClient, ref: ClusterRef, wait: Waiting | None = None
) -> Cluster:
    """The cluster as the API describes it; GkeNotFound when there is none. With `wait`,
    transient failures are retried until its deadline."""
    clock = _Clock(wait) if wait is not None else None
    return _get(client, ref, clock)


def _get(client: ClusterManagerClient, ref: ClusterRef, clock: _Clock | None) -> Cluster:
    return _call(
        ref,
        client,
        clock,
        lambda: client.get_cluster(name=ref.path, retry=None, timeout=REQUEST_TIMEOUT),
    )


def _find_cluster(
    client: ClusterManagerClient, ref: ClusterRef, clock: _Clock | None
) -> Cluster | None:
    try:
        return _get(client, ref, clock)
    except GkeNotFound:
        return None


def list_clusters(
    client: ClusterManagerClient, project: str, location: str | None, wait: Waiting | None = None
) -> list[Cluster]:
    """The project's clusters in one location, or in all (`location` None: "-")."""
    ref = ClusterRef(project, location or "-", "*")
    clock = _Clock(wait or Waiting(timeout=120))
    parent = ref.parent
    answer = _call(
        ref,
        client,
        clock,
        lambda: client.list_clusters(parent=parent, retry=None, timeout=REQUEST_TIMEOUT),
    )
    if answer.missing_zones:
        raise GkeUnreachable(
            f"projects/{project}: GKE could not list the clusters of "
            f"{', '.join(answer.missing_zones)}; run the command again"
        )
    return sorted(answer.clusters, key=lambda c: (c.location, c.name))


def cluster_json(cluster: Cluster) -> dict[str, Any]:
    """The cluster as the API's JSON (camelCase), as `gcloud ... describe --format json`."""
    from google.cloud.container_v1 import Cluster

    return dict(json.loads(Cluster.to_json(cluster, use_integers_for_enums=False)))


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


# --- kubeconfig ----------------------------------------------------------------------------


def default_kubeconfig() -> Path:
    """The file kubectl writes to: the first of $KUBECONFIG, else ~/.kube/config."""
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return Path(paths[0]) if paths else Path.home() / ".kube" / "config"


def context_name(ref: ClusterRef) -> str:
    """gcloud's name for the context, so both tools update the same entry."""
    return f"gke_{ref.project}_{ref.location}_{ref.name}"


def _kubeconfig_path(kubeconfig: Path | None) -> Path:
    path = Path(kubeconfig) if kubeconfig is not None else default_kubeconfig()
    # Write through a symlink (dotfile managers) rather than replacing it with a file.
    return path.resolve() if path.is_symlink() else path


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read kubeconfig: {e.strerror}") from e
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: kubeconfig is not valid YAML") from e
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: kubeconfig must be a mapping at the top level")
    return doc


def _entries(doc: dict[str, Any], section: str) -> list[Any]:
    entries = doc.get(section) or []
    if not isinstance(entries, list):
        raise ConfigError(f"kubeconfig: {section} must be a list")
    return entries


def _put(doc: dict[str, Any], section: str, name: str, key: str, body: dict[str, Any]) -> None:
    """Replace or append the named entry of a kubeconfig list (clusters, users, contexts)."""
    entries = [
        e for e in _entries(doc, section) if not (isinstance(e, dict) and e.get("name") == name)
    ]
    entries.append({"name": name, key: body})
    doc[section] = entries


def _pinned_identity(credentials_file: Path | None) -> list[dict[str, str]]:
    """The credentials file the user chose (--credentials, else GOOGLE_APPLICATION_CREDENTIALS),
    as the exec plugin's environment: the plugin then acts as that identity, whatever the
    shell that runs kubectl later has set."""
    chosen = credentials_file or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or None
    if chosen is None:
        return []
    return [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": str(Path(chosen).resolve())}]


def _user_entry(credentials_file: Path | None, auth_plugin: bool) -> dict[str, Any]:
    env = _pinned_identity(credentials_file)
    if auth_plugin:
        plugin: dict[str, Any] = {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": AUTH_PLUGIN,  # found on PATH when used, as kubectl and gcloud do
            # Without this flag the plugin asks the gcloud CLI for a token.
            "args": ["--use_application_default_credentials"],
            "installHint": f"Install {AUTH_PLUGIN} (Google Cloud SDK component) "
            "or run `otactl gke credentials` again",
            "provideClusterInfo": True,
            "interactiveMode": "IfAvailable",
        }
    else:
        # otactl itself, by the interpreter that runs it now: found whether or not a
        # virtualenv's bin/ is on the PATH of whoever runs kubectl.
        args = ["-m", "otactl", "gke", "token"]
        if credentials_file is not None:
            args += ["--credentials", str(Path(credentials_file).resolve())]
        plugin = {
            "apiVersion": EXEC_API_VERSION,
            "command": sys.executable,
            "args": args,
            "installHint": "otactl mints this token; run `otactl gke credentials` again if "
            "otactl moved",
            "provideClusterInfo": False,
            "interactiveMode": "Never",
        }
    if env:
        plugin["env"] = env
    return {"exec": plugin}


def write_kubeconfig(
    client: ClusterManagerClient,
    ref: ClusterRef,
    *,
    kubeconfig: Path | None = None,
    context: str | None = None,
    credentials_file: Path | None = None,
    auth_plugin: bool = False,
    internal_ip: bool = False,
    dns_endpoint: bool = False,
    wait: Waiting | None = None,
) -> KubeconfigEntry:
    """Add (or refresh) the cluster's context in a kubeconfig and make it current.

    The user entry runs an exec credential plugin, so kubectl gets a fresh token each
    time: gke-gcloud-auth-plugin with `auth_plugin`, else `otactl gke token`; both on the
    identity the user chose. `internal_ip` uses the control plane's private address,
    `dns_endpoint` its DNS name (with a publicly trusted certificate: no CA written).
    A cluster still being created is waited for (within `wait`). The file is rewritten
    atomically with mode 0600, other entries kept.
    """
    clock = _Clock(wait or Waiting())
    cluster = _wait_resting(client, ref, _get(client, ref, clock), clock)
    if cluster is None:
        raise GkeNotFound(f"{ref}: not found: it was deleted while otactl waited")
    cluster_entry: dict[str, Any]
    if dns_endpoint:
        host = cluster.control_plane_endpoints_config.dns_endpoint_config.endpoint
        if not host:
            raise GkeError(f"{ref}: has no DNS endpoint (enable it on the cluster first)")
        cluster_entry = {"server": f"https://{host}"}
    else:
        host = cluster.private_cluster_config.private_endpoint if internal_ip else cluster.endpoint
        if not host:
            what = "private endpoint" if internal_ip else "endpoint"
            raise GkeError(f"{ref}: has no {what} (status {cluster.status.name})")
        ca = cluster.master_auth.cluster_ca_certificate
        try:
            base64.b64decode(ca, validate=True)
        except ValueError as e:
            raise GkeError(f"{ref}: the API returned a cluster CA that is not base64") from e
        cluster_entry = {"server": f"https://{host}", "certificate-authority-data": ca}
    user = _user_entry(credentials_file, auth_plugin)
    path = _kubeconfig_path(kubeconfig)
    name = context or context_name(ref)
    doc = _read_kubeconfig(path)
    doc.setdefault("apiVersion", "v1")
    doc.setdefault("kind", "Config")
    doc.setdefault("preferences", {})
    _put(doc, "clusters", name, "cluster", cluster_entry)
    _put(doc, "users", name, "user", user)
    _put(doc, "contexts", name, "context", {"cluster": name, "user": name})
    doc["current-context"] = name
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, yaml.safe_dump(doc, sort_keys=False), mode=0o600)
    auth = AUTH_PLUGIN if auth_plugin else "otactl gke token"
    return KubeconfigEntry(name, path, cluster_entry["server"], auth)


def forget_kubeconfig(
    ref: ClusterRef, *, kubeconfig: Path | None = None, context: str | None = None
) -> list[str]:
    """Remove the cluster's context with its cluster and user entries, as gcloud does on
    delete, and unset current-context when it named it. Returns the names removed."""
    path = _kubeconfig_path(kubeconfig)
    doc = _read_kubeconfig(path)
    names = {context or context_name(ref)}
    found = [
        e["name"]
        for e in _entries(doc, "contexts")
        if isinstance(e, dict) and e.get("name") in names
    ]
    if not found:
        return []
    for section in ("contexts", "clusters", "users"):
        doc[section] = [
            e
            for e in _entries(doc, section)
            if not (isinstance(e, dict) and e.get("name") in found)
        ]
    if doc.get("current-context") in found:
        doc["current-context"] = ""
    write_atomic(path, yaml.safe_dump(doc, sort_keys=False), mode=0o600)
    return found


def exec_credential(credentials: Credentials) -> dict[str, Any]:
    """An `ExecCredential` (client.authentication.k8s.io/v1) with a fresh access token and
    its expiry, as kubectl expects from an exec plugin (gke-gcloud-auth-plugin's output)."""
    import google.auth.transport.requests
    from google.auth import exceptions as auth_exceptions

    try:
        credentials.refresh(google.auth.transport.requests.Request())
    except auth_exceptions.RefreshError as e:
        reason = str(e.args[0]) if e.args else str(e)
        raise GkeCredentialsError(
            f"Google refused the credentials: {_one_line(reason)}; fix them, then run "
            "`otactl gke credentials` again"
        ) from e
    except auth_exceptions.TransportError as e:
        raise GkeUnreachable(
            f"cannot reach Google's token endpoint: {_connection_reason(e)}"
        ) from e
    status: dict[str, Any] = {"token": credentials.token}
    if credentials.expiry is not None:
        # google-auth keeps expiry as a naive UTC datetime.
        expiry = credentials.expiry.replace(tzinfo=UTC)
        status["expirationTimestamp"] = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"apiVersion": EXEC_API_VERSION, "kind": "ExecCredential", "status": status}


def expiry_of(credential: dict[str, Any]) -> datetime | None:
    value = credential["status"].get("expirationTimestamp")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if value else None
