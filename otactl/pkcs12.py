"""PKCS#12 files with an empty password that both build tools load, written byte for byte
the same for the same inputs.

The two readers (reference section 7):

- garage-sign (ota-tuf `cli/.../http/AuthenticatedHttpBackend.scala`, `mutualTls`, same at
  1d0d714 and at the newest commit) opens `client_auth.p12` and `server.p12` with
  `KeyStore.getInstance("PKCS12", "BC")` and `load(in, "".toCharArray)`: BouncyCastle (1.59,
  ota-tuf `libtuf/build.sbt`) derives keys from an empty password as zero bytes, takes a
  private key only from a pkcs8ShroudedKeyBag (a plain keyBag is skipped), refuses PBES2
  with an empty password, and lists a trusted certificate only under a friendlyName;
- garage-push (aktualizr `src/sota_tools/treehub_server.cc`) hands the file to libcurl as
  `CURLOPT_SSLCERTTYPE "P12"` without a password; OpenSSL 3's `PKCS12_parse` then tries the
  zero-byte password first and refuses RC2 (what `openssl pkcs12 -legacy` writes).

So: the key in a pkcs8ShroudedKeyBag under pbeWithSHAAnd3-KeyTripleDES-CBC, certificates
unencrypted, an HMAC-SHA1 MAC, all keyed by the zero-byte password (RFC 7292). The
`cryptography` package cannot write this (it refuses an empty password and draws random
salts), hence this small DER writer. Salts come from the contents, so the same key and
certificate always give the same bytes; an empty password protects nothing anyway: the
file's protection is the 0600 zip that carries it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from otactl.pki import PrivateKey

ITERATIONS = 2048
_DATA = "1.2.840.113549.1.7.1"
_PBE_SHA1_3DES = "1.2.840.113549.1.12.1.3"
_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
_CERT_BAG = "1.2.840.113549.1.12.10.1.3"
_X509_CERT = "1.2.840.113549.1.9.22.1"
_FRIENDLY_NAME = "1.2.840.113549.1.9.20"
_LOCAL_KEY_ID = "1.2.840.113549.1.9.21"
_SHA1 = "1.3.14.3.2.26"
# Java's own PKCS12 KeyStore trusts a certificate only with this attribute (value:
# anyExtendedKeyUsage); BouncyCastle ignores it. Set so that either provider reads server.p12.
_JAVA_TRUSTED = "2.16.840.1.113894.746875.1.1"
_ANY_EKU = "2.5.29.37.0"


# --- DER ----------------------------------------------------------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _set(*parts: bytes) -> bytes:
    return _tlv(0x31, b"".join(sorted(parts)))  # DER: SET OF sorted by encoding


def _explicit0(body: bytes) -> bytes:
    return _tlv(0xA0, body)


def _octets(data: bytes) -> bytes:
    return _tlv(0x04, data)


def _int(n: int) -> bytes:
    return _tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def _bmp(text: str) -> bytes:
    return _tlv(0x1E, text.encode("utf-16-be"))


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _attribute(oid: str, value: bytes) -> bytes:
    return _seq(_oid(oid), _set(value))


# --- RFC 7292 appendix B: key derivation from the (empty) password ---------------------------


def _kdf(salt: bytes, purpose: int, size: int, password: bytes = b"") -> bytes:
    """PKCS#12 key derivation with SHA-1 (purpose 1: key, 2: IV, 3: MAC key). An empty
    password contributes no bytes (BouncyCastle's and OpenSSL's NULL-password form)."""
    v, u = 64, 20

    def fill(data: bytes) -> bytes:  # repeated up to a multiple of v bytes
        size = v * -(-len(data) // v)
        return (data * (size // len(data) + 1))[:size] if data else b""

    block = fill(salt) + fill(password)
    out = b""
    while len(out) < size:
        a = hashlib.sha1(bytes([purpose]) * v + block).digest()
        for _ in range(ITERATIONS - 1):
            a = hashlib.sha1(a).digest()
        out += a
        b = int.from_bytes((a * (v // u + 1))[:v], "big") + 1
        block = b"".join(
            ((int.from_bytes(block[j : j + v], "big") + b) % (1 << (8 * v))).to_bytes(v, "big")
            for j in range(0, len(block), v)
        )
    return out[:size]


def _salt(label: bytes, *parts: bytes) -> bytes:
    """A salt that depends on the contents only (see the module docstring)."""
    h = hashlib.sha256(b"otactl-pkcs12:" + label)
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.digest()[:8]


def _triple_des(key: bytes, iv: bytes, data: bytes) -> bytes:
    try:  # cryptography >= 43 keeps 3DES among the "decrepit" algorithms
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # pragma: no cover - older cryptography
        from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES
    padder = padding.PKCS7(64).padder()
    padded = padder.update(data) + padder.finalize()
    enc = Cipher(TripleDES(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


# --- bags and the PFX -------------------------------------------------------------------------


def _cert_bag(cert: x509.Certificate, attributes: Sequence[bytes]) -> bytes:
    der = cert.public_bytes(serialization.Encoding.DER)
    value = _seq(_oid(_X509_CERT), _explicit0(_octets(der)))
    return _seq(_oid(_CERT_BAG), _explicit0(value), _set(*attributes))


def _key_bag(key: PrivateKey, salt: bytes, attributes: Sequence[bytes]) -> bytes:
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    encrypted = _triple_des(_kdf(salt, 1, 24), _kdf(salt, 2, 8), pkcs8)
    algorithm = _seq(_oid(_PBE_SHA1_3DES), _seq(_octets(salt), _int(ITERATIONS)))
    value = _seq(algorithm, _octets(encrypted))
    return _seq(_oid(_SHROUDED_KEY_BAG), _explicit0(value), _set(*attributes))


def _pfx(bags: Sequence[bytes], mac_salt: bytes) -> bytes:
    safe_contents = _seq(*bags)
    auth_safe = _seq(_seq(_oid(_DATA), _explicit0(_octets(safe_contents))))
    mac = hmac.new(_kdf(mac_salt, 3, 20), auth_safe, hashlib.sha1).digest()
    mac_data = _seq(
        _seq(_seq(_oid(_SHA1), _tlv(0x05, b"")), _octets(mac)), _octets(mac_salt), _int(ITERATIONS)
    )
    return _seq(_int(3), _seq(_oid(_DATA), _explicit0(_octets(auth_safe))), mac_data)


def key_store(name: str, key: PrivateKey, cert: x509.Certificate) -> bytes:
    """`client_auth.p12`: the client certificate and its key under the alias `name`."""
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    key_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Pairs the key with its certificate for every reader (BouncyCastle matches on it).
    local_id = hashlib.sha1(cert_der).digest()
    attributes = [
        _attribute(_FRIENDLY_NAME, _bmp(name)),
        _attribute(_LOCAL_KEY_ID, _octets(local_id)),
    ]
    bags = [
        _cert_bag(cert, attributes),
        _key_bag(key, _salt(b"key", key_der, cert_der), attributes),
    ]
    return _pfx(bags, _salt(b"mac", key_der, cert_der))


def trust_store(certs: Sequence[tuple[str, x509.Certificate]]) -> bytes:
    """`server.p12`: trusted certificates (no key), each under its alias."""
    bags = []
    ders = []
    for alias, cert in certs:
        ders.append(cert.public_bytes(serialization.Encoding.DER))
        trusted = _attribute(_JAVA_TRUSTED, _oid(_ANY_EKU))
        bags.append(_cert_bag(cert, [_attribute(_FRIENDLY_NAME, _bmp(alias)), trusted]))
    return _pfx(bags, _salt(b"trust", *ders))
