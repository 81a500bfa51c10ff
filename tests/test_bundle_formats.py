"""Each sota.toml format read the way aktualizr reads it (tests/aktualizr_config.py: boost
read_ini and each release's config loading and provisioning checks): the releases a format
provisions are exactly the ones it claims; what `new-device` says about them (info.json,
warnings, --help); device key types; bad CSV input in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from otactl import devices
from tests.aktualizr_config import TAGS, IniError, Ptree, at_least, provision, read_ini
from tests.conftest import run_otactl

SERVER = "ota-ce.example.com"
URL = f"https://{SERVER}:30443"


@pytest.fixture
def gen(tmp_path: Path) -> dict[str, str]:
    env = {"OTACTL_GENERATED": str(tmp_path / "gen")}
    run_otactl("new-server", cwd=tmp_path, env=env, check=True)
    return env


def make(tmp_path: Path, gen: dict[str, str], name: str, *args: str) -> tuple[Path, str]:
    """One bundle through the CLI: its folder and what new-device said on stderr."""
    out = run_otactl(
        "new-device", "--no-register", name, *args, "-o", "json", cwd=tmp_path, env=gen
    )
    assert out.returncode == 0, out.stderr
    return Path(json.loads(out.stdout)["path"]), out.stderr


def on_device(folder: Path) -> dict[str, bytes]:
    """The bundle's files where the device has them (what --push and --archive lay out)."""
    info = json.loads((folder / "info.json").read_bytes())
    storage = Ptree(read_ini((folder / "sota.toml").read_text())).path("storage.path")
    assert storage is not None
    layout = devices.device_layout(info["format"], storage)
    return {path: (folder / name).read_bytes() for name, path in layout.items()}


def claimed(fmt: str) -> list[str]:
    f = devices.FORMATS[fmt]
    return [t for t in TAGS if at_least(t, f.first) and (f.last is None or at_least(f.last, t))]


# --- which releases provision with which format --------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "args", "storage"),
    [
        ("device-cred", [], "/var/sota/"),
        ("legacy-2018", [], "/var/sota/"),
        ("device-cred", ["--set", "device.storage_path=/data/sota"], "/data/sota/"),
        ("legacy-2018", ["--set", "device.storage_path=/data/sota"], "/data/sota/"),
    ],
)
def test_each_release_provisions_exactly_where_claimed(
    tmp_path: Path, gen: dict[str, str], fmt: str, args: list[str], storage: str
) -> None:
    folder, _ = make(tmp_path, gen, "d1", "--format", fmt, "--hardware-id", "rpi4", *args)
    files = on_device(folder)
    text = (folder / "sota.toml").read_text()
    works = []
    for tag in TAGS:
        got = provision(tag, text, files)
        if got.error is not None or got.hardware_id != "rpi4":
            continue
        works.append(tag)
        assert got.server == URL and got.director == f"{URL}/director", tag
        assert got.repo == f"{URL}/repo" and got.ostree_server == f"{URL}/treehub", tag
        assert got.polling_sec == 10 and got.package_manager == "ostree", tag
        # The credentials it loads are the bundle's own.
        assert {k: files[p] for k, p in got.credentials.items()} == {
            "ca": (folder / "root.crt").read_bytes(),
            "cert": (folder / "client.pem").read_bytes(),
            "key": (folder / "pkey.pem").read_bytes(),
        }, tag
        assert all(p.startswith(storage) for p in got.credentials.values()), tag
        if got.storage == "sqlite":
            assert got.db_path == f"{storage}sql.db", tag
    assert works == claimed(fmt)
    assert json.loads((folder / "info.json").read_bytes())["aktualizr"] == {
        "format": fmt,
        "releases": devices.FORMATS[fmt].releases,
        "first": devices.FORMATS[fmt].first,
        "last": devices.FORMATS[fmt].last,
        "built_with_ostree": True,
    }


