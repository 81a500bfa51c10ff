"""`otactl gke`: the real google-cloud-container client against a local Container API.

Google's API cannot run here, so `FakeContainerApi` models the parts otactl calls, as the
v1 REST API answers them: camelCase JSON, enums as names or (with the client's
`$alt=json;enum-encoding=int`) numbers, long-running operations PENDING → RUNNING → DONE
with an `error` when they fail, google error bodies, and an OAuth token endpoint for the
service-account key the tests hand to google-auth.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import pty
import re
import select
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from otactl import gke
from otactl.errors import (
    GkeConflict,
    GkeError,
    GkeForbidden,
    GkeNotFound,
    GkeQuota,
    WaitTimeout,
)

ROOT = Path(__file__).resolve().parent.parent
PROJECT, LOCATION = "ota-test", "europe-west1-b"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"

OPERATION_STATUS = {"STATUS_UNSPECIFIED": 0, "PENDING": 1, "RUNNING": 2, "DONE": 3, "ABORTING": 4}
OPERATION_TYPE = {"CREATE_CLUSTER": 1, "DELETE_CLUSTER": 2}
CLUSTER_STATUS = {"PROVISIONING": 1, "RUNNING": 2, "RECONCILING": 3, "STOPPING": 4, "ERROR": 5}
NODE_POOL_STATUS = {"PROVISIONING": 1, "RUNNING": 2, "RECONCILING": 4, "STOPPING": 5, "ERROR": 6}


def _cluster_ca() -> str:
    """A real self-signed CA certificate, base64 PEM as `masterAuth.clusterCaCertificate`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gke-test-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


@dataclass
class Fault:
    """An error answer queued for the next request of one kind."""

    code: int
    status: str
    message: str
    before: Callable[[], None] | None = None  # runs first: a concurrent change to model
    reason: str | None = None  # google.rpc.ErrorInfo reason in the error's details


