"""Several revocations in one CRL, through the CLI as a user types it: revoking one device
never un-revokes another, and openssl (the gateway's check) refuses each revoked one."""

from __future__ import annotations

import json
from pathlib import Path

from otactl import pki
from tests.conftest import run_otactl
from tests.test_pki import verify_client

SERVER = "ota-ce.example.com"


def test_each_revocation_stays_in_the_crl(tmp_path: Path) -> None:
    env = {"OTACTL_GENERATED": str(tmp_path / "gen")}
    run_otactl("new-server", cwd=tmp_path, env=env, check=True)
    devices = {}
    for name in ("car-1", "car-2", "car-3"):
        out = run_otactl(
            "new-device", "--no-register", name, "-o", "json", cwd=tmp_path, env=env, check=True
        )
        devices[name] = json.loads(out.stdout)
    files = pki.ServerFiles(tmp_path / "gen" / SERVER)

    run_otactl("revoke-device", "car-1", cwd=tmp_path, env=env, check=True)
    run_otactl("revoke-device", devices["car-2"]["uuid"], cwd=tmp_path, env=env, check=True)
    again = run_otactl("revoke-device", "car-1", cwd=tmp_path, env=env, check=True)
    assert "already" in again.stdout + again.stderr

    crls = pki.load_crls(files.crl)
    assert len(crls) == 1
    assert sorted(e.serial_number for e in crls[0]) == sorted(
        int(devices[n]["serial"], 16) for n in ("car-1", "car-2")
    )
    for name, revoked in (("car-1", True), ("car-2", True), ("car-3", False)):
        client = str(Path(devices[name]["path"]) / "client.pem")
        proc = verify_client(str(files.crl), str(files.device_ca), client, check=False)
        if revoked:
            assert proc.returncode != 0 and "certificate revoked" in proc.stdout + proc.stderr
        else:
            assert proc.returncode == 0 and ": OK" in proc.stdout, proc.stdout + proc.stderr
