"""`otactl gke`: the real google-cloud-container client over HTTP against a local Container API.

The fake (tests/gke_fake.py) answers as the v1 REST API does, checks the bearer tokens its
own token endpoint issued, and models zonal and regional clusters and their operations.
The CLI is run as a user types it (subprocess, clean environment, no ADC, no metadata
server).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import pty
import re
import select
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gke_fake import (
    CLOUD_SDK_CLIENT_ID,
    ENDPOINT,
    PRIVATE_ENDPOINT,
    PROJECT,
    REGION,
    REGIONS,
    RESET,
    ZONE,
    FakeContainerApi,
    Server,
    handler,
)

from otactl import gke
from otactl.errors import (
    ConfigError,
    GkeConflict,
    GkeError,
    GkeForbidden,
    GkeInvalid,
    GkeNotFound,
    GkeQuota,
    WaitTimeout,
)
from otactl.gke import operations as gke_operations

ROOT = Path(__file__).resolve().parent.parent
LOCATION = ZONE
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


@dataclass
class Fake:
    api: FakeContainerApi
    url: str
    sa_key: Path


@pytest.fixture(scope="module")
def rsa_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def fake(tmp_path: Path, rsa_key_pem: str) -> Iterator[Fake]:
    """The fake API on 127.0.0.1 (random port) and a service-account key whose token
    endpoint is that server."""
    api = FakeContainerApi()
    server = Server(("127.0.0.1", 0), handler(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    private = serialization.load_pem_private_key(rsa_key_pem.encode(), None)
    api.keys["0123456789abcdef"] = private.public_key()
    key = tmp_path / "sa.json"
    key.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "0123456789abcdef",
                "private_key": rsa_key_pem,
                "client_email": f"otactl@{PROJECT}.iam.gserviceaccount.com",
                "client_id": "100000000000000000001",
                "token_uri": f"{url}/token",
            }
        )
    )
    try:
        yield Fake(api, url, key)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def client_for(f: Fake) -> Any:
    creds, _ = gke.load_credentials(f.sa_key)
    return gke.make_client(creds, f.url)


def spec(name: str = "ota", location: str = LOCATION, **kw: Any) -> gke.ClusterSpec:
    return gke.ClusterSpec(PROJECT, location, name, **kw)


def quick(seen: list[gke.Progress] | None = None, timeout: float = 30) -> gke.Waiting:
    return gke.Waiting(
        timeout=timeout, poll_interval=0.01, progress=None if seen is None else seen.append
    )


def otactl(
    *args: str, fake: Fake | None = None, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, with a clean environment: no ADC, no metadata server."""
    full = {
        "PATH": str(cwd / "bin"),
        "HOME": str(cwd),
        "PYTHONPATH": str(ROOT),
        "NO_GCE_CHECK": "true",  # google-auth must not probe the GCE metadata server
        "LANG": "C.UTF-8",
    }
    if fake is not None:
        full[gke.ENDPOINT_ENV] = fake.url
    full.update(env or {})
    (cwd / "bin").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "otactl", *args],
        cwd=cwd, env=full, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def where(f: Fake, location: str = LOCATION) -> list[str]:
    return ["--project", PROJECT, "--location", location, "--credentials", str(f.sa_key)]


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The error, which must be one line and the last on stderr (progress lines come first)."""
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:], proc.stderr
    return errors[0]


def sent_cluster(f: Fake) -> dict[str, Any]:
    body: dict[str, Any] = f.api.bodies[f.api.requests.index(("POST", "create"))]["cluster"]
    return body


# --- create ---------------------------------------------------------------------------------


def test_create_follows_the_operation_through_its_stages(fake: Fake) -> None:
    fake.api.polls = 4
    seen: list[gke.Progress] = []
    info = gke.create_cluster(client_for(fake), spec(nodes=3), quick(seen))
    assert info.created and info.status == "RUNNING" and info.endpoint == ENDPOINT
    # progress.stages: the stage RUNNING at each poll is what the user sees.
    assert [(p.status, p.detail) for p in seen] == [
        ("PENDING", ""),
        ("RUNNING", "Creating the control plane"),
        ("RUNNING", "Creating node pools"),
        ("RUNNING", "Health checks"),
        ("DONE", ""),
    ]
    assert fake.api.calls("POST", "create") == 1 and fake.api.calls("GET", "operation") == 4
    sent = sent_cluster(fake)
    assert sent["name"] == "ota" and sent["ipAllocationPolicy"] == {"useIpAliases": True}
    assert sent["nodePools"] == [{
        "name": "ota-pool", "initialNodeCount": 3,
        "config": {"machineType": "e2-standard-4", "oauthScopes": list(gke.GKE_DEFAULT_SCOPES)},
    }]  # fmt: skip


def test_create_sends_every_option_under_its_v1_field_name(fake: Fake) -> None:
    options = spec(
        location=REGION, machine_type="e2-standard-8", nodes=1, node_pool="ota-nodes",
        release_channel="stable", version="1.33.5-gke.1000", min_nodes=1, max_nodes=4,
        disk_size_gb=50, disk_type="pd-ssd", spot=True,
        node_zones=("europe-west1-b", "europe-west1-c"), network="ota-vpc",
        subnetwork="ota-subnet", service_account=f"nodes@{PROJECT}.iam.gserviceaccount.com",
        scopes=("cloud-platform",), private_nodes=True, master_cidr="172.16.0.0/28",
        authorized_networks=("203.0.113.0/24",), workload_identity=True,
        labels={"team": "ota"},
    )  # fmt: skip
    gke.create_cluster(client_for(fake), options, quick())
    sent = sent_cluster(fake)
    assert sent["releaseChannel"] == {"channel": 3}  # STABLE, as the client encodes enums
    assert sent["initialClusterVersion"] == "1.33.5-gke.1000"
    assert sent["locations"] == ["europe-west1-b", "europe-west1-c"]
    assert (sent["network"], sent["subnetwork"]) == ("ota-vpc", "ota-subnet")
    assert sent["privateClusterConfig"] == {
        "enablePrivateNodes": True, "masterIpv4CidrBlock": "172.16.0.0/28"
    }  # fmt: skip
    assert sent["masterAuthorizedNetworksConfig"] == {
        "enabled": True, "cidrBlocks": [{"cidrBlock": "203.0.113.0/24"}]
    }  # fmt: skip
    assert sent["workloadIdentityConfig"] == {"workloadPool": f"{PROJECT}.svc.id.goog"}
    assert sent["resourceLabels"] == {"team": "ota"}
    (pool,) = sent["nodePools"]
    assert pool["autoscaling"] == {"enabled": True, "minNodeCount": 1, "maxNodeCount": 4}
    assert pool["config"] == {
        "machineType": "e2-standard-8", "diskSizeGb": 50, "diskType": "pd-ssd", "spot": True,
        "oauthScopes": ["https://www.googleapis.com/auth/cloud-platform"],
        "serviceAccount": f"nodes@{PROJECT}.iam.gserviceaccount.com",
    }  # fmt: skip
    # The same settings again are the same cluster.
    assert not gke.create_cluster(client_for(fake), options, quick()).created


def test_create_autopilot_sends_no_node_pool(fake: Fake) -> None:
    gke.create_cluster(client_for(fake), spec(location=REGION, autopilot=True), quick())
    sent = sent_cluster(fake)
    assert sent["autopilot"] == {"enabled": True} and "nodePools" not in sent
    info = gke.create_cluster(client_for(fake), spec(location=REGION, autopilot=True), quick())
    assert not info.created
    with pytest.raises(GkeConflict, match="an Autopilot cluster"):
        gke.create_cluster(client_for(fake), spec(location=REGION), quick())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"autopilot": True}, "Autopilot clusters are regional"),
        ({"location": REGION, "autopilot": True, "spot": True}, "Autopilot manages the nodes"),
        ({"min_nodes": 3}, "both --min-nodes and --max-nodes"),
        ({"min_nodes": 3, "max_nodes": 2}, "0 <= min-nodes <= max-nodes"),
        ({"release_channel": "beta"}, "release channel 'beta' is not one of"),
        ({"disk_type": "hdd"}, "disk type 'hdd'"),
        ({"node_zones": ("us-central1-a",)}, "is not a zone of europe-west1"),
        ({"node_zones": ("europe-west1-c",)}, "include its zone"),
        ({"private_nodes": True, "master_cidr": "172.16.0.0/24"}, "must be a /28"),
        ({"master_cidr": "172.16.0.0/28"}, "for private nodes only"),
        ({"authorized_networks": ("10.0.0.300/8",)}, "is not a CIDR block"),
    ],
)
def test_create_refuses_what_gke_refuses_before_any_request(
    fake: Fake, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        gke.create_cluster(client_for(fake), spec(**options), quick())
    assert fake.api.requests == []


def test_create_in_a_project_without_the_default_network(fake: Fake) -> None:
    with pytest.raises(GkeInvalid, match='invalid request: Network "corp" does not exist'):
        gke.create_cluster(client_for(fake), spec(network="corp"), quick())


def test_create_keeps_an_identical_cluster_without_a_second_create(fake: Fake) -> None:
    fake.api.add_cluster("ota")
    info = gke.create_cluster(client_for(fake), spec(), quick())
    assert not info.created and info.status == "RUNNING"
    assert fake.api.calls("POST", "create") == 0


def test_create_refuses_a_cluster_with_other_settings(fake: Fake) -> None:
    fake.api.add_cluster("ota", machine_type="e2-standard-2")
    with pytest.raises(GkeConflict, match="machine type e2-standard-2, not e2-standard-4"):
        gke.create_cluster(client_for(fake), spec(), quick())
    assert fake.api.calls("POST", "create") == 0


def test_create_waits_for_a_cluster_still_provisioning(fake: Fake) -> None:
    fake.api.add_cluster("other", status="PROVISIONING")
    fake.api.start("other", "CREATE_CLUSTER")
    seen: list[gke.Progress] = []
    info = gke.create_cluster(client_for(fake), spec("other"), quick(seen))
    assert not info.created and info.status == "RUNNING"
    assert {p.status for p in seen} == {"PROVISIONING"}


def test_create_adopts_a_cluster_made_concurrently(fake: Fake) -> None:
    """A 409 on create means someone else won the race: their cluster is judged like any."""
    fake.api.fail(
        "create", 409, "ALREADY_EXISTS", f"Already exists: {PARENT}/clusters/ota.",
        before=lambda: fake.api.add_cluster("ota"),
    )  # fmt: skip
    info = gke.create_cluster(client_for(fake), spec(), quick())
    assert not info.created


def test_create_async_returns_the_started_operation(fake: Fake) -> None:
    info = gke.create_cluster(client_for(fake), spec(), quick(), follow=False)
    op = next(iter(fake.api.operations.values()))
    assert info.created and info.operation == op["name"] and op["status"] == "PENDING"
    assert fake.api.calls("GET", "operation") == 0


# --- regional clusters -----------------------------------------------------------------------


def test_regional_create_spreads_nodes_over_three_zones(fake: Fake) -> None:
    info = gke.create_cluster(client_for(fake), spec(location=REGION, nodes=1), quick())
    assert info.created and info.ref.regional
    cluster = gke.get_cluster(client_for(fake), spec(location=REGION))
    assert list(cluster.locations) == list(REGIONS[REGION][:3])
    assert cluster.current_node_count == 3 and cluster.location == REGION
    # The operation lives under the region, and is polled there.
    op_path = next(iter(fake.api.operations))
    assert op_path.startswith(f"projects/{PROJECT}/locations/{REGION}/operations/")
    assert all(p.startswith(f"/v1/projects/{PROJECT}/locations/{REGION}/") for p in fake.api.paths)
    assert fake.api.operations[op_path]["targetLink"].endswith(f"/locations/{REGION}/clusters/ota")


def test_zonal_operation_links_use_zones(fake: Fake) -> None:
    gke.create_cluster(client_for(fake), spec(), quick())
    op = next(iter(fake.api.operations.values()))
    assert "/zones/europe-west1-b/operations/" in op["selfLink"]
    assert list(gke.get_cluster(client_for(fake), spec()).locations) == [ZONE]


# --- transient failures --------------------------------------------------------------------


TRANSIENT = {
    "reset": (RESET, "", ""),
    "429": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Read requests'."),
    "500": (500, "INTERNAL", "Internal error encountered."),
    "503": (503, "UNAVAILABLE", "The service is currently unavailable."),
}


@pytest.mark.parametrize("failure", sorted(TRANSIENT))
def test_transient_failures_while_polling_are_retried(fake: Fake, failure: str) -> None:
    for _ in range(2):
        fake.api.fail("operation", *TRANSIENT[failure])
    fake.api.fail("get", *TRANSIENT[failure])
    seen: list[gke.Progress] = []
    # The backoff lives where _call reads it: otactl.gke.operations.
    gke_operations.FIRST_PAUSE, saved = 0.01, gke_operations.FIRST_PAUSE
    try:
        info = gke.create_cluster(client_for(fake), spec(), quick(seen))
    finally:
        gke_operations.FIRST_PAUSE = saved
    assert info.created and fake.api.faults == {"operation": [], "get": []}
    assert sum(p.status == "RETRYING" for p in seen) == 3


def test_a_transient_failure_past_the_deadline_is_reported(fake: Fake) -> None:
    fake.api.polls = 1000
    for _ in range(1000):
        fake.api.fail("operation", *TRANSIENT["500"])
    with pytest.raises(GkeError, match="GKE API error 500: Internal error encountered"):
        gke.create_cluster(client_for(fake), spec(), gke.Waiting(0.5, 0.01, None))


def test_operation_past_its_deadline_is_a_wait_timeout(fake: Fake) -> None:
    fake.api.polls = 1000
    with pytest.raises(WaitTimeout, match=r"still RUNNING after .*run the command again"):
        gke.create_cluster(client_for(fake), spec(), gke.Waiting(0.2, 0.05, None))


# --- errors ---------------------------------------------------------------------------------


def test_failed_operation_raises_its_reason(fake: Fake) -> None:
    reason = "Google Compute Engine: Quota 'SSD_TOTAL_GB' exceeded. Limit: 500.0 in region."
    fake.api.op_errors.append({"code": 8, "message": reason})
    with pytest.raises(GkeQuota) as e:
        gke.create_cluster(client_for(fake), spec(), quick())
    op = next(iter(fake.api.operations.values()))["name"]
    assert str(e.value) == (
        f"gke cluster {PARENT}/clusters/ota: create cluster operation {op} failed: "
        f"quota exhausted: SSD_TOTAL_GB: {reason}"
    )
    # The failed cluster stays, in ERROR, until someone deletes it.
    with pytest.raises(GkeError, match=f"exists but is ERROR: {re.escape(reason)}; delete it"):
        gke.create_cluster(client_for(fake), spec(), quick())


def test_a_stockout_is_not_a_quota(fake: Fake) -> None:
    # RESOURCE_EXHAUSTED like a quota, but GCE_STOCKOUT (StatusCondition.Code 1) says why.
    message = (
        "Try a different location, or try again later: Google Compute Engine does not have "
        "enough resources available to fulfill request: europe-west1-b."
    )
    fake.api.op_errors.append({
        "code": 8, "message": message, "conditions": [{"code": 1, "message": message}],
    })  # fmt: skip
    with pytest.raises(GkeError) as e:
        gke.create_cluster(client_for(fake), spec(), quick())
    assert type(e.value) is GkeError and e.value.exit_code == 9
    assert "no capacity for these nodes in this zone now (stockout, not a quota)" in str(e.value)


def test_quota_is_read_from_the_error_info_reason(fake: Fake) -> None:
    fake.api.fail("create", 403, "PERMISSION_DENIED", "Project quota for clusters reached.",
                  reason="RESOURCE_QUOTA_EXCEEDED")  # fmt: skip
    with pytest.raises(GkeQuota, match=r"quota exhausted: .*\[RESOURCE_QUOTA_EXCEEDED\]"):
        gke.create_cluster(client_for(fake), spec(), quick())


def test_the_word_quota_alone_is_no_quota_error(fake: Fake) -> None:
    message = "Permission 'serviceusage.quotas.get' denied on resource projects/ota-test."
    fake.api.fail("get", 403, "PERMISSION_DENIED", message, reason="IAM_PERMISSION_DENIED")
    with pytest.raises(GkeForbidden, match="permission denied: Permission"):
        gke.create_cluster(client_for(fake), spec(), quick())


def test_every_quota_of_a_numbered_list_is_kept(fake: Fake) -> None:
    link = "View and manage quotas at https://console.cloud.google.com/iam-admin/quotas?" + (
        "usage=USED&project=ota-test"
    )
    message = "\n".join(
        f'        ({i}) insufficient regional quota to satisfy request: resource "{name}": '
        f"request requires '12.0' and is short '4.0'. project has a quota of '8.0' with "
        f"'8.0' available. {link}"
        for i, name in enumerate(("CPUS", "IN_USE_ADDRESSES", "SSD_TOTAL_GB"), start=1)
    )
    fake.api.fail("create", 403, "PERMISSION_DENIED", message)
    with pytest.raises(GkeQuota) as e:
        gke.create_cluster(client_for(fake), spec(), quick())
    text = str(e.value)
    assert "\n" not in text
    assert "quota exhausted: CPUS, IN_USE_ADDRESSES, SSD_TOTAL_GB: " in text
    assert text.count('insufficient regional quota to satisfy request: resource "') == 3


def test_permission_denied_names_the_cluster(fake: Fake) -> None:
    fake.api.fail("get", 403, "PERMISSION_DENIED", 'Required "container.clusters.get" permission.')
    with pytest.raises(GkeForbidden) as e:
        gke.get_cluster(client_for(fake), spec())
    assert str(e.value) == (
        f'gke cluster {PARENT}/clusters/ota: permission denied: Required "container.clusters.get"'
        " permission."
    )


def test_disabled_api_shows_googles_reason(fake: Fake) -> None:
    message = (
        "Kubernetes Engine API has not been used in project 1 before or it is disabled."
        " Enable it by visiting https://console.developers.google.com/apis/api/"
        "container.googleapis.com/overview?project=1 then retry."
    )
    fake.api.fail("get", 403, "PERMISSION_DENIED", message, reason="SERVICE_DISABLED")
    with pytest.raises(GkeForbidden) as e:
        gke.create_cluster(client_for(fake), spec(), quick())
    assert str(e.value).endswith(f"permission denied: {message} [SERVICE_DISABLED]")


def test_a_key_the_fake_does_not_know_is_refused(fake: Fake, tmp_path: Path) -> None:
    """The client signs its own JWT with the service-account key; one signed by another
    key (same key id) is refused as Google would."""
    fake.api.add_cluster("ota")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info = json.loads(fake.sa_key.read_text())
    info["private_key"] = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(info))
    creds, _ = gke.load_credentials(forged)
    with pytest.raises(GkeError, match=r"credentials rejected: .*\[ACCESS_TOKEN_EXPIRED\]"):
        gke.get_cluster(gke.make_client(creds, fake.url), spec())


# --- delete ---------------------------------------------------------------------------------


def test_delete_follows_the_operation_until_the_cluster_is_gone(fake: Fake) -> None:
    fake.api.add_cluster("ota")
    client = client_for(fake)
    done = gke.delete_cluster(client, spec(), quick())
    assert done.existed and done.waited_for is None
    with pytest.raises(GkeNotFound, match=f"{PARENT}/clusters/ota: not found"):
        gke.get_cluster(client, spec())


def test_delete_of_a_missing_cluster_is_done(fake: Fake) -> None:
    done = gke.delete_cluster(client_for(fake), spec(), quick())
    assert not done.existed and fake.api.calls("DELETE", "delete") == 0


@pytest.mark.parametrize(
    ("op_type", "status"), [("CREATE_CLUSTER", "PROVISIONING"), ("UPGRADE_MASTER", "RECONCILING")]
)
def test_delete_waits_for_a_running_operation_then_deletes(
    fake: Fake, op_type: str, status: str
) -> None:
    fake.api.add_cluster("ota")
    fake.api.start("ota", op_type)
    seen: list[gke.Progress] = []
    done = gke.delete_cluster(client_for(fake), spec(), quick(seen))
    assert done.waited_for == status and fake.api.clusters == {}
    assert seen[0].status == status
    assert fake.api.calls("DELETE", "delete") == 1  # sent once the cluster rested


def test_delete_asks_again_while_gke_says_the_cluster_is_busy(fake: Fake) -> None:
    """An operation the cluster's status does not show (a node pool being repaired) makes
    GKE answer 400 FAILED_PRECONDITION: wait and ask again."""
    fake.api.add_cluster("ota")
    fake.api.start("ota", "REPAIR_CLUSTER")
    fake.api.clusters[fake.api.path(ZONE, "ota")]["status"] = "RUNNING"
    seen: list[gke.Progress] = []
    done = gke.delete_cluster(client_for(fake), spec(), quick(seen))
    assert done.existed and done.waited_for == "BUSY" and fake.api.clusters == {}
    busy = [p for p in seen if p.status == "BUSY"]
    assert busy and "is currently repairing cluster ota" in busy[0].detail


def test_delete_that_timed_out_resumes_when_run_again(fake: Fake) -> None:
    fake.api.add_cluster("ota")
    fake.api.polls = 30
    with pytest.raises(WaitTimeout, match="goes on in Google Cloud: run the command again"):
        gke.delete_cluster(client_for(fake), spec(), gke.Waiting(0.2, 0.05, None))
    assert fake.api.clusters[fake.api.path(ZONE, "ota")]["status"] == "STOPPING"
    op = list(fake.api.operations.values())[-1]
    fake.api.polls = op["_ticks"] + 3  # it ends while the second run watches
    done = gke.delete_cluster(client_for(fake), spec(), quick())
    assert done.waited_for == "STOPPING" and fake.api.clusters == {}
    assert fake.api.calls("DELETE", "delete") == 1  # the first run's delete, not a second


# --- kubeconfig and tokens -------------------------------------------------------------------


def _kubeconfig_user(path: Path) -> dict[str, Any]:
    user: dict[str, Any] = yaml.safe_load(path.read_text())["users"][-1]["user"]
    return user


def test_kubeconfig_runs_otactl_for_fresh_tokens(fake: Fake, tmp_path: Path) -> None:
    """No static token in the file: the kubernetes client runs `otactl gke token`, which
    gets a token from Google as the identity pinned in the entry."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    fake.api.add_cluster("ota")
    kubeconfig = tmp_path / "kube" / "config"
    kubeconfig.parent.mkdir()
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "other", "cluster": {"server": "https://10.0.0.1"}}],
        "users": [{"name": "other", "user": {"token": "x"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}],
    }))  # fmt: skip
    entry = gke.write_kubeconfig(
        client_for(fake), spec(), kubeconfig=kubeconfig, credentials_file=fake.sa_key
    )
    assert entry.context == f"gke_{PROJECT}_{LOCATION}_ota" and entry.auth == "otactl gke token"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    doc = yaml.safe_load(kubeconfig.read_text())
    assert doc["current-context"] == entry.context
    assert {c["name"] for c in doc["contexts"]} == {"other", entry.context}
    plugin = _kubeconfig_user(kubeconfig)["exec"]
    assert "token" not in _kubeconfig_user(kubeconfig)
    assert plugin["apiVersion"] == "client.authentication.k8s.io/v1"
    assert plugin["args"] == ["-m", "otactl", "gke", "token", "--credentials", str(fake.sa_key)]
    assert plugin["env"] == [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": str(fake.sa_key)}]
    assert plugin["interactiveMode"] == "Never"

    issued = len(fake.api.tokens)
    conf = k8s.Configuration()
    k8s_config.load_kube_config(str(kubeconfig), client_configuration=conf)
    assert conf.host == f"https://{ENDPOINT}"
    assert Path(conf.ssl_ca_cert).read_bytes() == base64.b64decode(fake.api.ca)
    assert len(fake.api.tokens) == issued + 1  # minted now, by the plugin
    assert conf.api_key["BearerToken"] == f"Bearer {fake.api.tokens[-1]}"
    assert fake.api.scopes[-1].split() == list(gke.TOKEN_SCOPES)


def test_kubeconfig_pins_the_application_default_credentials(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.api.add_cluster("ota")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "sa.json")  # relative: made absolute
    kubeconfig = tmp_path / "config"
    gke.write_kubeconfig(client_for(fake), spec(), kubeconfig=kubeconfig)
    plugin = _kubeconfig_user(kubeconfig)["exec"]
    assert plugin["args"] == ["-m", "otactl", "gke", "token"]
    assert plugin["env"] == [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": str(fake.sa_key)}]


def test_kubeconfig_uses_the_auth_plugin_when_present(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    fake.api.add_cluster("ota")
    plugin = tmp_path / "bin" / gke.AUTH_PLUGIN
    plugin.parent.mkdir()
    # Stands in for the real plugin: prints the ExecCredential kubectl expects.
    plugin.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "assert sys.argv[1:] == ['--use_application_default_credentials'], sys.argv\n"
        "assert os.environ['GOOGLE_APPLICATION_CREDENTIALS'].endswith('sa.json')\n"
        'print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1",'
        ' "kind": "ExecCredential", "status": {"token": "from-plugin"}}))\n'
    )
    plugin.chmod(0o755)
    monkeypatch.setenv("PATH", str(plugin.parent), prepend=os.pathsep)
    kubeconfig = tmp_path / "config"
    entry = gke.write_kubeconfig(
        client_for(fake), spec(), kubeconfig=kubeconfig, context="ota",
        credentials_file=fake.sa_key, auth_plugin=True,
    )  # fmt: skip
    assert entry.auth == gke.AUTH_PLUGIN
    user = _kubeconfig_user(kubeconfig)
    assert user["exec"]["command"] == gke.AUTH_PLUGIN
    assert user["exec"]["env"] == [
        {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": str(fake.sa_key.resolve())}
    ]
    conf = k8s.Configuration()
    k8s_config.load_kube_config(str(kubeconfig), client_configuration=conf)
    assert conf.host == f"https://{ENDPOINT}"
    assert conf.api_key["BearerToken"] == "Bearer from-plugin"


def test_kubeconfig_internal_ip_and_dns_endpoint(fake: Fake, tmp_path: Path) -> None:
    gke.create_cluster(client_for(fake), spec(private_nodes=True), quick())
    kubeconfig = tmp_path / "config"
    entry = gke.write_kubeconfig(
        client_for(fake), spec(), kubeconfig=kubeconfig, internal_ip=True, context="private"
    )
    assert entry.server == f"https://{PRIVATE_ENDPOINT}"
    entry = gke.write_kubeconfig(
        client_for(fake), spec(), kubeconfig=kubeconfig, dns_endpoint=True, context="dns"
    )
    assert re.fullmatch(r"https://gke-[0-9a-f]+-\d+\.europe-west1-b\.gke\.goog", entry.server)
    clusters = {c["name"]: c["cluster"] for c in yaml.safe_load(kubeconfig.read_text())["clusters"]}
    # Google's DNS endpoint has a publicly trusted certificate: no cluster CA pinned.
    assert clusters["dns"] == {"server": entry.server}
    assert "certificate-authority-data" in clusters["private"]


def test_credentials_wait_for_a_cluster_being_created(fake: Fake, tmp_path: Path) -> None:
    gke.create_cluster(client_for(fake), spec(), quick(), follow=False)
    entry = gke.write_kubeconfig(client_for(fake), spec(), kubeconfig=tmp_path / "c", wait=quick())
    assert entry.server == f"https://{ENDPOINT}"


def test_forget_kubeconfig_removes_what_credentials_wrote(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "other", "cluster": {"server": "https://10.0.0.1"}}],
        "users": [{"name": "other", "user": {"token": "x"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}],
    }))  # fmt: skip
    gke.write_kubeconfig(client_for(fake), spec(), kubeconfig=kubeconfig)
    assert gke.forget_kubeconfig(spec(), kubeconfig=kubeconfig) == [gke.context_name(spec())]
    doc = yaml.safe_load(kubeconfig.read_text())
    assert doc["current-context"] == ""
    for section in ("clusters", "users", "contexts"):
        assert [e["name"] for e in doc[section]] == ["other"]
    assert gke.forget_kubeconfig(spec(), kubeconfig=kubeconfig) == []


