"""`otactl config show`, `otactl version`."""

from __future__ import annotations

import typer

from otactl.cli._common import Common, Output, OutputOpt, command_set, echo, emit, values_options

app = command_set()
config_app = typer.Typer(help="Inspect the merged values.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
@values_options
def show(
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """Print the merged values (defaults, profile, user file, --set); secrets masked.

    The text and YAML forms can be fed back with --config (the secrets' place is a
    comment there); -o json adds them as a `secrets` key."""
    import yaml

    from otactl.secretstore import masked_secrets

    st = common.state()
    values = st.values()
    data = values.model_dump(mode="json")
    secrets = masked_secrets(st.server_dir())
    if output is Output.json:
        emit(output, data | {"secrets": secrets})
        return
    echo(yaml.safe_dump(data, sort_keys=False).rstrip())
    echo("# secrets are not values: " + ", ".join(f"{k} {v}" for k, v in secrets.items()))


@app.command("version")
@values_options
def version(
    output: OutputOpt = Output.text,
    *,
    common: Common,
) -> None:
    """otactl's version and the images it deploys (the values in force: pinned tags)."""
    from otactl import __version__

    images = common.state().values().images()
    if output is not Output.text:
        emit(output, {"otactl": __version__, "images": images})
        return
    echo(f"otactl {__version__}")
    width = max(map(len, images))
    for name, image in images.items():
        echo(f"  {name:<{width}}  {image}")
