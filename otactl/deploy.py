"""The ordered plan of `otactl up` and `otactl down`, and what `status` reports.

Every step is idempotent: applying is server-side apply (an unchanged object is not
written), waits return at once for what is ready, PKI and secrets are loaded before they
are made. So a second `up` changes nothing, and an interrupted one converges when re-run."""

from __future__ import annotations

import base64
import contextlib
import difflib
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from otactl import pki, render, secretstore, security
from otactl.config import Values
from otactl.errors import PkiError
from otactl.fsutil import ensure_private_dir
from otactl.wait import Change, Target, Waiting, wait_deleted, wait_ready

if TYPE_CHECKING:
    from otactl.credentials import CredentialsResult
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


@dataclass(frozen=True)
class Phase:
    """A phase started, finished or was skipped (a line in the live view)."""

    name: str
    status: str  # "start", "done", "skip"
    detail: str = ""
    seen_at: float = 0.0


Event = Phase | Change | Waiting
Report = Callable[[Event], None]


@dataclass
class UpOptions:
    timeout: float = 1800.0
    prune: bool = False
    dry_run: bool = False


@dataclass
class UpResult:
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    pruned: list[str] = field(default_factory=list)
    diff: str = ""
    gateway_url: str = ""
    credentials_zip: Path | None = None
    noticed: dict[str, float] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)


def plural(n: int, noun: str) -> str:
    """`1 object`, `2 objects`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _quiet(_event: Event) -> None:
    pass


class _Deadline:
    """The overall --timeout, capped per phase by the values' per-phase defaults."""

    def __init__(self, total: float) -> None:
        self.end = time.monotonic() + total

    def phase(self, default: float) -> float:
        return max(1.0, min(default, self.end - time.monotonic()))


# --- objects ---------------------------------------------------------------------------


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


def _normalized(obj: dict[str, Any] | None) -> dict[str, Any]:
    """What a diff should compare: no server bookkeeping, Secret values hidden."""
    if obj is None:
        return {}
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {
        k: v
        for k, v in obj.get("metadata", {}).items()
        if k not in {"managedFields", "resourceVersion", "uid", "creationTimestamp",
                     "generation", "annotations"}
    }  # fmt: skip
    annotations = {
        k: v
        for k, v in (obj.get("metadata", {}).get("annotations") or {}).items()
        if not k.startswith("deployment.kubernetes.io/")
    }
    if annotations:
        meta["annotations"] = annotations
    out["metadata"] = meta
    if obj.get("kind") == "Secret":
        out["data"] = {
            k: "sha256:" + hashlib.sha256(v.encode()).hexdigest()[:12]
            for k, v in (obj.get("data") or {}).items()
        }
    return out


class _Applier:
    """Applies a phase's objects concurrently and records what changed."""

    def __init__(self, cluster: Cluster, result: UpResult, dry_run: bool) -> None:
        self.cluster = cluster
        self.result = result
        self.dry_run = dry_run
        # A dry run cannot create the namespace, and the API server refuses a dry run of
        # an object in a namespace that does not exist: everything in it is simply new.
        self.missing_namespaces: set[str] = set()

    def _one(self, obj: dict[str, Any]) -> tuple[str, bool, str]:
        from otactl.kube import ref

        meta = obj["metadata"]
        if self.dry_run and meta.get("namespace") in self.missing_namespaces:
            before, after = None, obj
        else:
            before = self.cluster.get(obj["kind"], meta.get("namespace"), meta["name"])
            after = self.cluster.apply(obj, dry_run=self.dry_run)
        if self.dry_run:
            old = yaml.safe_dump(_normalized(before), sort_keys=True).splitlines()
            new = yaml.safe_dump(_normalized(after), sort_keys=True).splitlines()
            diff = "\n".join(
                difflib.unified_diff(old, new, f"{ref(obj)} (cluster)", f"{ref(obj)} (otactl)",
                                     lineterm="")
            )  # fmt: skip
            return ref(obj), bool(diff), diff
        moved = before is None or (
            before["metadata"].get("resourceVersion") != after["metadata"].get("resourceVersion")
        )
        return ref(obj), moved, ""

    def apply(self, objects: list[dict[str, Any]]) -> list[str]:
        if not objects:
            return []
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(self._one, objects))
        changed = []
        for name, moved, diff in outcomes:
            if moved:
                changed.append(name)
                if diff:
                    self.result.diff += diff + "\n"
            else:
                self.result.unchanged += 1
        self.result.changed += changed
        return changed


