"""The local cluster's components and their command lines, started in order by `up`: watchdog,
forwarder, etcd, kube-apiserver, controller manager and scheduler, kwok with its nodes, and
the OTA services stand-in."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

from otactl.errors import LocalClusterError
from otactl.fsutil import ensure_private_dir
from otactl.localcluster.certs import _Pki
from otactl.localcluster.network import (
    IN_NS_API_PORT,
    IN_NS_CONTROL_PORT,
    NODE_IP,
    POD_CIDR,
    SERVICE_CIDR,
    STANDIN_PORT,
)
from otactl.localcluster.processes import (
    _api_ready,
    _http_ok,
    _Launcher,
    _remaining,
    _run,
    _start_ticks,
    _tail,
    _wait_until,
)
from otactl.localcluster.stages import STORAGE_CLASS, _bootstrap_objects
from otactl.localcluster.state import FAULTS_FILE, ClusterInfo, ClusterOptions


def _start_all(
    opts: ClusterOptions,
    info: ClusterInfo,
    launcher: _Launcher,
    pki: _Pki,
    bin_dir: Path,
    stages: list[Path],
    standin_script: Path,
    api_sock: socket.socket,
    ctl_sock: socket.socket | None,
    internal_kc: Path,
    deadline: float,
) -> None:
    """Start every component, each once the ones it talks to are up."""
    state_dir = Path(info.state_dir)
    logs = launcher.logs
    py_env = _python_env()
    if opts.owner_pid is not None:
        _start_watchdog(launcher, opts.owner_pid, state_dir, py_env)
    _start_forwarder(launcher, state_dir, api_sock, ctl_sock, py_env)
    _start_etcd(launcher, bin_dir, state_dir)
    _start_apiserver(launcher, bin_dir, pki, opts.audit_policy)
    _wait_until(
        "kube-apiserver",
        lambda: _api_ready(info.api_port, pki.dir),
        deadline,
        launcher,
        lambda: (
            f"last lines of {logs / 'kube-apiserver.log'}:\n{_tail(logs / 'kube-apiserver.log')}"
        ),
    )
    _start_controllers(launcher, bin_dir, pki, internal_kc)
    _start_nodes(launcher, bin_dir, info, stages, internal_kc, deadline)
    if ctl_sock is not None:
        _start_standin(
            launcher, info, standin_script, opts.standin_config, internal_kc, py_env, deadline
        )


def _python_env() -> dict[str, str]:
    """The environment of the processes that run with this interpreter (watchdog, forwarder,
    stand-in)."""
    py_env = dict(os.environ)
    # The helpers run with this interpreter; make otactl importable even when not installed.
    pkg_parent = str(Path(__file__).resolve().parents[2])
    py_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (pkg_parent, os.environ.get("PYTHONPATH", "")) if p
    )
    return py_env


def _start_watchdog(
    launcher: _Launcher, owner_pid: int, state_dir: Path, py_env: dict[str, str]
) -> None:
    owner_ticks = _start_ticks(owner_pid)
    if owner_ticks is None:
        raise LocalClusterError(f"owner process {owner_pid} is not running")
    # Outside the netns: it deletes the namespace when it stops the cluster.
    launcher.start(
        "watchdog",
        [sys.executable, "-m", "otactl.localcluster", "watchdog",
         str(owner_pid), str(owner_ticks), str(state_dir)],
        env=py_env,
        in_netns=False,
    )  # fmt: skip


def _start_forwarder(
    launcher: _Launcher,
    state_dir: Path,
    api_sock: socket.socket,
    ctl_sock: socket.socket | None,
    py_env: dict[str, str],
) -> None:
    fds = [api_sock.fileno()]
    # Faults (`otactl local-cluster fault`) apply to the API path only, never to the knobs.
    fwd_args = [
        f"--faults={api_sock.fileno()}:{state_dir / FAULTS_FILE}",
        f"{api_sock.fileno()}=127.0.0.1:{IN_NS_API_PORT}",
    ]
    if ctl_sock is not None:
        fds.append(ctl_sock.fileno())
        fwd_args.append(f"{ctl_sock.fileno()}=127.0.0.1:{IN_NS_CONTROL_PORT}")
    launcher.start(
        "forwarder",
        [sys.executable, "-m", "otactl.localcluster", "forward", *fwd_args],
        pass_fds=fds,
        env=py_env,
    )


def _start_etcd(launcher: _Launcher, bin_dir: Path, state_dir: Path) -> None:
    etcd_dir = state_dir / "etcd"
    ensure_private_dir(etcd_dir)
    launcher.start(
        "etcd",
        [
            str(bin_dir / "etcd"),
            "--name=otactl-local",
            f"--data-dir={etcd_dir}",
            # Plain HTTP on the namespace's loopback: nothing outside the netns can reach it.
            "--listen-client-urls=http://127.0.0.1:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=otactl-local=http://127.0.0.1:2380",
            "--unsafe-no-fsync=true",  # a throwaway cluster; fsync dominates on small disks
            "--quota-backend-bytes=2147483648",
        ],
    )


def _start_apiserver(
    launcher: _Launcher, bin_dir: Path, p: _Pki, audit_policy: Path | None
) -> None:
    logs = launcher.logs
    launcher.start(
        "kube-apiserver",
        [
            str(bin_dir / "kube-apiserver"),
            "--etcd-servers=http://127.0.0.1:2379",
            "--bind-address=0.0.0.0",
            f"--secure-port={IN_NS_API_PORT}",
            f"--advertise-address={NODE_IP}",
            f"--tls-cert-file={p.server_crt}",
            f"--tls-private-key-file={p.server_key}",
            f"--client-ca-file={p.ca_crt}",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,"
            "DefaultStorageClass,DefaultTolerationSeconds,ResourceQuota,"
            "MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            "--allow-privileged=true",
            "--profiling=false",
            *(
                [
                    f"--audit-policy-file={audit_policy}",
                    f"--audit-log-path={logs / 'audit.log'}",
                ]
                if audit_policy
                else []
            ),
        ],
    )


def _start_controllers(launcher: _Launcher, bin_dir: Path, p: _Pki, internal_kc: Path) -> None:
    """The controller manager and the scheduler."""
    launcher.start(
        "kube-controller-manager",
        [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={internal_kc}",
            f"--authentication-kubeconfig={internal_kc}",
            f"--authorization-kubeconfig={internal_kc}",
            f"--service-account-private-key-file={p.sa_key}",
            f"--root-ca-file={p.ca_crt}",
            f"--cluster-signing-cert-file={p.ca_crt}",
            f"--cluster-signing-key-file={p.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle",
        ],
    )
    launcher.start(
        "kube-scheduler",
        [
            str(bin_dir / "kube-scheduler"),
            f"--kubeconfig={internal_kc}",
            f"--authentication-kubeconfig={internal_kc}",
            f"--authorization-kubeconfig={internal_kc}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ],
    )


def _start_nodes(
    launcher: _Launcher,
    bin_dir: Path,
    info: ClusterInfo,
    stages: list[Path],
    internal_kc: Path,
    deadline: float,
) -> None:
    """The fake nodes and the StorageClass, kwok to run them, and a wait until the nodes are
    Ready and pods are accepted."""
    kubectl = [str(bin_dir / "kubectl"), f"--kubeconfig={info.kubeconfig}"]
    launcher.progress(f"creating {len(info.nodes)} node(s) and StorageClass {STORAGE_CLASS}")
    _run([*kubectl, "apply", "-f", "-"], input_=_bootstrap_objects(info.nodes).encode())
    launcher.start(
        "kwok",
        [
            str(bin_dir / "kwok"),
            f"--kubeconfig={internal_kc}",
            *(f"--config={path}" for path in stages),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--cidr={next(ipaddress.ip_network(POD_CIDR).hosts())}/16",
            f"--node-ip={NODE_IP}",
            "--node-lease-duration-seconds=40",
            "--server-address=127.0.0.1:10247",
        ],
    )
    launcher.progress("waiting for nodes to be Ready")
    _run(
        [
            *kubectl,
            "wait",
            "--for=condition=Ready",
            "node",
            "--all",
            f"--timeout={_remaining(deadline)}s",
        ],
        timeout=_remaining(deadline) + 10,
    )
    # Pods are refused until the namespace's default ServiceAccount exists.
    _run(
        [
            *kubectl,
            "wait",
            "--for=create",
            "serviceaccount/default",
            "-n",
            "default",
            f"--timeout={_remaining(deadline)}s",
        ],
        timeout=_remaining(deadline) + 10,
    )


def _start_standin(
    launcher: _Launcher,
    info: ClusterInfo,
    standin_script: Path,
    standin_config: Path | None,
    internal_kc: Path,
    py_env: dict[str, str],
    deadline: float,
) -> None:
    logs = launcher.logs
    cmd = [
        sys.executable,
        str(standin_script),
        f"--kubeconfig={internal_kc}",
        f"--listen=0.0.0.0:{STANDIN_PORT}",
        f"--control=127.0.0.1:{IN_NS_CONTROL_PORT}",
    ]
    if standin_config is not None:
        cmd.append(f"--config={Path(standin_config).resolve()}")
    launcher.start("standin", cmd, env=py_env)
    url = f"{info.control_url}/healthz"
    _wait_until(
        "the OTA services stand-in",
        lambda: _http_ok(url),
        deadline,
        launcher,
        lambda: f"last lines of {logs / 'standin.log'}:\n{_tail(logs / 'standin.log')}",
    )
