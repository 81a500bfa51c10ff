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
from otactl.errors import ServiceError, WaitTimeout

REPO = "6a3f2bd8-5b4e-4bd4-9a44-52d0d1c7a0e1"
PUB, PRIV = "ab" * 32, "cd" * 32
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


def run(answers: dict, timeout: float = 60) -> tuple:
    caller = script(*((*k, v) for k, v in answers.items()))
    clock = FakeClock()
    progress: list[str] = []
    keys = credentials.fetch_repo_keys(
        caller, "default", timeout=timeout, progress=progress.append,
        deadline=clock.deadline(timeout),
    )  # fmt: skip
    return keys, caller, progress, clock


def test_from_nothing_creates_both_repos_and_reads_the_pair() -> None:
    answers = fresh()
    answers[USER_ROOT] = [service(423, {"code": "keys_pending"})] * 2 + [root_ok()]
    answers[KEY_ROOT] = [service(423, {"code": "keys_pending"}), service(200, ROOT)]
    keys, caller, progress, clock = run(answers)
    assert keys.repo_id == REPO
    assert (keys.public, keys.private, keys.keytype) == (PUB, PRIV, "ED25519")
    assert keys.user_repo_created and keys.director_repo_created
    # Director: looked before creating; created once.
    assert caller.paths().count(DIR_REPO) == 1
    assert caller.paths().index(DIR_ROOT) < caller.paths().index(DIR_REPO)
    # Every call names the tenant.
    assert all(h and h["x-ats-namespace"] == "default" for *_, h in caller.calls)
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
        (USER_REPO, service(401, {"code": "unauthorized"}), "HTTP 401"),
        # 409 is fine for POST user_repo only.
        (USER_ROOT, service(409, {"code": "conflicting_entity"}), "HTTP 409"),
        (KEY_ROOT, service(404, {"code": "missing_entity"}), "HTTP 404"),
        (KEY_PAIRS, service(403, {"code": "forbidden"}), "HTTP 403"),
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
    assert "tuf-reposerver answered HTTP 503: " in progress[2]


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
    with pytest.raises(ServiceError, match="not a list of key pairs") as e:
        run(answers)
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