@dataclass
class FakeContainerApi:
    """State and behaviour of the fake Container API v1 (projects.locations.*)."""

    polls: int = 3  # operation GETs until DONE: the first says RUNNING, the last DONE
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    op_errors: list[dict[str, Any]] = field(default_factory=list)  # for the next operations
    tokens: list[str] = field(default_factory=list)
    refuse_tokens: bool = False  # answer the token endpoint as for a deleted key
    ca: str = field(default_factory=_cluster_ca)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, kind: str, code: int, status: str, message: str, **kw: Any) -> None:
        """Answer the next `kind` request (create, get, delete, operation) with an error."""
        self.faults.setdefault(kind, []).append(Fault(code, status, message, **kw))

    def add_cluster(
        self, name: str, machine_type: str = "e2-standard-4", nodes: int = 2,
        pool: str = "ota-pool", status: str = "RUNNING",
    ) -> None:  # fmt: skip
        self.clusters[f"{PARENT}/clusters/{name}"] = {
            "name": name,
            "location": LOCATION,
            "status": status,
            "endpoint": "34.78.10.20" if status == "RUNNING" else "",
            "masterAuth": {"clusterCaCertificate": self.ca},
            "nodePools": [
                {
                    "name": pool,
                    "initialNodeCount": nodes,
                    "config": {"machineType": machine_type, "diskSizeGb": 100},
                    "status": status,
                }
            ],
            "currentMasterVersion": "1.33.5-gke.1000",
        }

    def calls(self, method: str, kind: str) -> int:
        return sum(1 for m, k in self.requests if (m, k) == (method, kind))

    # --- the API ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        m = re.fullmatch(
            r"/v1/(projects/[^/]+/locations/[^/]+)/(clusters|operations)(/[^/]+)?", path
        )
        if not m:
            return _error(404, "NOT_FOUND", f"Method not found: {path}")
        parent, collection, leaf = m.group(1), m.group(2), (m.group(3) or "")[1:]
        kind = {
            ("POST", "clusters"): "create",
            ("GET", "clusters"): "get",
            ("DELETE", "clusters"): "delete",
            ("GET", "operations"): "operation",
        }.get((method, collection))
        if kind is None or (kind == "create") == bool(leaf):
            return _error(404, "NOT_FOUND", f"Method not found: {method} {path}")
        self.requests.append((method, kind))
        self.bodies.append(body)
        if self.faults.get(kind):
            fault = self.faults[kind].pop(0)
            if fault.before is not None:
                fault.before()
            code, payload = _error(fault.code, fault.status, fault.message)
            if fault.reason is not None:
                payload["error"]["details"] = [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": fault.reason,
                    "domain": "googleapis.com",
                    "metadata": {"service": "container.googleapis.com", "consumer": "projects/1"},
                }]  # fmt: skip
            return code, payload
        return getattr(self, f"_{kind}")(parent, leaf, body)

    def _create(self, parent: str, _: str, body: dict[str, Any]) -> tuple[int, Any]:
        cluster = body.get("cluster") or {}
        name = cluster.get("name", "")
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", name):
            return _error(
                400, "INVALID_ARGUMENT", f'Invalid value for field "cluster.name": "{name}"'
            )
        for pool in cluster.get("nodePools", []):
            if int(pool.get("initialNodeCount", 0)) < 1:
                return _error(400, "INVALID_ARGUMENT", "Node pool size must be at least 1.")
        path = f"{parent}/clusters/{name}"
        if path in self.clusters:
            return _error(409, "ALREADY_EXISTS", f"Already exists: {path}.")
        pools = cluster["nodePools"]
        self.add_cluster(
            name, pools[0]["config"]["machineType"], int(pools[0]["initialNodeCount"]),
            pools[0]["name"], status="PROVISIONING",
        )  # fmt: skip
        return 200, self._start(parent, path, "CREATE_CLUSTER")

    def _get(self, parent: str, name: str, _: dict[str, Any]) -> tuple[int, Any]:
        path = f"{parent}/clusters/{name}"
        if path not in self.clusters:
            return _error(404, "NOT_FOUND", f"Not found: {path}.")
        # Time passes for a cluster's running operation while someone watches the cluster.
        for op in self.operations.values():
            if op["targetPath"] == path and op["status"] != "DONE":
                self._tick(op)
        if path not in self.clusters:  # that operation was its deletion, now done
            return _error(404, "NOT_FOUND", f"Not found: {path}.")
        return 200, self.clusters[path]

    def _delete(self, parent: str, name: str, _: dict[str, Any]) -> tuple[int, Any]:
        path = f"{parent}/clusters/{name}"
        if path not in self.clusters:
            return _error(404, "NOT_FOUND", f"Not found: {path}.")
        busy = [
            o for o in self.operations.values() if o["targetPath"] == path and o["status"] != "DONE"
        ]
        if busy:
            msg = f"Cluster is running incompatible operation {busy[0]['name']}."
            return _error(400, "FAILED_PRECONDITION", msg)
        self.clusters[path]["status"] = "STOPPING"
        return 200, self._start(parent, path, "DELETE_CLUSTER")

    def _operation(self, parent: str, name: str, _: dict[str, Any]) -> tuple[int, Any]:
        op = self.operations.get(f"{parent}/operations/{name}")
        if op is None:
            return _error(404, "NOT_FOUND", f"Not found: {parent}/operations/{name}.")
        self._tick(op)
        return 200, op

    def _start(self, parent: str, target: str, op_type: str) -> dict[str, Any]:
        name = f"operation-{int(time.time() * 1000)}-{len(self.operations):08x}"
        op = {
            "name": name,
            "zone": LOCATION,
            "location": LOCATION,
            "operationType": op_type,
            "status": "PENDING",
            "selfLink": f"https://container.googleapis.com/v1/{parent}/operations/{name}",
            "targetLink": f"https://container.googleapis.com/v1/{target}",
            "startTime": datetime.datetime.now(datetime.UTC).isoformat(),
            "targetPath": target,  # the fake's own bookkeeping, not an API field
            "ticks": 0,
            "pendingError": self.op_errors.pop(0) if self.op_errors else None,
        }
        self.operations[f"{parent}/operations/{name}"] = op
        return op

    def _tick(self, op: dict[str, Any]) -> None:
        if op["status"] == "DONE":
            return
        op["ticks"] += 1
        if op["ticks"] < self.polls:
            op["status"] = "RUNNING"
            op["detail"] = f"step {op['ticks']} of {self.polls}"
            return
        op["status"] = "DONE"
        op["endTime"] = datetime.datetime.now(datetime.UTC).isoformat()
        cluster = self.clusters[op["targetPath"]]
        if op["pendingError"]:
            op["error"] = op["pendingError"]
            op["statusMessage"] = op["pendingError"]["message"]
            cluster.update(status="ERROR", statusMessage=op["statusMessage"])
        elif op["operationType"] == "DELETE_CLUSTER":
            del self.clusters[op["targetPath"]]
        else:
            cluster.update(status="RUNNING", endpoint="34.78.10.20")
            for pool in cluster["nodePools"]:
                pool["status"] = "RUNNING"

    def token(self, form: dict[str, list[str]]) -> tuple[int, Any]:
        """OAuth 2.0 JWT-bearer grant, as oauth2.googleapis.com/token answers it."""
        assertion = form.get("assertion", [""])[0]
        try:
            claims = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
        except (IndexError, ValueError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT."}
        if self.refuse_tokens:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if "cloud-platform" not in claims.get("scope", ""):
            return 400, {"error": "invalid_scope", "error_description": "Invalid scope."}
        self.tokens.append(f"ya29.fake-{len(self.tokens)}")
        return 200, {"access_token": self.tokens[-1], "expires_in": 3599, "token_type": "Bearer"}


def _error(code: int, status: str, message: str) -> tuple[int, Any]:
    return code, {"error": {"code": code, "message": message, "status": status}}


def _wire(obj: dict[str, Any], ints: bool) -> dict[str, Any]:
    """The JSON the API sends: bookkeeping keys dropped, enums as numbers when asked."""
    out = {k: v for k, v in obj.items() if k not in ("targetPath", "ticks", "pendingError")}
    if ints and "operationType" in out:
        out["status"] = OPERATION_STATUS[out["status"]]
        out["operationType"] = OPERATION_TYPE[out["operationType"]]
    elif ints and "nodePools" in out:
        out["status"] = CLUSTER_STATUS[out["status"]]
        out["nodePools"] = [
            {**pool, "status": NODE_POOL_STATUS[pool["status"]]} for pool in out["nodePools"]
        ]
    return out


def _handler(api: FakeContainerApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            url = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with api.lock:
                if url.path == "/token" and method == "POST":
                    code, payload = api.token(parse_qs(raw.decode()))
                elif not (self.headers.get("Authorization") or "").startswith("Bearer "):
                    code, payload = _error(
                        401,
                        "UNAUTHENTICATED",
                        "Request is missing required authentication credential.",
                    )
                else:
                    body = json.loads(raw) if raw else {}
                    code, payload = api.handle(method, url.path, body)
                ints = "enum-encoding=int" in parse_qs(url.query).get("$alt", [""])[0]
                data = json.dumps(_wire(payload, ints)).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@dataclass
class Fake:
    api: FakeContainerApi
    url: str
    sa_key: Path


@pytest.fixture(scope="module")
def rsa_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def fake(tmp_path: Path, rsa_key_pem: str) -> Iterator[Fake]:
    """The fake API on 127.0.0.1 (random port) and a service-account key whose token
    endpoint is that server."""
    api = FakeContainerApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    key = tmp_path / "sa.json"
    key.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "0123456789abcdef",
                "private_key": rsa_key_pem,
                "client_email": f"otactl@{PROJECT}.iam.gserviceaccount.com",
                "client_id": "100000000000000000001",
                "token_uri": f"{url}/token",
            }
        )
    )
    try:
        yield Fake(api, url, key)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def client_for(f: Fake) -> Any:
    return gke.make_client(gke.load_credentials(f.sa_key), f.url)


