""" "The OTA services are running": minimal Deployments and Services with the real names
and `app` labels, so that the stand-in answers as each service behind the API server's
service proxy (the same path `otactl` uses on a real cluster).

`deploy_services(cluster, namespace, apps)` applies them and waits until every Service
has a ready endpoint; `service_only(...)` makes a Service with no pods behind it (the API
server then answers 503 "no endpoints available" itself).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from otactl.health import CHECKS

from .conftest import LocalCluster

ALL_APPS = tuple(sorted(CHECKS))


def _service(app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, "labels": {"app": app}},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 9001}]},
    }


def _deployment(app: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "labels": {"app": app}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {
                    "containers": [
                        {
                            "name": app,
                            "image": f"advancedtelematic/{app}:0.0.0",
                            "ports": [{"containerPort": 9001}],
                        }
                    ]
                },
            },
        },
    }


def _apply(cluster: LocalCluster, namespace: str, items: list[dict[str, Any]]) -> None:
    manifest = {"apiVersion": "v1", "kind": "List", "items": items}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def deploy_services(
    cluster: LocalCluster, namespace: str, apps: Iterable[str] = ALL_APPS, replicas: int = 1
) -> None:
    """Each app as a Deployment and a Service; returns once every Service has an endpoint."""
    apps = list(apps)
    items = [obj for app in apps for obj in (_deployment(app, replicas), _service(app))]
    _apply(cluster, namespace, items)
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "--timeout=90s",
        *(f"deployment/{app}" for app in apps),
    )  # fmt: skip
    for app in apps:
        cluster.kubectl(
            "wait", "-n", namespace, "--for=jsonpath={.subsets[0].addresses[0].ip}",
            f"endpoints/{app}", "--timeout=60s",
        )  # fmt: skip


def service_only(cluster: LocalCluster, namespace: str, apps: Iterable[str]) -> None:
    """Services without pods: the proxy finds no endpoint."""
    _apply(cluster, namespace, [_service(app) for app in apps])
