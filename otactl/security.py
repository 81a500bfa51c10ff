"""Least privilege in the cluster: the Pod Security level of the namespace, the
NetworkPolicies derived from the rendered configuration, and the RBAC role for CI.

Pure functions of rendered objects: no cluster, no templates."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

POD_SECURITY = "otactl.io/pod-security"
LEVELS = ("privileged", "baseline", "restricted")  # weakest first
PSS_LABEL = "pod-security.kubernetes.io/"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
HEALTH_PORT_NAME = "http"  # the Scala services' port, which `otactl health` proxies to
# An env var whose value is a host even without a port. Command lines and mounted files
# (nginx.conf) are read whole.
HOST_KEY = re.compile(r"HOST|URL|URI|CONNECT|SERVER|ENDPOINT|ADDR")

Obj = dict[str, Any]
NAMESPACE_SKIP = "CKV_K8S_21=the namespace is a value (namespace, or --namespace), default: default"


# --- Pod Security ------------------------------------------------------------------------


def workload_levels(objects: Iterable[Obj]) -> dict[str, str]:
    """`Kind/name` → the Pod Security Standard its pod template says it meets (a template
    that says nothing is taken as baseline)."""
    return {
        f"{o['kind']}/{o['metadata']['name']}": (
            o["spec"]["template"]["metadata"].get("annotations") or {}
        ).get(POD_SECURITY, "baseline")
        for o in objects
        if o["kind"] in WORKLOAD_KINDS
    }


def namespace_level(objects: Iterable[Obj]) -> str:
    """The strongest level every workload meets: what the namespace can enforce."""
    levels = workload_levels(objects).values()
    return min(levels, key=LEVELS.index, default="restricted")


def namespace_labels(level: str) -> dict[str, str]:
    """Enforce `level`; warn and audit at restricted, so the API server names every pod
    that is weaker than restricted."""
    return {
        PSS_LABEL + "enforce": level,
        PSS_LABEL + "warn": "restricted",
        PSS_LABEL + "audit": "restricted",
    }


# --- NetworkPolicies ---------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Flow:
    """`source` (an app label) may open TCP connections to `dest` on `port` (the pod's)."""

    source: str
    dest: str
    port: int


def _app(o: Obj) -> str:
    return str(o["spec"]["template"]["metadata"]["labels"]["app"])


def _texts(pod: Obj, config_maps: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """What a pod's containers read that can name another service: their env (values and
    envFrom ConfigMaps), their command lines, and the ConfigMaps mounted as files."""
    out: list[dict[str, str]] = []
    for c in pod.get("initContainers", []) + pod["containers"]:
        env = {e["name"]: str(e["value"]) for e in c.get("env") or [] if "value" in e}
        for ref in c.get("envFrom") or []:
            env.update(config_maps.get((ref.get("configMapRef") or {}).get("name", ""), {}))
        out.append(env)
        out.append({"": " ".join(c.get("command", []) + c.get("args", []))})
    for vol in pod.get("volumes") or []:
        if "configMap" in vol:
            files = config_maps.get(vol["configMap"]["name"], {})
            out.append({"": "\n".join(files.values())})
    return out


def _reference(name: str, namespace: str) -> re.Pattern[str]:
    """A host name `name` (or name.namespace[.svc[.cluster.local]]) as a whole word: a value
    of its own, after a space, quote, `=`, `@` or `//`; optionally followed by :port or
    ` port`. A path (/director/) or a public name (app.example.com) is not one."""
    ns = re.escape(namespace)
    return re.compile(
        rf"(?:^|(?<=[\s\"'=,@(])|(?<=//)){re.escape(name)}"
        rf"(?:\.{ns}(?:\.svc(?:\.cluster\.local)?)?)?(?:[: ](?P<port>\d+))?(?=$|[\s\"'/;,)])"
    )


def derive_flows(objects: list[Obj], namespace: str) -> list[Flow]:
    """Every connection the rendered configuration makes between workloads: for each pod,
    each Service named in what its containers read (env, ConfigMaps, command lines, mounted
    nginx.conf), to the pods behind that Service on the port named (`host:port`, `host
    port`, or a sibling `X_PORT` of an `X_HOST` variable), else on all its ports."""
    config_maps = {
        o["metadata"]["name"]: o.get("data") or {} for o in objects if o["kind"] == "ConfigMap"
    }
    services = [o for o in objects if o["kind"] == "Service"]
    flows: set[Flow] = set()
    for w in (o for o in objects if o["kind"] in WORKLOAD_KINDS):
        source = _app(w)
        for text in _texts(w["spec"]["template"]["spec"], config_maps):
            for svc in services:
                dest = (svc["spec"].get("selector") or {}).get("app")
                if not dest or dest == source:
                    continue
                targets = {
                    int(p["port"]): int(p.get("targetPort", p["port"]))
                    for p in svc["spec"]["ports"]
                }
                pattern = _reference(svc["metadata"]["name"], namespace)
                for key, value in text.items():
                    for m in pattern.finditer(value):
                        port = m.group("port") or _sibling_port(text, key)
                        if port is None and key and not HOST_KEY.search(key):
                            continue  # DB_USER=director names a user, not a host
                        if port is not None and int(port) in targets:
                            flows.add(Flow(source, dest, targets[int(port)]))
                        else:
                            flows.update(Flow(source, dest, t) for t in targets.values())
    return sorted(flows)


def _sibling_port(env: dict[str, str], key: str) -> str | None:
    if not key.endswith("_HOST"):
        return None
    port = env.get(key[: -len("_HOST")] + "_PORT", "")
    return port if port.isdigit() else None


def entry_points(objects: list[Obj]) -> dict[str, set[int]]:
    """Apps reached from outside the namespace (NodePort or LoadBalancer Services, Ingress
    backends) → their pod ports."""
    backends = {
        path["backend"]["service"]["name"]
        for o in objects
        if o["kind"] == "Ingress"
        for rule in o["spec"].get("rules", [])
        for path in rule["http"]["paths"]
    }
    out: dict[str, set[int]] = {}
    for svc in (o for o in objects if o["kind"] == "Service"):
        public = svc["spec"].get("type") in ("NodePort", "LoadBalancer")
        if public or svc["metadata"]["name"] in backends:
            app = svc["spec"]["selector"]["app"]
            for p in svc["spec"]["ports"]:
                out.setdefault(app, set()).add(int(p.get("targetPort", p["port"])))
    return out


def _policy(namespace: str, name: str, spec: Obj) -> Obj:
    policy: Obj = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/component": "network-policy",
                "app.kubernetes.io/part-of": "ota-ce",
                "app.kubernetes.io/managed-by": "otactl",
            },
        },
        "spec": spec,
    }
    if namespace == "default":  # as templates/_macros.j2 says for every object
        policy["metadata"]["annotations"] = {"checkov.io/skip1": NAMESPACE_SKIP}
    return policy


