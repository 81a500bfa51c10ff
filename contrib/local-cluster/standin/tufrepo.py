"""TUF keys and signed root metadata in the form ota-tuf's keyserver makes them.

Every rule here is read from advancedtelematic/ota-tuf at 1d0d714 (the pinned
tuf-keyserver and tuf-reposerver images):

- key types (libtuf/.../data/TufDataType.scala, TufCodecs.scala): "RSA" (the default:
  `KeyType.default = RsaKeyType`), "ED25519", "ECPRIME256V1";
- key encodings (libtuf/.../crypt/TufCrypto.scala): RSA 2048 bits (`defaultKeySize`), the
  public key a PEM SubjectPublicKeyInfo and the private key a PKCS#1 PEM (BouncyCastle's
  JcaPEMWriter; `parsePrivate` reads it back as a PEMKeyPair); ED25519 public = 32 bytes
  in hex, private = seed then public key in hex; ECPRIME256V1 = hex DER
  (SubjectPublicKeyInfo, PKCS#8);
- key ids: hex SHA-256 of the public key's DER SubjectPublicKeyInfo (`TufCrypto.keyId`);
- signatures (`TufCrypto.signPayload`, SignatureMethod): over the canonical JSON of
  `signed` (crypt/CanonicalJson.scala: keys sorted, no spaces), base64, method
  "rsassa-pss-sha256" (BouncyCastle SHA256withRSAandMGF1: PSS, MGF1-SHA256, 32-byte
  salt), "ed25519", or "ecPrime256v1" (SHA512withECDSA);
- root metadata (libtuf/.../data/ClientDataType.scala RootRole, ClientCodecs.scala):
  `{"signatures":[{"keyid","method","sig"}],"signed":{"_type":"Root","keys":{id:
  {"keytype","keyval":{"public"}}},"roles":{"root"|"snapshot"|"targets"|"timestamp":
  {"keyids":[...],"threshold":1}},"version":1,"expires":"...Z","consistent_snapshot":
  false}}`, one key per role (keyserver/.../roles/KeyGenerationRequests.scala
  `createDefaultGenRequest`, threshold 1), signed by the root key;
- a targets key pair as `/keys/targets/pairs` lists it (TufCodecs `tufKeyPairEncoder`):
  `{"keytype","keyval":{"public","private"}}`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

KEY_TYPES = ("RSA", "ED25519", "ECPRIME256V1")
DEFAULT_KEY_TYPE = "RSA"
ROLES = ("root", "snapshot", "targets", "timestamp")
RSA_BITS = 2048
# BouncyCastle's SHA256withRSAandMGF1: the salt is as long as the digest.
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def canonical(value: Any) -> bytes:
    """ota-tuf's canonical JSON: object keys sorted, no whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class KeyPair:
    keytype: str
    key: PrivateKey

    @property
    def keyid(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).hexdigest()

    @property
    def public(self) -> str:
        pub = self.key.public_key()
        if isinstance(self.key, rsa.RSAPrivateKey):
            return pub.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return pub.public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            ).hex()
        return pub.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ).hex()

    @property
    def private(self) -> str:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ).decode()
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            seed = self.key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            return seed.hex() + self.public
        return self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).hex()

    def public_json(self) -> dict[str, Any]:
        return {"keytype": self.keytype, "keyval": {"public": self.public}}

    def pair_json(self) -> dict[str, Any]:
        return {"keytype": self.keytype, "keyval": {"public": self.public, "private": self.private}}

    def sign(self, data: bytes) -> dict[str, str]:
        if isinstance(self.key, rsa.RSAPrivateKey):
            method, sig = "rsassa-pss-sha256", self.key.sign(data, PSS, hashes.SHA256())
        elif isinstance(self.key, ed25519.Ed25519PrivateKey):
            method, sig = "ed25519", self.key.sign(data)
        else:
            method, sig = "ecPrime256v1", self.key.sign(data, ec.ECDSA(hashes.SHA512()))
        return {"keyid": self.keyid, "method": method, "sig": base64.b64encode(sig).decode()}


def generate(keytype: str) -> KeyPair:
    if keytype == "RSA":
        return KeyPair(keytype, rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS))
    if keytype == "ED25519":
        return KeyPair(keytype, ed25519.Ed25519PrivateKey.generate())
    if keytype == "ECPRIME256V1":
        return KeyPair(keytype, ec.generate_private_key(ec.SECP256R1()))
    raise ValueError(f"Unknown KeyType: {keytype}")


def role_keys(keytype: str) -> dict[str, KeyPair]:
    """One new key per top-level role."""
    return {role: generate(keytype) for role in ROLES}


def signed_root(keys: dict[str, KeyPair], *, version: int = 1, days: int = 365) -> bytes:
    """Root metadata naming `keys` (role -> pair), signed by the root key."""
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=days)
    signed = {
        "_type": "Root",
        "consistent_snapshot": False,
        "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "keys": {pair.keyid: pair.public_json() for pair in keys.values()},
        "roles": {role: {"keyids": [pair.keyid], "threshold": 1} for role, pair in keys.items()},
        "version": version,
    }
    return canonical({"signatures": [keys["root"].sign(canonical(signed))], "signed": signed})
