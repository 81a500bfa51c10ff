"""The objects otactl makes itself rather than renders (Secrets of keys and certificates),
the labels and annotations it puts on objects, and the changes it makes to rendered ones
(the bootstrap Job replaced when its SQL changed, pods rolled when their TLS changed)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otactl import pki
from otactl.config import Values
from otactl.wait import Target, wait_deleted

if TYPE_CHECKING:
    from otactl.kube import Cluster

MANAGED_LABELS = {
    "app.kubernetes.io/part-of": "ota-ce",
    "app.kubernetes.io/managed-by": "otactl",
}
# What `down` and `--prune` look at (never PersistentVolumeClaims: data outlives `down`).
OWNED_KINDS = (
    "Ingress", "Deployment", "StatefulSet", "Job", "Service", "ConfigMap", "Secret",
    "NetworkPolicy",
)  # fmt: skip
HEALTH_GATES = ("director", "tuf-keyserver", "tuf-reposerver")
SQL_HASH = "otactl.io/sql-hash"
# On a namespace `up` created (and only then): `down --purge` deletes it.
CREATED_NAMESPACE = "otactl.io/created-by"
TLS_HASH = "otactl.io/tls-hash"
TLS_USERS = ("gateway-deployment", "reverse-proxy")
BUILD_TOOLS_SECRET = "build-tools-ca"


def _labelled(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].setdefault("labels", {}).update(MANAGED_LABELS)
    return obj


def secret_object(
    name: str, namespace: str, data: dict[str, bytes], component: str
) -> dict[str, Any]:
    """A Secret as otactl renders it (labels, base64 data in sorted key order)."""
    return _labelled(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "app.kubernetes.io/name": name,
                    "app.kubernetes.io/component": component,
                },
            },
            "type": "Opaque",
            "data": {k: base64.b64encode(v).decode() for k, v in sorted(data.items())},
        }
    )


def gateway_tls_secret(values: Values, files: pki.ServerFiles) -> dict[str, Any]:
    data = {key: path.read_bytes() for key, path in files.tls_secret_files().items()}
    return secret_object("gateway-tls", values.namespace, data, "gateway")


def build_tools_secret(values: Values, server_dir: Path) -> dict[str, Any]:
    """The reverse proxy's client CA for the build tools and its CRL."""
    files = pki.BuildToolsFiles.of(server_dir).secret_files()
    data = {key: path.read_bytes() for key, path in files.items()}
    return secret_object(BUILD_TOOLS_SECRET, values.namespace, data, "reverse-proxy")


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("annotations") or {})


def _component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))


def _bootstrap_objects(
    cluster: Cluster, objects: list[dict[str, Any]], sql_hash: str, namespace: str, dry_run: bool
) -> list[dict[str, Any]]:
    """The bootstrap Secret and Job. A Job's template is immutable: when the SQL changed
    (a rotated password), the finished Job is replaced so that it runs again."""
    for obj in objects:
        if obj["kind"] == "Job":
            obj["metadata"].setdefault("annotations", {})[SQL_HASH] = sql_hash
            current = cluster.get("Job", namespace, obj["metadata"]["name"])
            old_hash = ((current or {}).get("metadata", {}).get("annotations") or {}).get(SQL_HASH)
            if current is not None and old_hash != sql_hash and not dry_run:
                cluster.delete("Job", namespace, obj["metadata"]["name"], propagation="Foreground")
                wait_deleted(cluster, [Target("Job", namespace, obj["metadata"]["name"])], 120)
    return objects


def _roll_on_tls_change(
    objects: list[dict[str, Any]], tls: dict[str, Any], build_tools: dict[str, Any]
) -> None:
    """nginx reads its certificate and CRL at start only: a changed `gateway-tls` (a revoked
    device, a renewed certificate) or `build-tools-ca` (a revoked build-tools client) must
    roll the pods that mount it."""

    def digest(*secrets: dict[str, Any]) -> str:
        data = [s["data"] for s in secrets]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    hashes = {"gateway-deployment": digest(tls), "reverse-proxy": digest(tls, build_tools)}
    for obj in objects:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] in TLS_USERS:
            template = obj["spec"]["template"]["metadata"]
            template.setdefault("annotations", {})[TLS_HASH] = hashes[obj["metadata"]["name"]]


def _workloads(objects: list[dict[str, Any]], kinds: tuple[str, ...]) -> list[Target]:
    return [
        Target(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects
        if o["kind"] in kinds
    ]
