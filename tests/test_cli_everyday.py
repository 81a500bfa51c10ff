"""Everyday use through the CLI as a user types it (issue 16): concurrent runs on one
generated/ folder, `otactl version`, and a refused connection to the API server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from cryptography import x509

from otactl import locks
from tests.conftest import free_port, run_otactl


def _start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
    return subprocess.Popen(
        [sys.executable, "-m", "otactl", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_three_new_server_at_once_on_an_empty_folder_all_succeed(tmp_path: Path) -> None:
    # RSA keys take long enough to make that the three runs overlap.
    runs = [
        _start("--generated", "gen", "new-server", "--set", "pki.key_type=rsa", cwd=tmp_path)
        for _ in range(3)
    ]
    outcomes = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    for code, _, err in outcomes:
        assert code == 0, err
        assert "remove" not in err and "missing" not in err  # never advice to delete a key
    created = [err for _, _, err in outcomes if "created server CA" in err]
    assert len(created) == 1  # one CA, made once
    for _, _, err in outcomes:
        # "nothing to do" is said only by a run that found the PKI complete
        assert "nothing to do" in err or "created device CRL" in err
    server = tmp_path / "gen" / "ota-ce.example.com"
    ca = x509.load_pem_x509_certificate((server / "server_ca.pem").read_bytes())
    gateway = x509.load_pem_x509_certificate((server / "server.crt").read_bytes())
    gateway.verify_directly_issued_by(ca)
    assert (server / "devices" / "crl.pem").exists()


def test_a_run_that_must_wait_names_the_holder_then_goes_on(tmp_path: Path) -> None:
    server = tmp_path / "gen" / "ota-ce.example.com"
    with locks.folder_lock(server):
        run = _start("--generated", "gen", "new-server", cwd=tmp_path)
        assert run.stderr is not None
        line = run.stderr.readline()
        assert line.startswith(f"waiting for {server.resolve()} (server PKI): `"), line
        assert f"(pid {os.getpid()} on {socket.gethostname()}, since " in line
        assert run.poll() is None  # still waiting while the lock is held
    assert run.wait(timeout=120) == 0
    assert "created server CA" in run.stderr.read()
    assert (server / "ca.key").exists()


def test_version_names_otactl_and_the_pinned_images(tmp_path: Path) -> None:
    text = run_otactl("version", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].startswith("otactl ")
    data = json.loads(run_otactl("version", "-o", "json", cwd=tmp_path).stdout)
    assert data["otactl"] == text.stdout.splitlines()[0].removeprefix("otactl ")
    images = data["images"]
    assert images["director"].endswith(":eb75c8bd21b36e7809397cecf9fc652d611e49d3")
    assert images["tuf-reposerver"].endswith(":1d0d714a6ff42d2f041fa1bfd0eb2330ccbbf836")
    assert {"gateway", "reverse-proxy", "mysql", "kafka", "campaigner-daemon"} <= set(images)
    # the values in force: a --set shows in the set
    changed = run_otactl("version", "-o", "json", "--set", "gateway.image=nginx:1.28.0")
    assert json.loads(changed.stdout)["images"]["gateway"] == "nginx:1.28.0"


def test_a_refused_connection_to_the_api_server_is_exit_4_at_once(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1", "kind": "Config", "current-context": "t",
                "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "t", "user": {"token": "x"}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
            }
        )
    )  # fmt: skip
    env = {"OTACTL_HEARTBEAT_SECONDS": "0.2"}
    proc = run_otactl("status", "--kubeconfig", str(kubeconfig), cwd=tmp_path, env=env)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr == (
        f"error: cannot reach the Kubernetes API at http://127.0.0.1:{port}: connection "
        "refused (nothing listens there: is the cluster running?)\n"
    )  # one line, and no "retrying" notices before it


def test_generated_is_found_walking_up_and_no_second_ca_is_made_elsewhere(
    tmp_path: Path,
) -> None:
    state = {"XDG_STATE_HOME": str(tmp_path / "state")}  # the list of CAs otactl made
    project = tmp_path / "project"
    project.mkdir()
    assert run_otactl("new-server", cwd=project, env=state).returncode == 0
    server = project / "generated" / "ota-ce.example.com"
    assert (server / "ca.key").exists()

    # From a sub-folder: the project's generated/ (as git finds .git), not a new one.
    deep = project / "src" / "deep"
    deep.mkdir(parents=True)
    made = run_otactl("new-device", "--no-register", "kiosk-1", "-o", "json", cwd=deep, env=state)
    assert made.returncode == 0, made.stderr
    assert Path(json.loads(made.stdout)["path"]).resolve().parent == (server / "devices")
    assert not (deep / "generated").exists()
    # otactl.yaml marks a project too: its values are read from a sub-folder
    (project / "otactl.yaml").write_text("tenant: from-the-project\n")
    shown = run_otactl("config", "show", "-o", "json", cwd=deep, env=state)
    assert json.loads(shown.stdout)["tenant"] == "from-the-project"

    # Outside any project: absolute paths, and where the PKI is.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lost = run_otactl("new-device", "--no-register", "kiosk-2", cwd=elsewhere, env=state)
    assert lost.returncode == 3
    assert lost.stderr == (
        f"error: {elsewhere / 'generated' / 'ota-ce.example.com' / 'devices' / 'ca.crt'} is "
        f"missing: run `otactl new-server` first; otactl made a server PKI in {server}: run "
        f"otactl from {project}, or pass --generated {project / 'generated'}\n"
    )
    # ... and no second CA there without an explicit --generated
    refused = run_otactl("new-server", cwd=elsewhere, env=state)
    assert refused.returncode == 3
    assert refused.stderr.startswith(
        f"error: no generated/ or otactl.yaml in {elsewhere} or any folder above, and otactl "
        f"made a server PKI in {server}: run otactl from {project}"
    )
    assert not (elsewhere / "generated").exists()
    meant = run_otactl("--generated", "generated", "new-server", cwd=elsewhere, env=state)
    assert meant.returncode == 0, meant.stderr
    assert (elsewhere / "generated" / "ota-ce.example.com" / "ca.key").exists()


def test_two_batches_at_once_make_each_device_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
    assert run_otactl("--generated", "gen", "new-server", cwd=tmp_path).returncode == 0
    batch = [
        "--generated",
        "gen",
        "new-device",
        "--no-register",
        "--count",
        "40",
        "--prefix",
        "car",
    ]
    runs = [
        subprocess.Popen([sys.executable, "-m", "otactl", *batch, "-o", "json"], cwd=tmp_path,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    for code, _, err in results:
        assert code == 0, err
    made = sorted(json.loads(out)["created"] for _, out, _ in results)
    assert sum(made) == 40  # each name once: the second waited, then skipped them
    manifest = tmp_path / "gen" / "ota-ce.example.com" / "devices" / "manifest.jsonl"
    names = [json.loads(line)["name"] for line in manifest.read_text().splitlines()]
    assert sorted(names) == [f"car-{i:04d}" for i in range(1, 41)]