def test_why_the_other_releases_do_not(tmp_path: Path, gen: dict[str, str]) -> None:
    cred, _ = make(tmp_path, gen, "c", "--hardware-id", "rpi4")
    legacy, _ = make(tmp_path, gen, "l", "--format", "legacy-2018", "--hardware-id", "rpi4")
    cred_toml, legacy_toml = (f / "sota.toml" for f in (cred, legacy))
    # 2018.8 and later refuse filesystem storage at start-up.
    got = provision("master", legacy_toml.read_text(), on_device(legacy))
    assert got.error == (
        "FSStorage has been removed in recent versions of aktualizr, please use SQLStorage"
    )
    # device-cred: 2018.5 reads the hardware id from [uptane] and registers the host name;
    # before 2018.5 nothing reads server_url_path.
    assert provision("2018.5", cred_toml.read_text(), on_device(cred)).hardware_id == "hostname"
    assert provision("2018.4", cred_toml.read_text(), on_device(cred)).error == "no server URL"
    # The seed's layout had the hardware id only in [uptane]: 2018.6-2018.7 registered the
    # host name (the [provision] line is what makes legacy-2018 right there).
    seed = legacy_toml.read_text().replace(
        'primary_ecu_serial = ""\nprimary_ecu_hardware_id = "rpi4"\n\n[uptane]',
        'primary_ecu_serial = ""\n\n[uptane]',
    )
    assert seed != legacy_toml.read_text()
    assert provision("2018.7", seed, on_device(legacy)).hardware_id == "hostname"
    assert provision("2018.5", seed, on_device(legacy)).hardware_id == "rpi4"


# The keys each release range reads from the default bundle (device-cred), as that range's
# config loading looks them up, and what it must find (sources: tests/aktualizr_config.py).
DEVICE_CRED_READS: dict[tuple[str, str], dict[str, str | int]] = {
    ("2018.6", "2018.7"): {
        "tls.server_url_path": "/var/sota/import/gateway.url",
        "provision.provision_path": "",
        "provision.primary_ecu_hardware_id": "rpi4",
        "uptane.polling_sec": 10,
        "pacman.type": "ostree",
        "storage.type": "sqlite",
        "storage.sqldb_path": "/var/sota/sql.db",  # absolute; not based on storage.path
        "import.tls_cacert_path": "/var/sota/import/root.crt",  # no base_path yet
        "import.tls_clientcert_path": "/var/sota/import/client.pem",
        "import.tls_pkey_path": "/var/sota/import/pkey.pem",
    },
    ("2018.8", "2020.7"): {
        "tls.server_url_path": "/var/sota/import/gateway.url",
        "provision.provision_path": "",
        "provision.primary_ecu_hardware_id": "rpi4",
        "uptane.polling_sec": 10,
        "pacman.type": "ostree",
        "storage.type": "sqlite",  # anything else: "FSStorage has been removed"
        "storage.path": "/var/sota/",
        "import.base_path": "/var/sota/import",
        "import.tls_cacert_path": "/var/sota/import/root.crt",
        "import.tls_clientcert_path": "/var/sota/import/client.pem",
        "import.tls_pkey_path": "/var/sota/import/pkey.pem",
    },
    ("2020.8", "master"): {
        "tls.server_url_path": "/var/sota/import/gateway.url",
        "provision.mode": "DeviceCred",
        "provision.primary_ecu_hardware_id": "rpi4",
        "uptane.polling_sec": 10,
        "pacman.type": "ostree",
        "storage.type": "sqlite",
        "storage.path": "/var/sota/",
        "import.base_path": "/var/sota/import",
        "import.tls_cacert_path": "/var/sota/import/root.crt",
        "import.tls_clientcert_path": "/var/sota/import/client.pem",
        "import.tls_pkey_path": "/var/sota/import/pkey.pem",
    },
}
LEGACY_READS: dict[tuple[str, str], dict[str, str | int]] = {
    ("2018.1", "2018.5"): {
        "tls.server": URL,
        "provision.provision_path": "",
        "uptane.primary_ecu_hardware_id": "rpi4",
        "uptane.polling_sec": 10,
        "pacman.type": "ostree",
        "storage.type": "filesystem",
        "storage.path": "/var/sota/",
        "storage.tls_cacert_path": "root.crt",  # default ca.pem until 2018.5
        "storage.tls_clientcert_path": "client.pem",
        "storage.tls_pkey_path": "pkey.pem",
    },
    ("2018.6", "2018.7"): {
        "tls.server": URL,
        "provision.provision_path": "",
        "provision.primary_ecu_hardware_id": "rpi4",
        "uptane.polling_sec": 10,
        "pacman.type": "ostree",
        "storage.type": "filesystem",
        "storage.path": "/var/sota/",
        "storage.tls_cacert_path": "root.crt",
        "storage.tls_clientcert_path": "client.pem",
        "storage.tls_pkey_path": "pkey.pem",
    },
}


