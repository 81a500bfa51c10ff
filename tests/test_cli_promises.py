"""README promises that need no cluster, checked through the CLI as a user types them:
`render` never contacts a cluster and drops a stale set, `--debug` adds the traceback,
exit code 1 for a local cluster that cannot start, and OTACTL_CACHE_DIR."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_otactl


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
