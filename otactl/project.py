"""Where the project's files are: `generated/` and `otactl.yaml`, found as git finds `.git`.

Run from a sub-folder of a project, otactl walks up from the current folder to the first one
holding `otactl.yaml` or a `generated/` folder, and uses that. Run from a folder outside any
project, a `generated/` would be made there, and with it a second CA that no device trusts:
so otactl remembers (in `$XDG_STATE_HOME/otactl/servers`, default `~/.local/state`) the
server folders where it made a CA, refuses to make another one outside any project while
one of those still exists unless `--generated` says where, and names them when a command
finds no PKI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from otactl.errors import PkiError

GENERATED = "generated"
CONFIG = "otactl.yaml"


def find_root(start: Path) -> Path | None:
    """The nearest folder, from `start` up, holding `otactl.yaml` or `generated/`."""
    start = start.absolute()
    for folder in (start, *start.parents):
        if (folder / CONFIG).is_file() or (folder / GENERATED).is_dir():
            return folder
    return None


@dataclass(frozen=True)
class Location:
    """The generated/ folder a command uses (absolute) and how it was chosen."""

    generated: Path
    explicit: bool  # --generated or $OTACTL_GENERATED
    root: Path | None  # the project folder found walking up (None: none, or explicit)


def locate(generated: Path, explicit: bool, cwd: Path | None = None) -> Location:
    """`generated` as given when `explicit`, else the walked-up project's `generated/`,
    else `generated/` in the current folder (a new project)."""
    cwd = (cwd or Path.cwd()).absolute()
    if explicit:
        return Location(cwd / generated, True, None)
    root = find_root(cwd)
    return Location((root or cwd) / GENERATED, False, root)


def config_file(cwd: Path | None = None) -> Path | None:
    """The project's `otactl.yaml`: in the current folder or the nearest above it."""
    root = find_root(cwd or Path.cwd())
    if root is not None and (root / CONFIG).is_file():
        return root / CONFIG
    return None


# --- server folders this user's otactl made a CA in ------------------------------------


def _registry() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "otactl" / "servers"


def remember_server(server_dir: Path) -> None:
    """Record that a server CA was made in `server_dir` (best effort: a read-only home
    only loses the hint)."""
    path = _registry()
    entry = str(server_dir.absolute())
    try:
        known = path.read_text().splitlines() if path.exists() else []
        if entry not in known:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(entry + "\n")
    except OSError:
        pass


def known_servers(besides: Path | None = None) -> list[Path]:
    """Server folders otactl made a CA in that still hold it (`besides` left out)."""
    try:
        lines = _registry().read_text().splitlines()
    except OSError:
        return []
    skip = besides.absolute() if besides is not None else None
    found = [Path(line) for line in dict.fromkeys(lines) if line.strip()]
    return [p for p in found if p != skip and (p / "ca.key").is_file()]


def elsewhere_hint(server_dir: Path) -> str:
    """`; otactl made a server PKI in DIR: ...` when one exists in another folder."""
    others = known_servers(besides=server_dir)
    if not others:
        return ""
    return f"; otactl made a server PKI in {others[-1]}: {_go_there(others[-1])}"


def _go_there(server_dir: Path) -> str:
    generated = server_dir.parent
    if generated.name == GENERATED:
        return f"run otactl from {generated.parent}, or pass --generated {generated}"
    return f"pass --generated {generated}"


def check_new_ca(location: Location, server_dir: Path) -> None:
    """Refuse to make a server CA outside any project, without `--generated`, while one
    otactl made exists in another folder (devices trust that one)."""
    if location.explicit or location.root is not None:
        return
    if (server_dir / "ca.key").exists():
        return
    others = known_servers(besides=server_dir)
    if others:
        raise PkiError(
            f"no {GENERATED}/ or {CONFIG} in {location.generated.parent} or any folder above, "
            f"and otactl made a server PKI in {others[-1]}: {_go_there(others[-1])} (or "
            f"--generated {location.generated} to make a new, separate CA here)"
        )