def _ports(ports: Iterable[int]) -> list[Obj]:
    return [{"protocol": "TCP", "port": p} for p in sorted(set(ports))]


def network_policies(
    objects: list[Obj], namespace: str, apiserver_cidrs: list[str], health_apps: Iterable[str]
) -> list[Obj]:
    """Default deny (ingress and egress) for otactl's pods, DNS for all of them, and per app
    one policy allowing exactly its derived flows in and out; plus the entry points from
    anywhere, and the API server (`apiserver_cidrs`) to `health_apps`' pods for the service
    proxy `otactl health` uses."""
    ours = {"matchLabels": {"app.kubernetes.io/part-of": "ota-ce"}}
    out = [
        _policy(
            namespace, "default-deny", {"podSelector": ours, "policyTypes": ["Ingress", "Egress"]}
        ),
        _policy(
            namespace,
            "allow-dns",
            {
                "podSelector": ours,
                "policyTypes": ["Egress"],
                "egress": [
                    {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
                ],
            },
        ),
    ]
    flows = derive_flows(objects, namespace)
    public = entry_points(objects)
    health_ports = {
        svc["spec"]["selector"]["app"]: int(p.get("targetPort", p["port"]))
        for svc in objects
        if svc["kind"] == "Service" and svc["metadata"]["name"] in set(health_apps)
        for p in svc["spec"]["ports"]
        if p["name"] == HEALTH_PORT_NAME
    }
    apps = sorted({_app(o) for o in objects if o["kind"] in WORKLOAD_KINDS})
    for app in apps:
        ingress: list[Obj] = []
        for source in sorted({f.source for f in flows if f.dest == app}):
            ports = [f.port for f in flows if f.dest == app and f.source == source]
            ingress.append(
                {
                    "from": [{"podSelector": {"matchLabels": {"app": source}}}],
                    "ports": _ports(ports),
                }
            )
        if app in public:
            ingress.append({"ports": _ports(public[app])})
        if app in health_ports and apiserver_cidrs:
            ingress.append(
                {
                    "from": [{"ipBlock": {"cidr": c}} for c in apiserver_cidrs],
                    "ports": _ports([health_ports[app]]),
                }
            )
        egress = [
            {
                "to": [{"podSelector": {"matchLabels": {"app": dest}}}],
                "ports": _ports(f.port for f in flows if f.source == app and f.dest == dest),
            }
            for dest in sorted({f.dest for f in flows if f.source == app})
        ]
        spec: Obj = {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": []}
        if ingress:
            spec["policyTypes"].append("Ingress")
            spec["ingress"] = ingress
        if egress:
            spec["policyTypes"].append("Egress")
            spec["egress"] = egress
        if spec["policyTypes"]:
            out.append(_policy(namespace, f"{app}-flows", spec))
    return out


# --- RBAC for CI -------------------------------------------------------------------------

# Applied (server-side apply: a PATCH, which needs `create` too when the object is new),
# waited on (list, watch), pruned and deleted by `down`.
_OURS = ["get", "list", "watch", "create", "patch", "delete"]
# What `up`, `down [--purge]`, `status`, `health` and `new-device` do in the namespace.
NAMESPACED_RULES: list[Obj] = [
    {"apiGroups": [""], "resources": ["configmaps", "secrets", "services"], "verbs": list(_OURS)},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": list(_OURS)},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": list(_OURS)},
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["ingresses", "networkpolicies"],
        "verbs": list(_OURS),
    },
    # tuf-reposerver's claim is rendered; down --purge deletes the StatefulSets' claims too.
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": list(_OURS)},
    # Why a wait failed: the pods, their last log lines, the controllers' FailedCreate events.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    # The OTA services through the API server's service proxy: GET (health), POST (repos,
    # keys), PUT (device registration).
    {"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get", "create", "update"]},
    # The Lease `up` and `down` hold while they run (otactl.lease): taken, renewed, released.
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "update", "delete"],
    },
]


