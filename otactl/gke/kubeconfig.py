"""The cluster's context in a kubeconfig: written (or refreshed) with an exec credential
plugin for fresh tokens, and removed again on delete, as gcloud does."""

from __future__ import annotations

import base64
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from otactl.errors import ConfigError, GkeError, GkeNotFound
from otactl.fsutil import write_atomic
from otactl.gke.auth import EXEC_API_VERSION
from otactl.gke.operations import Waiting, _Clock, _get, _wait_resting
from otactl.gke.spec import ClusterRef

if TYPE_CHECKING:
    from google.cloud.container_v1 import ClusterManagerClient

AUTH_PLUGIN = "gke-gcloud-auth-plugin"


@dataclass(frozen=True)
class KubeconfigEntry:
    """What `write_kubeconfig` wrote."""

    context: str
    kubeconfig: Path
    server: str
    auth: str  # "gke-gcloud-auth-plugin" or "otactl gke token"


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
