"""`up`, `down`, `health --wait` and `new-device` while the API server is lost, slow or
restarting (otactl.localcluster's faults, the same code as `otactl local-cluster fault`).

These faults are destructive (a frozen forwarder or a stopped kube-apiserver would break
any other test running meanwhile), so this module has a local cluster of its own. Each
test starts the command, waits until its output says it reached a phase, injects the
fault, waits for otactl to say it noticed, heals (or not), and asserts on the exit code
and on the order and content of what was reported: no wall-clock thresholds (the delays
are figures for `bench/bench_faults.py`). The heartbeat is 1 s here
(OTACTL_HEARTBEAT_SECONDS) so that no test sleeps 15 s.

After every fault a rerun converges: the CA and the secrets are the ones from before, and
the run after writes no object (after a run that finished, that run is the next one)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from otactl import localcluster
from otactl.errors import LocalClusterError
from tests.conftest import run_otactl
from tests.integration.conftest import LocalCluster, StandinKnobs

pytestmark = pytest.mark.integration

HEARTBEAT = {"OTACTL_HEARTBEAT_SECONDS": "1"}
# A safety net against a hung test only: never an assertion on how fast otactl is.
PATIENCE = 240.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A local cluster for this module only: its faults must not reach other tests."""
    try:
        bin_dir = localcluster.find_bin_dir()
    except LocalClusterError as e:
        pytest.fail(str(e), pytrace=False)
    generated = tmp_path_factory.mktemp("faults") / "generated"
    opts = localcluster.ClusterOptions(
        state_dir=generated / "local", api_port=0, control_port=0, owner_pid=os.getpid()
    )
    try:
        info = localcluster.up(opts)
    except LocalClusterError as e:
        pytest.fail(f"local cluster did not start: {e}", pytrace=False)
    try:
        assert info.control_url is not None
        yield LocalCluster(info, Path(info.kubeconfig), generated, bin_dir,
                           StandinKnobs(info.control_url))  # fmt: skip
    finally:
        localcluster.down(opts.state_dir)


@pytest.fixture
def faults(cluster: LocalCluster) -> Iterator[Faults]:
    """The fault switches of the module's cluster; every fault is healed after the test."""
    handle = Faults(cluster)
    yield handle
    localcluster.set_faults(cluster.state_dir, frozen=False, delay_ms=0)
    # Knobs only: the module's `installed` lives on, and its repos and devices with it (a
    # full reset would make its next `up` create new repositories and rewrite user-keys).
    cluster.standin.reset_knobs()
    for name in localcluster.RESTARTABLE:
        _, rec = localcluster._running(cluster.state_dir, name)
        if not localcluster._alive(rec):
            localcluster.restart_component(cluster.state_dir, name)


class Faults:
    def __init__(self, cluster: LocalCluster) -> None:
        self.state_dir = cluster.state_dir

    def freeze(self) -> None:
        localcluster.set_faults(self.state_dir, frozen=True)

    def unfreeze(self) -> None:
        localcluster.set_faults(self.state_dir, frozen=False)

    def slow(self, ms: int) -> None:
        localcluster.set_faults(self.state_dir, delay_ms=ms)

    def restart(self, name: str, down_seconds: float = 0.0) -> None:
        localcluster.restart_component(self.state_dir, name, down_seconds=down_seconds)


RUNNING: list[Running] = []


@pytest.fixture(autouse=True)
def _no_leftover_commands() -> Iterator[None]:
    """A test that failed half-way must not leave its otactl running into the next one."""
    yield
    while RUNNING:
        run = RUNNING.pop()
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(timeout=30)


