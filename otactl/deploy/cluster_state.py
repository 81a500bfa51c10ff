"""What the cluster already holds and shows, read before or after `up` changes it: the
PKI it trusts (never a second CA), the API server's addresses, the gateway URL and reverse
proxy port clients reach, and the credentials published for them."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from otactl import pki, render
from otactl.config import Values
from otactl.deploy.objects import BUILD_TOOLS_SECRET, secret_object
from otactl.errors import PkiError

if TYPE_CHECKING:
    from otactl.credentials import CredentialsResult
    from otactl.kube import Cluster


def reconcile_pki(cluster: Cluster, values: Values, server_dir: Path) -> None:
    """Refuse to go on when the local PKI and the cluster's `gateway-tls` disagree: a second
    CA minted silently would cut every provisioned device off."""
    files = pki.ServerFiles(server_dir)
    secret = cluster.get("Secret", values.namespace, "gateway-tls")
    if secret is None:
        return
    if not files.device_ca.exists() or not files.server_ca.exists():
        raise PkiError(
            f"the cluster has Secret {values.namespace}/gateway-tls but {server_dir} has no "
            "server PKI: restore that folder from your backup (otactl will not mint a second "
            "CA: devices trust the first one)"
        )
    in_cluster = base64.b64decode((secret.get("data") or {}).get("ca.crt", ""))
    if in_cluster and in_cluster != files.device_ca.read_bytes():
        raise PkiError(
            f"the device CA in Secret {values.namespace}/gateway-tls differs from "
            f"{files.device_ca}: {server_dir} belongs to another installation, or was "
            "replaced; restore the matching folder"
        )


def reconcile_build_tools_ca(cluster: Cluster, values: Values, server_dir: Path) -> None:
    """Refuse to mint a second build-tools CA while the cluster trusts the first one: every
    credentials.zip handed to CI would stop working."""
    files = pki.BuildToolsFiles.of(server_dir)
    secret = cluster.get("Secret", values.namespace, BUILD_TOOLS_SECRET)
    if secret is None or files.ca.exists():
        return
    raise PkiError(
        f"the cluster has Secret {values.namespace}/{BUILD_TOOLS_SECRET} but {files.root} has "
        "no build-tools CA: restore that folder from your backup (otactl will not mint a "
        "second CA: the credentials handed out trust the first one)"
    )


def exposed_gateway_url(cluster: Cluster, values: Values) -> str:
    """The gateway URL devices really reach: the LoadBalancer's 8443, or the NodePort."""
    from otactl.devices import default_gateway_port

    svc = cluster.get("Service", values.namespace, "gateway-service")
    if svc is None:  # not deployed yet: what the values will expose
        return f"https://{values.server_name}:{default_gateway_port(values.gateway)}"
    port = 8443
    if svc["spec"].get("type") == "NodePort":
        for p in svc["spec"].get("ports", []):
            if p.get("port") == 8443 and p.get("nodePort"):
                port = int(p["nodePort"])
    return f"https://{values.server_name}:{port}"


def exposed_reverse_proxy_port(cluster: Cluster, values: Values) -> int:
    """The reverse proxy's HTTPS port as clients reach it: the NodePort, or the Service
    port (443) for a LoadBalancer or ClusterIP; before `up`, what the values will expose."""
    svc = cluster.get("Service", values.namespace, "reverse-proxy")
    if svc is None:
        return render.reverse_proxy_https_port(values)
    for p in svc["spec"].get("ports", []):
        if p.get("name") == "https":
            if svc["spec"].get("type") == "NodePort" and p.get("nodePort"):
                return int(p["nodePort"])
            return int(p["port"])
    return render.reverse_proxy_https_port(values)


def publish_credentials(
    cluster: Cluster,
    values: Values,
    server_dir: Path,
    gateway_url: str,
    *,
    client: str | None = None,
    out: Path | None = None,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> CredentialsResult:
    """The credentials phase: TUF repositories and keys through the service proxy,
    `credentials.zip` (or the zip of build-tools client `client`), and the `user-keys`
    Secret (what `up` and `otactl credentials` do)."""
    from otactl.credentials import credentials_for_values

    made = credentials_for_values(
        cluster.service_caller(values.namespace),
        values,
        server_dir,
        gateway_url,
        https_port=exposed_reverse_proxy_port(cluster, values),
        client=client,
        out=out,
        timeout=timeout,
        progress=progress,
    )
    cluster.apply(secret_object("user-keys", values.namespace, made.user_keys, "credentials"))
    return made


def with_apiserver_cidrs(cluster: Cluster, values: Values) -> Values:
    """`values` with network_policy.apiserver_cidrs filled, when empty, from the API
    server's own addresses (EndpointSlice default/kubernetes): where its service proxy
    connects to the pods from, for `otactl health`."""
    policy = values.network_policy
    if not policy.enabled or policy.apiserver_cidrs:
        return values
    found = cluster.get("EndpointSlice", "default", "kubernetes") or {}
    cidrs = sorted(
        f"{address}/{128 if ':' in address else 32}"
        for endpoint in found.get("endpoints") or []
        for address in endpoint.get("addresses") or []
    )
    update = {"network_policy": policy.model_copy(update={"apiserver_cidrs": cidrs})}
    return values.model_copy(update=update)
