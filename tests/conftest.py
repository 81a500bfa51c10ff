"""Shared test helpers: run the real CLI, and real servers (MariaDB) started per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _own_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """otactl remembers where it made server CAs ($XDG_STATE_HOME/otactl/servers): the tests'
    CAs go to a list of their own, not the user's."""
    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state-home"))
    yield
    if before is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = before


@pytest.fixture(autouse=True)
def _own_state_home_per_test(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """And one list per test: a CA another test made must not make this test's otactl
    refuse a new CA outside a project (module fixtures keep the session's list)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))


def run_otactl(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `python -m otactl ARGS` as a user would, capturing stdout and stderr."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
    full_env.update(env or {})
    if "MUTANT_UNDER_TEST" in os.environ:
        proc = _run_in_process(list(args), cwd, full_env)
    else:
        proc = subprocess.run(
            [sys.executable, "-m", "otactl", *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    if check and proc.returncode != 0:
        raise AssertionError(f"otactl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def _run_in_process(
    args: list[str], cwd: Path | None, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`otactl ARGS` in this process, for `make mutate` only: mutmut applies its mutant in
    the test's own process and learns which tests reach which function from that process,
    so a CLI run in a subprocess would test the unmutated code. Same cwd, environment,
    argv, output capture and exit code as the subprocess."""
    import contextlib
    import io
    import traceback

    from otactl.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    code: int = 0
    try:
        os.environ.clear()
        os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = ["otactl", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["otactl", *args], code, out.getvalue(), err.getvalue())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def require_binary(name: str, *candidates: str) -> str:
    """Path of a server binary; a missing one fails the test (CI installs them all)."""
    for cand in (name, *candidates):
        found = shutil.which(cand) or (cand if os.path.exists(cand) else None)
        if found:
            return found
    pytest.fail(f"{name} is not installed (see .ci/run for the packages the tests need)")


@dataclass
class MariaDB:
    port: int
    socket: Path

    def sql(
        self, statements: str, user: str = "root", password: str | None = None, db: str = ""
    ) -> subprocess.CompletedProcess[str]:
        """Run SQL with the real `mariadb` client: root over the socket, others over TCP."""
        client = require_binary("mariadb", "mysql")
        if user == "root":
            cmd = [client, "--no-defaults", "-S", str(self.socket), "-uroot"]
        else:
            cmd = [client, "--no-defaults", "-h127.0.0.1", f"-P{self.port}", f"-u{user}"]
            cmd.append(f"-p{password}")
        if db:
            cmd.append(db)
        return subprocess.run(cmd, input=statements, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A real MariaDB server on loopback, with a throwaway data folder."""
    install = require_binary("mariadb-install-db", "mysql_install_db")
    server = require_binary("mariadbd", "/usr/sbin/mariadbd", "mysqld", "/usr/sbin/mysqld")
    base = tmp_path_factory.mktemp("mariadb")
    datadir, sock, port = base / "data", base / "mysqld.sock", free_port()
    subprocess.run(
        [install, "--no-defaults", f"--datadir={datadir}", "--user=root",
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    proc = subprocess.Popen(
        [server, "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
         f"--port={port}", "--bind-address=127.0.0.1", "--user=root",
         f"--pid-file={base / 'mysqld.pid'}", f"--log-error={base / 'error.log'}",
         "--skip-log-bin"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=60, proc=proc)
        yield MariaDB(port=port, socket=sock)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
