"""Device registration in device-registry (`PUT /api/v1/devices`).

What the pinned device-registry does (ota-device-registry 5494d76):

- `PUT /api/v1/devices` (PublicCredentialsResource.scala, createDeviceWithPublicCredentials)
  looks the `deviceId` up in the tenant (DeviceRepository.findUuidFromUniqueDeviceIdOrCreate).
  A known `deviceId` keeps its uuid, and the new credentials *replace* that device's
  (PublicCredentialsRepository.update is an insertOrUpdate), whatever uuid we sent; the
  answer is that uuid. So comparing uuids after the PUT is too late: the device that held
  the deviceId has lost its certificate. We look the `deviceId` up first
  (`GET /api/v1/devices?deviceId=...`, DevicesResource.searchDevice and
  DeviceRepository.search: a page `{"values":[device...],"total",...}`) and refuse a
  deviceId that belongs to another uuid before anything is written.
- A new `deviceId` is inserted with our uuid; the table's unique keys
  (db/migration/V1 `PRIMARY KEY (uuid)`, V3 `UNIQUE (namespace, device_name)` and
  `(namespace, device_id)`) turn a taken device name, or a uuid already used (in any
  tenant), into 409 `conflicting_device` "deviceId or deviceName is already in use"
  (common/Errors.scala, DeviceRepository.create `handleIntegrityErrors`). That 409 gets
  its own message, naming who holds the name when the registry says so.

The gateway takes the device's identity from its certificate CN (the uuid), so a bundle
registered under any other uuid would authenticate as nobody the registry knows.

Batches go through one `ServiceCaller` (one pooled keep-alive connection set to the API
server) and a bounded pool of threads (`Registrar`). A batch lists the tenant's devices
once (`GET /api/v1/devices?offset=&limit=`, pages of LIST_PAGE) instead of one look-up per
device, so each registration is one round trip through the service proxy; a tenant with
more than LIST_AT_MOST devices is looked up device by device instead.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from otactl.errors import ServiceError
from otactl.retry import Deadline, Progress, call

if TYPE_CHECKING:
    from otactl.service_api import ServiceCaller

SERVICE = "device-registry"
PATH = "/api/v1/devices"
# How long one registration may wait for device-registry (pods starting or restarting)
# when the caller gives no deadline of its own.
DEFAULT_TIMEOUT = 60.0
# Registrations in flight at once in a batch: enough to hide the round trips through the
# API server, few enough not to crowd device-registry's database pool (HikariCP's default
# is 10 connections).
WORKERS = 8
# A batch lists the tenant's devices in pages of LIST_PAGE, when there are at most
# LIST_AT_MOST of them (a bigger registry is cheaper to ask device by device).
LIST_PAGE = 1000
LIST_AT_MOST = 20_000


def _headers(tenant: str, json_body: bool = False) -> dict[str, str]:
    headers = {"x-ats-namespace": tenant}
    if json_body:
        headers["Content-Type"] = "application/json"
    return headers


def _search_page(
    caller: ServiceCaller, tenant: str, query: str, deadline: Deadline, progress: Progress | None
) -> tuple[list[dict[str, Any]], int]:
    """One page of DeviceRepository.search: (values, total)."""
    resp = call(
        caller, SERVICE, "GET", f"{PATH}?{query}", accept={200}, deadline=deadline,
        headers=_headers(tenant), progress=progress,
    )  # fmt: skip
    try:
        data = resp.json()
        values, total = data["values"], int(data["total"])
        if isinstance(values, list) and all(isinstance(v, dict) for v in values):
            return values, total
    except (ValueError, KeyError, TypeError):
        pass
    raise ServiceError(f"{SERVICE}: GET {PATH}?{query.split('=')[0]}=...: not a page of devices")


def _search(
    caller: ServiceCaller, tenant: str, query: str, deadline: Deadline, progress: Progress | None
) -> list[dict[str, Any]]:
    return _search_page(caller, tenant, query, deadline, progress)[0]


def list_devices(
    caller: ServiceCaller,
    tenant: str,
    *,
    at_most: int = LIST_AT_MOST,
    deadline: Deadline | None = None,
    progress: Progress | None = None,
) -> dict[str, str] | None:
    """deviceId -> uuid of every device of the tenant, or None when it has more than
    `at_most` devices."""
    deadline = deadline or Deadline(DEFAULT_TIMEOUT)
    known: dict[str, str] = {}
    offset = 0
    while True:
        query = f"offset={offset}&limit={LIST_PAGE}"
        values, total = _search_page(caller, tenant, query, deadline, progress)
        if total > at_most:
            return None
        for device in values:
            if isinstance(device.get("deviceId"), str) and isinstance(device.get("uuid"), str):
                known[device["deviceId"]] = device["uuid"].lower()
        offset += len(values)
        if not values or offset >= total:
            return known


def find_device(
    caller: ServiceCaller,
    tenant: str,
    device_id: str,
    *,
    deadline: Deadline | None = None,
    progress: Progress | None = None,
) -> str | None:
    """The uuid of the device with this `deviceId` in the tenant, or None."""
    deadline = deadline or Deadline(DEFAULT_TIMEOUT)
    found = _search(caller, tenant, f"deviceId={quote(device_id, safe='')}", deadline, progress)
    for device in found:
        if device.get("deviceId") == device_id and isinstance(device.get("uuid"), str):
            return str(device["uuid"]).lower()
    return None


def _conflict(
    caller: ServiceCaller,
    tenant: str,
    uuid: str,
    device_id: str,
    name: str,
    deadline: Deadline,
) -> ServiceError:
    """The error for a 409 of the PUT: the name's holder when the registry shows one."""
    holder = None
    try:
        query = f"nameContains={quote(name, safe='')}&limit=1000"
        found = _search(caller, tenant, query, deadline, None)
        holder = next((d for d in found if d.get("deviceName") == name), None)
    except ServiceError:
        pass  # the 409 itself is what matters
    start = (
        f"{SERVICE}: cannot register deviceId {device_id!r} as device {uuid}: "
        "409 conflicting_device"
    )
    if holder is not None:
        return ServiceError(
            f"{start}: the device name {name!r} belongs to device {holder.get('uuid')} "
            f"(deviceId {holder.get('deviceId')!r}); give this device another name"
        )
    return ServiceError(
        f"{start}: the name {name!r} or the uuid {uuid} is already in use (a uuid is unique "
        "across tenants); nothing was registered"
    )


