"""Calls to a Service through the API server's service proxy, on the cluster's connection
(the `ServiceCaller` that health, credentials and registration speak to)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from otactl.service_api import Response

if TYPE_CHECKING:
    from otactl.kube.cluster import Cluster


class ServiceProxyCaller:
    """`/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH`. Answers of the service, and
    the API server's own (Status objects), come back as `Response`; only RBAC refusal and
    lost credentials of the API server itself raise."""

    def __init__(self, cluster: Cluster, namespace: str, port: int) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.port = port

    def __call__(
        self,
        method: str,
        service: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        base = f"/api/v1/namespaces/{quote(self.namespace)}/services/{service}:{self.port}/proxy"
        path, _, qs = path.partition("?")
        full = base + "/" + path.lstrip("/")
        if qs:
            full += "?" + qs
        content_type = (headers or {}).get("Content-Type")
        payload: Any = body
        if body is not None and (content_type is None or "json" in content_type):
            # The kubernetes client json.dumps() JSON bodies itself (bytes would raise
            # TypeError there): hand it the decoded value.
            payload = json.loads(body)
        resp = self.cluster._send(
            method, full, body=payload, headers=headers, content_type=content_type
        )
        data = resp.read()
        result = Response(resp.status, data, {k: v for k, v in resp.headers.items()})
        if result.from_apiserver and resp.status in (401, 403):
            raise self.cluster._error(
                resp.status, data, f"{method} services/proxy {self.namespace}/{service}"
            )
        return result