@pytest.mark.parametrize(
    ("fmt", "table"), [("device-cred", DEVICE_CRED_READS), ("legacy-2018", LEGACY_READS)]
)
def test_keys_each_release_range_reads(
    tmp_path: Path,
    gen: dict[str, str],
    fmt: str,
    table: dict[tuple[str, str], dict[str, str | int]],
) -> None:
    folder, _ = make(tmp_path, gen, "d1", "--format", fmt, "--hardware-id", "rpi4")
    pt = Ptree(read_ini((folder / "sota.toml").read_text()))
    covered = set()
    for (first, last), reads in table.items():
        covered |= {t for t in TAGS if at_least(t, first) and at_least(last, t)}
        for key, want in reads.items():
            got = pt.integer(key) if isinstance(want, int) else pt.string(key)
            assert got == want, (first, last, key)
    assert sorted(covered, key=TAGS.index) == claimed(fmt)


def test_ini_reader_is_boosts() -> None:
    """The reader refuses what boost's read_ini refuses, and finds what aktualizr finds."""
    pt = Ptree(read_ini('; note\n[a]\n  k =  "x"y"  \nn = 7\nb = true\nx.y = 1\n[empty]\n'))
    assert pt.string("a.k") == "xy"  # every quote removed, the rest kept
    assert pt.path("a.k") is None  # a quoted path with trailing text does not convert
    assert pt.integer("a.n") == 7 and pt.integer("a.k") is None and pt.boolean("a.b") is True
    assert pt.string("a.x.y") is None and pt.string("a.unknown") is None
    assert "empty" not in pt.tree
    for bad in ("[a]\nk = 1\n[a]\n", "[a]\nk = 1\nk = 2\n", "# toml comment\n", "[a\n", "=1\n"):
        with pytest.raises(IniError):
            read_ini(bad)


# --- what new-device says ------------------------------------------------------------------


