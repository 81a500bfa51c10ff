"""OTA Community Edition services stand-in for otactl's local simulated cluster.

No container runs on kwok's fake nodes, so this one process answers for every OTA pod.
It runs inside the cluster's network namespace, where the pod range is routed to `lo`:
one listener on 0.0.0.0:9001 accepts connections to every pod IP, and each connection's
local address (getsockname) names the pod, whose `app` label names the service to play.
The API server's service proxy therefore reaches "the pod" exactly as on a real cluster.

It models the HTTP API otactl's deployer uses (docs/reference section 3): health checks,
tuf-reposerver user repos with real signed TUF root metadata, director admin repos,
tuf-keyserver roots and key pairs, device-registry device creation and search. State is
per service, shared by the pods of that service, and lives only in this process.

Knobs (slow start, bursts of 5xx, a service that never becomes healthy, key generation
delay) come from --config (JSON) and can be changed at run time through the control
endpoint (--control, default 127.0.0.1:9100; `otactl local-cluster up` forwards it to
the host). See README.md beside this file for the API.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import contracts  # beside this file: the image contracts (contracts.yaml)
import tufrepo  # beside this file: TUF keys and root.json in ota-tuf's form

log = logging.getLogger("standin")

SCALA_SERVICES = frozenset(
    {
        "app",
        "campaigner",
        "campaigner-daemon",
        "device-registry",
        "device-registry-daemon",
        "director",
        "director-daemon",
        "tuf-keyserver",
        "tuf-keyserver-daemon",
        "tuf-reposerver",
        "web-events",
        "treehub",
    }
)
VERSION = "0.0.0-otactl-standin"

DEFAULT_KNOBS: dict[str, Any] = {
    # Seconds after the stand-in first sees a pod during which that pod's health is 503.
    # Keys are app labels; "*" applies to services not named.
    "warmup_seconds": {"*": 0},
    # Services whose health never becomes OK.
    "never_healthy": [],
    # Seconds a new TUF repo's keys stay "pending" (423) after it is created.
    "keygen_delay_seconds": 2.0,
    # {"<app>": {"count": N, "status": 503, "path_prefix": ""}}: the next N requests to that
    # service whose path starts with path_prefix answer `status`; count is consumed.
    "bursts": {},
    # Image contracts (contracts.py): the kubelet's first crash back-off (doubled per
    # restart), and how long after its pod appears an image checks its database schema.
    "crash_backoff_seconds": 10.0,
    "schema_check_delay_seconds": 2.0,
    # The key type of a user repo whose POST names none: RSA as upstream (ota-tuf 1d0d714
    # libtuf/.../data/TufDataType.scala `KeyType.default = RsaKeyType`), or "ED25519".
    "user_repo_key_type": "RSA",
    # When a string: the key-generation daemon fails the requests of new user repos with
    # this description (ota-tuf 1d0d714 keyserver/.../daemon/KeyGeneratorLeader.scala stores
    # "<exception class>|<message>"), and tuf-keyserver answers 500 key_generation_failed.
    "keygen_error": None,
}


def _merge_knobs(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    unknown = set(update) - set(DEFAULT_KNOBS)
    if unknown:
        raise ValueError(f"unknown knobs: {', '.join(sorted(unknown))}")
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key in ("warmup_seconds", "bursts"):
            if not isinstance(value, dict):
                raise ValueError(f"{key} must be an object")
            out[key].update(value)
        elif key == "never_healthy":
            if not isinstance(value, list):
                raise ValueError("never_healthy must be a list of app names")
            out[key] = list(value)
        elif key == "user_repo_key_type":
            if value not in tufrepo.KEY_TYPES:
                raise ValueError(
                    f"user_repo_key_type must be one of {', '.join(tufrepo.KEY_TYPES)}"
                )
            out[key] = value
        elif key == "keygen_error":
            if value is not None and not isinstance(value, str):
                raise ValueError("keygen_error must be a string or null")
            out[key] = value
        else:
            out[key] = float(value)
    for app, burst in out["bursts"].items():
        if not isinstance(burst, dict) or int(burst.get("count", 0)) < 0:
            raise ValueError(f"bursts.{app} must be an object with a count >= 0")
    return out


# --------------------------------------------------------------------------- TUF


@dataclass
class TufRepo:
    """Role keys and signed root of one repository (a tuf-reposerver or director repo), with
    the state of its key generation requests as tuf-keyserver keeps them."""

    repo_id: str
    keytype: str
    created: float
    ready_at: float
    root_json: bytes = b""
    targets_pair: dict[str, Any] = field(default_factory=dict)
    # The daemon marked the requests ERROR with this description (`keygen_error` knob).
    error: str | None = None
    # A signed root is stored once someone read it (keyserver `findFreshAndPersist`);
    # before that the keyserver has no root to list key pairs from.
    root_stored: bool = False

    def ready(self) -> bool:
        return time.monotonic() >= self.ready_at


def make_tuf_repo(
    repo_id: str, delay: float, keytype: str = tufrepo.DEFAULT_KEY_TYPE, error: str | None = None
) -> TufRepo:
    """Keys for the four top-level roles and a root.json signed by the root key, as
    tuf-keyserver makes them (see tufrepo.py)."""
    keys = tufrepo.role_keys(keytype)
    now = time.monotonic()
    return TufRepo(
        repo_id=repo_id,
        keytype=keytype,
        created=now,
        ready_at=now + delay,
        root_json=tufrepo.signed_root(keys),
        targets_pair=keys["targets"].pair_json(),
        error=error,
    )


# --------------------------------------------------------------------------- state


class Store:
    """Everything the modelled services remember; one lock, since requests are threads."""

    def __init__(self, knobs: dict[str, Any]) -> None:
        self.lock = threading.Lock()
        self.initial_knobs = knobs
        self.knobs = copy.deepcopy(knobs)
        self.reset_state()

    def reset_state(self) -> None:
        # tuf-keyserver holds the keys of every repo id; the reposerver and director name theirs.
        self.keys: dict[str, TufRepo] = {}
        self.user_repos: dict[str, str] = {}  # namespace -> repo id (tuf-reposerver)
        self.director_repos: dict[str, str] = {}  # namespace -> repo id (director)
        # Keys a repeated director POST generated and left unused (namespace -> count).
        self.director_orphan_keys: dict[str, int] = {}
        self.devices: dict[str, dict[str, dict[str, Any]]] = {}  # namespace -> deviceId -> dev

    def snapshot(self) -> dict[str, Any]:
        return {
            "user_repos": dict(self.user_repos),
            "director_repos": dict(self.director_repos),
            "director_orphan_keys": dict(self.director_orphan_keys),
            "keys": {
                k: {"ready": r.ready(), "keytype": r.keytype, "error": r.error}
                for k, r in self.keys.items()
            },
            "devices": {ns: list(d.values()) for ns, d in self.devices.items()},
        }


# --------------------------------------------------------------------------- pods


@dataclass
class PodInfo:
    namespace: str
    name: str
    app: str | None
    first_seen: float


class PodIndex:
    """Pod IP → pod, kept current by a watch on the API server (with a lookup on a miss)."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        self.api_client = config.new_client_from_config(config_file=kubeconfig)
        self.v1 = client.CoreV1Api(self.api_client)
        self.lock = threading.Lock()
        self.by_ip: dict[str, PodInfo] = {}
        # Called with every pod event (the kubelet part of the image contracts).
        self.on_pod: Any = lambda _event, _pod: None

    def _put(self, pod: Any) -> None:
        ip = pod.status.pod_ip if pod.status else None
        if not ip:
            return
        app = (pod.metadata.labels or {}).get("app")
        with self.lock:
            cur = self.by_ip.get(ip)
            if cur and cur.name == pod.metadata.name and cur.namespace == pod.metadata.namespace:
                cur.app = app
                return
            self.by_ip[ip] = PodInfo(
                pod.metadata.namespace, pod.metadata.name, app, time.monotonic()
            )

    def _drop(self, pod: Any) -> None:
        ip = pod.status.pod_ip if pod.status else None
        with self.lock:
            cur = self.by_ip.get(ip or "")
            if cur and cur.name == pod.metadata.name and cur.namespace == pod.metadata.namespace:
                del self.by_ip[ip]

    def run(self) -> None:
        from kubernetes import watch

        while True:
            try:
                pods = self.v1.list_pod_for_all_namespaces()
                for p in pods.items:
                    self._put(p)
                    self.on_pod("ADDED", p)
                w = watch.Watch()
                for ev in w.stream(
                    self.v1.list_pod_for_all_namespaces,
                    resource_version=pods.metadata.resource_version,
                    timeout_seconds=300,
                ):
                    if ev["type"] == "DELETED":
                        self._drop(ev["object"])
                    elif ev["type"] in ("ADDED", "MODIFIED"):
                        self._put(ev["object"])
                    self.on_pod(ev["type"], ev["object"])
            except Exception as e:  # the API may restart or expire the watch; relist
                log.warning("pod watch: %s; relisting", e)
                time.sleep(1)

    def lookup(self, ip: str) -> PodInfo | None:
        with self.lock:
            hit = self.by_ip.get(ip)
        if hit:
            return hit
        # The proxy can connect before our watch delivered the pod; ask directly.
        try:
            pods = self.v1.list_pod_for_all_namespaces(field_selector=f"status.podIP={ip}")
        except Exception as e:
            log.warning("pod lookup %s: %s", ip, e)
            return None
        for p in pods.items:
            self._put(p)
        with self.lock:
            return self.by_ip.get(ip)

    def restart(self, app: str) -> int:
        """Start the warm-up of every pod of `app` again, as if its containers restarted."""
        n = 0
        with self.lock:
            for info in self.by_ip.values():
                if info.app == app:
                    info.first_seen = time.monotonic()
                    n += 1
        return n

    def listing(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {
                ip: {"namespace": p.namespace, "name": p.name, "app": p.app}
                for ip, p in self.by_ip.items()
            }


# --------------------------------------------------------------------------- HTTP


class Reply(Exception):
    """Raised by a route to answer at once."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _error(status: int, code: str, description: str, cause: Any = None) -> Reply:
    # libats' ErrorRepresentation (libats e12f057 libats/.../data/Errors.scala): code,
    # description, cause (null unless the error carries JSON) and errorId.
    body = {"code": code, "description": description, "cause": cause, "errorId": str(uuid.uuid4())}
    return Reply(status, body)


# What a failing check says, in libats' health shape (libats e12f057
# libats-http/.../http/HealthResource.scala: {"<check>":{"status":"down","cause":<message>}},
# every check listed; DbHealthCheck, libats-slick/.../monitoring/DbHealthCheck.scala, is
# "db"). The causes are examples of the exception messages the services would report.
DB_DOWN_CAUSE = "database - Connection is not available, request timed out after 1000ms."
# tuf-reposerver's and director's only dependency check is a ServiceHealthCheck of
# tuf-keyserver (ota-tuf 1d0d714 reposerver/.../Boot.scala, director eb75c8b Boot.scala),
# named by its URI (TUF_KEYSERVER_HOST/PORT) and failing on any non-2xx answer
# (libats e12f057 http/monitoring/HealthCheckHttpClient.scala).
KEYSERVER_URI = "http://tuf-keyserver:80"
KEYSERVER_DOWN_CAUSE = (
    "Unexpected response from service: HttpResponse(503 Service Unavailable,List(),"
    "HttpEntity.Strict(application/json,...),HttpProtocol(HTTP/1.1))"
)
DEPENDS_ON_KEYSERVER = frozenset({"tuf-reposerver", "director"})
# ota-device-registry 5494d76 src/main/scala/.../deviceregistry/data/Device.scala DeviceType.
DEVICE_TYPES = ("Other", "Vehicle")
PRIVATE_FIELDS = ("credentials", "credentialsType")


class Services:
    """The behaviour of each OTA service, chosen by the pod's app label."""

    def __init__(self, store: Store, pods: PodIndex | None) -> None:
        self.store = store
        self.pods = pods

    # -- health
    def _warming(self, app: str, pod: PodInfo) -> bool:
        k = self.store.knobs
        if app in k["never_healthy"]:
            return True
        warm = float(k["warmup_seconds"].get(app, k["warmup_seconds"].get("*", 0)))
        return time.monotonic() < pod.first_seen + warm

    def _app_down(self, app: str, namespace: str) -> bool:
        """True when no pod of `app` in the namespace would answer its /health with 200."""
        if app in self.store.knobs["never_healthy"]:
            return True
        if self.pods is None:
            return False
        with self.pods.lock:
            pods = [p for p in self.pods.by_ip.values() if (p.app, p.namespace) == (app, namespace)]
        return all(self._warming(app, p) for p in pods)

    def _health(self, app: str, pod: PodInfo, path: str, warming: bool) -> Reply:
        if path == "/health":
            if warming:
                return Reply(503, {"db": {"status": "down", "cause": DB_DOWN_CAUSE}})
            return Reply(200, {"status": "OK"})
        # /health/dependencies: only the services this one calls, not its own database.
        if app in DEPENDS_ON_KEYSERVER:
            with self.store.lock:
                down = self._app_down("tuf-keyserver", pod.namespace)
            if down:
                failing = {KEYSERVER_URI: {"status": "down", "cause": KEYSERVER_DOWN_CAUSE}}
                return Reply(502, failing)
        return Reply(200, {"status": "OK"})

    def handle(
        self,
        app: str,
        pod: PodInfo,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: Any,
        body: bytes,
    ) -> Reply:
        with self.store.lock:
            burst = self.store.knobs["bursts"].get(app)
            if (
                burst
                and int(burst.get("count", 0)) > 0
                and path.startswith(burst.get("path_prefix", ""))
            ):
                burst["count"] = int(burst["count"]) - 1
                status = int(burst.get("status", 503))
                return _error(status, "stand_in_burst", f"injected failure ({app})")
            warming = self._warming(app, pod)
        if path == "/health/version":
            return Reply(200, {"name": app, "version": VERSION})
        if path in ("/health", "/health/dependencies"):
            return self._health(app, pod, path, warming)
        if warming:
            return _error(503, "service_unavailable", f"{app} is starting")
        ns = headers.get("x-ats-namespace") or "default"
        route = {
            "tuf-reposerver": self.reposerver,
            "director": self.director,
            "tuf-keyserver": self.keyserver,
            "device-registry": self.device_registry,
        }.get(app)
        if route is not None:
            return route(method, path, query, ns, body)
        raise _error(404, "not_found", f"the stand-in does not model {method} {path} on {app}")

    # -- tuf-keyserver's answers for a repo's root (shared by the reposerver, which asks it)
    def _root(self, repo: TufRepo) -> Reply:
        """GET /api/v1/root/<repo id> on tuf-keyserver (ota-tuf 1d0d714
        keyserver/.../http/RootRoleResource.scala -> roles/KeyGenerationRequests.scala
        `findFreshAndPersist`, `readyKeyGenRequests`, http/Errors.scala)."""
        if repo.error is not None:
            # One ERROR description per key generation request (one per role).
            causes = {str(uuid.uuid4()): repo.error for _ in tufrepo.ROLES}
            raise _error(500, "key_generation_failed", "Could not generate keys", causes)
        if not repo.ready():
            raise _error(423, "keys_not_ready", "A key generation request exists")
        repo.root_stored = True
        return Reply(200, repo.root_json)

    # -- tuf-reposerver
    def reposerver(self, method: str, path: str, _q: Any, ns: str, body: bytes) -> Reply:
        """ota-tuf 1d0d714 reposerver/.../http/RepoResource.scala (user_repo routes)."""
        s = self.store
        if path == "/api/v1/user_repo" and method == "POST":
            keytype = s.knobs["user_repo_key_type"]
            # An optional CreateRepositoryRequest {"keyType": ...} (libtuf-server
            # data/Requests.scala); without one, KeyType.default (RSA).
            try:
                req = json.loads(body) if body.strip() else None
            except ValueError:
                req = None
            if isinstance(req, dict) and "keyType" in req:
                keytype = req["keyType"]
                if keytype not in tufrepo.KEY_TYPES:
                    # The decoder's failure (TufCodecs keyTypeDecoder): 400, plain text.
                    raise Reply(400, f"Unknown KeyType: {keytype}".encode())
            with s.lock:
                if ns in s.user_repos:
                    # RepoNamespaceRepository.ensureNotExists: EntityAlreadyExists.
                    raise _error(409, "conflicting_entity", "Entity already exists: Tuple2")
                error = s.knobs["keygen_error"]
            # Keys are made now; they count as generated after keygen_delay_seconds (the
            # key-generation daemon's work), or failed with `keygen_error`.
            repo = make_tuf_repo(
                str(uuid.uuid4()), float(s.knobs["keygen_delay_seconds"]), keytype, error
            )
            with s.lock:
                if ns in s.user_repos:
                    raise _error(409, "conflicting_entity", "Entity already exists: Tuple2")
                s.keys[repo.repo_id] = repo
                s.user_repos[ns] = repo.repo_id
            return Reply(200, repo.repo_id)
        if path == "/api/v1/user_repo/root.json" and method == "GET":
            with s.lock:
                repo = s.keys.get(s.user_repos.get(ns, ""))
                if repo is None:
                    raise _error(
                        404, "no_repo_for_namespace", f"No repository exists for namespace {ns}"
                    )
                try:
                    answer = self._root(repo)
                except Reply as r:
                    # libtuf-server keyserver/KeyserverClient.scala fetchRootRole: 423 ->
                    # KeysNotReady; anything else is a RemoteServiceError, passed on as 502
                    # with the keyserver's code and its error as cause (libats e12f057
                    # ServiceHttpClient.scala, ErrorHandler.scala).
                    if r.status == 423:
                        not_ready = "Keys not ready in remote keyserver"
                        raise _error(423, "keys_not_ready", not_ready) from None
                    described = (
                        f"KeyserverHttpClient|Unexpected response from remote server at "
                        f"{KEYSERVER_URI}/api/v1/root/{repo.repo_id}|GET|{r.status}|"
                        f"{r.body['description']}"
                    )
                    raise _error(502, r.body["code"], described, r.body) from None
            answer.headers["x-ats-tuf-repo-id"] = repo.repo_id
            return answer
        raise _error(404, "not_found", f"{method} {path}")

    # -- director
    def director(self, method: str, path: str, _q: Any, ns: str, _b: bytes) -> Reply:
        s = self.store
        if path == "/api/v1/admin/repo" and method == "POST":
            with s.lock:
                if ns in s.director_repos:
                    s.director_orphan_keys[ns] = s.director_orphan_keys.get(ns, 0) + 1
                    # The real director generates orphan keys first, then fails like this.
                    raise _error(409, "conflicting_entity", f"namespace {ns} already has a repo")
            # ED25519 keys, generated at once (director eb75c8b http/RepositoryCreation.scala:
            # createRoot(repoId, Ed25519KeyType, forceSync = true)).
            repo = make_tuf_repo(str(uuid.uuid4()), 0.0, "ED25519")
            with s.lock:
                s.keys[repo.repo_id] = repo
                s.director_repos[ns] = repo.repo_id
            return Reply(201, None)
        if path == "/api/v1/admin/repo/root.json" and method == "GET":
            with s.lock:
                repo = s.keys.get(s.director_repos.get(ns, ""))
            if repo is None:
                raise _error(404, "missing_entity", f"no director repo for namespace {ns}")
            return Reply(200, repo.root_json, {"x-ats-tuf-repo-id": repo.repo_id})
        raise _error(404, "not_found", f"{method} {path}")

    # -- tuf-keyserver
    def keyserver(self, method: str, path: str, _q: Any, _ns: str, _b: bytes) -> Reply:
        """ota-tuf 1d0d714 keyserver/.../http/RootRoleResource.scala."""
        parts = path.strip("/").split("/")
        # api/v1/root/ID[/keys/targets/pairs]
        if len(parts) >= 4 and parts[:3] == ["api", "v1", "root"]:
            with self.store.lock:
                repo = self.store.keys.get(parts[3])
                if repo is None:
                    # No key generation requests: KeyRepository.KeyNotFound.
                    raise _error(404, "missing_entity", "Missing entity: Key")
                if len(parts) == 4 and method == "GET":
                    return self._root(repo)
                if len(parts) == 4 and method == "PUT":
                    # forceRetry: requests in ERROR go back to REQUESTED for the daemon.
                    if repo.error is not None:
                        repo.error = None
                        delay = float(self.store.knobs["keygen_delay_seconds"])
                        repo.ready_at = time.monotonic() + delay
                    return Reply(200, None)
                if parts[4:] == ["keys", "targets", "pairs"] and method == "GET":
                    # RootRoleKeyEdit.findAllKeyPairs reads the stored signed root, which
                    # exists once the root was read (SignedRootRoleRepository.findLatest).
                    if not repo.root_stored:
                        raise _error(404, "missing_entity", "Missing entity: RootRole")
                    return Reply(200, [repo.targets_pair])
        raise _error(404, "not_found", f"{method} {path}")

    # -- device-registry
    @staticmethod
    def _public(device: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in device.items() if k not in PRIVATE_FIELDS}

    def device_registry(
        self, method: str, path: str, q: dict[str, list[str]], ns: str, body: bytes
    ) -> Reply:
        """ota-device-registry 5494d76 (files under src/main/scala/.../deviceregistry/)."""
        s = self.store
        if path == "/api/v1/devices" and method == "PUT":
            return self._put_device(ns, body)
        if path == "/api/v1/devices" and method == "GET":
            return self._search(ns, q)
        if path.startswith("/api/v1/devices/") and method == "GET":
            dev_uuid = path.rsplit("/", 1)[1]
            with s.lock:
                for d in s.devices.get(ns, {}).values():
                    if d["uuid"] == dev_uuid:
                        return Reply(200, self._public(d))
            raise _error(404, "missing_device", "device doesn't exist")
        raise _error(404, "not_found", f"{method} {path}")

    def _put_device(self, ns: str, body: bytes) -> Reply:
        """PublicCredentialsResource.createDeviceWithPublicCredentials: a known deviceId
        keeps its uuid and gets the new credentials (DeviceRepository
        .findUuidFromUniqueDeviceIdOrCreate, PublicCredentialsRepository.update is an
        insertOrUpdate); a new one is created with the given uuid, and a taken name or
        uuid is 409 conflicting_device (db/migration V1 PRIMARY KEY (uuid), V3 UNIQUE
        (namespace, device_name); common/Errors.scala)."""
        try:
            req = json.loads(body or b"null")
        except ValueError:
            raise _error(400, "invalid_entity", "body is not JSON") from None
        # data/DataType.scala DeviceT: deviceName and deviceId required, uuid optional,
        # deviceType defaults to Other; DeviceName.scala: at most 200 characters.
        if not isinstance(req, dict) or any(
            not isinstance(req.get(k), str) for k in ("deviceId", "deviceName")
        ):
            raise _error(400, "invalid_entity", "Attempt to decode value on failed cursor")
        if len(req["deviceName"]) > 200:
            raise _error(400, "invalid_entity", f"{req['deviceName']} is not a valid DeviceName")
        device_type = req.get("deviceType", "Other")
        dev_uuid = req.get("uuid") or str(uuid.uuid4())
        if device_type not in DEVICE_TYPES or not isinstance(dev_uuid, str):
            raise _error(400, "invalid_entity", "Attempt to decode value on failed cursor")
        if not isinstance(req.get("credentials"), str):
            raise _error(400, "request_needs_credentials", "request should contain credentials")
        with self.store.lock:
            devs = self.store.devices.setdefault(ns, {})
            dev = devs.get(req["deviceId"])
            if dev is None:
                taken_name = any(d["deviceName"] == req["deviceName"] for d in devs.values())
                taken_uuid = any(
                    d["uuid"] == dev_uuid for ds in self.store.devices.values() for d in ds.values()
                )
                if taken_name or taken_uuid:
                    raise _error(
                        409, "conflicting_device", "deviceId or deviceName is already in use"
                    )
                dev = {
                    "namespace": ns,
                    "uuid": dev_uuid,
                    "deviceName": req["deviceName"],
                    "deviceId": req["deviceId"],
                    "deviceType": device_type,
                    "lastSeen": None,
                    "createdAt": dt.datetime.now(dt.UTC).isoformat(),
                    "activatedAt": None,
                    "deviceStatus": "NotSeen",
                }
                devs[req["deviceId"]] = dev
            # The device of a known deviceId keeps its uuid and loses its old credentials.
            dev["credentials"] = req["credentials"]
            dev["credentialsType"] = req.get("credentialsType") or "PEM"
            return Reply(200, dev["uuid"])

    def _search(self, ns: str, q: dict[str, list[str]]) -> Reply:
        """DevicesResource.searchDevice -> DeviceRepository.search: by deviceId (exact,
        alone: SearchParams refuses it with groupId, nameContains or notSeenSinceHours), or
        by nameContains (case-insensitive); sorted by name; a PaginationResult page."""
        offset = int(q.get("offset", ["0"])[0])
        limit = int(q.get("limit", ["50"])[0])
        device_id = q.get("deviceId", [None])[0]
        contains = q.get("nameContains", [""])[0].lower()
        for other in ("groupId", "nameContains", "notSeenSinceHours"):
            if device_id is not None and other in q:
                raise _error(
                    400,
                    "invalid_entity",
                    f"requirement failed: Invalid parameters: {other} must be empty when "
                    "searching by deviceId.",
                )
        with self.store.lock:
            devs = self.store.devices.get(ns, {})
            if device_id is not None:
                found = [devs[device_id]] if device_id in devs else []
            else:
                found = [d for d in devs.values() if contains in d["deviceName"].lower()]
            page = [self._public(d) for d in sorted(found, key=lambda d: d["deviceName"])]
        return Reply(
            200,
            {"values": page[offset : offset + limit], "total": len(page), "offset": offset,
             "limit": limit},
        )  # fmt: skip


def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
    if reply.body is None:
        data = b""
    elif isinstance(reply.body, bytes):
        data = reply.body
    else:
        data = json.dumps(reply.body).encode()
    handler.send_response(reply.status)
    if data:
        handler.send_header("Content-Type", "application/json")
    for k, v in reply.headers.items():
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive as the API server's proxy expects; every answer carries Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the peer's
    # delayed ACK (~40 ms per request). The Scala services' akka-http sets TCP_NODELAY too.
    disable_nagle_algorithm = True
    server: Any

    def log_message(self, fmt: str, *args: Any) -> None:
        # The local address is the pod IP, i.e. which pod (and service) answered.
        log.info("%s %s", self.connection.getsockname()[0], fmt % args)

    def _body(self) -> bytes:
        # The API server's proxy streams request bodies chunked; read them whole, or the
        # rest of the body would be taken for the next request on this keep-alive connection.
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _dispatch(self) -> None:
        body = self._body()
        try:
            _send(self, self.server.route(self, body))
        except Reply as r:
            _send(self, r)
        except contracts.Refused as e:  # nothing listens on that port of the pod
            log.info("refused: %s", e)
            self.close_connection = True
        except Exception as e:  # a bug here must show as a 500, not a dropped connection
            log.exception("handler failed")
            _send(self, _error(500, "stand_in_error", str(e)))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch


class PodServer(ThreadingHTTPServer):
    """The listener every pod IP lands on; the local address picks the service."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        addr: tuple[str, int],
        pods: PodIndex,
        services: Services,
        kubelet: contracts.Kubelet | None = None,
    ) -> None:
        super().__init__(addr, _Handler)
        self.pods = pods
        self.services = services
        self.kubelet = kubelet

    def route(self, h: BaseHTTPRequestHandler, body: bytes) -> Reply:
        local_ip = h.connection.getsockname()[0]
        pod = self.pods.lookup(local_ip)
        if pod is None:
            raise _error(404, "no_pod", f"no pod has IP {local_ip}")
        if pod.app not in SCALA_SERVICES:
            raise _error(404, "not_modelled", f"pod {pod.namespace}/{pod.name} app={pod.app}")
        url = urlsplit(h.path)
        # What the pod's image does with the settings it got (contracts.yaml), around the
        # service's own routes.
        verdict = self.kubelet.verdict(pod.namespace, pod.name) if self.kubelet else None
        port = h.connection.getsockname()[1]
        gate = contracts.http_gate(verdict, port, h.command, url.path, h.headers)
        if gate is not None:
            return Reply(gate.status, gate.body, gate.headers)
        reply = self.services.handle(
            pod.app, pod, h.command, url.path, parse_qs(url.query), h.headers, body
        )
        if self.kubelet is not None:
            k = self.kubelet
            after = contracts.after_reply(k.contracts, k.world, verdict, url.path, reply.status)
            if after is not None:
                return Reply(after.status, after.body, after.headers)
        return reply


class ControlServer(ThreadingHTTPServer):
    """Knobs and inspection for tests: loopback only (forwarded to the host by `up`)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], store: Store, pods: PodIndex) -> None:
        super().__init__(addr, _Handler)
        self.store = store
        self.pods = pods

    def route(self, h: BaseHTTPRequestHandler, body: bytes) -> Reply:
        s = self.store
        url = urlsplit(h.path)
        path, q = url.path, parse_qs(url.query)
        m = h.command
        if path == "/healthz":
            return Reply(200, {"status": "OK"})
        if path == "/knobs" and m == "GET":
            with s.lock:
                return Reply(200, s.knobs)
        if path == "/knobs" and m in ("PUT", "POST", "PATCH"):
            try:
                update = json.loads(body or b"{}")
                with s.lock:
                    s.knobs = _merge_knobs(s.knobs, update)
                    return Reply(200, s.knobs)
            except (ValueError, TypeError) as e:
                raise _error(400, "invalid_knobs", str(e)) from None
        if path == "/reset" and m == "POST":
            # ?keep=state: only the knobs (the services' data, repos and devices, stays).
            with s.lock:
                s.knobs = copy.deepcopy(s.initial_knobs)
                if q.get("keep") != ["state"]:
                    s.reset_state()
            return Reply(200, {"status": "OK"})
        if path == "/state" and m == "GET":
            with s.lock:
                return Reply(200, s.snapshot())
        if path == "/devices" and m == "GET":
            ns = q.get("namespace", ["default"])[0]
            with s.lock:
                return Reply(200, list(s.devices.get(ns, {}).values()))
        if path == "/pods" and m == "GET":
            return Reply(200, self.pods.listing())
        if path == "/restart" and m == "POST":
            app = q.get("app", [""])[0]
            return Reply(200, {"restarted": self.pods.restart(app)})
        raise _error(404, "not_found", f"{m} {path}")


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


