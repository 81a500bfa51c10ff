"""Templates → Kubernetes objects. Renders the infra, services and ingress sets into
`generated/templates/`, plus the nginx and SQL files embedded in them. Never contacts a
cluster; the same values and secrets give byte-identical output."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from otactl import security
from otactl.config import Values, templates_dir
from otactl.errors import RenderError
from otactl.fsutil import ensure_private_dir, write_atomic
from otactl.secretstore import DATABASES, Secrets

PART_OF = "ota-ce"
MANAGED_BY = "otactl"

# The Scala services: name in the cluster → database (None: keeps no state in MariaDB).
SCALA_SERVICES: dict[str, str | None] = {
    "app": None,
    "campaigner": "campaigner",
    "campaigner-daemon": "campaigner",
    "device-registry": "device_registry",
    "device-registry-daemon": "device_registry",
    "director": "director",
    "director-daemon": "director",
    "tuf-keyserver": "tuf_keyserver",
    "tuf-keyserver-daemon": "tuf_keyserver",
    "tuf-reposerver": "tuf_reposerver",
    "web-events": None,
    "treehub": "treehub",
}
# The daemons: the same image as their API, started with another main class. Only they
# migrate their service's schema (libats BootMigrations); the API servers refuse to start
# on an outdated one (CheckMigrations). tuf-reposerver and treehub migrate their own.
# Upstream: ota-community-edition templates/services/*-daemon.tmpl.yaml (templates/README.md).
MAIN_CLASSES = {
    "campaigner-daemon": "com.advancedtelematic.campaigner.DaemonBoot",
    "device-registry-daemon": "com.advancedtelematic.ota.deviceregistry.DaemonBoot",
    "director-daemon": "com.advancedtelematic.director.daemon.DaemonBoot",
    "tuf-keyserver-daemon": "com.advancedtelematic.tuf.keyserver.daemon.KeyGenerationDaemon",
}
MIGRATES = {*MAIN_CLASSES, "tuf-reposerver", "treehub"}
PUBLIC_HOSTS = ("app", "tuf-reposerver", "treehub", "web-events")
# Behind the reverse proxy: the build tools' hosts ask for a build-tools client certificate,
# the web UI's do not (templates/reverse-proxy/nginx.conf.j2 says how each is protected).
BUILD_TOOL_HOSTS = ("tuf-reposerver", "treehub")
WEB_HOSTS = ("app", "web-events")


@dataclass(frozen=True)
class Rendered:
    """The rendered sets: name (infra, services, ingress) → YAML text."""

    sets: dict[str, str]

    def objects(self, name: str) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.sets[name]) if d]


@functools.cache
def _env(root: str) -> Any:
    """One environment per templates folder: templates are compiled once, not per render."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["tojson"] = lambda v: json.dumps(v, sort_keys=True)
    env.filters["b64"] = lambda v: base64.b64encode(
        v.encode() if isinstance(v, str) else v
    ).decode()
    env.filters["hash"] = lambda v: hashlib.sha256(v.encode()).hexdigest()[:16]
    env.filters["sqlstr"] = _sql_string
    env.filters["sqlgrantdb"] = lambda db: db.replace("\\", "\\\\").replace("_", "\\_")
    return env