def test_warnings_and_alias(tmp_path: Path, gen: dict[str, str]) -> None:
    folder, err = make(tmp_path, gen, "old", "--format", "implicit")
    assert json.loads((folder / "info.json").read_bytes())["format"] == "legacy-2018"
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, err
    assert "'implicit' is the old name of 'legacy-2018' (aktualizr 2018.1 to 2018.7)" in err
    assert "must be built with OSTree (BUILD_OSTREE=ON" in err

    _, err = make(tmp_path, gen, "plain", "--set", "device.package_manager=none")
    assert "warning" not in err
    _, err = make(
        tmp_path,
        gen,
        "odd",
        "--set",
        "device.package_manager=none",
        "--set",
        "device.ostree_server=https://treehub.example.com",
    )
    assert err.count("warning: ") == 1 and "device.ostree_server is ignored" in err

    # A refused argument is one line, with no warning before it.
    bad = run_otactl(
        "new-device",
        "--no-register",
        "x",
        "--format",
        "implicit",
        "--uuid",
        "no",
        cwd=tmp_path,
        env=gen,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_help_states_the_releases_of_every_format(tmp_path: Path) -> None:
    out = run_otactl("new-device", "--help", cwd=tmp_path, env={"COLUMNS": "200"}, check=True)
    text = " ".join(out.stdout.replace("│", " ").split())  # rich's box, unwrapped
    for f in devices.FORMATS.values():
        assert f"{f.name}" in text and f"aktualizr {f.first} to {f.last or 'master'}" in text
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for f in devices.FORMATS.values():
        assert f"| `{f.name}` | {f.first} to {f.last or 'master'} |" in readme


# --- device keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        ([], ec.EllipticCurvePrivateKey),
        (["--set", "pki.key_type=rsa"], rsa.RSAPrivateKey),
        (
            ["--set", "pki.key_type=rsa", "--set", "pki.device_key_type=ec"],
            ec.EllipticCurvePrivateKey,
        ),
        (["--set", "pki.device_key_type=rsa"], rsa.RSAPrivateKey),
    ],
)
def test_device_key_type(tmp_path: Path, settings: list[str], kind: type) -> None:
    env = {"OTACTL_GENERATED": str(tmp_path / "gen")}
    run_otactl("new-server", *settings, cwd=tmp_path, env=env, check=True)
    folder, _ = make(tmp_path, env, "d1", *settings)
    pem = (folder / "pkey.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, whatever the type
    key = serialization.load_pem_private_key(pem, None)
    assert isinstance(key, kind)
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.key_size == 3072


# --- bad input ------------------------------------------------------------------------------


def test_csv_not_utf8_is_one_line(tmp_path: Path, gen: dict[str, str]) -> None:
    path = tmp_path / "devices.csv"
    # Latin-1 "é" at byte 14 (line 3), after two good rows: nothing is made.
    path.write_bytes(b"name\ncaf-1\ncaf\xe9-2\n")
    proc = run_otactl("new-device", "--no-register", "--from-csv", str(path), cwd=tmp_path, env=gen)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"error: {path}: not UTF-8 text: byte 0xe9 at offset 14 (line 3); save it as UTF-8\n"
    )
    assert not (tmp_path / "gen" / SERVER / "devices" / devices.MANIFEST).exists()

    # A byte order mark (Excel's "CSV UTF-8") and bare CR line ends are fine.
    path.write_bytes(b"\xef\xbb\xbfname,uuid\rb-1\rb-2,\r")
    out = run_otactl(
        "new-device", "--no-register", "--from-csv", str(path), "-o", "json", cwd=tmp_path, env=gen
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["created"] == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a1\nz\x00z\n", ":2: device name 'z\\x00z'"),
        (b"a1\n" + b'"' + b"x" * 200_000 + b'"\n', ":2: not CSV: field larger than field limit"),
        (b"a1\n\xff\xfe\n", "not UTF-8 text: byte 0xff at offset 3 (line 2)"),
        (b'name\n"unterminated\n', ":2: not CSV: unexpected end of data"),
        (b'a1\n"a"b\n', ":2: not CSV: ',' expected after '\"'"),
    ],
)
def test_csv_bad_input(tmp_path: Path, gen: dict[str, str], data: bytes, message: str) -> None:
    path = tmp_path / "devices.csv"
    path.write_bytes(data)
    proc = run_otactl("new-device", "--no-register", "--from-csv", str(path), cwd=tmp_path, env=gen)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


def test_corrupt_manifest_is_one_line(tmp_path: Path, gen: dict[str, str]) -> None:
    make(tmp_path, gen, "d1")
    manifest = tmp_path / "gen" / SERVER / "devices" / devices.MANIFEST
    kept = manifest.read_bytes()
    manifest.write_bytes(kept + b"{not json}\n")
    proc = run_otactl("new-device", "--no-register", "d2", cwd=tmp_path, env=gen)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{manifest}:2: not a manifest line" in proc.stderr
    assert manifest.read_bytes() == kept + b"{not json}\n"  # left for the user to fix


def test_bad_workers(tmp_path: Path, gen: dict[str, str]) -> None:
    proc = run_otactl(
        "new-device", "--no-register", "--count", "2", "--prefix", "w", "--workers", "0",
        cwd=tmp_path, env=gen,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # Not a process per requested worker: a typo must not fork the machine to death.
    proc = run_otactl(
        "new-device", "--no-register", "--count", "2", "--prefix", "w", "--workers", "100000",
        cwd=tmp_path, env=gen,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not (tmp_path / "gen" / SERVER / "devices" / devices.MANIFEST).exists()
