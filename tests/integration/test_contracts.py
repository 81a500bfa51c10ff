"""The image contracts on the local cluster: `otactl up` with one rendered object patched
to break a rule fails the way the real image would make it fail, and says why.

A few `up` runs share the cluster, each in its own namespace, each breaking several rules
in different workloads (a run stops at its first failing phase, and then explains every
object that is not ready): the infra rules (kafka) one run each, the start rules of the
services in two runs, the http rules (the image starts, then refuses) in two runs that
reach the credentials phase. The happy path with the shipped manifests is
test_deploy.py's. Rules whose only effect is degraded behaviour are in tests/test_contracts.py.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unset(kind: str, name: str, key: str) -> dict[str, Any]:
    return {"kind": kind, "name": name, "path": f"data.{key}", "delete": True}


def _spec(kind: str, name: str, path: str, **how: Any) -> dict[str, Any]:
    return {"kind": kind, "name": name, "path": f"spec.template.spec.{path}", **how}


@dataclass
class Run:
    ns: str
    generated: Path
    proc: subprocess.CompletedProcess[str]


def _up(
    cluster: Any, tmp: Path, edits: list[dict[str, Any]], *sets: str, on: Run | None = None
) -> Run:
    """`otactl up` with `edits`, in a new namespace, or again in the one of `on`."""
    ns = on.ns if on else f"ctr-{uuid.uuid4().hex[:8]}"
    generated = on.generated if on else tmp / "generated"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
    env["OTACTL_TEST_PATCHES"] = json.dumps(edits)
    args = [
        "--generated", str(generated), "up", "--kubeconfig", str(cluster.kubeconfig),
        "--namespace", ns, "--set", f"tenant={ns}",
        "--set", f"gateway.node_port={30100 + uuid.uuid4().int % 2000}",
        *(a for s in sets for a in ("--set", s)),
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.patched_otactl", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return Run(ns, generated, proc)


@pytest.fixture(scope="module")
def runs(local_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Each broken installation is made once, when a test first asks for it."""
    made: dict[str, Run] = {}

    def get(name: str) -> Run:
        if name not in made:
            edits, sets = RUNS[name]
            tmp = tmp_path_factory.mktemp(name)
            if name == "no-key-daemon":
                # Schemas migrated and keyserver up (the oauth run got that far); then the
                # key-generation daemon goes away, and a new repo's keys never come.
                on = get("oauth")
                local_cluster.kubectl(
                    "delete", "deployment", "tuf-keyserver-daemon", "-n", on.ns, "--wait=true"
                )
                made[name] = _up(local_cluster, tmp, edits, *sets, on=on)
            else:
                made[name] = _up(local_cluster, tmp, edits, *sets)
        return made[name]

    yield get
    for run in {r.ns: r for r in made.values()}.values():
        local_cluster.kubectl("delete", "namespace", run.ns, "--wait=false", check=False)


SERVICES_FAIL = ("timeouts.services=30",)
RUNS: dict[str, tuple[list[dict[str, Any]], tuple[str, ...]]] = {
    "kafka-fsgroup": (
        [_spec("StatefulSet", "kafka", "securityContext.fsGroup", delete=True)],
        ("timeouts.infra=20",),
    ),
    "kafka-env": (
        [_spec("StatefulSet", "kafka", "containers.0.env.1", delete=True)],
        ("timeouts.infra=20",),
    ),
    "kafka-links": (
        [_spec("StatefulSet", "kafka", "enableServiceLinks", delete=True)],
        ("timeouts.infra=20",),
    ),
    # Issue 15: a pod weaker than the namespace's Pod Security level (the API server's own
    # admission refuses it; the local cluster's stand-in plays no part).
    "kafka-weakened": (
        [
            _spec(
                "StatefulSet",
                "kafka",
                "containers.0.securityContext.capabilities.add",
                value=["NET_ADMIN"],
            ),
        ],
        ("timeouts.infra=20",),
    ),
    "services-1": (
        [
            _spec(
                "Deployment",
                "director-daemon",
                "containers.0.args",
                value=["-main", "com.advancedtelematic.director.NoSuchBoot"],
            ),
            _unset("ConfigMap", "campaigner-daemon-config", "DB_URL"),
            {
                "kind": "Secret",
                "name": "tuf-keyserver-encryption",
                "path": "data.DB_ENCRYPTION_PASSWORD",
                "value": _b64("k" * 43),
            },
            _spec("StatefulSet", "treehub", "securityContext.fsGroup", delete=True),
            _unset("ConfigMap", "tuf-reposerver-config", "STORAGE_TYPE"),
            _spec("Deployment", "app", "containers.0.args", delete=True),
            {"kind": "Deployment", "name": "device-registry-daemon", "drop": True},
            _unset("ConfigMap", "web-events-config", "BIND_PORT"),
        ],
        SERVICES_FAIL,
    ),
    "services-2": (
        [
            {
                "kind": "Secret",
                "name": "tuf-keyserver-encryption",
                "path": "data.DB_ENCRYPTION_SALT",
                "value": _b64("c2FsdA=="),
            },
            _unset("ConfigMap", "treehub-config", "TREEHUB_STORAGE"),
            _spec("Deployment", "tuf-reposerver", "securityContext.fsGroup", delete=True),
            _unset("Secret", "campaigner-daemon-secret", "DB_PASSWORD"),
            _unset("ConfigMap", "app-config", "OIDC_NS_PROVIDER"),
        ],
        SERVICES_FAIL,
    ),
    "oauth": (
        [
            _unset("ConfigMap", "tuf-reposerver-config", "AUTH_PROTOCOL"),
            _unset("ConfigMap", "treehub-config", "AUTH_PROTOCOL"),
            _unset("ConfigMap", "web-events-config", "AUTH_PROTOCOL"),
            _unset("ConfigMap", "app-config", "OIDC_LOGIN_ACTION"),
        ],
        ("timeouts.credentials=30",),
    ),
    "no-key-daemon": (
        [
            {"kind": "Deployment", "name": "tuf-keyserver-daemon", "drop": True},
            _unset("ConfigMap", "device-registry-config", "AUTH_PROTOCOL"),
            _unset("Secret", "app-secret", "JWT_SECRET"),
        ],
        ("timeouts.credentials=20",),
    ),
}

