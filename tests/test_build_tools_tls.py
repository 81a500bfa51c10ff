"""The build tools through the real nginx running the rendered reverse-proxy config, each
with its own TLS stack and the credentials.zip otactl made:

- garage-sign: the JDK with BouncyCastle 1.59 (as ota-tuf pins it), tests/java/GarageSignTls.java
  reading the zip and loading client_auth.p12 / server.p12 as `mutualTls` does;
- garage-push: curl (libcurl on OpenSSL 3) with `--cert-type P12 --cert client_auth.p12:`, as
  aktualizr's src/sota_tools/treehub_server.cc sets CURLOPT_SSLCERTTYPE "P12".

Who gets in (a current build-tools client) and who does not (no certificate, a device
certificate, a revoked client, plain HTTP, a Host that does not match the TLS name), and the
device gateway refusing a build-tools certificate.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from service_fakes import script

from otactl import credentials, devices, pkcs12, pki, render
from otactl.config import Values, load_values
from tests.conftest import ROOT, free_port, require_binary, wait_for_port
from tests.test_credentials import fresh

BC_VERSION = "1.59"  # ota-tuf libtuf/build.sbt bouncyCastleV, at 1d0d714 and at the newest


@dataclass
class Upstream:
    port: int = 0
    seen: list[dict[str, object]] = field(default_factory=list)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """tuf-reposerver, treehub, app and web-events: echo what arrived."""
    up = Upstream()

    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            record = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
            up.seen.append(record)
            body = json.dumps(record).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    up.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield up
    server.shutdown()
    server.server_close()


@dataclass
class Setup:
    values: Values
    server_dir: Path
    https: int
    http: int
    log: Path
    good: Path  # credentials-ci-good.zip
    revoked: Path  # credentials-ci-revoked.zip, its certificate revoked
    device_p12: Path  # a device's certificate and key, as PKCS#12
    rsa_p12: Path  # a build-tools client with an RSA key (pki.key_type: rsa)
    device: Path  # the device bundle folder
    files: Path  # what nginx reads (certificates for curl too)


def _make_zip(values: Values, server_dir: Path, client: str, port: int) -> Path:
    return credentials.credentials_for_values(
        script(*((*k, v) for k, v in fresh().items())),
        values,
        server_dir,
        "https://ota-ce.example.com:30443",
        https_port=port,
        client=client,
        timeout=30,
    ).path


@pytest.fixture(scope="module")
def setup(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    values = load_values()
    server_dir = tmp_path_factory.mktemp("srv") / values.server_name
    pki.ensure_server_pki_for(values, server_dir)
    https, http = free_port(), free_port()
    good = _make_zip(values, server_dir, "ci-good", https)
    revoked = _make_zip(values, server_dir, "ci-revoked", https)
    pki.revoke_build_tools_client(server_dir, "ci-revoked")
    opts = devices.BundleOptions(
        "https://ota-ce.example.com:30443", values.device, values.pki.device_days
    )
    device = devices.new_device(server_dir, devices.DeviceSpec("dev-1"), opts).path
    key = pki.load_key(device / "pkey.pem")
    cert = pki.load_certs(device / "client.pem")[0]

    # nginx's workers (user nobody) read the htpasswd file per request: a folder outside
    # pytest's 0700 tree, readable by them (nothing secret: throwaway test keys).
    files = Path(tempfile.mkdtemp(prefix="otactl-rp-"))
    files.chmod(0o755)
    for sub in ("tls", "clients", "auth", "run"):
        (files / sub).mkdir(mode=0o755)
    server = pki.ServerFiles(server_dir)
    shutil.copy(server.server_chain, files / "tls" / "server.chain.pem")
    shutil.copy(server.server_key, files / "tls" / "server.key")
    shutil.copy(server.server_ca, files / "tls" / "server_ca.pem")
    for key_name, path in pki.BuildToolsFiles.of(server_dir).secret_files().items():
        shutil.copy(path, files / "clients" / key_name)
    (files / "auth" / "htpasswd").write_text(render.htpasswd_ssha("ota", "people-password"))
    device_p12 = files / "device.p12"
    device_p12.write_bytes(pkcs12.key_store("device", key, cert))
    rsa = pki.ensure_build_tools_client(server_dir, "ci-rsa", pki.PkiSettings(key_type="rsa"))
    rsa_p12 = files / "rsa.p12"
    rsa_p12.write_bytes(pkcs12.key_store("ci-rsa", rsa.key, rsa.cert))
    for path in files.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)

    conf = render.reverse_proxy_nginx_conf(
        values,
        tls_dir=files / "tls",
        clients_dir=files / "clients",
        auth_dir=files / "auth",
        runtime_dir=files / "run",
        upstreams={name: f"127.0.0.1:{upstream.port}" for name in render.SCALA_SERVICES},
        http_port=http,
        https_port=https,
        public_https_port=https,
    )
    # nginx says why it refused a client certificate at `info`.
    (files / "nginx.conf").write_text(
        conf.replace("error_log stderr warn;", "error_log stderr info;")
    )
    log = files / "nginx.log"
    nginx = require_binary("nginx", "/usr/sbin/nginx")
    proc = subprocess.Popen(
        [nginx, "-p", str(files / "run"), "-c", str(files / "nginx.conf"), "-e", str(log),
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=open(log, "ab"),  # noqa: SIM115
    )  # fmt: skip
    try:
        wait_for_port(https, proc=proc)
        yield Setup(
            values, server_dir, https, http, log, good, revoked, device_p12, rsa_p12, device, files
        )
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(files)


def _unzipped(zip_path: Path, name: str, into: Path) -> Path:
    out = into / f"{zip_path.stem}-{name}"
    out.write_bytes(zipfile.ZipFile(zip_path).read(name))
    return out


# --- credentials.zip as the two readers take it --------------------------------------------


def test_zip_entries_and_fields_as_both_readers_take_them(setup: Setup) -> None:
    zf = zipfile.ZipFile(setup.good)
    names = set(zf.namelist())
    # garage-push: server_credentials.cc needs treehub.json, uses client_auth.p12 (kTls) and
    # tufrepo.url; CanSignOffline: root.json, targets.pub, targets.sec, tufrepo.url.
    # garage-sign: ZipRepoInitialization.init reads treehub.json, client_auth.p12 + server.p12,
    # tufrepo.url (RepoServer), root.json, targets.pub/.sec.
    assert names == {
        "autoprov.url", "client_auth.p12", "root.json", "server.p12", "server_ca.pem",
        "targets.pub", "targets.sec", "treehub.json", "tufrepo.url",
    }  # fmt: skip
    for info in zf.infolist():
        assert (info.external_attr >> 16) & 0o777 == 0o600
    assert setup.good.stat().st_mode & 0o777 == 0o600

    treehub = json.loads(zf.read("treehub.json"))
    # Boost ptree `ostree.server`; circe: no_auth Option[Boolean], oauth2 absent, ostree a JSON
    # object (CliReads.scala treehubConfigDecoder). No password anywhere.
    assert treehub == {
        "no_auth": True,
        "ostree": {"server": f"https://treehub.example.com:{setup.https}/api/v3/"},
    }
    repo_url = zf.read("tufrepo.url").decode().strip()
    assert repo_url == f"https://tuf-reposerver.example.com:{setup.https}"
    assert zf.read("autoprov.url").decode().startswith("https://")
    root = json.loads(zf.read("root.json"))
    assert root["signed"]["_type"] == "root"
    assert set(json.loads(zf.read("targets.pub"))["keyval"]) == {"public"}
    assert set(json.loads(zf.read("targets.sec"))["keyval"]) == {"private"}


def test_client_p12_holds_the_client_certificate_from_the_build_tools_ca(
    setup: Setup, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12 as cpk

    zf = zipfile.ZipFile(setup.good)
    key, cert, extra = cpk.load_key_and_certificates(zf.read("client_auth.p12"), None)
    assert key is not None and cert is not None and not extra
    assert key.public_key() == cert.public_key()
    assert pki.common_name(cert) == "ci-good"
    tools_ca = pki.load_certs(pki.BuildToolsFiles.of(setup.server_dir).ca)[0]
    device_ca = pki.load_certs(pki.ServerFiles(setup.server_dir).device_ca)[0]
    assert cert.issuer == tools_ca.subject and tools_ca.subject != device_ca.subject
    cert.verify_directly_issued_by(tools_ca)
    trust = cpk.load_pkcs12(zf.read("server.p12"), None)
    server_ca = pki.load_certs(pki.ServerFiles(setup.server_dir).server_ca)[0]
    assert trust.key is None and [c.certificate for c in trust.additional_certs] == [server_ca]
    assert zf.read("server_ca.pem") == pki.cert_pem(server_ca)

    # The algorithms both loaders take with an empty password (OpenSSL 3 as libcurl uses it).
    p12 = _unzipped(setup.good, "client_auth.p12", tmp_path)
    info = subprocess.run(
        ["openssl", "pkcs12", "-in", str(p12), "-info", "-noout", "-passin", "pass:"],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    assert "MAC: sha1" in info
    assert "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC" in info


def test_zip_is_byte_identical_when_nothing_changed(setup: Setup) -> None:
    before = setup.good.read_bytes()
    again = credentials.credentials_for_values(
        script(*((*k, v) for k, v in fresh().items())),
        setup.values,
        setup.server_dir,
        "https://ota-ce.example.com:30443",
        https_port=setup.https,
        client="ci-good",
        timeout=30,
    )
    assert not again.changed and not again.client_issued
    assert setup.good.read_bytes() == before


# --- garage-sign's stack: the JDK and BouncyCastle ------------------------------------------


@pytest.fixture(scope="module")
def garage_sign(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The compiled GarageSignTls and the java command line that runs it."""
    cache = Path(os.environ.get("OTACTL_CACHE_DIR", Path.home() / ".cache" / "otactl"))
    jars = [cache / "java" / f"{a}-{BC_VERSION}.jar" for a in ("bcprov-jdk15on", "bcpkix-jdk15on")]
    missing = [str(j) for j in jars if not j.is_file()]
    if missing:
        pytest.fail(f"BouncyCastle jars missing ({', '.join(missing)}): run scripts/setup.sh")
    javac = require_binary("javac")
    out = tmp_path_factory.mktemp("java")
    classpath = ":".join(str(j) for j in jars)
    subprocess.run(
        [javac, "-d", str(out), "-cp", classpath, str(ROOT / "tests/java/GarageSignTls.java")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    hosts = out / "hosts"
    hosts.write_text("127.0.0.1 tuf-reposerver.example.com treehub.example.com\n")
    return [require_binary("java"), f"-Djdk.net.hosts.file={hosts}", "-cp",
            f"{out}:{classpath}", "GarageSignTls"]  # fmt: skip


def _java(cmd: list[str], *args: str) -> str:
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def test_garage_sign_gets_in_with_the_zip(
    setup: Setup, upstream: Upstream, garage_sign: list[str]
) -> None:
    before = len(upstream.seen)
    assert _java(garage_sign, str(setup.good)) == "status 200"
    seen = upstream.seen[before:]
    assert [s["path"] for s in seen] == ["/api/v1/user_repo/root.json"]
    headers = seen[0]["headers"]
    assert isinstance(headers, dict)
    assert headers["host"] == "tuf-reposerver.example.com"
    assert headers["x-ats-namespace"] == "default"


def test_garage_sign_and_garage_push_take_an_rsa_client_key_too(
    setup: Setup, garage_sign: list[str]
) -> None:
    assert _java(garage_sign, str(setup.good), "--client-p12", str(setup.rsa_p12)) == "status 200"
    cert = ["--cert-type", "P12", "--cert", f"{setup.rsa_p12}:"]
    assert _curl(setup, "treehub.example.com", *cert)[0] == 200


@pytest.mark.parametrize("who", ["no certificate", "device certificate", "revoked client"])
def test_garage_sign_refused(
    who: str, setup: Setup, upstream: Upstream, garage_sign: list[str]
) -> None:
    args = {
        "no certificate": [str(setup.good), "--no-client-cert"],
        "device certificate": [str(setup.good), "--client-p12", str(setup.device_p12)],
        "revoked client": [str(setup.revoked)],
    }[who]
    before = len(upstream.seen)
    # nginx answers 400 once the handshake is done. JSSE's SunX509 key manager offers a
    # certificate only when its issuer is in the CA list nginx sends (the build-tools CA):
    # the device certificate is not even sent.
    assert _java(garage_sign, *args) == "status 400"
    assert len(upstream.seen) == before
    if who == "revoked client":
        assert "certificate revoked" in setup.log.read_text()


# --- garage-push's stack: libcurl on OpenSSL 3 ----------------------------------------------


def _curl(setup: Setup, host: str, *args: str, path: str = "/api/v3/config") -> tuple[int, str]:
    curl = require_binary("curl")
    url = f"https://{host}:{setup.https}{path}"
    proc = subprocess.run(
        [curl, "-sS", "-o", "-", "-w", "\n%{http_code}", "--resolve",
         f"{host}:{setup.https}:127.0.0.1", "--cacert", str(setup.files / "tls/server_ca.pem"),
         *args, url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    body, _, code = proc.stdout.rpartition("\n")
    return int(code or 0), body + proc.stderr


def test_garage_push_gets_in_with_the_zip(setup: Setup, upstream: Upstream, tmp_path: Path) -> None:
    p12 = _unzipped(setup.good, "client_auth.p12", tmp_path)
    server = json.loads(zipfile.ZipFile(setup.good).read("treehub.json"))["ostree"]["server"]
    assert server.startswith(f"https://treehub.example.com:{setup.https}/")
    before = len(upstream.seen)
    status, body = _curl(setup, "treehub.example.com", "--cert-type", "P12", "--cert", f"{p12}:")
    assert status == 200, body
    assert [s["path"] for s in upstream.seen[before:]] == ["/api/v3/config"]


@pytest.mark.parametrize("who", ["no certificate", "device certificate", "revoked client"])
def test_garage_push_refused(who: str, setup: Setup, upstream: Upstream, tmp_path: Path) -> None:
    cert = {
        "no certificate": [],
        "device certificate": ["--cert-type", "P12", "--cert", f"{setup.device_p12}:"],
        "revoked client": [
            "--cert-type", "P12", "--cert",
            f"{_unzipped(setup.revoked, 'client_auth.p12', tmp_path)}:",
        ],
    }[who]  # fmt: skip
    before = len(upstream.seen)
    status, body = _curl(setup, "treehub.example.com", *cert)
    assert status == 400, body
    assert len(upstream.seen) == before
    log = setup.log.read_text()
    if who == "no certificate":
        assert "No required SSL certificate was sent" in body
    elif who == "device certificate":
        assert "The SSL certificate error" in body
        assert "client SSL certificate verify error" in log
    else:
        assert "certificate revoked" in log


def test_a_build_tools_certificate_opens_both_build_tool_hosts(
    setup: Setup, tmp_path: Path
) -> None:
    p12 = f"{_unzipped(setup.good, 'client_auth.p12', tmp_path)}:"
    for host in ("tuf-reposerver.example.com", "treehub.example.com"):
        assert _curl(setup, host, "--cert-type", "P12", "--cert", p12)[0] == 200


# --- what is refused around the certificate check --------------------------------------------


def test_plain_http_refuses_the_build_tools_and_redirects_the_web_ui(setup: Setup) -> None:
    curl = require_binary("curl")

    def plain(host: str) -> tuple[str, str]:
        proc = subprocess.run(
            [curl, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H",
             f"Host: {host}", f"http://127.0.0.1:{setup.http}/api/v3/config"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        code, _, location = proc.stdout.partition(" ")
        return code, location

    assert plain("treehub.example.com") == ("403", "")
    assert plain("tuf-reposerver.example.com") == ("403", "")
    assert plain("app.example.com") == (
        "301",
        f"https://app.example.com:{setup.https}/api/v3/config",
    )


def _raw_https(setup: Setup, sni: str | None, host: str, cert: Path | None = None) -> int:
    ctx = ssl.create_default_context(cafile=setup.files / "tls/server_ca.pem")
    ctx.check_hostname = False
    if cert is not None:
        ctx.load_cert_chain(cert)
    with (
        socket.create_connection(("127.0.0.1", setup.https), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        tls.sendall(
            f"GET /api/v3/config HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return int(data.split()[1])


def test_no_way_around_the_certificate_by_host_name(setup: Setup, upstream: Upstream) -> None:
    before = len(upstream.seen)
    # TLS as the web UI (no certificate asked), then the request names a build-tools host.
    assert _raw_https(setup, "app.example.com", "treehub.example.com") == 421
    # No SNI: the handshake is the default server's (no certificate asked); nginx checks the
    # certificate for the server the Host names all the same.
    assert _raw_https(setup, None, "treehub.example.com") == 400
    assert len(upstream.seen) == before


def test_web_ui_basic_auth_and_web_events_token_passed_on(setup: Setup, upstream: Upstream) -> None:
    assert _curl(setup, "app.example.com", path="/")[0] == 401
    assert _curl(setup, "app.example.com", "-u", "ota:wrong", path="/")[0] == 401
    before = len(upstream.seen)
    assert _curl(setup, "app.example.com", "-u", "ota:people-password", path="/")[0] == 200
    app = upstream.seen[before]["headers"]
    assert isinstance(app, dict) and "authorization" not in app  # stops at the proxy

    # The app's websocket URL is wss://bearer:<token>@web-events.<domain>/api/v1/events/ws:
    # the browser sends the token as basic-auth credentials and web-events checks it.
    before = len(upstream.seen)
    status, body = _curl(
        setup, "web-events.example.com", "-u", "bearer:signed.jwt.token",
        "-H", "Upgrade: websocket", "-H", "Connection: Upgrade", path="/api/v1/events/ws",
    )  # fmt: skip
    assert status == 200, body  # the echo upstream answers 200 instead of 101
    events = upstream.seen[before]["headers"]
    assert isinstance(events, dict)
    assert events["authorization"] == "Basic YmVhcmVyOnNpZ25lZC5qd3QudG9rZW4="
    assert events["upgrade"] == "websocket" and events["connection"] == "upgrade"


# --- the device gateway does not take a build-tools certificate -----------------------------


def test_device_gateway_refuses_a_build_tools_certificate(
    setup: Setup, upstream: Upstream, tmp_path: Path
) -> None:
    values = setup.values
    run = Path(tempfile.mkdtemp(prefix="otactl-gw-"))
    try:
        tls = run / "tls"
        tls.mkdir()
        for key, path in pki.ServerFiles(setup.server_dir).tls_secret_files().items():
            shutil.copy(path, tls / key)
        port = free_port()
        conf = render.gateway_nginx_conf(
            values, tls_dir=tls, runtime_dir=run, listen_port=port, plain_ports=(free_port(),),
            upstreams={n: f"127.0.0.1:{upstream.port}" for n in render.SCALA_SERVICES},
        )  # fmt: skip
        (run / "nginx.conf").write_text(conf)
        nginx = require_binary("nginx", "/usr/sbin/nginx")
        proc = subprocess.Popen(
            [nginx, "-p", str(run), "-c", str(run / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for_port(port, proc=proc)
            files = pki.BuildToolsFiles.of(setup.server_dir)
            pem = tmp_path / "tools.pem"
            pem.write_bytes(
                files.client_cert("ci-good").read_bytes() + files.client_key("ci-good").read_bytes()
            )
            ctx = ssl.create_default_context(cafile=setup.device / "root.crt")
            ctx.load_cert_chain(pem)
            before = len(upstream.seen)
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                ctx.wrap_socket(raw, server_hostname=values.server_name) as conn,
            ):
                conn.sendall(
                    f"GET /repo/root.json HTTP/1.1\r\nHost: {values.server_name}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                reply = conn.recv(65536)
            assert reply.split()[1] == b"400"
            assert b"SSL certificate error" in reply
            assert len(upstream.seen) == before
            # And the device itself gets in there (the setup is right).
            ctx = ssl.create_default_context(cafile=setup.device / "root.crt")
            ctx.load_cert_chain(setup.device / "client.pem", setup.device / "pkey.pem")
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                ctx.wrap_socket(raw, server_hostname=values.server_name) as conn,
            ):
                conn.sendall(
                    f"GET /repo/root.json HTTP/1.1\r\nHost: {values.server_name}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                assert conn.recv(65536).split()[1] == b"200"
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    finally:
        shutil.rmtree(run)
