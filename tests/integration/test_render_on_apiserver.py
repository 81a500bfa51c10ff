"""Every render variant, as the real API server sees it: a server-side dry run of each set
(admission, defaulting and validation of the real kube-apiserver, beyond the OpenAPI schema
check of tests/test_render.py), and the Pod Security level each pod template declares, as the
API server's PodSecurity admission judges it. Nothing is stored."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from otactl import security
from tests.conftest import run_otactl

from .conftest import LocalCluster

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--set", "ingress.enabled=true", "--set", "ingress.tls_secret=ota-tls"],
        ["--profile", "gke", "--set", "gateway.load_balancer_ip=192.0.2.10"],
        ["--set", "node_pool=pool-a"],
    ],
    ids=["defaults", "ingress", "gke", "node-pool"],
)
def test_the_api_server_accepts_every_object(
    local_cluster: LocalCluster, tmp_path: Path, args: list[str]
) -> None:
    ns = f"render-{uuid.uuid4().hex[:8]}"
    proc = run_otactl("--generated", str(tmp_path), "render", "--set", f"namespace={ns}", *args)
    assert proc.returncode == 0, proc.stderr
    sets = sorted((tmp_path / "templates").glob("*.yaml"))
    assert {"infra.yaml", "services.yaml"} <= {p.name for p in sets}
    local_cluster.kubectl("create", "namespace", ns)
    try:
        for path in sets:
            res = local_cluster.kubectl(
                "apply", "--server-side", "--dry-run=server", "--field-manager=otactl-test",
                "-f", str(path), check=False,
            )  # fmt: skip
            assert res.returncode == 0, f"{path.name}: {res.stderr}"
            lines = res.stdout.strip().splitlines()
            assert len(lines) >= (1 if path.name == "ingress.yaml" else 10)
            assert all(line.endswith("(server dry run)") for line in lines), res.stdout
        left = local_cluster.kubectl("get", "all,cm,secret,pvc", "-n", ns, "-o", "name").stdout
        assert "director" not in left  # a dry run stores nothing
    finally:
        local_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _pods(rendered: Path, namespace: str) -> dict[str, dict[str, Any]]:
    """`Kind/name` → a Pod made of each workload's template, as its controller would make
    it (volume claim templates become claims)."""
    pods = {}
    for path in sorted((rendered / "templates").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] not in security.WORKLOAD_KINDS:
                continue
            spec = copy.deepcopy(doc["spec"]["template"]["spec"])
            for claim in doc["spec"].get("volumeClaimTemplates") or []:
                name = claim["metadata"]["name"]
                spec.setdefault("volumes", []).append(
                    {"name": name, "persistentVolumeClaim": {"claimName": name}}
                )
            pods[f"{doc['kind']}/{doc['metadata']['name']}"] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": doc["metadata"]["name"], "namespace": namespace},
                "spec": spec,
            }
    return pods


def test_each_workload_meets_the_pod_security_level_it_declares(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    """The real PodSecurity admission judges each pod template: those that declare
    `restricted` are admitted in a namespace enforcing restricted, the others are refused
    there with the API server's reason, and every one is admitted at baseline."""
    proc = run_otactl("--generated", str(tmp_path), "render")
    assert proc.returncode == 0, proc.stderr
    declared = security.workload_levels(
        d
        for p in sorted((tmp_path / "templates").glob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
        if d
    )
    assert len(declared) == 18 and set(declared.values()) == {"restricted", "baseline"}
    verdicts: dict[str, dict[str, str]] = {}
    for level in ("restricted", "baseline"):
        ns = f"pss-{level}-{uuid.uuid4().hex[:6]}"
        local_cluster.kubectl("create", "namespace", ns)
        try:
            local_cluster.kubectl(
                "label", "namespace", ns, f"pod-security.kubernetes.io/enforce={level}"
            )
            for ref, pod in _pods(tmp_path, ns).items():
                res = local_cluster.kubectl(
                    "create", "--dry-run=server", "-o", "name", "-f", "-",
                    input=json.dumps(pod), check=False,
                )  # fmt: skip
                verdicts.setdefault(ref, {})[level] = "ok" if res.returncode == 0 else res.stderr
        finally:
            local_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    for ref, level in declared.items():
        assert verdicts[ref]["baseline"] == "ok", (ref, verdicts[ref])
        if level == "restricted":
            assert verdicts[ref]["restricted"] == "ok", (ref, verdicts[ref])
        else:
            assert 'violates PodSecurity "restricted:latest"' in verdicts[ref]["restricted"]
