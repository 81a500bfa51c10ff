"""The local simulated cluster behaves like a cluster, and its stand-in like the OTA services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otactl import localcluster
from otactl.errors import LocalClusterError
from tests.tuf_check import verify_root

from .conftest import LocalCluster, StandinKnobs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def standin_module() -> Any:
    """standin.py itself, for its constants."""
    sys.path.insert(0, str(ROOT / "contrib" / "local-cluster" / "standin"))
    try:
        import standin
    finally:
        sys.path.pop(0)
    return standin


def _otactl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "otactl", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def namespace(local_cluster: LocalCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    local_cluster.kubectl("create", "namespace", name)
    yield name
    local_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _service(local_cluster: LocalCluster, ns: str, app: str, replicas: int = 1) -> None:
    """An OTA-like Deployment (pods on 9001) and its Service on port 80, then wait Available."""
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": app},
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
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": app},
                "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 9001}]},
            },
        ],
    }
    local_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))
    local_cluster.kubectl(
        "wait", "-n", ns, "--for=condition=Available", f"deployment/{app}", "--timeout=60s"
    )
    # The proxy needs an endpoint; the EndpointSlice follows the pods' readiness.
    local_cluster.kubectl(
        "wait", "-n", ns, "--for=jsonpath={.subsets[0].addresses[0].ip}", f"endpoints/{app}",
        "--timeout=30s",
    )  # fmt: skip


# --------------------------------------------------------------------------- the cluster


def test_nodes_ready_through_python_client(local_cluster: LocalCluster) -> None:
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(str(local_cluster.kubeconfig)))
    nodes = api.list_node().items
    assert sorted(n.metadata.name for n in nodes) == ["kwok-node-0", "kwok-node-1"]
    for n in nodes:
        ready = {c.type: c.status for c in n.status.conditions}["Ready"]
        assert ready == "True", n.metadata.name


def test_version_is_the_pinned_release(local_cluster: LocalCluster) -> None:
    out = json.loads(local_cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == localcluster.pinned_release()
    assert out["clientVersion"]["gitVersion"] == localcluster.pinned_release()


def test_deployment_becomes_available(local_cluster: LocalCluster, namespace: str) -> None:
    _service(local_cluster, namespace, "web-events", replicas=3)
    dep = json.loads(
        local_cluster.kubectl("get", "-n", namespace, "deployment/web-events", "-o", "json").stdout
    )
    assert dep["status"]["availableReplicas"] == 3
    pods = json.loads(local_cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)
    ips = [p["status"]["podIP"] for p in pods["items"]]
    # Pod IPs come from the netns-only range, never loopback (the proxy refuses loopback).
    assert all(ip.startswith("10.244.") for ip in ips) and len(set(ips)) == 3


def test_statefulset_with_pvc_becomes_ready(local_cluster: LocalCluster, namespace: str) -> None:
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "treehub"},
        "spec": {
            "serviceName": "treehub",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "treehub"}},
            "template": {
                "metadata": {"labels": {"app": "treehub"}},
                "spec": {
                    "containers": [
                        {
                            "name": "treehub",
                            "image": "advancedtelematic/treehub:0.0.0",
                            "volumeMounts": [{"name": "objects", "mountPath": "/objects"}],
                        }
                    ]
                },
            },
            # No storageClassName: the default class (`standard`) must be filled in.
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "objects"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "5Gi"}},
                    },
                }
            ],
        },
    }
    local_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(sts))
    local_cluster.kubectl(
        "rollout", "status", "-n", namespace, "statefulset/treehub", "--timeout=60s"
    )
    got = json.loads(
        local_cluster.kubectl("get", "-n", namespace, "statefulset/treehub", "-o", "json").stdout
    )
    assert got["status"]["readyReplicas"] == 1
    pvc = json.loads(
        local_cluster.kubectl("get", "-n", namespace, "pvc/objects-treehub-0", "-o", "json").stdout
    )
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["storageClassName"] == "standard"
    pv = json.loads(
        local_cluster.kubectl("get", f"pv/{pvc['spec']['volumeName']}", "-o", "json").stdout
    )
    assert pv["status"]["phase"] == "Bound"
    assert pv["spec"]["capacity"]["storage"] == "5Gi"


def test_default_storage_class_is_standard(local_cluster: LocalCluster) -> None:
    sc = json.loads(local_cluster.kubectl("get", "storageclass", "standard", "-o", "json").stdout)
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"


def test_job_completes(local_cluster: LocalCluster, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "migrate", "image": "mariadb:10.11"}],
                }
            }
        },
    }
    local_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job))
    local_cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Complete", "job/migrate", "--timeout=60s"
    )
    got = json.loads(
        local_cluster.kubectl("get", "-n", namespace, "job/migrate", "-o", "json").stdout
    )
    assert got["status"]["succeeded"] == 1


def test_deleted_pods_go_away(local_cluster: LocalCluster, namespace: str) -> None:
    _service(local_cluster, namespace, "campaigner")
    local_cluster.kubectl("delete", "-n", namespace, "deployment/campaigner", "--wait=true")
    local_cluster.kubectl(
        "wait", "-n", namespace, "--for=delete", "pod", "-l", "app=campaigner", "--timeout=60s"
    )
    left = local_cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout
    assert left.strip() == ""


# --------------------------------------------------------------------------- the stand-in


def test_service_proxy_reaches_standin_health(
    local_cluster: LocalCluster, namespace: str, standin: StandinKnobs
) -> None:
    _service(local_cluster, namespace, "director", replicas=2)
    r = local_cluster.proxy("GET", namespace, "director", "/health")
    assert (r.status, r.json()) == (200, {"status": "OK"})
    # director's one dependency is tuf-keyserver, absent from this namespace.
    deps = local_cluster.proxy("GET", namespace, "director", "/health/dependencies")
    assert deps.status == 502 and list(deps.json()) == ["http://tuf-keyserver:80"]
    version = local_cluster.proxy("GET", namespace, "director", "/health/version")
    assert version.status == 200 and version.json()["name"] == "director"
    # The same path through kubectl: what a user would type.
    raw = local_cluster.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{namespace}/services/director:80/proxy/health"
    )
    assert json.loads(raw.stdout) == {"status": "OK"}
    # Each pod IP is known to the stand-in as a director pod.
    apps = [p["app"] for p in standin.pods().values() if p["namespace"] == namespace]
    assert apps == ["director", "director"]


def test_warmup_then_healthy(
    local_cluster: LocalCluster, namespace: str, standin: StandinKnobs
) -> None:
    # The warm-up counts from when the stand-in first sees the pod, which may be long before
    # the first request on a busy machine: each check below holds whatever the timing.
    standin.set(warmup_seconds={"tuf-keyserver": 3600})
    _service(local_cluster, namespace, "tuf-keyserver")
    r = local_cluster.proxy("GET", namespace, "tuf-keyserver", "/health")
    seen_by = time.monotonic()  # the stand-in knew the pod before this (monotonic: one clock)
    assert r.status == 503
    # libats' shape: every check by name, a failing one with its cause.
    assert r.json() == {"db": {"status": "down", "cause": standin_module().DB_DOWN_CAUSE}}
    # tuf-keyserver has no dependency checks: its /health/dependencies is always 200.
    deps = local_cluster.proxy("GET", namespace, "tuf-keyserver", "/health/dependencies")
    assert (deps.status, deps.json()) == (200, {"status": "OK"})
    standin.set(warmup_seconds={"tuf-keyserver": 0})  # the warm-up is over
    assert local_cluster.proxy("GET", namespace, "tuf-keyserver", "/health").status == 200

    # A restart starts the warm-up again. With a warm-up no longer than the pod's age, the
    # pod stays healthy without a restart; after one it warms up, and an answer that came
    # within that warm-up must be 503. A slower answer proves nothing: try again (the pod
    # is older by then, so the warm-up is longer).
    for _ in range(5):
        warmup = time.monotonic() - seen_by  # the pod is at least this old
        standin.set(warmup_seconds={"tuf-keyserver": warmup})
        assert local_cluster.proxy("GET", namespace, "tuf-keyserver", "/health").status == 200
        before = time.monotonic()
        # (pods of namespaces other tests are still deleting may restart too: harmless)
        assert standin.restart("tuf-keyserver") >= 1
        seen_by = time.monotonic()
        status = local_cluster.proxy("GET", namespace, "tuf-keyserver", "/health").status
        if time.monotonic() - before < warmup:
            assert status == 503
            break
    else:
        pytest.fail("no answer came within a warm-up in 5 tries")


def test_dependencies_of_reposerver_follow_the_keyserver(
    local_cluster: LocalCluster, namespace: str, standin: StandinKnobs
) -> None:
    _service(local_cluster, namespace, "tuf-reposerver")
    _service(local_cluster, namespace, "tuf-keyserver")
    deps = "/health/dependencies"
    assert local_cluster.proxy("GET", namespace, "tuf-reposerver", deps).status == 200
    standin.set(never_healthy=["tuf-keyserver"])
    r = local_cluster.proxy("GET", namespace, "tuf-reposerver", deps)
    assert r.status == 502
    [(name, check)] = r.json().items()
    assert name == "http://tuf-keyserver:80" and check["status"] == "down" and check["cause"]
    # Its own database is fine: /health says so.
    assert local_cluster.proxy("GET", namespace, "tuf-reposerver", "/health").status == 200


def test_never_healthy_and_bursts(
    local_cluster: LocalCluster, namespace: str, standin: StandinKnobs
) -> None:
    _service(local_cluster, namespace, "campaigner")
    standin.set(never_healthy=["campaigner"])
    assert local_cluster.proxy("GET", namespace, "campaigner", "/health").status == 503
    standin.set(never_healthy=[], bursts={"campaigner": {"count": 2, "status": 500}})
    statuses = [
        local_cluster.proxy("GET", namespace, "campaigner", "/health").status for _ in range(3)
    ]
    assert statuses == [500, 500, 200]
    assert standin.get()["bursts"]["campaigner"]["count"] == 0


def test_reposerver_user_repo_409_423_and_signed_root(
    local_cluster: LocalCluster, namespace: str, standin: StandinKnobs
) -> None:
    standin.set(keygen_delay_seconds=2)
    _service(local_cluster, namespace, "tuf-reposerver")
    hdr = {"x-ats-namespace": "default"}
    before = local_cluster.proxy("GET", namespace, "tuf-reposerver", "/api/v1/user_repo/root.json")
    assert (before.status, before.json()["code"]) == (404, "no_repo_for_namespace")
    created = local_cluster.proxy("POST", namespace, "tuf-reposerver", "/api/v1/user_repo", {}, hdr)
    assert created.status == 200
    repo_id = created.json()
    assert isinstance(repo_id, str) and uuid.UUID(repo_id)
    again = local_cluster.proxy("POST", namespace, "tuf-reposerver", "/api/v1/user_repo", {}, hdr)
    assert again.status == 409
    pending = local_cluster.proxy("GET", namespace, "tuf-reposerver", "/api/v1/user_repo/root.json")
    assert (pending.status, pending.json()["code"]) == (423, "keys_not_ready")
    deadline = time.monotonic() + 10
    while True:
        root = local_cluster.proxy(
            "GET", namespace, "tuf-reposerver", "/api/v1/user_repo/root.json"
        )
        if root.status == 200:
            break
        assert root.status == 423 and time.monotonic() < deadline
        time.sleep(0.3)
    headers = {k.lower(): v for k, v in root.headers.items()}
    assert headers["x-ats-tuf-repo-id"] == repo_id
    signed = verify_root(root.body)["signed"]
    assert set(signed["roles"]) == {"root", "targets", "snapshot", "timestamp"}
    # RSA unless the POST names a keyType (ota-tuf's KeyType.default).
    assert {k["keytype"] for k in signed["keys"].values()} == {"RSA"}
    assert standin.state()["user_repos"] == {"default": repo_id}
    # Repos are per tenant (x-ats-namespace): another tenant has none yet.
    other = {"x-ats-namespace": "other"}
    path = "/api/v1/user_repo/root.json"
    assert (
        local_cluster.proxy("GET", namespace, "tuf-reposerver", path, headers=other).status == 404
    )


def test_root_signature_fails_when_tampered(
    local_cluster: LocalCluster, namespace: str, standin: StandinKnobs
) -> None:
    from cryptography.exceptions import InvalidSignature

    standin.set(keygen_delay_seconds=0)
    _service(local_cluster, namespace, "tuf-reposerver")
    # The POST's keyType picks the key type (CreateRepositoryRequest).
    body = {"keyType": "ED25519"}
    created = local_cluster.proxy("POST", namespace, "tuf-reposerver", "/api/v1/user_repo", body)
    assert created.status == 200
    root = local_cluster.proxy("GET", namespace, "tuf-reposerver", "/api/v1/user_repo/root.json")
    doc = verify_root(root.body)
    assert {k["keytype"] for k in doc["signed"]["keys"].values()} == {"ED25519"}
    doc["signed"]["version"] += 1
    with pytest.raises(InvalidSignature):
        verify_root(json.dumps(doc).encode())
    other = {"x-ats-namespace": "other"}
    bad = local_cluster.proxy(
        "POST", namespace, "tuf-reposerver", "/api/v1/user_repo", {"keyType": "DSA"}, other
    )
    assert (bad.status, bad.body) == (400, b"Unknown KeyType: DSA")


def test_keyserver_423_then_root_and_targets_pair(
    local_cluster: LocalCluster, namespace: str, standin: StandinKnobs
) -> None:
    from otactl.credentials import check_key_pair

    # Long enough for the checks made while the keys are pending, on a busy machine too.
    standin.set(keygen_delay_seconds=10)
    _service(local_cluster, namespace, "tuf-reposerver")
    _service(local_cluster, namespace, "tuf-keyserver")
    repo_id = local_cluster.proxy(
        "POST", namespace, "tuf-reposerver", "/api/v1/user_repo", {}
    ).json()
    assert (
        local_cluster.proxy(
            "GET", namespace, "tuf-keyserver", f"/api/v1/root/{uuid.uuid4()}"
        ).status
        == 404
    )
    pending = local_cluster.proxy("GET", namespace, "tuf-keyserver", f"/api/v1/root/{repo_id}")
    assert (pending.status, pending.json()["code"]) == (423, "keys_not_ready")
    pairs_path = f"/api/v1/root/{repo_id}/keys/targets/pairs"
    # No signed root stored yet: nothing to list key pairs from.
    assert local_cluster.proxy("GET", namespace, "tuf-keyserver", pairs_path).status == 404
    # 423 until the keys are made, then the root: poll, however busy the machine.
    deadline = time.monotonic() + 60
    while (
        root := local_cluster.proxy("GET", namespace, "tuf-keyserver", f"/api/v1/root/{repo_id}")
    ).status == 423:
        assert time.monotonic() < deadline, "keys never generated"
        time.sleep(0.2)
    assert root.status == 200
    pairs = local_cluster.proxy("GET", namespace, "tuf-keyserver", pairs_path)
    assert pairs.status == 200
    [pair] = pairs.json()
    assert pair["keytype"] == "RSA"
    assert pair["keyval"]["private"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    # The pair's public key is the root's targets key, and its private key is its own.
    signed = verify_root(root.body)["signed"]
    [targets_keyid] = signed["roles"]["targets"]["keyids"]
    assert signed["keys"][targets_keyid]["keyval"]["public"] == pair["keyval"]["public"]
    check_key_pair("RSA", pair["keyval"]["public"], pair["keyval"]["private"])


def test_keyserver_key_generation_failed_500_and_502_then_retry(
    local_cluster: LocalCluster, namespace: str, standin: StandinKnobs
) -> None:
    standin.set(keygen_delay_seconds=0, keygen_error="SlickCryptoError|invalid password length")
    _service(local_cluster, namespace, "tuf-reposerver")
    _service(local_cluster, namespace, "tuf-keyserver")
    repo_id = local_cluster.proxy(
        "POST", namespace, "tuf-reposerver", "/api/v1/user_repo", {}
    ).json()
    keys = local_cluster.proxy("GET", namespace, "tuf-keyserver", f"/api/v1/root/{repo_id}")
    assert keys.status == 500
    err = keys.json()
    assert (err["code"], err["description"]) == ("key_generation_failed", "Could not generate keys")
    assert set(err["cause"].values()) == {"SlickCryptoError|invalid password length"}
    repo = local_cluster.proxy("GET", namespace, "tuf-reposerver", "/api/v1/user_repo/root.json")
    assert repo.status == 502
    assert repo.json()["code"] == "key_generation_failed" and repo.json()["cause"]["cause"]
    # PUT /api/v1/root/<id>: the failed requests go back to the daemon.
    retried = local_cluster.proxy("PUT", namespace, "tuf-keyserver", f"/api/v1/root/{repo_id}")
    assert retried.status == 200
    assert local_cluster.proxy(
        "GET", namespace, "tuf-keyserver", f"/api/v1/root/{repo_id}"
    ).status == 200  # fmt: skip


def test_director_admin_repo(
    local_cluster: LocalCluster, namespace: str, standin: StandinKnobs
) -> None:
    _service(local_cluster, namespace, "director")
    path = "/api/v1/admin/repo"
    assert local_cluster.proxy("GET", namespace, "director", f"{path}/root.json").status == 404
    first = local_cluster.proxy("POST", namespace, "director", path, {})
    assert (first.status, first.body) == (201, b"")
    assert standin.state()["director_orphan_keys"] == {}
    assert local_cluster.proxy("POST", namespace, "director", path, {}).status == 409
    # What the deployer must avoid: the repeated POST left orphan keys behind.
    assert standin.state()["director_orphan_keys"] == {"default": 1}
    root = local_cluster.proxy("GET", namespace, "director", f"{path}/root.json")
    assert root.status == 200 and root.json()["signed"]["_type"] == "Root"
    # The director's repo is ED25519 (director eb75c8b RepositoryCreation.scala).
    assert {k["keytype"] for k in verify_root(root.body)["signed"]["keys"].values()} == {"ED25519"}


def test_device_registry_keeps_uuid_of_known_device_id(
    local_cluster: LocalCluster, namespace: str, standin: StandinKnobs
) -> None:
    _service(local_cluster, namespace, "device-registry", replicas=2)
    first_uuid, other_uuid = str(uuid.uuid4()), str(uuid.uuid4())
    dev = {
        "uuid": first_uuid,
        "deviceId": "demo-device",
        "deviceName": "demo-device",
        "deviceType": "Other",
        "credentials": "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n",
        "credentialsType": "PEM",
    }
    r = local_cluster.proxy("PUT", namespace, "device-registry", "/api/v1/devices", dev)
    assert (r.status, r.json()) == (200, first_uuid)
    # Same deviceId, new uuid and credentials: the original uuid comes back (state is shared
    # by both pods of the service, whichever one the proxy picks).
    dev2 = {**dev, "uuid": other_uuid, "credentials": "NEW"}
    for _ in range(3):
        r = local_cluster.proxy("PUT", namespace, "device-registry", "/api/v1/devices", dev2)
        assert (r.status, r.json()) == (200, first_uuid)
    bad = local_cluster.proxy("PUT", namespace, "device-registry", "/api/v1/devices", {"x": 1})
    assert bad.status == 400
    no_creds = {k: v for k, v in dev.items() if k != "credentials"}
    r = local_cluster.proxy("PUT", namespace, "device-registry", "/api/v1/devices", no_creds)
    assert (r.status, r.json()["code"]) == (400, "request_needs_credentials")
    search = local_cluster.proxy("GET", namespace, "device-registry", "/api/v1/devices").json()
    assert search["total"] == 1 and search["values"][0]["uuid"] == first_uuid
    # The credentials of the known deviceId were replaced (what otactl must avoid).
    [registered] = standin.devices()
    assert registered["uuid"] == first_uuid and registered["credentials"] == "NEW"
    # Look-up by deviceId: the page with that device, or an empty one.
    path = "/api/v1/devices?deviceId=demo-device"
    found = local_cluster.proxy("GET", namespace, "device-registry", path).json()
    assert [d["uuid"] for d in found["values"]] == [first_uuid]
    assert "credentials" not in found["values"][0]
    path = "/api/v1/devices?deviceId=nobody"
    assert local_cluster.proxy("GET", namespace, "device-registry", path).json()["values"] == []
    path = "/api/v1/devices?deviceId=x&nameContains=y"
    assert local_cluster.proxy("GET", namespace, "device-registry", path).status == 400
    # A new deviceId with a taken name, or a taken uuid: 409 conflicting_device.
    for clash in ({"deviceId": "other", "uuid": str(uuid.uuid4())},
                  {"deviceId": "other", "deviceName": "other", "uuid": first_uuid}):  # fmt: skip
        r = local_cluster.proxy(
            "PUT", namespace, "device-registry", "/api/v1/devices", {**dev, **clash}
        )
        assert (r.status, r.json()["code"]) == (409, "conflicting_device")
    assert len(standin.devices()) == 1


# --------------------------------------------------------------------------- lifecycle


def test_up_twice_refuses(local_cluster: LocalCluster, tmp_path: Path) -> None:
    # The same state dir, through the CLI as a user would run it.
    res = _otactl("--generated", str(local_cluster.generated), "local-cluster", "up", cwd=tmp_path)
    assert res.returncode != 0
    assert "already running" in res.stderr and "Traceback" not in res.stderr
    # Another state dir on the running cluster's port: the busy port is named.
    res = _otactl(
        "--generated", str(tmp_path / "g"), "local-cluster", "up",
        f"--api-port={local_cluster.info.api_port}", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode != 0
    assert f"port {local_cluster.info.api_port}" in res.stderr and "busy" in res.stderr
    # Nothing of the refused attempt is left behind.
    assert not (tmp_path / "g" / "local" / "state.json").exists()


def test_status_reports_running_cluster(local_cluster: LocalCluster, tmp_path: Path) -> None:
    res = _otactl(
        "--generated", str(local_cluster.generated), "local-cluster", "status", "-o", "json",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["running"] and st["api_ready"]
    assert set(st["processes"]) == {
        "forwarder", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
        "kwok", "standin", "watchdog",
    }  # fmt: skip
    assert all(st["processes"].values())


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"  # exited, waiting to be reaped by init


def test_up_down_cli_leaves_nothing_behind(tmp_path: Path) -> None:
    generated = tmp_path / "generated"
    res = _otactl(
        "--generated", str(generated), "local-cluster", "up", "--api-port=0",
        "--control-port=0", "--no-standin", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "export KUBECONFIG=" in res.stdout
    state = json.loads((generated / "local" / "state.json").read_text())
    pids = [p["pid"] for p in state["processes"]]
    assert {p["name"] for p in state["processes"]} == {
        "forwarder", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
    }  # fmt: skip
    assert all(not _gone(pid) for pid in pids)
    kubeconfig = generated / "local" / "kubeconfig"
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert oct((generated / "local" / "pki" / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert oct((generated / "local" / "pki").stat().st_mode & 0o777) == "0o700"

    res = _otactl("--generated", str(generated), "local-cluster", "down", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in pids):
        assert time.monotonic() < deadline, [p for p in pids if not _gone(p)]
        time.sleep(0.1)
    assert not Path("/run/netns", state["netns"]).exists()
    assert not (generated / "local" / "state.json").exists()
    assert not kubeconfig.exists() and not (generated / "local" / "pki").exists()
    assert (generated / "local" / "logs" / "kube-apiserver.log").exists()
    res = _otactl("--generated", str(generated), "local-cluster", "status", cwd=tmp_path)
    assert res.returncode == 1 and "no local cluster" in res.stdout


def test_component_that_dies_fails_up_with_its_log(tmp_path: Path) -> None:
    """A control plane process that exits makes `up` fail, name it, show its log, stop the rest."""
    real = localcluster.find_bin_dir()
    bad = tmp_path / "bin"
    bad.mkdir()
    for name in localcluster.BINARIES:
        (bad / name).symlink_to(real / name)
    (bad / "kube-apiserver").unlink()
    (bad / "kube-apiserver").write_text(
        '#!/bin/sh\n[ "$1" = --version ] && { echo "Kubernetes v0.0.0"; exit 0; }\n'
        'echo "simulated: cannot open etcd" >&2\nexit 3\n'
    )
    (bad / "kube-apiserver").chmod(0o755)
    state_dir = tmp_path / "generated" / "local"
    opts = localcluster.ClusterOptions(state_dir, api_port=0, control_port=0, bin_dir=bad)
    with pytest.raises(LocalClusterError) as e:
        localcluster.up(opts)
    assert "kube-apiserver exited with 3" in str(e.value)
    assert "simulated: cannot open etcd" in str(e.value)
    assert not (state_dir / "state.json").exists()
    assert not Path("/run/netns", localcluster._netns_name(state_dir)).exists()
    assert (state_dir / "logs" / "etcd.log").exists()


def test_cluster_stops_when_its_owner_dies(tmp_path: Path) -> None:
    """A test session killed before its teardown leaves no control plane behind."""
    state_dir = tmp_path / "generated" / "local"
    owner = subprocess.run(
        [sys.executable, "-c",
         "import os, sys\n"
         "from pathlib import Path\n"
         "from otactl import localcluster\n"
         "localcluster.up(localcluster.ClusterOptions(Path(sys.argv[1]), api_port=0,\n"
         "    control_port=0, standin=False, owner_pid=os.getpid()))\n"
         "os._exit(0)  # no down: the owner just goes away\n",
         str(state_dir)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert owner.returncode == 0, owner.stderr
    state = json.loads((state_dir / "state.json").read_text())
    pids = [p["pid"] for p in state["processes"]]
    assert "watchdog" in {p["name"] for p in state["processes"]}
    deadline = time.monotonic() + 30
    while not all(_gone(pid) for pid in pids) or (state_dir / "state.json").exists():
        assert time.monotonic() < deadline, [p for p in pids if not _gone(p)]
        time.sleep(0.2)
    assert not Path("/run/netns", state["netns"]).exists()
