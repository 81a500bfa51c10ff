"""Google Kubernetes Engine: create, delete, list and connect to clusters through the
Container API.

The client is `google.cloud.container_v1.ClusterManagerClient` on its REST transport, built
by `make_client` from Application Default Credentials or a service-account file. Every core
function takes that client, so a caller (or a test) can point it at any endpoint. Google's
errors become one-line `GkeError`s naming the cluster; progress goes through a callback.
Reads and polls that fail in a way that can pass (connection reset, 429, 5xx) are retried
with backoff until the operation's deadline.

Jobs, one module each: `spec` (which cluster, the create options and their checks), `auth`
(credentials, project, client, `otactl gke token`), `errors` (Google's errors as one-line
`GkeError`s), `operations` (calls with retries, operations followed, clusters read),
`clusters` (create and delete), `kubeconfig` (the context written and removed). Only this
package imports google.cloud, and only inside the functions that need it.
"""

from otactl.gke.auth import (
    ENDPOINT_ENV,
    EXEC_API_VERSION,
    SCOPES,
    TOKEN_SCOPES,
    exec_credential,
    expiry_of,
    load_credentials,
    make_client,
    resolve_project,
)
from otactl.gke.clusters import (
    ClusterInfo,
    Deletion,
    cluster_body,
    create_cluster,
    delete_cluster,
)
from otactl.gke.errors import _one_line
from otactl.gke.kubeconfig import (
    AUTH_PLUGIN,
    KubeconfigEntry,
    context_name,
    default_kubeconfig,
    forget_kubeconfig,
    write_kubeconfig,
)
from otactl.gke.operations import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    Progress,
    ProgressFn,
    Waiting,
    cluster_json,
    get_cluster,
    list_clusters,
)
from otactl.gke.spec import (
    DEFAULT_MACHINE_TYPE,
    DEFAULT_NODE_POOL,
    DEFAULT_NODES,
    GKE_DEFAULT_SCOPES,
    ClusterRef,
    ClusterSpec,
    is_region,
)

__all__ = [
    "AUTH_PLUGIN",
    "DEFAULT_MACHINE_TYPE",
    "DEFAULT_NODES",
    "DEFAULT_NODE_POOL",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_TIMEOUT",
    "ENDPOINT_ENV",
    "EXEC_API_VERSION",
    "GKE_DEFAULT_SCOPES",
    "SCOPES",
    "TOKEN_SCOPES",
    "ClusterInfo",
    "ClusterRef",
    "ClusterSpec",
    "Deletion",
    "KubeconfigEntry",
    "Progress",
    "ProgressFn",
    "Waiting",
    "_one_line",
    "cluster_body",
    "cluster_json",
    "context_name",
    "create_cluster",
    "default_kubeconfig",
    "delete_cluster",
    "exec_credential",
    "expiry_of",
    "forget_kubeconfig",
    "get_cluster",
    "is_region",
    "list_clusters",
    "load_credentials",
    "make_client",
    "resolve_project",
    "write_kubeconfig",
]
