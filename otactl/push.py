"""Copy a device bundle to a device over SSH (`otactl new-device --push root@HOST[:PORT]`).

The files go where the bundle's `sota.toml` expects them (its `[storage] path`, /var/sota/
unless the values said otherwise): `sota.toml`, `root.crt`, `client.pem`, `pkey.pem`
(0600) for the `legacy-2018` format (`implicit` in older bundles); for `device-cred` the
credentials and `gateway.url` go into `<base>/import/`.
Each file is written under a temporary name, given its mode, then renamed over the old
one, so aktualizr never reads half a key.

Host keys are checked against known_hosts (~/.ssh/known_hosts by default): an unknown host
is refused unless the caller opts out (`accept_unknown_host`), and a host whose key
differs from the recorded one is always refused. Login is by key only: the ssh-agent and
the usual ~/.ssh keys, or one given key file. The transfer uses SFTP (OpenSSH's
`sftp-server`, which the aktualizr images with openssh carry).
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otactl.errors import ConfigError, PushError

if TYPE_CHECKING:
    from collections.abc import Callable

    import paramiko

DEFAULT_TIMEOUT = 15.0
TARGET_RE = re.compile(
    r"""(?:(?P<user>[A-Za-z0-9._-]+)@)?
        (?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+))
        (?::(?P<port>\d{1,5}))?""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Target:
    user: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}" + (f":{self.port}" if self.port != 22 else "")


def parse_target(text: str) -> Target:
    """`[user@]host[:port]`, IPv6 hosts in brackets; the user defaults to root."""
    m = TARGET_RE.fullmatch(text.strip())
    port = int(m.group("port") or 22) if m else 0
    if not m or not 1 <= port <= 65535:
        raise ConfigError(f"--push {text}: expected root@HOST[:PORT]")
    return Target(m.group("user") or "root", m.group("v6") or m.group("host"), port)


def remote_layout(fmt: str, base: str) -> dict[str, tuple[str, int]]:
    """Bundle file → (path on the device, mode), as aktualizr reads them for `fmt`."""
    from otactl.devices import device_layout

    if not base.startswith("/"):
        raise ConfigError(f"remote path {base!r}: must be absolute")
    return {
        name: (path, 0o600 if name == "pkey.pem" else 0o644)
        for name, path in device_layout(fmt, base).items()
    }


def bundle_format(bundle_dir: Path) -> str:
    """The sota.toml format a bundle was made with (recorded in its info.json)."""
    try:
        fmt = json.loads((bundle_dir / "info.json").read_text())["format"]
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{bundle_dir}: not a device bundle (info.json: {e})") from None
    from otactl.devices import FORMAT_ALIASES, FORMATS

    if fmt not in FORMATS and fmt not in FORMAT_ALIASES:
        raise ConfigError(f"{bundle_dir}/info.json: unknown format {fmt!r}")
    return str(fmt)


def bundle_storage_path(bundle_dir: Path) -> str:
    """The folder the bundle's sota.toml names (`[storage] path`): where aktualizr looks."""
    import tomllib

    try:
        path = tomllib.loads((bundle_dir / "sota.toml").read_text())["storage"]["path"]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{bundle_dir}/sota.toml: no [storage] path ({e})") from None
    return str(path)


def _host_key_policy(target: Target, known_hosts: Path, accept: bool) -> Any:
    import paramiko

    class Policy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            if accept:
                return  # accepted for this connection only; known_hosts is left as it is
            raise PushError(
                f"{target}: host key {key.get_name()} SHA256:{key.fingerprint.split(':', 1)[-1]} "
                f"is not in {known_hosts}: check it and add it (ssh-keyscan -p {target.port} "
                f"{target.host} >> {known_hosts}), or pass --insecure-accept-host-key"
            )

    return Policy()


