"""The image contracts (contrib/local-cluster/standin/contracts.yaml) against the rendered
manifests, with the stand-in's evaluator itself (no cluster): the shipped manifests keep
every rule, and each rule, broken on a rendered object, is reported with its reason.

tests/integration/test_contracts.py shows the same rules through `otactl up` on the local
cluster; the `degrade` rules (the image starts, a feature is broken) are only here."""

from __future__ import annotations

import base64
import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from otactl import render, secretstore
from otactl.config import load_values

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "contrib" / "local-cluster" / "standin"))
import contracts  # noqa: E402

CONTRACTS = contracts.load()
Docs = list[dict[str, Any]]


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Docs:
    values = load_values(sets=["namespace=ota"])
    secrets = secretstore.load_or_create(tmp_path_factory.mktemp("srv"))
    out = render.render(values, secrets)
    return [d for name in out.sets for d in out.objects(name)]


def _objects(docs: Docs) -> contracts.Objects:
    def decoded(d: dict[str, Any]) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}

    def of(kind: str) -> list[dict[str, Any]]:
        return [d for d in docs if d["kind"] == kind]

    return contracts.Objects(
        {d["metadata"]["name"]: dict(d.get("data") or {}) for d in of("ConfigMap")},
        {d["metadata"]["name"]: decoded(d) for d in docs if d["kind"] == "Secret"},
        {
            d["metadata"]["name"]: {**d["spec"], "clusterIP": "10.96.0.10"}
            for d in docs
            if d["kind"] == "Service"
        },
    )


def _pods(docs: Docs) -> dict[str, dict[str, Any]]:
    """One pod per workload, as its controller would make it (claims become volumes)."""
    pods = {}
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        name = d["metadata"]["name"]
        spec = copy.deepcopy(d["spec"]["template"]["spec"])
        for claim in d["spec"].get("volumeClaimTemplates") or []:
            claim_name = claim["metadata"]["name"]
            spec.setdefault("volumes", []).append(
                {"name": claim_name, "persistentVolumeClaim": {"claimName": f"{claim_name}-0"}}
            )
        pods[name] = {
            "metadata": {"namespace": "ota", "name": f"{name}-0"},
            "spec": spec,
            "status": {"podIP": "10.244.0.9"},
        }
    return pods


def _evaluate_all(docs: Docs) -> dict[str, contracts.PodVerdict]:
    """Every pod, migrators first (as they would win the race in a cluster)."""
    world = contracts.World()
    objects = _objects(docs)
    pods = _pods(docs)
    verdicts = {}
    for name in sorted(pods, key=lambda n: not n.endswith(("daemon", "reposerver", "treehub"))):
        verdict = contracts.evaluate(CONTRACTS, pods[name], objects, world)
        for c in verdict.containers:
            if c.migrated():
                world.migrated.add(("ota", c.migrated()))
            if c.starts and c.generates_keys:
                world.key_daemons.setdefault("ota", set()).add(name)
        verdicts[name] = verdict
    return verdicts


def _broken(verdict: contracts.PodVerdict) -> dict[str, str]:
    out = {}
    for c in verdict.containers:
        for v in c.violations + c.http + c.warnings:
            out[v.rule.id] = v.message
        if c.config_error:
            out["config"] = c.config_error
    return out


def test_data_file_is_consistent():
    rule_ids = [r.id for r in CONTRACTS.rules]
    assert len(rule_ids) == len(set(rule_ids))
    for contract in CONTRACTS.images.values():
        assert contract.uid >= 0 and contract.writable  # issue 15 builds on these
    # Every rule's citation resolves to a repository and commit.
    for rule in CONTRACTS.rules:
        assert "@" in CONTRACTS.cite(rule.cite)


