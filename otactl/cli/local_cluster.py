"""`otactl local-cluster up|down|status`: the local simulated cluster (contrib/local-cluster)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from otactl.cli._common import Output, OutputOpt, command_set, duration_option, echo, emit, info
from otactl.localcluster import DEFAULT_API_PORT, DEFAULT_CONTROL_PORT, DEFAULT_TIMEOUT

app = command_set()
local_app = typer.Typer(
    help="A local simulated Kubernetes cluster (real control plane, kwok fake nodes, "
    "OTA services stand-in) for trying otactl and for CI. Needs root or user namespaces.",
    no_args_is_help=True,
)
app.add_typer(local_app, name="local-cluster")


def _state_dir(ctx: typer.Context) -> Path:
    obj = ctx.find_root().obj
    generated = getattr(obj, "generated", None) or Path("generated")
    return Path(generated) / "local"


@local_app.command()
def up(
    ctx: typer.Context,
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="Number of fake nodes.")] = 1,
    api_port: Annotated[
        int,
        typer.Option(
            "--api-port",
            envvar="OTACTL_LOCAL_API_PORT",
            help="Host port (127.0.0.1) of the API server; 0 picks a free one.",
        ),
    ] = DEFAULT_API_PORT,
    control_port: Annotated[
        int,
        typer.Option(
            "--control-port",
            envvar="OTACTL_LOCAL_CONTROL_PORT",
            help="Host port (127.0.0.1) of the stand-in's knobs endpoint; 0 picks one.",
        ),
    ] = DEFAULT_CONTROL_PORT,
    standin: Annotated[
        bool,
        typer.Option("--standin/--no-standin", help="Start the OTA services stand-in."),
    ] = True,
    standin_config: Annotated[
        Path | None,
        typer.Option(
            "--standin-config",
            exists=True,
            dir_okay=False,
            help="JSON file with the stand-in's initial knobs.",
        ),
    ] = None,
    bin_dir: Annotated[
        Path | None,
        typer.Option("--bin-dir", help="Folder with the binaries (default: build.sh's cache)."),
    ] = None,
    timeout: Annotated[
        float,
        duration_option("--timeout", help="How long to wait for the cluster (5m, 90s, seconds)."),
    ] = DEFAULT_TIMEOUT,
) -> None:
    """Start the cluster; write generated/local/kubeconfig; logs in generated/local/logs/."""
    from otactl import localcluster

    if timeout < 10:
        raise typer.BadParameter("at least 10s", param_hint="'--timeout'")

    opts = localcluster.ClusterOptions(
        state_dir=_state_dir(ctx),
        api_port=api_port,
        control_port=control_port,
        nodes=nodes,
        standin=standin,
        standin_config=standin_config,
        bin_dir=bin_dir,
        timeout=timeout,
    )
    cluster = localcluster.up(opts, progress=info)
    kubeconfig = Path(cluster.kubeconfig)
    with contextlib.suppress(ValueError):
        kubeconfig = kubeconfig.relative_to(Path.cwd())
    echo(
        f"local cluster {cluster.release} is up at {cluster.api_url} "
        f"with nodes {', '.join(cluster.nodes)}"
    )
    echo(f"  export KUBECONFIG={kubeconfig}")
    echo(f"  kubectl get nodes      (kubectl: {localcluster.find_bin_dir(bin_dir)}/kubectl)")
    if cluster.control_url:
        echo(f"  stand-in knobs: {cluster.control_url}/knobs")
    echo(f"  logs: {Path(cluster.state_dir) / 'logs'}; stop with: otactl local-cluster down")


@local_app.command()
def down(
    ctx: typer.Context,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep etcd data, certificates and kubeconfig.")
    ] = False,
) -> None:
    """Stop every process `up` started (by pid) and remove the cluster's state."""
    from otactl import localcluster

    stopped = localcluster.down(_state_dir(ctx), keep=keep, progress=info)
    echo(f"stopped: {', '.join(stopped)}" if stopped else "no local cluster was running")


