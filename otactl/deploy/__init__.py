"""The ordered plan of `otactl up` and `otactl down`, and what `status` reports.

Jobs, one module each: `up` (the plan, run in order), `steps` (its named phases), `run`
(options, result, events and deadline one run shares), `objects` (the Secrets otactl makes,
labels, changes to rendered objects), `apply` (concurrent server-side apply and dry-run
diffs), `cluster_state` (what the cluster already holds and exposes), `down` (down and
prune), `status`."""

from otactl.deploy.apply import _Applier
from otactl.deploy.cluster_state import (
    exposed_gateway_url,
    exposed_reverse_proxy_port,
    publish_credentials,
    reconcile_build_tools_ca,
    reconcile_pki,
    with_apiserver_cidrs,
)
from otactl.deploy.down import down, prune
from otactl.deploy.objects import (
    BUILD_TOOLS_SECRET,
    CREATED_NAMESPACE,
    HEALTH_GATES,
    MANAGED_LABELS,
    OWNED_KINDS,
    build_tools_secret,
    gateway_tls_secret,
    secret_object,
)
from otactl.deploy.run import Event, Phase, Report, UpOptions, UpResult, _quiet, plural
from otactl.deploy.status import ObjectStatus, status
from otactl.deploy.up import up

__all__ = [
    "BUILD_TOOLS_SECRET",
    "CREATED_NAMESPACE",
    "HEALTH_GATES",
    "MANAGED_LABELS",
    "OWNED_KINDS",
    "Event",
    "ObjectStatus",
    "Phase",
    "Report",
    "UpOptions",
    "UpResult",
    "_Applier",
    "_quiet",
    "build_tools_secret",
    "down",
    "exposed_gateway_url",
    "exposed_reverse_proxy_port",
    "gateway_tls_secret",
    "plural",
    "prune",
    "publish_credentials",
    "reconcile_build_tools_ca",
    "reconcile_pki",
    "secret_object",
    "status",
    "up",
    "with_apiserver_cidrs",
]
