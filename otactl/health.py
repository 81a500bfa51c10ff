"""Health of the OTA services, through the API server's service proxy.

Each Scala service answers `GET /health` (200 `{"status":"OK"}`, or 503 with a map of its
failing checks) and `GET /health/dependencies` (same shape, 502 on failure; before mid-2018
`{"<name>":{"status":"up"}}`). A 503 whose body is a Kubernetes Status comes from the API
server (no ready pods behind the Service), not from the service: the reasons say which.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from otactl.errors import ClusterUnreachable, ConfigError, WaitTimeout
from otactl.retry import Deadline, Progress, Reporter, explain

if TYPE_CHECKING:
    from otactl.service_api import Response, ServiceCaller

# Service → the path that tells whether it can do its job. tuf-reposerver is useless while
# tuf-keyserver (its dependency) is down, and only /health/dependencies says so; the
# others' /health covers their database and Kafka.
CHECKS: dict[str, str] = {
    "app": "/health",
    "campaigner": "/health",
    "campaigner-daemon": "/health",
    "device-registry": "/health",
    "device-registry-daemon": "/health",
    "director": "/health",
    "director-daemon": "/health",
    "tuf-keyserver": "/health",
    "tuf-keyserver-daemon": "/health",
    "tuf-reposerver": "/health/dependencies",
    "treehub": "/health",
    "web-events": "/health",
}
HEALTHY_WORDS = {"ok", "up"}


@dataclass(frozen=True)
class HealthResult:
    service: str
    ok: bool
    http_status: int | None  # None when the API server could not be reached at all
    latency_ms: float
    reason: str
    path: str
    failing: dict[str, str] = field(default_factory=dict)  # check → its status/message

    @property
    def status(self) -> str:
        return "OK" if self.ok else "FAIL"

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "status": self.status,
            "http_status": self.http_status,
            "latency_ms": round(self.latency_ms, 1),
            "reason": self.reason,
            "path": self.path,
            "failing": self.failing,
        }


def known_services() -> list[str]:
    return sorted(CHECKS)


def resolve(services: Iterable[str] | None) -> list[str]:
    """The services to check: all of them when none are named; an unknown name is a
    ConfigError listing the known ones."""
    names = list(services or [])
    if not names:
        return known_services()
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ConfigError(
            f"unknown service {', '.join(unknown)} (known: {', '.join(known_services())})"
        )
    return list(dict.fromkeys(names))


def _check_status(value: Any) -> str | None:
    """The status word of one check ({"status": "DOWN", ...} or "up"), if it has one."""
    if isinstance(value, dict):
        value = value.get("status")
    return value if isinstance(value, str) else None


def failing_checks(body: Any) -> dict[str, str]:
    """Checks whose status is not OK/up, from either health format."""
    if not isinstance(body, dict) or {"code", "description"} <= body.keys():
        return {}  # not health checks: the services' error shape (libats ErrorRepresentation)
    out = {}
    for name, value in body.items():
        word = _check_status(value)
        if word is not None and word.lower() in HEALTHY_WORDS:
            continue
        message = value.get("message") if isinstance(value, dict) else None
        out[str(name)] = f"{word or value}" + (f": {message}" if message else "")
    return out


def _judge(service: str, path: str, resp: Response, latency_ms: float) -> HealthResult:
    def result(ok: bool, reason: str, failing: dict[str, str] | None = None) -> HealthResult:
        return HealthResult(service, ok, resp.status, latency_ms, reason, path, failing or {})

    if resp.from_apiserver:
        return result(False, explain(service, resp))
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status == 200:
        if isinstance(body, dict) and "status" in body and isinstance(body["status"], str):
            word = body["status"]
            if word.lower() in HEALTHY_WORDS:
                return result(True, "OK")
            return result(False, f"{service} answered 200 with status {word}")
        # The pre-2018 dependencies format: every dependency must be "up".
        failing = failing_checks(body)
        if failing:
            listed = ", ".join(f"{k} {v}" for k, v in failing.items())
            return result(False, f"{service} answered 200 but reports {listed}", failing)
        return result(True, "OK")
    failing = failing_checks(body)
    if failing:
        listed = ", ".join(f"{k} {v}" for k, v in failing.items())
        return result(False, f"{service} answered {resp.status}: failing {listed}", failing)
    return result(False, explain(service, resp))


def check_one(
    caller: ServiceCaller,
    service: str,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> HealthResult:
    """One health request to `service` (a name from `CHECKS`)."""
    path = CHECKS[service]
    start = clock()
    try:
        resp = caller("GET", service, path)
    except ClusterUnreachable as e:
        return HealthResult(service, False, None, (clock() - start) * 1000, str(e), path)
    return _judge(service, path, resp, (clock() - start) * 1000)


def check(caller: ServiceCaller, services: Iterable[str] | None = None) -> list[HealthResult]:
    """One result per service (all known services when none are named), in order."""
    return [check_one(caller, s) for s in resolve(services)]


def _summary(results: Sequence[HealthResult]) -> str:
    return "; ".join(f"{r.service}: {r.reason}" for r in results)


def wait_healthy(
    caller: ServiceCaller,
    services: Iterable[str] | None = None,
    *,
    timeout: float,
    progress: Progress | None = None,
    deadline: Deadline | None = None,
) -> list[HealthResult]:
    """Check until every service is OK (a service once OK is not asked again), or raise
    `WaitTimeout` naming, for each service still failing, why; `ClusterUnreachable` (saying
    since when) when the API server itself did not answer at the end."""
    names = resolve(services)
    deadline = deadline or Deadline(timeout)
    latest: dict[str, HealthResult] = {}
    report = Reporter(progress, deadline.clock)
    attempt = 0
    while True:
        lost: HealthResult | None = None
        for name in names:
            if name in latest and latest[name].ok:
                continue
            if lost is not None:  # the API server did not answer: the others would not either
                latest[name] = dataclasses.replace(lost, service=name, path=CHECKS[name])
                continue
            latest[name] = check_one(caller, name)
            if latest[name].http_status is None:
                lost = latest[name]
        bad = [latest[n] for n in names if not latest[n].ok]
        if not bad:
            return [latest[n] for n in names]
        if deadline.expired():
            if lost is not None:
                raise ClusterUnreachable(
                    f"{lost.reason} (waiting for the health of {len(bad)} of {len(names)} services)"
                )
            raise WaitTimeout(
                f"{len(bad)} of {len(names)} services not healthy after "
                f"{deadline.timeout:g}s: {_summary(bad)}"
            )
        report(f"waiting for {len(bad)} of {len(names)} services: {_summary(bad)}")
        deadline.pause(attempt)
        attempt += 1
