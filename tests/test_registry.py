"""Device registration: the look-up, the request, the uuid checks, the 409, retries, the
bounded pool (fake device-registry answering as ota-device-registry 5494d76 does)."""

from __future__ import annotations

import json

import pytest
from service_fakes import FakeClock, no_endpoints, script, service

from otactl.errors import ServiceAuthRefused, ServiceError
from otactl.registry import Registrar, register_device

UUID = "0d6f6b1e-2c1f-4a57-9a53-6a3f0c3c5e11"
OLD = "9b2f7c44-8a1d-4e0b-b2f4-4c1b0d3e7a22"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PUT = ("PUT", "device-registry", "/api/v1/devices")


def find(device_id: str) -> tuple[str, str, str]:
    return ("GET", "device-registry", f"/api/v1/devices?deviceId={device_id}")


def page(*devices: dict) -> object:
    """DeviceRepository.search's PaginationResult."""
    return service(200, {"values": list(devices), "total": len(devices), "offset": 0, "limit": 50})


def device(uuid: str, device_id: str, name: str | None = None) -> dict:
    return {"namespace": "default", "uuid": uuid, "deviceId": device_id,
            "deviceName": name or device_id, "deviceType": "Other"}  # fmt: skip


def test_looks_up_then_registers_with_the_documented_body() -> None:
    # Not "default": device-registry (libats) files a request without x-ats-namespace
    # under "default", so only another tenant shows that the header carries the value.
    caller = script((*find("dev-1"), [page()]), (*PUT, [service(200, UUID)]))
    assert register_device(caller, "fleet-b", UUID, "dev-1", "dev-1", PEM.encode()) == UUID
    [(_, _, _, _, lookup_headers), (_, _, _, body, headers)] = caller.calls
    assert caller.paths() == [find("dev-1"), PUT]
    assert lookup_headers == {"x-ats-namespace": "fleet-b"}
    assert json.loads(body or b"") == {
        "uuid": UUID,
        "deviceId": "dev-1",
        "deviceName": "dev-1",
        "deviceType": "Other",
        "credentials": PEM,
        "credentialsType": "PEM",
    }
    assert headers == {"x-ats-namespace": "fleet-b", "Content-Type": "application/json"}


def test_the_device_id_is_quoted_in_the_look_up() -> None:
    caller = script((*find("a%20b%2Fc%26d"), [page()]), (*PUT, [service(200, UUID)]))
    register_device(caller, "default", UUID, "a b/c&d", "a b/c&d", PEM)
    assert caller.paths()[0] == find("a%20b%2Fc%26d")


def test_existing_device_id_with_another_uuid_is_refused_before_any_write() -> None:
    caller = script((*find("dev-1"), [page(device(OLD, "dev-1"))]), (*PUT, [service(200, OLD)]))
    with pytest.raises(ServiceError) as e:
        register_device(caller, "default", UUID, "dev-1", "dev-1", PEM)
    msg = str(e.value)
    assert "deviceId 'dev-1' is already registered as device " + OLD in msg
    assert f"not {UUID} (the certificate CN)" in msg and "nothing was sent" in msg
    assert "\n" not in msg and e.value.exit_code == 8
    # The PUT would have replaced OLD's certificate: it is never sent.
    assert PUT not in caller.paths()


def test_same_device_registers_again() -> None:
    caller = script((*find("dev-1"), [page(device(UUID, "dev-1"))]), (*PUT, [service(200, UUID)]))
    assert register_device(caller, "default", UUID.upper(), "dev-1", "dev-1", PEM) == UUID


def test_409_conflicting_device_names_the_holder_of_the_name() -> None:
    in_use = "deviceId or deviceName is already in use"
    conflict = service(409, {"code": "conflicting_device", "description": in_use})
    by_name = ("GET", "device-registry", "/api/v1/devices?nameContains=kiosk&limit=1000")
    caller = script(
        (*find("kiosk-2"), [page()]),
        (*PUT, [conflict]),
        (*by_name, [page(device(OLD, "kiosk-old", "kiosk"), device(OLD, "x", "kiosk-b"))]),
    )
    with pytest.raises(ServiceError) as e:
        register_device(caller, "default", UUID, "kiosk-2", "kiosk", PEM)
    assert str(e.value) == (
        f"device-registry: cannot register deviceId 'kiosk-2' as device {UUID}: 409 "
        f"conflicting_device: the device name 'kiosk' belongs to device {OLD} (deviceId "
        "'kiosk-old'); give this device another name"
    )
    # Nobody in the tenant has the name: the uuid is taken (uuids are unique across tenants).
    caller = script((*find("kiosk-2"), [page()]), (*PUT, [conflict]), (*by_name, [page()]))
    with pytest.raises(ServiceError, match=rf"the name 'kiosk' or the uuid {UUID} is already"):
        register_device(caller, "default", UUID, "kiosk-2", "kiosk", PEM)


def test_a_device_id_taken_between_look_up_and_put_is_reported() -> None:
    caller = script((*find("dev-1"), [page()]), (*PUT, [service(200, OLD)]))
    with pytest.raises(ServiceError, match=f"was registered as device {OLD} meanwhile"):
        register_device(caller, "default", UUID, "dev-1", "dev-1", PEM)


