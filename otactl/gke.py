"""Google Kubernetes Engine: create, delete and connect to a cluster through the Container API.

The client is `google.cloud.container_v1.ClusterManagerClient` on its REST transport, built
by `make_client` from Application Default Credentials or a service-account file. Every core
function takes that client, so a caller (or a test) can point it at any endpoint. Google's
errors become one-line `GkeError`s naming the cluster; progress goes through a callback.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

# Testing and emulator knob: send every Container API call to this base URL
# (e.g. http://127.0.0.1:8080) instead of https://container.googleapis.com.
ENDPOINT_ENV = "OTACTL_GKE_ENDPOINT"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
AUTH_PLUGIN = "gke-gcloud-auth-plugin"
DEFAULT_MACHINE_TYPE = "e2-standard-4"
DEFAULT_NODES = 2
DEFAULT_NODE_POOL = "ota-pool"
DEFAULT_TIMEOUT = 1800.0  # creating a cluster takes 5-15 minutes, deleting one a few
DEFAULT_POLL_INTERVAL = 5.0
# One HTTP request (not an operation) that hangs this long is a network problem.
REQUEST_TIMEOUT = 60.0

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

    def __str__(self) -> str:
        return f"gke cluster {self.path}"


@dataclass(frozen=True)
class ClusterSpec(ClusterRef):
    """The settings `otactl gke create` asks for; `nodes` counts per zone, as the API does."""

    machine_type: str = DEFAULT_MACHINE_TYPE
    nodes: int = DEFAULT_NODES
    node_pool: str = DEFAULT_NODE_POOL


@dataclass(frozen=True)
class Progress:
    """One look at a long-running operation (or at the cluster while it provisions)."""

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


@dataclass(frozen=True)
class ClusterInfo:
    """What `create` found or made."""

    ref: ClusterRef
    status: str
    endpoint: str
    created: bool


@dataclass(frozen=True)
class KubeconfigEntry:
    """What `write_kubeconfig` wrote."""

    context: str
    kubeconfig: Path
    server: str
    auth: str  # "gke-gcloud-auth-plugin" or "token"
    token_expiry: datetime | None


# --- client and credentials --------------------------------------------------------------


def load_credentials(credentials_file: Path | None = None) -> Credentials:
    """Credentials from a service-account JSON key, else Application Default Credentials."""
    import google.auth
    from google.auth import exceptions as auth_exceptions

    if credentials_file is not None:
        return _service_account(Path(credentials_file))
    try:
        creds, _ = google.auth.default(scopes=list(SCOPES))
    except auth_exceptions.DefaultCredentialsError as e:
        raise GkeCredentialsError(
            "no Google Cloud credentials found: pass --credentials FILE (service-account JSON) "
            "or set GOOGLE_APPLICATION_CREDENTIALS (Application Default Credentials)"
        ) from e
    return creds


def _service_account(path: Path) -> Credentials:
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
        return service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))
    except ValueError as e:
        raise GkeCredentialsError(
            f"--credentials {path}: unusable service-account key: {_one_line(str(e))}"
        ) from e


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


def _server_message(e: GoogleAPICallError) -> str:
    """The API's own message, without the method and URL api_core puts in front of it."""
    message = e.message
    # The body holds only the error here; its message field is all that is shown.
    with suppress(AttributeError, ValueError, KeyError, TypeError):
        message = e.response.json()["error"]["message"]
    if e.reason:  # ErrorInfo reason, e.g. SERVICE_DISABLED
        message = f"{message} [{e.reason}]"
    return _one_line(str(message))


def _api_error(ref: ClusterRef, e: GoogleAPICallError) -> GkeError:
    from google.api_core import exceptions as api

    message = _server_message(e)
    # GKE refuses a cluster beyond the project's regional quota with a 403 ("Insufficient
    # regional quota to satisfy request: resource "CPUS" ..."), not a 429: that is no
    # permission to fix, so it is reported and exits as quota.
    if isinstance(e, api.Forbidden) and re.search(r"\bquota\b", message, re.IGNORECASE):
        return GkeQuota(f"{ref}: quota exhausted: {message}")
    kinds: tuple[tuple[type[Exception], str, type[GkeError]], ...] = (
        (api.Unauthorized, "credentials rejected", GkeCredentialsError),
        (api.Forbidden, "permission denied", GkeForbidden),
        (api.NotFound, "not found", GkeNotFound),
        (api.Conflict, "conflict", GkeConflict),
        (api.TooManyRequests, "quota exhausted", GkeQuota),
        (api.BadRequest, "invalid request", GkeInvalid),
    )
    for cls, kind, error in kinds:
        if isinstance(e, cls):
            return error(f"{ref}: {kind}: {message}")
    return GkeError(f"{ref}: GKE API error {e.code}: {message}")


def _connection_reason(e: BaseException) -> str:
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(e))
    return match.group(1).strip() if match else type(e).__name__


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


