"""Benchmark of `otactl up` on the local simulated cluster (not a test: it prints figures).

In one session, on one cluster:
- notice delay: for every workload `up` waits on, the time between the API server
  recording the status write that made it ready (audit log, microseconds) and otactl's
  watch noticing it; against a baseline that polls every 5 s as the old script did
  (`kubectl get | jq` in a loop), run at the same time on the same objects;
- total `up` from nothing, second `up` (in-process and as the CLI a user runs);
- device registrations per second through the service proxy (one connection pool): the
  way otactl registers (a `deviceId` look-up, then the PUT, on a bounded pool of threads)
  against the baseline of one PUT per device in turn (the way before issue 9), into two
  tenants of the same device-registry, in the same run.

Targets (issues 5 and 9): median notice delay < 0.5 s, second `up` < 5 s, >= 200
registrations/s with the look-up.

Usage: .venv/bin/python bench/bench_deploy.py [--devices N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from otactl import deploy, kube, localcluster, ready, registry, retry
from otactl.config import load_values

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: RequestResponse
  verbs: ["update", "patch"]
  resources:
  - group: "apps"
    resources: ["deployments/status", "statefulsets/status"]
  - group: "batch"
    resources: ["jobs/status"]
- level: None
"""
WAITED_KINDS = ("Deployment", "StatefulSet", "Job")
POLL_SECONDS = 5.0


