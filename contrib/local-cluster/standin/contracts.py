"""Image contracts for the local cluster: what each pinned image needs from its pod, and
what the image does when it does not get it.

`contracts.yaml` beside this file holds the data (per image: user, writable paths, main
classes, settings; then the rules, each citing its upstream file). This module has two
halves:

- `evaluate(pod, objects, world)`: a pure function. It resolves the environment every
  container would get (env, envFrom, service links; ConfigMaps and Secrets passed in),
  reads the settings the image would read, and returns which rules the pod breaks.
- `Kubelet`: the stand-in's part of a kubelet for kwok's pods. It evaluates each new pod
  through the API server, marks it (annotation standin.otactl.io/verdict) so that kwok's
  pod-start stages make it Running (and Ready only when it keeps its contract), and plays
  the crash loop of a pod that breaks a start rule: restartCount, lastState.terminated
  with the image's error, waiting CrashLoopBackOff, a restart after kubelet's back-off
  (each restart re-reads the ConfigMaps and Secrets, as a real container start does).

`http_gate` and `after_reply` are the hooks of the HTTP side: a pod whose settings make
the real service refuse (OAuth by default, keys never generated, the app's login) answers
as the real one would.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import heapq
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("standin.contracts")

DATA = Path(__file__).with_name("contracts.yaml")
VERDICT = "standin.otactl.io/verdict"
WARNINGS = "standin.otactl.io/warnings"
EFFECTS = ("start", "http", "degrade")


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Main:
    name: str
    default: bool
    schema: str  # none, check, migrate, migrate-and-check
    generates_keys: bool
    cite: str


@dataclass(frozen=True)
class Setting:
    key: str
    env: str | None
    default: str | None


@dataclass(frozen=True)
class Contract:
    name: str
    image: str
    uid: int
    gid: int
    writable: tuple[str, ...]
    mains: dict[str, Main]
    database: str | None
    settings: dict[str, Setting]

    def default_main(self) -> str | None:
        return next((m.name for m in self.mains.values() if m.default), None)


@dataclass(frozen=True)
class Rule:
    id: str
    effect: str
    images: tuple[str, ...]
    check: dict[str, Any]
    error: str
    cite: str
    after_migrations: bool = False


@dataclass(frozen=True)
class Contracts:
    sources: dict[str, dict[str, str]]
    images: dict[str, Contract]  # image reference -> contract
    rules: tuple[Rule, ...]

    def cite(self, text: str) -> str:
        """`source:path` as `owner/repo@commit:path` (commit shortened)."""
        name, _, path = text.partition(":")
        src = self.sources[name]
        commit = src["commit"]
        short = commit[:7] if re.fullmatch(r"[0-9a-f]{40}", commit) else commit
        return f"{src['repo']}@{short}:{path}"

    def rules_for(self, contract: Contract) -> list[Rule]:
        return [r for r in self.rules if contract.name in r.images]


def load(path: Path = DATA) -> Contracts:
    """Read and check the data file: every cite names a known source, every rule a known
    image and effect."""
    raw = yaml.safe_load(path.read_text())
    sources = raw["sources"]
    images: dict[str, Contract] = {}
    names = set()
    cites = []
    for name, spec in raw["images"].items():
        names.add(name)
        cites.append(spec["user"]["cite"])
        settings = dict(spec.get("settings") or {})
        cites.append(settings.pop("conf"))
        mains = {}
        for main, m in (spec.get("mains") or {}).items():
            cites.append(m["cite"])
            mains[main] = Main(
                main,
                bool(m.get("default")),
                m.get("schema", "none"),
                bool(m.get("generates_keys")),
                m["cite"],
            )
        images[spec["image"]] = Contract(
            name=name,
            image=spec["image"],
            uid=int(spec["user"]["uid"]),
            gid=int(spec["user"]["gid"]),
            writable=tuple(spec.get("writable") or ()),
            mains=mains,
            database=spec.get("database"),
            settings={
                k: Setting(k, s.get("env"), None if s.get("default") is None else str(s["default"]))
                for k, s in settings.items()
            },
        )
    rules = []
    for r in raw["rules"]:
        unknown = set(r["images"]) - names
        if unknown or r["effect"] not in EFFECTS:
            raise ValueError(f"rule {r['id']}: unknown image or effect: {unknown or r['effect']}")
        cites.append(r["cite"])
        rules.append(
            Rule(
                r["id"],
                r["effect"],
                tuple(r["images"]),
                dict(r["check"]),
                r["error"],
                r["cite"],
                bool(r.get("after_migrations")),
            )
        )
    for c in cites:
        if c.partition(":")[0] not in sources:
            raise ValueError(f"{path}: cite {c!r} names no source")
    return Contracts(sources, images, tuple(rules))


# --------------------------------------------------------------------------- evaluation


@dataclass
class World:
    """What the images depend on beyond their pod: the database schemas a migrator has
    migrated (they stay migrated), and the key-generation daemons running now."""

    migrated: set[tuple[str, str]] = field(default_factory=set)  # (namespace, schema)
    key_daemons: dict[str, set[str]] = field(default_factory=dict)  # namespace -> pods

    def keys_generated_in(self, namespace: str) -> bool:
        with self.lock:
            return bool(self.key_daemons.get(namespace))

    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Violation:
    rule: Rule
    message: str  # the image's error, then where the rule comes from
    exit_code: int = 1
    probe_only: str | None = None  # "readiness": the pod runs but never becomes ready


@dataclass
class ContainerVerdict:
    name: str
    contract: Contract | None
    main: str | None = None
    config_error: str | None = None  # CreateContainerConfigError: a missing ConfigMap...
    violations: list[Violation] = field(default_factory=list)  # start rules broken
    http: list[Violation] = field(default_factory=list)  # http rules broken
    warnings: list[Violation] = field(default_factory=list)  # degrade rules broken
    listen_port: int | None = None
    migrates: str | None = None  # schema this container migrates when it starts
    generates_keys: bool = False

    @property
    def starts(self) -> bool:
        return self.config_error is None and not self.violations

    def migrated(self) -> str | None:
        """The schema this container migrated when it ran: its migrations come before any
        check it fails that is marked after_migrations."""
        if self.config_error is not None or not self.migrates:
            return None
        return self.migrates if all(v.rule.after_migrations for v in self.violations) else None


@dataclass
class PodVerdict:
    namespace: str
    name: str
    containers: list[ContainerVerdict]

    @property
    def modelled(self) -> bool:
        return any(c.contract is not None for c in self.containers)

    @property
    def ok(self) -> bool:
        return all(c.starts for c in self.containers)

    def config_error(self) -> str | None:
        return next((c.config_error for c in self.containers if c.config_error), None)


class Objects:
    """The ConfigMaps, Secrets and Services of the pod's namespace, as the kubelet sees them."""

    def __init__(
        self,
        configmaps: Mapping[str, Mapping[str, str]],
        secrets: Mapping[str, Mapping[str, str]],  # values decoded
        services: Mapping[str, dict[str, Any]],
    ) -> None:
        self.configmaps = configmaps
        self.secrets = secrets
        self.services = services