def register_device(
    caller: ServiceCaller,
    tenant: str,
    uuid: str,
    device_id: str,
    name: str,
    client_pem: str | bytes,
    *,
    deadline: Deadline | None = None,
    progress: Progress | None = None,
    known: Mapping[str, str] | None = None,
) -> str:
    """Register one device with its certificate; returns its uuid (the certificate CN).

    Safe to repeat: the same deviceId and uuid register again (the certificate is the
    bundle's). A deviceId that belongs to another uuid is refused before anything is
    written (looked up, or found in `known`: `list_devices`' map); a taken name (409) has
    its own message. Transient answers (no endpoints yet, 5xx) are retried until
    `deadline` (default: DEFAULT_TIMEOUT from now); a 4xx raises `ServiceError`
    (`ServiceAuthRefused` for a 401/403 of the service)."""
    uuid = uuid.lower()
    deadline = deadline or Deadline(DEFAULT_TIMEOUT)
    if known is not None:
        existing = known.get(device_id)
    else:
        existing = find_device(caller, tenant, device_id, deadline=deadline, progress=progress)
    if existing is not None and existing != uuid:
        raise ServiceError(
            f"{SERVICE}: deviceId {device_id!r} is already registered as device {existing}, "
            f"not {uuid} (the certificate CN); a PUT would replace {existing}'s certificate, "
            "so nothing was sent: give this device another name, or remove the old device "
            "first"
        )
    if isinstance(client_pem, bytes):
        client_pem = client_pem.decode()
    body = json.dumps(
        {
            "uuid": uuid,
            "deviceId": device_id,
            "deviceName": name,
            "deviceType": "Other",
            "credentials": client_pem,
            "credentialsType": "PEM",
        }
    ).encode()
    resp = call(
        caller, SERVICE, "PUT", PATH, accept={200, 409}, deadline=deadline, body=body,
        headers=_headers(tenant, json_body=True), progress=progress,
    )  # fmt: skip
    if resp.status == 409:
        raise _conflict(caller, tenant, uuid, device_id, name, deadline)
    try:
        answered = resp.json()
    except ValueError:
        answered = None
    if not isinstance(answered, str):
        raise ServiceError(f"{SERVICE}: PUT {PATH} for {device_id!r} answered 200 without a uuid")
    if answered.lower() != uuid:
        # Someone registered this deviceId between our look-up and our PUT.
        raise ServiceError(
            f"{SERVICE}: deviceId {device_id!r} was registered as device {answered} meanwhile, "
            f"not {uuid} (the certificate CN); the registry attached this certificate to "
            f"{answered}: remove that device, then register again"
        )
    return uuid


class Registrar:
    """Registers devices on a bounded pool of threads, all through one `ServiceCaller`.

    From the second `submit` on, the tenant's devices are listed once (`list_devices`)
    instead of looked up one by one. `submit` returns at once (it waits only while
    `workers` registrations are in flight) and raises the first failure seen so far;
    `finish` waits for the rest and raises the first failure. Used as a context manager,
    leaving it on an error cancels what has not started. Registrations that succeeded stay
    registered (registration can be repeated)."""

    def __init__(
        self,
        caller: ServiceCaller,
        tenant: str,
        *,
        workers: int = WORKERS,
        timeout: float = DEFAULT_TIMEOUT,
        progress: Progress | None = None,
    ) -> None:
        self.caller = caller
        self.tenant = tenant
        self.workers = max(1, workers)
        self.timeout = timeout
        self.progress = progress
        self.registered = 0
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="otactl-register")
        self._pending: deque[Future[str]] = deque()
        self._known: dict[str, str] | None = None
        self._submitted = 0

    def __enter__(self) -> Registrar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _collect(self, block: bool) -> None:
        """Take finished registrations off the queue (the oldest first, waiting for it
        when `block`), raising the first failure."""
        while self._pending and (block or self._pending[0].done()):
            future = self._pending.popleft()
            future.result()  # raises the registration's error
            self.registered += 1
            block = False

    def submit(self, uuid: str, device_id: str, name: str, client_pem: str | bytes) -> None:
        """Queue one registration (see `register_device`)."""
        # One device is looked up alone; from the second on, the batch lists the tenant.
        if self._submitted == 1:
            self._known = list_devices(
                self.caller, self.tenant, deadline=Deadline(self.timeout), progress=self.progress
            )
        self._submitted += 1
        self._collect(block=len(self._pending) >= 2 * self.workers)
        device = (uuid, device_id, name, client_pem)
        self._pending.append(self._pool.submit(self._register, *device, self._known))

    def _register(
        self,
        uuid: str,
        device_id: str,
        name: str,
        client_pem: str | bytes,
        known: Mapping[str, str] | None,
    ) -> str:
        return register_device(
            self.caller, self.tenant, uuid, device_id, name, client_pem,
            deadline=Deadline(self.timeout), progress=self.progress, known=known,
        )  # fmt: skip

    def finish(self) -> int:
        """Wait for every registration; returns how many were registered."""
        while self._pending:
            self._collect(block=True)
        return self.registered
