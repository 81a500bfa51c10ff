"""The local simulated cluster: a real control plane with kwok's fake nodes, in a netns.

`up` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the kwok
controller and (optionally) the OTA services stand-in, all inside a network namespace in
which the pod range is routed to `lo` ("AnyIP"): any pod IP can be bound and accepted
there, so the API server's service proxy reaches the stand-in at the pod's own IP. The
host reaches the API server (and the stand-in's control endpoint) through a forwarder
whose listening sockets are created here, in the caller's namespace, and handed to a child
that runs inside the netns. Nothing touches the host's routing or interfaces.

Everything `up` starts is recorded (pid and start time) in `<state_dir>/state.json`, so
`down` stops exactly those processes. No container runs: kwok only writes the status a
kubelet would.

This module imports neither typer nor the kubernetes client; it reports progress through
a callback and raises `LocalClusterError` for expected failures. It also holds the
forwarder's entry point (`python -m otactl.localcluster forward ...`).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from otactl.errors import LocalClusterError
from otactl.fsutil import ensure_private_dir, write_atomic, write_private

# Addresses inside the namespace. They exist only there, so they never clash with the host.
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
NODE_IP = "10.243.0.1"  # added to the netns's lo: the API server's advertise address
IN_NS_API_PORT = 6443
IN_NS_CONTROL_PORT = 9100  # the stand-in's knobs endpoint, forwarded to the host
STANDIN_PORT = 9001  # where the OTA Scala services listen in their pods

DEFAULT_API_PORT = 16443
DEFAULT_CONTROL_PORT = 16490
DEFAULT_TIMEOUT = 180.0
STOP_GRACE_SECONDS = 10.0

BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)
STATE_FILE = "state.json"
FAULTS_FILE = "faults.json"
STORAGE_CLASS = "standard"

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


# --------------------------------------------------------------------------- locations


def contrib_dir() -> Path:
    """`contrib/local-cluster/` of the otactl checkout (stages, stand-in, build.sh)."""
    env = os.environ.get("OTACTL_LOCAL_CLUSTER_DIR")
    if env:
        return Path(env)
    from otactl.config import project_root

    # An installed wheel carries it inside the package; a checkout has it at the top.
    return project_root() / "contrib" / "local-cluster"


def _check_standin_imports() -> None:
    """Refuse before anything starts when the stand-in's Python packages are missing (it
    names them itself: `standin.py --check`)."""
    script = contrib_dir() / "standin" / "standin.py"
    res = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60
    )
    if res.returncode != 0:
        lines = (res.stderr or res.stdout).strip().splitlines() or ["stand-in check failed"]
        raise LocalClusterError(lines[-1].removeprefix("error: "))


def pinned_release() -> str | None:
    """The k8s.io/kubernetes version pinned in contrib/local-cluster/go.mod, if present."""
    gomod = contrib_dir() / "go.mod"
    if not gomod.is_file():
        return None
    for line in gomod.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "k8s.io/kubernetes":
            return parts[1]
    return None


def cache_root() -> Path:
    """Where build.sh puts binaries: $OTACTL_CACHE_DIR or ~/.cache/otactl."""
    env = os.environ.get("OTACTL_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "otactl"


def find_bin_dir(explicit: Path | None = None) -> Path:
    """The folder holding the control plane binaries, or a LocalClusterError saying how to build.

    Order: `explicit`, $OTACTL_LOCAL_CLUSTER_BIN, the cache folder of the pinned release.
    """
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(explicit)
    elif os.environ.get("OTACTL_LOCAL_CLUSTER_BIN"):
        candidates.append(Path(os.environ["OTACTL_LOCAL_CLUSTER_BIN"]))
    else:
        release = pinned_release()
        if release:
            candidates.append(cache_root() / "local-cluster" / release / "bin")
    for cand in candidates:
        missing = [b for b in BINARIES if not os.access(cand / b, os.X_OK)]
        if not missing:
            return cand
    where = candidates[0] if candidates else cache_root() / "local-cluster"
    raise LocalClusterError(
        f"control plane binaries not found in {where}; build them with "
        f"{contrib_dir() / 'build.sh'} (or set OTACTL_LOCAL_CLUSTER_BIN)"
    )


# --------------------------------------------------------------------------- options and state


@dataclass(frozen=True)
class ClusterOptions:
    """What `up` needs. Port 0 means "any free port" (the chosen one is in the result)."""

    state_dir: Path
    api_port: int = DEFAULT_API_PORT
    control_port: int = DEFAULT_CONTROL_PORT
    nodes: int = 1
    standin: bool = True
    standin_config: Path | None = None
    bin_dir: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    # An audit policy for the API server; events go to logs/audit.log (benchmarks read the
    # API server's own timestamps there).
    audit_policy: Path | None = None
    # When set, a watchdog stops the cluster once this process exits: a test session killed
    # before its teardown must not leave a control plane running.
    owner_pid: int | None = None


@dataclass
class ProcessRecord:
    """One process `up` started: enough to find it again and to be sure it is still ours."""

    name: str
    pid: int
    start_ticks: int
    log: str
    # The full command (netns prefix included), so a fault can restart the process as it was.
    cmd: list[str] = field(default_factory=list)


@dataclass
class ClusterInfo:
    """The recorded state of a local cluster (`<state_dir>/state.json`)."""

    state_dir: str
    netns: str
    netns_mode: str  # "ip-netns" (root) or "userns" (rootless, held by a process)
    api_port: int
    control_port: int | None
    kubeconfig: str
    release: str
    nodes: list[str]
    processes: list[ProcessRecord] = field(default_factory=list)
    holder_pid: int | None = None

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def control_url(self) -> str | None:
        """Base URL of the stand-in's knobs endpoint on the host, if the stand-in runs."""
        if self.control_port is None:
            return None
        return f"http://127.0.0.1:{self.control_port}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterInfo:
        data = json.loads(text)
        data["processes"] = [ProcessRecord(**p) for p in data.get("processes", [])]
        return cls(**data)


