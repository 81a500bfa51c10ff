"""Device registration: the request, the uuid check, retries (fake device-registry)."""

from __future__ import annotations

import json

import pytest
from service_fakes import FakeClock, no_endpoints, script, service

from otactl.errors import ServiceError
from otactl.registry import register_device

UUID = "0d6f6b1e-2c1f-4a57-9a53-6a3f0c3c5e11"
OLD = "9b2f7c44-8a1d-4e0b-b2f4-4c1b0d3e7a22"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PUT = ("PUT", "device-registry", "/api/v1/devices")


def test_registers_with_the_documented_body() -> None:
    # Not "default": device-registry (libats) files a request without x-ats-namespace
    # under "default", so only another tenant shows that the header carries the value.
    caller = script((*PUT, [service(200, UUID)]))
    assert register_device(caller, "fleet-b", UUID, "dev-1", "dev-1", PEM.encode()) == UUID
    [(_, _, _, body, headers)] = caller.calls
    assert json.loads(body or b"") == {
        "uuid": UUID,
        "deviceId": "dev-1",
        "deviceName": "dev-1",
        "deviceType": "Other",
        "credentials": PEM,
        "credentialsType": "PEM",
    }
    assert headers == {"x-ats-namespace": "fleet-b", "Content-Type": "application/json"}


def test_existing_device_id_with_another_uuid_is_refused() -> None:
    caller = script((*PUT, [service(200, OLD)]))
    with pytest.raises(ServiceError) as e:
        register_device(caller, "default", UUID, "dev-1", "dev-1", PEM)
    msg = str(e.value)
    assert "deviceId 'dev-1' is already registered as device " + OLD in msg
    assert f"not {UUID} (the certificate CN)" in msg and "\n" not in msg


def test_no_endpoints_is_retried_and_400_is_not() -> None:
    caller = script((*PUT, [no_endpoints("device-registry"), service(200, UUID)]))
    clock = FakeClock()
    assert register_device(
        caller, "default", UUID, "d", "d", PEM, deadline=clock.deadline(10)
    ) == UUID  # fmt: skip
    assert len(caller.calls) == 2
    bad = script((*PUT, [service(400, {"code": "invalid_entity", "description": "no"})]))
    with pytest.raises(ServiceError, match=r"device-registry: PUT /api/v1/devices: .*HTTP 400"):
        register_device(bad, "default", UUID, "d", "d", PEM)
    odd = script((*PUT, [service(200, {"uuid": UUID})]))
    with pytest.raises(ServiceError, match="without a uuid"):
        register_device(odd, "default", UUID, "d", "d", PEM)


def test_waiting_is_reported_and_a_non_json_answer_is_refused() -> None:
    caller = script((*PUT, [no_endpoints("device-registry"), service(200, UUID)]))
    clock = FakeClock()
    progress: list[str] = []
    register_device(
        caller, "fleet-b", UUID, "d", "d", PEM, deadline=clock.deadline(10),
        progress=progress.append,
    )  # fmt: skip
    assert len(progress) == 1 and "no ready endpoints for service device-registry" in progress[0]
    garbled = script((*PUT, [service(200, b"<html>proxy page</html>")]))
    with pytest.raises(ServiceError, match="answered 200 without a uuid"):
        register_device(garbled, "fleet-b", UUID, "d", "d", PEM)
