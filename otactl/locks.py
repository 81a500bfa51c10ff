"""One writer at a time: a file lock on `generated/<server>/` for the PKI, the secrets,
bundles and credentials.

Two otactl runs on the same folder (three `new-server` at once, `up` while `new-device`
runs) must not see each other's half-written key pairs: that is how a harmless race turned
into "ca.key exists but server_ca.pem is missing". The lock is `flock(2)` on
`<folder>/.lock`, so the kernel releases it when its holder dies (no stale lock to clean
up); the holder writes who it is into the file, so a run that has to wait says for whom.
The lock is re-entrant within a process (`up` takes it for the PKI phase, which calls
functions that take it too), and a forked worker inherits it with the open file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import os
import shlex
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from otactl.fsutil import ensure_private_dir

LOCK_FILE = ".lock"

# Where "waiting for ..." is said (the CLI sets it; a library user may leave it None).
_notify: Callable[[str], None] | None = None
# Locks this process holds: folder -> (fd, depth).
_held: dict[Path, tuple[int, int]] = {}
_guard = threading.RLock()


def on_wait(notify: Callable[[str], None] | None) -> None:
    """Where a run that has to wait for another one's lock says so."""
    global _notify
    _notify = notify


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: enough to find the process and tell a user what it is doing."""

    host: str
    pid: int
    command: str
    started: str  # ISO 8601, UTC

    @classmethod
    def me(cls) -> Holder:
        argv = [Path(sys.argv[0]).name if sys.argv else "otactl", *sys.argv[1:]]
        if argv[0] in ("__main__.py", "-m", "-c"):
            argv[0] = "otactl"
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        return cls(socket.gethostname(), os.getpid(), shlex.join(argv), now.isoformat())

    def describe(self) -> str:
        """`otactl up --timeout 600` (pid 4242 on build-7, since 10:42:03 UTC)."""
        try:
            since = dt.datetime.fromisoformat(self.started).strftime("%Y-%m-%d %H:%M:%S UTC")
        except ValueError:
            since = self.started
        return f"`{self.command}` (pid {self.pid} on {self.host}, since {since})"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(str(data["host"]), int(data["pid"]), str(data["command"]),
                       str(data["started"]))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "", *, create: bool = True) -> Iterator[None]:
    """Hold `folder`'s lock (waiting for another run to release it, and saying so).
    `folder` is created (0700) when missing, its lock file lives in it; with `create`
    False a missing folder is left alone (there is nothing in it to protect)."""
    if not create and not Path(folder).is_dir():
        yield
        return
    folder = ensure_private_dir(Path(folder)).resolve()
    with _guard:
        held = _held.get(folder)
        if held is not None:
            _held[folder] = (held[0], held[1] + 1)
    if held is not None:
        try:
            yield
        finally:
            _release(folder)
        return
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Holder.from_json(os.pread(fd, 4096, 0).decode(errors="replace"))
            if _notify is not None:
                who = holder.describe() if holder else "another otactl"
                about = f" ({what})" if what else ""
                _notify(f"waiting for {folder}{about}: {who} is using it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        record = Holder.me().to_json().encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
    except BaseException:
        os.close(fd)
        raise
    with _guard:
        _held[folder] = (fd, 1)
    try:
        yield
    finally:
        _release(folder)


def _release(folder: Path) -> None:
    with _guard:
        fd, depth = _held[folder]
        if depth > 1:
            _held[folder] = (fd, depth - 1)
            return
        del _held[folder]
    os.ftruncate(fd, 0)
    os.close(fd)  # closing the last descriptor releases the flock


P = ParamSpec("P")
R = TypeVar("R")


def holding_folder(
    fn: Callable[Concatenate[Path, P], R],
) -> Callable[Concatenate[Path, P], R]:
    """Run `fn(folder, ...)` holding `folder`'s lock (for functions that write in it)."""

    @functools.wraps(fn)
    def locked(folder: Path, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with folder_lock(folder):
            return fn(folder, *args, **kwargs)

    return locked
