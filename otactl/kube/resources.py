"""The kinds otactl handles and their API paths (a fixed table: no discovery round trips),
the labels that mark what otactl manages, and how objects are named in messages."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from otactl.errors import ClusterError

FIELD_MANAGER = "otactl"
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=otactl,app.kubernetes.io/part-of=ota-ce"

# kind → (API prefix, plural, namespaced). Only the kinds otactl renders, waits on or reads:
# a fixed table costs no discovery round trips.
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Node": ("/api/v1", "nodes", False),
    "Secret": ("/api/v1", "secrets", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Service": ("/api/v1", "services", True),
    "Pod": ("/api/v1", "pods", True),
    "Event": ("/api/v1", "events", True),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "StatefulSet": ("/apis/apps/v1", "statefulsets", True),
    "Job": ("/apis/batch/v1", "jobs", True),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses", True),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    "EndpointSlice": ("/apis/discovery.k8s.io/v1", "endpointslices", True),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases", True),
}


def ref(obj: dict[str, Any]) -> str:
    """`Kind namespace/name` for messages."""
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


def _resource_path(kind: str, namespace: str | None, name: str | None = None) -> str:
    try:
        prefix, plural, namespaced = RESOURCES[kind]
    except KeyError:
        raise ClusterError(f"otactl does not handle objects of kind {kind}") from None
    path = prefix
    if namespaced:
        if not namespace:
            raise ClusterError(f"{kind} {name}: a namespace is required")
        path += f"/namespaces/{quote(namespace)}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name)}"
    return path


def _status_message(body: bytes) -> str:
    """The `message` of a Kubernetes Status body; never the raw body (it can hold data)."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, dict) and data.get("kind") == "Status":
        return str(data.get("message", ""))
    return ""
