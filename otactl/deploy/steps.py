"""The named steps of `otactl up`, one phase each (cluster, namespace, network, pki,
secrets, infra, bootstrap, services, prune, health, credentials); `up._plan` runs them in
order. Each reports its start and outcome through the run's phase reporter."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otactl import pki, render, secretstore, security
from otactl.deploy.cluster_state import (
    reconcile_build_tools_ca,
    reconcile_pki,
    with_apiserver_cidrs,
)
from otactl.deploy.down import prune
from otactl.deploy.objects import (
    BUILD_TOOLS_SECRET,
    CREATED_NAMESPACE,
    HEALTH_GATES,
    _annotations,
    _bootstrap_objects,
    _component,
    _labelled,
    _roll_on_tls_change,
    _workloads,
    build_tools_secret,
    gateway_tls_secret,
)
from otactl.deploy.run import Run, _hold_installation, plural
from otactl.wait import Target


@dataclass
class Rendered:
    """The rendered sets `up` applies, and the secrets they were rendered with."""

    secrets: secretstore.Secrets
    infra: list[dict[str, Any]]
    services: list[dict[str, Any]]
    ingress: list[dict[str, Any]]
    policies: list[dict[str, Any]]

    @property
    def keyserver(self) -> list[dict[str, Any]]:
        return [o for o in self.services if o["metadata"]["name"] == "tuf-keyserver-encryption"]


def check_cluster(run: Run) -> None:
    """The first request: the API server answers, and with which version."""
    done = run.phase("cluster", run.cluster.target.server)
    version = run.cluster.version()
    done(version)


def render_objects(run: Run) -> Rendered:
    """The values completed from the cluster (API server addresses), the secrets loaded or
    made, and the manifests rendered with them."""
    run.values = with_apiserver_cidrs(run.cluster, run.values)
    secrets = secretstore.load_or_create(run.server_dir)
    rendered = render.render(run.values, secrets)
    return Rendered(
        secrets,
        infra=rendered.objects("infra"),
        services=rendered.objects("services"),
        ingress=rendered.objects("ingress") if "ingress" in rendered.sets else [],
        policies=rendered.objects("network") if "network" in rendered.sets else [],
    )


def apply_namespace(run: Run, objects: Rendered, held: contextlib.ExitStack) -> None:
    """The namespace with its Pod Security labels, then the installation's Lease."""
    cluster, opts, applier, ns = run.cluster, run.opts, run.applier, run.values.namespace
    # The namespace enforces the Pod Security level all our pods meet: the API server then
    # refuses any pod weaker than that (a `default` namespace is labelled, never owned).
    level = security.namespace_level(objects.infra + objects.services)
    done = run.phase("namespace", f"{ns}, Pod Security {level}")
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
        _hold_installation(cluster, ns, run.report, held)


def apply_network_policies(run: Run, objects: Rendered) -> None:
    """The NetworkPolicies, before any pod they govern."""
    done = run.phase("network", f"{len(objects.policies)} NetworkPolicies")
    done(run.changed_text(run.applier.apply(objects.policies)))


def ensure_pki(run: Run) -> pki.ServerFiles:
    """The server PKI and build-tools CA, loaded or made once the cluster agrees with them."""
    values, server_dir = run.values, run.server_dir
    done = run.phase("pki")
    reconcile_pki(run.cluster, values, server_dir)
    reconcile_build_tools_ca(run.cluster, values, server_dir)
    made = pki.ensure_server_pki_for(values, server_dir)
    _, tools_created = pki.ensure_build_tools_ca(
        server_dir, pki.PkiSettings(**values.pki.model_dump())
    )
    made_now = ", ".join(made.created + tools_created)
    # A dry run makes them in a scratch copy only.
    done((f"would create {made_now}" if run.opts.dry_run else made_now) if made_now else "kept")
    return made.files


