"""Health results and waits: the service's 503 and its failing checks are told apart from
the API server's own 503 (fake services; the stand-in runs in the integration tests)."""

from __future__ import annotations

import pytest
from service_fakes import FakeClock, apiserver, no_endpoints, script, service

from otactl import health
from otactl.errors import ConfigError, WaitTimeout

DOWN = {"database": {"status": "DOWN", "message": "connection refused"}}
# libats e12f057 HealthResource: every check by name, a failing one with its cause.
DB_CAUSE = "database - Connection is not available, request timed out after 1000ms."
DB_DOWN = {"db": {"status": "down", "cause": DB_CAUSE}}
OK = {"status": "OK"}


def one(answer: object, name: str = "director") -> health.HealthResult:
    """`answer` to the service's last health path, OK to the ones before it."""
    *before, last = health.CHECKS[name]
    caller = script(*[("GET", name, p, [service(200, OK)]) for p in before],
                    ("GET", name, last, [answer]))  # fmt: skip
    return health.check_one(caller, name)


def test_ok() -> None:
    r = one(service(200, {"status": "OK"}))
    assert (r.ok, r.status, r.http_status, r.reason, r.path) == (True, "OK", 200, "OK", "/health")
    assert r.latency_ms >= 0


def test_service_503_names_its_failing_checks() -> None:
    r = one(service(503, DOWN))
    assert not r.ok and r.status == "FAIL" and r.http_status == 503
    assert r.reason == "director answered 503: failing database DOWN: connection refused"
    assert r.failing == {"database": "DOWN: connection refused"}


def test_libats_failure_shows_each_down_check_with_its_cause() -> None:
    r = one(service(503, {**DB_DOWN, "kafka": {"status": "up"}}))
    assert (r.ok, r.http_status, r.failing) == (False, 503, {"db": f"down: {DB_CAUSE}"})
    assert r.reason == f"director answered 503: failing db down: {DB_CAUSE}"
    # A long cause (an exception text) is one line, cut.
    long = one(service(503, {"db": {"status": "down", "cause": "x\n" * 300}}))
    assert "\n" not in long.reason and len(long.failing["db"]) < 220
    # The checks could not even run: libats answers 503 {"status":"DOWN"}.
    broken = one(service(503, {"status": "DOWN"}))
    assert not broken.failing and broken.reason == "director answered 503 with status DOWN"


def test_apiserver_503_is_not_the_service() -> None:
    r = one(no_endpoints("director"))
    assert not r.ok and r.http_status == 503 and not r.failing
    assert r.reason.startswith("no ready endpoints for service director (API server 503)")
    gone = one(apiserver(404, 'services "director" not found', "NotFound"))
    assert (
        gone.reason == 'Service director not found (API server 404: services "director" not found)'
    )


def test_reposerver_needs_its_own_health_and_its_dependencies() -> None:
    assert health.CHECKS["tuf-reposerver"] == ("/health", "/health/dependencies")
    keyserver_down = {"http://tuf-keyserver:80": {"status": "down", "cause": "HttpResponse(503)"}}
    r = one(service(502, keyserver_down), "tuf-reposerver")
    assert not r.ok and r.path == "/health/dependencies" and "answered 502" in r.reason
    assert r.failing == {"http://tuf-keyserver:80": "down: HttpResponse(503)"}
    # Its database is only in /health (dependencies answer 200 without it): asked first.
    caller = script(
        ("GET", "tuf-reposerver", "/health", [service(503, DB_DOWN)]),
        ("GET", "tuf-reposerver", "/health/dependencies", [service(200, OK)]),
    )
    own = health.check_one(caller, "tuf-reposerver")
    assert (own.ok, own.path, own.http_status) == (False, "/health", 503)
    assert caller.paths() == [("GET", "tuf-reposerver", "/health")]
    both = one(service(200, OK), "tuf-reposerver")
    assert both.ok and both.path == "/health/dependencies"


def test_pre_2018_dependencies_format() -> None:
    up = {"db": {"status": "up"}, "keyserver": {"status": "up"}}
    assert one(service(200, up), "tuf-reposerver").ok
    down = {"db": {"status": "up"}, "keyserver": {"status": "down"}}
    r = one(service(200, down), "tuf-reposerver")
    assert not r.ok and r.failing == {"keyserver": "down"}
    assert "reports keyserver down" in r.reason


def test_error_shape_and_odd_answers() -> None:
    err = {"code": "service_unavailable", "description": "starting"}
    r = one(service(503, err))
    assert not r.ok and not r.failing and r.reason.startswith("director answered HTTP 503")
    assert not one(service(200, {"status": "DOWN"})).ok
    assert not one(service(500, b"<html>oops</html>")).ok