def _sql_string(value: str) -> str:
    """A MariaDB string literal (default sql_mode: backslash escapes are active)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _template(name: str, **context: Any) -> str:
    import jinja2

    try:
        return _env(str(templates_dir())).get_template(name).render(**context)
    except jinja2.UndefinedError as e:
        raise RenderError(f"templates/{name}: undefined value: {e.message}") from e
    except jinja2.TemplateSyntaxError as e:
        raise RenderError(f"templates/{e.name or name}:{e.lineno}: {e.message}") from e
    except jinja2.TemplateNotFound as e:
        raise RenderError(f"template not found: {e.name}") from e


def htpasswd_ssha(user: str, password: str) -> str:
    """An nginx `auth_basic_user_file` line, {SSHA} scheme (built into nginx). The salt is
    derived from the password so renders stay byte-identical; the password is random and
    long, so a fixed salt costs nothing."""
    salt = hashlib.sha256(b"otactl-htpasswd:" + password.encode()).digest()[:8]
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}\n"


def default_upstreams(values: Values) -> dict[str, str]:
    """Service name → host:port the nginx configs proxy to, inside the cluster."""
    return {name: f"{name}.{values.namespace}.svc:80" for name in SCALA_SERVICES}


def gateway_nginx_conf(
    values: Values,
    *,
    tls_dir: str | Path = "/etc/nginx/tls",
    runtime_dir: str | Path = "/tmp",
    upstreams: Mapping[str, str] | None = None,
    listen_port: int = 8443,
    plain_ports: tuple[int, ...] = (8080, 8000),
) -> str:
    """The device gateway's nginx.conf: mutual TLS on `listen_port`, device uuid from the
    client certificate CN, routes of reference section 5, CRL checked."""
    return _template(
        "gateway/nginx.conf.j2",
        v=values,
        tls_dir=str(tls_dir),
        runtime_dir=str(runtime_dir),
        upstreams={**default_upstreams(values), **(upstreams or {})},
        listen_port=listen_port,
        plain_ports=plain_ports,
    )


def reverse_proxy_nginx_conf(
    values: Values,
    *,
    tls_dir: str | Path = "/etc/nginx/tls",
    clients_dir: str | Path = "/etc/nginx/clients",
    auth_dir: str | Path = "/etc/nginx/auth",
    runtime_dir: str | Path = "/tmp",
    upstreams: Mapping[str, str] | None = None,
    http_port: int = 8080,
    https_port: int = 8443,
    public_https_port: int | None = None,
) -> str:
    """nginx.conf of the reverse proxy, by host name: mutual TLS with the build-tools CA
    (`clients_dir`: ca.crt, crl.pem) for the build tools, basic auth for the web UI.
    `public_https_port` is where clients reach `https_port` from outside (redirects)."""
    public = reverse_proxy_https_port(values) if public_https_port is None else public_https_port
    return _template(
        "reverse-proxy/nginx.conf.j2",
        v=values,
        tls_dir=str(tls_dir),
        clients_dir=str(clients_dir),
        auth_dir=str(auth_dir),
        runtime_dir=str(runtime_dir),
        upstreams={**default_upstreams(values), **(upstreams or {})},
        http_port=http_port,
        https_port=https_port,
        https_suffix="" if public == 443 else f":{public}",
        build_tool_hosts=BUILD_TOOL_HOSTS,
        web_hosts=WEB_HOSTS,
    )


def reverse_proxy_https_port(values: Values) -> int:
    """The reverse proxy's HTTPS port as the values expose it: the fixed NodePort, else 443
    (the Service's port; a NodePort the cluster picks is known only once deployed)."""
    rp = values.reverse_proxy
    return rp.node_port if rp.service_type == "NodePort" and rp.node_port else 443


def bootstrap_sql(secrets: Secrets) -> str:
    """Idempotent SQL: one database and one user per service, each user limited to its own
    database. Safe to run any number of times; a changed password is applied."""
    return _template("bootstrap/create_databases.sql.j2", databases=DATABASES, s=secrets)


def _documents(text: str, source: str) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        raise RenderError(f"templates/{source}: rendered text is not valid YAML: {e}") from e
    for doc in docs:
        if not isinstance(doc, dict) or not {"apiVersion", "kind", "metadata"} <= doc.keys():
            raise RenderError(f"templates/{source}: a rendered document is not an object")
    return docs


CONFIG_HASH = "otactl.io/config-hash"


def _roll_on_config_change(docs: list[dict[str, Any]]) -> None:
    """A container reads its envFrom ConfigMaps and Secrets only when it starts: give each
    pod template a hash of the ones it reads, so that a changed value rolls its pods."""
    data = {
        (d["kind"], d["metadata"]["name"]): d.get("data") or {}
        for d in docs
        if d["kind"] in ("ConfigMap", "Secret")
    }
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        template = doc["spec"]["template"]
        sources = []
        for container in template["spec"]["containers"]:
            for ref in container.get("envFrom") or []:
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    name = (ref.get(key) or {}).get("name")
                    if (kind, name) in data:
                        sources.append([kind, name, data[(kind, name)]])
        if sources:
            digest = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()
            template["metadata"].setdefault("annotations", {})[CONFIG_HASH] = digest[:16]


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=4096)


def render(values: Values, secrets: Secrets) -> Rendered:
    """Render every set for these values. Pure: reads templates, writes nothing."""
    services = [
        {
            "name": name,
            "c": getattr(values.services, name.replace("-", "_")),
            "db": db,
            "migrates": name in MIGRATES,
            "main": MAIN_CLASSES.get(name),
        }
        for name, db in SCALA_SERVICES.items()
    ]
    context = {
        "v": values,
        "s": secrets,
        "services": services,
        "public_hosts": PUBLIC_HOSTS,
        "web_hosts": WEB_HOSTS,
        "reverse_proxy_https_port": reverse_proxy_https_port(values),
        "gateway_conf": gateway_nginx_conf(values),
        "reverse_proxy_conf": reverse_proxy_nginx_conf(values),
        "htpasswd": htpasswd_ssha(values.reverse_proxy.user, secrets.reverse_proxy_password),
        "bootstrap_sql": bootstrap_sql(secrets),
    }
    names = ["infra", "services"] + (["ingress"] if values.ingress.enabled else [])
    sets = {}
    everything: list[dict[str, Any]] = []
    for name in names:
        docs = _documents(_template(f"{name}.yaml.j2", **context), f"{name}.yaml.j2")
        _roll_on_config_change(docs)
        sets[name] = _dump(docs)
        everything += docs
    if values.network_policy.enabled:
        policies = security.network_policies(
            everything, values.namespace, values.network_policy.apiserver_cidrs, SCALA_SERVICES
        )
        sets["network"] = _dump(policies)
    return Rendered(sets)


# Every set `render` can write; ingress and network only when turned on.
SETS = ("infra", "services", "ingress", "network")
OPTIONAL_SETS = ("ingress", "network")


def remove_written(out_dir: Path) -> list[Path]:
    """Delete the sets `write` wrote in `out_dir` (they hold Secrets: `down --purge`), and
    the folder when nothing else is left in it."""
    gone = []
    for name in SETS:
        path = out_dir / f"{name}.yaml"
        if path.exists():
            path.unlink()
            gone.append(path)
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    return gone


def write(
    rendered: Rendered, out_dir: Path, progress: Callable[[str], None] | None = None
) -> list[Path]:
    """Write each set to `out_dir/<set>.yaml` (0600: they hold Secrets), atomically, and
    remove a stale set (ingress turned off)."""
    paths = []
    try:
        ensure_private_dir(out_dir)
        for name, text in rendered.sets.items():
            path = write_atomic(out_dir / f"{name}.yaml", text, mode=0o600)
            paths.append(path)
            if progress:
                progress(f"wrote {path}")
        for optional in OPTIONAL_SETS:
            stale = out_dir / f"{optional}.yaml"
            if optional not in rendered.sets and stale.exists():
                stale.unlink()
    except OSError as e:
        raise RenderError(f"{out_dir}: cannot write the rendered sets: {e.strerror}") from e
    return paths