@dataclass
class ClusterStatus:
    """What `status` found: recorded processes alive or not, and whether the API answers."""

    recorded: bool
    state_dir: str
    processes: dict[str, bool] = field(default_factory=dict)
    api_ready: bool = False
    info: ClusterInfo | None = None

    @property
    def running(self) -> bool:
        return any(self.processes.values())


def load_state(state_dir: Path) -> ClusterInfo | None:
    """The cluster recorded in `state_dir`, or None."""
    path = Path(state_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return ClusterInfo.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as e:
        raise LocalClusterError(f"cannot read {path}: {e}") from e


def _save_state(info: ClusterInfo) -> None:
    write_atomic(Path(info.state_dir) / STATE_FILE, info.to_json(), mode=0o600)


# --------------------------------------------------------------------------- processes


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), None if gone.

    Recorded with each pid so a recycled pid is never mistaken for ours.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it start past the last ')'.
    rest = stat[stat.rindex(")") + 2 :].split()
    if rest[0] == "Z":
        return None
    return int(rest[19])


def _alive(rec: ProcessRecord) -> bool:
    return _start_ticks(rec.pid) == rec.start_ticks


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


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


def _run(cmd: Sequence[str], input_: bytes | None = None, timeout: float = 60.0) -> str:
    try:
        res = subprocess.run(
            list(cmd), input=input_, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError as e:
        raise LocalClusterError(f"{cmd[0]} not found: {e}") from e
    except subprocess.TimeoutExpired as e:
        raise LocalClusterError(f"{' '.join(cmd[:3])} ... took longer than {timeout:.0f}s") from e
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip().splitlines()
        raise LocalClusterError(
            f"{' '.join(cmd[:4])} ... failed: {err[-1] if err else f'exit {res.returncode}'}"
        )
    return res.stdout.decode(errors="replace")


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


class _Launcher:
    """Starts processes inside the namespace, records them, and notices early deaths."""

    def __init__(self, info: ClusterInfo, ns: _Namespace, logs: Path, progress: Progress) -> None:
        self.info = info
        self.ns = ns
        self.logs = logs
        self.progress = progress
        self.popens: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        pass_fds: Sequence[int] = (),
        env: dict[str, str] | None = None,
        in_netns: bool = True,
    ) -> None:
        log = self.logs / f"{name}.log"
        self.progress(f"starting {name}")
        prefix = self.ns.prefix() if in_netns else []
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [*prefix, *cmd],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=tuple(pass_fds),
                # Own session: survives the CLI's exit and a Ctrl-C in its terminal.
                start_new_session=True,
                env=env,
            )
        ticks = _start_ticks(proc.pid)
        if ticks is None:
            rc = proc.wait()
            raise LocalClusterError(f"{name} exited with {rc}; last lines of {log}:\n{_tail(log)}")
        self.popens[name] = proc
        self.info.processes.append(ProcessRecord(name, proc.pid, ticks, str(log), [*prefix, *cmd]))
        _save_state(self.info)

    def check(self) -> None:
        """Raise with the log's last lines if a started process has exited."""
        for name, proc in self.popens.items():
            if proc.poll() is not None:
                log = self.logs / f"{name}.log"
                raise LocalClusterError(
                    f"{name} exited with {proc.returncode}; last lines of {log}:\n{_tail(log)}"
                )


