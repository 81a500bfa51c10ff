"""Health of the OTA services, through the API server's service proxy.

Each Scala service answers `GET /health` and `GET /health/dependencies` through libats'
HealthResource (libats e12f057, the copy campaigner, treehub, web-events and ota-tuf pin;
0.4.0-4/-6 of device-registry and director have the same code,
libats-http/.../http/HealthResource.scala): 200 `{"status":"OK"}` when every check is up,
else 503 (502 for dependencies) with every check by name, `{"db":{"status":"down",
"cause":"<the exception's message>"},...}` (DbHealthCheck, libats-slick/.../monitoring/
DbHealthCheck.scala, is named "db"; a dependency is named by its URI). When the checks
cannot even run: 503 `{"status":"DOWN"}`. Before mid-2018 dependencies answered 200 with
`{"<name>":{"status":"up"}}`. A 503 whose body is a Kubernetes Status comes from the API
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

# Service → the paths that tell whether it can do its job, asked in order until one fails.
# /health runs the service's own checks (its database), /health/dependencies only the
# services it calls. tuf-reposerver is useless while tuf-keyserver is down, and only
# /health/dependencies says so (ota-tuf 1d0d714 reposerver/.../Boot.scala: its one
# dependency check is tuf-keyserver); its database is in /health only: it needs both.
CHECKS: dict[str, tuple[str, ...]] = {
    "app": ("/health",),
    "campaigner": ("/health",),
    "campaigner-daemon": ("/health",),
    "device-registry": ("/health",),
    "device-registry-daemon": ("/health",),
    "director": ("/health",),
    "director-daemon": ("/health",),
    "tuf-keyserver": ("/health",),
    "tuf-keyserver-daemon": ("/health",),
    "tuf-reposerver": ("/health", "/health/dependencies"),
    "treehub": ("/health",),
    "web-events": ("/health",),
}
HEALTHY_WORDS = {"ok", "up"}


@dataclass(frozen=True)
class HealthResult:
    service: str
    ok: bool
    http_status: int | None  # None when the API server could not be reached at all
    latency_ms: float
    reason: str
    path: str  # the path that failed, or the last one asked
    failing: dict[str, str] = field(default_factory=dict)  # check → its status and cause

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
    """Checks whose status is not OK/up, with their cause, from either health format."""
    if not isinstance(body, dict) or {"code", "description"} <= body.keys():
        return {}  # not health checks: the services' error shape (libats ErrorRepresentation)
    if isinstance(body.get("status"), str):
        return {}  # an overall status ({"status":"DOWN"}: the checks could not run)
    out = {}
    for name, value in body.items():
        word = _check_status(value)
        if word is not None and word.lower() in HEALTHY_WORDS:
            continue
        # libats says why in "cause"; "message" is kept for other health endpoints.
        cause = (value.get("cause") or value.get("message")) if isinstance(value, dict) else None
        out[str(name)] = f"{word or value}" + (f": {_short(str(cause))}" if cause else "")
    return out


def _short(text: str, limit: int = 200) -> str:
    """One line of at most `limit` characters (causes can be long exception texts)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


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
    if isinstance(body, dict) and isinstance(body.get("status"), str) and len(body) == 1:
        word = body["status"]
        return result(False, f"{service} answered {resp.status} with status {word}")
    return result(False, explain(service, resp))


def check_one(
    caller: ServiceCaller,
    service: str,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> HealthResult:
    """The health requests of `service` (a name from `CHECKS`), up to the first failure;
    the latency is the sum of the requests'."""
    start = clock()
    for path in CHECKS[service]:
        try:
            resp = caller("GET", service, path)
        except ClusterUnreachable as e:
            return HealthResult(service, False, None, (clock() - start) * 1000, str(e), path)
        result = _judge(service, path, resp, (clock() - start) * 1000)
        if not result.ok:
            return result
    return result


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
                latest[name] = dataclasses.replace(lost, service=name, path=CHECKS[name][0])
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
