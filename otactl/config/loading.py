"""Loading the values: shipped defaults, an optional profile, the user's file and `--set`,
merged in that order and validated once; a bad value is reported as `where: key: message`
with the file and line (or `--set`) it came from."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from otactl.config.schema import Values
from otactl.errors import ConfigError


def project_root() -> Path:
    """Where `templates/` and `contrib/` live: the package (wheel) or the source checkout."""
    here = Path(__file__).resolve().parent.parent  # the otactl package, above otactl/config/
    return here if (here / "templates").is_dir() else here.parent


def templates_dir() -> Path:
    return project_root() / "templates"


def profiles() -> list[str]:
    """Profiles are values files shipped in `templates/profiles/`."""
    return sorted(p.stem for p in (templates_dir() / "profiles").glob("*.yaml"))


@dataclass(frozen=True)
class Layer:
    """One source of values, kept so an error can say where a bad key came from."""

    source: str
    data: dict[str, Any]
    text: str | None = None


def _load_yaml(path: Path) -> Layer:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read values file: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise ConfigError(f"{where}: malformed YAML: {problem}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: values must be a mapping at the top level")
    return Layer(str(path), data, text)


def parse_set(expr: str) -> Layer:
    """`a.b=value` into a layer: the value read as YAML (a scalar, `[x, y]`, `{k: v}`),
    `{x,y}` a list as helm reads it; keys may use the dashed names the CLI prints
    (`services.campaigner-daemon.replicas`)."""
    key, sep, raw = expr.partition("=")
    if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$", key):
        raise ConfigError(f"--set {expr}: expected KEY.PATH=VALUE")
    key = key.replace("-", "_")
    helm_list = re.fullmatch(r"\{([^:{}]*)\}", raw.strip())
    try:
        if helm_list:
            items = [i.strip() for i in helm_list.group(1).split(",")]
            value: Any = [yaml.safe_load(i) if i else "" for i in items if i] if any(items) else []
        else:
            value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {expr}: value is not valid YAML") from e
    data: dict[str, Any] = {}
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return Layer(f"--set {expr}", data)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _has_path(data: Any, path: tuple[Any, ...]) -> bool:
    for part in path:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if in_dict or in_list:
            data = data[part]
        else:
            return False
    return True


def _line_of(text: str, path: tuple[Any, ...]) -> int | None:
    """Line of `path` in a YAML document, from its node tree (marks survive there)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _explain(e: ValidationError, layers: list[Layer]) -> ConfigError:
    """Every error of the values, each as `where: key: message`, on one line."""
    problems = [_one_problem(err, layers) for err in e.errors()]
    if len(problems) == 1:
        return ConfigError(problems[0])
    return ConfigError(f"{len(problems)} problems in the values: " + "; ".join(problems))


def _one_problem(err: Any, layers: list[Layer]) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required value missing"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        if "input" in err and not isinstance(err["input"], dict | list):
            msg += f" (got {err['input']!r})"
    # The last layer that mentions the key (or its nearest parent) is where it came from.
    where = "values"
    layer = None
    for depth in range(len(loc), 0, -1):
        hits = [layer for layer in layers if _has_path(layer.data, loc[:depth])]
        if hits:
            layer = hits[-1]
            line = _line_of(layer.text, loc[:depth]) if layer.text else None
            where = f"{layer.source}:{line}" if line else layer.source
            break
    if err["type"] == "string_type" and "input" in err:
        # YAML read `1.10`, `007`, `yes` or `null` as something else than the text typed.
        if layer is not None and layer.source.startswith("--set "):
            typed = layer.source.partition("=")[2]
            msg += f"; to pass it as a string, quote it: --set '{key}=\"{typed}\"'"
        else:
            msg += "; to pass it as a string, quote it in YAML"
    return f"{where}: {key}: {msg}"


def user_config_path(explicit: Path | None) -> Path | None:
    """`--config`, else `$OTACTL_CONFIG`, else `./otactl.yaml` when present."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("OTACTL_CONFIG")
    if env:
        return Path(env)
    from otactl.project import config_file

    return config_file()


def load_values(
    config: Path | None = None, sets: list[str] | None = None, profile: str | None = None
) -> Values:
    """Merge defaults → profile (`--profile`, else `$OTACTL_PROFILE`) → user file →
    `--set` and validate once."""
    layers = [_load_yaml(templates_dir() / "values.yaml")]
    flag = "--profile "
    if profile is None and os.environ.get("OTACTL_PROFILE"):
        profile, flag = os.environ["OTACTL_PROFILE"], "OTACTL_PROFILE="
    if profile is not None:
        if profile not in profiles():
            known = ", ".join(profiles())
            raise ConfigError(f"{flag}{profile}: unknown profile (known: {known})")
        layers.append(_load_yaml(templates_dir() / "profiles" / f"{profile}.yaml"))
    user = user_config_path(config)
    if user is not None:
        layers.append(_load_yaml(user))
    layers += [parse_set(s) for s in sets or []]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer.data)
    try:
        return Values.model_validate(merged)
    except ValidationError as e:
        raise _explain(e, layers) from None
