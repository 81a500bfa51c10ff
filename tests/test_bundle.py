"""Device bundles: what a device gets (sota.toml aktualizr can read, keys, chain, archive),
names and CSV rows refused in one line, batches that survive SIGKILL and re-runs."""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
import tomllib
import uuid as uuidlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otactl import devices, pki
from otactl.config import load_values
from otactl.errors import ConfigError
from tests.conftest import ROOT, run_otactl

SERVER = "ota-ce.example.com"
BUNDLE_FILES = {
    "sota.toml",
    "root.crt",
    "client.pem",
    "pkey.pem",
    "client.chain.pem",
    "gateway.url",
    "info.json",
}


@pytest.fixture
def gen(tmp_path: Path) -> dict[str, str]:
    """Environment for the CLI: output under tmp, server PKI made."""
    env = {"OTACTL_GENERATED": str(tmp_path / "gen")}
    run_otactl("new-server", cwd=tmp_path, env=env, check=True)
    return env


def server_dir(tmp_path: Path) -> Path:
    return tmp_path / "gen" / SERVER


def options(**update: object) -> devices.BundleOptions:
    values = load_values()
    return devices.BundleOptions(
        gateway_url=f"https://{SERVER}:30443",
        device=values.device.model_copy(update={k: v for k, v in update.items() if k != "archive"}),
        days=values.pki.device_days,
        archive=bool(update.get("archive", False)),
    )


def assert_complete(folder: Path) -> None:
    """A bundle is whole: every file, non-empty, key matching certificate, CN = folder."""
    assert {p.name for p in folder.iterdir()} >= BUNDLE_FILES, folder
    cert = x509.load_pem_x509_certificate((folder / "client.pem").read_bytes())
    key = serialization.load_pem_private_key((folder / "pkey.pem").read_bytes(), None)
    assert cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == f"CN={folder.name}"
    info = json.loads((folder / "info.json").read_bytes())
    assert info["uuid"] == folder.name and info["path"] == str(folder)
    assert set(info) == {
        "name",
        "uuid",
        "serial",
        "fingerprint",
        "not_before",
        "not_after",
        "hardware_id",
        "path",
        "gateway_url",
        "format",
        "aktualizr",
    }
    assert info["format"] in devices.FORMATS
    tomllib.loads((folder / "sota.toml").read_text())


# --- one bundle --------------------------------------------------------------------------


