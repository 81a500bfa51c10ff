"""The credentials phase of `otactl up`: TUF repositories, the targets key pair and
`credentials.zip` for the build tools (garage-push, garage-sign).

The plan (reference sections 3 and 7), safe to run again at any point:

1. tuf-reposerver: `POST /api/v1/user_repo` (200 = created, 409 = the tenant has one: the
   only call where 409 is fine), then `GET /api/v1/user_repo/root.json` until the keys
   exist (423 while they are generated); the repo id comes from `x-ats-tuf-repo-id`.
2. director: `GET /api/v1/admin/repo/root.json` first (404 = missing), and only then
   `POST /api/v1/admin/repo` (201): a POST on an existing repo makes orphan keys and 409.
3. tuf-keyserver: `GET /api/v1/root/<repo id>` (423 while generating), then the targets
   key pair from `/api/v1/root/<repo id>/keys/targets/pairs`; the pair must be the one
   root.json names for the targets role, its private key must match its public key, and
   both must be in the form garage-sign reads. The user repo's keys are RSA unless the
   repo was created with another `keyType` (ota-tuf 1d0d714 libtuf/.../TufDataType.scala
   `KeyType.default = RsaKeyType`); ED25519 and ECPRIME256V1 pairs are accepted too.
4. `credentials.zip` (made by `otactl.credentials_zip`), written 0600 and atomically,
   byte-identical when nothing changed, with the client certificate of one build-tools
   client (`client_auth.p12`): the reverse proxy lets garage-push and garage-sign in by
   that certificate (mutual TLS), nothing else.

Every call carries `x-ats-namespace: <tenant>`. Transient answers are retried within one
deadline (see `otactl.retry`); anything unexpected stops the phase with a `ServiceError`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otactl.credentials_zip import CREDENTIALS_ZIP as CREDENTIALS_ZIP
from otactl.credentials_zip import ZIP_DATE as ZIP_DATE
from otactl.credentials_zip import (
    ClientTls,
    PublicUrls,
    build_zip,
    client_tls,
    write_if_changed,
    zip_name,
)
from otactl.credentials_zip import treehub_json as treehub_json
from otactl.errors import PkiError, ServiceError
from otactl.retry import Deadline, Progress, call

if TYPE_CHECKING:
    from otactl.config import Values
    from otactl.service_api import ServiceCaller

REPOSERVER = "tuf-reposerver"
DIRECTOR = "director"
KEYSERVER = "tuf-keyserver"
REPO_ID_HEADER = "x-ats-tuf-repo-id"
KEYS_PENDING = "keys are still being generated"
# The key-generation daemon polls for new requests every 3 s (ota-tuf 1d0d714
# keyserver/.../daemon/KeyGeneratorLeader.scala) and makes four keys in about a second:
# 423s for much longer than that mean that nothing is generating keys.
KEYS_STUCK_AFTER = 20.0
KEYS_STUCK_HINT = (
    "the key-generation daemon (tuf-keyserver-daemon, main class "
    "com.advancedtelematic.tuf.keyserver.daemon.KeyGenerationDaemon) is likely not running"
)
# How every call that may meet keys being generated waits.
KEYS_WAIT: dict[str, Any] = {
    "wait_on": {423: KEYS_PENDING},
    "stuck": (KEYS_STUCK_AFTER, KEYS_STUCK_HINT),
}


@dataclass(frozen=True)
class RepoKeys:
    """What the services hold for a tenant's image repository."""

    repo_id: str
    root_json: bytes
    keytype: str
    public: str
    private: str
    user_repo_created: bool
    director_repo_created: bool

    def targets_pub(self) -> bytes:
        return _json({"keytype": self.keytype, "keyval": {"public": self.public}})

    def targets_sec(self) -> bytes:
        return _json({"keytype": self.keytype, "keyval": {"private": self.private}})


