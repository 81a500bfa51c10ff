"""The errors otactl expects. The CLI prints them as one line and exits with `exit_code`.

Exit codes (documented in the README):
  1  generic failure            2  bad input (values, arguments, files; GKE 400)
  3  PKI refused (would overwrite, missing CA, bad key)
  4  cluster or Google API unreachable
  5  credentials missing or rejected (Kubernetes or Google 401, no ADC; an OTA service's own
     401/403: it asks for a token, i.e. it runs with OAuth)
  6  permission refused (Kubernetes RBAC or Google IAM 403)
  7  a wait ran out of time
  8  a service answered with an error it should not
  9  the GKE API failed a request or an operation (other reasons)
 10  GKE conflict: the cluster exists with other settings, or is busy (409)
 11  GKE quota exhausted (429, RESOURCE_EXHAUSTED, 403 insufficient quota)
 12  GKE cluster not found (404)
 13  copying a bundle to a device over SSH failed (host key, login, transfer)
 14  another otactl run holds the installation (its Lease: `up`, `down`)
"""

from __future__ import annotations


class OtactlError(Exception):
    """Base of every expected failure."""

    exit_code = 1


class ConfigError(OtactlError):
    """Values, arguments or input files are wrong."""

    exit_code = 2


class RenderError(OtactlError):
    """A template could not be rendered."""

    exit_code = 2


class PkiError(OtactlError):
    """Keys or certificates cannot be created, loaded or kept."""

    exit_code = 3


class ClusterError(OtactlError):
    """The Kubernetes API refused or failed a request."""

    exit_code = 1


class ClusterUnreachable(ClusterError):
    """No answer from the API server. `transient` is False for what waiting cannot fix (a
    certificate the client refuses); otherwise otactl retries until its deadline."""

    exit_code = 4

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class WatchExpired(ClusterError):
    """A watch cannot go on from its resourceVersion: the API server no longer has it (410
    Gone) or cannot serve the watch for now (429, 5xx). The watcher lists again."""


class ClusterUnauthorized(ClusterError):
    exit_code = 5


class ClusterForbidden(ClusterError):
    exit_code = 6


class WaitTimeout(OtactlError):
    """Something did not become ready before its deadline."""

    exit_code = 7


class ServiceError(OtactlError):
    """An OTA service answered with an error that is not part of the plan."""

    exit_code = 8


class ServiceAuthRefused(ServiceError):
    """An OTA service itself (not the API server in front of it) answered 401 or 403: it
    wants a token, which means the deployment runs it with OAuth (its default when
    AUTH_PROTOCOL is not set). A configuration error, not a transient one."""

    exit_code = 5


class GkeError(OtactlError):
    """The Google Kubernetes Engine API refused or failed a request or an operation."""

    exit_code = 9


class GkeInvalid(GkeError):
    exit_code = 2


class GkeUnreachable(GkeError):
    exit_code = 4


class GkeCredentialsError(GkeError):
    """No Google credentials could be found, or Google rejected them."""

    exit_code = 5


class GkeForbidden(GkeError):
    exit_code = 6


class GkeConflict(GkeError):
    exit_code = 10


class GkeQuota(GkeError):
    exit_code = 11


class GkeNotFound(GkeError):
    exit_code = 12


class LocalClusterError(OtactlError):
    """The local simulated cluster cannot be built, started, stopped or found."""

    exit_code = 1


class PushError(OtactlError):
    """A device bundle could not be copied to a device over SSH."""

    exit_code = 13


class Interrupted(OtactlError):
    """Ctrl-C: what was done stays done; the message says how to go on."""

    exit_code = 130


class InstallationBusy(OtactlError):
    """Another otactl run holds the installation's Lease (`up`, `down`): the message names
    it (host, pid, command, since when)."""

    exit_code = 14