def test_no_endpoints_is_retried_and_400_and_403_are_not() -> None:
    caller = script(
        (*find("d"), [no_endpoints("device-registry"), page()]),
        (*PUT, [no_endpoints("device-registry"), service(200, UUID)]),
    )
    clock = FakeClock()
    assert register_device(
        caller, "default", UUID, "d", "d", PEM, deadline=clock.deadline(10)
    ) == UUID  # fmt: skip
    assert len(caller.calls) == 4
    invalid = service(400, {"code": "invalid_entity", "description": "no"})
    bad = script((*find("d"), [page()]), (*PUT, [invalid]))
    with pytest.raises(ServiceError, match=r"device-registry: PUT /api/v1/devices: .*HTTP 400"):
        register_device(bad, "default", UUID, "d", "d", PEM)
    odd = script((*find("d"), [page()]), (*PUT, [service(200, {"uuid": UUID})]))
    with pytest.raises(ServiceError, match="without a uuid"):
        register_device(odd, "default", UUID, "d", "d", PEM)
    oauth = script((*find("d"), [service(403, b"The supplied authentication is not authorized")]))
    with pytest.raises(ServiceAuthRefused, match="AUTH_PROTOCOL"):
        register_device(oauth, "default", UUID, "d", "d", PEM)


LIST = ("GET", "device-registry", "/api/v1/devices?offset=0&limit=1000")


def listing(*devices: dict, total: int | None = None) -> object:
    return service(200, {"values": list(devices), "offset": 0, "limit": 1000,
                         "total": len(devices) if total is None else total})  # fmt: skip


def test_registrar_lists_once_then_one_put_per_device() -> None:
    uuids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(40)]
    caller = script((*find("dev-0"), [page()]), (*LIST, [listing(device(OLD, "taken"))]))

    # PUTs run concurrently: answer each with the uuid it carries.
    def put_echo(method: str, svc: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> object:  # fmt: skip
        if method == "PUT":
            caller.calls.append((method, svc, path, body, headers))
            return service(200, json.loads(body or b"{}")["uuid"])
        return caller(method, svc, path, body, headers)

    with Registrar(put_echo, "default", workers=4) as registrar:  # type: ignore[arg-type]
        for i, u in enumerate(uuids):
            registrar.submit(u, f"dev-{i}", f"dev-{i}", PEM)
        assert registrar.finish() == 40
    # The first device is looked up alone, the batch then lists the tenant once.
    assert caller.paths()[0] == find("dev-0") and caller.paths().count(LIST) == 1
    assert caller.paths().count(PUT) == 40 and len(caller.paths()) == 42

    # A deviceId the listing shows under another uuid: refused, nothing sent for it.
    with Registrar(put_echo, "default", workers=2) as registrar:  # type: ignore[arg-type]
        registrar.submit(uuids[0], "dev-0", "dev-0", PEM)
        registrar.submit(UUID, "taken", "taken", PEM)
        with pytest.raises(ServiceError, match=f"already registered as device {OLD}"):
            registrar.finish()
    assert caller.paths().count(PUT) == 41


def test_registrar_asks_device_by_device_in_a_big_registry() -> None:
    caller = script(
        (*LIST, [listing(device(OLD, "x"), total=50_000)]),
        (*find("dev-1"), [page()]),
        (*find("dev-2"), [page()]),
        (*PUT, [service(200, UUID)]),
    )
    with Registrar(caller, "default", workers=1) as registrar:
        registrar.submit(UUID, "dev-1", "dev-1", PEM)
        registrar.finish()
        registrar.submit(UUID, "dev-2", "dev-2", PEM)
        assert registrar.finish() == 2
    assert caller.paths() == [find("dev-1"), PUT, LIST, find("dev-2"), PUT]


def test_listing_pages_through_the_tenant() -> None:
    from otactl.registry import list_devices

    second = ("GET", "device-registry", "/api/v1/devices?offset=1&limit=1000")
    caller = script(
        (*LIST, [listing(device(OLD, "a"), total=2)]),
        (*second, [service(200, {"values": [device(UUID.upper(), "b")], "total": 2})]),
    )
    assert list_devices(caller, "default") == {"a": OLD, "b": UUID}


def test_waiting_is_reported_and_a_non_json_answer_is_refused() -> None:
    caller = script(
        (*find("d"), [page()]), (*PUT, [no_endpoints("device-registry"), service(200, UUID)])
    )
    clock = FakeClock()
    progress: list[str] = []
    register_device(
        caller, "fleet-b", UUID, "d", "d", PEM, deadline=clock.deadline(10),
        progress=progress.append,
    )  # fmt: skip
    assert len(progress) == 1 and "no ready endpoints for service device-registry" in progress[0]
    garbled = script((*find("d"), [page()]), (*PUT, [service(200, b"<html>proxy page</html>")]))
    with pytest.raises(ServiceError, match="answered 200 without a uuid"):
        register_device(garbled, "fleet-b", UUID, "d", "d", PEM)
