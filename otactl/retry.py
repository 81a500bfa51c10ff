"""Calling the OTA services until an answer that means something, within a deadline.

The credentials phase, health waits and device registration share one policy: an answer
is either one the caller planned for (returned), one that can change by itself (retried
with backoff until the deadline: the API server's 5xx while pods start, the service's own
5xx and 429, and whatever extra statuses a call names, such as 423 while keys are being
generated), or anything else (a `ServiceError` at once, naming the service and the call).
Answers of the API server are explained as such: "no ready endpoints for service X" is
not "X answered 503".

Two kinds of answers look retryable and are not: a service's own 401/403 (it runs with
OAuth and wants a token: a configuration error, `ServiceAuthRefused`), and a 5xx whose
error code says it will not change by itself (`PERMANENT_ERRORS`, such as tuf-keyserver's
`key_generation_failed`). Both fail at once with their reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from otactl.errors import (
    ClusterUnreachable,
    ConfigError,
    ServiceAuthRefused,
    ServiceError,
    WaitTimeout,
)
from otactl.service_api import Response, ServiceCaller

Progress = Callable[[str], None]

# Backoff between attempts: short at first (keys take a second or two), never long, so a
# deadline is not overshot by much.
FIRST_PAUSE = 0.2
MAX_PAUSE = 3.0
# Every wait says it is still waiting at least this often, even when nothing changes; a
# line that says the same as the last one is repeated no more often than this.
HEARTBEAT = 15.0
HEARTBEAT_ENV = "OTACTL_HEARTBEAT_SECONDS"


def heartbeat_seconds() -> float:
    """HEARTBEAT, or $OTACTL_HEARTBEAT_SECONDS (tests use a short one)."""
    value = os.environ.get(HEARTBEAT_ENV)
    if not value:
        return HEARTBEAT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise ConfigError(f"{HEARTBEAT_ENV}={value!r}: expected a number of seconds above 0")
    return seconds


# libats-auth (libats e12f057, NamespaceDirectives.fromConfig) reads `auth.protocol`; each
# service's application.conf defaults it to OAuth unless AUTH_PROTOCOL is set, e.g.
# ota-device-registry 5494d76 src/main/resources/application.conf ("oauth.idtoken"),
# ota-tuf 1d0d714 reposerver/src/main/resources/application.conf ("oauth.accesstoken").
# Without a bearer token the request is rejected (AuthorizationFailedRejection: 403).
AUTH_HINT = (
    "a configuration error: {service} wants an OAuth token, so it runs with OAuth, its "
    "default when AUTH_PROTOCOL is not set (its pods need AUTH_PROTOCOL=none)"
)

# Error codes of 5xx answers that no retry can turn into a success: the service has
# recorded the failure. ota-tuf 1d0d714: keyserver/.../roles/KeyGenerationRequests.scala
# (readyKeyGenRequests) answers 500 `key_generation_failed` once a key generation request
# is in status ERROR (the daemon does not retry it; keyserver/.../http/RootRoleResource.scala
# `PUT /api/v1/root/<repo id>` sets it back to REQUESTED); the reposerver passes it on as
# 502 with the same code (libats e12f057 ErrorHandler.onRemoteServiceError).
PERMANENT_ERRORS = {
    "key_generation_failed": "key generation failed",
}


@dataclass
class Deadline:
    """A point in time (monotonic clock) and the pauses taken on the way to it."""

    timeout: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    end: float = field(init=False)

    def __post_init__(self) -> None:
        self.end = self.clock() + self.timeout

    def remaining(self) -> float:
        return max(0.0, self.end - self.clock())

    def expired(self) -> bool:
        return self.clock() >= self.end

    def pause(self, attempt: int, retry_after: float | None = None) -> None:
        """Sleep before attempt `attempt + 1`: exponential backoff, or the server's
        Retry-After when it gave one, never past the deadline."""
        delay = min(FIRST_PAUSE * 2**attempt, MAX_PAUSE)
        if retry_after is not None:
            delay = retry_after
        self.sleep(max(0.0, min(delay, self.remaining())))


class Reporter:
    """Hands progress lines on when they say something new, and repeats an unchanged one
    only every heartbeat, so a long wait does not flood the terminal."""

    def __init__(self, progress: Progress | None, clock: Callable[[], float]) -> None:
        self.progress = progress
        self.clock = clock
        self.every = heartbeat_seconds()
        self.last: tuple[str, float] | None = None

    def __call__(self, line: str) -> None:
        if self.progress is None:
            return
        now = self.clock()
        if self.last is None or self.last[0] != line or now - self.last[1] >= self.every:
            self.last = (line, now)
            self.progress(line)


def _status_message(resp: Response) -> str:
    try:
        return str(resp.json().get("message", ""))
    except (ValueError, AttributeError):
        return ""


def explain(service: str, resp: Response) -> str:
    """What an answer means, in a few words, telling the API server's from the service's."""
    if resp.from_apiserver:
        message = _status_message(resp)
        if "no endpoints available" in message:
            return f"no ready endpoints for service {service} (API server {resp.status})"
        if resp.status == 404:
            return f"Service {service} not found (API server 404: {message})"
        return f"the API server could not reach {service}: {resp.reason()}"
    return f"{service} answered {resp.reason()}"


def _error_body(resp: Response) -> dict[str, object]:
    """The service's libats ErrorRepresentation ({"code","description","cause",...}) or {}."""
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _causes(cause: object) -> list[str]:
    """The innermost reasons of an ErrorRepresentation's `cause`: a nested representation
    (what a service passes on from the one it called) or a map of reasons, e.g. the
    keyserver's key generation request id -> "ExceptionClass|message"."""
    if isinstance(cause, dict):
        if "code" in cause and "description" in cause:
            inner = _causes(cause.get("cause"))
            return inner or [str(cause["description"])]
        return [r for value in cause.values() for r in _causes(value)]
    if isinstance(cause, list):
        return [r for value in cause for r in _causes(value)]
    return [str(cause)] if cause not in (None, "") else []


