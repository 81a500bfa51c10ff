"""What every command shares: global options, values, output, the generated/ folder."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from otactl.config import Values
    from otactl.kube import Cluster
    from otactl.project import Location


class Output(StrEnum):
    text = "text"
    json = "json"


@dataclass
class State:
    """Global options, handed to every command through the typer context."""

    config: Path | None = None
    sets: list[str] = field(default_factory=list)
    profile: str | None = None
    generated: Path = Path("generated")
    debug: bool = False
    location: Location | None = None  # where generated/ is, once `state()` looked
    _values: Values | None = None

    def values(self) -> Values:
        """The merged, validated values (loaded once)."""
        if self._values is None:
            from otactl.config import load_values

            self._values = load_values(self.config, self.sets, self.profile)
        return self._values

    def server_dir(self) -> Path:
        """`generated/<server name>/`: PKI, secrets, device bundles."""
        return self.generated / self.values().server_name

    def refuse_second_ca(self) -> None:
        """Before a command that makes a server CA when missing (new-server, up): not outside
        any project while otactl's CA lives in another folder (unless --generated)."""
        from otactl.project import check_new_ca

        if self.location is not None:
            check_new_ca(self.location, self.server_dir())


# The values options are accepted after the command too (`otactl render --set a=b`).
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Values file (default: $OTACTL_CONFIG, ./otactl.yaml)."),
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override one value: a.b=value (repeatable).")
]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="Values profile: local or gke.")]


KubeconfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster).",
    ),
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Namespace (overrides the values).")
]


def connect(kubeconfig: Path | None, context: str | None) -> Cluster:
    """The cluster connection (imports the kubernetes client only now)."""
    from otactl import kube

    return kube.connect(kubeconfig, context)


def state(
    ctx: typer.Context,
    config: Path | None = None,
    sets: list[str] | None = None,
    profile: str | None = None,
    namespace: str | None = None,
) -> State:
    """The global state, with a command's own values options laid over the global ones."""
    from otactl import locks

    locks.on_wait(info)  # a run waiting for another one's lock on generated/ says so
    if namespace is not None:
        sets = [*(sets or []), f"namespace={namespace}"]
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    if obj.location is None:
        from otactl.project import locate

        # --generated or $OTACTL_GENERATED as given; otherwise the project's generated/,
        # found walking up from the current folder. (By name: typer ships its own click.)
        source = ctx.find_root().get_parameter_source("generated")
        obj.location = locate(obj.generated, getattr(source, "name", "DEFAULT") != "DEFAULT")
        obj.generated = obj.location.generated
    if config is not None:
        obj.config = config
    if sets:
        obj.sets = [*obj.sets, *sets]
    if profile is not None:
        obj.profile = profile
    if config is not None or sets or profile is not None:
        obj._values = None
    return obj


def echo(msg: str = "") -> None:
    typer.echo(msg)


def info(msg: str) -> None:
    """Progress and notes go to stderr so stdout stays parseable."""
    typer.echo(msg, err=True)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def is_tty() -> bool:
    return sys.stderr.isatty()