def spec(name: str = "ota", **kw: Any) -> gke.ClusterSpec:
    return gke.ClusterSpec(PROJECT, LOCATION, name, **kw)


def quick(seen: list[gke.Progress] | None = None) -> gke.Waiting:
    return gke.Waiting(
        timeout=30, poll_interval=0.01, progress=None if seen is None else seen.append
    )


def otactl(
    *args: str, fake: Fake | None = None, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, with a clean environment: no ADC, no metadata server."""
    full = {
        "PATH": str(cwd / "bin"),
        "HOME": str(cwd),
        "PYTHONPATH": str(ROOT),
        "NO_GCE_CHECK": "true",  # google-auth must not probe the GCE metadata server
        "LANG": "C.UTF-8",
    }
    if fake is not None:
        full[gke.ENDPOINT_ENV] = fake.url
    full.update(env or {})
    (cwd / "bin").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "otactl", *args],
        cwd=cwd, env=full, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def where(f: Fake) -> list[str]:
    return ["--project", PROJECT, "--location", LOCATION, "--credentials", str(f.sa_key)]


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The error, which must be one line and the last on stderr (progress lines come first)."""
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:], proc.stderr
    return errors[0]


# --- core -------------------------------------------------------------------------------------


def test_create_follows_the_operation_through_several_polls(fake: Fake) -> None:
    fake.api.polls = 4
    seen: list[gke.Progress] = []
    info = gke.create_cluster(client_for(fake), spec(nodes=3), quick(seen))
    assert info.created and info.status == "RUNNING" and info.endpoint == "34.78.10.20"
    assert [p.status for p in seen] == ["PENDING", "RUNNING", "RUNNING", "RUNNING", "DONE"]
    assert fake.api.calls("POST", "create") == 1 and fake.api.calls("GET", "operation") == 4
    sent = fake.api.bodies[fake.api.requests.index(("POST", "create"))]["cluster"]
    assert sent["name"] == "ota"
    assert sent["nodePools"] == [
        {"name": "ota-pool", "initialNodeCount": 3, "config": {"machineType": "e2-standard-4"}}
    ]


