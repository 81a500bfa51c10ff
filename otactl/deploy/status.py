"""What `otactl status` reports: each workload and Service otactl manages, its state and
external address."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otactl.config import Values

if TYPE_CHECKING:
    from otactl.kube import Cluster


@dataclass(frozen=True)
class ObjectStatus:
    kind: str
    name: str
    ready: bool
    detail: str
    address: str = ""


def status(cluster: Cluster, values: Values) -> list[ObjectStatus]:
    """Deployments, StatefulSets, Jobs and Services otactl manages, with their state and
    external addresses."""
    from otactl import ready
    from otactl.kube import MANAGED_SELECTOR

    rows = []
    for kind in ("Deployment", "StatefulSet", "Job", "Service"):
        items, _ = cluster.list_objects(kind, values.namespace, MANAGED_SELECTOR)
        for obj in sorted(items, key=lambda o: o["metadata"]["name"]):
            st = ready.state(obj)
            rows.append(
                ObjectStatus(kind, obj["metadata"]["name"], st.ready, st.detail, _address(obj))
            )
    return rows


def _address(obj: dict[str, Any]) -> str:
    if obj.get("kind") != "Service":
        return ""
    spec = obj.get("spec", {})
    ingress = (obj.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
    ports = ",".join(
        f"{p['port']}" + (f":{p['nodePort']}" if p.get("nodePort") else "")
        for p in spec.get("ports", [])
    )
    if ingress:
        host = ingress[0].get("ip") or ingress[0].get("hostname")
        return f"{host} ({ports})"
    return f"{spec.get('clusterIP', '')} ({ports})"