# --- up --------------------------------------------------------------------------------


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


def _scratch_copy(server_dir: Path, scratch: Path) -> Path:
    """The server folder's own files (PKI, secrets), without the device bundles."""
    ensure_private_dir(scratch)
    if server_dir.exists():
        shutil.copytree(
            server_dir,
            scratch,
            dirs_exist_ok=True,
            ignore=lambda d, names: [
                n for n in names if Path(d).name == "devices" and (Path(d) / n).is_dir()
            ],
        )
    return scratch


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


def _workloads(objects: list[dict[str, Any]], kinds: tuple[str, ...]) -> list[Target]:
    return [
        Target(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects
        if o["kind"] in kinds
    ]


def up(
    cluster: Cluster,
    values: Values,
    generated: Path,
    opts: UpOptions,
    report: Report = _quiet,
    credentials_step: Callable[[str, float], Path] | None = None,
    health_step: Callable[[tuple[str, ...], float], None] | None = None,
) -> UpResult:
    """Run the plan. `health_step(services, timeout)` and `credentials_step(gateway_url,
    timeout)` are the service-level phases (they talk through the service proxy)."""
    server_dir = generated / values.server_name
    steps = (report, credentials_step, health_step)
    # A lost API server, throttling and 5xx are waited out until the overall deadline.
    with cluster.patience(time.monotonic() + opts.timeout):
        if not opts.dry_run:
            return _plan(cluster, values, server_dir, opts, *steps)
        # What up would make (a CA, secrets) is made in a scratch copy: a dry run shows the
        # objects as they would be and leaves generated/ untouched.
        with tempfile.TemporaryDirectory(prefix="otactl-dry-run-") as scratch:
            copy = _scratch_copy(server_dir, Path(scratch) / values.server_name)
            return _plan(cluster, values, copy, opts, *steps)


def _plan(
    cluster: Cluster,
    values: Values,
    server_dir: Path,
    opts: UpOptions,
    report: Report,
    credentials_step: Callable[[str, float], Path] | None,
    health_step: Callable[[tuple[str, ...], float], None] | None,
) -> UpResult:
    # The installation's Lease, taken once its namespace exists, is released on the way out.
    with contextlib.ExitStack() as held:
        return _steps(
            cluster, values, server_dir, opts, report, credentials_step, health_step, held
        )


def _hold_installation(
    cluster: Cluster, namespace: str, report: Report, held: contextlib.ExitStack
) -> None:
    """Take the Lease that keeps a second `up` or `down` out while this one runs (exit 14);
    `held` releases it."""
    from otactl import lease

    report(Phase("lock", "start", f"Lease {namespace}/{lease.NAME}", time.time()))
    took: list[str] = []
    held.enter_context(lease.holding(cluster, namespace, took.append))
    report(Phase("lock", "done", took[0] if took else "held", time.time()))


def _steps(
    cluster: Cluster,
    values: Values,
    server_dir: Path,
    opts: UpOptions,
    report: Report,
    credentials_step: Callable[[str, float], Path] | None,
    health_step: Callable[[tuple[str, ...], float], None] | None,
    held: contextlib.ExitStack,
) -> UpResult:
    result = UpResult()
    deadline = _Deadline(opts.timeout)
    ns = values.namespace
    applier = _Applier(cluster, result, opts.dry_run)
    t = values.timeouts

    def phase(name: str, detail: str = "") -> Callable[[str], None]:
        start = time.monotonic()
        report(Phase(name, "start", detail, time.time()))

        def done(outcome: str = "") -> None:
            result.phase_seconds[name] = time.monotonic() - start
            report(Phase(name, "done", outcome, time.time()))

        return done

    def changed_text(changed: list[str]) -> str:
        """How many objects a phase changed, or would change in a dry run."""
        n = plural(len(changed), "object")
        return f"{n} would change" if opts.dry_run else f"{n} changed"

    def waited(targets: list[Target], timeout: float, name: str) -> None:
        noticed = wait_ready(cluster, targets, timeout, report, name)
        result.noticed.update({str(k): v for k, v in noticed.items()})

    done = phase("cluster", cluster.target.server)
    version = cluster.version()
    done(version)

    values = with_apiserver_cidrs(cluster, values)
    secrets = secretstore.load_or_create(server_dir)
    rendered = render.render(values, secrets)
    infra = rendered.objects("infra")
    services = rendered.objects("services")
    ingress = rendered.objects("ingress") if "ingress" in rendered.sets else []
    policies = rendered.objects("network") if "network" in rendered.sets else []

    # The namespace enforces the Pod Security level all our pods meet: the API server then
    # refuses any pod weaker than that (a `default` namespace is labelled, never owned).
    level = security.namespace_level(infra + services)
    done = phase("namespace", f"{ns}, Pod Security {level}")
    namespace: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": security.namespace_labels(level)},
    }
    current = cluster.get("Namespace", None, ns)
    if opts.dry_run and current is None:
        applier.missing_namespaces.add(ns)
    if ns != "default" and (current is None or CREATED_NAMESPACE in _annotations(current)):
        # Kept on every later apply: an apply that left it out would remove it.
        namespace["metadata"]["annotations"] = {CREATED_NAMESPACE: "otactl up"}
    if applier.apply([namespace if ns == "default" else _labelled(namespace)]):
        said = "would create" if opts.dry_run else "created"
        if current is not None:
            said = "would relabel" if opts.dry_run else "relabelled"
    else:
        said = "present"
    done(said)
    if not opts.dry_run:
        _hold_installation(cluster, ns, report, held)

    done = phase("network", f"{len(policies)} NetworkPolicies")
    done(changed_text(applier.apply(policies)))

    done = phase("pki")
    reconcile_pki(cluster, values, server_dir)
    reconcile_build_tools_ca(cluster, values, server_dir)
    made = pki.ensure_server_pki_for(values, server_dir)
    _, tools_created = pki.ensure_build_tools_ca(
        server_dir, pki.PkiSettings(**values.pki.model_dump())
    )
    made_now = ", ".join(made.created + tools_created)
    # A dry run makes them in a scratch copy only.
    done((f"would create {made_now}" if opts.dry_run else made_now) if made_now else "kept")

    done = phase("secrets", f"gateway-tls, {BUILD_TOOLS_SECRET}, tuf-keyserver-encryption")
    keyserver = [o for o in services if o["metadata"]["name"] == "tuf-keyserver-encryption"]
    tls = gateway_tls_secret(values, made.files)
    tools = build_tools_secret(values, server_dir)
    _roll_on_tls_change(services, tls, tools)
    changed = applier.apply([tls, tools, *keyserver])
    notes = [f"would have {n} (in a scratch copy)" if opts.dry_run else n for n in secrets.notes]
    done("; ".join([changed_text(changed), *notes]))

    done = phase("infra", "zookeeper, kafka, mysql")
    base = [o for o in infra if _component(o) != "bootstrap"]
    changed = applier.apply(base)
    if not opts.dry_run:
        waited(_workloads(base, ("StatefulSet",)), deadline.phase(t.infra), "infra")
    done(changed_text(changed))

    done = phase("bootstrap", "databases and users")
    sql_hash = hashlib.sha256(render.bootstrap_sql(secrets).encode()).hexdigest()[:16]
    boot = [o for o in infra if _component(o) == "bootstrap"]
    boot = _bootstrap_objects(cluster, boot, sql_hash, ns, opts.dry_run)
    changed = applier.apply(boot)
    if not opts.dry_run:
        waited(_workloads(boot, ("Job",)), deadline.phase(t.bootstrap), "bootstrap")
    done(changed_text(changed))

    done = phase("services", "OTA services, gateway, reverse proxy")
    rest = [o for o in services if o not in keyserver] + ingress
    changed = applier.apply(rest)
    if not opts.dry_run:
        gates = _workloads(rest, ("Deployment", "StatefulSet"))
        gates += [
            Target("Service", ns, o["metadata"]["name"])
            for o in rest
            if o["kind"] == "Service" and o["spec"].get("type") == "LoadBalancer"
        ]
        waited(gates, deadline.phase(t.services), "services")
    done(changed_text(changed))

    if opts.prune:
        done = phase("prune")
        keep = {(o["kind"], o["metadata"]["name"]) for o in infra + services + ingress + policies}
        keep |= {("Secret", "gateway-tls"), ("Secret", BUILD_TOOLS_SECRET), ("Secret", "user-keys")}
        result.pruned = prune(cluster, ns, keep, dry_run=opts.dry_run)
        gone = plural(len(result.pruned), "object")
        done(f"{gone} would be deleted" if opts.dry_run else f"{gone} deleted")

    if opts.dry_run:
        return result

    result.gateway_url = exposed_gateway_url(cluster, values)
    if health_step is not None:
        done = phase("health", ", ".join(HEALTH_GATES))
        health_step(HEALTH_GATES, deadline.phase(t.health))
        done("OK")
    if credentials_step is not None:
        done = phase("credentials", "credentials.zip")
        result.credentials_zip = credentials_step(result.gateway_url, deadline.phase(t.credentials))
        done(str(result.credentials_zip))
    return result


