"""Google's errors as otactl's: each failure of the Container API, of Google's token
endpoint and of a finished operation becomes a one-line `GkeError` naming the cluster,
and `transient` tells what can pass by itself (and is retried)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from otactl.errors import (
    GkeConflict,
    GkeCredentialsError,
    GkeError,
    GkeForbidden,
    GkeInvalid,
    GkeNotFound,
    GkeQuota,
    GkeUnreachable,
)

if TYPE_CHECKING:
    from google.api_core.exceptions import GoogleAPICallError
    from google.cloud.container_v1 import ClusterManagerClient, Operation

    from otactl.gke.spec import ClusterRef

# google.rpc.Code values found in a failed operation's `error.code`.
_RPC_ERRORS: dict[int, tuple[str, type[GkeError]]] = {
    3: ("invalid argument", GkeInvalid),
    5: ("not found", GkeNotFound),
    6: ("already exists", GkeConflict),
    7: ("permission denied", GkeForbidden),
    8: ("quota exhausted", GkeQuota),
    9: ("failed precondition", GkeError),
    10: ("aborted", GkeConflict),
    16: ("credentials rejected", GkeCredentialsError),
}
# google.rpc.ErrorInfo reasons that mean a quota ran out (google/api/error_reason.proto,
# plus GKE's own StatusCondition code GCE_QUOTA_EXCEEDED).
_QUOTA_REASONS = {"RATE_LIMIT_EXCEEDED", "RESOURCE_QUOTA_EXCEEDED", "GCE_QUOTA_EXCEEDED"}
# Compute Engine has no capacity for the machine type in the zone: not a quota, and it
# passes by itself or in another zone.
_STOCKOUT = re.compile(r"ZONE_RESOURCE_POOL_EXHAUSTED|GCE_STOCKOUT|does not have enough resources")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _numbered(text: str) -> list[str]:
    """The items of GKE's "(1) ... (2) ..." lists, or the whole text when it is not one."""
    parts = [p.strip() for p in re.split(r"(?:^|\s)\(\d+\)\s+", text.strip()) if p.strip()]
    return parts or [text.strip()]


def _quota_message(text: str) -> str:
    """Every quota GKE names, then each item shortened: a long list must not lose (2)."""
    items = _numbered(" ".join(text.split()))
    names = re.findall(r'(?:resource|Quota) [\\"\']*([A-Z][A-Z0-9_]+)', text)
    shown = "; ".join(_one_line(item, 200) for item in items)
    if names:
        return f"{', '.join(dict.fromkeys(names))}: {shown}"
    return shown


def _server_message(e: GoogleAPICallError) -> str:
    """The API's own message, without the method and URL api_core puts in front of it."""
    message = e.message
    # The body holds only the error here; its message field is all that is shown.
    with suppress(AttributeError, ValueError, KeyError, TypeError):
        message = e.response.json()["error"]["message"]
    return str(message)


def _status(e: GoogleAPICallError) -> str:
    """The error's canonical status name (FAILED_PRECONDITION, ...) from the body."""
    with suppress(AttributeError, ValueError, KeyError, TypeError):
        return str(e.response.json()["error"]["status"])
    return ""


def _is_busy(e: GoogleAPICallError) -> bool:
    """GKE's answer to a change while another operation runs on the cluster: 400
    FAILED_PRECONDITION ("... is currently creating cluster ...", "incompatible operation")."""
    from google.api_core import exceptions as api

    return isinstance(e, api.BadRequest | api.FailedPrecondition) and (
        _status(e) == "FAILED_PRECONDITION"
    )