def test_shipped_manifests_keep_every_contract(docs: Docs):
    verdicts = _evaluate_all(docs)
    modelled = {n for n, v in verdicts.items() if v.modelled}
    assert modelled >= {
        "app", "campaigner", "campaigner-daemon", "device-registry", "device-registry-daemon",
        "director", "director-daemon", "tuf-keyserver", "tuf-keyserver-daemon",
        "tuf-reposerver", "treehub", "web-events", "kafka", "zookeeper",
    }  # fmt: skip
    assert {n: _broken(v) for n, v in verdicts.items() if _broken(v)} == {}
    # The app answers on the port its Service targets.
    assert verdicts["app"].containers[0].listen_port == 9001


# --- each rule broken on a rendered object ------------------------------------------------


def _find(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _container(docs: Docs, name: str, kind: str = "Deployment") -> dict[str, Any]:
    return _find(docs, kind, name)["spec"]["template"]["spec"]["containers"][0]


def _config(docs: Docs, name: str) -> dict[str, str]:
    return _find(docs, "ConfigMap", f"{name}-config")["data"]


def _secret(docs: Docs, name: str, key: str, value: str | None) -> None:
    data = _find(docs, "Secret", name)["data"]
    if value is None:
        del data[key]
    else:
        data[key] = base64.b64encode(value.encode()).decode()


def _drop(docs: Docs, kind: str, name: str) -> None:
    docs.remove(_find(docs, kind, name))


def _pod_spec(docs: Docs, name: str, kind: str = "Deployment") -> dict[str, Any]:
    return _find(docs, kind, name)["spec"]["template"]["spec"]


# rule id -> (workload whose pod breaks it, how to break it, text its reason must hold)
BREAKS: dict[str, tuple[str, Callable[[Docs], None], str]] = {
    "main-class": (
        "director-daemon",
        lambda d: _container(d, "director-daemon").update(args=["-main", "com.example.Nope"]),
        "Could not find or load main class com.example.Nope",
    ),
    "db-url": (
        "campaigner-daemon",
        lambda d: _config(d, "campaigner-daemon").pop("DB_URL"),
        "Could not connect to localhost:3306",
    ),
    "db-credentials": (
        "treehub",
        lambda d: _secret(d, "treehub-secret", "DB_PASSWORD", None),
        "Access denied for user 'treehub'",
    ),
    "schema-migrated": (
        "device-registry",
        lambda d: _drop(d, "Deployment", "device-registry-daemon"),
        "Outdated migrations, terminating",
    ),
    "encryption-password": (
        "tuf-keyserver-daemon",
        lambda d: _secret(d, "tuf-keyserver-encryption", "DB_ENCRYPTION_PASSWORD", "x" * 43),
        "password needs to be 64 chars or longer (DB_ENCRYPTION_PASSWORD has 43)",
    ),
    "encryption-salt": (
        "tuf-keyserver",
        lambda d: _secret(d, "tuf-keyserver-encryption", "DB_ENCRYPTION_SALT", "c2FsdA=="),
        "Salt needs to be base64 encoded and 8 bytes or longer",
    ),
    "reposerver-storage": (
        "tuf-reposerver",
        lambda d: _config(d, "tuf-reposerver").pop("STORAGE_TYPE"),
        "No configuration setting found for key 'storage.s3.accessKey'",
    ),
    "treehub-storage": (
        "treehub",
        lambda d: _config(d, "treehub").pop("TREEHUB_STORAGE"),
        "'treehub.storage.s3.accessKey'",
    ),
    "reposerver-targets-writable": (
        "tuf-reposerver",
        lambda d: _pod_spec(d, "tuf-reposerver")["securityContext"].pop("fsGroup"),
        "Could not open /var/lib/tuf-reposerver/targets as local target store",
    ),
    "treehub-objects-writable": (
        "treehub",
        lambda d: _pod_spec(d, "treehub", "StatefulSet")["securityContext"].pop("fsGroup"),
        "image runs as uid 2",
    ),
    "kafka-log-dirs-writable": (
        "kafka",
        lambda d: _pod_spec(d, "kafka", "StatefulSet")["securityContext"].pop("fsGroup"),
        "none of the specified log dirs from /var/lib/kafka/data/logs can be created",
    ),
    "kafka-required-env": (
        "kafka",
        lambda d: _container(d, "kafka", "StatefulSet")["env"].pop(1),  # ZOOKEEPER_CONNECT
        "dub ensure KAFKA_ZOOKEEPER_CONNECT] FAILED",
    ),
    "kafka-deprecated-env": (
        "kafka",
        lambda d: _pod_spec(d, "kafka", "StatefulSet").pop("enableServiceLinks"),
        "port is deprecated. Please use KAFKA_ADVERTISED_LISTENERS instead. (KAFKA_PORT is set",
    ),
    "listen-port": (
        "app",
        lambda d: _container(d, "app").pop("args"),
        "(the image listens on 0.0.0.0:9000)",
    ),
    "auth-protocol": (
        "tuf-reposerver",
        lambda d: _config(d, "tuf-reposerver").pop("AUTH_PROTOCOL"),
        "auth.protocol is oauth.accesstoken",
    ),
    "app-login-action": (
        "app",
        lambda d: _config(d, "app").pop("OIDC_LOGIN_ACTION"),
        "third-party (Auth0) login page",
    ),
    "app-namespace-provider": (
        "app",
        lambda d: _config(d, "app").pop("OIDC_NS_PROVIDER"),
        "calls ota-user-profile",
    ),
    "app-jwt-secret": (
        "app",
        lambda d: _secret(d, "app-secret", "JWT_SECRET", None),
        "Empty key",
    ),
    "app-session-secure": (
        "app",
        lambda d: _config(d, "app").pop("PLAY_HTTP_SESSION_SECURE"),
        "session cookie is Secure-only",
    ),
    "app-public-urls": (
        "app",
        lambda d: _config(d, "app").pop("TREEHUB_HOST_PUB"),
        "treehub.pub.host has no default",
    ),
    "app-websocket": (
        "app",
        lambda d: _config(d, "app").pop("WS_HOST"),
        "ws.host defaults to localhost",
    ),
    "web-events-version-format": (
        "web-events",
        lambda d: _config(d, "web-events").pop("PACKAGES_VERSION_FORMAT"),
        r"packages.versionFormat is ^\d+\.\d+\.\d+$",
    ),
    "service-hosts": (
        "director",
        lambda d: _config(d, "director").pop("TUF_KEYSERVER_HOST"),
        "keyserver.host (TUF_KEYSERVER_HOST) defaults to localhost",
    ),
    "treehub-hostname": (
        "treehub",
        lambda d: _config(d, "treehub").pop("TREEHUB_HOSTNAME"),
        "treehub advertises http://0.0.0.0",
    ),
    "persistent-storage": (
        "zookeeper",
        lambda d: _container(d, "zookeeper", "StatefulSet")["volumeMounts"].pop(1),
        "/datalog is not on a PersistentVolumeClaim",
    ),
}
# Rules that only a running namespace shows (the evaluator has no request to answer).
PER_REQUEST = {"key-generation"}


def test_every_rule_has_a_break():
    assert set(BREAKS) | PER_REQUEST == {r.id for r in CONTRACTS.rules}


@pytest.mark.parametrize("rule_id", sorted(BREAKS))
def test_breaking_a_rule_is_reported_with_its_reason(docs: Docs, rule_id: str):
    workload, breaker, reason = BREAKS[rule_id]
    broken = copy.deepcopy(docs)
    breaker(broken)
    verdict = _evaluate_all(broken)[workload]
    found = _broken(verdict)
    assert rule_id in found, found
    assert reason in found[rule_id]
    rule = next(r for r in CONTRACTS.rules if r.id == rule_id)
    assert CONTRACTS.cite(rule.cite) in found[rule_id]  # names where the rule comes from
    if rule.effect == "start":
        assert not verdict.ok


def test_missing_config_map_is_a_kubelet_config_error(docs: Docs):
    broken = copy.deepcopy(docs)
    _drop(broken, "ConfigMap", "director-config")
    verdict = _evaluate_all(broken)["director"]
    assert verdict.config_error() == 'configmap "director-config" not found'


def test_http_gate_answers_as_the_image_would(docs: Docs):
    broken = copy.deepcopy(docs)
    _config(broken, "tuf-reposerver").pop("AUTH_PROTOCOL")
    verdicts = _evaluate_all(broken)
    repo = verdicts["tuf-reposerver"]
    denied = contracts.http_gate(repo, 9001, "POST", "/api/v1/user_repo", {})
    assert denied is not None and denied.status == 403
    assert contracts.http_gate(repo, 9001, "GET", "/health", {}) is None  # health stays open
    token = {"Authorization": "Bearer x"}
    assert contracts.http_gate(repo, 9001, "POST", "/api/v1/user_repo", token) is None
    with pytest.raises(contracts.Refused):  # nothing listens on another port
        contracts.http_gate(repo, 9000, "GET", "/health", {})
    app = verdicts["app"]
    login = contracts.http_gate(app, 9001, "GET", "/login", {})
    assert login is not None and (login.status, login.headers) == (303, {"Location": "/"})


def test_keys_stay_locked_until_a_key_generation_daemon_ran(docs: Docs):
    verdicts = _evaluate_all(docs)
    keyserver = verdicts["tuf-keyserver"]
    empty = contracts.World()
    locked = contracts.after_reply(CONTRACTS, empty, keyserver, "/api/v1/root/abc", 200)
    assert locked is not None and locked.status == 423
    assert "KeyGenerationDaemon" in locked.body["description"]
    ran = contracts.World(key_daemons={"ota": {"tuf-keyserver-daemon-0"}})
    assert contracts.after_reply(CONTRACTS, ran, keyserver, "/api/v1/root/abc", 200) is None


def test_short_encryption_password_in_a_kept_file_is_replaced_once(tmp_path: Path):
    first = secretstore.load_or_create(tmp_path)
    assert len(first.keyserver_db_encryption_password) >= 64 and not first.notes
    data = yaml.safe_load((tmp_path / "secrets.yaml").read_text())
    data["keyserver_db_encryption_password"] = "s" * 43  # what older otactl made
    (tmp_path / "secrets.yaml").write_text(yaml.safe_dump(data))
    upgraded = secretstore.load_or_create(tmp_path)
    assert len(upgraded.keyserver_db_encryption_password) >= 64
    assert upgraded.mysql_root_password == first.mysql_root_password  # the rest is kept
    assert len(upgraded.notes) == 1 and "shorter than 64" in upgraded.notes[0]
    assert "s" * 43 not in upgraded.notes[0]  # never a secret in a message
    again = secretstore.load_or_create(tmp_path)
    assert again.notes == ()  # said once
    assert again.keyserver_db_encryption_password == upgraded.keyserver_db_encryption_password


def test_a_read_only_root_filesystem_refuses_a_store_outside_the_volumes(docs: Docs):
    """Issue 15: the images' root filesystems are read-only; a store path moved off its
    volume fails as the real image would (EROFS), even under the image's own writable dirs."""
    broken = copy.deepcopy(docs)
    _config(broken, "tuf-reposerver")["LOCAL_STORAGE_ROOT"] = "/opt/tuf-reposerver/targets"
    found = _broken(_evaluate_all(broken)["tuf-reposerver"])
    assert "mounted read-only (readOnlyRootFilesystem)" in found["reposerver-targets-writable"]
    _container(broken, "tuf-reposerver")["securityContext"]["readOnlyRootFilesystem"] = False
    assert "reposerver-targets-writable" not in _broken(_evaluate_all(broken)["tuf-reposerver"])
