"""README promises that need no cluster, checked through the CLI as a user types them:
`render` never contacts a cluster and drops a stale set, `--debug` adds the traceback,
exit code 1 for a local cluster that cannot start, OTACTL_CACHE_DIR, and importing a fleet
device CA with `new-server --device-ca-*`."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from otactl import pki
from tests.conftest import run_otactl
from tests.test_pki import fleet_ca, verify_client  # noqa: F401 (fleet_ca: a fixture)


class CountingServer:
    """A TCP port on 127.0.0.1 that counts the connections it gets (and answers none)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def api_server_trap() -> Iterator[CountingServer]:
    server = CountingServer()
    yield server
    server.close()


def kubeconfig(path: Path, port: int) -> Path:
    """A kubeconfig that points at `port` on loopback."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(json.dumps(config))
    return path


def test_render_never_contacts_a_cluster(tmp_path: Path, api_server_trap: CountingServer):
    # Every place a cluster could be found points at the trap: $KUBECONFIG, ~/.kube/config
    # and the in-cluster service account's address.
    env = {
        "KUBECONFIG": str(kubeconfig(tmp_path / "kc", api_server_trap.port)),
        "HOME": str(tmp_path / "home"),
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(api_server_trap.port),
    }
    kubeconfig(tmp_path / "home" / ".kube" / "config", api_server_trap.port)
    gen = tmp_path / "gen"
    proc = run_otactl("--generated", str(gen), "render", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (gen / "templates" / "services.yaml").stat().st_size > 0
    assert api_server_trap.connections == 0
    # The trap does count: a cluster command run the same way reaches it.
    status = run_otactl("--generated", str(gen), "status", env=env)
    assert status.returncode != 0
    assert api_server_trap.connections > 0


def test_render_removes_the_ingress_set_once_ingress_is_off(tmp_path: Path):
    gen = str(tmp_path / "gen")
    on = run_otactl("--generated", gen, "render", "--set", "ingress.enabled=true")
    assert on.returncode == 0, on.stderr
    ingress = tmp_path / "gen" / "templates" / "ingress.yaml"
    assert "kind: Ingress" in ingress.read_text()
    off = run_otactl("--generated", gen, "render")
    assert off.returncode == 0, off.stderr
    assert not ingress.exists()  # a stale set would be applied by the next `up`
    assert sorted(p.name for p in ingress.parent.iterdir()) == [
        "infra.yaml", "network.yaml", "services.yaml",
    ]  # fmt: skip
    # The same for the NetworkPolicies (issue 15).
    off = run_otactl("--generated", gen, "render", "--set", "network_policy.enabled=false")
    assert off.returncode == 0, off.stderr
    assert sorted(p.name for p in ingress.parent.iterdir()) == ["infra.yaml", "services.yaml"]


def test_debug_adds_the_traceback_to_the_one_line(tmp_path: Path):
    server = tmp_path / "gen" / "ota-ce.example.com"
    server.mkdir(parents=True, mode=0o700)
    (server / "secrets.yaml").write_text("jwt_secret: [unclosed\n")
    plain = run_otactl("--generated", str(tmp_path / "gen"), "render")
    assert plain.returncode == 2
    assert plain.stderr.startswith("error: ") and len(plain.stderr.strip().splitlines()) == 1
    debug = run_otactl("--debug", "--generated", str(tmp_path / "gen"), "render")
    assert debug.returncode == 2
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert "ConfigError" in debug.stderr
    last = debug.stderr.strip().splitlines()[-1]
    assert last == plain.stderr.strip()


def test_a_local_cluster_that_cannot_start_exits_1_and_names_the_cache_dir(tmp_path: Path):
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    proc = run_otactl(
        "--generated", str(tmp_path / "gen"), "local-cluster", "up",
        env={"OTACTL_CACHE_DIR": str(cache)},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: control plane binaries not found in {cache}/local-cluster/")
    assert "build.sh" in line and "Traceback" not in proc.stderr
    assert not (tmp_path / "gen" / "local" / "kubeconfig").exists()


def test_new_server_imports_a_fleet_ca_from_the_command_line(
    tmp_path: Path,
    fleet_ca: dict[str, Path],  # noqa: F811 (the fixture imported above)
):
    env = {"OTACTL_GENERATED": str(tmp_path / "gen")}
    devices = tmp_path / "gen" / "ota-ce.example.com" / "devices"
    imported = ["--device-ca-cert", str(fleet_ca["chain"]), "--device-ca-key", str(fleet_ca["key"])]

    # An intermediate of an offline root: the root's CRL is needed (nginx checks every level).
    refused = run_otactl("new-server", *imported, cwd=tmp_path, env=env)
    assert refused.returncode == 3, refused.stderr
    assert refused.stderr.startswith("error: ") and "--device-ca-crl" in refused.stderr
    assert not (devices / "ca.key").exists()

    made = run_otactl(
        "new-server", *imported, "--device-ca-crl", str(fleet_ca["root_crl"]), cwd=tmp_path, env=env
    )
    assert made.returncode == 0, made.stderr
    assert (devices / "ca.key").read_bytes() != b""
    dev = run_otactl(
        "new-device", "--no-register", "fleet-1", "-o", "json", cwd=tmp_path, env=env, check=True
    )
    client = Path(json.loads(dev.stdout)["path"]) / "client.pem"
    ok = verify_client(str(devices / "crl.pem"), str(fleet_ca["root"]), str(client), check=False)
    assert ok.returncode != 0  # the root alone does not know the intermediate: chain needed
    ok = verify_client(str(devices / "crl.pem"), str(devices / "ca.crt"), str(client))
    assert ": OK" in ok.stdout

    # The offline root published its next CRL: `--device-ca-crl` alone refreshes it.
    key_before = (devices / "ca.key").read_bytes()
    refreshed = run_otactl(
        "new-server", "--device-ca-crl", str(fleet_ca["next_root_crl"]), cwd=tmp_path, env=env
    )
    assert refreshed.returncode == 0, refreshed.stderr
    nexts = {c.next_update_utc for c in pki.load_crls(devices / "crl.pem")}
    assert max(n for n in nexts if n) == pki.load_crls(fleet_ca["next_root_crl"])[0].next_update_utc

    # Another CA over an existing one: refused, the key kept.
    again = run_otactl(
        "new-server", "--device-ca-cert", str(fleet_ca["root"]), "--device-ca-key",
        str(fleet_ca["key"]), cwd=tmp_path, env=env,
    )  # fmt: skip
    assert again.returncode == 3, again.stderr
    assert (devices / "ca.key").read_bytes() == key_before
