"""A local stand-in for Google's Container API v1 and OAuth token endpoint, for tests/test_gke.py.

Google's API cannot run here, so `FakeContainerApi` models the parts otactl calls, as the
v1 REST API answers them: camelCase JSON, enums as names or (the client asks with
`$alt=json;enum-encoding=int`) numbers, zonal and regional clusters, long-running
operations PENDING -> RUNNING -> DONE with `progress.stages` and an `error` when they fail,
google.rpc error bodies with ErrorInfo details, bearer tokens checked against the ones its
token endpoint issued.

Sources of its rules (refusals name theirs where they are made):
- [types] google-cloud-container 2.67.0, google/cloud/container_v1/types/cluster_service.py:
  the v1 message and field docs (the installed client's own copy of cluster_service.proto).
- [errors] google/rpc/error_details.proto and google/api/error_reason.proto
  (googleapis-common-protos): ErrorInfo and its reasons.
- [busy] GKE's 400 FAILED_PRECONDITION while another operation runs, as gcloud and the
  Terraform provider print it: "Operation operation-... is currently upgrading cluster X.
  Please wait and try again once it is done." (quoted in public issue threads, e.g.
  GoogleCloudPlatform/kubernetes-engine-samples troubleshooting notes).
- [docs] cloud.google.com/kubernetes-engine/docs: regional clusters (three zones by
  default), Autopilot (regional, node pools managed by GKE), private clusters (VPC-native,
  a /28 control plane range), Workload Identity (pool PROJECT_ID.svc.id.goog).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PROJECT, PROJECT_NUMBER = "ota-test", "123456789012"
ZONE, REGION = "europe-west1-b", "europe-west1"
# The zones of the regions the fake knows (Compute Engine's list for these two).
REGIONS = {
    "europe-west1": ("europe-west1-b", "europe-west1-c", "europe-west1-d"),
    "us-central1": ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"),
}
ENDPOINT, PRIVATE_ENDPOINT = "34.78.10.20", "172.16.0.2"
NETWORKS = {"default", "ota-vpc"}

# [types] enum values (Operation.Status, Operation.Type, Cluster.Status, NodePool.Status,
# ReleaseChannel.Channel).
OPERATION_STATUS = {"STATUS_UNSPECIFIED": 0, "PENDING": 1, "RUNNING": 2, "DONE": 3, "ABORTING": 4}
OPERATION_TYPE = {
    "CREATE_CLUSTER": 1, "DELETE_CLUSTER": 2, "UPGRADE_MASTER": 3, "REPAIR_CLUSTER": 5,
}  # fmt: skip
CLUSTER_STATUS = {
    "PROVISIONING": 1, "RUNNING": 2, "RECONCILING": 3, "STOPPING": 4, "ERROR": 5, "DEGRADED": 6,
}  # fmt: skip
NODE_POOL_STATUS = {"PROVISIONING": 1, "RUNNING": 2, "RECONCILING": 4, "STOPPING": 5, "ERROR": 6}
CHANNELS = {"UNSPECIFIED": 0, "RAPID": 1, "REGULAR": 2, "STABLE": 3, "EXTENDED": 4}
# The words of [busy] per operation type.
DOING = {
    "CREATE_CLUSTER": "creating", "DELETE_CLUSTER": "deleting", "UPGRADE_MASTER": "upgrading",
    "REPAIR_CLUSTER": "repairing",
}  # fmt: skip
# What each kind of operation goes through: the fake's own stage names; the shape
# (progress.stages[].name/status) is [types] OperationProgress.
STAGES = {
    "CREATE_CLUSTER": ("Creating the control plane", "Creating node pools", "Health checks"),
    "DELETE_CLUSTER": ("Deleting node pools", "Deleting the control plane"),
    "UPGRADE_MASTER": ("Upgrading the control plane",),
    "REPAIR_CLUSTER": ("Repairing the control plane",),
}
RESET = -1  # Fault.code: the connection is reset instead of answered
CLOUD_SDK_CLIENT_ID = "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com"


def _cluster_ca() -> str:
    """A real self-signed CA certificate, base64 PEM as `masterAuth.clusterCaCertificate`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gke-test-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


