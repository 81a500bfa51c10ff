"""Credentials, health and registration against the real API server's service proxy and
the OTA services stand-in (through `otactl.kube`'s ServiceCaller, as `otactl up` does).

The OTA services run once per module in their own namespace; each test uses a tenant
(x-ats-namespace) of its own, and the `standin` fixture forgets every repo and device
after each test."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from otactl import credentials, health, kube, registry
from otactl.config import Values, load_values
from otactl.errors import ServiceError, WaitTimeout
from otactl.pki import PkiSettings, ServerFiles, ensure_server_pki
from otactl.registry import Registrar, register_device
from otactl.secretstore import load_or_create
from otactl.service_api import ServiceCaller
from tests.conftest import run_otactl
from tests.tuf_check import public_key, verify, verify_root

from .conftest import LocalCluster, StandinKnobs
from .ota_services import ALL_APPS, deploy_services, service_only

pytestmark = pytest.mark.integration

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "contrib/local-cluster/standin"))
try:
    from standin import DB_DOWN_CAUSE
    from tufrepo import KeyPair as TufKeyPair
finally:
    sys.path.pop(0)

SERVER = "ota-ce.example.com"


@pytest.fixture(scope="module")
def ota_ns(local_cluster: LocalCluster) -> Iterator[str]:
    """A namespace where all 11 OTA services run (stand-in pods)."""
    ns = f"svc-{uuid.uuid4().hex[:8]}"
    local_cluster.kubectl("create", "namespace", ns)
    deploy_services(local_cluster, ns)
    yield ns
    local_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def caller(local_cluster: LocalCluster, ota_ns: str) -> ServiceCaller:
    return kube.connect(local_cluster.kubeconfig).service_caller(ota_ns)


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    """What `otactl up` leaves in generated/: the server PKI and the secrets file."""
    d = tmp_path / "generated" / SERVER
    ensure_server_pki(d, SERVER, PkiSettings())
    load_or_create(d)
    return d


def _values(ns: str, tenant: str) -> Values:
    return load_values(None, [f"namespace={ns}", f"tenant={tenant}", f"server_name={SERVER}"])


def _cli(
    ns: str, cluster: LocalCluster, generated: Path, tenant: str, *args: str
) -> subprocess.CompletedProcess[str]:
    return run_otactl(
        "--generated", str(generated), *args, "--kubeconfig", str(cluster.kubeconfig),
        "-n", ns, "--set", f"tenant={tenant}",
    )  # fmt: skip


# --------------------------------------------------------------------------- credentials


def _check_zip(data: bytes, gateway: str, keytype: str = "RSA") -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    assert set(files) == {
        "autoprov.url", "server_ca.pem", "tufrepo.url", "targets.pub", "targets.sec",
        "treehub.json", "root.json", "client_auth.p12", "server.p12",
    }  # fmt: skip
    assert files["autoprov.url"].decode().strip() == gateway
    # root.json is the repository's root, signed by its root key.
    signed = verify_root(files["root.json"])["signed"]
    # targets.pub/targets.sec: one pair, the root's targets key, in the form garage-sign
    # reads (ota-tuf TufCodecs: keytype and keyval); the private key signs for the public.
    pub, sec = json.loads(files["targets.pub"]), json.loads(files["targets.sec"])
    assert pub["keytype"] == sec["keytype"] == keytype
    assert set(pub["keyval"]) == {"public"} and set(sec["keyval"]) == {"private"}
    public = public_key(keytype, pub["keyval"]["public"])
    signer = TufKeyPair(keytype, _private_key(keytype, sec["keyval"]["private"]))
    sig = signer.sign(b"targets.json")
    verify(public, sig["method"], base64.b64decode(sig["sig"]), b"targets.json")
    [targets_keyid] = signed["roles"]["targets"]["keyids"]
    assert signed["keys"][targets_keyid]["keyval"]["public"] == pub["keyval"]["public"]
    return files


def _private_key(keytype: str, private: str) -> Any:
    """The private key as garage-sign reads it: RSA only as a PKCS#1 PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if keytype == "RSA":
        assert private.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
        return serialization.load_pem_private_key(private.encode(), None)
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private)[:32])


