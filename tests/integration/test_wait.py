"""Waits on the real API server: the heartbeat holds when no event comes, and the
explanation at the deadline says why (no fault here: see test_faults.py for those)."""

from __future__ import annotations

import uuid

import pytest

from otactl import kube
from otactl.errors import WaitTimeout
from otactl.wait import Change, Target, Waiting, wait_ready

pytestmark = pytest.mark.integration

STUCK = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck}
spec:
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      nodeSelector: {no: such}
      containers: [{name: app, image: example.invalid/app:1}]
"""


def test_a_quiet_wait_keeps_reporting_then_explains(local_cluster) -> None:  # type: ignore[no-untyped-def]
    ns = f"wait-{uuid.uuid4().hex[:8]}"
    local_cluster.kubectl("create", "namespace", ns)
    try:
        # No node has this label: the pod stays Pending, and no event comes after that.
        local_cluster.kubectl("apply", "-n", ns, "-f", "-", input=STUCK)
        cluster = kube.connect(local_cluster.kubeconfig)
        seen: list[Change | Waiting] = []
        with pytest.raises(WaitTimeout) as caught:
            wait_ready(cluster, [Target("Deployment", ns, "stuck")], timeout=4,
                       progress=seen.append, phase="services", heartbeat=0.5)  # fmt: skip
    finally:
        local_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    beats = [e for e in seen if isinstance(e, Waiting)]
    assert isinstance(seen[0], Change) and len(beats) >= 2
    assert [b.waited for b in beats] == sorted(b.waited for b in beats)
    assert all(b.phase == "services" and b.unreachable_for is None for b in beats)
    assert beats[-1].line().startswith("still waiting after ")
    assert beats[-1].line().endswith(" for Deployment stuck (0/1 available)")
    message = str(caught.value)
    assert message.startswith("services: timed out after 4s; not ready: Deployment")
    assert "didn't match Pod's node affinity/selector" in message
