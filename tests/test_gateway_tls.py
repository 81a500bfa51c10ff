"""Real TLS handshakes through the real nginx running the rendered gateway config with the
files otactl generated: who gets in, what arrives upstream, and what is refused."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from otactl import devices, pki, render
from otactl.config import load_values
from tests.conftest import free_port, require_binary, wait_for_port

SERVER = "ota-ce.example.com"


# --- the pieces: an echoing upstream, nginx, a device --------------------------------------


@dataclass
class Upstream:
    """A stand-in for director, repo, treehub and device-registry: echoes what it got."""

    port: int
    seen: list[dict[str, object]] = field(default_factory=list)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream(port=0)

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            record = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
            up.seen.append(record)
            body = json.dumps(record).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    up.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield up
    server.shutdown()
    server.server_close()


@dataclass
class Gateway:
    port: int
    log: Path


StartGateway = Callable[[Path, Path], Gateway]


@pytest.fixture(scope="module")
def start_gateway(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartGateway]:
    """Run nginx with the rendered gateway config on the TLS files of a server folder
    (copied the way the gateway-tls Secret carries them)."""
    nginx = require_binary("nginx", "/usr/sbin/nginx")
    procs: list[subprocess.Popen[bytes]] = []

    def start(server_dir: Path, crl: Path | None = None) -> Gateway:
        run = tmp_path_factory.mktemp("gateway")
        tls = run / "tls"
        tls.mkdir()
        for key, path in pki.ServerFiles(server_dir).tls_secret_files().items():
            shutil.copy(path, tls / key)
        if crl is not None:
            shutil.copy(crl, tls / "crl.pem")
        port = free_port()
        target = f"127.0.0.1:{upstream.port}"
        conf = render.gateway_nginx_conf(
            load_values(),
            tls_dir=tls,
            runtime_dir=run,
            upstreams={
                n: target
                for n in ("campaigner", "director", "tuf-reposerver", "treehub", "device-registry")
            },
            listen_port=port,
            plain_ports=(free_port(),),
        )
        # nginx logs why it refused a client certificate at `info`; the rendered `warn` would
        # hide the reason the tests assert on.
        (run / "nginx.conf").write_text(
            conf.replace("error_log stderr warn;", "error_log stderr info;")
        )
        log = run / "nginx.log"
        proc = subprocess.Popen(
            [
                nginx,
                "-p",
                str(run),
                "-c",
                str(run / "nginx.conf"),
                "-e",
                str(log),
                "-g",
                "daemon off;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "ab"),  # noqa: SIM115
        )
        procs.append(proc)
        wait_for_port(port, timeout=20, proc=proc)
        return Gateway(port, log)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=20)


def client_context(
    cafile: Path, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """What a device does: trust the bundle's root.crt, present client.pem/pkey.pem."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def device_context(folder: Path) -> ssl.SSLContext:
    return client_context(folder / "root.crt", folder / "client.pem", folder / "pkey.pem")


def get(gw: Gateway, ctx: ssl.SSLContext, path: str, name: str = SERVER) -> tuple[int, bytes]:
    """One HTTPS request to the gateway on loopback, with `name` as SNI and checked name.
    A device may try to pick its identity: the forged header must not get through."""
    with (
        socket.create_connection(("127.0.0.1", gw.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=name) as tls,
    ):
        tls.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {SERVER}\r\n"
            "x-ats-device-uuid: 00000000-0000-4000-8000-000000000000\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def options() -> devices.BundleOptions:
    values = load_values()
    return devices.BundleOptions(f"https://{SERVER}:8443", values.device, values.pki.device_days)


# --- the fleet made by otactl itself -------------------------------------------------------


@dataclass
class Fleet:
    server_dir: Path
    good: devices.BundleInfo
    revoked: devices.BundleInfo
    foreign: devices.BundleInfo  # from another server's device CA
    gateway: Gateway


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, start_gateway: StartGateway) -> Fleet:
    base = tmp_path_factory.mktemp("fleet")
    server_dir = base / SERVER
    pki.ensure_server_pki(server_dir, SERVER, pki.PkiSettings(), extra_ips=["127.0.0.1"])
    good = devices.new_device(server_dir, devices.DeviceSpec("good"), options())
    revoked = devices.new_device(server_dir, devices.DeviceSpec("stolen"), options())
    devices.revoke_device(server_dir, "stolen")
    other = base / "other" / SERVER
    pki.ensure_server_pki(other, SERVER, pki.PkiSettings())
    foreign = devices.new_device(other, devices.DeviceSpec("intruder"), options())
    return Fleet(server_dir, good, revoked, foreign, start_gateway(server_dir))


def test_device_certificate_accepted_and_uuid_forwarded(fleet: Fleet, upstream: Upstream) -> None:
    ctx = device_context(fleet.good.path)
    uuid = fleet.good.uuid
    routes = {
        "/director/targets.json": f"/api/v1/device/{uuid}/targets.json",
        "/repo/root.json": "/api/v1/user_repo/root.json",
        "/treehub/config": "/api/v2/config",
        "/core/installed": f"/api/v1/mydevice/{uuid}/packages",
        "/core/system_info": f"/api/v1/mydevice/{uuid}/system_info",
        "/system_info/network": f"/api/v1/devices/{uuid}/system_info/network",
        "/events": f"/api/v1/devices/{uuid}/events",
        # aktualizr's campaign check (campaigner DeviceResource)
        "/campaigner/campaigns": f"/api/v2/device/{uuid}/campaigns",
    }
    for path, expected in routes.items():
        status, body = get(fleet.gateway, ctx, path)
        assert status == 200, (path, body)
        echoed = json.loads(body)
        assert echoed["path"] == expected
        assert echoed["headers"]["x-ats-device-uuid"] == uuid
        assert echoed["headers"]["x-ats-namespace"] == "default"