# rule -> (run, the object otactl's explanation names, text of the image's error)
START_RULES = {
    "kafka-log-dirs-writable": (
        "kafka-fsgroup", "StatefulSet", "kafka",
        "none of the specified log dirs from /var/lib/kafka/data/logs can be created",
    ),
    "kafka-required-env": (
        "kafka-env", "StatefulSet", "kafka", "dub ensure KAFKA_ZOOKEEPER_CONNECT] FAILED",
    ),
    "kafka-deprecated-env": (
        "kafka-links", "StatefulSet", "kafka", "port is deprecated. Please use",
    ),
    "main-class": (
        "services-1", "Deployment", "director-daemon",
        "Could not find or load main class com.advancedtelematic.director.NoSuchBoot",
    ),
    "schema-migrated": (
        "services-1", "Deployment", "device-registry",
        "Outdated migrations, terminating (schema device_registry is migrated only by "
        "com.advancedtelematic.ota.deviceregistry.DaemonBoot",
    ),
    "db-url": (
        "services-1", "Deployment", "campaigner-daemon", "Could not connect to localhost:3306",
    ),
    "encryption-password": (
        "services-1", "Deployment", "tuf-keyserver-daemon",
        "password needs to be 64 chars or longer (DB_ENCRYPTION_PASSWORD has 43)",
    ),
    "treehub-objects-writable": (
        "services-1", "StatefulSet", "treehub",
        "Could not open /treehub-objects/object-storage as local blob store",
    ),
    "reposerver-storage": (
        "services-1", "Deployment", "tuf-reposerver",
        "No configuration setting found for key 'storage.s3.accessKey'",
    ),
    "listen-port": (
        "services-1", "Deployment", "app", "(the image listens on 0.0.0.0:9000)",
    ),
    "encryption-salt": (
        "services-2", "Deployment", "tuf-keyserver", "Salt needs to be base64 encoded",
    ),
    "treehub-storage": (
        "services-2", "StatefulSet", "treehub", "'treehub.storage.s3.accessKey'",
    ),
    "reposerver-targets-writable": (
        "services-2", "Deployment", "tuf-reposerver",
        "Could not open /var/lib/tuf-reposerver/targets as local target store",
    ),
    "db-credentials": (
        "services-2", "Deployment", "campaigner-daemon",
        "Access denied for user 'campaigner'",
    ),
}  # fmt: skip


def _explanation(stderr: str, kind: str, name: str, ns: str) -> str:
    """The part of the wait's one-line error about one object."""
    marker = f"{kind} {ns}/{name}: "
    assert marker in stderr, stderr
    rest = stderr.split(marker, 1)[1]
    return rest.split(f"; Deployment {ns}/", 1)[0].split(f"; StatefulSet {ns}/", 1)[0]


@pytest.mark.parametrize("rule", sorted(START_RULES))
def test_up_fails_naming_the_broken_start_rule(runs: Any, rule: str) -> None:
    run_name, kind, name, error = START_RULES[rule]
    run = runs(run_name)
    assert run.proc.returncode == 7, run.proc.stderr  # a wait ran out, with the reasons
    about = _explanation(run.proc.stderr, kind, name, run.ns)
    assert "crash-looping" in about, about
    assert error in about and f"[contract {rule}: " in about, about


