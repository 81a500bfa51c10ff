"""sota.toml read the way aktualizr reads it, release by release: a boost property_tree
INI reader and, for each aktualizr release, the keys it reads and what it does with them
up to provisioning (server URL, hardware id, storage, where the TLS credentials come from).

Every rule names the upstream file it comes from (uptane/aktualizr, at the git tag given;
`master` is e5118a748, 2025-10-07). The release table below was derived by reading those
files at every tag from 2018.1 to 2020.10 and master:

| releases          | what changes (source)                                                      |
|-------------------|----------------------------------------------------------------------------|
| 2018.1            | flat keys `section.key`; ostree server in [uptane] (src/config.cc)         |
| 2018.2 - 2018.4   | ostree server moves to [pacman] (src/config.cc)                            |
| 2018.5            | [tls] server_url_path read (src/config.cc)                                 |
| 2018.6 - 2018.7   | one subtree per section; device_id, primary_ecu_serial and                 |
|                   | primary_ecu_hardware_id move to [provision] (config/config.cc,            |
|                   | primary/initializer.cc); default storage still filesystem                 |
| 2018.8 - 2020.7   | FSStorage removed: any storage type but sqlite stops aktualizr            |
|                   | (storage/invstorage.cc); [import] base_path, paths relative to it         |
|                   | (storage_config.h, utilities/utils.h BasedPath); default storage sqlite   |
| 2020.8 - master   | [provision] mode read (SharedCred, DeviceCred, ...) (config/config.cc)     |
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

# --- boost::property_tree::read_ini ----------------------------------------------------------


class IniError(ValueError):
    """What read_ini throws (boost/property_tree/ini_parser.hpp, ini_parser_error)."""


def read_ini(text: str) -> dict[str, dict[str, str]]:
    """boost/property_tree/ini_parser.hpp `read_ini`: each line trimmed; blank lines and
    `;` comments skipped (recent boost also skips `#` lines, older releases throw "'='
    character not found": we keep the strict reading, what every aktualizr's boost
    accepts); `[name]` opens a section (a repeated section name throws "duplicate section
    name"; an empty section is dropped); `key = value` with key and value trimmed and the
    value kept verbatim, quotes included (a repeated key throws "duplicate key name"); keys
    before any section sit at the top level (under "")."""
    tree: dict[str, dict[str, str]] = {"": {}}
    section = ""
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.strip(" \t\r\f\v")
        if not line or line.startswith(";"):
            continue
        if line.startswith("["):
            end = line.find("]")
            if end < 0:
                raise IniError(f"line {n}: unmatched '['")
            if section and not tree[section]:
                del tree[section]
            section = line[1:end].strip()
            if section in tree:
                raise IniError(f"line {n}: duplicate section name")
            tree[section] = {}
            continue
        eq = line.find("=")
        if eq < 0:
            raise IniError(f"line {n}: '=' character not found in line")
        if eq == 0:
            raise IniError(f"line {n}: key expected")
        key, value = line[:eq].strip(), line[eq + 1 :].strip()
        if key in tree[section]:
            raise IniError(f"line {n}: duplicate key name")
        tree[section][key] = value
    if section and not tree[section]:
        del tree[section]
    return tree


@dataclass
class Ptree:
    """Typed lookups as aktualizr does them: `get_optional<T>("section.key")` (a path with
    `.` between the levels), then `StripQuotesFromStrings` for strings. A key that is absent
    or does not convert to T is None: aktualizr keeps its default. Keys nobody asks for are
    ignored."""

    tree: dict[str, dict[str, str]]

    def raw(self, key: str) -> str | None:
        section, _, name = key.rpartition(".")
        # A dotted name inside a section ("[a] b.c = 1") is not found by the path "a.b.c".
        if "." in section:
            return None
        return self.tree.get(section, {}).get(name)

    def string(self, key: str) -> str | None:
        """std::string: the value with every `"` removed (Utils::stripQuotes, any release;
        Config::stripQuotes in 2018.1-2018.5)."""
        value = self.raw(key)
        return None if value is None else value.replace('"', "")

    def path(self, key: str) -> str | None:
        """boost::filesystem::path (2018.1-2018.7 paths): stream extraction with
        boost::io::quoted(s, '&'), then nothing but whitespace may follow."""
        value = self.raw(key)
        if value is None:
            return None
        if not value.startswith('"'):
            return None if any(c.isspace() for c in value) else value
        out, i = [], 1
        while i < len(value):
            c = value[i]
            if c == "&" and i + 1 < len(value):
                out.append(value[i + 1])
                i += 2
                continue
            if c == '"':
                return "".join(out) if not value[i + 1 :].strip() else None
            out.append(c)
            i += 1
        return None  # no closing quote

    def integer(self, key: str) -> int | None:
        value = self.raw(key)
        try:
            return int(value) if value is not None and value.lstrip("+-").isdigit() else None
        except ValueError:
            return None

    def boolean(self, key: str) -> bool | None:
        """boost's customize_stream<bool>: 0/1, else true/false (boolalpha, lowercase)."""
        return {"1": True, "0": False, "true": True, "false": False}.get(self.raw(key) or "")


# --- releases ----------------------------------------------------------------------------

TAGS = (
    *(f"2018.{i}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13)),
    *(f"2019.{i}" for i in range(1, 12)),
    *(f"2020.{i}" for i in range(1, 11)),
    "master",
)


def version(tag: str) -> tuple[int, ...]:
    return (9999,) if tag == "master" else tuple(int(p) for p in tag.split("."))


def at_least(tag: str, first: str) -> bool:
    return version(tag) >= version(first)


@dataclass
class Outcome:
    """What one release makes of a sota.toml and the files on the device, up to the first
    request to the gateway; `error` is why it would not get there."""

    tag: str
    error: str | None = None
    server: str = ""
    director: str = ""
    repo: str = ""
    ostree_server: str = ""
    hardware_id: str = ""
    storage: str = ""
    db_path: str = ""
    credentials: dict[str, str] = field(default_factory=dict)  # what: path on the device
    polling_sec: int | None = None
    package_manager: str = ""
    mode: str = ""


def _abs(base: str, path: str) -> str:
    """Utils::absolutePath (utilities/utils.cc, 2018.8+): absolute stays, else base/path."""
    return path if path.startswith("/") or not base else posixpath.join(base, path)


def provision(tag: str, text: str, files: dict[str, bytes], hostname: str = "hostname") -> Outcome:
    """Run `tag`'s configuration loading and provisioning checks on a sota.toml and the
    device's files (absolute path -> content)."""
    out = Outcome(tag)
    pt = Ptree(read_ini(text))
    new_tree = at_least(tag, "2018.6")  # per-section config objects, [provision] identity
    # Paths are boost::filesystem::path until 2018.7; from 2018.8 the storage and import
    # file names are BasedPath, read as strings (utilities/config_utils.h).
    fs_path = pt.path if not at_least(tag, "2018.8") else pt.string

    # Server URLs: Config::postUpdateValues (src/config.cc 2018.1-2018.5,
    # src/libaktualizr/config/config.cc 2018.6+): tls.server, else the file named by
    # tls.server_url_path (read from 2018.5), else the provisioning archive.
    out.server = pt.string("tls.server") or ""
    url_path = pt.path("tls.server_url_path") if at_least(tag, "2018.5") else None
    if not out.server and url_path:
        if url_path not in files:
            return _fail(out, f"cannot read {url_path}")
        out.server = files[url_path].decode()
        if at_least(tag, "2018.13"):  # Utils::readFile(path, trim=true) from 2018.13
            out.server = out.server.strip()
    if not out.server:
        return _fail(out, "no server URL")
    out.director = pt.string("uptane.director_server") or f"{out.server}/director"
    out.repo = pt.string("uptane.repo_server") or f"{out.server}/repo"
    ostree_key = "uptane.ostree_server" if tag == "2018.1" else "pacman.ostree_server"
    out.ostree_server = pt.string(ostree_key) or f"{out.server}/treehub"
    out.polling_sec = pt.integer("uptane.polling_sec")
    out.package_manager = pt.string("pacman.type") or "ostree"

    # Provisioning mode: an empty provision_path means the device brings its credentials
    # (kImplicit, named kDeviceCred from 2019.4); [provision] mode is read from 2020.8.
    provision_path = pt.path("provision.provision_path") or ""
    out.mode = "DeviceCred" if not provision_path else "SharedCred"
    if at_least(tag, "2020.8") and pt.string("provision.mode") not in (None, "", "DeviceCred"):
        out.mode = pt.string("provision.mode") or ""
    if out.mode != "DeviceCred":
        return _fail(out, f"provisioning mode {out.mode}, not device credentials")

    # The primary ECU's hardware id: [uptane] until 2018.5 (src/uptane/initialize.cc),
    # [provision] from 2018.6 (primary/initializer.cc, primary/provisioner.cc on master);
    # unset, the machine's host name is registered.
    section = "provision" if new_tree else "uptane"
    out.hardware_id = pt.string(f"{section}.primary_ecu_hardware_id") or hostname

    # Storage: filesystem is the default until 2018.7 and removed from 2018.8
    # (storage/invstorage.cc: "FSStorage has been removed in recent versions of aktualizr,
    # please use SQLStorage"; any type other than "sqlite" means filesystem).
    storage_type = pt.string("storage.type")
    sqlite = storage_type == "sqlite" if storage_type is not None else at_least(tag, "2018.8")
    out.storage = "sqlite" if sqlite else "filesystem"
    if not sqlite and at_least(tag, "2018.8"):
        return _fail(
            out, "FSStorage has been removed in recent versions of aktualizr, please use SQLStorage"
        )
    storage_path = pt.path("storage.path") or "/var/sota"
    if sqlite:
        # sqldb_path: absolute, default /var/sota/storage.db (2018.1-2018.5) or
        # /var/sota/sql.db (2018.6-2018.7); from 2018.8 a BasedPath under storage.path.
        db = fs_path("storage.sqldb_path")
        if at_least(tag, "2018.8"):
            out.db_path = _abs(storage_path, db or "sql.db")
        else:
            default = "/var/sota/sql.db" if new_tree else "/var/sota/storage.db"
            out.db_path = db or default

    # TLS credentials. Filesystem storage reads them from storage.path (FSStorage
    # loadTlsCommon: absolutePath(storage.path, storage.tls_*_path); the default CA name
    # is ca.pem until 2018.5, root.crt from 2018.6). Both storages first import what
    # [import] names (INvStorage::importData, called before provisioning); sqlite has
    # nothing else. Import paths: as written until 2018.7, relative to [import] base_path
    # (default /var/sota/import) from 2018.8.
    creds: dict[str, str] = {}
    base = (pt.path("import.base_path") or "/var/sota/import") if at_least(tag, "2018.8") else ""
    for what, key in (("ca", "tls_cacert_path"), ("cert", "tls_clientcert_path")):
        imported = fs_path(f"import.{key}")
        if imported:
            creds[what] = _abs(base, imported) if base else imported
    imported_key = fs_path("import.tls_pkey_path")
    if imported_key:
        creds["key"] = _abs(base, imported_key) if base else imported_key
    if not sqlite:
        defaults = {"ca": "root.crt" if new_tree else "ca.pem", "cert": "client.pem"}
        defaults["key"] = "pkey.pem"
        for what, key in (
            ("ca", "tls_cacert_path"),
            ("cert", "tls_clientcert_path"),
            ("key", "tls_pkey_path"),
        ):
            stored = posixpath.join(storage_path, fs_path(f"storage.{key}") or defaults[what])
            # What storage holds wins over an import of the same item (importSimple).
            if stored in files or what not in creds:
                creds[what] = stored
    out.credentials = creds
    missing = [what for what in ("ca", "cert", "key") if creds.get(what) not in files]
    if missing:
        return _fail(out, f"Credentials not found: {', '.join(missing)}")
    return out


def _fail(out: Outcome, why: str) -> Outcome:
    out.error = why
    return out