def test_the_gateway_is_reached_by_ip_san_too(fleet: Fleet) -> None:
    status, _ = get(fleet.gateway, device_context(fleet.good.path), "/repo/root.json", "127.0.0.1")
    assert status == 200


def _refused(fleet: Fleet, upstream: Upstream, ctx: ssl.SSLContext) -> bytes:
    before = len(upstream.seen)
    try:
        status, body = get(fleet.gateway, ctx, "/director/targets.json")
    except (ssl.SSLError, ConnectionError) as e:  # refused in the handshake itself
        body, status = str(e).encode(), 0
    assert status in (0, 400), body
    assert len(upstream.seen) == before, "a refused request reached the upstream"
    return body


def test_certificate_from_another_ca_refused(fleet: Fleet, upstream: Upstream) -> None:
    ctx = client_context(
        fleet.good.path / "root.crt",
        fleet.foreign.path / "client.pem",
        fleet.foreign.path / "pkey.pem",
    )
    assert b"SSL certificate error" in _refused(fleet, upstream, ctx)
    assert (
        "verify error: (21:unable to verify the first certificate)" in fleet.gateway.log.read_text()
    )


def test_no_certificate_refused(fleet: Fleet, upstream: Upstream) -> None:
    ctx = client_context(fleet.good.path / "root.crt")
    assert b"No required SSL certificate was sent" in _refused(fleet, upstream, ctx)


def test_revoked_certificate_refused(fleet: Fleet, upstream: Upstream) -> None:
    assert b"SSL certificate error" in _refused(fleet, upstream, device_context(fleet.revoked.path))
    assert "certificate revoked" in fleet.gateway.log.read_text()


def test_client_rejects_a_name_outside_the_sans(fleet: Fleet, upstream: Upstream) -> None:
    before = len(upstream.seen)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        get(fleet.gateway, device_context(fleet.good.path), "/repo/root.json", "evil.example.org")
    # And a device trusting another server's CA does not accept this gateway at all.
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        get(fleet.gateway, device_context(fleet.foreign.path), "/repo/root.json")
    assert len(upstream.seen) == before


# --- an imported intermediate fleet CA under an offline root ---------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _offline_root_and_intermediate(d: Path) -> None:
    """Made with openssl, as a fleet's own tooling would: root.pem/key, inter.pem/key and
    the root's (empty) CRL root-crl.pem."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "root.key",
        "-out",
        "root.pem",
        "-subj",
        "/CN=Fleet Root",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )
    _openssl(
        "req", *ec, "-keyout", "inter.key", "-out", "inter.csr", "-subj", "/CN=Fleet Devices", cwd=d
    )
    (d / "ext.cnf").write_text(
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "inter.csr",
        "-CA",
        "root.pem",
        "-CAkey",
        "root.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
        "-out",
        "inter.pem",
        cwd=d,
    )
    (d / "chain.pem").write_bytes((d / "inter.pem").read_bytes() + (d / "root.pem").read_bytes())
    (d / "index.txt").write_text("")
    (d / "crlnumber").write_text("01\n")
    (d / "ca.cnf").write_text(
        "[ca]\ndefault_ca=c\n[c]\ndatabase=index.txt\ndefault_md=sha256\ncrlnumber=crlnumber\n"
    )
    _openssl(
        "ca",
        "-config",
        "ca.cnf",
        "-gencrl",
        "-keyfile",
        "root.key",
        "-cert",
        "root.pem",
        "-out",
        "root-crl.pem",
        "-crldays",
        "30",
        cwd=d,
    )


def test_imported_intermediate_through_nginx(
    tmp_path: Path, start_gateway: StartGateway, upstream: Upstream
) -> None:
    """nginx checks a CRL for every CA of the chain (ssl_crl): with the root's CRL handed
    in at import, devices get in and revocation works; without it, nobody gets in."""
    fleet_dir = tmp_path / "fleet"
    fleet_dir.mkdir()
    _offline_root_and_intermediate(fleet_dir)
    server_dir = tmp_path / SERVER
    pki.ensure_server_pki(
        server_dir,
        SERVER,
        pki.PkiSettings(),
        device_ca_cert=fleet_dir / "chain.pem",
        device_ca_key=fleet_dir / "inter.key",
        device_ca_crl=fleet_dir / "root-crl.pem",
    )
    ok = devices.new_device(server_dir, devices.DeviceSpec("ok"), options())
    gone = devices.new_device(server_dir, devices.DeviceSpec("gone"), options())
    devices.revoke_device(server_dir, "gone")
    gw = start_gateway(server_dir)

    status, body = get(gw, device_context(ok.path), "/director/x")
    assert status == 200 and json.loads(body)["headers"]["x-ats-device-uuid"] == ok.uuid
    status, body = get(gw, device_context(gone.path), "/director/x")
    assert status == 400 and "certificate revoked" in gw.log.read_text()

    # The same gateway with only the intermediate's CRL: every device is refused.
    ours_only = tmp_path / "ours-only.pem"
    ours_only.write_bytes(pki.crl_pem(pki.load_crls(pki.ServerFiles(server_dir).crl)[0]))
    without_root_crl = start_gateway(server_dir, crl=ours_only)
    status, _ = get(without_root_crl, device_context(ok.path), "/director/x")
    assert status == 400
    assert "unable to get certificate CRL" in without_root_crl.log.read_text()