def cluster_rules(namespace: str) -> list[Obj]:
    """The cluster-scoped permissions: otactl's own namespace (applied with its Pod
    Security labels, deleted by `down --purge`), the nodes' addresses (a NodePort gateway's
    URL) and the API server's own addresses (NetworkPolicy for the service proxy)."""
    return [
        {
            "apiGroups": [""],
            "resources": ["namespaces"],
            "resourceNames": [namespace],
            "verbs": ["get", "patch", "delete"],
        },
        # `down --purge` waits for the namespace to go (a watch cannot be limited by name).
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "resourceNames": ["kubernetes"],
            "verbs": ["get"],
        },
    ]


def ci_rbac(namespace: str, account: str = "otactl-ci") -> list[Obj]:
    """What an administrator applies once so that CI can run otactl as ServiceAccount
    `account` of `namespace`: the namespace, the account, a Role and a ClusterRole with the
    permissions above, and their bindings."""
    labels = {"app.kubernetes.io/name": account, "app.kubernetes.io/component": "rbac"}
    cluster_name = f"{account}-{namespace}"
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    docs: list[Obj] = []
    if namespace != "default":
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    meta = {"name": account, "namespace": namespace, "labels": labels}
    docs += [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": NAMESPACED_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": cluster_name, "labels": labels},
            "rules": cluster_rules(namespace),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": cluster_name, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_name,
            },
            "subjects": subject,
        },
    ]
    return copy.deepcopy(docs)