def zones_of(location: str) -> tuple[str, ...] | None:
    """The zones a location has (a region: all of its zones; a zone: itself), or None."""
    if location in REGIONS:
        return REGIONS[location]
    region = location.rsplit("-", 1)[0]
    return (location,) if location in REGIONS.get(region, ()) else None


@dataclass
class Fault:
    """An error answer queued for the next request of one kind."""

    code: int
    status: str
    message: str
    before: Callable[[], None] | None = None  # runs first: a concurrent change to model
    reason: str | None = None  # google.rpc.ErrorInfo reason in the error's details


def _error(code: int, status: str, message: str, reason: str | None = None) -> tuple[int, Any]:
    """A google.rpc.Status body as the REST API sends it ([errors])."""
    body: dict[str, Any] = {"error": {"code": code, "message": message, "status": status}}
    if reason is not None:
        body["error"]["details"] = [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "googleapis.com",
            "metadata": {"service": "container.googleapis.com", "consumer": "projects/1"},
        }]  # fmt: skip
    return code, body


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _invalid(message: str) -> tuple[int, Any]:
    return _error(400, "INVALID_ARGUMENT", message)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


@dataclass
class FakeContainerApi:
    """State and behaviour of the fake Container API v1 (projects.locations.*)."""

    polls: int = 3  # operation GETs until DONE: the first says RUNNING, the last DONE
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    op_errors: list[dict[str, Any]] = field(default_factory=list)  # for the next operations
    tokens: list[str] = field(default_factory=list)  # issued by the token endpoint
    scopes: list[str] = field(default_factory=list)  # the scope each token was asked with
    revoked: set[str] = field(default_factory=set)  # tokens now refused (expired)
    refuse_tokens: bool = False  # the service-account key was deleted: refuse its use
    keys: dict[str, Any] = field(default_factory=dict)  # service-account public keys by id
    ca: str = field(default_factory=_cluster_ca)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, kind: str, code: int, status: str, message: str, **kw: Any) -> None:
        """Answer the next `kind` request (create, get, list, delete, operation) with an
        error, or with a reset connection (code RESET)."""
        self.faults.setdefault(kind, []).append(Fault(code, status, message, **kw))

    def add_cluster(
        self, name: str, machine_type: str = "e2-standard-4", nodes: int = 2,
        pool: str = "ota-pool", status: str = "RUNNING", location: str = ZONE,
    ) -> dict[str, Any]:  # fmt: skip
        """A cluster as if someone had created it (no operation)."""
        body = {
            "name": name,
            "nodePools": [
                {"name": pool, "initialNodeCount": nodes, "config": {"machineType": machine_type}}
            ],
        }
        cluster = self._materialise(location, body)
        cluster["status"] = status
        if status in ("RUNNING", "RECONCILING", "DEGRADED"):
            self._running(cluster)
        self.clusters[self.path(location, name)] = cluster
        return cluster

    def start(self, name: str, op_type: str, location: str = ZONE) -> dict[str, Any]:
        """Start an operation on an existing cluster: an upgrade or repair makes it
        RECONCILING, a create PROVISIONING, a delete STOPPING, until the operation ends."""
        path = self.path(location, name)
        status = {"CREATE_CLUSTER": "PROVISIONING", "DELETE_CLUSTER": "STOPPING"}
        self.clusters[path]["status"] = status.get(op_type, "RECONCILING")
        return self._start(location, path, op_type)

    @staticmethod
    def path(location: str, name: str) -> str:
        return f"projects/{PROJECT}/locations/{location}/clusters/{name}"

    def calls(self, method: str, kind: str) -> int:
        return sum(1 for m, k in self.requests if (m, k) == (method, kind))

    # --- the API ---------------------------------------------------------------------------

    def authorize(self, header: str) -> tuple[int, Any] | None:
        """Only bearer tokens this fake issued and has not revoked pass ([errors] reasons)."""
        if not header.startswith("Bearer "):
            return _error(
                401, "UNAUTHENTICATED", "Request is missing required authentication credential.",
                reason="CREDENTIALS_MISSING",
            )  # fmt: skip
        token = header.removeprefix("Bearer ")
        issued = token in self.tokens and token not in self.revoked
        if not (issued or self._self_signed(token)):
            return _error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials. "
                "Expected OAuth 2 access token, login cookie or other valid authentication "
                "credential.", reason="ACCESS_TOKEN_EXPIRED",
            )  # fmt: skip
        return None

    def _self_signed(self, token: str) -> bool:
        """A JWT a service account signs itself instead of asking the token endpoint (what
        google-cloud-* clients send for service-account keys; developers.google.com/identity
        /protocols/oauth2/service-account#jwt-auth): valid when signed (RS256) by a key of
        `keys`, unexpired, and scoped to cloud-platform."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            head, claims, signature = (
                json.loads(_unb64(part)) if i < 2 else _unb64(part)
                for i, part in enumerate(token.split("."))
            )  # fmt: skip
            key = self.keys[head["kid"]]
            signed = token.rsplit(".", 1)[0].encode()
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, KeyError, TypeError, InvalidSignature):
            return False
        return (
            not self.refuse_tokens
            and claims.get("exp", 0) > time.time()
            and "cloud-platform" in claims.get("scope", "")
        )

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        m = re.fullmatch(
            r"/v1/projects/([^/]+)/locations/([^/]+)/(clusters|operations)(/[^/]+)?", path
        )
        if not m:
            return _error(404, "NOT_FOUND", f"Method not found: {path}")
        project, location, collection = m.group(1), m.group(2), m.group(3)
        leaf = (m.group(4) or "")[1:]
        kind = {
            ("POST", "clusters", False): "create",
            ("GET", "clusters", True): "get",
            ("GET", "clusters", False): "list",
            ("DELETE", "clusters", True): "delete",
            ("GET", "operations", True): "operation",
        }.get((method, collection, bool(leaf)))
        if kind is None:
            return _error(404, "NOT_FOUND", f"Method not found: {method} {path}")
        self.requests.append((method, kind))
        self.paths.append(path)
        self.bodies.append(body)
        if self.faults.get(kind):
            fault = self.faults[kind].pop(0)
            if fault.before is not None:
                fault.before()
            if fault.code == RESET:
                return RESET, None
            return _error(fault.code, fault.status, fault.message, fault.reason)
        if project != PROJECT:
            return _error(403, "PERMISSION_DENIED", f'Permission denied on "projects/{project}".')
        if zones_of(location) is None and not (kind == "list" and location == "-"):
            return _invalid(f'Location "{location}" is not a valid zone or region.')
        handler = getattr(self, f"_{kind}")
        return handler(location, leaf, body)  # type: ignore[no-any-return]

    def _create(self, location: str, _: str, body: dict[str, Any]) -> tuple[int, Any]:
        cluster = body.get("cluster") or {}
        name = cluster.get("name", "")
        refusal = self._refuse(location, cluster)
        if refusal is not None:
            return refusal
        path = self.path(location, name)
        if path in self.clusters:
            return _error(409, "ALREADY_EXISTS", f"Already exists: {path}.")
        self.clusters[path] = self._materialise(location, cluster)
        return 200, self._start(location, path, "CREATE_CLUSTER")

    def _refuse(self, location: str, cluster: dict[str, Any]) -> tuple[int, Any] | None:
        """What the API refuses in a create request, each with its source."""
        name = cluster.get("name", "")
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", name):  # [types] Cluster.name
            return _invalid(f'Invalid value for field "cluster.name": "{name}"')
        regional = location in REGIONS
        autopilot = bool((cluster.get("autopilot") or {}).get("enabled"))
        if autopilot and not regional:  # [docs] Autopilot clusters are regional
            return _invalid("Autopilot clusters must be regional clusters.")
        if autopilot and cluster.get("nodePools"):  # [docs] Autopilot manages node pools
            return _invalid("Autopilot clusters cannot have node pools set.")
        if not autopilot and not cluster.get("nodePools"):
            return _invalid("Cluster.initial_node_count must be greater than zero.")
        # [types] Cluster.locations: zones of the cluster's region; a zonal cluster's nodes
        # include its own zone.
        region = location if regional else location.rsplit("-", 1)[0]
        node_zones = cluster.get("locations") or []
        for zone in node_zones:
            if zone not in REGIONS.get(region, ()):
                return _invalid(f'Node location "{zone}" is not a zone of region "{region}".')
        if node_zones and not regional and location not in node_zones:
            return _invalid(f'Node locations must include the cluster\'s zone "{location}".')
        network = cluster.get("network") or "default"
        if network not in NETWORKS:
            return _invalid(f'Network "{network}" does not exist.')
        channel = (cluster.get("releaseChannel") or {}).get("channel", 0)
        if channel not in CHANNELS and channel not in CHANNELS.values():  # [types] enum
            return _invalid(f'Invalid value at "cluster.release_channel.channel": {channel}')
        private = cluster.get("privateClusterConfig") or {}
        if private.get("enablePrivateNodes"):
            # [docs] private clusters are VPC-native, with a /28 for the control plane.
            if not (cluster.get("ipAllocationPolicy") or {}).get("useIpAliases"):
                return _invalid("Private clusters must be VPC-native (use alias IPs).")
            cidr = private.get("masterIpv4CidrBlock")
            if cidr and not cidr.endswith("/28"):
                return _invalid(f'Master CIDR block "{cidr}" must be a /28.')
        authorized = cluster.get("masterAuthorizedNetworksConfig") or {}
        for block in authorized.get("cidrBlocks", []):
            try:
                ipaddress.ip_network(block.get("cidrBlock", ""))
            except ValueError:
                return _invalid(f'Invalid CIDR block "{block.get("cidrBlock")}".')
        pool_name = (cluster.get("workloadIdentityConfig") or {}).get("workloadPool")
        if pool_name is not None and pool_name != f"{PROJECT}.svc.id.goog":  # [docs]
            return _invalid(f'Workload pool must be "{PROJECT}.svc.id.goog", not "{pool_name}".')
        for pool in cluster.get("nodePools", []):
            config = pool.get("config") or {}
            scaling = pool.get("autoscaling") or {}
            if int(pool.get("initialNodeCount", 0)) < 1:
                return _invalid("Node pool size must be at least 1.")
            if scaling.get("enabled") and int(scaling.get("minNodeCount", 0)) > int(
                scaling.get("maxNodeCount", 0)
            ):  # [types] NodePoolAutoscaling.max_node_count: must be >= min_node_count
                return _invalid("max_node_count must be >= min_node_count.")
            if "diskSizeGb" in config and int(config["diskSizeGb"]) < 10:  # [types] NodeConfig
                return _invalid("Disk size must be at least 10 GB.")
            if config.get("diskType") not in (None, "pd-standard", "pd-balanced", "pd-ssd"):
                return _invalid(f'Invalid disk type "{config["diskType"]}".')
            if config.get("spot") and config.get("preemptible"):  # [types] NodeConfig.spot
                return _invalid("Spot and preemptible cannot both be set.")
        return None

    def _materialise(self, location: str, body: dict[str, Any]) -> dict[str, Any]:
        """The cluster the API stores for a create request: server-set fields added."""
        regional = location in REGIONS
        zones = body.get("locations") or (REGIONS[location][:3] if regional else [location])
        cluster = json.loads(json.dumps(body))
        cluster.update(
            location=location,
            zone=location,
            locations=list(zones),
            status="PROVISIONING",
            endpoint="",
            masterAuth={"clusterCaCertificate": self.ca},
            selfLink=self._link(location, "clusters", body["name"]),
            currentMasterVersion=body.get("initialClusterVersion") or "1.33.5-gke.1000",
            createTime=_now(),
        )
        nodes = 0
        for pool in cluster.get("nodePools", []):
            pool.update(status="PROVISIONING", locations=list(zones))
            nodes += int(pool.get("initialNodeCount", 0)) * len(zones)
        cluster["currentNodeCount"] = nodes
        return cluster

    def _running(self, cluster: dict[str, Any]) -> None:
        cluster.update(status="RUNNING", endpoint=ENDPOINT)
        cluster.setdefault("controlPlaneEndpointsConfig", {})["dnsEndpointConfig"] = {
            "endpoint": f"gke-0123456789abcdef-{PROJECT_NUMBER}.{cluster['location']}.gke.goog"
        }
        if (cluster.get("privateClusterConfig") or {}).get("enablePrivateNodes"):
            cluster["privateClusterConfig"]["privateEndpoint"] = PRIVATE_ENDPOINT
        for pool in cluster.get("nodePools", []):
            pool["status"] = "RUNNING"

    def _get(self, location: str, name: str, _: dict[str, Any]) -> tuple[int, Any]:
        path = self.path(location, name)
        if path not in self.clusters:
            return _error(404, "NOT_FOUND", f"Not found: {path}.")
        # Time passes for a cluster's running operation while someone watches the cluster.
        for op in list(self.operations.values()):
            if op["_target"] == path and op["status"] != "DONE":
                self._tick(op)
        if path not in self.clusters:  # that operation was its deletion, now done
            return _error(404, "NOT_FOUND", f"Not found: {path}.")
        return 200, self.clusters[path]

    def _list(self, location: str, _: str, __: dict[str, Any]) -> tuple[int, Any]:
        found = [
            c for c in self.clusters.values() if location in ("-", c["location"])
        ]  # fmt: skip
        return 200, {"clusters": found} if found else {}

    def _delete(self, location: str, name: str, _: dict[str, Any]) -> tuple[int, Any]:
        path = self.path(location, name)
        if path not in self.clusters:
            return _error(404, "NOT_FOUND", f"Not found: {path}.")
        busy = [
            o for o in self.operations.values() if o["_target"] == path and o["status"] != "DONE"
        ]
        if busy:  # [busy]
            op = busy[0]
            msg = (
                f"Operation {op['name']} is currently {DOING[op['operationType']]} cluster "
                f"{name}. Please wait and try again once it is done."
            )
            return _error(400, "FAILED_PRECONDITION", msg)
        self.clusters[path]["status"] = "STOPPING"
        return 200, self._start(location, path, "DELETE_CLUSTER")

    def _operation(self, location: str, name: str, _: dict[str, Any]) -> tuple[int, Any]:
        op = self.operations.get(f"projects/{PROJECT}/locations/{location}/operations/{name}")
        if op is None:
            return _error(
                404, "NOT_FOUND", f"Not found: projects/{PROJECT}/locations/{location}/"
                f"operations/{name}.",
            )  # fmt: skip
        self._tick(op)
        return 200, op

    @staticmethod
    def _link(location: str, collection: str, name: str) -> str:
        """selfLink/targetLink as GKE writes them: the project number, and `zones/` for a
        zone, `locations/` for a region."""
        kind = "locations" if location in REGIONS else "zones"
        return (
            f"https://container.googleapis.com/v1/projects/{PROJECT_NUMBER}/{kind}/{location}/"
            f"{collection}/{name}"
        )

    def _start(self, location: str, target: str, op_type: str) -> dict[str, Any]:
        name = f"operation-{int(time.time() * 1000)}-{len(self.operations):08x}"
        op = {
            "name": name,
            "zone": location,  # deprecated, holds the location for regions too
            "location": location,
            "operationType": op_type,
            "status": "PENDING",
            "selfLink": self._link(location, "operations", name),
            "targetLink": self._link(location, "clusters", target.rsplit("/", 1)[1]),
            "startTime": _now(),
            "progress": {"stages": [{"name": s, "status": "PENDING"} for s in STAGES[op_type]]},
            "_target": target,  # the fake's own bookkeeping (keys with _), not API fields
            "_ticks": 0,
            "_error": self.op_errors.pop(0) if self.op_errors else None,
        }
        self.operations[f"projects/{PROJECT}/locations/{location}/operations/{name}"] = op
        return op

    def _tick(self, op: dict[str, Any]) -> None:
        if op["status"] == "DONE":
            return
        op["_ticks"] += 1
        stages = op["progress"]["stages"]
        if op["_ticks"] < self.polls:
            op["status"] = "RUNNING"
            current = min(op["_ticks"] - 1, len(stages) - 1)
            for i, stage in enumerate(stages):
                stage["status"] = (
                    "DONE" if i < current else "RUNNING" if i == current else "PENDING"
                )
            return
        op["status"] = "DONE"
        op["endTime"] = _now()
        cluster = self.clusters[op["_target"]]
        if op["_error"]:
            error = op["_error"]
            op["error"] = {"code": error["code"], "message": error["message"]}
            op["statusMessage"] = error["message"]
            op["clusterConditions"] = error.get("conditions", [])
            cluster.update(status="ERROR", statusMessage=error["message"])
            return
        for stage in stages:
            stage["status"] = "DONE"
        if op["operationType"] == "DELETE_CLUSTER":
            del self.clusters[op["_target"]]
        else:
            self._running(cluster)

    def token(self, form: dict[str, list[str]]) -> tuple[int, Any]:
        """OAuth 2.0 token endpoint as oauth2.googleapis.com/token answers it: a
        service-account JWT-bearer grant, or an authorized user's refresh-token grant."""
        grant = form.get("grant_type", [""])[0]
        if grant == "refresh_token":
            if form.get("refresh_token") != ["fake-refresh-token"]:
                return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
            scope = form.get("scope", [""])[0]
        else:
            assertion = form.get("assertion", [""])[0]
            try:
                claims = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
            except (IndexError, ValueError):
                return 400, {"error": "invalid_grant", "error_description": "Invalid JWT."}
            scope = claims.get("scope", "")
            if "cloud-platform" not in scope:
                return 400, {"error": "invalid_scope", "error_description": "Invalid scope."}
        if self.refuse_tokens:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        self.tokens.append(f"ya29.fake-{len(self.tokens)}")
        self.scopes.append(scope)
        return 200, {"access_token": self.tokens[-1], "expires_in": 3599, "token_type": "Bearer"}


