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

This package imports neither typer nor the kubernetes client; it reports progress through
a callback and raises `LocalClusterError` for expected failures. Its files:

- `cluster.py`: `up`, `down`, `status` (and the watchdog that runs `down`);
- `components.py`: each component's command line, started in order;
- `certs.py`: the cluster's CA, certificates and kubeconfigs;
- `network.py`: the network namespace and the host's ports;
- `forwarder.py`: the process that relays the host's ports into the netns
  (`python -m otactl.localcluster forward ...`, see `__main__.py`);
- `processes.py`: starting, recording, probing and stopping processes;
- `state.py`: the options and the record in `state.json`;
- `stages.py`: kwok's stage files and the fake nodes;
- `faults.py`: freezing or slowing the API path, restarting a component;
- `locations.py`: where the contrib files and the binaries are.
"""

from otactl.localcluster.certs import _kubeconfig, _make_pki
from otactl.localcluster.cluster import down, status, up
from otactl.localcluster.faults import (
    RESTARTABLE,
    Faults,
    _running,
    load_faults,
    restart_component,
    set_faults,
)
from otactl.localcluster.locations import (
    BINARIES,
    cache_root,
    contrib_dir,
    find_bin_dir,
    pinned_release,
)
from otactl.localcluster.network import (
    IN_NS_API_PORT,
    IN_NS_CONTROL_PORT,
    NODE_IP,
    POD_CIDR,
    SERVICE_CIDR,
    STANDIN_PORT,
    _netns_name,
)
from otactl.localcluster.processes import STOP_GRACE_SECONDS, Progress, _alive
from otactl.localcluster.stages import STORAGE_CLASS
from otactl.localcluster.state import (
    DEFAULT_API_PORT,
    DEFAULT_CONTROL_PORT,
    DEFAULT_TIMEOUT,
    FAULTS_FILE,
    STATE_FILE,
    ClusterInfo,
    ClusterOptions,
    ClusterStatus,
    ProcessRecord,
    load_state,
)

# The underscore names are for the tests, which reach into the parts they check.
__all__ = [
    "BINARIES",
    "DEFAULT_API_PORT",
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_TIMEOUT",
    "FAULTS_FILE",
    "IN_NS_API_PORT",
    "IN_NS_CONTROL_PORT",
    "NODE_IP",
    "POD_CIDR",
    "RESTARTABLE",
    "SERVICE_CIDR",
    "STANDIN_PORT",
    "STATE_FILE",
    "STOP_GRACE_SECONDS",
    "STORAGE_CLASS",
    "ClusterInfo",
    "ClusterOptions",
    "ClusterStatus",
    "Faults",
    "ProcessRecord",
    "Progress",
    "_alive",
    "_kubeconfig",
    "_make_pki",
    "_netns_name",
    "_running",
    "cache_root",
    "contrib_dir",
    "down",
    "find_bin_dir",
    "load_faults",
    "load_state",
    "pinned_release",
    "restart_component",
    "set_faults",
    "status",
    "up",
]
