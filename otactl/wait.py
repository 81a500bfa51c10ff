"""Waiting on objects with watches (not sleep loops): every wait has a deadline, reports each
state change as it happens, and when it ends badly says, per object, why."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otactl import ready
from otactl.errors import ClusterError, OtactlError, WaitTimeout

if TYPE_CHECKING:
    from otactl.kube import Cluster


@dataclass(frozen=True)
class Target:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Change:
    """An object's state as otactl saw it change, and when (wall clock)."""

    target: Target
    state: ready.State
    seen_at: float


class JobFailed(OtactlError):
    exit_code = 1


Progress = Callable[[Change], None]


def _watch_kind(
    cluster: Cluster,
    kind: str,
    namespace: str,
    names: set[str],
    out: queue.Queue[Any],
    stop: threading.Event,
    deadline: float,
) -> None:
    """List, then watch, one kind; push (name, object) for the names wanted. Re-lists when
    the watch ends early or its resourceVersion expired (410)."""
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            items, rv = cluster.list_objects(kind, namespace)
            present = set()
            for obj in items:
                if obj["metadata"]["name"] in names:
                    present.add(obj["metadata"]["name"])
                    out.put((Target(kind, namespace, obj["metadata"]["name"]), obj))
            for name in names - present:
                out.put((Target(kind, namespace, name), None))
            remaining = deadline - time.monotonic()
            try:
                for etype, obj in cluster.watch(kind, namespace, rv, min(remaining, 300)):
                    if stop.is_set():
                        return
                    if etype == "BOOKMARK":
                        continue
                    name = obj.get("metadata", {}).get("name")
                    if name in names:
                        gone = etype == "DELETED"
                        out.put((Target(kind, namespace, name), None if gone else obj))
            except ClusterError as e:
                if " 410 " not in f" {e} ":
                    raise
    except Exception as e:  # handed to the waiting thread, which raises it
        out.put((None, e))


def _events(
    cluster: Cluster, wanted: list[Target], deadline: float
) -> Generator[tuple[Target, dict[str, Any] | None], None, None]:
    """Every (target, object or None when absent) the watchers see, until the deadline;
    one watcher thread per kind and namespace, stopped when the iteration ends."""
    by_kind: dict[tuple[str, str], set[str]] = {}
    for t in wanted:
        by_kind.setdefault((t.kind, t.namespace), set()).add(t.name)
    events: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    for (kind, ns), names in by_kind.items():
        threading.Thread(
            target=_watch_kind,
            args=(cluster, kind, ns, names, events, stop, deadline),
            daemon=True,
            name=f"watch-{kind}",
        ).start()
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                target, obj = events.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if target is None:
                raise obj
            yield target, obj
    finally:
        stop.set()


def wait_ready(
    cluster: Cluster,
    targets: Iterable[Target],
    timeout: float,
    progress: Progress | None = None,
    phase: str = "",
) -> dict[Target, float]:
    """Wait until every target is ready; returns when each was noticed ready (wall clock).
    Raises WaitTimeout (or JobFailed) explaining every object that is not ready."""
    wanted = list(targets)
    if not wanted:
        return {}
    deadline = time.monotonic() + timeout
    states: dict[Target, ready.State | None] = {t: None for t in wanted}
    noticed: dict[Target, float] = {}

    def all_ready() -> bool:
        return all(s is not None and s.ready for s in states.values())

    with contextlib.closing(_events(cluster, wanted, deadline)) as stream:
        for target, obj in stream:
            new = ready.state(obj) if obj is not None else ready.State(False, "not found")
            if new != states[target]:
                states[target] = new
                now = time.time()
                if new.ready:
                    noticed.setdefault(target, now)
                if progress:
                    progress(Change(target, new, now))
            if new.failed:
                raise JobFailed(
                    f"{phase + ': ' if phase else ''}{target} {new.detail}"
                    + _why(cluster, target, obj)
                )
            if all_ready():
                return noticed
    not_ready = [t for t, s in states.items() if s is None or not s.ready]
    lines = [
        f"{t}: {states[t].detail if states[t] else 'not found'}{_why(cluster, t, None)}"  # type: ignore[union-attr]
        for t in not_ready
    ]
    raise WaitTimeout(
        f"{phase + ': ' if phase else ''}timed out after {timeout:.0f}s; not ready: "
        + "; ".join(lines)
    )


def _why(cluster: Cluster, target: Target, obj: dict[str, Any] | None) -> str:
    """Reasons from the target's pods: scheduler message, image pull, crash loop + logs."""
    if target.kind not in {"Deployment", "StatefulSet", "Job"}:
        return ""
    try:
        if obj is None:
            obj = cluster.get(target.kind, target.namespace, target.name)
        if obj is None:
            return " (the object does not exist)"
        labels = (obj.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None
        pods, _ = cluster.list_objects("Pod", target.namespace, selector)
    except OtactlError as e:
        return f" (could not look at its pods: {e})"
    if not pods:
        return " (no pods were created: check quotas and events)"
    reasons: list[str] = []
    for pod in pods:
        reasons += ready.pod_problems(pod)
        for container in ready.crash_looping(pod):
            tail = cluster.pod_log_tail(target.namespace, pod["metadata"]["name"], container)
            if tail:
                reasons.append(f"last log lines of {container}: " + " | ".join(tail.splitlines()))
    return f" ({'; '.join(reasons)})" if reasons else ""


def wait_deleted(
    cluster: Cluster, targets: Iterable[Target], timeout: float, progress: Progress | None = None
) -> None:
    """Wait until every target is gone (its finalizers done), with watches."""
    wanted = list(targets)
    if not wanted:
        return
    deadline = time.monotonic() + timeout
    present: dict[Target, bool] = {t: True for t in wanted}
    with contextlib.closing(_events(cluster, wanted, deadline)) as stream:
        for target, obj in stream:
            if present[target] and obj is None:
                present[target] = False
                if progress:
                    progress(Change(target, ready.State(True, "deleted"), time.time()))
            if not any(present.values()):
                return
    left = ", ".join(str(t) for t, p in present.items() if p)
    raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for deletion of {left}")