# --------------------------------------------------------------------------- PKI


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _cert(
    cn: str,
    public_key: Any,
    issuer_key: Any,
    issuer_cert: Any | None,
    *,
    org: str | None = None,
    ca: bool = False,
    server_names: Sequence[str] = (),
    client: bool = False,
    days: int = 90,
) -> Any:
    """One builder for every certificate here; each profile adds its own extensions."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from otactl.pki import cert_builder

    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    b = cert_builder(x509.Name(attrs), public_key, issuer_cert, days, _now())
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_names:
        sans: list[x509.GeneralName] = []
        for n in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class _Pki:
    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def server_crt(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def admin_crt(self) -> Path:
        return self.dir / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.dir / "admin.key"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"


def _make_pki(pki_dir: Path) -> _Pki:
    """A throwaway CA, the API server's serving cert, an admin client cert and SA keys.

    The cluster is disposable: `up` refuses to run over a live one and `down` removes
    these, so a fresh set per `up` never overwrites keys anything else depends on.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ensure_private_dir(pki_dir)
    pki = _Pki(pki_dir)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def pem_cert(cert: Any) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("otactl-local-cluster-ca", ca_key.public_key(), ca_key, None, ca=True, days=365)
    write_private(pki.ca_key, pem_key(ca_key))
    write_atomic(pki.ca_crt, pem_cert(ca))

    server_key = ec.generate_private_key(ec.SECP256R1())
    names = [
        "127.0.0.1",
        NODE_IP,
        str(next(ipaddress.ip_network(SERVICE_CIDR).hosts())),
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    server = _cert("kube-apiserver", server_key.public_key(), ca_key, ca, server_names=names)
    write_private(pki.server_key, pem_key(server_key))
    write_atomic(pki.server_crt, pem_cert(server))

    # system:masters: the admin identity every component and the user share here.
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _cert(
        "otactl-admin", admin_key.public_key(), ca_key, ca, org="system:masters", client=True
    )
    write_private(pki.admin_key, pem_key(admin_key))
    write_atomic(pki.admin_crt, pem_cert(admin))

    sa_key = ec.generate_private_key(ec.SECP256R1())
    write_private(pki.sa_key, pem_key(sa_key))
    write_atomic(
        pki.sa_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return pki


def _kubeconfig(pki: _Pki, server: str) -> str:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "otactl-local",
                "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_crt)},
            }
        ],
        "users": [
            {
                "name": "otactl-admin",
                "user": {
                    "client-certificate-data": b64(pki.admin_crt),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {"name": "otactl-local", "context": {"cluster": "otactl-local", "user": "otactl-admin"}}
        ],
        "current-context": "otactl-local",
    }
    # JSON is valid YAML; every kubeconfig reader accepts it.
    return json.dumps(cfg, indent=2) + "\n"


# --------------------------------------------------------------------------- waiting


def _api_context(pki_dir: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    ctx.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
    return ctx


def _api_ready(api_port: int, pki_dir: Path, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{api_port}/readyz",
            context=_api_context(pki_dir),
            timeout=timeout,
        ) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError, ssl.SSLError):
        return False


def _wait_until(
    what: str,
    ready: Callable[[], bool],
    deadline: float,
    launcher: _Launcher,
    explain: Callable[[], str],
) -> None:
    """Poll `ready` (a cheap local probe) until the deadline, failing fast if a process dies."""
    while True:
        launcher.check()
        if ready():
            return
        if time.monotonic() > deadline:
            raise LocalClusterError(f"{what} not ready in time; {explain()}")
        time.sleep(0.3)


def _remaining(deadline: float) -> int:
    return max(1, int(deadline - time.monotonic()))


# --------------------------------------------------------------------------- up / down / status


def _bootstrap_objects(nodes: Sequence[str]) -> str:
    objs: list[dict[str, object]] = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            # Served by the volume stages in kwok-stages.yaml, which bind a fake PV at once.
            "provisioner": "kwok.x-k8s.io/volume",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
    ]
    for name in nodes:
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "kwok.x-k8s.io/node": "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "kubernetes.io/arch": "amd64",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "type": "kwok",
                    },
                },
                "status": {
                    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "250"},
                    "capacity": {"cpu": "32", "memory": "256Gi", "pods": "250"},
                },
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})


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

    contrib = contrib_dir()
    # How pods start: checked by the stand-in against their image's contract, or at once.
    start = "kwok-pod-start-standin.yaml" if opts.standin else "kwok-pod-start.yaml"
    stages = [contrib / "kwok-stages.yaml", contrib / start]
    standin_script = contrib / "standin" / "standin.py"
    for path in stages:
        if not path.is_file():
            raise LocalClusterError(f"{path} is missing")
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
    state_dir = Path(info.state_dir)
    logs = launcher.logs
    py_env = dict(os.environ)
    # The helpers run with this interpreter; make otactl importable even when not installed.
    pkg_parent = str(Path(__file__).resolve().parents[1])
    py_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (pkg_parent, os.environ.get("PYTHONPATH", "")) if p
    )

    if opts.owner_pid is not None:
        owner_ticks = _start_ticks(opts.owner_pid)
        if owner_ticks is None:
            raise LocalClusterError(f"owner process {opts.owner_pid} is not running")
        # Outside the netns: it deletes the namespace when it stops the cluster.
        launcher.start(
            "watchdog",
            [sys.executable, "-m", "otactl.localcluster", "watchdog",
             str(opts.owner_pid), str(owner_ticks), str(state_dir)],
            env=py_env,
            in_netns=False,
        )  # fmt: skip

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
    p = pki
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
                    f"--audit-policy-file={opts.audit_policy}",
                    f"--audit-log-path={logs / 'audit.log'}",
                ]
                if opts.audit_policy
                else []
            ),
        ],
    )
    _wait_until(
        "kube-apiserver",
        lambda: _api_ready(info.api_port, p.dir),
        deadline,
        launcher,
        lambda: (
            f"last lines of {logs / 'kube-apiserver.log'}:\n{_tail(logs / 'kube-apiserver.log')}"
        ),
    )
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
    if ctl_sock is not None:
        cmd = [
            sys.executable,
            str(standin_script),
            f"--kubeconfig={internal_kc}",
            f"--listen=0.0.0.0:{STANDIN_PORT}",
            f"--control=127.0.0.1:{IN_NS_CONTROL_PORT}",
        ]
        if opts.standin_config is not None:
            cmd.append(f"--config={Path(opts.standin_config).resolve()}")
        launcher.start("standin", cmd, env=py_env)
        url = f"{info.control_url}/healthz"
        _wait_until(
            "the OTA services stand-in",
            lambda: _http_ok(url),
            deadline,
            launcher,
            lambda: f"last lines of {logs / 'standin.log'}:\n{_tail(logs / 'standin.log')}",
        )


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _signal_and_wait(rec: ProcessRecord, sig: int, grace: float) -> bool:
    """Signal the process's group; True once it is gone (reaped if it is our child)."""
    # Each was started as its own session leader: its group holds any children too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(rec.pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        # When down runs in the process that ran up (tests), reap our child: no zombie stays.
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(rec.pid, os.WNOHANG)
        if not Path(f"/proc/{rec.pid}").exists() or not _alive(rec):
            return True
        time.sleep(0.05)
    return False


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