def test_the_other_services_of_a_broken_run_start(runs: Any, local_cluster: Any) -> None:
    """Only the broken workloads (and the API servers whose schema has no migrator) fail:
    the contract is per pod, not a blanket refusal."""
    run = runs("services-1")
    out = local_cluster.kubectl("get", "deploy", "-n", run.ns, "-o", "json").stdout
    ready = {
        d["metadata"]["name"]
        for d in json.loads(out)["items"]
        if d.get("status", {}).get("availableReplicas")
    }
    assert {"tuf-reposerver", "director", "director-daemon", "app"}.isdisjoint(ready)
    assert {"campaigner-daemon", "campaigner", "tuf-keyserver"}.isdisjoint(ready)
    assert {"gateway-deployment", "reverse-proxy"} <= ready


def test_a_pod_weaker_than_the_namespace_level_is_refused_with_the_reason(
    runs: Any, local_cluster: Any
) -> None:
    run = runs("kafka-weakened")
    assert run.proc.returncode == 7, run.proc.stderr
    errors = [line for line in run.proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in run.proc.stderr, run.proc.stderr
    about = _explanation(run.proc.stderr, "StatefulSet", "kafka", run.ns)
    assert (
        'its pods are refused: pods "kafka-0" is forbidden: violates PodSecurity '
        '"baseline:latest": non-default capabilities (container "kafka" must not include '
        '"NET_ADMIN" in securityContext.capabilities.add)'
    ) in about, about
    ns = json.loads(local_cluster.kubectl("get", "namespace", run.ns, "-o", "json").stdout)
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


def _proxy_get(cluster: Any, ns: str, service: str, path: str) -> Any:
    return cluster.proxy("GET", ns, service, path, headers={"x-ats-namespace": ns})


def test_oauth_default_fails_up_at_the_first_credentials_call(runs: Any, local_cluster: Any):
    run = runs("oauth")
    err = run.proc.stderr
    # A service's own 403 is a configuration error (exit 5) that names the missing setting.
    assert run.proc.returncode == 5, err
    assert "refused with 403" in err and "AUTH_PROTOCOL is not set" in err, err
    # treehub and web-events refuse every untokened call too (garage-push, the browser)
    for service, path in (("treehub", "/api/v3/config"), ("web-events", "/api/v1/events")):
        resp = _proxy_get(local_cluster, run.ns, service, path)
        assert resp.status == 403, (service, resp.body)
        assert b"[contract auth-protocol: " in resp.body
    assert _proxy_get(local_cluster, run.ns, "treehub", "/health").status == 200


def test_app_without_the_no_login_action_shows_a_third_party_login(runs: Any, local_cluster):
    run = runs("oauth")
    resp = _proxy_get(local_cluster, run.ns, "app", "/login")
    assert resp.status == 200 and b"[contract app-login-action: " in resp.body


def test_no_key_generation_daemon_means_keys_stay_pending(runs: Any, local_cluster: Any):
    run = runs("no-key-daemon")
    assert run.proc.returncode == 7, run.proc.stderr  # retried to the credentials deadline
    assert "423" in run.proc.stderr, run.proc.stderr
    # The reposerver says why (otactl's one-line timeout keeps only the status).
    resp = _proxy_get(local_cluster, run.ns, "tuf-reposerver", "/api/v1/user_repo/root.json")
    assert resp.status == 423 and b"[contract key-generation: " in resp.body
    assert b"no KeyGenerationDaemon has run" in resp.body


def test_app_without_jwt_secret_fails_its_login(runs: Any, local_cluster: Any):
    run = runs("no-key-daemon")
    resp = _proxy_get(local_cluster, run.ns, "app", "/login")
    assert resp.status == 500 and b"Empty key" in resp.body
    assert b"[contract app-jwt-secret: " in resp.body


def test_app_without_the_configured_namespace_fails_its_login(runs: Any, local_cluster: Any):
    run = runs("services-2")
    resp = _proxy_get(local_cluster, run.ns, "app", "/login")
    assert resp.status == 500 and b"[contract app-namespace-provider: " in resp.body


def test_device_registry_under_oauth_refuses_registration(runs: Any, local_cluster: Any):
    run = runs("no-key-daemon")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "otactl", "--generated", str(run.generated), "new-device", "d1",
         "--kubeconfig", str(local_cluster.kubeconfig), "--namespace", run.ns,
         "--set", f"tenant={run.ns}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 5 and "refused with 403" in proc.stderr, proc.stderr
    assert "AUTH_PROTOCOL is not set" in proc.stderr, proc.stderr
