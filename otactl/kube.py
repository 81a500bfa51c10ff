"""The one adapter to the Kubernetes API (the official `kubernetes` client).

Objects travel as plain dicts (JSON), so the rest of otactl never sees client models. Every
API error is turned into one line naming the object and what the server said; only what
can succeed later is retried (connection errors, 429 with Retry-After, 500 and 502-504, 409
on apply), until the deadline the caller set (`Cluster.patience`).

A lost API server is noticed within seconds, not at a phase's deadline: every request has a
read timeout, watches are short and probed when quiet, and `Cluster.link` records since when
the API server has not answered; it says so through `Cluster.on_notice`."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from otactl.errors import (
    ClusterError,
    ClusterForbidden,
    ClusterUnauthorized,
    ClusterUnreachable,
    ConfigError,
    WatchExpired,
)
from otactl.retry import heartbeat_seconds
from otactl.service_api import Response

FIELD_MANAGER = "otactl"
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=otactl,app.kubernetes.io/part-of=ota-ce"

# kind → (API prefix, plural, namespaced). Only the kinds otactl renders, waits on or reads:
# a fixed table costs no discovery round trips.
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Node": ("/api/v1", "nodes", False),
    "Secret": ("/api/v1", "secrets", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Service": ("/api/v1", "services", True),
    "Pod": ("/api/v1", "pods", True),
    "Event": ("/api/v1", "events", True),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "StatefulSet": ("/apis/apps/v1", "statefulsets", True),
    "Job": ("/apis/batch/v1", "jobs", True),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses", True),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    "EndpointSlice": ("/apis/discovery.k8s.io/v1", "endpointslices", True),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases", True),
}
# (connect, read) seconds. A request the API server has not answered within the read timeout
# is taken as lost and retried (apply, get, list and delete are idempotent).
REQUEST_TIMEOUT = (10.0, 20.0)
# A watch asks the server to end it after this long (then otactl watches again from the
# last resourceVersion it saw) ...
WATCH_SECONDS = 60
# ... and when no byte arrives for this long, a cheap request (/version) tells a quiet watch
# from a dead connection.
QUIET_SECONDS = 10.0
PROBE_TIMEOUT = (5.0, 5.0)
# How long requests are retried when no caller set a deadline (`Cluster.patience`,
# `Cluster.default_patience`), and at most for the very first request (a wrong address
# should not hang a 30-minute `up`).
DEFAULT_PATIENCE = 15.0
FIRST_CONTACT = 15.0
# Statuses that can change by themselves: throttled, or the API server (or its etcd) failing
# for now. 501 and every other 4xx mean "no".
TRANSIENT = {429, 500, 502, 503, 504}
NOTICE_AFTER = 2.0
MAX_PAUSE = 5.0


def ref(obj: dict[str, Any]) -> str:
    """`Kind namespace/name` for messages."""
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


def _resource_path(kind: str, namespace: str | None, name: str | None = None) -> str:
    try:
        prefix, plural, namespaced = RESOURCES[kind]
    except KeyError:
        raise ClusterError(f"otactl does not handle objects of kind {kind}") from None
    path = prefix
    if namespaced:
        if not namespace:
            raise ClusterError(f"{kind} {name}: a namespace is required")
        path += f"/namespaces/{quote(namespace)}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name)}"
    return path


def _status_message(body: bytes) -> str:
    """The `message` of a Kubernetes Status body; never the raw body (it can hold data)."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, dict) and data.get("kind") == "Status":
        return str(data.get("message", ""))
    return ""


@dataclass(frozen=True)
class KubeTarget:
    """Which cluster: shown before otactl changes anything."""

    server: str
    context: str | None
    source: str


def _clock_time(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall, dt.UTC).strftime("%H:%M:%S UTC")