@local_app.command()
def status(
    ctx: typer.Context,
    output: OutputOpt = Output.text,
) -> None:
    """Show which processes run and whether the API server is ready (exit 1 when not running)."""
    from otactl import localcluster

    st = localcluster.status(_state_dir(ctx))
    if output.structured:
        emit(
            output,
            {
                "recorded": st.recorded,
                "running": st.running,
                "api_ready": st.api_ready,
                "processes": st.processes,
                "api_url": st.info.api_url if st.info else None,
                "kubeconfig": st.info.kubeconfig if st.info else None,
                "control_url": st.info.control_url if st.info else None,
            },
        )
    elif not st.recorded:
        echo(f"no local cluster recorded in {st.state_dir}")
    else:
        assert st.info is not None
        echo(f"api {st.info.api_url}: {'ready' if st.api_ready else 'NOT ready'}")
        for name, alive in st.processes.items():
            echo(f"  {name:24} {'running' if alive else 'stopped'}")
        echo(f"kubeconfig: {st.info.kubeconfig}")
    if not st.running:
        raise typer.Exit(1)


fault_app = typer.Typer(
    help="Inject faults on the way to the local cluster's API server (to see how otactl "
    "copes): freeze it, slow it, restart kube-apiserver or etcd.",
    no_args_is_help=True,
)
local_app.add_typer(fault_app, name="fault")


def _faults_line(ctx: typer.Context) -> None:
    from otactl import localcluster

    echo(f"in force: {localcluster.load_faults(_state_dir(ctx)).describe()}")


@fault_app.command("freeze")
def fault_freeze(ctx: typer.Context) -> None:
    """Hold every byte between this host and the API server (a network partition): open
    connections hang, new ones are accepted but never answered."""
    from otactl import localcluster

    localcluster.set_faults(_state_dir(ctx), frozen=True)
    _faults_line(ctx)


@fault_app.command("unfreeze")
def fault_unfreeze(ctx: typer.Context) -> None:
    """Let the held bytes through again (what was sent meanwhile arrives late)."""
    from otactl import localcluster

    localcluster.set_faults(_state_dir(ctx), frozen=False)
    _faults_line(ctx)


@fault_app.command("slow")
def fault_slow(
    ctx: typer.Context,
    ms: Annotated[int, typer.Argument(min=0, help="Delay of every answer, ms (0: none).")],
) -> None:
    """Delay every answer of the API server by MS milliseconds."""
    from otactl import localcluster

    localcluster.set_faults(_state_dir(ctx), delay_ms=ms)
    _faults_line(ctx)


@fault_app.command("clear")
def fault_clear(ctx: typer.Context) -> None:
    """No freeze, no delay."""
    from otactl import localcluster

    localcluster.set_faults(_state_dir(ctx), frozen=False, delay_ms=0)
    _faults_line(ctx)


@fault_app.command("status")
def fault_status(ctx: typer.Context) -> None:
    """The faults in force."""
    _faults_line(ctx)


DownOpt = Annotated[
    float, typer.Option("--down", min=0, help="Seconds to keep it stopped before the start.")
]


def _restart(ctx: typer.Context, name: str, down: float) -> None:
    from otactl import localcluster

    frozen = localcluster.load_faults(_state_dir(ctx)).frozen
    took = localcluster.restart_component(
        _state_dir(ctx), name, down_seconds=down, wait=not frozen, progress=info
    )
    if frozen:
        echo(f"{name} restarted (the API path is frozen: not waiting for /readyz)")
    else:
        echo(f"{name} restarted; the API server was ready {took:.1f} s after the start")


@fault_app.command("restart-apiserver")
def fault_restart_apiserver(ctx: typer.Context, down: DownOpt = 0.0) -> None:
    """Stop kube-apiserver and start it again (etcd and its data stay)."""
    _restart(ctx, "kube-apiserver", down)


@fault_app.command("restart-etcd")
def fault_restart_etcd(ctx: typer.Context, down: DownOpt = 0.0) -> None:
    """Stop etcd and start it again on the same data."""
    _restart(ctx, "etcd", down)
