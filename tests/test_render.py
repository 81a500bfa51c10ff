"""`otactl render`: every object valid for Kubernetes, complete, deterministic, no defaults
for secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from otactl import render, secretstore
from otactl.config import load_values
from tests.conftest import run_otactl

# The Kubernetes release whose OpenAPI schema the objects must satisfy (the local cluster's).
KUBERNETES_VERSION = "1.36.0"

DEPLOYMENTS = {
    "app", "campaigner", "campaigner-daemon", "device-registry", "device-registry-daemon",
    "director", "director-daemon",
    "gateway-deployment", "reverse-proxy", "tuf-keyserver", "tuf-keyserver-daemon",
    "tuf-reposerver", "web-events",
}  # fmt: skip
SCALA = {
    "app", "campaigner", "campaigner-daemon", "device-registry", "device-registry-daemon",
    "director", "director-daemon",
    "tuf-keyserver", "tuf-keyserver-daemon", "tuf-reposerver", "web-events", "treehub",
}  # fmt: skip


def _objects(out: Path) -> list[dict]:
    docs = []
    for path in sorted(out.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _names(docs: list[dict], kind: str) -> set[str]:
    return {d["metadata"]["name"] for d in docs if d["kind"] == kind}


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    run_otactl("--generated", str(tmp_path), "render", check=True)
    return tmp_path / "templates"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--set", "ingress.enabled=true", "--set", "ingress.tls_secret=ota-tls"],
        ["--profile", "gke", "--set", "gateway.load_balancer_ip=192.0.2.10"],
        ["--set", "node_pool=pool-a", "--set", "namespace=ota"],
    ],
    ids=["defaults", "ingress", "gke", "node-pool"],
)
def test_every_object_validates_against_the_kubernetes_schema(tmp_path: Path, args: list[str]):
    proc = run_otactl("--generated", str(tmp_path), "render", *args)
    assert proc.returncode == 0, proc.stderr
    docs = _objects(tmp_path / "templates")
    assert len(docs) > 60
    for doc in docs:
        # strict: unknown fields are errors too, not just missing or mistyped ones
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert doc["apiVersion"] in {"v1", "apps/v1", "batch/v1", "networking.k8s.io/v1"}


def test_every_component_is_present(rendered: Path):
    infra = [d for d in yaml.safe_load_all((rendered / "infra.yaml").read_text()) if d]
    services = [d for d in yaml.safe_load_all((rendered / "services.yaml").read_text()) if d]
    assert _names(infra, "StatefulSet") == {"zookeeper", "kafka", "mysql"}
    assert _names(infra, "Job") == {"db-bootstrap"}
    assert _names(services, "Deployment") == DEPLOYMENTS
    assert _names(services, "StatefulSet") == {"treehub"}
    assert SCALA | {"gateway-service", "reverse-proxy"} <= _names(services, "Service")
    assert {f"{n}-config" for n in SCALA} <= _names(services, "ConfigMap")
    assert {f"{n}-secret" for n in SCALA} <= _names(services, "Secret")
    assert "tuf-keyserver-encryption" in _names(services, "Secret")
    assert not (rendered / "ingress.yaml").exists()
    for doc in infra + services:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "ota-ce"
        assert labels["app.kubernetes.io/managed-by"] == "otactl"
        assert labels["app.kubernetes.io/name"] == doc["metadata"]["name"] or doc["kind"] in {
            "Deployment"
        }


def test_scala_services_expose_80_to_9001_with_health_probes(rendered: Path):
    docs = _objects(rendered)
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    workloads = {
        d["metadata"]["name"]: d for d in docs if d["kind"] in {"Deployment", "StatefulSet"}
    }
    for name in SCALA:
        (port,) = services[name]["spec"]["ports"]
        assert (port["port"], port["targetPort"]) == (80, 9001)
        container = workloads[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 9001}
        assert container["resources"]["requests"]["memory"]
    treehub = workloads["treehub"]["spec"]["volumeClaimTemplates"][0]["spec"]
    assert treehub["storageClassName"] == "standard"


def test_gateway_service_type_and_ports_follow_values(tmp_path: Path):
    run_otactl(
        "--generated", str(tmp_path), "render", "--set", "gateway.node_port=31443", check=True
    )
    (svc,) = [
        d for d in _objects(tmp_path / "templates") if d["metadata"]["name"] == "gateway-service"
    ]
    assert svc["spec"]["type"] == "NodePort"
    ports = {p["port"]: p for p in svc["spec"]["ports"]}
    assert set(ports) == {80, 8443, 8000}
    assert ports[8443]["nodePort"] == 31443
    run_otactl("--generated", str(tmp_path), "--profile", "gke", "render", check=True)
    (svc,) = [
        d for d in _objects(tmp_path / "templates") if d["metadata"]["name"] == "gateway-service"
    ]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert all("nodePort" not in p for p in svc["spec"]["ports"])


def test_node_pool_pins_every_pod(tmp_path: Path):
    run_otactl("--generated", str(tmp_path), "render", "--set", "node_pool=ota-pool", check=True)
    for doc in _objects(tmp_path / "templates"):
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            spec = doc["spec"]["template"]["spec"]
            assert spec["nodeSelector"] == {"cloud.google.com/gke-nodepool": "ota-pool"}


def test_render_is_byte_identical_across_runs(tmp_path: Path):
    run_otactl("--generated", str(tmp_path), "render", check=True)
    first = {p.name: p.read_bytes() for p in (tmp_path / "templates").iterdir()}
    run_otactl("--generated", str(tmp_path), "render", check=True)
    second = {p.name: p.read_bytes() for p in (tmp_path / "templates").iterdir()}
    assert first == second


def test_stdout_matches_files_and_writes_nothing(tmp_path: Path):
    run_otactl("--generated", str(tmp_path), "render", check=True)
    proc = run_otactl(
        "--generated", str(tmp_path), "render", "--stdout", "--out", str(tmp_path / "x")
    )
    assert proc.returncode == 0
    assert not (tmp_path / "x").exists()
    assert (tmp_path / "templates" / "services.yaml").read_text().strip() in proc.stdout


def test_secrets_are_random_kept_private_and_never_defaults(tmp_path: Path):
    run_otactl("--generated", str(tmp_path / "a"), "render", check=True)
    run_otactl("--generated", str(tmp_path / "b"), "render", check=True)
    a = secretstore.load_or_create(tmp_path / "a" / "ota-ce.example.com")
    b = secretstore.load_or_create(tmp_path / "b" / "ota-ce.example.com")
    flat_a = [
        a.mysql_root_password,
        *a.db_passwords.values(),
        a.play_crypto_secret,
        a.jwt_secret,
        a.keyserver_db_encryption_password,
        a.reverse_proxy_password,
    ]
    assert len(set(flat_a)) == len(flat_a)  # no password shared between services
    assert all(len(s) >= 24 for s in flat_a)
    assert a != b  # two installations never share secrets
    for service in ("root", "campaigner", "director", "device_registry"):
        assert service not in flat_a
    path = tmp_path / "a" / "ota-ce.example.com" / "secrets.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for rendered_set in (tmp_path / "a" / "templates").iterdir():
        assert stat.S_IMODE(rendered_set.stat().st_mode) == 0o600  # they hold Secrets


def test_a_missing_secret_is_added_and_kept_ones_survive(tmp_path: Path):
    server_dir = tmp_path / "srv"
    first = secretstore.load_or_create(server_dir)
    data = yaml.safe_load((server_dir / "secrets.yaml").read_text())
    del data["jwt_secret"]
    (server_dir / "secrets.yaml").write_text(yaml.safe_dump(data))
    second = secretstore.load_or_create(server_dir)
    assert second.mysql_root_password == first.mysql_root_password
    assert second.jwt_secret != first.jwt_secret and len(second.jwt_secret) >= 24


def test_corrupt_secrets_file_is_refused_not_replaced(tmp_path: Path):
    server = tmp_path / "ota-ce.example.com"
    server.mkdir(mode=0o700)
    (server / "secrets.yaml").write_text("mysql_root_password: [unclosed\n")
    proc = run_otactl("--generated", str(tmp_path), "render")
    assert proc.returncode == 2
    assert "cannot parse the secrets file" in proc.stderr
    assert (server / "secrets.yaml").read_text() == "mysql_root_password: [unclosed\n"


def test_missing_template_value_names_template_and_value(tmp_path: Path, monkeypatch):
    import otactl.config

    tdir = tmp_path / "templates"
    import shutil

    shutil.copytree(otactl.config.templates_dir(), tdir)
    (tdir / "infra.yaml.j2").write_text("{{ v.no_such_value }}\n")
    # Where load_values reads it: otactl.config.loading.
    monkeypatch.setattr(otactl.config.loading, "templates_dir", lambda: tdir)
    monkeypatch.setattr(render, "templates_dir", lambda: tdir)
    values = load_values()
    with pytest.raises(
        render.RenderError, match=r"templates/infra.yaml.j2: undefined value: .*no_such_value"
    ):
        render.render(values, secretstore.load_or_create(tmp_path / "s"))


def test_remove_written_removes_every_set_render_can_write(tmp_path: Path):
    # down --purge: every set (the optional ones included) holds Secrets' values or names them.
    values = load_values(sets=["ingress.enabled=true", "network_policy.enabled=true"])
    out = render.render(values, secretstore.load_or_create(tmp_path / "srv"))
    assert set(out.sets) == set(render.SETS)
    written = render.write(out, tmp_path / "templates")
    assert sorted(render.remove_written(tmp_path / "templates")) == sorted(written)
    assert not (tmp_path / "templates").exists()