def permanent_failure(service: str, resp: Response) -> str | None:
    """Why a 5xx answer will not change by itself, or None when it may."""
    if resp.from_apiserver or resp.status < 500:
        return None
    body = _error_body(resp)
    what = PERMANENT_ERRORS.get(str(body.get("code")))
    if what is None:
        return None
    reasons = list(dict.fromkeys(_causes(body.get("cause")))) or [str(body.get("description"))]
    reason = "; ".join(reasons)
    if len(reason) > 300:
        reason = reason[:297] + "..."
    return f"{service} answered {resp.status} {body.get('code')}: {what}: {reason}"


def auth_refused(resp: Response) -> bool:
    """The service itself (the API server's own 401/403 never get here) refused the call."""
    return resp.status in (401, 403) and not resp.from_apiserver


def transient(resp: Response) -> bool:
    """True for answers that can change by themselves: pods starting or restarting behind
    the proxy (API server 5xx), the service overloaded or starting (5xx, 429)."""
    return resp.status == 429 or resp.status >= 500


def _retry_after(resp: Response) -> float | None:
    value = resp.header("Retry-After")
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


def call(
    caller: ServiceCaller,
    service: str,
    method: str,
    path: str,
    *,
    accept: Collection[int],
    deadline: Deadline,
    wait_on: Mapping[int, str] | None = None,
    stuck: tuple[float, str] | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> Response:
    """One call to `service`, repeated until its answer has a status in `accept`.

    `wait_on` maps the service's statuses that mean "not yet" to why (423: "keys are being
    generated"); they are retried like transient answers. `stuck` = (seconds, likely
    cause): once `wait_on` answers have come without a break for that long, the progress
    lines and the timeout name the likely cause. A 401/403 of the service raises
    `ServiceAuthRefused`; a permanent 5xx (`PERMANENT_ERRORS`) and any other answer raise
    `ServiceError` at once with the call and the answer's safe one-line reason; running out
    of time raises `WaitTimeout` with the last reason, or `ClusterUnreachable` (saying since
    when) when the API server itself did not answer the last attempt."""
    what = f"{service}: {method} {path}"
    report = Reporter(progress, deadline.clock)
    attempt = 0
    waiting_since: float | None = None  # start of the current run of `wait_on` answers
    while True:
        try:
            resp = caller(method, service, path, body, headers)
        except ClusterUnreachable as e:
            if not e.transient or deadline.expired():
                raise
            why, retry_after = str(e), None
        else:
            if resp.status in accept and not resp.from_apiserver:
                return resp
            if auth_refused(resp):
                raise ServiceAuthRefused(
                    f"{what}: refused with {resp.status}: " + AUTH_HINT.format(service=service)
                )
            permanent = permanent_failure(service, resp)
            if permanent is not None:
                raise ServiceError(f"{what}: {permanent}")
            if not resp.from_apiserver and wait_on and resp.status in wait_on:
                why = f"{wait_on[resp.status]} ({service} answered {resp.status})"
                now = deadline.clock()
                waiting_since = now if waiting_since is None else waiting_since
                if stuck is not None and now - waiting_since >= stuck[0]:
                    why += f" for over {stuck[0]:g}s: {stuck[1]}"
            elif transient(resp):
                why, waiting_since = explain(service, resp), None
            else:
                raise ServiceError(f"{what}: {explain(service, resp)}")
            retry_after = _retry_after(resp)
        if deadline.expired():
            raise WaitTimeout(f"{what}: gave up after {deadline.timeout:g}s: {why}")
        report(f"{what}: {why}; retrying")
        deadline.pause(attempt, retry_after)
        attempt += 1
