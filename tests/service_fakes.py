"""A scripted `ServiceCaller` for unit tests of status-code handling, and a fake clock.

It answers what the OTA services and the API server answer (see the reference, section 3):
the service's own JSON errors, and the API server's Status objects, e.g. 503 "no endpoints
available" while no pod is ready. The integration tests run the same code against the
real API server and the stand-in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from otactl.retry import Deadline
from otactl.service_api import Response


def service(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Response:
    """An answer of the service itself."""
    data = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    return Response(status, data, headers or {})


def apiserver(status: int, message: str, reason: str = "ServiceUnavailable") -> Response:
    """An answer of the API server's proxy: a Kubernetes Status object."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": status,
    }
    return Response(status, json.dumps(body).encode(), {"Content-Type": "application/json"})


def no_endpoints(svc: str) -> Response:
    return apiserver(503, f'no endpoints available for service "{svc}"')


@dataclass
class ScriptedCaller:
    """Answers per (method, service, path): a list consumed in order, the last repeated."""

    script: dict[tuple[str, str, str], list[Response]]
    calls: list[tuple[str, str, str, bytes | None, dict[str, str] | None]] = field(
        default_factory=list
    )

    def __call__(
        self,
        method: str,
        service: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        self.calls.append((method, service, path, body, headers))
        answers = self.script.get((method, service, path))
        if not answers:
            return service_404(path)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def paths(self) -> list[tuple[str, str, str]]:
        return [(m, s, p) for m, s, p, _, _ in self.calls]


def service_404(path: str) -> Response:
    return service(404, {"code": "not_found", "description": path})


class FakeClock:
    """time.monotonic and time.sleep for Deadline: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def deadline(self, timeout: float) -> Deadline:
        return Deadline(timeout, clock=self, sleep=self.sleep)


def script(*entries: tuple[str, str, str, Iterable[Response]]) -> ScriptedCaller:
    return ScriptedCaller({(m, s, p): list(r) for m, s, p, r in entries})
