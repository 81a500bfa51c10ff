"""Talking to the OTA services through the Kubernetes API server's service proxy.

The core (health, credentials, registration) speaks to a `ServiceCaller`; `otactl.kube`
provides the real one (`/api/v1/namespaces/NS/services/NAME:80/proxy/PATH`, one pooled
connection), tests may provide others. Responses keep apart the API server's own answers
(a Kubernetes `Status`, e.g. 503 "no endpoints available") from the service's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """A header, matched case-insensitively (HTTP header names are)."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def from_apiserver(self) -> bool:
        """True when the API server answered itself (no endpoints, service missing, ...):
        its body is a Kubernetes Status object, which no OTA service returns."""
        try:
            data = json.loads(self.body)
        except ValueError:
            return False
        return isinstance(data, dict) and data.get("kind") == "Status" and "apiVersion" in data

    def reason(self) -> str:
        """A short, safe description of the answer for one-line errors (never the body of a
        successful answer, which may hold keys)."""
        if self.from_apiserver:
            return f"API server {self.status}: {self.json().get('message', '')}".strip()
        if self.status >= 400:
            error = self._error_representation()
            if error is not None:
                return f"HTTP {self.status} {error[0]}: {error[1][:200]}"
        text = self.body[:200].decode(errors="replace").strip()
        return f"HTTP {self.status}" + (f": {text}" if text and self.status >= 400 else "")

    def _error_representation(self) -> tuple[str, str] | None:
        """(code, description) of the services' error body, libats' ErrorRepresentation
        (`{"code","description","cause","errorId"}`, libats e12f057
        libats/.../data/Errors.scala), whose random errorId is left out of messages."""
        try:
            data = json.loads(self.body)
        except ValueError:
            return None
        if isinstance(data, dict) and {"code", "description"} <= data.keys():
            return str(data["code"]), " ".join(str(data["description"]).split())
        return None


class ServiceCaller(Protocol):
    """One HTTP request to a Service of the OTA CE namespace (port 80)."""

    def __call__(
        self,
        method: str,
        service: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response: ...