class Link:
    """Whether the API server answers, and since when it has not (shared by every thread
    that talks to it). Notices go to `notify`: the first once it has not answered for
    NOTICE_AFTER seconds (a single dropped connection is not news), then one every heartbeat
    while it lasts, and one when the API server answers again."""

    def __init__(self, server: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.server = server
        self.clock = clock
        self.notify: Callable[[str], None] | None = None
        self._lock = threading.Lock()
        self._lost: tuple[float, float] | None = None  # (monotonic, wall) of the first failure
        self._cause = ""
        self._last_ok = float("-inf")
        self._noticed: float | None = None

    def answered(self) -> None:
        """Any answer (whatever its status) proves the API server is reachable."""
        with self._lock:
            self._last_ok = self.clock()
            if self._lost is None:
                return
            gone = self._last_ok - self._lost[0]
            told, self._lost, self._noticed = self._noticed is not None, None, None
        if told and self.notify:
            self.notify(f"API server reachable again after {gone:.0f} s")

    def failed(
        self, cause: str, started: float, silent_since: float | None = None
    ) -> ClusterUnreachable:
        """Record a request sent at `started` (monotonic) that got no answer: `cause`. A
        failure older than the last answer is a leftover of a healed outage, not a new one.
        `silent_since`: the probe of a watch that has been silent since then; the outage
        began then (or at the last answer, if later)."""
        now = self.clock()
        with self._lock:
            stale = started < self._last_ok
            if silent_since is not None:
                started, stale = max(silent_since, self._last_ok), False
            if self._lost is None and not stale:
                self._lost = (started, time.time() - (now - started))
                self._noticed = None
            self._cause = cause
            gone = now - self._lost[0] if self._lost else 0.0
            due = (
                self._lost is not None
                and gone >= NOTICE_AFTER
                and (self._noticed is None or now - self._noticed >= heartbeat_seconds())
            )
            if due:
                self._noticed = now
        if due and self.notify:
            self.notify(f"API server unreachable for {gone:.0f} s ({cause}), retrying")
        return ClusterUnreachable(self.message(cause))

    def ever_answered(self) -> bool:
        """Whether the API server has answered any request on this link."""
        with self._lock:
            return self._last_ok != float("-inf")

    def unreachable_for(self) -> float | None:
        """Seconds since the API server stopped answering, or None while it answers."""
        with self._lock:
            return None if self._lost is None else self.clock() - self._lost[0]

    def message(self, cause: str | None = None) -> str:
        """`cannot reach the Kubernetes API at URL, unreachable since T (N s): cause`."""
        with self._lock:
            lost, cause = self._lost, cause or self._cause
        text = f"cannot reach the Kubernetes API at {self.server}"
        if lost is not None:
            gone = self.clock() - lost[0]
            text += f", unreachable since {_clock_time(lost[1])}"
            text += f" ({gone:.0f} s)" if gone >= 1 else ""
        return f"{text}: {cause}"


class Cluster:
    """A connection (one urllib3 pool) to one API server."""

    def __init__(self, api_client: Any, target: KubeTarget) -> None:
        self._api = api_client
        self.target = target
        self.link = Link(target.server)
        self.sleep: Callable[[float], None] = time.sleep  # between attempts
        # How long requests are retried outside a `patience` block.
        self.default_patience = DEFAULT_PATIENCE
        self._patience: float | None = None

    def on_notice(self, notify: Callable[[str], None] | None) -> None:
        """Where "API server unreachable for 40 s, retrying" and its end are said."""
        self.link.notify = notify

    @contextlib.contextmanager
    def patience(self, end: float) -> Iterator[None]:
        """Retry transient failures until `end` (monotonic) rather than DEFAULT_PATIENCE,
        for every request made inside the block (from any thread)."""
        before, self._patience = self._patience, end
        try:
            yield
        finally:
            self._patience = before

    def _end(self, deadline: float | None) -> float:
        if deadline is not None:
            return deadline
        if self._patience is not None:
            return self._patience
        return time.monotonic() + self.default_patience

    # --- raw requests -----------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: Any = None,
        stream: bool = False,
        silent_since: float | None = None,
    ) -> Any:
        """One request; returns the client's RESTResponse, its body read unless `stream`.
        No answer (refused, reset, timed out) raises ClusterUnreachable, through `link`."""
        from kubernetes.client.exceptions import ApiException

        hdrs = {"Accept": "application/json", **(headers or {})}
        if content_type:
            hdrs["Content-Type"] = content_type
        qs = [(k, v) for k, v in (query or {}).items() if v is not None]
        _method, url, hdrs, sbody, _ = self._api.param_serialize(
            method, path, query_params=qs, header_params=hdrs, auth_settings=["BearerToken"]
        )
        if isinstance(body, bytes | str):
            sbody = body
        elif body is not None:
            sbody = self._api.sanitize_for_serialization(body)
        started = time.monotonic()
        try:
            resp = self._api.rest_client.request(
                method, url, headers=hdrs, body=sbody, _request_timeout=timeout or REQUEST_TIMEOUT
            )
            if not stream:
                resp.read()  # kept by the response: later read() calls return it
        except ApiException as e:  # status 0: TLS or request-building failures
            reason = str(e.reason).splitlines()[-1]
            if "CERTIFICATE" in reason.upper():  # waiting will not change a certificate
                raise ClusterUnreachable(
                    f"cannot talk to the Kubernetes API at {self.target.server}: {reason}",
                    transient=False,
                ) from e
            raise self.link.failed(_short(reason), started, silent_since) from e
        except Exception as e:
            import urllib3

            if isinstance(e, urllib3.exceptions.HTTPError | OSError):
                cause = _short(getattr(e, "reason", None) or e)
                if cause == "connection refused" and not self.link.ever_answered():
                    # Nothing listens there (a wrong address, a stopped cluster): retrying
                    # would only delay the answer. A connection refused after an answer is
                    # an API server restarting, and is waited for.
                    raise ClusterUnreachable(
                        f"cannot reach the Kubernetes API at {self.target.server}: "
                        "connection refused (nothing listens there: is the cluster running?)",
                        transient=False,
                    ) from e
                raise self.link.failed(cause, started, silent_since) from e
            raise
        self.link.answered()
        return resp

    def _pause(self, attempt: int, end: float, retry_after: float | None = None) -> None:
        """Exponential backoff, or the server's Retry-After, never past `end`."""
        delay = retry_after if retry_after is not None else min(0.2 * 2**attempt, MAX_PAUSE)
        self.sleep(max(0.0, min(delay, end - time.monotonic())))

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        ok_missing: bool = False,
        retry_conflict: bool = False,
        ok_conflict: bool = False,
        deadline: float | None = None,
    ) -> dict[str, Any] | None:
        """A JSON request with otactl's retry and error policy. `what` names the verb and
        object for messages ("patch Deployment default/app"). 404 → None if `ok_missing`,
        409 → None if `ok_conflict`.

        No answer, 429 (after its Retry-After), 500, 502-504, and 409 when `retry_conflict`
        are tried again with backoff until `deadline` (monotonic; default: the `patience`
        in force); any other status fails at once with what the server said."""
        end = self._end(deadline)
        attempt = 0
        while True:
            try:
                resp = self._send(method, path, query=query, body=body, content_type=content_type)
            except ClusterUnreachable as e:
                if not e.transient or time.monotonic() >= end:
                    raise
                self._pause(attempt, end)
                attempt += 1
                continue
            status = resp.status
            data = resp.read()
            if 200 <= status < 300:
                return json.loads(data) if data else {}
            if (status == 404 and ok_missing) or (status == 409 and ok_conflict):
                return None
            retryable = (
                status in TRANSIENT
                or (status == 409 and retry_conflict)
                or _allocation_hiccup(status, data)
            )
            if retryable and time.monotonic() < end:
                self._pause(attempt, end, _retry_after(resp.headers.get("Retry-After")))
                attempt += 1
                continue
            raise self._error(status, data, what)

    def _error(self, status: int, body: bytes, what: str) -> ClusterError:
        message = _status_message(body) or f"HTTP {status}"
        if status == 401:
            # gcloud's and otactl's context names for GKE: a token that expired there is
            # renewed by writing the context again (with an exec plugin that renews itself).
            gke = (self.target.context or "").startswith("gke_")
            hint = "; run `otactl gke credentials` again" if gke else ""
            return ClusterUnauthorized(
                f"the Kubernetes API at {self.target.server} rejected otactl's credentials "
                f"(expired or invalid) on {what}: {message}{hint}"
            )
        if status == 403:
            return ClusterForbidden(f"RBAC refused {what}: {message}")
        return ClusterError(f"{what} failed ({status}): {message}")

    # --- objects ----------------------------------------------------------------------

    def version(self) -> str:
        """The server's version; also the first reachability and credentials check (retried
        for FIRST_CONTACT seconds at most: a wrong address fails fast)."""
        end = min(self._end(None), time.monotonic() + FIRST_CONTACT)
        data = self.request("GET", "/version", what="get /version", deadline=end)
        assert data is not None
        return str(data.get("gitVersion", "?"))

    def probe(self, silent_since: float | None = None) -> None:
        """One cheap request (/version, short timeouts): returns when the API server
        answers anything, raises ClusterUnreachable when it does not (lost since
        `silent_since`, when a watch heard nothing since then)."""
        self._send("GET", "/version", timeout=PROBE_TIMEOUT, silent_since=silent_since)

    def get(
        self, kind: str, namespace: str | None, name: str, *, deadline: float | None = None
    ) -> dict[str, Any] | None:
        path = _resource_path(kind, namespace, name)
        what = f"get {kind} {namespace + '/' if namespace else ''}{name}"
        return self.request("GET", path, what=what, ok_missing=True, deadline=deadline)

    def list_objects(
        self,
        kind: str,
        namespace: str | None,
        label_selector: str | None = None,
        *,
        field_selector: str | None = None,
        deadline: float | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Objects and the list's resourceVersion (to watch from)."""
        path = _resource_path(kind, namespace)
        data = self.request(
            "GET",
            path,
            query={"labelSelector": label_selector, "fieldSelector": field_selector},
            what=f"list {RESOURCES[kind][1]} in {namespace or 'the cluster'}",
            deadline=deadline,
        )
        assert data is not None
        items = data.get("items", [])
        for item in items:  # list items carry no kind
            item.setdefault("kind", kind)
        return items, str(data.get("metadata", {}).get("resourceVersion", ""))

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply as field manager `otactl` (conflicts forced: otactl owns what
        it renders). An unchanged object is not written: its resourceVersion stays."""
        meta = obj["metadata"]
        path = _resource_path(obj["kind"], meta.get("namespace"), meta["name"])
        result = self.request(
            "PATCH",
            path,
            query={
                "fieldManager": FIELD_MANAGER,
                "force": "true",
                "dryRun": "All" if dry_run else None,
            },
            body=obj,
            content_type="application/apply-patch+yaml",
            what=f"apply {ref(obj)}",
            retry_conflict=True,
        )
        assert result is not None
        return result

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create an object; None when one of that name exists already (409)."""
        meta = obj["metadata"]
        path = _resource_path(obj["kind"], meta.get("namespace"))
        return self.request("POST", path, body=obj, what=f"create {ref(obj)}", ok_conflict=True)

    def replace(
        self, obj: dict[str, Any], *, deadline: float | None = None
    ) -> dict[str, Any] | None:
        """Replace an object as of its metadata.resourceVersion; None when it changed since
        (409: someone else wrote it first)."""
        meta = obj["metadata"]
        path = _resource_path(obj["kind"], meta.get("namespace"), meta["name"])
        what = f"replace {ref(obj)}"
        return self.request("PUT", path, body=obj, what=what, ok_conflict=True, deadline=deadline)

    def delete(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
        resource_version: str | None = None,
        deadline: float | None = None,
    ) -> bool:
        """Delete one object (only as of `resource_version`, when given); False when it was
        already gone or had changed since."""
        path = _resource_path(kind, namespace, name)
        body: dict[str, Any] = {
            "kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation
        }  # fmt: skip
        if resource_version is not None:
            body["preconditions"] = {"resourceVersion": resource_version}
        what = f"delete {kind} {namespace + '/' if namespace else ''}{name}"
        done = self.request(
            "DELETE", path, body=body, what=what, ok_missing=True, ok_conflict=True,
            deadline=deadline,
        )  # fmt: skip
        return done is not None

    def watch(
        self,
        kind: str,
        namespace: str | None,
        resource_version: str,
        timeout: float,
        label_selector: str | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events (type, object) after `resource_version`, for at most `timeout` seconds
        (and at most WATCH_SECONDS: the caller watches again from the last resourceVersion).

        Ends normally when the server closes the watch, and when the stream goes quiet for
        QUIET_SECONDS or breaks while the API server still answers a probe. Raises
        ClusterUnreachable when it does not answer, WatchExpired when the version is too
        old (410 Gone) or the server cannot serve the watch for now (429, 5xx): the caller
        lists again (with the list's retries and backoff)."""
        path = _resource_path(kind, namespace)
        seconds = max(1, int(min(timeout, WATCH_SECONDS)))
        what = f"watch {RESOURCES[kind][1]}"
        resp = self._send(
            "GET",
            path,
            query={
                "watch": "true",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": seconds,
                "labelSelector": label_selector,
            },
            # the read timeout applies to each read: a watch silent this long is probed
            timeout=(REQUEST_TIMEOUT[0], QUIET_SECONDS),
            stream=True,
        )
        if resp.status == 410 or resp.status in TRANSIENT:
            message = _status_message(resp.read()) or f"HTTP {resp.status}"
            raise WatchExpired(f"{what}: {resp.status} {message}")
        if resp.status != 200:
            raise self._error(resp.status, resp.read(), what)
        raw = resp.response
        finished = broke = False
        heard = time.monotonic()
        try:
            for line in raw:
                heard = time.monotonic()
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object", {})
                if event.get("type") == "ERROR":
                    code = obj.get("code")
                    if code == 410 or code in TRANSIENT:  # e.g. 504 while its cache warms up
                        raise WatchExpired(f"{what}: {code} {obj.get('message')}")
                    raise ClusterError(f"{what}: {code} {obj.get('message')}")
                obj.setdefault("kind", kind)
                yield event["type"], obj
            finished = True
        except Exception as e:
            import urllib3

            if not isinstance(e, urllib3.exceptions.HTTPError | OSError):
                raise
            broke = True  # quiet for QUIET_SECONDS, or the connection broke
        finally:
            if not finished:
                raw.close()  # never hand a half-read stream back to the pool
            raw.release_conn()
        if broke:
            self.probe(silent_since=heard)

    def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int = 5) -> str:
        """The last lines a (crashed) container wrote, for wait explanations."""
        path = _resource_path("Pod", namespace, pod) + "/log"
        query = {"container": container, "tailLines": lines, "previous": "true"}
        resp = self._send("GET", path, query=query)
        if resp.status != 200:
            query.pop("previous")
            resp = self._send("GET", path, query=query)
        return resp.read().decode(errors="replace").strip() if resp.status == 200 else ""

    # --- services ---------------------------------------------------------------------

    def service_caller(self, namespace: str, port: int = 80) -> ServiceProxyCaller:
        """A `ServiceCaller` through the API server's service proxy, on this connection."""
        return ServiceProxyCaller(self, namespace, port)

    def node_addresses(self) -> list[dict[str, str]]:
        """Every node's addresses ({"type": "InternalIP", "address": ...})."""
        nodes, _ = self.list_objects("Node", None)
        return [a for n in nodes for a in n.get("status", {}).get("addresses", [])]


class ServiceProxyCaller:
    """`/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH`. Answers of the service, and
    the API server's own (Status objects), come back as `Response`; only RBAC refusal and
    lost credentials of the API server itself raise."""

    def __init__(self, cluster: Cluster, namespace: str, port: int) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.port = port

    def __call__(
        self,
        method: str,
        service: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        base = f"/api/v1/namespaces/{quote(self.namespace)}/services/{service}:{self.port}/proxy"
        path, _, qs = path.partition("?")
        full = base + "/" + path.lstrip("/")
        if qs:
            full += "?" + qs
        content_type = (headers or {}).get("Content-Type")
        payload: Any = body
        if body is not None and (content_type is None or "json" in content_type):
            # The kubernetes client json.dumps() JSON bodies itself (bytes would raise
            # TypeError there): hand it the decoded value.
            payload = json.loads(body)
        resp = self.cluster._send(
            method, full, body=payload, headers=headers, content_type=content_type
        )
        data = resp.read()
        result = Response(resp.status, data, {k: v for k, v in resp.headers.items()})
        if result.from_apiserver and resp.status in (401, 403):
            raise self.cluster._error(
                resp.status, data, f"{method} services/proxy {self.namespace}/{service}"
            )
        return result


# The API server answers 422 Invalid when it could not allocate a Service's cluster IP for
# a passing reason (etcd leader change; its own loopback not up yet right after a restart):
# https://github.com/kubernetes/kubernetes/issues/118921. Those are retried; "already
# allocated" or "range is full" are not.
_PASSING_CAUSES = ("connection refused", "etcdserver", "timeout", "deadline exceeded", "EOF")


def _allocation_hiccup(status: int, body: bytes) -> bool:
    message = _status_message(body)
    return (
        status == 422
        and "failed to allocate IP" in message
        and any(cause in message for cause in _PASSING_CAUSES)
    )


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not used by the API server)."""
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


# What a failed connection says, in a few words (urllib3 and ssl messages are long).
_CAUSES = {
    "Connection refused": "connection refused",
    "Connection reset": "connection reset",
    "Name or service not known": "name or service not known",
    "timed out": "timed out",
    "Remote end closed connection": "connection closed",
    "EOF occurred in violation of protocol": "connection closed",
}


def _short(e: BaseException | str) -> str:
    text = str(e)
    for marker, words in _CAUSES.items():
        if marker in text:
            return words
    return text.splitlines()[-1][:200] if text else type(e).__name__


def kubeconfig_files(kubeconfig: Path | None) -> list[Path]:
    """The kubeconfig files to merge, as kubectl finds them: `--kubeconfig` (which must
    exist), else each existing entry of $KUBECONFIG (missing ones are skipped), else
    ~/.kube/config when present."""
    if kubeconfig is not None:
        if not kubeconfig.exists():
            raise ConfigError(f"{kubeconfig}: kubeconfig not found")
        return [kubeconfig]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [
            Path(p).expanduser()
            for p in env.split(os.pathsep)
            if p and Path(p).expanduser().exists()
        ]
    default = Path.home() / ".kube" / "config"
    return [default] if default.exists() else []


def _check_kubeconfig(path: Path) -> list[str]:
    """The context names of one kubeconfig; one line when it is not a kubeconfig."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the kubeconfig: {e.strerror}") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not a kubeconfig (not valid YAML)") from e
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("contexts") or [], list):
        raise ConfigError(f"{path}: not a kubeconfig (expected a mapping with contexts)")
    names = []
    for entry in data.get("contexts") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{path}: not a kubeconfig (a context without a name)")
        names.append(entry["name"])
    return names


