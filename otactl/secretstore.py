"""Random secrets (database passwords, application secrets, keyserver salt), created on first
use, kept 0600 in `generated/<server name>/secrets.yaml` and reused so renders are stable."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from otactl.errors import ConfigError
from otactl.fsutil import write_private
from otactl.locks import holding_folder

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
    # What loading changed in a kept file, to tell the user once (never a secret's value).
    notes: tuple[str, ...] = ()


# libats' SlickCrypto refuses a password under 64 characters and a salt that is not base64
# of 8 bytes or more (libats SlickEncryptedColumn.scala); tuf-keyserver exits at start then.
MIN_ENCRYPTION_PASSWORD = 64


def _token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def _fresh() -> dict[str, object]:
    return {
        "mysql_root_password": _token(),
        "db_passwords": {db: _token() for db in DATABASES},
        "play_crypto_secret": _token(48),
        "jwt_secret": _token(48),
        # tuf-keyserver encrypts its keys with these (see MIN_ENCRYPTION_PASSWORD)
        "keyserver_db_encryption_salt": base64.b64encode(secrets.token_bytes(16)).decode(),
        "keyserver_db_encryption_password": _token(64),
        "reverse_proxy_password": _token(18),
    }


@holding_folder
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
    notes = []
    if len(str(merged["keyserver_db_encryption_password"])) < MIN_ENCRYPTION_PASSWORD:
        # Safe to replace: no tuf-keyserver could start with it, so nothing was encrypted.
        merged["keyserver_db_encryption_password"] = fresh["keyserver_db_encryption_password"]
        notes.append(
            f"{path}: replaced the keyserver encryption password, which was shorter than "
            f"{MIN_ENCRYPTION_PASSWORD} characters (tuf-keyserver refuses to start with it)"
        )
    if merged != kept:
        write_private(path, yaml.safe_dump(merged, sort_keys=True))
    names = {f.name for f in fields(Secrets)} - {"notes"}
    kept_values = {k: v for k, v in merged.items() if k in names}
    return Secrets(**kept_values, notes=tuple(notes))  # type: ignore[arg-type]


def masked_secrets(server_dir: Path) -> dict[str, str]:
    """What `config show` prints: where the secrets live, never their values."""
    path = server_dir / SECRETS_FILE
    state = "kept" if path.exists() else "created on first render/up"
    return {"file": str(path), "values": f"******** ({state})"}
