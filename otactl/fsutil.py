"""Atomic file writes with safe modes: keys 0600 in 0700 folders."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def ensure_private_dir(path: Path) -> Path:
    """Create `path` and its missing parents as 0700 folders.

    Only folders created here get that mode: an existing folder keeps its own, whoever owns
    it (`--out /tmp` must not turn /tmp into 0700).
    """
    path = Path(path)
    missing = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # made by a concurrent run: not ours to change
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
    return path


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
    """Write `data` to `path` so that a reader sees the old file or the whole new one.

    The temporary file lives in the same folder (same file system, so the rename is
    atomic), gets its final mode before any byte is written, and is fsynced first.
    """
    if isinstance(data, str):
        data = data.encode()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def write_private(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    """Write a secret (key, password file) atomically, 0600, in a 0700 folder."""
    ensure_private_dir(Path(path).parent)
    return write_atomic(path, data, mode)
