"""Faults on purpose (`otactl local-cluster fault`, tests, benchmarks): freeze or slow the
host's path to the API server (`faults.json`, applied by the forwarder), and restart
kube-apiserver or etcd with the same command and data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from otactl.errors import LocalClusterError
from otactl.fsutil import write_atomic
from otactl.localcluster.processes import (
    STOP_GRACE_SECONDS,
    Progress,
    _alive,
    _api_ready,
    _quiet,
    _signal_and_wait,
    _start_ticks,
    _tail,
)
from otactl.localcluster.state import (
    FAULTS_FILE,
    ClusterInfo,
    ProcessRecord,
    _save_state,
    load_state,
)


@dataclass
class Faults:
    """Faults on the host's path to the API server, applied by the forwarder: `frozen`
    holds every byte both ways (a network partition: connections open, nothing answers),
    `delay_ms` holds each piece of every answer that long (a slow link)."""

    frozen: bool = False
    delay_ms: int = 0

    def describe(self) -> str:
        parts = (["API path frozen"] if self.frozen else []) + (
            [f"API answers delayed {self.delay_ms} ms"] if self.delay_ms else []
        )
        return ", ".join(parts) or "no faults"


def load_faults(state_dir: Path) -> Faults:
    """The faults in force for the cluster recorded in `state_dir` (none when unset)."""
    path = Path(state_dir) / FAULTS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Faults()
    except ValueError as e:
        raise LocalClusterError(f"cannot read {path}: {e}") from e
    return Faults(bool(data.get("frozen", False)), int(data.get("delay_ms", 0)))


def _running(state_dir: Path, name: str) -> tuple[ClusterInfo, ProcessRecord]:
    """The recorded cluster and its process `name`, which must be one `up` recorded."""
    state_dir = Path(state_dir).resolve()
    info = load_state(state_dir)
    if info is None:
        raise LocalClusterError(f"no local cluster recorded in {state_dir}")
    for rec in info.processes:
        if rec.name == name:
            return info, rec
    raise LocalClusterError(f"the local cluster in {state_dir} has no {name} process")


def set_faults(
    state_dir: Path, *, frozen: bool | None = None, delay_ms: int | None = None
) -> Faults:
    """Freeze or thaw the API path, or delay its answers (0: no delay); what is not given
    stays as it is. The forwarder applies it within milliseconds (SIGHUP)."""
    if delay_ms is not None and delay_ms < 0:
        raise LocalClusterError(f"a delay of {delay_ms} ms: expected 0 or more")
    info, forwarder = _running(state_dir, "forwarder")
    if not _alive(forwarder):
        raise LocalClusterError(f"the forwarder (pid {forwarder.pid}) is not running")
    if not any(arg.startswith("--faults=") for arg in forwarder.cmd):
        # An older forwarder has no SIGHUP handler: the signal would stop it.
        raise LocalClusterError(
            "this local cluster was started by an older otactl, without faults: restart it "
            "with `otactl local-cluster down` and `up`"
        )
    faults = load_faults(Path(info.state_dir))
    if frozen is not None:
        faults.frozen = frozen
    if delay_ms is not None:
        faults.delay_ms = delay_ms
    write_atomic(Path(info.state_dir) / FAULTS_FILE, json.dumps(asdict(faults)) + "\n", 0o600)
    os.kill(forwarder.pid, signal.SIGHUP)
    return faults


RESTARTABLE = ("kube-apiserver", "etcd")


def restart_component(
    state_dir: Path,
    name: str,
    *,
    down_seconds: float = 0.0,
    wait: bool = True,
    timeout: float = 120.0,
    progress: Progress = _quiet,
) -> float:
    """Stop `name` (kube-apiserver or etcd), keep it stopped `down_seconds`, and start it
    again with the same command and data (etcd's data folder is kept). With `wait`, return
    once the API server answers /readyz again: the seconds from the start to that."""
    if name not in RESTARTABLE:
        raise LocalClusterError(f"cannot restart {name!r}: one of {', '.join(RESTARTABLE)}")
    info, rec = _running(state_dir, name)
    if not rec.cmd:
        raise LocalClusterError(
            f"{name} was started by an older otactl (no command recorded): "
            "restart the cluster with `otactl local-cluster down` and `up`"
        )
    if _alive(rec):
        progress(f"stopping {name} (pid {rec.pid})")
        if not _signal_and_wait(rec, signal.SIGTERM, STOP_GRACE_SECONDS):
            _signal_and_wait(rec, signal.SIGKILL, STOP_GRACE_SECONDS)
    if down_seconds > 0:
        progress(f"{name} stays stopped for {down_seconds:g} s")
        time.sleep(down_seconds)
    log = Path(rec.log)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            rec.cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = time.monotonic()
    ticks = _start_ticks(proc.pid)
    if ticks is None:
        raise LocalClusterError(f"{name} exited at once; last lines of {log}:\n{_tail(log)}")
    rec.pid, rec.start_ticks = proc.pid, ticks
    _save_state(info)
    progress(f"started {name} again (pid {proc.pid})")
    if not wait:
        return 0.0
    pki = Path(info.state_dir) / "pki"
    while not _api_ready(info.api_port, pki):
        if proc.poll() is not None:
            raise LocalClusterError(
                f"{name} exited with {proc.returncode}; last lines of {log}:\n{_tail(log)}"
            )
        if time.monotonic() - started > timeout:
            raise LocalClusterError(f"the API server is not ready {timeout:.0f}s after {name}")
        time.sleep(0.2)
    return time.monotonic() - started
