"""The local cluster's options and its record: what `up` started (pid, start time, command of
each process) in `<state_dir>/state.json`, read back by `down`, `status` and the faults."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from otactl.errors import LocalClusterError
from otactl.fsutil import write_atomic

DEFAULT_API_PORT = 16443
DEFAULT_CONTROL_PORT = 16490
DEFAULT_TIMEOUT = 180.0
STATE_FILE = "state.json"
FAULTS_FILE = "faults.json"


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
