"""The API client's retry policy (otactl.kube.Cluster) against a scripted HTTP server.

The real API server cannot be made to answer 429 or 502 on demand, nor to reset a
connection mid-request, so these cases are scripted here at the HTTP level; how otactl
copes with a real API server that is frozen, slow or restarting is in
tests/integration/test_faults.py."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from otactl import kube
from otactl.errors import ClusterError, ClusterForbidden, ClusterUnreachable, WatchExpired

# Monkeypatched where they are read: the submodules of otactl.kube.
from otactl.kube import cluster as kube_cluster
from otactl.kube import connection as kube_connection
from otactl.kube import link as kube_link

CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "c", "namespace": "ns"},
    "data": {"a": "b"},
}


def status_body(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "code": code}  # fmt: skip


class Script:
    """What the server does for each request, in order (the last step repeats):
    (status, body, headers), "reset" (close without an answer), "silent" (never answer),
    or ("watch", [events...], then) for a watch stream followed by `then` ("end"/"silent")."""

    def __init__(self) -> None:
        self.steps: list[Any] = []
        self.seen: list[str] = []
        self.release = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script: Script

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        script = self.script
        script.seen.append(f"{self.command} {self.path.split('?')[0]}")
        step = script.steps.pop(0) if len(script.steps) > 1 else script.steps[0]
        if step == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if step == "silent":
            script.release.wait(30)
            self.close_connection = True
            return
        if step[0] == "watch":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")  # as the API server streams
            self.end_headers()
            for event in step[1]:
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            if step[2] == "silent":
                script.release.wait(30)
            else:
                self.wfile.write(b"0\r\n\r\n")
            self.close_connection = True
            return
        status, body, headers = step
        data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_DELETE = _answer


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[kube.Cluster, Script, list[float], list[str]]]:
    """A Cluster talking to the scripted server; its pauses and notices are recorded."""
    script = Script()
    handler = type("H", (Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "t", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
    }  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    cluster = kube.connect(path)
    pauses: list[float] = []
    notices: list[str] = []
    cluster.sleep = pauses.append
    cluster.on_notice(notices.append)
    try:
        yield cluster, script, pauses, notices
    finally:
        script.release.set()
        server.shutdown()
        server.server_close()


def ok(body: Any = None) -> tuple[int, Any, dict[str, str]]:
    return (200, body if body is not None else CONFIGMAP, {})


def test_throttling_and_server_errors_are_retried_with_retry_after_honoured(api) -> None:  # type: ignore[no-untyped-def]
    cluster, script, pauses, _ = api
    script.steps = [
        (429, status_body(429, "too many requests"), {"Retry-After": "3"}),
        (500, status_body(500, "etcdserver: leader changed"), {}),
        (502, {}, {}), (503, {}, {}), (504, {}, {}),
        "reset",
        ok(),
    ]  # fmt: skip
    with cluster.patience(time.monotonic() + 60):
        assert cluster.apply(dict(CONFIGMAP))["data"] == {"a": "b"}
    assert script.seen == ["PATCH /api/v1/namespaces/ns/configmaps/c"] * 7
    assert pauses[0] == 3  # the server's Retry-After, not the backoff
    assert pauses[1:] == [0.4, 0.8, 1.6, 3.2, 5.0]  # exponential, capped


def test_a_cluster_ip_allocation_hiccup_is_retried_but_a_taken_ip_is_not(api) -> None:  # type: ignore[no-untyped-def]
    # kubernetes/kubernetes#118921: a passing allocation failure comes back as 422 Invalid.
    cluster, script, pauses, _ = api
    hiccup = status_body(
        422,
        'Service "s" is invalid: spec.clusterIPs: Invalid value: [""]: '
        'failed to allocate IP: Post "https://[::1]:6443/apis/networking.k8s.io'
        '/v1/ipaddresses": dial tcp [::1]:6443: connect: connection refused',
    )
    taken = status_body(422, 'Service "s" is invalid: spec.clusterIPs: Invalid value: '
                        '["10.96.0.9"]: failed to allocate IP 10.96.0.9: provided IP is already '
                        "allocated")  # fmt: skip
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "ns"}}
    script.steps = [(422, hiccup, {}), ok(service)]
    with cluster.patience(time.monotonic() + 60):
        cluster.apply(dict(service))
    assert len(script.seen) == 2 and len(pauses) == 1
    script.steps = [(422, taken, {}), ok(service)]
    with cluster.patience(time.monotonic() + 60), pytest.raises(ClusterError, match="already"):
        cluster.apply(dict(service))
    assert len(script.seen) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, ClusterError), (403, ClusterForbidden), (422, ClusterError), (501, ClusterError)],
)
def test_an_answer_that_means_no_is_not_retried(api, status: int, error: type) -> None:  # type: ignore[no-untyped-def]
    cluster, script, pauses, _ = api
    script.steps = [(status, status_body(status, "refused for a reason"), {}), ok()]
    with cluster.patience(time.monotonic() + 60), pytest.raises(error) as caught:
        cluster.apply(dict(CONFIGMAP))
    assert "refused for a reason" in str(caught.value)
    assert len(script.seen) == 1 and pauses == []


def test_retries_stop_at_the_deadline_with_what_the_server_said(api) -> None:  # type: ignore[no-untyped-def]
    cluster, script, _, _ = api
    script.steps = [(503, status_body(503, "etcd is not ready"), {})]
    cluster.sleep = lambda s: time.sleep(min(s, 0.01))
    with pytest.raises(ClusterError, match=r"list configmaps in ns failed \(503\): etcd is not"):
        cluster.list_objects("ConfigMap", "ns", deadline=time.monotonic() + 0.3)
    assert len(script.seen) > 1


def test_unreachable_until_the_deadline_is_exit_4_saying_since_when(
    api, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    cluster, script, _, notices = api
    monkeypatch.setattr(kube_connection, "REQUEST_TIMEOUT", (1.0, 0.3))
    monkeypatch.setattr(kube_link, "NOTICE_AFTER", 0.2)
    monkeypatch.setenv("OTACTL_HEARTBEAT_SECONDS", "0.1")
    cluster.sleep = lambda s: time.sleep(min(s, 0.05))
    script.steps = ["silent"]
    with pytest.raises(ClusterUnreachable) as caught:
        cluster.get("ConfigMap", "ns", "c", deadline=time.monotonic() + 1.0)
    message = str(caught.value)
    assert caught.value.exit_code == 4
    assert message.startswith(f"cannot reach the Kubernetes API at {cluster.target.server}, ")
    assert "unreachable since " in message and message.endswith("timed out")
    assert len(script.seen) >= 2  # retried, each attempt cut by the read timeout
    assert notices[0].startswith("API server unreachable for ")
    assert notices[0].endswith("(timed out), retrying")
    assert cluster.link.unreachable_for() is not None

    assert all("unreachable for" in n for n in notices)

    # a blip shorter than NOTICE_AFTER is not news: no notice, no "reachable again"
    script.steps = [ok()]
    assert cluster.get("ConfigMap", "ns", "c") is not None
    told = len(notices)
    monkeypatch.setattr(kube_link, "NOTICE_AFTER", 60)
    script.steps = ["reset", ok()]
    assert cluster.get("ConfigMap", "ns", "c") is not None
    assert len(notices) == told

    monkeypatch.setattr(kube_link, "NOTICE_AFTER", 0.2)
    script.steps = ["silent", ok()]
    assert cluster.get("ConfigMap", "ns", "c") is not None
    assert notices[-1].startswith("API server reachable again after ")
    assert cluster.link.unreachable_for() is None


def test_a_refused_connection_fails_at_once_until_the_api_server_has_answered(
    tmp_path: Path,
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nothing listens on
    server = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": server}}],
        "users": [{"name": "t", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
    }  # fmt: skip
    (tmp_path / "kubeconfig").write_text(json.dumps(config))
    pauses: list[float] = []

    fresh = kube.connect(tmp_path / "kubeconfig")  # never answered: nothing listens there
    fresh.sleep = pauses.append
    with pytest.raises(ClusterUnreachable) as first:
        fresh.get("ConfigMap", "ns", "c", deadline=time.monotonic() + 60)
    assert not first.value.transient and pauses == []  # no retry
    assert str(first.value) == (
        f"cannot reach the Kubernetes API at {server}: connection refused (nothing listens "
        "there: is the cluster running?)"
    )

    # Once it has answered, a refused connection is an API server restarting: waited for.
    known = kube.connect(tmp_path / "kubeconfig")
    known.link.answered()
    known.sleep = lambda s: (pauses.append(s), time.sleep(min(s, 0.01)))[0]
    with pytest.raises(ClusterUnreachable) as later:
        known.get("ConfigMap", "ns", "c", deadline=time.monotonic() + 0.5)
    assert later.value.transient and pauses  # retried until the deadline
    assert str(later.value).endswith("connection refused")


def test_a_watch_resumes_probes_when_quiet_and_says_410(api, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cluster, script, _, _ = api
    monkeypatch.setattr(kube_cluster, "QUIET_SECONDS", 0.3)
    monkeypatch.setattr(kube_cluster, "PROBE_TIMEOUT", (0.5, 0.5))
    added = {"type": "ADDED", "object": {**CONFIGMAP, "metadata": {
        **CONFIGMAP["metadata"], "resourceVersion": "7"}}}  # fmt: skip
    # quiet after one event, the probe answers: the watch ends normally
    script.steps = [("watch", [added], "silent"), ok({"gitVersion": "v1"})]
    events = list(cluster.watch("ConfigMap", "ns", "5", 30))
    assert [e for e, _ in events] == ["ADDED"]
    assert script.seen == ["GET /api/v1/namespaces/ns/configmaps", "GET /version"]

    # quiet, and the probe gets no answer either: the API server is unreachable
    script.seen.clear()
    script.steps = [("watch", [], "silent"), "silent"]
    with pytest.raises(ClusterUnreachable):
        list(cluster.watch("ConfigMap", "ns", "7", 30))
    # lost since the watch last heard something, not since the probe was sent
    lost = cluster.link.unreachable_for()
    assert lost is not None and lost >= 0.3 + 0.5
    assert script.seen == ["GET /api/v1/namespaces/ns/configmaps", "GET /version"]

    # the resourceVersion is too old: 410, as a status or as an ERROR event
    gone = status_body(410, "too old resource version: 5 (90)")
    for step in [(410, gone, {}), ("watch", [{"type": "ERROR", "object": gone}], "end")]:
        script.steps = [step]
        with pytest.raises(WatchExpired, match="410 too old resource version"):
            list(cluster.watch("ConfigMap", "ns", "5", 30))
    # an API server that just started cannot serve it yet: list again, do not fail the wait
    early = status_body(504, "Timeout: Too large resource version: 9, current: 5")
    for step in [(504, early, {}), ("watch", [{"type": "ERROR", "object": early}], "end")]:
        script.steps = [step]
        with pytest.raises(WatchExpired, match="504 Timeout: Too large resource version"):
            list(cluster.watch("ConfigMap", "ns", "9", 30))
    script.steps = [(403, status_body(403, "watch refused"), {})]
    with pytest.raises(ClusterForbidden):
        list(cluster.watch("ConfigMap", "ns", "9", 30))
