"""The rendered nginx configs, checked by the real nginx: `nginx -t` with real certificate
files, and the reverse proxy's basic auth for the web UI exercised over HTTP (the build
tools' mutual TLS: tests/test_build_tools_tls.py)."""

from __future__ import annotations

import base64
import getpass
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from otactl import render, secretstore
from otactl.config import load_values
from tests.conftest import free_port, require_binary, wait_for_port


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Server chain, key, device CA and an empty CRL, as the gateway-tls Secret holds them
    (made with openssl here, independent of otactl's own PKI code)."""
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=dev-ca",
             "-days", "2", cwd=d)  # fmt: skip
    _openssl("req", "-x509", *ec, "-keyout", "sca.key", "-out", "sca.crt", "-subj", "/CN=srv-ca",
             "-days", "2", cwd=d)  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=gw", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "sca.crt", "-CAkey", "sca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", cwd=d)  # fmt: skip
    (d / "server.chain.pem").write_bytes(
        (d / "server.crt").read_bytes() + (d / "sca.crt").read_bytes()
    )
    (d / "index.txt").write_text("")
    (d / "ca.cnf").write_text(
        "[ca]\ndefault_ca=c\n[c]\ndatabase=index.txt\ndefault_md=sha256\ncrlnumber=crlnumber\n"
    )
    (d / "crlnumber").write_text("01\n")
    _openssl("ca", "-config", "ca.cnf", "-gencrl", "-keyfile", "ca.key", "-cert", "ca.crt",
             "-out", "crl.pem", "-crldays", "2", cwd=d)  # fmt: skip
    return d


def _nginx_test(conf: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    nginx = require_binary("nginx", "/usr/sbin/nginx")
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    return subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(path)], capture_output=True, text=True
    )


def _local_upstreams(port: int) -> dict[str, str]:
    return {name: f"127.0.0.1:{port}" for name in render.SCALA_SERVICES}


