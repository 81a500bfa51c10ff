"""Waiting on objects with watches (not sleep loops): every wait has a deadline, reports each
state change as it happens, and when it ends badly says, per object, why."""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otactl import ready
from otactl.errors import ClusterUnreachable, OtactlError, WaitTimeout, WatchExpired
from otactl.retry import heartbeat_seconds

if TYPE_CHECKING:
    from otactl.kube import Cluster


# How long, after a deadline passed, the explanation of what is not ready may take.
EXPLAIN_SECONDS = 10.0


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


@dataclass(frozen=True)
class Waiting:
    """A heartbeat: nothing became ready for a while. What is still awaited, for how long,
    and whether the API server answers (a wait says so at least every heartbeat)."""

    phase: str
    pending: tuple[str, ...]
    waited: float
    unreachable_for: float | None
    seen_at: float

    def line(self) -> str:
        text = f"still waiting after {self.waited:.0f} s for " + ", ".join(self.pending)
        if self.unreachable_for is not None:
            text += f"; API server unreachable for {self.unreachable_for:.0f} s, retrying"
        return text


Progress = Callable[[Change | Waiting], None]


def _watch_kind(
    cluster: Cluster,
    kind: str,
    namespace: str,
    names: set[str],
    out: queue.Queue[Any],
    stop: threading.Event,
    deadline: float,
) -> None:
    """List, then watch, one kind; push (name, object) for the names wanted.

    Watches again from the last resourceVersion seen when a watch ends (the server's
    timeout, a quiet stream that a probe showed alive); lists again only after a 410 Gone.
    While the API server does not answer, tries again with backoff until the deadline (the
    cluster's `link` says so); any other error ends the wait."""
    rv = ""
    failures = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if not rv:
                    items, rv = cluster.list_objects(kind, namespace, deadline=deadline)
                    present = set()
                    for obj in items:
                        if obj["metadata"]["name"] in names:
                            present.add(obj["metadata"]["name"])
                            out.put((Target(kind, namespace, obj["metadata"]["name"]), obj))
                    for name in names - present:
                        out.put((Target(kind, namespace, name), None))
                remaining = deadline - time.monotonic()
                for etype, obj in cluster.watch(kind, namespace, rv, remaining):
                    if stop.is_set():
                        return
                    rv = obj.get("metadata", {}).get("resourceVersion") or rv
                    failures = 0
                    if etype == "BOOKMARK":
                        continue
                    name = obj.get("metadata", {}).get("name")
                    if name in names:
                        gone = etype == "DELETED"
                        out.put((Target(kind, namespace, name), None if gone else obj))
            except WatchExpired:
                rv = ""
            except ClusterUnreachable as e:
                if not e.transient or time.monotonic() >= deadline:
                    raise
                failures += 1
                stop.wait(min(0.25 * 2**failures, 5.0, max(0.0, deadline - time.monotonic())))
    except Exception as e:  # handed to the waiting thread, which raises it
        out.put((None, e))


def _events(
    cluster: Cluster, wanted: list[Target], deadline: float, tick: float
) -> Generator[tuple[Target, dict[str, Any] | None] | None, None, None]:
    """Every (target, object or None when absent) the watchers see, until the deadline, and
    None at least every `tick` seconds (so the waiting side can keep its heartbeat); one
    watcher thread per kind and namespace, stopped when the iteration ends."""
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
                target, obj = events.get(timeout=min(remaining, tick))
            except queue.Empty:
                yield None
                continue
            if target is None:
                raise obj
            yield target, obj
    finally:
        stop.set()


class _Heartbeat:
    """Says what is still awaited when nothing was reported for a heartbeat."""

    def __init__(
        self, cluster: Cluster, phase: str, progress: Progress | None, every: float | None
    ) -> None:
        self.cluster = cluster
        self.phase = phase
        self.progress = progress
        self.every = every if every is not None else heartbeat_seconds()
        self.start = self.last = time.monotonic()

    def reported(self) -> None:
        self.last = time.monotonic()

    def tick(self, pending: list[str]) -> None:
        now = time.monotonic()
        if self.progress is None or now - self.last < self.every:
            return
        self.last = now
        lost = self.cluster.link.unreachable_for()
        self.progress(Waiting(self.phase, tuple(pending), now - self.start, lost, time.time()))


def _unreachable(cluster: Cluster, phase: str, timeout: float, pending: list[str]) -> None:
    """At the deadline: when the API server is not answering, that is the failure (exit 4),
    not the objects that could not be seen becoming ready."""
    if cluster.link.unreachable_for() is None:
        return
    raise ClusterUnreachable(
        f"{cluster.link.message()}; {phase + ': ' if phase else ''}gave up after "
        f"{timeout:.0f}s waiting for {', '.join(pending)}"
    )


