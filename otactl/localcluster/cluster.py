"""`up`, `down` and `status` of the local cluster: check, make its certificates and namespace,
start its components (components.py), stop them again; and the watchdog that runs `down`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path

from otactl.errors import LocalClusterError
from otactl.fsutil import ensure_private_dir, write_private
from otactl.localcluster.certs import _kubeconfig, _make_pki
from otactl.localcluster.components import _start_all
from otactl.localcluster.locations import _check_standin_imports, contrib_dir, find_bin_dir
from otactl.localcluster.network import (
    IN_NS_API_PORT,
    _bind_host_port,
    _create_namespace,
    _delete_namespace,
    _Namespace,
)
from otactl.localcluster.processes import (
    STOP_GRACE_SECONDS,
    Progress,
    _alive,
    _api_ready,
    _Launcher,
    _quiet,
    _run,
    _signal_and_wait,
    _start_ticks,
)
from otactl.localcluster.stages import _stage_files
from otactl.localcluster.state import (
    FAULTS_FILE,
    STATE_FILE,
    ClusterInfo,
    ClusterOptions,
    ClusterStatus,
    _save_state,
    load_state,
)


def up(opts: ClusterOptions, progress: Progress = _quiet) -> ClusterInfo:
    """Start a local simulated cluster recorded in `opts.state_dir`; return its info.

    Raises LocalClusterError if one already runs there, a port is busy, binaries are
    missing, or a component does not come up before `opts.timeout` (then everything
    started so far is stopped again and the logs stay in `<state_dir>/logs/`).
    """
    state_dir = Path(opts.state_dir).resolve()
    if opts.nodes < 1:
        raise LocalClusterError("a local cluster needs at least one node")
    old = load_state(state_dir)
    if old is not None:
        alive = [p.name for p in old.processes if _alive(p)]
        if alive:
            raise LocalClusterError(
                f"a local cluster is already running from {state_dir} "
                f"({', '.join(alive)}); stop it with `otactl local-cluster down`"
            )
        progress("cleaning up a stopped cluster's state")
        down(state_dir, progress=progress)

    stages = _stage_files(opts.standin)
    standin_script = contrib_dir() / "standin" / "standin.py"
    if opts.standin:
        if not standin_script.is_file():
            raise LocalClusterError(f"{standin_script} is missing")
        _check_standin_imports()
    bin_dir = find_bin_dir(opts.bin_dir)

    # Bind the host ports first: a busy port fails before anything is created.
    api_sock = _bind_host_port(opts.api_port, "API server", "--api-port")
    socks = [api_sock]
    ctl_sock: socket.socket | None = None
    try:
        if opts.standin:
            ctl_sock = _bind_host_port(opts.control_port, "stand-in control", "--control-port")
            socks.append(ctl_sock)
        return _up(opts, state_dir, bin_dir, stages, standin_script, api_sock, ctl_sock, progress)
    finally:
        # The forwarder holds its own copies; ours must not keep the ports open after down.
        for s in socks:
            s.close()


def _up(
    opts: ClusterOptions,
    state_dir: Path,
    bin_dir: Path,
    stages: list[Path],
    standin_script: Path,
    api_sock: socket.socket,
    ctl_sock: socket.socket | None,
    progress: Progress,
) -> ClusterInfo:
    ensure_private_dir(state_dir)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    for old_log in logs.glob("*.log"):
        old_log.unlink()

    progress("creating certificates")
    pki = _make_pki(state_dir / "pki")
    api_port = api_sock.getsockname()[1]
    ctl_port = ctl_sock.getsockname()[1] if ctl_sock is not None else None
    kubeconfig = state_dir / "kubeconfig"
    write_private(kubeconfig, _kubeconfig(pki, f"https://127.0.0.1:{api_port}"))
    internal_kc = state_dir / "internal.kubeconfig"
    write_private(internal_kc, _kubeconfig(pki, f"https://127.0.0.1:{IN_NS_API_PORT}"))

    progress("creating the network namespace")
    ns = _create_namespace(state_dir)
    nodes = [f"kwok-node-{i}" for i in range(opts.nodes)]
    info = ClusterInfo(
        state_dir=str(state_dir),
        netns=ns.name,
        netns_mode=ns.mode,
        api_port=api_port,
        control_port=ctl_port,
        kubeconfig=str(kubeconfig),
        release=_binary_release(bin_dir),
        nodes=nodes,
        holder_pid=ns.holder_pid,
    )
    _save_state(info)
    launcher = _Launcher(info, ns, logs, progress)
    deadline = time.monotonic() + opts.timeout
    try:
        _start_all(
            opts,
            info,
            launcher,
            pki,
            bin_dir,
            stages,
            standin_script,
            api_sock,
            ctl_sock,
            internal_kc,
            deadline,
        )
    except BaseException:
        progress("start failed; stopping what was started (logs stay)")
        down(state_dir, progress=progress)
        raise
    return info


def _binary_release(bin_dir: Path) -> str:
    """The Kubernetes release the binaries report (`kube-apiserver --version`)."""
    out = _run([str(bin_dir / "kube-apiserver"), "--version"]).split()
    return out[-1] if out else "unknown"


def down(state_dir: Path, keep: bool = False, progress: Progress = _quiet) -> list[str]:
    """Stop every process recorded in `state_dir` (by pid) and remove the cluster's state.

    Returns the names of the processes that were still running. With `keep`, the etcd data,
    certificates and kubeconfig stay; logs always stay (`<state_dir>/logs/`).
    """
    state_dir = Path(state_dir).resolve()
    info = load_state(state_dir)
    if info is None:
        return []
    stopped: list[str] = []
    # Newest first, one at a time: clients go before the API server, the API server before
    # etcd, and the forwarder last, so each can shut down cleanly instead of retrying.
    for rec in reversed(info.processes):
        if rec.pid == os.getpid() or not _alive(rec):
            continue  # the watchdog runs down itself
        progress(f"stopping {rec.name} (pid {rec.pid})")
        stopped.append(rec.name)
        if not _signal_and_wait(rec, signal.SIGTERM, STOP_GRACE_SECONDS):
            progress(f"killing {rec.name} (pid {rec.pid}): still running after SIGTERM")
            if not _signal_and_wait(rec, signal.SIGKILL, STOP_GRACE_SECONDS):
                raise LocalClusterError(f"{rec.name} (pid {rec.pid}) survived SIGKILL")
    _delete_namespace(_Namespace(info.netns, info.netns_mode, info.holder_pid))
    if keep:
        return stopped
    for name in ("etcd", "pki"):
        shutil.rmtree(state_dir / name, ignore_errors=True)
    for name in ("kubeconfig", "internal.kubeconfig", STATE_FILE, FAULTS_FILE):
        (state_dir / name).unlink(missing_ok=True)
    return stopped


def status(state_dir: Path) -> ClusterStatus:
    """Which recorded processes are alive and whether the API server answers /readyz."""
    state_dir = Path(state_dir).resolve()
    info = load_state(state_dir)
    if info is None:
        return ClusterStatus(recorded=False, state_dir=str(state_dir))
    procs = {p.name: _alive(p) for p in info.processes}
    ready = procs.get("kube-apiserver", False) and _api_ready(info.api_port, state_dir / "pki")
    return ClusterStatus(True, str(state_dir), procs, bool(ready), info)


def _watchdog_main(owner_pid: int, owner_ticks: int, state_dir: str) -> None:
    """Wait for the owner process to exit, then stop the cluster recorded in `state_dir`."""
    import select

    try:
        pidfd: int | None = os.pidfd_open(owner_pid)
    except OSError:
        pidfd = None
    if pidfd is not None and _start_ticks(owner_pid) == owner_ticks:
        select.select([pidfd], [], [])  # a pidfd becomes readable when its process exits
    else:
        # No pidfd (old kernel) or the owner is already gone: poll.
        while _start_ticks(owner_pid) == owner_ticks:
            time.sleep(1)
    down(Path(state_dir), progress=lambda m: print(m, flush=True))