@dataclass(frozen=True)
class CredentialsResult:
    path: Path
    repo_id: str
    changed: bool  # False when the file already held these bytes
    created: tuple[str, ...]  # "user repo", "director repo"
    user_keys: dict[str, bytes]  # data of the `user-keys` Secret
    client: str = ""  # the build-tools client whose certificate the zip carries
    client_issued: bool = False  # its certificate was issued by this run


def _json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True).encode()


def _tenant(tenant: str) -> dict[str, str]:
    return {"x-ats-namespace": tenant}


def _root_document(service: str, what: str, body: bytes) -> dict[str, Any]:
    """A signed root metadata document, checked for shape (not trusted for anything)."""
    try:
        doc = json.loads(body)
        signed = doc["signed"]
        ok = signed["_type"].lower() == "root" and isinstance(doc["signatures"], list)
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ServiceError(f"{service}: {what} is not signed TUF root metadata")
    return dict(doc)


def _user_repo(
    caller: ServiceCaller, tenant: str, deadline: Deadline, progress: Progress | None
) -> tuple[str, bytes, dict[str, Any], bool]:
    path = "/api/v1/user_repo"
    created = call(
        caller, REPOSERVER, "POST", path, accept={200, 409}, deadline=deadline,
        headers=_tenant(tenant), progress=progress,
    )  # fmt: skip
    posted_id: str | None = None
    if created.status == 200:
        try:
            posted_id = str(created.json())
        except ValueError:
            raise ServiceError(
                f"{REPOSERVER}: POST {path} answered 200 without a repo id"
            ) from None
    root = call(
        caller, REPOSERVER, "GET", f"{path}/root.json", accept={200, 404}, deadline=deadline,
        headers=_tenant(tenant), progress=progress, **KEYS_WAIT,
    )  # fmt: skip
    if root.status == 404:
        said = "created it" if posted_id else "said it exists (409)"
        raise ServiceError(
            f"{REPOSERVER}: GET {path}/root.json: no repo for tenant {tenant!r} although "
            f"POST {path} {said}"
        )
    repo_id = root.header(REPO_ID_HEADER)
    if not repo_id:
        raise ServiceError(f"{REPOSERVER}: root.json came without the {REPO_ID_HEADER} header")
    if posted_id is not None and posted_id != repo_id:
        raise ServiceError(
            f"{REPOSERVER}: POST {path} created repo {posted_id} but root.json is of {repo_id}"
        )
    doc = _root_document(REPOSERVER, "user_repo/root.json", root.body)
    return repo_id, root.body, doc, posted_id is not None


def _director_repo(
    caller: ServiceCaller, tenant: str, deadline: Deadline, progress: Progress | None
) -> bool:
    path = "/api/v1/admin/repo"
    kw: dict[str, Any] = {"deadline": deadline, "headers": _tenant(tenant), "progress": progress}
    root = call(caller, DIRECTOR, "GET", f"{path}/root.json", accept={200, 404}, **kw)
    if root.status == 200:
        return False
    made = call(caller, DIRECTOR, "POST", path, accept={200, 201, 409}, **kw)
    if made.status == 409:
        # Another run created it between our GET and POST, or an earlier POST of ours
        # succeeded behind a 5xx: either way it must exist now.
        again = call(caller, DIRECTOR, "GET", f"{path}/root.json", accept={200, 404}, **kw)
        if again.status == 404:
            raise ServiceError(
                f"{DIRECTOR}: POST {path} answered 409 but GET {path}/root.json answers 404"
            )
        return False
    confirm = call(caller, DIRECTOR, "GET", f"{path}/root.json", accept={200}, **KEYS_WAIT, **kw)
    _root_document(DIRECTOR, "admin/repo/root.json", confirm.body)
    return True


