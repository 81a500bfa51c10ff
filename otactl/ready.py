"""Readiness per kind, and why an object is not ready, from plain API objects (dicts).

Like helm's ready.go: a Deployment is ready when the controller has seen its latest spec
and every replica is updated and available; a StatefulSet when every replica is ready on
the current revision; a Job when it succeeded; a LoadBalancer Service when an address is
assigned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class State:
    ready: bool
    detail: str
    failed: bool = False  # will not become ready by waiting (failed Job)


def _cond(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def state(obj: dict[str, Any]) -> State:
    """Is this object ready, and a short word on where it stands."""
    kind = obj.get("kind")
    spec, status = obj.get("spec", {}), obj.get("status", {}) or {}
    generation = obj.get("metadata", {}).get("generation", 0)
    if kind == "Deployment":
        want = spec.get("replicas", 1)
        if status.get("observedGeneration", 0) < generation:
            return State(False, "waiting for the controller")
        updated = status.get("updatedReplicas", 0)
        available = status.get("availableReplicas", 0)
        total = status.get("replicas", 0)
        ok = updated >= want and available >= want and total <= want
        progressing = _cond(obj, "Progressing")
        if not ok and progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
            return State(False, "progress deadline exceeded")
        # Not ready with every replica available: a rollout is under way (old replicas
        # still serve); say that rather than "1/1 available".
        if not ok and updated < want:
            return State(False, f"rolling out: {updated}/{want} updated, {available} available")
        if not ok and total > want:
            return State(
                False,
                f"rolling out: {available}/{want} available, {total - want} old still running",
            )
        return State(ok, f"{available}/{want} available")
    if kind == "StatefulSet":
        want = spec.get("replicas", 1)
        if status.get("observedGeneration", 0) < generation:
            return State(False, "waiting for the controller")
        ready = status.get("readyReplicas", 0)
        same_revision = status.get("currentRevision") == status.get("updateRevision")
        updated = status.get("updatedReplicas", 0) >= want
        ok = ready >= want and (same_revision or updated)
        if not ok and ready >= want:
            done = status.get("updatedReplicas", 0)
            return State(False, f"rolling out: {done}/{want} updated, {ready} ready")
        return State(ok, f"{ready}/{want} ready")
    if kind == "Job":
        complete = _cond(obj, "Complete")
        if complete and complete.get("status") == "True":
            return State(True, "complete")
        failed = _cond(obj, "Failed")
        if failed and failed.get("status") == "True":
            return State(False, f"failed: {failed.get('reason')}: {failed.get('message')}", True)
        return State(False, f"{status.get('active', 0)} running, {status.get('failed', 0)} failed")
    if kind == "Service":
        if spec.get("type") != "LoadBalancer":
            return State(True, spec.get("type", "ClusterIP"))
        ingress = status.get("loadBalancer", {}).get("ingress") or []
        if ingress:
            first = ingress[0]
            return State(True, first.get("ip") or first.get("hostname") or "assigned")
        return State(False, "waiting for a load balancer address")
    return State(True, "present")


def pod_problems(pod: dict[str, Any]) -> list[str]:
    """Why a pod is not ready, in the words a user can act on."""
    name = pod["metadata"]["name"]
    status = pod.get("status", {}) or {}
    problems = []
    scheduled = _cond(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        reason = scheduled.get("reason", "Unschedulable")
        problems.append(f"pod {name} {reason.lower()}: {scheduled.get('message', '')}".strip())
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in {"ImagePullBackOff", "ErrImagePull", "InvalidImageName"}:
            problems.append(
                f"pod {name} container {cs['name']} cannot pull its image: "
                f"{waiting.get('message', reason)}"
            )
        elif reason == "CrashLoopBackOff":
            last = (cs.get("lastState") or {}).get("terminated") or {}
            code = last.get("exitCode")
            problems.append(
                f"pod {name} container {cs['name']} is crash-looping "
                f"(restarts {cs.get('restartCount', 0)}, last exit code {code})"
                + _termination_message(last)
            )
        elif reason in {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}:
            problems.append(
                f"pod {name} container {cs['name']}: {reason}: {waiting.get('message')}"
            )
        elif not cs.get("ready") and (cs.get("state") or {}).get("running"):
            last = (cs.get("lastState") or {}).get("terminated") or {}
            problems.append(
                f"pod {name} container {cs['name']} is running but not ready"
                + _termination_message(last)
            )
    if not problems and status.get("phase") == "Pending" and scheduled is None:
        problems.append(f"pod {name} is pending (not scheduled yet)")
    return problems


def _termination_message(terminated: dict[str, Any], limit: int = 600) -> str:
    """What the container left in its termination message (its own, or the kubelet's copy
    of its last log lines with terminationMessagePolicy FallbackToLogsOnError)."""
    text = " ".join(str(terminated.get("message") or "").split())
    if not text:
        return ""
    return ": " + (text if len(text) <= limit else text[: limit - 3] + "...")


def crash_looping(pod: dict[str, Any]) -> list[str]:
    """Names of the containers of `pod` in CrashLoopBackOff (their logs explain)."""
    statuses = (pod.get("status", {}) or {}).get("containerStatuses") or []
    return [
        cs["name"]
        for cs in statuses
        if ((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
    ]
