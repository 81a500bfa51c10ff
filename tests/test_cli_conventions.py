"""kubectl and helm conventions, through the CLI as a user types them (issue 16, items 3
and 4): usage errors and bad kubeconfigs as one `error:` line, global options before or
after the command, `-h`, durations, `-o yaml`, the forms `--set` takes, every values error
listed. And the count of CLI paths that end in a traceback: every command with bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT, _run_in_process, free_port, run_otactl
from tests.test_cli_promises import kubeconfig

README = ROOT / "README.md"


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr.strip().splitlines()


# --- item 3: one-line errors ------------------------------------------------------------


def test_usage_error_is_one_line_with_a_hint_and_exit_2(tmp_path: Path) -> None:
    proc = run_otactl("status", "--bogus", cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc) == [
        "error: no such option: --bogus",
        "Try 'otactl status --help' for help.",
    ]
    proc = run_otactl("certs", "check", "-o", "xml", cwd=tmp_path)
    assert proc.returncode == 2
    first, hint = error_lines(proc)
    assert first.startswith("error: invalid value for '--output' / '-o': ")
    assert hint == "Try 'otactl certs check --help' for help."
    proc = run_otactl("revoke-device", cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc)[0] == "error: missing argument 'UUID|NAME'."


def test_a_kubeconfig_that_is_not_yaml_is_one_line(tmp_path: Path) -> None:
    proc = run_otactl("--kubeconfig", str(README), "status", cwd=tmp_path)
    assert proc.returncode == 2
    [line] = error_lines(proc)
    assert line.startswith(f"error: {README}:") and line.endswith(
        "not a kubeconfig (not valid YAML)"
    )
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    proc = run_otactl("hosts", "--kubeconfig", str(tmp_path / "list.yaml"), cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc) == [
        f"error: {tmp_path / 'list.yaml'}: not a kubeconfig (expected a mapping with contexts)"
    ]


def test_an_unknown_context_is_named_as_kubectl_names_it(tmp_path: Path) -> None:
    kc = kubeconfig(tmp_path / "kc", free_port())
    for args in (
        ("status", "--kubeconfig", str(kc), "--context", "nosuch"),
        ("--kubeconfig", str(kc), "--context", "nosuch", "status"),
    ):
        proc = run_otactl(*args, cwd=tmp_path)
        assert proc.returncode == 2
        assert error_lines(proc) == ['error: context "nosuch" does not exist']


def test_kubeconfig_list_skips_missing_entries(tmp_path: Path) -> None:
    kc = kubeconfig(tmp_path / "kc", free_port())
    env = {"HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": ""}
    # The missing first entry is skipped and the second read (its contexts are known).
    proc = run_otactl(
        "status", "--context", "nosuch", cwd=tmp_path,
        env=env | {"KUBECONFIG": f"{tmp_path / 'missing'}:{kc}"},
    )  # fmt: skip
    assert error_lines(proc) == ['error: context "nosuch" does not exist']
    # Only missing entries: as if none were configured.
    proc = run_otactl("status", cwd=tmp_path, env=env | {"KUBECONFIG": str(tmp_path / "missing")})
    assert proc.returncode == 2
    assert error_lines(proc)[0].startswith("error: no cluster configured")


# --- the traceback count ----------------------------------------------------------------


def _leaves(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        return [(path, command)]
    return [leaf for name, sub in subcommands.items() for leaf in _leaves(sub, (*path, name))]


def _option_names(command: Any) -> set[str]:
    return {name for p in command.params for name in getattr(p, "opts", [])}


def bad_inputs(tmp_path: Path) -> list[list[str]]:
    """Every command with inputs it must refuse: parse errors for all, values and
    kubeconfig errors for the commands that read them, and each command's own bad input.
    Nothing here reaches a server: kubeconfigs point at a closed local port, and
    local-cluster and gke get only what they refuse before doing anything."""
    from typer.main import get_command

    from otactl.cli import app

    kc = str(kubeconfig(tmp_path / "kc", free_port()))
    cases: list[list[str]] = []
    for path, command in _leaves(get_command(app)):
        opts = _option_names(command)
        cases.append([*path, "--bogus"])
        if "-o" in opts:
            cases.append([*path, "-o", "xml"])
        if "--timeout" in opts:
            cases.append([*path, "--timeout", "abc"])
        if any(getattr(p, "required", False) for p in command.params):
            cases.append([*path])
        if path[0] in ("gke", "local-cluster"):
            continue
        if "--config" in opts:
            cases += [
                [*path, "--config", str(README)],
                [*path, "--config", str(tmp_path / "missing.yaml")],
                [*path, "--set", "foo"],
                [*path, "--set", "namespace=Not_A_Label", "--set", "pki.ca_days=x"],
            ]
        if "--kubeconfig" in opts:
            cases += [
                [*path, "--kubeconfig", str(README)],
                [*path, "--kubeconfig", str(tmp_path / "missing")],
                [*path, "--kubeconfig", kc, "--context", "nosuch"],
            ]
    cases += [
        ["new-device", "../x", "--no-register"],
        ["new-device", "x", "--no-register"],  # no server PKI yet
        ["new-device", "--from-csv", str(README), "--no-register"],
        ["new-device", "x", "--push", "nohost:notaport", "--no-register"],
        ["new-device", "--count", "x", "--prefix", "p"],
        ["revoke-device", "nosuch"],
        ["renew-device", "nosuch", "--no-register"],
        ["certs", "check", "--within", "soon"],
        ["health", "nosuch-service", "--kubeconfig", kc],
        ["new-server", "--device-ca-cert", str(README), "--device-ca-key", str(README)],
        ["credentials", "--new-client", "../x"],
        ["revoke-credentials", "nosuch"],
        ["down", "--purge"],
        ["local-cluster", "up", "--timeout", "5s"],
        ["local-cluster", "fault", "slow", "many"],
        ["gke", "create", "ota", "--poll-interval", "soon"],
        ["--set", "foo", "render"],
        ["render", "--out", str(README)],
    ]
    return cases


UNEXPECTED = "error: unexpected"


def test_no_cli_path_ends_in_a_traceback(tmp_path: Path) -> None:
    """Each case runs `otactl` in this process (the entry point, argv, environment and
    exit code as in a subprocess; a few hundred subprocesses would take minutes)."""
    from otactl import cli

    assert cli.UNEXPECTED == UNEXPECTED
    env = {
        "HOME": str(tmp_path / "home"),
        "KUBERNETES_SERVICE_HOST": "",
        # Google's client library must find no credentials and ask no metadata server.
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "no-such-key.json"),
        "GCE_METADATA_HOST": f"127.0.0.1:{free_port()}",
        "GCE_METADATA_IP": f"127.0.0.1:{free_port()}",
        "OTACTL_GKE_ENDPOINT": f"http://127.0.0.1:{free_port()}",
    }
    work = tmp_path / "work"
    work.mkdir()
    cases = bad_inputs(tmp_path)
    broken = []
    for args in cases:
        proc = _run_in_process(args, work, env)
        if "Traceback" in proc.stderr or UNEXPECTED in proc.stderr or proc.returncode == 0:
            broken.append((args, proc.returncode, proc.stderr[-400:]))
            continue
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, (args, proc.stderr)
    print(f"\n{len(cases)} CLI runs with bad input, {len(broken)} ended in a traceback or exit 0")
    assert broken == [], "\n".join(map(str, broken))


# --- item 4: conventions ----------------------------------------------------------------


def test_global_options_before_or_after_the_command(tmp_path: Path) -> None:
    after = tmp_path / "after"
    run_otactl("render", "--generated", str(after), "--debug", cwd=tmp_path, check=True)
    assert (after / "templates" / "services.yaml").is_file()

    def shown(*args: str) -> dict[str, Any]:
        proc = run_otactl(*args, cwd=tmp_path, check=True)
        return json.loads(proc.stdout)

    assert shown("--namespace", "before", "config", "show", "-o", "json")["namespace"] == "before"
    assert shown("config", "show", "-n", "after", "-o", "json")["namespace"] == "after"
    gen = shown("config", "show", "--generated", str(after), "-o", "json")
    assert gen["secrets"]["file"] == str(after / "ota-ce.example.com" / "secrets.yaml")
    # --debug after the command reaches the entry point: the traceback comes with the line.
    proc = run_otactl("status", "--kubeconfig", str(README), "--debug", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {README}:")


def test_dash_h_everywhere(tmp_path: Path) -> None:
    from typer.main import get_command

    from otactl.cli import app

    for path, _ in _leaves(get_command(app)):
        proc = _run_in_process([*path, "-h"], tmp_path, {})
        assert proc.returncode == 0, (path, proc.stderr)
        assert proc.stdout.startswith(f"Usage: otactl {' '.join(path)} "), path
    proc = run_otactl("up", "-h", cwd=tmp_path, check=True)
    assert "--set KEY=VALUE" in proc.stdout and "list[str]" not in proc.stdout
    assert "--timeout DURATION" in proc.stdout and "default: 30m" in proc.stdout


def test_help_lists_every_command_without_importing_it() -> None:
    """`otactl --help` imports no command module (start-up time) and still lists each
    command with the first sentence of the command's own help."""
    import sys

    from typer.core import TyperCommand
    from typer.main import get_command

    from otactl.cli import COMMANDS, app

    code = (
        "import sys\n"
        "from otactl.cli import main\n"
        "sys.argv = ['otactl', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print([m for m in sys.modules if m.startswith('otactl.cli.') and m[11] != '_'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[-1] == "[]", proc.stdout
    listed = [line.split()[0] for line in proc.stdout.split("Commands:\n")[1].splitlines()[:-1]]
    assert listed == list(COMMANDS)
    root = get_command(app)
    for name, (_, summary) in COMMANDS.items():
        listing = TyperCommand(name=name, help=summary)
        for limit in (30, 60, 100, 1000):
            assert listing.get_short_help_str(limit) == root.commands[name].get_short_help_str(
                limit
            ), (name, limit)


def test_durations_take_units_and_plain_seconds(tmp_path: Path) -> None:
    for good in ("90s", "5m", "1h30m", "120"):
        # A bad kubeconfig stops the run after the options were parsed.
        proc = run_otactl("up", "--timeout", good, "--kubeconfig", str(README), cwd=tmp_path)
        assert error_lines(proc)[0].startswith(f"error: {README}:"), good
    proc = run_otactl("health", "--wait", "--timeout", "5x", cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc)[0] == (
        "error: invalid value for '--timeout': '5x': expected a duration such as 90s, 5m, "
        "1h30m or seconds"
    )


def test_config_show_yaml_feeds_back_as_config(tmp_path: Path) -> None:
    first = run_otactl(
        "--profile", "gke", "config", "show", "-o", "yaml",
        "--set", "services.campaigner-daemon.replicas=3", cwd=tmp_path, check=True,
    )  # fmt: skip
    (tmp_path / "values.yaml").write_text(first.stdout)
    again = run_otactl(
        "config", "show", "-o", "yaml", "--config", str(tmp_path / "values.yaml"),
        cwd=tmp_path, check=True,
    )  # fmt: skip
    assert again.stdout == first.stdout
    assert yaml.safe_load(first.stdout)["services"]["campaigner_daemon"]["replicas"] == 3
    # The text form is the same document.
    text = run_otactl("--profile", "gke", "config", "show", cwd=tmp_path, check=True)
    assert yaml.safe_load(text.stdout)["gke"] == yaml.safe_load(first.stdout)["gke"]


def test_yaml_wherever_json(tmp_path: Path) -> None:
    gen = str(tmp_path / "gen")
    run_otactl("--generated", gen, "new-server", cwd=tmp_path, check=True)
    as_json = run_otactl("--generated", gen, "certs", "check", "-o", "json", cwd=tmp_path)
    as_yaml = run_otactl("--generated", gen, "certs", "check", "-o", "yaml", cwd=tmp_path)
    assert yaml.safe_load(as_yaml.stdout) == json.loads(as_json.stdout)


def test_set_forms(tmp_path: Path) -> None:
    def values(*sets: str) -> dict[str, Any]:
        args = [a for s in sets for a in ("--set", s)]
        proc = run_otactl("config", "show", "-o", "json", *args, cwd=tmp_path, check=True)
        return json.loads(proc.stdout)

    # helm's list form, and the YAML flow forms
    shown = values("gateway.extra_dns_names={a.example.com,b.example.com}")
    assert shown["gateway"]["extra_dns_names"] == ["a.example.com", "b.example.com"]
    assert values("gateway.extra_ips={}")["gateway"]["extra_ips"] == []
    assert values("gke.labels={env: prod}")["gke"]["labels"] == {"env": "prod"}
    # the dashed names the CLI prints
    daemon = values("services.tuf-keyserver-daemon.replicas=2")["services"]
    assert daemon["tuf_keyserver_daemon"]["replicas"] == 2
    # a value YAML reads as a number: a hint to quote it
    proc = run_otactl("config", "show", "--set", "device.hardware_id=1.10", cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc) == [
        "error: --set device.hardware_id=1.10: device.hardware_id: Input should be a valid "
        "string (got 1.1); to pass it as a string, quote it: --set "
        "'device.hardware_id=\"1.10\"'"
    ]
    assert values('device.hardware_id="1.10"')["device"]["hardware_id"] == "1.10"


def test_every_values_error_is_listed(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text("namespace: Bad_NS\nnope: 1\n")
    proc = run_otactl(
        "config", "show", "--config", "v.yaml", "--set", "pki.ca_days=x", cwd=tmp_path
    )
    assert proc.returncode == 2
    [line] = error_lines(proc)
    assert line.startswith("error: 3 problems in the values: ")
    for part in ("v.yaml:1: namespace: ", "v.yaml:2: nope: unknown key", "pki.ca_days: "):
        assert part in line
    assert "more)" not in line


# --- item 7: Ctrl-C during the live view ------------------------------------------------


def test_ctrl_c_in_the_live_view_says_how_to_go_on(tmp_path: Path) -> None:
    """On a terminal, `up` shows a live table; Ctrl-C while it waits (here for an API
    server that takes the connection and never answers) ends it with a line saying what
    to do, and exit code 130."""
    import os
    import pty
    import select
    import signal
    import socket
    import sys
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections wait in the backlog: never accepted, never answered
    kc = kubeconfig(tmp_path / "kc", silent.getsockname()[1])
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
    env.update(COLUMNS="120", LINES="40", TERM="xterm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "otactl", "--generated", str(tmp_path / "gen"), "up",
         "--kubeconfig", str(kc)],
        stdin=secondary, stdout=secondary, stderr=secondary, env=env, close_fds=True,
        cwd=tmp_path,
    )  # fmt: skip
    os.close(secondary)
    screen = b""

    def read(until: float) -> None:
        nonlocal screen
        while time.monotonic() < until:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                screen += chunk
            elif proc.poll() is not None:
                return

    try:
        deadline = time.monotonic() + 60
        while b"[cluster]" not in screen and time.monotonic() < deadline:
            read(time.monotonic() + 0.5)
        assert b"[cluster]" in screen, screen.decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        read(time.monotonic() + 30)
        assert proc.wait(timeout=30) == 130, screen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
        silent.close()
    text = screen.decode(errors="replace")
    assert "interrupted — run `otactl up` again to continue" in text
    assert "Traceback" not in text