def test_create_keeps_an_identical_cluster_without_a_second_create(fake: Fake) -> None:
    fake.api.add_cluster("ota")
    info = gke.create_cluster(client_for(fake), spec(), quick())
    assert not info.created and info.status == "RUNNING"
    assert fake.api.calls("POST", "create") == 0


def test_create_refuses_a_cluster_with_other_settings(fake: Fake) -> None:
    fake.api.add_cluster("ota", machine_type="e2-standard-2")
    with pytest.raises(GkeConflict, match="machine type e2-standard-2, not e2-standard-4"):
        gke.create_cluster(client_for(fake), spec(), quick())
    assert fake.api.calls("POST", "create") == 0


def test_create_waits_for_a_cluster_still_provisioning(fake: Fake) -> None:
    fake.api.polls = 3
    gke.create_cluster(client_for(fake), spec(), gke.Waiting(30, 0.01, None))
    # A second run while the first cluster was provisioning would have followed the status.
    fake.api.add_cluster("other", status="PROVISIONING")
    fake.api._start(PARENT, f"{PARENT}/clusters/other", "CREATE_CLUSTER")
    seen: list[gke.Progress] = []
    info = gke.create_cluster(client_for(fake), spec("other"), quick(seen))
    assert not info.created and info.status == "RUNNING"
    assert {p.status for p in seen} == {"PROVISIONING"}


def test_create_adopts_a_cluster_made_concurrently(fake: Fake) -> None:
    """A 409 on create means someone else won the race: their cluster is judged like any."""
    fake.api.fail(
        "create", 409, "ALREADY_EXISTS", f"Already exists: {PARENT}/clusters/ota.",
        before=lambda: fake.api.add_cluster("ota"),
    )  # fmt: skip
    info = gke.create_cluster(client_for(fake), spec(), quick())
    assert not info.created