def test_unknown_service_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as e:
        health.resolve(["director", "directr"])
    assert "unknown service directr" in str(e.value)
    assert "tuf-keyserver-daemon" in str(e.value) and "web-events" in str(e.value)
    assert health.resolve(None) == sorted(health.CHECKS) and len(health.CHECKS) == 12
    assert health.resolve(["director", "director"]) == ["director"]


def test_wait_healthy_retries_only_the_failing_ones() -> None:
    caller = script(
        ("GET", "director", "/health", [no_endpoints("director"), service(503, DOWN),
                                        service(200, {"status": "OK"})]),
        ("GET", "tuf-keyserver", "/health", [service(200, {"status": "OK"})]),
    )  # fmt: skip
    clock = FakeClock()
    progress: list[str] = []
    results = health.wait_healthy(
        caller, ["director", "tuf-keyserver"], timeout=30, progress=progress.append,
        deadline=clock.deadline(30),
    )  # fmt: skip
    assert [r.ok for r in results] == [True, True]
    assert caller.paths().count(("GET", "tuf-keyserver", "/health")) == 1
    assert caller.paths().count(("GET", "director", "/health")) == 3
    assert "no ready endpoints for service director" in progress[0]
    assert "failing database DOWN" in progress[1]


def test_wait_healthy_timeout_says_why_per_service() -> None:
    caller = script(
        ("GET", "director", "/health", [no_endpoints("director")]),
        ("GET", "campaigner", "/health", [service(503, DOWN)]),
        ("GET", "tuf-keyserver", "/health", [service(200, {"status": "OK"})]),
    )
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as e:
        health.wait_healthy(
            caller, ["director", "campaigner", "tuf-keyserver"], timeout=10,
            deadline=clock.deadline(10),
        )  # fmt: skip
    msg = str(e.value)
    assert msg.startswith("2 of 3 services not healthy after 10s: ")
    assert "director: no ready endpoints for service director" in msg
    assert "campaigner: campaigner answered 503: failing database DOWN" in msg
    assert "tuf-keyserver" not in msg and e.value.exit_code == 7


class Clock:
    """perf_counter for check_one: each reading 0.25 s after the previous one."""

    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


def test_latency_is_in_milliseconds_and_json_has_every_field() -> None:
    caller = script(("GET", "director", "/health", [service(503, DOWN)]))
    r = health.check_one(caller, "director", clock=Clock())
    assert r.latency_ms == 250.0
    assert r.as_json() == {
        "service": "director",
        "status": "FAIL",
        "http_status": 503,
        "latency_ms": 250.0,
        "reason": "director answered 503: failing database DOWN: connection refused",
        "path": "/health",
        "failing": {"database": "DOWN: connection refused"},
    }
    ok = health.check_one(
        script(("GET", "director", "/health", [service(200, {"status": "OK"})])),
        "director",
        clock=Clock(),
    )
    assert ok.as_json()["status"] == "OK" and ok.as_json()["failing"] == {}


def test_an_unreachable_api_server_is_a_failed_check_not_a_crash() -> None:
    from otactl.errors import ClusterUnreachable

    def unreachable(*args: object, **kw: object) -> object:
        raise ClusterUnreachable("cannot reach the Kubernetes API at https://127.0.0.1:1")

    r = health.check_one(unreachable, "tuf-reposerver", clock=Clock())  # type: ignore[arg-type]
    assert r == health.HealthResult(
        "tuf-reposerver", False, None, 250.0,
        "cannot reach the Kubernetes API at https://127.0.0.1:1", "/health",
    )  # fmt: skip


def test_check_asks_each_named_service_once_in_order() -> None:
    caller = script(
        ("GET", "director", "/health", [service(200, {"status": "OK"})]),
        ("GET", "tuf-reposerver", "/health", [service(200, {"status": "OK"})]),
        ("GET", "tuf-reposerver", "/health/dependencies", [service(502, DOWN)]),
    )
    results = health.check(caller, ["tuf-reposerver", "director"])
    assert [(r.service, r.ok) for r in results] == [("tuf-reposerver", False), ("director", True)]
    # tuf-reposerver: its own checks, then its dependencies (the keyserver).
    assert caller.paths() == [
        ("GET", "tuf-reposerver", "/health"),
        ("GET", "tuf-reposerver", "/health/dependencies"),
        ("GET", "director", "/health"),
    ]
    everything = health.check(script())  # no service named: all 11, each answering 404
    assert [r.service for r in everything] == sorted(health.CHECKS)
    assert not any(r.ok for r in everything)


