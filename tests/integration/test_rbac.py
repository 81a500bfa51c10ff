"""`otactl rbac` on the local cluster's real kube-apiserver (RBAC authorization): CI's whole
path as a ServiceAccount bound to exactly the printed role, and a role missing one verb."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_otactl

pytestmark = pytest.mark.integration


def _account_kubeconfig(cluster: Any, ns: str, account: str, path: Path) -> Path:
    """The cluster's kubeconfig with the ServiceAccount's token instead of the admin's
    client certificate."""
    token = cluster.kubectl("create", "token", account, "-n", ns, "--duration", "1h").stdout
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config["users"] = [{"name": account, "user": {"token": token.strip()}}]
    for context in config["contexts"]:
        context["context"]["user"] = account
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _without_verb(docs: list[dict[str, Any]], resource: str, verb: str) -> list[dict[str, Any]]:
    role = next(d for d in docs if d["kind"] == "Role")
    for rule in role["rules"]:
        if resource in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return docs


def test_ci_runs_the_whole_path_as_the_printed_role(local_cluster: Any, tmp_path: Path) -> None:
    ns = f"rbac-{uuid.uuid4().hex[:8]}"
    printed = run_otactl("rbac", "--namespace", ns, "-o", "json")
    assert printed.returncode == 0, printed.stderr
    docs = json.loads(printed.stdout)["items"]
    assert [d["kind"] for d in docs] == [
        "Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
    ]  # fmt: skip
    local_cluster.kubectl("apply", "-f", "-", input=printed.stdout)
    try:
        kubeconfig = _account_kubeconfig(local_cluster, ns, "otactl-ci", tmp_path / "ci.kc")
        base = [
            "--kubeconfig", str(kubeconfig), "--namespace", ns, "--set", f"tenant={ns}",
            "--set", f"gateway.node_port={30100 + uuid.uuid4().int % 2000}",
        ]  # fmt: skip

        def otactl(*args: str) -> Any:
            return run_otactl("--generated", str(tmp_path / "generated"), *args, *base)

        # The account may do nothing else: not even list the pods of another namespace.
        other = subprocess.run(
            [str(local_cluster.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}",
             "get", "pods", "-n", "kube-system"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert other.returncode != 0 and "forbidden" in other.stderr.lower()

        up = otactl("up", "--timeout", "400")
        assert up.returncode == 0, up.stderr[-3000:]
        # The API server's own address (EndpointSlice default/kubernetes) may reach the
        # services' health port, for the service proxy.
        endpoints = json.loads(
            local_cluster.kubectl("get", "endpointslice", "kubernetes", "-o", "json").stdout
        )
        apiserver = {f"{a}/32" for e in endpoints["endpoints"] for a in e["addresses"]}
        policy = json.loads(
            local_cluster.kubectl(
                "get", "networkpolicy", "tuf-keyserver-flows", "-n", ns, "-o", "json"
            ).stdout
        )
        blocks = {
            peer["ipBlock"]["cidr"]
            for rule in policy["spec"]["ingress"]
            for peer in rule.get("from", [])
            if "ipBlock" in peer
        }
        assert apiserver and blocks == apiserver, (blocks, apiserver)
        for command in (["status"], ["health", "-o", "json"], ["new-device", "ci-dev-1"]):
            proc = otactl(*command)
            assert proc.returncode == 0, (command, proc.stderr[-2000:])

        # One verb less (patch on NetworkPolicies): `up` stops at once, naming verb and object.
        weaker = _without_verb(docs, "networkpolicies", "patch")
        local_cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"kind": "List", "apiVersion": "v1", "items": weaker}),
        )
        refused = otactl("up", "--timeout", "120")
        assert refused.returncode == 6, refused.stderr[-2000:]
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, refused.stderr
        assert errors[0].startswith("error: RBAC refused apply NetworkPolicy " + ns + "/"), errors
        assert 'cannot patch resource "networkpolicies"' in errors[0], errors
        assert f"system:serviceaccount:{ns}:otactl-ci" in errors[0], errors

        local_cluster.kubectl("apply", "-f", "-", input=printed.stdout)
        down = otactl("down", "--timeout", "120")
        assert down.returncode == 0, down.stderr[-2000:]
    finally:
        local_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        local_cluster.kubectl(
            "delete", "clusterrole,clusterrolebinding", f"otactl-ci-{ns}", check=False
        )
