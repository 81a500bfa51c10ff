"""README promises about cluster commands, through the CLI as a user types them: where the
kubeconfig comes from and `--context`, the first line of `up` naming the API server, the
live view on a terminal, `status` (table, exit code, health JSON) and the bootstrap Job
run again after a password change."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port, run_otactl

from .conftest import LocalCluster
from .test_deploy import Deployment

pytestmark = pytest.mark.integration


@pytest.fixture
def deployed(local_cluster: LocalCluster, standin, tmp_path: Path):  # type: ignore[no-untyped-def]
    d = Deployment(local_cluster, tmp_path)
    yield d
    local_cluster.kubectl("delete", "namespace", d.ns, "--wait=false", check=False)


def kubeconfigs(local_cluster: LocalCluster, folder: Path) -> dict[str, Path]:
    """good: the cluster's kubeconfig; dead: the same pointing at a closed port; both: two
    contexts, the current one dead."""
    folder.mkdir(parents=True, exist_ok=True)
    good = yaml.safe_load(local_cluster.kubeconfig.read_text())
    dead = json.loads(json.dumps(good))
    dead["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    both = json.loads(json.dumps(good))
    [cluster], [user], [ctx] = good["clusters"], good["users"], good["contexts"]
    both["clusters"] = [
        {**cluster, "name": "live"},
        {**dead["clusters"][0], "name": "gone"},
    ]
    both["users"] = [{**user, "name": "admin"}]
    both["contexts"] = [
        {"name": "live", "context": {**ctx["context"], "cluster": "live", "user": "admin"}},
        {"name": "gone", "context": {**ctx["context"], "cluster": "gone", "user": "admin"}},
    ]
    both["current-context"] = "gone"
    paths = {}
    for name, cfg in (("good", good), ("dead", dead), ("both", both)):
        paths[name] = folder / f"{name}.kubeconfig"
        paths[name].write_text(yaml.safe_dump(cfg))
    return paths


def reached(proc: subprocess.CompletedProcess[str]) -> bool:
    """`status -o json` got an answer from the API server (0 or 1), not exit 4."""
    if proc.returncode == 4:
        assert "cannot reach the Kubernetes API" in proc.stderr
        return False
    assert proc.returncode in (0, 1), proc.stderr
    assert "objects" in json.loads(proc.stdout)
    return True


def test_kubeconfig_lookup_order_and_context(local_cluster: LocalCluster, tmp_path: Path):
    kc = kubeconfigs(local_cluster, tmp_path / "kc")
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    ns = f"kc-{uuid.uuid4().hex[:8]}"

    def status(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_otactl(
            "--generated", str(tmp_path / "gen"), "status", "-n", ns, "-o", "json", *args,
            env={"HOME": str(home), "KUBERNETES_SERVICE_HOST": "", **env},
        )  # fmt: skip

    # Nothing configured: one line saying how to configure one.
    nothing = status()
    assert nothing.returncode == 2
    assert nothing.stderr.startswith("error: no cluster configured: pass --kubeconfig")
    # ~/.kube/config when there is nothing else.
    (home / ".kube" / "config").write_text(kc["good"].read_text())
    assert reached(status())
    # $KUBECONFIG comes before ~/.kube/config...
    assert not reached(status(KUBECONFIG=str(kc["dead"])))
    # ...its missing entries are skipped, as kubectl skips them...
    assert reached(status(KUBECONFIG=f"{tmp_path / 'missing'}:{kc['good']}:{kc['dead']}"))
    # ...and --kubeconfig before $KUBECONFIG.
    assert reached(status("--kubeconfig", str(kc["good"]), KUBECONFIG=str(kc["dead"])))
    # --context picks a context other than the current one.
    assert not reached(status(KUBECONFIG=str(kc["both"])))
    assert reached(status("--context", "live", KUBECONFIG=str(kc["both"])))
    unknown = status("--context", "nosuch", KUBECONFIG=str(kc["both"]))
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == ['error: context "nosuch" does not exist']


def test_up_names_the_api_server_first_and_shows_a_live_view_on_a_terminal(
    deployed: Deployment, tmp_path: Path
):
    kc = kubeconfigs(deployed.cluster, tmp_path / "kc")
    server = yaml.safe_load(kc["both"].read_text())["clusters"][0]["cluster"]["server"]
    args = deployed.args("up", "--dry-run", *deployed.cluster_args())
    args[args.index("--kubeconfig") + 1] = str(kc["both"])
    plain = run_otactl(*args, "--context", "live")
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr.splitlines()[0] == f"cluster: {server} (live)"

    # On a terminal: the same first line, then a live table of phases and objects.
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
    env.update(COLUMNS="160", LINES="50", TERM="xterm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "otactl", *args, "--context", "live"],
        stdin=secondary, stdout=secondary, stderr=secondary, env=env, close_fds=True,
    )  # fmt: skip
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.wait(timeout=300) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert screen.startswith(f"cluster: {server} (live)")
    assert "\x1b[" in screen  # drawn with terminal control sequences, not plain lines
    for word in ("component", "state", "detail", "[pki]", "done"):
        assert word in screen, word


def test_dry_run_tells_what_it_would_do_and_exit_code(deployed: Deployment):  # type: ignore[no-untyped-def]
    """`up --dry-run` on an empty namespace says "would create" and never "created";
    `--exit-code` is 1 while something would change, 0 once nothing would."""
    fresh = deployed.otactl("up", "--dry-run", "--exit-code")
    assert fresh.returncode == 1, fresh.stderr
    assert "[namespace] done: would create" in fresh.stderr
    assert re.search(r"\[infra\] done: \d+ objects would change", fresh.stderr), fresh.stderr
    assert not re.search(r"done: (created|\d+ objects? changed|\d+ objects? deleted)", fresh.stderr)
    assert re.search(r"^would change \d+ objects \(0 unchanged\)$", fresh.stdout, re.M)
    assert deployed.otactl("up", "--timeout", "4m").returncode == 0
    again = deployed.otactl("up", "--dry-run", "--exit-code")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "no changes"
    real = deployed.otactl("up", "--exit-code", "--timeout", "240")
    assert real.returncode == 0, real.stderr
    assert real.stdout.splitlines()[0].startswith("0 objects changed, ")


def test_status_table_exit_code_and_health_json(deployed: Deployment, standin):  # type: ignore[no-untyped-def]
    def status(*extra: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_otactl(*deployed.args("status", *deployed.cluster_args(), *extra), env=env)

    # Nothing deployed yet: one line, exit 1.
    empty = status()
    assert empty.returncode == 1 and empty.stdout == ""
    assert empty.stderr.strip().splitlines() == [
        f"no OTA CE objects in namespace {deployed.ns}: run `otactl up`"
    ]
    assert deployed.otactl("up", "--timeout", "240").returncode == 0

    # Not a terminal (and a narrow COLUMNS): whole lines, never cut or wrapped.
    table = status(COLUMNS="40")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "READY", "DETAIL", "ADDRESS"]
    assert {line.split()[0] for line in lines[1:]} <= {
        "Deployment", "StatefulSet", "Job", "Service", "health",
    }  # fmt: skip
    rows = {tuple(line.split()[:3]) for line in lines[1:]}
    assert ("Deployment", "director", "yes") in rows and ("health", "director", "yes") in rows
    gateway = next(line for line in lines if "gateway-service" in line)
    assert f"8443:{deployed.node_port}" in gateway

    standin.set(never_healthy=["tuf-keyserver"])
    sick = status()
    assert sick.returncode == 1
    sick_rows = {tuple(line.split()[:3]) for line in sick.stdout.splitlines()[1:]}
    assert ("health", "tuf-keyserver", "no") in sick_rows
    assert ("health", "director", "yes") in sick_rows
    report = status("-o", "json")
    assert report.returncode == 1
    data = json.loads(report.stdout)
    assert data["ok"] is False
    health = {h["service"]: h for h in data["health"]}
    assert set(health["director"]) == {
        "service", "status", "http_status", "latency_ms", "reason", "path", "failing",
    }  # fmt: skip
    assert health["director"]["status"] == "OK" and health["director"]["http_status"] == 200
    assert health["tuf-keyserver"]["http_status"] == 503
    assert health["tuf-keyserver"]["status"] != "OK"
    standin.set(never_healthy=[])

    # A read-only user: workloads shown, health unknown (the service proxy is refused).
    kubectl = deployed.cluster.kubectl
    ns = deployed.ns
    kubectl("create", "serviceaccount", "viewer", "-n", ns)
    kubectl("create", "role", "viewer", "-n", ns, "--verb=get,list,watch",
            "--resource=services,deployments,statefulsets,jobs")  # fmt: skip
    kubectl("create", "rolebinding", "viewer", "-n", ns, "--role=viewer",
            f"--serviceaccount={ns}:viewer")  # fmt: skip
    config = yaml.safe_load(deployed.cluster.kubeconfig.read_text())
    config["users"][0]["user"] = {
        "token": kubectl("create", "token", "viewer", "-n", ns).stdout.strip()
    }
    viewer = deployed.generated.parent / "viewer.kubeconfig"
    viewer.write_text(yaml.safe_dump(config))
    args = deployed.args("status", *deployed.cluster_args())
    args[args.index("--kubeconfig") + 1] = str(viewer)
    read_only = run_otactl(*args)
    assert read_only.returncode == 0, read_only.stderr
    ro_rows = {tuple(line.split()[:3]) for line in read_only.stdout.splitlines()[1:]}
    assert ("Deployment", "director", "yes") in ro_rows
    assert ("health", "director", "unknown") in ro_rows
    [note] = read_only.stderr.strip().splitlines()
    assert note.startswith("health unknown: ") and "forbidden" in note.lower()


def test_a_changed_password_runs_the_bootstrap_job_again(deployed: Deployment):
    assert deployed.otactl("up", "--timeout", "240").returncode == 0

    def job() -> dict:
        got = deployed.cluster.kubectl(
            "get", "job", "db-bootstrap", "-n", deployed.ns, "-o", "json"
        )
        return json.loads(got.stdout)

    first = job()
    assert first["status"].get("succeeded") == 1
    secrets_file = deployed.server_dir / "secrets.yaml"
    secrets = yaml.safe_load(secrets_file.read_text())
    secrets["db_passwords"]["director"] = "rotated-" + uuid.uuid4().hex
    secrets_file.write_text(yaml.safe_dump(secrets))

    again = deployed.otactl("up", "--timeout", "240", "-o", "json")
    assert again.returncode == 0, again.stderr
    assert f"Job {deployed.ns}/db-bootstrap" in json.loads(again.stdout)["changed"]
    second = job()
    assert second["metadata"]["uid"] != first["metadata"]["uid"]  # a new run, not the old Job
    assert second["status"].get("succeeded") == 1
    sql = deployed.cluster.kubectl(
        "get", "secret", "db-bootstrap", "-n", deployed.ns,
        "-o", "jsonpath={.data.create_databases\\.sql}",
    ).stdout  # fmt: skip
    assert secrets["db_passwords"]["director"] in base64.b64decode(sql).decode()
    # Nothing changed since: the Job is left alone.
    third = deployed.otactl("up", "--timeout", "120", "-o", "json")
    assert json.loads(third.stdout)["changed"] == []
    assert job()["metadata"]["uid"] == second["metadata"]["uid"]


def test_image_pull_errors_and_crash_loops_are_explained(deployed: Deployment):
    # kwok-stages.yaml: these two images fail as a kubelet reports it (no container runs).
    proc = deployed.otactl(
        "up", "--timeout", "240", "--set", "timeouts.services=20",
        "--set", "services.director.image=fault.invalid/image-pull-error:0",
        "--set", "services.tuf_keyserver.image=fault.invalid/crash-loop:0",
    )  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: services: timed out after 20s; not ready: ")
    ns = re.escape(deployed.ns)
    assert re.search(
        rf"Deployment {ns}/director: 0/1 available \(pod director-\S+ container director "
        r'cannot pull its image: Back-off pulling image "fault\.invalid/image-pull-error:0"\)',
        last,
    ), last
    assert re.search(
        rf"Deployment {ns}/tuf-keyserver: 0/1 available \(pod tuf-keyserver-\S+ container "
        r"tuf-keyserver is crash-looping \(restarts 5, last exit code 1\)\)",
        last,
    ), last
    assert f"{deployed.ns}/device-registry" not in last  # the healthy ones are not blamed