def test_gateway_config_passes_nginx_t(tls_dir: Path, tmp_path: Path):
    conf = render.gateway_nginx_conf(
        load_values(), tls_dir=tls_dir, runtime_dir=tmp_path, upstreams=_local_upstreams(9),
        listen_port=free_port(), plain_ports=(free_port(),),
    )  # fmt: skip
    proc = _nginx_test(conf, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "test is successful" in proc.stderr
    assert "ssl_crl" in conf and "ssl_verify_client on;" in conf


def test_gateway_config_fails_nginx_t_without_the_crl(tls_dir: Path, tmp_path: Path):
    # Shows the check is real: the CRL the config names must exist.
    broken = tmp_path / "tls"
    broken.mkdir()
    for name in ("server.chain.pem", "server.key", "ca.crt"):
        (broken / name).write_bytes((tls_dir / name).read_bytes())
    conf = render.gateway_nginx_conf(
        load_values(), tls_dir=broken, runtime_dir=tmp_path, upstreams=_local_upstreams(9),
        listen_port=free_port(), plain_ports=(free_port(),),
    )  # fmt: skip
    proc = _nginx_test(conf, tmp_path)
    assert proc.returncode != 0
    assert "crl.pem" in proc.stderr


def test_fixed_routes_for_system_info_and_events():
    conf = render.gateway_nginx_conf(load_values())
    assert "rewrite ^/system_info(.*)$ /api/v1/devices/$device_uuid/system_info$1 break;" in conf
    assert "rewrite ^/events(.*)$ /api/v1/devices/$device_uuid/events$1 break;" in conf
    assert "rewrite ^/core/" not in conf.split("location ~ ^/system_info")[1]


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.path} host={self.headers['Host']} auth={self.headers.get('Authorization')}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_reverse_proxy_config_passes_nginx_t_and_needs_the_build_tools_crl(
    tls_dir: Path, tmp_path: Path
):
    # tls_dir's ca.crt and crl.pem stand in for the build-tools CA and its CRL.
    conf = render.reverse_proxy_nginx_conf(
        load_values(), tls_dir=tls_dir, clients_dir=tls_dir, auth_dir=tmp_path,
        runtime_dir=tmp_path, upstreams=_local_upstreams(9), http_port=free_port(),
        https_port=free_port(),
    )  # fmt: skip
    proc = _nginx_test(conf, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert conf.count("ssl_verify_client on;") == len(render.BUILD_TOOL_HOSTS)
    broken = tmp_path / "clients"
    broken.mkdir()
    shutil.copy(tls_dir / "ca.crt", broken / "ca.crt")
    conf = conf.replace(f"{tls_dir}/crl.pem", f"{broken}/crl.pem")
    proc = _nginx_test(conf, tmp_path)
    assert proc.returncode != 0 and "crl.pem" in proc.stderr


def test_reverse_proxy_web_ui_behind_an_ingress_requires_the_generated_basic_auth(
    tls_dir: Path, tmp_path: Path, echo_server: int
):
    """Plain HTTP from an Ingress that terminated TLS: the app asks for the generated basic
    auth; the build tools' hosts stay refused (they need the client certificate)."""
    values = load_values()
    secrets = secretstore.load_or_create(tmp_path / "srv")
    # nginx reads the user file in its workers. Started as root they would run as nobody,
    # who cannot enter pytest's 0700 folders; so the workers run as whoever runs the test
    # (`user` below; as another user nginx ignores it and keeps its own), and the files stay
    # in the test's own folder, whatever the system temp folder's mode.
    auth_dir = tmp_path / "auth"
    auth_dir.mkdir()
    (auth_dir / "htpasswd").write_text(
        render.htpasswd_ssha(values.reverse_proxy.user, secrets.reverse_proxy_password)
    )
    (auth_dir / "htpasswd").chmod(0o644)
    http_port = free_port()
    conf = render.reverse_proxy_nginx_conf(
        values, tls_dir=tls_dir, clients_dir=tls_dir, auth_dir=auth_dir, runtime_dir=tmp_path,
        upstreams=_local_upstreams(echo_server), http_port=http_port, https_port=free_port(),
    )  # fmt: skip
    assert _nginx_test(conf, tmp_path).returncode == 0
    nginx = require_binary("nginx", "/usr/sbin/nginx")
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
         "-g", f"daemon off; user {getpass.getuser()};"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(http_port, proc=proc)

        def get(host: str, user: str | None, password: str | None) -> tuple[int, str]:
            req = urllib.request.Request(f"http://127.0.0.1:{http_port}/api/v3/config")
            req.add_header("Host", host)
            req.add_header("X-Forwarded-Proto", "https")
            if user is not None:
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                req.add_header("Authorization", f"Basic {token}")
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, ""

        user, password = values.reverse_proxy.user, secrets.reverse_proxy_password
        assert get("app.example.com", None, None)[0] == 401
        assert get("app.example.com", user, "wrong")[0] == 401
        status, body = get("app.example.com", user, password)
        assert status == 200
        assert body.startswith("/api/v3/config host=app.example.com")
        assert "auth=None" in body  # the credentials stop at the proxy
        assert get("treehub.example.com", user, password)[0] == 403
        assert get("tuf-reposerver.example.com", user, password)[0] == 403
        assert get("unknown.example.com", user, password)[0] == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_gateway_runs_as_an_unprivileged_user_with_everything_but_tmp_read_only(tls_dir: Path):
    """Issue 15: the pods start nginx as the image's nginx user (uid/gid 101), with the
    Secret's files 0440 to that group (fsGroup), the config root's and read-only, and only
    an emptyDir /tmp writable: the rendered config needs nothing more (the real nginx, as
    uid 101, with the pod's arguments)."""
    nginx = require_binary("nginx", "/usr/sbin/nginx")
    root = Path(tempfile.mkdtemp(prefix="otactl-nginx-"))  # outside pytest's 0700 folders
    try:
        root.chmod(0o755)
        tls = root / "tls"
        tls.mkdir(mode=0o750)
        os.chown(tls, 0, 101)
        for name in ("server.chain.pem", "server.key", "ca.crt", "crl.pem"):
            shutil.copy(tls_dir / name, tls / name)
            os.chown(tls / name, 0, 101)
            (tls / name).chmod(0o440)
        run = root / "tmp"
        run.mkdir()
        run.chmod(0o1777)
        status = free_port()
        conf = root / "nginx.conf"
        text = render.gateway_nginx_conf(
            load_values(), tls_dir=tls, runtime_dir=run, upstreams=_local_upstreams(9),
            listen_port=free_port(), plain_ports=(status,),
        )  # fmt: skip
        conf.write_text(text)
        conf.chmod(0o444)
        # The container's stdout and stderr belong to its user (runc chowns PID 1's stdio,
        # libcontainer fixStdioPermissions): the config's access_log /dev/stdout opens them.
        logs = {}
        for stream in ("stdout", "stderr"):
            (root / stream).touch(mode=0o600)
            os.chown(root / stream, 101, 101)
            logs[stream] = (root / stream).open("w")
        args = ["-c", str(conf), "-e", "stderr", "-g", "daemon off;"]
        cmd = ["setpriv", "--reuid=101", "--regid=101", "--clear-groups", nginx, *args]
        proc = subprocess.Popen(cmd, stdout=logs["stdout"], stderr=logs["stderr"])
        try:
            try:
                wait_for_port(status, proc=proc)
            except RuntimeError:
                pytest.fail(f"nginx as uid 101 did not start: {(root / 'stderr').read_text()}")
            with urllib.request.urlopen(f"http://127.0.0.1:{status}/healthz", timeout=5) as r:
                assert r.status == 200
            master = Path(f"/proc/{proc.pid}/status").read_text()
            assert "\nUid:\t101\t101\t101\t101\n" in master
            assert sorted(p.name for p in run.iterdir())  # the pid and temporary files
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            for log in logs.values():
                log.close()
        err = (root / "stderr").read_text()
        assert "Permission denied" not in err and "emerg" not in err, err
        assert "GET /healthz" not in (root / "stdout").read_text()  # access_log off there
    finally:
        shutil.rmtree(root)
