"""Atomic file writes with safe modes: keys 0600 in 0700 folders."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) as 0700 folders; tighten it if it already exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
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
