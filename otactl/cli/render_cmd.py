"""`otactl render`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from otactl.cli._common import Common, command_set, echo, info, values_options

app = command_set()


@app.command("render")
@values_options
def render_cmd(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the sets (default: generated/templates)."),
    ] = None,
    stdout: Annotated[
        bool, typer.Option("--stdout", help="Print the sets instead of writing files.")
    ] = False,
    *,
    common: Common,
) -> None:
    """Render the Kubernetes objects (infra, services, ingress) without a cluster."""
    from otactl import render, secretstore

    st = common.state()
    values = st.values()
    secrets = secretstore.load_or_create(st.server_dir())
    for note in secrets.notes:
        info(note)
    rendered = render.render(values, secrets)
    if stdout:
        echo(
            "".join(f"---\n# set: {name}\n{text}" for name, text in rendered.sets.items()).rstrip()
        )
        return
    render.write(rendered, out or st.generated / "templates", progress=info)