def _operation_error(ref: ClusterRef, op: Operation) -> GkeError | None:
    """The error a finished operation carries, if it failed."""
    code = op.error.code
    message = op.error.message or op.status_message
    if not code and not message:
        return None
    kind, error = _RPC_ERRORS.get(code, ("failed", GkeError))
    verb = op.operation_type.name.lower().replace("_", " ")
    return error(f"{ref}: {verb} operation {op.name} failed: {kind}: {_one_line(message)}")


# --- operations ----------------------------------------------------------------------------


def _follow(client: ClusterManagerClient, ref: ClusterRef, op: Operation, wait: Waiting) -> None:
    """Poll an operation until DONE; raise its error, or WaitTimeout at the deadline.

    The Container API offers no watch or blocking wait on operations, so this polls.
    """
    from google.cloud.container_v1 import Operation

    start = time.monotonic()
    name = f"{ref.parent}/operations/{op.name}"
    while True:
        wait.report(Progress(ref, op.name, op.status.name, op.detail, time.monotonic() - start))
        if op.status == Operation.Status.DONE:
            error = _operation_error(ref, op)
            if error is not None:
                raise error
            return
        elapsed = time.monotonic() - start
        if elapsed >= wait.timeout:
            raise WaitTimeout(
                f"{ref}: operation {op.name} still {op.status.name} after {elapsed:.0f}s; "
                "it goes on in Google Cloud"
            )
        time.sleep(min(wait.poll_interval, wait.timeout - elapsed))
        with _calling(ref, client):
            op = client.get_operation(name=name, timeout=REQUEST_TIMEOUT)


def _wait_provisioned(
    client: ClusterManagerClient, ref: ClusterRef, cluster: Cluster, wait: Waiting
) -> Cluster:
    """Wait for a cluster someone else is creating (or reconciling) to be RUNNING."""
    from google.cloud.container_v1 import Cluster

    busy = (Cluster.Status.PROVISIONING, Cluster.Status.RECONCILING)
    start = time.monotonic()
    while cluster.status in busy:
        elapsed = time.monotonic() - start
        wait.report(Progress(ref, "cluster", cluster.status.name, cluster.status_message, elapsed))
        if elapsed >= wait.timeout:
            raise WaitTimeout(
                f"{ref}: still {cluster.status.name} after {elapsed:.0f}s; run the command again"
            )
        time.sleep(min(wait.poll_interval, wait.timeout - elapsed))
        cluster = get_cluster(client, ref)
    return cluster


def get_cluster(client: ClusterManagerClient, ref: ClusterRef) -> Cluster:
    """The cluster as the API describes it; GkeNotFound when there is none."""
    with _calling(ref, client):
        return client.get_cluster(name=ref.path, timeout=REQUEST_TIMEOUT)


def _find_cluster(client: ClusterManagerClient, ref: ClusterRef) -> Cluster | None:
    try:
        return get_cluster(client, ref)
    except GkeNotFound:
        return None


def _differences(cluster: Cluster, spec: ClusterSpec) -> list[str]:
    pools = {pool.name: pool for pool in cluster.node_pools}
    pool = pools.get(spec.node_pool)
    if pool is None:
        return [f"no node pool {spec.node_pool} (has: {', '.join(sorted(pools)) or 'none'})"]
    diffs = []
    if pool.config.machine_type != spec.machine_type:
        diffs.append(f"machine type {pool.config.machine_type}, not {spec.machine_type}")
    if pool.initial_node_count != spec.nodes:
        diffs.append(f"{pool.initial_node_count} nodes per zone, not {spec.nodes}")
    return diffs


