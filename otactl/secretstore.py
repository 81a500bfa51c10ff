"""Random secrets (database passwords, application secrets, keyserver salt), created on first
use, kept 0600 in `generated/<server name>/secrets.yaml` and reused so renders are stable."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from otactl.errors import ConfigError
from otactl.fsutil import write_private

SECRETS_FILE = "secrets.yaml"

# One database and user per service that keeps state in MariaDB.
DATABASES = (
    "campaigner",
    "device_registry",
    "director",
    "treehub",
    "tuf_keyserver",
    "tuf_reposerver",
)


@dataclass(frozen=True)
class Secrets:
    mysql_root_password: str
    db_passwords: dict[str, str]
    play_crypto_secret: str
    jwt_secret: str
    keyserver_db_encryption_salt: str
    keyserver_db_encryption_password: str
    reverse_proxy_password: str


def _token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def _fresh() -> dict[str, object]:
    return {
        "mysql_root_password": _token(),
        "db_passwords": {db: _token() for db in DATABASES},
        "play_crypto_secret": _token(48),
        "jwt_secret": _token(48),
        # tuf-keyserver encrypts its keys with these (hex salt, as the old script made them)
        "keyserver_db_encryption_salt": secrets.token_hex(16),
        "keyserver_db_encryption_password": _token(32),
        "reverse_proxy_password": _token(18),
    }


def load_or_create(server_dir: Path) -> Secrets:
    """Read the secrets file, adding whatever is missing; never replace a kept value."""
    path = server_dir / SECRETS_FILE
    kept: dict[str, object] = {}
    if path.exists():
        try:
            kept = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: cannot parse the secrets file; fix or restore it") from e
        if not isinstance(kept, dict):
            raise ConfigError(f"{path}: the secrets file is not a mapping; fix or restore it")
    fresh = _fresh()
    merged = {**fresh, **kept}
    merged["db_passwords"] = {**fresh["db_passwords"], **(kept.get("db_passwords") or {})}  # type: ignore[dict-item]
    if merged != kept:
        write_private(path, yaml.safe_dump(merged, sort_keys=True))
    names = {f.name for f in fields(Secrets)}
    return Secrets(**{k: v for k, v in merged.items() if k in names})  # type: ignore[arg-type]


def masked_secrets(server_dir: Path) -> dict[str, str]:
    """What `config show` prints: where the secrets live, never their values."""
    path = server_dir / SECRETS_FILE
    state = "kept" if path.exists() else "created on first render/up"
    return {"file": str(path), "values": f"******** ({state})"}
