"""Device keys as aktualizr's TLS stack loads them: libcurl with OpenSSL, the key handed over
as a PEM file (uptane/aktualizr src/libaktualizr/http/httpclient.cc, HttpClient::setCerts:
CURLOPT_SSLKEY with CURLOPT_SSLKEYTYPE "PEM", CURLOPT_SSLCERT, CURLOPT_CAINFO; the same in
2018.1's src/httpclient.cc). The curl tool sets exactly those options from --key,
--key-type, --cert and --cacert; the other end is the gateway's real nginx."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from otactl import devices, pki
from otactl.config import load_values
from tests import test_gateway_tls
from tests.conftest import require_binary
from tests.test_gateway_tls import SERVER, StartGateway

# The gateway's nginx and its echoing upstream, as test_gateway_tls runs them.
start_gateway = test_gateway_tls.start_gateway
upstream = test_gateway_tls.upstream


@pytest.mark.parametrize(("ca_keys", "device_keys"), [("rsa", "rsa"), ("rsa", "ec"), ("ec", "rsa")])
def test_curl_presents_the_device_key_like_aktualizr(
    tmp_path: Path,
    start_gateway: StartGateway,
    ca_keys: pki.KeyType,
    device_keys: pki.KeyType,
) -> None:
    curl = require_binary("curl")
    server_dir = tmp_path / SERVER
    settings = pki.PkiSettings(key_type=ca_keys, device_key_type=device_keys)
    pki.ensure_server_pki(server_dir, SERVER, settings, extra_ips=["127.0.0.1"])
    values = load_values()
    opts = devices.BundleOptions(
        f"https://{SERVER}:8443", values.device, days=30, key_type=settings.device_keys
    )
    dev = devices.new_device(server_dir, devices.DeviceSpec("d1"), opts)
    assert (dev.path / "pkey.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    gw = start_gateway(server_dir)

    def fetch(key: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                curl, "--silent", "--show-error", "--fail",
                "--resolve", f"{SERVER}:{gw.port}:127.0.0.1",
                "--cacert", str(dev.path / "root.crt"),
                "--cert", str(dev.path / "client.pem"), "--cert-type", "PEM",
                "--key", str(key), "--key-type", "PEM",
                f"https://{SERVER}:{gw.port}/director/targets.json",
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    got = fetch(dev.path / "pkey.pem")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["headers"]["x-ats-device-uuid"] == dev.uuid

    # And a key that does not belong to the certificate is refused by curl itself.
    other = devices.new_device(server_dir, devices.DeviceSpec("d2"), opts)
    wrong = fetch(other.path / "pkey.pem")
    assert wrong.returncode != 0 and "private key" in wrong.stderr.lower(), wrong.stderr
