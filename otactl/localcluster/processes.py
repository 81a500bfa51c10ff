"""The local cluster's processes: start them (inside the namespace) and record them, tell
whether a recorded one is still ours and alive, wait until they answer, stop them."""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from otactl.errors import LocalClusterError
from otactl.localcluster.state import ClusterInfo, ProcessRecord, _save_state

if TYPE_CHECKING:
    from otactl.localcluster.network import _Namespace

STOP_GRACE_SECONDS = 10.0

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), None if gone.

    Recorded with each pid so a recycled pid is never mistaken for ours.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it start past the last ')'.
    rest = stat[stat.rindex(")") + 2 :].split()
    if rest[0] == "Z":
        return None
    return int(rest[19])


def _alive(rec: ProcessRecord) -> bool:
    return _start_ticks(rec.pid) == rec.start_ticks


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


def _run(cmd: Sequence[str], input_: bytes | None = None, timeout: float = 60.0) -> str:
    try:
        res = subprocess.run(
            list(cmd), input=input_, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError as e:
        raise LocalClusterError(f"{cmd[0]} not found: {e}") from e
    except subprocess.TimeoutExpired as e:
        raise LocalClusterError(f"{' '.join(cmd[:3])} ... took longer than {timeout:.0f}s") from e
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip().splitlines()
        raise LocalClusterError(
            f"{' '.join(cmd[:4])} ... failed: {err[-1] if err else f'exit {res.returncode}'}"
        )
    return res.stdout.decode(errors="replace")


class _Launcher:
    """Starts processes inside the namespace, records them, and notices early deaths."""

    def __init__(self, info: ClusterInfo, ns: _Namespace, logs: Path, progress: Progress) -> None:
        self.info = info
        self.ns = ns
        self.logs = logs
        self.progress = progress
        self.popens: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        pass_fds: Sequence[int] = (),
        env: dict[str, str] | None = None,
        in_netns: bool = True,
    ) -> None:
        log = self.logs / f"{name}.log"
        self.progress(f"starting {name}")
        prefix = self.ns.prefix() if in_netns else []
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [*prefix, *cmd],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=tuple(pass_fds),
                # Own session: survives the CLI's exit and a Ctrl-C in its terminal.
                start_new_session=True,
                env=env,
            )
        ticks = _start_ticks(proc.pid)
        if ticks is None:
            rc = proc.wait()
            raise LocalClusterError(f"{name} exited with {rc}; last lines of {log}:\n{_tail(log)}")
        self.popens[name] = proc
        self.info.processes.append(ProcessRecord(name, proc.pid, ticks, str(log), [*prefix, *cmd]))
        _save_state(self.info)

    def check(self) -> None:
        """Raise with the log's last lines if a started process has exited."""
        for name, proc in self.popens.items():
            if proc.poll() is not None:
                log = self.logs / f"{name}.log"
                raise LocalClusterError(
                    f"{name} exited with {proc.returncode}; last lines of {log}:\n{_tail(log)}"
                )


def _signal_and_wait(rec: ProcessRecord, sig: int, grace: float) -> bool:
    """Signal the process's group; True once it is gone (reaped if it is our child)."""
    # Each was started as its own session leader: its group holds any children too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(rec.pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        # When down runs in the process that ran up (tests), reap our child: no zombie stays.
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(rec.pid, os.WNOHANG)
        if not Path(f"/proc/{rec.pid}").exists() or not _alive(rec):
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- waiting


def _api_context(pki_dir: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    ctx.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
    return ctx


def _api_ready(api_port: int, pki_dir: Path, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{api_port}/readyz",
            context=_api_context(pki_dir),
            timeout=timeout,
        ) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError, ssl.SSLError):
        return False


def _wait_until(
    what: str,
    ready: Callable[[], bool],
    deadline: float,
    launcher: _Launcher,
    explain: Callable[[], str],
) -> None:
    """Poll `ready` (a cheap local probe) until the deadline, failing fast if a process dies."""
    while True:
        launcher.check()
        if ready():
            return
        if time.monotonic() > deadline:
            raise LocalClusterError(f"{what} not ready in time; {explain()}")
        time.sleep(0.3)


def _remaining(deadline: float) -> int:
    return max(1, int(deadline - time.monotonic()))


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False
