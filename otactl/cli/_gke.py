"""What the `otactl gke` commands share: their options, the Google client and the
project and location it works in, Google's warnings and progress as lines on stderr."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from otactl import gke
from otactl.cli._common import duration_option, info, is_tty, state
from otactl.errors import ConfigError

if TYPE_CHECKING:
    from google.cloud.container_v1 import ClusterManagerClient

    from otactl.config import Gke

NameArg = Annotated[str, typer.Argument(help="Cluster name.")]
ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        help="Google Cloud project ID (default: values gke.project, $GOOGLE_CLOUD_PROJECT, "
        "the credentials' project).",
    ),
]
LocationOpt = Annotated[
    str | None,
    typer.Option(
        "--location",
        "-l",
        help="Zone (europe-west1-b: nodes in one zone) or region (europe-west1: nodes in "
        "three zones, replicated control plane). Default: values gke.location.",
    ),
]
CredentialsOpt = Annotated[
    Path | None,
    typer.Option(
        "--credentials",
        help="Service-account JSON key (default: Application Default Credentials).",
    ),
]
TimeoutOpt = Annotated[
    float,
    duration_option("--timeout", help="How long to wait for the cluster (30m, 90s, seconds)."),
]
PollOpt = Annotated[
    float, duration_option("--poll-interval", help="Between status checks (5s, 250ms, seconds).")
]
AsyncOpt = Annotated[
    bool,
    typer.Option("--async", help="Return once Google accepted the request; do not wait."),
]
KubeconfigOpt = Annotated[
    Path | None,
    typer.Option("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)."),
]


@contextmanager
def google_warnings() -> Iterator[None]:
    """google-auth's warnings (several lines each) as one `warning:` line on stderr."""

    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        info(f"warning: {gke._one_line(str(message), 400)}")

    saved = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = saved


def gke_settings(ctx: typer.Context) -> Gke:
    return state(ctx).values().gke


def connect_google(
    ctx: typer.Context,
    project: str | None,
    location: str | None,
    credentials: Path | None,
) -> tuple[ClusterManagerClient, str, str | None]:
    """The client, and the project and location each command works in."""
    values = gke_settings(ctx)
    creds, creds_project = gke.load_credentials(credentials)
    project = gke.resolve_project(project or values.project, creds_project)
    client = gke.make_client(creds, os.environ.get(gke.ENDPOINT_ENV) or None)
    return client, project, location or values.location


def cluster_ref(
    ctx: typer.Context,
    name: str,
    project: str | None,
    location: str | None,
    credentials: Path | None,
) -> tuple[ClusterManagerClient, gke.ClusterRef]:
    client, project, where = connect_google(ctx, project, location, credentials)
    if not where:
        raise ConfigError("no location: pass --location (a zone or region) or set gke.location")
    return client, gke.ClusterRef(project, where, name)


@contextmanager
def progress_lines() -> Iterator[gke.ProgressFn]:
    """A live line on a terminal; otherwise one log line per change of state."""
    tty = is_tty()
    last: tuple[str, str, str] | None = None

    def show(p: gke.Progress) -> None:
        nonlocal last
        detail = f" ({p.detail})" if p.detail else ""
        line = f"{p.ref.name}: {p.operation} {p.status}{detail}, {p.elapsed:.0f}s"
        if tty:
            # A line that wraps could not be redrawn in place: keep it to the terminal width.
            width = shutil.get_terminal_size().columns - 1
            typer.echo(f"\r\033[K{line[:width]}", err=True, nl=False)
        elif (p.operation, p.status, p.detail) != last:
            info(line)
        last = (p.operation, p.status, p.detail)

    try:
        yield show
    finally:
        if tty and last is not None:
            typer.echo(err=True)


def where_flags(ref: gke.ClusterRef) -> str:
    return f"--project {ref.project} --location {ref.location}"
