"""The local simulated cluster as a pytest fixture, for every integration test.

`local_cluster` (session scope) brings one cluster up with the same core code as
`otactl local-cluster up` (otactl.localcluster.up), in a temporary `generated/` folder, on
free ports, and tears it down at the end of the session. It fails loudly (no skip) when the
binaries are missing: build them with `contrib/local-cluster/build.sh`. If the session dies
without its teardown, the cluster's watchdog (owner_pid) stops it.

What a test gets (`LocalCluster`):

- `kubeconfig`: Path of a kubeconfig that works from this (the host) namespace, for kubectl,
  the kubernetes Python client (`kubernetes.config.new_client_from_config(str(path))`) and
  `otactl --kubeconfig`/`KUBECONFIG`.
- `generated`: the temporary generated/ folder (the cluster's state is `generated/local`),
  so `otactl --generated <it> ...` finds the cluster as the CLI would.
- `kubectl(*args, input=None, check=True)`: the built kubectl against this cluster.
- `proxy(method, namespace, service, path, body=None, headers=None, port=80)`: one HTTP
  request through the API server's service proxy, as otactl's deployer makes them; returns
  `ProxyResponse(status, headers, body)` with `.json()`.
- `standin`: `StandinKnobs`, the handle on the OTA services stand-in (knobs and state).
- `info`: the recorded `otactl.localcluster.ClusterInfo` (ports, pids, netns name).

`standin` (function scope) is the same `StandinKnobs` handle, reset (knobs and service
state) after the test, so tests that turn knobs do not leak into each other.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from otactl import localcluster
from otactl.errors import LocalClusterError


@dataclass
class ProxyResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class StandinKnobs:
    """Client of the stand-in's control endpoint (see contrib/local-cluster/standin/README.md)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def get(self) -> dict[str, Any]:
        """The knobs in force."""
        return dict(self._call("GET", "/knobs"))

    def set(self, **knobs: Any) -> dict[str, Any]:
        """Merge knobs: warmup_seconds={app: s}, never_healthy=[app], keygen_delay_seconds=s,
        bursts={app: {"count": n, "status": 503, "path_prefix": "/api"}}. Returns all knobs."""
        return dict(self._call("PUT", "/knobs", knobs))

    def reset(self) -> None:
        """Back to the start-up knobs, and forget every repo and device."""
        self._call("POST", "/reset", {})

    def reset_knobs(self) -> None:
        """Back to the start-up knobs; repos and devices are kept."""
        self._call("POST", "/reset?keep=state", {})

    def restart(self, app: str) -> int:
        """Restart the warm-up clock of every pod of `app`; returns how many pods."""
        return int(self._call("POST", f"/restart?app={app}", {})["restarted"])

    def state(self) -> dict[str, Any]:
        """user_repos, director_repos (ns -> repo id), director_orphan_keys, keys, devices."""
        return dict(self._call("GET", "/state"))

    def devices(self, namespace: str = "default") -> list[dict[str, Any]]:
        """Devices registered in device-registry, credentials included."""
        return list(self._call("GET", f"/devices?namespace={namespace}"))

    def pods(self) -> dict[str, dict[str, Any]]:
        """Pod IP -> {namespace, name, app} as the stand-in sees them."""
        return dict(self._call("GET", "/pods"))


@dataclass
class LocalCluster:
    info: localcluster.ClusterInfo
    kubeconfig: Path
    generated: Path
    bin_dir: Path
    standin: StandinKnobs

    @property
    def state_dir(self) -> Path:
        return Path(self.info.state_dir)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {res.returncode}: {res.stderr}")
        return res

    def _ssl(self) -> ssl.SSLContext:
        pki = self.state_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def proxy(
        self,
        method: str,
        namespace: str,
        service: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        port: int = 80,
    ) -> ProxyResponse:
        url = (
            f"{self.info.api_url}/api/v1/namespaces/{namespace}/services/"
            f"{service}:{port}/proxy/{path.lstrip('/')}"
        )
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, context=self._ssl(), timeout=30) as r:
                return ProxyResponse(r.status, dict(r.headers.items()), r.read())
        except urllib.error.HTTPError as e:
            return ProxyResponse(e.code, dict(e.headers.items()), e.read())


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One simulated cluster for the whole session (see the module docstring)."""
    try:
        bin_dir = localcluster.find_bin_dir()
    except LocalClusterError as e:
        pytest.fail(str(e), pytrace=False)
    if os.geteuid() != 0 and not Path("/proc/self/ns/user").exists():
        pytest.fail("the local cluster needs root or user namespaces", pytrace=False)
    generated = tmp_path_factory.mktemp("otactl") / "generated"
    # owner_pid: if this session is killed before teardown, a watchdog stops the cluster.
    opts = localcluster.ClusterOptions(
        state_dir=generated / "local", api_port=0, control_port=0, nodes=2, owner_pid=os.getpid()
    )
    try:
        info = localcluster.up(opts)
    except LocalClusterError as e:
        pytest.fail(f"local cluster did not start: {e}", pytrace=False)
    try:
        assert info.control_url is not None
        yield LocalCluster(
            info=info,
            kubeconfig=Path(info.kubeconfig),
            generated=generated,
            bin_dir=bin_dir,
            standin=StandinKnobs(info.control_url),
        )
    finally:
        localcluster.down(opts.state_dir)


@pytest.fixture
def standin(local_cluster: LocalCluster) -> Iterator[StandinKnobs]:
    """The stand-in's knobs; knobs and service state are reset after the test."""
    yield local_cluster.standin
    local_cluster.standin.reset()