def _wire(obj: Any, ints: bool) -> Any:
    """The JSON the API sends: bookkeeping keys (_...) dropped, enums as numbers when asked."""
    if isinstance(obj, list):
        return [_wire(item, ints) for item in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: _wire(v, ints) for k, v in obj.items() if not k.startswith("_")}
    if not ints:
        return out
    if "operationType" in out:
        out["operationType"] = OPERATION_TYPE[out["operationType"]]
        out["status"] = OPERATION_STATUS[out["status"]]
        for stage in out["progress"]["stages"]:
            stage["status"] = OPERATION_STATUS[stage["status"]]
    elif "nodePools" in out or "masterAuth" in out:
        out["status"] = CLUSTER_STATUS[out["status"]]
        out["nodePools"] = [
            {**pool, "status": NODE_POOL_STATUS[pool["status"]]}
            for pool in out.get("nodePools", [])
        ]
        channel = (out.get("releaseChannel") or {}).get("channel")
        if isinstance(channel, str):
            out["releaseChannel"]["channel"] = CHANNELS[channel]
    return out


def handler(api: FakeContainerApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            url = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with api.lock:
                if url.path.startswith(("/api/", "/apis/", "/version")):
                    # The cluster's own API server, which no longer accepts the token.
                    code, payload = 401, {
                        "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
                    }  # fmt: skip
                elif url.path == "/token" and method == "POST":
                    code, payload = api.token(parse_qs(raw.decode()))
                else:
                    refused = api.authorize(self.headers.get("Authorization") or "")
                    if refused is not None:
                        code, payload = refused
                    else:
                        body = json.loads(raw) if raw else {}
                        code, payload = api.handle(method, url.path, body)
                ints = "enum-encoding=int" in parse_qs(url.query).get("$alt", [""])[0]
                data = json.dumps(_wire(payload, ints)).encode()
            if code == RESET:
                # RST instead of FIN: the client sees "Connection reset by peer".
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()
                return
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a reset connection's handler fails to flush: expected, not worth a traceback