# --------------------------------------------------------------------------- forwarder


def _forward_main(specs: Sequence[str]) -> None:
    """Relay each inherited listening socket to a target inside this namespace.

    `specs` are `FD=HOST:PORT`, and `--faults=FD:FILE` for the socket whose connections
    suffer the faults in FILE (re-read on SIGHUP, see `set_faults`). The listening sockets
    were created in the host namespace by `up` and keep that namespace; the connections
    this process opens live in the netns.
    """
    import asyncio

    gates: dict[int, _FaultGate] = {}
    targets: list[tuple[int, tuple[str, int]]] = []
    for spec in specs:
        if spec.startswith("--faults="):
            fd, _, path = spec.removeprefix("--faults=").partition(":")
            gates[int(fd)] = _FaultGate(Path(path))
            continue
        fd, _, target = spec.partition("=")
        host, _, port = target.rpartition(":")
        targets.append((int(fd), (host, int(port))))

    async def handle(
        target: tuple[str, int],
        gate: _FaultGate | None,
        cr: asyncio.StreamReader,
        cw: asyncio.StreamWriter,
    ) -> None:
        if gate is not None:
            await gate.thawed.wait()  # frozen: a new connection is accepted, never answered
        try:
            ur, uw = await asyncio.open_connection(*target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(_pipe(cr, uw, gate, False), _pipe(ur, cw, gate, True))
        for w in (uw, cw):
            w.close()

    def handler_for(
        target: tuple[str, int], gate: _FaultGate | None
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        return lambda r, w: handle(target, gate, r, w)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for gate in gates.values():
            gate.thawed = asyncio.Event()
            gate.thawed.set()
            loop.add_signal_handler(signal.SIGHUP, gate.reload)
        servers = []
        for fd, target in targets:
            sock = socket.socket(fileno=fd)
            handler = handler_for(target, gates.get(fd))
            servers.append(await asyncio.start_server(handler, sock=sock))
        await asyncio.gather(*(s.serve_forever() for s in servers))

    asyncio.run(main())


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


# --------------------------------------------------------------------------- faults


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


class _FaultGate:
    """The forwarder's side of `Faults` for one listening socket."""

    def __init__(self, path: Path) -> None:
        import asyncio

        self.path = path
        self.delay = 0.0
        self.thawed = asyncio.Event()  # replaced inside the event loop

    def reload(self) -> None:
        try:
            faults = load_faults(self.path.parent)
        except LocalClusterError:
            return  # a half-written file cannot happen (atomic rename); keep what holds
        self.delay = faults.delay_ms / 1000
        if faults.frozen:
            self.thawed.clear()
        else:
            self.thawed.set()


async def _pipe(reader: Any, writer: Any, gate: _FaultGate | None, answers: bool) -> None:
    """Copy one direction of a connection. Through a gate: nothing passes while it is
    frozen, and answers (`answers`: API server to client) leave `delay` after they arrived,
    as on a slow link (pieces keep their order and their spacing)."""
    import asyncio

    try:
        if gate is None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        else:
            loop = asyncio.get_running_loop()
            pending: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def pump() -> None:
                try:
                    while data := await reader.read(65536):
                        pending.put_nowait((loop.time(), data))
                except (ConnectionError, OSError):
                    pass
                pending.put_nowait((loop.time(), b""))

            task = asyncio.ensure_future(pump())
            try:
                while True:
                    arrived, data = await pending.get()
                    await gate.thawed.wait()
                    if answers and gate.delay:
                        await asyncio.sleep(max(0.0, arrived + gate.delay - loop.time()))
                        await gate.thawed.wait()
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
            finally:
                task.cancel()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "forward":
        _forward_main(sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "watchdog":
        _watchdog_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(
            "usage: python -m otactl.localcluster forward [--faults=FD:FILE] FD=HOST:PORT ... | "
            "watchdog OWNER_PID OWNER_TICKS STATE_DIR"
        )