def connect(kubeconfig: Path | None = None, context: str | None = None) -> Cluster:
    """Connect with `--kubeconfig`, else $KUBECONFIG (its files merged, missing ones skipped,
    as kubectl does), else ~/.kube/config, else the pod's in-cluster service account.
    Nothing is sent yet."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    files = kubeconfig_files(kubeconfig)
    contexts = [name for path in files for name in _check_kubeconfig(path)]
    joined = os.pathsep.join(str(p) for p in files)
    source = joined
    try:
        if files:
            if context is not None and context not in contexts:
                raise ConfigError(f'context "{context}" does not exist')
            # The client merges the files itself, first file first, as kubectl does.
            config.load_kube_config(
                config_file=joined,
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
            _, active = config.list_kube_config_contexts(config_file=joined)
            ctx_name = context or (active or {}).get("name")
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)
            ctx_name, source = None, "in-cluster service account"
        else:
            raise ConfigError(
                "no cluster configured: pass --kubeconfig, set KUBECONFIG, or start one with "
                "`otactl local-cluster up`"
            )
    except ConfigException as e:
        raise ConfigError(f"cannot use the kubeconfig {source}: {e}") from e
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        # The client reads the file's structure without checking it first.
        raise ConfigError(
            f"cannot use the kubeconfig {source}: malformed ({type(e).__name__}: {e})"
        ) from e
    cfg.connection_pool_maxsize = 32
    # Retries are otactl's own (see Cluster.request): urllib3 should fail fast.
    cfg.retries = 0
    return Cluster(client.ApiClient(cfg), KubeTarget(cfg.host, ctx_name, source))
