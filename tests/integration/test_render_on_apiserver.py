"""Every render variant, as the real API server sees it: a server-side dry run of each set
(admission, defaulting and validation of the real kube-apiserver, beyond the OpenAPI schema
check of tests/test_render.py). Nothing is stored."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

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
