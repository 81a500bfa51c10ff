"""`--push`: device bundles copied over SSH to a real OpenSSH server on 127.0.0.1.

The fixture runs /usr/sbin/sshd as whoever runs the tests (root in CI, or any user: sshd
then logs in only that user) on a free port, `UsePAM no`, key login only, with a host key
and authorized_keys of its own; the "device" file system is a temporary folder given as
the remote base path (what `device.storage_path` says on a real device). No sshd installed
fails the tests (no skip)."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, require_binary, run_otactl, wait_for_port

from otactl import devices
from otactl.config import load_values
from otactl.errors import ConfigError, PushError
from otactl.pki import PkiSettings, ensure_server_pki
from otactl.push import parse_target, push_bundle

SERVER = "ota-ce.example.com"
USER = getpass.getuser()


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class Sshd:
    port: int
    host_pub: str  # "ssh-ed25519 AAAA..."
    client_key: Path
    root: Path

    @property
    def target(self) -> str:
        return f"{USER}@127.0.0.1:{self.port}"

    def known_hosts(self, path: Path, pub: str | None = None) -> Path:
        path.write_text(f"[127.0.0.1]:{self.port} {pub or self.host_pub}\n")
        return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    sshd_bin = require_binary("sshd", "/usr/sbin/sshd")
    d = tmp_path_factory.mktemp("sshd")
    host_pub = keygen(d / "host_ed25519")
    client_pub = keygen(d / "client_ed25519")
    (d / "authorized_keys").write_text(client_pub + "\n")
    port = free_port()
    config = d / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_ed25519'}\n"
        f"PidFile {d / 'sshd.pid'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:  # as root, sshd refuses to start without its privsep folder
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = open(d / "sshd.log", "wb")  # noqa: SIM115 (open for the server's lifetime)
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(config)], stderr=log)
    try:
        wait_for_port(port, proc=proc)
        yield Sshd(port, " ".join(host_pub.split()[:2]), d / "client_ed25519", d)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    d = tmp_path / "generated" / SERVER
    ensure_server_pki(d, SERVER, PkiSettings())
    return d


def make_bundle(server_dir: Path, name: str, fmt: str = "implicit") -> devices.BundleInfo:
    device = load_values().device.model_copy(update={"format": fmt})
    opts = devices.BundleOptions(f"https://{SERVER}:30443", device, days=30)
    return devices.new_device(server_dir, devices.DeviceSpec(name), opts)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_push_implicit_bundle_checks_host_key(sshd: Sshd, server_dir: Path, tmp_path: Path) -> None:
    dev = make_bundle(server_dir, "kiosk")
    base = tmp_path / "device" / "var" / "sota"
    known = sshd.known_hosts(tmp_path / "known_hosts")
    result = push_bundle(
        dev.path, sshd.target, remote_base=str(base), ssh_key=sshd.client_key, known_hosts=known
    )
    assert result.files["pkey.pem"] == f"{base}/pkey.pem"
    assert sorted(p.name for p in base.iterdir()) == [
        "client.pem", "pkey.pem", "root.crt", "sota.toml"
    ]  # fmt: skip
    for name in ("sota.toml", "root.crt", "client.pem", "pkey.pem"):
        assert (base / name).read_bytes() == (dev.path / name).read_bytes()
    assert mode(base / "pkey.pem") == 0o600 and mode(base / "client.pem") == 0o644
    assert mode(base) == 0o700 and mode(tmp_path / "device") == 0o700  # made by the push
    # Again (a re-issued bundle, say): replaced in place, no temporary files left.
    push_bundle(
        dev.path, sshd.target, remote_base=str(base), ssh_key=sshd.client_key, known_hosts=known
    )
    assert len(list(base.iterdir())) == 4


def test_push_device_cred_layout(sshd: Sshd, server_dir: Path, tmp_path: Path) -> None:
    dev = make_bundle(server_dir, "cred", "device-cred")
    base = tmp_path / "sota"
    push_bundle(
        dev.path, sshd.target, remote_base=str(base), ssh_key=sshd.client_key,
        known_hosts=sshd.known_hosts(tmp_path / "known_hosts"),
    )  # fmt: skip
    assert sorted(p.name for p in base.iterdir()) == ["import", "sota.toml"]
    imported = base / "import"
    assert sorted(p.name for p in imported.iterdir()) == [
        "client.pem", "gateway.url", "pkey.pem", "root.crt"
    ]  # fmt: skip
    assert (imported / "gateway.url").read_text() == f"https://{SERVER}:30443"
    assert mode(imported / "pkey.pem") == 0o600


def test_unknown_and_changed_host_keys_are_refused(
    sshd: Sshd, server_dir: Path, tmp_path: Path
) -> None:
    dev = make_bundle(server_dir, "d1")
    base = tmp_path / "sota"
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(PushError) as e:
        push_bundle(dev.path, sshd.target, remote_base=str(base), ssh_key=sshd.client_key,
                    known_hosts=empty)  # fmt: skip
    assert "host key ssh-ed25519 SHA256:" in str(e.value) and "is not in" in str(e.value)
    assert "--insecure-accept-host-key" in str(e.value) and not base.exists()
    # A recorded key that differs: refused even when unknown hosts are accepted.
    other = keygen(tmp_path / "other")
    changed = sshd.known_hosts(tmp_path / "changed", " ".join(other.split()[:2]))
    with pytest.raises(PushError, match="does not match the one in"):
        push_bundle(dev.path, sshd.target, remote_base=str(base), ssh_key=sshd.client_key,
                    known_hosts=changed, accept_unknown_host=True)  # fmt: skip
    assert not base.exists()
    # The explicit opt-out for an unknown host, and known_hosts stays as it was.
    push_bundle(dev.path, sshd.target, remote_base=str(base), ssh_key=sshd.client_key,
                known_hosts=empty, accept_unknown_host=True)  # fmt: skip
    assert (base / "pkey.pem").exists() and empty.read_text() == ""


def test_login_errors(sshd: Sshd, server_dir: Path, tmp_path: Path) -> None:
    dev = make_bundle(server_dir, "d1")
    known = sshd.known_hosts(tmp_path / "known_hosts")
    stranger = tmp_path / "stranger"
    keygen(stranger)
    with pytest.raises(PushError, match=f"{sshd.target}: login refused with key"):
        push_bundle(dev.path, sshd.target, remote_base=str(tmp_path / "s"), ssh_key=stranger,
                    known_hosts=known)  # fmt: skip
    closed = free_port()
    with pytest.raises(PushError, match=f"root@127.0.0.1:{closed}: cannot connect"):
        push_bundle(dev.path, f"root@127.0.0.1:{closed}", ssh_key=sshd.client_key,
                    known_hosts=known, timeout=5)  # fmt: skip
    with pytest.raises(ConfigError, match="expected root@HOST"):
        parse_target("root@host:0")


def test_key_from_the_agent(
    sshd: Sshd, server_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = make_bundle(server_dir, "d1")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists():
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], env=env, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh keys: the agent's only
        base = tmp_path / "sota"
        push_bundle(dev.path, sshd.target, remote_base=str(base),
                    known_hosts=sshd.known_hosts(tmp_path / "known_hosts"))  # fmt: skip
        assert (base / "client.pem").read_bytes() == (dev.path / "client.pem").read_bytes()
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_new_device_cli_push(sshd: Sshd, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    base = tmp_path / "device" / "var" / "sota"
    env = {"OTACTL_GENERATED": str(tmp_path / "gen"), "HOME": str(home)}
    args = ["--no-register", "--push", sshd.target, "--ssh-key", str(sshd.client_key),
            "--set", f"device.storage_path={base}/", "-o", "json"]  # fmt: skip
    assert run_otactl("new-server", env=env).returncode == 0
    # ~/.ssh/known_hosts is empty: refused, one line, exit 13; the bundle itself is kept.
    res = run_otactl("new-device", "kiosk", *args, env=env)
    assert res.returncode == 13 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"error: {sshd.target}: host key ssh-ed25519 SHA256:")
    # --insecure-accept-host-key: the unknown host is accepted, known_hosts is not written.
    accepted = run_otactl("new-device", "kiosk", *args, "--insecure-accept-host-key", env=env)
    assert accepted.returncode == 0, accepted.stderr
    assert (base / "import" / "pkey.pem").read_bytes() == (
        Path(json.loads(accepted.stdout)["path"]) / "pkey.pem"
    ).read_bytes()
    assert not (home / ".ssh" / "known_hosts").exists()
    shutil.rmtree(base)
    # A changed key is refused even with it.
    stranger = tmp_path / "other_host"
    sshd.known_hosts(home / ".ssh" / "known_hosts", keygen(stranger))
    changed = run_otactl("new-device", "kiosk", *args, "--insecure-accept-host-key", env=env)
    assert changed.returncode == 13 and changed.stderr.count("\n") == 1, changed.stderr
    assert not base.exists()
    sshd.known_hosts(home / ".ssh" / "known_hosts")
    res = run_otactl("new-device", "kiosk", *args, env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # The default format (device-cred): credentials in the import folder sota.toml names.
    assert out["pushed"]["pkey.pem"] == f"{base}/import/pkey.pem" and "registered" not in out
    assert f'tls_pkey_path = "{base}/import/pkey.pem"' in (base / "sota.toml").read_text()
    imported = base / "import" / "client.pem"
    assert imported.read_bytes() == (Path(out["path"]) / "client.pem").read_bytes()
    many = run_otactl("new-device", "--count", "2", "--prefix", "p", *args, env=env)
    assert many.returncode == 2 and "--push goes with a single NAME" in many.stderr
    shutil.rmtree(base)


def test_default_base_is_the_bundles_storage_path(server_dir: Path, tmp_path: Path) -> None:
    from otactl.push import bundle_storage_path

    dev = make_bundle(server_dir, "d1")
    assert bundle_storage_path(dev.path) == "/var/sota/"
    (tmp_path / "sota.toml").write_text('[pacman]\ntype = "ostree"\n')
    with pytest.raises(ConfigError, match=r"no \[storage\] path"):
        bundle_storage_path(tmp_path)
