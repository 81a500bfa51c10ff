"""Credentials phase: each status of each call handled for what it means (fake services;
tests/integration/test_services.py runs the same plan against the stand-in)."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
from service_fakes import FakeClock, apiserver, no_endpoints, script, service

from otactl import credentials
from otactl.credentials import ClientTls, PublicUrls
from otactl.errors import ServiceAuthRefused, ServiceError, WaitTimeout

REPO = "6a3f2bd8-5b4e-4bd4-9a44-52d0d1c7a0e1"


def ed25519_pair() -> tuple[str, str]:
    """An ED25519 pair as ota-tuf encodes it (TufCrypto.scala): the public key's 32 bytes
    in hex; the private key: seed, then public key, in hex."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    seed, pub = key.private_bytes_raw(), key.public_key().public_bytes_raw()
    return pub.hex(), (seed + pub).hex()


def rsa_pair(bits: int = 2048, fmt: str = "TraditionalOpenSSL") -> tuple[str, str]:
    """An RSA pair as ota-tuf encodes it: PEM SubjectPublicKeyInfo, PKCS#1 private PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        getattr(serialization.PrivateFormat, fmt),
        serialization.NoEncryption(),
    )
    return public.decode(), private.decode()


PUB, PRIV = ed25519_pair()
ROOT = {
    "signed": {
        "_type": "root",
        "keys": {"k-root": {"keytype": "ed25519", "keyval": {"public": "ef" * 32}},
                 "k-targets": {"keytype": "ed25519", "keyval": {"public": PUB}}},
        "roles": {"root": {"keyids": ["k-root"], "threshold": 1},
                  "targets": {"keyids": ["k-targets"], "threshold": 1}},
    },
    "signatures": [{"keyid": "k-root", "sig": "00"}],
}  # fmt: skip
ROOT_BYTES = json.dumps(ROOT).encode()
PAIRS = [{"keytype": "ED25519", "keyval": {"public": PUB, "private": PRIV}}]
URLS = PublicUrls.for_domain("example.com", "https://ota-ce.example.com:30443")
TLS = ClientTls("default", b"client p12", b"server p12")

USER_REPO = ("POST", "tuf-reposerver", "/api/v1/user_repo")
USER_ROOT = ("GET", "tuf-reposerver", "/api/v1/user_repo/root.json")
DIR_ROOT = ("GET", "director", "/api/v1/admin/repo/root.json")
DIR_REPO = ("POST", "director", "/api/v1/admin/repo")
KEY_ROOT = ("GET", "tuf-keyserver", f"/api/v1/root/{REPO}")
KEY_PAIRS = ("GET", "tuf-keyserver", f"/api/v1/root/{REPO}/keys/targets/pairs")


def root_ok() -> object:
    return service(200, ROOT_BYTES, {"X-ATS-TUF-Repo-Id": REPO})


def fresh() -> dict[tuple[str, str, str], list[object]]:
    """Answers of services that have nothing yet (keys ready at once)."""
    return {
        USER_REPO: [service(200, REPO)],
        USER_ROOT: [root_ok()],
        DIR_ROOT: [service(404, {"code": "missing_entity"}), service(200, ROOT)],
        DIR_REPO: [service(201)],
        KEY_ROOT: [service(200, ROOT)],
        KEY_PAIRS: [service(200, PAIRS)],
    }


def run(answers: dict, timeout: float = 60, tenant: str = "default") -> tuple:
    caller = script(*((*k, v) for k, v in answers.items()))
    clock = FakeClock()
    progress: list[str] = []
    keys = credentials.fetch_repo_keys(
        caller, tenant, timeout=timeout, progress=progress.append,
        deadline=clock.deadline(timeout),
    )  # fmt: skip
    return keys, caller, progress, clock


def test_from_nothing_creates_both_repos_and_reads_the_pair() -> None:
    answers = fresh()
    answers[USER_ROOT] = [service(423, {"code": "keys_pending"})] * 2 + [root_ok()]
    answers[KEY_ROOT] = [service(423, {"code": "keys_pending"}), service(200, ROOT)]
    # Not "default", which the services assume when the header is missing (libats).
    keys, caller, progress, clock = run(answers, tenant="fleet-b")
    assert keys.repo_id == REPO
    assert (keys.public, keys.private, keys.keytype) == (PUB, PRIV, "ED25519")
    assert keys.user_repo_created and keys.director_repo_created
    # Director: looked before creating; created once.
    assert caller.paths().count(DIR_REPO) == 1
    assert caller.paths().index(DIR_ROOT) < caller.paths().index(DIR_REPO)
    # Every call names the tenant.
    assert all(h and h["x-ats-namespace"] == "fleet-b" for *_, h in caller.calls)
    # Two 423s from the reposerver (the same line, shown once), one from the keyserver.
    assert sum("keys are still being generated" in p for p in progress) == 2
    assert clock.slept and all(s <= 3.0 for s in clock.slept)


def test_second_run_409_is_fine_and_director_not_posted() -> None:
    answers = fresh()
    answers[USER_REPO] = [service(409, {"code": "conflicting_entity"})]
    answers[DIR_ROOT] = [service(200, ROOT)]
    keys, caller, _, _ = run(answers)
    assert keys.repo_id == REPO and not keys.user_repo_created
    assert not keys.director_repo_created
    assert DIR_REPO not in caller.paths()


@pytest.mark.parametrize(
    ("key", "answer", "expect"),
    [
        (USER_REPO, service(400, {"code": "invalid_entity", "description": "bad"}), "HTTP 400"),
        # 409 is fine for POST user_repo only.
        (USER_ROOT, service(409, {"code": "conflicting_entity"}), "HTTP 409"),
        (KEY_ROOT, service(404, {"code": "missing_entity"}), "HTTP 404"),
        (DIR_REPO, service(400, {"code": "invalid"}), "HTTP 400"),
        (USER_REPO, apiserver(404, 'services "tuf-reposerver" not found', "NotFound"),
         "Service tuf-reposerver not found"),
    ],
)  # fmt: skip
def test_unexpected_answers_stop_with_the_call_and_reason(
    key: tuple, answer: object, expect: str
) -> None:
    answers = fresh()
    answers[key] = [answer]
    with pytest.raises(ServiceError) as e:
        run(answers)
    msg = str(e.value)
    assert f"{key[1]}: {key[0]} {key[2]}" in msg and expect in msg
    assert "\n" not in msg and e.value.exit_code == 8


def test_root_missing_after_create_is_an_error() -> None:
    answers = fresh()
    answers[USER_ROOT] = [service(404, {"code": "missing_entity"})]
    with pytest.raises(ServiceError, match="no repo for tenant 'default' although POST"):
        run(answers)


def test_repo_id_from_post_and_header_must_agree() -> None:
    answers = fresh()
    answers[USER_REPO] = [service(200, "00000000-0000-4000-8000-000000000000")]
    with pytest.raises(ServiceError, match="created repo 00000000"):
        run(answers)
    answers = fresh()
    answers[USER_ROOT] = [service(200, ROOT_BYTES)]
    with pytest.raises(ServiceError, match="without the x-ats-tuf-repo-id header"):
        run(answers)


def test_no_endpoints_and_5xx_are_retried_and_explained() -> None:
    answers = fresh()
    answers[USER_REPO] = [
        no_endpoints("tuf-reposerver"),
        apiserver(503, "error trying to reach service: dial tcp 10.244.0.5:9001: connect: "
                       "connection refused"),
        service(503, {"code": "service_unavailable", "description": "starting"}),
        service(200, REPO),
    ]  # fmt: skip
    keys, _, progress, _ = run(answers)
    assert keys.repo_id == REPO
    assert "no ready endpoints for service tuf-reposerver" in progress[0]
    assert "the API server could not reach tuf-reposerver" in progress[1]
    assert "tuf-reposerver answered HTTP 503 service_unavailable: starting" in progress[2]


def test_keys_pending_forever_times_out_with_the_reason() -> None:
    answers = fresh()
    answers[USER_ROOT] = [service(423, {"code": "keys_pending"})]
    with pytest.raises(WaitTimeout) as e:
        run(answers, timeout=20)
    assert "gave up after 20s" in str(e.value)
    assert "keys are still being generated (tuf-reposerver answered 423)" in str(e.value)


def test_director_409_after_404_is_checked_again() -> None:
    answers = fresh()
    answers[DIR_ROOT] = [service(404, {}), service(200, ROOT)]
    answers[DIR_REPO] = [service(409, {"code": "conflicting_entity"})]
    keys, caller, _, _ = run(answers)
    assert not keys.director_repo_created and caller.paths().count(DIR_ROOT) == 2
    answers[DIR_ROOT] = [service(404, {})]
    answers[DIR_REPO] = [service(409, {})]
    with pytest.raises(
        ServiceError, match=r"409 but GET /api/v1/admin/repo/root\.json answers 404"
    ):
        run(answers)


def test_pair_must_be_the_roots_targets_key_and_is_never_quoted() -> None:
    answers = fresh()
    other = [{"keytype": "ED25519", "keyval": {"public": "99" * 32, "private": PRIV}}]
    answers[KEY_PAIRS] = [service(200, other)]
    with pytest.raises(ServiceError, match=r"is the targets key in root\.json") as e:
        run(answers)
    assert PRIV not in str(e.value)
    answers[KEY_PAIRS] = [service(200, {"keyval": PRIV})]
    with pytest.raises(ServiceError) as e:
        run(answers)
    assert str(e.value) == (
        f"tuf-keyserver: GET /api/v1/root/{REPO}/keys/targets/pairs: not a list of key pairs, "
        "or root.json names no targets key"
    )
    assert PRIV not in str(e.value)


def test_zip_is_flat_private_deterministic_and_names_https_urls(tmp_path: Path) -> None:
    keys, *_ = run(fresh())
    out = tmp_path / "credentials.zip"
    data = credentials.build_zip(keys, URLS, b"CA PEM\n", TLS)
    assert credentials.write_if_changed(out, data)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    mtime = out.stat().st_mtime_ns
    # Same inputs: same bytes, and the file is not touched.
    assert credentials.build_zip(keys, URLS, b"CA PEM\n", TLS) == data
    assert not credentials.write_if_changed(out, data)
    assert out.stat().st_mtime_ns == mtime
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert sorted(names) == sorted(
            ["autoprov.url", "server_ca.pem", "tufrepo.url", "targets.pub", "targets.sec",
             "treehub.json", "root.json", "client_auth.p12", "server.p12"]
        )  # fmt: skip
        assert {i.date_time for i in zf.infolist()} == {credentials.ZIP_DATE}
        assert {i.external_attr >> 16 for i in zf.infolist()} == {0o100600}
        assert zf.read("autoprov.url") == b"https://ota-ce.example.com:30443\n"
        assert zf.read("tufrepo.url") == b"https://tuf-reposerver.example.com\n"
        assert json.loads(zf.read("targets.pub")) == {
            "keytype": "ED25519",
            "keyval": {"public": PUB},
        }
        assert json.loads(zf.read("targets.sec")) == {
            "keytype": "ED25519",
            "keyval": {"private": PRIV},
        }
        assert json.loads(zf.read("treehub.json")) == {
            "no_auth": True,
            "ostree": {"server": "https://treehub.example.com/api/v3/"},
        }
        assert zf.read("root.json") == ROOT_BYTES
        assert zf.read("server_ca.pem") == b"CA PEM\n"
        assert zf.read("client_auth.p12") == b"client p12"
        assert zf.read("server.p12") == b"server p12"


def test_urls_carry_the_exposed_port() -> None:
    urls = PublicUrls.for_domain("example.com", "https://gw:30443", 30444)
    assert urls.tuf_reposerver == "https://tuf-reposerver.example.com:30444"
    assert urls.treehub == "https://treehub.example.com:30444"


def test_user_keys_secret_data() -> None:
    keys, *_ = run(fresh())
    data = credentials.user_keys_secret(keys)
    assert set(data) == {"repo_id", "root.json", "targets.pub", "targets.sec"}
    assert data["repo_id"] == REPO.encode() and data["root.json"] == ROOT_BYTES


def test_for_values_needs_the_server_ca_and_issues_the_default_client(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    from otactl.config import load_values
    from otactl.errors import PkiError
    from otactl.pki import BuildToolsFiles, PkiSettings, common_name, ensure_server_pki

    values = load_values()
    server_dir = tmp_path / values.server_name
    caller = script(*((*k, v) for k, v in fresh().items()))
    with pytest.raises(PkiError, match=r"server_ca\.pem is missing"):
        credentials.credentials_for_values(caller, values, server_dir, "https://gw:8443")
    assert caller.calls == []
    ensure_server_pki(server_dir, values.server_name, PkiSettings())
    made = credentials.credentials_for_values(caller, values, server_dir, "https://gw:8443")
    assert made.path == server_dir / "credentials.zip"
    assert (made.client, made.client_issued) == ("default", True)
    with zipfile.ZipFile(made.path) as zf:
        assert zf.read("server_ca.pem") == (server_dir / "server_ca.pem").read_bytes()
        _, cert, _ = pkcs12.load_key_and_certificates(zf.read("client_auth.p12"), None)
        assert cert is not None and common_name(cert) == "default"
    # Kept on the next run: the same bytes.
    again = credentials.credentials_for_values(caller, values, server_dir, "https://gw:8443")
    assert (again.changed, again.client_issued) == (False, False)

    # Another CI pipeline: its own certificate and zip; the default one is untouched.
    ci = credentials.credentials_for_values(
        caller, values, server_dir, "https://gw:8443", client="pipeline-a"
    )
    assert ci.path == server_dir / "credentials-pipeline-a.zip" and ci.client_issued
    files = BuildToolsFiles.of(server_dir)
    assert files.client_cert("pipeline-a").exists() and files.client_cert("default").exists()
    assert stat.S_IMODE(files.client_key("pipeline-a").stat().st_mode) == 0o600
    assert stat.S_IMODE(files.root.stat().st_mode) == 0o700


def test_revoke_credentials_cli_and_a_new_certificate_after_revocation(tmp_path: Path) -> None:
    from conftest import run_otactl

    from otactl.config import load_values
    from otactl.errors import PkiError
    from otactl.pki import (
        BuildToolsFiles,
        PkiSettings,
        cert_pem,
        ensure_build_tools_client,
        load_crls,
    )

    values = load_values()
    server_dir = tmp_path / values.server_name
    gen = ["--generated", str(tmp_path)]
    missing = run_otactl(*gen, "revoke-credentials", "pipeline-a")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: no build-tools client 'pipeline-a'")
    bad = run_otactl(*gen, "credentials", "--new-client", "../x")
    assert (bad.returncode, bad.stderr.count("\n")) == (2, 1)
    assert bad.stderr.startswith("error: client name '../x'")

    first = ensure_build_tools_client(server_dir, "pipeline-a", PkiSettings())
    done = run_otactl(*gen, "revoke-credentials", "pipeline-a", "-o", "json", check=True)
    assert json.loads(done.stdout)["serial"] == format(first.cert.serial_number, "x")
    again = run_otactl(*gen, "revoke-credentials", "pipeline-a", "-o", "json", check=True)
    assert json.loads(again.stdout)["already"] is True
    files = BuildToolsFiles.of(server_dir)
    (crl,) = load_crls(files.crl)
    assert [e.serial_number for e in crl] == [first.cert.serial_number]
    assert crl.is_signature_valid(first.ca.cert.public_key())  # type: ignore[arg-type]
    # certs check lists the build-tools CA, its CRL and the client, flagged as revoked.
    listed = run_otactl(*gen, "certs", "check", "-o", "json")
    kinds = {
        (c["kind"], c["name"], c["revoked"]) for c in json.loads(listed.stdout)["certificates"]
    }
    assert {("build-tools-ca", None, False), ("build-tools-crl", None, False),
            ("build-tools", "pipeline-a", True)} <= kinds  # fmt: skip
    # The next --new-client with that name gets a fresh certificate and key.
    second = ensure_build_tools_client(server_dir, "pipeline-a", PkiSettings())
    assert second.issued and second.cert.serial_number != first.cert.serial_number
    assert second.key.public_key() != first.key.public_key()
    # A CA that lost its key is never replaced by a new one.
    files.ca_key.unlink()
    with pytest.raises(
        PkiError, match=r"build-tools CA: .*ca\.crt exists but .*ca\.key is missing"
    ):
        ensure_build_tools_client(server_dir, "pipeline-b", PkiSettings())
    assert files.ca.read_bytes() == cert_pem(first.ca.cert)


# --------------------------------------------------------------------------- issue 9


def test_a_services_own_401_or_403_is_a_configuration_error_at_once() -> None:
    # libats-auth without a token: AuthorizationFailedRejection, akka's default text.
    refused = service(403, b"The supplied authentication is not authorized to access this resource")
    for key, status in ((USER_REPO, 403), (KEY_PAIRS, 401)):
        answers = fresh()
        answers[key] = [service(status, refused.body)]
        with pytest.raises(ServiceAuthRefused) as e:
            run(answers)
        msg = str(e.value)
        assert msg.startswith(f"{key[1]}: {key[0]} {key[2]}: refused with {status}: ")
        assert "a configuration error" in msg and "AUTH_PROTOCOL is not set" in msg
        assert "\n" not in msg and e.value.exit_code == 5
    # The API server's own 403 (RBAC) is not the service's: kube raises it, exit 6.


# ota-tuf 1d0d714 keyserver http/Errors.scala KeyGenerationFailed: 500, the ERROR
# requests' descriptions ("<exception class>|<message>") by key generation request id.
KEYGEN_FAILED = {
    "code": "key_generation_failed",
    "description": "Could not generate keys",
    "cause": {
        "c0ffee00-0000-4000-8000-000000000001": "SlickCryptoError|invalid password length",
        "c0ffee00-0000-4000-8000-000000000002": "SlickCryptoError|invalid password length",
    },
    "errorId": "c0ffee00-0000-4000-8000-00000000000f",
}
# ...and through the reposerver: 502 with the keyserver's error as cause (libats e12f057
# ServiceHttpClient, ErrorHandler.onRemoteServiceError).
KEYGEN_FAILED_502 = {
    "code": "key_generation_failed",
    "description": "KeyserverHttpClient|Unexpected response from remote server at "
    f"http://tuf-keyserver:80/api/v1/root/{REPO}|GET|500|Could not generate keys",
    "cause": KEYGEN_FAILED,
    "errorId": "c0ffee00-0000-4000-8000-00000000001f",
}


@pytest.mark.parametrize(
    ("key", "answer"),
    [(USER_ROOT, service(502, KEYGEN_FAILED_502)), (KEY_ROOT, service(500, KEYGEN_FAILED))],
)
def test_key_generation_failed_fails_fast_with_its_reason(key: tuple, answer: object) -> None:
    answers = fresh()
    answers[key] = [answer]
    with pytest.raises(ServiceError) as e:
        run(answers, timeout=300)
    msg = str(e.value)
    assert msg == (
        f"{key[1]}: {key[0]} {key[2]}: {key[1]} answered {answer.status} "  # type: ignore[attr-defined]
        "key_generation_failed: key generation failed: SlickCryptoError|invalid password length"
    )
    # At once: one request, no pause.
    caller = script(*((*k, v) for k, v in answers.items()))
    with pytest.raises(ServiceError):
        credentials.fetch_repo_keys(caller, "default", timeout=300)
    assert caller.paths().count(key) == 1


def test_a_long_run_of_423_names_the_key_generation_daemon() -> None:
    answers = fresh()
    answers[USER_ROOT] = [service(423, {"code": "keys_not_ready"})]
    with pytest.raises(WaitTimeout) as e:
        run(answers, timeout=60)
    msg = str(e.value)
    assert "keys are still being generated (tuf-reposerver answered 423) for over 20s: " in msg
    assert "tuf-keyserver-daemon" in msg and "is likely not running" in msg
    # A short wait does not blame the daemon.
    with pytest.raises(WaitTimeout) as short:
        run(answers, timeout=10)
    assert "daemon" not in str(short.value)


def test_rsa_pair_end_to_end_and_the_key_pair_check() -> None:
    public, private = rsa_pair()
    root = json.loads(ROOT_BYTES)
    root["signed"]["keys"]["k-targets"] = {"keytype": "RSA", "keyval": {"public": public}}
    answers = fresh()
    answers[USER_ROOT] = [service(200, root, {"x-ats-tuf-repo-id": REPO})]
    answers[KEY_PAIRS] = [
        service(200, [{"keytype": "RSA", "keyval": {"public": public, "private": private}}])
    ]
    keys, *_ = run(answers)
    data = credentials.build_zip(keys, URLS, b"CA\n", TLS)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        # garage-sign reads these with TufCodecs' key decoders (keytype, keyval).
        assert json.loads(zf.read("targets.pub")) == {
            "keytype": "RSA",
            "keyval": {"public": public},
        }
        sec = json.loads(zf.read("targets.sec"))
    assert sec == {"keytype": "RSA", "keyval": {"private": private}}
    assert sec["keyval"]["private"].startswith("-----BEGIN RSA PRIVATE KEY-----")


def test_key_pair_check_refuses_what_garage_sign_cannot_use() -> None:
    check = credentials.check_key_pair
    public, private = rsa_pair()
    check("RSA", public, private)
    other_public, _ = rsa_pair()
    with pytest.raises(ValueError, match="does not belong to the public key"):
        check("RSA", other_public, private)
    _, pkcs8 = rsa_pair(fmt="PKCS8")
    with pytest.raises(ValueError, match="not a PKCS#1 PEM"):
        check("RSA", public, pkcs8)
    small_pub, small_priv = rsa_pair(bits=1024)
    with pytest.raises(ValueError, match="1024 bits"):
        check("RSA", small_pub, small_priv)
    check("ED25519", PUB, PRIV)
    check("ED25519", PUB, PRIV[:64])  # the seed alone, as older keyservers wrote it
    with pytest.raises(ValueError, match="does not belong"):
        check("ED25519", ed25519_pair()[0], PRIV)
    with pytest.raises(ValueError, match="unknown keytype"):
        check("DSA", PUB, PRIV)
    # Never a key in the message.
    for bad in (("RSA", public, "junk"), ("ED25519", PUB, "zz" * 32)):
        with pytest.raises(ValueError) as e:
            check(*bad)
        assert PRIV not in str(e.value) and private not in str(e.value)
    answers = fresh()
    stranger = {"public": PUB, "private": ed25519_pair()[1]}
    answers[KEY_PAIRS] = [service(200, [{"keytype": "ED25519", "keyval": stranger}])]
    with pytest.raises(ServiceError, match=r"targets key pair of repo .*does not belong"):
        run(answers)


def test_zip_bytes_as_the_build_tools_and_unzip_see_them(tmp_path: Path) -> None:
    import subprocess

    keys, *_ = run(fresh())
    data = credentials.build_zip(keys, URLS, b"CA PEM\n", TLS)
    out = tmp_path / "credentials.zip"
    out.write_bytes(data)
    with zipfile.ZipFile(out) as zf:
        # Exact bytes: stable key order (sorted) and layout, so a re-run rewrites nothing.
        assert zf.read("treehub.json") == (
            b'{\n  "no_auth": true,\n'
            b'  "ostree": {\n    "server": "https://treehub.example.com/api/v3/"\n  }\n}\n'
        )
        assert zf.read("targets.pub") == (
            b'{"keytype": "ED25519", "keyval": {"public": "' + PUB.encode() + b'"}}'
        )
        assert zf.read("targets.sec") == (
            b'{"keytype": "ED25519", "keyval": {"private": "' + PRIV.encode() + b'"}}'
        )
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    # unzip honours the 0600 mode only for entries made on Unix.
    listing = subprocess.run(["zipinfo", str(out)], capture_output=True, text=True, check=True)
    entries = [line for line in listing.stdout.splitlines() if line.startswith("-")]
    assert len(entries) == 9
    assert all(line.split()[0] == "-rw-------" and line.split()[2] == "unx" for line in entries)
    urls = PublicUrls.for_domain("example.com", "https://gw:1")
    slash = credentials.PublicUrls(urls.gateway, urls.tuf_reposerver + "/", urls.treehub)
    with zipfile.ZipFile(io.BytesIO(credentials.build_zip(keys, slash, b"", TLS))) as zf:
        assert zf.read("tufrepo.url") == b"https://tuf-reposerver.example.com\n"
    assert json.loads(credentials.treehub_json("https://th.example.com//")) == {
        "no_auth": True,
        "ostree": {"server": "https://th.example.com/api/v3/"},
    }


def test_ensure_credentials_reports_what_it_made_for_the_tenant(tmp_path: Path) -> None:
    answers = fresh()
    answers[USER_ROOT] = [service(423, {"code": "keys_pending"}), root_ok()]
    caller = script(*((*k, v) for k, v in answers.items()))
    progress: list[str] = []
    out = tmp_path / "credentials.zip"
    kw = dict(urls=URLS, server_ca_pem=b"CA\n", tls=TLS, out=out, timeout=60)
    made = credentials.ensure_credentials(
        caller,
        tenant="fleet-b",
        progress=progress.append,
        **kw,  # type: ignore[arg-type]
    )
    assert (made.path, made.repo_id, made.changed) == (out, REPO, True)
    assert made.created == ("user repo", "director repo")
    assert made.user_keys == credentials.user_keys_secret(run(fresh())[0])
    assert all(h and h["x-ats-namespace"] == "fleet-b" for *_, h in caller.calls)
    assert any("keys are still being generated" in p for p in progress)
    # Again: both repos exist (409, director root found), the zip is the same.
    again = script(
        (*USER_REPO, [service(409, {"code": "repo_exists"})]), (*USER_ROOT, [root_ok()]),
        (*DIR_ROOT, [service(200, ROOT)]), (*KEY_ROOT, [service(200, ROOT)]),
        (*KEY_PAIRS, [service(200, PAIRS)]),
    )  # fmt: skip
    second = credentials.ensure_credentials(again, tenant="fleet-b", **kw)  # type: ignore[arg-type]
    assert (second.changed, second.created) == (False, ())


def test_for_values_uses_the_values_tenant_domain_and_timeout(tmp_path: Path) -> None:
    from otactl.config import load_values
    from otactl.pki import PkiSettings, ensure_server_pki
    from otactl.secretstore import load_or_create

    values = load_values()
    values = values.model_copy(update={"tenant": "fleet-b", "domain": "ota.example.org"})
    server_dir = tmp_path / values.server_name
    ensure_server_pki(server_dir, values.server_name, PkiSettings())
    load_or_create(server_dir)
    answers = fresh()
    answers[USER_ROOT] = [service(423, {"code": "keys_pending"}), root_ok()]
    caller = script(*((*k, v) for k, v in answers.items()))
    progress: list[str] = []
    made = credentials.credentials_for_values(
        caller, values, server_dir, "https://gw:8443", progress=progress.append
    )
    assert progress and all(h and h["x-ats-namespace"] == "fleet-b" for *_, h in caller.calls)
    with zipfile.ZipFile(made.path) as zf:
        assert zf.read("tufrepo.url") == b"https://tuf-reposerver.ota.example.org\n"
        assert zf.read("autoprov.url") == b"https://gw:8443\n"
    # The phase's own timeout: a service that never answers fails within it.
    stuck = script((*USER_REPO, [no_endpoints("tuf-reposerver")]))
    with pytest.raises(WaitTimeout, match=r"after 0\.01s|0\.01 s|timed out"):
        credentials.credentials_for_values(
            stuck, values, server_dir, "https://gw:8443", timeout=0.01
        )


def test_every_key_wait_is_waited_and_reported() -> None:
    pending = service(423, {"code": "keys_pending"})
    answers = fresh()
    answers[DIR_ROOT] = [service(404, {}), pending, service(200, ROOT)]
    answers[DIR_REPO] = [service(200)]  # director answers 200 or 201 to the POST
    answers[KEY_PAIRS] = [pending, service(200, PAIRS)]
    keys, _, progress, _ = run(answers)
    assert keys.director_repo_created and keys.public == PUB
    assert any(p.startswith("director: ") and "keys are still being generated" in p
               for p in progress)  # fmt: skip
    assert any(p.startswith("tuf-keyserver: ") and "/pairs" in p for p in progress)


@pytest.mark.parametrize(
    "doc",
    [
        {"signed": {"_type": "Targets"}, "signatures": []},
        {"signed": {"_type": "root"}, "signatures": "none"},
        {"signed": {}, "signatures": []},
        "not json at all",
    ],
)
def test_root_metadata_that_is_not_signed_root_is_refused(doc: object) -> None:
    body = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
    answers = fresh()
    answers[USER_ROOT] = [service(200, body, {"X-ATS-TUF-Repo-Id": REPO})]
    with pytest.raises(ServiceError) as e:
        run(answers)
    assert str(e.value) == "tuf-reposerver: user_repo/root.json is not signed TUF root metadata"
    answers = fresh()
    answers[DIR_ROOT] = [service(404, {}), service(200, body)]
    with pytest.raises(ServiceError) as e:
        run(answers)
    assert str(e.value) == "director: admin/repo/root.json is not signed TUF root metadata"


def test_missing_root_says_what_the_post_answered() -> None:
    path = "/api/v1/user_repo"
    exists = service(409, {"code": "repo_exists"})
    for post, said in ((service(200, REPO), "created it"), (exists, "said it exists (409)")):
        answers = fresh()
        answers[USER_REPO] = [post]
        answers[USER_ROOT] = [service(404, {"code": "missing_entity"})]
        with pytest.raises(ServiceError) as e:
            run(answers, tenant="fleet-b")
        assert str(e.value) == (
            f"tuf-reposerver: GET {path}/root.json: no repo for tenant 'fleet-b' although "
            f"POST {path} {said}"
        )
    answers = fresh()
    answers[USER_REPO] = [service(200, b"<html>")]
    with pytest.raises(ServiceError) as e:
        run(answers)
    assert str(e.value) == f"tuf-reposerver: POST {path} answered 200 without a repo id"
