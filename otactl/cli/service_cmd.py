"""`otactl health`, `hosts`, and the cluster side of `new-device`
(registration in device-registry, `--push` to a device over SSH)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from otactl.cli._common import (
    Common,
    Output,
    OutputOpt,
    State,
    cluster_options,
    command_set,
    duration_option,
    echo,
    emit,
    info,
    print_table,
)
from otactl.errors import ClusterError, ConfigError, ServiceError

if TYPE_CHECKING:
    from otactl.devices import BundleInfo, Hook
    from otactl.health import HealthResult
    from otactl.kube import Cluster
    from otactl.registry import Registrar

app = command_set()


def _health_table(results: list[HealthResult]) -> None:
    print_table(
        ["service", "status", "http", "latency", "reason"],
        [
            [
                r.service,
                r.status,
                str(r.http_status) if r.http_status is not None else "-",
                f"{r.latency_ms:.0f}ms",
                "" if r.ok else r.reason,
            ]
            for r in results
        ],
    )


def connect_for_registration(common: Common) -> Cluster:
    """The cluster new-device registers in; without one, say how to make bundles only."""
    from otactl.registry import DEFAULT_TIMEOUT

    try:
        cluster = common.connect()
    except ConfigError as e:
        raise ConfigError(f"{e} (or --no-register: bundles only)") from e
    # A lost API server is waited for as long as one registration may wait, and said so
    # from the first request on (the gateway port is looked up before any registration).
    cluster.default_patience = DEFAULT_TIMEOUT
    cluster.on_notice(info)
    return cluster


@contextmanager
def registering(st: State, cluster: Cluster | None) -> Iterator[Registrar | None]:
    """Registration in device-registry for new-device (None when `cluster` is None): a
    `Registrar` on one connection; leaving the block waits for every registration and
    raises the first failure."""
    if cluster is None:
        yield None
        return
    from otactl.registry import Registrar

    values = st.values()
    with Registrar(cluster.service_caller(values.namespace), values.tenant) as registrar:
        yield registrar
        registrar.finish()


def registration_hook(registrar: Registrar | None) -> Hook | None:
    """A bundle hook that queues each bundle's device for registration."""
    if registrar is None:
        return None

    def hook(bundle: BundleInfo) -> None:
        client_pem = (bundle.path / "client.pem").read_bytes()
        registrar.submit(bundle.uuid, bundle.name, bundle.name, client_pem)

    return hook


def push_device(
    bundle: BundleInfo,
    target: str,
    ssh_key: Path | None,
    insecure_accept_host_key: bool,
) -> dict[str, str]:
    """Copy one bundle to `target` where its sota.toml expects the files."""
    from otactl.push import push_bundle

    result = push_bundle(
        bundle.path,
        target,
        ssh_key=ssh_key,
        accept_unknown_host=insecure_accept_host_key,
        progress=info,
    )
    return result.files


@app.command("health")
@cluster_options
def health_cmd(
    services: Annotated[
        list[str] | None,
        typer.Argument(help="Services to check (default: all 11 OTA services)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Check again until all are OK or --timeout.")
    ] = False,
    timeout: Annotated[
        float | None,
        duration_option(
            "--timeout", help="For --wait: 5m, 90s, seconds (default: timeouts.health)."
        ),
    ] = None,
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """Health of the OTA services: exit 0 when all are OK, 8 when not, 7 on --wait timeout."""
    from otactl import health

    st = common.state()
    values = st.values()
    names = health.resolve(services)
    cluster = common.connect()
    caller = cluster.service_caller(values.namespace)
    if wait:
        cluster.on_notice(info)
        results = health.wait_healthy(
            caller, names, timeout=timeout or values.timeouts.health, progress=info
        )
    else:
        results = health.check(caller, names)
    bad = [r for r in results if not r.ok]
    if output.structured:
        emit(output, {"healthy": not bad, "services": [r.as_json() for r in results]})
    else:
        _health_table(results)
    if bad:
        raise ServiceError(
            f"{len(bad)} of {len(results)} services not healthy: "
            + "; ".join(f"{r.service}: {r.reason}" for r in bad)
        )


@app.command("hosts")
@cluster_options
def hosts_cmd(
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """/etc/hosts lines for the public names, from the Services' real addresses."""
    from otactl.hosts import Exposure, hosts_entries

    st = common.state()
    values = st.values()
    cluster = common.connect()

    def get(kind: str, name: str) -> Exposure:
        obj = cluster.get(kind, values.namespace, name)
        if obj is None:
            raise ClusterError(f"{kind} {values.namespace}/{name} not found: run `otactl up` first")
        return Exposure.of({"kind": kind, **obj})

    # With an Ingress, the public names reach the reverse proxy through it.
    public = get("Ingress", "ota-ce") if values.ingress.enabled else None
    entries = hosts_entries(
        values.domain,
        values.server_name,
        public or get("Service", "reverse-proxy"),
        get("Service", "gateway-service"),
        cluster.node_addresses(),
    )
    if output.structured:
        emit(output, {"entries": [e.as_json() for e in entries]})
        return
    for entry in entries:
        for line in entry.lines():
            echo(line)


def check_push_options(single: bool, push: str | None) -> None:
    """--push copies one bundle to one device: check it before any bundle is made."""
    if push is None:
        return
    if not single:
        raise ConfigError("--push goes with a single NAME")
    from otactl.push import parse_target

    parse_target(push)
