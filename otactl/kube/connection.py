"""One connection (one urllib3 pool) to an API server: raw requests with read timeouts,
otactl's retry policy (connection errors, 429 with Retry-After, 500 and 502-504, 409 on
apply, until the caller's deadline) and one-line errors naming the object."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from otactl.errors import (
    ClusterError,
    ClusterForbidden,
    ClusterUnauthorized,
    ClusterUnreachable,
)
from otactl.kube.link import Link
from otactl.kube.resources import _status_message

# (connect, read) seconds. A request the API server has not answered within the read timeout
# is taken as lost and retried (apply, get, list and delete are idempotent).
REQUEST_TIMEOUT = (10.0, 20.0)
# How long requests are retried when no caller set a deadline (`Cluster.patience`,
# `Cluster.default_patience`), and at most for the very first request (a wrong address
# should not hang a 30-minute `up`).
DEFAULT_PATIENCE = 15.0
FIRST_CONTACT = 15.0
# Statuses that can change by themselves: throttled, or the API server (or its etcd) failing
# for now. 501 and every other 4xx mean "no".
TRANSIENT = {429, 500, 502, 503, 504}
MAX_PAUSE = 5.0


@dataclass(frozen=True)
class KubeTarget:
    """Which cluster: shown before otactl changes anything."""

    server: str
    context: str | None
    source: str


class Connection:
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