@pytest.mark.parametrize(
    ("body", "failing"),
    [
        ({"status": "OK"}, {}),
        ({"db": {"status": "UP"}, "kafka": "up"}, {}),  # any case, either shape
        ({"db": {"status": "DOWN"}, "kafka": "down"}, {"db": "DOWN", "kafka": "down"}),
        ({"db": {"message": "no status"}}, {"db": "{'message': 'no status'}: no status"}),
        ({"db": 3}, {"db": "3"}),
        ({"code": "x", "description": "y"}, {}),  # the services' error shape
        (["not", "a", "map"], {}),
    ],
)
def test_failing_checks(body: object, failing: dict[str, str]) -> None:
    assert health.failing_checks(body) == failing


def test_judging_each_answer() -> None:
    assert one(service(200, {"status": "up"})).reason == "OK"
    assert one(service(200, {})).reason == "OK"  # nothing reported failing
    assert one(service(200, {"status": "DOWN"})).reason == "director answered 200 with status DOWN"
    odd = one(service(200, b"not json"))
    assert odd.ok and odd.reason == "OK"  # 200 with no failing check
    not_a_word = one(service(200, {"status": 3}))  # read as a map of checks: "status" fails
    assert not not_a_word.ok and not_a_word.reason == "director answered 200 but reports status 3"
    r = one(service(500, b"<html>oops</html>"))
    assert (r.ok, r.http_status, r.failing) == (False, 500, {})
    assert r.reason == "director answered HTTP 500: <html>oops</html>"
    apis = one(no_endpoints("director"))
    assert apis.http_status == 503 and apis.latency_ms >= 0 and apis.path == "/health"


def test_wait_healthy_reports_progress_and_uses_its_own_deadline() -> None:
    caller = script(
        ("GET", "director", "/health", [service(503, DOWN), service(200, {"status": "OK"})])
    )
    clock = FakeClock()
    progress: list[str] = []
    results = health.wait_healthy(
        caller, ["director"], timeout=30, progress=progress.append, deadline=clock.deadline(30)
    )
    assert [r.reason for r in results] == ["OK"]
    assert progress == [
        "waiting for 1 of 1 services: director: director answered 503: failing database DOWN: "
        "connection refused"
    ]
    # Without a deadline of its own it makes one from `timeout` (here: already spent).
    stuck = script(("GET", "director", "/health", [service(503, DOWN)]))
    with pytest.raises(WaitTimeout, match=r"^1 of 1 services not healthy after 1e-09s: director"):
        health.wait_healthy(stuck, ["director"], timeout=1e-9)


def test_failures_are_false_and_every_list_is_joined_for_reading() -> None:
    two = {"db": {"status": "DOWN"}, "kafka": {"status": "DOWN"}}
    for answer in (no_endpoints("director"), service(200, {"status": "DOWN"}),
                   service(200, {"db": "down"}), service(503, two)):  # fmt: skip
        assert one(answer).ok is False
    assert one(service(503, two)).reason == "director answered 503: failing db DOWN, kafka DOWN"
    assert one(service(200, two)).reason == "director answered 200 but reports db DOWN, kafka DOWN"
    with pytest.raises(ConfigError) as e:
        health.resolve(["directr", "keysrv"])
    assert str(e.value).startswith("unknown service directr, keysrv (known: app, campaigner, ")
    caller = script(
        ("GET", "director", "/health", [service(503, DOWN)]),
        ("GET", "campaigner", "/health", [service(503, DOWN)]),
    )
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as waited:
        health.wait_healthy(
            caller, ["director", "campaigner"], timeout=10, deadline=clock.deadline(10)
        )
    reason = "answered 503: failing database DOWN: connection refused"
    assert str(waited.value).endswith(
        f": director: director {reason}; campaigner: campaigner {reason}"
    )
    # Backoff between rounds: 0.2 s, doubling up to 3 s, cut at the deadline.
    assert clock.slept[:5] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.0])
    assert sum(clock.slept) == pytest.approx(10)


def test_latency_is_rounded_to_a_tenth_of_a_millisecond_in_json() -> None:
    class Step:
        now = 10.0

        def __call__(self) -> float:
            self.now += 0.25006
            return self.now

    r = health.check_one(
        script(("GET", "director", "/health", [service(200, {"status": "OK"})])),
        "director",
        clock=Step(),
    )
    assert r.latency_ms == pytest.approx(250.06)
    assert r.as_json()["latency_ms"] == 250.1
