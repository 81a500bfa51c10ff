"""Device registration in device-registry (`PUT /api/v1/devices`).

device-registry keys devices by `deviceId`: for a deviceId it knows already it attaches
the new credentials to the device's existing uuid and answers with that uuid. The gateway,
though, takes the device's identity from its certificate CN, so a bundle whose CN is not
the answered uuid would authenticate as nobody the registry knows. Such an answer is
refused here instead of passing silently.

Batches go through one `ServiceCaller` (one pooled connection to the API server): make
one with `kube.Cluster.service_caller()` and pass it to every call.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from otactl.errors import ServiceError
from otactl.retry import Deadline, Progress, call

if TYPE_CHECKING:
    from otactl.service_api import ServiceCaller

SERVICE = "device-registry"
PATH = "/api/v1/devices"
# How long one registration may wait for device-registry (pods starting or restarting)
# when the caller gives no deadline of its own.
DEFAULT_TIMEOUT = 60.0


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
) -> str:
    """Register one device with its certificate; returns its uuid (the certificate CN).

    Safe to repeat: the same deviceId and uuid answer the same uuid. Transient answers
    (no endpoints yet, 5xx) are retried until `deadline` (default: DEFAULT_TIMEOUT from
    now); a 4xx or a different uuid raises `ServiceError`."""
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
        caller,
        SERVICE,
        "PUT",
        PATH,
        accept={200},
        deadline=deadline or Deadline(DEFAULT_TIMEOUT),
        body=body,
        headers={"x-ats-namespace": tenant, "Content-Type": "application/json"},
        progress=progress,
    )
    try:
        answered = resp.json()
    except ValueError:
        answered = None
    if not isinstance(answered, str):
        raise ServiceError(f"{SERVICE}: PUT {PATH} for {device_id!r} answered 200 without a uuid")
    if answered.lower() != uuid.lower():
        raise ServiceError(
            f"{SERVICE}: deviceId {device_id!r} is already registered as device {answered}, "
            f"not {uuid} (the certificate CN); the registry attached the new certificate to "
            f"{answered}: give this device another name, or remove the old device first"
        )
    return answered.lower()
