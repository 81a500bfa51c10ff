"""`otactl rbac`: the RBAC objects CI needs to run otactl as a ServiceAccount."""

from __future__ import annotations

from typing import Annotated

import typer

from otactl.cli._common import Common, Output, command_set, echo, emit, namespace_options

app = command_set()


@app.command("rbac")
@namespace_options
def rbac(
    account: Annotated[
        str, typer.Option("--service-account", help="Name of CI's ServiceAccount.")
    ] = "otactl-ci",
    output: Annotated[
        Output, typer.Option("--output", "-o", help="text (YAML documents), json or yaml (a List).")
    ] = (Output.text),
    *,
    common: Common,
) -> None:
    """Print the Role, ClusterRole, ServiceAccount and bindings that `up`, `down`,
    `status`, `health` and `new-device` need (apply them once as an administrator)."""
    import yaml

    from otactl import security

    values = common.state().values()
    docs = security.ci_rbac(values.namespace, account)
    if output.structured:
        emit(output, {"apiVersion": "v1", "kind": "List", "items": docs})
    else:
        echo(yaml.safe_dump_all(docs, sort_keys=False).rstrip())
