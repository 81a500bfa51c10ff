"""`otactl up`, `down`, `status`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from otactl.cli._common import (
    Common,
    Output,
    OutputOpt,
    cluster_options,
    command_set,
    duration_option,
    echo,
    emit,
    info,
    is_tty,
    print_table,
)
from otactl.errors import Interrupted

if TYPE_CHECKING:
    from otactl.deploy import Event, UpResult


app = command_set()


class _View:
    """Progress of `up`/`down`: a live table on a terminal, one line per change otherwise.

    Both keep reporting while nothing changes: the waits send a heartbeat (`Waiting`) at
    least every 15 s, and the cluster's link says when the API server stops answering and
    when it answers again (`api`)."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.rows: dict[str, tuple[str, str]] = {}
        self.live = None
        if is_tty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(
                get_renderable=self._table,
                console=Console(stderr=True),
                refresh_per_second=4,
            )
            self.live.start()

    def _table(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        table = Table(
            show_header=True,
            header_style="bold",
            box=None,
            caption=f"{time.monotonic() - self.start:.0f} s",
            caption_justify="left",
        )
        table.add_column("component", no_wrap=True)
        table.add_column("state")
        table.add_column("detail", overflow="fold")
        for name, (st, detail) in list(self.rows.items()):
            colour = {
                "ready": "green",
                "done": "green",
                "reachable": "green",
                "waiting": "yellow",
                "unreachable": "red",
            }.get(st, "cyan")
            table.add_row(escape(name), f"[{colour}]{st}[/]", escape(detail))
        return table

    def _show(self, key: str, row: tuple[str, str]) -> None:
        self.rows[key] = row
        if self.live is None:
            info(f"[{time.monotonic() - self.start:6.1f}s] {key} {row[0]}: {row[1]}".rstrip(": "))

    def __call__(self, event: Event) -> None:
        from otactl.deploy import Phase
        from otactl.wait import Waiting

        if isinstance(event, Waiting):
            # A heartbeat: always shown, even when it says what the last one said.
            self._show(f"[{event.phase or 'wait'}]", ("waiting", event.line()))
            return
        if isinstance(event, Phase):
            key = f"[{event.name}]"
            st = {"start": "running", "done": "done", "skip": "skipped"}[event.status]
            row = (st, event.detail)
        else:
            # the namespace is the same for every object: the name is enough
            key = f"{event.target.kind} {event.target.name}"
            row = ("ready" if event.state.ready else "waiting", event.state.detail)
        if self.rows.get(key) == row and self.live is not None:
            return
        self._show(key, row)

    def api(self, message: str) -> None:
        """What the cluster's link says about the API server (lost, still lost, back)."""
        lost = "unreachable" in message
        self._show("API server", ("unreachable" if lost else "reachable", message))

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


@app.command("up")
@cluster_options
def up_cmd(
    timeout: Annotated[
        float, duration_option("--timeout", help="Overall deadline.", default="30m")
    ] = 1800.0,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete otactl objects no longer rendered.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Server-side dry run; print what would change.")
    ] = False,
    exit_code: Annotated[
        bool,
        typer.Option(
            "--exit-code",
            help="Exit 1 when objects changed (with --dry-run: would change), 0 when none "
            "did, as `kubectl diff` does.",
        ),
    ] = False,
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """Deploy OTA CE: PKI, infra, database bootstrap, services, health, credentials."""
    from otactl import deploy, health

    st = common.state()
    values = st.values()
    if not dry_run:
        st.refuse_second_ca()
    cluster = common.connect()
    caller = cluster.service_caller(values.namespace)
    server_dir = st.server_dir()
    info(f"cluster: {cluster.target.server} ({cluster.target.context or cluster.target.source})")

    def health_step(services: tuple[str, ...], timeout: float) -> None:
        def progress(message: str) -> None:
            view(deploy.Phase("health", "start", message))

        health.wait_healthy(caller, services, timeout=timeout, progress=progress)

    def credentials_step(gateway_url: str, timeout: float) -> Path:
        def progress(message: str) -> None:
            view(deploy.Phase("credentials", "start", message))

        made = deploy.publish_credentials(
            cluster, values, server_dir, gateway_url, timeout=timeout, progress=progress
        )
        return made.path

    view = _View()
    cluster.on_notice(view.api)
    try:
        result = deploy.up(
            cluster,
            values,
            st.generated,
            deploy.UpOptions(timeout=timeout, prune=prune, dry_run=dry_run),
            view,
            credentials_step=credentials_step,
            health_step=health_step,
        )
    except KeyboardInterrupt:
        raise Interrupted("interrupted — run `otactl up` again to continue") from None
    finally:
        view.close()
    changes = bool(result.changed or result.pruned)
    _report_up(output, result, dry_run, changes)
    if exit_code and changes:
        raise typer.Exit(1)


def _report_up(output: Output, result: UpResult, dry_run: bool, changes: bool) -> None:
    """What `up` did (or, with --dry-run, would do)."""
    from otactl.deploy import plural

    if output.structured:
        emit(
            output,
            {
                "changed": result.changed,
                "unchanged": result.unchanged,
                "pruned": result.pruned,
                "gateway_url": result.gateway_url,
                "credentials_zip": str(result.credentials_zip or ""),
                "dry_run": dry_run,
                "phase_seconds": {k: round(v, 1) for k, v in result.phase_seconds.items()},
            },
        )
    elif dry_run:
        echo(result.diff.rstrip() or "no changes")
        for name in result.pruned:
            echo(f"would delete {name}")
        if changes:
            echo(
                f"would change {plural(len(result.changed), 'object')} "
                f"({result.unchanged} unchanged)"
                + (f", would delete {len(result.pruned)}" if result.pruned else "")
            )
    else:
        echo(
            f"{plural(len(result.changed), 'object')} changed, {result.unchanged} unchanged"
            + (f", {len(result.pruned)} deleted" if result.pruned else "")
        )
        echo(f"gateway: {result.gateway_url}")
        if result.credentials_zip:
            echo(f"credentials: {result.credentials_zip}")


@app.command("down")
@cluster_options
def down_cmd(
    purge: Annotated[
        bool,
        typer.Option("--purge", help="Also delete volumes (data) and generated/ files."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (for CI).")] = False,
    timeout: Annotated[float, duration_option("--timeout", help="Deadline.", default="5m")] = 300.0,
    *,
    common: Common,
) -> None:
    """Delete what otactl created (volumes and generated/ stay unless --purge)."""
    import shutil

    from otactl import deploy, render
    from otactl.deploy import plural
    from otactl.errors import ConfigError

    st = common.state()
    values = st.values()
    cluster = common.connect()
    where = f"{cluster.target.server} ({cluster.target.context or cluster.target.source})"
    info(f"cluster: {where}")
    rendered = st.generated / "templates"
    if purge and not yes:
        if not is_tty():
            raise ConfigError("--purge deletes data and keys: confirm with --yes")
        typer.confirm(
            f"On cluster {where}: delete the OTA CE data volumes in namespace "
            f"{values.namespace} (and the namespace, if `otactl up` created it), and "
            f"{st.server_dir().absolute()} (CA keys included) and the rendered files in "
            f"{rendered.absolute()}?",
            abort=True,
        )
    view = _View()
    cluster.on_notice(view.api)
    try:
        gone = deploy.down(cluster, values, purge=purge, timeout=timeout, report=view)
    except KeyboardInterrupt:
        raise Interrupted("interrupted — run `otactl down` again to continue") from None
    finally:
        view.close()
    if purge and st.server_dir().exists():
        shutil.rmtree(st.server_dir())
        gone.append(str(st.server_dir()))
    if purge:  # they hold the Secrets' values
        gone += [str(p) for p in render.remove_written(rendered)]
    echo(f"deleted {plural(len(gone), 'object')}" + (" and the local PKI" if purge else ""))


@app.command("status")
@cluster_options
def status_cmd(
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """Workloads, Services (with addresses) and service health in one view: exit 0 when
    everything is ready and healthy, 1 when not (or nothing is deployed)."""
    from dataclasses import asdict

    from otactl import deploy, health
    from otactl.errors import ClusterForbidden

    st = common.state()
    values = st.values()
    cluster = common.connect()
    rows = deploy.status(cluster, values)
    if not rows:
        if output.structured:
            emit(output, {"ok": False, "objects": [], "health": []})
        info(f"no OTA CE objects in namespace {values.namespace}: run `otactl up`")
        raise typer.Exit(1)
    unknown = ""
    try:
        checks = health.check(cluster.service_caller(values.namespace))
    except ClusterForbidden as e:
        # A read-only user may list workloads but not use the service proxy.
        checks, unknown = [], str(e)
    ok = all(r.ready for r in rows) and all(c.ok for c in checks)
    if output.structured:
        emit(
            output,
            {
                "ok": ok,
                "objects": [asdict(r) for r in rows],
                "health": [c.as_json() for c in checks],
                "health_unknown": unknown or None,
            },
        )
    else:
        table = [[r.kind, r.name, "yes" if r.ready else "no", r.detail, r.address] for r in rows]
        table += [["health", c.service, "yes" if c.ok else "no", c.reason, ""] for c in checks]
        if unknown:
            table += [["health", name, "unknown", "", ""] for name in health.known_services()]
        print_table(["kind", "name", "ready", "detail", "address"], table)
    if unknown:
        info(f"health unknown: {unknown}")
    if not ok:
        raise typer.Exit(1)
