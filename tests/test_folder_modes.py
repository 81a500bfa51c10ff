"""otactl makes its own folders 0700 and never changes the mode of a folder it did not create.

`--out /tmp/...` once turned /tmp into 0700 (nginx workers then failed everywhere): these
tests write into existing 0755 folders, through the CLI as a user types it, and find them
0755 afterwards.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from otactl.fsutil import ensure_private_dir, write_private
from tests.conftest import run_otactl


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _open_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    return path


def test_write_private_leaves_an_existing_folder_alone(tmp_path: Path) -> None:
    shared = _open_folder(tmp_path / "shared")
    write_private(shared / "key.pem", b"secret")
    assert _mode(shared) == 0o755
    assert _mode(shared / "key.pem") == 0o600


def test_ensure_private_dir_makes_only_the_missing_folders_0700(tmp_path: Path) -> None:
    shared = _open_folder(tmp_path / "shared")
    made = ensure_private_dir(shared / "a" / "b")
    assert made == shared / "a" / "b"
    assert (_mode(shared), _mode(shared / "a"), _mode(made)) == (0o755, 0o700, 0o700)
    os.chmod(made, 0o750)  # the user loosened it on purpose: a second call keeps that
    ensure_private_dir(made)
    assert _mode(made) == 0o750


def test_ensure_private_dir_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    try:
        ensure_private_dir(tmp_path / "f" / "sub")
    except (FileExistsError, NotADirectoryError):
        pass
    else:
        raise AssertionError("a file where a folder should be was accepted")


def test_render_out_into_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    out = _open_folder(tmp_path / "out")
    run_otactl("render", "--out", str(out), cwd=tmp_path, check=True)
    assert _mode(out) == 0o755
    assert _mode(out / "services.yaml") == 0o600  # it holds Secrets


def test_new_device_archive_in_an_existing_generated_folder_keeps_its_mode(
    tmp_path: Path,
) -> None:
    generated = _open_folder(tmp_path / "gen")
    env = {"OTACTL_GENERATED": str(generated)}
    run_otactl("new-server", cwd=tmp_path, env=env, check=True)
    run_otactl("new-device", "--no-register", "--archive", "d1", cwd=tmp_path, env=env, check=True)
    assert _mode(generated) == 0o755
    servers = [p for p in generated.iterdir() if p.is_dir()]
    assert servers and all(_mode(p) == 0o700 for p in servers)  # otactl made these
