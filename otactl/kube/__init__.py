"""The one adapter to the Kubernetes API (the official `kubernetes` client).

Objects travel as plain dicts (JSON), so the rest of otactl never sees client models. Every
API error is turned into one line naming the object and what the server said; only what
can succeed later is retried (connection errors, 429 with Retry-After, 500 and 502-504, 409
on apply), until the deadline the caller set (`Cluster.patience`).

A lost API server is noticed within seconds, not at a phase's deadline: every request has a
read timeout, watches are short and probed when quiet, and `Cluster.link` records since when
the API server has not answered; it says so through `Cluster.on_notice`.

Jobs, one module each: `resources` (kinds, paths, names), `link` (whether the API server
answers), `connection` (requests, retries, errors), `cluster` (the objects: apply, get,
list, delete, watch), `proxy` (the service proxy), `kubeconfig` (loading it, `connect`).
Only this package imports the kubernetes client, and only inside the functions that need it.
"""

from otactl.kube.cluster import PROBE_TIMEOUT, QUIET_SECONDS, WATCH_SECONDS, Cluster
from otactl.kube.connection import (
    DEFAULT_PATIENCE,
    FIRST_CONTACT,
    MAX_PAUSE,
    REQUEST_TIMEOUT,
    TRANSIENT,
    Connection,
    KubeTarget,
)
from otactl.kube.kubeconfig import connect, kubeconfig_files
from otactl.kube.link import NOTICE_AFTER, Link
from otactl.kube.proxy import ServiceProxyCaller
from otactl.kube.resources import FIELD_MANAGER, MANAGED_SELECTOR, RESOURCES, ref

__all__ = [
    "DEFAULT_PATIENCE",
    "FIELD_MANAGER",
    "FIRST_CONTACT",
    "MANAGED_SELECTOR",
    "MAX_PAUSE",
    "NOTICE_AFTER",
    "PROBE_TIMEOUT",
    "QUIET_SECONDS",
    "REQUEST_TIMEOUT",
    "RESOURCES",
    "TRANSIENT",
    "WATCH_SECONDS",
    "Cluster",
    "Connection",
    "KubeTarget",
    "Link",
    "ServiceProxyCaller",
    "connect",
    "kubeconfig_files",
    "ref",
]