class Running:
    """An otactl command running in the background; its stderr lines as they come."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
        full_env.update(HEARTBEAT | (env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otactl", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        self.lines: list[str] = []
        self.seen = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        RUNNING.append(self)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.seen:
                self.lines.append(line.rstrip("\n"))
                self.seen.notify_all()
        with self.seen:
            self.seen.notify_all()

    def wait_for(self, pattern: str, after: int = 0) -> int:
        """The index of the first line from `after` on matching `pattern` (a regex)."""
        regex = re.compile(pattern)
        end = time.monotonic() + PATIENCE
        with self.seen:
            while True:
                for i in range(after, len(self.lines)):
                    if regex.search(self.lines[i]):
                        return i
                if self.proc.poll() is not None and not self.reader.is_alive():
                    raise AssertionError(
                        f"exited {self.proc.returncode} before /{pattern}/:\n" + self.text()
                    )
                if time.monotonic() > end:
                    raise AssertionError(f"no /{pattern}/ after {PATIENCE}s:\n" + self.text())
                self.seen.wait(1.0)

    def finish(self) -> tuple[int, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout=PATIENCE)
        self.reader.join(timeout=10)
        return code, out

    def text(self) -> str:
        return "\n".join(self.lines)

    def errors(self) -> list[str]:
        return [line for line in self.lines if line.startswith("error:")]


class Install:
    """One installation (namespace, tenant, NodePort, generated/) on the module's cluster."""

    def __init__(self, cluster: LocalCluster, tmp_path: Path) -> None:
        self.cluster = cluster
        self.ns = f"ota-{uuid.uuid4().hex[:8]}"
        self.node_port = 30100 + int(uuid.uuid4().int % 2000)
        self.generated = tmp_path / "generated"
        self.server_dir = self.generated / "ota-ce.example.com"

    def args(self, command: str, *extra: str) -> list[str]:
        return [
            "--generated", str(self.generated), command,
            "--kubeconfig", str(self.cluster.kubeconfig), "--namespace", self.ns,
            "--set", f"tenant={self.ns}", "--set", f"gateway.node_port={self.node_port}",
            *extra,
        ]  # fmt: skip

    def start(self, command: str, *extra: str) -> Running:
        return Running(self.args(command, *extra))

    def otactl(self, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_otactl(*self.args(command, *extra), env=HEARTBEAT)

    def keys(self) -> dict[Path, bytes]:
        """The CA and every other key, certificate and secret otactl keeps (device
        bundles aside: they are the devices', and new-device adds some)."""
        return {
            p: p.read_bytes()
            for p in self.server_dir.rglob("*")
            if p.is_file() and p.parent.parent != self.server_dir / "devices"
        }

    def resource_versions(self) -> dict[str, str]:
        out = self.cluster.kubectl(
            "get", "deploy,sts,job,svc,cm,secret", "-n", self.ns, "-o", "json"
        ).stdout
        return {
            f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for o in json.loads(out)["items"]
        }

    def settled(self) -> None:
        """After a run that finished: the next writes no object and keeps every key."""
        keys, versions = self.keys(), self.resource_versions()
        after = self.otactl("up", "--timeout", "300", "-o", "json")
        assert after.returncode == 0, after.stderr
        assert json.loads(after.stdout)["changed"] == []
        assert self.resource_versions() == versions
        assert self.keys() == keys

    def converges(self, keys_before: dict[Path, bytes] | None = None) -> None:
        """A rerun finishes; the one after writes nothing; the CA and secrets are kept."""
        rerun = self.otactl("up", "--timeout", "300", "-o", "json")
        assert rerun.returncode == 0, rerun.stderr
        keys = self.keys()
        if keys_before is not None:  # nothing that existed was replaced
            assert {p: keys.get(p) for p in keys_before} == keys_before
        versions = self.resource_versions()
        after = self.otactl("up", "--timeout", "300", "-o", "json")
        assert after.returncode == 0, after.stderr
        assert json.loads(after.stdout)["changed"] == []
        assert self.resource_versions() == versions
        assert self.keys() == keys


@pytest.fixture
def install(cluster: LocalCluster, tmp_path: Path) -> Iterator[Install]:
    made = Install(cluster, tmp_path)
    yield made
    cluster.kubectl("delete", "namespace", made.ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Install:
    """One finished installation for the tests that fault later commands."""
    made = Install(cluster, tmp_path_factory.mktemp("installed"))
    done = made.otactl("up", "--timeout", "300")
    assert done.returncode == 0, done.stderr
    return made


def _in_order(run: Running, *patterns: str) -> list[int]:
    """Each pattern matches a line after the previous one's."""
    at, found = 0, []
    for pattern in patterns:
        at = run.wait_for(pattern, at) + 1
        found.append(at - 1)
    return found


@pytest.mark.parametrize("phase", ["infra", "health"])
def test_up_survives_a_partition_that_heals(
    install: Install, faults: Faults, cluster: LocalCluster, phase: str
):
    # The partition starts as the phase starts, so it meets the phase's applies or its wait
    # (or, for a phase done within milliseconds, the next one's). The health phase is held
    # by a director that warms up for a while (the last phases would be over too soon).
    if phase == "health":
        cluster.standin.set(warmup_seconds={"director": 30})
    run = install.start("up", "--timeout", "600")
    run.wait_for(rf"\[{phase}\] running")
    faults.freeze()
    run.wait_for("API server unreachable for")
    faults.unfreeze()
    code, _ = run.finish()
    assert code == 0, run.text()
    _in_order(run, rf"\[{phase}\] running", "API server unreachable for \\d+ s \\(.+\\), retrying",
              "API server reachable again after \\d+ s", r"\[credentials\] done")  # fmt: skip
    assert run.errors() == []
    install.settled()


def test_up_partitioned_until_its_deadline_is_exit_4_in_one_line(install: Install, faults: Faults):
    # The PKI and secrets exist before the bootstrap phase: the rerun must keep them.
    run = install.start("up", "--timeout", "60")
    run.wait_for(r"\[bootstrap\] running")
    faults.freeze()
    keys = install.keys()
    run.wait_for("API server unreachable for")
    code, _ = run.finish()
    faults.unfreeze()
    assert code == 4, run.text()
    errors = run.errors()
    assert len(errors) == 1 and "Traceback" not in run.text()
    assert re.match(
        r"error: cannot reach the Kubernetes API at https://127\.0\.0\.1:\d+, unreachable "
        r"since \d\d:\d\d:\d\d UTC \(\d+ s\): ",
        errors[0],
    ), errors[0]
    # it kept saying so while it waited: at least two notices before the error
    notices = [i for i, line in enumerate(run.lines) if "API server unreachable for" in line]
    assert len(notices) >= 2 and notices[-1] < run.lines.index(errors[0])
    install.converges(keys)


def test_up_through_apiserver_and_etcd_restarts(install: Install, faults: Faults):
    run = install.start("up", "--timeout", "600")
    run.wait_for(r"\[infra\] running")
    faults.restart("etcd", down_seconds=3)
    run.wait_for(r"\[services\] running")
    faults.restart("kube-apiserver", down_seconds=3)
    code, _ = run.finish()
    assert code == 0, run.text()
    assert run.errors() == []
    install.settled()


def test_up_over_a_slow_link_then_down_through_a_partition(install: Install, faults: Faults):
    faults.slow(100)
    slow = install.otactl("up", "--timeout", "600", "-o", "json")
    faults.slow(0)
    assert slow.returncode == 0, slow.stderr
    install.settled()

    # A finalizer holds one object, so `down` is still waiting when the partition comes.
    held = ["secret", "gateway-tls", "-n", install.ns]
    install.cluster.kubectl("patch", *held, "--type=merge",
                            "-p", '{"metadata":{"finalizers":["otactl.test/hold"]}}')  # fmt: skip
    run = install.start("down", "--timeout", "300")
    run.wait_for(r"deleted")
    faults.freeze()
    run.wait_for("API server unreachable for")
    faults.unfreeze()
    run.wait_for("API server reachable again")
    install.cluster.kubectl("patch", *held, "--type=json",
                            "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')  # fmt: skip
    code, out = run.finish()
    assert code == 0, run.text()
    assert out.startswith("deleted ")
    left = install.cluster.kubectl(
        "get", "deploy,sts,job,svc,cm,secret", "-n", install.ns,
        "-l", "app.kubernetes.io/managed-by=otactl", "-o", "name",
    ).stdout  # fmt: skip
    assert left.strip() == ""


def test_health_wait_partitioned_is_exit_4_and_heals(installed: Install, faults: Faults):
    faults.freeze()
    lost = installed.otactl("health", "director", "--wait", "--timeout", "15")
    assert lost.returncode == 4, lost.stderr
    errors = [line for line in lost.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unreachable since" in errors[0], lost.stderr
    assert "API server unreachable for" in lost.stderr  # said while it waited

    run = installed.start("health", "--wait", "--timeout", "300")
    run.wait_for("API server unreachable for")
    faults.unfreeze()
    code, _ = run.finish()
    assert code == 0, run.text()
    _in_order(run, "API server unreachable for", "API server reachable again")


def test_new_device_registers_through_an_apiserver_restart(
    installed: Install, faults: Faults, cluster: LocalCluster
):
    stopped = threading.Event()

    def restart() -> None:
        try:
            localcluster.restart_component(
                cluster.state_dir, "kube-apiserver", down_seconds=20,
                progress=lambda line: stopped.set() if "stays stopped" in line else None,
            )  # fmt: skip
        finally:
            stopped.set()

    # Registration starts while the API server is stopped, and meets it starting again.
    stopper = threading.Thread(target=restart)
    stopper.start()
    stopped.wait(PATIENCE)
    made = installed.otactl("new-device", "car-1", "-o", "json")
    stopper.join()
    assert "API server unreachable for" in made.stderr
    assert made.returncode == 0, made.stderr
    uuid_ = json.loads(made.stdout)["uuid"]
    devices = cluster.standin.devices(installed.ns)
    assert [d for d in devices if d.get("uuid") == uuid_]
    installed.settled()
