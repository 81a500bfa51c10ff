"""Checks of TUF root metadata in ota-tuf's form (ota-tuf 1d0d714, see
contrib/local-cluster/standin/tufrepo.py for the rules), written apart from the stand-in's
generator: key ids from the keys, signatures verified as garage-sign and aktualizr would."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa


def public_key(keytype: str, public: str) -> Any:
    if keytype == "RSA":
        return serialization.load_pem_public_key(public.encode())
    if keytype == "ED25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(public))
    if keytype == "ECPRIME256V1":
        return serialization.load_der_public_key(bytes.fromhex(public))
    raise AssertionError(f"unknown keytype {keytype}")


def keyid(key: Any) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def verify(key: Any, method: str, sig: bytes, data: bytes) -> None:
    """Raises cryptography's InvalidSignature when `sig` is not `key`'s over `data`."""
    if method == "rsassa-pss-sha256":
        assert isinstance(key, rsa.RSAPublicKey)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
        key.verify(sig, data, pss, hashes.SHA256())
    elif method == "ed25519":
        key.verify(sig, data)
    elif method == "ecPrime256v1":
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(sig, data, ec.ECDSA(hashes.SHA512()))
    else:
        raise AssertionError(f"unknown signature method {method}")


def verify_root(body: bytes) -> dict[str, Any]:
    """The root document, once each root key's signature over the canonical `signed` is
    verified and every key id is the SHA-256 of its key."""
    doc = json.loads(body)
    signed = doc["signed"]
    assert signed["_type"] == "Root"
    keys = {}
    for kid, key in signed["keys"].items():
        keys[kid] = public_key(key["keytype"], key["keyval"]["public"])
        assert keyid(keys[kid]) == kid
    data = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    sigs = {s["keyid"]: s for s in doc["signatures"]}
    root_ids = signed["roles"]["root"]["keyids"]
    assert root_ids and all(k in sigs for k in root_ids)
    for kid in root_ids:
        verify(keys[kid], sigs[kid]["method"], base64.b64decode(sigs[kid]["sig"]), data)
    return dict(doc)
