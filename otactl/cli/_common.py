"""What every command shares: global options, the options declared once for every command
that reads values or the cluster (`cluster_options`), output, the generated/ folder."""

from __future__ import annotations

import functools
import inspect
import json
import re
import sys
from collections.abc import Callable
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
    yaml = "yaml"

    @property
    def structured(self) -> bool:
        """json or yaml: the same data, for scripts."""
        return self is not Output.text


@dataclass
class State:
    """Global options, handed to every command through the typer context."""

    config: Path | None = None
    sets: list[str] = field(default_factory=list)
    profile: str | None = None
    generated: Path = Path("generated")
    debug: bool = False
    # The cluster options given before the command; a command's own win.
    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None
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


# The values and cluster options: global ones (otactl.cli), and the same again after the
# command that declares them with `cluster_options` (`otactl render --set a=b`).
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="Values file (default: $OTACTL_CONFIG, ./otactl.yaml).",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override one value: a.b=value, a.list={x,y} (repeatable).",
    ),
]
ProfileOpt = Annotated[
    str | None, typer.Option("--profile", metavar="local|gke", help="Values profile.")
]


KubeconfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster).",
    ),
]
ContextOpt = Annotated[
    str | None, typer.Option("--context", metavar="NAME", help="kubeconfig context.")
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", metavar="NAME", help="Namespace (overrides the values)."),
]


OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text, json or yaml.")]


def command_set() -> typer.Typer:
    """The commands of one module, which `otactl.cli` adds when one of them is asked for
    (click's plain help, as the root has)."""
    return typer.Typer(rich_markup_mode=None)


@dataclass
class Common:
    """The values and cluster options a command declares with one decorator line
    (`values_options`, `namespace_options`, `cluster_options`), as the command got them."""

    ctx: typer.Context
    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None
    config: Path | None = None
    set_: list[str] | None = None
    profile: str | None = None

    def state(self) -> State:
        """The global state with these options laid over the global ones."""
        return state(self.ctx, self.config, self.set_, self.profile, self.namespace)

    def connect(self) -> Cluster:
        """The cluster these options name."""
        return connect(self.kubeconfig, self.context)


# Each shared option: the parameter, as `Common` names it, and its declaration (so the
# same help everywhere), in the order `--help` lists them.
_SHARED: dict[str, Any] = {
    "kubeconfig": KubeconfigOpt,
    "context": ContextOpt,
    "namespace": NamespaceOpt,
    "config": ConfigOpt,
    "set_": SetOpt,
    "profile": ProfileOpt,
}

CommandFunction = Callable[..., None]


def _shared_options(*names: str) -> Callable[[CommandFunction], CommandFunction]:
    """A decorator that gives a command the shared options `names`, declared where its
    parameter `common: Common` stands, and calls it with them as that `Common`."""

    def decorate(command: CommandFunction) -> CommandFunction:
        own = inspect.signature(command, eval_str=True).parameters.values()
        params: list[inspect.Parameter] = [
            inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        ]
        for p in own:
            if p.name == "common":
                params += [
                    inspect.Parameter(n, p.KEYWORD_ONLY, default=None, annotation=_SHARED[n])
                    for n in names
                ]
            else:
                params.append(p.replace(kind=p.KEYWORD_ONLY))

        @functools.wraps(command)
        def with_options(ctx: typer.Context, **given: Any) -> None:
            shared = {n: given.pop(n) for n in names}
            command(**given, common=Common(ctx, **shared))

        # typer reads the parameters from the signature, the annotations from here
        with_options.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        with_options.__annotations__ = {p.name: p.annotation for p in params}
        return with_options

    return decorate


# --config/--set/--profile
values_options = _shared_options("config", "set_", "profile")
# and --namespace
namespace_options = _shared_options("namespace", "config", "set_", "profile")
# and --kubeconfig/--context
cluster_options = _shared_options(*_SHARED)


def connect(kubeconfig: Path | None, context: str | None) -> Cluster:
    """The cluster connection (imports the kubernetes client only now)."""
    from otactl import kube

    return kube.connect(kubeconfig, context)


def parse_duration(text: str) -> float:
    """`1h30m`, `90s`, `5m`, `250ms`, `2d` or a plain number of seconds → seconds."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise typer.BadParameter(f"{text!r}: expected a duration such as 90s, 5m, 1h30m or seconds")
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * units[u] for n, u in parts)


def duration(text: str) -> float:
    """A positive duration (the parser of every time option)."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise typer.BadParameter(f"{text}: must be more than 0")
    return seconds


def duration_option(*names: str, help: str, default: str | bool = True) -> Any:
    """A `--timeout`-like option: 90s, 5m, 1h30m or plain seconds (`default`: the
    default as help shows it)."""
    if isinstance(default, str):  # click would print it in parentheses
        help, default = f"{help}  [default: {default}]", False
    return typer.Option(
        *names, parser=duration, metavar="DURATION", help=help, show_default=default
    )


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
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    if namespace is None:
        namespace = obj.namespace
    if namespace is not None:
        sets = [*(sets or []), f"namespace={namespace}"]
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


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Columns as kubectl prints them: upper-case headers, padded with two spaces, never
    truncated or wrapped (a script reads whole lines; a terminal wraps long ones itself)."""
    cells = [[h.upper() for h in headers], *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def emit(output: Output, data: Any) -> None:
    """`-o json` or `-o yaml`: the same data (YAML from its JSON form, so both agree)."""
    if output is Output.yaml:
        import yaml

        plain = json.loads(json.dumps(data, default=str))
        sys.stdout.write(yaml.safe_dump(plain, sort_keys=True))
    else:
        emit_json(data)


def is_tty() -> bool:
    return sys.stderr.isatty()
