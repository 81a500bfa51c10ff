"""otactl.security on rendered manifests: the Pod Security level of the namespace, and the
NetworkPolicies derived from what the pods' configuration names (so that a new dependency
cannot be left out). The API server's verdict on them: tests/integration/."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from otactl import render, secretstore, security
from otactl.config import load_values
from tests.conftest import run_otactl

Docs = list[dict[str, Any]]
F = security.Flow


def _render(tmp: Path, *sets: str) -> render.Rendered:
    values = load_values(sets=["namespace=ota", *sets])
    return render.render(values, secretstore.load_or_create(tmp))


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Docs:
    out = _render(tmp_path_factory.mktemp("srv"))
    return out.objects("infra") + out.objects("services")


def _config(docs: Docs, name: str) -> dict[str, str]:
    return next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)[
        "data"
    ]


def test_the_namespace_enforces_the_weakest_level_of_its_pods(docs: Docs):
    levels = security.workload_levels(docs)
    assert {k for k, v in levels.items() if v == "baseline"} == {
        "StatefulSet/zookeeper",
        "StatefulSet/mysql",
    }
    assert len(levels) == 18
    assert security.namespace_level(docs) == "baseline"
    assert security.namespace_labels("baseline") == {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }
    restricted_only = [
        d for d in docs if levels.get(f"{d['kind']}/{d['metadata']['name']}") != "baseline"
    ]
    assert security.namespace_level(restricted_only) == "restricted"


def test_flows_are_the_ones_ota_ce_uses(docs: Docs):
    flows = set(security.derive_flows(docs, "ota"))
    gateway = {f.dest for f in flows if f.source == "gateway"}
    assert gateway == {"director", "tuf-reposerver", "treehub", "device-registry", "campaigner"}
    proxy = {f.dest for f in flows if f.source == "reverse-proxy"}
    assert proxy == {"app", "tuf-reposerver", "treehub", "web-events"}
    assert F("kafka", "zookeeper", 2181) in flows  # KAFKA_ZOOKEEPER_CONNECT, the init's nc
    assert {f for f in flows if f.source == "kafka"} == {F("kafka", "zookeeper", 2181)}
    assert F("db-bootstrap", "mysql", 3306) in flows  # its command line: mariadb -h mysql
    assert F("director", "tuf-keyserver", 9001) in flows  # TUF_KEYSERVER_HOST + _PORT=80
    assert F("tuf-reposerver", "tuf-keyserver", 9001) in flows
    databases = {f.source for f in flows if f.dest == "mysql"}
    assert databases == {
        "campaigner", "campaigner-daemon", "device-registry", "device-registry-daemon",
        "director", "director-daemon", "tuf-keyserver", "tuf-keyserver-daemon",
        "tuf-reposerver", "treehub", "db-bootstrap",
    }  # fmt: skip
    # DB_USER=director names a user, not a host; a daemon does not call its API server.
    assert F("director-daemon", "director", 9001) not in flows
    assert F("campaigner-daemon", "campaigner", 9001) not in flows
    # Nobody but the reverse proxy reaches the web UI; nobody calls the gateway.
    assert {f.source for f in flows if f.dest == "app"} == {"reverse-proxy"}
    assert not {f for f in flows if f.dest == "gateway"}
    assert all(f.dest != f.source for f in flows)


def test_a_new_env_var_naming_another_service_adds_its_flow(docs: Docs):
    changed = copy.deepcopy(docs)
    assert F("web-events", "tuf-keyserver", 9001) not in security.derive_flows(changed, "ota")
    _config(changed, "web-events-config")["KEYS_HOST"] = "tuf-keyserver"
    assert F("web-events", "tuf-keyserver", 9001) in security.derive_flows(changed, "ota")
    # host:port picks the Service port's target; a fully qualified name counts too.
    _config(changed, "web-events-config")["ZK"] = "zookeeper.ota.svc.cluster.local:3888"
    flows = security.derive_flows(changed, "ota")
    assert F("web-events", "zookeeper", 3888) in flows
    assert F("web-events", "zookeeper", 2181) not in flows
    # An X_HOST naming a service takes its port from the sibling X_PORT, not all its ports.
    _config(changed, "web-events-config").update(ELECT_HOST="zookeeper", ELECT_PORT="2888")
    to_zookeeper = {f for f in security.derive_flows(changed, "ota") if f.dest == "zookeeper"}
    assert {f for f in to_zookeeper if f.source == "web-events"} == {
        F("web-events", "zookeeper", 3888),
        F("web-events", "zookeeper", 2888),
    }
    # A public name or a path is not a service.
    _config(changed, "web-events-config")["LINK"] = "https://app.example.com/director/x"
    assert not {f for f in security.derive_flows(changed, "ota") if f.source == "web-events"} & {
        F("web-events", "app", 9001),
        F("web-events", "director", 9001),
    }


def test_policies_deny_by_default_and_allow_exactly_the_flows(docs: Docs):
    policies = security.network_policies(docs, "ota", ["10.0.0.2/32"], render.SCALA_SERVICES)
    by_name = {p["metadata"]["name"]: p["spec"] for p in policies}
    deny = by_name["default-deny"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny
    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/part-of": "ota-ce"}}
    assert by_name["allow-dns"]["egress"][0]["ports"][0] == {"protocol": "UDP", "port": 53}
    keyserver = by_name["tuf-keyserver-flows"]["ingress"]
    sources = {
        r["from"][0].get("podSelector", {}).get("matchLabels", {}).get("app") for r in keyserver
    }
    assert sources == {"app", "director", "director-daemon", "tuf-reposerver", None}
    apiserver = [r for r in keyserver if "ipBlock" in r["from"][0]]
    assert apiserver == [
        {
            "from": [{"ipBlock": {"cidr": "10.0.0.2/32"}}],
            "ports": [{"protocol": "TCP", "port": 9001}],
        }
    ]
    # The gateway's ports are open to any client (devices); mysql's only to its users.
    gateway = by_name["gateway-flows"]["ingress"]
    assert {"ports": [{"protocol": "TCP", "port": p} for p in (8000, 8080, 8443)]} in gateway
    assert all("from" in r for r in by_name["mysql-flows"]["ingress"])
    flows = security.derive_flows(docs, "ota")
    egress = sum(
        len(r["ports"]) for p in policies for r in p["spec"].get("egress", []) if "to" in r
    )
    assert egress == len(flows)
    assert len(policies) == 2 + 18


def test_network_set_is_rendered_and_can_be_turned_off(tmp_path: Path):
    assert "network" in _render(tmp_path).sets
    assert "network" not in _render(tmp_path, "network_policy.enabled=false").sets
    proc = run_otactl(
        "--generated",
        str(tmp_path),
        "render",
        "--set",
        "network_policy.apiserver_cidrs=[10.0.0.300/32]",
    )
    assert proc.returncode == 2 and "apiserver_cidrs" in proc.stderr, proc.stderr


PLURALS = {
    "ConfigMap": ("", "configmaps"),
    "Secret": ("", "secrets"),
    "Service": ("", "services"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "Job": ("batch", "jobs"),
    "Ingress": ("networking.k8s.io", "ingresses"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
}


def _allowed(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {
        verb
        for r in rules
        if group in r["apiGroups"] and resource in r["resources"] and "resourceNames" not in r
        for verb in r["verbs"]
    }


def test_rbac_prints_a_role_that_covers_every_rendered_kind(tmp_path: Path):
    proc = run_otactl("--generated", str(tmp_path), "rbac", "--namespace", "ota")
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds == ["Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                     "ClusterRoleBinding"]  # fmt: skip
    role = docs[2]
    rendered = _render(tmp_path, "ingress.enabled=true")
    for kind in {d["kind"] for name in rendered.sets for d in rendered.objects(name)}:
        group, resource = PLURALS[kind]  # a new kind needs a line here and in the Role
        assert {"get", "create", "patch", "delete", "list", "watch"} <= _allowed(
            role["rules"], group, resource
        ), kind
    assert _allowed(role["rules"], "", "services/proxy") == {"get", "create", "update"}
    assert _allowed(role["rules"], "", "pods") == {"get", "list", "watch"}
    # Cluster-wide: its own namespace by name, and reads only.
    cluster = docs[4]["rules"]
    named = [r for r in cluster if "resourceNames" in r]
    assert {tuple(r["resourceNames"]) for r in named} == {("ota",), ("kubernetes",)}
    assert all(set(r["verbs"]) <= {"list", "watch"} for r in cluster if "resourceNames" not in r)
    assert (
        docs[3]["subjects"]
        == docs[5]["subjects"]
        == [{"kind": "ServiceAccount", "name": "otactl-ci", "namespace": "ota"}]
    )


def test_rbac_in_the_default_namespace_and_as_json(tmp_path: Path):
    proc = run_otactl("--generated", str(tmp_path), "rbac", "-o", "json", "--service-account", "ci")
    assert proc.returncode == 0, proc.stderr
    items = json.loads(proc.stdout)["items"]
    assert "Namespace" not in [d["kind"] for d in items]  # default exists; never ours
    assert items[0]["metadata"] == {
        "name": "ci", "namespace": "default",
        "labels": {"app.kubernetes.io/name": "ci", "app.kubernetes.io/component": "rbac"},
    }  # fmt: skip
    assert items[3]["metadata"]["name"] == "ci-default"