def _adopt(
    client: ClusterManagerClient, spec: ClusterSpec, cluster: Cluster, wait: Waiting
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
    cluster = _wait_provisioned(client, spec, cluster, wait)
    if cluster.status not in (Cluster.Status.RUNNING, Cluster.Status.DEGRADED):
        why = f": {_one_line(cluster.status_message)}" if cluster.status_message else ""
        raise GkeError(
            f"{spec}: exists but is {cluster.status.name}{why}; "
            "delete it (otactl gke delete) and create it again"
        )
    return ClusterInfo(spec, cluster.status.name, cluster.endpoint, created=False)


def create_cluster(
    client: ClusterManagerClient,
    spec: ClusterSpec,
    wait: Waiting | None = None,
) -> ClusterInfo:
    """Create the cluster and follow the operation; an existing identical cluster is kept."""
    from google.cloud import container_v1

    wait = wait or Waiting()
    existing = _find_cluster(client, spec)
    if existing is not None:
        return _adopt(client, spec, existing, wait)
    cluster = container_v1.Cluster(
        name=spec.name,
        node_pools=[
            container_v1.NodePool(
                name=spec.node_pool,
                initial_node_count=spec.nodes,
                config=container_v1.NodeConfig(machine_type=spec.machine_type),
            )
        ],
    )
    try:
        with _calling(spec, client):
            op = client.create_cluster(parent=spec.parent, cluster=cluster, timeout=REQUEST_TIMEOUT)
    except GkeConflict:
        # Someone created it between our look and our request: judge theirs like any other.
        existing = _find_cluster(client, spec)
        if existing is None:
            raise
        return _adopt(client, spec, existing, wait)
    _follow(client, spec, op, wait)
    done = get_cluster(client, spec)
    return ClusterInfo(spec, done.status.name, done.endpoint, created=True)


def delete_cluster(
    client: ClusterManagerClient,
    ref: ClusterRef,
    wait: Waiting | None = None,
) -> None:
    """Delete the cluster with its nodes and follow the operation to the end."""
    with _calling(ref, client):
        op = client.delete_cluster(name=ref.path, timeout=REQUEST_TIMEOUT)
    _follow(client, ref, op, wait or Waiting())


# --- kubeconfig ----------------------------------------------------------------------------


def default_kubeconfig() -> Path:
    """The file kubectl writes to: the first of $KUBECONFIG, else ~/.kube/config."""
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return Path(paths[0]) if paths else Path.home() / ".kube" / "config"


def context_name(ref: ClusterRef) -> str:
    """gcloud's name for the context, so both tools update the same entry."""
    return f"gke_{ref.project}_{ref.location}_{ref.name}"


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


def _put(doc: dict[str, Any], section: str, name: str, key: str, body: dict[str, Any]) -> None:
    """Replace or append the named entry of a kubeconfig list (clusters, users, contexts)."""
    entries = doc.get(section) or []
    if not isinstance(entries, list):
        raise ConfigError(f"kubeconfig: {section} must be a list")
    entries = [e for e in entries if not (isinstance(e, dict) and e.get("name") == name)]
    entries.append({"name": name, key: body})
    doc[section] = entries


def _user_entry(
    credentials: Credentials | None, credentials_file: Path | None, auth_plugin: bool
) -> tuple[dict[str, Any], datetime | None]:
    if auth_plugin:
        plugin: dict[str, Any] = {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": AUTH_PLUGIN,  # found on PATH when used, as kubectl and gcloud do
            # Without this flag the plugin asks the gcloud CLI for a token.
            "args": ["--use_application_default_credentials"],
            "installHint": f"Install {AUTH_PLUGIN} (Google Cloud SDK component) "
            "or run `otactl gke credentials` again for a short-lived token",
            "provideClusterInfo": True,
            "interactiveMode": "IfAvailable",
        }
        if credentials_file is not None:
            # The plugin should act as the same identity otactl used.
            plugin["env"] = [
                {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": str(credentials_file.resolve())}
            ]
        return {"exec": plugin}, None
    if credentials is None:
        raise GkeCredentialsError("a token needs Google credentials, and none were given")
    import google.auth.transport.requests

    credentials.refresh(google.auth.transport.requests.Request())
    return {"token": credentials.token}, credentials.expiry


def write_kubeconfig(
    client: ClusterManagerClient,
    ref: ClusterRef,
    *,
    kubeconfig: Path | None = None,
    context: str | None = None,
    credentials: Credentials | None = None,
    credentials_file: Path | None = None,
    auth_plugin: bool = False,
) -> KubeconfigEntry:
    """Add (or refresh) the cluster's context in a kubeconfig and make it current.

    With `auth_plugin` the user entry runs gke-gcloud-auth-plugin (on ADC, or on
    `credentials_file` when given); otherwise it holds an access token from `credentials`,
    which expires after about an hour.
    The file is rewritten atomically with mode 0600, other entries kept.
    """
    cluster = get_cluster(client, ref)
    if not cluster.endpoint:
        raise GkeError(
            f"{ref}: has no endpoint yet (status {cluster.status.name}); "
            "wait for `otactl gke create` to finish"
        )
    ca = cluster.master_auth.cluster_ca_certificate
    try:
        base64.b64decode(ca, validate=True)
    except ValueError as e:
        raise GkeError(f"{ref}: the API returned a cluster CA that is not base64") from e
    with _calling(ref, client):
        user, expiry = _user_entry(credentials, credentials_file, auth_plugin)
    path = Path(kubeconfig) if kubeconfig is not None else default_kubeconfig()
    # Write through a symlink (dotfile managers) rather than replacing it with a file.
    path = path.resolve() if path.is_symlink() else path
    name = context or context_name(ref)
    server = f"https://{cluster.endpoint}"
    doc = _read_kubeconfig(path)
    doc.setdefault("apiVersion", "v1")
    doc.setdefault("kind", "Config")
    doc.setdefault("preferences", {})
    _put(doc, "clusters", name, "cluster", {"server": server, "certificate-authority-data": ca})
    _put(doc, "users", name, "user", user)
    _put(doc, "contexts", name, "context", {"cluster": name, "user": name})
    doc["current-context"] = name
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, yaml.safe_dump(doc, sort_keys=False), mode=0o600)
    auth = AUTH_PLUGIN if auth_plugin else "token"
    return KubeconfigEntry(name, path, server, auth, expiry)
