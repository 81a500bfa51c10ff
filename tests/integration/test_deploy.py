"""`otactl up`, `down`, `status` against the local simulated cluster and the stand-in.

Each test deploys into its own namespace with its own tenant, so tests share the cluster
but no objects or stand-in state."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_otactl

pytestmark = pytest.mark.integration


class Deployment:
    """One installation: a namespace, a tenant and a generated/ folder of its own."""

    def __init__(self, cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        self.cluster = cluster
        self.ns = f"ota-{uuid.uuid4().hex[:8]}"
        # NodePorts are cluster-wide: each installation gets its own
        self.node_port = 30100 + int(uuid.uuid4().int % 2000)
        self.generated = tmp_path / "generated"
        self.server_dir = self.generated / "ota-ce.example.com"

    def args(self, *extra: str) -> list[str]:
        return ["--generated", str(self.generated), *extra]

    def cluster_args(self) -> list[str]:
        return [
            "--kubeconfig", str(self.cluster.kubeconfig), "--namespace", self.ns,
            "--set", f"tenant={self.ns}", "--set", f"gateway.node_port={self.node_port}",
        ]  # fmt: skip

    def otactl(self, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_otactl(*self.args(command, *self.cluster_args(), *extra))

    def resource_versions(self) -> dict[str, str]:
        out = self.cluster.kubectl(
            "get", "deploy,sts,job,svc,cm,secret,ingress", "-n", self.ns, "-o", "json"
        ).stdout
        return {
            f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for o in json.loads(out)["items"]
        }


@pytest.fixture
def deployment(local_cluster, standin, tmp_path: Path):  # type: ignore[no-untyped-def]
    d = Deployment(local_cluster, tmp_path)
    yield d
    local_cluster.kubectl("delete", "namespace", d.ns, "--wait=false", check=False)


def test_up_from_nothing_to_credentials_then_nothing_changes(deployment: Deployment):
    first = deployment.otactl("up", "--timeout", "240", "-o", "json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["unchanged"] == 0 and len(result["changed"]) > 60
    # NodePort, as really exposed (not a hard-coded 30443 when the values say otherwise)
    assert result["gateway_url"] == f"https://ota-ce.example.com:{deployment.node_port}"
    zip_path = Path(result["credentials_zip"])
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        assert {"autoprov.url", "server_ca.pem", "tufrepo.url", "targets.pub", "targets.sec",
                "treehub.json", "root.json"} <= names  # fmt: skip
        assert z.read("autoprov.url").decode().strip() == result["gateway_url"]
    assert zip_path.stat().st_mode & 0o777 == 0o600
    secret = json.loads(
        deployment.cluster.kubectl(
            "get", "secret", "user-keys", "-n", deployment.ns, "-o", "json"
        ).stdout
    )
    assert {"targets.pub", "targets.sec", "root.json"} <= set(secret["data"])

    keys = {p: p.read_bytes() for p in deployment.server_dir.rglob("*") if p.is_file()}
    before = deployment.resource_versions()
    started = time.monotonic()
    second = deployment.otactl("up", "--timeout", "120", "-o", "json")
    took = time.monotonic() - started
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["changed"] == []
    assert deployment.resource_versions() == before  # no object was written
    after = {p: p.read_bytes() for p in deployment.server_dir.rglob("*") if p.is_file()}
    assert after == keys  # no key, secret or credentials file regenerated
    print(f"second up: {took:.2f}s")

    status = deployment.otactl("status", "-o", "json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["ok"] is True
    kinds = {(o["kind"], o["name"]) for o in report["objects"]}
    assert ("Deployment", "director") in kinds and ("StatefulSet", "kafka") in kinds
    gateway = next(o for o in report["objects"] if o["name"] == "gateway-service")
    assert f"8443:{deployment.node_port}" in gateway["address"]

    health = deployment.otactl("health", "director", "-o", "json")
    assert health.returncode == 0, health.stderr

    dry = deployment.otactl("up", "--dry-run", "--set", "gateway.replicas=2")
    assert dry.returncode == 0, dry.stderr
    assert "-  replicas: 1\n+  replicas: 2" in dry.stdout
    assert deployment.resource_versions() == before  # a dry run writes nothing

    down = deployment.otactl("down", "--timeout", "120")
    assert down.returncode == 0, down.stderr
    left = deployment.cluster.kubectl(
        "get", "deploy,sts,job,svc,cm,secret", "-n", deployment.ns,
        "-l", "app.kubernetes.io/managed-by=otactl", "-o", "name",
    ).stdout  # fmt: skip
    assert left.strip() == ""
    pvcs = deployment.cluster.kubectl("get", "pvc", "-n", deployment.ns, "-o", "name").stdout
    assert "data-mysql-0" in pvcs  # data outlives `down` without --purge
    assert (deployment.server_dir / "ca.key").exists()


def gateway_tls_ca(deployment: Deployment) -> bytes | None:
    """The device CA (`ca.crt`, what the gateway checks devices with) in the cluster's
    gateway-tls Secret; None before up wrote it."""
    got = deployment.cluster.kubectl(
        "get", "secret", "gateway-tls", "-n", deployment.ns, "-o", "jsonpath={.data.ca\\.crt}",
        check=False,
    )  # fmt: skip
    return base64.b64decode(got.stdout) if got.returncode == 0 and got.stdout else None


# A first `up` here prints about 50 lines (phases and objects): killing after a random one of
# them, plus a random fraction of a second, lands anywhere in the plan, not only at phase
# starts. Seeds keep a failure reproducible; each run prints where it killed.
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_up_killed_at_any_moment_converges_and_keeps_its_ca(deployment: Deployment, seed: int):
    rng = random.Random(seed)
    kill_after, extra = rng.randint(2, 40), rng.uniform(0, 0.5)
    cmd = [sys.executable, "-m", "otactl",
           *deployment.args("up", *deployment.cluster_args(), "--timeout", "240")]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line.rstrip())
        if len(seen) == kill_after:
            time.sleep(extra)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    print(f"seed {seed}: killed {extra:.2f}s after line {len(seen)}: {seen[-1:]}")
    assert proc.returncode == -signal.SIGKILL, f"up ended after {len(seen)} lines: {seen[-3:]}"

    # The CAs (certificates and keys) as the kill left them, if made by then.
    cas = ["server_ca.pem", "ca.key", "devices/ca.crt", "devices/ca.key"]
    at_kill = {n: (deployment.server_dir / n).read_bytes() for n in cas
               if (deployment.server_dir / n).exists()}  # fmt: skip
    in_cluster = gateway_tls_ca(deployment)
    if in_cluster is not None:  # the Secret is written from the local device CA, never another
        assert in_cluster == at_kill["devices/ca.crt"]
    again = deployment.otactl("up", "--timeout", "240", "-o", "json")
    assert again.returncode == 0, again.stderr
    assert Path(json.loads(again.stdout)["credentials_zip"]).exists()
    third = deployment.otactl("up", "--timeout", "120", "-o", "json")
    assert json.loads(third.stdout)["changed"] == []
    # The CAs survived: whatever existed at the kill is what is on disk and in gateway-tls.
    final = {n: (deployment.server_dir / n).read_bytes() for n in cas}
    assert {n: final[n] for n in at_kill} == at_kill
    assert gateway_tls_ca(deployment) == final["devices/ca.crt"]


def test_a_service_that_never_becomes_healthy_fails_up_with_the_reason(
    deployment: Deployment, standin
):  # type: ignore[no-untyped-def]
    standin.set(never_healthy=["tuf-keyserver"])
    proc = deployment.otactl("up", "--set", "timeouts.health=5")
    assert proc.returncode == 7, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert "tuf-keyserver" in last and "503" in last
    assert "director" not in last.split("not healthy")[-1]  # healthy ones are not blamed
    # The cause the service gives (libats: {"db":{"status":"down","cause":...}}).
    assert "tuf-keyserver answered 503: failing db down: database - Connection is not" in last


def test_keys_still_generating_is_waited_for(deployment: Deployment, standin):  # type: ignore[no-untyped-def]
    # The keys of a new repo are ready 5 s after its POST (tuf-keyserver answers 423 until
    # then): up says so while it waits, then finishes.
    standin.set(keygen_delay_seconds=5.0)
    proc = deployment.otactl("up", "--timeout", "240", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    waiting = [
        line
        for line in proc.stderr.splitlines()
        if "[credentials] running: " in line and "keys are still being generated" in line
    ]
    assert waiting, proc.stderr
    assert Path(json.loads(proc.stdout)["credentials_zip"]).exists()


def test_unschedulable_pods_are_explained(deployment: Deployment):
    proc = deployment.otactl(
        "up", "--set", "infra.kafka.resources.memory=900Ti", "--set", "timeouts.infra=8"
    )
    assert proc.returncode == 7, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "StatefulSet" in last and "kafka" in last
    assert "unschedulable" in last and "Insufficient memory" in last


def test_lost_local_pki_with_a_deployed_cluster_stops_up(deployment: Deployment):
    assert deployment.otactl("up", "--timeout", "240").returncode == 0
    ca_before = deployment.cluster.kubectl(
        "get", "secret", "gateway-tls", "-n", deployment.ns, "-o", "jsonpath={.data.ca\\.crt}"
    ).stdout
    import shutil

    shutil.rmtree(deployment.server_dir)
    proc = deployment.otactl("up", "--timeout", "60")
    assert proc.returncode == 3
    assert "has no server PKI" in proc.stderr and "second CA" in proc.stderr
    assert not (deployment.server_dir / "ca.key").exists()  # nothing minted
    ca_after = deployment.cluster.kubectl(
        "get", "secret", "gateway-tls", "-n", deployment.ns, "-o", "jsonpath={.data.ca\\.crt}"
    ).stdout
    assert ca_after == ca_before


def test_prune_deletes_what_is_no_longer_rendered(deployment: Deployment):
    assert deployment.otactl("up", "--set", "ingress.enabled=true").returncode == 0
    assert "ota-ce" in deployment.cluster.kubectl("get", "ingress", "-n", deployment.ns).stdout
    kept = deployment.otactl("up", "-o", "json")
    assert json.loads(kept.stdout)["pruned"] == []  # without --prune nothing is deleted
    pruned = deployment.otactl("up", "--prune", "-o", "json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["pruned"] == [f"Ingress {deployment.ns}/ota-ce"]


def test_cluster_access_failures_are_one_line_with_distinct_codes(
    deployment: Deployment, tmp_path: Path, local_cluster
):  # type: ignore[no-untyped-def]
    config = yaml.safe_load(Path(local_cluster.kubeconfig).read_text())
    # unreachable: a port nothing listens on
    from tests.conftest import free_port

    dead = json.loads(json.dumps(config))
    dead["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    dead_path = tmp_path / "dead.kubeconfig"
    dead_path.write_text(yaml.safe_dump(dead))
    proc = run_otactl(*deployment.args("up", "--kubeconfig", str(dead_path), "--timeout", "20"))
    assert proc.returncode == 4, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("error: cannot reach the Kubernetes API at https://127.0.0.1:")
    # nothing listens there: said at once, not after retries
    assert errors[0].endswith("connection refused (nothing listens there: is the cluster running?)")
    assert "unreachable for" not in proc.stderr

    # rejected credentials: a token the API server does not know
    bad = json.loads(json.dumps(config))
    bad["users"][0]["user"] = {"token": "not-a-valid-token"}
    bad_path = tmp_path / "bad.kubeconfig"
    bad_path.write_text(yaml.safe_dump(bad))
    proc = run_otactl(*deployment.args("status", "--kubeconfig", str(bad_path)))
    assert proc.returncode == 5, proc.stderr
    assert "rejected otactl's credentials" in proc.stderr

    # RBAC: a service account that may only read; `up` names the refused verb and object
    ns = deployment.ns
    kubectl = local_cluster.kubectl
    kubectl("create", "namespace", ns)
    kubectl("create", "serviceaccount", "reader", "-n", ns)
    kubectl("create", "role", "reader", "-n", ns, "--verb=get,list,watch",
            "--resource=secrets,services,deployments,statefulsets,jobs")  # fmt: skip
    kubectl("create", "rolebinding", "reader", "-n", ns, "--role=reader",
            f"--serviceaccount={ns}:reader")  # fmt: skip
    token = kubectl("create", "token", "reader", "-n", ns).stdout.strip()
    limited = json.loads(json.dumps(config))
    limited["users"][0]["user"] = {"token": token}
    limited_path = tmp_path / "limited.kubeconfig"
    limited_path.write_text(yaml.safe_dump(limited))
    proc = run_otactl(*deployment.args("up", "--kubeconfig", str(limited_path),
                                       "--namespace", ns, "--timeout", "60"))  # fmt: skip
    assert proc.returncode == 6, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    # The verb and the object, then what the API server said (who was refused).
    # (Its first request past /version: the API server's addresses for the NetworkPolicies.)
    assert re.match(
        rf"error: RBAC refused (get EndpointSlice default/kubernetes|(get|apply) Namespace {ns}): ",
        line,
    ), line
    assert f"system:serviceaccount:{ns}:reader" in line


def test_a_revoked_device_reaches_the_gateway_with_the_next_up(deployment: Deployment):
    assert deployment.otactl("up", "--timeout", "240").returncode == 0
    made = run_otactl(*deployment.args("new-device", "lost-1", "--no-register", "-o", "json"))
    assert made.returncode == 0, made.stderr

    def gateway() -> dict:
        out = deployment.cluster.kubectl(
            "get", "deploy", "gateway-deployment", "-n", deployment.ns, "-o", "json"
        ).stdout
        return json.loads(out)

    before = gateway()
    revoked = run_otactl(*deployment.args("revoke-device", "lost-1"))
    assert revoked.returncode == 0, revoked.stderr
    again = deployment.otactl("up", "--timeout", "240", "-o", "json")
    assert again.returncode == 0, again.stderr
    changed = json.loads(again.stdout)["changed"]
    assert f"Secret {deployment.ns}/gateway-tls" in changed
    assert f"Deployment {deployment.ns}/gateway-deployment" in changed  # rolled: nginx rereads
    after = gateway()
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    crl = deployment.cluster.kubectl(
        "get", "secret", "gateway-tls", "-n", deployment.ns, "-o", "jsonpath={.data.crl\\.pem}"
    ).stdout
    import base64

    local = (deployment.server_dir / "devices" / "crl.pem").read_bytes()
    assert base64.b64decode(crl) == local


def test_build_tools_clients_and_a_revoked_one_reaches_the_reverse_proxy_with_the_next_up(
    deployment: Deployment,
):
    import base64

    first = deployment.otactl("up", "--timeout", "240", "-o", "json")
    assert first.returncode == 0, first.stderr
    svc = json.loads(
        deployment.cluster.kubectl(
            "get", "svc", "reverse-proxy", "-n", deployment.ns, "-o", "json"
        ).stdout
    )
    [https] = [p for p in svc["spec"]["ports"] if p["name"] == "https"]
    assert (https["port"], https["targetPort"]) == (443, 8443)
    made = deployment.otactl("credentials", "--new-client", "ci-a", "-o", "json")
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    assert (result["client"], result["client_issued"]) == ("ci-a", True)
    with zipfile.ZipFile(result["path"]) as z:
        assert z.read("tufrepo.url") == b"https://tuf-reposerver.example.com\n"  # port 443
        assert "client_auth.p12" in z.namelist()
    again = deployment.otactl("credentials", "--new-client", "ci-a", "-o", "json")
    assert json.loads(again.stdout)["changed"] is False

    def proxy() -> dict:
        out = deployment.cluster.kubectl(
            "get", "deploy", "reverse-proxy", "-n", deployment.ns, "-o", "json"
        ).stdout
        return json.loads(out)

    before = proxy()
    revoked = run_otactl(*deployment.args("revoke-credentials", "ci-a"))
    assert revoked.returncode == 0, revoked.stderr
    rolled = deployment.otactl("up", "--timeout", "240", "-o", "json")
    assert rolled.returncode == 0, rolled.stderr
    changed = json.loads(rolled.stdout)["changed"]
    assert f"Secret {deployment.ns}/build-tools-ca" in changed
    assert f"Deployment {deployment.ns}/reverse-proxy" in changed  # nginx rereads its CRL
    assert f"Deployment {deployment.ns}/gateway-deployment" not in changed
    assert proxy()["metadata"]["generation"] > before["metadata"]["generation"]
    crl = deployment.cluster.kubectl(
        "get", "secret", "build-tools-ca", "-n", deployment.ns,
        "-o", "jsonpath={.data.crl\\.pem}",
    ).stdout  # fmt: skip
    local = (deployment.server_dir / "build-tools" / "crl.pem").read_bytes()
    assert base64.b64decode(crl) == local


def test_bundles_carry_the_gateway_port_the_cluster_really_exposes(deployment: Deployment):
    # No NodePort in the values: the API server picks one, and bundles must use it.
    first = deployment.otactl("up", "--set", "gateway.node_port=null", "-o", "json")
    assert first.returncode == 0, first.stderr
    exposed = json.loads(first.stdout)["gateway_url"]
    assert exposed != "https://ota-ce.example.com:8443"
    made = deployment.otactl(
        "new-device", "port-1", "--set", "gateway.node_port=null", "-o", "json"
    )
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout)
    assert info["registered"] is True
    bundle = Path(info["path"])
    if not bundle.is_absolute():
        bundle = Path.cwd() / bundle
    # The port the API server gave the Service, read from the API server itself.
    node_port = deployment.cluster.kubectl(
        "get", "service", "gateway-service", "-n", deployment.ns,
        "-o", "jsonpath={.spec.ports[?(@.port==8443)].nodePort}",
    ).stdout.strip()  # fmt: skip
    assert node_port.isdigit()
    assert exposed == f"https://ota-ce.example.com:{node_port}"
    assert (bundle / "gateway.url").read_text().strip() == exposed
    # device-cred (the default): aktualizr reads the URL from the gateway.url it imports.
    assert 'server_url_path = "/var/sota/import/gateway.url"' in (bundle / "sota.toml").read_text()
    registered = deployment.cluster.standin.devices(deployment.ns)
    assert info["uuid"] in json.dumps(registered)


def test_down_purge_needs_confirmation_then_removes_data_and_local_pki(deployment: Deployment):
    assert deployment.otactl("up", "--timeout", "240").returncode == 0
    rendered = run_otactl(*deployment.args("render"))  # files that hold the Secrets' values
    assert rendered.returncode == 0, rendered.stderr
    templates = deployment.generated / "templates"
    assert (templates / "services.yaml").exists()
    refused = deployment.otactl("down", "--purge")  # no terminal, no --yes
    assert refused.returncode == 2
    # the cluster first, as `up` says it
    server = deployment.cluster.info.api_url
    assert refused.stderr == (
        f"cluster: {server} (otactl-local)\n"
        "error: --purge deletes data and keys: confirm with --yes\n"
    ), refused.stderr
    assert (deployment.server_dir / "ca.key").exists()
    assert (
        "data-mysql-0"
        in deployment.cluster.kubectl("get", "pvc", "-n", deployment.ns, "-o", "name").stdout
    )

    purged = deployment.otactl("down", "--purge", "--yes", "--timeout", "120")
    assert purged.returncode == 0, purged.stderr
    assert purged.stderr.startswith(f"cluster: {server} (otactl-local)\n")
    assert not deployment.server_dir.exists()
    assert not templates.exists()
    left = deployment.cluster.kubectl(
        "get", "pvc,deploy,sts,secret", "-n", deployment.ns,
        "-l", "app.kubernetes.io/part-of=ota-ce", "-o", "name", check=False,
    )  # fmt: skip
    assert left.stdout.strip() == ""
    # otactl created the namespace, so --purge removes it too
    gone = deployment.cluster.kubectl("get", "namespace", deployment.ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_down_purge_keeps_a_namespace_that_up_did_not_create(deployment: Deployment):
    deployment.cluster.kubectl("create", "namespace", deployment.ns)
    assert deployment.otactl("up", "--timeout", "240").returncode == 0
    purged = deployment.otactl("down", "--purge", "--yes", "--timeout", "120")
    assert purged.returncode == 0, purged.stderr
    left = deployment.cluster.kubectl("get", "namespace", deployment.ns, "-o", "json")
    assert json.loads(left.stdout)["status"]["phase"] == "Active"


def test_dry_run_from_nothing_writes_nothing_anywhere(deployment: Deployment):
    proc = deployment.otactl("up", "--dry-run", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    changed = json.loads(proc.stdout)["changed"]
    assert f"Namespace {deployment.ns}" in changed
    assert f"Deployment {deployment.ns}/director" in changed
    assert len(changed) > 60
    # no CA, no secrets file on disk; no namespace in the cluster
    assert not deployment.server_dir.exists()
    missing = deployment.cluster.kubectl("get", "namespace", deployment.ns, check=False)
    assert missing.returncode != 0


def _dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _lease(deployment: Deployment) -> dict | None:
    got = deployment.cluster.kubectl(
        "get", "lease", "otactl", "-n", deployment.ns, "-o", "json", check=False
    )
    return json.loads(got.stdout) if got.returncode == 0 else None


def test_two_ups_at_once_then_hosts_and_credentials_agree_with_the_cluster(
    deployment: Deployment,
):
    # The Quick start's path: the local profile (as `make demo` sets it) exposes the
    # gateway and the reverse proxy as NodePorts.
    proxy_port = 30100 + (deployment.node_port - 30100 + 1000) % 2000
    local = {"OTACTL_PROFILE": "local"}
    args = deployment.args(
        "up", *deployment.cluster_args(), "--set", f"reverse_proxy.node_port={proxy_port}",
        "--timeout", "240", "-o", "json",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")} | local
    first = subprocess.Popen(
        [sys.executable, "-m", "otactl", *args], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(480):  # a safety net against a hung test, not a timing assertion
            if _lease(deployment) is not None or first.poll() is not None:
                break
            time.sleep(0.25)
        assert _lease(deployment) is not None, first.communicate()
        second = run_otactl(*args, env=local)
        assert second.returncode == 14, second.stderr
        [line] = [x for x in second.stderr.splitlines() if x.startswith("error:")]
        assert "[pki]" not in second.stderr  # stopped before any step that writes
        assert line.startswith(
            f"error: another operation is in progress on namespace {deployment.ns}: `otactl "
        ), line
        assert f" up --kubeconfig {deployment.cluster.kubeconfig} " in line
        assert re.search(rf"\(pid {first.pid} on \S+, since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)",
                         line), line  # fmt: skip
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert _lease(deployment) is None  # released at the end

    # hosts works, and names the ports the credentials' URLs carry
    hosts = run_otactl(*deployment.args("hosts", *deployment.cluster_args(), "-o", "json"),
                       env=local)  # fmt: skip
    assert hosts.returncode == 0, hosts.stderr
    proxy, gateway = json.loads(hosts.stdout)["entries"]
    assert proxy["via"] == "Service reverse-proxy" and proxy["type"] == "NodePort"
    assert "tuf-reposerver.example.com" in proxy["names"]
    assert proxy_port in proxy["node_ports"]
    assert gateway["names"] == ["ota-ce.example.com"]
    assert deployment.node_port in gateway["node_ports"]
    text = run_otactl(*deployment.args("hosts", *deployment.cluster_args()), env=local)
    assert text.returncode == 0 and f"{proxy['address']} app.example.com" in text.stdout
    with zipfile.ZipFile(json.loads(out)["credentials_zip"]) as z:
        assert (
            z.read("tufrepo.url").decode() == f"https://tuf-reposerver.example.com:{proxy_port}\n"
        )
        assert json.loads(z.read("treehub.json"))["ostree"]["server"] == (
            f"https://treehub.example.com:{proxy_port}/api/v3/"
        )
        assert z.read("autoprov.url").decode().strip() == (
            f"https://ota-ce.example.com:{deployment.node_port}"
        )

    # A holder that is gone is taken over: a process of this host that no longer runs.
    holder = {"host": socket.gethostname(), "pid": _dead_pid(), "command": "otactl up",
              "started": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    lease = {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "otactl", "namespace": deployment.ns,
                     "annotations": {"otactl.io/holder": json.dumps(holder)}},
        "spec": {"holderIdentity": "x", "leaseDurationSeconds": 60, "renewTime": now},
    }  # fmt: skip
    deployment.cluster.kubectl("apply", "-f", "-", input=json.dumps(lease))
    again = run_otactl(*args, env=local)
    assert again.returncode == 0, again.stderr
    assert f"took over Lease {deployment.ns}/otactl from `otactl up` (pid {holder['pid']}" in (
        again.stderr
    )
    assert f"process {holder['pid']} is gone" in again.stderr
