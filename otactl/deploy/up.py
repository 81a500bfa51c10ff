"""`otactl up`: the plan that runs the named steps in order under one deadline, in the
real server folder or, for a dry run, in a scratch copy of it.

Every step is idempotent: applying is server-side apply (an unchanged object is not
written), waits return at once for what is ready, PKI and secrets are loaded before they
are made. So a second `up` changes nothing, and an interrupted one converges when re-run."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from otactl.config import Values
from otactl.deploy.apply import _Applier
from otactl.deploy.cluster_state import exposed_gateway_url
from otactl.deploy.run import Report, Run, UpOptions, UpResult, _Deadline, _quiet
from otactl.deploy.steps import (
    apply_bootstrap,
    apply_infra,
    apply_namespace,
    apply_network_policies,
    apply_secrets,
    apply_services,
    check_cluster,
    check_health,
    ensure_pki,
    make_credentials,
    prune_unrendered,
    render_objects,
)
from otactl.fsutil import ensure_private_dir

if TYPE_CHECKING:
    from otactl.kube import Cluster


def up(
    cluster: Cluster,
    values: Values,
    generated: Path,
    opts: UpOptions,
    report: Report = _quiet,
    credentials_step: Callable[[str, float], Path] | None = None,
    health_step: Callable[[tuple[str, ...], float], None] | None = None,
) -> UpResult:
    """Run the plan. `health_step(services, timeout)` and `credentials_step(gateway_url,
    timeout)` are the service-level phases (they talk through the service proxy)."""
    server_dir = generated / values.server_name
    steps = (report, credentials_step, health_step)
    # A lost API server, throttling and 5xx are waited out until the overall deadline.
    with cluster.patience(time.monotonic() + opts.timeout):
        if not opts.dry_run:
            return _plan(cluster, values, server_dir, opts, *steps)
        # What up would make (a CA, secrets) is made in a scratch copy: a dry run shows the
        # objects as they would be and leaves generated/ untouched.
        with tempfile.TemporaryDirectory(prefix="otactl-dry-run-") as scratch:
            copy = _scratch_copy(server_dir, Path(scratch) / values.server_name)
            return _plan(cluster, values, copy, opts, *steps)


def _scratch_copy(server_dir: Path, scratch: Path) -> Path:
    """The server folder's own files (PKI, secrets), without the device bundles."""
    ensure_private_dir(scratch)
    if server_dir.exists():
        shutil.copytree(
            server_dir,
            scratch,
            dirs_exist_ok=True,
            ignore=lambda d, names: [
                n for n in names if Path(d).name == "devices" and (Path(d) / n).is_dir()
            ],
        )
    return scratch


def _plan(
    cluster: Cluster,
    values: Values,
    server_dir: Path,
    opts: UpOptions,
    report: Report,
    credentials_step: Callable[[str, float], Path] | None,
    health_step: Callable[[tuple[str, ...], float], None] | None,
) -> UpResult:
    """The phases of `up`, top to bottom. `health_step` and `credentials_step` run only
    when given, and never in a dry run."""
    result = UpResult()
    run = Run(
        cluster, values, server_dir, opts, report, result, _Deadline(opts.timeout),
        _Applier(cluster, result, opts.dry_run),
    )  # fmt: skip
    # The installation's Lease, taken once its namespace exists, is released on the way out.
    with contextlib.ExitStack() as held:
        check_cluster(run)
        objects = render_objects(run)
        apply_namespace(run, objects, held)
        apply_network_policies(run, objects)
        files = ensure_pki(run)
        apply_secrets(run, objects, files)
        apply_infra(run, objects)
        apply_bootstrap(run, objects)
        apply_services(run, objects)
        if opts.prune:
            prune_unrendered(run, objects)
        if opts.dry_run:
            return result
        result.gateway_url = exposed_gateway_url(cluster, run.values)
        if health_step is not None:
            check_health(run, health_step)
        if credentials_step is not None:
            make_credentials(run, credentials_step)
        return result
