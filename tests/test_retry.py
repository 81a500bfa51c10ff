"""The shared retry policy for service calls: what is retried, how long, how it reads."""

from __future__ import annotations

import pytest
from service_fakes import FakeClock, apiserver, script, service

from otactl.errors import ClusterUnreachable, ConfigError, ServiceError, WaitTimeout
from otactl.retry import HEARTBEAT, HEARTBEAT_ENV, call, heartbeat_seconds
from otactl.service_api import Response


def test_retry_after_is_honoured_and_backoff_is_capped() -> None:
    caller = script(
        ("GET", "director", "/x", [service(429, {}, {"Retry-After": "2"})]
         + [service(503, {"code": "busy", "description": "d"})] * 6 + [service(200, "ok")]),
    )  # fmt: skip
    clock = FakeClock()
    resp = call(caller, "director", "GET", "/x", accept={200}, deadline=clock.deadline(60))
    assert resp.status == 200
    assert clock.slept[0] == 2 and max(clock.slept[1:]) == 3.0
    assert clock.slept[1:3] == [0.4, 0.8]  # exponential from the second attempt on


def test_deadline_is_not_overshot() -> None:
    caller = script(("GET", "director", "/x", [service(503, {})]))
    clock = FakeClock()
    with pytest.raises(WaitTimeout, match=r"director: GET /x: gave up after 5s"):
        call(caller, "director", "GET", "/x", accept={200}, deadline=clock.deadline(5))
    assert clock.now - 1000 == pytest.approx(5)


def test_apiserver_answers_are_never_accepted_as_the_services() -> None:
    # A 404 Status from the API server (Service missing) is not the service's 404.
    missing = apiserver(404, 'services "director" not found', "NotFound")
    caller = script(("GET", "director", "/x", [missing]))
    with pytest.raises(ServiceError, match="Service director not found"):
        call(caller, "director", "GET", "/x", accept={200, 404}, deadline=FakeClock().deadline(5))


def test_connection_errors_are_retried_until_the_deadline() -> None:
    failures = [0]

    def flaky(
        method: str, svc: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:  # fmt: skip
        failures[0] += 1
        if failures[0] < 3:
            raise ClusterUnreachable("cannot reach the Kubernetes API at https://x: refused")
        return service(200, "ok")

    progress: list[str] = []
    clock = FakeClock()
    call(flaky, "director", "GET", "/x", accept={200}, deadline=clock.deadline(60),
         progress=progress.append)  # fmt: skip
    assert failures[0] == 3 and "cannot reach the Kubernetes API" in progress[0]

    def down(
        method: str, svc: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:  # fmt: skip
        failures[0] += 1
        raise ClusterUnreachable("refused")

    # An API server that never answers: retried (with capped backoff) until the deadline,
    # then the failure is that it is unreachable (exit 4), not that a wait ran out (7).
    failures[0] = 0
    clock = FakeClock()
    with pytest.raises(ClusterUnreachable) as caught:
        call(down, "director", "GET", "/x", accept={200}, deadline=clock.deadline(600))
    assert caught.value.exit_code == 4
    assert failures[0] > 600 / 3.0 and clock.now - 1000 == pytest.approx(600)

    def refused_certificate(
        method: str, svc: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:  # fmt: skip
        failures[0] += 1
        raise ClusterUnreachable("certificate verify failed", transient=False)

    failures[0] = 0
    with pytest.raises(ClusterUnreachable):
        call(refused_certificate, "director", "GET", "/x", accept={200},
             deadline=clock.deadline(600))  # fmt: skip
    assert failures[0] == 1  # waiting does not change a certificate


def test_unchanged_progress_lines_are_repeated_only_now_and_then() -> None:
    caller = script(("GET", "director", "/x", [service(503, {})] * 40 + [service(200, "ok")]))
    clock = FakeClock()
    progress: list[str] = []
    call(caller, "director", "GET", "/x", accept={200}, deadline=clock.deadline(600),
         progress=progress.append)  # fmt: skip
    waited = clock.now - 1000
    assert len(set(progress)) == 1
    assert 2 <= len(progress) <= waited / HEARTBEAT + 1 < 40


def test_heartbeat_is_15_s_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(HEARTBEAT_ENV, raising=False)
    assert heartbeat_seconds() == HEARTBEAT == 15.0
    monkeypatch.setenv(HEARTBEAT_ENV, "0.5")
    assert heartbeat_seconds() == 0.5
    monkeypatch.setenv(HEARTBEAT_ENV, "soon")
    with pytest.raises(ConfigError, match=HEARTBEAT_ENV):
        heartbeat_seconds()