def test_failed_operation_raises_its_reason(fake: Fake) -> None:
    reason = "Google Compute Engine: Quota 'SSD_TOTAL_GB' exceeded. Limit: 500.0 in region."
    fake.api.op_errors.append({"code": 8, "message": reason})
    with pytest.raises(GkeQuota) as e:
        gke.create_cluster(client_for(fake), spec(), quick())
    assert str(e.value) == (
        f"gke cluster {PARENT}/clusters/ota: create cluster operation "
        f"{next(iter(fake.api.operations.values()))['name']} failed: quota exhausted: {reason}"
    )
    # The failed cluster stays, in ERROR, until someone deletes it.
    with pytest.raises(GkeError, match=f"exists but is ERROR: {re.escape(reason)}; delete it"):
        gke.create_cluster(client_for(fake), spec(), quick())


def test_a_transient_503_while_polling_is_retried(fake: Fake) -> None:
    fake.api.fail("operation", 503, "UNAVAILABLE", "The service is currently unavailable.")
    info = gke.create_cluster(client_for(fake), spec(), quick())
    assert info.created and fake.api.faults["operation"] == []


def test_operation_past_its_deadline_is_a_wait_timeout(fake: Fake) -> None:
    fake.api.polls = 1000
    with pytest.raises(WaitTimeout, match="still RUNNING after"):
        gke.create_cluster(client_for(fake), spec(), gke.Waiting(0.2, 0.05, None))


def test_permission_denied_names_the_cluster(fake: Fake) -> None:
    fake.api.fail("get", 403, "PERMISSION_DENIED", 'Required "container.clusters.get" permission.')
    with pytest.raises(GkeForbidden) as e:
        gke.get_cluster(client_for(fake), spec())
    assert str(e.value) == (
        f'gke cluster {PARENT}/clusters/ota: permission denied: Required "container.clusters.get"'
        " permission."
    )


def test_disabled_api_shows_googles_reason(fake: Fake) -> None:
    message = (
        "Kubernetes Engine API has not been used in project 1 before or it is disabled."
        " Enable it by visiting https://console.developers.google.com/apis/api/"
        "container.googleapis.com/overview?project=1 then retry."
    )
    fake.api.fail("get", 403, "PERMISSION_DENIED", message, reason="SERVICE_DISABLED")
    with pytest.raises(GkeForbidden) as e:
        gke.create_cluster(client_for(fake), spec(), quick())
    assert str(e.value).endswith(f"permission denied: {message} [SERVICE_DISABLED]")


def test_delete_follows_the_operation_until_the_cluster_is_gone(fake: Fake) -> None:
    fake.api.add_cluster("ota")
    client = client_for(fake)
    gke.delete_cluster(client, spec(), quick())
    with pytest.raises(GkeNotFound, match=f"{PARENT}/clusters/ota: not found"):
        gke.get_cluster(client, spec())


def test_kubeconfig_with_a_token_loads_in_the_kubernetes_client(fake: Fake, tmp_path: Path) -> None:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    fake.api.add_cluster("ota")
    kubeconfig = tmp_path / "kube" / "config"
    kubeconfig.parent.mkdir()
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "other", "cluster": {"server": "https://10.0.0.1"}}],
        "users": [{"name": "other", "user": {"token": "x"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}],
    }))  # fmt: skip
    creds = gke.load_credentials(fake.sa_key)
    entry = gke.write_kubeconfig(
        gke.make_client(creds, fake.url), spec(), kubeconfig=kubeconfig, credentials=creds
    )
    assert entry.context == f"gke_{PROJECT}_{LOCATION}_ota" and entry.auth == "token"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    doc = yaml.safe_load(kubeconfig.read_text())
    assert doc["current-context"] == entry.context
    assert {c["name"] for c in doc["contexts"]} == {"other", entry.context}

    conf = k8s.Configuration()
    k8s_config.load_kube_config(str(kubeconfig), client_configuration=conf)
    assert conf.host == "https://34.78.10.20"
    assert Path(conf.ssl_ca_cert).read_bytes() == base64.b64decode(fake.api.ca)
    assert conf.api_key["BearerToken"] == f"Bearer {fake.api.tokens[-1]}"