def test_exec_credential_has_the_token_and_its_expiry(fake: Fake) -> None:
    creds, _ = gke.load_credentials(fake.sa_key, scopes=gke.TOKEN_SCOPES)
    before = datetime.datetime.now(datetime.UTC)
    credential = gke.exec_credential(creds)
    assert credential["apiVersion"] == "client.authentication.k8s.io/v1"
    assert credential["kind"] == "ExecCredential"
    assert credential["status"]["token"] == fake.api.tokens[-1]
    expiry = gke.expiry_of(credential)
    assert expiry is not None
    # The fake grants 3599 s; google-auth keeps a refresh margin below that.
    assert before < expiry <= before + datetime.timedelta(seconds=3600)


# --- CLI ------------------------------------------------------------------------------------


def test_help_does_not_import_google_libraries(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from otactl.cli import main\n"
        "for argv in (['otactl', '--help'], ['otactl', 'gke', 'create', '--help'],"
        " ['otactl', 'gke', 'token', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('google.', 'grpc', 'proto'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_cli_create_prints_json_and_one_line_per_state(fake: Fake, tmp_path: Path) -> None:
    fake.api.polls = 3
    proc = otactl(
        "gke", "create", "ota", *where(fake), "--poll-interval", "0.01", "-o", "json",
        fake=fake, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["created"] is True and out["endpoint"] == ENDPOINT
    assert out["path"] == f"{PARENT}/clusters/ota" and out["node_pool"] == "ota-pool"
    states = [line.split(": ", 1)[1].rsplit(",", 1)[0] for line in proc.stderr.splitlines()]
    op = next(iter(fake.api.operations.values()))["name"]
    assert states == [
        f"{op} PENDING",
        f"{op} RUNNING (Creating the control plane)",
        f"{op} RUNNING (Creating node pools)",
        f"{op} DONE",
    ]


def test_cli_create_options_come_from_the_gke_profile_and_flags(fake: Fake, tmp_path: Path) -> None:
    (tmp_path / "otactl.yaml").write_text(yaml.safe_dump({
        "node_pool": "ota-nodes",
        "gke": {"project": PROJECT, "location": REGION, "nodes": 1, "spot": True,
                "labels": {"team": "ota"}, "disk_size_gb": 40},
    }))  # fmt: skip
    proc = otactl(
        "--profile", "gke", "gke", "create", "ota", "--credentials", str(fake.sa_key),
        "--disk-size", "60", "--no-spot", "--release-channel", "rapid", "--poll-interval",
        "0.01", fake=fake, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        f"created gke cluster projects/{PROJECT}/locations/{REGION}/clusters/ota (RUNNING"
    )
    sent = sent_cluster(fake)
    (pool,) = sent["nodePools"]
    assert pool["name"] == "ota-nodes" and pool["initialNodeCount"] == 1
    assert pool["config"]["diskSizeGb"] == 60 and "spot" not in pool["config"]
    assert sent["resourceLabels"] == {"team": "ota"}
    assert sent["releaseChannel"] == {"channel": 1}  # RAPID (the profile says regular)


def test_cli_create_same_settings_again_is_a_no_op(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota", nodes=1)
    proc = otactl("gke", "create", "ota", *where(fake), "--nodes", "1", fake=fake, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "already there, same settings" in proc.stdout
    assert fake.api.calls("POST", "create") == 0


def test_cli_create_and_delete_async(fake: Fake, tmp_path: Path) -> None:
    proc = otactl("gke", "create", "ota", *where(fake), "--async", fake=fake, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    op = next(iter(fake.api.operations.values()))
    assert proc.stdout == (
        f"creating gke cluster {PARENT}/clusters/ota: operation {op['name']} started (--async)\n"
    )
    assert op["status"] == "PENDING"
    # The delete waits for that create to end (GKE would refuse it), then returns at once.
    proc = otactl("gke", "delete", "ota", *where(fake), "--yes", "--async", "--poll-interval",
                  "0.01", fake=fake, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    delete_op = list(fake.api.operations.values())[-1]
    assert delete_op["operationType"] == "DELETE_CLUSTER" and delete_op["status"] == "PENDING"
    assert f"operation {delete_op['name']} started (--async)" in proc.stdout


@pytest.mark.parametrize(
    ("kind", "code", "status", "message", "exit_code", "words"),
    [
        ("get", 403, "PERMISSION_DENIED", 'Required "container.clusters.get" permission.', 6,
         "permission denied"),
        ("get", 401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", 5,
         "credentials rejected"),
        ("create", 403, "PERMISSION_DENIED", "Kubernetes Engine API has not been used in project"
         " 1 before or it is disabled.", 6, "permission denied"),
        ("create", 409, "ALREADY_EXISTS", f"Already exists: {PARENT}/clusters/ota.", 10,
         "conflict"),
        ("create", 429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Mutate"
         " requests' of service 'container.googleapis.com'.", 11, "quota exhausted"),
        ("create", 403, "PERMISSION_DENIED", "Insufficient regional quota to satisfy request:"
         " resource \"CPUS\": request requires '8.0' and is short '4.0'.", 11,
         "quota exhausted: CPUS"),
        ("create", 400, "INVALID_ARGUMENT", "Machine type \"e2-huge\" does not exist.", 2,
         "invalid request"),
        ("create", 501, "UNIMPLEMENTED", "Method not implemented.", 9, "GKE API error 501"),
    ],
)  # fmt: skip
def test_cli_api_errors_are_one_line_with_their_exit_code(
    fake: Fake, tmp_path: Path, kind: str, code: int, status: str, message: str,
    exit_code: int, words: str,
) -> None:  # fmt: skip
    # google-auth answers a 401 by refreshing the credentials and trying twice more; a
    # 429 on create is retried until the deadline (--timeout 1).
    for _ in range(3 if code == 401 else 30 if code == 429 else 1):
        fake.api.fail(kind, code, status, message)
    proc = otactl("gke", "create", "ota", *where(fake), "--timeout", "1", fake=fake, cwd=tmp_path)
    assert proc.returncode == exit_code, proc.stderr
    assert one_error_line(proc) == f"error: gke cluster {PARENT}/clusters/ota: {words}: {message}"


def test_cli_other_gke_failures_exit_9(fake: Fake, tmp_path: Path) -> None:
    """README's table: 9 is "any other API failure, or an operation that ended in an error
    not listed here" (not 1, the generic failure)."""
    fake.api.op_errors.append({"code": 13, "message": "Internal error while creating nodes."})
    proc = otactl("gke", "create", "ota", *where(fake), "--poll-interval", "0.01",
                  fake=fake, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 9, proc.stderr
    assert one_error_line(proc).endswith("failed: failed: Internal error while creating nodes.")
    # And a server error that does not pass before the deadline.
    fake.api.add_cluster("other")
    for _ in range(100):
        fake.api.fail("get", 500, "INTERNAL", "Internal error encountered.")
    proc = otactl("gke", "credentials", "other", *where(fake), "--timeout", "1", fake=fake,
                  cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 9, proc.stderr
    assert one_error_line(proc).endswith("GKE API error 500: Internal error encountered.")


def test_cli_create_with_other_settings_exits_10(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota", nodes=5)
    proc = otactl("gke", "create", "ota", *where(fake), fake=fake, cwd=tmp_path)
    assert proc.returncode == 10
    assert "exists with other settings (5 nodes per zone, not 2)" in one_error_line(proc)
    assert fake.api.calls("POST", "create") == 0


def test_cli_failed_operation_shows_the_reason(fake: Fake, tmp_path: Path) -> None:
    fake.api.op_errors.append({"code": 7, "message": "Permission denied on service account."})
    proc = otactl("gke", "create", "ota", *where(fake), "--poll-interval", "0.01",
                  fake=fake, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 6
    assert one_error_line(proc).endswith(
        "failed: permission denied: Permission denied on service account."
    )


def test_cli_credentials_writes_a_private_kubeconfig(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    kubeconfig = tmp_path / "nested" / "kubeconfig"
    proc = otactl("gke", "credentials", "ota", *where(fake), "--kubeconfig", str(kubeconfig),
                  "-o", "json", fake=fake, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["kubeconfig"] == str(kubeconfig) and out["endpoint"] == f"https://{ENDPOINT}"
    assert out["context"] == f"gke_{PROJECT}_{LOCATION}_ota" and out["auth"] == "otactl gke token"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert "token" not in kubeconfig.read_text().split("exec:")[0].split("users:")[1]


def test_cli_credentials_default_file_is_kubeconfig_env(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    target = tmp_path / "kc"
    kubeconfig_env = {"KUBECONFIG": f"{target}{os.pathsep}{tmp_path / 'b'}"}
    proc = otactl("gke", "credentials", "ota", *where(fake), "--context", "ota",
                  fake=fake, cwd=tmp_path, env=kubeconfig_env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"context ota written to {target} (server https://{ENDPOINT})\n"


def test_cli_token_prints_an_exec_credential(fake: Fake, tmp_path: Path) -> None:
    proc = otactl("gke", "token", "--credentials", str(fake.sa_key), fake=fake, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    credential = json.loads(proc.stdout)
    assert credential["apiVersion"] == "client.authentication.k8s.io/v1"
    assert credential["status"]["token"] == fake.api.tokens[-1]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", credential["status"]["expirationTimestamp"]
    )
    assert fake.api.scopes[-1].split() == list(gke.TOKEN_SCOPES)
    # A key Google no longer accepts: one line, and what to do.
    fake.api.refuse_tokens = True
    proc = otactl("gke", "token", "--credentials", str(fake.sa_key), fake=fake, cwd=tmp_path)
    assert proc.returncode == 5 and proc.stdout == ""
    assert one_error_line(proc) == (
        "error: Google refused the credentials: invalid_grant: Invalid JWT Signature.; fix them,"
        " then run `otactl gke credentials` again"
    )


def test_cli_a_401_from_the_cluster_says_to_write_the_context_again(
    fake: Fake, tmp_path: Path
) -> None:
    fake.api.add_cluster("ota")
    proc = otactl("gke", "credentials", "ota", *where(fake), fake=fake, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    kubeconfig = tmp_path / ".kube" / "config"
    doc = yaml.safe_load(kubeconfig.read_text())
    doc["clusters"][0]["cluster"] = {"server": fake.url}  # the fake answers 401 there
    kubeconfig.write_text(yaml.safe_dump(doc))
    proc = otactl("status", fake=fake, cwd=tmp_path)
    assert proc.returncode == 5, proc.stderr
    assert one_error_line(proc).endswith("Unauthorized; run `otactl gke credentials` again")


def test_cli_delete_with_yes_removes_the_kubeconfig_context(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    kubeconfig = tmp_path / ".kube" / "config"
    assert (
        otactl("gke", "credentials", "ota", *where(fake), fake=fake, cwd=tmp_path).returncode == 0
    )
    assert yaml.safe_load(kubeconfig.read_text())["current-context"] == gke.context_name(spec())
    proc = otactl("gke", "delete", "ota", *where(fake), "--yes", "--poll-interval", "0.01",
                  fake=fake, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"deleted gke cluster {PARENT}/clusters/ota\n"
    assert f"removed kubeconfig context {gke.context_name(spec())}" in proc.stderr
    assert fake.api.clusters == {}
    doc = yaml.safe_load(kubeconfig.read_text())
    assert doc["current-context"] == "" and doc["contexts"] == doc["users"] == []


def test_cli_delete_without_yes_refuses_when_not_interactive(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    proc = otactl("gke", "delete", "ota", *where(fake), fake=fake, cwd=tmp_path)
    assert proc.returncode == 2
    assert "refusing to delete without --yes" in one_error_line(proc)
    assert fake.api.calls("DELETE", "delete") == 0


@pytest.mark.parametrize(("answer", "exit_code", "remaining"), [("y", 0, 0), ("n", 1, 1)])
def test_cli_delete_without_yes_asks_on_a_terminal(
    fake: Fake, tmp_path: Path, answer: str, exit_code: int, remaining: int
) -> None:
    fake.api.add_cluster("ota")
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "NO_GCE_CHECK": "true", gke.ENDPOINT_ENV: fake.url}  # fmt: skip
    primary, secondary = pty.openpty()  # a terminal for the question and the answer
    proc = subprocess.Popen(
        [sys.executable, "-m", "otactl", "gke", "delete", "ota", *where(fake),
         "--poll-interval", "0.01"],
        cwd=tmp_path, env=env, stdin=secondary, stdout=subprocess.PIPE, stderr=secondary,
        text=True,
    )  # fmt: skip
    os.close(secondary)
    try:
        prompt = b""
        deadline = time.monotonic() + 30
        while b"[y/N]" not in prompt and time.monotonic() < deadline:
            if select.select([primary], [], [], 0.5)[0]:
                prompt += os.read(primary, 1024)
        assert b"Delete gke cluster" in prompt
        os.write(primary, f"{answer}\n".encode())
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(primary)
    assert proc.returncode == exit_code, out
    assert len(fake.api.clusters) == remaining


def test_cli_list_and_describe(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("zonal")
    fake.api.add_cluster("regional", location=REGION, nodes=1)
    proc = otactl("gke", "list", "--credentials", str(fake.sa_key), "-o", "json",
                  fake=fake, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert [(c["name"], c["location"], c["nodes"]) for c in listed] == [
        ("regional", REGION, 3), ("zonal", ZONE, 2)
    ]  # fmt: skip
    assert fake.api.paths[-1] == f"/v1/projects/{PROJECT}/locations/-/clusters"
    proc = otactl("gke", "list", "--credentials", str(fake.sa_key), "--location", ZONE,
                  fake=fake, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()
    assert header.split() == ["NAME", "LOCATION", "STATUS", "VERSION", "NODES", "MODE"]
    assert row.split() == ["zonal", ZONE, "RUNNING", "1.33.5-gke.1000", "2", "standard"]
    proc = otactl("gke", "describe", "regional", *where(fake, REGION), "-o", "json",
                  fake=fake, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    described = json.loads(proc.stdout)
    assert described["locations"] == list(REGIONS[REGION][:3])
    assert described["status"] == "RUNNING" and described["nodePools"][0]["name"] == "ota-pool"
    proc = otactl("gke", "describe", "regional", *where(fake, REGION), fake=fake, cwd=tmp_path)
    assert "node_zones:   europe-west1-b, europe-west1-c, europe-west1-d" in proc.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{", "not JSON"),
        ('{"type": "authorized_user"}', "not a service-account key (type 'authorized_user'); "
         "point GOOGLE_APPLICATION_CREDENTIALS at other kinds of credentials"),
        ('{"type": "service_account"}', "unusable service-account key: Service account info was"
         " not in the expected format, missing fields"),  # then a set, in any order
    ],
)  # fmt: skip
def test_cli_bad_credentials_file(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "key.json").write_text(content)
    proc = otactl("gke", "create", "ota", "--project", PROJECT, "--location", LOCATION,
                  "--credentials", "key.json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 5
    assert one_error_line(proc).startswith(f"error: --credentials key.json: {message}")


def test_cli_deleted_key_is_refused_by_google(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    fake.api.refuse_tokens = True
    proc = otactl("gke", "credentials", "ota", *where(fake), fake=fake, cwd=tmp_path)
    assert proc.returncode == 5
    assert one_error_line(proc) == (
        f"error: gke cluster {PARENT}/clusters/ota: credentials rejected: Request had invalid"
        " authentication credentials. Expected OAuth 2 access token, login cookie or other valid"
        " authentication credential. [ACCESS_TOKEN_EXPIRED]"
    )
    assert not (tmp_path / ".kube" / "config").exists()


def test_gke_profile_and_example_values(tmp_path: Path) -> None:
    proc = otactl("--profile", "gke", "--config", str(ROOT / "contrib" / "gke" / "values.yaml"),
                  "config", "show", "-o", "json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    values = json.loads(proc.stdout)
    assert values["storage_class"] == "standard-rwo"
    assert values["node_pool"] == gke.DEFAULT_NODE_POOL
    for service in ("gateway", "reverse_proxy"):
        assert values[service]["service_type"] == "LoadBalancer"
        assert values[service]["node_port"] is None
    assert values["gke"]["machine_type"] == gke.DEFAULT_MACHINE_TYPE
    assert values["gke"]["release_channel"] == "regular" and values["gke"]["scopes"] == []


def test_cli_progress_is_one_live_line_on_a_terminal(fake: Fake, tmp_path: Path) -> None:
    fake.api.polls = 3
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "NO_GCE_CHECK": "true", gke.ENDPOINT_ENV: fake.url}  # fmt: skip
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "otactl", "gke", "create", "ota", *where(fake),
         "--poll-interval", "0.01"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=secondary,
    )  # fmt: skip
    os.close(secondary)
    screen = b""
    try:
        while select.select([primary], [], [], 30)[0]:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        proc.wait(timeout=60)
    finally:
        os.close(primary)
    assert proc.returncode == 0
    live, *rest = screen.decode().split("\r\n")
    # Four states redrawn in place on one line, each ending in its elapsed seconds.
    redraws = live.split("\r\x1b[K")[1:]
    op = next(iter(fake.api.operations.values()))["name"]
    assert [re.sub(r", \d+s$", "", line) for line in redraws] == [
        f"ota: {op} PENDING",
        f"ota: {op} RUNNING (Creating the control plane)",
        f"ota: {op} RUNNING (Creating node pools)",
        f"ota: {op} DONE",
    ]
    assert all(re.search(r", \d+s$", line) for line in redraws)
    assert rest[0].startswith("next: otactl gke credentials ota")


def test_cli_no_application_default_credentials(tmp_path: Path) -> None:
    proc = otactl("gke", "credentials", "ota", "--project", PROJECT, "--location", LOCATION,
                  cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 5
    assert one_error_line(proc).startswith("error: no Google Cloud credentials found")


def test_cli_unreachable_api_exits_4(fake: Fake, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    proc = otactl("gke", "create", "ota", *where(fake), "--timeout", "1", cwd=tmp_path,
                  env={gke.ENDPOINT_ENV: closed})  # fmt: skip
    assert proc.returncode == 4
    assert one_error_line(proc) == (
        f"error: gke cluster {PARENT}/clusters/ota: cannot reach the GKE API at {closed}:"
        " Connection refused"
    )


# --- project inference and google-auth's warnings --------------------------------------------


def test_cli_project_comes_from_the_key_file(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    args = ["gke", "describe", "ota", "--location", LOCATION, "--credentials", str(fake.sa_key)]
    proc = otactl(*args, "-o", "json", fake=fake, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["name"] == "ota"
    # GOOGLE_CLOUD_PROJECT comes before the key's project_id, as in google-auth.
    proc = otactl(*args, fake=fake, cwd=tmp_path, env={"GOOGLE_CLOUD_PROJECT": "elsewhere"})
    assert proc.returncode == 6 and 'projects/elsewhere"' in one_error_line(proc)


def test_cli_project_comes_from_application_default_credentials(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    adc = {"GOOGLE_APPLICATION_CREDENTIALS": str(fake.sa_key)}
    proc = otactl("gke", "describe", "ota", "--location", LOCATION, "-o", "json", fake=fake,
                  cwd=tmp_path, env=adc)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_cli_without_any_project_says_where_to_give_one(fake: Fake, tmp_path: Path) -> None:
    adc = _gcloud_adc(fake, tmp_path, quota_project=True)
    proc = otactl("gke", "describe", "ota", "--location", LOCATION, fake=fake, cwd=tmp_path)
    assert adc.exists() and proc.returncode == 2
    assert one_error_line(proc).startswith("error: no Google Cloud project: pass --project")


def _gcloud_adc(fake: Fake, home: Path, quota_project: bool = False) -> Path:
    """What `gcloud auth application-default login` leaves: an authorized user of the Cloud
    SDK's own OAuth client, which google-auth warns about (in several lines). google-auth
    always refreshes such users at Google's endpoint, so the file carries a token the fake
    issued and its expiry."""
    path = home / ".config" / "gcloud" / "application_default_credentials.json"
    path.parent.mkdir(parents=True)
    fake.api.tokens.append("ya29.user-token")
    info = {
        "type": "authorized_user", "client_id": CLOUD_SDK_CLIENT_ID, "client_secret": "s",
        "refresh_token": "fake-refresh-token", "token": "ya29.user-token",
        "expiry": "2099-01-01T00:00:00Z",
    }  # fmt: skip
    if quota_project:
        info["quota_project_id"] = "billing-project"
    path.write_text(json.dumps(info))
    return path


def test_cli_google_auth_warnings_are_one_line(fake: Fake, tmp_path: Path) -> None:
    fake.api.add_cluster("ota")
    _gcloud_adc(fake, tmp_path)
    proc = otactl("gke", "describe", "ota", "--project", PROJECT, "--location", LOCATION,
                  fake=fake, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("warning: Your application has authenticated using end user")
    assert "name:" in proc.stdout and fake.api.calls("GET", "get") == 1


# --- the matrix: zonal and regional x create, credentials, delete x busy, missing, transient --


SCENARIOS = ("busy", "missing", "reset", "429", "500")


def _prepare(f: Fake, command: str, scenario: str, location: str) -> None:
    """busy: an operation runs on the cluster; missing: no cluster; reset/429/500: the
    cluster (none for create) and a transient failure on the next reads and polls."""
    if scenario == "busy":
        f.api.add_cluster("ota", location=location)
        f.api.start("ota", "CREATE_CLUSTER" if command != "delete" else "UPGRADE_MASTER",
                    location=location)  # fmt: skip
        return
    if scenario == "missing":
        return
    if command != "create":
        f.api.add_cluster("ota", location=location)
    for kind in ("get", "operation", "get"):
        f.api.fail(kind, *TRANSIENT[scenario])


@pytest.mark.parametrize("location", [ZONE, REGION])
@pytest.mark.parametrize("command", ["create", "credentials", "delete"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_cli_matrix(fake: Fake, tmp_path: Path, location: str, command: str, scenario: str) -> None:
    _prepare(fake, command, scenario, location)
    path = f"projects/{PROJECT}/locations/{location}/clusters/ota"
    extra = {"create": [], "credentials": [], "delete": ["--yes"]}[command]
    proc = otactl("gke", command, "ota", *where(fake, location), *extra, "--poll-interval",
                  "0.01", "--timeout", "60", fake=fake, cwd=tmp_path)  # fmt: skip
    if command == "credentials" and scenario == "missing":
        assert proc.returncode == 12, proc.stderr
        assert one_error_line(proc) == f"error: gke cluster {path}: not found: Not found: {path}."
        return
    assert proc.returncode == 0, proc.stderr
    if scenario in TRANSIENT:
        assert "RETRYING" in proc.stderr and fake.api.faults.get("get") == []
    if command == "create":
        verb = "already there, same settings:" if scenario == "busy" else "created"
        assert proc.stdout.startswith(f"{verb} gke cluster {path} (RUNNING")
        assert fake.api.clusters[path]["status"] == "RUNNING"
    elif command == "credentials":
        doc = yaml.safe_load((tmp_path / ".kube" / "config").read_text())
        assert doc["current-context"] == f"gke_{PROJECT}_{location}_ota"
        assert doc["clusters"][0]["cluster"]["server"] == f"https://{ENDPOINT}"
    else:
        gone = "does not exist (already deleted)" if scenario == "missing" else None
        assert proc.stdout == (
            f"gke cluster {path} {gone}\n" if gone else f"deleted gke cluster {path}\n"
        )
        assert fake.api.clusters == {}
        if scenario == "busy":
            assert "RECONCILING" in proc.stderr  # it waited for the upgrade to end