def _connect(
    target: Target,
    *,
    ssh_key: Path | None,
    known_hosts: Path,
    accept_unknown_host: bool,
    timeout: float,
) -> paramiko.SSHClient:
    import paramiko

    client = paramiko.SSHClient()
    try:
        if known_hosts.exists():
            client.load_host_keys(str(known_hosts))
        client.set_missing_host_key_policy(
            _host_key_policy(target, known_hosts, accept_unknown_host)
        )
        client.connect(
            target.host,
            port=target.port,
            username=target.user,
            key_filename=str(ssh_key) if ssh_key else None,
            # One given key means that key only; otherwise what `ssh` would try.
            allow_agent=ssh_key is None,
            look_for_keys=ssh_key is None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
    except PushError:
        client.close()
        raise
    except paramiko.BadHostKeyException as e:
        client.close()
        raise PushError(
            f"{target}: host key {e.key.get_name()} does not match the one in {known_hosts} "
            f"(a re-installed device, or someone in between): check it, then remove the old "
            f"entry with ssh-keygen -R"
        ) from e
    except paramiko.PasswordRequiredException as e:
        client.close()
        raise PushError(f"{target}: key {ssh_key} is encrypted: load it into ssh-agent") from e
    except paramiko.AuthenticationException as e:
        client.close()
        using = f"key {ssh_key}" if ssh_key else "the ssh-agent's and ~/.ssh keys"
        raise PushError(f"{target}: login refused with {using}") from e
    except (OSError, paramiko.SSHException) as e:  # refused, unreachable, timed out
        client.close()
        raise PushError(f"{target}: cannot connect: {e}") from e
    except BaseException:
        client.close()
        raise
    return client


def _makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    """mkdir -p, new folders 0700: they hold keys."""
    parts = [p for p in path.split("/") if p]
    current = ""
    for part in parts:
        current += "/" + part
        try:
            sftp.stat(current)
        except FileNotFoundError:
            sftp.mkdir(current, 0o700)


def _put(sftp: paramiko.SFTPClient, data: bytes, dest: str, mode: int) -> None:
    tmp = posixpath.join(posixpath.dirname(dest), f".{posixpath.basename(dest)}.otactl-tmp")
    with sftp.open(tmp, "wb") as f:
        f.chmod(mode)  # before the first byte: a key is never readable by others
        f.write(data)
    sftp.posix_rename(tmp, dest)


@dataclass(frozen=True)
class PushResult:
    target: str
    files: dict[str, str]  # bundle file → path on the device


def push_bundle(
    bundle_dir: Path,
    target: str | Target,
    *,
    remote_base: str | None = None,
    ssh_key: Path | None = None,
    known_hosts: Path | None = None,
    accept_unknown_host: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Callable[[str], None] | None = None,
) -> PushResult:
    """Copy the bundle in `bundle_dir` to `target` under `remote_base` (default: the
    storage path its sota.toml names; tests point it at a temporary folder)."""
    import paramiko

    tgt = target if isinstance(target, Target) else parse_target(target)
    base = remote_base or bundle_storage_path(bundle_dir)
    layout = remote_layout(bundle_format(bundle_dir), base.rstrip("/") or "/")
    files = {}
    for name in layout:
        try:
            files[name] = (bundle_dir / name).read_bytes()
        except OSError as e:
            raise ConfigError(f"{bundle_dir}: cannot read {name}: {e.strerror}") from e
    hosts = known_hosts or Path.home() / ".ssh" / "known_hosts"
    client = _connect(
        tgt,
        ssh_key=ssh_key,
        known_hosts=hosts,
        accept_unknown_host=accept_unknown_host,
        timeout=timeout,
    )
    dest = ""
    try:
        try:
            sftp = client.open_sftp()
        except paramiko.SSHException as e:
            raise PushError(f"{tgt}: the device offers no SFTP subsystem: {e}") from e
        with sftp:
            for name, (dest, mode) in layout.items():
                _makedirs(sftp, posixpath.dirname(dest))
                _put(sftp, files[name], dest, mode)
                if progress:
                    progress(f"{tgt}: {dest}")
    except (OSError, paramiko.SSHException) as e:
        raise PushError(f"{tgt}: cannot write {dest}: {e}") from e
    finally:
        client.close()
    return PushResult(str(tgt), {name: path for name, (path, _) in layout.items()})
