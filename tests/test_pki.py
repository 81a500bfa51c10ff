"""Server PKI: certificate profiles as openssl reads them, chains openssl verifies, CAs that
are never replaced, imported fleet CAs (with the CRLs their chain needs), revocation and
the expiry check."""

from __future__ import annotations

import datetime as dt
import json
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otactl import devices, pki
from otactl.config import load_values
from otactl.errors import ConfigError, PkiError
from tests.conftest import run_otactl

SERVER = "ota-ce.example.com"


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)}: {proc.stdout}{proc.stderr}")
    return proc


def verify_client(
    crl: str, ca: str, cert: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The gateway's own check of a device certificate: client purpose, a CRL for every
    level of the chain."""
    return openssl(
        "verify", "-purpose", "sslclient", "-crl_check_all", "-CRLfile", crl, "-CAfile", ca,
        cert, check=check,
    )  # fmt: skip


def x509_text(path: Path) -> str:
    return openssl("x509", "-in", str(path), "-noout", "-text").stdout


def make_server(tmp_path: Path, **kw: object) -> pki.ServerPki:
    settings = kw.pop("settings", pki.PkiSettings())
    return pki.ensure_server_pki(tmp_path / SERVER, SERVER, settings, **kw)  # type: ignore[arg-type]


def device_options(**update: object) -> devices.BundleOptions:
    values = load_values()
    return devices.BundleOptions(
        gateway_url=f"https://{SERVER}:30443",
        device=values.device.model_copy(update=update),
        days=values.pki.device_days,
    )


# --- profiles, seen by openssl -----------------------------------------------------------


def test_profiles_as_openssl_shows_them(tmp_path: Path) -> None:
    files = make_server(tmp_path, extra_dns_names=["gw.example.org"], extra_ips=["10.1.2.3"]).files

    ca = x509_text(files.server_ca)
    assert "Subject: CN = ota-server-CA" in ca
    assert "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0" in ca
    assert "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign" in ca
    assert (
        "X509v3 Extended Key Usage: critical\n                TLS Web Server Authentication" in ca
    )
    assert "NIST CURVE: P-256" in ca and "ecdsa-with-SHA256" in ca

    gw = x509_text(files.server_cert)
    assert "Subject: CN = ota-gateway" in gw and "Issuer: CN = ota-server-CA" in gw
    assert "CA:FALSE" in gw
    assert (
        "X509v3 Key Usage: critical\n"
        "                Digital Signature, Key Encipherment, Key Agreement"
    ) in gw
    assert (
        "X509v3 Extended Key Usage: critical\n                TLS Web Server Authentication" in gw
    )
    assert f"DNS:{SERVER}, DNS:gw.example.org, IP Address:10.1.2.3" in gw

    dca = x509_text(files.device_ca)
    assert "Subject: CN = ota-devices-CA" in dca and "CA:TRUE, pathlen:0" in dca
    assert (
        "X509v3 Extended Key Usage: critical\n                TLS Web Client Authentication" in dca
    )

    for text in (ca, gw, dca):
        assert "X509v3 Subject Key Identifier" in text
        assert "X509v3 Authority Key Identifier" in text

    # SKI of each CA is the AKI of what it signs.
    server_ca = pki.load_certs(files.server_ca)[0]
    gateway = pki.load_certs(files.server_cert)[0]
    ski = server_ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = gateway.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_device_certificate_profile(tmp_path: Path) -> None:
    root = tmp_path / SERVER
    make_server(tmp_path)
    info = devices.new_device(root, devices.DeviceSpec("dev-1"), device_options())
    text = x509_text(info.path / "client.pem")
    assert f"Subject: CN = {info.uuid}" in text and "Issuer: CN = ota-devices-CA" in text
    assert "X509v3 Key Usage: critical\n                Digital Signature\n" in text
    assert (
        "X509v3 Extended Key Usage: critical\n                TLS Web Client Authentication" in text
    )
    assert "CA:FALSE" in text and "X509v3 Authority Key Identifier" in text
    assert info.uuid == info.uuid.lower()


def test_chains_verify_with_openssl(tmp_path: Path) -> None:
    files = make_server(tmp_path).files
    info = devices.new_device(files.root, devices.DeviceSpec("dev-1"), device_options())
    ok = openssl(
        "verify", "-purpose", "sslserver", "-CAfile", str(files.server_ca), str(files.server_cert)
    )
    assert ": OK" in ok.stdout
    # The chain file nginx serves: leaf then CA, and the CA verifies the leaf in it.
    chain = pki.load_certs(files.server_chain)
    assert [pki.common_name(c) for c in chain] == ["ota-gateway", "ota-server-CA"]
    # Device: the gateway's own check (client purpose, CRL of every level of the chain).
    ok = verify_client(str(files.crl), str(files.device_ca), str(info.path / "client.pem"))
    assert ": OK" in ok.stdout
    # The bundle's root.crt is the server CA: what the device trusts the gateway with.
    assert (info.path / "root.crt").read_bytes() == files.server_ca.read_bytes()
    # A gateway certificate does not pass as a client, a device certificate not as a server.
    bad = openssl(
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        str(files.server_ca),
        str(files.server_cert),
        check=False,
    )
    assert bad.returncode != 0


def test_random_serials_and_lifetimes(tmp_path: Path) -> None:
    settings = pki.PkiSettings(ca_days=100, server_days=20, device_days=5)
    now = dt.datetime.now(dt.UTC)
    a = make_server(tmp_path / "a", settings=settings).files
    b = make_server(tmp_path / "b", settings=settings).files
    ca_a, ca_b = pki.load_certs(a.server_ca)[0], pki.load_certs(b.server_ca)[0]
    assert ca_a.serial_number != ca_b.serial_number
    assert ca_a.serial_number.bit_length() > 64
    assert ca_a.not_valid_after_utc.tzinfo is not None
    assert abs((ca_a.not_valid_after_utc - now) - dt.timedelta(days=100)) < dt.timedelta(minutes=1)
    gw = pki.load_certs(a.server_cert)[0]
    assert abs((gw.not_valid_after_utc - now) - dt.timedelta(days=20)) < dt.timedelta(minutes=1)
    # Backdated a little for clock skew, never by much.
    assert dt.timedelta(0) < now - gw.not_valid_before_utc < dt.timedelta(minutes=10)


def test_rsa_option(tmp_path: Path) -> None:
    files = make_server(tmp_path, settings=pki.PkiSettings(key_type="rsa")).files
    assert "Public-Key: (3072 bit)" in x509_text(files.server_ca)
    assert "Public-Key: (3072 bit)" in x509_text(files.server_cert)
    assert "sha256WithRSAEncryption" in x509_text(files.device_ca)


# --- files: modes, idempotence, never overwriting a CA -----------------------------------


def test_modes(tmp_path: Path) -> None:
    files = make_server(tmp_path).files
    for key in (files.server_ca_key, files.server_key, files.device_ca_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert b"BEGIN PRIVATE KEY" in key.read_bytes()  # PKCS#8
    for folder in (files.root, files.devices):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert not list(files.root.rglob(".*.tmp")), "atomic writes left temp files"


def test_new_server_twice_keeps_everything(tmp_path: Path) -> None:
    files = make_server(tmp_path).files
    before = {p: p.read_bytes() for p in files.root.rglob("*") if p.is_file()}
    again = make_server(tmp_path)
    assert again.created == []
    assert {p: p.read_bytes() for p in files.root.rglob("*") if p.is_file()} == before


def test_renew_server_cert_keeps_the_cas(tmp_path: Path) -> None:
    files = make_server(tmp_path).files
    ca_bytes = {
        p: p.read_bytes()
        for p in (files.server_ca, files.server_ca_key, files.device_ca, files.device_ca_key)
    }
    old = files.server_cert.read_bytes()
    note = make_server(tmp_path, extra_dns_names=["new.example.org"])
    assert note.created == [] and "new.example.org" in note.notes[0]
    renewed = make_server(tmp_path, extra_dns_names=["new.example.org"], renew_server_cert=True)
    assert renewed.created == ["gateway certificate (renewed)"]
    assert files.server_cert.read_bytes() != old
    assert "DNS:new.example.org" in x509_text(files.server_cert)
    assert {p: p.read_bytes() for p in ca_bytes} == ca_bytes
    assert files.server_chain.read_bytes().startswith(files.server_cert.read_bytes())
    assert (
        openssl("verify", "-CAfile", str(files.server_ca), str(files.server_cert)).returncode == 0
    )


def test_half_a_ca_is_refused(tmp_path: Path) -> None:
    files = make_server(tmp_path).files
    files.server_ca_key.unlink()
    cert = files.server_ca.read_bytes()
    with pytest.raises(PkiError, match=r"ca\.key is missing"):
        make_server(tmp_path)
    assert files.server_ca.read_bytes() == cert
    assert not files.server_ca_key.exists()


# --- bring your own device CA ------------------------------------------------------------


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, object] | None,
    *,
    ca: bool,
    days: int = 30,
) -> x509.Certificate:
    """A certificate made the way another tool would (here: an offline root's)."""
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())  # type: ignore[arg-type]


def _crl(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, days: float) -> bytes:
    now = dt.datetime.now(dt.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(now - dt.timedelta(days=2))
        .next_update(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM)


def _pem(*certs: x509.Certificate) -> bytes:
    return pki.cert_pem(*certs)


@pytest.fixture
def fleet_ca(tmp_path: Path) -> dict[str, Path]:
    """An offline root, an intermediate fleet CA under it, and the root's CRL."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("Fleet Root", root_key, None, ca=True)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _cert("Fleet Devices 2026", inter_key, (root, root_key), ca=True)
    d = tmp_path / "fleet"
    d.mkdir()
    paths = {
        "chain": d / "inter-chain.pem",
        "inter_only": d / "inter.pem",
        "key": d / "inter.key",
        "root_crl": d / "root-crl.pem",
        "stale_crl": d / "stale-crl.pem",
        "root": d / "root.pem",
    }
    paths["chain"].write_bytes(_pem(inter, root))
    paths["inter_only"].write_bytes(_pem(inter))
    paths["root"].write_bytes(_pem(root))
    paths["key"].write_bytes(pki.key_pem(inter_key))
    paths["root_crl"].write_bytes(_crl(root, root_key, 30))
    paths["stale_crl"].write_bytes(_crl(root, root_key, -1))
    paths["next_root_crl"] = d / "root-crl-next.pem"
    paths["next_root_crl"].write_bytes(_crl(root, root_key, 60))
    return paths


def test_import_intermediate_fleet_ca(tmp_path: Path, fleet_ca: dict[str, Path]) -> None:
    result = make_server(
        tmp_path,
        device_ca_cert=fleet_ca["chain"],
        device_ca_key=fleet_ca["key"],
        device_ca_crl=fleet_ca["root_crl"],
    )
    files = result.files
    assert "device CA (imported)" in result.created
    # The chain is kept: intermediate first, then the root (nginx's trust anchor).
    assert [pki.common_name(c) for c in pki.load_certs(files.device_ca)] == [
        "Fleet Devices 2026",
        "Fleet Root",
    ]
    # crl.pem: our CRL of the intermediate, plus the root's CRL as handed in.
    crl_text = openssl("crl", "-in", str(files.crl), "-noout", "-issuer").stdout
    assert "Fleet Devices 2026" in crl_text
    assert b"".join(fleet_ca["root_crl"].read_bytes().split()) in b"".join(
        files.crl.read_bytes().split()
    )
    info = devices.new_device(files.root, devices.DeviceSpec("d1"), device_options())
    # The device sends its certificate and the intermediate; the root stays out.
    chain = pki.load_certs(info.path / "client.chain.pem")
    assert [pki.common_name(c) for c in chain] == [info.uuid, "Fleet Devices 2026"]
    ok = verify_client(str(files.crl), str(files.device_ca), str(info.path / "client.pem"))
    assert ": OK" in ok.stdout
    # Without the root's CRL the same check fails: why the import requires it.
    ours_only = tmp_path / "ours-only.pem"
    ours_only.write_bytes(pki.crl_pem(pki.load_crls(files.crl)[0]))
    bad = verify_client(
        str(ours_only), str(files.device_ca), str(info.path / "client.pem"), check=False
    )
    assert bad.returncode != 0 and "unable to get certificate CRL" in bad.stdout + bad.stderr
    # Revocation still works with the imported CA, and keeps the root's CRL in the file.
    devices.revoke_device(files.root, "d1")
    assert len(pki.load_crls(files.crl)) == 2
    bad = verify_client(
        str(files.crl), str(files.device_ca), str(info.path / "client.pem"), check=False
    )
    assert "certificate revoked" in bad.stdout + bad.stderr


def test_import_refusals(tmp_path: Path, fleet_ca: dict[str, Path]) -> None:
    kw = {"device_ca_cert": fleet_ca["chain"], "device_ca_key": fleet_ca["key"]}
    with pytest.raises(PkiError, match="needs --device-ca-crl"):
        make_server(tmp_path / "a", **kw)
    with pytest.raises(PkiError, match="expired"):
        make_server(tmp_path / "b", **kw, device_ca_crl=fleet_ca["stale_crl"])
    with pytest.raises(PkiError, match="not a self-signed root"):
        make_server(
            tmp_path / "c",
            device_ca_cert=fleet_ca["inter_only"],
            device_ca_key=fleet_ca["key"],
            device_ca_crl=fleet_ca["root_crl"],
        )
    with pytest.raises(PkiError, match="does not belong"):
        make_server(tmp_path / "d", device_ca_cert=fleet_ca["root"], device_ca_key=fleet_ca["key"])
    with pytest.raises(ConfigError, match="go together"):
        make_server(tmp_path / "e", device_ca_cert=fleet_ca["chain"])
    # An existing device CA is never replaced by an import.
    files = make_server(tmp_path / "f").files
    before = files.device_ca.read_bytes()
    with pytest.raises(PkiError, match="refusing to replace"):
        make_server(tmp_path / "f", **kw, device_ca_crl=fleet_ca["root_crl"])
    assert files.device_ca.read_bytes() == before


def test_import_self_signed_fleet_ca(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Fleet CA", key, None, ca=True)
    (tmp_path / "ca.pem").write_bytes(_pem(ca))
    (tmp_path / "ca.key").write_bytes(pki.key_pem(key))
    files = make_server(
        tmp_path, device_ca_cert=tmp_path / "ca.pem", device_ca_key=tmp_path / "ca.key"
    ).files
    info = devices.new_device(files.root, devices.DeviceSpec("d1"), device_options())
    ok = verify_client(str(files.crl), str(files.device_ca), str(info.path / "client.pem"))
    assert ": OK" in ok.stdout
    # Re-running with the same import is a no-op.
    assert (
        make_server(
            tmp_path, device_ca_cert=tmp_path / "ca.pem", device_ca_key=tmp_path / "ca.key"
        ).created
        == []
    )


# --- revocation and expiry ---------------------------------------------------------------


def test_revoke_by_name_and_uuid(tmp_path: Path) -> None:
    files = make_server(tmp_path).files
    a = devices.new_device(files.root, devices.DeviceSpec("a"), device_options())
    b = devices.new_device(files.root, devices.DeviceSpec("b"), device_options())
    _, rev = devices.revoke_device(files.root, "a")
    assert not rev.already and format(rev.serial, "x") == a.serial
    _, again = devices.revoke_device(files.root, a.uuid)
    assert again.already
    text = openssl("crl", "-in", str(files.crl), "-noout", "-text").stdout
    padded = a.serial.upper().zfill(len(a.serial) + len(a.serial) % 2)  # openssl: whole bytes
    assert f"Serial Number: {padded}" in text
    assert (
        openssl("crl", "-in", str(files.crl), "-CAfile", str(files.device_ca), "-noout").returncode
        == 0
    )
    bad = openssl(
        "verify",
        "-crl_check",
        "-CRLfile",
        str(files.crl),
        "-CAfile",
        str(files.device_ca),
        str(a.path / "client.pem"),
        check=False,
    )
    assert "certificate revoked" in bad.stdout + bad.stderr
    ok = openssl(
        "verify",
        "-crl_check",
        "-CRLfile",
        str(files.crl),
        "-CAfile",
        str(files.device_ca),
        str(b.path / "client.pem"),
    )
    assert ": OK" in ok.stdout
    assert pki.revoked_serials(files) == {int(a.serial, 16)}
    with pytest.raises(ConfigError, match="no device named"):
        devices.revoke_device(files.root, "nobody")


def test_certs_check_cli(tmp_path: Path) -> None:
    env = {"OTACTL_GENERATED": str(tmp_path / "gen")}
    run_otactl("new-server", cwd=tmp_path, env=env, check=True)
    run_otactl("new-device", "d1", "--no-register", cwd=tmp_path, env=env, check=True)
    run_otactl("new-device", "d2", "--no-register", cwd=tmp_path, env=env, check=True)
    run_otactl("revoke-device", "d2", cwd=tmp_path, env=env, check=True)

    ok = run_otactl("certs", "check", "--within", "30d", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    header, *lines = ok.stdout.splitlines()
    assert header.split() == ["EXPIRES", "DAYS", "KIND", "SUBJECT", "NAME", "STATE"]
    kinds = [line.split()[3] for line in lines]
    assert sorted(kinds) == sorted(["server-ca", "gateway", "device-ca", "crl", "device", "device"])
    d2 = next(line for line in lines if " d2 " in line)
    assert d2.split()[-1] == "revoked"

    # Device certificates last 365 days: a 400-day window catches d1 (d2 is revoked).
    soon = run_otactl("certs", "check", "--within", "400d", "-o", "json", cwd=tmp_path, env=env)
    assert soon.returncode == 1
    report = json.loads(soon.stdout)
    assert report["expiring"] == 1
    expiring = [c for c in report["certificates"] if c["days_left"] <= 400 and not c["revoked"]]
    assert [c["name"] for c in expiring] == ["d1"]
    assert "1 expire within 400d" in soon.stderr

    bad = run_otactl("certs", "check", "--within", "soon", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --within soon")


def test_new_server_cli(tmp_path: Path) -> None:
    env = {"OTACTL_GENERATED": str(tmp_path / "gen")}
    first = run_otactl("new-server", "-o", "json", cwd=tmp_path, env=env, check=True)
    assert json.loads(first.stdout)["created"] == [
        "server CA",
        "gateway certificate",
        "device CA",
        "device CRL",
    ]
    root = tmp_path / "gen" / SERVER
    ca = (root / "server_ca.pem").read_bytes(), (root / "devices" / "ca.key").read_bytes()
    second = run_otactl("new-server", cwd=tmp_path, env=env, check=True)
    assert "nothing to do" in second.stderr
    assert ((root / "server_ca.pem").read_bytes(), (root / "devices" / "ca.key").read_bytes()) == ca
    renew = run_otactl(
        "new-server",
        "--renew-server-cert",
        "--set",
        "gateway.extra_ips=[127.0.0.1]",
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert "gateway certificate (renewed)" in renew.stderr
    assert "IP Address:127.0.0.1" in x509_text(root / "server.crt")
    assert (root / "server_ca.pem").read_bytes() == ca[0]
    half = run_otactl(
        "new-server", "--device-ca-cert", str(root / "server_ca.pem"), cwd=tmp_path, env=env
    )
    assert half.returncode == 2
    assert half.stderr.count("\n") == 1 and half.stderr.startswith("error: ")


def test_refresh_the_roots_crl(tmp_path: Path, fleet_ca: dict[str, Path]) -> None:
    """The offline root's CRL expires: a fresh one replaces it; our own CRL is kept."""
    files = make_server(
        tmp_path,
        device_ca_cert=fleet_ca["chain"],
        device_ca_key=fleet_ca["key"],
        device_ca_crl=fleet_ca["root_crl"],
    ).files
    devices.new_device(files.root, devices.DeviceSpec("d1"), device_options())
    devices.revoke_device(files.root, "d1")
    own = pki.load_crls(files.crl)[0]
    with pytest.raises(PkiError, match="expired"):
        make_server(tmp_path, device_ca_crl=fleet_ca["stale_crl"])
    result = make_server(tmp_path, device_ca_crl=fleet_ca["next_root_crl"])
    assert result.created == ["upstream CRL (refreshed)"]
    ours, root = pki.load_crls(files.crl)
    assert ours == own
    assert root == pki.load_crls(fleet_ca["next_root_crl"])[0]
    # A self-signed device CA has nothing above it to refresh; a new server nothing at all.
    with pytest.raises(ConfigError, match="needs --device-ca-cert"):
        make_server(tmp_path / "own", device_ca_crl=fleet_ca["next_root_crl"])
    assert not (tmp_path / "own").exists()  # refused before anything was made
    make_server(tmp_path / "own")
    with pytest.raises(ConfigError, match="self-signed"):
        make_server(tmp_path / "own", device_ca_crl=fleet_ca["next_root_crl"])


def test_gateway_certificate_also_names_the_reverse_proxy_hosts(tmp_path: Path):
    # The reverse proxy serves TLS with the same certificate: its public names are SANs,
    # and `new-server` and `up` issue the same set (one function computes it).
    proc = run_otactl("--generated", str(tmp_path), "new-server", "--set", "domain=fleet.test")
    assert proc.returncode == 0, proc.stderr
    cert = x509.load_pem_x509_certificate(
        (tmp_path / "ota-ce.example.com" / "server.crt").read_bytes()
    )
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(names.get_values_for_type(x509.DNSName))
    assert dns == {
        "ota-ce.example.com",
        "app.fleet.test",
        "tuf-reposerver.fleet.test",
        "treehub.fleet.test",
        "web-events.fleet.test",
    }