def test_kubeconfig_uses_the_auth_plugin_when_present(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    fake.api.add_cluster("ota")
    plugin = tmp_path / "bin" / gke.AUTH_PLUGIN
    plugin.parent.mkdir()
    # Stands in for the real plugin: prints the ExecCredential kubectl expects.
    plugin.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        "assert sys.argv[1:] == ['--use_application_default_credentials'], sys.argv\n"
        'print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1",'
        ' "kind": "ExecCredential", "status": {"token": "from-plugin"}}))\n'
    )
    plugin.chmod(0o755)
    monkeypatch.setenv("PATH", str(plugin.parent), prepend=os.pathsep)
    kubeconfig = tmp_path / "config"
    entry = gke.write_kubeconfig(
        client_for(fake), spec(), kubeconfig=kubeconfig, context="ota",
        credentials_file=fake.sa_key, auth_plugin=True,
    )  # fmt: skip
    assert entry.auth == gke.AUTH_PLUGIN and entry.token_expiry is None
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    assert user["exec"]["command"] == gke.AUTH_PLUGIN
    assert user["exec"]["env"] == [
        {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": str(fake.sa_key.resolve())}
    ]
    assert fake.api.tokens == []  # no token was minted for the file

    conf = k8s.Configuration()
    k8s_config.load_kube_config(str(kubeconfig), client_configuration=conf)
    assert conf.host == "https://34.78.10.20"
    assert conf.api_key["BearerToken"] == "Bearer from-plugin"


# --- CLI --------------------------------------------------------------------------------------


def test_help_does_not_import_google_libraries(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from otactl.cli import main\n"
        "for argv in (['otactl', '--help'], ['otactl', 'gke', 'create', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('google.cloud', 'google.auth'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_cli_create_prints_json_and_one_line_per_state(fake: Fake, tmp_path: Path) -> None:
    fake.api.polls = 3
    proc = otactl(
        "gke", "create", "ota", *where(fake), "--poll-interval", "0.01", "-o", "json",
        fake=fake, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["created"] is True and out["endpoint"] == "34.78.10.20"
    assert out["path"] == f"{PARENT}/clusters/ota" and out["node_pool"] == "ota-pool"
    states = [line.split(": ", 1)[1].split(",")[0] for line in proc.stderr.splitlines()]
    op = next(iter(fake.api.operations.values()))["name"]
    assert states == [
        f"{op} PENDING",
        f"{op} RUNNING (step 1 of 3)",
        f"{op} RUNNING (step 2 of 3)",
        f"{op} DONE (step 2 of 3)",
    ]


def test_cli_create_takes_the_node_pool_from_the_gke_profile(fake: Fake, tmp_path: Path) -> None:
    proc = otactl(
        "--set", "node_pool=ota-nodes", "gke", "create", "ota", *where(fake),
        "--poll-interval", "0.01", fake=fake, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert fake.api.clusters[f"{PARENT}/clusters/ota"]["nodePools"][0]["name"] == "ota-nodes"
    assert proc.stdout.startswith(f"created gke cluster {PARENT}/clusters/ota (RUNNING")


def test_cli_create_same_settings_again_is_a_no_op(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota", nodes=1)
    proc = otactl("gke", "create", "ota", *where(fake), "--nodes", "1", fake=fake, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "already there, same settings" in proc.stdout
    assert fake.api.calls("POST", "create") == 0


@pytest.mark.parametrize(
    ("kind", "code", "status", "message", "exit_code", "words"),
    [
        ("get", 403, "PERMISSION_DENIED", 'Required "container.clusters.get" permission.', 6,
         "permission denied"),
        ("get", 401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", 5,
         "credentials rejected"),
        ("create", 403, "PERMISSION_DENIED", "Kubernetes Engine API has not been used in project"
         " 1 before or it is disabled.", 6, "permission denied"),
        ("create", 409, "ALREADY_EXISTS", f"Already exists: {PARENT}/clusters/ota.", 10,
         "conflict"),
        ("create", 429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Mutate"
         " requests' of service 'container.googleapis.com'.", 11, "quota exhausted"),
        ("create", 403, "PERMISSION_DENIED", "Insufficient regional quota to satisfy request:"
         " resource \"CPUS\": request requires '8.0' and is short '4.0'.", 11,
         "quota exhausted"),
        ("create", 400, "INVALID_ARGUMENT", "Machine type \"e2-huge\" does not exist.", 2,
         "invalid request"),
    ],
)  # fmt: skip
def test_cli_api_errors_are_one_line_with_their_exit_code(
    fake: Fake, tmp_path: Path, kind: str, code: int, status: str, message: str,
    exit_code: int, words: str,
) -> None:  # fmt: skip
    # google-auth answers a 401 by refreshing the credentials and trying twice more.
    for _ in range(3 if code == 401 else 1):
        fake.api.fail(kind, code, status, message)
    proc = otactl("gke", "create", "ota", *where(fake), fake=fake, cwd=tmp_path)
    assert proc.returncode == exit_code, proc.stderr
    assert one_error_line(proc) == f"error: gke cluster {PARENT}/clusters/ota: {words}: {message}"


def test_cli_create_with_other_settings_exits_10(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota", nodes=5)
    proc = otactl("gke", "create", "ota", *where(fake), fake=fake, cwd=tmp_path)
    assert proc.returncode == 10
    assert "exists with other settings (5 nodes per zone, not 2)" in one_error_line(proc)
    assert fake.api.calls("POST", "create") == 0


def test_cli_failed_operation_shows_the_reason(fake: Fake, tmp_path: Path) -> None:
    fake.api.op_errors.append({"code": 7, "message": "Permission denied on service account."})
    proc = otactl("gke", "create", "ota", *where(fake), "--poll-interval", "0.01",
                  fake=fake, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 6
    assert one_error_line(proc).endswith(
        "failed: permission denied: Permission denied on service account."
    )


def test_cli_credentials_writes_a_private_kubeconfig(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    kubeconfig = tmp_path / "nested" / "kubeconfig"
    proc = otactl("gke", "credentials", "ota", *where(fake), "--kubeconfig", str(kubeconfig),
                  "-o", "json", fake=fake, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["kubeconfig"] == str(kubeconfig) and out["endpoint"] == "https://34.78.10.20"
    assert out["context"] == f"gke_{PROJECT}_{LOCATION}_ota" and out["auth"] == "token"
    assert out["token_expiry"].endswith("Z")
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert "not on PATH" in proc.stderr


def test_cli_credentials_default_file_is_kubeconfig_env(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    target = tmp_path / "kc"
    kubeconfig_env = {"KUBECONFIG": f"{target}{os.pathsep}{tmp_path / 'b'}"}
    proc = otactl("gke", "credentials", "ota", *where(fake), "--context", "ota",
                  fake=fake, cwd=tmp_path, env=kubeconfig_env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"context ota written to {target} (server https://34.78.10.20)\n"


def test_cli_credentials_for_a_missing_cluster_exits_12(fake: Fake, tmp_path: Path) -> None:
    proc = otactl("gke", "credentials", "nope", *where(fake), fake=fake, cwd=tmp_path)
    assert proc.returncode == 12
    assert one_error_line(proc) == (
        f"error: gke cluster {PARENT}/clusters/nope: not found: Not found: {PARENT}/clusters/nope."
    )


def test_cli_delete_with_yes(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    proc = otactl("gke", "delete", "ota", *where(fake), "--yes", "--poll-interval", "0.01",
                  fake=fake, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"deleted gke cluster {PARENT}/clusters/ota\n"
    assert fake.api.clusters == {}


def test_cli_delete_without_yes_refuses_when_not_interactive(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    proc = otactl("gke", "delete", "ota", *where(fake), fake=fake, cwd=tmp_path)
    assert proc.returncode == 2
    assert "refusing to delete without --yes" in one_error_line(proc)
    assert fake.api.requests == []


@pytest.mark.parametrize(("answer", "exit_code", "remaining"), [("y", 0, 0), ("n", 1, 1)])
def test_cli_delete_without_yes_asks_on_a_terminal(
    fake: Fake, tmp_path: Path, answer: str, exit_code: int, remaining: int
) -> None:
    fake.api.add_cluster("ota")
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "NO_GCE_CHECK": "true", gke.ENDPOINT_ENV: fake.url}  # fmt: skip
    primary, secondary = pty.openpty()  # a terminal for the question and the answer
    proc = subprocess.Popen(
        [sys.executable, "-m", "otactl", "gke", "delete", "ota", *where(fake),
         "--poll-interval", "0.01"],
        cwd=tmp_path, env=env, stdin=secondary, stdout=subprocess.PIPE, stderr=secondary,
        text=True,
    )  # fmt: skip
    os.close(secondary)
    try:
        prompt = b""
        deadline = time.monotonic() + 30
        while b"[y/N]" not in prompt and time.monotonic() < deadline:
            if select.select([primary], [], [], 0.5)[0]:
                prompt += os.read(primary, 1024)
        assert b"Delete gke cluster" in prompt
        os.write(primary, f"{answer}\n".encode())
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(primary)
    assert proc.returncode == exit_code, out
    assert len(fake.api.clusters) == remaining


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{", "not JSON"),
        ('{"type": "authorized_user"}', "not a service-account key (type 'authorized_user'); "
         "point GOOGLE_APPLICATION_CREDENTIALS at other kinds of credentials"),
        ('{"type": "service_account"}', "unusable service-account key: Service account info was"
         " not in the expected format, missing fields"),  # then a set, in any order
    ],
)  # fmt: skip
def test_cli_bad_credentials_file(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "key.json").write_text(content)
    proc = otactl("gke", "create", "ota", "--project", PROJECT, "--location", LOCATION,
                  "--credentials", "key.json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 5
    assert one_error_line(proc).startswith(f"error: --credentials key.json: {message}")


def test_cli_token_refused_by_google(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    fake.api.refuse_tokens = True
    proc = otactl("gke", "credentials", "ota", *where(fake), fake=fake, cwd=tmp_path)
    assert proc.returncode == 5
    assert one_error_line(proc) == (
        f"error: gke cluster {PARENT}/clusters/ota: Google refused the credentials:"
        " invalid_grant: Invalid JWT Signature."
    )
    assert not (tmp_path / ".kube" / "config").exists()


def test_gke_profile_and_example_values(tmp_path: Path) -> None:
    proc = otactl("--profile", "gke", "--config", str(ROOT / "contrib" / "gke" / "values.yaml"),
                  "config", "show", "-o", "json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    values = json.loads(proc.stdout)
    assert values["storage_class"] == "standard-rwo"
    assert values["node_pool"] == gke.DEFAULT_NODE_POOL
    for service in ("gateway", "reverse_proxy"):
        assert values[service]["service_type"] == "LoadBalancer"
        assert values[service]["node_port"] is None


def test_cli_progress_is_one_live_line_on_a_terminal(fake: Fake, tmp_path: Path) -> None:
    fake.api.polls = 3
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "NO_GCE_CHECK": "true", gke.ENDPOINT_ENV: fake.url}  # fmt: skip
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "otactl", "gke", "create", "ota", *where(fake),
         "--poll-interval", "0.01"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=secondary,
    )  # fmt: skip
    os.close(secondary)
    screen = b""
    try:
        while True:
            if select.select([primary], [], [], 30)[0]:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # EIO: the process closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            else:
                break
        proc.wait(timeout=60)
    finally:
        os.close(primary)
    assert proc.returncode == 0
    live, *rest = screen.decode().split("\r\n")
    assert live.count("\r\x1b[K") == 4 and live.endswith("DONE (step 2 of 3), 0s")
    assert rest[0].startswith("next: otactl gke credentials ota")


def test_cli_no_application_default_credentials(tmp_path: Path) -> None:
    proc = otactl("gke", "credentials", "ota", "--project", PROJECT, "--location", LOCATION,
                  cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 5
    assert one_error_line(proc).startswith("error: no Google Cloud credentials found")


def test_cli_unreachable_api_exits_4(fake: Fake, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    proc = otactl("gke", "create", "ota", *where(fake), cwd=tmp_path,
                  env={gke.ENDPOINT_ENV: closed})  # fmt: skip
    assert proc.returncode == 4
    assert one_error_line(proc) == (
        f"error: gke cluster {PARENT}/clusters/ota: cannot reach the GKE API at {closed}:"
        " Connection refused"
    )
