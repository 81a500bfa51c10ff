"""The command line: parses options and calls the core. No logic of its own."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from otactl import __version__
from otactl.cli._common import (
    SET_HELP,
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    State,
)
from otactl.errors import OtactlError

app = typer.Typer(
    name="otactl",
    help="Deploy and provision an OTA Community Edition server on Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
    # click's plain help: one line per option, no panels (and no rich import for --help)
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"otactl {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="Values file (default: $OTACTL_CONFIG, ./otactl.yaml).",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help=SET_HELP),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", metavar="local|gke", help="Values profile.")
    ] = None,
    generated: Annotated[
        Path,
        typer.Option(
            "--generated", metavar="DIR", envvar="OTACTL_GENERATED", help="Output folder."
        ),
    ] = Path("generated"),
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """Global options go before or after the command: `otactl --debug up` is `otactl up
    --debug`. A cluster option the command declares itself reaches it there (see
    `_global_options_in_place`); one it does not (render) only sets the namespace."""
    ctx.obj = State(
        config=config,
        sets=set_ or [],
        profile=profile,
        generated=generated,
        debug=debug,
        kubeconfig=kubeconfig,
        context=context,
        namespace=namespace,
    )


def _register() -> None:
    """Each area of commands lives in its own module; none imports a heavy library at the
    top (kubernetes, google.cloud), so `otactl --help` stays fast."""
    from otactl.cli import (
        config_cmd,
        credentials_cmd,
        deploy_cmd,
        gke,
        local_cluster,
        pki_cmd,
        rbac_cmd,
        render_cmd,
        service_cmd,
    )

    for module in (
        config_cmd, render_cmd, pki_cmd, deploy_cmd, service_cmd, credentials_cmd, rbac_cmd,
    ):  # fmt: skip
        module.register(app)
    app.add_typer(local_cluster.app, name="local-cluster")
    app.add_typer(gke.app, name="gke")


_register()


# Printed when an exception otactl did not expect reaches the entry point; the tests run
# every command with bad input and assert it never appears.
UNEXPECTED = "error: unexpected"


def _options(command: Any) -> dict[str, Any]:
    """A click command's options by each of their names."""
    return {
        name: p
        for p in command.params
        if p.param_type_name == "option"
        for name in (*p.opts, *p.secondary_opts)
    }


def _global_options_in_place(root: Any, args: list[str]) -> list[str]:
    """Global options given after the command move before it, and the command's own
    options (--kubeconfig, --config, ...) given before it move after it, so that each
    reaches the command that declares it wherever the user wrote it (as kubectl and helm
    accept `--namespace`, `--debug` on either side)."""
    root_opts = _options(root)
    path: list[str] = []
    before: list[str] = []  # root options met after the command
    early: list[tuple[str, list[str]]] = []  # root options met before it
    after: list[str] = []
    command = root
    i = 0
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        if arg == "--":
            after += args[i:]
            break
        if arg.startswith("-") and name in root_opts:
            opt = root_opts[name]
            takes_value = not opt.is_flag and not opt.count and "=" not in arg
            chunk = args[i : i + 2] if takes_value else [arg]
            i += len(chunk)
            if command is root:
                early.append((name, chunk))
            elif name in _options(command):
                after += chunk
            else:
                before += chunk
            continue
        subcommands = getattr(command, "commands", None)
        if not after and subcommands is not None and not arg.startswith("-"):
            if arg not in subcommands:  # click says so
                after += args[i:]
                break
            path.append(arg)
            command = subcommands[arg]
        else:
            after.append(arg)
        i += 1
    own = _options(command) if command is not root else {}
    stay = [part for name, chunk in early if name not in own for part in chunk]
    given = [part for name, chunk in early if name in own for part in chunk]
    return [*stay, *before, *path, *given, *after]


def _placeholders(command: Any) -> None:
    """Help shows `--count N`, `--uuid UUID`, `-o text|json|yaml` rather than typer's
    `<int>`, `<str>`, `<path>` (a metavar declared with the option stays). Cosmetic: a
    typer without `display_type` keeps its own."""
    for p in command.params:
        if p.metavar is not None or getattr(p, "is_flag", False):
            continue
        try:
            label = p.display_type(None).strip("<>")
        except Exception:
            continue
        if "|" in label:
            p.metavar = label  # choices
        elif label.startswith("int"):
            p.metavar = "N"
        elif label.startswith("float"):
            p.metavar = "NUMBER"
        elif label in ("path", "file"):
            p.metavar = "FILE"
        elif label == "directory":
            p.metavar = "DIR"
        else:
            p.metavar = (p.name or "value").strip("_").upper()
    for sub in getattr(command, "commands", {}).values():
        _placeholders(sub)


def _click_exceptions() -> Any:
    """The module of click's exceptions as typer uses them (typer 0.2x vendors click)."""
    return sys.modules[typer.BadParameter.__module__]


def _usage_error(e: Any) -> None:
    """A usage error as one `error:` line and a hint, not click's multi-line panel."""
    message = e.format_message()
    typer.echo(f"error: {message[:1].lower()}{message[1:]}", err=True)
    if e.ctx is not None:
        typer.echo(f"Try '{e.ctx.command_path} --help' for help.", err=True)


def main() -> None:
    """Console entry point: expected failures become one line on stderr and an exit code;
    usage errors one line and exit 2."""
    from typer.main import get_command

    exceptions = _click_exceptions()
    debug = "--debug" in sys.argv
    command = get_command(app)
    _placeholders(command)
    try:
        args = _global_options_in_place(command, sys.argv[1:])
        code = command.main(args=args, prog_name="otactl", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C in a command into a silent exit 130
            typer.echo("error: interrupted", err=True)
    except exceptions.NoArgsIsHelpError as e:
        typer.echo(e.ctx.get_help())
        code = 0
    except exceptions.UsageError as e:
        _usage_error(e)
        code = e.exit_code
    except (typer.Abort, getattr(exceptions, "Abort", typer.Abort)):
        typer.echo("error: aborted", err=True)
        code = 1
    except exceptions.ClickException as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        code = e.exit_code
    except OtactlError as e:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {e}", err=True)
        code = e.exit_code
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        code = 130
    except OSError as e:  # the disk or the file system (full, read-only, permissions)
        if debug:
            traceback.print_exc()
        where = f"{e.filename}: " if e.filename else ""
        typer.echo(f"error: {where}{e.strerror or e}", err=True)
        code = 1
    except Exception as e:  # a bug: one line, the traceback with --debug
        if debug:
            traceback.print_exc()
        typer.echo(
            f"{UNEXPECTED} {type(e).__name__}: {e} (a bug in otactl: run again with --debug "
            "and report the traceback)",
            err=True,
        )
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