def apply_secrets(run: Run, objects: Rendered, files: pki.ServerFiles) -> None:
    """`gateway-tls`, `build-tools-ca` and the key server's encryption Secret."""
    done = run.phase("secrets", f"gateway-tls, {BUILD_TOOLS_SECRET}, tuf-keyserver-encryption")
    keyserver = objects.keyserver
    tls = gateway_tls_secret(run.values, files)
    tools = build_tools_secret(run.values, run.server_dir)
    _roll_on_tls_change(objects.services, tls, tools)
    changed = run.applier.apply([tls, tools, *keyserver])
    notes = [
        f"would have {n} (in a scratch copy)" if run.opts.dry_run else n
        for n in objects.secrets.notes
    ]
    done("; ".join([run.changed_text(changed), *notes]))


def apply_infra(run: Run, objects: Rendered) -> None:
    """Zookeeper, Kafka and MySQL, waited for until ready."""
    done = run.phase("infra", "zookeeper, kafka, mysql")
    base = [o for o in objects.infra if _component(o) != "bootstrap"]
    changed = run.applier.apply(base)
    if not run.opts.dry_run:
        timeout = run.deadline.phase(run.values.timeouts.infra)
        run.waited(_workloads(base, ("StatefulSet",)), timeout, "infra")
    done(run.changed_text(changed))


def apply_bootstrap(run: Run, objects: Rendered) -> None:
    """The Job that creates the databases and users, waited for until it succeeded."""
    done = run.phase("bootstrap", "databases and users")
    sql_hash = hashlib.sha256(render.bootstrap_sql(objects.secrets).encode()).hexdigest()[:16]
    boot = [o for o in objects.infra if _component(o) == "bootstrap"]
    boot = _bootstrap_objects(run.cluster, boot, sql_hash, run.values.namespace, run.opts.dry_run)
    changed = run.applier.apply(boot)
    if not run.opts.dry_run:
        timeout = run.deadline.phase(run.values.timeouts.bootstrap)
        run.waited(_workloads(boot, ("Job",)), timeout, "bootstrap")
    done(run.changed_text(changed))


def apply_services(run: Run, objects: Rendered) -> None:
    """The OTA services, gateway and reverse proxy, waited for until ready."""
    done = run.phase("services", "OTA services, gateway, reverse proxy")
    keyserver = objects.keyserver
    rest = [o for o in objects.services if o not in keyserver] + objects.ingress
    changed = run.applier.apply(rest)
    if not run.opts.dry_run:
        gates = _workloads(rest, ("Deployment", "StatefulSet"))
        gates += [
            Target("Service", run.values.namespace, o["metadata"]["name"])
            for o in rest
            if o["kind"] == "Service" and o["spec"].get("type") == "LoadBalancer"
        ]
        run.waited(gates, run.deadline.phase(run.values.timeouts.services), "services")
    done(run.changed_text(changed))


def prune_unrendered(run: Run, objects: Rendered) -> None:
    """`--prune`: delete what otactl labelled and no longer renders."""
    done = run.phase("prune")
    rendered = objects.infra + objects.services + objects.ingress + objects.policies
    keep = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    keep |= {("Secret", "gateway-tls"), ("Secret", BUILD_TOOLS_SECRET), ("Secret", "user-keys")}
    result = run.result
    result.pruned = prune(run.cluster, run.values.namespace, keep, dry_run=run.opts.dry_run)
    gone = plural(len(result.pruned), "object")
    done(f"{gone} would be deleted" if run.opts.dry_run else f"{gone} deleted")


def check_health(run: Run, health_step: Callable[[tuple[str, ...], float], None]) -> None:
    """The services' own health checks (through the service proxy)."""
    done = run.phase("health", ", ".join(HEALTH_GATES))
    health_step(HEALTH_GATES, run.deadline.phase(run.values.timeouts.health))
    done("OK")


def make_credentials(run: Run, credentials_step: Callable[[str, float], Path]) -> None:
    """`credentials.zip` for the build tools."""
    done = run.phase("credentials", "credentials.zip")
    result = run.result
    timeout = run.deadline.phase(run.values.timeouts.credentials)
    result.credentials_zip = credentials_step(result.gateway_url, timeout)
    done(str(result.credentials_zip))