# What the stand-in imports beyond the standard library ([project].dependencies of otactl).
NEEDS = {
    "kubernetes": "kubernetes",
    "yaml": "pyyaml",
    "cryptography": "cryptography",
}


def missing_packages() -> list[str]:
    import importlib.util

    return [pkg for mod, pkg in NEEDS.items() if importlib.util.find_spec(mod) is None]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only check the Python packages")
    p.add_argument("--kubeconfig")
    p.add_argument("--listen", default="0.0.0.0:9001")
    p.add_argument("--control", default="127.0.0.1:9100")
    p.add_argument("--config", help="JSON file with initial knobs")
    args = p.parse_args(argv)
    missing = missing_packages()
    if missing:
        sys.exit(
            f"error: the local cluster's OTA services stand-in needs the Python packages "
            f"{', '.join(missing)} (reinstall otactl: pip install .)"
        )
    if args.check:
        return
    if not args.kubeconfig:
        p.error("--kubeconfig is required")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout
    )
    knobs = copy.deepcopy(DEFAULT_KNOBS)
    if args.config:
        with open(args.config) as f:
            knobs = _merge_knobs(knobs, json.load(f))
    store = Store(knobs)
    pods = PodIndex(args.kubeconfig)
    kubelet = contracts.Kubelet(pods.v1, pods.api_client, contracts.load(), lambda: store.knobs)
    pods.on_pod = kubelet.on_pod
    threading.Thread(target=kubelet.run, name="kubelet", daemon=True).start()
    threading.Thread(target=pods.run, name="pod-watch", daemon=True).start()
    pod_server = PodServer(_addr(args.listen), pods, Services(store, pods), kubelet)
    control = ControlServer(_addr(args.control), store, pods)
    threading.Thread(target=pod_server.serve_forever, name="pods", daemon=True).start()
    log.info("serving pods on %s, control on %s, knobs %s", args.listen, args.control, knobs)
    control.serve_forever()


if __name__ == "__main__":
    main()
