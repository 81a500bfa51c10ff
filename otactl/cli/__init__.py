"""The command line: parses options and calls the core. No logic of its own. This is
the root group and the entry point; each command lives in a module of this package, which
is imported only when the command runs or its help is asked (`COMMANDS`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_group

from otactl import __version__
from otactl.cli._common import (
    ConfigOpt,
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    ProfileOpt,
    SetOpt,
    State,
)
from otactl.errors import OtactlError

# Every command of `otactl`: the module (in otactl/cli/) that holds it, and the first
# sentence of its help, which `otactl --help` lists without importing the module (a test
# holds the two sentences the same). The order is the listing's.
COMMANDS: dict[str, tuple[str, str]] = {
    "version": (
        "config_cmd",
        "otactl's version and the images it deploys (the values in force: pinned tags).",
    ),
    "render": (
        "render_cmd",
        "Render the Kubernetes objects (infra, services, ingress) without a cluster.",
    ),
    "new-server": (
        "pki_cmd",
        "Create the server CA, gateway certificate, device CA and CRL (keeps existing CAs).",
    ),
    "new-device": (
        "new_device_cmd",
        "Make device bundles: one NAME, --count N --prefix P, or --from-csv FILE.",
    ),
    "revoke-device": (
        "pki_cmd",
        "Add a device's certificate to the device CRL the gateway checks.",
    ),
    "renew-device": (
        "devices_cmd",
        "A new certificate (pki.device_days) for a device's existing key: copy the new "
        "client.pem to the device.",
    ),
    "up": (
        "deploy_cmd",
        "Deploy OTA CE: PKI, infra, database bootstrap, services, health, credentials.",
    ),
    "down": (
        "deploy_cmd",
        "Delete what otactl created (volumes and generated/ stay unless --purge).",
    ),
    "status": (
        "deploy_cmd",
        "Workloads, Services (with addresses) and service health in one view: exit 0 when "
        "everything is ready and healthy, 1 when not (or nothing is deployed).",
    ),
    "health": (
        "service_cmd",
        "Health of the OTA services: exit 0 when all are OK, 8 when not, 7 on --wait timeout.",
    ),
    "hosts": (
        "service_cmd",
        "/etc/hosts lines for the public names, from the Services' real addresses.",
    ),
    "credentials": (
        "credentials_cmd",
        "TUF repositories, credentials.zip for garage-push and garage-sign (client "
        "certificate for the reverse proxy's mutual TLS), the user-keys Secret.",
    ),
    "revoke-credentials": (
        "credentials_cmd",
        "Put a build-tools client's certificate on the CRL the reverse proxy checks.",
    ),
    "rbac": (
        "rbac_cmd",
        "Print the Role, ClusterRole, ServiceAccount and bindings that `up`, `down`, "
        "`status`, `health` and `new-device` need (apply them once as an administrator).",
    ),
    "config": ("config_cmd", "Inspect the merged values."),
    "devices": ("devices_cmd", "The devices that have a bundle."),
    "certs": ("pki_cmd", "Certificates of the server and its devices."),
    "local-cluster": (
        "local_cluster",
        "A local simulated Kubernetes cluster (real control plane, kwok fake nodes, OTA "
        "services stand-in) for trying otactl and for CI.",
    ),
    "gke": (
        "gke",
        "Create, connect to, list and delete GKE clusters (Google credentials, no gcloud CLI).",
    ),
}


class _Commands(MutableMapping[str, Any]):
    """The root's commands by name. A command's module is imported the first time the
    command is looked up (run, or its help asked), so that `otactl --help` and each command
    import only what they use; the names alone import nothing."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            module = importlib.import_module(f"otactl.cli.{COMMANDS[name][0]}")
            command = get_group(module.app).commands[name]
            _placeholders(command)
            self._loaded[name] = command
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        raise TypeError("otactl's commands are fixed")

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._loaded]))

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._loaded))


class _LazyGroup(TyperGroup):
    """The root group: its commands come from `_Commands`; its help lists them with the
    sentences of `COMMANDS`."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands()

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        rows = [
            (name, TyperCommand(name=name, help=summary).get_short_help_str(limit))
            for name, (_, summary) in COMMANDS.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="otactl",
    cls=_LazyGroup,
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
    config: ConfigOpt = None,
    set_: SetOpt = None,
    profile: ProfileOpt = None,
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


def _print_traceback() -> None:
    """--debug: the traceback (traceback is imported only now: start-up time)."""
    import traceback

    traceback.print_exc()


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
    command = get_command(app)  # its commands' placeholders are set as each is loaded
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
            _print_traceback()
        typer.echo(f"error: {e}", err=True)
        code = e.exit_code
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        code = 130
    except OSError as e:  # the disk or the file system (full, read-only, permissions)
        if debug:
            _print_traceback()
        where = f"{e.filename}: " if e.filename else ""
        typer.echo(f"error: {where}{e.strerror or e}", err=True)
        code = 1
    except Exception as e:  # a bug: one line, the traceback with --debug
        if debug:
            _print_traceback()
        typer.echo(
            f"{UNEXPECTED} {type(e).__name__}: {e} (a bug in otactl: run again with --debug "
            "and report the traceback)",
            err=True,
        )
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
