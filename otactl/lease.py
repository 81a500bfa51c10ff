"""One `up` or `down` at a time per installation: a Lease in its namespace.

helm refuses a second operation on a release while one is in progress; otactl does the same
with a `coordination.k8s.io/v1` Lease named `otactl` in the namespace. The holder renews it
while it runs and deletes it when it ends, and records who it is (host, pid, command, since
when), so a second run fails at once naming the first. A holder that is gone is taken over:
its lease expired (not renewed for `leaseDurationSeconds`), or it ran on this host and its
process is dead (an `up` killed with SIGKILL is replaced at once, not after a minute).

Two runs that race for a free or stale lease are told apart by the API server: creation is
refused for the second (409 AlreadyExists) and a take-over is a replace as of the
resourceVersion read (409 Conflict for the second).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otactl.errors import ClusterError, InstallationBusy
from otactl.locks import Holder

if TYPE_CHECKING:
    from otactl.kube import Cluster

NAME = "otactl"
HOLDER_ANNOTATION = "otactl.io/holder"
DURATION = 60  # seconds without renewal after which a lease is stale
RENEW_EVERY = 15.0
RELEASE_PATIENCE = 10.0  # an unreleased lease expires by itself: never hang on the way out


def _micro_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie does not: it is only waiting for
    its parent to read its exit status)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def _holder_of(lease: dict[str, Any]) -> Holder | None:
    annotations = lease.get("metadata", {}).get("annotations") or {}
    return Holder.from_json(annotations.get(HOLDER_ANNOTATION, ""))


def stale_reason(lease: dict[str, Any], now: dt.datetime) -> str | None:
    """Why the lease's holder is gone, or None while it may still be working."""
    spec = lease.get("spec") or {}
    if not spec.get("holderIdentity"):
        return "released"
    renewed = _parse_time(spec.get("renewTime")) or _parse_time(spec.get("acquireTime"))
    duration = int(spec.get("leaseDurationSeconds") or DURATION)
    if renewed is None or (now - renewed).total_seconds() > duration:
        return f"not renewed for over {duration} s"
    holder = _holder_of(lease)
    here = holder is not None and holder.host == socket.gethostname()
    if holder is not None and here and not _process_alive(holder.pid):
        return f"process {holder.pid} is gone"
    return None


class _Lease:
    def __init__(self, cluster: Cluster, namespace: str, me: Holder) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.me = me
        self.identity = f"{me.host}/{me.pid}"
        self.current: dict[str, Any] | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _object(self, base: dict[str, Any] | None, now: dt.datetime) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": NAME,
            "namespace": self.namespace,
            "labels": {"app.kubernetes.io/managed-by": "otactl"},
            "annotations": {HOLDER_ANNOTATION: self.me.to_json()},
        }
        if base is not None:
            meta["resourceVersion"] = base["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": DURATION,
                "acquireTime": _micro_time(now),
                "renewTime": _micro_time(now),
            },
        }

    def acquire(self, took_over: Callable[[str], None]) -> bool:
        """Take the lease (False when the namespace does not exist: nothing to lock)."""
        for _ in range(5):  # each turn is lost only to another run that just won a race
            now = dt.datetime.now(dt.UTC)
            found = self.cluster.get("Lease", self.namespace, NAME)
            if found is None:
                if self.cluster.get("Namespace", None, self.namespace) is None:
                    return False
                made = self.cluster.create(self._object(None, now))
                if made is not None:
                    self.current = made
                    return True
                continue
            why = stale_reason(found, now)
            if why is None:
                holder = _holder_of(found)
                who = (
                    holder.describe()
                    if holder
                    else found["spec"].get("holderIdentity", "another client")
                )
                raise InstallationBusy(
                    f"another operation is in progress on namespace {self.namespace}: {who} "
                    f"holds Lease {self.namespace}/{NAME}; wait for it to finish (a holder "
                    f"that stops is taken over once its lease expires, {DURATION} s)"
                )
            made = self.cluster.replace(self._object(found, now))
            if made is not None:
                holder = _holder_of(found)
                if why != "released" and holder is not None:
                    took_over(
                        f"took over Lease {self.namespace}/{NAME} from {holder.describe()}: {why}"
                    )
                self.current = made
                return True
        raise InstallationBusy(
            f"Lease {self.namespace}/{NAME} keeps changing hands: other otactl runs are "
            "starting on this namespace; try again when they are done"
        )

    def _renew(self) -> None:
        while not self.stop.wait(RENEW_EVERY):
            current = self.current
            if current is None:
                return
            obj = json.loads(json.dumps(current))
            obj["spec"]["renewTime"] = _micro_time(dt.datetime.now(dt.UTC))
            with contextlib.suppress(ClusterError):  # the next turn tries again
                renewed = self.cluster.replace(obj, deadline=time.monotonic() + RENEW_EVERY)
                if renewed is None:
                    return  # someone took it over: nothing left to renew
                self.current = renewed

    def start_renewing(self) -> None:
        self.thread = threading.Thread(target=self._renew, name="otactl-lease", daemon=True)
        self.thread.start()

    def release(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=1.0)  # a renewal in flight cannot write it back anyway
        if self.current is None or self.cluster.link.unreachable_for() is not None:
            return  # an API server that does not answer would only delay the exit
        with contextlib.suppress(ClusterError):  # unreleased, it expires by itself
            end = time.monotonic() + RELEASE_PATIENCE
            found = self.cluster.get("Lease", self.namespace, NAME, deadline=end)
            if found is not None and found["spec"].get("holderIdentity") == self.identity:
                self.cluster.delete(
                    "Lease", self.namespace, NAME,
                    resource_version=found["metadata"]["resourceVersion"], deadline=end,
                )  # fmt: skip


@contextlib.contextmanager
def holding(
    cluster: Cluster, namespace: str, took_over: Callable[[str], None] = lambda _: None
) -> Iterator[None]:
    """Hold the installation's Lease while the block runs; raise InstallationBusy (exit
    14) at once when another run holds it. A namespace that does not exist is not locked
    (there is nothing in it to protect)."""
    lease = _Lease(cluster, namespace, Holder.me())
    if not lease.acquire(took_over):
        yield
        return
    lease.start_renewing()
    try:
        yield
    finally:
        lease.release()