def _api_error(ref: ClusterRef, e: GoogleAPICallError) -> GkeError:
    from google.api_core import exceptions as api

    raw = _server_message(e)
    reason = f" [{e.reason}]" if e.reason else ""  # ErrorInfo reason, e.g. SERVICE_DISABLED
    # Quota is what the ErrorInfo says it is. GKE answers a cluster beyond the regional
    # quota with 403 and the sentence "insufficient regional quota to satisfy request",
    # sometimes with no ErrorInfo: that sentence counts too, a stray word "quota" does not.
    quota = (
        e.reason in _QUOTA_REASONS
        or isinstance(e, api.TooManyRequests)
        or re.search(r"insufficient \w+ quota to satisfy request", raw, re.IGNORECASE)
    )
    if quota:
        return GkeQuota(f"{ref}: quota exhausted: {_quota_message(raw)}{reason}")
    message = _one_line(raw) + reason
    if _is_busy(e):
        return GkeConflict(f"{ref}: busy with another operation: {message}")
    if isinstance(e, api.Unauthorized):
        return GkeCredentialsError(f"{ref}: credentials rejected: {message}")
    kinds: tuple[tuple[type[Exception], str, type[GkeError]], ...] = (
        (api.Forbidden, "permission denied", GkeForbidden),
        (api.NotFound, "not found", GkeNotFound),
        (api.Conflict, "conflict", GkeConflict),
        (api.BadRequest, "invalid request", GkeInvalid),
    )
    for cls, kind, error in kinds:
        if isinstance(e, cls):
            return error(f"{ref}: {kind}: {message}")
    return GkeError(f"{ref}: GKE API error {e.code}: {message}")


def _connection_reason(e: BaseException) -> str:
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(e))
    if match:
        return match.group(1).strip()
    if "RemoteDisconnected" in str(e) or "Connection aborted" in str(e):
        return "connection closed by the server"
    return type(e).__name__


def _transient(cause: BaseException | None) -> bool:
    """What can pass by itself: no connection or a reset one, 429, and the server's 5xx."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth_exceptions

    if isinstance(cause, api.GoogleAPICallError):
        return cause.code in (429, 500, 502, 503, 504)
    return isinstance(
        cause, requests.ConnectionError | requests.Timeout | auth_exceptions.TransportError
    )


@contextmanager
def _calling(ref: ClusterRef, client: ClusterManagerClient | None = None) -> Iterator[None]:
    """Turn what Google's libraries raise into one-line errors that name the cluster."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth_exceptions

    try:
        yield
    except api.GoogleAPICallError as e:
        raise _api_error(ref, e) from e
    except auth_exceptions.RefreshError as e:
        # args[0] is the token endpoint's "error: description"; args[1] its whole answer.
        reason = str(e.args[0]) if e.args else str(e)
        raise GkeCredentialsError(
            f"{ref}: Google refused the credentials: {_one_line(reason)}"
        ) from e
    except auth_exceptions.TransportError as e:
        raise GkeUnreachable(
            f"{ref}: cannot reach Google's token endpoint: {_connection_reason(e)}"
        ) from e
    except (api.RetryError, requests.RequestException) as e:
        where = f" at {client.api_endpoint}" if client is not None else ""
        raise GkeUnreachable(
            f"{ref}: cannot reach the GKE API{where}: {_connection_reason(e)}"
        ) from e


def _operation_error(ref: ClusterRef, op: Operation) -> GkeError | None:
    """The error a finished operation carries, if it failed."""
    from google.cloud.container_v1 import StatusCondition

    code = op.error.code
    message = op.error.message or op.status_message
    if not code and not message:
        return None
    verb = op.operation_type.name.lower().replace("_", " ")
    head = f"{ref}: {verb} operation {op.name} failed"
    conditions = {c.code for c in op.cluster_conditions}
    texts = " ".join([message, *(c.message for c in op.cluster_conditions)])
    if StatusCondition.Code.GCE_STOCKOUT in conditions or _STOCKOUT.search(texts):
        return GkeError(
            f"{head}: Google Cloud has no capacity for these nodes in this zone now "
            f"(stockout, not a quota): {_one_line(message)}; delete the cluster and try "
            "another zone (--node-zones), another machine type, or later"
        )
    if code == 8 or StatusCondition.Code.GCE_QUOTA_EXCEEDED in conditions:
        return GkeQuota(f"{head}: quota exhausted: {_quota_message(message)}")
    kind, error = _RPC_ERRORS.get(code, ("failed", GkeError))
    return error(f"{head}: {kind}: {_one_line(message)}")
