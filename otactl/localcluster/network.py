"""The local cluster's network: its namespace (a named netns as root, a user+network namespace
held by a process otherwise) with the pod range routed to `lo`, and the host's ports."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from otactl.errors import LocalClusterError
from otactl.localcluster.processes import _run

# Addresses inside the namespace. They exist only there, so they never clash with the host.
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
NODE_IP = "10.243.0.1"  # added to the netns's lo: the API server's advertise address
IN_NS_API_PORT = 6443
IN_NS_CONTROL_PORT = 9100  # the stand-in's knobs endpoint, forwarded to the host
STANDIN_PORT = 9001  # where the OTA Scala services listen in their pods


class _Namespace:
    """How to run a command inside the cluster's network namespace.

    As root: a named netns (`ip netns add`). Otherwise: a user+network namespace held open by
    a `sleep` process made with `unshare -rn`, entered with `nsenter` (rootless).
    """

    def __init__(self, name: str, mode: str, holder_pid: int | None = None) -> None:
        self.name = name
        self.mode = mode
        self.holder_pid = holder_pid

    def prefix(self) -> list[str]:
        if self.mode == "ip-netns":
            return ["ip", "netns", "exec", self.name]
        return [
            "nsenter",
            f"--target={self.holder_pid}",
            "--user",
            "--net",
            "--preserve-credentials",
            "--",
        ]

    def run(self, *cmd: str) -> None:
        _run([*self.prefix(), *cmd])


def _netns_name(state_dir: Path) -> str:
    # One namespace per state dir, so a test cluster and a user's cluster can coexist.
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:10]
    return f"otactl-{digest}"


def _netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def _create_namespace(state_dir: Path) -> _Namespace:
    name = _netns_name(state_dir)
    if os.geteuid() == 0:
        if _netns_exists(name):
            # Left over from a cluster whose processes are all gone (checked by the caller).
            _run(["ip", "netns", "del", name])
        _run(["ip", "netns", "add", name])
        ns = _Namespace(name, "ip-netns")
    else:
        holder = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--net", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # unshare execs sleep once the namespaces exist; wait until the pid is sleep's.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{holder.pid}/comm").read_text().strip() == "sleep":
                    break
            if holder.poll() is not None:
                raise LocalClusterError(
                    "unshare --user --net failed: unprivileged user namespaces may be disabled "
                    "(sysctl kernel.unprivileged_userns_clone); run as root instead"
                )
            time.sleep(0.05)
        ns = _Namespace(name, "userns", holder.pid)
    try:
        ns.run("ip", "link", "set", "lo", "up")
        # AnyIP: every pod IP is local inside the namespace, so one listener answers them all.
        ns.run("ip", "route", "add", "local", POD_CIDR, "dev", "lo")
        ns.run("ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")
    except LocalClusterError:
        _delete_namespace(ns)
        raise
    return ns


def _delete_namespace(ns: _Namespace) -> None:
    if ns.mode == "ip-netns":
        if _netns_exists(ns.name):
            with contextlib.suppress(LocalClusterError):
                _run(["ip", "netns", "del", ns.name])
    elif ns.holder_pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(ns.holder_pid, signal.SIGKILL)


def _bind_host_port(port: int, what: str, flag: str) -> socket.socket:
    """Listen on 127.0.0.1:port in the caller's namespace; a busy port is a clear error."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as e:
        sock.close()
        raise LocalClusterError(
            f"port {port} on 127.0.0.1 ({what}) is busy: {e.strerror}; choose another with {flag}"
        ) from e
    sock.listen(128)
    return sock
