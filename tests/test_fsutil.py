"""write_atomic: a reader sees the old file or the whole new one, never a mix, and a failed
write leaves the old file as it was (keys and CRLs go through it)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from otactl import fsutil
from otactl.fsutil import write_atomic, write_private


def test_the_new_content_is_a_new_file_renamed_over_the_old(tmp_path: Path) -> None:
    path = tmp_path / "crl.pem"
    path.write_bytes(b"old content\n")
    with open(path, "rb") as reader:  # e.g. nginx reading its CRL while otactl writes it
        write_atomic(path, "new content, longer than the old\n", mode=0o640)
        # Written in place, the open file would show the new bytes (or a mix of both).
        assert reader.read() == b"old content\n"
    assert path.read_bytes() == b"new content, longer than the old\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["crl.pem"]  # no temporary file left


def test_data_is_synced_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ca.key"
    path.write_bytes(b"old")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync", Path(target).name if target != str(tmp_path) else "<folder>"))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(fsutil.os, "fsync", fsync)
    monkeypatch.setattr(fsutil.os, "replace", replace)
    write_atomic(path, b"new")
    # The temporary file (hidden, next to the target) is synced, then renamed, then the
    # folder is synced so the rename itself survives a power cut.
    [(first, tmp_name), second, third] = events
    assert first == "fsync" and tmp_name.startswith(".ca.key.") and tmp_name.endswith(".tmp")
    assert second == ("replace", "ca.key")
    assert third == ("fsync", "<folder>")


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "server.key"
    path.write_bytes(b"the key that must survive")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, b"half a new key")
    assert path.read_bytes() == b"the key that must survive"
    assert [p.name for p in tmp_path.iterdir()] == ["server.key"]


def test_the_mode_is_set_before_any_byte_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_fdopen = os.fdopen

    def fdopen(fd: int, *args: object, **kw: object):  # type: ignore[no-untyped-def]
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_fdopen(fd, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(fsutil.os, "fdopen", fdopen)
    old = os.umask(0)  # mkstemp's own 0600 must not be what the check sees by luck
    try:
        write_private(tmp_path / "keys" / "pkey.pem", b"secret")
        write_atomic(tmp_path / "public.pem", b"public", mode=0o644)
    finally:
        os.umask(old)
    assert seen == [0o600, 0o644]
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys" / "pkey.pem").stat().st_mode) == 0o600