def test_bundle_contents(tmp_path: Path, gen: dict[str, str]) -> None:
    out = run_otactl(
        "new-device", "--no-register", "kiosk-7", "-o", "json", cwd=tmp_path, env=gen, check=True
    )
    info = json.loads(out.stdout)
    folder = Path(info["path"])
    assert folder.parent == server_dir(tmp_path) / "devices" and folder.name == info["uuid"]
    assert uuidlib.UUID(info["uuid"]).version == 4 and info["uuid"] == info["uuid"].lower()
    assert {p.name for p in folder.iterdir()} == BUNDLE_FILES
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "pkey.pem").stat().st_mode) == 0o600
    assert_complete(folder)

    key = serialization.load_pem_private_key((folder / "pkey.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert (folder / "pkey.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert (folder / "gateway.url").read_text() == f"https://{SERVER}:30443"

    cert = x509.load_pem_x509_certificate((folder / "client.pem").read_bytes())
    assert info["serial"] == format(cert.serial_number, "x")
    assert info["fingerprint"] == pki.fingerprint(cert)
    assert info["not_after"] == cert.not_valid_after_utc.isoformat()
    on_disk = json.loads((folder / "info.json").read_bytes())
    assert {k: on_disk[k] for k in ("name", "uuid", "serial", "fingerprint")} == {
        "name": "kiosk-7",
        "uuid": info["uuid"],
        "serial": info["serial"],
        "fingerprint": info["fingerprint"],
    }
    fp = subprocess.run(
        ["openssl", "x509", "-in", str(folder / "client.pem"), "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert fp.split("=", 1)[1].strip().replace(":", "").lower() == info["fingerprint"]
    chain = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(server_dir(tmp_path) / "devices" / "ca.crt"),
            "-untrusted",
            str(folder / "client.chain.pem"),
            str(folder / "client.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert chain.returncode == 0, chain.stderr

    # The same name again: the existing bundle, untouched.
    before = (folder / "client.pem").read_bytes()
    again = run_otactl(
        "new-device", "--no-register", "kiosk-7", "-o", "json", cwd=tmp_path, env=gen, check=True
    )
    assert json.loads(again.stdout)["uuid"] == info["uuid"]
    assert json.loads(again.stdout)["created"] is False
    assert (folder / "client.pem").read_bytes() == before


def test_legacy_2018_sota_toml(tmp_path: Path, gen: dict[str, str]) -> None:
    out = run_otactl(
        "new-device",
        "--no-register",
        "d1",
        "--format",
        "legacy-2018",
        "-o",
        "json",
        cwd=tmp_path,
        env=gen,
        check=True,
    )
    folder = Path(json.loads(out.stdout)["path"])
    text = (folder / "sota.toml").read_text()
    conf = tomllib.loads(text)
    url = f"https://{SERVER}:30443"
    assert set(conf) == {
        "gateway",
        "network",
        "p11",
        "tls",
        "provision",
        "uptane",
        "pacman",
        "storage",
        "import",
    }
    assert conf["tls"] == {
        "server": url,
        "ca_source": "file",
        "pkey_source": "file",
        "cert_source": "file",
    }
    assert conf["provision"]["server"] == url and conf["provision"]["provision_path"] == ""
    # 2018.1-2018.5 read the hardware id from [uptane], 2018.6-2018.7 from [provision].
    assert conf["provision"]["primary_ecu_hardware_id"] == "intel-corei7-64"
    assert conf["uptane"]["director_server"] == f"{url}/director"
    assert conf["uptane"]["repo_server"] == f"{url}/repo"
    assert conf["uptane"]["primary_ecu_hardware_id"] == "intel-corei7-64"
    assert conf["uptane"]["polling_sec"] == 10 and conf["uptane"]["device_id"] == ""
    assert conf["pacman"]["type"] == "ostree"
    assert conf["pacman"]["ostree_server"] == f"{url}/treehub"
    assert conf["uptane"]["ostree_server"] == f"{url}/treehub"  # where 2018.1 reads it
    assert conf["storage"]["type"] == "filesystem" and conf["storage"]["path"] == "/var/sota/"
    assert (
        conf["storage"]["tls_cacert_path"],
        conf["storage"]["tls_pkey_path"],
        conf["storage"]["tls_clientcert_path"],
    ) == ("root.crt", "pkey.pem", "client.pem")
    assert conf["import"]["tls_cacert_path"] == "/var/sota/root.crt"
    assert_ini_subset(text)


def assert_ini_subset(text: str) -> None:
    """What aktualizr's INI reader needs: flat sections, each once, `key = value` lines,
    strings in double quotes, no comments after values, no arrays or inline tables."""
    sections: set[str] = set()
    keys: set[tuple[str, str]] = set()
    current = ""
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("["):
            assert line.count("[") == 1 and line.endswith("]") and "." not in line, line
            current = line[1:-1]
            assert current not in sections, f"section {current} repeated"
            sections.add(current)
            continue
        key, sep, value = line.partition(" = ")
        assert sep and (current, key) not in keys, line
        keys.add((current, key))
        assert (
            value in ("true", "false")
            or value.isdigit()
            or (value.startswith('"') and value.endswith('"') and value.count('"') == 2)
        ), line


def test_device_cred_sota_toml(tmp_path: Path, gen: dict[str, str]) -> None:
    out = run_otactl(
        "new-device",
        "--no-register",
        "d1",
        "--format",
        "device-cred",
        "--hardware-id",
        "rpi4",
        "--set",
        "device.polling_sec=300",
        "-o",
        "json",
        cwd=tmp_path,
        env=gen,
        check=True,
    )
    folder = Path(json.loads(out.stdout)["path"])
    text = (folder / "sota.toml").read_text()
    conf = tomllib.loads(text)
    assert conf["tls"] == {"server_url_path": "/var/sota/import/gateway.url"}
    # Absolute: 2018.6-2018.7 have no base_path; later releases keep absolute paths.
    assert conf["import"] == {
        "base_path": "/var/sota/import",
        "tls_cacert_path": "/var/sota/import/root.crt",
        "tls_clientcert_path": "/var/sota/import/client.pem",
        "tls_pkey_path": "/var/sota/import/pkey.pem",
    }
    assert conf["provision"]["primary_ecu_hardware_id"] == "rpi4"
    assert conf["provision"]["provision_path"] == ""  # the certificate CN is the device id
    assert conf["provision"]["mode"] == "DeviceCred"
    assert conf["pacman"] == {"type": "ostree"}  # derived from the gateway URL by aktualizr
    assert conf["storage"] == {
        "type": "sqlite",
        "path": "/var/sota/",
        "sqldb_path": "/var/sota/sql.db",
    }
    assert conf["uptane"]["polling_sec"] == 300
    assert_ini_subset(text)


def test_gateway_port(tmp_path: Path, gen: dict[str, str]) -> None:
    names = iter(range(1, 100))

    def url(*args: str) -> str:
        name = f"port-{next(names)}"  # a new device each call (a known name is skipped)
        out = run_otactl(
            "new-device",
            "--no-register",
            name,
            *args,
            "-o",
            "json",
            cwd=tmp_path,
            env=gen,
            check=True,
        )
        return (Path(json.loads(out.stdout)["path"]) / "gateway.url").read_text()

    assert url() == f"https://{SERVER}:30443"  # NodePort default of the shipped values
    assert url("--set", "gateway.service_type=LoadBalancer") == f"https://{SERVER}:8443"
    assert url("--port", "31000") == f"https://{SERVER}:31000"


def test_given_uuid_and_archive(tmp_path: Path, gen: dict[str, str]) -> None:
    given = str(uuidlib.uuid4()).upper()
    out = run_otactl(
        "new-device",
        "--no-register",
        "d1",
        "--uuid",
        given,
        "--format",
        "legacy-2018",
        "--archive",
        "-o",
        "json",
        cwd=tmp_path,
        env=gen,
        check=True,
    )
    info = json.loads(out.stdout)
    assert info["uuid"] == given.lower()
    folder = Path(info["path"])
    with tarfile.open(folder / devices.ARCHIVE) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {
            "var",
            "var/sota",
            "var/sota/sota.toml",
            "var/sota/root.crt",
            "var/sota/client.pem",
            "var/sota/pkey.pem",
        }
        assert members["var/sota/pkey.pem"].mode == 0o600
        assert members["var/sota/client.pem"].mode == 0o644
        assert members["var/sota"].mode == 0o700 and members["var/sota"].isdir()
        assert all(m.uid == 0 and m.gid == 0 for m in members.values())
        data = tar.extractfile("var/sota/client.pem")
        assert data is not None and data.read() == (folder / "client.pem").read_bytes()

    out = run_otactl(
        "new-device",
        "--no-register",
        "d2",
        "--format",
        "device-cred",
        "--archive",
        "-o",
        "json",
        cwd=tmp_path,
        env=gen,
        check=True,
    )
    with tarfile.open(Path(json.loads(out.stdout)["path"]) / devices.ARCHIVE) as tar:
        names = set(tar.getnames())
    assert {
        "var/sota/sota.toml",
        "var/sota/import/gateway.url",
        "var/sota/import/root.crt",
        "var/sota/import/client.pem",
        "var/sota/import/pkey.pem",
    } <= names

    taken = run_otactl("new-device", "--no-register", "d3", "--uuid", given, cwd=tmp_path, env=gen)
    assert taken.returncode == 2 and "already belongs to d1" in taken.stderr


@pytest.mark.parametrize(
    "name", ["a/b", "..", "a..b", "x" * 65, "ä", "a b", "", "-", "../etc", "a\nb", "."]
)
def test_bad_names_refused(tmp_path: Path, gen: dict[str, str], name: str) -> None:
    devices = server_dir(tmp_path) / "devices"
    before = sorted(p.name for p in devices.iterdir())
    proc = (
        run_otactl("new-device", "--no-register", "--", name, cwd=tmp_path, env=gen)
        if name == "-"
        else (run_otactl("new-device", "--no-register", name, cwd=tmp_path, env=gen))
    )
    if name == "-":  # a legal name: letters, digits and `._-`
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: device name") and proc.stderr.count("\n") == 1
    assert sorted(p.name for p in devices.iterdir()) == before


def test_cli_argument_errors(tmp_path: Path, gen: dict[str, str]) -> None:
    for args, words in (
        (["new-device", "--no-register"], "exactly one of"),
        (["new-device", "--no-register", "a", "--count", "2", "--prefix", "p"], "exactly one of"),
        (["new-device", "--no-register", "--count", "2"], "--count and --prefix"),
        (["new-device", "--no-register", "a", "--uuid", "nope"], "uuid 'nope'"),
        (["new-device", "--no-register", "a", "--format", "yaml"], "--format yaml"),
        (["new-device", "--no-register", "a", "--set", "device.format=yaml"], "device.format"),
        (["new-device", "--no-register", "a", "--set", "pki.device_key_type=dsa"], "pki"),
        (
            ["new-device", "--no-register", "a", "--set", "device.storage_path=/var/my sota"],
            "device.storage_path",
        ),
        (["new-device", "--no-register", "a", "--hardware-id", "a b"], "hardware id"),
        (["revoke-device", "ghost"], "no device named"),
    ):
        proc = run_otactl(*args, cwd=tmp_path, env=gen)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and words in proc.stderr
        assert proc.stderr.count("\n") == 1


def test_no_server_pki(tmp_path: Path) -> None:
    proc = run_otactl(
        "new-device", "--no-register", "d1", cwd=tmp_path, env={"OTACTL_GENERATED": str(tmp_path)}
    )
    assert proc.returncode == 3 and "run `otactl new-server` first" in proc.stderr


# --- batches -----------------------------------------------------------------------------


def read_manifest(tmp_path: Path) -> list[dict[str, str]]:
    path = server_dir(tmp_path) / "devices" / devices.MANIFEST
    return [json.loads(line) for line in path.read_text().splitlines()]


def uuid_folders(tmp_path: Path) -> list[Path]:
    folder = server_dir(tmp_path) / "devices"
    return [p for p in folder.iterdir() if devices.UUID_RE.fullmatch(p.name)]


def test_count_batch_and_rerun(tmp_path: Path, gen: dict[str, str]) -> None:
    out = run_otactl(
        "new-device",
        "--no-register",
        "--count",
        "300",
        "--prefix",
        "line1",
        "-o",
        "json",
        cwd=tmp_path,
        env=gen,
        check=True,
    )
    assert json.loads(out.stdout)["created"] == 300
    rows = read_manifest(tmp_path)
    # In input order, whichever worker finished first.
    assert [r["name"] for r in rows] == [f"line1-{i:04d}" for i in range(1, 301)]
    assert len({r["uuid"] for r in rows}) == 300
    assert set(rows[0]) >= {"name", "uuid", "serial", "fingerprint", "path"}
    folders = uuid_folders(tmp_path)
    assert len(folders) == 300
    for folder in folders[:20]:
        assert_complete(folder)

    again = run_otactl(
        "new-device",
        "--no-register",
        "--count",
        "310",
        "--prefix",
        "line1",
        "-o",
        "json",
        cwd=tmp_path,
        env=gen,
        check=True,
    )
    assert json.loads(again.stdout) | {"manifest": None} == {
        "created": 10,
        "skipped": 300,
        "manifest": None,
    }
    names = [r["name"] for r in read_manifest(tmp_path)]
    assert names == [f"line1-{i:04d}" for i in range(1, 311)]  # the new ones appended


def test_csv_batch_and_bad_row(tmp_path: Path, gen: dict[str, str]) -> None:
    fixed = str(uuidlib.uuid4())
    good = [["name", "uuid", "hardware_id"], ["a1", "", ""], ["a2", fixed, "rpi4"], ["a3"]]
    path = tmp_path / "devices.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([*good, ["bad/name"], ["a5"]])
    proc = run_otactl("new-device", "--no-register", "--from-csv", str(path), cwd=tmp_path, env=gen)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {path}:5: device name 'bad/name'")
    assert proc.stderr.count("\n") == 1
    # The rows before the bad one are complete bundles, in the manifest.
    rows = {r["name"]: r for r in read_manifest(tmp_path)}
    assert set(rows) == {"a1", "a2", "a3"}
    assert rows["a2"]["uuid"] == fixed
    info = json.loads((Path(rows["a2"]["path"]) / "info.json").read_bytes())
    assert info["hardware_id"] == "rpi4"
    assert (
        'primary_ecu_hardware_id = "rpi4"' in (Path(rows["a2"]["path"]) / "sota.toml").read_text()
    )
    kept = {p: (p / "client.pem").read_bytes() for p in uuid_folders(tmp_path)}

    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([*good, ["a4"], ["a5"]])
    out = run_otactl(
        "new-device",
        "--no-register",
        "--from-csv",
        str(path),
        "-o",
        "json",
        cwd=tmp_path,
        env=gen,
        check=True,
    )
    assert json.loads(out.stdout)["created"] == 2 and json.loads(out.stdout)["skipped"] == 3
    assert {p: (p / "client.pem").read_bytes() for p in kept} == kept

    for bad_rows, message in (
        ([["a1", "not-a-uuid"]], ":1: uuid 'not-a-uuid'"),
        ([["z1"], ["z1"]], ":2: name 'z1' repeats line 1"),
        ([["z2", "", "", "extra"]], ":1: 4 columns"),
        ([["a2", str(uuidlib.uuid4())]], "a2 exists with uuid"),
    ):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(bad_rows)
        proc = run_otactl(
            "new-device", "--no-register", "--from-csv", str(path), cwd=tmp_path, env=gen
        )
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1
    assert {p: (p / "client.pem").read_bytes() for p in kept} == kept


def test_hook_sees_every_bundle(tmp_path: Path, gen: dict[str, str]) -> None:
    seen: list[devices.BundleInfo] = []
    done: list[int] = []
    specs = devices.specs_from_count("hk", 120)
    summary = devices.new_devices(
        server_dir(tmp_path),
        specs,
        options(),
        workers=2,
        chunk_size=16,
        hook=seen.append,
        progress=done.append,
    )
    assert summary.created == 120 and sum(done) == 120
    assert len({i.uuid for i in seen}) == 120 and all(i.created for i in seen)
    for info in seen[:5]:
        assert_complete(info.path)

    # A hook that fails (e.g. the registry is down) stops the run; what exists stays valid,
    # and the re-run hands the hook every bundle again, made or skipped.
    def flaky(info: devices.BundleInfo) -> None:
        if info.name == "hk-0150":
            raise RuntimeError("registry down")

    with pytest.raises(RuntimeError, match="registry down"):
        devices.new_devices(
            server_dir(tmp_path),
            devices.specs_from_count("hk", 300),
            options(),
            workers=2,
            chunk_size=16,
            hook=flaky,
        )
    names = [r["name"] for r in read_manifest(tmp_path)]
    assert len(names) == len(set(names)) and "hk-0150" in names
    for folder in uuid_folders(tmp_path):
        assert (folder / "info.json").exists()
    seen.clear()
    summary = devices.new_devices(
        server_dir(tmp_path),
        devices.specs_from_count("hk", 300),
        options(),
        workers=2,
        hook=seen.append,
    )
    assert summary.created + summary.skipped == 300 and len(seen) == 300
    assert len(read_manifest(tmp_path)) == 300


def test_sigkill_mid_batch_leaves_only_complete_bundles(
    tmp_path: Path, gen: dict[str, str]
) -> None:
    """Kill the whole batch (main and workers) with SIGKILL while it writes: every bundle
    folder present is complete, and a re-run finishes the rest without duplicates."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")} | gen
    cmd = [
        sys.executable,
        "-m",
        "otactl",
        "new-device",
        "--no-register",
        "--count",
        "5000",
        "--prefix",
        "k",
        "--archive",
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    manifest = server_dir(tmp_path) / "devices" / devices.MANIFEST
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if manifest.exists() and manifest.stat().st_size > 20 * 150:
            break
        assert proc.poll() is None, "the batch ended before it could be killed"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    folders = uuid_folders(tmp_path)
    assert 20 <= len(folders) < 5000
    for folder in folders:
        assert_complete(folder)
        assert (folder / devices.ARCHIVE).stat().st_size > 0
    # Half-written bundles exist only as hidden .tmp-* folders, which the next run drops.
    out = run_otactl(
        "new-device",
        "--no-register",
        "--count",
        "5000",
        "--prefix",
        "k",
        "-o",
        "json",
        cwd=tmp_path,
        env=gen,
        check=True,
    )
    summary = json.loads(out.stdout)
    assert summary["skipped"] == len(folders) and summary["created"] == 5000 - len(folders)
    rows = read_manifest(tmp_path)
    assert len(rows) == 5000 and len({r["name"] for r in rows}) == 5000
    assert len(uuid_folders(tmp_path)) == 5000
    assert not [
        p
        for p in (server_dir(tmp_path) / "devices").iterdir()
        if p.name.startswith(devices.TMP_PREFIX)
    ]


def test_specs_from_csv_streams(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("n1\n\nn2,,hw-2\nbad name\n")
    specs = devices.specs_from_csv(path)
    assert next(specs).name == "n1"
    assert next(specs) == devices.DeviceSpec("n2", None, "hw-2", row=3)
    with pytest.raises(ConfigError, match=r"d\.csv:4: device name 'bad name'"):
        next(specs)


def test_core_modules_stay_light() -> None:
    """pki and devices (every module of both packages) and credentials import neither
    typer nor the cluster clients."""
    modules = ["otactl.credentials", "otactl.credentials_zip"]
    for package in ("pki", "devices"):
        modules += [f"otactl.{package}"] + [
            f"otactl.{package}.{p.stem}"
            for p in sorted((ROOT / "otactl" / package).glob("*.py"))
            if p.stem != "__init__"
        ]
    assert "otactl.devices.batch" in modules and "otactl.pki.profiles" in modules
    code = (
        f"import sys, {', '.join(modules)}; "
        "bad = [m for m in ('typer', 'kubernetes', 'google.cloud', 'rich') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr
