"""Google credentials and the Container API client: a service-account key or Application
Default Credentials, the project they name, the REST client, and the `ExecCredential`
(`otactl gke token`) that kubectl runs for a fresh access token."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otactl.errors import ConfigError, GkeCredentialsError, GkeUnreachable
from otactl.gke.errors import _connection_reason, _one_line

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud.container_v1 import ClusterManagerClient

# Testing and emulator knob: send every Container API call to this base URL
# (e.g. http://127.0.0.1:8080) instead of https://container.googleapis.com.
ENDPOINT_ENV = "OTACTL_GKE_ENDPOINT"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# What gke-gcloud-auth-plugin asks for: the API server maps the token to an account by its
# e-mail (tokeninfo), which needs userinfo.email next to cloud-platform.
TOKEN_SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
)
EXEC_API_VERSION = "client.authentication.k8s.io/v1"


def load_credentials(
    credentials_file: Path | None = None, scopes: Sequence[str] = SCOPES
) -> tuple[Credentials, str | None]:
    """Credentials from a service-account JSON key, else Application Default Credentials,
    with the project they name (the key's project_id, ADC's project), if any."""
    import google.auth
    from google.auth import exceptions as auth_exceptions

    if credentials_file is not None:
        return _service_account(Path(credentials_file), scopes)
    try:
        creds, project = google.auth.default(scopes=list(scopes))
    except auth_exceptions.DefaultCredentialsError as e:
        raise GkeCredentialsError(
            "no Google Cloud credentials found: pass --credentials FILE (service-account JSON) "
            "or set GOOGLE_APPLICATION_CREDENTIALS (Application Default Credentials)"
        ) from e
    return creds, project


def _service_account(path: Path, scopes: Sequence[str]) -> tuple[Credentials, str | None]:
    # Only service-account keys here: google-auth warns that its generic loader would also
    # run whatever an "external account" file names. Other kinds go through ADC.
    from google.oauth2 import service_account

    try:
        text = path.read_text()
    except FileNotFoundError as e:
        raise GkeCredentialsError(f"--credentials {path}: no such file") from e
    except OSError as e:
        raise GkeCredentialsError(f"--credentials {path}: cannot read: {e.strerror}") from e
    try:
        info = json.loads(text)
    except ValueError as e:
        raise GkeCredentialsError(f"--credentials {path}: not JSON") from e
    if not isinstance(info, dict) or info.get("type") != "service_account":
        kind = info.get("type") if isinstance(info, dict) else None
        raise GkeCredentialsError(
            f"--credentials {path}: not a service-account key (type {kind!r}); "
            "point GOOGLE_APPLICATION_CREDENTIALS at other kinds of credentials"
        )
    try:
        creds = service_account.Credentials.from_service_account_info(info, scopes=list(scopes))
    except ValueError as e:
        raise GkeCredentialsError(
            f"--credentials {path}: unusable service-account key: {_one_line(str(e))}"
        ) from e
    project = info.get("project_id")
    return creds, project if isinstance(project, str) and project else None


def resolve_project(explicit: str | None, credentials_project: str | None) -> str:
    """The project as gcloud and google-auth find it: --project, else $GOOGLE_CLOUD_PROJECT,
    else the project the credentials name (a key file's project_id, ADC's project)."""
    project = explicit or os.environ.get("GOOGLE_CLOUD_PROJECT") or credentials_project
    if not project:
        raise ConfigError(
            "no Google Cloud project: pass --project, set GOOGLE_CLOUD_PROJECT, "
            "or use credentials that name one (a service-account key's project_id)"
        )
    return project


def make_client(credentials: Credentials, endpoint: str | None = None) -> ClusterManagerClient:
    """A Container API client on the REST transport; `endpoint` may carry a scheme (http://)."""
    from google.cloud import container_v1

    options = {"api_endpoint": endpoint} if endpoint else None
    return container_v1.ClusterManagerClient(
        credentials=credentials, transport="rest", client_options=options
    )


def exec_credential(credentials: Credentials) -> dict[str, Any]:
    """An `ExecCredential` (client.authentication.k8s.io/v1) with a fresh access token and
    its expiry, as kubectl expects from an exec plugin (gke-gcloud-auth-plugin's output)."""
    import google.auth.transport.requests
    from google.auth import exceptions as auth_exceptions

    try:
        credentials.refresh(google.auth.transport.requests.Request())
    except auth_exceptions.RefreshError as e:
        reason = str(e.args[0]) if e.args else str(e)
        raise GkeCredentialsError(
            f"Google refused the credentials: {_one_line(reason)}; fix them, then run "
            "`otactl gke credentials` again"
        ) from e
    except auth_exceptions.TransportError as e:
        raise GkeUnreachable(
            f"cannot reach Google's token endpoint: {_connection_reason(e)}"
        ) from e
    status: dict[str, Any] = {"token": credentials.token}
    if credentials.expiry is not None:
        # google-auth keeps expiry as a naive UTC datetime.
        expiry = credentials.expiry.replace(tzinfo=UTC)
        status["expirationTimestamp"] = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"apiVersion": EXEC_API_VERSION, "kind": "ExecCredential", "status": status}


def expiry_of(credential: dict[str, Any]) -> datetime | None:
    value = credential["status"].get("expirationTimestamp")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if value else None
