"""`Cluster`: the Kubernetes objects on a connection (get, list, server-side apply, create,
replace, delete, watch, pod logs) as plain dicts, never client models."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from otactl.errors import ClusterError, WatchExpired
from otactl.kube.connection import (
    FIRST_CONTACT,
    REQUEST_TIMEOUT,
    TRANSIENT,
    Connection,
)
from otactl.kube.proxy import ServiceProxyCaller
from otactl.kube.resources import (
    FIELD_MANAGER,
    RESOURCES,
    _resource_path,
    _status_message,
    ref,
)

# A watch asks the server to end it after this long (then otactl watches again from the
# last resourceVersion it saw) ...
WATCH_SECONDS = 60
# ... and when no byte arrives for this long, a cheap request (/version) tells a quiet watch
# from a dead connection.
QUIET_SECONDS = 10.0
PROBE_TIMEOUT = (5.0, 5.0)


class Cluster(Connection):
    """A connection (one urllib3 pool) to one API server, and the objects on it."""

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