def test_credentials_from_nothing_423_then_rerun_changes_nothing(
    caller: ServiceCaller, standin: StandinKnobs, tenant: str, server_dir: Path, ota_ns: str
) -> None:
    standin.set(keygen_delay_seconds=2)
    values = _values(ota_ns, tenant)
    gateway = f"https://{SERVER}:30443"
    progress: list[str] = []
    first = credentials.credentials_for_values(
        caller, values, server_dir, gateway, timeout=60, progress=progress.append
    )
    assert first.changed and first.created == ("user repo", "director repo")
    assert any("keys are still being generated (tuf-reposerver answered 423)" in p
               for p in progress), progress  # fmt: skip
    path = server_dir / "credentials.zip"
    assert first.path == path and path.stat().st_mode & 0o777 == 0o600
    data = path.read_bytes()
    files = _check_zip(data, gateway)
    assert files["server_ca.pem"] == ServerFiles(server_dir).server_ca.read_bytes()
    treehub = json.loads(files["treehub.json"])
    assert treehub == {"no_auth": True, "ostree": {"server": "https://treehub.example.com/api/v3/"}}
    assert files["tufrepo.url"] == b"https://tuf-reposerver.example.com\n"
    state = standin.state()
    assert state["user_repos"][tenant] == first.repo_id
    director_repo = state["director_repos"][tenant]
    assert first.user_keys["repo_id"] == first.repo_id.encode()

    # Again: POST user_repo answers 409 (fine), the director repo is found, not posted
    # again (that would make orphan keys); the file keeps its bytes and its mtime.
    mtime = path.stat().st_mtime_ns
    second = credentials.credentials_for_values(caller, values, server_dir, gateway, timeout=60)
    assert (second.changed, second.created, second.repo_id) == (False, (), first.repo_id)
    assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
    after = standin.state()
    assert after["director_repos"][tenant] == director_repo
    assert after["director_orphan_keys"].get(tenant, 0) == 0


def test_credentials_retry_5xx_bursts_then_succeed(
    caller: ServiceCaller, standin: StandinKnobs, tenant: str, server_dir: Path, ota_ns: str
) -> None:
    standin.set(
        keygen_delay_seconds=0,
        bursts={"tuf-keyserver": {"count": 2, "status": 503, "path_prefix": "/api"},
                "director": {"count": 1, "status": 500, "path_prefix": "/api"}},
    )  # fmt: skip
    progress: list[str] = []
    made = credentials.credentials_for_values(
        caller, _values(ota_ns, tenant), server_dir, "https://x:8443", timeout=60,
        progress=progress.append,
    )  # fmt: skip
    assert made.changed
    # Two 503s in a row: one progress line (the same words are not repeated at once).
    assert sum("tuf-keyserver answered HTTP 503" in p for p in progress) == 1
    assert sum("director answered HTTP 500" in p for p in progress) == 1


def test_credentials_keys_never_ready_times_out(
    caller: ServiceCaller, standin: StandinKnobs, tenant: str, server_dir: Path, ota_ns: str
) -> None:
    standin.set(keygen_delay_seconds=600)
    with pytest.raises(WaitTimeout, match=r"keys are still being generated"):
        credentials.credentials_for_values(
            caller, _values(ota_ns, tenant), server_dir, "https://x:8443", timeout=2
        )
    assert not (server_dir / "credentials.zip").exists()


