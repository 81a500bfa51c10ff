"""Talking to the Container API within one deadline: each call retried with backoff while
its failure can pass, long-running operations followed to the end, clusters read and listed.
Progress goes through the caller's callback (`Waiting.progress`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from otactl.errors import GkeError, GkeNotFound, GkeUnreachable, WaitTimeout
from otactl.gke.errors import _calling, _one_line, _operation_error, _transient
from otactl.gke.spec import ClusterRef

if TYPE_CHECKING:
    from google.cloud.container_v1 import Cluster, ClusterManagerClient, Operation

T = TypeVar("T")

DEFAULT_TIMEOUT = 1800.0  # creating a cluster takes 5-15 minutes, deleting one a few
DEFAULT_POLL_INTERVAL = 5.0
# One HTTP request (not an operation) that hangs this long is a network problem.
REQUEST_TIMEOUT = 60.0
# Backoff between retries of a transient failure: doubling from FIRST_PAUSE, capped.
FIRST_PAUSE = 0.5
MAX_PAUSE = 30.0


@dataclass(frozen=True)
class Progress:
    """One look at a long-running operation (or at the cluster while it changes)."""

    ref: ClusterRef
    operation: str
    status: str
    detail: str
    elapsed: float


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class Waiting:
    """How to wait for an operation: deadline (seconds), poll interval, progress callback."""

    timeout: float = DEFAULT_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    progress: ProgressFn | None = None

    def report(self, progress: Progress) -> None:
        if self.progress is not None:
            self.progress(progress)


class _Clock:
    """One deadline shared by every request and poll of a command."""

    def __init__(self, wait: Waiting) -> None:
        self.wait = wait
        self.start = time.monotonic()
        self.end = self.start + wait.timeout

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self.remaining())))


def _call(
    ref: ClusterRef, client: ClusterManagerClient, clock: _Clock | None, fn: Callable[[], T]
) -> T:
    """One API call; a transient failure is retried with backoff until the clock's
    deadline (none: at once an error), then raised as it came. The calls pass retry=None:
    api_core's own retry (503 only, its own 20 s deadline) would not know this one."""
    attempt = 0
    while True:
        try:
            with _calling(ref, client):
                return fn()
        except GkeError as e:
            pause = min(FIRST_PAUSE * 2**attempt, MAX_PAUSE)
            if clock is None or not _transient(e.__cause__) or clock.remaining() <= pause:
                raise
            clock.wait.report(
                Progress(ref, "retry", "RETRYING", _one_line(str(e), 120), clock.elapsed())
            )
            clock.sleep(pause)
            attempt += 1


def _stage(op: Operation) -> str:
    """The stage an operation is in, from `progress.stages` (the API's own step names)."""
    from google.cloud.container_v1 import Operation

    for stage in op.progress.stages:
        if stage.status == Operation.Status.RUNNING:
            return stage.name
    return op.detail


def _follow(client: ClusterManagerClient, ref: ClusterRef, op: Operation, clock: _Clock) -> None:
    """Poll an operation until DONE; raise its error, or WaitTimeout at the deadline.

    The Container API offers no watch or blocking wait on operations, so this polls.
    """
    from google.cloud.container_v1 import Operation

    name = f"{ref.parent}/operations/{op.name}"
    while True:
        clock.wait.report(Progress(ref, op.name, op.status.name, _stage(op), clock.elapsed()))
        if op.status == Operation.Status.DONE:
            error = _operation_error(ref, op)
            if error is not None:
                raise error
            return
        if clock.remaining() <= 0:
            raise WaitTimeout(
                f"{ref}: operation {op.name} still {op.status.name} after "
                f"{clock.elapsed():.0f}s; it goes on in Google Cloud: run the command again "
                "to wait for it"
            )
        clock.sleep(clock.wait.poll_interval)
        op = _call(
            ref,
            client,
            clock,
            lambda: client.get_operation(name=name, retry=None, timeout=REQUEST_TIMEOUT),
        )


def _wait_resting(
    client: ClusterManagerClient, ref: ClusterRef, cluster: Cluster | None, clock: _Clock
) -> Cluster | None:
    """Wait while the cluster changes (PROVISIONING, RECONCILING, STOPPING) until it rests
    (RUNNING, DEGRADED, ERROR) or is gone (None), as Terraform does before a delete."""
    from google.cloud.container_v1 import Cluster

    busy = (Cluster.Status.PROVISIONING, Cluster.Status.RECONCILING, Cluster.Status.STOPPING)
    while cluster is not None and cluster.status in busy:
        clock.wait.report(
            Progress(ref, "cluster", cluster.status.name, cluster.status_message, clock.elapsed())
        )
        if clock.remaining() <= 0:
            raise WaitTimeout(
                f"{ref}: still {cluster.status.name} after {clock.elapsed():.0f}s; "
                "it goes on in Google Cloud: run the command again to wait for it"
            )
        clock.sleep(clock.wait.poll_interval)
        cluster = _find_cluster(client, ref, clock)
    return cluster


def get_cluster(
    client: ClusterManagerClient, ref: ClusterRef, wait: Waiting | None = None
) -> Cluster:
    """The cluster as the API describes it; GkeNotFound when there is none. With `wait`,
    transient failures are retried until its deadline."""
    clock = _Clock(wait) if wait is not None else None
    return _get(client, ref, clock)


def _get(client: ClusterManagerClient, ref: ClusterRef, clock: _Clock | None) -> Cluster:
    return _call(
        ref,
        client,
        clock,
        lambda: client.get_cluster(name=ref.path, retry=None, timeout=REQUEST_TIMEOUT),
    )


def _find_cluster(
    client: ClusterManagerClient, ref: ClusterRef, clock: _Clock | None
) -> Cluster | None:
    try:
        return _get(client, ref, clock)
    except GkeNotFound:
        return None


def list_clusters(
    client: ClusterManagerClient, project: str, location: str | None, wait: Waiting | None = None
) -> list[Cluster]:
    """The project's clusters in one location, or in all (`location` None: "-")."""
    ref = ClusterRef(project, location or "-", "*")
    clock = _Clock(wait or Waiting(timeout=120))
    parent = ref.parent
    answer = _call(
        ref,
        client,
        clock,
        lambda: client.list_clusters(parent=parent, retry=None, timeout=REQUEST_TIMEOUT),
    )
    if answer.missing_zones:
        raise GkeUnreachable(
            f"projects/{project}: GKE could not list the clusters of "
            f"{', '.join(answer.missing_zones)}; run the command again"
        )
    return sorted(answer.clusters, key=lambda c: (c.location, c.name))


def cluster_json(cluster: Cluster) -> dict[str, Any]:
    """The cluster as the API's JSON (camelCase), as `gcloud ... describe --format json`."""
    from google.cloud.container_v1 import Cluster

    return dict(json.loads(Cluster.to_json(cluster, use_integers_for_enums=False)))