def _targets_pair(
    caller: ServiceCaller,
    tenant: str,
    repo_id: str,
    root: dict[str, Any],
    deadline: Deadline,
    progress: Progress | None,
) -> tuple[str, str, str]:
    base = f"/api/v1/root/{repo_id}"
    kw: dict[str, Any] = {"deadline": deadline, "headers": _tenant(tenant), "progress": progress}
    call(caller, KEYSERVER, "GET", base, accept={200}, **KEYS_WAIT, **kw)
    pairs = call(
        caller, KEYSERVER, "GET", f"{base}/keys/targets/pairs", accept={200}, **KEYS_WAIT, **kw
    )
    signed = root["signed"]
    try:
        keyids = signed["roles"]["targets"]["keyids"]
        publics = {str(signed["keys"][k]["keyval"]["public"]).strip() for k in keyids}
        found = pairs.json()
        candidates = [
            (str(p["keytype"]), str(p["keyval"]["public"]), str(p["keyval"]["private"]))
            for p in found
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        # Never quote the answer: it holds private keys.
        raise ServiceError(
            f"{KEYSERVER}: GET {base}/keys/targets/pairs: not a list of key pairs, or root.json "
            "names no targets key"
        ) from None
    for keytype, public, private in candidates:
        if public.strip() in publics:
            try:
                check_key_pair(keytype, public, private)
            except ValueError as e:
                raise ServiceError(
                    f"{KEYSERVER}: the targets key pair of repo {repo_id}: {e}"
                ) from None
            return keytype, public, private
    raise ServiceError(
        f"{KEYSERVER}: none of the {len(candidates)} targets key pair(s) of repo {repo_id} is "
        "the targets key in root.json"
    )


def check_key_pair(keytype: str, public: str, private: str) -> None:
    """Raise ValueError (never quoting a key) unless `private` belongs to `public` and both
    are in the form ota-tuf writes and garage-sign reads (ota-tuf 1d0d714
    libtuf/.../crypt/TufCrypto.scala): RSA as PEM, the public key SubjectPublicKeyInfo of
    at least 2048 bits, the private key PKCS#1 ("RSA PRIVATE KEY": `parsePrivate` wants a
    PEM key pair); ED25519 as hex, 32 public bytes, private = seed (32 bytes) followed by
    the public key; ECPRIME256V1 as hex DER (SubjectPublicKeyInfo, PKCS#8)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    try:
        if keytype == "RSA":
            if "-----BEGIN RSA PRIVATE KEY-----" not in private:
                raise ValueError("the RSA private key is not a PKCS#1 PEM (garage-sign needs one)")
            pub = serialization.load_pem_public_key(public.encode())
            priv = serialization.load_pem_private_key(private.encode(), password=None)
            if not isinstance(pub, rsa.RSAPublicKey) or not isinstance(priv, rsa.RSAPrivateKey):
                raise ValueError("keytype RSA but the keys are not RSA keys")
            if pub.key_size < 2048:
                raise ValueError(f"the RSA key has {pub.key_size} bits (at least 2048 needed)")
            same = priv.public_key().public_numbers() == pub.public_numbers()
        elif keytype == "ED25519":
            pub_bytes, priv_bytes = bytes.fromhex(public), bytes.fromhex(private)
            if len(pub_bytes) != 32 or len(priv_bytes) < 32:
                raise ValueError("the ED25519 keys do not have 32 bytes")
            seed = ed25519.Ed25519PrivateKey.from_private_bytes(priv_bytes[:32])
            same = seed.public_key().public_bytes(*raw) == pub_bytes
        elif keytype == "ECPRIME256V1":
            ec_pub = serialization.load_der_public_key(bytes.fromhex(public))
            ec_priv = serialization.load_der_private_key(bytes.fromhex(private), password=None)
            if not isinstance(ec_pub, ec.EllipticCurvePublicKey) or not isinstance(
                ec_priv, ec.EllipticCurvePrivateKey
            ):
                raise ValueError("keytype ECPRIME256V1 but the keys are not EC keys")
            same = ec_priv.public_key().public_numbers() == ec_pub.public_numbers()
        else:
            raise ValueError(f"unknown keytype {keytype!r} (ota-tuf: RSA, ED25519, ECPRIME256V1)")
    except (TypeError, UnsupportedAlgorithm) as e:
        raise ValueError(f"the {keytype} keys cannot be read ({type(e).__name__})") from None
    if not same:
        raise ValueError(f"the {keytype} private key does not belong to the public key")


def fetch_repo_keys(
    caller: ServiceCaller,
    tenant: str,
    *,
    timeout: float,
    progress: Progress | None = None,
    deadline: Deadline | None = None,
) -> RepoKeys:
    """Create what is missing (user repo, director repo) and read the root metadata and
    the targets key pair, within `timeout` seconds for the whole plan."""
    deadline = deadline or Deadline(timeout)
    repo_id, root_json, root, user_created = _user_repo(caller, tenant, deadline, progress)
    director_created = _director_repo(caller, tenant, deadline, progress)
    keytype, public, private = _targets_pair(caller, tenant, repo_id, root, deadline, progress)
    return RepoKeys(repo_id, root_json, keytype, public, private, user_created, director_created)


def user_keys_secret(keys: RepoKeys) -> dict[str, bytes]:
    """Data of the `user-keys` Secret, so the cluster keeps what the zip was made from."""
    return {
        "repo_id": keys.repo_id.encode(),
        "root.json": keys.root_json,
        "targets.pub": keys.targets_pub(),
        "targets.sec": keys.targets_sec(),
    }


def ensure_credentials(
    caller: ServiceCaller,
    *,
    tenant: str,
    urls: PublicUrls,
    server_ca_pem: bytes,
    tls: ClientTls,
    out: Path,
    timeout: float,
    progress: Progress | None = None,
) -> CredentialsResult:
    """The whole phase: repositories, keys, `out` (credentials.zip), Secret data."""
    keys = fetch_repo_keys(caller, tenant, timeout=timeout, progress=progress)
    data = build_zip(keys, urls, server_ca_pem, tls)
    changed = write_if_changed(out, data)
    created = tuple(
        what
        for what, made in (("user repo", keys.user_repo_created),
                           ("director repo", keys.director_repo_created))
        if made
    )  # fmt: skip
    return CredentialsResult(
        out, keys.repo_id, changed, created, user_keys_secret(keys), client=tls.name
    )


def credentials_for_values(
    caller: ServiceCaller,
    values: Values,
    server_dir: Path,
    gateway_url: str,
    *,
    https_port: int = 443,
    client: str | None = None,
    out: Path | None = None,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> CredentialsResult:
    """`ensure_credentials` with what the values and `generated/<server>/` hold: tenant,
    public names from `domain`, the server CA, the client certificate of `client` (default:
    the `default` client). `gateway_url` and `https_port` are the gateway and the reverse
    proxy as really exposed (the deploy code knows the ports)."""
    from otactl.locks import folder_lock
    from otactl.pki import DEFAULT_CLIENT, check_client_name

    client = check_client_name(client or DEFAULT_CLIENT)
    with folder_lock(server_dir, "credentials"):
        return _credentials_for_values(
            caller, values, server_dir, gateway_url, https_port, client, out, timeout, progress
        )


def _credentials_for_values(
    caller: ServiceCaller,
    values: Values,
    server_dir: Path,
    gateway_url: str,
    https_port: int,
    client: str,
    out: Path | None,
    timeout: float | None,
    progress: Progress | None,
) -> CredentialsResult:
    from otactl.pki import PkiSettings, ServerFiles

    ca = ServerFiles(server_dir).server_ca
    try:
        server_ca_pem = ca.read_bytes()
    except FileNotFoundError:
        from otactl.project import elsewhere_hint

        raise PkiError(
            f"{ca.absolute()} is missing: run `otactl new-server` first"
            + elsewhere_hint(server_dir)
        ) from None
    tls, issued = client_tls(
        server_dir, client, PkiSettings(**values.pki.model_dump()), server_ca_pem
    )
    made = ensure_credentials(
        caller,
        tenant=values.tenant,
        urls=PublicUrls.for_domain(values.domain, gateway_url, https_port),
        server_ca_pem=server_ca_pem,
        tls=tls,
        out=out or server_dir / zip_name(client),
        timeout=values.timeouts.credentials if timeout is None else timeout,
        progress=progress,
    )
    return dataclasses.replace(made, client_issued=issued)
