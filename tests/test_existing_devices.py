"""Existing devices through the CLI (issue 16, item 6): `new-device NAME` again with other
options is refused unless `--reissue` (new key and certificate, same uuid, the old one on
the CRL); a revoked device says so; `renew-device` (same key, new certificate);
`devices list`. Bundles only (--no-register): registration is tests/integration's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from otactl import pki
from tests.conftest import run_otactl


@pytest.fixture
def gen(tmp_path: Path) -> Path:
    folder = tmp_path / "gen"
    run_otactl("--generated", str(folder), "new-server", cwd=tmp_path, check=True)
    return folder


def otactl(gen: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_otactl("--generated", str(gen), *args, cwd=gen.parent)


def device(gen: Path, *args: str) -> dict[str, Any]:
    proc = otactl(gen, "new-device", *args, "--no-register", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def cert(bundle: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate((Path(bundle["path"]) / "client.pem").read_bytes())


def revoked(gen: Path) -> set[int]:
    return pki.revoked_serials(pki.ServerFiles(gen / "ota-ce.example.com"))


def errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("error: ")]


def test_same_options_keep_the_device_other_options_are_refused(gen: Path) -> None:
    first = device(gen, "d1")
    again = device(gen, "d1", "--format", "device-cred")  # what it was made with
    assert again["created"] is False and again["serial"] == first["serial"]

    proc = otactl(
        gen, "new-device", "d1", "--no-register", "--format", "legacy-2018",
        "--hardware-id", "other-hw", "--archive",
    )  # fmt: skip
    assert proc.returncode == 2
    assert errors(proc) == [
        "error: d1 exists with other settings: --format legacy-2018 (the bundle is "
        "device-cred); --hardware-id other-hw (the bundle has intel-corei7-64); --archive "
        "(the bundle has none); add --reissue for a new key and certificate with them (the "
        "old certificate is revoked)"
    ]
    assert device(gen, "d1")["serial"] == first["serial"]  # nothing changed


def test_reissue_makes_a_new_key_and_revokes_the_old_certificate(gen: Path) -> None:
    first = device(gen, "d1")
    old_key = (Path(first["path"]) / "pkey.pem").read_bytes()
    new = device(gen, "d1", "--reissue", "--hardware-id", "other-hw")
    assert new["uuid"] == first["uuid"] and new["path"] == first["path"]
    assert new["serial"] != first["serial"] and new["hardware_id"] == "other-hw"
    assert new["reissued"] is True and new["revoked_serial"] == first["serial"]
    assert (Path(new["path"]) / "pkey.pem").read_bytes() != old_key
    assert 'hardware_id = "other-hw"' in (Path(new["path"]) / "sota.toml").read_text()
    assert revoked(gen) == {int(first["serial"], 16)}
    # The old bundle is kept aside, not deleted.
    aside = Path(first["path"]).parent / ".replaced" / f"{first['uuid']}-{first['serial']}"
    assert (aside / "pkey.pem").read_bytes() == old_key
    # Options not given stay as the bundle had them.
    again = device(gen, "d1", "--reissue")
    assert again["hardware_id"] == "other-hw"


def test_a_revoked_device_says_so_and_reissue_makes_a_new_one(gen: Path) -> None:
    first = device(gen, "d1")
    assert otactl(gen, "revoke-device", "d1").returncode == 0
    proc = otactl(gen, "new-device", "d1", "--no-register")
    assert proc.returncode == 3
    assert errors(proc) == [
        f"error: d1 ({first['uuid']}) is revoked: `otactl new-device d1 --reissue` makes a "
        "new key and certificate"
    ]
    proc = otactl(gen, "renew-device", "d1", "--no-register")
    assert proc.returncode == 3 and "is revoked" in errors(proc)[0]
    proc = otactl(gen, "new-device", "d1", "--no-register", "--reissue")
    assert proc.returncode == 0, proc.stderr
    assert f"serial {first['serial']}, was revoked already" in proc.stderr
    listed = json.loads(otactl(gen, "devices", "list", "--offline", "-o", "json").stdout)
    assert [(d["name"], d["revoked"]) for d in listed] == [("d1", False)]


def test_renew_keeps_the_key_and_leaves_the_old_certificate_valid(gen: Path) -> None:
    first = device(gen, "d1", "--hardware-id", "hw-1", "--archive")
    key = (Path(first["path"]) / "pkey.pem").read_bytes()
    proc = otactl(gen, "renew-device", "d1", "--no-register", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    renewed = json.loads(proc.stdout)
    assert renewed["uuid"] == first["uuid"] and renewed["serial"] != first["serial"]
    assert renewed["previous_not_after"] == first["not_after"]
    assert (Path(renewed["path"]) / "pkey.pem").read_bytes() == key
    assert cert(renewed).public_key() == cert(first).public_key()
    assert renewed["hardware_id"] == "hw-1"
    assert (Path(renewed["path"]) / "device-fs.tar.gz").is_file()
    assert revoked(gen) == set()


def test_devices_list(gen: Path) -> None:
    device(gen, "b-dev")
    a = device(gen, "a-dev")
    assert otactl(gen, "revoke-device", "a-dev").returncode == 0
    proc = otactl(gen, "devices", "list", "--offline", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert [d["name"] for d in listed] == ["a-dev", "b-dev"]
    assert listed[0]["uuid"] == a["uuid"] and listed[0]["not_after"] == a["not_after"]
    assert [d["revoked"] for d in listed] == [True, False]
    assert {d["registered"] for d in listed} == {None}  # --offline: not asked
    text = otactl(gen, "devices", "list", "--offline").stdout.splitlines()
    assert text[0].split() == ["NAME", "UUID", "EXPIRES", "REVOKED", "REGISTERED"]
    assert text[1].split()[0:2] == ["a-dev", a["uuid"]] and text[1].split()[-2:] == ["yes", "-"]
    # Asking device-registry needs a cluster: without one, one line.
    proc = otactl(gen, "devices", "list", "--kubeconfig", str(gen / "missing"))
    assert proc.returncode == 2 and errors(proc)[0].startswith("error: ")


# Run otactl with os.rename wrapped: the process kills itself (SIGKILL, nothing runs after)
# just before the rename that puts the new bundle into devices/<uuid>.
KILLED_AT_THE_SECOND_RENAME = """
import os, signal, sys
rename = os.rename
def killing_rename(src, dst):
    if os.path.basename(os.path.dirname(os.fspath(src))).startswith(".tmp-"):
        os.kill(os.getpid(), signal.SIGKILL)
    rename(src, dst)
os.rename = killing_rename
from otactl.cli import main
sys.argv = ["otactl", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("command", [["renew-device", "d1"], ["new-device", "d1", "--reissue"]])
def test_a_replacement_killed_between_its_renames_gets_the_old_bundle_back(
    gen: Path, command: list[str]
) -> None:
    """Killed with the old bundle moved aside and the new one not yet in place, the device
    had no folder at all; the next command puts the old bundle back, and the replacement
    run again succeeds."""
    import os
    import sys

    first = device(gen, "d1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AT_THE_SECOND_RENAME, "--generated", str(gen),
         *command, "--no-register"],
        cwd=gen.parent, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    devices = gen / "ota-ce.example.com" / "devices"
    assert not (devices / first["uuid"]).exists()  # the state the kill leaves

    proc = otactl(gen, "devices", "list", "--offline", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    (listed,) = json.loads(proc.stdout)
    assert listed["uuid"] == first["uuid"]
    assert (devices / first["uuid"] / "client.pem").read_bytes() == (
        Path(first["path"]) / "client.pem"
    ).read_bytes()
    assert not (devices / ".replacing").exists()

    again = otactl(gen, *command, "--no-register", "-o", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["serial"] != first["serial"]
