"""Where the local cluster's parts are: `contrib/local-cluster/` (kwok stages, the stand-in,
build.sh) and the control plane binaries that build.sh made for the pinned release."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from otactl.errors import LocalClusterError

BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)


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