def wait_ready(
    cluster: Cluster,
    targets: Iterable[Target],
    timeout: float,
    progress: Progress | None = None,
    phase: str = "",
    heartbeat: float | None = None,
) -> dict[Target, float]:
    """Wait until every target is ready; returns when each was noticed ready (wall clock).
    Reports each change, and a `Waiting` heartbeat every `heartbeat` seconds (default
    HEARTBEAT) without one. Raises WaitTimeout (or JobFailed) explaining every object that
    is not ready, or ClusterUnreachable when the API server stopped answering."""
    wanted = list(targets)
    if not wanted:
        return {}
    deadline = time.monotonic() + timeout
    states: dict[Target, ready.State | None] = {t: None for t in wanted}
    noticed: dict[Target, float] = {}
    beat = _Heartbeat(cluster, phase, progress, heartbeat)

    def all_ready() -> bool:
        return all(s is not None and s.ready for s in states.values())

    def pending() -> list[str]:
        return [
            f"{t.kind} {t.name} ({s.detail if s else 'not seen yet'})"
            for t, s in states.items()
            if s is None or not s.ready
        ]

    with contextlib.closing(_events(cluster, wanted, deadline, min(beat.every, 1.0))) as stream:
        for item in stream:
            if item is None:
                beat.tick(pending())
                continue
            target, obj = item
            new = ready.state(obj) if obj is not None else ready.State(False, "not found")
            if new != states[target]:
                states[target] = new
                now = time.time()
                if new.ready:
                    noticed.setdefault(target, now)
                if progress:
                    progress(Change(target, new, now))
                    beat.reported()
            if new.failed:
                raise JobFailed(
                    f"{phase + ': ' if phase else ''}{target} {new.detail}"
                    + _why(cluster, target, obj)
                )
            if all_ready():
                return noticed
            beat.tick(pending())
    _unreachable(cluster, phase, timeout, pending())
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
    # A few seconds at most: the wait's deadline has passed already.
    until = time.monotonic() + EXPLAIN_SECONDS
    try:
        if obj is None:
            obj = cluster.get(target.kind, target.namespace, target.name, deadline=until)
        if obj is None:
            return " (the object does not exist)"
        labels = (obj.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None
        pods, _ = cluster.list_objects("Pod", target.namespace, selector, deadline=until)
    except OtactlError as e:
        return f" (could not look at its pods: {e})"
    if not pods:
        refused = _failed_creates(cluster, target, until)
        if refused:
            return f" (its pods are refused: {refused})"
        return " (no pods were created: check quotas and events)"
    reasons: list[str] = []
    for pod in pods:
        reasons += ready.pod_problems(pod)
        for container in ready.crash_looping(pod):
            tail = cluster.pod_log_tail(target.namespace, pod["metadata"]["name"], container)
            if tail:
                reasons.append(f"last log lines of {container}: " + " | ".join(tail.splitlines()))
    return f" ({'; '.join(reasons)})" if reasons else ""


def _failed_creates(cluster: Cluster, target: Target, until: float) -> str:
    """The controller's last FailedCreate event for the target (for a Deployment: its
    ReplicaSets'): why the API server refused its pods (PodSecurity, quota, ...)."""
    try:
        events, _ = cluster.list_objects(
            "Event", target.namespace, field_selector="reason=FailedCreate", deadline=until
        )
    except OtactlError:
        return ""
    ours = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("name") == target.name
        or (
            target.kind == "Deployment"
            and (e.get("involvedObject") or {}).get("kind") == "ReplicaSet"
            and e["involvedObject"].get("name", "").startswith(target.name + "-")
        )
    ]
    if not ours:
        return ""
    last = max(ours, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    message = str(last.get("message", ""))
    # "Error creating: pods ..." (ReplicaSet, Job), "create Pod x in StatefulSet y failed
    # error: pods ..." (StatefulSet): the API server's answer is the part from "pods".
    found = re.search(r'pods? "[^"]*" is forbidden: .*', message)
    return found.group(0) if found else message


def wait_deleted(
    cluster: Cluster,
    targets: Iterable[Target],
    timeout: float,
    progress: Progress | None = None,
    phase: str = "",
    heartbeat: float | None = None,
) -> None:
    """Wait until every target is gone (its finalizers done), with watches; a `Waiting`
    heartbeat as in `wait_ready`."""
    wanted = list(targets)
    if not wanted:
        return
    deadline = time.monotonic() + timeout
    present: dict[Target, bool] = {t: True for t in wanted}
    beat = _Heartbeat(cluster, phase, progress, heartbeat)

    def pending() -> list[str]:
        return [f"{t.kind} {t.name} (deleting)" for t, p in present.items() if p]

    with contextlib.closing(_events(cluster, wanted, deadline, min(beat.every, 1.0))) as stream:
        for item in stream:
            if item is not None:
                target, obj = item
                if present[target] and obj is None:
                    present[target] = False
                    if progress:
                        progress(Change(target, ready.State(True, "deleted"), time.time()))
                        beat.reported()
                if not any(present.values()):
                    return
            beat.tick(pending())
    _unreachable(cluster, phase, timeout, pending())
    left = ", ".join(str(t) for t, p in present.items() if p)
    raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for deletion of {left}")