def _service_env(services: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """Docker-link variables the kubelet injects for each Service (enableServiceLinks)."""
    env: dict[str, str] = {}
    for name, spec in services.items():
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        prefix = name.upper().replace("-", "_")
        first = ports[0]
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(first["port"])
        env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
    return env


def container_env(
    pod: dict[str, Any], container: dict[str, Any], objects: Objects
) -> tuple[dict[str, str], str | None]:
    """The environment the container starts with, or the kubelet's configuration error."""
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    if pod["spec"].get("enableServiceLinks", True) is not False:
        env.update(_service_env(objects.services))
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, ref_key, store in (
            ("configmap", "configMapRef", objects.configmaps),
            ("secret", "secretRef", objects.secrets),
        ):
            ref = src.get(ref_key)
            if ref is None:
                continue
            data = store.get(ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                return env, f'{kind} "{ref["name"]}" not found'
            env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        if "value" in var or "valueFrom" not in var:
            env[var["name"]] = var.get("value", "")
            continue
        source = var["valueFrom"]
        for kind, ref_key, store in (
            ("ConfigMap", "configMapKeyRef", objects.configmaps),
            ("Secret", "secretKeyRef", objects.secrets),
        ):
            ref = source.get(ref_key)
            if ref is None:
                continue
            data = store.get(ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    break
                what = "not found" if data is None else f"has no key {ref['key']}"
                return env, f"{kind} {ns}/{ref['name']} {what} (env {var['name']})"
            env[var["name"]] = data[ref["key"]]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            env[var["name"]] = {
                "status.podIP": (pod.get("status") or {}).get("podIP", ""),
                "metadata.name": pod["metadata"]["name"],
                "metadata.namespace": ns,
            }.get(path, "")
    return env, None


def _jvm_options(container: dict[str, Any], env: Mapping[str, str]) -> tuple[str | None, dict]:
    """`-main CLASS` and `-Dkey=value` as the sbt-native-packager start script reads them
    from the arguments (and JAVA_OPTS)."""
    args = list(container.get("args") or [])
    main = None
    props: dict[str, str] = {}
    words = (env.get("JAVA_OPTS") or "").split() + args
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-main" and i + 1 < len(words):
            main = words[i + 1]
            i += 1
        elif word.startswith("-D") and "=" in word:
            key, _, value = word[2:].partition("=")
            props[key] = value
        i += 1
    return main, props


class Config:
    """The settings one container reads: system property, then env var, then default."""

    def __init__(self, contract: Contract, env: Mapping[str, str], props: Mapping[str, str]):
        self.contract = contract
        self.env = env
        self.props = props

    def get(self, key: str) -> str | None:
        if key in self.props:
            return self.props[key]
        s = self.contract.settings[key]
        if s.env and s.env in self.env:
            return self.env[s.env]
        return s.default

    def is_set(self, key: str) -> bool:
        s = self.contract.settings[key]
        return key in self.props or bool(s.env and self.env.get(s.env))

    def env_name(self, key: str) -> str:
        return self.contract.settings[key].env or f"-D{key}"


def _schema(url: str | None) -> str | None:
    m = re.match(r"^jdbc:[a-z]+://[^/]+/([^?;]+)", url or "")
    return m.group(1) if m else None


def _mount_for(container: dict[str, Any], path: str) -> dict[str, Any] | None:
    best = None
    for m in container.get("volumeMounts") or []:
        mp = m["mountPath"].rstrip("/") or "/"
        if (path == mp or path.startswith(mp + "/") or mp == "/") and (
            best is None or len(mp) > len(best["mountPath"])
        ):
            best = m
    return best


def _volume(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next((v for v in pod["spec"].get("volumes") or [] if v["name"] == name), {})


def _run_as(pod: dict[str, Any], container: dict[str, Any], contract: Contract) -> int:
    for ctx in (container.get("securityContext") or {}, pod["spec"].get("securityContext") or {}):
        if ctx.get("runAsUser") is not None:
            return int(ctx["runAsUser"])
    return contract.uid


def _chowned_by_init(pod: dict[str, Any], volume: str, uid: int) -> bool:
    """An init container that mounts the volume and chowns it to the image's user."""
    for init in pod["spec"].get("initContainers") or []:
        if not any(m["name"] == volume for m in init.get("volumeMounts") or []):
            continue
        text = " ".join((init.get("command") or []) + (init.get("args") or []))
        if re.search(rf"\bchown\b(\s+-\S+)*\s+{uid}(:\d+)?\s", text + " "):
            return True
    return False


def writable_why(
    pod: dict[str, Any], container: dict[str, Any], contract: Contract, path: str
) -> str | None:
    """None when the image's user can write `path`; else why not."""
    uid = _run_as(pod, container, contract)
    mount = _mount_for(container, path)
    if mount is None and (container.get("securityContext") or {}).get("readOnlyRootFilesystem"):
        # The container runtime mounts the image's filesystem read-only: root cannot write
        # it either (EROFS).
        return (
            f"{path} is on the image's own filesystem, mounted read-only (readOnlyRootFilesystem)"
        )
    if uid == 0:
        return None
    if mount is None:
        if any(path == w or path.startswith(w.rstrip("/") + "/") for w in contract.writable):
            return None
        return (
            f"{path} is on the image's own filesystem, owned by root; the image runs as uid "
            f"{uid} and may write only under {', '.join(contract.writable)}"
        )
    if mount.get("readOnly"):
        return f"{path} is on volume {mount['name']}, mounted read-only"
    vol = _volume(pod, mount["name"])
    if "emptyDir" in vol:
        return None  # created world-writable by the kubelet
    if (pod["spec"].get("securityContext") or {}).get("fsGroup") is not None:
        return None  # the kubelet gives the volume to fsGroup, a group of every container
    if _chowned_by_init(pod, mount["name"], uid):
        return None
    kind = next((k for k in vol if k != "name"), "volume")
    return (
        f"{path} is on volume {mount['name']} ({kind}), owned by root on a real disk; the "
        f"image runs as uid {uid}: set the pod's securityContext.fsGroup or chown it to "
        f"{uid} in an init container"
    )


def _persistent(pod: dict[str, Any], container: dict[str, Any], path: str) -> bool:
    mount = _mount_for(container, path)
    return mount is not None and "persistentVolumeClaim" in _volume(pod, mount["name"])


def _probe_port(container: dict[str, Any], probe: dict[str, Any]) -> tuple[Any, str, str]:
    action = probe.get("httpGet") or probe.get("tcpSocket") or {}
    port = action.get("port")
    if isinstance(port, str) and not port.isdigit():
        named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
        port = named.get(port, port)
    return port, action.get("host", ""), action.get("path", "")


class _Fields(dict):  # format_map that leaves unknown fields visible
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _violation(contracts: Contracts, rule: Rule, **fields: Any) -> Violation:
    exit_code = int(fields.pop("exit_code", 1))
    probe_only = fields.pop("probe_only", None)
    text = rule.error.format_map(_Fields({k: str(v) for k, v in fields.items()}))
    return Violation(
        rule,
        f"{text} [contract {rule.id}: {contracts.cite(rule.cite)}]",
        exit_code,
        probe_only,
    )


def _check(
    contracts: Contracts,
    rule: Rule,
    pod: dict[str, Any],
    container: dict[str, Any],
    cv: ContainerVerdict,
    cfg: Config,
    world: World,
) -> list[Violation]:
    c = rule.check
    kind = c["kind"]
    contract = cfg.contract
    ns = pod["metadata"]["namespace"]
    v = lambda **f: [_violation(contracts, rule, **f)]  # noqa: E731

    if kind == "main_class":
        return [] if cv.main in contract.mains else v(main=cv.main)
    if kind == "setting_not_default":
        key = c["setting"]
        return [] if cfg.is_set(key) else v(value=cfg.get(key), setting=key)
    if kind == "setting_set":
        key = c["setting"]
        return [] if cfg.is_set(key) else v(setting=key, env=cfg.env_name(key))
    if kind == "settings_set":
        for key in c["settings"]:
            if key in contract.settings and not cfg.is_set(key):
                user_key = "database.properties.user"
                user = cfg.get(user_key) if user_key in contract.settings else ""
                return v(setting=key, env=cfg.env_name(key), user=user)
        return []
    if kind == "hosts_set":
        for key in c["settings"]:
            if key in contract.settings and not cfg.is_set(key):
                return v(setting=f"{key} ({cfg.env_name(key)})")
        return []
    if kind == "setting_equals":
        value = cfg.get(c["setting"])
        return [] if value == c["value"] else v(value=value, setting=c["setting"])
    if kind == "min_length":
        value = cfg.get(c["setting"]) or ""
        return [] if len(value) >= int(c["min"]) else v(length=len(value))
    if kind == "base64_min_bytes":
        value = cfg.get(c["setting"]) or ""
        try:
            n = len(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            n = -1
        return [] if n >= int(c["min"]) else v(value=value)
    if kind == "s3_credentials":
        if cfg.get(c["type"]) != "s3":
            return []
        missing = [k for k in c["keys"] if not cfg.get(k)]
        return v(key=missing[0]) if missing else []
    if kind == "writable":
        when = c.get("when") or {}
        if any(cfg.get(k) != val for k, val in when.items()):
            return []
        path = cfg.get(c["setting"]) or ""
        for one in path.split(","):
            why = writable_why(pod, container, contract, one.strip())
            if why:
                return v(path=one.strip(), why=why)
        return []
    if kind == "persistent":
        when = c.get("when") or {}
        for key in c["settings"]:
            if key not in contract.settings:
                continue
            gate = {k: val for k, val in when.items() if k in contract.settings}
            if any(cfg.get(k) != val for k, val in gate.items()):
                continue
            for one in (cfg.get(key) or "").split(","):
                if one and not _persistent(pod, container, one.strip()):
                    return v(path=one.strip())
        return []
    if kind == "env_set":
        missing = [e for e in c["env"] if not cfg.env.get(e)]
        return v(env=missing[0]) if missing else []
    if kind == "env_unset":
        for e in c["env"]:
            if e in cfg.env:
                what = e.removeprefix("KAFKA_").lower().replace("_", ".")
                links = pod["spec"].get("enableServiceLinks", True) is not False
                why = "; the Service link variables of enableServiceLinks set it" if links else ""
                return v(env=e, what=what, why=why)
        return []
    if kind == "schema_migrated":
        main = contract.mains.get(cv.main or "")
        if main is None or main.schema not in ("check", "migrate-and-check"):
            return []
        schema = _schema(cfg.get("database.url"))
        if schema is None:
            return []  # the db-url rule speaks
        if main.schema == "migrate-and-check" and cv.migrates:
            return []
        with world.lock:
            done = (ns, schema) in world.migrated
        migrators = [m.name for m in contract.mains.values() if m.schema.startswith("migrate")]
        return [] if done else v(schema=schema, migrators=" or ".join(migrators))
    if kind == "listen":
        return _listen(contracts, rule, pod, container, cv, cfg)
    if kind == "key_daemon":
        return []  # evaluated per request (after_reply), where the namespace's state lives
    raise ValueError(f"rule {rule.id}: unknown check kind {kind}")


def _listen(
    contracts: Contracts,
    rule: Rule,
    pod: dict[str, Any],
    container: dict[str, Any],
    cv: ContainerVerdict,
    cfg: Config,
) -> list[Violation]:
    settings = cfg.contract.settings
    port_key = "http.port" if "http.port" in settings else "server.port"
    port = int(cfg.get(port_key) or 0)
    host = cfg.get("server.host") if "server.host" in settings else "0.0.0.0"
    cv.listen_port = port
    ip = (pod.get("status") or {}).get("podIP") or "<pod IP>"
    listen = f"{host}:{port}"
    # The startup probe gates the others and kills the container when it fails; liveness
    # kills it too; a failing readiness probe alone leaves it running, never ready.
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(kind)
        if not probe:
            continue
        pport, phost, path = _probe_port(container, probe)
        loopback = host in ("localhost", "127.0.0.1")
        if pport == port and not loopback and phost in ("", ip):
            continue
        return [
            _violation(
                contracts,
                rule,
                probe=kind.removesuffix("Probe").capitalize(),
                ip=ip,
                port=pport,
                path=path,
                listen=listen,
                exit_code=143,
                probe_only="readiness" if kind == "readinessProbe" else None,
            )
        ]
    return []


def evaluate(
    contracts: Contracts, pod: dict[str, Any], objects: Objects, world: World
) -> PodVerdict:
    """Which rules each container of `pod` breaks, given its namespace's objects."""
    verdict = PodVerdict(pod["metadata"]["namespace"], pod["metadata"]["name"], [])
    for container in pod["spec"].get("containers") or []:
        contract = contracts.images.get(container.get("image", ""))
        cv = ContainerVerdict(container["name"], contract)
        verdict.containers.append(cv)
        env, error = container_env(pod, container, objects)
        if error:
            cv.config_error = error
            continue
        if contract is None:
            continue
        main, props = _jvm_options(container, env)
        cv.main = main or contract.default_main()
        cfg = Config(contract, env, props)
        m = contract.mains.get(cv.main or "")
        if m is not None:
            migrate = m.schema.startswith("migrate") and cfg.get("database.migrate") == "true"
            if migrate and cfg.is_set("database.url"):
                cv.migrates = _schema(cfg.get("database.url"))
            cv.generates_keys = m.generates_keys
        for rule in contracts.rules_for(contract):
            found = _check(contracts, rule, pod, container, cv, cfg, world)
            if rule.effect == "start":
                cv.violations += found
                if found and rule.id == "main-class":
                    break  # nothing else of the image runs
            elif rule.effect == "http":
                cv.http += found
            else:
                cv.warnings += found
    return verdict


# --------------------------------------------------------------------------- HTTP side


class Refused(Exception):
    """The pod does not listen on the port the connection came to: drop it."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _http_rule(pod: PodVerdict, rule_id: str) -> Violation | None:
    for c in pod.containers:
        for viol in c.http:
            if viol.rule.id == rule_id:
                return viol
    return None


def http_gate(
    pod: PodVerdict | None, local_port: int, method: str, path: str, headers: Mapping[str, str]
) -> Answer | None:
    """What a pod answers before its routes run, when its settings make it: a refused
    connection on a port it does not listen on, 403 without a token under OAuth, the
    app's login."""
    if pod is None or not pod.modelled:
        return None
    ports = {c.listen_port for c in pod.containers if c.listen_port}
    if ports and local_port not in ports:
        raise Refused(f"{pod.namespace}/{pod.name} listens on {sorted(ports)}, not {local_port}")
    if path.startswith("/health"):
        return None
    oauth = _http_rule(pod, "auth-protocol")
    if oauth is not None and not (headers.get("Authorization") or "").startswith("Bearer "):
        # libats' AuthorizationFailedRejection: an empty 403, the reason only in the logs.
        return Answer(403, {"code": "forbidden", "description": oauth.message})
    if path == "/login" and method == "GET":
        for rule_id, status in (
            ("app-login-action", 200),
            ("app-jwt-secret", 500),
            ("app-namespace-provider", 500),
        ):
            viol = _http_rule(pod, rule_id)
            if viol is not None:
                return Answer(status, {"code": rule_id, "description": viol.message})
        return Answer(303, None, {"Location": "/"})
    return None


KEY_PATHS = (
    re.compile(r"^/api/v1/user_repo/root\.json$"),
    re.compile(r"^/api/v1/root/[^/]+(/keys/targets/pairs)?$"),
)


def after_reply(
    contracts: Contracts, world: World, pod: PodVerdict | None, path: str, status: int
) -> Answer | None:
    """Keys exist only where a key-generation daemon has run: until then the keyserver
    (and the reposerver, which asks it) answers 423 for them, however long one waits."""
    if pod is None or not pod.modelled or status != 200:
        return None
    if not any(p.match(path) for p in KEY_PATHS):
        return None
    if not any(c.contract and c.contract.name in ("tuf-keyserver", "tuf-reposerver")
               for c in pod.containers):  # fmt: skip
        return None
    if world.keys_generated_in(pod.namespace):
        return None
    rule = next(r for r in contracts.rules if r.id == "key-generation")
    viol = _violation(contracts, rule, repo=path)
    return Answer(423, {"code": "key_generation_pending", "description": viol.message})


# --------------------------------------------------------------------------- kubelet


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Tracked:
    namespace: str
    name: str
    uid: str
    verdict: PodVerdict | None = None
    running: bool = False  # the container states we wrote say running
    restarts: int = 0
    backoff: float = 0.0
    crash_written: bool = False


class Kubelet:
    """Evaluates pods as kwok schedules them and plays their start (see module docstring).

    `knobs()` returns the stand-in's knobs: `crash_backoff_seconds` (kubelet's first
    back-off, doubled per restart up to 300 s) and `schema_check_delay_seconds` (how long
    an image that checks its schema takes to get there after its pod is seen)."""

    def __init__(
        self,
        v1: Any,
        api_client: Any,
        contracts: Contracts,
        knobs: Callable[[], dict[str, Any]],
        world: World | None = None,
    ) -> None:
        self.v1 = v1
        self.api = api_client
        self.contracts = contracts
        self.knobs = knobs
        self.world = world or World()
        self.lock = threading.Lock()
        self.tracked: dict[tuple[str, str], _Tracked] = {}
        self.queue: list[tuple[float, int, tuple[str, str]]] = []
        self.seq = 0
        self.wake = threading.Condition(self.lock)

    # -- lookups for the HTTP side
    def verdict(self, namespace: str, name: str) -> PodVerdict | None:
        with self.lock:
            t = self.tracked.get((namespace, name))
            return t.verdict if t else None

    # -- events from the pod watch
    def on_pod(self, event: str, pod_obj: Any) -> None:
        pod = pod_obj if isinstance(pod_obj, dict) else self.api.sanitize_for_serialization(pod_obj)
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        with self.lock:
            t = self.tracked.get(key)
            if event == "DELETED" or meta.get("deletionTimestamp"):
                if t and t.uid == meta.get("uid"):
                    del self.tracked[key]
                with self.world.lock:
                    self.world.key_daemons.get(key[0], set()).discard(key[1])
                return
            if t is None or t.uid != meta.get("uid"):
                if not pod["spec"].get("nodeName"):
                    return  # not scheduled yet: no kubelet would look at it
                t = _Tracked(key[0], key[1], meta.get("uid", ""))
                self.tracked[key] = t
                self._schedule(key, self._first_delay(pod))
                return
            annotations = meta.get("annotations") or {}
            status = pod.get("status") or {}
            crashing = annotations.get(VERDICT) == "crash"
            if crashing and status.get("podIP") and not t.crash_written:
                t.crash_written = True
                self._schedule(key, 0.0)  # kwok started it: now play the crash

    def _first_delay(self, pod: dict[str, Any]) -> float:
        """An API server checks its schema a little after its pod appears; its migrator,
        started at the same time, is seen meanwhile."""
        for container in pod["spec"].get("containers") or []:
            contract = self.contracts.images.get(container.get("image", ""))
            if contract is None:
                continue
            main, _ = _jvm_options(container, {})
            m = contract.mains.get(main or contract.default_main() or "")
            if m is not None and m.schema == "check":
                return float(self.knobs().get("schema_check_delay_seconds", 2.0))
        return 0.0

    def _schedule(self, key: tuple[str, str], delay: float) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (time.monotonic() + delay, self.seq, key))
        self.wake.notify()

    # -- the worker
    def run(self) -> None:
        while True:
            with self.lock:
                while not self.queue or self.queue[0][0] > time.monotonic():
                    timeout = self.queue[0][0] - time.monotonic() if self.queue else None
                    self.wake.wait(timeout)
                _, _, key = heapq.heappop(self.queue)
                t = self.tracked.get(key)
            if t is None:
                continue
            try:
                self._step(t)
            except Exception as e:  # the API may be restarting; try again shortly
                log.warning("pod %s/%s: %s; retrying", t.namespace, t.name, e)
                with self.lock:
                    self._schedule(key, 1.0)

    def _objects(self, namespace: str) -> Objects:
        cms = {
            c.metadata.name: dict(c.data or {})
            for c in self.v1.list_namespaced_config_map(namespace).items
        }
        secrets = {
            s.metadata.name: {
                k: base64.b64decode(v).decode(errors="replace") for k, v in (s.data or {}).items()
            }
            for s in self.v1.list_namespaced_secret(namespace).items
        }
        services = {
            s.metadata.name: self.api.sanitize_for_serialization(s.spec)
            for s in self.v1.list_namespaced_service(namespace).items
        }
        return Objects(cms, secrets, services)

    def _step(self, t: _Tracked) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            pod = self.api.sanitize_for_serialization(
                self.v1.read_namespaced_pod(t.name, t.namespace)
            )
        except ApiException as e:
            if e.status == 404:
                with self.lock:
                    self.tracked.pop((t.namespace, t.name), None)
                return
            raise
        if pod["metadata"].get("uid") != t.uid or pod["metadata"].get("deletionTimestamp"):
            return
        verdict = evaluate(self.contracts, pod, self._objects(t.namespace), self.world)
        annotations = pod["metadata"].get("annotations") or {}
        marked = annotations.get(VERDICT)
        with self.lock:
            t.verdict = verdict
        error = verdict.config_error()
        if error is not None:
            self._config_error(pod, error)
            with self.lock:
                self._schedule((t.namespace, t.name), 2.0)
            return
        self._record_effects(verdict)
        if marked is None:
            warnings = "; ".join(w.message for c in verdict.containers for w in c.warnings)
            mark = {VERDICT: "ok" if verdict.ok else "crash"}
            if warnings:
                mark[WARNINGS] = warnings
                log.warning("pod %s/%s: %s", t.namespace, t.name, warnings)
            # PUT, not PATCH: the client's default patch type differs between its versions;
            # a conflict (409) is retried by run().
            pod["metadata"].setdefault("annotations", {}).update(mark)
            self.v1.replace_namespaced_pod(t.name, t.namespace, pod)
            return  # kwok's stages start it; a crash is played once it has an IP
        if marked == "ok" and not t.running and not t.restarts:
            return  # kwok's pod-ready stage made it Running and Ready
        if not (pod.get("status") or {}).get("podIP"):
            return  # kwok has not started it yet; on_pod reschedules when it has
        self._restart(t, pod, verdict)

    def _record_effects(self, verdict: PodVerdict) -> None:
        with self.world.lock:
            for c in verdict.containers:
                schema = c.migrated()
                if schema:
                    self.world.migrated.add((verdict.namespace, schema))
                if c.generates_keys and c.starts:
                    self.world.key_daemons.setdefault(verdict.namespace, set()).add(verdict.name)

    def _config_error(self, pod: dict[str, Any], error: str) -> None:
        statuses = [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"waiting": {"reason": "CreateContainerConfigError", "message": error}},
            }
            for c in pod["spec"]["containers"]
        ]
        pod.setdefault("status", {})["containerStatuses"] = statuses
        self.v1.replace_namespaced_pod_status(
            pod["metadata"]["name"], pod["metadata"]["namespace"], pod
        )

    def _restart(self, t: _Tracked, pod: dict[str, Any], verdict: PodVerdict) -> None:
        """One start of the pod's containers: they run (and the pod is Ready), or the ones
        that break a start rule exit and wait their back-off."""
        now = _now()
        knobs = self.knobs()
        first = float(knobs.get("crash_backoff_seconds", 10.0))
        previous = {
            cs["name"]: cs for cs in (pod.get("status") or {}).get("containerStatuses") or []
        }
        statuses = []
        all_ready = True
        for spec, cv in zip(pod["spec"]["containers"], verdict.containers, strict=True):
            old = previous.get(cv.name) or {}
            restarts = int(old.get("restartCount", 0))
            status: dict[str, Any] = {
                "name": cv.name,
                "image": spec["image"],
                "imageID": "",
                "restartCount": restarts,
            }
            if cv.starts:
                status.update(ready=True, started=True, state={"running": {"startedAt": now}})
                if old.get("lastState"):
                    status["lastState"] = old["lastState"]
                statuses.append(status)
                continue
            all_ready = False
            viol = cv.violations[0]
            crashed = {
                "terminated": {
                    "exitCode": viol.exit_code,
                    "reason": "Error",
                    "message": viol.message,
                    "startedAt": now,
                    "finishedAt": now,
                }
            }
            if viol.probe_only == "readiness":
                # It keeps running, unready: the readiness probe never passes.
                status.update(ready=False, started=True, state={"running": {"startedAt": now}})
                status["lastState"] = old.get("lastState") or {}
            else:
                status.update(
                    ready=False,
                    started=False,
                    restartCount=restarts + 1,  # each write is one more exit of it
                    lastState=crashed,
                    state={
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off restarting failed container {cv.name}",
                        }
                    },
                )
            statuses.append(status)
        ready = "True" if all_ready else "False"
        st = pod.setdefault("status", {})
        conditions = [
            c for c in st.get("conditions") or [] if c["type"] not in ("Ready", "ContainersReady")
        ]
        for kind in ("Ready", "ContainersReady"):
            conditions.append({"type": kind, "status": ready, "lastTransitionTime": now})
        st.update(phase="Running", containerStatuses=statuses, conditions=conditions)
        self.v1.replace_namespaced_pod_status(t.name, t.namespace, pod)
        with self.lock:
            t.running = all_ready
            if all_ready:
                t.backoff = 0.0
                return
            t.restarts += 1
            t.backoff = min(300.0, t.backoff * 2 if t.backoff else first)
            if any(c.violations and c.violations[0].probe_only != "readiness"
                   for c in verdict.containers):  # fmt: skip
                self._schedule((t.namespace, t.name), t.backoff)
            # else: it runs, never ready, and nothing restarts it
