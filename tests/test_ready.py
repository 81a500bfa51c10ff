"""Readiness per kind (ready.state) and the pod explanations (ready.pod_problems), on objects
shaped as the API server returns them (the fields helm's ready.go reads)."""

from __future__ import annotations

from typing import Any

import pytest

from otactl import ready


def deployment(
    replicas: int = 2, generation: int = 3, observed: int = 3, **status: Any
) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "director", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed, **status},
    }


@pytest.mark.parametrize(
    ("obj", "ready_", "detail"),
    [
        (deployment(replicas=2, updatedReplicas=2, availableReplicas=2, replicas_=2), True, "2/2"),
        # the controller has not seen the latest spec: old replicas may all be available
        (deployment(observed=2, updatedReplicas=2, availableReplicas=2), False, "controller"),
        # a rollout in progress: available but not all updated (never "2/2 available" for
        # something not ready)
        (
            deployment(updatedReplicas=1, availableReplicas=2),
            False,
            "rolling out: 1/2 updated, 2 available",
        ),
        # updated but not available yet
        (deployment(updatedReplicas=2, availableReplicas=1), False, "1/2 available"),
    ],
)
def test_deployment(obj: dict[str, Any], ready_: bool, detail: str) -> None:
    if "replicas_" in obj["status"]:
        obj["status"]["replicas"] = obj["status"].pop("replicas_")
    got = ready.state(obj)
    assert got.ready is ready_ and detail in got.detail and not got.failed


def test_deployment_with_old_pods_still_terminating_is_not_ready() -> None:
    obj = deployment(updatedReplicas=2, availableReplicas=2)
    obj["status"]["replicas"] = 3  # a surge pod of the old ReplicaSet is still there
    assert ready.state(obj) == ready.State(False, "rolling out: 2/2 available, 1 old still running")


def test_deployment_past_its_progress_deadline_says_so() -> None:
    obj = deployment(updatedReplicas=1, availableReplicas=1)
    obj["status"]["conditions"] = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    ]
    assert ready.state(obj) == ready.State(False, "progress deadline exceeded")


def statefulset(**status: Any) -> dict[str, Any]:
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "kafka", "generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, **status},
    }


def test_statefulset() -> None:
    same = {"currentRevision": "kafka-1", "updateRevision": "kafka-1"}
    assert ready.state(statefulset(readyReplicas=1, **same)) == ready.State(True, "1/1 ready")
    assert not ready.state(statefulset(readyReplicas=0, **same)).ready
    # ready, but on the old revision while the update rolls
    rolling = {"currentRevision": "kafka-1", "updateRevision": "kafka-2", "updatedReplicas": 0}
    assert ready.state(statefulset(readyReplicas=1, **rolling)) == ready.State(
        False, "rolling out: 0/1 updated, 1 ready"
    )
    # the rollout finished (the controller moves currentRevision later)
    done = {"currentRevision": "kafka-1", "updateRevision": "kafka-2", "updatedReplicas": 1}
    assert ready.state(statefulset(readyReplicas=1, **done)).ready
    stale = statefulset(readyReplicas=1, **same)
    stale["metadata"]["generation"] = 2
    assert ready.state(stale) == ready.State(False, "waiting for the controller")


def job(conditions: list[dict[str, str]], **status: Any) -> dict[str, Any]:
    return {
        "kind": "Job",
        "metadata": {"name": "db-bootstrap"},
        "status": {"conditions": conditions, **status},
    }


def test_job() -> None:
    assert ready.state(job([{"type": "Complete", "status": "True"}])) == ready.State(
        True, "complete"
    )
    running = ready.state(job([], active=1, failed=2))
    assert running == ready.State(False, "1 running, 2 failed")
    failed = ready.state(
        job(
            [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
            failed=7,
        )
    )
    assert failed.failed and not failed.ready  # waiting longer will not help
    assert failed.detail == (
        "failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
    )


def test_services() -> None:
    cluster_ip = {"kind": "Service", "spec": {"type": "ClusterIP"}, "status": {}}
    assert ready.state(cluster_ip) == ready.State(True, "ClusterIP")
    node_port = {"kind": "Service", "spec": {"type": "NodePort"}}
    assert ready.state(node_port).ready
    lb = {"kind": "Service", "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {}}}
    assert ready.state(lb) == ready.State(False, "waiting for a load balancer address")
    lb["status"]["loadBalancer"]["ingress"] = [{"hostname": "lb.example.com"}]
    assert ready.state(lb) == ready.State(True, "lb.example.com")
    lb["status"]["loadBalancer"]["ingress"] = [{"ip": "192.0.2.7"}]
    assert ready.state(lb) == ready.State(True, "192.0.2.7")


def test_other_kinds_are_ready_once_they_exist() -> None:
    assert ready.state({"kind": "ConfigMap", "metadata": {"name": "x"}}).ready


def pod(*statuses: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "director-7d9f-abcde"},
        "status": {"containerStatuses": list(statuses), **status},
    }


def test_pod_problems_in_words_a_user_can_act_on() -> None:
    pull = {
        "name": "director",
        "ready": False,
        "state": {"waiting": {"reason": "ImagePullBackOff",
                              "message": 'Back-off pulling image "x/director:nope"'}},
    }  # fmt: skip
    assert ready.pod_problems(pod(pull)) == [
        "pod director-7d9f-abcde container director cannot pull its image: "
        'Back-off pulling image "x/director:nope"'
    ]
    crash = {
        "name": "director",
        "ready": False,
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 137}},
    }
    assert ready.pod_problems(pod(crash)) == [
        "pod director-7d9f-abcde container director is crash-looping "
        "(restarts 4, last exit code 137)"
    ]
    assert ready.crash_looping(pod(crash, pull | {"name": "sidecar"})) == ["director"]
    unschedulable = pod(
        phase="Pending",
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/2 nodes are available: 2 Insufficient memory."}],
    )  # fmt: skip
    assert ready.pod_problems(unschedulable) == [
        "pod director-7d9f-abcde unschedulable: 0/2 nodes are available: 2 Insufficient memory."
    ]
    assert ready.pod_problems(pod(phase="Pending")) == [
        "pod director-7d9f-abcde is pending (not scheduled yet)"
    ]
    started = {"running": {"startedAt": "2026-11-30T09:00:00Z"}}
    not_ready = {"name": "director", "ready": False, "state": started}
    assert ready.pod_problems(pod(not_ready)) == [
        "pod director-7d9f-abcde container director is running but not ready"
    ]
    assert ready.pod_problems(pod(not_ready | {"ready": True}, phase="Running")) == []