def test_credentials_cli_writes_zip_and_user_keys_secret(
    local_cluster: LocalCluster, standin: StandinKnobs, tenant: str, server_dir: Path,
    ota_ns: str, tmp_path: Path,
) -> None:  # fmt: skip
    standin.set(keygen_delay_seconds=0)
    generated = server_dir.parent
    (tmp_path / "out").mkdir(mode=0o755)
    out = tmp_path / "out" / "creds.zip"
    res = _cli(ota_ns, local_cluster, generated, tenant, "credentials", "--out", str(out),
               "-o", "json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["path"] == str(out) and got["changed"] and out.stat().st_mode & 0o777 == 0o600
    assert out.parent.stat().st_mode & 0o777 == 0o755  # the user's folder keeps its mode
    # No gateway-service in this namespace yet: the port the values will expose (NodePort).
    _check_zip(out.read_bytes(), f"https://{SERVER}:30443")
    secret = json.loads(
        local_cluster.kubectl("get", "secret", "user-keys", "-n", ota_ns, "-o", "json").stdout
    )
    assert set(secret["data"]) == {"repo_id", "root.json", "targets.pub", "targets.sec"}
    again = _cli(ota_ns, local_cluster, generated, tenant, "credentials", "--out", str(out))
    assert again.returncode == 0 and "unchanged:" in again.stderr


def test_credentials_cli_service_missing_is_one_line(
    local_cluster: LocalCluster, standin: StandinKnobs, tenant: str, server_dir: Path,
) -> None:  # fmt: skip
    ns = f"empty-{uuid.uuid4().hex[:8]}"
    local_cluster.kubectl("create", "namespace", ns)
    try:
        res = _cli(ns, local_cluster, server_dir.parent, tenant, "credentials")
    finally:
        local_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert res.returncode == 8, res.stderr
    assert res.stderr.startswith("error: tuf-reposerver: POST /api/v1/user_repo: Service ")
    assert "not found" in res.stderr and res.stderr.count("\n") == 1


def test_credentials_ed25519_repo_end_to_end(
    caller: ServiceCaller, standin: StandinKnobs, tenant: str, server_dir: Path, ota_ns: str
) -> None:
    # A reposerver whose repos are ED25519 (a POST with keyType ED25519 does the same).
    standin.set(keygen_delay_seconds=0, user_repo_key_type="ED25519")
    made = credentials.credentials_for_values(
        caller, _values(ota_ns, tenant), server_dir, "https://x:8443", timeout=60
    )
    _check_zip(made.path.read_bytes(), "https://x:8443", keytype="ED25519")


def test_credentials_cli_service_403_is_a_configuration_error(
    local_cluster: LocalCluster, standin: StandinKnobs, tenant: str, server_dir: Path,
    ota_ns: str,
) -> None:  # fmt: skip
    # What tuf-reposerver answers without a token when it runs with OAuth (its default).
    standin.set(bursts={"tuf-reposerver": {"count": 1, "status": 403, "path_prefix": "/api"}})
    res = _cli(ota_ns, local_cluster, server_dir.parent, tenant, "credentials")
    assert res.returncode == 5, res.stderr
    assert res.stderr == (
        "error: tuf-reposerver: POST /api/v1/user_repo: refused with 403: a configuration "
        "error: tuf-reposerver wants an OAuth token, so it runs with OAuth, its default when "
        "AUTH_PROTOCOL is not set (its pods need AUTH_PROTOCOL=none)\n"
    )


def test_credentials_cli_key_generation_failed_fails_fast_with_the_reason(
    local_cluster: LocalCluster, standin: StandinKnobs, tenant: str, server_dir: Path,
    ota_ns: str,
) -> None:  # fmt: skip
    standin.set(keygen_delay_seconds=0, keygen_error="SlickCryptoError|invalid password length")
    res = _cli(ota_ns, local_cluster, server_dir.parent, tenant, "credentials", "--timeout", "600")
    assert res.returncode == 8, res.stderr
    assert res.stderr == (
        "error: tuf-reposerver: GET /api/v1/user_repo/root.json: tuf-reposerver answered 502 "
        "key_generation_failed: key generation failed: SlickCryptoError|invalid password "
        "length\n"
    )
    # Asked once, not retried until the 600 s deadline.
    assert not (server_dir / "credentials.zip").exists()


def test_credentials_cli_long_423_names_the_key_generation_daemon(
    local_cluster: LocalCluster, standin: StandinKnobs, tenant: str, server_dir: Path,
    ota_ns: str,
) -> None:  # fmt: skip
    standin.set(keygen_delay_seconds=600)  # as if tuf-keyserver-daemon never ran
    res = _cli(ota_ns, local_cluster, server_dir.parent, tenant, "credentials", "--timeout", "24")
    assert res.returncode == 7, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: tuf-reposerver: GET /api/v1/user_repo/root.json: gave up ")
    assert "keys are still being generated (tuf-reposerver answered 423) for over 20s: " in last
    assert "the key-generation daemon (tuf-keyserver-daemon" in last and "not running" in last


# --------------------------------------------------------------------------- health


def test_health_all_ok_then_never_healthy_reason(
    caller: ServiceCaller, standin: StandinKnobs
) -> None:
    results = health.check(caller)
    assert [r.service for r in results] == list(ALL_APPS)
    assert all(r.ok and r.http_status == 200 for r in results), results
    standin.set(never_healthy=["campaigner", "tuf-reposerver"])
    by_name = {r.service: r for r in health.check(caller)}
    camp, repo = by_name["campaigner"], by_name["tuf-reposerver"]
    assert (camp.ok, camp.http_status) == (False, 503)
    assert camp.reason == f"campaigner answered 503: failing db down: {DB_DOWN_CAUSE}"
    assert camp.failing == {"db": f"down: {DB_DOWN_CAUSE}"}
    assert (repo.ok, repo.http_status, repo.path) == (False, 503, "/health")
    assert by_name["director"].ok
    with pytest.raises(WaitTimeout) as e:
        health.wait_healthy(caller, ["director", "campaigner"], timeout=1.5)
    assert "1 of 2 services not healthy" in str(e.value)
    assert f"campaigner: campaigner answered 503: failing db down: {DB_DOWN_CAUSE}" in str(e.value)
    # tuf-keyserver down: the reposerver's own database is fine, its dependency is not.
    standin.set(never_healthy=["tuf-keyserver"])
    [repo] = health.check(caller, ["tuf-reposerver"])
    assert (repo.ok, repo.http_status, repo.path) == (False, 502, "/health/dependencies")
    assert list(repo.failing) == ["http://tuf-keyserver:80"]


def test_health_cli_shows_the_cause(
    local_cluster: LocalCluster, standin: StandinKnobs, ota_ns: str, tmp_path: Path
) -> None:
    standin.set(never_healthy=["device-registry"])
    res = run_otactl(
        "--generated", str(tmp_path), "health", "device-registry", "tuf-keyserver",
        "--kubeconfig", str(local_cluster.kubeconfig), "-n", ota_ns,
    )  # fmt: skip
    assert res.returncode == 8, res.stderr
    [row] = [line for line in res.stdout.splitlines() if line.startswith("device-registry")]
    assert "FAIL" in row and f"failing db down: {DB_DOWN_CAUSE}" in row
    assert res.stderr == (
        "error: 1 of 2 services not healthy: device-registry: device-registry answered 503: "
        f"failing db down: {DB_DOWN_CAUSE}\n"
    )
    as_json = run_otactl(
        "--generated", str(tmp_path), "health", "device-registry", "-o", "json",
        "--kubeconfig", str(local_cluster.kubeconfig), "-n", ota_ns,
    )  # fmt: skip
    [svc] = json.loads(as_json.stdout)["services"]
    assert svc["failing"] == {"db": f"down: {DB_DOWN_CAUSE}"}


def test_health_wait_through_warmup(
    local_cluster: LocalCluster, standin: StandinKnobs, caller: ServiceCaller
) -> None:
    standin.set(warmup_seconds={"director": 2})
    standin.restart("director")
    progress: list[str] = []
    results = health.wait_healthy(caller, ["director"], timeout=30, progress=progress.append)
    assert results[0].ok and progress and "director answered 503" in progress[0]


def test_health_no_pods_is_the_api_server_not_the_service(
    local_cluster: LocalCluster, standin: StandinKnobs, tmp_path: Path
) -> None:
    ns = f"nopods-{uuid.uuid4().hex[:8]}"
    local_cluster.kubectl("create", "namespace", ns)
    try:
        service_only(local_cluster, ns, ["director"])
        caller = kube.connect(local_cluster.kubeconfig).service_caller(ns)
        [director, keyserver] = health.check(caller, ["director", "tuf-keyserver"])
        assert (director.ok, director.http_status) == (False, 503)
        assert director.reason.startswith("no ready endpoints for service director")
        assert not director.failing
        assert keyserver.reason.startswith("Service tuf-keyserver not found (API server 404")
        # The CLI: a table, one error line, exit 8; with --wait, exit 7.
        res = run_otactl(
            "--generated", str(tmp_path), "health", "director", "--kubeconfig",
            str(local_cluster.kubeconfig), "-n", ns,
        )  # fmt: skip
        assert res.returncode == 8, res.stderr
        header, row = res.stdout.splitlines()
        assert header.split()[:3] == ["SERVICE", "STATUS", "HTTP"]
        assert row.split()[:3] == ["director", "FAIL", "503"]
        assert res.stderr.startswith("error: 1 of 1 services not healthy: director: no ready")
        res = run_otactl(
            "--generated", str(tmp_path), "health", "director", "--wait", "--timeout", "2",
            "-o", "json", "--kubeconfig", str(local_cluster.kubeconfig), "-n", ns,
        )  # fmt: skip
        assert res.returncode == 7 and res.stdout == ""
        assert res.stderr.count("\n") >= 1 and "error: 1 of 1 services not healthy after 2s" in (
            res.stderr
        )
    finally:
        local_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_health_cli_json_and_unknown_name(
    local_cluster: LocalCluster, standin: StandinKnobs, ota_ns: str, tmp_path: Path
) -> None:
    res = run_otactl(
        "--generated", str(tmp_path), "health", "-o", "json", "--kubeconfig",
        str(local_cluster.kubeconfig), "-n", ota_ns,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["healthy"] and {s["service"] for s in got["services"]} == set(health.CHECKS)
    assert len(got["services"]) == 12  # the 11 services of before and device-registry-daemon
    assert {s["status"] for s in got["services"]} == {"OK"}
    assert all(s["latency_ms"] >= 0 for s in got["services"])
    bad = run_otactl("--generated", str(tmp_path), "health", "directr", "--kubeconfig",
                     str(local_cluster.kubeconfig))  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown service directr (known:")


# --------------------------------------------------------------------------- registration


def test_register_100_devices_through_one_pooled_client(
    local_cluster: LocalCluster, ota_ns: str, standin: StandinKnobs, tenant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import urllib3.util.connection

    # Every TCP connection the kubernetes client opens goes through urllib3's
    # create_connection: count them, for a caller made here (none open yet).
    real_connect = urllib3.util.connection.create_connection
    opened: list[tuple[str, int]] = []

    def counting_connect(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(address)
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting_connect)
    caller = kube.connect(local_cluster.kubeconfig).service_caller(ota_ns)
    devices = [(str(uuid.uuid4()), f"dev-{i:03d}") for i in range(100)]
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    start = time.perf_counter()
    with Registrar(caller, tenant) as registrar:
        for dev_uuid, name in devices:
            registrar.submit(dev_uuid, name, name, pem)
        assert registrar.finish() == 100
    elapsed = time.perf_counter() - start
    # A figure to read, not a threshold: bench/ measures rates against a baseline.
    print(f"\nregistered {len(devices)} devices in {elapsed:.2f}s")
    # One pooled client: at most one connection per registration in flight, all to the
    # API server (the service proxy), never one per device.
    assert 1 <= len(opened) <= registry.WORKERS, opened
    server = yaml.safe_load(local_cluster.kubeconfig.read_text())["clusters"][0]
    assert {f"https://{host}:{port}" for host, port in opened} == {server["cluster"]["server"]}
    registered = standin.devices(tenant)
    assert {d["uuid"] for d in registered} == {u for u, _ in devices}
    assert {d["deviceId"] for d in registered} == {n for _, n in devices}


PEM_A = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
PEM_B = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"


def test_device_id_reuse_is_refused_and_the_first_certificate_kept(
    caller: ServiceCaller, standin: StandinKnobs, tenant: str
) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert register_device(caller, tenant, first, "kiosk", "kiosk", PEM_A) == first
    assert register_device(caller, tenant, first, "kiosk", "kiosk", PEM_A) == first  # repeatable
    with pytest.raises(ServiceError) as e:
        register_device(caller, tenant, second, "kiosk", "kiosk", PEM_B)
    assert f"deviceId 'kiosk' is already registered as device {first}, not {second}" in str(e.value)
    # device-registry would have replaced the first device's certificate: nothing was sent.
    [kiosk] = standin.devices(tenant)
    assert (kiosk["uuid"], kiosk["credentials"]) == (first, PEM_A)


def test_taken_name_is_409_with_its_own_message(
    local_cluster: LocalCluster, caller: ServiceCaller, standin: StandinKnobs, tenant: str,
    ota_ns: str,
) -> None:  # fmt: skip
    # Another tool registered "lobby" under another deviceId.
    holder = str(uuid.uuid4())
    other = {"uuid": holder, "deviceId": "oem-17", "deviceName": "lobby", "credentials": PEM_A}
    put = local_cluster.proxy(
        "PUT", ota_ns, "device-registry", "/api/v1/devices", other, {"x-ats-namespace": tenant}
    )
    assert put.status == 200
    mine = str(uuid.uuid4())
    with pytest.raises(ServiceError) as e:
        register_device(caller, tenant, mine, "lobby", "lobby", PEM_B)
    assert str(e.value) == (
        f"device-registry: cannot register deviceId 'lobby' as device {mine}: 409 "
        f"conflicting_device: the device name 'lobby' belongs to device {holder} (deviceId "
        "'oem-17'); give this device another name"
    )
    assert [d["uuid"] for d in standin.devices(tenant)] == [holder]


def test_new_device_cli_registers_and_refuses_reuse(
    local_cluster: LocalCluster, standin: StandinKnobs, tenant: str, ota_ns: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    gen_a, gen_b = tmp_path / "a", tmp_path / "b"
    for gen in (gen_a, gen_b):
        assert run_otactl("--generated", str(gen), "new-server").returncode == 0
    res = _cli(ota_ns, local_cluster, gen_a, tenant, "new-device", "--count", "20", "--prefix",
               "batch", "-o", "json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["registered"] == 20
    one = _cli(ota_ns, local_cluster, gen_a, tenant, "new-device", "kiosk", "-o", "json")
    assert one.returncode == 0, one.stderr
    kiosk = json.loads(one.stdout)
    assert kiosk["registered"] is True
    devices = {d["deviceId"]: d for d in standin.devices(tenant)}
    assert len(devices) == 21 and devices["kiosk"]["uuid"] == kiosk["uuid"]
    cert = (Path(kiosk["path"]) / "client.pem").read_text()
    assert devices["kiosk"]["credentials"] == cert
    # The same name from another installation's generated/ (another uuid): refused, and
    # the registered device keeps its certificate.
    other = _cli(ota_ns, local_cluster, gen_b, tenant, "new-device", "kiosk")
    assert other.returncode == 8
    assert other.stderr.startswith(
        f"error: device-registry: deviceId 'kiosk' is already registered as device "
        f"{kiosk['uuid']}, not "
    )
    assert other.stderr.count("\n") == 1
    after = {d["deviceId"]: d for d in standin.devices(tenant)}
    assert after["kiosk"]["credentials"] == cert
    # A name another tool registered under another deviceId: 409, its own message.
    holder = str(uuid.uuid4())
    legacy = {"uuid": holder, "deviceId": "oem-1", "deviceName": "lobby", "credentials": cert}
    local_cluster.proxy(
        "PUT", ota_ns, "device-registry", "/api/v1/devices", legacy, {"x-ats-namespace": tenant}
    )
    taken = _cli(ota_ns, local_cluster, gen_a, tenant, "new-device", "lobby")
    assert taken.returncode == 8 and taken.stderr.count("\n") == 1
    assert "409 conflicting_device: the device name 'lobby' belongs to device " + holder in (
        taken.stderr
    )
    # device-registry with OAuth (no AUTH_PROTOCOL) refuses the look-up: exit 5, one line.
    standin.set(bursts={"device-registry": {"count": 1, "status": 403, "path_prefix": "/api"}})
    oauth = _cli(ota_ns, local_cluster, gen_a, tenant, "new-device", "hall")
    assert oauth.returncode == 5 and oauth.stderr.count("\n") == 1
    assert oauth.stderr.startswith("error: device-registry: GET /api/v1/devices?deviceId=hall: ")
    assert "AUTH_PROTOCOL is not set" in oauth.stderr


def test_reissue_and_renew_give_device_registry_the_new_certificate(
    local_cluster: LocalCluster, standin: StandinKnobs, tenant: str, ota_ns: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Issue 16 item 6 with registration: the same uuid and deviceId, device-registry's
    credentials replaced by the new certificate (its PUT replaces them, see the stand-in's
    _put_device), `devices list` asking device-registry."""
    gen = tmp_path / "gen"
    assert run_otactl("--generated", str(gen), "new-server").returncode == 0

    def registered() -> dict[str, dict[str, str]]:
        return {d["deviceId"]: d for d in standin.devices(tenant)}

    first = json.loads(_cli(ota_ns, local_cluster, gen, tenant, "new-device", "kiosk", "-o",
                            "json").stdout)  # fmt: skip
    res = _cli(ota_ns, local_cluster, gen, tenant, "new-device", "kiosk", "--reissue", "-o", "json")
    assert res.returncode == 0, res.stderr
    again = json.loads(res.stdout)
    assert again["uuid"] == first["uuid"] and again["registered"] is True
    assert again["revoked_serial"] == first["serial"]
    kiosk = registered()["kiosk"]
    assert kiosk["uuid"] == first["uuid"]
    assert kiosk["credentials"] == (Path(again["path"]) / "client.pem").read_text()

    res = _cli(ota_ns, local_cluster, gen, tenant, "renew-device", "kiosk", "-o", "json")
    assert res.returncode == 0, res.stderr
    renewed = json.loads(res.stdout)
    assert renewed["registered"] is True and renewed["serial"] != again["serial"]
    assert (
        registered()["kiosk"]["credentials"] == (Path(renewed["path"]) / "client.pem").read_text()
    )

    assert (
        _cli(ota_ns, local_cluster, gen, tenant, "new-device", "lobby", "--no-register").returncode
        == 0
    )
    res = _cli(ota_ns, local_cluster, gen, tenant, "devices", "list", "-o", "json")
    assert res.returncode == 0, res.stderr
    listed = {d["name"]: d for d in json.loads(res.stdout)}
    assert (listed["kiosk"]["registered"], listed["lobby"]["registered"]) == (True, False)


# --------------------------------------------------------------------------- hosts


def test_hosts_from_node_ports_and_load_balancer(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    ns = f"hosts-{uuid.uuid4().hex[:8]}"
    local_cluster.kubectl("create", "namespace", ns)

    def hosts(*extra: str) -> subprocess.CompletedProcess[str]:
        return run_otactl(
            "--generated", str(tmp_path), "hosts", "--kubeconfig", str(local_cluster.kubeconfig),
            "-n", ns, "--set", "domain=ota.test", "--set", f"server_name={SERVER}", *extra,
        )  # fmt: skip

    try:
        missing = hosts()
        assert missing.returncode == 1
        assert (
            missing.stderr
            == f"error: Service {ns}/reverse-proxy not found: run `otactl up` first\n"
        )
        services = [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
             "spec": {"type": kind, "selector": {"app": name},
                      "ports": [{"name": "p", "port": port}]}}
            for name, kind, port in (("reverse-proxy", "LoadBalancer", 80),
                                     ("gateway-service", "NodePort", 8443))
        ]  # fmt: skip
        local_cluster.kubectl(
            "apply", "-n", ns, "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": services}),
        )  # fmt: skip
        pending = hosts()
        assert pending.returncode == 1 and "has no external address yet" in pending.stderr
        # What a cloud controller does once the load balancer exists.
        local_cluster.kubectl(
            "patch", "service", "reverse-proxy", "-n", ns, "--subresource=status",
            "--type=merge", "-p", '{"status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.7"}]}}}',
        )  # fmt: skip
        res = hosts()
        assert res.returncode == 0, res.stderr
        nodes = json.loads(local_cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        internal = {
            a["address"]
            for n in nodes
            for a in n["status"]["addresses"]
            if a["type"] == "InternalIP"
        }
        lines = [line for line in res.stdout.splitlines() if not line.startswith("#")]
        assert lines[0] == (
            "198.51.100.7 app.ota.test tuf-reposerver.ota.test treehub.ota.test web-events.ota.test"
        )
        ip, name = lines[1].split()
        assert name == SERVER and ip in internal
        # With an Ingress in front of the reverse proxy, the public names go to it.
        ingress = {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "ota-ce"},
            "spec": {"rules": [{"host": "app.ota.test", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "reverse-proxy", "port": {"number": 80}}},
            }]}}]},
        }  # fmt: skip
        local_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(ingress))
        local_cluster.kubectl(
            "patch", "ingress", "ota-ce", "-n", ns, "--subresource=status", "--type=merge",
            "-p", '{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.9"}]}}}',
        )  # fmt: skip
        res = hosts("--set", "ingress.enabled=true")
        assert res.returncode == 0, res.stderr
        assert "192.0.2.9 app.ota.test tuf-reposerver.ota.test" in res.stdout
    finally:
        local_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