class Poller(threading.Thread):
    """The old script's way: list every 5 s, note when each object is first seen ready."""

    def __init__(self, cluster: kube.Cluster, namespace: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.namespace = cluster, namespace
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for kind in WAITED_KINDS:
                items, _ = self.cluster.list_objects(kind, self.namespace)
                now = time.time()
                for obj in items:
                    key = f"{kind} {self.namespace}/{obj['metadata']['name']}"
                    if key not in self.seen and ready.state(obj).ready:
                        self.seen[key] = now
            self.stop.wait(POLL_SECONDS)


def ready_times(audit_log: Path, namespace: str) -> dict[str, float]:
    """First status write that made each object ready, from the API server's audit log."""
    first: dict[str, float] = {}
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        obj = event.get("responseObject") or {}
        ref = event.get("objectRef") or {}
        if ref.get("namespace") != namespace or event.get("stage") != "ResponseComplete":
            continue
        if obj.get("kind") not in WAITED_KINDS or not ready.state(obj).ready:
            continue
        key = f"{obj['kind']} {namespace}/{obj['metadata']['name']}"
        stamp = dt.datetime.fromisoformat(event["stageTimestamp"].replace("Z", "+00:00"))
        first.setdefault(key, stamp.timestamp())
    return first


def delays(noticed: dict[str, float], truth: dict[str, float]) -> list[float]:
    return [noticed[k] - truth[k] for k in truth if k in noticed]


def describe(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"median {statistics.median(values):.3f} s, worst {max(values):.3f} s "
        f"({len(values)} objects)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=300)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="otactl-bench-"))
    policy = work / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    state_dir = work / "generated" / "local"
    opts = localcluster.ClusterOptions(
        state_dir=state_dir, api_port=0, control_port=0, audit_policy=policy
    )
    info = localcluster.up(opts)
    try:
        run(info, work, args.devices)
    finally:
        localcluster.down(state_dir)


def run(info: localcluster.ClusterInfo, work: Path, devices: int) -> None:
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    generated = work / "generated"
    values = load_values(sets=[f"namespace={namespace}", f"tenant={namespace}"])
    cluster = kube.connect(Path(info.kubeconfig))
    caller = cluster.service_caller(namespace)

    from otactl import health

    def health_step(services: tuple[str, ...], timeout: float) -> None:
        health.wait_healthy(caller, services, timeout=timeout)

    def credentials_step(url: str, timeout: float) -> Path:
        server_dir = generated / values.server_name
        return deploy.publish_credentials(cluster, values, server_dir, url, timeout=timeout).path

    poller = Poller(cluster, namespace)
    poller.start()
    started = time.monotonic()
    first = deploy.up(
        cluster, values, generated, deploy.UpOptions(timeout=600), deploy._quiet,
        credentials_step=credentials_step, health_step=health_step,
    )  # fmt: skip
    first_up = time.monotonic() - started
    # Let the poller finish its round so it sees every object at least once.
    deadline = time.monotonic() + 2 * POLL_SECONDS
    while len(poller.seen) < len(first.noticed) and time.monotonic() < deadline:
        time.sleep(0.1)
    poller.stop.set()

    truth = ready_times(Path(info.state_dir) / "logs" / "audit.log", namespace)
    watch_delays = delays(first.noticed, truth)
    poll_delays = delays(poller.seen, truth)

    started = time.monotonic()
    second = deploy.up(
        cluster, values, generated, deploy.UpOptions(timeout=120), deploy._quiet,
        credentials_step=credentials_step, health_step=health_step,
    )  # fmt: skip
    second_up = time.monotonic() - started
    assert second.changed == [], second.changed

    cli = [sys.executable, "-m", "otactl", "--generated", str(generated), "up",
           "--kubeconfig", info.kubeconfig, "--namespace", namespace,
           "--set", f"tenant={namespace}"]  # fmt: skip
    started = time.monotonic()
    subprocess.run(cli, check=True, capture_output=True)
    second_cli = time.monotonic() - started

    # Registrations: bundles first (not timed), one set for each way (a uuid is unique in
    # device-registry across tenants), then each way on the same connection pool.
    from otactl.pki import ServerFiles, load_certs

    server_dir = generated / values.server_name
    subprocess.run(
        [sys.executable, "-m", "otactl", "--generated", str(generated), "new-device",
         "--count", str(2 * devices), "--prefix", "bench", "--no-register", "-o", "json"],
        check=True, capture_output=True,
    )  # fmt: skip
    bundles = [p for p in ServerFiles(server_dir).devices.iterdir() if (p / "client.pem").exists()]
    made = []
    for path in bundles:
        pem = (path / "client.pem").read_bytes()
        cn = load_certs(path / "client.pem")[0].subject.rfc4514_string().split("=", 1)[1]
        made.append((cn, pem))
    sets = {"before": made[:devices], "after": made[devices:]}

    def baseline(tenant: str) -> None:
        """One PUT per device, one after the other: registration before issue 9."""
        for cn, pem in sets["before"]:
            body = json.dumps({"uuid": cn, "deviceId": cn, "deviceName": cn,
                               "deviceType": "Other", "credentials": pem.decode(),
                               "credentialsType": "PEM"}).encode()  # fmt: skip
            retry.call(caller, "device-registry", "PUT", "/api/v1/devices", accept={200},
                       deadline=retry.Deadline(60), body=body,
                       headers={"x-ats-namespace": tenant,
                                "Content-Type": "application/json"})  # fmt: skip

    def otactl_way(tenant: str) -> None:
        with registry.Registrar(caller, tenant) as registrar:
            for cn, pem in sets["after"]:
                registrar.submit(cn, cn, cn, pem)
            assert registrar.finish() == devices

    rates = {}
    for label, register in (("before", baseline), ("after", otactl_way)):
        started = time.monotonic()
        register(f"{namespace}-{label}")
        seconds = time.monotonic() - started
        rates[label] = (seconds, devices / seconds)

    median_watch = statistics.median(watch_delays) if watch_delays else float("nan")
    median_poll = statistics.median(poll_delays) if poll_delays else float("nan")
    print("otactl up on the local simulated cluster (one session, one cluster)")
    print(f"  notice delay, otactl watches:  {describe(watch_delays)}")
    print(f"  notice delay, 5 s polling:     {describe(poll_delays)}")
    print(f"  median ratio polling/watch:    {median_poll / median_watch:.1f}x")
    print(f"  first up from nothing:         {first_up:.2f} s")
    print(f"  second up (in process):        {second_up:.2f} s, {second.unchanged} unchanged")
    print(f"  second up (CLI, cold start):   {second_cli:.2f} s")
    for label, what in (("before", "one PUT after the other"),
                        ("after", "deviceId look-up + PUT, pool")):  # fmt: skip
        seconds, per_second = rates[label]
        print(f"  registrations {label:<6} ({what}): {devices} in {seconds:.2f} s = "
              f"{per_second:.0f}/s")  # fmt: skip
    print(f"  registrations after/before:    {rates['after'][1] / rates['before'][1]:.2f}x")
    print("targets: median notice < 0.5 s, second up < 5 s, >= 200 registrations/s (after)")


if __name__ == "__main__":
    main()