def prune(
    cluster: Cluster, namespace: str, keep: set[tuple[str, str]], dry_run: bool = False
) -> list[str]:
    """Delete otactl-labelled objects that are no longer rendered."""
    from otactl.kube import MANAGED_SELECTOR

    gone = []
    for kind in OWNED_KINDS:
        items, _ = cluster.list_objects(kind, namespace, MANAGED_SELECTOR)
        for obj in items:
            name = obj["metadata"]["name"]
            if (kind, name) not in keep:
                if not dry_run:
                    cluster.delete(kind, namespace, name)
                gone.append(f"{kind} {namespace}/{name}")
    return gone


# --- down ------------------------------------------------------------------------------


def down(
    cluster: Cluster,
    values: Values,
    *,
    purge: bool = False,
    timeout: float = 300.0,
    report: Report = _quiet,
) -> list[str]:
    """Delete what otactl created and wait until it is gone. PersistentVolumeClaims (the
    data of mysql, kafka, zookeeper, treehub) stay unless `purge`."""
    from otactl.kube import MANAGED_SELECTOR

    ns = values.namespace
    kinds = OWNED_KINDS + (("PersistentVolumeClaim",) if purge else ())
    targets = []
    end = time.monotonic() + timeout
    with cluster.patience(end), contextlib.ExitStack() as held:
        _hold_installation(cluster, ns, report, held)
        for kind in kinds:
            items, _ = cluster.list_objects(kind, ns, MANAGED_SELECTOR)
            for obj in items:
                name = obj["metadata"]["name"]
                cluster.delete(kind, ns, name)
                targets.append(Target(kind, ns, name))
        wait_deleted(cluster, targets, max(1.0, end - time.monotonic()), report, "down")
        if purge and ns != "default":
            namespace = cluster.get("Namespace", None, ns)
            # Only one `up` created: a namespace that was there before stays.
            if namespace is not None and CREATED_NAMESPACE in _annotations(namespace):
                cluster.delete("Namespace", None, ns)
                left = max(1.0, end - time.monotonic())
                wait_deleted(cluster, [Target("Namespace", "", ns)], left, report, "down")
                targets.append(Target("Namespace", "", ns))
    return [str(t) for t in targets]


# --- status ----------------------------------------------------------------------------


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
